//! `/openapi/v3` (and, derived from it, `/openapi/v2` in `v2`): the root lists every served group-version with a content-hashed URL,
//! and each group-version document holds the paths of its resources and the full
//! schemas of their kinds. kubectl needs it twice over: `create|apply|replace -f` look
//! for a `patch` operation with `x-kubernetes-group-version-kind` and a
//! `fieldValidation` parameter to leave validation to the server ("failed to download
//! openapi" otherwise), and `kubectl explain` prints the schemas.
//!
//! The group-versions follow the registry, and each kind's schema comes from
//! `rind_api::schema`, so a resource added to the registry appears here by itself.
//! Custom resources get their CRD's schema under upstream's name for it
//! (`com.example.stable.v1.CronTab`). Documents of the built-ins are built once per
//! process; a server serving CRDs rebuilds its documents when they change.

mod gnostic;
mod v2;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rind_api::registry::{Registry, Resource};
use rind_api::schema::schemas;
use rind_api::status::ApiError;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One rendered group-version document.
struct Document {
    body: Vec<u8>,
    /// Upper-case hex SHA-256 of `body`: the `?hash=` of its URL and its ETag.
    hash: String,
}

struct Documents {
    root: Vec<u8>,
    by_path: BTreeMap<String, Document>,
    /// The Swagger 2.0 form, built on its first request (few clients ask for it).
    v2: OnceLock<v2::V2>,
}

static DOCUMENTS: OnceLock<Arc<Documents>> = OnceLock::new();

/// A server's documents while it serves custom resources, with the registry
/// generation they were built for.
#[derive(Default)]
pub struct Cache(Mutex<Option<(u64, Arc<Documents>)>>);

/// The documents for `registry`: shared by every server while only built-ins are
/// served, rebuilt when the custom resources change.
fn documents(registry: &Registry, cache: &Cache) -> Arc<Documents> {
    let generation = registry.custom_generation();
    if generation == 0 {
        return DOCUMENTS.get_or_init(|| Arc::new(build(registry))).clone();
    }
    let mut slot = cache.0.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((built_for, docs)) = slot.as_ref()
        && *built_for == generation
    {
        return docs.clone();
    }
    let docs = Arc::new(build(registry));
    *slot = Some((generation, docs.clone()));
    docs
}

fn build(registry: &Registry) -> Documents {
    let mut by_path = BTreeMap::new();
    let mut paths = Map::new();
    for (group, version) in group_versions(registry) {
        let path = gv_path(group, version);
        let body = serde_json::to_vec(&group_version_document(registry, group, version))
            .unwrap_or_default();
        let hash = hex::encode_upper(Sha256::digest(&body));
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
        by_path.insert(path, Document { body, hash });
    }
    let root = serde_json::to_vec(&json!({ "paths": paths })).unwrap_or_default();
    Documents {
        root,
        by_path,
        v2: OnceLock::new(),
    }
}

/// `api/v1` or `apis/G/V`, as the OpenAPI v3 root names group-versions.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn group_versions(registry: &Registry) -> Vec<(&'static str, &'static str)> {
    let mut gvs = vec![("", "v1")];
    for (group, versions) in registry.groups() {
        gvs.extend(versions.into_iter().map(|v| (group, v)));
    }
    gvs
}

/// `GET /openapi/v2`.
pub fn serve_v2(registry: &Registry, cache: &Cache, headers: &HeaderMap) -> Response {
    v2::serve(&documents(registry, cache), registry, headers)
}

/// `GET /openapi/v3`. Never cached by clients: it names the current hashes.
pub fn serve_root(registry: &Registry, cache: &Cache) -> Response {
    json_response(
        StatusCode::OK,
        documents(registry, cache).root.clone(),
        "no-cache, private",
        None,
    )
}

/// `GET /openapi/v3/<gv>[?hash=H]`, as upstream serves it: with the current hash the
/// document is immutable; with a stale one the client is sent to the current URL;
/// `If-None-Match` with the current ETag gets 304.
pub fn serve_group_version(
    registry: &Registry,
    cache: &Cache,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let docs = documents(registry, cache);
    let doc = docs
        .by_path
        .get(path)
        .ok_or_else(ApiError::path_not_found)?;
    let etag = format!("\"{}\"", doc.hash);
    let asked_hash = query.and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("hash="))
            .map(str::to_string)
    });
    if let Some(asked) = &asked_hash
        && *asked != doc.hash
    {
        let location = format!("/openapi/v3/{path}?hash={}", doc.hash);
        let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return Ok(response);
    }
    let cache = if asked_hash.is_some() {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    if not_modified {
        return Ok(json_response(
            StatusCode::NOT_MODIFIED,
            Vec::new(),
            cache,
            Some(&etag),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        doc.body.clone(),
        cache,
        Some(&etag),
    ))
}

fn json_response(status: StatusCode, body: Vec<u8>, cache: &str, etag: Option<&str>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(cache) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    if let Some(value) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ETAG, value);
    }
    response
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The schema name of a subresource's kind: the parent's group-version first, else the
/// stable version of the kind wherever it lives (`Scale` is autoscaling/v1 for every
/// group's `scale`).
fn subresource_kind(resource: &Resource, kind: &str) -> Option<(String, Value)> {
    if resource.custom.is_some() && kind == resource.kind {
        let gvk = json!({"group": resource.group, "version": resource.version, "kind": kind});
        return Some((custom_schema_name(resource), gvk));
    }
    let s = schemas();
    if let Some(name) = s.kind_name(resource.group, resource.version, kind) {
        let gvk = json!({"group": resource.group, "version": resource.version, "kind": kind});
        return Some((name.to_string(), gvk));
    }
    s.stable_kind(kind).map(|(group, version, name)| {
        (
            name.to_string(),
            json!({"group": group, "version": version, "kind": kind}),
        )
    })
}

fn parameter(name: &str, location: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": location,
        "description": description,
        "required": location == "path",
        "schema": {"type": "string", "uniqueItems": true},
    })
}

fn write_parameters() -> Vec<Value> {
    vec![
        parameter(
            "dryRun",
            "query",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
        ),
        parameter(
            "fieldManager",
            "query",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        parameter(
            "fieldValidation",
            "query",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
        ),
    ]
}

fn list_parameters() -> Vec<Value> {
    [
        ("labelSelector", "A selector to restrict the list of returned objects by their labels."),
        ("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
        ("limit", "The maximum number of responses to return for a list call."),
        ("continue", "The continue option should be set when retrieving more results from the server."),
        ("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        ("watch", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
        ("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
        ("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`: the stream begins with synthetic events for the current objects."),
    ]
    .into_iter()
    .map(|(name, description)| parameter(name, "query", description))
    .collect()
}

fn content(schema: &Value) -> Value {
    json!({
        "application/json": {"schema": schema},
        "application/yaml": {"schema": schema},
    })
}

/// One operation; `body` is the request body's schema for writes.
fn operation(
    id: String,
    action: &str,
    gvk: &Value,
    parameters: Vec<Value>,
    body: Option<Value>,
    response: &Value,
) -> Value {
    let mut op = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "parameters": parameters,
        "responses": {
            "200": {"description": "OK", "content": content(response)},
            "401": {"description": "Unauthorized"},
        },
    });
    if action == "post" {
        op["responses"]["201"] = json!({"description": "Created", "content": content(response)});
    }
    if let Some(schema) = body {
        let body_content = if action == "patch" {
            json!({
                "application/apply-patch+yaml": {"schema": schema},
                "application/json-patch+json": {"schema": schema},
                "application/merge-patch+json": {"schema": schema},
                "application/strategic-merge-patch+json": {"schema": schema},
            })
        } else {
            json!({"application/json": {"schema": schema}, "application/yaml": {"schema": schema}})
        };
        op["requestBody"] = json!({"content": body_content, "required": true});
    }
    op
}

fn group_version_document(registry: &Registry, group: &str, version: &str) -> Value {
    let s = schemas();
    let mut paths = Map::new();
    let mut roots: Vec<String> = [
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    ]
    .map(str::to_string)
    .to_vec();
    let base = format!("/{}", gv_path(group, version));
    let mut custom_components = Map::new();
    for r in registry.resources_of(group, version) {
        let kind_name = match r.custom {
            Some(custom) => {
                let name = custom_schema_name(r);
                custom_components.insert(name.clone(), custom_schema(r, &custom.schema));
                custom_components.insert(format!("{name}List"), custom_list_schema(r, &name));
                roots.push(OBJECT_META.to_string());
                roots.push(LIST_META.to_string());
                name
            }
            None => match s.kind_name(group, version, r.kind) {
                Some(name) => name.to_string(),
                None => continue,
            },
        };
        let kind_name = kind_name.as_str();
        let list_name = format!("{kind_name}List");
        if r.custom.is_none() {
            roots.push(kind_name.to_string());
            if r.verbs.contains(&"list") {
                roots.push(list_name.clone());
            }
        }
        let gvk = json!({"group": group, "version": version, "kind": r.kind});
        let object = schema_ref(kind_name);
        let list = schema_ref(&list_name);
        let status = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Status");
        let patch = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
        let delete = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions");
        let scope = if r.namespaced { "Namespaced" } else { "" };
        let ns_param = || {
            parameter(
                "namespace",
                "path",
                "object name and auth scope, such as for teams and projects",
            )
        };
        let name_param = || parameter("name", "path", &format!("name of the {}", r.kind));
        let (collection, item) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            )
        } else {
            (
                format!("{base}/{}", r.plural),
                format!("{base}/{}/{{name}}", r.plural),
            )
        };
        let op_id = |verb: &str, suffix: &str| format!("{verb}{scope}{}{suffix}", r.kind);
        let mut collection_ops = Map::new();
        if r.verbs.contains(&"list") {
            collection_ops.insert(
                "get".into(),
                operation(
                    op_id("list", ""),
                    "list",
                    &gvk,
                    list_parameters(),
                    None,
                    &list,
                ),
            );
        }
        if r.verbs.contains(&"create") {
            collection_ops.insert(
                "post".into(),
                operation(
                    op_id("create", ""),
                    "post",
                    &gvk,
                    write_parameters(),
                    Some(object.clone()),
                    &object,
                ),
            );
        }
        if r.verbs.contains(&"deletecollection") {
            collection_ops.insert(
                "delete".into(),
                operation(
                    op_id("deletecollection", ""),
                    "deletecollection",
                    &gvk,
                    list_parameters(),
                    Some(delete.clone()),
                    &status,
                ),
            );
        }
        if r.namespaced {
            collection_ops.insert("parameters".into(), json!([ns_param()]));
        }
        paths.insert(collection, Value::Object(collection_ops));
        if r.namespaced && r.verbs.contains(&"list") {
            paths.insert(
                format!("{base}/{}", r.plural),
                json!({"get": operation(format!("list{}ForAllNamespaces", r.kind), "list", &gvk, list_parameters(), None, &list)}),
            );
        }
        // Create-only resources (the reviews) have no objects to address by name.
        if !r.verbs.contains(&"get") {
            continue;
        }
        let mut item_ops = Map::new();
        item_ops.insert(
            "get".into(),
            operation(op_id("read", ""), "get", &gvk, vec![], None, &object),
        );
        item_ops.insert(
            "put".into(),
            operation(
                op_id("replace", ""),
                "put",
                &gvk,
                write_parameters(),
                Some(object.clone()),
                &object,
            ),
        );
        let mut patch_params = write_parameters();
        patch_params.push(parameter(
            "force",
            "query",
            "Force is going to \"force\" Apply requests.",
        ));
        item_ops.insert(
            "patch".into(),
            operation(
                op_id("patch", ""),
                "patch",
                &gvk,
                patch_params,
                Some(patch.clone()),
                &object,
            ),
        );
        item_ops.insert(
            "delete".into(),
            operation(
                op_id("delete", ""),
                "delete",
                &gvk,
                write_parameters(),
                Some(delete),
                &status,
            ),
        );
        let mut item_params = vec![name_param()];
        if r.namespaced {
            item_params.push(ns_param());
        }
        item_ops.insert("parameters".into(), Value::Array(item_params.clone()));
        paths.insert(item.clone(), Value::Object(item_ops));
        // Read-only subresources (`pods/log`) answer with text, not with their kind, and
        // connect subresources (`pods/exec`) with a stream.
        for sub in r
            .subresources
            .iter()
            .filter(|s| s.verbs != ["get"] && !r.connects(s.name))
        {
            let Some((sub_name, sub_gvk)) = subresource_kind(r, sub.kind) else {
                continue;
            };
            roots.push(sub_name.clone());
            let sub_object = schema_ref(&sub_name);
            let suffix = capitalized(sub.name);
            let mut ops = Map::new();
            for verb in sub.verbs {
                let (method, op) = match *verb {
                    "get" => (
                        "get",
                        operation(
                            op_id("read", &suffix),
                            "get",
                            &sub_gvk,
                            vec![],
                            None,
                            &sub_object,
                        ),
                    ),
                    "update" => (
                        "put",
                        operation(
                            op_id("replace", &suffix),
                            "put",
                            &sub_gvk,
                            write_parameters(),
                            Some(sub_object.clone()),
                            &sub_object,
                        ),
                    ),
                    "patch" => (
                        "patch",
                        operation(
                            op_id("patch", &suffix),
                            "patch",
                            &sub_gvk,
                            write_parameters(),
                            Some(patch.clone()),
                            &sub_object,
                        ),
                    ),
                    "create" => (
                        "post",
                        operation(
                            op_id("create", &suffix),
                            "post",
                            &sub_gvk,
                            write_parameters(),
                            Some(sub_object.clone()),
                            &sub_object,
                        ),
                    ),
                    _ => continue,
                };
                ops.insert(method.into(), op);
            }
            ops.insert("parameters".into(), Value::Array(item_params.clone()));
            paths.insert(format!("{item}/{}", sub.name), Value::Object(ops));
        }
    }
    let mut components: Map<String, Value> = s
        .closure(roots.iter().map(String::as_str))
        .into_iter()
        .collect();
    components.extend(custom_components);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::discovery::version()["gitVersion"]},
        "paths": paths,
        "components": {"schemas": components},
    })
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// Upstream's name for a custom kind's schema: the group reversed, then version and
/// kind (`stable.example.com` v1 CronTab → `com.example.stable.v1.CronTab`).
fn custom_schema_name(r: &Resource) -> String {
    let group: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", group.join("."), r.version, r.kind)
}

fn type_fields(meta_name: &str) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(
        "apiVersion".into(),
        json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}),
    );
    fields.insert(
        "kind".into(),
        json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}),
    );
    fields.insert(
        "metadata".into(),
        json!({"allOf": [{"$ref": format!("#/components/schemas/{meta_name}")}],
               "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
    );
    fields
}

/// The CRD's schema with the type fields and metadata every object has, marked with
/// its group-version-kind so kubectl finds it.
fn custom_schema(r: &Resource, schema: &Value) -> Value {
    let mut schema = schema.clone();
    if !schema.is_object() {
        schema = json!({"type": "object"});
    }
    let properties = schema
        .as_object_mut()
        .map(|root| {
            root.entry("properties")
                .or_insert_with(|| json!({}))
                .clone()
        })
        .and_then(|p| p.as_object().cloned())
        .unwrap_or_default();
    let mut merged = properties;
    merged.extend(type_fields(OBJECT_META));
    schema["properties"] = Value::Object(merged);
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
    schema
}

fn custom_list_schema(r: &Resource, item_name: &str) -> Value {
    let mut properties = type_fields(LIST_META);
    properties.insert(
        "items".into(),
        json!({"type": "array", "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", r.plural),
               "items": {"$ref": format!("#/components/schemas/{item_name}")}}),
    );
    json!({
        "type": "object",
        "description": format!("{} is a list of {}", r.list_kind(), r.kind),
        "required": ["items"],
        "properties": properties,
        "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": r.list_kind()}],
    })
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(path: &str) -> Value {
        let docs = documents(&Registry::default(), &Cache::default());
        serde_json::from_slice(&docs.by_path[path].body).unwrap()
    }

    #[test]
    fn root_names_every_group_version_with_its_hash() {
        let reg = Registry::default();
        let root: Value = serde_json::from_slice(&documents(&reg, &Cache::default()).root).unwrap();
        let url = root["paths"]["apis/coordination.k8s.io/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let hash = &documents(&reg, &Cache::default()).by_path["apis/coordination.k8s.io/v1"].hash;
        assert_eq!(
            url,
            format!("/openapi/v3/apis/coordination.k8s.io/v1?hash={hash}")
        );
        assert!(root["paths"]["api/v1"].is_object());
    }

    #[test]
    fn documents_advertise_field_validation_and_schemas() {
        let core = document("api/v1");
        let patch = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(core["paths"]["/api/v1/namespaces/{name}"].is_object());
        assert!(
            core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"].is_object()
        );
        assert!(core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"].is_null());
        let schemas = &core["components"]["schemas"];
        assert!(
            schemas["io.k8s.api.core.v1.Container"]["properties"]["image"]["description"]
                .as_str()
                .unwrap()
                .contains("Container image name")
        );
        assert!(schemas["io.k8s.api.core.v1.PodList"].is_object());
        assert!(schemas["io.k8s.api.apps.v1.Deployment"].is_null());
        // Every reference in the document resolves inside it.
        let text = serde_json::to_string(&core).unwrap();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(schemas[name].is_object(), "{name}");
        }
    }

    #[test]
    fn every_served_kind_has_its_schema() {
        let reg = Registry::default();
        for r in reg.all() {
            let doc = document(&gv_path(r.group, r.version));
            let name = schemas()
                .kind_name(r.group, r.version, r.kind)
                .unwrap_or_else(|| panic!("no schema for {}/{} {}", r.group, r.version, r.kind));
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
            for sub in r.subresources.iter().filter(|s| !r.connects(s.name)) {
                assert!(
                    subresource_kind(r, sub.kind).is_some(),
                    "{} {}/{}",
                    r.kind,
                    r.plural,
                    sub.name
                );
            }
        }
    }

    #[test]
    fn hashes_make_documents_immutable() {
        let reg = Registry::default();
        let hash = documents(&reg, &Cache::default()).by_path["api/v1"]
            .hash
            .clone();
        let headers = HeaderMap::new();
        let ok = serve_group_version(
            &reg,
            &Cache::default(),
            "api/v1",
            Some(&format!("hash={hash}")),
            &headers,
        )
        .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CACHE_CONTROL], "public, immutable");
        let stale = serve_group_version(
            &reg,
            &Cache::default(),
            "api/v1",
            Some("hash=OLD"),
            &headers,
        )
        .unwrap();
        assert_eq!(stale.status(), StatusCode::MOVED_PERMANENTLY);
        let mut conditional = HeaderMap::new();
        conditional.insert(
            header::IF_NONE_MATCH,
            format!("\"{hash}\"").parse().unwrap(),
        );
        let cached =
            serve_group_version(&reg, &Cache::default(), "api/v1", None, &conditional).unwrap();
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert!(
            serve_group_version(&reg, &Cache::default(), "apis/nope/v1", None, &headers).is_err()
        );
    }
}
