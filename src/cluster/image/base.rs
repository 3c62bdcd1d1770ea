//! The base image: a Debian bookworm root filesystem with containerd, runc, CNI
//! plugins, etcd and the tools a node needs, built from the recipe in `node-image/`.

use super::{ImageError, docker_err};
use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, CreateImageOptions};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::process::Stdio;
use tokio::io::AsyncReadExt;

pub const PACKAGES: &str = include_str!("../../../node-image/base-packages.txt");
pub const DPKG_EXCLUDES: &str = include_str!("../../../node-image/dpkg-excludes.txt");
const REPO: &str = "rind/base";
const SUITE: &str = "bookworm";
/// Used instead of mmdebstrap when it is missing and this image is already local.
const FALLBACK_FROM: &str = "debian:bookworm-slim";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Non-comment, non-empty lines of a recipe file.
fn recipe_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// `rind/base:<first 12 hex of sha256 of the recipe files>`: a changed recipe is a new
/// tag, so the image is rebuilt exactly when its recipe changes.
pub fn tag() -> String {
    let mut hash = Sha256::new();
    hash.update(PACKAGES);
    hash.update(DPKG_EXCLUDES);
    let hex = hex::encode(hash.finalize());
    format!("{REPO}:{}", &hex[..12])
}

/// How the base image can be built on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    Mmdebstrap,
    DockerBuild,
}

/// mmdebstrap when installed, else `docker build` on a local `debian:bookworm-slim`.
pub async fn choose_builder(docker: &Docker) -> Result<Builder, ImageError> {
    if find_in_path("mmdebstrap") {
        return Ok(Builder::Mmdebstrap);
    }
    match docker.inspect_image(FALLBACK_FROM).await {
        Ok(_) => Ok(Builder::DockerBuild),
        Err(_) => Err(ImageError::NoBaseBuilder),
    }
}

fn find_in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// mmdebstrap's arguments; the rootfs tarball goes to stdout.
pub fn mmdebstrap_args() -> Vec<String> {
    let mut args = vec![
        "--variant=minbase".to_string(),
        format!("--include={}", recipe_lines(PACKAGES).join(",")),
    ];
    args.extend(
        recipe_lines(DPKG_EXCLUDES)
            .iter()
            .map(|p| format!("--dpkgopt=path-exclude={p}")),
    );
    args.push(SUITE.to_string());
    args.push("-".to_string());
    args
}

/// Builds the base image as `tag` with the given builder.
pub async fn build(docker: &Docker, builder: Builder, tag: &str) -> Result<(), ImageError> {
    match builder {
        Builder::Mmdebstrap => build_with_mmdebstrap(docker, tag).await,
        Builder::DockerBuild => build_with_docker(docker, tag).await,
    }
}

/// mmdebstrap's tarball streamed straight into `docker import` (no temporary file).
async fn build_with_mmdebstrap(docker: &Docker, tag: &str) -> Result<(), ImageError> {
    let mut child = tokio::process::Command::new("mmdebstrap")
        .args(mmdebstrap_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ImageError::Tool("mmdebstrap".into(), e.to_string()))?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ImageError::Tool(
            "mmdebstrap".into(),
            "no output pipes".into(),
        ));
    };
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        // Only used for the error message; a read error leaves it shorter.
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let (repo, version) = super::split_tag(tag);
    let options = CreateImageOptions {
        from_src: Some("-".to_string()),
        repo: Some(repo.to_string()),
        tag: Some(version.to_string()),
        // An imported rootfs has no config at all; give it the usual PATH.
        changes: vec![format!("ENV {PATH_ENV}")],
        ..Default::default()
    };
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(stdout));
    let docker = crate::docker::for_image_builds(docker);
    let mut progress = docker.create_image(Some(options), Some(body), None);
    let mut import_error = None;
    while let Some(item) = progress.next().await {
        if let Err(e) = item {
            import_error = Some(e);
            break;
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| ImageError::Tool("mmdebstrap".into(), e.to_string()))?;
    let log = stderr_task.await.unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(ImageError::Tool(
            "mmdebstrap".into(),
            format!("{status}:\n{}", tail.join("\n")),
        ));
    }
    match import_error {
        Some(e) => Err(docker_err("importing the base rootfs")(e)),
        None => Ok(()),
    }
}

/// The Dockerfile for hosts without mmdebstrap: the same packages and excludes on top
/// of Debian's own slim image.
pub fn dockerfile() -> String {
    let excludes: Vec<String> = recipe_lines(DPKG_EXCLUDES)
        .iter()
        .map(|p| format!("path-exclude={p}"))
        .collect();
    format!(
        "FROM {FALLBACK_FROM}\n\
         RUN printf '%s\\n' {excludes} > /etc/dpkg/dpkg.cfg.d/rind-excludes \\\n \
         && apt-get update \\\n \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {packages} \\\n \
         && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man /usr/share/locale\n\
         ENV {PATH_ENV}\n",
        excludes = excludes
            .iter()
            .map(|e| format!("'{e}'"))
            .collect::<Vec<_>>()
            .join(" "),
        packages = recipe_lines(PACKAGES).join(" "),
    )
}

async fn build_with_docker(docker: &Docker, tag: &str) -> Result<(), ImageError> {
    let mut context = tar::Builder::new(Vec::new());
    let text = dockerfile();
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    context
        .append_data(&mut header, "Dockerfile", text.as_bytes())
        .map_err(ImageError::Io)?;
    let context = context.into_inner().map_err(ImageError::Io)?;
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".to_string(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let docker = crate::docker::for_image_builds(docker);
    let mut progress = docker.build_image(
        options,
        None,
        Some(bollard::body_full(bytes::Bytes::from(context))),
    );
    while let Some(item) = progress.next().await {
        let info = item.map_err(docker_err("building the base image"))?;
        if let Some(detail) = info.error_detail {
            return Err(ImageError::Tool(
                "docker build".into(),
                detail.message.unwrap_or_default(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_is_recipe_hash() {
        let t = tag();
        assert!(t.starts_with("rind/base:"));
        assert_eq!(t.len(), "rind/base:".len() + 12);
    }

    #[test]
    fn mmdebstrap_args_cover_recipe() {
        let args = mmdebstrap_args();
        assert_eq!(args[0], "--variant=minbase");
        assert!(args[1].starts_with("--include=containerd,runc,"));
        assert!(args.contains(&"--dpkgopt=path-exclude=/usr/share/man/*".to_string()));
        assert_eq!(&args[args.len() - 2..], ["bookworm", "-"]);
    }

    #[test]
    fn dockerfile_installs_same_packages() {
        let file = dockerfile();
        assert!(file.starts_with("FROM debian:bookworm-slim\n"));
        assert!(file.contains("etcd-server etcd-client"));
        assert!(file.contains("'path-exclude=/usr/share/doc/*'"));
    }
}
