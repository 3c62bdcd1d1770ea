use super::ClusterName;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum GetCommand {
    /// Lists existing clusters.
    Clusters,
    /// Lists the node containers of a cluster.
    Nodes {
        #[command(flatten)]
        name: ClusterName,
        /// Nodes of every cluster.
        #[arg(short = 'A', long = "all-clusters")]
        all_clusters: bool,
    },
    /// Prints the cluster's kubeconfig.
    Kubeconfig {
        #[command(flatten)]
        name: ClusterName,
        /// Use the address reachable from inside the Docker network.
        #[arg(long)]
        internal: bool,
    },
}
