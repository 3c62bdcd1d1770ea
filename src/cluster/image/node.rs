//! Assembling the node image: base image + rind binary + image archives + files,
//! committed from a short-lived container.

use super::archive::{self, ImageSpec};
use super::{ImageError, LABEL_BINARY_SHA256, LABEL_TEMPORARY, TEMPORARY_VALUE, docker_err};
use bollard::Docker;
use bollard::models::{ContainerConfig, ContainerCreateBody};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, DownloadFromContainerOptions,
    RemoveContainerOptions, UploadToContainerOptions,
};
use futures::TryStreamExt;
use rind_runtime::paths::{self, SYSTEM_ARCHIVE};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Where the binary lives in the node; the entrypoint runs it as PID 1.
pub const RIND_IN_NODE: &str = "usr/local/bin/rind";
/// Debian's busybox-static in the base image (bookworm has merged /usr).
const BUSYBOX_IN_BASE: &str = "/usr/bin/busybox";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `node-image/files`, compiled in, for building without a source tree.
const EMBEDDED_FILES: &[(&str, &[u8])] = &[(
    "etc/profile.d/rind.sh",
    include_bytes!("../../../node-image/files/etc/profile.d/rind.sh"),
)];

/// The images baked into the node image: the pause, busybox and cluster DNS (`rind
/// dns`) images, as one archive.
pub struct BakedImages {
    pub archive: Vec<u8>,
}

/// SHA-256 of a file, hex; read off the async threads (the binary is large).
pub async fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hash = Sha256::new();
        std::io::copy(&mut file, &mut hash)?;
        Ok(hex::encode(hash.finalize()))
    })
    .await
    .map_err(|e| ImageError::Io(std::io::Error::other(e)))?
}

/// `cargo build --release` in a rind source tree; returns the built binary.
pub async fn cargo_build(dir: &Path) -> Result<PathBuf, ImageError> {
    let target = dir.join("target");
    let output = tokio::process::Command::new("cargo")
        .args(["build", "--release", "--bin", "rind", "--target-dir"])
        .arg(&target)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| ImageError::Tool("cargo build".into(), e.to_string()))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(ImageError::Tool("cargo build".into(), tail.join("\n")));
    }
    Ok(target.join("release").join("rind"))
}

/// Runs `work` with a created (never started) container of `image`, removing the
/// container afterwards whether `work` succeeded or not.
async fn with_temp_container<T, F, Fut>(
    docker: &Docker,
    image: &str,
    work: F,
) -> Result<T, ImageError>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<T, ImageError>>,
{
    let name = format!(
        "rind-build-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(image.to_string()),
                // Never run; Docker only insists that a container has a command.
                cmd: Some(vec!["/bin/true".to_string()]),
                labels: Some(HashMap::from([(
                    LABEL_TEMPORARY.to_string(),
                    TEMPORARY_VALUE.to_string(),
                )])),
                ..Default::default()
            },
        )
        .await
        .map_err(docker_err("creating a build container"))?;
    let result = work(created.id.clone()).await;
    let removed = docker
        .remove_container(
            &created.id,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await;
    match (result, removed) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(e)) => Err(docker_err("removing the build container")(e)),
        (Err(e), _) => Err(e),
    }
}

/// The pause and busybox images, from the base image's static busybox, and the DNS
/// image from `binary`.
pub async fn baked_images(
    docker: &Docker,
    base: &str,
    binary: &Path,
) -> Result<BakedImages, ImageError> {
    let dns = dns_image(docker, base, binary).await?;
    let busybox = with_temp_container(docker, base, |id| async move {
        let tar_bytes: Vec<bytes::Bytes> = docker
            .download_from_container(
                &id,
                Some(DownloadFromContainerOptions {
                    path: BUSYBOX_IN_BASE.to_string(),
                }),
            )
            .try_collect()
            .await
            .map_err(docker_err("copying busybox out of the base image"))?;
        let tar_bytes = tar_bytes.concat();
        first_file_in_tar(&tar_bytes)
    })
    .await?;
    let applets = list_applets(&busybox).await?;
    let layer = archive::busybox_layer(&busybox, &applets)?;
    let pause = ImageSpec {
        repo_tag: strip_docker_io(paths::PAUSE_IMAGE),
        // A sandbox only has to hold its namespaces open.
        entrypoint: Some(vec!["/bin/sleep", "infinity"]),
        cmd: None,
        created_by: "rind: static busybox",
    };
    let busybox_image = ImageSpec {
        repo_tag: strip_docker_io(paths::BUSYBOX_IMAGE),
        entrypoint: None,
        cmd: Some(vec!["sh"]),
        created_by: "rind: static busybox",
    };
    let (dns, dns_layer) = dns;
    Ok(BakedImages {
        archive: archive::docker_archive(&[
            (pause, &layer[..]),
            (dns, &dns_layer[..]),
            (busybox_image, &layer[..]),
        ])?,
    })
}

/// The cluster DNS image: the shared libraries the rind binary links (as `ldd` names
/// them), copied from the base image that runs the same binary in the node, with
/// `rind dns` as its entrypoint. The binary itself is not in it: the DNS pods mount the
/// node's own (read-only `hostPath`, see `install_dns`). With the 80 MB binary inside,
/// every node spent seconds of disk and CPU importing this image at each boot, while
/// the cluster DNS waited for it; now it is a few megabytes.
async fn dns_image(
    docker: &Docker,
    base: &str,
    binary: &Path,
) -> Result<(ImageSpec<'static>, Vec<u8>), ImageError> {
    let libraries = linked_libraries(binary).await?;
    let files = with_temp_container(docker, base, |id| async move {
        let mut files = Vec::new();
        for path in libraries {
            let data = file_from_container(docker, &id, &path).await?;
            files.push((path.trim_start_matches('/').to_string(), data));
        }
        Ok(files)
    })
    .await?;
    let program_dir = Path::new(RIND_IN_NODE)
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let layer = archive::libraries_layer(&program_dir, &files)?;
    Ok((
        ImageSpec {
            repo_tag: strip_docker_io(paths::DNS_IMAGE),
            entrypoint: Some(vec!["/usr/local/bin/rind", "dns"]),
            cmd: None,
            created_by: "rind: the shared libraries of the rind binary",
        },
        layer,
    ))
}

/// The absolute paths of the shared libraries (and the loader) `binary` needs.
async fn linked_libraries(binary: &Path) -> Result<Vec<String>, ImageError> {
    // `/proc/self/exe` would name ldd's own program once ldd runs: ask about the file.
    let binary = std::fs::canonicalize(binary)?;
    let output = tokio::process::Command::new("ldd")
        .arg(&binary)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            ImageError::Tool(
                "ldd".into(),
                format!("{e} (ldd comes with the C library's tools, e.g. Debian's libc-bin)"),
            )
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // A static binary needs nothing more.
        return Ok(Vec::new());
    }
    let libraries = parse_ldd(&text);
    if libraries.is_empty() {
        return Err(ImageError::Tool(
            "ldd".into(),
            format!(
                "{} is dynamic but ldd listed no libraries: {text}",
                binary.display()
            ),
        ));
    }
    Ok(libraries)
}

fn parse_ldd(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// The content of a file in a container, following symlinks (bookworm's loader and
/// libraries are reached through some).
async fn file_from_container(docker: &Docker, id: &str, path: &str) -> Result<Vec<u8>, ImageError> {
    let mut current = path.to_string();
    for _ in 0..8 {
        let tar_bytes: Vec<bytes::Bytes> = docker
            .download_from_container(
                id,
                Some(DownloadFromContainerOptions {
                    path: current.clone(),
                }),
            )
            .try_collect()
            .await
            .map_err(docker_err("copying a library out of the base image"))?;
        let tar_bytes = tar_bytes.concat();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut link = None;
        for entry in archive.entries()? {
            let mut entry = entry?;
            let kind = entry.header().entry_type();
            if kind.is_file() {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                return Ok(data);
            }
            if kind.is_symlink() {
                link = entry.link_name()?.map(|l| l.display().to_string());
                break;
            }
        }
        let Some(target) = link else { break };
        current = if target.starts_with('/') {
            target
        } else {
            let dir = Path::new(&current).parent().unwrap_or(Path::new("/"));
            dir.join(target).display().to_string()
        };
    }
    Err(ImageError::Tool(
        "copying libraries".into(),
        format!("{path} is not a file in the base image"),
    ))
}

/// `docker save` names images without the default registry.
fn strip_docker_io(image: &str) -> &str {
    image.strip_prefix("docker.io/").unwrap_or(image)
}

fn first_file_in_tar(tar_bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            return Ok(data);
        }
    }
    Err(ImageError::Tool(
        "copying busybox".into(),
        format!("{BUSYBOX_IN_BASE} is not a file in the base image"),
    ))
}

/// Asks the static busybox for its applets (`bin/sh`, `usr/bin/env`, …). It is static,
/// so it runs on the (Linux) host as is.
async fn list_applets(busybox: &[u8]) -> Result<Vec<String>, ImageError> {
    let dir = tempfile::tempdir()?;
    let exe = dir.path().join("busybox");
    std::fs::write(&exe, busybox)?;
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let output = tokio::process::Command::new(&exe)
        .arg("--list-full")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| ImageError::Tool("busybox --list-full".into(), e.to_string()))?;
    if !output.status.success() {
        return Err(ImageError::Tool(
            "busybox --list-full".into(),
            output.status.to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Everything added on top of the base image, as one tar rooted at `/`.
fn write_overlay_tar(
    out: std::fs::File,
    binary: &Path,
    images: &BakedImages,
    files_dir: Option<&Path>,
) -> Result<(), ImageError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(true);
    let header = |size: u64, mode: u32, kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    };
    let mut bin = std::fs::File::open(binary)?;
    let size = bin.metadata()?.len();
    builder.append_data(
        &mut header(size, 0o755, tar::EntryType::Regular),
        RIND_IN_NODE,
        &mut bin,
    )?;
    let images_dir = paths::IMAGES_DIR.trim_start_matches('/');
    let mut prefix = PathBuf::new();
    for part in Path::new(images_dir).components() {
        prefix.push(part);
        let dir = format!("{}/", prefix.display());
        builder.append_data(
            &mut header(0, 0o755, tar::EntryType::Directory),
            dir,
            &[][..],
        )?;
    }
    builder.append_data(
        &mut header(images.archive.len() as u64, 0o644, tar::EntryType::Regular),
        format!("{images_dir}/{SYSTEM_ARCHIVE}"),
        images.archive.as_slice(),
    )?;
    match files_dir {
        Some(dir) if dir.is_dir() => {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let name = entry.file_name();
                if entry.file_type()?.is_dir() {
                    builder.append_dir_all(&name, entry.path())?;
                } else {
                    builder.append_path_with_name(entry.path(), &name)?;
                }
            }
        }
        _ => {
            for (path, data) in EMBEDDED_FILES {
                builder.append_data(
                    &mut header(data.len() as u64, 0o644, tar::EntryType::Regular),
                    path,
                    *data,
                )?;
            }
        }
    }
    builder.into_inner()?.sync_all()?;
    Ok(())
}

/// Builds the node image `tag`: a container of `base` gets the overlay tar and is
/// committed with the node's entrypoint and labels.
pub async fn assemble(
    docker: &Docker,
    base: &str,
    binary: &Path,
    images: &BakedImages,
    files_dir: Option<&Path>,
    tag: &str,
) -> Result<(), ImageError> {
    let binary_sha = sha256_file(binary).await?;
    let overlay = tempfile::NamedTempFile::new()?;
    write_overlay_tar(overlay.reopen()?, binary, images, files_dir)?;
    let (repo, version) = super::split_tag(tag);
    with_temp_container(docker, base, |id| async move {
        let file = tokio::fs::File::open(overlay.path()).await?;
        docker
            .upload_to_container(
                &id,
                Some(UploadToContainerOptions {
                    path: "/".to_string(),
                    ..Default::default()
                }),
                bollard::body_try_stream(tokio_util::io::ReaderStream::new(file)),
            )
            .await
            .map_err(docker_err("copying rind into the node image"))?;
        let config = ContainerConfig {
            entrypoint: Some(vec![
                format!("/{RIND_IN_NODE}"),
                "node".to_string(),
                "init".to_string(),
            ]),
            env: Some(vec![
                PATH_ENV.to_string(),
                // `docker exec <node> ctr …` shows the pods' images and containers.
                "CONTAINERD_NAMESPACE=k8s.io".to_string(),
            ]),
            labels: Some(HashMap::from([
                (LABEL_BINARY_SHA256.to_string(), binary_sha),
                // Commit copies the build container's labels; this one must not stick.
                (LABEL_TEMPORARY.to_string(), String::new()),
            ])),
            ..Default::default()
        };
        crate::docker::for_image_builds(docker)
            .commit_container(
                CommitContainerOptions {
                    container: Some(id.clone()),
                    repo: Some(repo.to_string()),
                    tag: Some(version.to_string()),
                    comment: Some("rind node image".to_string()),
                    pause: false,
                    ..Default::default()
                },
                config,
            )
            .await
            .map_err(docker_err("committing the node image"))?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4b)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f4c)\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn overlay_tar_holds_binary_images_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("rind");
        std::fs::write(&bin, b"binary").unwrap();
        let images = BakedImages {
            archive: b"images".to_vec(),
        };
        let out = dir.path().join("overlay.tar");
        write_overlay_tar(std::fs::File::create(&out).unwrap(), &bin, &images, None).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for want in [
            "usr/local/bin/rind",
            "opt/rind/images/system.tar",
            "etc/profile.d/rind.sh",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
    }
}
