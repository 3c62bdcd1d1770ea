//! LIST as plain JSON straight from the stored bytes.
//!
//! A list of 10,000 pods is ~7 MB of JSON. Decoding every object into a `serde_json::Value`
//! tree only to serialize it again (and free it) costs about 20x what etcd takes to
//! return the bytes. For the usual case — a kind stored as served, rendered as the object
//! itself — the stored JSON already is the answer but for one field: the resourceVersion,
//! which is the key's revision rather than data. So each object is split only at its top
//! level (borrowing, with no tree built), its `metadata` gets `resourceVersion` spliced
//! in, and the rest is copied through. Selectors parse just the top-level fields they
//! read. Anything unusual in an object (a stored `resourceVersion`, escaped top-level
//! keys, bytes that are not a JSON object) sends that object down the ordinary decode
//! path, so the answer is always what `handlers::list` would give.

use super::Json;
use super::handlers::{Continue, Ctx, Filter, decode_as, scan};
use super::request::{Query, Rendering};
use rind_api::registry::{Resource, Storage};
use rind_api::status::ApiError;
use rind_api::table::{self, IncludeObject};
use rind_store::KeyValue;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Whether a list of `resource` rendered as `rendering` can be served from raw bytes:
/// the stored form must be the served form, and the answer the objects themselves or a
/// Table whose rows carry at most their metadata.
pub fn applies(resource: &Resource, rendering: Rendering, query: &Query) -> bool {
    let native = resource.storage == Storage::Native && resource.custom.is_none();
    native
        && match rendering {
            Rendering::Object => true,
            Rendering::Table => {
                IncludeObject::parse(query.get("includeObject")) != IncludeObject::Object
            }
            Rendering::Metadata => false,
        }
}

/// The `…List` (or Table) of `resource` under `ns` matching `filter`, as JSON bytes.
pub async fn list(ctx: &Ctx<'_>, filter: &Filter, limit: usize) -> Result<Json, ApiError> {
    let &Ctx {
        server,
        resource,
        namespace: ns,
        rendering,
        query,
        ..
    } = ctx;
    let needed = filter.top_level_fields();
    let include = IncludeObject::parse(query.get("includeObject"));
    let mut items = Vec::new();
    let mut first = true;
    let (revision, next) = scan(server, resource, ns, limit, query, |kv| {
        let before = items.len();
        if !first {
            items.push(b',');
        }
        let kept = match rendering {
            Rendering::Table => append_row(&mut items, resource, kv, filter, include)?,
            _ => append_item(&mut items, resource, kv, filter, &needed)?,
        };
        if kept {
            first = false;
        } else {
            items.truncate(before);
        }
        Ok(kept)
    })
    .await?;

    let list_meta = Continue::list_meta(next.as_ref(), revision, filter);
    let (head, field) = match rendering {
        // The Table without rows: its column definitions come from the same code.
        Rendering::Table => {
            let mut empty = table::table(resource, &[], list_meta, include);
            if let Some(root) = empty.as_object_mut() {
                root.remove("rows");
            }
            (empty, "rows")
        }
        _ => (
            serde_json::json!({
                "kind": resource.list_kind(),
                "apiVersion": resource.api_version(),
                "metadata": list_meta,
            }),
            "items",
        ),
    };
    let head = serde_json::to_vec(&head)
        .map_err(|e| ApiError::internal(format!("cannot encode list: {e}")))?;
    // `{…head fields…,"items":[…]}`: the head object without its closing brace.
    let mut body = Vec::with_capacity(head.len() + items.len() + 12);
    body.extend_from_slice(&head[..head.len() - 1]);
    body.extend_from_slice(format!(",\"{field}\":[").as_bytes());
    body.extend_from_slice(&items);
    body.extend_from_slice(b"]}");
    Ok(Json::raw(body, rendering))
}

/// Appends `kv`'s Table row to `out` if it matches `filter`; says whether it did. The
/// cells are computed from the object without its `managedFields` (no column shows
/// them, and they are often most of the object); the row's metadata is copied raw.
fn append_row(
    out: &mut Vec<u8>,
    resource: &Resource,
    kv: &KeyValue,
    filter: &Filter,
    include: IncludeObject,
) -> Result<bool, ApiError> {
    let encode_error =
        |e: serde_json::Error| ApiError::internal(format!("cannot encode a row: {e}"));
    let Some(fields) = split(&kv.value) else {
        let object = decode_as(resource, kv)?;
        if !filter.matches(&object) {
            return Ok(false);
        }
        let mut row = serde_json::json!({"cells": table::cells(resource, &object)});
        if include == IncludeObject::Metadata {
            row["object"] = table::partial_metadata(&object);
        }
        serde_json::to_writer(&mut *out, &row).map_err(encode_error)?;
        return Ok(true);
    };
    let mut object = Map::new();
    for (name, raw) in &fields {
        let value = if *name == "metadata" {
            let metadata: BTreeMap<&str, &RawValue> = serde_json::from_str(raw.get())
                .map_err(|e| ApiError::internal(format!("stored object is not JSON: {e}")))?;
            let mut kept = Map::new();
            for (key, raw) in metadata.into_iter().filter(|(k, _)| *k != "managedFields") {
                kept.insert(key.to_string(), parse(raw)?);
            }
            Value::Object(kept)
        } else {
            parse(raw)?
        };
        object.insert((*name).to_string(), value);
    }
    let object = Value::Object(object);
    if !filter.matches(&object) {
        return Ok(false);
    }
    out.extend_from_slice(b"{\"cells\":");
    serde_json::to_writer(&mut *out, &table::cells(resource, &object)).map_err(encode_error)?;
    if include == IncludeObject::Metadata {
        out.extend_from_slice(
            b",\"object\":{\"apiVersion\":\"meta.k8s.io/v1\",\"kind\":\"PartialObjectMetadata\",\"metadata\":",
        );
        write_metadata(
            out,
            fields.get("metadata").map_or("{}", |m| m.get()),
            kv.mod_revision,
        );
        out.push(b'}');
    }
    out.push(b'}');
    Ok(true)
}

fn parse(raw: &RawValue) -> Result<Value, ApiError> {
    serde_json::from_str(raw.get())
        .map_err(|e| ApiError::internal(format!("stored object is not JSON: {e}")))
}

/// Appends `kv` as served to `out` if it matches `filter`; says whether it did.
fn append_item(
    out: &mut Vec<u8>,
    resource: &Resource,
    kv: &KeyValue,
    filter: &Filter,
    needed: &[&str],
) -> Result<bool, ApiError> {
    match split(&kv.value) {
        Some(fields) => {
            // A selector may read no field at all (a label upstream never fills in
            // compares as ""), so only selecting everything skips the match.
            if !filter.selects_everything() && !filter.matches(&partial(&fields, needed)?) {
                return Ok(false);
            }
            write_object(out, &fields, kv.mod_revision);
            Ok(true)
        }
        None => {
            let object = decode_as(resource, kv)?;
            if !filter.matches(&object) {
                return Ok(false);
            }
            serde_json::to_writer(&mut *out, &object)
                .map_err(|e| ApiError::internal(format!("cannot encode {}: {e}", kv.key)))?;
            Ok(true)
        }
    }
}

/// The object's top-level fields, borrowed from `bytes`, when the fast path can take it:
/// a JSON object with plain keys whose `metadata` is an object without `resourceVersion`.
fn split(bytes: &[u8]) -> Option<BTreeMap<&str, &RawValue>> {
    // Borrowed `&str` keys fail on escaped keys, which then take the ordinary path.
    let fields: BTreeMap<&str, &RawValue> = serde_json::from_slice(bytes).ok()?;
    let metadata = fields.get("metadata")?.get();
    if !metadata.starts_with('{') || metadata.contains("\"resourceVersion\"") {
        return None;
    }
    Some(fields)
}

/// A `Value` with just the `needed` top-level fields, for a selector to look at.
fn partial(fields: &BTreeMap<&str, &RawValue>, needed: &[&str]) -> Result<Value, ApiError> {
    let mut object = Map::new();
    for name in needed {
        if let Some(raw) = fields.get(name) {
            let value = serde_json::from_str(raw.get())
                .map_err(|e| ApiError::internal(format!("stored object is not JSON: {e}")))?;
            object.insert((*name).to_string(), value);
        }
    }
    Ok(Value::Object(object))
}

/// Writes the object back out with `metadata.resourceVersion` set to `revision`.
fn write_object(out: &mut Vec<u8>, fields: &BTreeMap<&str, &RawValue>, revision: i64) {
    out.push(b'{');
    for (i, (name, raw)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // `split` only accepted keys that needed no unescaping, so they print as they read.
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        let raw = raw.get();
        if *name == "metadata" {
            write_metadata(out, raw, revision);
        } else {
            out.extend_from_slice(raw.as_bytes());
        }
    }
    out.push(b'}');
}

/// Writes `metadata` (a JSON object without `resourceVersion`, as `split` checked) with
/// `resourceVersion` set to `revision`.
fn write_metadata(out: &mut Vec<u8>, metadata: &str, revision: i64) {
    let inner = metadata[1..].trim_start();
    out.extend_from_slice(b"{\"resourceVersion\":\"");
    out.extend_from_slice(revision.to_string().as_bytes());
    out.push(b'"');
    if !inner.starts_with('}') {
        out.push(b',');
    }
    out.extend_from_slice(inner.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn served(stored: &Value, revision: i64) -> Value {
        let bytes = serde_json::to_vec(stored).unwrap();
        let fields = split(&bytes).expect("fast path");
        let mut out = Vec::new();
        write_object(&mut out, &fields, revision);
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn splices_the_resource_version_into_metadata() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"containers": []}});
        let mut want = pod.clone();
        want["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(served(&pod, 42), want);
        let bare = json!({"kind": "Pod", "metadata": {}});
        assert_eq!(
            served(&bare, 7),
            json!({"kind": "Pod", "metadata": {"resourceVersion": "7"}})
        );
        let spaced = br#"{ "kind" : "Pod" , "metadata" : {  } }"#;
        let mut out = Vec::new();
        write_object(&mut out, &split(spaced).unwrap(), 3);
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"kind": "Pod", "metadata": {"resourceVersion": "3"}})
        );
    }

    #[test]
    fn table_rows_match_the_decoded_path() {
        let registry = rind_api::registry::Registry::default();
        let pods = registry
            .lookup("", "v1", "pods")
            .expect("pods are registered");
        let stored = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"},
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.7", "containerStatuses": [
                {"name": "c", "ready": true, "restartCount": 2, "state": {"running": {}}}]}});
        let kv = KeyValue {
            key: "/registry/pods/default/web-1".into(),
            value: serde_json::to_vec(&stored).unwrap(),
            create_revision: 5,
            mod_revision: 9,
        };
        let everything = Filter::from_query(pods, &Query::default()).unwrap();
        for include in [IncludeObject::Metadata, IncludeObject::None] {
            let mut out = Vec::new();
            assert!(append_row(&mut out, pods, &kv, &everything, include).unwrap());
            let row: Value = serde_json::from_slice(&out).expect("valid JSON");
            let decoded = decode_as(pods, &kv).unwrap();
            let want = table::table(pods, &[decoded], json!({}), include);
            assert_eq!(row, want["rows"][0]);
        }
    }

    #[test]
    fn unusual_objects_take_the_ordinary_path() {
        for bytes in [
            &br#"{"metadata":{"name":"p","resourceVersion":"5"}}"#[..],
            br#"{"kind":"Pod"}"#,
            br#"{"metadata":[]}"#,
            br#"{"meta\u0064ata":{}}"#,
            br#"["not an object"]"#,
            b"not json",
        ] {
            assert!(split(bytes).is_none(), "{}", String::from_utf8_lossy(bytes));
        }
        // Text that merely mentions the field inside a value is fine.
        let annotated = json!({"metadata": {"annotations": {"note": "\"resourceVersion\": 1"}}});
        assert_eq!(served(&annotated, 9)["metadata"]["resourceVersion"], "9");
    }
}
