use super::ClusterName;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Merges the cluster's kubeconfig into $KUBECONFIG or ~/.kube/config.
    Kubeconfig {
        #[command(flatten)]
        name: ClusterName,
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        #[arg(long)]
        internal: bool,
    },
    /// Exports every node's logs to a directory.
    Logs {
        #[command(flatten)]
        name: ClusterName,
        dir: Option<PathBuf>,
    },
}
