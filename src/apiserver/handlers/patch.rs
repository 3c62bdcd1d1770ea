//! PATCH of an object or its `status`: JSON, merge and strategic merge patches, and
//! server-side apply (which also creates what does not exist yet). The patched object
//! goes through the update path's rules; the watch cache's copy saves the read.

use super::create::create_saved;
use super::update::write_saved;
use super::{
    Ctx, MAX_RETRIES, admit, admit_pruned, answer_with, check_type, decode_as, prepare_update,
    resource_version_of, store_error, validate_update,
};
use crate::Json;
use crate::request::BodyType;
use http::StatusCode;
use rind_api::meta::{self, metadata_mut};
use rind_api::patch::{Node, apply as managed, strategic};
use rind_api::status::{ApiError, Cause, StatusDetails};
use rind_store::StoreError;
use serde_json::{Value, json};

pub fn apply_patch(current: &Value, patch: &Value, kind: BodyType) -> Result<Value, ApiError> {
    let mut target = current.clone();
    match kind {
        BodyType::JsonPatch => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is malformed: {e}")))?;
            json_patch::patch(&mut target, &ops).map_err(|e| {
                ApiError::unprocessable(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
        }
        BodyType::MergePatch | BodyType::Json | BodyType::Yaml => {
            json_patch::merge(&mut target, patch)
        }
        // Upstream accepts only the patch media types for PATCH.
        BodyType::Protobuf => {
            return Err(ApiError::unsupported_media_type(
                "the body of a PATCH must be a patch (json-patch, merge-patch, strategic-merge-patch or apply-patch), not protobuf",
            ));
        }
        BodyType::StrategicMergePatch | BodyType::ApplyPatch => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "the strategic merge patch must be a JSON object",
                ));
            }
            // The stored object names its own type (a Scale for the scale subresource).
            strategic::apply(&mut target, patch, Node::for_object(current))
        }
    }
    Ok(target)
}

/// Upstream's answer to a strategic merge patch of a custom object.
pub(super) fn unsupported_patch_type() -> ApiError {
    ApiError::unsupported_media_type(
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    )
}

/// Maps a failed server-side apply to upstream's Status: conflicts are 409 with one
/// `FieldManagerConflict` cause per field.
fn apply_error(err: managed::ApplyError) -> ApiError {
    match err {
        managed::ApplyError::Conflicts(ref conflicts) => ApiError {
            code: 409,
            reason: "Conflict",
            message: err.to_string(),
            details: Some(Box::new(StatusDetails::causes(
                conflicts
                    .iter()
                    .map(|c| Cause {
                        reason: "FieldManagerConflict",
                        message: format!("conflict with {}", c.manager),
                        field: c.field.clone(),
                    })
                    .collect(),
            ))),
        },
        managed::ApplyError::Invalid(message) => ApiError::bad_request(message),
    }
}

/// A PATCH request's body, as decoded and checked.
pub struct PatchBody {
    pub patch: Value,
    pub kind: BodyType,
    /// See `field_validation::PatchCheck`.
    pub adds_known_fields_only: bool,
}

pub async fn patch(
    ctx: &Ctx<'_>,
    name: &str,
    subresource: Option<&str>,
    body: PatchBody,
) -> Result<Json, ApiError> {
    let &Ctx {
        server,
        resource,
        strategy,
        query,
        ..
    } = ctx;
    let PatchBody {
        patch: patch_body,
        kind,
        adds_known_fields_only,
    } = body;
    let dry_run = ctx.dry_run();
    let key = ctx.key(name);
    if resource.custom.is_some() && kind == BodyType::StrategicMergePatch {
        // Custom objects have no Go types to carry patch strategies: upstream refuses.
        return Err(unsupported_patch_type());
    }
    if kind == BodyType::ApplyPatch && query.get("fieldManager").is_none() {
        return Err(ApiError::bad_request(
            "PATCH: fieldManager is required for apply requests",
        ));
    }
    // The watch cache's copy, when it has one, saves the read; a stale copy only costs
    // a failed compare-and-swap (or precondition) and a retry from the store.
    // A dry run answers from the store's own copy.
    let mut cached = if dry_run {
        None
    } else {
        server.watch_cache.latest(resource, &key).await
    };
    for _ in 0..MAX_RETRIES {
        let from_cache = cached.is_some();
        let found = match cached.take() {
            Some(hit) => Some(hit),
            None => server
                .store
                .get(&key)
                .await
                .map_err(|e| store_error(e, resource, name))?
                .map(|kv| decode_as(resource, &kv).map(|object| (kv.mod_revision, object)))
                .transpose()?,
        };
        let Some((revision, current)) = found else {
            if kind == BodyType::ApplyPatch && subresource.is_none() {
                // Apply creates what does not exist yet.
                let mut object = patch_body.clone();
                if !object.is_object() {
                    return Err(ApiError::bad_request(
                        "the request body must be a JSON object",
                    ));
                }
                let body_name = meta::name(&object);
                if !body_name.is_empty() && body_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )));
                }
                metadata_mut(&mut object).insert("name".into(), json!(name));
                let applied = managed::server_side_apply(
                    None,
                    &object,
                    query.field_manager(),
                    query.flag("force"),
                    None,
                    resource.has_status(),
                )
                .map_err(apply_error)?;
                let entries = applied
                    .get("metadata")
                    .and_then(|m| m.get("managedFields"))
                    .cloned();
                let record = |object: &mut Value| {
                    if let Some(entries) = &entries {
                        metadata_mut(object).insert("managedFields".into(), entries.clone());
                    }
                };
                let created = create_saved(ctx, applied, false, &record).await?;
                return Ok(answer_with(ctx, StatusCode::CREATED, created.object));
            }
            return Err(ApiError::not_found(resource.plural, resource.group, name));
        };
        let judged = (|| {
            let patched = if kind == BodyType::ApplyPatch {
                let mut applied = patch_body.clone();
                check_type(resource, &mut applied, resource.kind)?;
                managed::server_side_apply(
                    Some(&current),
                    &applied,
                    query.field_manager(),
                    query.flag("force"),
                    subresource,
                    resource.has_status(),
                )
                .map_err(apply_error)?
            } else {
                apply_patch(&current, &patch_body, kind)?
            };
            let precondition = resource_version_of(&patched).map(str::to_string);
            if let Some(rv) = &precondition
                && *rv != revision.to_string()
            {
                return Err(ApiError::modified(resource.plural, resource.group, name));
            }
            let mut incoming = patched;
            check_type(resource, &mut incoming, resource.kind)?;
            let mut next = prepare_update(resource, strategy, subresource, &current, incoming);
            if adds_known_fields_only {
                admit_pruned(resource, strategy, &mut next, subresource)?;
            } else {
                admit(resource, strategy, &mut next, subresource)?;
            }
            validate_update(resource, strategy, subresource, &current, &next)?;
            if kind != BodyType::ApplyPatch {
                managed::record_update(
                    Some(&current),
                    &mut next,
                    query.field_manager(),
                    subresource,
                    resource.has_status(),
                );
            }
            Ok(next)
        })();
        let next = match judged {
            Ok(next) => next,
            // Refused against the cached copy, which may be stale: ask the store.
            Err(_) if from_cache => continue,
            Err(e) => return Err(e),
        };
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
        if dry_run {
            return Ok(answer_with(ctx, StatusCode::OK, next));
        }
        match write_saved(ctx, &key, revision, &current, next).await {
            Ok(stored) => return Ok(stored.answer(ctx, StatusCode::OK)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(e, resource, name)),
        }
    }
    Err(ApiError::modified(resource.plural, resource.group, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_patches_merge_lists_by_key() {
        let current =
            json!({"spec": {"containers": [{"name": "a"}]}, "metadata": {"labels": {"a": "1"}}});
        let patch = json!({"metadata": {"labels": {"b": "2"}}, "spec": {"$setElementOrder/containers": [{"name": "a"}]}});
        let out = apply_patch(&current, &patch, BodyType::StrategicMergePatch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(out["spec"], json!({"containers": [{"name": "a"}]}));
    }
}
