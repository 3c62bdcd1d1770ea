//! `export logs`: per node, every component's log, containerd's, the pods' logs and the
//! node container's `docker inspect`, into one directory.

use super::provider;
use anyhow::Context;
use bollard::Docker;
use bollard::query_parameters::{DownloadFromContainerOptionsBuilder, InspectContainerOptions};
use futures::TryStreamExt;
use std::path::Path;

/// The directories inside a node worth taking: our components' logs and the pods'.
const LOG_DIRS: [&str; 2] = [
    rind_runtime::paths::LOG_DIR,
    rind_runtime::paths::POD_LOG_DIR,
];

pub async fn export(docker: &Docker, cluster: &str, dir: &Path) -> anyhow::Result<()> {
    let nodes = provider::list_nodes(docker, Some(cluster)).await?;
    if nodes.is_empty() {
        anyhow::bail!("no nodes found for cluster \"{cluster}\"");
    }
    for node in nodes {
        let node_dir = dir.join(&node.name);
        std::fs::create_dir_all(&node_dir)
            .with_context(|| format!("creating {}", node_dir.display()))?;
        let inspect = docker
            .inspect_container(&node.name, None::<InspectContainerOptions>)
            .await
            .with_context(|| format!("inspecting {}", node.name))?;
        let json = serde_json::to_vec_pretty(&inspect).context("encoding docker inspect")?;
        std::fs::write(node_dir.join("inspect.json"), json).context("writing inspect.json")?;
        for source in LOG_DIRS {
            let options = DownloadFromContainerOptionsBuilder::default()
                .path(source)
                .build();
            let chunks: Result<Vec<bytes::Bytes>, _> = docker
                .download_from_container(&node.name, Some(options))
                .try_collect()
                .await;
            // A directory that does not exist yet (no pod ever ran) is not an error.
            let Ok(chunks) = chunks else { continue };
            let data = chunks.concat();
            tar::Archive::new(data.as_slice())
                .unpack(&node_dir)
                .with_context(|| format!("unpacking {source} of {}", node.name))?;
        }
    }
    Ok(())
}
