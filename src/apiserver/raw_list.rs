//! LIST as plain JSON straight from the stored bytes.
//!
//! A list of 10,000 pods is ~7 MB of JSON. Decoding every object into a `serde_json::Value`
//! tree only to serialize it again (and free it) costs about 20x what etcd takes to
//! return the bytes. For the usual case — a kind stored as served, rendered as the object
//! itself — the stored JSON already is the answer (stored in upstream's field order, see
//! `rind_api::json`) but for two things: the resourceVersion, which is the key's revision
//! rather than data, and the item's `kind`/`apiVersion`, which upstream's typed lists
//! leave out. So each object is split only at its top level (borrowing, with no tree
//! built, keeping the stored order), its `metadata` gets `resourceVersion` spliced in
//! where ObjectMeta has it, and the rest is copied through. Selectors parse just the
//! top-level fields they read. Anything unusual in an object (a stored
//! `resourceVersion`, escaped keys, bytes that are not a JSON object) sends that object
//! down the ordinary decode path, so the answer is always what `handlers::list` would
//! give. Objects stored before rind wrote upstream's order keep their stored order.

use super::Json;
use super::handlers::{Continue, Ctx, Filter, decode_as, scan, set_resource_version};
use super::request::{Query, Rendering};
use rind_api::json;
use rind_api::registry::{Resource, Storage};
use rind_api::status::ApiError;
use rind_api::table::{self, IncludeObject};
use rind_store::KeyValue;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;

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
    // The answer without items: its last member is the empty `items` (or `rows`) array,
    // whose brackets the items go between.
    let empty = match rendering {
        // The Table without rows: its column definitions come from the same code.
        Rendering::Table => table::table(resource, &[], list_meta, include),
        _ => serde_json::json!({
            "kind": resource.list_kind(),
            "apiVersion": resource.api_version(),
            "metadata": list_meta,
            "items": [],
        }),
    };
    let head = json::to_vec(&empty);
    let Some(head) = head.strip_suffix(b"]}") else {
        return Err(ApiError::internal("the list does not end with its items"));
    };
    let mut body = Vec::with_capacity(head.len() + items.len() + 3);
    body.extend_from_slice(head);
    body.extend_from_slice(&items);
    body.extend_from_slice(b"]}\n");
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
    let Some(fields) = split(&kv.value) else {
        let object = decode_as(resource, kv)?;
        if !filter.matches(&object) {
            return Ok(false);
        }
        let mut row = serde_json::json!({"cells": table::cells(resource, &object)});
        if include == IncludeObject::Metadata {
            row["object"] = table::partial_metadata(&object);
        }
        write_row(out, &row);
        return Ok(true);
    };
    let mut object = Map::new();
    for (name, raw) in &fields.0 {
        let value = if *name == "metadata" {
            let metadata: Map<String, Value> = serde_json::from_str(raw.get())
                .map_err(|e| ApiError::internal(format!("stored object is not JSON: {e}")))?;
            Value::Object(
                metadata
                    .into_iter()
                    .filter(|(k, _)| k != "managedFields")
                    .collect(),
            )
        } else {
            parse(raw)?
        };
        object.insert((*name).to_string(), value);
    }
    let object = Value::Object(object);
    if !filter.matches(&object) {
        return Ok(false);
    }
    let before = out.len();
    // Upstream's TableRow: cells, then the object (`null` when the client asked for none).
    out.extend_from_slice(b"{\"cells\":");
    json::write(out, &Value::Array(table::cells(resource, &object)));
    out.extend_from_slice(b",\"object\":");
    if include == IncludeObject::Metadata {
        out.extend_from_slice(
            b"{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
        );
        let metadata = fields.get("metadata").map_or("{}", RawValue::get);
        if !json::write_metadata(out, metadata.as_bytes(), kv.mod_revision) {
            // Metadata the splice cannot take: the row as the decoding path makes it.
            out.truncate(before);
            let mut row = serde_json::json!({"cells": table::cells(resource, &object)});
            let mut served = object;
            set_resource_version(&mut served, kv.mod_revision);
            row["object"] = table::partial_metadata(&served);
            write_row(out, &row);
            return Ok(true);
        }
        out.push(b'}');
    } else {
        out.extend_from_slice(b"null");
    }
    out.push(b'}');
    Ok(true)
}

/// A row built as a `Value`, written as upstream's `TableRow`.
fn write_row(out: &mut Vec<u8>, row: &Value) {
    json::write_table_row(out, row);
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
    if let Some(fields) = split(&kv.value) {
        // A selector that reads no stored field (`status.podIPs`, which upstream's field
        // set never fills) still decides, on the fields it reads: none.
        if !filter.selects_everything() && !filter.matches(&partial(&fields, needed)?) {
            return Ok(false);
        }
        if write_object(out, &fields, kv.mod_revision) {
            return Ok(true);
        }
    }
    let object = decode_as(resource, kv)?;
    if !filter.matches(&object) {
        return Ok(false);
    }
    json::write_list_item(out, &object);
    Ok(true)
}

/// An object's top-level members in their stored order, borrowed.
struct Fields<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(5));
                while let Some(member) = map.next_entry::<&'de str, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Fields(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// The object's top-level fields, borrowed from `bytes`, when the fast path can take it:
/// a JSON object with plain keys whose `metadata` is an object without `resourceVersion`.
fn split(bytes: &[u8]) -> Option<Fields<'_>> {
    // Borrowed `&str` keys fail on escaped keys, which then take the ordinary path.
    let fields: Fields = serde_json::from_slice(bytes).ok()?;
    let metadata = fields.get("metadata")?.get();
    if !metadata.starts_with('{') || metadata.contains("\"resourceVersion\"") {
        return None;
    }
    Some(fields)
}

/// A `Value` with just the `needed` top-level fields, for a selector to look at.
fn partial(fields: &Fields, needed: &[&str]) -> Result<Value, ApiError> {
    let mut object = Map::new();
    for name in needed {
        if let Some(raw) = fields.get(name) {
            object.insert((*name).to_string(), parse(raw)?);
        }
    }
    Ok(Value::Object(object))
}

/// Writes the object back out as a list item: without `kind` and `apiVersion`, with
/// `metadata.resourceVersion` set to `revision`. False, having written nothing, when
/// the metadata is not one the splice can take.
fn write_object(out: &mut Vec<u8>, fields: &Fields, revision: i64) -> bool {
    let before = out.len();
    out.push(b'{');
    let mut first = true;
    for (name, raw) in &fields.0 {
        if matches!(*name, "kind" | "apiVersion") {
            continue;
        }
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        // `split` only accepted keys that needed no unescaping, so they print as they read.
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        let raw = raw.get();
        if *name == "metadata" {
            if !json::write_metadata(out, raw.as_bytes(), revision) {
                out.truncate(before);
                return false;
            }
        } else {
            out.extend_from_slice(raw.as_bytes());
        }
    }
    out.push(b'}');
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(stored: &[u8], revision: i64) -> String {
        let fields = split(stored).expect("fast path");
        let mut out = Vec::new();
        assert!(write_object(&mut out, &fields, revision));
        String::from_utf8(out).unwrap()
    }

    /// What the decoding path writes for the same stored bytes.
    fn decoded_item(stored: &[u8], revision: i64) -> String {
        let mut object: Value = serde_json::from_slice(stored).unwrap();
        set_resource_version(&mut object, revision);
        let mut out = Vec::new();
        json::write_list_item(&mut out, &object);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn splices_the_resource_version_into_metadata() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "uid": "u", "creationTimestamp": "t", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let stored = json::to_stored(&pod);
        let want = r#"{"metadata":{"name":"p","uid":"u","resourceVersion":"42","creationTimestamp":"t","labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i","resources":{}}]},"status":{}}"#;
        assert_eq!(item(&stored, 42), want);
        assert_eq!(decoded_item(&stored, 42), want);
        // Bytes stored before upstream's order keep their order; the version goes first.
        let sorted = serde_json::to_vec(&pod).unwrap();
        assert_eq!(
            item(&sorted, 42),
            r#"{"metadata":{"resourceVersion":"42","creationTimestamp":"t","labels":{"a":"b"},"name":"p","uid":"u"},"spec":{"containers":[{"image":"i","name":"c"}]}}"#
        );
        let spaced = br#"{ "kind" : "Pod" , "metadata" : {  } }"#;
        assert_eq!(item(spaced, 3), r#"{"metadata":{  "resourceVersion":"3"}}"#);
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
            value: json::to_stored(&stored),
            create_revision: 5,
            mod_revision: 9,
        };
        let everything = Filter::from_query(pods, &Query::default()).unwrap();
        for include in [IncludeObject::Metadata, IncludeObject::None] {
            let mut out = Vec::new();
            assert!(append_row(&mut out, pods, &kv, &everything, include).unwrap());
            let decoded = decode_as(pods, &kv).unwrap();
            let want = table::table(pods, &[decoded], json!({}), include);
            let mut want_bytes = Vec::new();
            json::write_table_row(&mut want_bytes, &want["rows"][0]);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(want_bytes).unwrap()
            );
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
        let annotated = br#"{"metadata":{"annotations":{"note":"\"resourceVersion\": 1"}}}"#;
        assert_eq!(
            item(annotated, 9),
            r#"{"metadata":{"resourceVersion":"9","annotations":{"note":"\"resourceVersion\": 1"}}}"#
        );
        // Metadata the splice cannot read leaves the output as it was.
        let escaped = br#"{"metadata":{"n\u0061me":"p"}}"#;
        let mut out = b"[".to_vec();
        assert!(!write_object(&mut out, &split(escaped).unwrap(), 1));
        assert_eq!(out, b"[");
    }
}
