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
    /// What JSON the field takes (checked whatever `free` says: scalars are free).
    ty: Ty,
    /// The Go type upstream decodes the field into, as its decoder names it in errors
    /// (`string`, `int32`, `map[string]string`, `[]v1.Container`, `v1.PodSpec`).
    go: String,
    /// Any field goes below (see `preserves_unknown`).
    free: bool,
    /// A struct's fields and their nodes.
    properties: Option<HashMap<String, usize>>,
    /// The node of a map's values (when there are no declared fields).
    values: Option<usize>,
    /// The node of a list's items.
    items: Option<usize>,
}

/// The JSON a field takes. Upstream's decoder takes `null` for any field (its zero
/// value), so null is never a mismatch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Ty {
    /// Anything (raw extensions, free-form JSON, schemas without a type).
    #[default]
    Any,
    String,
    /// `[]byte`: a string that must also be base64 as Go's StdEncoding reads it.
    Bytes,
    Int32,
    Int64,
    Number,
    Boolean,
    Object,
    Array,
    /// `IntOrString` and `Quantity`: a string or a number.
    IntOrString,
}

impl Ty {
    fn of(schema: &Value) -> Ty {
        if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return Ty::IntOrString;
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("string") if schema.get("format").and_then(Value::as_str) == Some("byte") => {
                Ty::Bytes
            }
            Some("string") => Ty::String,
            Some("integer") if schema.get("format").and_then(Value::as_str) == Some("int32") => {
                Ty::Int32
            }
            Some("integer") => Ty::Int64,
            Some("number") => Ty::Number,
            Some("boolean") => Ty::Boolean,
            // An object that declares no fields takes any JSON (RawExtension, FieldsV1).
            Some("object") if !preserves_unknown(schema) => Ty::Object,
            Some("array") => Ty::Array,
            _ => Ty::Any,
        }
    }

    /// How the decoder names `value` when it cannot go into this type, or `None` when
    /// it can.
    fn mismatch(self, value: &Value) -> Option<String> {
        let fits = match (self, value) {
            (_, Value::Null) | (Ty::Any, _) => true,
            (Ty::String | Ty::Bytes, Value::String(_)) => true,
            (Ty::Int32, Value::Number(n)) => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            (Ty::Int64, Value::Number(n)) => n.as_i64().is_some(),
            (Ty::Number, Value::Number(_)) => true,
            (Ty::Boolean, Value::Bool(_)) => true,
            (Ty::Object, Value::Object(_)) => true,
            (Ty::Array, Value::Array(_)) => true,
            (Ty::IntOrString, Value::String(_) | Value::Number(_)) => true,
            _ => false,
        };
        if fits {
            return None;
        }
        Some(match value {
            Value::String(_) => "string".to_string(),
            // A number that is one but not of this size or form is named with its text.
            Value::Number(n) if matches!(self, Ty::Int32 | Ty::Int64) => format!("number {n}"),
            Value::Number(_) => "number".to_string(),
            Value::Bool(_) => "bool".to_string(),
            Value::Array(_) => "array".to_string(),
            Value::Object(_) => "object".to_string(),
            Value::Null => "null".to_string(),
        })
    }
}

/// A field whose value its type cannot take: the first one found, named as upstream's
/// decoder does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mistyped {
    /// `json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of
    /// type map[string]string`.
    pub message: String,
}

/// What a walk found: unknown fields in document order, and the first mistyped field.
#[derive(Default)]
struct Found {
    unknown: Vec<String>,
    mistyped: Option<Mistyped>,
    /// The field names from the root, without list indices or map keys: how the
    /// decoder names a field in a type error.
    go_path: String,
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
            if tree.nodes[node].go == "struct" {
                // A kind is reached by its name, not by a reference that carries it.
                tree.nodes[node].go = go_name(name);
            }
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
        let named = named_type(schema);
        let schema = schemas.resolve(schema);
        if let Some(&index) = made.get(&std::ptr::from_ref(schema)) {
            return index;
        }
        let index = self.nodes.len();
        self.nodes.push(FieldNode::default());
        made.insert(std::ptr::from_ref(schema), index);
        let mut node = FieldNode {
            ty: Ty::of(schema),
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
        node.go = match (named, node.ty) {
            (Some(name), _) => name,
            (None, Ty::String) => "string".into(),
            (None, Ty::Bytes) => "[]uint8".into(),
            (None, Ty::Int32) => "int32".into(),
            (None, Ty::Int64) => "int64".into(),
            (None, Ty::Number) => "float64".into(),
            (None, Ty::Boolean) => "bool".into(),
            (None, Ty::Array) => {
                let item = node.items.map_or("", |i| self.nodes[i].go.as_str());
                format!("[]{item}")
            }
            (None, Ty::Object) => match node.values {
                Some(v) => format!("map[string]{}", self.nodes[v].go),
                None => "struct".into(),
            },
            (None, _) => String::new(),
        };
        self.nodes[index] = node;
        index
    }

    /// Walks `value` along node `index`, inside the struct whose Go name is `owner`
    /// (named in type errors): drops unknown fields, notes them and the first value of
    /// the wrong type.
    fn walk_in(
        &self,
        index: usize,
        value: &mut Value,
        path: &mut String,
        shape: BodyShape,
        found: &mut Found,
        owner: &str,
    ) {
        let node = &self.nodes[index];
        if let Some(what) = node.ty.mismatch(value) {
            // A body that is not an object at all is the handlers' to refuse.
            if found.mistyped.is_none() && !found.go_path.is_empty() {
                found.mistyped = Some(Mistyped {
                    message: format!(
                        "json: cannot unmarshal {what} into Go struct field {owner}.{} of type {}",
                        found.go_path, node.go
                    ),
                });
            }
            return;
        }
        // Upstream's decoder reads `[]byte` from base64 and stops at the first value
        // that is not, with nothing but the base64 decoder's own words.
        if node.ty == Ty::Bytes
            && let Value::String(text) = value
        {
            if let Err(corrupt) = crate::byte_fields::decode(text)
                && found.mistyped.is_none()
            {
                found.mistyped = Some(Mistyped {
                    message: corrupt.to_string(),
                });
            }
            return;
        }
        if node.free {
            return;
        }
        match value {
            Value::Object(map) => {
                if let Some(properties) = &node.properties {
                    // The struct's own name, without its package (`v1.PodSpec` → `PodSpec`).
                    let name = node.go.rsplit('.').next().unwrap_or_default();
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
                                let go_len = found.go_path.len();
                                push_field(&mut found.go_path, key);
                                self.walk_in(field_node, field, path, shape, found, name);
                                found.go_path.truncate(go_len);
                                true
                            }
                            None => {
                                found.unknown.push(path.clone());
                                false
                            }
                        };
                        path.truncate(len);
                        keep
                    });
                } else if let Some(values) = node.values {
                    for (key, field) in map.iter_mut() {
                        if shape == BodyShape::MergePatch && field.is_null() {
                            continue;
                        }
                        let len = path.len();
                        push_field(path, key);
                        self.walk_in(values, field, path, shape, found, owner);
                        path.truncate(len);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_node) = node.items {
                    for (i, item) in items.iter_mut().enumerate() {
                        let len = path.len();
                        push_index(path, i);
                        self.walk_in(item_node, item, path, shape, found, owner);
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
        self.prune_checked(schema_name, value, shape).0
    }

    /// `prune`, also checking that every field's value is of its type: the first that
    /// is not comes back as upstream's decoder would name it.
    pub fn prune_checked(
        &self,
        schema_name: &str,
        value: &mut Value,
        shape: BodyShape,
    ) -> (Vec<String>, Option<Mistyped>) {
        let mut found = Found::default();
        if let Some(&root) = self.fields.roots.get(schema_name) {
            self.fields
                .walk_in(root, value, &mut String::new(), shape, &mut found, "");
        }
        (found.unknown, found.mistyped)
    }

    /// The unknown fields a JSON patch (RFC 6902) would add (operations whose path
    /// names a field the kind lacks, and unknown fields inside added values), and the
    /// first added value its field's type cannot take.
    pub fn json_patch_checked(
        &self,
        schema_name: &str,
        patch: &Value,
    ) -> (Vec<String>, Option<Mistyped>) {
        let mut found = Found::default();
        let (Some(&root), Some(ops)) = (self.fields.roots.get(schema_name), patch.as_array())
        else {
            return (Vec::new(), None);
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
            let mut owner = "";
            found.go_path.clear();
            for token in pointer.split('/').skip(1) {
                let token = token.replace("~1", "/").replace("~0", "~");
                match self.fields.child(node, &token) {
                    Child::Field(next) => {
                        if self.fields.nodes[node].properties.is_some() {
                            let go = self.fields.nodes[node].go.as_str();
                            owner = go.rsplit('.').next().unwrap_or_default();
                        }
                        push_field(&mut path, &token);
                        push_field(&mut found.go_path, &token);
                        node = next;
                    }
                    Child::Item(next) => {
                        path.push_str(&format!("[{token}]"));
                        node = next;
                    }
                    Child::Unknown => {
                        push_field(&mut path, &token);
                        found.unknown.push(path.clone());
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
                self.fields.walk_in(
                    node,
                    &mut value,
                    &mut path,
                    BodyShape::Object,
                    &mut found,
                    owner,
                );
            }
        }
        (found.unknown, found.mistyped)
    }
}

/// The fields a JSON document sets twice in one object (the last one wins when it is
/// decoded), named like unknown fields. Empty when the body is not JSON: its decoder
/// reports that.
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    key_occurrences(raw)
        .into_iter()
        .filter_map(|(path, repeated)| repeated.then_some(path))
        .collect()
}

/// Every key of a JSON document in the order it appears, named like unknown fields,
/// each with whether it repeats a key of the same object: the order upstream's strict
/// decoder reports unknown and duplicate fields in. Empty when the body is not JSON.
pub fn key_occurrences(raw: &[u8]) -> Vec<(String, bool)> {
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
    found: &'a mut Vec<(String, bool)>,
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
            let repeated = !seen.insert(key);
            self.found.push((path.clone(), repeated));
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

/// The Go name of a schema that names a component (`$ref`, or `allOf` with one).
fn named_type(schema: &Value) -> Option<String> {
    let reference = schema.get("$ref").or_else(|| {
        match schema
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            Some([only]) => only.get("$ref"),
            _ => None,
        }
    })?;
    Some(go_name(reference.as_str()?.rsplit('/').next()?))
}

/// A component's Go name: `io.k8s.api.core.v1.PodSpec` → `v1.PodSpec`.
fn go_name(component: &str) -> String {
    let mut parts = component.rsplit('.');
    match (parts.next(), parts.next()) {
        (Some(ty), Some(package)) => format!("{package}.{ty}"),
        _ => component.to_string(),
    }
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
            schemas().json_patch_checked(POD, &patch).0,
            vec!["spec.foo", "spec.containers[-].imagee"]
        );
    }

    /// The first mistyped field of `body` as a pod, or of a merge patch of one.
    fn mistyped(body: Value, shape: BodyShape) -> Option<String> {
        let mut body = body;
        schemas()
            .prune_checked(POD, &mut body, shape)
            .1
            .map(|m| m.message)
    }

    #[test]
    fn values_their_field_cannot_take_are_named_as_upstream_does() {
        let pod = |spec: Value| json!({"metadata": {"name": "p"}, "spec": spec});
        // The decoder's words: the innermost struct, the field names from the root
        // (no list indices, no map keys) and the Go type.
        for (body, want) in [
            (
                json!({"metadata": {"labels": "1"}}),
                "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type map[string]string",
            ),
            (
                json!({"metadata": {"labels": {"a": 1}}}),
                "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string",
            ),
            (
                json!({"metadata": "x"}),
                "json: cannot unmarshal string into Go struct field Pod.metadata of type v1.ObjectMeta",
            ),
            (
                pod(json!({"containers": [{"name": "c", "image": 5}]})),
                "json: cannot unmarshal number into Go struct field Container.spec.containers.image of type string",
            ),
            (
                pod(json!({"containers": {"name": "c"}})),
                "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container",
            ),
            (
                pod(json!({"terminationGracePeriodSeconds": 1.5})),
                "json: cannot unmarshal number 1.5 into Go struct field PodSpec.spec.terminationGracePeriodSeconds of type int64",
            ),
            (
                pod(
                    json!({"containers": [{"name": "c", "ports": [{"containerPort": 4_294_967_296_u64}]}]}),
                ),
                "json: cannot unmarshal number 4294967296 into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32",
            ),
            (
                pod(json!({"hostNetwork": "true"})),
                "json: cannot unmarshal string into Go struct field PodSpec.spec.hostNetwork of type bool",
            ),
        ] {
            assert_eq!(
                mistyped(body.clone(), BodyShape::Object).as_deref(),
                Some(want),
                "{body}"
            );
        }
        // What the decoder takes: null anywhere, a number or a string for IntOrString and
        // Quantity, any JSON where the type is free-form.
        for body in [
            json!({"metadata": {"labels": null, "annotations": {"a": "b"}}, "spec": null}),
            pod(json!({"containers": [{"name": "c",
                "resources": {"limits": {"cpu": 1, "memory": "1Gi"}, "requests": {"cpu": 0.5}},
                "livenessProbe": {"httpGet": {"port": "http"}},
                "readinessProbe": {"httpGet": {"port": 8080}}}]})),
            json!({"metadata": {"managedFields": [{"fieldsV1": {"f:spec": {}}}]}}),
            pod(json!({"priority": -5, "activeDeadlineSeconds": 9_000_000_000_u64})),
        ] {
            assert_eq!(mistyped(body.clone(), BodyShape::Object), None, "{body}");
        }
        // A merge patch's nulls delete and its `$` keys are directives: neither is a value.
        let patch = json!({"metadata": {"labels": {"a": null}}, "spec": {"containers": [
            {"name": "c", "$patch": "delete"}], "$setElementOrder/containers": [{"name": "c"}]}});
        assert_eq!(mistyped(patch, BodyShape::MergePatch), None);
        // `[]byte` takes base64 only, refused in the base64 decoder's own words.
        let secret = |data: Value| {
            let mut body = json!({"metadata": {"name": "s"}, "data": data});
            schemas()
                .prune_checked("io.k8s.api.core.v1.Secret", &mut body, BodyShape::Object)
                .1
                .map(|m| m.message)
        };
        assert_eq!(secret(json!({"a": "aGVs\nbG8=", "b": null})), None);
        assert_eq!(
            secret(json!({"a": "aGVs bG8="})).as_deref(),
            Some("illegal base64 data at input byte 4")
        );
        assert_eq!(
            secret(json!({"a": 5})).as_deref(),
            Some("json: cannot unmarshal number into Go struct field Secret.data of type []uint8")
        );
        // A JSON patch's added values are checked where their path leads.
        let patch = json!([{"op": "replace", "path": "/spec/containers/0/image", "value": 1}]);
        assert_eq!(
            schemas()
                .json_patch_checked(POD, &patch)
                .1
                .map(|m| m.message)
                .as_deref(),
            Some(
                "json: cannot unmarshal number into Go struct field Container.spec.containers.image of type string"
            )
        );
    }
}
