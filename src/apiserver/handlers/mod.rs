//! The verbs on resources: get, list, create, update, patch, delete, deletecollection
//! and the pod subresource that writes (`binding`), one module per verb. Every handler
//! is generic over the registry entry; what a kind does differently comes from its
//! `strategy`, looked up once per request into the `Ctx` the handlers share. This
//! module holds what several verbs use: the context, store errors, decoding, admission
//! and the answer to a write.

mod bind;
mod continue_token;
mod create;
mod delete;
mod encoding;
mod get;
mod list;
mod patch;
mod update;

pub use bind::bind;
pub use create::{create, create_object};
pub use delete::{DeleteOptions, Deleted, delete, delete_collection, delete_object};
pub use get::get;
pub use list::{Filter, collect, list, scan};
pub use patch::{PatchBody, apply_patch, patch};
pub use update::{prepare_update, update, validate_update, write_update};

use super::request::{Query, Rendering};
use super::strategy::{self, Strategy};
use super::{Json, Server};
use http::StatusCode;
use rind_api::meta::{self, metadata_mut};
use rind_api::registry::Resource;
use rind_api::status::ApiError;
use rind_api::table::{IncludeObject, partial_metadata, table};
use rind_api::{crd, kinds, validation};
use rind_store::{KeyValue, StoreError};
use serde_json::{Value, json};

/// How many times a write re-reads and retries after losing a race with another writer.
pub(super) const MAX_RETRIES: usize = 8;

/// What every verb works from: the server, the endpoint the request names, the
/// kind's rules and how the client wants the answer.
pub struct Ctx<'a> {
    pub server: &'a Server,
    pub resource: &'static Resource,
    /// Resolved once here, so the hooks cost no lookup per call.
    pub strategy: &'static dyn Strategy,
    pub namespace: Option<&'a str>,
    pub rendering: Rendering,
    pub query: &'a Query,
    /// Who the request acts as (None for the server's own writes).
    pub user: Option<&'a crate::User>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        server: &'a Server,
        resource: &'static Resource,
        namespace: Option<&'a str>,
        rendering: Rendering,
        query: &'a Query,
    ) -> Self {
        Ctx {
            server,
            resource,
            strategy: strategy::of(resource),
            namespace,
            rendering,
            query,
            user: None,
        }
    }

    /// The context of a request made by `user`.
    pub fn with_user(mut self, user: Option<&'a crate::User>) -> Self {
        self.user = user;
        self
    }

    fn dry_run(&self) -> bool {
        self.query.get("dryRun") == Some("All")
    }

    fn key(&self, name: &str) -> String {
        self.resource.key(self.namespace, name)
    }
}

/// Maps a store failure to the API error upstream would give for `resource`/`name`.
pub fn store_error(err: StoreError, resource: &Resource, name: &str) -> ApiError {
    match err {
        StoreError::AlreadyExists(_) => {
            ApiError::already_exists(resource.plural, resource.group, name)
        }
        StoreError::NotFound(_) => ApiError::not_found(resource.plural, resource.group, name),
        StoreError::Conflict { .. } => ApiError::modified(resource.plural, resource.group, name),
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::FutureRevision(rev) => {
            ApiError::bad_request(format!("Too large resource version: {rev}"))
        }
        StoreError::Unavailable(msg) => {
            ApiError::unavailable(format!("storage is unavailable: {msg}"))
        }
    }
}

/// A stored value as the API shows it: with its resourceVersion (the key's mod revision).
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    set_resource_version(&mut object, kv.mod_revision);
    Ok(object)
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    metadata_mut(object).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// A stored value in the form `resource` serves.
pub fn decode_as(resource: &Resource, kv: &KeyValue) -> Result<Value, ApiError> {
    Ok(rind_api::convert::from_storage(resource, decode(kv)?))
}

pub(super) fn resource_version_of(object: &Value) -> Option<&str> {
    meta::str_at(object, &["metadata", "resourceVersion"]).filter(|rv| !rv.is_empty())
}

/// Reads the object at `key`, 404 when missing.
pub(super) async fn read(
    server: &Server,
    resource: &Resource,
    key: &str,
    name: &str,
) -> Result<(KeyValue, Value), ApiError> {
    let kv = server
        .store
        .get(key)
        .await
        .map_err(|e| store_error(e, resource, name))?
        .ok_or_else(|| ApiError::not_found(resource.plural, resource.group, name))?;
    let object = decode_as(resource, &kv)?;
    Ok((kv, object))
}

/// One object in the rendering the client asked for.
fn render_one(ctx: &Ctx<'_>, object: Value) -> Value {
    match ctx.rendering {
        Rendering::Object => object,
        Rendering::Metadata => partial_metadata(&object),
        Rendering::Table => {
            let rv = resource_version_of(&object).unwrap_or_default().to_string();
            table(
                ctx.resource,
                &[object],
                json!({"resourceVersion": rv}),
                IncludeObject::parse(ctx.query.get("includeObject")),
            )
        }
    }
}

/// The answer carrying one object, `status` 200 or 201.
fn answer_with(ctx: &Ctx<'_>, status: StatusCode, object: Value) -> Json {
    Json::with_status(status, render_one(ctx, object), ctx.rendering)
}

/// A written object, with its JSON as served when that could be made from the bytes
/// just stored (saving a second serialization of the object for the answer).
pub struct Saved {
    pub object: Value,
    pub json: Option<Vec<u8>>,
}

impl Saved {
    fn new(object: Value) -> Self {
        Saved { object, json: None }
    }

    /// The answer to the write: the object as asked for (`status` 200 or 201).
    fn answer(self, ctx: &Ctx<'_>, status: StatusCode) -> Json {
        match (ctx.rendering, self.json) {
            (Rendering::Object, Some(bytes)) => Json::bytes(status, bytes, ctx.rendering),
            _ => answer_with(ctx, status, self.object),
        }
    }
}

/// Checks `kind`/`apiVersion` of a body against the endpoint, filling them when absent.
fn check_type(
    resource: &Resource,
    object: &mut Value,
    expected_kind: &str,
) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let api_version = if expected_kind == resource.kind {
        resource.api_version()
    } else {
        "v1".to_string()
    };
    match object.get("kind").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() && kind != expected_kind => {
            return Err(ApiError::bad_request(format!(
                "the kind of the request body ({kind}) does not match the expected kind ({expected_kind})"
            )));
        }
        _ => object["kind"] = json!(expected_kind),
    }
    match object.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != api_version && expected_kind == resource.kind => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
        _ => object["apiVersion"] = json!(api_version),
    }
    Ok(())
}

/// Makes the object's namespace the request's, rejecting a different one.
fn check_namespace(
    resource: &Resource,
    object: &mut Value,
    ns: Option<&str>,
) -> Result<(), ApiError> {
    let metadata = metadata_mut(object);
    if !resource.namespaced {
        metadata.remove("namespace");
        return Ok(());
    }
    let Some(ns) = ns else {
        return Err(ApiError::bad_request(
            "a namespace is required to create or update this resource",
        ));
    };
    match metadata.get("namespace").and_then(Value::as_str) {
        Some(body_ns) if !body_ns.is_empty() && body_ns != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            metadata.insert("namespace".into(), json!(ns));
            Ok(())
        }
    }
}

/// Name, defaults and validation shared by create and update.
pub(super) fn admit(
    resource: &Resource,
    strategy: &dyn Strategy,
    object: &mut Value,
    subresource: Option<&str>,
) -> Result<(), ApiError> {
    // Whatever the request's fieldValidation, unknown fields are never stored.
    super::field_validation::prune(resource, object)?;
    admit_pruned(resource, strategy, object, subresource)
}

/// `admit` for an object known to hold no unknown fields.
fn admit_pruned(
    resource: &Resource,
    strategy: &dyn Strategy,
    object: &mut Value,
    subresource: Option<&str>,
) -> Result<(), ApiError> {
    let name = meta::name(object).to_string();
    let mut causes = validation::validate_name(resource.name_rule, &name, "metadata.name");
    causes.extend(validation::validate_metadata(object));
    if let Some(custom) = resource.custom {
        // The schema covers status too, so status writes are pruned and checked as well.
        causes.extend(crd::admit(custom, object));
    }
    if subresource.is_none() {
        kinds::default(resource, object);
        causes.extend(kinds::validate(resource, object));
        strategy.default_and_validate(object, &mut causes);
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            resource.kind,
            resource.group,
            &name,
            &causes,
        ))
    }
}
