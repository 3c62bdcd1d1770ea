use super::ClusterName;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum CreateCommand {
    /// Creates a local Kubernetes cluster.
    Cluster(CreateClusterArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateClusterArgs {
    #[command(flatten)]
    pub name: ClusterName,
    /// Path to a cluster config file, or `-` for stdin.
    #[arg(long)]
    pub config: Option<String>,
    /// Node image to use (default: rind/node:<this version>, built when missing).
    #[arg(long)]
    pub image: Option<String>,
    /// Wait for the control plane to be ready (e.g. 60s, 5m); 0 does not wait.
    #[arg(long, default_value = "0s")]
    pub wait: String,
    /// Keep the nodes for debugging when creation fails.
    #[arg(long)]
    pub retain: bool,
    /// Kubeconfig to update (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}
