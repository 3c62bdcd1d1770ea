//! Filters: can this pod run on this node at all? Each filter either passes or names
//! the reason, in the words the real scheduler uses in its FailedScheduling message.

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

/// Why a node was rejected. The Display text is the real scheduler's per-node reason.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    NotReady,
    Unschedulable,
    UntoleratedTaint(String),
    NodeSelectorMismatch,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NotReady => write!(f, "node(s) were not ready"),
            Rejection::Unschedulable => write!(f, "node(s) were unschedulable"),
            Rejection::UntoleratedTaint(taint) => {
                write!(f, "node(s) had untolerated taint {taint}")
            }
            Rejection::NodeSelectorMismatch => {
                write!(f, "node(s) didn't match Pod's node affinity/selector")
            }
        }
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    if !effect_ok {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    match toleration.operator.as_deref().unwrap_or("Equal") {
        // An empty key with Exists tolerates every taint.
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

fn taint_text(taint: &Taint) -> String {
    format!(
        "{{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )
}

/// Runs every filter; the first that rejects decides.
pub fn check(pod: &Pod, node: &Node) -> Result<(), Rejection> {
    if !node_ready(node) {
        return Err(Rejection::NotReady);
    }
    let spec = pod.spec.as_ref();
    let node_spec = node.spec.as_ref();
    if node_spec.and_then(|s| s.unschedulable).unwrap_or(false) {
        return Err(Rejection::Unschedulable);
    }
    let tolerations = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
    for taint in node_spec
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
    {
        // PreferNoSchedule is only a preference; NoSchedule and NoExecute forbid.
        if taint.effect != "NoSchedule" && taint.effect != "NoExecute" {
            continue;
        }
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            return Err(Rejection::UntoleratedTaint(taint_text(taint)));
        }
    }
    if let Some(selector) = spec.and_then(|s| s.node_selector.as_ref()) {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return Err(Rejection::NodeSelectorMismatch);
        }
    }
    Ok(())
}

/// The FailedScheduling message: `0/N nodes are available: <count> <reason>, ...`.
pub fn unschedulable_message(total: usize, rejections: &[Rejection]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for r in rejections {
        *counts.entry(r.to_string()).or_default() += 1;
    }
    let reasons: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    if reasons.is_empty() {
        format!("0/{total} nodes are available.")
    } else {
        format!("0/{total} nodes are available: {}.", reasons.join(", "))
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    pub fn node(name: &str, ready: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("disk".to_string(), "ssd".to_string())])),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    fn tainted(name: &str) -> Node {
        let mut n = node(name, true);
        n.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "node-role.kubernetes.io/control-plane".into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            }]),
            ..NodeSpec::default()
        });
        n
    }

    pub fn pod() -> Pod {
        Pod {
            spec: Some(PodSpec::default()),
            ..Pod::default()
        }
    }

    #[test]
    fn ready_schedulable_node_passes() {
        assert_eq!(check(&pod(), &node("a", true)), Ok(()));
        assert_eq!(check(&pod(), &node("a", false)), Err(Rejection::NotReady));
        let mut cordoned = node("a", true);
        cordoned.spec = Some(NodeSpec {
            unschedulable: Some(true),
            ..NodeSpec::default()
        });
        assert_eq!(check(&pod(), &cordoned), Err(Rejection::Unschedulable));
    }

    #[test]
    fn taints_need_tolerations() {
        let err = check(&pod(), &tainted("cp")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
        );
        let mut tolerant = pod();
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("node-role.kubernetes.io/control-plane".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }]);
        assert_eq!(check(&tolerant, &tainted("cp")), Ok(()));
        let mut all = pod();
        all.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        }]);
        assert_eq!(check(&all, &tainted("cp")), Ok(()));
    }

    #[test]
    fn node_selector() {
        let mut p = pod();
        p.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("disk".to_string(), "ssd".to_string())]));
        assert_eq!(check(&p, &node("a", true)), Ok(()));
        p.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("disk".to_string(), "hdd".to_string())]));
        assert_eq!(
            check(&p, &node("a", true)),
            Err(Rejection::NodeSelectorMismatch)
        );
    }

    #[test]
    fn message_counts_reasons() {
        let msg = unschedulable_message(
            3,
            &[
                Rejection::NotReady,
                Rejection::NotReady,
                Rejection::NodeSelectorMismatch,
            ],
        );
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) were not ready."
        );
        assert_eq!(unschedulable_message(0, &[]), "0/0 nodes are available.");
    }
}
