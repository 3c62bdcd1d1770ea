//! Eviction against PodDisruptionBudgets: which budgets cover a pod, whether one more
//! disruption is allowed, and how an eviction is recorded in the budget's status, as
//! the upstream eviction subresource does it.

use super::fields::at;
use super::meta::{child_mut, format_time, labels, name};
use super::scale::label_selector_string;
use super::selector::LabelSelector;
use serde_json::{Value, json};

/// The budgets whose selector covers `pod` (policy/v1: an empty selector covers every
/// pod in the namespace; a missing one none).
pub fn covering<'a>(pod: &Value, budgets: &'a [Value]) -> Vec<&'a Value> {
    budgets
        .iter()
        .filter(|pdb| {
            let Some(selector) = at(pdb, &["spec", "selector"]).filter(|s| s.is_object()) else {
                return false;
            };
            LabelSelector::parse(&label_selector_string(selector))
                .is_ok_and(|parsed| parsed.matches(labels(pod)))
        })
        .collect()
}

/// Why a budget refuses one more disruption, or None when it allows it.
pub fn refusal(pdb: &Value) -> Option<String> {
    let generation = at(pdb, &["metadata", "generation"])
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let observed = at(pdb, &["status", "observedGeneration"])
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if observed < generation {
        return Some("The disruption budget is still being processed by the server.".to_string());
    }
    let allowed = at(pdb, &["status", "disruptionsAllowed"])
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if allowed > 0 {
        return None;
    }
    let int = |field: &str| {
        at(pdb, &["status", field])
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    Some(format!(
        "The disruption budget {} needs {} healthy pods and has {} currently",
        name(pdb),
        int("desiredHealthy"),
        int("currentHealthy")
    ))
}

/// Takes one disruption from the budget and remembers the pod, so the disruption
/// controller does not count it as healthy while it goes away.
pub fn record(pdb: &mut Value, pod_name: &str, now: jiff::Timestamp) {
    let Some(root) = pdb.as_object_mut() else {
        return;
    };
    let status = child_mut(root, "status");
    let allowed = status
        .get("disruptionsAllowed")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    status.insert("disruptionsAllowed".into(), json!((allowed - 1).max(0)));
    child_mut(status, "disruptedPods").insert(pod_name.into(), json!(format_time(now)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_gate_evictions() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        let budgets = vec![
            json!({"metadata": {"name": "web", "generation": 1}, "spec": {"selector": {"matchLabels": {"app": "web"}}},
                "status": {"observedGeneration": 1, "disruptionsAllowed": 1, "desiredHealthy": 1, "currentHealthy": 2}}),
            json!({"metadata": {"name": "db"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}}),
            json!({"metadata": {"name": "none"}, "spec": {}}),
        ];
        let covering = covering(&pod, &budgets);
        assert_eq!(covering.len(), 1);
        let mut pdb = covering[0].clone();
        assert!(refusal(&pdb).is_none());
        record(&mut pdb, "p", jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
        assert_eq!(pdb["status"]["disruptedPods"]["p"], "1970-01-01T00:00:00Z");
        assert_eq!(
            refusal(&pdb).unwrap(),
            "The disruption budget web needs 1 healthy pods and has 2 currently"
        );
    }
}
