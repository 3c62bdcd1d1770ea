use super::ClusterName;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum DeleteCommand {
    /// Deletes a cluster.
    Cluster {
        #[command(flatten)]
        name: ClusterName,
        /// Kubeconfig to remove the cluster's entries from.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Deletes the named clusters, or every cluster with --all.
    Clusters {
        names: Vec<String>,
        #[arg(short = 'A', long)]
        all: bool,
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Drains a node, then removes it from its cluster.
    Node(super::lifecycle::DeleteNodeArgs),
}
