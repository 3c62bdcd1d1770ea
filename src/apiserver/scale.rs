//! `GET|PUT|PATCH …/NAME/scale`: the workload seen and written as an
//! `autoscaling/v1 Scale`. Writes go through the same update path as the main
//! resource, so defaults, validation, generation and conflicts behave the same.

use super::handlers::{
    MAX_RETRIES, admit, apply_patch, prepare_update, read, resource_version_of, store_error,
    validate_update, write_update,
};
use super::request::{BodyType, Query, Rendering};
use super::strategy;
use super::{Json, Server};
use rind_api::crd;
use rind_api::registry::Resource;
use rind_api::scale::{apply_scale, to_scale};
use rind_api::status::ApiError;
use rind_store::StoreError;
use serde_json::Value;

pub async fn get(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
) -> Result<Json, ApiError> {
    let (_, object) = read(server, resource, &resource.key(ns, name), name).await?;
    Ok(Json::ok(scale_of(resource, &object), Rendering::Object))
}

/// The Scale view: at the CRD's paths for custom objects, the workload fields otherwise.
fn scale_of(resource: &Resource, object: &Value) -> Value {
    match resource.custom.and_then(|c| c.scale.as_ref()) {
        Some(paths) => crd::to_scale(paths, object),
        None => to_scale(object),
    }
}

/// A replacement `Scale` (PUT) or a patch to apply to the current one (PATCH).
pub enum ScaleWrite {
    Replace(Value),
    Patch(Value, BodyType),
}

pub async fn write(
    server: &Server,
    resource: &'static Resource,
    ns: Option<&str>,
    name: &str,
    request: ScaleWrite,
    query: &Query,
) -> Result<Json, ApiError> {
    let dry_run = query.get("dryRun") == Some("All");
    let key = resource.key(ns, name);
    let strategy = strategy::of(resource);
    for _ in 0..MAX_RETRIES {
        let (kv, current) = read(server, resource, &key, name).await?;
        let scale = match &request {
            ScaleWrite::Replace(body) => body.clone(),
            ScaleWrite::Patch(patch, kind) => {
                apply_patch(&scale_of(resource, &current), patch, *kind)?
            }
        };
        if let Some(rv) = resource_version_of(&scale)
            && rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::modified(resource.plural, resource.group, name));
        }
        let mut incoming = current.clone();
        match resource.custom.and_then(|c| c.scale.as_ref()) {
            Some(paths) => crd::apply_scale(paths, &mut incoming, &scale),
            None => apply_scale(&mut incoming, &scale),
        }
        .map_err(|causes| ApiError::invalid("Scale", "autoscaling", name, &causes))?;
        let mut next = prepare_update(resource, strategy, None, &current, incoming);
        admit(resource, strategy, &mut next, None)?;
        validate_update(resource, strategy, None, &current, &next)?;
        rind_api::patch::apply::record_update(
            Some(&current),
            &mut next,
            query.field_manager(),
            Some("scale"),
            resource.has_status(),
        );
        if dry_run {
            return Ok(Json::ok(scale_of(resource, &next), Rendering::Object));
        }
        match write_update(server, resource, &key, kv.mod_revision, &current, next).await {
            Ok(stored) => return Ok(Json::ok(scale_of(resource, &stored), Rendering::Object)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(e, resource, name)),
        }
    }
    Err(ApiError::modified(resource.plural, resource.group, name))
}
