//! Unknown fields: walking a JSON value along a kind's schema to find (and drop) the
//! fields the kind does not have, as upstream's decoder does for built-in types. Found
//! fields are named the way upstream's strict decoder names them
//! (`spec.containers[0].foo`).

use super::Schemas;
use serde_json::Value;
use std::collections::HashMap;

/// What a body is, which decides how its fields are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyShape {
    /// A whole object (create, update).
    Object,
    /// A merge or strategic merge patch: `$`-keys are directives and a `null` value
    /// deletes, so neither is a field the patch adds.
    MergePatch,
}

/// The schemas reduced to what the unknown-field walk reads, with every `$ref` and
/// `allOf` wrapper followed once, when the schemas are built: walking a body then
/// looks up only its own field names (resolving references by name on every field was
/// most of a create's validation cost).
#[derive(Default)]
pub(super) struct FieldTree {
    nodes: Vec<FieldNode>,
    /// Each named schema's node.
    roots: HashMap<String, usize>,
}

#[derive(Default)]
struct FieldNode {
    /// Any field goes below (see `preserves_unknown`).
    free: bool,
    /// A struct's fields and their nodes.
    properties: Option<HashMap<String, usize>>,
    /// The node of a map's values (when there are no declared fields).
    values: Option<usize>,
    /// The node of a list's items.
    items: Option<usize>,
}

impl FieldTree {
    pub(super) fn build(schemas: &Schemas) -> FieldTree {
        let mut tree = FieldTree {
            nodes: Vec::new(),
            roots: HashMap::new(),
        };
        // Keyed by the resolved schema's address: each one becomes one node, so
        // recursive schemas (JSONSchemaProps) close into cycles instead of recursing.
        let mut made = HashMap::new();
        for (name, schema) in &schemas.components {
            let node = tree.compile(schemas, schema, &mut made);
            tree.roots.insert(name.clone(), node);
        }
        tree
    }

    fn compile(
        &mut self,
        schemas: &Schemas,
        schema: &Value,
        made: &mut HashMap<*const Value, usize>,
    ) -> usize {
        let schema = schemas.resolve(schema);
        if let Some(&index) = made.get(&std::ptr::from_ref(schema)) {
            return index;
        }
        let index = self.nodes.len();
        self.nodes.push(FieldNode::default());
        made.insert(std::ptr::from_ref(schema), index);
        let mut node = FieldNode {
            free: preserves_unknown(schema),
            ..FieldNode::default()
        };
        if !node.free {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                node.properties = Some(
                    properties
                        .iter()
                        .map(|(key, field)| (key.clone(), self.compile(schemas, field, made)))
                        .collect(),
                );
            } else if let Some(values) =
                schema.get("additionalProperties").filter(|v| v.is_object())
            {
                node.values = Some(self.compile(schemas, values, made));
            }
            if let Some(items) = schema.get("items") {
                node.items = Some(self.compile(schemas, items, made));
            }
        }
        self.nodes[index] = node;
        index
    }

    fn walk(
        &self,
        index: usize,
        value: &mut Value,
        path: &mut String,
        shape: BodyShape,
        found: &mut Vec<String>,
    ) {
        let node = &self.nodes[index];
        if node.free {
            return;
        }
        match value {
            Value::Object(map) => {
                if let Some(properties) = &node.properties {
                    map.retain(|key, field| {
                        if shape == BodyShape::MergePatch
                            && (key.starts_with('$') || field.is_null())
                        {
                            return true;
                        }
                        let len = path.len();
                        push_field(path, key);
                        let keep = match properties.get(key) {
                            Some(&field_node) => {
                                self.walk(field_node, field, path, shape, found);
                                true
                            }
                            None => {
                                found.push(path.clone());
                                false
                            }
                        };
                        path.truncate(len);
                        keep
                    });
                } else if let Some(values) = node.values {
                    for (key, field) in map.iter_mut() {
                        let len = path.len();
                        push_field(path, key);
                        self.walk(values, field, path, shape, found);
                        path.truncate(len);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_node) = node.items {
                    for (i, item) in items.iter_mut().enumerate() {
                        let len = path.len();
                        push_index(path, i);
                        self.walk(item_node, item, path, shape, found);
                        path.truncate(len);
                    }
                }
            }
            _ => {}
        }
    }

    /// The node of one step of a JSON pointer.
    fn child(&self, index: usize, token: &str) -> Child {
        let node = &self.nodes[index];
        if node.free {
            return Child::Free;
        }
        if let Some(properties) = &node.properties {
            return properties
                .get(token)
                .map_or(Child::Unknown, |&field| Child::Field(field));
        }
        if let Some(values) = node.values {
            return Child::Field(values);
        }
        if let Some(items) = node.items {
            return Child::Item(items);
        }
        Child::Free
    }
}

impl Schemas {
    /// Removes from `value` every field the named schema does not have; returns their
    /// paths in document order.
    pub fn prune(&self, schema_name: &str, value: &mut Value, shape: BodyShape) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(&root) = self.fields.roots.get(schema_name) {
            self.fields
                .walk(root, value, &mut String::new(), shape, &mut found);
        }
        found
    }

    /// The unknown fields a JSON patch (RFC 6902) would add: operations whose path
    /// names a field the kind lacks, and unknown fields inside added values.
    pub fn json_patch_unknown(&self, schema_name: &str, patch: &Value) -> Vec<String> {
        let mut found = Vec::new();
        let (Some(&root), Some(ops)) = (self.fields.roots.get(schema_name), patch.as_array())
        else {
            return found;
        };
        for op in ops {
            if !matches!(
                op.get("op").and_then(Value::as_str),
                Some("add" | "replace")
            ) {
                continue;
            }
            let Some(pointer) = op.get("path").and_then(Value::as_str) else {
                continue;
            };
            let mut path = String::new();
            let mut node = root;
            let mut known = true;
            for token in pointer.split('/').skip(1) {
                let token = token.replace("~1", "/").replace("~0", "~");
                match self.fields.child(node, &token) {
                    Child::Field(next) => {
                        push_field(&mut path, &token);
                        node = next;
                    }
                    Child::Item(next) => {
                        path.push_str(&format!("[{token}]"));
                        node = next;
                    }
                    Child::Unknown => {
                        push_field(&mut path, &token);
                        found.push(path.clone());
                        known = false;
                        break;
                    }
                    Child::Free => {
                        known = false;
                        break;
                    }
                }
            }
            if known && let Some(value) = op.get("value") {
                let mut value = value.clone();
                self.fields
                    .walk(node, &mut value, &mut path, BodyShape::Object, &mut found);
            }
        }
        found
    }
}

/// The fields a JSON document sets twice in one object (the last one wins when it is
/// decoded), named like unknown fields. Empty when the body is not JSON: its decoder
/// reports that.
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let seed = Duplicates {
        path: String::new(),
        found: &mut found,
    };
    match serde::de::DeserializeSeed::deserialize(seed, &mut deserializer) {
        Ok(()) => found,
        Err(_) => Vec::new(),
    }
}

/// Decodes a JSON document as `serde_json::from_slice` does, and says whether some
/// object in it sets a field twice (only then is `duplicate_fields` worth running to
/// name them: a second walk of every body would cost as much as its decoding).
pub fn decode_noting_duplicates(raw: &[u8]) -> serde_json::Result<(Value, bool)> {
    let duplicated = std::cell::Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let value = serde::de::DeserializeSeed::deserialize(Noting(&duplicated), &mut deserializer)?;
    deserializer.end()?;
    Ok((value, duplicated.get()))
}

/// Builds a `Value` like serde_json's own visitor, setting the flag when an object's
/// key repeats (the later value wins, as there).
#[derive(Clone, Copy)]
struct Noting<'a>(&'a std::cell::Cell<bool>);

impl<'de> serde::de::DeserializeSeed<'de> for Noting<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Noting<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            if out.insert(key, value).is_some() {
                self.0.set(true);
            }
        }
        Ok(Value::Object(out))
    }
}

/// Walks a JSON document without building it, noting keys seen twice per object.
struct Duplicates<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Duplicates<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Duplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let mut path = self.path.clone();
            push_field(&mut path, &key);
            if !seen.insert(key) {
                self.found.push(path.clone());
            }
            map.next_value_seed(Duplicates {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let seed = Duplicates {
                path: format!("{}[{index}]", self.path),
                found: &mut *self.found,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

enum Child {
    Field(usize),
    Item(usize),
    Unknown,
    /// Anything goes below (an untyped object or a scalar).
    Free,
}

/// Whether a schema accepts any fields: it says so, or it is an object without any
/// declared fields (`RawExtension`, `FieldsV1`, ...), or it has no type at all.
fn preserves_unknown(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || (schema.get("properties").is_none()
            && schema
                .get("additionalProperties")
                .is_none_or(|v| !v.is_object())
            && schema.get("items").is_none())
}

fn push_index(path: &mut String, index: usize) {
    use std::fmt::Write;
    let _ = write!(path, "[{index}]");
}

fn push_field(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

#[cfg(test)]
mod tests {
    use super::super::schemas;
    use super::*;
    use serde_json::json;

    const POD: &str = "io.k8s.api.core.v1.Pod";

    #[test]
    fn unknown_fields_are_found_and_dropped() {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod", "foo": 1,
            "metadata": {"name": "p", "labels": {"a": "b"}, "bogus": true,
                         "managedFields": [{"fieldsV1": {"f:spec": {}}}]},
            "spec": {"containers": [
                {"name": "c", "image": "i", "imagee": "x",
                 "resources": {"limits": {"cpu": 1}},
                 "ports": [{"containerPort": 80, "hostt": 1}]}
            ]},
        });
        let found = schemas().prune(POD, &mut pod, BodyShape::Object);
        assert_eq!(
            found,
            vec![
                "foo",
                "metadata.bogus",
                "spec.containers[0].imagee",
                "spec.containers[0].ports[0].hostt"
            ]
        );
        assert!(pod.get("foo").is_none());
        assert!(pod["spec"]["containers"][0].get("imagee").is_none());
        assert_eq!(pod["spec"]["containers"][0]["image"], "i");
        assert_eq!(pod["metadata"]["labels"]["a"], "b");
        // Free-form parts keep whatever they hold.
        assert_eq!(
            pod["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"],
            json!({})
        );
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            1
        );
    }

    #[test]
    fn known_objects_pass_untouched() {
        let mut deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"conditions": [{"type": "Available", "status": "True"}]},
        });
        let before = deployment.clone();
        let found = schemas().prune(
            "io.k8s.api.apps.v1.Deployment",
            &mut deployment,
            BodyShape::Object,
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(deployment, before);
    }

    #[test]
    fn patches_keep_directives_and_deletions() {
        let mut patch = json!({
            "metadata": {"annotations": {"x": "y"}},
            "spec": {
                "$setElementOrder/containers": [{"name": "c"}],
                "containers": [{"name": "c", "image": "j", "foo": 1}, {"$patch": "delete", "name": "d"}],
                "gone": null,
                "bar": 2,
            },
        });
        let found = schemas().prune(POD, &mut patch, BodyShape::MergePatch);
        assert_eq!(found, vec!["spec.bar", "spec.containers[0].foo"]);
        assert!(patch["spec"].get("$setElementOrder/containers").is_some());
        assert!(patch["spec"].get("gone").is_some());
        assert_eq!(patch["spec"]["containers"][1]["$patch"], "delete");
    }

    #[test]
    fn duplicates_are_named_by_path() {
        let raw = br#"{"metadata": {"name": "a", "name": "b"},
                       "spec": {"containers": [{"name": "c", "image": "i", "image": "j"}], "paused": true, "paused": false}}"#;
        assert_eq!(
            duplicate_fields(raw),
            vec!["metadata.name", "spec.containers[0].image", "spec.paused"]
        );
        assert!(duplicate_fields(b"{\"a\": [1, {\"b\": 2}]}").is_empty());
        assert!(duplicate_fields(b"kind: Pod").is_empty());
    }

    #[test]
    fn decoding_notes_duplicates_and_matches_serde_json() {
        let docs: &[&[u8]] = &[
            br#"{"a": 1, "b": -2, "c": 1.5, "d": 1e300, "e": null, "f": [true, false, {}],
                 "g": "\u00e9\n\"x\"", "h": 18446744073709551615, "i": {"j": [[]]}}"#,
            b"[1, 2, 3]",
            b"\"text\"",
            b"  7  ",
        ];
        for doc in docs {
            let (value, duplicated) = decode_noting_duplicates(doc).unwrap();
            assert_eq!(value, serde_json::from_slice::<Value>(doc).unwrap());
            assert!(!duplicated);
        }
        let (value, duplicated) =
            decode_noting_duplicates(br#"{"spec": {"x": [{"a": 1, "a": 2}]}}"#).unwrap();
        assert!(duplicated);
        assert_eq!(value, json!({"spec": {"x": [{"a": 2}]}}));
        for bad in [&b"{\"a\": 1} x"[..], b"{\"a\": }", b"", b"kind: Pod"] {
            assert!(decode_noting_duplicates(bad).is_err(), "{bad:?}");
        }
        // serde_json's nesting limit holds here too.
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(decode_noting_duplicates(deep.as_bytes()).is_err());
    }

    #[test]
    fn json_patches_are_checked_along_their_paths() {
        let patch = json!([
            {"op": "add", "path": "/spec/foo", "value": 1},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "x"},
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "d", "imagee": "y"}},
            {"op": "add", "path": "/metadata/labels/a~1b", "value": "v"},
            {"op": "remove", "path": "/spec/bar"},
        ]);
        assert_eq!(
            schemas().json_patch_unknown(POD, &patch),
            vec!["spec.foo", "spec.containers[-].imagee"]
        );
    }
}
