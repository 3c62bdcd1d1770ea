//! Host commands: each takes its parsed arguments and does the work.

use super::config::{Cluster, validate_cluster_name};
use super::ui::Ui;
use super::{
    actions, client, docker, duration, image, kubeconfig, load, logs, pki, plan, provider,
};
use crate::cli::{
    build::BuildCommand, create::CreateClusterArgs, create::CreateCommand, delete::DeleteCommand,
    export::ExportCommand, get::GetCommand, load::LoadCommand,
};
use anyhow::{Context, bail};
use std::io::Read;
use std::path::{Path, PathBuf};

pub async fn create(cmd: CreateCommand, ui: &Ui) -> anyhow::Result<()> {
    let CreateCommand::Cluster(args) = cmd;
    create_cluster(args, ui).await
}

fn read_config(source: &str) -> anyhow::Result<Cluster> {
    let (text, name) = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the cluster config from stdin")?;
        (text, "stdin".to_string())
    } else {
        let text = std::fs::read_to_string(source)
            .with_context(|| format!("reading cluster config {source}"))?;
        (text, source.to_string())
    };
    Ok(Cluster::parse(&text, &name)?)
}

async fn create_cluster(args: CreateClusterArgs, ui: &Ui) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(source) => read_config(source)?,
        None => Cluster::default(),
    };
    let name = args.name.resolve(config.name.as_deref());
    validate_cluster_name(&name).map_err(anyhow::Error::msg)?;
    let wait = duration::parse(&args.wait).map_err(|e| anyhow::anyhow!("--wait: {e}"))?;
    let kubeconfig_path = kubeconfig::user_kubeconfig_path(args.kubeconfig.as_deref())?;
    let docker = docker::connect().await?;
    if !provider::list_nodes(&docker, Some(&name)).await?.is_empty() {
        bail!("node(s) already exist for a cluster with the name \"{name}\"");
    }
    for field in config.not_applicable_fields() {
        ui.info(&format!(
            "WARNING: {field} is accepted for compatibility with kind but has no effect in rind"
        ));
    }
    ui.info(&format!("Creating cluster \"{name}\" ..."));
    let image = image::ensure_node_image(&docker, ui, args.image.as_deref()).await?;
    let subnet = provider::ensure_network(&docker).await?;
    let used = provider::used_ips(&docker).await?;
    let api_port = match config.networking.api_server_port {
        0 => free_port(&config.networking.api_server_address)?,
        port => port,
    };
    let plan = plan::plan(&name, &config, &image, subnet, &used, api_port)?;
    let pki = pki::ClusterPki::generate()?;
    let ctx = actions::CreateContext {
        docker: &docker,
        ui,
        plan,
        pki,
        kubeconfig: kubeconfig_path,
        wait,
    };
    if let Err(err) = actions::create(&ctx).await {
        if args.retain {
            ui.info(&format!(
                "Keeping the nodes of \"{name}\" for debugging (--retain)"
            ));
        } else {
            let names: Vec<String> = ctx.plan.nodes.iter().map(|n| n.spec.name.clone()).collect();
            // Best effort: the creation error is what the user needs to see.
            let _ = provider::remove_containers(&docker, &names).await;
            let _ = provider::remove_network_if_unused(&docker).await;
            let _ = remove_kubeconfig_entry(&ctx.kubeconfig, &name).await;
        }
        return Err(err.context(format!("failed to create cluster \"{name}\"")));
    }
    let context = actions::context_name(&name);
    ui.info(&format!(
        "You can now use your cluster with:\n\nkubectl cluster-info --context {context}\n\nHave a nice day! 👋"
    ));
    Ok(())
}

/// A free TCP port on `address`, for publishing the API server at a port that stays the
/// same across restarts (Docker would pick a new random one each start).
fn free_port(address: &str) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((address, 0))
        .with_context(|| format!("finding a free port on {address} for the API server"))?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}

async fn remove_kubeconfig_entry(path: &Path, cluster: &str) -> anyhow::Result<()> {
    let path = path.to_path_buf();
    let context = actions::context_name(cluster);
    tokio::task::spawn_blocking(move || {
        if path.exists() {
            kubeconfig::update_user_kubeconfig(&path, |c| {
                c.remove(&context);
            })
        } else {
            Ok(())
        }
    })
    .await
    .context("updating the kubeconfig")??;
    Ok(())
}

async fn delete_one(
    docker: &bollard::Docker,
    ui: &Ui,
    name: &str,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<()> {
    ui.info(&format!("Deleting cluster \"{name}\" ..."));
    let nodes: Vec<String> = provider::list_nodes(docker, Some(name))
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let path = kubeconfig::user_kubeconfig_path(kubeconfig)?;
    remove_kubeconfig_entry(&path, name).await?;
    provider::remove_containers(docker, &nodes).await?;
    for node in &nodes {
        ui.detail(&format!("Deleted node {node}"));
    }
    Ok(())
}

pub async fn delete(cmd: DeleteCommand, ui: &Ui) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    match cmd {
        DeleteCommand::Cluster { name, kubeconfig } => {
            delete_one(&docker, ui, &name.resolve(None), kubeconfig.as_deref()).await?;
        }
        DeleteCommand::Clusters {
            names,
            all,
            kubeconfig,
        } => {
            let names = if all {
                provider::list_clusters(&docker).await?
            } else {
                names
            };
            if names.is_empty() {
                bail!("name which cluster(s) to delete, or pass --all");
            }
            for name in &names {
                delete_one(&docker, ui, name, kubeconfig.as_deref()).await?;
            }
            ui.info(&format!("Deleted clusters: {names:?}"));
        }
    }
    provider::remove_network_if_unused(&docker).await
}

async fn control_plane_of(docker: &bollard::Docker, cluster: &str) -> anyhow::Result<String> {
    let nodes = provider::list_nodes(docker, Some(cluster)).await?;
    if nodes.is_empty() {
        bail!(
            "could not locate any control plane nodes for cluster named '{cluster}'. Use the --name option to select a different cluster"
        );
    }
    nodes
        .into_iter()
        .find(|n| n.role == provider::role_label(crate::node::Role::ControlPlane))
        .map(|n| n.name)
        .with_context(|| format!("cluster '{cluster}' has no control-plane node"))
}

pub async fn get(cmd: GetCommand) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    match cmd {
        GetCommand::Clusters => {
            let clusters = provider::list_clusters(&docker).await?;
            if clusters.is_empty() {
                eprintln!("No rind clusters found.");
            }
            for cluster in clusters {
                println!("{cluster}");
            }
        }
        GetCommand::Nodes { name, all_clusters } => {
            let cluster = name.resolve(None);
            let nodes =
                provider::list_nodes(&docker, (!all_clusters).then_some(cluster.as_str())).await?;
            if nodes.is_empty() {
                eprintln!("No rind nodes found for cluster \"{cluster}\".");
            }
            for node in nodes {
                println!("{}", node.name);
            }
        }
        GetCommand::Kubeconfig { name, internal } => {
            let cluster = name.resolve(None);
            let cp = control_plane_of(&docker, &cluster).await?;
            let config = client::admin_kubeconfig(&docker, &cluster, &cp, internal).await?;
            print!("{}", config.to_yaml());
        }
    }
    Ok(())
}

pub async fn export(cmd: ExportCommand, ui: &Ui) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    match cmd {
        ExportCommand::Kubeconfig {
            name,
            kubeconfig,
            internal,
        } => {
            let cluster = name.resolve(None);
            let cp = control_plane_of(&docker, &cluster).await?;
            let config = client::admin_kubeconfig(&docker, &cluster, &cp, internal).await?;
            let path = kubeconfig::user_kubeconfig_path(kubeconfig.as_deref())?;
            tokio::task::spawn_blocking(move || {
                kubeconfig::update_user_kubeconfig(&path, |c| c.merge(&config))
            })
            .await
            .context("updating the kubeconfig")??;
            ui.info(&format!(
                "Set kubectl context to \"{}\"",
                actions::context_name(&cluster)
            ));
        }
        ExportCommand::Logs { name, dir } => {
            let cluster = name.resolve(None);
            let dir = match dir {
                Some(dir) => dir,
                None => tempfile::Builder::new()
                    .prefix(&format!("rind-logs-{cluster}-"))
                    .tempdir()
                    .context("creating a directory for the logs")?
                    .keep(),
            };
            logs::export(&docker, &cluster, &dir).await?;
            println!(
                "Exported logs for cluster \"{cluster}\" to:\n{}",
                dir.display()
            );
        }
    }
    Ok(())
}

pub async fn load(cmd: LoadCommand, ui: &Ui) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    match cmd {
        LoadCommand::DockerImage {
            images,
            name,
            nodes,
        } => load::docker_images(&docker, ui, &name.resolve(None), &images, &nodes).await,
        LoadCommand::ImageArchive {
            archive,
            name,
            nodes,
        } => load::image_archive(&docker, ui, &name.resolve(None), &archive, &nodes).await,
    }
}

pub async fn build(cmd: BuildCommand, ui: &Ui) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    let BuildCommand::NodeImage { source, image } = cmd;
    let source: Option<PathBuf> = source;
    let tag = image::build_node_image(&docker, ui, source.as_deref(), image.as_deref()).await?;
    ui.info(&format!("Image \"{tag}\" build completed."));
    Ok(())
}
