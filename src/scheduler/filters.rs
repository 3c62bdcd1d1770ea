//! Filters: can this pod run on this node at all? They run in upstream's order
//! (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
//! NodeResourcesFit, PodTopologySpread, InterPodAffinity); the first that rejects
//! decides, and names its reasons in the words of upstream's FailedScheduling message.
//! Work that depends only on the pod and the whole cluster (pre-filter) is done once in
//! `Prepared::new`; `check` is what runs per node.

use super::cache::{Cache, NodeInfo, PodInfo};
use super::interpod::AffinityState;
use super::spread::SpreadState;
use k8s_openapi::api::core::v1::{NodeSelector, Taint, Toleration};
use rind_api::object_selector::node_selector_matches;
use std::collections::BTreeMap;

/// Why a node was rejected. The Display text is upstream's per-node reason.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    NotReady,
    Unschedulable,
    NodeName,
    UntoleratedTaint(String),
    NodeAffinity,
    HostPorts,
    TooManyPods,
    Insufficient(String),
    SpreadMissingLabel,
    Spread,
    PodAffinity,
    PodAntiAffinity,
    ExistingAntiAffinity,
    /// A volume filter's reason (volumes.rs), already in the real scheduler's words.
    Volume(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::NotReady => write!(f, "node(s) were not ready"),
            Rejection::Unschedulable => write!(f, "node(s) were unschedulable"),
            Rejection::NodeName => write!(f, "node(s) didn't match the requested node name"),
            Rejection::UntoleratedTaint(taint) => {
                write!(f, "node(s) had untolerated taint {taint}")
            }
            Rejection::NodeAffinity => {
                write!(f, "node(s) didn't match Pod's node affinity/selector")
            }
            Rejection::HostPorts => {
                write!(
                    f,
                    "node(s) didn't have free ports for the requested pod ports"
                )
            }
            Rejection::TooManyPods => write!(f, "Too many pods"),
            Rejection::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Rejection::SpreadMissingLabel => write!(
                f,
                "node(s) didn't match pod topology spread constraints (missing required label)"
            ),
            Rejection::Spread => write!(f, "node(s) didn't match pod topology spread constraints"),
            Rejection::PodAffinity => write!(f, "node(s) didn't match pod affinity rules"),
            Rejection::PodAntiAffinity => {
                write!(f, "node(s) didn't match pod anti-affinity rules")
            }
            Rejection::ExistingAntiAffinity => {
                write!(
                    f,
                    "node(s) didn't satisfy existing pods anti-affinity rules"
                )
            }
            Rejection::Volume(reason) => write!(f, "{reason}"),
        }
    }
}

pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
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

/// The first NoSchedule/NoExecute taint none of the tolerations tolerates.
/// PreferNoSchedule is only a preference (scored, not filtered).
pub fn untolerated_taint<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

/// The pod's node selection: nodeSelector and required node affinity must both match.
pub struct NodeSelection<'a> {
    pub node_selector: Option<&'a BTreeMap<String, String>>,
    pub required: Option<&'a NodeSelector>,
}

impl<'a> NodeSelection<'a> {
    pub fn of(pod: &'a PodInfo) -> Self {
        let spec = pod.pod.spec.as_ref();
        NodeSelection {
            node_selector: spec.and_then(|s| s.node_selector.as_ref()),
            required: spec
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
        }
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        let selector_ok = self
            .node_selector
            .is_none_or(|sel| sel.iter().all(|(k, v)| node.labels.get(k) == Some(v)));
        selector_ok
            && self
                .required
                .is_none_or(|r| node_selector_matches(r, &node.name, Some(&node.labels)))
    }
}

/// Everything about the incoming pod computed once per scheduling attempt.
pub struct Prepared<'a> {
    pub pod: &'a PodInfo,
    pub tolerations: &'a [Toleration],
    node_name: Option<&'a str>,
    pub selection: NodeSelection<'a>,
    affinity: Option<AffinityState>,
    spread: Option<SpreadState>,
}

const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

impl<'a> Prepared<'a> {
    pub fn new(pod: &'a PodInfo, cache: &Cache) -> Self {
        let spec = pod.pod.spec.as_ref();
        let selection = NodeSelection::of(pod);
        let affinity = AffinityState::prefilter(pod, cache);
        let spread = SpreadState::prefilter(pod, &selection, cache, true, Vec::new);
        Prepared {
            pod,
            tolerations: spec
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default(),
            node_name: spec
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty()),
            selection,
            affinity,
            spread,
        }
    }

    /// Runs every filter against one node.
    pub fn check(&self, node: &NodeInfo) -> Result<(), Vec<Rejection>> {
        let one = |r: Rejection| Err(vec![r]);
        if !node.ready {
            return one(Rejection::NotReady);
        }
        if node.unschedulable {
            let unschedulable_taint = Taint {
                key: UNSCHEDULABLE_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            };
            if !self
                .tolerations
                .iter()
                .any(|t| tolerates(t, &unschedulable_taint))
            {
                return one(Rejection::Unschedulable);
            }
        }
        if self.node_name.is_some_and(|n| n != node.name) {
            return one(Rejection::NodeName);
        }
        if let Some(taint) = untolerated_taint(&node.taints, self.tolerations) {
            return one(Rejection::UntoleratedTaint(taint_text(taint)));
        }
        if !self.selection.matches(node) {
            return one(Rejection::NodeAffinity);
        }
        if !ports_free(self.pod, node) {
            return one(Rejection::HostPorts);
        }
        let insufficient = insufficient_resources(self.pod, node);
        if !insufficient.is_empty() {
            return Err(insufficient);
        }
        if let Some(spread) = &self.spread
            && let Err(r) = spread.filter(node)
        {
            return one(r);
        }
        if let Some(affinity) = &self.affinity
            && let Err(r) = affinity.filter(node)
        {
            return one(r);
        }
        Ok(())
    }
}

/// Host ports conflict when protocol and port are equal and either side binds every
/// address (0.0.0.0) or both bind the same one.
fn ports_free(pod: &PodInfo, node: &NodeInfo) -> bool {
    if pod.ports.is_empty() || node.used_ports.is_empty() {
        return true;
    }
    pod.ports.iter().all(|(ip, proto, port)| {
        !node.used_ports.keys().any(|(uip, uproto, uport)| {
            uport == port && uproto == proto && (uip == ip || uip == "0.0.0.0" || ip == "0.0.0.0")
        })
    })
}

/// NodeResourcesFit: every reason the pod does not fit (upstream lists them all).
pub fn insufficient_resources(pod: &PodInfo, node: &NodeInfo) -> Vec<Rejection> {
    let mut out = Vec::new();
    let alloc = &node.allocatable;
    let used = &node.requested;
    let want = &pod.requests;
    if node.pods.len() as i64 + 1 > alloc.pods {
        out.push(Rejection::TooManyPods);
    }
    if want.is_zero() {
        return out;
    }
    if want.milli_cpu > 0 && alloc.milli_cpu < used.milli_cpu + want.milli_cpu {
        out.push(Rejection::Insufficient("cpu".into()));
    }
    if want.memory > 0 && alloc.memory < used.memory + want.memory {
        out.push(Rejection::Insufficient("memory".into()));
    }
    if want.ephemeral_storage > 0
        && alloc.ephemeral_storage < used.ephemeral_storage + want.ephemeral_storage
    {
        out.push(Rejection::Insufficient("ephemeral-storage".into()));
    }
    for (name, amount) in &want.scalar {
        if *amount == 0 {
            continue;
        }
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let taken = used.scalar.get(name).copied().unwrap_or(0);
        if have < taken + amount {
            out.push(Rejection::Insufficient(name.clone()));
        }
    }
    out
}

/// The FailedScheduling message, upstream's format: `0/N nodes are available: <count>
/// <reason>, ...` with the reasons sorted. No preemption is attempted, so unlike
/// upstream's message no `preemption:` part follows.
pub fn unschedulable_message(total: usize, rejections: &[Vec<Rejection>]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for reasons in rejections {
        for r in reasons {
            *counts.entry(r.to_string()).or_default() += 1;
        }
    }
    let mut reasons: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    reasons.sort();
    if reasons.is_empty() {
        format!("0/{total} nodes are available.")
    } else {
        format!("0/{total} nodes are available: {}.", reasons.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{node, pod, with_host_port};
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::sync::Arc;

    fn info(p: Pod) -> PodInfo {
        PodInfo::new(Arc::new(p))
    }

    fn check(cache: &Cache, p: &PodInfo, node: &str) -> Result<(), Vec<Rejection>> {
        Prepared::new(p, cache).check(&cache.nodes[node])
    }

    fn one_node(n: k8s_openapi::api::core::v1::Node) -> Cache {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(n));
        cache
    }

    #[test]
    fn resources_count_placed_and_assumed_pods() {
        let mut cache = one_node(node("a", &[], "1", "1Gi"));
        let big = info(pod("big", &[], "600m", "100Mi"));
        assert_eq!(check(&cache, &big, "a"), Ok(()));
        cache.assume("a", Arc::new(info(pod("first", &[], "600m", "1000Mi"))));
        assert_eq!(
            check(&cache, &big, "a"),
            Err(vec![
                Rejection::Insufficient("cpu".into()),
                Rejection::Insufficient("memory".into())
            ])
        );
        // A pod without requests still fits, until the pod count is used up.
        assert_eq!(check(&cache, &info(pod("tiny", &[], "", "")), "a"), Ok(()));
        let mut full = node("b", &[], "1", "1Gi");
        full.status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert("pods".into(), Quantity("1".into()));
        cache.set_node(Arc::new(full));
        cache.assume("b", Arc::new(info(pod("only", &[], "", ""))));
        assert_eq!(
            check(&cache, &info(pod("tiny", &[], "", "")), "b"),
            Err(vec![Rejection::TooManyPods])
        );
    }

    #[test]
    fn extended_resources_must_be_offered() {
        let mut n = node("a", &[], "1", "1Gi");
        n.status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert("example.com/gpu".into(), Quantity("1".into()));
        let cache = one_node(n);
        let mut p = pod("gpu", &[], "", "");
        p.spec.as_mut().unwrap().containers[0]
            .resources
            .as_mut()
            .unwrap()
            .requests
            .as_mut()
            .unwrap()
            .insert("example.com/gpu".into(), Quantity("2".into()));
        assert_eq!(
            check(&cache, &info(p), "a"),
            Err(vec![Rejection::Insufficient("example.com/gpu".into())])
        );
    }

    #[test]
    fn node_name_selector_and_affinity() {
        let cache = one_node(node("a", &[("disk", "ssd"), ("zone", "z1")], "1", "1Gi"));
        let mut p = pod("p", &[], "", "");
        p.spec.as_mut().unwrap().node_name = Some("b".into());
        assert_eq!(check(&cache, &info(p), "a"), Err(vec![Rejection::NodeName]));
        let mut p = pod("p", &[], "", "");
        p.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("disk".into(), "hdd".into())]));
        assert_eq!(
            check(&cache, &info(p), "a"),
            Err(vec![Rejection::NodeAffinity])
        );
        // The docs' example: required zone In [z1, z2].
        let mut p = pod("p", &[], "", "");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: "In".into(),
                            values: Some(vec!["z1".into(), "z2".into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        });
        let p = info(p);
        assert_eq!(check(&cache, &p, "a"), Ok(()));
        let other = one_node(node("b", &[("zone", "z3")], "1", "1Gi"));
        assert_eq!(check(&other, &p, "b"), Err(vec![Rejection::NodeAffinity]));
    }

    #[test]
    fn taints_and_unschedulable_nodes() {
        let mut n = node("cp", &[], "1", "1Gi");
        n.spec.as_mut().unwrap().taints = Some(vec![
            Taint {
                key: "node-role.kubernetes.io/control-plane".into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            },
            Taint {
                key: "soft".into(),
                effect: "PreferNoSchedule".into(),
                ..Taint::default()
            },
        ]);
        let cache = one_node(n);
        let plain = info(pod("p", &[], "", ""));
        assert_eq!(
            check(&cache, &plain, "cp").unwrap_err()[0].to_string(),
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
        );
        let mut tolerant = pod("t", &[], "", "");
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("node-role.kubernetes.io/control-plane".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }]);
        assert_eq!(check(&cache, &info(tolerant), "cp"), Ok(()));

        let mut cordoned = node("c", &[], "1", "1Gi");
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let cache = one_node(cordoned);
        assert_eq!(
            check(&cache, &plain, "c"),
            Err(vec![Rejection::Unschedulable])
        );
        let mut daemon = pod("d", &[], "", "");
        daemon.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some(UNSCHEDULABLE_TAINT.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }]);
        assert_eq!(check(&cache, &info(daemon), "c"), Ok(()));
        let mut not_ready = node("nr", &[], "1", "1Gi");
        not_ready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".into();
        let cache = one_node(not_ready);
        assert_eq!(check(&cache, &plain, "nr"), Err(vec![Rejection::NotReady]));
    }

    #[test]
    fn host_ports_conflict() {
        let mut cache = one_node(node("a", &[], "1", "1Gi"));
        cache.assume(
            "a",
            Arc::new(info(with_host_port(pod("web", &[], "", ""), 80))),
        );
        let again = info(with_host_port(pod("web2", &[], "", ""), 80));
        assert_eq!(check(&cache, &again, "a"), Err(vec![Rejection::HostPorts]));
        let other = info(with_host_port(pod("web3", &[], "", ""), 81));
        assert_eq!(check(&cache, &other, "a"), Ok(()));
    }

    #[test]
    fn message_counts_reasons_like_upstream() {
        let msg = unschedulable_message(
            3,
            &[
                vec![Rejection::NodeAffinity],
                vec![Rejection::Insufficient("cpu".into())],
                vec![Rejection::Insufficient("cpu".into())],
            ],
        );
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu."
        );
        assert_eq!(unschedulable_message(0, &[]), "0/0 nodes are available.");
    }
}
