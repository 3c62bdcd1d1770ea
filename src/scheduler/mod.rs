//! The scheduler.

use crate::node::NodeConfig;

/// Runs the scheduler inside a node, configured from the node's files.
pub async fn run_node(_cfg: &NodeConfig) -> anyhow::Result<()> {
    anyhow::bail!("the scheduler is not built yet")
}
