use super::ClusterName;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum GetCommand {
    /// Lists existing rind clusters by their name
    Clusters,
    /// Lists existing rind nodes by their name
    Nodes {
        #[command(flatten)]
        name: ClusterName,
        /// If present, list all the available nodes across all cluster contexts. Current context is ignored even if specified with --name.
        #[arg(short = 'A', long = "all-clusters")]
        all_clusters: bool,
    },
    /// Prints cluster kubeconfig
    Kubeconfig {
        #[command(flatten)]
        name: ClusterName,
        /// use internal address instead of external
        #[arg(long)]
        internal: bool,
    },
}
