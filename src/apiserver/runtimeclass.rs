//! The RuntimeClass admission plugin: a new pod naming a RuntimeClass gets that
//! class's fixed overhead (`spec.overhead`) and scheduling constraints (its node
//! selector merged into the pod's, its tolerations merged with the pod's), and a pod
//! naming a class that does not exist is refused (403), as upstream refuses it. So is
//! a pod whose own overhead differs from its class's, or that sets one without a class
//! that defines it. Pod creates are rare enough to read the class from the store.

use super::Server;
use super::handlers::decode;
use rind_api::meta;
use rind_api::quantity::Quantity;
use rind_api::status::ApiError;
use serde_json::{Map, Value};

/// Where RuntimeClasses are stored (`Resource::key_prefix` of node.k8s.io/v1).
const RUNTIME_CLASSES: &str = "/registry/runtimeclasses/";

/// What the plugin adds to a new pod.
#[derive(Debug, Default)]
pub struct Admitted {
    overhead: Option<Value>,
    node_selector: Option<Map<String, Value>>,
    tolerations: Option<Vec<Value>>,
}

impl Admitted {
    /// Writes the class's overhead and scheduling into the pod. Upstream's plugin runs
    /// after the field manager, so call this after `managedFields` are recorded.
    pub fn apply(&self, pod: &mut Value) {
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(overhead) = &self.overhead {
            spec.insert("overhead".into(), overhead.clone());
        }
        if let Some(selector) = &self.node_selector {
            spec.insert("nodeSelector".into(), Value::Object(selector.clone()));
        }
        if let Some(tolerations) = &self.tolerations {
            spec.insert("tolerations".into(), Value::Array(tolerations.clone()));
        }
    }
}

/// What the RuntimeClass plugin does to `pod` (about to be created), or its refusal.
pub async fn admit(server: &Server, pod: &Value) -> Result<Admitted, ApiError> {
    let spec = pod.get("spec");
    let forbidden = |why: String| ApiError::forbidden("pods", "", meta::name(pod), &why);
    let own_overhead = spec
        .and_then(|s| s.get("overhead"))
        .and_then(Value::as_object)
        .filter(|o| !o.is_empty());
    let Some(name) = spec
        .and_then(|s| s.get("runtimeClassName"))
        .and_then(Value::as_str)
    else {
        if own_overhead.is_some() {
            return Err(forbidden(
                "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead".into(),
            ));
        }
        return Ok(Admitted::default());
    };
    let class = runtime_class(server, name)
        .await?
        .ok_or_else(|| forbidden(format!("pod rejected: RuntimeClass {name:?} not found")))?;
    let mut admitted = Admitted::default();
    let class_overhead = class
        .get("overhead")
        .and_then(|o| o.get("podFixed"))
        .and_then(Value::as_object);
    match (class_overhead, own_overhead) {
        (Some(fixed), Some(own)) if !same_resources(fixed, own) => {
            return Err(forbidden(
                "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead".into(),
            ));
        }
        (Some(fixed), _) => admitted.overhead = Some(Value::Object(fixed.clone())),
        (None, Some(_)) => {
            return Err(forbidden(
                "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead".into(),
            ));
        }
        (None, None) => {}
    }
    if let Some(scheduling) = class.get("scheduling") {
        let mut selector = spec
            .and_then(|s| s.get("nodeSelector"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let wanted = scheduling.get("nodeSelector").and_then(Value::as_object);
        for (key, want) in wanted.into_iter().flatten() {
            let want_text = want.as_str().unwrap_or_default();
            if let Some(have) = selector.get(key).and_then(Value::as_str)
                && have != want_text
            {
                return Err(forbidden(format!(
                    "conflict: runtimeClass.scheduling.nodeSelector[{key}] = {want_text}; pod.spec.nodeSelector[{key}] = {have}"
                )));
            }
            selector.insert(key.clone(), want.clone());
        }
        admitted.node_selector = Some(selector);
        let own: Vec<Value> = spec
            .and_then(|s| s.get("tolerations"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let added: Vec<Value> = scheduling
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        admitted.tolerations = Some(merge_tolerations(own, added));
    }
    Ok(admitted)
}

/// The class called `name`, unless it is gone or going.
async fn runtime_class(server: &Server, name: &str) -> Result<Option<Value>, ApiError> {
    let found = server
        .store
        .get(&format!("{RUNTIME_CLASSES}{name}"))
        .await
        .map_err(|e| ApiError::internal(format!("reading RuntimeClass {name}: {e}")))?;
    found.map(|kv| decode(&kv)).transpose()
}

/// Whether two resource lists hold the same amounts (`1` and `1000m` are the same).
fn same_resources(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let amount = |v: &Value| match v {
        Value::String(text) => Quantity::parse(text),
        other => Quantity::parse(&other.to_string()),
    };
    a.len() == b.len()
        && a.iter().all(|(name, value)| {
            b.get(name)
                .is_some_and(|other| amount(value) == amount(other))
        })
}

/// Upstream's `MergeTolerations`: the pod's tolerations then the class's, leaving out
/// any that another one kept tolerates a superset of (of two equal ones, the first).
fn merge_tolerations(first: Vec<Value>, second: Vec<Value>) -> Vec<Value> {
    let all: Vec<Value> = first.into_iter().chain(second).collect();
    let mut merged: Vec<Value> = Vec::new();
    for (i, t) in all.iter().enumerate() {
        if merged.iter().any(|kept| is_superset(kept, t)) {
            continue;
        }
        if all[i + 1..]
            .iter()
            .any(|later| later != t && is_superset(later, t))
        {
            continue;
        }
        merged.push(t.clone());
    }
    merged
}

/// Whether toleration `ss` tolerates everything `t` does.
fn is_superset(ss: &Value, t: &Value) -> bool {
    if ss == t {
        return true;
    }
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let (ss_key, t_key) = (text(ss, "key"), text(t, "key"));
    let ss_operator = text(ss, "operator");
    // An empty key with Exists matches every key.
    if t_key != ss_key && (!ss_key.is_empty() || ss_operator != "Exists") {
        return false;
    }
    let ss_effect = text(ss, "effect");
    // An empty effect matches every effect.
    if text(t, "effect") != ss_effect && !ss_effect.is_empty() {
        return false;
    }
    if ss_effect == "NoExecute"
        && let Some(limit) = ss.get("tolerationSeconds").and_then(Value::as_i64)
    {
        match t.get("tolerationSeconds").and_then(Value::as_i64) {
            Some(seconds) if seconds <= limit => {}
            _ => return false,
        }
    }
    match ss_operator.as_str() {
        "Equal" | "" => text(t, "operator") == "Equal" && text(t, "value") == text(ss, "value"),
        "Exists" => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tolerations_merge_as_upstreams() {
        let pod =
            vec![json!({"key": "a", "operator": "Equal", "value": "1", "effect": "NoSchedule"})];
        let class = vec![
            json!({"key": "a", "operator": "Exists", "effect": "NoSchedule"}),
            json!({"key": "b", "operator": "Exists"}),
            json!({"key": "b", "operator": "Exists"}),
        ];
        assert_eq!(
            merge_tolerations(pod, class),
            vec![
                json!({"key": "a", "operator": "Exists", "effect": "NoSchedule"}),
                json!({"key": "b", "operator": "Exists"}),
            ]
        );
    }

    #[test]
    fn overheads_compare_as_quantities() {
        let a = json!({"cpu": "1", "memory": "1Gi"});
        let b = json!({"cpu": "1000m", "memory": "1024Mi"});
        let c = json!({"cpu": "2", "memory": "1Gi"});
        let map = |v: &Value| v.as_object().unwrap().clone();
        assert!(same_resources(&map(&a), &map(&b)));
        assert!(!same_resources(&map(&a), &map(&c)));
    }
}
