//! Pod volumes: makes each volume a container mounts exist on the node and turns the
//! container's volumeMounts into CRI bind mounts. emptyDir, configMap and secret
//! volumes live under the pod's directory (`/var/lib/kubelet/pods/<uid>/volumes/…`, as
//! the real kubelet lays them out) on the node's /var volume; hostPath volumes are the
//! node's own paths; a persistentVolumeClaim is the hostPath or local path of the PV it
//! is bound to. The kubelet and containerd share the node's filesystem, so the paths
//! made here are the paths containerd binds.

use super::cri::v1;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, HostPathVolumeSource, KeyToPath, PersistentVolume, PersistentVolumeClaim,
    Pod, Secret, Volume,
};
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Where the kubelet keeps each pod's volumes.
pub const PODS_DIR: &str = "/var/lib/kubelet/pods";
/// Upstream's defaultMode for configMap and secret files (0644).
const DEFAULT_FILE_MODE: i32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volumeMount {0:?} names no volume of the pod")]
    UnknownVolume(String),
    #[error("volume {volume:?}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume:?}: {source}")]
    Io {
        volume: String,
        source: std::io::Error,
    },
    #[error("volume {volume:?}: reading {what}: {source}")]
    Api {
        volume: String,
        what: String,
        source: kube::Error,
    },
    #[error("volume {0:?}: the kind of volume is not supported by rind's kubelet")]
    Unsupported(String),
}

/// The directory of one of the pod's own volumes (`plugin` as upstream names it).
fn pod_volume_dir(root: &Path, pod_uid: &str, plugin: &str, name: &str) -> PathBuf {
    root.join(pod_uid)
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(name)
}

/// Removes everything the pod's volumes left under the pod's directory (hostPath and
/// persistent volumes are not in it and stay).
pub async fn remove_pod_dir(pod_uid: &str) {
    if pod_uid.is_empty() {
        return;
    }
    let _ = tokio::fs::remove_dir_all(Path::new(PODS_DIR).join(pod_uid)).await;
}

fn io(volume: &str) -> impl Fn(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        volume: volume.to_string(),
        source,
    }
}

fn invalid(volume: &str, message: impl Into<String>) -> VolumeError {
    VolumeError::Invalid {
        volume: volume.to_string(),
        message: message.into(),
    }
}

/// Checks or creates a hostPath according to its type, as upstream's hostPath plugin.
pub fn prepare_host_path(
    volume: &str,
    source: &HostPathVolumeSource,
) -> Result<PathBuf, VolumeError> {
    let path = PathBuf::from(&source.path);
    if !path.is_absolute() {
        return Err(invalid(
            volume,
            format!("hostPath {:?} is not absolute", source.path),
        ));
    }
    let kind = source.type_.as_deref().unwrap_or("");
    let meta = std::fs::metadata(&path);
    let missing = |what: &str| {
        invalid(
            volume,
            format!(
                "hostPath type check failed: {} is not a {what}",
                source.path
            ),
        )
    };
    match kind {
        "" => {}
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(&path).map_err(io(volume))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(volume))?;
            } else if !path.is_dir() {
                return Err(missing("directory"));
            }
        }
        "Directory" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => {
            return Err(missing("directory"));
        }
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io(volume))?;
            } else if !path.is_file() {
                return Err(missing("file"));
            }
        }
        "File" if !meta.as_ref().is_ok_and(|m| m.is_file()) => return Err(missing("file")),
        "Socket" | "CharDevice" | "BlockDevice" if meta.is_err() => {
            return Err(invalid(
                volume,
                format!("hostPath {} does not exist", source.path),
            ));
        }
        "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" => {}
        other => return Err(invalid(volume, format!("unknown hostPath type {other:?}"))),
    }
    Ok(path)
}

/// A key's file path inside the volume: relative, no `..`, as upstream validates.
fn item_path(volume: &str, path: &str) -> Result<PathBuf, VolumeError> {
    let p = Path::new(path);
    if path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(invalid(
            volume,
            format!("item path {path:?} must be relative without '..'"),
        ));
    }
    Ok(p.to_path_buf())
}

/// Writes the files of a configMap or secret volume afresh: every listed item (or
/// every key) as a file with its mode. Files of keys no longer present are removed.
pub fn write_files(
    volume: &str,
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<(), VolumeError> {
    // Build the new content next to the old and swap, so a container never sees a
    // half-written volume.
    let staging = dir.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(volume))?;
    let default_mode = default_mode.unwrap_or(DEFAULT_FILE_MODE);
    let wanted: Vec<(String, PathBuf, i32)> = match items {
        Some(items) => {
            let mut out = Vec::new();
            for item in items {
                if !data.contains_key(&item.key) {
                    if optional {
                        continue;
                    }
                    return Err(invalid(
                        volume,
                        format!("configuration key {:?} not found", item.key),
                    ));
                }
                out.push((
                    item.key.clone(),
                    item_path(volume, &item.path)?,
                    item.mode.unwrap_or(default_mode),
                ));
            }
            out
        }
        None => data
            .keys()
            .map(|k| Ok((k.clone(), item_path(volume, k)?, default_mode)))
            .collect::<Result<_, VolumeError>>()?,
    };
    for (key, rel, mode) in wanted {
        let file = staging.join(rel);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io(volume))?;
        }
        std::fs::write(&file, &data[&key]).map_err(io(volume))?;
        let mode = u32::try_from(mode & 0o777).unwrap_or(0o644);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
            .map_err(io(volume))?;
    }
    if dir.exists() {
        // Replace the contents in place: the directory itself may be bind-mounted
        // into running containers already, so it must stay the same directory.
        for entry in std::fs::read_dir(dir).map_err(io(volume))? {
            let entry = entry.map_err(io(volume))?;
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io(volume))?;
        }
        for entry in std::fs::read_dir(&staging).map_err(io(volume))? {
            let entry = entry.map_err(io(volume))?;
            std::fs::rename(entry.path(), dir.join(entry.file_name())).map_err(io(volume))?;
        }
        std::fs::remove_dir_all(&staging).map_err(io(volume))?;
    } else {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(io(volume))?;
        }
        std::fs::rename(&staging, dir).map_err(io(volume))?;
    }
    Ok(())
}

async fn claim_path(client: &Client, ns: &str, volume: &Volume) -> Result<PathBuf, VolumeError> {
    let name = &volume.name;
    let Some(source) = &volume.persistent_volume_claim else {
        return Err(VolumeError::Unsupported(name.clone()));
    };
    let api_err = |what: String| {
        move |source| VolumeError::Api {
            volume: name.clone(),
            what,
            source,
        }
    };
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get(&source.claim_name)
        .await
        .map_err(api_err(format!(
            "persistentvolumeclaim {:?}",
            source.claim_name
        )))?;
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let pv_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty() && bound)
        .ok_or_else(|| {
            invalid(
                name,
                format!("persistentvolumeclaim {:?} is not bound", source.claim_name),
            )
        })?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .map_err(api_err(format!("persistentvolume {pv_name:?}")))?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(host) = &spec.host_path {
        return prepare_host_path(name, host);
    }
    if let Some(local) = &spec.local {
        let path = PathBuf::from(&local.path);
        if !path.exists() {
            return Err(invalid(
                name,
                format!("local volume path {} does not exist", local.path),
            ));
        }
        return Ok(path);
    }
    Err(invalid(
        name,
        format!("persistentvolume {pv_name:?} is neither hostPath nor local"),
    ))
}

/// Makes `volume` exist on the node and returns its path there.
async fn prepare(
    client: &Client,
    pod: &Pod,
    root: &Path,
    volume: &Volume,
) -> Result<PathBuf, VolumeError> {
    let uid = pod.uid().unwrap_or_default();
    let ns = pod.namespace().unwrap_or_default();
    let name = &volume.name;
    if volume.empty_dir.is_some() {
        // medium Memory is served from disk too: a node container cannot mount tmpfs
        // on behalf of every pod without leaking them when the kubelet restarts.
        let dir = pod_volume_dir(root, &uid, "empty-dir", name);
        tokio::fs::create_dir_all(&dir).await.map_err(io(name))?;
        tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .await
            .map_err(io(name))?;
        return Ok(dir);
    }
    if let Some(host) = &volume.host_path {
        return prepare_host_path(name, host);
    }
    if volume.persistent_volume_claim.is_some() {
        return claim_path(client, &ns, volume).await;
    }
    let api_err = |what: String| {
        move |source| VolumeError::Api {
            volume: name.clone(),
            what,
            source,
        }
    };
    if let Some(source) = &volume.config_map {
        let optional = source.optional.unwrap_or(false);
        let found = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get_opt(&source.name)
            .await
            .map_err(api_err(format!("configmap {:?}", source.name)))?;
        let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        match found {
            Some(cm) => {
                for (k, v) in cm.data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                for (k, v) in cm.binary_data.unwrap_or_default() {
                    data.insert(k, v.0);
                }
            }
            None if optional => {}
            None => {
                return Err(invalid(
                    name,
                    format!("configmap {:?} not found", source.name),
                ));
            }
        }
        let dir = pod_volume_dir(root, &uid, "configmap", name);
        write_files(
            name,
            &dir,
            &data,
            source.items.as_deref(),
            source.default_mode,
            optional,
        )?;
        return Ok(dir);
    }
    if let Some(source) = &volume.secret {
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let optional = source.optional.unwrap_or(false);
        let found = Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(&secret_name)
            .await
            .map_err(api_err(format!("secret {secret_name:?}")))?;
        let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        match found {
            Some(secret) => {
                for (k, v) in secret.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                for (k, v) in secret.data.unwrap_or_default() {
                    data.insert(k, v.0);
                }
            }
            None if optional => {}
            None => return Err(invalid(name, format!("secret {secret_name:?} not found"))),
        }
        let dir = pod_volume_dir(root, &uid, "secret", name);
        write_files(
            name,
            &dir,
            &data,
            source.items.as_deref(),
            source.default_mode,
            optional,
        )?;
        return Ok(dir);
    }
    Err(VolumeError::Unsupported(name.clone()))
}

/// The CRI mounts for `container`: each of its volumeMounts, with the volume made ready
/// first. `root` is where pod directories live ([`PODS_DIR`] in a node).
pub async fn mounts(
    client: &Client,
    pod: &Pod,
    container: &Container,
    root: &Path,
) -> Result<Vec<v1::Mount>, VolumeError> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut ready: BTreeMap<String, PathBuf> = BTreeMap::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.iter().find(|v| v.name == mount.name) else {
            return Err(VolumeError::UnknownVolume(mount.name.clone()));
        };
        let base = match ready.get(&volume.name) {
            Some(path) => path.clone(),
            None => {
                let path = prepare(client, pod, root, volume).await?;
                ready.insert(volume.name.clone(), path.clone());
                path
            }
        };
        let host_path = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            None => base,
            Some(sub) => {
                let rel = item_path(&volume.name, sub)?;
                let path = base.join(rel);
                // Upstream makes a missing subPath a directory.
                if !path.exists() {
                    tokio::fs::create_dir_all(&path)
                        .await
                        .map_err(io(&volume.name))?;
                }
                path
            }
        };
        let volume_read_only = volume
            .persistent_volume_claim
            .as_ref()
            .and_then(|c| c.read_only)
            .unwrap_or(false);
        // configMap and secret volumes are read-only to containers, as upstream mounts them.
        let projected = volume.config_map.is_some() || volume.secret.is_some();
        out.push(v1::Mount {
            container_path: mount.mount_path.clone(),
            host_path: host_path.display().to_string(),
            readonly: mount.read_only.unwrap_or(false) || volume_read_only || projected,
            ..v1::Mount::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("made/here");
        let src = |path: &Path, kind: &str| HostPathVolumeSource {
            path: path.display().to_string(),
            type_: Some(kind.into()),
        };
        assert!(prepare_host_path("v", &src(&dir, "Directory")).is_err());
        assert_eq!(
            prepare_host_path("v", &src(&dir, "DirectoryOrCreate")).unwrap(),
            dir
        );
        assert!(dir.is_dir());
        assert!(prepare_host_path("v", &src(&dir, "Directory")).is_ok());
        assert!(prepare_host_path("v", &src(&dir, "File")).is_err());
        let file = scratch.path().join("f");
        assert!(prepare_host_path("v", &src(&file, "File")).is_err());
        prepare_host_path("v", &src(&file, "FileOrCreate")).unwrap();
        assert!(file.is_file());
        assert!(prepare_host_path("v", &src(&file, "File")).is_ok());
        assert!(prepare_host_path("v", &src(Path::new("rel"), "")).is_err());
    }

    #[test]
    fn files_from_keys_and_items() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("cm");
        let data = BTreeMap::from([
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]);
        write_files("v", &dir, &data, None, None, false).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"1");
        let mode = std::fs::metadata(dir.join("b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644);
        let items = [KeyToPath {
            key: "b".into(),
            path: "sub/bee".into(),
            mode: Some(0o400),
            ..KeyToPath::default()
        }];
        write_files("v", &dir, &data, Some(&items), None, false).unwrap();
        assert!(!dir.join("a").exists());
        assert_eq!(std::fs::read(dir.join("sub/bee")).unwrap(), b"2");
        let missing = [KeyToPath {
            key: "zz".into(),
            path: "z".into(),
            mode: None,
            ..KeyToPath::default()
        }];
        assert!(write_files("v", &dir, &data, Some(&missing), None, false).is_err());
        let escape = [KeyToPath {
            key: "a".into(),
            path: "../x".into(),
            mode: None,
            ..KeyToPath::default()
        }];
        assert!(write_files("v", &dir, &data, Some(&escape), None, false).is_err());
    }
}
