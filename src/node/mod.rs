//! Inside a node: PID-1 init, the supervisor of every component, and the node's
//! own configuration and paths.

pub mod config;
pub mod paths;

pub use config::{NodeConfig, Role};

/// Runs as PID 1 of a node container.
pub async fn run_init() -> anyhow::Result<()> {
    anyhow::bail!("node init is not built yet")
}
