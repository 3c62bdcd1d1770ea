//! Hidden `rind node …` subcommands: what runs inside a node container.

use crate::node::{NodeConfig, paths};
use anyhow::Context;
use clap::Subcommand;
use std::path::Path;

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// PID 1 of a node: mounts, containerd, etcd and every component, supervised.
    Init,
    /// The Kubernetes API server.
    Apiserver,
    /// The controller-manager: workload, garbage-collection and other control loops.
    ControllerManager,
    /// The scheduler.
    Scheduler,
    /// The kubelet.
    Kubelet,
    /// Prints the ID of an image the node's runtime holds (nothing if absent); lets
    /// `rind load` skip nodes that already have an image.
    ImageId { image: String },
}

pub async fn run(cmd: NodeCommand) -> anyhow::Result<()> {
    let load =
        || NodeConfig::load(Path::new(paths::NODE_CONFIG)).context("loading the node config");
    match cmd {
        NodeCommand::Init => crate::node::run_init().await,
        NodeCommand::Apiserver => crate::apiserver::run_node(&load()?).await,
        NodeCommand::ControllerManager => crate::controllers::run_node(&load()?).await,
        NodeCommand::Scheduler => crate::scheduler::run_node(&load()?).await,
        NodeCommand::Kubelet => crate::kubelet::run_node(&load()?).await,
        NodeCommand::ImageId { image } => {
            if let Some(id) = crate::kubelet::image_id(&image).await? {
                println!("{id}");
            }
            Ok(())
        }
    }
}
