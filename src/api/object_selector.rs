//! The selectors objects carry, matched as upstream matches them: a metav1
//! `LabelSelector` (workload selectors, claim selectors, pod affinity and topology
//! spread) against labels, and a core/v1 `NodeSelector` (node affinity of pods and of
//! persistent volumes) against a node's labels and name. The controllers, the
//! scheduler and the volume rules share these, so they cannot disagree on an edge.
//!
//! Upstream first builds a selector from the object and refuses malformed
//! requirements (`In` without values, `Exists` with values, `Gt` without exactly one
//! integer, an unknown operator); whatever holds one then selects nothing. Here a
//! malformed requirement makes its selector (or node selector term) match nothing.

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// The only field node selector terms may select on (`matchFields`).
const NODE_NAME_FIELD: &str = "metadata.name";

/// Whether a requirement holds for a label's value (None: the label is absent); None
/// when the requirement is malformed.
fn requirement_holds(operator: &str, values: &[String], value: Option<&str>) -> Option<bool> {
    let listed = |v: &str| values.iter().any(|x| x == v);
    Some(match (operator, values) {
        ("In", [_, ..]) => value.is_some_and(listed),
        ("NotIn", [_, ..]) => value.is_none_or(|v| !listed(v)),
        ("Exists", []) => value.is_some(),
        ("DoesNotExist", []) => value.is_none(),
        ("Gt" | "Lt", [bound]) => {
            let bound = bound.parse::<i64>().ok()?;
            // A label that is absent or not an integer never compares.
            let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                return Some(false);
            };
            if operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => return None,
    })
}

/// Whether a selector has neither matchLabels nor matchExpressions: it matches
/// everything (workload controllers refuse to manage with one).
pub fn label_selector_is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Whether `labels` (None: the object has none) match a label selector: every
/// matchLabels pair and every matchExpression (In, NotIn, Exists, DoesNotExist). An
/// empty selector matches everything, as upstream's `LabelSelectorAsSelector`; an
/// absent one is the caller's to read (upstream: nothing).
pub fn label_selector_matches(selector: &LabelSelector, labels: Option<&Labels>) -> bool {
    let value = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| value(k) == Some(v.as_str()));
    by_label
        && selector.match_expressions.iter().flatten().all(|e| {
            // Gt and Lt are node selector operators only.
            !matches!(e.operator.as_str(), "Gt" | "Lt")
                && requirement_holds(
                    &e.operator,
                    e.values.as_deref().unwrap_or_default(),
                    value(&e.key),
                ) == Some(true)
        })
}

/// Whether one node selector term holds for a node: every matchExpression on its
/// labels and every matchFields requirement on its name. A term with neither selects
/// no node, as upstream's.
pub fn node_selector_term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: Option<&Labels>,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let by_label = |r: &NodeSelectorRequirement| {
        let value = labels.and_then(|l| l.get(&r.key)).map(String::as_str);
        requirement_holds(&r.operator, r.values.as_deref().unwrap_or_default(), value) == Some(true)
    };
    // Upstream turns matchFields into a field selector: metadata.name only, and only
    // In or NotIn with exactly one value.
    let by_field = |r: &NodeSelectorRequirement| {
        let values = r.values.as_deref().unwrap_or_default();
        r.key == NODE_NAME_FIELD
            && values.len() == 1
            && matches!(r.operator.as_str(), "In" | "NotIn")
            && requirement_holds(&r.operator, values, Some(node_name)) == Some(true)
    };
    expressions.iter().all(by_label) && fields.iter().all(by_field)
}

/// Whether any of the selector's terms holds for the node (terms are ORed).
pub fn node_selector_matches(
    selector: &NodeSelector,
    node_name: &str,
    labels: Option<&Labels>,
) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| node_selector_term_matches(t, node_name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(values: &[&str]) -> Option<Vec<String>> {
        Some(values.iter().map(|v| v.to_string()).collect())
    }

    fn expression(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: strings(values),
        }
    }

    fn requirement(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: strings(values),
        }
    }

    fn by_labels(r: NodeSelectorRequirement) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![r]),
            match_fields: None,
        }
    }

    fn by_fields(r: NodeSelectorRequirement) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![r]),
        }
    }

    #[test]
    fn label_selectors_match_labels_and_expressions() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expression("tier", "In", &["front", "edge"]),
                expression("legacy", "DoesNotExist", &[]),
            ]),
        };
        let web = labels(&[("app", "web"), ("tier", "front")]);
        assert!(label_selector_matches(&selector, Some(&web)));
        let old = labels(&[("app", "web"), ("tier", "front"), ("legacy", "y")]);
        assert!(!label_selector_matches(&selector, Some(&old)));
        let db = labels(&[("app", "web"), ("tier", "db")]);
        assert!(!label_selector_matches(&selector, Some(&db)));
        assert!(!label_selector_matches(&selector, None));
        let not_in = LabelSelector {
            match_expressions: Some(vec![expression("tier", "NotIn", &["db"])]),
            ..LabelSelector::default()
        };
        assert!(label_selector_matches(&not_in, None));
        assert!(!label_selector_matches(&not_in, Some(&db)));
    }

    #[test]
    fn an_empty_label_selector_matches_everything() {
        assert!(label_selector_is_empty(&LabelSelector::default()));
        let empty_lists = LabelSelector {
            match_labels: Some(Labels::new()),
            match_expressions: Some(vec![]),
        };
        assert!(label_selector_is_empty(&empty_lists));
        assert!(label_selector_matches(&empty_lists, None));
        assert!(label_selector_matches(
            &LabelSelector::default(),
            Some(&labels(&[("a", "b")]))
        ));
    }

    #[test]
    fn malformed_label_expressions_match_nothing() {
        let l = labels(&[("tier", "db"), ("cores", "8")]);
        for e in [
            expression("tier", "NotIn", &[]),
            expression("tier", "In", &[]),
            expression("tier", "Exists", &["db"]),
            expression("cores", "Gt", &["4"]),
            expression("tier", "Equals", &["db"]),
        ] {
            let selector = LabelSelector {
                match_expressions: Some(vec![e.clone()]),
                ..LabelSelector::default()
            };
            assert!(!label_selector_matches(&selector, Some(&l)), "{e:?}");
        }
    }

    #[test]
    fn node_selector_operators() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let holds = |r| node_selector_term_matches(&by_labels(r), "n", Some(&l));
        assert!(holds(requirement("zone", "In", &["a", "b"])));
        assert!(!holds(requirement("zone", "NotIn", &["a"])));
        assert!(holds(requirement("gpu", "NotIn", &["x"])));
        assert!(holds(requirement("zone", "Exists", &[])));
        assert!(holds(requirement("gpu", "DoesNotExist", &[])));
        assert!(holds(requirement("cores", "Gt", &["4"])));
        assert!(!holds(requirement("cores", "Lt", &["4"])));
        assert!(holds(requirement("cores", "Lt", &["16"])));
        // A label that is not an integer, or absent, never compares.
        assert!(!holds(requirement("zone", "Gt", &["4"])));
        assert!(!holds(requirement("gpu", "Lt", &["4"])));
        // Malformed requirements: upstream refuses to build the term.
        assert!(!holds(requirement("cores", "Gt", &["4", "5"])));
        assert!(!holds(requirement("cores", "Gt", &["four"])));
        assert!(!holds(requirement("gpu", "NotIn", &[])));
        assert!(!holds(requirement("zone", "Exists", &["a"])));
        assert!(!holds(requirement("zone", "Near", &["a"])));
        assert!(!node_selector_term_matches(
            &NodeSelectorTerm::default(),
            "n",
            Some(&l)
        ));
    }

    #[test]
    fn node_selector_fields_name_the_node() {
        let l = labels(&[]);
        let by_name = by_fields(requirement("metadata.name", "In", &["n"]));
        assert!(node_selector_term_matches(&by_name, "n", Some(&l)));
        assert!(!node_selector_term_matches(&by_name, "m", None));
        let not_name = by_fields(requirement("metadata.name", "NotIn", &["n"]));
        assert!(node_selector_term_matches(&not_name, "m", None));
        // Only metadata.name, and only In/NotIn with one value.
        for r in [
            requirement("metadata.uid", "In", &["n"]),
            requirement("metadata.name", "In", &["n", "m"]),
            requirement("metadata.name", "Exists", &[]),
        ] {
            assert!(
                !node_selector_term_matches(&by_fields(r.clone()), "n", None),
                "{r:?}"
            );
        }
        // Terms are ORed.
        let selector = NodeSelector {
            node_selector_terms: vec![
                by_labels(requirement("zone", "In", &["b"])),
                by_name.clone(),
            ],
        };
        assert!(node_selector_matches(&selector, "n", None));
        assert!(!node_selector_matches(&selector, "m", None));
    }
}
