use super::ClusterName;
use clap::Subcommand;
use std::path::PathBuf;

/// kind's text: deleting is idempotent.
const IDEMPOTENT: &str =
    "This is an idempotent operation, meaning it may be called multiple times without
failing (like \"rm -f\"). If the cluster resources exist they will be deleted, and
if the cluster is already gone it will just return success.

Errors will only occur if the cluster resources exist and are not able to be deleted.";

#[derive(Subcommand, Debug)]
pub enum DeleteCommand {
    /// Deletes a cluster
    #[command(long_about = format!("Deletes a rind cluster from the system.\n\n{IDEMPOTENT}"))]
    Cluster {
        #[command(flatten)]
        name: ClusterName,
        /// sets kubeconfig path instead of $KUBECONFIG or $HOME/.kube/config
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Deletes one or more clusters
    #[command(long_about = format!("Deletes one or more rind clusters from the system.\n\n{IDEMPOTENT}"))]
    Clusters {
        /// the clusters to delete
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// delete all clusters
        #[arg(short = 'A', long)]
        all: bool,
        /// sets kubeconfig path instead of $KUBECONFIG or $HOME/.kube/config
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Drains a node, then removes it from its cluster.
    Node(super::lifecycle::DeleteNodeArgs),
}
