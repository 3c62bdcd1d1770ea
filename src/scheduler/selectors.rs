//! Matching pod affinity terms against a pod in its namespace. Node selectors and
//! label selectors are matched by `rind_api::object_selector`, which the controllers
//! and the volume rules share.

use k8s_openapi::api::core::v1::PodAffinityTerm;
use rind_api::object_selector::{Labels, label_selector_is_empty, label_selector_matches};
use std::collections::HashMap;

/// Whether a pod (namespace, labels) is one the affinity term of a pod in
/// `owner_namespace` refers to. Without namespaces or a namespaceSelector the term
/// means the owner's own namespace; an empty namespaceSelector means every namespace.
/// A term without a labelSelector matches no pod.
pub fn affinity_term_matches(
    term: &PodAffinityTerm,
    owner_namespace: &str,
    namespace: &str,
    labels: &Labels,
    namespace_labels: &HashMap<String, Labels>,
) -> bool {
    let Some(selector) = term.label_selector.as_ref() else {
        return false;
    };
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let in_namespace = match &term.namespace_selector {
        None if listed.is_empty() => namespace == owner_namespace,
        None => listed.iter().any(|n| n == namespace),
        Some(ns_selector) => {
            listed.iter().any(|n| n == namespace)
                || namespace_labels
                    .get(namespace)
                    .is_some_and(|l| label_selector_matches(ns_selector, Some(l)))
                || label_selector_is_empty(ns_selector)
        }
    };
    in_namespace && label_selector_matches(selector, Some(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn affinity_terms_default_to_the_owner_namespace() {
        let term = PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..LabelSelector::default()
            }),
            topology_key: "zone".into(),
            ..PodAffinityTerm::default()
        };
        let l = labels(&[("app", "web")]);
        let ns = HashMap::new();
        assert!(affinity_term_matches(&term, "a", "a", &l, &ns));
        assert!(!affinity_term_matches(&term, "a", "b", &l, &ns));
        let mut all = term.clone();
        all.namespace_selector = Some(LabelSelector::default());
        assert!(affinity_term_matches(&all, "a", "b", &l, &ns));
        let mut team = term;
        team.namespace_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("team".into(), "x".into())])),
            ..LabelSelector::default()
        });
        let ns = HashMap::from([("b".to_string(), labels(&[("team", "x")]))]);
        assert!(affinity_term_matches(&team, "a", "b", &l, &ns));
        assert!(!affinity_term_matches(&team, "a", "c", &l, &ns));
    }
}
