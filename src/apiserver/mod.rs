//! The apiserver.

use crate::node::NodeConfig;

/// Runs the apiserver inside a node, configured from the node's files.
pub async fn run_node(_cfg: &NodeConfig) -> anyhow::Result<()> {
    anyhow::bail!("the apiserver is not built yet")
}
