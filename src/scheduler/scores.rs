//! Scores: among the nodes that fit, which is best. Each score plugin gives every
//! feasible node 0–100, normalised over the feasible nodes like upstream's, and the
//! totals are weighted with upstream's defaults: NodeResourcesFit (least allocated) 1,
//! NodeResourcesBalancedAllocation 1, NodeAffinity 2, InterPodAffinity 2,
//! TaintToleration 3, PodTopologySpread 2. Image locality is not scored.

use super::cache::{Cache, NodeInfo, PodInfo};
use super::filters::{NodeSelection, tolerates};
use super::interpod::AffinityScores;
use super::spread::SpreadState;
use k8s_openapi::api::core::v1::{PreferredSchedulingTerm, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rind_api::object_selector::node_selector_term_matches;

pub const MAX_SCORE: i64 = 100;

const WEIGHT_FIT: i64 = 1;
const WEIGHT_BALANCED: i64 = 1;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_INTER_POD: i64 = 2;
const WEIGHT_TAINTS: i64 = 3;
const WEIGHT_SPREAD: i64 = 2;

/// Per-pod scoring state, computed once per attempt.
pub struct Scorer<'a> {
    pod: &'a PodInfo,
    preferred: &'a [PreferredSchedulingTerm],
    tolerations: Vec<&'a Toleration>,
    affinity: Option<AffinityScores>,
    spread: Option<SpreadState>,
}

/// Least allocated: the share of CPU and memory left after placing the pod, averaged.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let share = |alloc: i64, used: i64| {
        if alloc <= 0 || used > alloc {
            0
        } else {
            (alloc - used) * MAX_SCORE / alloc
        }
    };
    let cpu = share(
        node.allocatable.milli_cpu,
        node.non_zero_requested.milli_cpu + pod.non_zero.milli_cpu,
    );
    let mem = share(
        node.allocatable.memory,
        node.non_zero_requested.memory + pod.non_zero.memory,
    );
    (cpu + mem) / 2
}

/// Balanced allocation: CPU and memory used in similar proportions score high
/// (100 × (1 − standard deviation of the two fractions)).
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let fraction = |alloc: i64, used: i64| {
        if alloc <= 0 {
            1.0
        } else {
            (used as f64 / alloc as f64).min(1.0)
        }
    };
    let cpu = fraction(
        node.allocatable.milli_cpu,
        node.non_zero_requested.milli_cpu + pod.non_zero.milli_cpu,
    );
    let mem = fraction(
        node.allocatable.memory,
        node.non_zero_requested.memory + pod.non_zero.memory,
    );
    let std = (cpu - mem).abs() / 2.0;
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

/// Scales raw scores so the highest is 100 (upstream's DefaultNormalizeScore);
/// `reverse` makes the lowest raw score best.
fn normalize(raw: &mut [i64], reverse: bool) {
    let max = raw.iter().copied().max().unwrap_or(0);
    for s in raw.iter_mut() {
        *s = match (max, reverse) {
            (0, true) => MAX_SCORE,
            (0, false) => 0,
            (m, false) => *s * MAX_SCORE / m,
            (m, true) => MAX_SCORE - *s * MAX_SCORE / m,
        };
    }
}

impl<'a> Scorer<'a> {
    /// `default_spread` gives the selector of the system default spread constraints
    /// (called only for a pod without constraints of its own).
    pub fn new(
        pod: &'a PodInfo,
        selection: &NodeSelection<'_>,
        cache: &Cache,
        default_spread: impl FnOnce() -> Vec<LabelSelector>,
    ) -> Self {
        let spec = pod.pod.spec.as_ref();
        Scorer {
            pod,
            preferred: spec
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_deref()
                })
                .unwrap_or_default(),
            // Only tolerations that can apply to PreferNoSchedule taints matter here.
            tolerations: spec
                .and_then(|s| s.tolerations.as_ref())
                .into_iter()
                .flatten()
                .filter(|t| {
                    t.effect
                        .as_deref()
                        .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
                })
                .collect(),
            affinity: AffinityScores::prescore(pod, cache),
            spread: SpreadState::prefilter(pod, selection, cache, false, default_spread),
        }
    }

    /// The weighted total of every score plugin, per feasible node.
    pub fn totals(&self, nodes: &[&NodeInfo]) -> Vec<i64> {
        let mut totals: Vec<i64> = nodes
            .iter()
            .map(|n| {
                WEIGHT_FIT * least_allocated(self.pod, n)
                    + WEIGHT_BALANCED * balanced_allocation(self.pod, n)
            })
            .collect();
        let mut add = |scores: Vec<i64>, weight: i64| {
            for (t, s) in totals.iter_mut().zip(scores) {
                *t += weight * s;
            }
        };
        if !self.preferred.is_empty() {
            let mut raw: Vec<i64> = nodes
                .iter()
                .map(|n| {
                    self.preferred
                        .iter()
                        .filter(|p| {
                            node_selector_term_matches(&p.preference, &n.name, Some(&n.labels))
                        })
                        .map(|p| i64::from(p.weight))
                        .sum()
                })
                .collect();
            normalize(&mut raw, false);
            add(raw, WEIGHT_NODE_AFFINITY);
        }
        // Fewer untolerated PreferNoSchedule taints is better.
        let mut raw: Vec<i64> = nodes
            .iter()
            .map(|n| {
                n.taints
                    .iter()
                    .filter(|t| t.effect == "PreferNoSchedule")
                    .filter(|t| !self.tolerations.iter().any(|tol| tolerates(tol, t)))
                    .count() as i64
            })
            .collect();
        normalize(&mut raw, true);
        add(raw, WEIGHT_TAINTS);
        if let Some(affinity) = &self.affinity {
            // Min–max over the feasible nodes, as upstream's InterPodAffinity.
            let raw: Vec<i64> = nodes.iter().map(|n| affinity.raw(n)).collect();
            let (min, max) = (
                raw.iter().copied().min().unwrap_or(0),
                raw.iter().copied().max().unwrap_or(0),
            );
            let scaled = raw
                .iter()
                .map(|s| {
                    if max > min {
                        (s - min) * MAX_SCORE / (max - min)
                    } else {
                        0
                    }
                })
                .collect();
            add(scaled, WEIGHT_INTER_POD);
        }
        if let Some(spread) = &self.spread {
            // Upstream's NormalizeScore: MAX × (max + min − s) / max over the scored
            // nodes, all MAX when every count is 0, and 0 for nodes not scored.
            let raw = spread.raw_scores(nodes);
            let known = raw.iter().flatten();
            let max = known.clone().copied().max().unwrap_or(0);
            let min = known.copied().min().unwrap_or(0);
            let scaled = raw
                .iter()
                .map(|s| match s {
                    None => 0,
                    Some(_) if max == 0 => MAX_SCORE,
                    Some(s) => MAX_SCORE * (max + min - s) / max,
                })
                .collect();
            add(scaled, WEIGHT_SPREAD);
        }
        totals
    }
}

/// The index of the best total; ties go to a random one of them, as upstream's, so
/// equal nodes share the load instead of the first one taking everything.
pub fn best(totals: &[i64]) -> Option<usize> {
    let max = *totals.iter().max()?;
    let ties: Vec<usize> = (0..totals.len()).filter(|i| totals[*i] == max).collect();
    ties.get(rand::random_range(0..ties.len())).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{node, pod};
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, Taint,
    };
    use std::sync::Arc;

    fn info(p: k8s_openapi::api::core::v1::Pod) -> PodInfo {
        PodInfo::new(Arc::new(p))
    }

    #[test]
    fn least_allocated_and_balanced_follow_upstream_formulas() {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node("a", &[], "4", "8Gi")));
        let p = info(pod("p", &[], "1", "2Gi"));
        let n = &cache.nodes["a"];
        // cpu (4-1)/4 = 75, memory (8-2)/8 = 75.
        assert_eq!(least_allocated(&p, n), 75);
        assert_eq!(balanced_allocation(&p, n), 100);
        let skewed = info(pod("s", &[], "2", "1Gi"));
        // fractions 0.5 and 0.125: std 0.1875 → 81.
        assert_eq!(balanced_allocation(&skewed, n), 81);
        // A pod without requests counts as 100m / 200Mi.
        let empty = info(pod("e", &[], "", ""));
        assert_eq!(least_allocated(&empty, n), (97 + 97) / 2);
    }

    #[test]
    fn emptier_node_wins() {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node("busy", &[], "4", "8Gi")));
        cache.set_node(Arc::new(node("idle", &[], "4", "8Gi")));
        cache.place("busy", Arc::new(info(pod("x", &[], "2", "4Gi"))));
        let p = info(pod("p", &[], "500m", "1Gi"));
        let scorer = Scorer::new(&p, &NodeSelection::of(&p), &cache, Vec::new);
        let nodes = [&cache.nodes["busy"], &cache.nodes["idle"]];
        let totals = scorer.totals(&nodes);
        assert_eq!(best(&totals), Some(1));
    }

    #[test]
    fn preferred_node_affinity_and_prefer_no_schedule() {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node("plain", &[], "4", "8Gi")));
        cache.set_node(Arc::new(node("gpu", &[("gpu", "yes")], "4", "8Gi")));
        let mut soft = node("soft", &[("gpu", "yes")], "4", "8Gi");
        soft.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "k".into(),
            effect: "PreferNoSchedule".into(),
            ..Taint::default()
        }]);
        cache.set_node(Arc::new(soft));
        let mut p = pod("p", &[], "", "");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 10,
                        preference: NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "gpu".into(),
                                operator: "Exists".into(),
                                values: None,
                            }]),
                            match_fields: None,
                        },
                    },
                ]),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        });
        let p = info(p);
        let scorer = Scorer::new(&p, &NodeSelection::of(&p), &cache, Vec::new);
        let nodes = [
            &cache.nodes["plain"],
            &cache.nodes["gpu"],
            &cache.nodes["soft"],
        ];
        let totals = scorer.totals(&nodes);
        // gpu: affinity 100×2 + taints 100×3; soft: affinity 200 + taints 0; plain: taints 300.
        assert_eq!(best(&totals), Some(1));
        assert!(totals[2] < totals[0]);
    }

    #[test]
    fn normalize_scales_and_reverses() {
        let mut raw = vec![0, 5, 10];
        normalize(&mut raw, false);
        assert_eq!(raw, vec![0, 50, 100]);
        let mut raw = vec![0, 1, 2];
        normalize(&mut raw, true);
        assert_eq!(raw, vec![100, 50, 0]);
        assert_eq!(best(&[]), None);
    }

    #[test]
    fn replicas_go_to_the_worker_without_them_despite_other_load() {
        // The e2e case: two CoreDNS pods (100m / 70Mi each) on w1, one web replica on
        // w2. Least-allocated alone prefers w2; default spreading sends the next web
        // replica to w1.
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node("w1", &[], "2", "4Gi")));
        cache.set_node(Arc::new(node("w2", &[], "2", "4Gi")));
        for name in ["dns1", "dns2"] {
            cache.place(
                "w1",
                Arc::new(info(pod(name, &[("k8s-app", "kube-dns")], "100m", "70Mi"))),
            );
        }
        cache.place("w2", Arc::new(info(pod("web1", &[("app", "web")], "", ""))));
        let p = info(pod("web2", &[("app", "web")], "", ""));
        let nodes = [&cache.nodes["w1"], &cache.nodes["w2"]];
        let plain = Scorer::new(&p, &NodeSelection::of(&p), &cache, Vec::new).totals(&nodes);
        assert!(plain[1] > plain[0], "{plain:?}");
        let selector = || {
            vec![LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                ..LabelSelector::default()
            }]
        };
        let spread = Scorer::new(&p, &NodeSelection::of(&p), &cache, selector).totals(&nodes);
        assert_eq!(best(&spread), Some(0), "{spread:?}");
    }
}
