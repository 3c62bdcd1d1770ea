//! Building rind's images locally (nothing can be pulled): the base image from its
//! recipe, the pause and busybox images from the base's static busybox, and the node
//! image — the base plus this very binary.

pub mod archive;
pub mod base;
pub mod node;

use crate::ui::Ui;
use bollard::Docker;
use std::path::{Path, PathBuf};

/// The running binary. Opened through /proc rather than by its path, so it still
/// reads the right bytes after `cargo build` replaced the file on disk.
const SELF_EXE: &str = "/proc/self/exe";

/// Labels the node image with the SHA-256 of the rind binary inside it, so a rebuilt
/// binary with an unchanged version still gets a fresh image.
pub const LABEL_BINARY_SHA256: &str = "io.rind.binary-sha256";
/// Marks the short-lived containers used to build images (value `image-build`). The
/// node image is committed from such a container, so the commit clears the value
/// again: containers of the node image must not look temporary.
pub const LABEL_TEMPORARY: &str = "io.rind.temporary";
pub const TEMPORARY_VALUE: &str = "image-build";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{context}: {source}")]
    Docker {
        context: String,
        source: bollard::errors::Error,
    },
    #[error("{0} failed: {1}")]
    Tool(String, String),
    #[error(
        "cannot build the base image: mmdebstrap is not installed and the image \
         debian:bookworm-slim is not in the local Docker; install mmdebstrap \
         (`apt-get install mmdebstrap`) or pull debian:bookworm-slim"
    )]
    NoBaseBuilder,
    #[error(
        "image {0} is not in the local Docker and nothing can be pulled; build it \
         with `rind build node-image --image {0}`"
    )]
    Missing(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
}

/// Wraps a Docker error with what we were doing.
fn docker_err(context: &str) -> impl Fn(bollard::errors::Error) -> ImageError + '_ {
    move |source| ImageError::Docker {
        context: context.to_string(),
        source,
    }
}

/// Splits `repo:tag` (a registry port's colon is part of the repo); no tag → `latest`.
pub fn split_tag(image: &str) -> (&str, &str) {
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, "latest"),
    }
}

/// The node image this binary makes unless told otherwise.
pub fn default_node_image() -> String {
    format!("rind/node:v{}", env!("CARGO_PKG_VERSION"))
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The node image to run, built first when needed.
///
/// With `image` given (`--image`), it must already be local (no registry is
/// reachable). Otherwise the default `rind/node:v<version>` is reused when its binary
/// label matches this binary, and rebuilt (with the base image when missing) when it
/// is missing or holds another build of rind.
pub async fn ensure_node_image(
    docker: &Docker,
    ui: &Ui,
    image: Option<&str>,
) -> anyhow::Result<String> {
    let default = default_node_image();
    if let Some(image) = image.filter(|i| *i != default) {
        return match docker.inspect_image(image).await {
            Ok(_) => Ok(image.to_string()),
            Err(e) if is_not_found(&e) => Err(ImageError::Missing(image.to_string()).into()),
            Err(e) => Err(docker_err("inspecting the node image")(e).into()),
        };
    }
    let our_sha = node::sha256_file(Path::new(SELF_EXE)).await?;
    match docker.inspect_image(&default).await {
        Ok(found) => {
            let label = found
                .config
                .and_then(|c| c.labels)
                .and_then(|l| l.get(LABEL_BINARY_SHA256).cloned());
            if label.as_deref() == Some(our_sha.as_str()) {
                ui.detail(&format!("node image {default} matches this binary"));
                return Ok(default);
            }
            ui.detail(&format!(
                "node image {default} holds another build of rind; rebuilding it"
            ));
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(docker_err("inspecting the node image")(e).into()),
    }
    build_node_image(docker, ui, None, Some(&default)).await
}

/// Builds the node image (and the base image when missing) and returns its tag.
/// `source`: a rind source tree to `cargo build --release` the node's binary from,
/// instead of this binary. `tag`: default `rind/node:v<version>`.
pub async fn build_node_image(
    docker: &Docker,
    ui: &Ui,
    source: Option<&Path>,
    tag: Option<&str>,
) -> anyhow::Result<String> {
    let tag = tag.map_or_else(default_node_image, str::to_string);
    let binary = match source {
        Some(dir) => {
            ui.step(
                &format!("Building rind in {} (cargo build --release)", dir.display()),
                async { Ok(node::cargo_build(dir).await?) },
            )
            .await?
        }
        None => PathBuf::from(SELF_EXE),
    };
    let base = ensure_base_image(docker, ui).await?;
    let images = ui
        .step("Building the pause, busybox and DNS images", async {
            Ok(node::baked_images(docker, &base, &binary).await?)
        })
        .await?;
    let files_dir = source.map(|dir| dir.join("node-image").join("files"));
    let previous = docker
        .inspect_image(&tag)
        .await
        .ok()
        .and_then(|image| image.id);
    ui.step(&format!("Building node image {tag}"), async {
        Ok(node::assemble(docker, &base, &binary, &images, files_dir.as_deref(), &tag).await?)
    })
    .await?;
    // The image this tag pointed at before is now untagged; without removing it every
    // rebuild (each new rind binary) would leave ~400 MB behind. Docker refuses while a
    // node container still uses it, which is what we want: that cluster keeps working.
    if let Some(previous) = previous {
        let current = docker
            .inspect_image(&tag)
            .await
            .ok()
            .and_then(|image| image.id);
        if current.as_deref() != Some(previous.as_str()) {
            let no_options = None::<bollard::query_parameters::RemoveImageOptions>;
            let _ = docker.remove_image(&previous, no_options, None).await;
        }
    }
    Ok(tag)
}

/// The base image's tag, built first when missing.
pub async fn ensure_base_image(docker: &Docker, ui: &Ui) -> anyhow::Result<String> {
    let tag = base::tag();
    match docker.inspect_image(&tag).await {
        Ok(_) => return Ok(tag),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(docker_err("inspecting the base image")(e).into()),
    }
    let builder = base::choose_builder(docker).await?;
    let how = match builder {
        base::Builder::Mmdebstrap => "mmdebstrap",
        base::Builder::DockerBuild => "docker build",
    };
    ui.step(&format!("Building base image {tag} ({how})"), async {
        Ok(base::build(docker, builder, &tag).await?)
    })
    .await?;
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tags() {
        assert_eq!(split_tag("rind/node:v0.1.0"), ("rind/node", "v0.1.0"));
        assert_eq!(split_tag("rind/node"), ("rind/node", "latest"));
        assert_eq!(
            split_tag("localhost:5000/rind"),
            ("localhost:5000/rind", "latest")
        );
        assert_eq!(
            split_tag("localhost:5000/rind:x"),
            ("localhost:5000/rind", "x")
        );
    }
}
