//! `export logs`, in kind's layout: per node a folder named after it holding the node's
//! whole `/var/log` (our components' logs under `rind/`, containerd's among them; the
//! pods' logs under `pods/`), `kubelet.log` and `containerd.log` at the top as kind has
//! them, `serial.log` (the node container's console: what its init printed, our
//! journal), `images.log` (what the node's runtime holds), `rind-version.txt` (the
//! node's binary) and `inspect.json` (`docker inspect`); beside the folders,
//! `docker-info.txt` and `rind-version.txt` of the host binary. Optionally packed into a
//! `.tar.gz`.

use super::provider;
use super::ui::Ui;
use anyhow::Context;
use bollard::Docker;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, InspectContainerOptions, LogsOptionsBuilder,
};
use futures::TryStreamExt;
use std::path::{Component, Path, PathBuf};

/// What a node keeps its logs in; taken whole, as kind takes it.
const VAR_LOG: &str = "/var/log";

/// Whether `path` names a gzipped tar rather than a folder.
pub fn is_archive_path(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// The folder an archive unpacks to: its file name without the suffix, so
/// `logs.tar.gz` unpacks into `logs/` rather than into the current directory.
pub fn archive_root(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".tar.gz")
        .or_else(|| name.strip_suffix(".tgz"))
        .unwrap_or(&name);
    if stem.is_empty() {
        "logs".to_string()
    } else {
        stem.to_string()
    }
}

/// Packs the folder `root` into the gzipped tar `archive`, under `root`'s own name.
pub fn pack(root: &Path, archive: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(archive)
        .with_context(|| format!("creating {}", archive.display()))?;
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gzip);
    // Links inside the logs (the kubelet's /var/log/containers) stay links.
    tar.follow_symlinks(false);
    let name = root.file_name().context("the logs folder has no name")?;
    tar.append_dir_all(name, root)
        .with_context(|| format!("packing {}", root.display()))?;
    tar.into_inner()
        .and_then(|gzip| gzip.finish())
        .with_context(|| format!("writing {}", archive.display()))?;
    Ok(())
}

pub async fn export(docker: &Docker, ui: &Ui, cluster: &str, dir: &Path) -> anyhow::Result<()> {
    let nodes = provider::list_nodes(docker, Some(cluster)).await?;
    if nodes.is_empty() {
        anyhow::bail!("unknown cluster \"{cluster}\"");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("rind-version.txt"), version_line())
        .context("writing rind-version.txt")?;
    let info = match docker.info().await {
        Ok(info) => serde_json::to_vec_pretty(&info).context("encoding docker info")?,
        Err(err) => format!("docker info failed: {err}\n").into_bytes(),
    };
    std::fs::write(dir.join("docker-info.txt"), info).context("writing docker-info.txt")?;
    // The load balancers (an HA cluster's API one, the Services' one) run only our
    // binary: their console output and `docker inspect` are all there is to collect.
    let mut side: Vec<String> = nodes
        .iter()
        .filter(|n| n.role == provider::LOAD_BALANCER_ROLE)
        .map(|n| n.name.clone())
        .collect();
    side.extend(provider::service_lb_containers(docker, cluster).await?);
    let nodes: Vec<String> = nodes
        .into_iter()
        .filter(|n| n.role != provider::LOAD_BALANCER_ROLE)
        .map(|n| n.name)
        .collect();
    // Containers at once; one's failure does not keep the others' logs from the user.
    let results = futures::future::join_all(
        nodes
            .iter()
            .map(|node| {
                futures::future::Either::Left(export_node(docker, ui, node, dir.join(node)))
            })
            .chain(side.iter().map(|name| {
                futures::future::Either::Right(export_side_container(
                    docker,
                    ui,
                    name,
                    dir.join(name),
                ))
            })),
    )
    .await;
    let errors: Vec<String> = results
        .into_iter()
        .zip(nodes.iter().chain(&side))
        .filter_map(|(r, name)| r.err().map(|e| format!("{name}: {e:#}")))
        .collect();
    if !errors.is_empty() {
        anyhow::bail!("collecting logs failed for {}", errors.join("; "));
    }
    Ok(())
}

fn version_line() -> String {
    format!(
        "rind v{} {}/{}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// `docker inspect` of a container as `inspect.json`, and its console output (with
/// Docker's timestamps) as `serial.log`, kind's name for a node's.
async fn inspect_and_console(docker: &Docker, name: &str, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let inspect = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspecting {name}"))?;
    let json = serde_json::to_vec_pretty(&inspect).context("encoding docker inspect")?;
    std::fs::write(dir.join("inspect.json"), json).context("writing inspect.json")?;
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .build();
    let serial: Vec<String> = docker
        .logs(name, Some(options))
        .map_ok(|line| line.to_string())
        .try_collect()
        .await
        .with_context(|| format!("reading the console output of {name}"))?;
    std::fs::write(dir.join("serial.log"), serial.concat()).context("writing serial.log")?;
    Ok(())
}

async fn export_side_container(
    docker: &Docker,
    ui: &Ui,
    name: &str,
    dir: PathBuf,
) -> anyhow::Result<()> {
    inspect_and_console(docker, name, &dir).await?;
    ui.detail(&format!("collected the logs of {name}"));
    Ok(())
}

async fn export_node(docker: &Docker, ui: &Ui, node: &str, dir: PathBuf) -> anyhow::Result<()> {
    inspect_and_console(docker, node, &dir).await?;

    // Docker's archive API reads a stopped node's files too, so a node that failed to
    // boot still gives its logs.
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(VAR_LOG)
        .build();
    let chunks: Vec<bytes::Bytes> = docker
        .download_from_container(node, Some(options))
        .try_collect()
        .await
        .with_context(|| format!("copying {VAR_LOG} out of {node}"))?;
    let data = chunks.concat();
    let target = dir.clone();
    tokio::task::spawn_blocking(move || unpack_var_log(&data, &target))
        .await
        .context("unpacking the node's logs")?
        .with_context(|| format!("unpacking {VAR_LOG} of {node}"))?;
    // kind's names for the two logs people look for first.
    for name in ["kubelet.log", "containerd.log"] {
        let source = dir.join("rind").join(name);
        if source.is_file() {
            std::fs::copy(&source, dir.join(name))
                .with_context(|| format!("copying {}", source.display()))?;
        }
    }

    // Commands need a running node; a stopped one records why they did not run.
    for (file, cmd) in [
        (
            "images.log",
            &["ctr", "--namespace", "k8s.io", "images", "list"][..],
        ),
        ("rind-version.txt", &["rind", "version"][..]),
    ] {
        let text = match provider::exec(docker, node, cmd).await {
            Ok(out) => format!("{}{}", out.stdout, out.stderr),
            Err(err) => format!("{}: {err:#}\n", cmd.join(" ")),
        };
        std::fs::write(dir.join(file), text).with_context(|| format!("writing {file}"))?;
    }
    ui.detail(&format!("collected the logs of {node}"));
    Ok(())
}

/// Unpacks Docker's archive of `/var/log` (entries under `log/`) into `dir`, without
/// the leading `log/`. Links pointing into `/var/log` (the kubelet's
/// `/var/log/containers/*.log` → `/var/log/pods/…`) are made relative, so they resolve
/// inside the export instead of on the host; other links and special files are left out.
fn unpack_var_log(data: &[u8], dir: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading an archive entry")?;
        let path = entry.path().context("an entry's path")?.into_owned();
        let mut parts = path.components();
        parts.next(); // `log`, the copied folder itself
        let relative: PathBuf = parts.collect();
        if relative.as_os_str().is_empty() {
            continue;
        }
        // Nothing may land outside `dir`.
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            anyhow::bail!("the archive holds an unsafe path {}", path.display());
        }
        let target = dir.join(&relative);
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target)
                .with_context(|| format!("creating {}", target.display()))?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            entry
                .unpack(&target)
                .with_context(|| format!("writing {}", target.display()))?;
        } else if kind.is_symlink() {
            let Some(link) = entry.link_name().context("a link's target")? else {
                continue;
            };
            if let Some(inside) = relative_link(&relative, &link) {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                let _ = std::fs::remove_file(&target);
                std::os::unix::fs::symlink(&inside, &target)
                    .with_context(|| format!("linking {}", target.display()))?;
            }
        }
    }
    Ok(())
}

/// For a link at `at` (relative to /var/log) pointing to `link`: the same target as a
/// path relative to the link's folder, when the target is inside /var/log.
fn relative_link(at: &Path, link: &Path) -> Option<PathBuf> {
    let absolute = if link.is_absolute() {
        link.strip_prefix(VAR_LOG).ok()?.to_path_buf()
    } else {
        at.parent()?.join(link)
    };
    // Resolve `..` lexically; a target climbing out of /var/log is dropped.
    let mut target: Vec<Component> = Vec::new();
    for c in absolute.components() {
        match c {
            Component::Normal(_) => target.push(c),
            Component::ParentDir => {
                target.pop()?;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    let depth = at.parent().map(|p| p.components().count()).unwrap_or(0);
    let mut relative = PathBuf::new();
    for _ in 0..depth {
        relative.push("..");
    }
    relative.extend(target);
    Some(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var_log_archive() -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        tar.append_data(&mut dir.clone(), "log/", &[][..]).unwrap();
        tar.append_data(&mut dir.clone(), "log/rind/", &[][..])
            .unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_mode(0o644);
        file.set_size(5);
        tar.append_data(&mut file.clone(), "log/rind/kubelet.log", &b"hello"[..])
            .unwrap();
        tar.append_data(&mut file, "log/pods/ns_p_uid/c/0.log", &b"world"[..])
            .unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        tar.append_link(
            &mut link.clone(),
            "log/containers/p.log",
            "/var/log/pods/ns_p_uid/c/0.log",
        )
        .unwrap();
        tar.append_link(&mut link, "log/containers/escape.log", "/etc/shadow")
            .unwrap();
        tar.into_inner().unwrap()
    }

    #[test]
    fn var_log_unpacks_without_its_leading_folder_and_links_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        unpack_var_log(&var_log_archive(), dir.path()).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("rind/kubelet.log"), "hello");
        assert_eq!(read("pods/ns_p_uid/c/0.log"), "world");
        let link = dir.path().join("containers/p.log");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../pods/ns_p_uid/c/0.log")
        );
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "world");
        assert!(!dir.path().join("containers/escape.log").exists());
        assert!(!dir.path().join("log").exists());
    }

    #[test]
    fn archive_paths_are_told_by_their_suffix() {
        assert!(is_archive_path(Path::new("/tmp/x/logs.tar.gz")));
        assert!(is_archive_path(Path::new("logs.tgz")));
        assert!(!is_archive_path(Path::new("/tmp/logs")));
        assert_eq!(archive_root(Path::new("/tmp/ci-logs.tar.gz")), "ci-logs");
        assert_eq!(archive_root(Path::new("a.tgz")), "a");
    }

    #[test]
    fn a_packed_folder_unpacks_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("logs");
        std::fs::create_dir_all(root.join("node")).unwrap();
        std::fs::write(root.join("node/kubelet.log"), "k").unwrap();
        let archive = dir.path().join("logs.tar.gz");
        pack(&root, &archive).unwrap();
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&archive).unwrap());
        let out = dir.path().join("out");
        tar::Archive::new(gz).unpack(&out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("logs/node/kubelet.log")).unwrap(),
            "k"
        );
    }
}
