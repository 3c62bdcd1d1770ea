//! What a structural schema does to an object before it is validated: fields the
//! schema does not specify are pruned (unless `x-kubernetes-preserve-unknown-fields`
//! keeps them), and missing fields with a `default` get it, as upstream's decoding of
//! custom resources does.

use crate::schema::fields::BodyShape;
use crate::schema::schemas;
use serde_json::{Map, Value};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Drops every field `object` has that `schema` does not specify; returns their paths
/// (upstream's strict decoding names: `spec.foo`, `spec.items[0].bar`).
pub fn prune_object(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    let Some(fields) = object.as_object_mut() else {
        return unknown;
    };
    // The root's type fields and metadata are not the schema's business.
    let metadata = fields.remove("metadata");
    let api_version = fields.remove("apiVersion");
    let kind = fields.remove("kind");
    let mut body = Value::Object(std::mem::take(fields));
    prune(schema, &mut body, "", &mut unknown);
    let Value::Object(mut body) = body else {
        return unknown;
    };
    if let Some(mut metadata) = metadata {
        for path in schemas().prune(OBJECT_META, &mut metadata, BodyShape::Object) {
            unknown.push(format!("metadata.{path}"));
        }
        body.insert("metadata".into(), metadata);
    }
    for (key, value) in [("apiVersion", api_version), ("kind", kind)] {
        if let Some(value) = value {
            body.insert(key.into(), value);
        }
    }
    *fields = body;
    unknown
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn prune(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    if flag(schema, "x-kubernetes-int-or-string") {
        return;
    }
    match value {
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        Value::Object(fields) => prune_fields(schema, fields, path, unknown),
        _ => {}
    }
}

fn prune_fields(
    schema: &Value,
    fields: &mut Map<String, Value>,
    path: &str,
    unknown: &mut Vec<String>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let keep_unknown = flag(schema, "x-kubernetes-preserve-unknown-fields")
        || additional.and_then(Value::as_bool) == Some(true);
    let embedded = flag(schema, "x-kubernetes-embedded-resource");
    let keys: Vec<String> = fields.keys().cloned().collect();
    for key in keys {
        let child_path = join(path, &key);
        let child_schema = properties
            .and_then(|p| p.get(&key))
            .or_else(|| additional.filter(|a| a.is_object()));
        match (child_schema, fields.get_mut(&key)) {
            (Some(child_schema), Some(child)) => prune(child_schema, child, &child_path, unknown),
            (None, Some(child)) if embedded && key == "metadata" => {
                for inner in schemas().prune(OBJECT_META, child, BodyShape::Object) {
                    unknown.push(join(&child_path, &inner));
                }
            }
            (None, _) if embedded && (key == "apiVersion" || key == "kind") => {}
            (None, _) if keep_unknown => {}
            (None, _) => {
                fields.remove(&key);
                unknown.push(child_path);
            }
            (Some(_), None) => {}
        }
    }
}

/// Fills every missing field that has a `default`, top-down, so defaults inside a
/// defaulted object apply too.
pub fn default_object(schema: &Value, object: &mut Value) {
    apply_defaults(schema, object);
}

fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(fields) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, child_schema) in properties {
                    let missing = match fields.get(key) {
                        None => true,
                        // A null where null is not allowed means "use the default".
                        Some(Value::Null) => !flag(child_schema, "nullable"),
                        Some(_) => false,
                    };
                    if missing && let Some(default) = child_schema.get("default") {
                        fields.insert(key.clone(), default.clone());
                    }
                    if let Some(child) = fields.get_mut(key) {
                        apply_defaults(child_schema, child);
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let named = schema.get("properties").and_then(Value::as_object);
                for (key, child) in fields.iter_mut() {
                    if !named.is_some_and(|n| n.contains_key(key)) {
                        apply_defaults(additional, child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "replicas": {"type": "integer", "default": 1},
                        "strategy": {"type": "object", "default": {},
                                     "properties": {"type": {"type": "string", "default": "Rolling"}}},
                        "ports": {"type": "array", "items": {"type": "object",
                                  "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}}}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                 "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}}
                    }
                },
                "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
            }
        })
    }

    #[test]
    fn unknown_fields_are_pruned_where_the_schema_is_closed() {
        let mut object = json!({
            "apiVersion": "x.example.com/v1", "kind": "Thing",
            "metadata": {"name": "t", "bogus": 1},
            "spec": {"replicas": 2, "extra": true,
                     "ports": [{"port": 80, "junk": 1}],
                     "labels": {"a": "b"},
                     "free": {"anything": [1], "known": {"a": "x", "b": "y"}}},
            "top": 1
        });
        let unknown = prune_object(&schema(), &mut object);
        assert_eq!(
            unknown,
            vec![
                "spec.extra",
                "spec.free.known.b",
                "spec.ports[0].junk",
                "top",
                "metadata.bogus"
            ]
        );
        assert_eq!(object["spec"]["free"]["anything"], json!([1]));
        assert_eq!(object["spec"]["labels"], json!({"a": "b"}));
        assert_eq!(object["kind"], "Thing");
        assert_eq!(object["metadata"], json!({"name": "t"}));
    }

    #[test]
    fn defaults_fill_missing_fields_top_down() {
        let mut object = json!({"spec": {"ports": [{"port": 80}]}});
        default_object(&schema(), &mut object);
        assert_eq!(
            object["spec"],
            json!({"replicas": 1, "strategy": {"type": "Rolling"},
                   "ports": [{"port": 80, "protocol": "TCP"}]})
        );
        let mut explicit = json!({"spec": {"replicas": 5, "strategy": {"type": "Recreate"}}});
        default_object(&schema(), &mut explicit);
        assert_eq!(explicit["spec"]["replicas"], 5);
        assert_eq!(explicit["spec"]["strategy"]["type"], "Recreate");
    }
}
