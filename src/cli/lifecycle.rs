//! Beyond kind: `start cluster`, `stop cluster`, `add node` and `delete node`.

use super::ClusterName;
use clap::{Subcommand, ValueEnum};
use rind_cluster::config::Resources;
use rind_cluster::lifecycle::{self, AddNodeOptions, AddRole, DeleteNodeOptions};
use rind_cluster::ui::Ui;

#[derive(Subcommand, Debug)]
pub enum StartCommand {
    /// Starts every node of a stopped cluster.
    Cluster {
        #[command(flatten)]
        name: ClusterName,
        /// Wait until every node is Ready again (e.g. 60s, 5m); 0 waits only for the
        /// API server.
        #[arg(long, default_value = "0s")]
        wait: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum StopCommand {
    /// Stops every node of a cluster, keeping all its state for `start cluster`.
    Cluster {
        #[command(flatten)]
        name: ClusterName,
    },
}

#[derive(Subcommand, Debug)]
pub enum AddCommand {
    /// Adds a node to a running cluster.
    Node(AddNodeArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NodeRole {
    Worker,
    ControlPlane,
}

#[derive(clap::Args, Debug)]
pub struct AddNodeArgs {
    #[command(flatten)]
    pub name: ClusterName,
    /// The new node's role.
    #[arg(long, value_enum, default_value = "worker")]
    pub role: NodeRole,
    /// Node image (default: the control plane's image).
    #[arg(long)]
    pub image: Option<String>,
    /// CPU limit of the node container (e.g. 1.5), seen in the node's capacity.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Memory limit of the node container (e.g. 2g, 512m), seen in the node's capacity.
    #[arg(long)]
    pub memory: Option<String>,
    /// Wait until the node is Ready (e.g. 60s, 5m); 0 waits until it registers.
    #[arg(long, default_value = "0s")]
    pub wait: String,
}

#[derive(clap::Args, Debug)]
pub struct DeleteNodeArgs {
    /// The node (container) name, e.g. rind-worker2.
    pub node: String,
    #[command(flatten)]
    pub name: ClusterName,
    /// How long draining may take (evictions a PodDisruptionBudget refuses are retried
    /// until then).
    #[arg(long, default_value = "5m")]
    pub timeout: String,
}

fn duration(flag: &str, text: &str) -> anyhow::Result<std::time::Duration> {
    rind_cluster::duration::parse(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

pub async fn start(cmd: StartCommand, ui: &Ui) -> anyhow::Result<()> {
    let StartCommand::Cluster { name, wait } = cmd;
    let cluster = name.resolve();
    lifecycle::start_cluster(&cluster, duration("--wait", &wait)?, ui).await?;
    ui.info(&format!("Started cluster \"{cluster}\""));
    Ok(())
}

pub async fn stop(cmd: StopCommand, ui: &Ui) -> anyhow::Result<()> {
    let StopCommand::Cluster { name } = cmd;
    let cluster = name.resolve();
    lifecycle::stop_cluster(&cluster, ui).await?;
    ui.info(&format!("Stopped cluster \"{cluster}\""));
    Ok(())
}

pub async fn add(cmd: AddCommand, ui: &Ui) -> anyhow::Result<()> {
    let AddCommand::Node(args) = cmd;
    let resources = (args.cpus.is_some() || args.memory.is_some()).then(|| Resources {
        cpus: args.cpus,
        memory: args.memory.clone(),
    });
    let options = AddNodeOptions {
        cluster: args.name.resolve(),
        role: match args.role {
            NodeRole::Worker => AddRole::Worker,
            NodeRole::ControlPlane => AddRole::ControlPlane,
        },
        image: args.image,
        resources,
        wait: duration("--wait", &args.wait)?,
    };
    let node = lifecycle::add_node(&options, ui).await?;
    ui.info(&format!(
        "Added node {node} to cluster \"{}\"",
        options.cluster
    ));
    Ok(())
}

pub async fn delete_node(args: DeleteNodeArgs, ui: &Ui) -> anyhow::Result<()> {
    let options = DeleteNodeOptions {
        cluster: args.name.resolve(),
        node: args.node,
        timeout: duration("--timeout", &args.timeout)?,
    };
    lifecycle::delete_node(&options, ui).await?;
    ui.info(&format!(
        "Deleted node {} from cluster \"{}\"",
        options.node, options.cluster
    ));
    Ok(())
}
