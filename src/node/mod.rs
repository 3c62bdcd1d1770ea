//! Inside a node: PID-1 init, the supervisor of every component, and the node's
//! own configuration and paths.

pub mod cni;
pub mod config;
pub mod containerd;
pub mod etcd;
pub mod init;
pub mod mounts;
pub mod paths;
pub mod supervisor;

pub use config::{NodeConfig, Role};

/// Runs as PID 1 of a node container.
pub async fn run_init() -> anyhow::Result<()> {
    init::run().await?;
    Ok(())
}
