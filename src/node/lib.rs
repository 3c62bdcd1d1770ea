//! Inside a node: PID-1 init (mounts, cgroups, containerd and etcd configuration) and
//! the supervisor of every component. The node's configuration and paths, which the
//! host side writes and every component reads, live in `rind_runtime`.

pub mod containerd;
pub mod etcd;
pub mod init;
pub mod lb;
pub mod mounts;
pub mod resolv;
pub mod supervisor;
pub mod var;

/// Runs the external load balancer of an HA cluster.
pub async fn run_load_balancer() -> anyhow::Result<()> {
    lb::run().await?;
    Ok(())
}

/// Runs as PID 1 of a node container.
pub async fn run_init() -> anyhow::Result<()> {
    init::run().await?;
    Ok(())
}
