//! `POST pods/NAME/binding`: the scheduler's decision, written as `spec.nodeName`
//! with the pod's `PodScheduled` condition.

use super::encoding::encode;
use super::{Ctx, MAX_RETRIES, check_type, read, store_error};
use crate::Json;
use crate::request::Rendering;
use http::StatusCode;
use rind_api::meta::{self, child_mut, format_time};
use rind_api::status::{ApiError, Cause, success};
use rind_store::StoreError;
use serde_json::{Value, json};

pub async fn bind(ctx: &Ctx<'_>, name: &str, mut binding: Value) -> Result<Json, ApiError> {
    let &Ctx {
        server, resource, ..
    } = ctx;
    check_type(resource, &mut binding, "Binding")?;
    let node = meta::str_at(&binding, &["target", "name"])
        .unwrap_or_default()
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            name,
            &[Cause::required("target.name", "")],
        ));
    }
    let key = ctx.key(name);
    // The scheduler binds pods it has just watched being created, so the watch cache
    // usually holds the current pod: try that first, and read when it was stale.
    let mut cached = server.watch_cache.latest(resource, &key).await;
    for _ in 0..MAX_RETRIES {
        let (revision, current) = match cached.take() {
            Some(hit) => hit,
            None => {
                let (kv, current) = read(server, resource, &key, name).await?;
                (kv.mod_revision, current)
            }
        };
        if meta::str_at(&current, &["metadata", "deletionTimestamp"]).is_some() {
            return Err(ApiError::conflict(
                "pods/binding",
                "",
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(existing) =
            meta::str_at(&current, &["spec", "nodeName"]).filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                "pods/binding",
                "",
                name,
                &format!("pod {name} is already assigned to node {existing:?}"),
            ));
        }
        let mut next = current.clone();
        let root = next
            .as_object_mut()
            .ok_or_else(|| ApiError::internal("stored pod is not an object"))?;
        child_mut(root, "spec").insert("nodeName".into(), json!(node));
        let status = child_mut(root, "status");
        let conditions = status.entry("conditions").or_insert_with(|| json!([]));
        if !conditions.is_array() {
            *conditions = json!([]);
        }
        if let Some(list) = conditions.as_array_mut() {
            list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            list.push(json!({
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": null,
                "lastTransitionTime": format_time(meta::now()),
            }));
        }
        match server
            .store
            .update(&key, encode(resource, &next)?, revision)
            .await
        {
            Ok(_) => {
                return Ok(Json::bytes(
                    StatusCode::CREATED,
                    success(None).to_body(),
                    Rendering::Object,
                ));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(e, resource, name)),
        }
    }
    Err(ApiError::modified(resource.plural, resource.group, name))
}
