//! Strategic merge patch (`application/strategic-merge-patch+json`), the patch kind
//! kubectl's client-side apply, `edit`, `set`, `label` and the Python client send.
//! Like a JSON merge patch, except that lists with a merge key (containers by `name`,
//! conditions by `type`, ...) are merged element by element, and it honours the
//! `$patch`, `$setElementOrder/…`, `$retainKeys` and `$deleteFromPrimitiveList/…`
//! directives. Merge keys come from a table of the built-in types' fields (upstream
//! reads them from Go struct tags); lists not in the table are replaced, as upstream
//! does for atomic lists.

use serde_json::{Map, Value};

/// The merge key of a list field, given the name of the object holding it (`path`
/// ends with the field itself).
fn merge_key(path: &[&str]) -> Option<&'static str> {
    let field = *path.last()?;
    let parent = path.iter().rev().nth(1).copied().unwrap_or_default();
    let in_container = path
        .iter()
        .any(|p| matches!(*p, "containers" | "initContainers" | "ephemeralContainers"));
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "env" => "name",
        "ports" if in_container => "containerPort",
        "ports" if parent == "spec" => "port",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "addresses" if parent == "status" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "readinessGates" => "conditionType",
        "topologySpreadConstraints" => "topologyKey",
        "taints" => "key",
        _ => return None,
    })
}

/// Primitive lists merged as sets rather than replaced.
fn is_set_list(path: &[&str]) -> bool {
    matches!(path, ["metadata", "finalizers"])
}

/// Applies a strategic merge `patch` to `target` in place.
pub fn apply(target: &mut Value, patch: &Value) {
    merge_value(target, patch, &mut Vec::new());
}

fn merge_value<'a>(target: &mut Value, patch: &'a Value, path: &mut Vec<&'a str>) {
    match patch {
        Value::Object(patch_map) => {
            if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut replacement = patch_map.clone();
                replacement.remove("$patch");
                *target = Value::Object(strip_directives(replacement));
                return;
            }
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(target_map) = target {
                merge_map(target_map, patch_map, path);
            }
        }
        other => *target = other.clone(),
    }
}

fn strip_directives(mut map: Map<String, Value>) -> Map<String, Value> {
    map.retain(|k, _| !k.starts_with('$'));
    for v in map.values_mut() {
        if let Value::Object(inner) = v {
            *inner = strip_directives(std::mem::take(inner));
        }
    }
    map
}

fn merge_map<'a>(
    target: &mut Map<String, Value>,
    patch: &'a Map<String, Value>,
    path: &mut Vec<&'a str>,
) {
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        path.push(key);
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(_) => {
                let entry = target.entry(key.clone()).or_insert(Value::Null);
                merge_value(entry, value, path);
            }
            Value::Array(items) => {
                let current = target.remove(key).unwrap_or(Value::Null);
                target.insert(key.clone(), merge_list(current, items, path));
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
        path.pop();
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/")
            && let (Some(Value::Array(list)), Value::Array(remove)) = (target.get_mut(field), value)
        {
            list.retain(|v| !remove.contains(v));
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$setElementOrder/")
            && let (Some(Value::Array(list)), Value::Array(order)) = (target.get_mut(field), value)
        {
            reorder(
                list,
                order,
                merge_key(&[path.as_slice(), &[field]].concat()),
            );
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        target.retain(|k, _| keep.iter().any(|v| v == k));
    }
}

fn merge_list<'a>(current: Value, patch: &'a [Value], path: &mut Vec<&'a str>) -> Value {
    let Value::Array(mut list) = current else {
        return Value::Array(strip_list(patch));
    };
    if is_set_list(path) {
        for item in patch {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        return Value::Array(list);
    }
    let Some(key) = merge_key(path) else {
        return Value::Array(strip_list(patch));
    };
    if patch
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Value::Array(
            strip_list(patch)
                .into_iter()
                .filter(|item| item.as_object().is_some_and(|m| !m.is_empty()))
                .collect(),
        );
    }
    for item in patch {
        let id = item.get(key);
        let position = id.and_then(|id| {
            list.iter()
                .position(|existing| existing.get(key) == Some(id))
        });
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merge_value(&mut list[i], item, path),
            (None, false) => {
                let mut fresh = Value::Null;
                merge_value(&mut fresh, item, path);
                list.push(fresh);
            }
        }
    }
    Value::Array(list)
}

fn strip_list(items: &[Value]) -> Vec<Value> {
    items
        .iter()
        .map(|item| match item {
            Value::Object(map) => Value::Object(strip_directives(map.clone())),
            other => other.clone(),
        })
        .collect()
}

/// Orders `list` as `order` says (by merge key, or by value for primitives); items the
/// order does not mention keep their relative order at the end.
fn reorder(list: &mut [Value], order: &[Value], key: Option<&str>) {
    let rank = |item: &Value| {
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k).is_some() && o.get(k) == item.get(k),
                None => o == item,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(target: Value, patch: Value) -> Value {
        let mut target = target;
        apply(&mut target, &patch);
        target
    }

    #[test]
    fn containers_merge_by_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "command": ["sleep"]},
            {"name": "b", "image": "b:1"}
        ]}});
        let out = patched(
            pod,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [{"name": "a", "image": "a:2"}]
            }}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([
                {"name": "b", "image": "b:1"},
                {"name": "a", "image": "a:2", "command": ["sleep"]}
            ])
        );
    }

    #[test]
    fn directives() {
        let obj = json!({"metadata": {"finalizers": ["x"], "labels": {"a": "1", "b": "2"}},
                         "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Other", "status": "True"}]},
                         "spec": {"env": [{"name": "A"}, {"name": "B"}], "args": ["1", "2"], "strategy": {"type": "x", "rollingUpdate": {}}}});
        let out = patched(
            obj,
            json!({
                "metadata": {"finalizers": ["y"], "labels": {"a": null}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                "spec": {"env": [{"name": "A", "$patch": "delete"}], "args": ["3"],
                         "strategy": {"$retainKeys": ["type"], "type": "Recreate"}}
            }),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "Other", "status": "True"}])
        );
        assert_eq!(out["spec"]["env"], json!([{"name": "B"}]));
        assert_eq!(out["spec"]["args"], json!(["3"]));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let out = patched(
            out,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["y"]));
        let out = patched(
            out,
            json!({"spec": {"env": [{"$patch": "replace"}, {"name": "C"}]}}),
        );
        assert_eq!(out["spec"]["env"], json!([{"name": "C"}]));
        let out = patched(out, json!({"spec": {"$patch": "replace", "only": 1}}));
        assert_eq!(out["spec"], json!({"only": 1}));
    }

    #[test]
    fn service_and_container_ports_have_different_keys() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let out = patched(
            svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
        );
        assert_eq!(
            out["spec"]["ports"][0],
            json!({"port": 80, "name": "http", "targetPort": 8080})
        );
        assert_eq!(out["spec"]["ports"].as_array().unwrap().len(), 2);
        let pod =
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}});
        let out = patched(
            pod,
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 81}]}]}}),
        );
        assert_eq!(
            out["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80}, {"containerPort": 81}])
        );
    }
}
