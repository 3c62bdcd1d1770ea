//! Matching the scheduler's selectors: node selector terms (required and preferred node
//! affinity, with matchFields) against a node, label selectors against pods, and pod
//! affinity terms against a pod in its namespace.

use k8s_openapi::api::core::v1::PodAffinityTerm;
use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::{BTreeMap, HashMap};

type Labels = BTreeMap<String, String>;

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    // Gt and Lt compare integers; a value that is not one never matches.
    let compare = |ordering: std::cmp::Ordering| {
        let (Some(have), Some(want)) = (
            value.and_then(|v| v.parse::<i64>().ok()),
            values.first().and_then(|v| v.parse::<i64>().ok()),
        ) else {
            return false;
        };
        values.len() == 1 && have.cmp(&want) == ordering
    };
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => compare(std::cmp::Ordering::Greater),
        "Lt" => compare(std::cmp::Ordering::Less),
        _ => false,
    }
}

/// One term: every expression and every field requirement must hold. A term with
/// neither matches nothing, as upstream's.
pub fn term_matches(term: &NodeSelectorTerm, node_name: &str, labels: &Labels) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node_name.to_string();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| {
            // metadata.name is the only field node affinity supports.
            r.key == "metadata.name" && requirement_matches(r, Some(&name))
        })
}

/// Terms are ORed.
pub fn node_selector_matches(selector: &NodeSelector, node_name: &str, labels: &Labels) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node_name, labels))
}

/// A metav1 label selector; an empty selector matches everything.
pub fn label_selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let plain = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    plain
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

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
                    .is_some_and(|l| label_selector_matches(ns_selector, l))
                || (ns_selector
                    .match_labels
                    .as_ref()
                    .is_none_or(|m| m.is_empty())
                    && ns_selector
                        .match_expressions
                        .as_ref()
                        .is_none_or(|m| m.is_empty()))
        }
    };
    in_namespace && label_selector_matches(selector, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn node_selector_operators() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let t = |r: NodeSelectorRequirement| NodeSelectorTerm {
            match_expressions: Some(vec![r]),
            match_fields: None,
        };
        assert!(term_matches(&t(req("zone", "In", &["a", "b"])), "n", &l));
        assert!(!term_matches(&t(req("zone", "NotIn", &["a"])), "n", &l));
        assert!(term_matches(&t(req("gpu", "NotIn", &["x"])), "n", &l));
        assert!(term_matches(&t(req("zone", "Exists", &[])), "n", &l));
        assert!(term_matches(&t(req("gpu", "DoesNotExist", &[])), "n", &l));
        assert!(term_matches(&t(req("cores", "Gt", &["4"])), "n", &l));
        assert!(!term_matches(&t(req("cores", "Lt", &["4"])), "n", &l));
        assert!(!term_matches(&t(req("zone", "Gt", &["4"])), "n", &l));
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n"])]),
        };
        assert!(term_matches(&by_name, "n", &l));
        assert!(!term_matches(&by_name, "m", &l));
        assert!(!term_matches(&NodeSelectorTerm::default(), "n", &l));
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
