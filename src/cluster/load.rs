//! `load docker-image` and `load image-archive`: images go from the host into every
//! node's containerd (`k8s.io` namespace, where the CRI looks), since no node can pull.

use super::provider;
use super::ui::Ui;
use anyhow::{Context, bail};
use bollard::Docker;
use futures::TryStreamExt;
use std::io::Read;
use std::path::Path;

/// Where archives are staged inside a node: on the /var volume, not the tmpfs /tmp,
/// so a large image does not sit in the node's memory.
const STAGING_DIR: &str = "/var/lib/rind/load";

async fn target_nodes(
    docker: &Docker,
    cluster: &str,
    only: &[String],
) -> anyhow::Result<Vec<String>> {
    let nodes: Vec<String> = provider::list_internal_nodes(docker, cluster)
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
                "unknown node: \"{wanted}\" (cluster \"{cluster}\" has {})",
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
        // `import` reads an archive into memory whole anyway, so the export is kept
        // there rather than staged in a temporary file and read back.
        let mut contents = Vec::new();
        let mut stream = docker.export_image(image);
        while let Some(chunk) = stream
            .try_next()
            .await
            .with_context(|| format!("saving image {image}"))?
        {
            contents.extend_from_slice(&chunk);
        }
        for node in &missing {
            ui.info(&format!(
                "Image: \"{image}\" with ID \"{id}\" not yet present on node \"{node}\", loading..."
            ));
        }
        // Into every node at once, as kind loads them.
        futures::future::try_join_all(
            missing
                .into_iter()
                .map(|node| import(docker, node, contents.clone())),
        )
        .await?;
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
    let nodes = target_nodes(docker, cluster, only).await?;
    let contents = read_archive(archive).await?;
    futures::future::try_join_all(nodes.iter().map(|node| {
        ui.detail(&format!(
            "Loading image archive {} into node {node}",
            archive.display()
        ));
        import(docker, node, contents.clone())
    }))
    .await?;
    Ok(())
}

/// The tar inside an image archive: the file as it is, or gunzipped when it starts with
/// gzip's magic bytes (a `docker save | gzip` `.tar.gz`/`.tgz`, whatever its name), since
/// the node's `ctr images import` is handed a plain tar.
async fn read_archive(archive: &Path) -> anyhow::Result<Vec<u8>> {
    const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
    let contents = tokio::fs::read(archive)
        .await
        .with_context(|| format!("reading {}", archive.display()))?;
    if !contents.starts_with(&GZIP_MAGIC) {
        return Ok(contents);
    }
    let path = archive.to_path_buf();
    // Inflating hundreds of megabytes is CPU work; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let mut tar = Vec::new();
        // Multi-member, so archives from `pigz` or concatenated gzip streams work too.
        flate2::read::MultiGzDecoder::new(contents.as_slice())
            .read_to_end(&mut tar)
            .with_context(|| format!("decompressing {}", path.display()))?;
        Ok(tar)
    })
    .await
    .context("decompressing the image archive")?
}

/// Whether the node's runtime already holds `image` with Docker's image ID `id`.
async fn holds_image(docker: &Docker, node: &str, image: &str, id: &str) -> anyhow::Result<bool> {
    let output = provider::exec(docker, node, &["rind", "node", "image-id", image]).await?;
    Ok(output.exit_code == 0 && !id.is_empty() && output.stdout.trim() == id)
}

/// Copies an image archive (a tar) into the node and imports it with `ctr`.
async fn import(docker: &Docker, node: &str, contents: Vec<u8>) -> anyhow::Result<()> {
    let staged = format!("{STAGING_DIR}/{}.tar", uuid::Uuid::new_v4());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn a_gzipped_archive_is_read_as_the_plain_tar() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let manifest = br#"[{"Config":"config.json","RepoTags":["example:1"],"Layers":[]}]"#;
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "manifest.json", &manifest[..])
            .unwrap();
        let plain = builder.into_inner().unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&plain).unwrap();
        let gzipped = gzip.finish().unwrap();

        let write = |name: &str, contents: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            path
        };
        let tar = write("image.tar", &plain);
        let tgz = write("image.tar.gz", &gzipped);
        // Recognised by its first bytes, not its name.
        let unnamed = write("image.archive", &gzipped);
        assert_eq!(read_archive(&tar).await.unwrap(), plain);
        assert_eq!(read_archive(&tgz).await.unwrap(), plain);
        assert_eq!(read_archive(&unnamed).await.unwrap(), plain);

        let broken = write("broken.tgz", &gzipped[..gzipped.len() / 2]);
        let err = format!("{:#}", read_archive(&broken).await.unwrap_err());
        assert!(err.starts_with("decompressing "), "{err}");
    }
}
