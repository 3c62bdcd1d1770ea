//! The LimitRanger admission plugin: a new pod gets its namespace's LimitRange
//! defaults and must fit their constraints; a claim's storage request must fit their
//! PersistentVolumeClaim limits (on create and update). The rules themselves are
//! `rind_api::limitrange`'s; this module finds the ranges and turns a refusal into
//! upstream's 403.

use super::super::Server;
use rind_api::limitrange;
use rind_api::meta;
use rind_api::status::ApiError;
use serde_json::Value;

/// Where LimitRanges are stored.
pub const LIMIT_RANGES: &str = "/registry/limitranges/";

/// The LimitRanges of namespace `ns`, in name order.
pub async fn ranges(server: &Server, ns: &str) -> Result<Vec<Value>, ApiError> {
    server
        .limit_ranges
        .in_namespace(server.store.as_ref(), ns)
        .await
        .map_err(|e| {
            ApiError::forbidden(
                "limitranges",
                "",
                "",
                &format!("unable to list limit ranges: {e}"),
            )
        })
}

/// The name an admission refusal names: the object's, or its `generateName` when it
/// has none yet (upstream's admission errors do the same).
pub fn refused_name(object: &Value) -> String {
    let name = meta::name(object);
    if name.is_empty() {
        meta::str_at(object, &["metadata", "generateName"])
            .unwrap_or_default()
            .to_string()
    } else {
        name.to_string()
    }
}

/// Applies the ranges' defaults to a pod being created and checks it against them;
/// a pod the defaults changed is validated again, as upstream validates it after
/// mutating admission (a default limit below the pod's own request is a 422).
pub fn admit_pod(ranges: &[Value], pod: &mut Value) -> Result<(), ApiError> {
    if ranges.is_empty() {
        return Ok(());
    }
    if limitrange::default_pod(ranges, pod) {
        // The QoS class follows the resources the pod now has.
        let qos = pod
            .get("spec")
            .and_then(Value::as_object)
            .map(rind_api::pods::qos_class);
        if let (Some(qos), Some(status)) =
            (qos, pod.get_mut("status").and_then(Value::as_object_mut))
        {
            status.insert("qosClass".into(), qos.into());
        }
        let causes = rind_api::pods::validate_pod(pod);
        if !causes.is_empty() {
            return Err(ApiError::invalid("Pod", "", meta::name(pod), &causes));
        }
    }
    match limitrange::validate_pod(ranges, pod) {
        Some(why) => Err(ApiError::forbidden("pods", "", &refused_name(pod), &why)),
        None => Ok(()),
    }
}

/// Checks a claim being created or updated against the ranges.
pub async fn admit_claim(server: &Server, claim: &Value) -> Result<(), ApiError> {
    let Some(ns) = meta::namespace(claim) else {
        return Ok(());
    };
    let ranges = ranges(server, ns).await?;
    match limitrange::validate_claim(&ranges, claim) {
        Some(why) => Err(ApiError::forbidden(
            "persistentvolumeclaims",
            "",
            &refused_name(claim),
            &why,
        )),
        None => Ok(()),
    }
}
