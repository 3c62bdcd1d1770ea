//! The control-plane half of the local-path provisioner: for a claim of a
//! `rancher.io/local-path` class whose pod the scheduler placed (the claim's
//! selected-node annotation), creates a hostPath PV in that node's
//! /var/local-path-provisioner, pinned to the node by node affinity and pre-bound to the
//! claim; the binder then completes the bind. The directory itself is made by the
//! node's kubelet when a pod mounts it (hostPath type DirectoryOrCreate) and removed by
//! that kubelet on Delete reclaim (src/kubelet/local_path.rs).

use super::Ctx;
use crate::publish_event;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use rind_api::storage::{
    BETA_STORAGE_PROVISIONER, HOSTNAME_LABEL, LOCAL_PATH_PROVISIONER, PROVISIONED_BY,
    STORAGE_PROVISIONER, local_path_dir,
};
use serde_json::json;

/// Marks the claim as waiting for `provisioner`, as upstream's controller does.
pub(super) async fn announce(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    provisioner: &str,
) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {"annotations": {
        STORAGE_PROVISIONER: provisioner,
        BETA_STORAGE_PROVISIONER: provisioner,
    }}});
    Api::<PersistentVolumeClaim>::namespaced(
        ctx.client.clone(),
        &claim.namespace().unwrap_or_default(),
    )
    .patch(
        &claim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// The PV the local-path provisioner makes for `claim` on `node`.
pub fn local_path_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
) -> Result<PersistentVolume, serde_json::Error> {
    let uid = claim.uid().unwrap_or_default();
    let ns = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let spec = claim.spec.clone().unwrap_or_default();
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned());
    serde_json::from_value(json!({
        "metadata": {
            // The name upstream's provisioners give: unique per claim, so a retry after
            // a crash finds the volume it already made instead of making a second one.
            "name": format!("pvc-{uid}"),
            "annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": request.map_or_else(|| "0".to_string(), |q| q.0)},
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "storageClassName": class.metadata.name,
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "hostPath": {"path": local_path_dir(&uid, &ns, &name), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}
            ]}]}},
            "claimRef": {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "namespace": ns,
                "name": name,
                "uid": uid,
                "resourceVersion": claim.resource_version(),
            },
        },
    }))
}

pub(super) async fn provision(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
) -> Result<(), kube::Error> {
    let pv = local_path_volume(claim, class, node).map_err(kube::Error::SerdeError)?;
    let pv_name = pv.name_any();
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .create(&PostParams::default(), &pv)
        .await
    {
        Ok(_) => {
            tracing::info!(volume = %pv_name, %node, "provisioned a local-path volume");
            publish_event(
                &ctx.recorder,
                claim,
                EventType::Normal,
                "ProvisioningSucceeded",
                format!("Successfully provisioned volume {pv_name}"),
            )
            .await;
            Ok(())
        }
        // Made on an earlier pass whose watch event has not arrived yet.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => {
            publish_event(
                &ctx.recorder,
                claim,
                EventType::Warning,
                "ProvisioningFailed",
                format!(
                    "failed to provision volume with StorageClass \"{}\": {e}",
                    class.name_any()
                ),
            )
            .await;
            Err(e)
        }
    }
}
