//! Pods: their defaults and validation (`rind_api::pods`), the priority a new pod gets
//! from its class, the overhead and scheduling its RuntimeClass gives it, the fields
//! upstream's pod admission plugins add (the LimitRanger's defaults and the service
//! account's token volume among them), and
//! graceful deletion of pods a kubelet runs.

use super::{AfterFieldManager, AsyncHook, Strategy};
use crate::admission::{limitranger, serviceaccount};
use crate::handlers::Ctx;
use crate::{priority, runtimeclass};
use rind_api::meta;
use rind_api::pods;
use rind_api::status::Cause;
use serde_json::Value;

pub struct Pod;

/// The subresource that adds ephemeral (debugging) containers to a pod.
const EPHEMERAL: &str = "ephemeralcontainers";

/// What a bound pod gets to stop when neither it nor the client says.
const DEFAULT_GRACE_SECONDS: i64 = 30;

impl Strategy for Pod {
    fn prepare_for_create(&self, pod: &mut Value) {
        // A new pod's status is the server's to set (Pending), whatever the client sent.
        if let Some(root) = pod.as_object_mut() {
            root.remove("status");
        }
    }

    fn default_and_validate(&self, pod: &mut Value, causes: &mut Vec<Cause>) {
        pods::default_pod(pod);
        causes.extend(pods::validate_pod(pod));
    }

    fn admit_create<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        pod: &'a mut Value,
    ) -> AsyncHook<'a, Option<AfterFieldManager>> {
        Some(Box::pin(async move {
            let resolved = priority::resolve(ctx.server, pod).await?;
            let runtime = runtimeclass::admit(ctx.server, pod).await?;
            let ranges = match ctx.namespace {
                Some(ns) => limitranger::ranges(ctx.server, ns).await?,
                None => Vec::new(),
            };
            let accounts = match ctx.namespace {
                Some(ns) if ctx.server.admit_service_accounts => {
                    Some(serviceaccount::admit(ctx.server, ns, pod).await?)
                }
                _ => None,
            };
            let after: AfterFieldManager = Box::new(move |pod: &mut Value| {
                if let Some(accounts) = &accounts {
                    accounts.apply(pod);
                }
                resolved.apply(pod);
                runtime.apply(pod);
                pods::admit_pod(pod, None);
                limitranger::admit_pod(&ranges, pod)
            });
            Ok(Some(after))
        }))
    }

    fn prepare_for_update(&self, subresource: Option<&str>, current: &Value, next: &mut Value) {
        match subresource {
            None => pods::admit_pod(next, Some(current)),
            // Only the ephemeral containers change through this endpoint.
            Some(EPHEMERAL) => {
                let wanted = next
                    .get("spec")
                    .and_then(|s| s.get("ephemeralContainers"))
                    .cloned();
                *next = current.clone();
                if let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) {
                    match wanted {
                        Some(list) if !list.is_null() => {
                            spec.insert("ephemeralContainers".into(), list);
                        }
                        _ => {
                            spec.remove("ephemeralContainers");
                        }
                    }
                }
                pods::default_ephemeral_containers(next);
            }
            Some(_) => {}
        }
    }

    fn validate_subresource_update(
        &self,
        subresource: &str,
        current: &Value,
        next: &Value,
        causes: &mut Vec<Cause>,
    ) {
        if subresource == EPHEMERAL {
            causes.extend(pods::validate_ephemeral_containers_update(current, next));
        }
    }

    fn validate_update(&self, current: &Value, next: &Value, causes: &mut Vec<Cause>) {
        causes.extend(pods::validate_pod_update(current, next));
    }

    /// Pods bound to a node stop gracefully; unbound or finished pods go at once.
    fn grace_period(&self, pod: &Value, requested: Option<i64>) -> i64 {
        let bound = meta::str_at(pod, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty());
        let finished = matches!(
            meta::str_at(pod, &["status", "phase"]),
            Some("Succeeded" | "Failed")
        );
        if !bound || finished {
            return 0;
        }
        let default = pod
            .get("spec")
            .and_then(|s| s.get("terminationGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        // Upstream turns a negative grace period into the smallest graceful one.
        requested.unwrap_or(default).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grace_periods() {
        let unbound = json!({"spec": {"terminationGracePeriodSeconds": 30}});
        assert_eq!(Pod.grace_period(&unbound, None), 0);
        let bound = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 20}, "status": {"phase": "Running"}});
        assert_eq!(Pod.grace_period(&bound, None), 20);
        assert_eq!(Pod.grace_period(&bound, Some(0)), 0);
        let finished = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert_eq!(Pod.grace_period(&finished, Some(10)), 0);
    }
}
