//! Strategic merge patch (`application/strategic-merge-patch+json`), the patch kind
//! kubectl's client-side apply, `edit`, `set`, `label` and the Python client send.
//! Like a JSON merge patch (a `null` deletes a field), except that lists with a merge
//! key (containers by `name`, conditions by `type`, ...) are merged element by element,
//! lists of scalars with the merge strategy (finalizers) are merged as sets, and it
//! honours the directives `$patch: replace|merge|delete`, `$setElementOrder/<list>`,
//! `$retainKeys` and `$deleteFromPrimitiveList/<list>`. Which list is which comes from
//! the type definitions (`schema`); other lists are replaced, as upstream does.

use super::schema::{Node, Shape};
use serde_json::{Map, Value};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge `patch` to `target` (an object whose type `node` names).
pub fn apply(target: &mut Value, patch: &Value, node: Node) {
    match merge_value(Some(std::mem::take(target)), patch, Shape::Object, node) {
        Some(v) => *target = v,
        None => *target = Value::Object(Map::new()),
    }
}

fn directive(map: &Map<String, Value>) -> Option<&str> {
    map.get(PATCH).and_then(Value::as_str)
}

/// The merged value of a field; `None` removes the field.
fn merge_value(current: Option<Value>, patch: &Value, shape: Shape, node: Node) -> Option<Value> {
    match (patch, shape) {
        (Value::Null, _) => None,
        // Strategic merge predates atomic maps: every map merges key by key.
        (Value::Object(patch_map), Shape::Object | Shape::Map | Shape::AtomicMap) => {
            let current = match current {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            merge_map(current, patch_map, node).map(Value::Object)
        }
        (Value::Array(items), Shape::MapList(keys)) => {
            Some(merge_keyed_list(current, items, keys[0], node))
        }
        (Value::Array(items), Shape::SetList) => Some(merge_set_list(current, items)),
        (other, _) => Some(strip(other)),
    }
}

/// A patch value with every directive removed, for places it lands unmerged.
fn strip(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|i| i.as_object().is_none_or(|m| directive(m).is_none()))
                .map(strip)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn merge_map(
    mut current: Map<String, Value>,
    patch: &Map<String, Value>,
    node: Node,
) -> Option<Map<String, Value>> {
    match directive(patch) {
        Some("delete") => return None,
        Some("replace") => {
            return match strip(&Value::Object(patch.clone())) {
                Value::Object(map) => Some(map),
                _ => Some(Map::new()),
            };
        }
        _ => {}
    }
    if let Some(Value::Array(keep)) = patch.get(RETAIN_KEYS) {
        current.retain(|k, _| keep.iter().any(|v| v == k));
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        let child = node.child(key);
        match merge_value(current.remove(key), value, child.shape, child.node) {
            Some(v) => {
                current.insert(key.clone(), v);
            }
            None => {
                current.remove(key);
            }
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST)
            && let (Some(Value::Array(list)), Value::Array(remove)) =
                (current.get_mut(field), value)
        {
            list.retain(|v| !remove.contains(v));
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER)
            && let (Some(Value::Array(list)), Value::Array(order)) = (current.get_mut(field), value)
        {
            let merge_key = match node.child(field).shape {
                Shape::MapList(keys) => Some(keys[0]),
                _ => None,
            };
            reorder(list, order, merge_key);
        }
    }
    Some(current)
}

fn merge_set_list(current: Option<Value>, patch: &[Value]) -> Value {
    let mut list = match current {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    for item in patch {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
    Value::Array(list)
}

fn merge_keyed_list(current: Option<Value>, patch: &[Value], key: &str, node: Node) -> Value {
    let replace = patch
        .iter()
        .any(|i| i.as_object().and_then(directive) == Some("replace"));
    let mut list = match current {
        Some(Value::Array(list)) if !replace => list,
        _ => Vec::new(),
    };
    for item in patch {
        let Value::Object(item_map) = item else {
            // Not an object: nothing to match by key; upstream keeps such items as given.
            list.push(item.clone());
            continue;
        };
        let action = directive(item_map);
        if matches!(action, Some("replace" | "merge")) && item_map.len() == 1 {
            continue;
        }
        let id = item_map.get(key);
        let position = id.and_then(|id| list.iter().position(|e| e.get(key) == Some(id)));
        match (position, action) {
            (Some(i), Some("delete")) => {
                list.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => {
                let existing = std::mem::take(&mut list[i]);
                if let Some(merged) = merge_value(Some(existing), item, Shape::Object, node) {
                    list[i] = merged;
                }
            }
            (None, _) => {
                if let Some(fresh) = merge_value(None, item, Shape::Object, node) {
                    list.push(fresh);
                }
            }
        }
    }
    Value::Array(list)
}

/// Orders `list` as `order` says (by merge key, or by value for scalars); items the
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

    fn patched(kind: &str, target: Value, patch: Value) -> Value {
        let mut target = target;
        let api_version = if kind == "Deployment" {
            "apps/v1"
        } else {
            "v1"
        };
        apply(&mut target, &patch, Node::for_kind(api_version, kind));
        target
    }

    /// "Update API Objects in Place Using kubectl patch": a container added to a
    /// deployment's template merges by name, keeping the existing one.
    #[test]
    fn docs_patch_adds_a_container() {
        let deploy = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "patch-demo-ctr", "image": "nginx"}
        ]}}}});
        let out = patched(
            "Deployment",
            deploy,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "patch-demo-ctr-2", "image": "redis"}
            ]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "patch-demo-ctr", "image": "nginx"}, {"name": "patch-demo-ctr-2", "image": "redis"}])
        );
    }

    /// Same page: tolerations have no patch strategy, so a patch replaces the list.
    #[test]
    fn docs_patch_replaces_lists_without_strategy() {
        let deploy = json!({"spec": {"template": {"spec": {"tolerations": [
            {"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}
        ]}}}});
        let out = patched(
            "Deployment",
            deploy,
            json!({"spec": {"template": {"spec": {"tolerations": [
                {"effect": "NoSchedule", "key": "disktype", "value": "ssd"}
            ]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}])
        );
    }

    /// Same page: `$retainKeys` clears the rolling-update parameters when the strategy
    /// type changes to Recreate.
    #[test]
    fn docs_retain_keys_on_deployment_strategy() {
        let deploy = json!({"spec": {"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
        let out = patched(
            "Deployment",
            deploy,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    /// The strategic-merge-patch design doc: `$patch: replace` on a map and on a list,
    /// `$patch: delete` on a list item and on a map.
    #[test]
    fn design_doc_patch_directives() {
        let pod = json!({"spec": {"containers": [
            {"name": "nginx", "image": "nginx-1.0"}, {"name": "log-tailer", "image": "tailer"}
        ], "volumes": [{"name": "v", "emptyDir": {}}]}, "metadata": {"labels": {"a": "1", "b": "2"}}});
        let out = patched(
            "Pod",
            pod.clone(),
            json!({"spec": {"containers": [{"name": "log-tailer", "$patch": "delete"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "nginx", "image": "nginx-1.0"}])
        );
        let out = patched(
            "Pod",
            pod.clone(),
            json!({"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "only", "image": "x"}])
        );
        let out = patched(
            "Pod",
            pod.clone(),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
        let out = patched(
            "Pod",
            pod,
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {"$patch": "delete"}}]}}),
        );
        assert_eq!(out["spec"]["volumes"], json!([{"name": "v"}]));
    }

    /// Design doc: `$deleteFromPrimitiveList` and `$setElementOrder` on a primitive list
    /// with the merge strategy (finalizers), and `$setElementOrder` on a keyed list.
    #[test]
    fn design_doc_primitive_lists_and_order() {
        let pod = json!({"metadata": {"finalizers": ["a", "b", "c"]},
            "spec": {"containers": [{"name": "a", "image": "a:1", "command": ["sleep"]}, {"name": "b", "image": "b:1"}]}});
        let out = patched(
            "Pod",
            pod,
            json!({
                "metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "finalizers": ["d"],
                             "$setElementOrder/finalizers": ["d", "a", "c"]},
                "spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                         "containers": [{"name": "a", "image": "a:2"}]}
            }),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["d", "a", "c"]));
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b", "image": "b:1"}, {"name": "a", "image": "a:2", "command": ["sleep"]}])
        );
    }

    #[test]
    fn nulls_delete_and_keyed_lists_use_their_own_keys() {
        let svc = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let out = patched(
            "Service",
            svc,
            json!({"metadata": {"labels": {"a": null}}, "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443, "name": "https"}])
        );
        let pod = json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}],
            "env": [{"name": "A", "value": "1"}], "args": ["1", "2"]}]}});
        let out = patched(
            "Pod",
            pod,
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 81}],
                "env": [{"name": "B", "value": "2"}], "args": ["3"]}]}}),
        );
        let c = &out["spec"]["containers"][0];
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80}, {"containerPort": 81}])
        );
        assert_eq!(
            c["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(c["args"], json!(["3"]));
    }

    /// What client-side apply sends when a deployment's selector labels change.
    #[test]
    fn atomic_maps_still_merge_with_nulls() {
        let deploy = json!({"spec": {"selector": {"matchLabels": {"old": "1", "app": "web"}}}});
        let out = patched(
            "Deployment",
            deploy,
            json!({"spec": {"selector": {"matchLabels": {"old": null, "new": "2"}}}}),
        );
        assert_eq!(
            out["spec"]["selector"]["matchLabels"],
            json!({"app": "web", "new": "2"})
        );
    }

    #[test]
    fn untyped_objects_merge_like_json_merge_patch() {
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Thing", "spec": {"list": [1, 2], "a": {"b": 1}}});
        apply(
            &mut obj,
            &json!({"spec": {"list": [3], "a": {"c": 2}}}),
            Node::for_kind("example.com/v1", "Thing"),
        );
        assert_eq!(obj["spec"], json!({"list": [3], "a": {"b": 1, "c": 2}}));
    }
}
