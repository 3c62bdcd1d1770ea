//! The node half of the local-path provisioner: when a local-path volume pinned to this
//! node is Released under the Delete policy, removes its directory here and then the
//! PV object. Only the node the volume's affinity names acts on it, so with several
//! nodes each volume has exactly one owner and the PV never disappears while its data
//! still sits on a disk nobody will clean (see src/controllers/volume/mod.rs).

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::DeleteParams;
use kube::{Api, Client, ResourceExt};
use rind_api::storage::{
    LOCAL_PATH_PROVISIONER, LOCAL_PATH_ROOT, PROVISIONED_BY, pinned_hostnames,
};
use rind_runtime::reflect::reflected;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// A failed removal is tried again this often even without a change to the volume.
const RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ReclaimError {
    #[error("volume {volume}: path {path:?} is not a local-path directory")]
    ForeignPath { volume: String, path: String },
    #[error("removing {path}: {source}")]
    Remove {
        path: String,
        source: std::io::Error,
    },
    #[error("deleting the PV: {0}")]
    Api(#[from] kube::Error),
}

/// Whether this node must reclaim the volume now.
pub fn ours_to_delete(pv: &PersistentVolume, node: &str) -> bool {
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    let local =
        pv.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(LOCAL_PATH_PROVISIONER);
    released
        && delete
        && local
        && pv.metadata.deletion_timestamp.is_none()
        && pinned_hostnames(pv).iter().any(|h| h == node)
}

/// Where the volume's directory is under `root` ("/" in a node). Only plain paths
/// inside the provisioner's root qualify: a PV someone edited to point elsewhere must
/// never make us delete that.
pub fn volume_dir(pv: &PersistentVolume, root: &Path) -> Result<PathBuf, ReclaimError> {
    let path = pv
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| h.path.clone())
        .unwrap_or_default();
    let foreign = || ReclaimError::ForeignPath {
        volume: pv.name_any(),
        path: path.clone(),
    };
    let relative = Path::new(&path)
        .strip_prefix(LOCAL_PATH_ROOT)
        .map_err(|_| foreign())?;
    let plain = relative.components().count() == 1
        && relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(foreign());
    }
    let root_relative = Path::new(LOCAL_PATH_ROOT)
        .strip_prefix("/")
        .map_err(|_| foreign())?;
    Ok(root.join(root_relative).join(relative))
}

async fn reclaim(
    api: &Api<PersistentVolume>,
    pv: &PersistentVolume,
    root: &Path,
) -> Result<(), ReclaimError> {
    let dir = volume_dir(pv, root)?;
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ReclaimError::Remove {
                path: dir.display().to_string(),
                source,
            });
        }
    }
    match api.delete(&pv.name_any(), &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(volume = %pv.name_any(), dir = %dir.display(), "reclaimed a local-path volume");
    Ok(())
}

/// Reclaims this node's released local-path volumes for ever; `root` is where the
/// node's filesystem starts ("/" in a node, a scratch directory in tests).
pub async fn run(client: Client, node: String, root: PathBuf) {
    let api: Api<PersistentVolume> = Api::all(client);
    let (store, events) = reflected(api.clone());
    let mut events = std::pin::pin!(events);
    loop {
        match tokio::time::timeout(RETRY, events.next()).await {
            Ok(None) => return,
            Ok(Some(Err(e))) => {
                tracing::warn!("volume watch error: {e}");
                continue;
            }
            Ok(Some(Ok(_))) | Err(_) => {}
        }
        if store.wait_until_ready().await.is_err() {
            return;
        }
        for pv in store.state() {
            if ours_to_delete(&pv, &node)
                && let Err(e) = reclaim(&api, &pv, &root).await
            {
                tracing::warn!(volume = %pv.name_any(), "cannot reclaim: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(path: &str) -> PersistentVolume {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pvc-1", "annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER}},
            "spec": {"hostPath": {"path": path}, "persistentVolumeReclaimPolicy": "Delete",
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}},
            "status": {"phase": "Released"},
        }))
        .unwrap()
    }

    #[test]
    fn only_plain_local_path_directories() {
        let root = Path::new("/scratch");
        assert_eq!(
            volume_dir(&pv("/var/local-path-provisioner/pvc-1_default_d"), root).unwrap(),
            Path::new("/scratch/var/local-path-provisioner/pvc-1_default_d")
        );
        for bad in [
            "/etc",
            "/var/local-path-provisioner",
            "/var/local-path-provisioner/../../etc",
            "/var/local-path-provisioner/a/b",
        ] {
            assert!(volume_dir(&pv(bad), root).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_pinned_node_reclaims() {
        let v = pv("/var/local-path-provisioner/x");
        assert!(ours_to_delete(&v, "n1"));
        assert!(!ours_to_delete(&v, "n2"));
        let mut retained = v.clone();
        retained
            .spec
            .as_mut()
            .unwrap()
            .persistent_volume_reclaim_policy = Some("Retain".into());
        assert!(!ours_to_delete(&retained, "n1"));
    }
}
