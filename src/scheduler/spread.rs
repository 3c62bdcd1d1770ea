//! Pod topology spread constraints (upstream's PodTopologySpread plugin). Before the
//! nodes are filtered, matching pods are counted per domain of each constraint over
//! the nodes the constraint considers (nodeAffinityPolicy Honor: only nodes the pod's
//! own node selection accepts; nodeTaintsPolicy Honor: only nodes whose taints it
//! tolerates); a node then passes a DoNotSchedule constraint when placing the pod there
//! keeps `count(domain) + 1 - min(count)` within maxSkew. ScheduleAnyway constraints
//! are scored instead: fewer matching pods in the node's domains score higher.
//!
//! A pod with no constraints at all gets upstream's system defaults for scoring:
//! `kubernetes.io/hostname` maxSkew 3 and `topology.kubernetes.io/zone` maxSkew 5, both
//! ScheduleAnyway, counting the pods that the Services and controllers selecting the
//! pod also select (owners.rs); nodes lacking a key are still scored on the others.

use super::cache::{Cache, NodeInfo, PodInfo};
use super::filters::{NodeSelection, Rejection, untolerated_taint};
use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rind_api::object_selector::label_selector_matches;
use std::collections::HashMap;

/// Upstream's system default constraints: (topology key, maxSkew), ScheduleAnyway.
const SYSTEM_DEFAULTS: [(&str, i32); 2] = [(HOSTNAME, 3), ("topology.kubernetes.io/zone", 5)];
const HOSTNAME: &str = "kubernetes.io/hostname";

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
    /// From the system defaults: nodes missing a topology key are scored on the keys
    /// they have instead of not at all (upstream's requireAllTopologies is false).
    system_defaulted: bool,
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
    /// with their domain counts; None when it has none. `defaults` computes the
    /// selector of the system default constraints (owners.rs); it is only called for
    /// scoring a pod without constraints of its own.
    pub fn prefilter(
        pod: &PodInfo,
        selection: &NodeSelection<'_>,
        cache: &Cache,
        hard: bool,
        defaults: impl FnOnce() -> Vec<LabelSelector>,
    ) -> Option<Self> {
        let spec = pod.pod.spec.as_ref()?;
        let wanted = if hard {
            "DoNotSchedule"
        } else {
            "ScheduleAnyway"
        };
        let own = spec
            .topology_spread_constraints
            .as_deref()
            .unwrap_or_default();
        // Each constraint with the selectors (all must match) of the pods it counts;
        // None: a constraint without a labelSelector, which counts no pod.
        let mut raw: Vec<(TopologySpreadConstraint, Option<Vec<LabelSelector>>)> = own
            .iter()
            .filter(|c| c.when_unsatisfiable == wanted)
            .map(|c| (c.clone(), effective_selector(c, pod).map(|s| vec![s])))
            .collect();
        let system_defaulted = own.is_empty();
        if system_defaulted && !hard {
            let selector = defaults();
            // An empty selector: nothing selects the pod, so nothing to spread from.
            if !selector.is_empty() {
                raw = SYSTEM_DEFAULTS
                    .iter()
                    .map(|(key, max_skew)| {
                        let c = TopologySpreadConstraint {
                            topology_key: key.to_string(),
                            max_skew: *max_skew,
                            when_unsatisfiable: wanted.into(),
                            ..TopologySpreadConstraint::default()
                        };
                        (c, Some(selector.clone()))
                    })
                    .collect();
            }
        }
        if raw.is_empty() {
            return None;
        }
        let tolerations = spec.tolerations.as_deref().unwrap_or_default();
        let mut constraints = Vec::new();
        for (c, selector) in raw {
            let self_match = selector.as_ref().is_some_and(|s| all_match(s, &pod.labels));
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
        Some(SpreadState {
            constraints,
            system_defaulted,
        })
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

    /// ScheduleAnyway scores of the feasible nodes, as upstream's PreScore and Score:
    /// per constraint the node's domain count times log(domains among the feasible
    /// nodes + 2), plus maxSkew - 1, summed and rounded; lower is better. None for a
    /// node that lacks a key (unless system-defaulted, where it skips that key).
    pub fn raw_scores(&self, nodes: &[&NodeInfo]) -> Vec<Option<i64>> {
        let has_all = |n: &NodeInfo| {
            self.constraints
                .iter()
                .all(|c| n.labels.contains_key(&c.key))
        };
        let scored: Vec<bool> = nodes
            .iter()
            .map(|n| self.system_defaulted || has_all(n))
            .collect();
        let weights: Vec<f64> = self
            .constraints
            .iter()
            .map(|c| {
                let candidates = nodes.iter().zip(&scored).filter(|(_, s)| **s);
                let size = if c.key == HOSTNAME {
                    candidates.count()
                } else {
                    // A node lacking the key counts as one more domain, as upstream's
                    // empty topology value.
                    candidates
                        .map(|(n, _)| n.labels.get(&c.key).map_or("", String::as_str))
                        .collect::<std::collections::HashSet<_>>()
                        .len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        nodes
            .iter()
            .zip(&scored)
            .map(|(n, scored)| {
                if !scored {
                    return None;
                }
                let mut total = 0.0;
                for (c, weight) in self.constraints.iter().zip(&weights) {
                    if let Some(value) = n.labels.get(&c.key) {
                        let count = c.counts.get(value).copied().unwrap_or(0) as f64;
                        total += count * weight + (c.max_skew - 1) as f64;
                    }
                }
                Some(total.round() as i64)
            })
            .collect()
    }
}

/// Whether labels match every one of the selectors.
fn all_match(
    selectors: &[LabelSelector],
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    selectors
        .iter()
        .all(|s| label_selector_matches(s, Some(labels)))
}

fn count_matching(node: &NodeInfo, pod: &PodInfo, selectors: &[LabelSelector]) -> i64 {
    node.pods
        .values()
        .filter(|p| {
            p.namespace == pod.namespace
                && p.pod.metadata.deletion_timestamp.is_none()
                && all_match(selectors, &p.labels)
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
        let state = SpreadState::prefilter(p, &sel, cache, true, Vec::new).unwrap();
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
        let state = SpreadState::prefilter(&p, &sel, &cache, true, Vec::new).unwrap();
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
        let state = SpreadState::prefilter(&p, &sel, &cache, false, Vec::new).unwrap();
        let nodes = [&cache.nodes["node1"], &cache.nodes["node4"]];
        // Two zones among the feasible nodes: weight ln(4); zoneA has 2 pods, zoneB 1;
        // maxSkew 1 adds nothing.
        assert_eq!(state.raw_scores(&nodes), vec![Some(3), Some(1)]);
    }

    fn web_selector() -> Vec<LabelSelector> {
        vec![LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..LabelSelector::default()
        }]
    }

    /// Two zoneless nodes (as kind's): "a" runs two web pods, a pod of another app and
    /// a web-labelled pod of another namespace; "b" runs nothing.
    fn zoneless() -> Cache {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node("a", &[], "4", "8Gi")));
        cache.set_node(Arc::new(node("b", &[], "4", "8Gi")));
        for (name, app) in [("w1", "web"), ("w2", "web"), ("dns", "dns")] {
            let p = pod(name, &[("app", app)], "", "");
            cache.place("a", Arc::new(PodInfo::new(Arc::new(p))));
        }
        let mut other = pod("elsewhere", &[("app", "web")], "", "");
        other.metadata.namespace = Some("other".into());
        cache.place("a", Arc::new(PodInfo::new(Arc::new(other))));
        cache
    }

    #[test]
    fn system_defaults_spread_by_hostname_on_zoneless_nodes() {
        let cache = zoneless();
        let p = PodInfo::new(Arc::new(pod("new", &[("app", "web")], "", "")));
        let sel = NodeSelection::of(&p);
        // No constraints of its own and nothing hard: the filter gets nothing.
        assert!(SpreadState::prefilter(&p, &sel, &cache, true, web_selector).is_none());
        let state = SpreadState::prefilter(&p, &sel, &cache, false, web_selector).unwrap();
        let nodes = [&cache.nodes["a"], &cache.nodes["b"]];
        // Hostname only (no node has a zone): weight ln(2 + 2); a counts its two web
        // pods of this namespace: round(2 × 1.386 + 2) = 5; b: maxSkew 3 − 1 = 2.
        assert_eq!(state.raw_scores(&nodes), vec![Some(5), Some(2)]);
    }

    #[test]
    fn system_defaults_count_zones_where_nodes_have_them() {
        let mut cache = Cache::default();
        for (name, zone) in [("a1", "za"), ("a2", "za"), ("b1", "zb")] {
            cache.set_node(Arc::new(node(
                name,
                &[("topology.kubernetes.io/zone", zone)],
                "4",
                "8Gi",
            )));
        }
        cache.set_node(Arc::new(node("nozone", &[], "4", "8Gi")));
        let web = |n: &str| PodInfo::new(Arc::new(pod(n, &[("app", "web")], "", "")));
        cache.place("a1", Arc::new(web("w1")));
        cache.place("a2", Arc::new(web("w2")));
        let p = web("new");
        let sel = NodeSelection::of(&p);
        let state = SpreadState::prefilter(&p, &sel, &cache, false, web_selector).unwrap();
        let nodes = [
            &cache.nodes["a1"],
            &cache.nodes["b1"],
            &cache.nodes["nozone"],
        ];
        // Hostname: 3 candidates, weight ln 5 = 1.609; zone: za, zb and the zoneless
        // "" domain, weight ln 5. a1: 1 × 1.609 + 2 + 2 × 1.609 + 4 = 10.8 → 11;
        // b1: 2 + 4 = 6; nozone is scored on its hostname only: 2.
        assert_eq!(state.raw_scores(&nodes), vec![Some(11), Some(6), Some(2)]);
    }

    #[test]
    fn no_defaults_without_a_selector_or_with_own_constraints() {
        let cache = zoneless();
        let p = PodInfo::new(Arc::new(pod("new", &[("app", "web")], "", "")));
        let sel = NodeSelection::of(&p);
        // Nothing selects the pod: upstream's empty selector, no spreading.
        assert!(SpreadState::prefilter(&p, &sel, &cache, false, Vec::new).is_none());
        // A pod with constraints of its own (here only a hard one) gets no defaults,
        // and its own zone constraint leaves zoneless nodes unscored.
        let mut own = pod("own", &[("app", "web")], "", "");
        own.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![constraint("zone", 1, "DoNotSchedule")]);
        let own = PodInfo::new(Arc::new(own));
        let called = std::cell::Cell::new(false);
        let defaults = || {
            called.set(true);
            web_selector()
        };
        assert!(SpreadState::prefilter(&own, &sel, &cache, false, defaults).is_none());
        assert!(!called.get());
        let mut soft = pod("soft", &[("app", "web")], "", "");
        soft.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![constraint("zone", 1, "ScheduleAnyway")]);
        let soft = PodInfo::new(Arc::new(soft));
        let state = SpreadState::prefilter(&soft, &sel, &cache, false, web_selector).unwrap();
        let nodes = [&cache.nodes["a"], &cache.nodes["b"]];
        assert_eq!(state.raw_scores(&nodes), vec![None, None]);
    }
}
