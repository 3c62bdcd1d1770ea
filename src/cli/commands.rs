//! Maps each parsed command to the host library's operation with its options, and
//! prints what the operation returns (kind's `cmd/` over `pkg/cluster`).

use super::build::BuildCommand;
use super::create::CreateCommand;
use super::delete::DeleteCommand;
use super::export::ExportCommand;
use super::get::GetCommand;
use super::load::LoadCommand;
use anyhow::bail;
use rind_cluster::operations::{self as cluster, CreateOptions};
use rind_cluster::ui::Ui;

pub async fn create(cmd: CreateCommand, ui: &Ui) -> anyhow::Result<()> {
    let CreateCommand::Cluster(args) = cmd;
    let wait =
        rind_cluster::duration::parse(&args.wait).map_err(|e| anyhow::anyhow!("--wait: {e}"))?;
    let options = CreateOptions {
        name: args.name.name,
        config: args.config,
        image: args.image,
        wait,
        retain: args.retain,
        kubeconfig: args.kubeconfig,
    };
    cluster::create_cluster(&options, ui).await
}

pub async fn delete(cmd: DeleteCommand, ui: &Ui) -> anyhow::Result<()> {
    match cmd {
        DeleteCommand::Cluster { name, kubeconfig } => {
            cluster::delete_clusters(&[name.resolve()], kubeconfig.as_deref(), ui).await
        }
        DeleteCommand::Node(args) => super::lifecycle::delete_node(args, ui).await,
        DeleteCommand::Clusters {
            names,
            all,
            kubeconfig,
        } => {
            let names = if all {
                cluster::list_clusters().await?
            } else {
                names
            };
            if names.is_empty() {
                bail!("name which cluster(s) to delete, or pass --all");
            }
            cluster::delete_clusters(&names, kubeconfig.as_deref(), ui).await?;
            ui.info(&format!("Deleted clusters: {names:?}"));
            Ok(())
        }
    }
}

pub async fn get(cmd: GetCommand) -> anyhow::Result<()> {
    match cmd {
        GetCommand::Clusters => {
            let clusters = cluster::list_clusters().await?;
            if clusters.is_empty() {
                eprintln!("No rind clusters found.");
            }
            for cluster in clusters {
                println!("{cluster}");
            }
        }
        GetCommand::Nodes { name, all_clusters } => {
            let cluster = name.resolve();
            let nodes = cluster::list_nodes((!all_clusters).then_some(cluster.as_str())).await?;
            if nodes.is_empty() {
                eprintln!("No rind nodes found for cluster \"{cluster}\".");
            }
            for node in nodes {
                println!("{node}");
            }
        }
        GetCommand::Kubeconfig { name, internal } => {
            print!(
                "{}",
                cluster::admin_kubeconfig(&name.resolve(), internal).await?
            );
        }
    }
    Ok(())
}

pub async fn export(cmd: ExportCommand, ui: &Ui) -> anyhow::Result<()> {
    match cmd {
        ExportCommand::Kubeconfig {
            name,
            kubeconfig,
            internal,
        } => cluster::export_kubeconfig(&name.resolve(), kubeconfig.as_deref(), internal, ui).await,
        ExportCommand::Logs { name, dir } => {
            let cluster = name.resolve();
            let dir = cluster::export_logs(&cluster, dir).await?;
            println!(
                "Exported logs for cluster \"{cluster}\" to:\n{}",
                dir.display()
            );
            Ok(())
        }
    }
}

pub async fn load(cmd: LoadCommand, ui: &Ui) -> anyhow::Result<()> {
    match cmd {
        LoadCommand::DockerImage {
            images,
            name,
            nodes,
        } => cluster::load_docker_images(&name.resolve(), &images, &nodes, ui).await,
        LoadCommand::ImageArchive {
            archive,
            name,
            nodes,
        } => cluster::load_image_archive(&name.resolve(), &archive, &nodes, ui).await,
    }
}

pub async fn build(cmd: BuildCommand, ui: &Ui) -> anyhow::Result<()> {
    let BuildCommand::NodeImage { source, image } = cmd;
    let tag = cluster::build_node_image(source.as_deref(), image.as_deref(), ui).await?;
    ui.info(&format!("Image \"{tag}\" build completed."));
    Ok(())
}
