//! The kubelet.

mod cri;

use crate::node::NodeConfig;

/// Runs the kubelet inside a node, configured from the node's files.
pub async fn run_node(_cfg: &NodeConfig) -> anyhow::Result<()> {
    let _ = cri::Cri::connect(crate::node::paths::CONTAINERD_SOCK).await?;
    anyhow::bail!("the kubelet is not built yet")
}
