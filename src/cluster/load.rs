//! `load docker-image` and `load image-archive`: images go from the host into every
//! node's containerd (`k8s.io` namespace, where the CRI looks), since no node can pull.

use super::provider;
use super::ui::Ui;
use anyhow::{Context, bail};
use bollard::Docker;
use futures::TryStreamExt;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// Where archives are staged inside a node: on the /var volume, not the tmpfs /tmp,
/// so a large image does not sit in the node's memory.
const STAGING_DIR: &str = "/var/lib/rind/load";

async fn target_nodes(
    docker: &Docker,
    cluster: &str,
    only: &[String],
) -> anyhow::Result<Vec<String>> {
    let nodes: Vec<String> = provider::list_nodes(docker, Some(cluster))
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect();
    if nodes.is_empty() {
        bail!("no nodes found for cluster \"{cluster}\"");
    }
    for wanted in only {
        if !nodes.contains(wanted) {
            bail!(
                "unknown node \"{wanted}\" in cluster \"{cluster}\" (nodes: {})",
                nodes.join(", ")
            );
        }
    }
    Ok(if only.is_empty() {
        nodes
    } else {
        only.to_vec()
    })
}

pub async fn docker_images(
    docker: &Docker,
    ui: &Ui,
    cluster: &str,
    images: &[String],
    only: &[String],
) -> anyhow::Result<()> {
    let nodes = target_nodes(docker, cluster, only).await?;
    for image in images {
        let inspect = docker
            .inspect_image(image)
            .await
            .with_context(|| format!("image: \"{image}\" not present locally"))?;
        let id = inspect.id.unwrap_or_default();
        let mut missing = Vec::new();
        for node in &nodes {
            if !holds_image(docker, node, image, &id).await? {
                missing.push(node);
            }
        }
        if missing.is_empty() {
            ui.info(&format!(
                "Image: \"{image}\" with ID \"{id}\" found to be already present on all nodes."
            ));
            continue;
        }
        let archive =
            tempfile::NamedTempFile::new().context("creating a temporary file for the image")?;
        let mut file = tokio::fs::File::create(archive.path())
            .await
            .context("opening the temporary file")?;
        let mut stream = docker.export_image(image);
        while let Some(chunk) = stream
            .try_next()
            .await
            .with_context(|| format!("saving image {image}"))?
        {
            file.write_all(&chunk)
                .await
                .context("writing the image archive")?;
        }
        file.flush().await.context("writing the image archive")?;
        for node in missing {
            ui.info(&format!(
                "Image: \"{image}\" with ID \"{id}\" not yet present on node \"{node}\", loading..."
            ));
            import(docker, node, archive.path()).await?;
        }
    }
    Ok(())
}

pub async fn image_archive(
    docker: &Docker,
    ui: &Ui,
    cluster: &str,
    archive: &Path,
    only: &[String],
) -> anyhow::Result<()> {
    if !archive.is_file() {
        bail!(
            "image archive {} does not exist or is not a file",
            archive.display()
        );
    }
    for node in target_nodes(docker, cluster, only).await? {
        ui.detail(&format!("loading {} into {node}", archive.display()));
        import(docker, &node, archive).await?;
    }
    Ok(())
}

/// Whether the node's runtime already holds `image` with Docker's image ID `id`.
async fn holds_image(docker: &Docker, node: &str, image: &str, id: &str) -> anyhow::Result<bool> {
    let output = provider::exec(docker, node, &["rind", "node", "image-id", image]).await?;
    Ok(output.exit_code == 0 && !id.is_empty() && output.stdout.trim() == id)
}

/// Copies an image archive into the node and imports it with `ctr`.
async fn import(docker: &Docker, node: &str, archive: &Path) -> anyhow::Result<()> {
    let staged = format!("{STAGING_DIR}/{}.tar", uuid::Uuid::new_v4());
    let contents = tokio::fs::read(archive)
        .await
        .with_context(|| format!("reading {}", archive.display()))?;
    provider::copy_files(
        docker,
        node,
        &[super::pki::NodeFile {
            path: staged.clone(),
            contents,
            mode: 0o600,
        }],
    )
    .await?;
    let result = provider::exec(
        docker,
        node,
        &[
            "ctr",
            "--namespace",
            "k8s.io",
            "images",
            "import",
            "--all-platforms",
            "--no-unpack=false",
            &staged,
        ],
    )
    .await;
    let cleanup = provider::exec(docker, node, &["rm", "-f", &staged]).await;
    let output = result?;
    if output.exit_code != 0 {
        bail!(
            "importing the image into {node} failed: {}{}",
            output.stdout,
            output.stderr
        );
    }
    cleanup?;
    Ok(())
}
