//! Service defaulting and validation, as upstream applies them on create.

use super::meta::child_mut;
use super::status::Cause;
use serde_json::{Value, json};

const TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

/// Fills upstream's defaults: type, session affinity, internal traffic policy, and per
/// port the protocol and a targetPort equal to the port. The IP family fields depend
/// on the cluster's service ranges: the API server's allocator fills them.
pub fn default_service(service: &mut Value) {
    let Some(root) = service.as_object_mut() else {
        return;
    };
    let spec = child_mut(root, "spec");
    spec.entry("type").or_insert(json!("ClusterIP"));
    spec.entry("sessionAffinity").or_insert(json!("None"));
    let external_name = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    if !external_name {
        spec.entry("internalTrafficPolicy")
            .or_insert(json!("Cluster"));
    }
    if matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    ) {
        spec.entry("externalTrafficPolicy")
            .or_insert(json!("Cluster"));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.entry("protocol").or_insert(json!("TCP"));
            if let Some(number) = port.get("port").cloned() {
                port.entry("targetPort").or_insert(number);
            }
        }
    }
    child_mut(root, "status")
        .entry("loadBalancer")
        .or_insert(json!({}));
}

pub fn validate_service(service: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = service.get("spec");
    let kind = spec
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !TYPES.contains(&kind) {
        causes.push(Cause::unsupported("spec.type", kind, TYPES));
    }
    let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
    if kind != "ExternalName" && ports.is_none_or(|p| p.is_empty()) {
        let headless = spec
            .and_then(|s| s.get("clusterIP"))
            .and_then(Value::as_str)
            == Some("None");
        if !headless {
            causes.push(Cause::required("spec.ports", ""));
        }
    }
    for (i, port) in ports.into_iter().flatten().enumerate() {
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&number) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &number.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(protocol) = port.get("protocol").and_then(Value::as_str)
            && !PROTOCOLS.contains(&protocol)
        {
            causes.push(Cause::unsupported(
                format!("spec.ports[{i}].protocol"),
                protocol,
                PROTOCOLS,
            ));
        }
        if ports.is_some_and(|p| p.len() > 1)
            && port
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("spec.ports[{i}].name"), ""));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        default_service(&mut svc);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
        assert!(validate_service(&svc).is_empty());
        let bad =
            json!({"spec": {"type": "Weird", "ports": [{"port": 0, "name": "a"}, {"port": 80}]}});
        let fields: Vec<String> = validate_service(&bad)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            ["spec.type", "spec.ports[0].port", "spec.ports[1].name"]
        );
    }
}
