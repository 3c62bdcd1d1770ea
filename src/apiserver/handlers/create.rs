//! POST: a new object, named by the client or generated from `generateName`, in a
//! namespace that exists and is not being deleted, with the server's metadata, the
//! kind's admission and its `managedFields`. Bootstrap creates through here too.

use super::encoding::encode_stored;
use super::{
    Ctx, MAX_RETRIES, Saved, admit, admit_pruned, check_namespace, check_type, decode,
    set_resource_version, store_error,
};
use crate::request::{Query, Rendering};
use crate::{Json, Server};
use http::StatusCode;
use rind_api::kinds;
use rind_api::meta::{self, format_time, metadata_mut};
use rind_api::patch::apply as managed;
use rind_api::registry::Resource;
use rind_api::status::{ApiError, Cause};
use rind_store::StoreError;
use serde_json::{Value, json};

fn generate_suffix() -> String {
    // Upstream's alphabet: no vowels (no words) and no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn ensure_namespace(ctx: &Ctx<'_>, ns: &str) -> Result<(), ApiError> {
    let &Ctx {
        server, resource, ..
    } = ctx;
    let namespaces = server
        .registry
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
    let key = namespaces.key(None, ns);
    // The mirror answers for namespaces it has seen (as upstream's admission answers
    // from an informer); one created a moment ago may not be there yet, so a miss asks
    // the store.
    let terminating = match server.namespaces.get(&key) {
        Some(state) => state.terminating(),
        None => {
            let found = server
                .store
                .get(&key)
                .await
                .map_err(|e| store_error(e, resource, ns))?;
            let Some(kv) = found else {
                return Err(ApiError::not_found("namespaces", "", ns));
            };
            meta::str_at(&decode(&kv)?, &["metadata", "deletionTimestamp"]).is_some()
        }
    };
    if terminating {
        return Err(ApiError::forbidden(
            resource.plural,
            resource.group,
            "",
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

/// Creates `object` under `resource` in `ns` outside any request (bootstrap).
pub async fn create_object(
    server: &Server,
    resource: &'static Resource,
    ns: Option<&str>,
    object: Value,
) -> Result<Value, ApiError> {
    let query = Query::default();
    let ctx = Ctx::new(server, resource, ns, Rendering::Object, &query);
    create_saved(&ctx, object, false, &|_| {})
        .await
        .map(|saved| saved.object)
}

/// The whole create path; `record_fields` runs on the defaulted object just before it
/// is stored and writes its `managedFields` (who set which fields). `pruned`: the
/// body's unknown fields were dropped already (`check_object`), and what the create
/// path adds is known, so admission need not walk the schema again. The created
/// object keeps its JSON as served when it has it.
pub(super) async fn create_saved(
    ctx: &Ctx<'_>,
    mut object: Value,
    pruned: bool,
    record_fields: &(dyn Fn(&mut Value) + Sync),
) -> Result<Saved, ApiError> {
    let &Ctx {
        server,
        resource,
        strategy,
        namespace: ns,
        ..
    } = ctx;
    let dry_run = ctx.dry_run();
    check_type(resource, &mut object, resource.kind)?;
    check_namespace(resource, &mut object, ns)?;
    let generate_name = meta::str_at(&object, &["metadata", "generateName"]).map(str::to_string);
    let explicit_name = !meta::name(&object).is_empty();
    if !explicit_name && generate_name.is_none() {
        return Err(ApiError::invalid(
            resource.kind,
            resource.group,
            "",
            &[Cause::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    if resource.namespaced
        && let Some(ns) = ns
    {
        ensure_namespace(ctx, ns).await?;
    }
    {
        let metadata = metadata_mut(&mut object);
        for key in [
            "resourceVersion",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
        ] {
            metadata.remove(key);
        }
        metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        metadata.insert("creationTimestamp".into(), json!(format_time(meta::now())));
        // Custom objects always count generations, whatever their fields are.
        if object.get("spec").is_some() || resource.custom.is_some() {
            metadata_mut(&mut object).insert("generation".into(), json!(1));
        }
    }
    strategy.prepare_for_create(&mut object);
    kinds::prepare_create(resource, &mut object);
    let after_field_manager = match strategy.admit_create(ctx, &mut object) {
        Some(admitting) => admitting.await?,
        None => None,
    };
    for _ in 0..MAX_RETRIES {
        // Only generated names are retried: an object with a name of its own is tried
        // once, so it is moved rather than copied.
        let mut candidate = if explicit_name {
            std::mem::take(&mut object)
        } else {
            object.clone()
        };
        if !explicit_name && let Some(prefix) = &generate_name {
            metadata_mut(&mut candidate).insert(
                "name".into(),
                json!(format!("{prefix}{}", generate_suffix())),
            );
        }
        if pruned {
            admit_pruned(resource, strategy, &mut candidate, None)?;
        } else {
            admit(resource, strategy, &mut candidate, None)?;
        }
        record_fields(&mut candidate);
        if let Some(after) = &after_field_manager {
            after(&mut candidate)?;
        }
        // ResourceQuota admission runs last, on the object as it will be stored; a
        // dry run is checked but charges nothing.
        crate::admission::quota::admit(ctx, &candidate, None, !dry_run).await?;
        let name = meta::name(&candidate).to_string();
        if !dry_run && let Some(reserving) = strategy.begin_create(ctx, &mut candidate) {
            reserving.await?;
        }
        if dry_run {
            return Ok(Saved::new(candidate));
        }
        let key = resource.key(ns, &name);
        let encoded = encode_stored(resource, &candidate)?;
        match server.store.create(&key, encoded.bytes.clone()).await {
            Ok(revision) => {
                set_resource_version(&mut candidate, revision);
                return Ok(Saved {
                    object: candidate,
                    json: encoded.served(revision),
                });
            }
            Err(e) => {
                // What was reserved for the object is given back before anything else.
                if let Some(releasing) = strategy.abort_create(ctx, &candidate) {
                    releasing.await?;
                }
                // A generated name that collides gets another suffix, as upstream retries.
                if !explicit_name && matches!(e, StoreError::AlreadyExists(_)) {
                    continue;
                }
                return Err(store_error(e, resource, &name));
            }
        }
    }
    Err(ApiError::internal("could not generate a unique name"))
}

/// POST: creates `body`, which `field_validation::check_object` has checked and pruned.
pub async fn create(ctx: &Ctx<'_>, body: Value) -> Result<Json, ApiError> {
    let resource = ctx.resource;
    let manager = ctx.query.field_manager();
    let record = |object: &mut Value| {
        managed::record_update(None, object, manager, None, resource.has_status())
    };
    if !ctx.dry_run() {
        ctx.server.watch_cache.ensure_feed(resource).await;
    }
    // The HTTP layer checked (and pruned) the body with `check_object`.
    let created = create_saved(ctx, body, true, &record).await?;
    Ok(created.answer(ctx, StatusCode::CREATED))
}
