//! Field checks shared by the per-kind validators, with upstream's messages.

use super::status::Cause;
use serde_json::Value;

/// The value at a dotted path inside `object`.
pub fn at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = object;
    for part in path {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// `Invalid value: <json>: detail` for any JSON value (numbers print bare, as upstream).
pub fn invalid_value(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {value}: {detail}"),
    }
}

/// An integer at `path` that must not be negative (replicas, limits, …).
pub fn non_negative(object: &Value, path: &[&str], causes: &mut Vec<Cause>) {
    if let Some(v) = at(object, path)
        && v.as_i64().is_some_and(|n| n < 0)
    {
        causes.push(invalid_value(
            path.join("."),
            v,
            "must be greater than or equal to 0",
        ));
    }
}

/// An integer at `path` that must be positive when present.
pub fn positive(object: &Value, path: &[&str], causes: &mut Vec<Cause>) {
    if let Some(v) = at(object, path)
        && v.as_i64().is_some_and(|n| n <= 0)
    {
        causes.push(invalid_value(path.join("."), v, "must be greater than 0"));
    }
}

/// A field that may not change on update.
pub fn immutable(old: &Value, new: &Value, path: &[&str], causes: &mut Vec<Cause>) {
    let before = at(old, path);
    let after = at(new, path);
    if before != after {
        causes.push(invalid_value(
            path.join("."),
            after.unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
}

/// A required string (or object/list) at `path`.
pub fn required(object: &Value, path: &[&str], causes: &mut Vec<Cause>) {
    let missing = match at(object, path) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if missing {
        causes.push(Cause::required(path.join("."), ""));
    }
}

/// A string at `path` that must be one of `allowed` when present.
pub fn one_of(object: &Value, path: &[&str], allowed: &[&str], causes: &mut Vec<Cause>) {
    if let Some(v) = at(object, path).and_then(Value::as_str)
        && !allowed.contains(&v)
    {
        causes.push(Cause::unsupported(path.join("."), v, allowed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_match_upstream() {
        let mut causes = Vec::new();
        non_negative(
            &json!({"spec": {"replicas": -1}}),
            &["spec", "replicas"],
            &mut causes,
        );
        assert_eq!(
            causes[0].message,
            "Invalid value: -1: must be greater than or equal to 0"
        );
        immutable(
            &json!({"spec": {"a": 1}}),
            &json!({"spec": {"a": 2}}),
            &["spec", "a"],
            &mut causes,
        );
        assert_eq!(causes[1].message, "Invalid value: 2: field is immutable");
        required(&json!({}), &["spec", "x"], &mut causes);
        assert_eq!(causes[2].field, "spec.x");
    }
}
