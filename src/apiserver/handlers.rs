//! The verbs on resources: get, list, create, update, patch, delete, deletecollection
//! and the pod subresources that write (`binding`). Every handler is generic over the
//! registry entry; per-kind behaviour (pod defaults, graceful pod deletion) hangs off
//! the entry's kind.

use super::request::{BodyType, Query, Rendering};
use super::{Json, Server};
use base64::Engine;
use http::StatusCode;
use rind_api::meta::{self, child_mut, format_time, metadata_mut};
use rind_api::patch::{Node, apply as managed, strategic};
use rind_api::registry::{Resource, Storage};
use rind_api::selector::{FieldSelector, LabelSelector};
use rind_api::status::{ApiError, Cause, success};
use rind_api::table::{IncludeObject, partial_metadata, table};
use rind_api::{convert, crd, kinds, pods, services, validation};
use rind_store::{KeyValue, StoreError};
use serde_json::{Value, json};

/// How many times a write re-reads and retries after losing a race with another writer.
pub(super) const MAX_RETRIES: usize = 8;

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
    Ok(convert::from_storage(resource, decode(kv)?))
}

/// The bytes stored for an object: the resourceVersion is the key's revision, not data.
fn encode(resource: &Resource, object: &Value) -> Result<Vec<u8>, ApiError> {
    encode_stored(resource, object).map(|e| e.bytes)
}

/// An object's stored bytes, and for kinds stored as served where its metadata's
/// members begin in them, so the served JSON is those bytes with the resourceVersion
/// written in (see `Encoded::served`).
struct Encoded {
    bytes: Vec<u8>,
    /// Offset just past `"metadata":{`.
    metadata_at: Option<usize>,
}

impl Encoded {
    /// The object as served at `revision`, without serializing it again.
    fn served(&self, revision: i64) -> Option<Vec<u8>> {
        let at = self.metadata_at?;
        let rv = format!("\"resourceVersion\":\"{revision}\"");
        let mut out = Vec::with_capacity(self.bytes.len() + rv.len() + 1);
        out.extend_from_slice(&self.bytes[..at]);
        out.extend_from_slice(rv.as_bytes());
        if self.bytes.get(at) != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(&self.bytes[at..]);
        Some(out)
    }
}

fn encode_stored(resource: &Resource, object: &Value) -> Result<Encoded, ApiError> {
    let failed = |e: serde_json::Error| ApiError::internal(format!("cannot encode object: {e}"));
    if resource.storage != Storage::Native || resource.custom.is_some() {
        let mut stored = convert::to_storage(resource, object.clone());
        metadata_mut(&mut stored).remove("resourceVersion");
        return Ok(Encoded {
            bytes: serde_json::to_vec(&stored).map_err(failed)?,
            metadata_at: None,
        });
    }
    // Stored as served: serialized in place (no trimmed deep copy), the top level by
    // hand so the position of metadata's members is known.
    let Value::Object(root) = object else {
        return Ok(Encoded {
            bytes: serde_json::to_vec(object).map_err(failed)?,
            metadata_at: None,
        });
    };
    let mut out = Vec::with_capacity(2048);
    let mut metadata_at = None;
    out.push(b'{');
    for (i, (key, value)) in root.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key).map_err(failed)?;
        out.push(b':');
        match value {
            Value::Object(metadata) if key == "metadata" => {
                out.push(b'{');
                metadata_at = Some(out.len());
                let members = metadata.iter().filter(|(k, _)| *k != "resourceVersion");
                for (j, (k, v)) in members.enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, k).map_err(failed)?;
                    out.push(b':');
                    serde_json::to_writer(&mut out, v).map_err(failed)?;
                }
                out.push(b'}');
            }
            _ => serde_json::to_writer(&mut out, value).map_err(failed)?,
        }
    }
    out.push(b'}');
    Ok(Encoded {
        bytes: out,
        metadata_at,
    })
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
    pub fn answer(
        self,
        resource: &Resource,
        status: StatusCode,
        rendering: Rendering,
        query: &Query,
    ) -> Json {
        match (rendering, self.json) {
            (Rendering::Object, Some(bytes)) => Json::bytes(status, bytes, rendering),
            _ => Json::with_status(
                status,
                render_one(resource, self.object, rendering, query),
                rendering,
            ),
        }
    }
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
pub fn render_one(
    resource: &Resource,
    object: Value,
    rendering: Rendering,
    query: &Query,
) -> Value {
    match rendering {
        Rendering::Object => object,
        Rendering::Metadata => partial_metadata(&object),
        Rendering::Table => {
            let rv = resource_version_of(&object).unwrap_or_default().to_string();
            table(
                resource,
                &[object],
                json!({"resourceVersion": rv}),
                IncludeObject::parse(query.get("includeObject")),
            )
        }
    }
}

pub async fn get(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    rendering: Rendering,
    query: &Query,
) -> Result<Json, ApiError> {
    let (_, object) = read(server, resource, &resource.key(ns, name), name).await?;
    Ok(Json::ok(
        render_one(resource, object, rendering, query),
        rendering,
    ))
}

/// The label and field selectors of a list or watch.
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub fn from_query(resource: &Resource, query: &Query) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(query.raw("labelSelector").unwrap_or_default())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(
            query.raw("fieldSelector").unwrap_or_default(),
            resource.selectable_fields,
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Filter { labels, fields })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(meta::labels(object)) && self.fields.matches(object)
    }

    /// The top-level fields of an object (`metadata`, `spec`, …) `matches` looks at.
    pub fn top_level_fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = self
            .fields
            .paths()
            .map(|path| path.split('.').next().unwrap_or(path))
            .collect();
        if !self.labels.is_empty() {
            fields.push("metadata");
        }
        fields.sort_unstable();
        fields.dedup();
        fields
    }
}

/// Where a paged list resumes: the store revision it reads at and the last key it returned.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let json = json!({"rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// Matching objects, at most `limit` (0 = all), plus the list's revision and continue token.
pub async fn collect(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    filter: &Filter,
    limit: usize,
    query: &Query,
) -> Result<(Vec<Value>, i64, Option<String>), ApiError> {
    let mut items = Vec::new();
    let (revision, next) = scan(server, resource, ns, limit, query, |kv| {
        let object = decode_as(resource, kv)?;
        let keep = filter.matches(&object);
        if keep {
            items.push(object);
        }
        Ok(keep)
    })
    .await?;
    Ok((items, revision, next))
}

/// Walks the keys a list covers (from `continue` or the start, at the revision the
/// query asks for), page by page, handing each to `accept`, which says whether it
/// counted towards `limit`. Returns the list's revision and the continue token when
/// `limit` stopped it early.
pub(super) async fn scan(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    limit: usize,
    query: &Query,
    mut accept: impl FnMut(&KeyValue) -> Result<bool, ApiError>,
) -> Result<(i64, Option<String>), ApiError> {
    let prefix = resource.prefix(ns);
    let (mut start_after, mut revision) = match query.get("continue") {
        Some(token) => {
            let token = decode_continue(token)?;
            if !token.start.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "continue key is not valid for this list",
                ));
            }
            (Some(token.start), Some(token.rv))
        }
        None => {
            let exact = query.get("resourceVersionMatch") == Some("Exact");
            let rv = query.int("resourceVersion")?;
            (None, if exact { rv } else { None })
        }
    };
    let mut accepted = 0;
    loop {
        // Ask for a little more than the remainder so filtering rarely needs a second page.
        let want = if limit == 0 {
            0
        } else {
            (limit - accepted).max(1) + 1
        };
        let page = server
            .store
            .list(&prefix, start_after.as_deref(), want, revision)
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                other => store_error(other, resource, ""),
            })?;
        revision = Some(page.revision);
        let count = page.items.len();
        for (i, kv) in page.items.iter().enumerate() {
            if accept(kv)? {
                accepted += 1;
            }
            if limit != 0 && accepted >= limit {
                let next =
                    (i + 1 < count || page.more).then(|| encode_continue(page.revision, &kv.key));
                return Ok((page.revision, next));
            }
        }
        if !page.more || count == 0 {
            return Ok((page.revision, None));
        }
        start_after = page.items.last().map(|kv| kv.key.clone());
    }
}

pub async fn list(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    rendering: Rendering,
    query: &Query,
) -> Result<Json, ApiError> {
    let filter = Filter::from_query(resource, query)?;
    let limit = query.int("limit")?.unwrap_or(0).max(0) as usize;
    if super::raw_list::applies(resource, rendering, query) {
        return super::raw_list::list(server, resource, ns, rendering, &filter, limit, query).await;
    }
    let (items, revision, next) = collect(server, resource, ns, &filter, limit, query).await?;
    let mut list_meta = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = next {
        list_meta["continue"] = json!(token);
    }
    let body = match rendering {
        Rendering::Table => table(
            resource,
            &items,
            list_meta,
            IncludeObject::parse(query.get("includeObject")),
        ),
        Rendering::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        Rendering::Object => json!({
            "kind": resource.list_kind(),
            "apiVersion": resource.api_version(),
            "metadata": list_meta,
            "items": items,
        }),
    };
    Ok(Json::ok(body, rendering))
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
    object: &mut Value,
    subresource: Option<&str>,
) -> Result<(), ApiError> {
    // Whatever the request's fieldValidation, unknown fields are never stored.
    super::field_validation::prune(resource, object)?;
    admit_pruned(resource, object, subresource)
}

/// `admit` for an object known to hold no unknown fields.
fn admit_pruned(
    resource: &Resource,
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
        if resource.group.is_empty() && resource.kind == "Pod" {
            pods::default_pod(object);
            causes.extend(pods::validate_pod(object));
        }
        if resource.group.is_empty() && resource.kind == "Service" {
            services::default_service(object);
            causes.extend(services::validate_service(object));
        }
        if resource.group.is_empty() && resource.kind == "Namespace" {
            // Upstream labels every namespace with its name so selectors can pick namespaces.
            let labels = child_mut(metadata_mut(object), "labels");
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            if let Some(root) = object.as_object_mut() {
                // Holds a deleted namespace until its contents are gone (see namespaces.rs).
                child_mut(root, "spec")
                    .entry("finalizers")
                    .or_insert(json!(["kubernetes"]));
            }
            if let Some(root) = object.as_object_mut() {
                child_mut(root, "status")
                    .entry("phase")
                    .or_insert(json!("Active"));
            }
        }
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

fn generate_suffix() -> String {
    // Upstream's alphabet: no vowels (no words) and no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

async fn ensure_namespace(server: &Server, resource: &Resource, ns: &str) -> Result<(), ApiError> {
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

/// Creates `object` under `resource` in `ns`: the whole create path, also used by bootstrap.
pub async fn create_object(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    object: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    create_object_as(server, resource, ns, object, dry_run, &|_| {}).await
}

/// The create path with `record_fields` run on the defaulted object just before it is
/// stored: it writes the object's `managedFields` (who set which fields).
pub async fn create_object_as(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    object: Value,
    dry_run: bool,
    record_fields: &(dyn Fn(&mut Value) + Sync),
) -> Result<Value, ApiError> {
    create_saved(server, resource, ns, object, dry_run, false, record_fields)
        .await
        .map(|saved| saved.object)
}

/// `create_object_as`, keeping the created object's JSON as served when it has it.
/// `pruned`: the body's unknown fields were dropped already (`check_object`), and what
/// the create path adds is known, so admission need not walk the schema again.
#[allow(clippy::too_many_arguments)]
async fn create_saved(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    mut object: Value,
    dry_run: bool,
    pruned: bool,
    record_fields: &(dyn Fn(&mut Value) + Sync),
) -> Result<Saved, ApiError> {
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
        ensure_namespace(server, resource, ns).await?;
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
    if resource.group.is_empty()
        && resource.kind == "Pod"
        && let Some(root) = object.as_object_mut()
    {
        // A new pod's status is the server's to set (Pending), whatever the client sent.
        root.remove("status");
    }
    kinds::prepare_create(resource, &mut object);
    super::storageclass::default_class(server, resource, &mut object).await?;
    super::priority::check_single_default(server, resource, &object).await?;
    let is_pod = resource.group.is_empty() && resource.kind == "Pod";
    let priority = if is_pod {
        Some(super::priority::resolve(server, &object).await?)
    } else {
        None
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
            admit_pruned(resource, &mut candidate, None)?;
        } else {
            admit(resource, &mut candidate, None)?;
        }
        record_fields(&mut candidate);
        if let Some(priority) = &priority {
            // Upstream's admission plugins run after the field manager: what they add
            // is no one's field.
            priority.apply(&mut candidate);
            pods::admit_pod(&mut candidate, None);
        }
        let name = meta::name(&candidate).to_string();
        if resource.group.is_empty() && resource.kind == "Service" && !dry_run {
            super::allocator::allocate(server, &mut candidate).await?;
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
            // A generated name that collides gets another suffix, as upstream retries.
            Err(StoreError::AlreadyExists(_)) if !explicit_name => continue,
            Err(e) => return Err(store_error(e, resource, &name)),
        }
    }
    Err(ApiError::internal("could not generate a unique name"))
}

/// POST: creates `body`, which `field_validation::check_object` has checked and pruned.
pub async fn create(
    server: &Server,
    resource: &'static Resource,
    ns: Option<&str>,
    body: Value,
    rendering: Rendering,
    query: &Query,
) -> Result<Json, ApiError> {
    let dry_run = query.get("dryRun") == Some("All");
    let manager = query.field_manager();
    let record = |object: &mut Value| {
        managed::record_update(None, object, manager, None, resource.has_status())
    };
    if !dry_run {
        server.watch_cache.ensure_feed(resource).await;
    }
    // The HTTP layer checked (and pruned) the body with `check_object`.
    let created = create_saved(server, resource, ns, body, dry_run, true, &record).await?;
    Ok(created.answer(resource, StatusCode::CREATED, rendering, query))
}

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
pub(super) fn prepare_update(
    resource: &Resource,
    subresource: Option<&str>,
    current: &Value,
    incoming: Value,
) -> Value {
    let mut next = if subresource == Some("status") {
        // Status writes change only status (and labels/annotations as upstream allows).
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
    if resource.group.is_empty() && resource.kind == "Service" {
        keep_allocations(current, &mut next);
    }
    if resource.group.is_empty() && resource.kind == "Pod" && subresource.is_none() {
        pods::admit_pod(&mut next, Some(current));
    }
    if resource.group.is_empty() && resource.kind == "Namespace" {
        // A namespace's spec (its finalizers) belongs to the namespace cleanup.
        match current.get("spec") {
            Some(spec) => next["spec"] = spec.clone(),
            None => {
                if let Some(root) = next.as_object_mut() {
                    root.remove("spec");
                }
            }
        }
    }
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
pub(super) fn validate_update(
    resource: &Resource,
    subresource: Option<&str>,
    current: &Value,
    next: &Value,
) -> Result<(), ApiError> {
    if subresource.is_some() {
        return Ok(());
    }
    let mut causes = kinds::validate_update(resource, current, next);
    if resource.group.is_empty() && resource.kind == "Pod" {
        causes.extend(pods::validate_pod_update(current, next));
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

/// A Service keeps its allocated ClusterIP and NodePorts when an update leaves them out.
fn keep_allocations(current: &Value, next: &mut Value) {
    let Some(old_spec) = current.get("spec").and_then(Value::as_object) else {
        return;
    };
    let Some(spec) = next.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["clusterIP", "clusterIPs"] {
        let missing = spec
            .get(key)
            .is_none_or(|v| v.is_null() || v == "" || v == &json!([]));
        if missing && let Some(old) = old_spec.get(key) {
            spec.insert(key.into(), old.clone());
        }
    }
    let tcp = json!("TCP");
    let old_ports = old_spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            if port.contains_key("nodePort") {
                continue;
            }
            let same = old_ports.iter().find(|p| {
                p.get("port") == port.get("port")
                    && p.get("protocol").unwrap_or(&tcp) == port.get("protocol").unwrap_or(&tcp)
            });
            if let Some(node_port) = same.and_then(|p| p.get("nodePort")) {
                port.insert("nodePort".into(), node_port.clone());
            }
        }
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

/// Whether anything still holds the object back from deletion: `metadata.finalizers`,
/// and for namespaces the `spec.finalizers` the namespace cleanup removes.
fn has_finalizers(object: &Value) -> bool {
    let non_empty = |v: Option<&Value>| v.and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let is_namespace = object.get("kind").and_then(Value::as_str) == Some("Namespace");
    non_empty(object.get("metadata").and_then(|m| m.get("finalizers")))
        || (is_namespace && non_empty(object.get("spec").and_then(|s| s.get("finalizers"))))
}

fn is_deletable_now(object: &Value) -> bool {
    let deleting = meta::str_at(object, &["metadata", "deletionTimestamp"]).is_some();
    let grace = object
        .get("metadata")
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    deleting && !has_finalizers(object) && grace == 0
}

/// Writes `next` over `current` (at `revision`), deleting it instead when it is being
/// deleted and nothing holds it any more (last finalizer removed).
pub async fn write_update(
    server: &Server,
    resource: &Resource,
    key: &str,
    revision: i64,
    current: &Value,
    next: Value,
) -> Result<Value, StoreError> {
    write_saved(server, resource, key, revision, current, next)
        .await
        .map(|saved| saved.object)
}

/// `write_update`, keeping the written object's JSON as served when it has it.
async fn write_saved(
    server: &Server,
    resource: &Resource,
    key: &str,
    revision: i64,
    current: &Value,
    mut next: Value,
) -> Result<Saved, StoreError> {
    if same_object(current, &next) {
        return Ok(Saved::new(current.clone()));
    }
    if is_deletable_now(&next) {
        let (_, deleted_at) = server.store.delete(key, Some(revision)).await?;
        set_resource_version(&mut next, deleted_at);
        return Ok(Saved::new(next));
    }
    let encoded = encode_stored(resource, &next).map_err(|e| StoreError::Unavailable(e.message))?;
    let new_revision = server
        .store
        .update(key, encoded.bytes.clone(), revision)
        .await?;
    set_resource_version(&mut next, new_revision);
    Ok(Saved {
        object: next,
        json: encoded.served(new_revision),
    })
}

#[allow(clippy::too_many_arguments)]
pub async fn update(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    mut body: Value,
    rendering: Rendering,
    query: &Query,
) -> Result<Json, ApiError> {
    check_type(resource, &mut body, resource.kind)?;
    let body_name = meta::name(&body);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    metadata_mut(&mut body).insert("name".into(), json!(name));
    check_namespace(resource, &mut body, ns)?;
    let dry_run = query.get("dryRun") == Some("All");
    let key = resource.key(ns, name);
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
                let created =
                    create_object_as(server, resource, ns, body, dry_run, &record).await?;
                return Ok(Json::created(
                    render_one(resource, created, rendering, query),
                    rendering,
                ));
            }
            return Err(ApiError::not_found(resource.plural, resource.group, name));
        };
        if let Some(rv) = &precondition
            && *rv != kv.mod_revision.to_string()
        {
            return Err(ApiError::modified(resource.plural, resource.group, name));
        }
        let current = decode_as(resource, &kv)?;
        let mut next = prepare_update(resource, subresource, &current, body.clone());
        admit(resource, &mut next, subresource)?;
        validate_update(resource, subresource, &current, &next)?;
        super::priority::check_single_default(server, resource, &next).await?;
        managed::record_update(
            Some(&current),
            &mut next,
            query.field_manager(),
            subresource,
            resource.has_status(),
        );
        if dry_run {
            return Ok(Json::ok(
                render_one(resource, next, rendering, query),
                rendering,
            ));
        }
        match write_saved(server, resource, &key, kv.mod_revision, &current, next).await {
            Ok(stored) => return Ok(stored.answer(resource, StatusCode::OK, rendering, query)),
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

pub(super) fn apply_patch(
    current: &Value,
    patch: &Value,
    kind: BodyType,
) -> Result<Value, ApiError> {
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
            details: Some(json!({
                "causes": conflicts.iter().map(|c| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with {}", c.manager),
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
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

#[allow(clippy::too_many_arguments)]
pub async fn patch(
    server: &Server,
    resource: &'static Resource,
    ns: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    body: PatchBody,
    rendering: Rendering,
    query: &Query,
) -> Result<Json, ApiError> {
    let PatchBody {
        patch: patch_body,
        kind,
        adds_known_fields_only,
    } = body;
    let dry_run = query.get("dryRun") == Some("All");
    let key = resource.key(ns, name);
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
                let created =
                    create_object_as(server, resource, ns, applied, dry_run, &record).await?;
                return Ok(Json::created(
                    render_one(resource, created, rendering, query),
                    rendering,
                ));
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
            let mut next = prepare_update(resource, subresource, &current, incoming);
            if adds_known_fields_only {
                admit_pruned(resource, &mut next, subresource)?;
            } else {
                admit(resource, &mut next, subresource)?;
            }
            validate_update(resource, subresource, &current, &next)?;
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
        super::priority::check_single_default(server, resource, &next).await?;
        if dry_run {
            return Ok(Json::ok(
                render_one(resource, next, rendering, query),
                rendering,
            ));
        }
        match write_saved(server, resource, &key, revision, &current, next).await {
            Ok(stored) => return Ok(stored.answer(resource, StatusCode::OK, rendering, query)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(e, resource, name)),
        }
    }
    Err(ApiError::modified(resource.plural, resource.group, name))
}

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

/// The grace period a delete gets: pods bound to a node stop gracefully; everything
/// else (and unbound or finished pods) goes at once.
fn grace_period(resource: &Resource, object: &Value, options: &DeleteOptions) -> i64 {
    if !(resource.group.is_empty() && resource.kind == "Pod") {
        return 0;
    }
    let bound = meta::str_at(object, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty());
    let finished = matches!(
        meta::str_at(object, &["status", "phase"]),
        Some("Succeeded" | "Failed")
    );
    if !bound || finished {
        return 0;
    }
    let default = object
        .get("spec")
        .and_then(|s| s.get("terminationGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .unwrap_or(30);
    // Upstream turns a negative grace period into the smallest graceful one.
    options.grace_period.unwrap_or(default).max(0)
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
        let grace = grace_period(resource, &current, options);
        let has_finalizers = has_finalizers(&current);
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
            let namespace = resource.group.is_empty() && resource.kind == "Namespace";
            if namespace && let Some(root) = next.as_object_mut() {
                child_mut(root, "status").insert("phase".into(), json!("Terminating"));
            }
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
            Ok(_) => return Ok(Deleted::Gone(current)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(e, resource, name)),
        }
    }
    Err(ApiError::modified(resource.plural, resource.group, name))
}

pub async fn delete(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    options: DeleteOptions,
    rendering: Rendering,
    query: &Query,
) -> Result<Json, ApiError> {
    match delete_object(server, resource, ns, name, &options).await? {
        Deleted::Pending(object) => Ok(Json::ok(
            render_one(resource, object, rendering, query),
            rendering,
        )),
        Deleted::Gone(object) if resource.return_deleted_object => Ok(Json::ok(
            render_one(resource, object, rendering, query),
            rendering,
        )),
        Deleted::Gone(object) => {
            let uid = meta::str_at(&object, &["metadata", "uid"]).unwrap_or_default();
            let details =
                json!({"name": name, "group": resource.group, "kind": resource.plural, "uid": uid});
            Ok(Json::ok(success(200, Some(details)), Rendering::Object))
        }
    }
}

pub async fn delete_collection(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    options: DeleteOptions,
    query: &Query,
) -> Result<Json, ApiError> {
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

/// `POST pods/NAME/binding`: the scheduler's decision, written as `spec.nodeName`.
pub async fn bind(
    server: &Server,
    resource: &'static Resource,
    ns: Option<&str>,
    name: &str,
    mut binding: Value,
) -> Result<Json, ApiError> {
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
    let key = resource.key(ns, name);
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
            Ok(_) => return Ok(Json::created(success(201, None), Rendering::Object)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(e, resource, name)),
        }
    }
    Err(ApiError::modified(resource.plural, resource.group, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_api::registry::Registry;

    #[test]
    fn stored_bytes_leave_out_the_resource_version() {
        let reg = Registry::default();
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "resourceVersion": "12", "labels": {"resourceVersion": "kept"}},
            "data": {"resourceVersion": "kept too"}});
        let mut want = object.clone();
        metadata_mut(&mut want).remove("resourceVersion");
        let configmaps = reg.lookup("", "v1", "configmaps").unwrap();
        let stored: Value = serde_json::from_slice(&encode(configmaps, &object).unwrap()).unwrap();
        assert_eq!(stored, want);
        // Kinds stored in another form still go through their conversion.
        let events = reg.lookup("events.k8s.io", "v1", "events").unwrap();
        let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "resourceVersion": "3"}, "note": "hi"});
        let stored: Value = serde_json::from_slice(&encode(events, &event).unwrap()).unwrap();
        assert!(stored["metadata"].get("resourceVersion").is_none());
        assert_eq!(stored["message"], "hi");
        assert!(encode_stored(events, &event).unwrap().served(4).is_none());
    }

    #[test]
    fn served_json_is_the_stored_bytes_with_the_new_resource_version() {
        let reg = Registry::default();
        let configmaps = reg.lookup("", "v1", "configmaps").unwrap();
        for object in [
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "resourceVersion": "12", "uid": "u"}, "data": {"a": "\"}\""}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"resourceVersion": "1"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        ] {
            let encoded = encode_stored(configmaps, &object).unwrap();
            let served: Value = serde_json::from_slice(&encoded.served(42).unwrap()).unwrap();
            let mut want = object.clone();
            want["metadata"]["resourceVersion"] = json!("42");
            assert_eq!(served, want);
            let stored: Value = serde_json::from_slice(&encoded.bytes).unwrap();
            assert!(stored["metadata"].get("resourceVersion").is_none());
        }
    }

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
        let next = prepare_update(pods, None, &current, incoming);
        assert_eq!(next["metadata"]["uid"], "u1");
        assert_eq!(next["metadata"]["generation"], 2);
        assert_eq!(next["metadata"]["labels"]["x"], "y");
        assert_eq!(next["status"]["phase"], "Running");
        let status_write = prepare_update(
            pods,
            Some("status"),
            &current,
            json!({"spec": {"a": 9}, "status": {"phase": "Succeeded"}}),
        );
        assert_eq!(status_write["spec"]["a"], 1);
        assert_eq!(status_write["status"]["phase"], "Succeeded");
    }

    #[test]
    fn strategic_patches_merge_lists_by_key() {
        let current =
            json!({"spec": {"containers": [{"name": "a"}]}, "metadata": {"labels": {"a": "1"}}});
        let patch = json!({"metadata": {"labels": {"b": "2"}}, "spec": {"$setElementOrder/containers": [{"name": "a"}]}});
        let out = apply_patch(&current, &patch, BodyType::StrategicMergePatch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(out["spec"], json!({"containers": [{"name": "a"}]}));
    }

    #[test]
    fn continue_tokens_round_trip() {
        let token = decode_continue(&encode_continue(42, "/registry/pods/a/b")).unwrap();
        assert_eq!((token.rv, token.start.as_str()), (42, "/registry/pods/a/b"));
        assert!(decode_continue("!!").is_err());
    }

    #[test]
    fn pod_grace_periods() {
        let reg = Registry::default();
        let pods = reg.lookup("", "v1", "pods").unwrap();
        let opts = DeleteOptions::default();
        let unbound = json!({"spec": {"terminationGracePeriodSeconds": 30}});
        assert_eq!(grace_period(pods, &unbound, &opts), 0);
        let bound = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 20}, "status": {"phase": "Running"}});
        assert_eq!(grace_period(pods, &bound, &opts), 20);
        let forced = DeleteOptions {
            grace_period: Some(0),
            ..Default::default()
        };
        assert_eq!(grace_period(pods, &bound, &forced), 0);
    }
}
