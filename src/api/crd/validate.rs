//! Validation of a custom object against its version's structural OpenAPI v3 schema,
//! with upstream's field paths and messages (`spec.replicas: Invalid value: 15:
//! spec.replicas in body should be less than or equal to 10`), since kubectl prints
//! them verbatim.

use crate::byte_fields;
use crate::status::Cause;
use serde_json::{Map, Value};

/// The problems of `object` under `schema` (the version's `openAPIV3Schema`). The
/// root's `apiVersion`, `kind` and `metadata` are the server's to check, not the schema's.
pub fn validate_object(schema: &Value, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(fields) = object.as_object() else {
        causes.push(type_error("", schema_type(schema), object));
        return causes;
    };
    let mut body = fields.clone();
    for key in ["apiVersion", "kind", "metadata"] {
        body.remove(key);
    }
    validate(schema, &Value::Object(body), "", &mut causes);
    causes
}

/// `a.b` for a property `b` of `a`; the root has no prefix.
fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn schema_type(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or("")
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The JSON type name upstream's validator reports for a value.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(path: &str, expected: &str, value: &Value) -> Cause {
    let actual = json_type(value);
    Cause {
        reason: "FieldValueTypeInvalid",
        field: path.to_string(),
        message: format!(
            "Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
        ),
    }
}

fn invalid(path: &str, value: &Value, detail: String) -> Cause {
    crate::fields::invalid_value(path, value, &detail)
}

fn expected_type(schema: &Value) -> &str {
    if flag(schema, "x-kubernetes-int-or-string") {
        "integer or string"
    } else {
        schema_type(schema)
    }
}

/// Whether `value` has the schema's type (an int-or-string field takes either).
fn type_matches(schema: &Value, value: &Value) -> bool {
    if flag(schema, "x-kubernetes-int-or-string") {
        return matches!(json_type(value), "integer" | "string");
    }
    match schema_type(schema) {
        "" => true,
        "number" => value.is_number(),
        expected => json_type(value) == expected,
    }
}

fn validate(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() {
        let typed = !schema_type(schema).is_empty() || flag(schema, "x-kubernetes-int-or-string");
        if typed && !flag(schema, "nullable") {
            causes.push(type_error(path, expected_type(schema), value));
        }
        return;
    }
    if !type_matches(schema, value) {
        causes.push(type_error(path, expected_type(schema), value));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.to_string(),
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                listed.join(", ")
            ),
        });
    }
    match value {
        Value::String(text) => validate_string(schema, text, value, path, causes),
        Value::Number(_) => validate_number(schema, value, path, causes),
        Value::Array(items) => validate_array(schema, items, value, path, causes),
        Value::Object(fields) => validate_object_fields(schema, fields, value, path, causes),
        _ => {}
    }
    for sub in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(sub, value, path, causes);
    }
    for (key, at_least, at_most) in [("anyOf", 1, usize::MAX), ("oneOf", 1, 1)] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let passing = options
                .iter()
                .filter(|option| {
                    let mut found = Vec::new();
                    validate(option, value, path, &mut found);
                    found.is_empty()
                })
                .count();
            if passing < at_least || passing > at_most {
                let how = if key == "oneOf" {
                    "must validate one and only one schema (oneOf)"
                } else {
                    "must validate at least one schema (anyOf)"
                };
                causes.push(invalid(path, value, format!("{path} in body {how}")));
            }
        }
    }
    if let Some(not) = schema.get("not") {
        let mut found = Vec::new();
        validate(not, value, path, &mut found);
        if found.is_empty() {
            causes.push(invalid(
                path,
                value,
                format!("{path} in body should not be valid against schema (not)"),
            ));
        }
    }
}

fn validate_string(schema: &Value, text: &str, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let length = text.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: path.to_string(),
            message: format!("Too long: may not be more than {max} bytes"),
        });
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        causes.push(invalid(
            path,
            value,
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        // An unparsable pattern was refused when the CRD was written; one that slips
        // through (stored by an older server) must not reject every object.
        if let Ok(re) = regex::Regex::new(pattern)
            && !re.is_match(text)
        {
            causes.push(invalid(
                path,
                value,
                format!("{path} in body should match '{pattern}'"),
            ));
        }
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str)
        && !format_matches(format, text)
    {
        causes.push(invalid(
            path,
            value,
            format!("{path} in body must be of type {format}: {value}"),
        ));
    }
}

/// The string formats upstream checks that are cheap to check here; others pass.
fn format_matches(format: &str, text: &str) -> bool {
    match format {
        "date-time" | "datetime" => text.parse::<jiff::Timestamp>().is_ok(),
        "date" => text.parse::<jiff::civil::Date>().is_ok(),
        "byte" => byte_fields::decode(text).is_ok(),
        "uuid" => uuid::Uuid::parse_str(text).is_ok(),
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

fn validate_number(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(n) = value.as_f64() else {
        return;
    };
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMaximum");
        if n > max || (exclusive && n >= max) {
            let how = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            causes.push(invalid(
                path,
                value,
                format!("{path} in body should be {how} {}", number(max)),
            ));
        }
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMinimum");
        if n < min || (exclusive && n <= min) {
            let how = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            causes.push(invalid(
                path,
                value,
                format!("{path} in body should be {how} {}", number(min)),
            ));
        }
    }
    if let Some(factor) = schema.get("multipleOf").and_then(Value::as_f64)
        && factor > 0.0
        && (n / factor).fract() != 0.0
    {
        causes.push(invalid(
            path,
            value,
            format!("{path} in body should be a multiple of {}", number(factor)),
        ));
    }
    let range = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => Some((i32::MIN as f64, i32::MAX as f64, "int32")),
        Some("int64") => Some((i64::MIN as f64, i64::MAX as f64, "int64")),
        _ => None,
    };
    if let Some((low, high, name)) = range
        && (n < low || n > high || n.fract() != 0.0)
    {
        causes.push(invalid(
            path,
            value,
            format!("{path} in body must be of type {name}: \"{value}\""),
        ));
    }
}

/// A bound as upstream prints it: integers without a fraction.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn validate_array(
    schema: &Value,
    items: &[Value],
    value: &Value,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    let count = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && count > max
    {
        causes.push(Cause {
            reason: "FieldValueTooMany",
            field: path.to_string(),
            message: format!("Too many: {count}: must have at most {max} items"),
        });
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && count < min
    {
        causes.push(invalid(
            path,
            value,
            format!("{path} in body should have at least {min} items"),
        ));
    }
    let set = schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set");
    if flag(schema, "uniqueItems") || set {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                causes.push(Cause {
                    reason: "FieldValueDuplicate",
                    field: format!("{path}[{i}]"),
                    message: format!("Duplicate value: {item}"),
                });
            }
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}[{i}]"), causes);
        }
    }
}

fn validate_object_fields(
    schema: &Value,
    fields: &Map<String, Value>,
    value: &Value,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !fields.contains_key(required) {
            causes.push(Cause::required(join(path, required), ""));
        }
    }
    let count = fields.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && count > max
    {
        causes.push(Cause {
            reason: "FieldValueTooMany",
            field: path.to_string(),
            message: format!("Too many: {count}: must have at most {max} items"),
        });
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && count < min
    {
        causes.push(invalid(
            path,
            value,
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    if flag(schema, "x-kubernetes-embedded-resource") {
        for key in ["apiVersion", "kind"] {
            let empty = fields
                .get(key)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if empty {
                causes.push(Cause::required(join(path, key), "must not be empty"));
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, child) in fields {
        let child_path = join(path, key);
        match properties.and_then(|p| p.get(key)) {
            Some(child_schema) => validate(child_schema, child, &child_path, causes),
            None => {
                if let Some(child_schema) = additional {
                    validate(child_schema, child, &child_path, causes);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The CronTab schema of the Kubernetes documentation's CRD walkthrough, with the
    /// validation example's rules.
    fn crontab_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["cronSpec"],
                    "properties": {
                        "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                        "image": {"type": "string", "maxLength": 10},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "minLength": 2}},
                        "port": {"x-kubernetes-int-or-string": true},
                        "note": {"type": "string", "nullable": true},
                        "count": {"type": "integer", "format": "int32"},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "x-kubernetes-preserve-unknown-fields": true}
                    }
                }
            }
        })
    }

    fn messages(object: Value) -> Vec<String> {
        validate_object(&crontab_schema(), &object)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn the_docs_example_reports_pattern_and_maximum() {
        let found = messages(json!({
            "apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x"},
            "spec": {"cronSpec": "* * * *", "image": "my-awesome-cron-image", "replicas": 15}
        }));
        assert_eq!(
            found,
            vec![
                "spec.cronSpec: Invalid value: \"* * * *\": spec.cronSpec in body should match '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
                "spec.image: Too long: may not be more than 10 bytes",
                "spec.replicas: Invalid value: 15: spec.replicas in body should be less than or equal to 10",
            ]
        );
    }

    #[test]
    fn valid_objects_pass() {
        let found = messages(json!({"spec": {
            "cronSpec": "*/5 * * * *", "replicas": 1, "mode": "a", "tags": ["ab"],
            "port": "http", "note": null, "count": 7,
            "template": {"apiVersion": "v1", "kind": "Pod", "extra": 1}
        }}));
        assert!(found.is_empty(), "{found:?}");
        assert!(messages(json!({"spec": {"cronSpec": "1 2 3 4 5", "port": 80}})).is_empty());
    }

    #[test]
    fn types_required_enums_items_and_formats() {
        let found = messages(json!({"spec": {
            "replicas": "three", "mode": "c", "tags": ["a", "bb", "cc"], "port": true,
            "count": 3_000_000_000u64, "template": {"kind": "Pod"}, "image": null
        }}));
        assert_eq!(
            found,
            vec![
                "spec.cronSpec: Required value",
                "spec.count: Invalid value: 3000000000: spec.count in body must be of type int32: \"3000000000\"",
                "spec.image: Invalid value: \"null\": spec.image in body must be of type string: \"null\"",
                "spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\"",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer or string: \"boolean\"",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
                "spec.tags: Too many: 3: must have at most 2 items",
                "spec.tags[0]: Invalid value: \"a\": spec.tags[0] in body should be at least 2 chars long",
                "spec.template.apiVersion: Required value: must not be empty",
            ]
        );
    }
}
