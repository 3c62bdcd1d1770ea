//! Maps each parsed command to the host library's operation with its options, and
//! prints what the operation returns (kind's `cmd/` over `pkg/cluster`). Program output
//! (names, kubeconfigs, paths) goes to stdout; everything else to stderr through the
//! `Ui`, which `-q` silences.

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
    let name = super::ClusterName { name: args.name };
    let options = CreateOptions {
        // kind's order: the flag, else the environment, else the config file's name.
        name: name.given(),
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
            let name = name.resolve();
            ui.info(&format!("Deleting cluster \"{name}\" ..."));
            cluster::delete_cluster(&name, kubeconfig.as_deref(), ui)
                .await
                .map_err(|e| e.context(format!("failed to delete cluster \"{name}\"")))
        }
        DeleteCommand::Node(args) => super::lifecycle::delete_node(args, ui).await,
        DeleteCommand::Clusters {
            names,
            all,
            kubeconfig,
        } => {
            let names = if all {
                cluster::list_clusters()
                    .await
                    .map_err(|e| e.context("failed listing clusters for delete"))?
            } else if names.is_empty() {
                bail!("no cluster names provided");
            } else {
                dedup(names)
            };
            // As kind: every cluster is tried even when one fails, and the ones deleted
            // are listed. Unlike kind (which exits 0 regardless), a failure is the exit
            // status too, so a script does not take a half-done delete for a clean one.
            let mut deleted = Vec::new();
            let mut failed = Vec::new();
            for name in names {
                match cluster::delete_cluster(&name, kubeconfig.as_deref(), ui).await {
                    Ok(()) => deleted.push(name),
                    Err(err) => {
                        ui.info(&format!("failed to delete cluster \"{name}\": {err:#}"));
                        failed.push(name);
                    }
                }
            }
            ui.info(&format!("Deleted clusters: {}", go_quoted_list(&deleted)));
            if !failed.is_empty() {
                bail!("failed to delete clusters: {}", go_quoted_list(&failed));
            }
            Ok(())
        }
    }
}

/// `names` without repeats, first occurrence kept.
fn dedup(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

/// A list as Go's `%q` prints a `[]string` (kind's messages): `["a" "b"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

pub async fn get(cmd: GetCommand, ui: &Ui) -> anyhow::Result<()> {
    match cmd {
        GetCommand::Clusters => {
            let clusters = cluster::list_clusters().await?;
            if clusters.is_empty() {
                ui.info("No rind clusters found.");
            }
            for cluster in clusters {
                println!("{cluster}");
            }
        }
        GetCommand::Nodes { name, all_clusters } => {
            if all_clusters {
                let nodes = cluster::list_nodes(None).await?;
                if nodes.is_empty() {
                    ui.info("No rind nodes for any cluster.");
                }
                for node in nodes {
                    println!("{node}");
                }
            } else {
                let cluster = name.resolve();
                let nodes = cluster::list_nodes(Some(&cluster)).await?;
                if nodes.is_empty() {
                    ui.info(&format!("No rind nodes found for cluster \"{cluster}\"."));
                }
                for node in nodes {
                    println!("{node}");
                }
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
            // Checked first, so an unknown cluster leaves no empty directory behind.
            if cluster::list_nodes(Some(&cluster)).await?.is_empty() {
                bail!("unknown cluster \"{cluster}\"");
            }
            let target = cluster::LogsTarget::new(dir, &cluster)?;
            // As kind: the path is the command's output (stdout, for scripts to capture);
            // the sentence before it is information (stderr).
            ui.info(&format!("Exporting logs for cluster \"{cluster}\" to:"));
            println!("{}", target.path().display());
            cluster::export_logs(&cluster, &target, ui).await
        }
    }
}

pub async fn load(cmd: LoadCommand, ui: &Ui) -> anyhow::Result<()> {
    match cmd {
        LoadCommand::DockerImage {
            images,
            name,
            nodes,
        } => cluster::load_docker_images(&name.resolve(), &dedup(images), &nodes, ui).await,
        LoadCommand::ImageArchive {
            archives,
            name,
            nodes,
        } => {
            if archives.len() > 1 {
                ui.info("WARNING: It is suggested that you save multiple images into a common archive and load that instead of loading multiple archives for better performance");
            }
            // Every archive is checked before any is loaded, as kind does.
            for archive in &archives {
                if !archive.is_file() {
                    bail!(
                        "image archive {} does not exist or is not a file",
                        archive.display()
                    );
                }
            }
            let cluster = name.resolve();
            for archive in &archives {
                cluster::load_image_archive(&cluster, archive, &nodes, ui).await?;
            }
            Ok(())
        }
    }
}

pub async fn build(cmd: BuildCommand, ui: &Ui) -> anyhow::Result<()> {
    let BuildCommand::NodeImage { source, image } = cmd;
    let tag = cluster::build_node_image(source.as_deref(), image.as_deref(), ui).await?;
    ui.info(&format!("Image \"{tag}\" build completed."));
    Ok(())
}
