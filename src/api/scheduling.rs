//! The PriorityClasses every cluster has: system components (CoreDNS, the proxy, CNI
//! daemons) name them in `priorityClassName`, and pods naming an absent class are
//! rejected upstream, so they must exist from the start.

use serde_json::{Value, json};

/// Upstream's two built-in classes, with their reserved values.
pub fn system_priority_classes() -> Vec<Value> {
    [
        (
            "system-node-critical",
            2_000_001_000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            2_000_000_000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ]
    .into_iter()
    .map(|(name, value, description)| {
        json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        })
    })
    .collect()
}
