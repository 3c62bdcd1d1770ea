//! Pod volumes: makes each volume a container mounts exist on the node and turns the
//! container's volumeMounts into CRI bind mounts. emptyDir, configMap, secret,
//! downwardAPI and projected volumes live under the pod's directory
//! (`/var/lib/kubelet/pods/<uid>/volumes/…`, as the real kubelet lays them out) on the
//! node's /var volume (an emptyDir of `medium: Memory` is a tmpfs mounted there);
//! hostPath volumes are the node's own paths; a persistentVolumeClaim is the hostPath
//! or local path of the PV it is bound to. The kubelet and containerd share the node's
//! filesystem, so the paths made here are the paths containerd binds.
//!
//! Files from the API (configMap, secret, downwardAPI, projected) are written as
//! upstream's atomic writer does: into a fresh timestamped `..<time>` directory, then
//! the `..data` symlink is swapped to it in one rename, with each top-level name a
//! symlink through `..data`. A running container thus sees either the old files or
//! the new ones, and [`refresh`] keeps them following the API objects.

use super::cri::v1;
use super::env::NodeAllocatable;
use super::spec::{FieldValues, expand};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, HostPathVolumeSource, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

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
/// persistent volumes are not in it and stay), unmounting its memory-backed
/// emptyDirs first.
pub async fn remove_pod_dir(pod_uid: &str) {
    if pod_uid.is_empty() {
        return;
    }
    let dir = Path::new(PODS_DIR).join(pod_uid);
    for mount in mounts_under(&dir) {
        // Detached: a container still holding it cannot keep the pod's directory busy.
        if let Err(err) = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %mount.display(), "cannot unmount a pod volume: {err}");
        }
    }
    let _ = tokio::fs::remove_dir_all(dir).await;
}

/// Mount points at or below `dir`, deepest first, from this process's mount table.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        // mountinfo escapes spaces and such as octal; pod paths never hold them.
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// `fsGroup`, as upstream's volume ownership: every file and directory of the
/// volume belongs to the group, directories get the set-group-ID bit so new files
/// do too, and the group may read (and, in a writable volume, write) everything.
fn set_group_ownership(
    volume: &str,
    root: &Path,
    gid: i64,
    writable: bool,
) -> Result<(), VolumeError> {
    let gid = u32::try_from(gid)
        .map_err(|_| invalid(volume, format!("fsGroup {gid} is out of range")))?;
    let group = Some(nix::unistd::Gid::from_raw(gid));
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(io(volume))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        nix::unistd::chown(&path, None, group)
            .map_err(|errno| io(volume)(std::io::Error::from(errno)))?;
        let mode = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(io(volume))? {
                pending.push(entry.map_err(io(volume))?.path());
            }
            mode | 0o2050 | if writable { 0o020 } else { 0 }
        } else {
            mode | 0o040 | if writable { 0o020 } else { 0 }
        };
        if wanted != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))
                .map_err(io(volume))?;
        }
    }
    Ok(())
}

/// The bytes the files under `dir` take (their sizes, symlinks not followed).
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// The first disk-backed emptyDir of the pod holding more than its `sizeLimit`,
/// with the limit as written.
pub fn empty_dir_over_limit(pod: &Pod, root: &Path) -> Option<(String, String)> {
    let uid = pod.uid().unwrap_or_default();
    for volume in pod.spec.as_ref()?.volumes.iter().flatten() {
        let Some(empty) = &volume.empty_dir else {
            continue;
        };
        // A memory-backed one is a tmpfs of that size: the kernel enforces it.
        if empty.medium.as_deref().is_some_and(|m| !m.is_empty()) {
            continue;
        }
        let Some(limit) = &empty.size_limit else {
            continue;
        };
        let Some(bytes) = rind_api::quantity::Quantity::parse(&limit.0).map(|q| q.value()) else {
            continue;
        };
        let dir = pod_volume_dir(root, &uid, "empty-dir", &volume.name);
        if dir.exists() && disk_usage(&dir) > u64::try_from(bytes).unwrap_or(u64::MAX) {
            return Some((volume.name.clone(), limit.0.clone()));
        }
    }
    None
}

/// Whether `dir` is itself a mount point (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(own), Some(Ok(parent))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata))
    else {
        return false;
    };
    own.dev() != parent.dev()
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

/// A file of an API-backed volume: content, mode, and a modification time to keep
/// (a service account token's, whose age decides when it is renewed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileContent {
    pub data: Vec<u8>,
    pub mode: u32,
    pub modified: Option<SystemTime>,
}

/// Files by their path inside the volume.
pub type Payload = BTreeMap<PathBuf, FileContent>;

fn file_mode(volume: &str, mode: i32) -> Result<u32, VolumeError> {
    u32::try_from(mode)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| invalid(volume, format!("file mode {mode:#o} is out of range")))
}

/// The files of a configMap or secret: every listed item (or every key) with its mode.
pub fn key_payload(
    volume: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
    what: &str,
) -> Result<Payload, VolumeError> {
    let default_mode = default_mode.unwrap_or(DEFAULT_FILE_MODE);
    let mut out = Payload::new();
    match items {
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(invalid(
                        volume,
                        format!("configuration key {:?} not found in {what}", item.key),
                    ));
                };
                out.insert(
                    item_path(volume, &item.path)?,
                    FileContent {
                        data: value.clone(),
                        mode: file_mode(volume, item.mode.unwrap_or(default_mode))?,
                        modified: None,
                    },
                );
            }
        }
        None => {
            for (key, value) in data {
                out.insert(
                    item_path(volume, key)?,
                    FileContent {
                        data: value.clone(),
                        mode: file_mode(volume, default_mode)?,
                        modified: None,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// The name of the symlink that points at the current generation of files.
const DATA_LINK: &str = "..data";

/// The files the volume holds now, read through `..data`.
fn current_payload(dir: &Path) -> Option<Payload> {
    let data = dir.join(DATA_LINK);
    let target = std::fs::read_link(&data).ok()?;
    let root = dir.join(target);
    let mut out = Payload::new();
    let mut pending = vec![root.clone()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).ok()? {
            let path = entry.ok()?.path();
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let rel = path.strip_prefix(&root).ok()?.to_path_buf();
            out.insert(
                rel,
                FileContent {
                    data: std::fs::read(&path).ok()?,
                    mode: meta.permissions().mode() & 0o777,
                    modified: meta.modified().ok(),
                },
            );
        }
    }
    Some(out)
}

/// Whether two payloads hold the same files (modification times aside).
fn same_files(a: &Payload, b: &Payload) -> bool {
    a.len() == b.len()
        && a.iter().all(|(path, file)| {
            b.get(path)
                .is_some_and(|other| other.data == file.data && other.mode == file.mode)
        })
}

/// Writes `payload` into the volume at `dir` as upstream's atomic writer does;
/// returns whether anything changed. Old-style plain files at the top are replaced.
pub fn write_atomic(volume: &str, dir: &Path, payload: &Payload) -> Result<bool, VolumeError> {
    if current_payload(dir).is_some_and(|current| same_files(&current, payload)) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(io(volume))?;
    let stamp = jiff::Timestamp::now()
        .strftime("%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let generation = format!("..{stamp}");
    let staging = dir.join(&generation);
    std::fs::create_dir_all(&staging).map_err(io(volume))?;
    for (rel, file) in payload {
        let path = staging.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(volume))?;
        }
        std::fs::write(&path, &file.data).map_err(io(volume))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))
            .map_err(io(volume))?;
        if let Some(modified) = file.modified {
            let f = std::fs::File::options()
                .write(true)
                .open(&path)
                .map_err(io(volume))?;
            f.set_modified(modified).map_err(io(volume))?;
        }
    }
    let old = std::fs::read_link(dir.join(DATA_LINK)).ok();
    // The swap: a new link renamed over the old one is a single atomic step.
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&generation, &tmp_link).map_err(io(volume))?;
    std::fs::rename(&tmp_link, dir.join(DATA_LINK)).map_err(io(volume))?;
    // Each top-level name points through ..data, so it follows every later swap.
    let top: std::collections::BTreeSet<std::ffi::OsString> = payload
        .keys()
        .filter_map(|rel| rel.components().next())
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    for entry in std::fs::read_dir(dir).map_err(io(volume))? {
        let entry = entry.map_err(io(volume))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("..") {
            continue;
        }
        let path = entry.path();
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if top.contains(&name) && is_link {
            continue;
        }
        let removed = if path.is_dir() && !is_link {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(volume))?;
    }
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(name), &link)
                .map_err(io(volume))?;
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != generation.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// Writes the files of a configMap or secret volume: [`key_payload`] then
/// [`write_atomic`].
#[cfg(test)]
fn write_files(
    volume: &str,
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<(), VolumeError> {
    let payload = key_payload(volume, data, items, default_mode, optional, "volume")?;
    write_atomic(volume, dir, &payload).map(drop)
}

/// A map as upstream's downward API writes labels and annotations: `key="value"`
/// lines sorted by key, values quoted (JSON's escapes match Go's `%q` for text).
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The files of a downwardAPI volume (or projection).
fn downward_payload(
    volume: &str,
    ctx: &VolumeCtx<'_>,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<Payload, VolumeError> {
    let default_mode = default_mode.unwrap_or(DEFAULT_FILE_MODE);
    let mut out = Payload::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            let meta = &ctx.pod.metadata;
            match field.field_path.as_str() {
                "metadata.labels" => format_map(meta.labels.as_ref()),
                "metadata.annotations" => format_map(meta.annotations.as_ref()),
                path => ctx
                    .fields
                    .get(path)
                    .ok_or_else(|| invalid(volume, format!("unsupported fieldPath: {path}")))?,
            }
        } else if let Some(resource) = &item.resource_field_ref {
            let name = resource.container_name.clone().unwrap_or_default();
            let spec = ctx.pod.spec.clone().unwrap_or_default();
            let container = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|c| c.name == name)
                .ok_or_else(|| invalid(volume, format!("no container named {name:?}")))?;
            super::env::resource_value(resource, container, ctx.node)
                .map_err(|e| invalid(volume, e))?
        } else {
            return Err(invalid(
                volume,
                format!("item {:?} has no source", item.path),
            ));
        };
        out.insert(
            item_path(volume, &item.path)?,
            FileContent {
                data: value.into_bytes(),
                mode: file_mode(volume, item.mode.unwrap_or(default_mode))?,
                modified: None,
            },
        );
    }
    Ok(out)
}

/// Upstream renews a projected token once 80% of its life has passed, or after 24 h.
fn token_is_fresh(modified: SystemTime, expiration_seconds: i64) -> bool {
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or(Duration::ZERO);
    let life = Duration::from_secs(expiration_seconds.max(0) as u64);
    age < life.mul_f64(0.8) && age < Duration::from_secs(24 * 3600)
}

/// A token for the pod's service account, bound to the pod, from the TokenRequest
/// API (as upstream's kubelet asks for one).
async fn request_token(
    volume: &str,
    ctx: &VolumeCtx<'_>,
    audience: Option<&str>,
    expiration_seconds: i64,
) -> Result<Vec<u8>, VolumeError> {
    let ns = ctx.pod.namespace().unwrap_or_default();
    let account = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let audiences: Vec<&str> = audience.filter(|a| !a.is_empty()).into_iter().collect();
    let request = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            // Left empty, the API server's own audiences apply, as upstream's.
            "audiences": audiences,
            "expirationSeconds": expiration_seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": ctx.pod.metadata.name,
                "uid": ctx.pod.metadata.uid,
            },
        },
    });
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    let issued: serde_json::Value = api
        .create_subresource("token", &account, &PostParams::default(), &request)
        .await
        .map_err(|source| VolumeError::Api {
            volume: volume.to_string(),
            what: format!("a token for serviceaccount {account:?}"),
            source,
        })?;
    let token = issued
        .pointer("/status/token")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid(volume, "the TokenRequest API returned no token"))?;
    Ok(token.as_bytes().to_vec())
}

/// The data of a ConfigMap (text and binary keys), None when it does not exist.
async fn config_map_data(
    volume: &str,
    ctx: &VolumeCtx<'_>,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, VolumeError> {
    let ns = ctx.pod.namespace().unwrap_or_default();
    let found = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
        .get_opt(name)
        .await
        .map_err(|source| VolumeError::Api {
            volume: volume.to_string(),
            what: format!("configmap {name:?}"),
            source,
        })?;
    Ok(found.map(|cm| {
        let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (k, v) in cm.data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        for (k, v) in cm.binary_data.unwrap_or_default() {
            data.insert(k, v.0);
        }
        data
    }))
}

/// The data of a Secret, None when it does not exist.
async fn secret_data(
    volume: &str,
    ctx: &VolumeCtx<'_>,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, VolumeError> {
    let ns = ctx.pod.namespace().unwrap_or_default();
    let found = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(name)
        .await
        .map_err(|source| VolumeError::Api {
            volume: volume.to_string(),
            what: format!("secret {name:?}"),
            source,
        })?;
    Ok(found.map(|secret| {
        let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (k, v) in secret.string_data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        for (k, v) in secret.data.unwrap_or_default() {
            data.insert(k, v.0);
        }
        data
    }))
}

/// The files of an API-backed volume (configMap, secret, downwardAPI, projected) as
/// they should be now; None for other kinds of volume.
async fn api_payload(
    ctx: &VolumeCtx<'_>,
    volume: &Volume,
    dir: &Path,
) -> Result<Option<Payload>, VolumeError> {
    let name = &volume.name;
    if let Some(source) = &volume.config_map {
        let optional = source.optional.unwrap_or(false);
        let data = match config_map_data(name, ctx, &source.name).await? {
            Some(data) => data,
            None if optional => BTreeMap::new(),
            None => {
                return Err(invalid(
                    name,
                    format!("configmap {:?} not found", source.name),
                ));
            }
        };
        let what = format!("configmap {:?}", source.name);
        return key_payload(
            name,
            &data,
            source.items.as_deref(),
            source.default_mode,
            optional,
            &what,
        )
        .map(Some);
    }
    if let Some(source) = &volume.secret {
        let secret_name = source.secret_name.clone().unwrap_or_default();
        let optional = source.optional.unwrap_or(false);
        let data = match secret_data(name, ctx, &secret_name).await? {
            Some(data) => data,
            None if optional => BTreeMap::new(),
            None => return Err(invalid(name, format!("secret {secret_name:?} not found"))),
        };
        let what = format!("secret {secret_name:?}");
        return key_payload(
            name,
            &data,
            source.items.as_deref(),
            source.default_mode,
            optional,
            &what,
        )
        .map(Some);
    }
    if let Some(source) = &volume.downward_api {
        let items = source.items.clone().unwrap_or_default();
        return downward_payload(name, ctx, &items, source.default_mode).map(Some);
    }
    let Some(projected) = &volume.projected else {
        return Ok(None);
    };
    let current = current_payload(dir).unwrap_or_default();
    let mut out = Payload::new();
    for source in projected.sources.iter().flatten() {
        let part = if let Some(cm) = &source.config_map {
            let optional = cm.optional.unwrap_or(false);
            match config_map_data(name, ctx, &cm.name).await? {
                Some(data) => {
                    let what = format!("configmap {:?}", cm.name);
                    key_payload(
                        name,
                        &data,
                        cm.items.as_deref(),
                        projected.default_mode,
                        optional,
                        &what,
                    )?
                }
                None if optional => Payload::new(),
                None => return Err(invalid(name, format!("configmap {:?} not found", cm.name))),
            }
        } else if let Some(secret) = &source.secret {
            let optional = secret.optional.unwrap_or(false);
            match secret_data(name, ctx, &secret.name).await? {
                Some(data) => {
                    let what = format!("secret {:?}", secret.name);
                    key_payload(
                        name,
                        &data,
                        secret.items.as_deref(),
                        projected.default_mode,
                        optional,
                        &what,
                    )?
                }
                None if optional => Payload::new(),
                None => return Err(invalid(name, format!("secret {:?} not found", secret.name))),
            }
        } else if let Some(downward) = &source.downward_api {
            let items = downward.items.clone().unwrap_or_default();
            downward_payload(name, ctx, &items, projected.default_mode)?
        } else if let Some(token) = &source.service_account_token {
            let rel = item_path(name, &token.path)?;
            let expiration = token.expiration_seconds.unwrap_or(3600);
            // Upstream's token files are 0600 unless the projection sets a mode.
            let mode = file_mode(name, projected.default_mode.unwrap_or(0o600))?;
            let reuse = current
                .get(&rel)
                .filter(|f| f.modified.is_some_and(|m| token_is_fresh(m, expiration)));
            let file = match reuse {
                Some(file) => FileContent {
                    mode,
                    ..file.clone()
                },
                None => FileContent {
                    data: request_token(name, ctx, token.audience.as_deref(), expiration).await?,
                    mode,
                    modified: Some(SystemTime::now()),
                },
            };
            Payload::from([(rel, file)])
        } else if source.cluster_trust_bundle.is_some() {
            return Err(invalid(
                name,
                "projected source clusterTrustBundle is not supported by rind's kubelet",
            ));
        } else {
            return Err(invalid(name, "a projected source names no kind of source"));
        };
        out.extend(part);
    }
    Ok(Some(out))
}

/// Brings the API-backed volumes of a running pod up to date with their objects
/// (the kubelet's periodic volume sync); volumes not set up yet are left alone.
pub async fn refresh(ctx: &VolumeCtx<'_>) {
    let uid = ctx.pod.uid().unwrap_or_default();
    let volumes = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in &volumes {
        let Some(plugin) = api_plugin(volume) else {
            continue;
        };
        let dir = pod_volume_dir(ctx.root, &uid, plugin, &volume.name);
        if !dir.exists() {
            continue;
        }
        match api_payload(ctx, volume, &dir).await {
            Ok(Some(payload)) => match write_atomic(&volume.name, &dir, &payload) {
                Ok(true) => {
                    tracing::info!(pod = ?ctx.pod.metadata.name, volume = %volume.name, "volume updated");
                    let fs_group = ctx
                        .pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.security_context.as_ref())
                        .and_then(|sc| sc.fs_group);
                    if let Some(gid) = fs_group
                        && let Err(err) = set_group_ownership(&volume.name, &dir, gid, false)
                    {
                        tracing::warn!(pod = ?ctx.pod.metadata.name, "volume refresh: {err}");
                    }
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(pod = ?ctx.pod.metadata.name, "volume refresh: {err}"),
            },
            Ok(None) => {}
            Err(err) => tracing::info!(pod = ?ctx.pod.metadata.name, "volume refresh: {err}"),
        }
    }
}

/// The plugin directory name of an API-backed volume, as upstream's.
fn api_plugin(volume: &Volume) -> Option<&'static str> {
    if volume.config_map.is_some() {
        Some("configmap")
    } else if volume.secret.is_some() {
        Some("secret")
    } else if volume.downward_api.is_some() {
        Some("downward-api")
    } else if volume.projected.is_some() {
        Some("projected")
    } else {
        None
    }
}

/// Everything volumes are made from.
pub struct VolumeCtx<'a> {
    pub client: &'a Client,
    pub pod: &'a Pod,
    /// Where pod directories live ([`PODS_DIR`] in a node).
    pub root: &'a Path,
    /// The pod's fields, for downwardAPI files.
    pub fields: &'a FieldValues<'a>,
    pub node: NodeAllocatable,
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
async fn prepare(ctx: &VolumeCtx<'_>, volume: &Volume) -> Result<PathBuf, VolumeError> {
    let uid = ctx.pod.uid().unwrap_or_default();
    let ns = ctx.pod.namespace().unwrap_or_default();
    let name = &volume.name;
    if let Some(empty) = &volume.empty_dir {
        let dir = pod_volume_dir(ctx.root, &uid, "empty-dir", name);
        tokio::fs::create_dir_all(&dir).await.map_err(io(name))?;
        match empty.medium.as_deref().unwrap_or("") {
            "" => {}
            "Memory" => mount_tmpfs(name, &dir, empty.size_limit.as_ref())?,
            other => {
                return Err(invalid(
                    name,
                    format!("emptyDir medium {other:?} is not supported by rind's kubelet"),
                ));
            }
        }
        tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .await
            .map_err(io(name))?;
        return Ok(dir);
    }
    if let Some(host) = &volume.host_path {
        return prepare_host_path(name, host);
    }
    if volume.persistent_volume_claim.is_some() {
        return claim_path(ctx.client, &ns, volume).await;
    }
    let Some(plugin) = api_plugin(volume) else {
        return Err(VolumeError::Unsupported(name.clone()));
    };
    let dir = pod_volume_dir(ctx.root, &uid, plugin, name);
    let Some(payload) = api_payload(ctx, volume, &dir).await? else {
        return Err(VolumeError::Unsupported(name.clone()));
    };
    write_atomic(name, &dir, &payload)?;
    Ok(dir)
}

/// Mounts a tmpfs for a memory-backed emptyDir, its size the volume's sizeLimit
/// (the kernel's default of half the node's memory without one).
fn mount_tmpfs(
    volume: &str,
    dir: &Path,
    size_limit: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Result<(), VolumeError> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let size = match size_limit {
        Some(q) => Some(
            rind_api::quantity::Quantity::parse(&q.0)
                .map(|q| q.value())
                .filter(|v| *v > 0)
                .ok_or_else(|| {
                    invalid(
                        volume,
                        format!("emptyDir sizeLimit {:?} is not a size", q.0),
                    )
                })?,
        ),
        None => None,
    };
    let options = size.map(|bytes| format!("size={bytes}"));
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        options.as_deref(),
    )
    .map_err(|errno| io(volume)(std::io::Error::from(errno)))
}

/// Volumes of one pod made ready before its containers are created, by name, with
/// their path on the node: filled while the pod's sandbox is being created (upstream's
/// kubelet likewise mounts a pod's volumes before it creates the sandbox), so the API
/// round trips of a service-account token or a configMap do not add to the pod's start.
#[derive(Default)]
pub struct Prepared(std::sync::Mutex<HashMap<String, PathBuf>>);

impl Prepared {
    fn get(&self, name: &str) -> Option<PathBuf> {
        self.0.lock().ok().and_then(|m| m.get(name).cloned())
    }

    fn insert(&self, name: &str, path: PathBuf) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(name.to_string(), path);
        }
    }
}

/// Whether a volume's files carry a `status.` field (the pod's IP): those wait until
/// the sandbox has given the pod its address.
fn needs_pod_status(volume: &Volume) -> bool {
    let status_ref = |items: Option<&Vec<DownwardAPIVolumeFile>>| {
        items.into_iter().flatten().any(|item| {
            item.field_ref
                .as_ref()
                .is_some_and(|f| f.field_path.starts_with("status."))
        })
    };
    status_ref(volume.downward_api.as_ref().and_then(|d| d.items.as_ref()))
        || volume
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .into_iter()
            .flatten()
            .any(|source| status_ref(source.downward_api.as_ref().and_then(|d| d.items.as_ref())))
}

/// Makes ready, all at once, each volume of the pod that one of its containers mounts
/// and that does not wait on the sandbox. A volume that fails here is not recorded:
/// [`mounts`] tries it again and reports the failure as it always does.
pub async fn prepare_ahead(ctx: &VolumeCtx<'_>, prepared: &Prepared) {
    let Some(spec) = ctx.pod.spec.as_ref() else {
        return;
    };
    let mounted: std::collections::HashSet<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| m.name.as_str())
        .collect();
    let ready = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| mounted.contains(v.name.as_str()) && !needs_pod_status(v))
        .map(|volume| async move { (volume, prepare(ctx, volume).await) });
    for (volume, result) in futures::future::join_all(ready).await {
        if let Ok(path) = result {
            prepared.insert(&volume.name, path);
        }
    }
}

/// The CRI mounts for `container`: each of its volumeMounts, with the volume made ready
/// first unless it is in `prepared` already. `root` is where pod directories live
/// ([`PODS_DIR`] in a node).
pub async fn mounts(
    ctx: &VolumeCtx<'_>,
    container: &Container,
    env: &HashMap<String, String>,
    prepared: &Prepared,
) -> Result<Vec<v1::Mount>, VolumeError> {
    let volumes = ctx
        .pod
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
                let path = match prepared.get(&volume.name) {
                    Some(path) => path,
                    None => {
                        let path = prepare(ctx, volume).await?;
                        prepared.insert(&volume.name, path.clone());
                        path
                    }
                };
                let fs_group = ctx
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.security_context.as_ref())
                    .and_then(|sc| sc.fs_group);
                if let Some(gid) = fs_group
                    && (volume.empty_dir.is_some() || api_plugin(volume).is_some())
                {
                    set_group_ownership(&volume.name, &path, gid, volume.empty_dir.is_some())?;
                }
                ready.insert(volume.name.clone(), path.clone());
                path
            }
        };
        // subPathExpr expands the container's variables, as its env does.
        let sub_path = match mount.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
            Some(expr) => Some(expand(expr, env)),
            None => mount.sub_path.clone().filter(|s| !s.is_empty()),
        };
        let host_path = match sub_path.as_deref() {
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
        // API-backed volumes are read-only to containers, as upstream mounts them.
        let projected = api_plugin(volume).is_some();
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
    fn maps_format_as_upstreams_downward_api() {
        let labels = BTreeMap::from([
            ("b".to_string(), "two \"2\"".to_string()),
            ("a".to_string(), "one".to_string()),
        ]);
        assert_eq!(format_map(Some(&labels)), "a=\"one\"\nb=\"two \\\"2\\\"\"");
        assert_eq!(format_map(None), "");
    }

    #[test]
    fn tokens_are_renewed_at_eighty_percent_of_their_life() {
        let now = SystemTime::now();
        assert!(token_is_fresh(now - Duration::from_secs(2000), 3600));
        assert!(!token_is_fresh(now - Duration::from_secs(3000), 3600));
        assert!(!token_is_fresh(
            now - Duration::from_secs(25 * 3600),
            10 * 24 * 3600
        ));
    }

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
        // Every name goes through the ..data link to a timestamped generation.
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        assert!(first.to_string_lossy().starts_with("..20"), "{first:?}");
        // The same content again changes nothing.
        write_files("v", &dir, &data, None, None, false).unwrap();
        assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), first);
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
        // The old generation is gone once the link moved on.
        let second = std::fs::read_link(dir.join("..data")).unwrap();
        assert_ne!(second, first);
        assert!(!dir.join(&first).exists());
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
