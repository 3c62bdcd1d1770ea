//! Services: their defaults and validation (`rind_api::services`), ClusterIP and
//! NodePort allocation on create (`allocator`), given back when the create fails or
//! the Service is deleted, and updates that keep what was allocated when they leave
//! it out.

use super::{AsyncHook, Strategy};
use crate::Server;
use crate::allocator;
use crate::handlers::Ctx;
use rind_api::services;
use rind_api::status::Cause;
use serde_json::{Value, json};

pub struct Service;

impl Strategy for Service {
    fn default_and_validate(&self, service: &mut Value, causes: &mut Vec<Cause>) {
        services::default_service(service);
        causes.extend(services::validate_service(service));
    }

    fn begin_create<'a>(&'a self, ctx: &'a Ctx<'a>, service: &'a mut Value) -> AsyncHook<'a, ()> {
        Some(Box::pin(allocator::allocate(ctx.server, service)))
    }

    fn abort_create<'a>(&'a self, ctx: &'a Ctx<'a>, service: &'a Value) -> AsyncHook<'a, ()> {
        Some(Box::pin(async move {
            allocator::release(ctx.server, service).await;
            Ok(())
        }))
    }

    fn deleted<'a>(&'a self, server: &'a Server, service: &'a Value) -> AsyncHook<'a, ()> {
        Some(Box::pin(async move {
            allocator::release(server, service).await;
            Ok(())
        }))
    }

    fn prepare_for_update(&self, _subresource: Option<&str>, current: &Value, next: &mut Value) {
        keep_allocations(current, next);
    }

    /// Upstream upgrades a Service to dual-stack (or downgrades it) when an update
    /// changes its policy or families; rind allocates families on create only, so
    /// such an update is refused by name rather than stored half-done.
    fn validate_update(&self, current: &Value, next: &Value, causes: &mut Vec<Cause>) {
        let was_external = current.pointer("/spec/type") == Some(&json!("ExternalName"));
        let is_external = next.pointer("/spec/type") == Some(&json!("ExternalName"));
        if was_external || is_external {
            return;
        }
        for key in ["ipFamilyPolicy", "ipFamilies"] {
            let old = current.pointer(&format!("/spec/{key}"));
            let new = next.pointer(&format!("/spec/{key}"));
            if old.is_some() && old != new {
                causes.push(Cause::invalid(
                    format!("spec.{key}"),
                    &new.map(Value::to_string).unwrap_or_default(),
                    "changing the IP families of an existing Service is not supported by rind (delete and create it again)",
                ));
            }
        }
    }
}

/// A Service keeps its allocated ClusterIPs, IP families and NodePorts when an update
/// leaves them out.
fn keep_allocations(current: &Value, next: &mut Value) {
    let Some(old_spec) = current.get("spec").and_then(Value::as_object) else {
        return;
    };
    let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        let missing = spec
            .get(key)
            .is_none_or(|v| v.is_null() || v == "" || v == &json!([]));
        if missing && let Some(old) = old_spec.get(key) {
            spec.insert(key.into(), old.clone());
        }
    }
    let tcp = json!("TCP");
    let old_ports = old_spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            if port.contains_key("nodePort") {
                continue;
            }
            let same = old_ports.iter().find(|p| {
                p.get("port") == port.get("port")
                    && p.get("protocol").unwrap_or(&tcp) == port.get("protocol").unwrap_or(&tcp)
            });
            if let Some(node_port) = same.and_then(|p| p.get("nodePort")) {
                port.insert("nodePort".into(), node_port.clone());
            }
        }
    }
}
