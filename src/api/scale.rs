//! The `scale` subresource: an `autoscaling/v1 Scale` view of a workload's
//! `spec.replicas`, `status.replicas` and label selector, as `kubectl scale` and
//! autoscalers read and write it.

use super::fields::invalid_value;
use super::meta::{child_mut, str_at};
use super::status::Cause;
use serde_json::{Map, Value, json};

/// A `metav1.LabelSelector` (`matchLabels` + `matchExpressions`) in query-string form,
/// requirements sorted by key as upstream prints them (`app=web,tier in (a,b)`).
pub fn label_selector_string(selector: &Value) -> String {
    let mut parts: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            let value = value.as_str().unwrap_or_default();
            parts.push((key.clone(), format!("{key}={value}")));
        }
    }
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let key = str_at(expr, &["key"]).unwrap_or_default();
        let mut values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        values.sort_unstable();
        let text = match str_at(expr, &["operator"]).unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        parts.push((key.to_string(), text));
    }
    parts.sort();
    parts
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(",")
}

/// A ReplicationController's plain `key: value` selector in query-string form.
fn map_selector_string(selector: &Map<String, Value>) -> String {
    let mut parts: Vec<String> = selector
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    parts.sort();
    parts.join(",")
}

/// The workload's selector as a string: a map for ReplicationControllers, a
/// `LabelSelector` for the apps/v1 workloads.
pub fn workload_selector(object: &Value) -> String {
    match object.get("spec").and_then(|s| s.get("selector")) {
        Some(Value::Object(map))
            if !map.contains_key("matchLabels") && !map.contains_key("matchExpressions") =>
        {
            map_selector_string(map)
        }
        Some(selector) => label_selector_string(selector),
        None => String::new(),
    }
}

/// The `Scale` of a workload object.
pub fn to_scale(object: &Value) -> Value {
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut scale_meta = Map::new();
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = metadata.get(key) {
            scale_meta.insert(key.into(), v.clone());
        }
    }
    let replicas = |part: &str| {
        object
            .get(part)
            .and_then(|p| p.get("replicas"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": replicas("spec")},
        "status": {"replicas": replicas("status"), "selector": workload_selector(object)},
    })
}

/// Writes a `Scale`'s `spec.replicas` into the workload, or says why it may not.
pub fn apply_scale(object: &mut Value, scale: &Value) -> Result<(), Vec<Cause>> {
    let replicas = scale.get("spec").and_then(|s| s.get("replicas"));
    let replicas = match replicas {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => n,
            Some(_) => {
                return Err(vec![invalid_value(
                    "spec.replicas",
                    v,
                    "must be greater than or equal to 0",
                )]);
            }
            None => {
                return Err(vec![invalid_value(
                    "spec.replicas",
                    v,
                    "must be an integer",
                )]);
            }
        },
    };
    if let Some(root) = object.as_object_mut() {
        child_mut(root, "spec").insert("replicas".into(), json!(replicas));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_print_like_upstream() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "env", "operator": "Exists"}]});
        assert_eq!(
            label_selector_string(&sel),
            "app=web,env,!legacy,tier in (a,b)"
        );
        let rc = json!({"spec": {"selector": {"b": "2", "a": "1"}}});
        assert_eq!(workload_selector(&rc), "a=1,b=2");
    }

    #[test]
    fn scale_round_trip() {
        let mut deploy = json!({"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "7", "labels": {"x": "y"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 1}});
        let scale = to_scale(&deploy);
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(
            scale["status"],
            json!({"replicas": 1, "selector": "app=web"})
        );
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
        assert!(scale["metadata"].get("labels").is_none());
        apply_scale(&mut deploy, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(deploy["spec"]["replicas"], 5);
        let err = apply_scale(&mut deploy, &json!({"spec": {"replicas": -1}})).unwrap_err();
        assert_eq!(err[0].field, "spec.replicas");
        assert_eq!(
            err[0].message,
            "Invalid value: -1: must be greater than or equal to 0"
        );
    }
}
