//! Inter-pod affinity and anti-affinity (upstream's InterPodAffinity plugin). Before
//! the nodes are filtered, the placed pods are counted once per topology domain
//! (a `(topologyKey, value)` pair): pods the incoming pod's required affinity terms
//! match, pods its anti-affinity terms match, and domains where a placed pod's required
//! anti-affinity forbids the incoming pod. Each node then only looks its domains up.

use super::cache::{Cache, NodeInfo, PodInfo};
use super::filters::Rejection;
use super::selectors::affinity_term_matches;
use k8s_openapi::api::core::v1::PodAffinityTerm;
use std::collections::{HashMap, HashSet};

type Domain = (String, String);

pub struct AffinityState {
    required_affinity: Vec<PodAffinityTerm>,
    required_anti_affinity: Vec<PodAffinityTerm>,
    /// Domains with placed pods matching all of the incoming pod's affinity terms.
    affinity_counts: HashMap<Domain, usize>,
    /// The incoming pod matches its own affinity terms (it may start a new group).
    matches_itself: bool,
    /// Domains with placed pods the incoming pod's anti-affinity terms match.
    anti_affinity_domains: HashSet<Domain>,
    /// Domains where a placed pod's required anti-affinity rejects the incoming pod.
    existing_anti_domains: HashSet<Domain>,
}

fn domain_of(node: &NodeInfo, key: &str) -> Option<Domain> {
    node.labels
        .get(key)
        .map(|value| (key.to_string(), value.clone()))
}

fn matches(term: &PodAffinityTerm, owner_ns: &str, target: &PodInfo, cache: &Cache) -> bool {
    affinity_term_matches(
        term,
        owner_ns,
        &target.namespace,
        &target.labels,
        &cache.namespace_labels,
    )
}

impl AffinityState {
    /// None when nothing about inter-pod affinity can reject a node for this pod.
    pub fn prefilter(pod: &PodInfo, cache: &Cache) -> Option<Self> {
        let has_required =
            !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        if !has_required && cache.with_affinity.is_empty() {
            return None;
        }
        let mut state = AffinityState {
            required_affinity: pod.required_affinity.clone(),
            required_anti_affinity: pod.required_anti_affinity.clone(),
            affinity_counts: HashMap::new(),
            matches_itself: pod
                .required_affinity
                .iter()
                .all(|t| matches(t, &pod.namespace, pod, cache)),
            anti_affinity_domains: HashSet::new(),
            existing_anti_domains: HashSet::new(),
        };
        // Placed pods' anti-affinity against the incoming pod: only pods with affinity.
        for (uid, node_name) in &cache.with_affinity {
            let Some(node) = cache.nodes.get(node_name) else {
                continue;
            };
            let Some(existing) = node.pods.get(uid) else {
                continue;
            };
            for term in &existing.required_anti_affinity {
                if matches(term, &existing.namespace, pod, cache)
                    && let Some(d) = domain_of(node, &term.topology_key)
                {
                    state.existing_anti_domains.insert(d);
                }
            }
        }
        if has_required {
            for node in cache.nodes.values() {
                for existing in node.pods.values() {
                    if existing.uid == pod.uid {
                        continue;
                    }
                    let all = !state.required_affinity.is_empty()
                        && state
                            .required_affinity
                            .iter()
                            .all(|t| matches(t, &pod.namespace, existing, cache));
                    if all {
                        for t in &state.required_affinity {
                            if let Some(d) = domain_of(node, &t.topology_key) {
                                *state.affinity_counts.entry(d).or_default() += 1;
                            }
                        }
                    }
                    for t in &state.required_anti_affinity {
                        if matches(t, &pod.namespace, existing, cache)
                            && let Some(d) = domain_of(node, &t.topology_key)
                        {
                            state.anti_affinity_domains.insert(d);
                        }
                    }
                }
            }
        }
        Some(state)
    }

    pub fn filter(&self, node: &NodeInfo) -> Result<(), Rejection> {
        if !self.required_affinity.is_empty() {
            let mut satisfied = true;
            for t in &self.required_affinity {
                match domain_of(node, &t.topology_key) {
                    // A node without the topology label is in no domain at all.
                    None => return Err(Rejection::PodAffinity),
                    Some(d) => satisfied &= self.affinity_counts.get(&d).is_some_and(|n| *n > 0),
                }
            }
            // The first pod of a group that selects itself may go anywhere, else no
            // pod of the group could ever be scheduled.
            let first_of_group = self.affinity_counts.is_empty() && self.matches_itself;
            if !satisfied && !first_of_group {
                return Err(Rejection::PodAffinity);
            }
        }
        for t in &self.required_anti_affinity {
            if let Some(d) = domain_of(node, &t.topology_key)
                && self.anti_affinity_domains.contains(&d)
            {
                return Err(Rejection::PodAntiAffinity);
            }
        }
        if !self.existing_anti_domains.is_empty()
            && node
                .labels
                .iter()
                .any(|(k, v)| self.existing_anti_domains.contains(&(k.clone(), v.clone())))
        {
            return Err(Rejection::ExistingAntiAffinity);
        }
        Ok(())
    }
}

/// The preferred half: a weight per domain, from the incoming pod's preferred terms
/// against placed pods and from placed pods' terms against the incoming pod (upstream
/// counts placed pods' required affinity with weight 1, hardPodAffinityWeight).
pub struct AffinityScores {
    by_domain: HashMap<Domain, i64>,
}

const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

impl AffinityScores {
    pub fn prescore(pod: &PodInfo, cache: &Cache) -> Option<Self> {
        let incoming =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !incoming && cache.with_affinity.is_empty() {
            return None;
        }
        let mut by_domain: HashMap<Domain, i64> = HashMap::new();
        let mut add = |node: &NodeInfo, key: &str, weight: i64| {
            if let Some(d) = domain_of(node, key) {
                *by_domain.entry(d).or_default() += weight;
            }
        };
        if incoming {
            for node in cache.nodes.values() {
                for existing in node.pods.values() {
                    for w in &pod.preferred_affinity {
                        let t = &w.pod_affinity_term;
                        if matches(t, &pod.namespace, existing, cache) {
                            add(node, &t.topology_key, i64::from(w.weight));
                        }
                    }
                    for w in &pod.preferred_anti_affinity {
                        let t = &w.pod_affinity_term;
                        if matches(t, &pod.namespace, existing, cache) {
                            add(node, &t.topology_key, -i64::from(w.weight));
                        }
                    }
                }
            }
        }
        for (uid, node_name) in &cache.with_affinity {
            let Some(node) = cache.nodes.get(node_name) else {
                continue;
            };
            let Some(existing) = node.pods.get(uid) else {
                continue;
            };
            let ns = &existing.namespace;
            for t in &existing.required_affinity {
                if matches(t, ns, pod, cache) {
                    add(node, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            for w in &existing.preferred_affinity {
                if matches(&w.pod_affinity_term, ns, pod, cache) {
                    add(node, &w.pod_affinity_term.topology_key, i64::from(w.weight));
                }
            }
            for w in &existing.preferred_anti_affinity {
                if matches(&w.pod_affinity_term, ns, pod, cache) {
                    add(
                        node,
                        &w.pod_affinity_term.topology_key,
                        -i64::from(w.weight),
                    );
                }
            }
        }
        if by_domain.is_empty() {
            return None;
        }
        Some(AffinityScores { by_domain })
    }

    /// The raw score of a node: the weights of every domain it is in.
    pub fn raw(&self, node: &NodeInfo) -> i64 {
        self.by_domain
            .iter()
            .filter(|((k, v), _)| node.labels.get(k) == Some(v))
            .map(|(_, w)| *w)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{node, pod};
    use k8s_openapi::api::core::v1::{
        Affinity, Pod, PodAffinity, PodAntiAffinity, WeightedPodAffinityTerm,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn term(key: &str, value: &str, topology: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
                ..LabelSelector::default()
            }),
            topology_key: topology.into(),
            ..PodAffinityTerm::default()
        }
    }

    /// Two zones with two nodes each, as in the docs' examples.
    fn zoned() -> Cache {
        let mut cache = Cache::default();
        for (name, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")] {
            cache.set_node(Arc::new(node(
                name,
                &[("topology.kubernetes.io/zone", zone)],
                "4",
                "8Gi",
            )));
        }
        cache
    }

    fn with_affinity(mut p: Pod, affinity: Affinity) -> PodInfo {
        p.spec.as_mut().unwrap().affinity = Some(affinity);
        PodInfo::new(Arc::new(p))
    }

    fn feasible(cache: &Cache, p: &PodInfo) -> Vec<String> {
        let state = AffinityState::prefilter(p, cache);
        let mut out: Vec<String> = cache
            .nodes
            .values()
            .filter(|n| state.as_ref().is_none_or(|s| s.filter(n).is_ok()))
            .map(|n| n.name.clone())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn required_affinity_follows_the_zone_of_matching_pods() {
        // Docs: pod affinity security=S1 in the same zone.
        let mut cache = zoned();
        let web = with_affinity(
            pod("web", &[], "", ""),
            Affinity {
                pod_affinity: Some(PodAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![term(
                        "security",
                        "S1",
                        "topology.kubernetes.io/zone",
                    )]),
                    ..PodAffinity::default()
                }),
                ..Affinity::default()
            },
        );
        // Nothing matches and the pod does not match itself: nowhere.
        assert!(feasible(&cache, &web).is_empty());
        let s1 = PodInfo::new(Arc::new(pod("s1", &[("security", "S1")], "", "")));
        cache.place("b1", Arc::new(s1));
        assert_eq!(feasible(&cache, &web), vec!["b1", "b2"]);
        let rejection = AffinityState::prefilter(&web, &cache)
            .unwrap()
            .filter(&cache.nodes["a1"]);
        assert_eq!(rejection, Err(Rejection::PodAffinity));
    }

    #[test]
    fn first_pod_of_a_self_selecting_group_goes_anywhere() {
        let cache = zoned();
        let p = with_affinity(
            pod("p", &[("app", "db")], "", ""),
            Affinity {
                pod_affinity: Some(PodAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![term(
                        "app",
                        "db",
                        "topology.kubernetes.io/zone",
                    )]),
                    ..PodAffinity::default()
                }),
                ..Affinity::default()
            },
        );
        assert_eq!(feasible(&cache, &p).len(), 4);
    }

    fn anti(app: &str, topology: &str) -> Affinity {
        Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(
                    "app", app, topology,
                )]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        }
    }

    #[test]
    fn anti_affinity_both_ways() {
        let mut cache = zoned();
        // Docs: one cache replica per node (anti-affinity on hostname).
        let r1 = with_affinity(
            pod("r1", &[("app", "cache")], "", ""),
            anti("cache", "kubernetes.io/hostname"),
        );
        cache.place("a1", Arc::new(r1));
        let r2 = with_affinity(
            pod("r2", &[("app", "cache")], "", ""),
            anti("cache", "kubernetes.io/hostname"),
        );
        assert_eq!(feasible(&cache, &r2), vec!["a2", "b1", "b2"]);
        // A plain pod with the label is kept off a1 by r1's own anti-affinity.
        let plain = PodInfo::new(Arc::new(pod("plain", &[("app", "cache")], "", "")));
        assert_eq!(
            AffinityState::prefilter(&plain, &cache)
                .unwrap()
                .filter(&cache.nodes["a1"]),
            Err(Rejection::ExistingAntiAffinity)
        );
        // Zone-wide anti-affinity excludes both nodes of the zone.
        let z = with_affinity(
            pod("z", &[], "", ""),
            anti("cache", "topology.kubernetes.io/zone"),
        );
        assert_eq!(feasible(&cache, &z), vec!["b1", "b2"]);
        let other = PodInfo::new(Arc::new(pod("o", &[("app", "web")], "", "")));
        assert_eq!(feasible(&cache, &other).len(), 4);
    }

    #[test]
    fn preferred_terms_score_domains() {
        let mut cache = zoned();
        cache.place(
            "a1",
            Arc::new(PodInfo::new(Arc::new(pod("db", &[("app", "db")], "", "")))),
        );
        let p = with_affinity(
            pod("p", &[], "", ""),
            Affinity {
                pod_affinity: Some(PodAffinity {
                    preferred_during_scheduling_ignored_during_execution: Some(vec![
                        WeightedPodAffinityTerm {
                            weight: 50,
                            pod_affinity_term: term("app", "db", "topology.kubernetes.io/zone"),
                        },
                    ]),
                    ..PodAffinity::default()
                }),
                ..Affinity::default()
            },
        );
        let scores = AffinityScores::prescore(&p, &cache).unwrap();
        assert_eq!(scores.raw(&cache.nodes["a2"]), 50);
        assert_eq!(scores.raw(&cache.nodes["b1"]), 0);
    }
}
