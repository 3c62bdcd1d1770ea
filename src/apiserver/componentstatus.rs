//! `componentstatuses` (core/v1 ComponentStatus, deprecated upstream since 1.19 but
//! still served): the health of the control plane's other parts, checked at the
//! moment of the request, never stored. Upstream probes each component's `/healthz`;
//! rind's scheduler and controller-manager serve no such endpoint, and what proves
//! one of them alive is the leader Lease it renews while it works (a stopped or
//! wedged component stops renewing), so that is what is checked. etcd is checked by
//! reading from the store, as upstream's etcd check reads from etcd.

use super::Json;
use super::Server;
use super::handlers::{Ctx, decode};
use super::request::Rendering;
use jiff::Timestamp;
use rind_api::status::ApiError;
use rind_api::table::{IncludeObject, partial_metadata, table};
use serde_json::{Value, json};

/// What kubectl prints before the answer, as upstream warns on every request.
pub const DEPRECATION: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// The components with a leader Lease in kube-system, by ComponentStatus name.
const LEASED: &[(&str, &str)] = &[
    ("controller-manager", "kube-controller-manager"),
    ("scheduler", "kube-scheduler"),
];

/// One component's status: healthy with `message`, or unhealthy with `error`.
fn status(name: &str, health: Result<String, String>) -> Value {
    let condition = match health {
        Ok(message) => json!({"type": "Healthy", "status": "True", "message": message}),
        Err(error) => json!({"type": "Healthy", "status": "False", "error": error}),
    };
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "conditions": [condition],
    })
}

/// Whether a stored Lease was renewed within its duration at `now`.
fn lease_health(lease: Option<&Value>, name: &str, now: Timestamp) -> Result<String, String> {
    let Some(lease) = lease else {
        return Err(format!(
            "no leader: Lease kube-system/{name} does not exist"
        ));
    };
    let renewed = lease["spec"]["renewTime"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let duration = lease["spec"]["leaseDurationSeconds"].as_i64().unwrap_or(0);
    match renewed {
        Some(at) if now.as_second() - at.as_second() <= duration => Ok("ok".to_string()),
        Some(at) => Err(format!(
            "no leader: Lease kube-system/{name} was last renewed at {at}, more than its {duration}s ago"
        )),
        None => Err(format!(
            "no leader: Lease kube-system/{name} has never been renewed"
        )),
    }
}

/// Every component's status, by name (upstream's order).
async fn observe(server: &Server) -> Vec<Value> {
    let now = Timestamp::now();
    let mut statuses = Vec::new();
    for &(component, lease) in LEASED {
        let key = format!("/registry/leases/kube-system/{lease}");
        let health = match server.store.get(&key).await {
            Ok(kv) => {
                let stored = kv.as_ref().and_then(|kv| decode(kv).ok());
                lease_health(stored.as_ref(), lease, now)
            }
            Err(e) => Err(format!("reading Lease kube-system/{lease}: {e}")),
        };
        statuses.push(status(component, health));
    }
    let etcd = match server.store.revision().await {
        Ok(_) => Ok(r#"{"health":"true","reason":""}"#.to_string()),
        Err(e) => Err(e.to_string()),
    };
    statuses.push(status("etcd-0", etcd));
    statuses.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    statuses
}

/// GET of one component or of the list, rendered as the client asked.
pub async fn get(ctx: &Ctx<'_>, name: Option<&str>) -> Result<Json, ApiError> {
    let mut items = observe(ctx.server).await;
    if let Some(name) = name {
        items.retain(|s| s["metadata"]["name"] == name);
        if items.is_empty() {
            return Err(ApiError::not_found("componentstatuses", "", name));
        }
    }
    let include = IncludeObject::parse(ctx.query.get("includeObject"));
    let body = match (ctx.rendering, name) {
        (Rendering::Table, _) => table(ctx.resource, &items, json!({}), include),
        (Rendering::Metadata, Some(_)) => partial_metadata(&items[0]),
        (Rendering::Metadata, None) => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {},
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        (Rendering::Object, Some(_)) => items.remove(0),
        (Rendering::Object, None) => json!({
            "kind": "ComponentStatusList",
            "apiVersion": "v1",
            "metadata": {},
            "items": items,
        }),
    };
    Ok(Json::ok(body, ctx.rendering))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_renewed_within_its_duration_is_healthy() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let lease = |renewed: &str| json!({"spec": {"holderIdentity": "n", "leaseDurationSeconds": 15, "renewTime": renewed}});
        assert_eq!(
            lease_health(
                Some(&lease("2026-01-01T00:00:50.000000Z")),
                "kube-scheduler",
                now
            ),
            Ok("ok".to_string())
        );
        let stale = lease_health(
            Some(&lease("2026-01-01T00:00:10.000000Z")),
            "kube-scheduler",
            now,
        );
        assert!(stale.unwrap_err().contains("more than its 15s ago"));
        assert!(
            lease_health(None, "kube-scheduler", now)
                .unwrap_err()
                .contains("does not exist")
        );
    }
}
