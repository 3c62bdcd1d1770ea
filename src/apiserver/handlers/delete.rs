//! DELETE of one object and of a collection. An object goes at once, or waits for its
//! grace period (the kind's) or its finalizers, marked with a deletionTimestamp; the
//! garbage collector's propagation policies hold it with the collector's finalizer.

use super::encoding::encode;
use super::list::{Filter, collect};
use super::{Ctx, MAX_RETRIES, answer_with, read, set_resource_version, store_error};
use crate::request::{Query, Rendering};
use crate::strategy::{self, Strategy};
use crate::{Json, Server};
use http::StatusCode;
use rind_api::meta::{self, format_time, metadata_mut};
use rind_api::registry::Resource;
use rind_api::status::{ApiError, StatusDetails, success};
use rind_store::StoreError;
use serde_json::{Value, json};

/// The parts of `DeleteOptions` this server acts on.
#[derive(Debug, Default)]
pub struct DeleteOptions {
    grace_period: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
    /// The garbage collector's finalizer the propagation policy asks for: `orphan`
    /// (Orphan, or the legacy `orphanDependents: true`) or `foregroundDeletion`.
    gc_finalizer: Option<&'static str>,
}

impl DeleteOptions {
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    pub fn from_request(body: Option<&Value>, query: &Query) -> Result<Self, ApiError> {
        let body = body.cloned().unwrap_or(Value::Null);
        let grace_period = match query.int("gracePeriodSeconds")? {
            Some(g) => Some(g),
            None => body.get("gracePeriodSeconds").and_then(Value::as_i64),
        };
        let dry_run = query.get("dryRun") == Some("All")
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All"));
        let policy = query
            .get("propagationPolicy")
            .or_else(|| body.get("propagationPolicy").and_then(Value::as_str));
        let orphan_dependents = body.get("orphanDependents").and_then(Value::as_bool);
        let gc_finalizer = match (policy, orphan_dependents) {
            (Some("Orphan"), _) | (None, Some(true)) => Some("orphan"),
            (Some("Foreground"), _) => Some("foregroundDeletion"),
            (Some("Background") | None, _) => None,
            (Some(other), _) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported propagationPolicy {other:?}: use Orphan, Background or Foreground"
                )));
            }
        };
        Ok(DeleteOptions {
            gc_finalizer,
            grace_period,
            uid: meta::str_at(&body, &["preconditions", "uid"]).map(str::to_string),
            resource_version: meta::str_at(&body, &["preconditions", "resourceVersion"])
                .map(str::to_string),
            dry_run,
        })
    }
}

/// Adds a finalizer unless present; true when it was added.
fn add_finalizer(object: &mut Value, finalizer: &str) -> bool {
    let metadata = metadata_mut(object);
    let list = metadata.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    match list.as_array_mut() {
        Some(items) if !items.iter().any(|f| f == finalizer) => {
            items.push(json!(finalizer));
            true
        }
        _ => false,
    }
}

/// Whether anything still holds the object back from deletion: `metadata.finalizers`,
/// or what the kind's own rules hold it by.
pub(super) fn has_finalizers(strategy: &dyn Strategy, object: &Value) -> bool {
    let listed = object
        .get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    listed || strategy.holds_deletion(object)
}

/// What a delete did: the object is gone, or it now waits (grace period, finalizers).
pub enum Deleted {
    Gone(Value),
    Pending(Value),
}

pub async fn delete_object(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    options: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    let strategy = strategy::of(resource);
    let key = resource.key(ns, name);
    for _ in 0..MAX_RETRIES {
        let (kv, mut current) = read(server, resource, &key, name).await?;
        // Orphan and Foreground deletions wait for the garbage collector: its finalizer
        // holds the object (with its deletionTimestamp) until the dependents are dealt with.
        let gc_added = options
            .gc_finalizer
            .is_some_and(|f| add_finalizer(&mut current, f));
        if let Some(uid) = &options.uid {
            let actual = meta::str_at(&current, &["metadata", "uid"]).unwrap_or_default();
            if uid != actual {
                return Err(ApiError::conflict(
                    resource.plural,
                    resource.group,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    ),
                ));
            }
        }
        if let Some(rv) = &options.resource_version
            && *rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                resource.plural,
                resource.group,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                ),
            ));
        }
        let grace = strategy.grace_period(&current, options.grace_period);
        let has_finalizers = has_finalizers(strategy, &current);
        let current_grace = current
            .get("metadata")
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64);
        let deleting = meta::str_at(&current, &["metadata", "deletionTimestamp"]).is_some();
        if deleting
            && !gc_added
            && current_grace.is_none_or(|g| grace >= g)
            && (grace > 0 || has_finalizers)
        {
            // Already on its way out; a delete may only shorten the wait.
            return Ok(Deleted::Pending(current));
        }
        if grace > 0 || has_finalizers {
            let mut next = current.clone();
            let metadata = metadata_mut(&mut next);
            let at = meta::now() + jiff::SignedDuration::from_secs(grace);
            metadata.insert("deletionTimestamp".into(), json!(format_time(at)));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
            strategy.mark_deleting(&mut next);
            if options.dry_run {
                return Ok(Deleted::Pending(next));
            }
            let encoded = encode(resource, &next)?;
            match server.store.update(&key, encoded, kv.mod_revision).await {
                Ok(revision) => {
                    set_resource_version(&mut next, revision);
                    return Ok(Deleted::Pending(next));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(e, resource, name)),
            }
        }
        if options.dry_run {
            return Ok(Deleted::Gone(current));
        }
        match server.store.delete(&key, Some(kv.mod_revision)).await {
            Ok(_) => {
                if let Some(releasing) = strategy.deleted(server, &current) {
                    releasing.await?;
                }
                return Ok(Deleted::Gone(current));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(e, resource, name)),
        }
    }
    Err(ApiError::modified(resource.plural, resource.group, name))
}

pub async fn delete(ctx: &Ctx<'_>, name: &str, options: DeleteOptions) -> Result<Json, ApiError> {
    let resource = ctx.resource;
    match delete_object(ctx.server, resource, ctx.namespace, name, &options).await? {
        Deleted::Pending(object) => Ok(answer_with(ctx, StatusCode::OK, object)),
        Deleted::Gone(object) if resource.return_deleted_object => {
            Ok(answer_with(ctx, StatusCode::OK, object))
        }
        Deleted::Gone(object) => {
            let uid = meta::str_at(&object, &["metadata", "uid"]).unwrap_or_default();
            let details = StatusDetails {
                uid: uid.to_string(),
                ..StatusDetails::object(name, resource.group, resource.plural)
            };
            let body = success(Some(details)).to_body();
            Ok(Json::bytes(StatusCode::OK, body, Rendering::Object))
        }
    }
}

pub async fn delete_collection(ctx: &Ctx<'_>, options: DeleteOptions) -> Result<Json, ApiError> {
    let &Ctx {
        server,
        resource,
        namespace: ns,
        query,
        ..
    } = ctx;
    let filter = Filter::from_query(resource, query)?;
    let (items, revision, _) = collect(server, resource, ns, &filter, 0, &Query::default()).await?;
    let mut deleted = Vec::new();
    for item in items {
        let name = meta::name(&item).to_string();
        let item_ns = meta::namespace(&item).map(str::to_string);
        match delete_object(server, resource, item_ns.as_deref(), &name, &options).await {
            Ok(Deleted::Gone(object) | Deleted::Pending(object)) => deleted.push(object),
            // Gone in the meantime: someone else deleted it, which is what was asked.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Json::ok(
        json!({
            "kind": resource.list_kind(),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
            "items": deleted,
        }),
        Rendering::Object,
    ))
}
