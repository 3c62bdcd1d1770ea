//! What the host can do to clusters, as kind's `pkg/cluster` offers it: each operation
//! takes its own options (the CLI maps its flags to them) and reports progress on a
//! `Ui`; printing results is the caller's.

use super::config::{Cluster, validate_cluster_name};
use super::ui::Ui;
use super::{actions, client, docker, image, kubeconfig, load, logs, pki, plan, provider};
use anyhow::{Context, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cluster name when neither a flag nor the config file gives one (kind's "kind").
pub const DEFAULT_CLUSTER_NAME: &str = "rind";

/// The name given (by flag or environment), else the config file's, else the default.
pub fn resolve_name(given: Option<&str>, from_config: Option<&str>) -> String {
    given
        .or(from_config)
        .unwrap_or(DEFAULT_CLUSTER_NAME)
        .to_string()
}

/// How to create a cluster (`rind create cluster`).
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// The cluster name; else the config file's, else the default.
    pub name: Option<String>,
    /// A config file path, or `-` for stdin.
    pub config: Option<String>,
    /// The node image, instead of the one built from this binary.
    pub image: Option<String>,
    /// How long to wait for the control plane to be Ready (zero: do not wait).
    pub wait: Duration,
    /// Keep the nodes when creation fails.
    pub retain: bool,
    /// The kubeconfig to merge the cluster's context into, instead of `$KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
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

pub async fn create_cluster(args: &CreateOptions, ui: &Ui) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(source) => read_config(source)?,
        None => Cluster::default(),
    };
    let name = resolve_name(args.name.as_deref(), config.name.as_deref());
    validate_cluster_name(&name).map_err(anyhow::Error::msg)?;
    let kubeconfig_path = kubeconfig::user_kubeconfig_path(args.kubeconfig.as_deref())?;
    let docker = docker::connect().await?;
    if !provider::list_nodes(&docker, Some(&name)).await?.is_empty() {
        bail!("node(s) already exist for a cluster with the name \"{name}\"");
    }
    ui.info(&format!("Creating cluster \"{name}\" ..."));
    let image = image::ensure_node_image(&docker, ui, args.image.as_deref()).await?;
    let dual = config.networking.ip_family == "dual";
    let network = provider::ensure_network(&docker, dual).await?;
    let used = provider::used_ips(&docker, &network.name).await?;
    let api_port = match config.networking.api_server_port {
        0 => free_port(&config.networking.api_server_address)?,
        port => port,
    };
    let plan = plan::plan(&name, &config, &image, network.clone(), &used, api_port)?;
    let mut pki = pki::ClusterPki::generate()?;
    pki.extra_api_sans = plan.cert_sans.clone();
    let ctx = actions::CreateContext {
        docker: &docker,
        ui,
        plan,
        pki,
        kubeconfig: kubeconfig_path,
        wait: args.wait,
        admin: Default::default(),
    };
    if let Err(err) = actions::create(&ctx).await {
        if args.retain {
            ui.info(&format!(
                "Keeping the nodes of \"{name}\" for debugging (--retain)"
            ));
        } else {
            let mut names: Vec<String> = ctx
                .plan
                .nodes
                .iter()
                .map(|n| n.spec.name.clone())
                .chain(ctx.plan.load_balancer.iter().map(|lb| lb.name.clone()))
                .collect();
            names.push(provider::service_lb_name(&name));
            // Best effort: the creation error is what the user needs to see.
            let _ = provider::remove_containers(&docker, &names).await;
            let _ = provider::remove_network_if_unused(&docker, &network.name).await;
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

/// Deletes a cluster: its kubeconfig entries, its nodes, then its network (and rind's
/// default ones) once no cluster uses it. A cluster that does not exist is not an error
/// (kind's `rm -f`).
pub async fn delete_cluster(name: &str, kubeconfig: Option<&Path>, ui: &Ui) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    let containers = provider::list_nodes(&docker, Some(name)).await?;
    let mut networks: std::collections::BTreeSet<String> = containers
        .iter()
        .filter_map(|n| n.network.clone())
        .collect();
    networks.extend([provider::network_name(false), provider::network_name(true)]);
    let nodes: Vec<String> = containers.into_iter().map(|n| n.name).collect();
    let path = kubeconfig::user_kubeconfig_path(kubeconfig)?;
    remove_kubeconfig_entry(&path, name).await?;
    provider::remove_containers(&docker, &nodes).await?;
    let service_lb = provider::service_lb_containers(&docker, name).await?;
    provider::remove_containers(&docker, &service_lb).await?;
    for node in &nodes {
        ui.detail(&format!("Deleted node {node}"));
    }
    for network in &networks {
        provider::remove_network_if_unused(&docker, network).await?;
    }
    Ok(())
}

/// Every cluster that has at least one node.
pub async fn list_clusters() -> anyhow::Result<Vec<String>> {
    provider::list_clusters(&docker::connect().await?).await
}

/// The node names of one cluster, or of every cluster when `cluster` is None.
pub async fn list_nodes(cluster: Option<&str>) -> anyhow::Result<Vec<String>> {
    let docker = docker::connect().await?;
    Ok(provider::list_nodes(&docker, cluster)
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect())
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
        .find(|n| n.role == provider::role_label(rind_runtime::Role::ControlPlane))
        .map(|n| n.name)
        .with_context(|| format!("cluster '{cluster}' has no control-plane node"))
}

/// The cluster's admin kubeconfig as YAML: for the host (`127.0.0.1` and the published
/// port), or with `internal` for containers on the cluster's Docker network.
pub async fn admin_kubeconfig(cluster: &str, internal: bool) -> anyhow::Result<String> {
    let docker = docker::connect().await?;
    let cp = control_plane_of(&docker, cluster).await?;
    let config = client::admin_kubeconfig(&docker, cluster, &cp, internal).await?;
    Ok(config.to_yaml())
}

/// Merges the cluster's admin context into the user's kubeconfig and makes it current.
pub async fn export_kubeconfig(
    cluster: &str,
    kubeconfig: Option<&Path>,
    internal: bool,
    ui: &Ui,
) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    let cp = control_plane_of(&docker, cluster).await?;
    let config = client::admin_kubeconfig(&docker, cluster, &cp, internal).await?;
    let path = kubeconfig::user_kubeconfig_path(kubeconfig)?;
    tokio::task::spawn_blocking(move || {
        kubeconfig::update_user_kubeconfig(&path, |c| c.merge(&config))
    })
    .await
    .context("updating the kubeconfig")??;
    ui.info(&format!(
        "Set kubectl context to \"{}\"",
        actions::context_name(cluster)
    ));
    Ok(())
}

/// Where `export logs` writes: a folder, or a gzipped tar when the path ends in
/// `.tar.gz` or `.tgz`.
#[derive(Debug)]
pub enum LogsTarget {
    Dir(PathBuf),
    Archive(PathBuf),
}

impl LogsTarget {
    /// The given path (an archive by its suffix), else a new temporary folder.
    pub fn new(path: Option<PathBuf>, cluster: &str) -> anyhow::Result<Self> {
        Ok(match path {
            Some(path) if logs::is_archive_path(&path) => LogsTarget::Archive(path),
            Some(path) => LogsTarget::Dir(path),
            None => LogsTarget::Dir(
                tempfile::Builder::new()
                    .prefix(&format!("rind-logs-{cluster}-"))
                    .tempdir()
                    .context("creating a directory for the logs")?
                    .keep(),
            ),
        })
    }

    pub fn path(&self) -> &Path {
        match self {
            LogsTarget::Dir(p) | LogsTarget::Archive(p) => p,
        }
    }
}

/// Writes the cluster's logs (see `logs`) to `target`.
pub async fn export_logs(cluster: &str, target: &LogsTarget, ui: &Ui) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    match target {
        LogsTarget::Dir(dir) => logs::export(&docker, ui, cluster, dir).await,
        LogsTarget::Archive(path) => {
            // Collected in a folder beside the archive (same filesystem, no /tmp
            // tmpfs filling with a large cluster's logs), then packed and removed.
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            std::fs::create_dir_all(&parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            let staging = tempfile::Builder::new()
                .prefix(".rind-logs-")
                .tempdir_in(&parent)
                .with_context(|| format!("creating a staging folder in {}", parent.display()))?;
            let root = staging.path().join(logs::archive_root(path));
            logs::export(&docker, ui, cluster, &root).await?;
            let path = path.clone();
            tokio::task::spawn_blocking(move || logs::pack(&root, &path))
                .await
                .context("packing the logs")??;
            Ok(())
        }
    }
}

/// Loads images from the host's Docker into the cluster's nodes (all when `nodes` is
/// empty), skipping nodes that already hold the same image ID.
pub async fn load_docker_images(
    cluster: &str,
    images: &[String],
    nodes: &[String],
    ui: &Ui,
) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    load::docker_images(&docker, ui, cluster, images, nodes).await
}

/// Loads an image archive (`docker save` output, plain or gzipped) into the cluster's nodes.
pub async fn load_image_archive(
    cluster: &str,
    archive: &Path,
    nodes: &[String],
    ui: &Ui,
) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    load::image_archive(&docker, ui, cluster, archive, nodes).await
}

/// Builds the node image (and the base image when missing) and returns its tag.
pub async fn build_node_image(
    source: Option<&Path>,
    image: Option<&str>,
    ui: &Ui,
) -> anyhow::Result<String> {
    let docker = docker::connect().await?;
    image::build_node_image(&docker, ui, source, image).await
}
