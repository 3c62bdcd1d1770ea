//! The DefaultStorageClass admission plugin: a claim created without
//! `spec.storageClassName` gets the class annotated
//! `storageclass.kubernetes.io/is-default-class: "true"` (the newest one when several
//! are, as upstream picks). An explicit `""` means "no class" and is left alone.

use super::Server;
use super::handlers::decode;
use rind_api::meta::child_mut;
use rind_api::status::ApiError;
use rind_api::storage::DEFAULT_CLASS;
use serde_json::{Value, json};

/// Gives `claim` (being created) the default class when it names none.
pub async fn default_class(server: &Server, claim: &mut Value) -> Result<(), ApiError> {
    let has_class = claim
        .get("spec")
        .and_then(|s| s.get("storageClassName"))
        .is_some_and(|c| !c.is_null());
    if has_class {
        return Ok(());
    }
    let classes = server
        .registry
        .lookup("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| ApiError::internal("storageclasses are not registered"))?;
    let page = server
        .store
        .list(&classes.prefix(None), None, 0, None)
        .await
        .map_err(|e| ApiError::internal(format!("listing storage classes: {e}")))?;
    let mut defaults = Vec::new();
    for kv in &page.items {
        let class = decode(kv)?;
        let is_default = class
            .pointer(&format!(
                "/metadata/annotations/{}",
                DEFAULT_CLASS.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            == Some("true");
        if is_default {
            let created = class
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let name = class
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            defaults.push((created, name));
        }
    }
    // RFC 3339 timestamps in one format sort by time as strings.
    defaults.sort();
    if let Some((_, name)) = defaults.pop()
        && let Some(root) = claim.as_object_mut()
    {
        child_mut(root, "spec").insert("storageClassName".into(), json!(name));
    }
    Ok(())
}
