//! PUT of an object or its `status`: the incoming object merged onto the stored one
//! under the rules of the endpoint and the server-owned metadata, admitted, validated
//! against the stored object, and written with a compare-and-swap (retried on a lost
//! race unless the client named a resourceVersion). Patch, scale and the controllers
//! inside the server write through the same functions.

use super::create::create_saved;
use super::delete::has_finalizers;
use super::encoding::encode_stored;
use super::{
    Ctx, MAX_RETRIES, Saved, admit, answer_with, check_namespace, check_type, decode_as,
    resource_version_of, set_resource_version, store_error,
};
use crate::request::{Query, Rendering};
use crate::strategy::Strategy;
use crate::{Json, Server};
use http::StatusCode;
use rind_api::meta::{self, metadata_mut};
use rind_api::patch::apply as managed;
use rind_api::registry::Resource;
use rind_api::status::ApiError;
use rind_api::{crd, kinds};
use rind_store::StoreError;
use serde_json::{Value, json};

/// Metadata the client may not change through an update.
const SYSTEM_METADATA: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "namespace",
    "name",
];

/// The object an update should store: `incoming` merged onto `current` under the
/// rules of the endpoint (status vs main resource) and the server-owned metadata.
pub fn prepare_update(
    resource: &Resource,
    strategy: &dyn Strategy,
    subresource: Option<&str>,
    current: &Value,
    incoming: Value,
) -> Value {
    let mut next = if matches!(subresource, Some("status" | "approval")) {
        // Status writes change only status (and labels/annotations as upstream allows);
        // the kind's strategy narrows `approval` further.
        let mut next = current.clone();
        next["status"] = incoming.get("status").cloned().unwrap_or(Value::Null);
        for key in ["labels", "annotations"] {
            if let Some(v) = incoming.get("metadata").and_then(|m| m.get(key)) {
                metadata_mut(&mut next).insert(key.into(), v.clone());
            }
        }
        next
    } else {
        let mut next = incoming;
        // Defaults first, so a write that only leaves out defaulted fields is no change.
        kinds::default(resource, &mut next);
        if resource.has_status() {
            match current.get("status") {
                Some(status) => next["status"] = status.clone(),
                None => {
                    if let Some(map) = next.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
        }
        next
    };
    strategy.prepare_for_update(subresource, current, &mut next);
    let current_meta = current
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let metadata = metadata_mut(&mut next);
    for key in SYSTEM_METADATA {
        match current_meta.get(*key) {
            Some(v) => metadata.insert((*key).to_string(), v.clone()),
            None => metadata.remove(*key),
        };
    }
    let changed = match resource.custom {
        Some(_) => crd::changes_generation(current, &next, resource.has_status()),
        None => current.get("spec") != next.get("spec"),
    };
    if subresource.is_none() && changed && current_meta.contains_key("generation") {
        let generation = current_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        metadata_mut(&mut next).insert("generation".into(), json!(generation + 1));
    }
    // Upstream stores ObjectMeta through Go structs whose lists and maps are
    // `omitempty`: a patch that empties one (the collector stripping the last owner
    // reference) leaves no field, not `[]`.
    metadata_mut(&mut next).retain(|key, value| {
        let omitted = ["labels", "annotations", "ownerReferences", "finalizers"];
        !omitted.contains(&key.as_str())
            || !(value.is_null()
                || value.as_array().is_some_and(Vec::is_empty)
                || value.as_object().is_some_and(serde_json::Map::is_empty))
    });
    next
}

/// Update rules that compare the old object with the new one.
pub fn validate_update(
    resource: &Resource,
    strategy: &dyn Strategy,
    subresource: Option<&str>,
    current: &Value,
    next: &Value,
) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    match subresource {
        None => {
            causes = kinds::validate_update(resource, current, next);
            strategy.validate_update(current, next, &mut causes);
        }
        Some(sub) => strategy.validate_subresource_update(sub, current, next, &mut causes),
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            resource.kind,
            resource.group,
            meta::name(next),
            &causes,
        ))
    }
}

/// Whether two objects differ in anything but their resourceVersion.
fn same_object(a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a == b;
    };
    // Compared member by member: no copies of the objects.
    let same_metadata = match (a.get("metadata"), b.get("metadata")) {
        (Some(Value::Object(ma)), Some(Value::Object(mb))) => {
            // Maps iterate in key order, so equal maps give equal sequences.
            let rv = |(k, _): &(&String, &Value)| *k != "resourceVersion";
            ma.iter().filter(rv).eq(mb.iter().filter(rv))
        }
        (ma, mb) => ma == mb,
    };
    same_metadata
        && a.len() == b.len()
        && a.iter()
            .filter(|(k, _)| *k != "metadata")
            .all(|(k, v)| b.get(k) == Some(v))
}

fn is_deletable_now(strategy: &dyn Strategy, object: &Value) -> bool {
    let deleting = meta::str_at(object, &["metadata", "deletionTimestamp"]).is_some();
    let grace = object
        .get("metadata")
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    deleting && !has_finalizers(strategy, object) && grace == 0
}

/// Writes `next` over `current` (at `revision`), deleting it instead when it is being
/// deleted and nothing holds it any more (last finalizer removed).
pub async fn write_update(
    server: &Server,
    resource: &'static Resource,
    key: &str,
    revision: i64,
    current: &Value,
    next: Value,
) -> Result<Value, StoreError> {
    let query = Query::default();
    let ctx = Ctx::new(server, resource, None, Rendering::Object, &query);
    write_saved(&ctx, key, revision, current, next)
        .await
        .map(|saved| saved.object)
}

/// `write_update`, keeping the written object's JSON as served when it has it.
pub(super) async fn write_saved(
    ctx: &Ctx<'_>,
    key: &str,
    revision: i64,
    current: &Value,
    mut next: Value,
) -> Result<Saved, StoreError> {
    if same_object(current, &next) {
        return Ok(Saved::new(current.clone()));
    }
    let store = &ctx.server.store;
    if is_deletable_now(ctx.strategy, &next) {
        let (_, deleted_at) = store.delete(key, Some(revision)).await?;
        if let Some(releasing) = ctx.strategy.deleted(ctx.server, &next) {
            // The object is gone whatever its release says; the kind's repair (if it
            // has one) settles a release that failed.
            if let Err(e) = releasing.await {
                tracing::warn!("releasing what a deleted object held: {}", e.message);
            }
        }
        set_resource_version(&mut next, deleted_at);
        return Ok(Saved::new(next));
    }
    let encoded =
        encode_stored(ctx.resource, &next).map_err(|e| StoreError::Unavailable(e.message))?;
    let new_revision = store.update(key, encoded.bytes.clone(), revision).await?;
    set_resource_version(&mut next, new_revision);
    Ok(Saved {
        object: next,
        json: encoded.served(new_revision),
    })
}

pub async fn update(
    ctx: &Ctx<'_>,
    name: &str,
    subresource: Option<&str>,
    mut body: Value,
) -> Result<Json, ApiError> {
    let &Ctx {
        server,
        resource,
        strategy,
        namespace: ns,
        query,
        ..
    } = ctx;
    check_type(resource, &mut body, resource.kind)?;
    let body_name = meta::name(&body);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    metadata_mut(&mut body).insert("name".into(), json!(name));
    check_namespace(resource, &mut body, ns)?;
    let dry_run = ctx.dry_run();
    let key = ctx.key(name);
    let precondition = resource_version_of(&body).map(str::to_string);
    for _ in 0..MAX_RETRIES {
        let current = server
            .store
            .get(&key)
            .await
            .map_err(|e| store_error(e, resource, name))?;
        let Some(kv) = current else {
            if resource.allow_create_on_update && subresource.is_none() {
                let manager = query.field_manager();
                let record = |object: &mut Value| {
                    managed::record_update(None, object, manager, None, resource.has_status())
                };
                let created = create_saved(ctx, body, false, &record).await?;
                return Ok(answer_with(ctx, StatusCode::CREATED, created.object));
            }
            return Err(ApiError::not_found(resource.plural, resource.group, name));
        };
        if let Some(rv) = &precondition
            && *rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::modified(resource.plural, resource.group, name));
        }
        let current = decode_as(resource, &kv)?;
        let mut next = prepare_update(resource, strategy, subresource, &current, body.clone());
        admit(resource, strategy, &mut next, subresource)?;
        validate_update(resource, strategy, subresource, &current, &next)?;
        // Most admission plugins leave subresource writes (status, by controllers)
        // alone; a kind's strategy may check its own subresources.
        if subresource.is_none() {
            if let Some(admitting) = strategy.admit_update(ctx, &next) {
                admitting.await?;
            }
            crate::admission::quota::admit(ctx, &next, Some(&current), !dry_run).await?;
        } else if let Some(sub) = subresource
            && let Some(admitting) = strategy.admit_subresource_update(ctx, sub, &current, &next)
        {
            admitting.await?;
        }
        managed::record_update(
            Some(&current),
            &mut next,
            query.field_manager(),
            subresource,
            resource.has_status(),
        );
        if dry_run {
            return Ok(answer_with(ctx, StatusCode::OK, next));
        }
        match write_saved(ctx, &key, kv.mod_revision, &current, next).await {
            Ok(stored) => return Ok(stored.answer(ctx, StatusCode::OK)),
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_))
                if precondition.is_none() =>
            {
                continue;
            }
            Err(e) => return Err(store_error(e, resource, name)),
        }
    }
    Err(ApiError::modified(resource.plural, resource.group, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy;
    use rind_api::registry::Registry;

    #[test]
    fn same_object_ignores_only_the_resource_version() {
        let a = json!({"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "1"}, "spec": {"x": 1}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = json!("2");
        assert!(same_object(&a, &b));
        b["metadata"]["labels"] = json!({"l": "v"});
        assert!(!same_object(&a, &b));
        let mut c = a.clone();
        c["status"] = json!({});
        assert!(!same_object(&a, &c));
        let mut d = a.clone();
        d["spec"]["x"] = json!(2);
        assert!(!same_object(&a, &d));
    }

    #[test]
    fn updates_keep_server_fields_and_status() {
        let reg = Registry::default();
        let pods = reg.lookup("", "v1", "pods").unwrap();
        let current = json!({"metadata": {"name": "p", "uid": "u1", "creationTimestamp": "t", "generation": 1, "resourceVersion": "5"},
                             "spec": {"a": 1}, "status": {"phase": "Running"}});
        let incoming = json!({"metadata": {"name": "p", "uid": "other", "labels": {"x": "y"}}, "spec": {"a": 2}, "status": {"phase": "Failed"}});
        let next = prepare_update(pods, strategy::of(pods), None, &current, incoming);
        assert_eq!(next["metadata"]["uid"], "u1");
        assert_eq!(next["metadata"]["generation"], 2);
        assert_eq!(next["metadata"]["labels"]["x"], "y");
        assert_eq!(next["status"]["phase"], "Running");
        let status_write = prepare_update(
            pods,
            strategy::of(pods),
            Some("status"),
            &current,
            json!({"spec": {"a": 9}, "status": {"phase": "Succeeded"}}),
        );
        assert_eq!(status_write["spec"]["a"], 1);
        assert_eq!(status_write["status"]["phase"], "Succeeded");
    }
}
