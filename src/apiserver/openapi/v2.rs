//! `/openapi/v2`: the whole API in one Swagger 2.0 document, in JSON or (what kubectl
//! asks for) gnostic protobuf. kubectl falls back to it where `/openapi/v3` has no
//! answer: `create -f` of a kind with no `patch` operation (the reviews) checks the
//! object against its v2 definition before sending it, and fails outright when the
//! document cannot be fetched or parsed.
//!
//! The document is derived from the v3 group-version documents, so both always describe
//! the same API: definitions are the union of their schemas with references pointing
//! at `#/definitions/`, and each operation's request body becomes a `body` parameter.
//! Constructs Swagger 2.0 lacks (`anyOf`, `oneOf`, `not`, `nullable`) are dropped, and
//! a lone `allOf: [{$ref}]` becomes the `$ref` itself, as upstream publishes it.

use super::{Documents, gnostic, group_version_document, group_versions};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prost::Message;
use rind_api::registry::Registry;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The media type kubectl asks for and upstream answers with.
const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

pub(super) struct V2 {
    json: Vec<u8>,
    protobuf: Vec<u8>,
    /// Quoted upper-case hex SHA-256 of the JSON form.
    etag: String,
}

pub(super) fn build(registry: &Registry) -> V2 {
    let doc = document(registry);
    let json = serde_json::to_vec(&doc).unwrap_or_default();
    let protobuf = gnostic::from_json(&doc).encode_to_vec();
    let etag = format!("\"{}\"", hex::encode_upper(Sha256::digest(&json)));
    V2 {
        json,
        protobuf,
        etag,
    }
}

/// `GET /openapi/v2`: protobuf when the client accepts it, JSON otherwise;
/// `If-None-Match` with the current ETag gets 304.
pub fn serve(docs: &Documents, registry: &Registry, headers: &HeaderMap) -> Response {
    let v2 = docs.v2.get_or_init(|| build(registry));
    let wants_protobuf = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| accept.contains("com.github.proto-openapi.spec.v2"));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tag| tag == v2.etag);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if wants_protobuf {
        (StatusCode::OK, v2.protobuf.clone()).into_response()
    } else {
        (StatusCode::OK, v2.json.clone()).into_response()
    };
    let out = response.headers_mut();
    let content_type = if wants_protobuf {
        PROTOBUF
    } else {
        "application/json"
    };
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    if let Ok(value) = HeaderValue::from_str(&v2.etag) {
        out.insert(header::ETAG, value);
    }
    // The answer depends on Accept: shared caches must key on it.
    out.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// The Swagger 2.0 document of every served group-version.
fn document(registry: &Registry) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for (group, version) in group_versions(registry) {
        let v3 = group_version_document(registry, group, version);
        if let Some(schemas) = v3["components"]["schemas"].as_object() {
            for (name, schema) in schemas {
                definitions
                    .entry(name.clone())
                    .or_insert_with(|| convert_schema(schema));
            }
        }
        if let Some(items) = v3["paths"].as_object() {
            for (path, item) in items {
                paths.insert(path.clone(), path_item(item));
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::version()["gitVersion"]},
        "paths": paths,
        "definitions": definitions,
    })
}

/// A v3 schema as Swagger 2.0 has it.
fn convert_schema(schema: &Value) -> Value {
    let Some(map) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "$ref" => {
                out.insert(key.clone(), json!(rewrite_ref(value)));
            }
            "allOf" => match value.as_array().map(Vec::as_slice) {
                Some([only]) if only.get("$ref").is_some() => {
                    out.insert("$ref".into(), json!(rewrite_ref(&only["$ref"])));
                }
                Some(list) => {
                    out.insert(key.clone(), list.iter().map(convert_schema).collect());
                }
                None => {}
            },
            "anyOf" | "oneOf" | "not" | "nullable" => {}
            "properties" => {
                let props = value
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(k, v)| (k.clone(), convert_schema(v)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), convert_schema(value));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

fn rewrite_ref(reference: &Value) -> String {
    let text = reference.as_str().unwrap_or_default();
    match text.strip_prefix("#/components/schemas/") {
        Some(name) => format!("#/definitions/{name}"),
        None => text.to_string(),
    }
}

fn path_item(item: &Value) -> Value {
    let mut out = Map::new();
    let Some(map) = item.as_object() else {
        return Value::Object(out);
    };
    for (key, value) in map {
        if key == "parameters" {
            out.insert(key.clone(), parameters(value));
        } else {
            out.insert(key.clone(), operation(value));
        }
    }
    Value::Object(out)
}

fn parameters(list: &Value) -> Value {
    list.as_array()
        .map(|params| {
            params
                .iter()
                .map(|p| {
                    let mut out = Map::new();
                    for key in ["name", "in", "description", "required"] {
                        if let Some(v) = p.get(key) {
                            out.insert(key.into(), v.clone());
                        }
                    }
                    // v3 wraps a parameter's type in a schema; v2 has it inline.
                    if let Some(schema) = p.get("schema").and_then(Value::as_object) {
                        for (k, v) in schema {
                            out.insert(k.clone(), v.clone());
                        }
                    }
                    Value::Object(out)
                })
                .collect()
        })
        .unwrap_or_else(|| json!([]))
}

fn operation(op: &Value) -> Value {
    let mut out = Map::new();
    let Some(map) = op.as_object() else {
        return Value::Object(out);
    };
    let mut params = parameters(op.get("parameters").unwrap_or(&Value::Null));
    for (key, value) in map {
        match key.as_str() {
            "parameters" => {}
            "requestBody" => {
                let Some(content) = value["content"].as_object() else {
                    continue;
                };
                out.insert(
                    "consumes".into(),
                    content.keys().cloned().map(Value::String).collect(),
                );
                if let (Some((_, media)), Some(list)) =
                    (content.iter().next(), params.as_array_mut())
                {
                    list.insert(
                        0,
                        json!({"name": "body", "in": "body", "required": true,
                               "schema": convert_schema(&media["schema"])}),
                    );
                }
            }
            "responses" => {
                let mut responses = Map::new();
                let mut produces: Vec<Value> = Vec::new();
                for (code, response) in value.as_object().into_iter().flatten() {
                    let mut r = json!({"description": response["description"]});
                    if let Some(content) = response["content"].as_object() {
                        for media in content.keys() {
                            if !produces.iter().any(|p| p == media) {
                                produces.push(json!(media));
                            }
                        }
                        if let Some((_, media)) = content.iter().next() {
                            r["schema"] = convert_schema(&media["schema"]);
                        }
                    }
                    responses.insert(code.clone(), r);
                }
                if !produces.is_empty() {
                    out.insert("produces".into(), Value::Array(produces));
                }
                out.insert(key.clone(), Value::Object(responses));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out.insert("parameters".into(), params);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn v2() -> Value {
        document(&Registry::default())
    }

    /// Every `$ref` below `value`, by definition name.
    fn references(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                    out.insert(r.to_string());
                }
                map.values().for_each(|v| references(v, out));
            }
            Value::Array(list) => list.iter().for_each(|v| references(v, out)),
            _ => {}
        }
    }

    /// What kubectl's parser of the v2 document refuses: a reference to a missing
    /// definition, more than one type, a primitive type it does not know.
    fn check_types(value: &Value, path: &str) {
        let Some(map) = value.as_object() else { return };
        match map.get("type") {
            Some(Value::String(t)) => assert!(
                ["object", "array", "string", "integer", "number", "boolean"].contains(&t.as_str()),
                "{path}: type {t}"
            ),
            Some(other) => panic!("{path}: type {other}"),
            None => {}
        }
        for key in ["anyOf", "oneOf", "nullable"] {
            assert!(!map.contains_key(key), "{path}: {key} left in");
        }
        if let Some(props) = map.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                check_types(v, &format!("{path}.{k}"));
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(v) = map.get(key) {
                check_types(v, &format!("{path}[{key}]"));
            }
        }
    }

    #[test]
    fn every_reference_resolves_and_types_parse() {
        let doc = v2();
        let definitions = doc["definitions"].as_object().unwrap();
        let mut refs = BTreeSet::new();
        references(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("{r}"));
            assert!(definitions.contains_key(name), "dangling {r}");
        }
        for (name, schema) in definitions {
            check_types(schema, name);
        }
    }

    #[test]
    fn kinds_carry_their_group_version_kind() {
        let doc = v2();
        let review = &doc["definitions"]["io.k8s.api.authentication.v1.TokenReview"];
        assert_eq!(
            review["x-kubernetes-group-version-kind"],
            json!([{"group": "authentication.k8s.io", "version": "v1", "kind": "TokenReview"}])
        );
        assert_eq!(
            review["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let pods = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(pods["parameters"][0]["in"], "body");
        assert!(
            pods["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["type"] == "string")
        );
    }

    #[test]
    fn protobuf_form_round_trips() {
        let doc = v2();
        let bytes = gnostic::from_json(&doc).encode_to_vec();
        let decoded = gnostic::Document::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.swagger, "2.0");
        let defs = decoded.definitions.unwrap().additional_properties;
        let pod = defs
            .iter()
            .find(|d| d.name == "io.k8s.api.core.v1.Pod")
            .and_then(|d| d.value.as_ref())
            .unwrap();
        let gvk = pod
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .and_then(|e| e.value.as_ref())
            .unwrap();
        // Extension values are YAML text (here JSON, which YAML reads).
        let parsed: Value = serde_json::from_str(&gvk.yaml).unwrap();
        assert_eq!(
            parsed,
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        let spec = pod
            .properties
            .as_ref()
            .unwrap()
            .additional_properties
            .iter()
            .find(|p| p.name == "spec")
            .and_then(|p| p.value.as_ref())
            .unwrap();
        assert_eq!(spec.r#ref, "#/definitions/io.k8s.api.core.v1.PodSpec");
    }
}
