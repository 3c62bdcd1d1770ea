//! The kubelet.

use crate::node::NodeConfig;

/// Runs the kubelet inside a node, configured from the node's files.
pub async fn run_node(_cfg: &NodeConfig) -> anyhow::Result<()> {
    anyhow::bail!("the kubelet is not built yet")
}
