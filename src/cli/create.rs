use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum CreateCommand {
    /// Creates a local Kubernetes cluster
    #[command(long_about = "Creates a local Kubernetes cluster using Docker container 'nodes'")]
    Cluster(CreateClusterArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateClusterArgs {
    /// cluster name, overrides RIND_CLUSTER_NAME, config (default rind)
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    /// path to a rind (kind v1alpha4) config file, or `-` for stdin
    #[arg(long)]
    pub config: Option<String>,
    /// node docker image to use for booting the cluster (default: rind/node:<version>, built when missing)
    #[arg(long)]
    pub image: Option<String>,
    /// retain nodes for debugging when cluster creation fails
    #[arg(long)]
    pub retain: bool,
    /// The length of time to wait for every node to be Ready and the kube-system pods
    /// Running (default 0s). Non-zero values should contain a corresponding time unit
    /// (e.g. 1s, 2m, 3h).
    #[arg(long, default_value = "0s", hide_default_value = true)]
    pub wait: String,
    /// sets kubeconfig path instead of $KUBECONFIG or $HOME/.kube/config
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}
