//! The command tree, kind's shape: `rind <verb> <noun>`, with kind's flag names,
//! defaults and help texts (`kind` read as `rind`).

pub mod build;
pub mod commands;
pub mod create;
pub mod delete;
pub mod export;
pub mod get;
pub mod lifecycle;
pub mod load;
pub mod node;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rind",
    version,
    about = "rind creates and manages local Kubernetes clusters using Docker container 'nodes'"
)]
pub struct Cli {
    /// silence all stderr output
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// info log verbosity, higher value produces more output
    #[arg(short = 'v', long = "verbosity", global = true, default_value_t = 0)]
    pub verbosity: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Creates one of [cluster]
    #[command(subcommand)]
    Create(create::CreateCommand),
    /// Deletes one of [cluster, clusters, node]
    #[command(subcommand)]
    Delete(delete::DeleteCommand),
    /// Gets one of [clusters, nodes, kubeconfig]
    #[command(subcommand)]
    Get(get::GetCommand),
    /// Exports one of [kubeconfig, logs]
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Loads images into nodes
    #[command(subcommand)]
    Load(load::LoadCommand),
    /// Starts one of [cluster] (a stopped cluster, with all its state)
    #[command(subcommand)]
    Start(lifecycle::StartCommand),
    /// Stops one of [cluster], keeping all its state
    #[command(subcommand)]
    Stop(lifecycle::StopCommand),
    /// Adds one of [node] to a running cluster
    #[command(subcommand)]
    Add(lifecycle::AddCommand),
    /// Builds one of [node-image]
    #[command(subcommand)]
    Build(build::BuildCommand),
    /// Prints the rind CLI version
    Version,
    /// Outputs shell completion code for the given shell
    Completion { shell: clap_complete::Shell },
    /// Components that run inside a node container.
    #[command(subcommand, hide = true)]
    Node(node::NodeCommand),
    /// The cluster DNS server, as the `coredns` Deployment's pods run it.
    #[command(hide = true)]
    Dns(rind_dns::DnsArgs),
    /// Benchmark drivers run by e2e/bench scripts.
    #[command(subcommand, hide = true)]
    Bench(rind_bench::api::BenchCommand),
}

/// The environment variable that names the cluster when `--name` is not given
/// (kind's `KIND_CLUSTER_NAME`).
pub const CLUSTER_NAME_ENV: &str = "RIND_CLUSTER_NAME";

/// `--name`, shared by every command that acts on one existing cluster.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterName {
    /// the cluster context name [default: rind, overridden by $RIND_CLUSTER_NAME]
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
}

impl ClusterName {
    /// The flag, else a non-empty `$RIND_CLUSTER_NAME`, else the default.
    pub fn resolve(&self) -> String {
        rind_cluster::operations::resolve_name(self.given().as_deref(), None)
    }

    /// The flag, else a non-empty `$RIND_CLUSTER_NAME` (an empty one is unset, as
    /// kind treats `KIND_CLUSTER_NAME=`).
    pub fn given(&self) -> Option<String> {
        self.name.clone().or_else(|| {
            std::env::var(CLUSTER_NAME_ENV)
                .ok()
                .filter(|v| !v.is_empty())
        })
    }
}

#[cfg(test)]
mod tests;
