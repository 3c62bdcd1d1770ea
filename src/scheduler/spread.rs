//! Pod topology spread constraints (upstream's PodTopologySpread plugin). Before the
//! nodes are filtered, matching pods are counted per domain of each constraint over
//! the nodes the constraint considers (nodeAffinityPolicy Honor: only nodes the pod's
//! own node selection accepts; nodeTaintsPolicy Honor: only nodes whose taints it
//! tolerates); a node then passes a DoNotSchedule constraint when placing the pod there
//! keeps `count(domain) + 1 - min(count)` within maxSkew. ScheduleAnyway constraints
//! are scored instead: fewer matching pods in the node's domains score higher.

use super::cache::{Cache, NodeInfo, PodInfo};
use super::filters::{NodeSelection, Rejection, untolerated_taint};
use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rind_api::object_selector::label_selector_matches;
use std::collections::HashMap;

struct Constraint {
    key: String,
    max_skew: i64,
    /// Whether the incoming pod itself matches the selector (then it adds one).
    self_match: i64,
    counts: HashMap<String, i64>,
    min: i64,
}

pub struct SpreadState {
    constraints: Vec<Constraint>,
}

/// The constraint's selector with matchLabelKeys folded in: the pod's own values for
/// those keys, so that e.g. each Deployment revision spreads on its own.
fn effective_selector(c: &TopologySpreadConstraint, pod: &PodInfo) -> Option<LabelSelector> {
    let mut selector = c.label_selector.clone()?;
    for key in c.match_label_keys.iter().flatten() {
        if let Some(value) = pod.labels.get(key) {
            selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(key.clone(), value.clone());
        }
    }
    Some(selector)
}

impl SpreadState {
    /// The pod's constraints of one kind (`hard`: DoNotSchedule, else ScheduleAnyway)
    /// with their domain counts; None when it has none.
    pub fn prefilter(
        pod: &PodInfo,
        selection: &NodeSelection<'_>,
        cache: &Cache,
        hard: bool,
    ) -> Option<Self> {
        let spec = pod.pod.spec.as_ref()?;
        let wanted = if hard {
            "DoNotSchedule"
        } else {
            "ScheduleAnyway"
        };
        let raw: Vec<&TopologySpreadConstraint> = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .filter(|c| c.when_unsatisfiable == wanted)
            .collect();
        if raw.is_empty() {
            return None;
        }
        let tolerations = spec.tolerations.as_deref().unwrap_or_default();
        let mut constraints = Vec::new();
        for c in raw {
            let selector = effective_selector(c, pod);
            let self_match = selector
                .as_ref()
                .is_some_and(|s| label_selector_matches(s, Some(&pod.labels)));
            let honor_affinity = c.node_affinity_policy.as_deref() != Some("Ignore");
            let honor_taints = c.node_taints_policy.as_deref() == Some("Honor");
            let mut counts: HashMap<String, i64> = HashMap::new();
            for node in cache.nodes.values() {
                let Some(value) = node.labels.get(&c.topology_key) else {
                    continue;
                };
                if (honor_affinity && !selection.matches(node))
                    || (honor_taints && untolerated_taint(&node.taints, tolerations).is_some())
                {
                    continue;
                }
                let matching = selector
                    .as_ref()
                    .map_or(0, |s| count_matching(node, pod, s));
                *counts.entry(value.clone()).or_default() += matching;
            }
            let mut min = counts.values().copied().min().unwrap_or(0);
            // With fewer domains than minDomains, the missing ones count as empty.
            if c.min_domains
                .is_some_and(|m| counts.len() < usize::try_from(m).unwrap_or(0))
            {
                min = 0;
            }
            constraints.push(Constraint {
                key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew),
                self_match: i64::from(self_match),
                counts,
                min,
            });
        }
        Some(SpreadState { constraints })
    }

    pub fn filter(&self, node: &NodeInfo) -> Result<(), Rejection> {
        for c in &self.constraints {
            let Some(value) = node.labels.get(&c.key) else {
                return Err(Rejection::SpreadMissingLabel);
            };
            let count = c.counts.get(value).copied().unwrap_or(0);
            if count + c.self_match - c.min > c.max_skew {
                return Err(Rejection::Spread);
            }
        }
        Ok(())
    }

    /// Raw ScheduleAnyway score (lower is better), None for a node lacking a key.
    /// Constraints with more domains weigh more (upstream: log(domains + 2)).
    pub fn raw(&self, node: &NodeInfo) -> Option<f64> {
        let mut total = 0.0;
        for c in &self.constraints {
            let value = node.labels.get(&c.key)?;
            let weight = ((c.counts.len() + 2) as f64).ln();
            let count = c.counts.get(value).copied().unwrap_or(0) as f64;
            total += count * weight + (c.max_skew - 1) as f64;
        }
        Some(total)
    }
}

fn count_matching(node: &NodeInfo, pod: &PodInfo, selector: &LabelSelector) -> i64 {
    node.pods
        .values()
        .filter(|p| {
            p.namespace == pod.namespace
                && p.pod.metadata.deletion_timestamp.is_none()
                && label_selector_matches(selector, Some(&p.labels))
        })
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{node, pod};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn constraint(key: &str, max_skew: i32, when: &str) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            topology_key: key.into(),
            max_skew,
            when_unsatisfiable: when.into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("foo".to_string(), "bar".to_string())])),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }
    }

    /// The docs' example: zoneA {node1, node2}, zoneB {node3, node4}; three foo=bar pods
    /// on node1, node2 and node3.
    fn docs_cluster() -> Cache {
        let mut cache = Cache::default();
        for (name, zone) in [
            ("node1", "zoneA"),
            ("node2", "zoneA"),
            ("node3", "zoneB"),
            ("node4", "zoneB"),
        ] {
            cache.set_node(Arc::new(node(name, &[("zone", zone)], "4", "8Gi")));
        }
        for (i, n) in ["node1", "node2", "node3"].iter().enumerate() {
            let p = pod(&format!("p{i}"), &[("foo", "bar")], "", "");
            cache.place(n, Arc::new(PodInfo::new(Arc::new(p))));
        }
        cache
    }

    fn incoming(constraints: Vec<TopologySpreadConstraint>) -> PodInfo {
        let mut p = pod("new", &[("foo", "bar")], "", "");
        p.spec.as_mut().unwrap().topology_spread_constraints = Some(constraints);
        PodInfo::new(Arc::new(p))
    }

    fn feasible(cache: &Cache, p: &PodInfo) -> Vec<String> {
        let sel = NodeSelection::of(p);
        let state = SpreadState::prefilter(p, &sel, cache, true).unwrap();
        let mut out: Vec<String> = cache
            .nodes
            .values()
            .filter(|n| state.filter(n).is_ok())
            .map(|n| n.name.clone())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn zone_skew_one_puts_the_pod_in_zone_b() {
        let cache = docs_cluster();
        let p = incoming(vec![constraint("zone", 1, "DoNotSchedule")]);
        assert_eq!(feasible(&cache, &p), vec!["node3", "node4"]);
    }

    #[test]
    fn zone_and_node_constraints_together() {
        // Docs: two constraints (zone and node); only node4 satisfies both.
        let cache = docs_cluster();
        let p = incoming(vec![
            constraint("zone", 1, "DoNotSchedule"),
            constraint("kubernetes.io/hostname", 1, "DoNotSchedule"),
        ]);
        assert_eq!(feasible(&cache, &p), vec!["node4"]);
    }

    #[test]
    fn missing_label_and_min_domains() {
        let mut cache = docs_cluster();
        cache.set_node(Arc::new(node("nolabel", &[], "4", "8Gi")));
        let p = incoming(vec![constraint("zone", 1, "DoNotSchedule")]);
        let sel = NodeSelection::of(&p);
        let state = SpreadState::prefilter(&p, &sel, &cache, true).unwrap();
        assert_eq!(
            state.filter(&cache.nodes["nolabel"]),
            Err(Rejection::SpreadMissingLabel)
        );
        // minDomains 3 with only 2 zones: the global minimum counts as 0, so with
        // maxSkew 2 zoneA (2 + 1 - 0 = 3) is too full and zoneB (1 + 1 - 0 = 2) is not.
        let mut c = constraint("zone", 2, "DoNotSchedule");
        c.min_domains = Some(3);
        let p = incoming(vec![c]);
        let mut f = feasible(&cache, &p);
        f.retain(|n| n != "nolabel");
        assert_eq!(f, vec!["node3", "node4"]);
    }

    #[test]
    fn schedule_anyway_scores_emptier_domains_better() {
        let cache = docs_cluster();
        let p = incoming(vec![constraint("zone", 1, "ScheduleAnyway")]);
        let sel = NodeSelection::of(&p);
        let state = SpreadState::prefilter(&p, &sel, &cache, false).unwrap();
        let a = state.raw(&cache.nodes["node1"]).unwrap();
        let b = state.raw(&cache.nodes["node4"]).unwrap();
        assert!(b < a);
    }
}
