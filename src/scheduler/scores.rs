//! Scores: among the nodes that fit, prefer the least loaded one (fewest pods), with
//! the node name as a stable tie-break so equal clusters schedule predictably.

use std::collections::HashMap;

/// Picks the feasible node with the fewest pods.
pub fn pick<'a>(feasible: &[&'a str], pods_per_node: &HashMap<String, usize>) -> Option<&'a str> {
    feasible
        .iter()
        .copied()
        .min_by_key(|name| (pods_per_node.get(*name).copied().unwrap_or(0), *name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewest_pods_wins_then_name() {
        let counts = HashMap::from([("a".to_string(), 3), ("b".to_string(), 1)]);
        assert_eq!(pick(&["a", "b", "c"], &counts), Some("c"));
        assert_eq!(pick(&["a", "b"], &counts), Some("b"));
        assert_eq!(pick(&["x", "w"], &HashMap::new()), Some("w"));
        assert_eq!(pick(&[], &counts), None);
    }
}
