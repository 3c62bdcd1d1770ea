//! Tiny images built from a static busybox, written directly as one `docker save`
//! archive (manifest.json + a config and one layer per image) that both `ctr images
//! import` and `docker load` read: the pause image every pod sandbox runs, a busybox
//! image for workloads, and the cluster DNS image (the rind binary's shared libraries).

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Same timestamp for every entry and config, so the same busybox gives the same image
/// ID on every build.
const EPOCH: &str = "1970-01-01T00:00:00Z";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("writing an image archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding an image config: {0}")]
    Json(#[from] serde_json::Error),
}

/// One image in an archive.
pub struct ImageSpec<'a> {
    /// As `docker save` writes it (`rind/pause:v1`); containerd adds `docker.io/`.
    pub repo_tag: &'a str,
    pub entrypoint: Option<Vec<&'a str>>,
    pub cmd: Option<Vec<&'a str>>,
    /// What the layer is, for the image's history.
    pub created_by: &'a str,
}

/// The root filesystem layer: `/bin/busybox` and one hard link to it per applet at the
/// path `busybox --list-full` gives it (`bin/sh`, `usr/bin/env`, …), plus the few
/// directories programs expect to exist. Hard links, not symlinks: every node unpacks
/// this layer while it boots, and a symlink costs a new inode each (some 270 of them;
/// up to a millisecond of kernel time apiece on the ext4 here, right after a cluster
/// was deleted); a hard link is only a directory entry. busybox picks the applet by the name it was run as either way.
pub fn busybox_layer(busybox: &[u8], applets: &[String]) -> Result<Vec<u8>, ArchiveError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs: BTreeSet<String> = ["bin", "etc", "root", "tmp", "var"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for applet in applets {
        let mut parent = std::path::Path::new(applet).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.display().to_string());
            parent = dir.parent();
        }
    }
    for dir in &dirs {
        // /tmp is world-writable with the sticky bit, as everywhere.
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        append(
            &mut builder,
            &format!("{dir}/"),
            tar::EntryType::Directory,
            mode,
            &[],
            None,
        )?;
    }
    append(
        &mut builder,
        "bin/busybox",
        tar::EntryType::Regular,
        0o755,
        busybox,
        None,
    )?;
    for applet in applets.iter().filter(|a| a.as_str() != "bin/busybox") {
        append(
            &mut builder,
            applet,
            tar::EntryType::Link,
            0o755,
            &[],
            Some("bin/busybox"),
        )?;
    }
    Ok(builder.into_inner()?)
}

/// A root filesystem layer for a program that is mounted in at run time: the directory
/// `program_dir` it is mounted into and the `files` it needs (shared libraries, by their
/// paths without the leading `/`), each directory created before its entries, plus an
/// empty `/tmp`.
pub fn libraries_layer(
    program_dir: &str,
    files: &[(String, Vec<u8>)],
) -> Result<Vec<u8>, ArchiveError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs: BTreeSet<String> = ["etc", "tmp"].iter().map(|s| s.to_string()).collect();
    let mut add_with_parents = |dir: Option<&std::path::Path>| {
        let mut dir = dir;
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.display().to_string());
            dir = d.parent();
        }
    };
    add_with_parents(Some(std::path::Path::new(program_dir)));
    for (path, _) in files {
        add_with_parents(std::path::Path::new(path).parent());
    }
    for dir in &dirs {
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        append(
            &mut builder,
            &format!("{dir}/"),
            tar::EntryType::Directory,
            mode,
            &[],
            None,
        )?;
    }
    for (path, data) in files {
        append(
            &mut builder,
            path,
            tar::EntryType::Regular,
            0o755,
            data,
            None,
        )?;
    }
    Ok(builder.into_inner()?)
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
    link: Option<&str>,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(data.len() as u64);
    match link {
        Some(target) => builder.append_link(&mut header, path, target),
        None => builder.append_data(&mut header, path, data),
    }
}

/// The image architecture name (Go's GOARCH) for this host.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// One `docker save` archive of several images, each with a single layer; a layer
/// two images share is stored once.
pub fn docker_archive(images: &[(ImageSpec<'_>, &[u8])]) -> Result<Vec<u8>, ArchiveError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut stored = BTreeSet::new();
    let mut manifest = Vec::new();
    for (image, layer) in images {
        let layer_hex = hex::encode(Sha256::digest(layer));
        let config = serde_json::json!({
            "architecture": oci_arch(),
            "os": "linux",
            "created": EPOCH,
            "config": {
                "Env": [PATH_ENV],
                "Entrypoint": image.entrypoint,
                "Cmd": image.cmd,
            },
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_hex}")] },
            "history": [{ "created": EPOCH, "created_by": image.created_by }],
        });
        let config = serde_json::to_vec(&config)?;
        let config_name = format!("{}.json", hex::encode(Sha256::digest(&config)));
        let layer_name = format!("{layer_hex}/layer.tar");
        if stored.insert(layer_hex.clone()) {
            append(
                &mut builder,
                &format!("{layer_hex}/"),
                tar::EntryType::Directory,
                0o755,
                &[],
                None,
            )?;
            append(
                &mut builder,
                &layer_name,
                tar::EntryType::Regular,
                0o644,
                layer,
                None,
            )?;
        }
        append(
            &mut builder,
            &config_name,
            tar::EntryType::Regular,
            0o644,
            &config,
            None,
        )?;
        manifest.push(serde_json::json!({
            "Config": config_name,
            "RepoTags": [image.repo_tag],
            "Layers": [layer_name],
        }));
    }
    append(
        &mut builder,
        "manifest.json",
        tar::EntryType::Regular,
        0o644,
        &serde_json::to_vec(&manifest)?,
        None,
    )?;
    Ok(builder.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>, Option<String>)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, data, link)
            })
            .collect()
    }

    #[test]
    fn layer_has_busybox_and_applet_links() {
        let applets = vec!["bin/sh".to_string(), "usr/sbin/chroot".to_string()];
        let layer = busybox_layer(b"ELF", &applets).unwrap();
        let found = entries(&layer);
        let names: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
        for want in [
            "bin/",
            "usr/",
            "usr/sbin/",
            "tmp/",
            "bin/busybox",
            "bin/sh",
            "usr/sbin/chroot",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let sh = found.iter().find(|(p, _, _)| p == "bin/sh").unwrap();
        assert_eq!(sh.2.as_deref(), Some("bin/busybox"));
        let mut archive = tar::Archive::new(&layer[..]);
        let kinds: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        for applet in ["bin/sh", "usr/sbin/chroot"] {
            assert!(
                kinds.contains(&(applet.to_string(), tar::EntryType::Link)),
                "{applet} is no hard link: {kinds:?}"
            );
        }
    }

    #[test]
    fn libraries_layer_has_the_program_dir_and_libraries_but_no_program() {
        let files = vec![(
            "lib/x86_64-linux-gnu/libc.so.6".to_string(),
            b"lib".to_vec(),
        )];
        let layer = libraries_layer("usr/local/bin", &files).unwrap();
        let mut archive = tar::Archive::new(&layer[..]);
        let paths: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for want in [
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "lib/x86_64-linux-gnu/",
            "lib/x86_64-linux-gnu/libc.so.6",
            "tmp/",
            "etc/",
        ] {
            assert!(
                paths
                    .iter()
                    .any(|p| p.trim_end_matches('/') == want.trim_end_matches('/')),
                "{want} missing from {paths:?}"
            );
        }
        assert!(!paths.iter().any(|p| p.ends_with("bin/rind")));
    }

    #[test]
    fn archive_manifest_points_at_config_and_layer() {
        let layer = busybox_layer(b"ELF", &["bin/sleep".to_string()]).unwrap();
        let spec = ImageSpec {
            repo_tag: "rind/pause:v1",
            entrypoint: Some(vec!["/bin/sleep", "infinity"]),
            cmd: None,
            created_by: "rind: static busybox",
        };
        let shell = ImageSpec {
            repo_tag: "rind/busybox:v1",
            entrypoint: None,
            cmd: Some(vec!["sh"]),
            created_by: "rind: static busybox",
        };
        let other =
            libraries_layer("usr/local/bin", &[("lib/x.so".to_string(), b"so".to_vec())]).unwrap();
        let dns = ImageSpec {
            repo_tag: "rind/dns:v1",
            entrypoint: Some(vec!["/usr/local/bin/rind", "dns"]),
            cmd: None,
            created_by: "rind: libraries",
        };
        let archive =
            docker_archive(&[(spec, &layer[..]), (shell, &layer[..]), (dns, &other[..])]).unwrap();
        let found = entries(&archive);
        // The shared layer once, the other one, three configs, the manifest.
        let layers: Vec<_> = found
            .iter()
            .filter(|(p, _, _)| p.ends_with("/layer.tar"))
            .collect();
        assert_eq!(
            layers.len(),
            2,
            "{:?}",
            found.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        let manifest = &found
            .iter()
            .find(|(p, _, _)| p == "manifest.json")
            .unwrap()
            .1;
        let manifest: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        let tags: Vec<&str> = (0..3)
            .map(|i| manifest[i]["RepoTags"][0].as_str().unwrap())
            .collect();
        assert_eq!(tags, ["rind/pause:v1", "rind/busybox:v1", "rind/dns:v1"]);
        assert_eq!(manifest[0]["Layers"], manifest[1]["Layers"]);
        assert_ne!(manifest[0]["Config"], manifest[1]["Config"]);
        let manifest = &found
            .iter()
            .find(|(p, _, _)| p == "manifest.json")
            .unwrap()
            .1;
        let manifest: serde_json::Value = serde_json::from_slice(manifest).unwrap();
        let config_name = manifest[0]["Config"].as_str().unwrap();
        let config = &found.iter().find(|(p, _, _)| p == config_name).unwrap().1;
        let config: serde_json::Value = serde_json::from_slice(config).unwrap();
        assert_eq!(config["config"]["Entrypoint"][1], "infinity");
        let layer_name = manifest[0]["Layers"][0].as_str().unwrap();
        let stored = &found.iter().find(|(p, _, _)| p == layer_name).unwrap().1;
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            format!("sha256:{}", hex::encode(Sha256::digest(stored)))
        );
        assert_eq!(manifest[0]["RepoTags"][0], "rind/pause:v1");
    }
}
