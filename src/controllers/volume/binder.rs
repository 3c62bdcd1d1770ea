//! Binding: pairs each pending claim with the smallest available volume that satisfies
//! it (class, access modes, capacity, selector, volume mode, and for a claim whose pod
//! was scheduled, the node), writes both halves of the bind (PV claimRef first, then
//! the claim's volumeName, as upstream orders them so a crash between leaves a PV that
//! the next pass finishes binding), and keeps the phases of both current.

use super::{Ctx, provisioner};
use crate::publish_event;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use rind_api::object_selector::label_selector_matches;
use rind_api::quantity::Quantity;
use rind_api::storage::{
    BIND_COMPLETED, BOUND_BY_CONTROLLER, LOCAL_PATH_PROVISIONER, PROVISIONED_BY, SELECTED_NODE,
    STORAGE_PROVISIONER, claim_class, pinned_hostnames, volume_fits_node, waits_for_consumer,
};
use serde_json::json;
use std::sync::Arc;

pub(super) async fn sync_all(ctx: &Ctx) {
    for claim in ctx.claims.state() {
        if let Err(e) = sync_claim(ctx, &claim).await {
            tracing::warn!(claim = %key(&claim), "claim sync failed: {e}");
        }
    }
    for pv in ctx.volumes.state() {
        if let Err(e) = sync_volume(ctx, &pv).await {
            tracing::warn!(volume = %pv.name_any(), "volume sync failed: {e}");
        }
    }
}

fn key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    )
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether the volume's claimRef names this claim (a ref without uid is a pre-binding
/// by name that any claim of that name may take).
fn refers_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name.as_deref() == claim.metadata.name.as_deref()
        && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

/// Bytes of `storage` in a resource list, rounded up as upstream counts them.
fn storage(
    map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> Option<i64> {
    map.and_then(|m| m.get("storage"))
        .and_then(|q| Quantity::parse(&q.0))
        .map(|q| q.value())
}

/// Whether an unclaimed volume satisfies the claim (node: where its pod was scheduled).
pub fn satisfies(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
    node: Option<&Node>,
) -> bool {
    let (Some(spec), Some(want)) = (pv.spec.as_ref(), claim.spec.as_ref()) else {
        return false;
    };
    if spec.claim_ref.is_some() || !matches!(volume_phase(pv), "Available" | "Pending") {
        return false;
    }
    if spec.storage_class_name.as_deref().unwrap_or("") != claim_class(claim) {
        return false;
    }
    let mode = |m: Option<&String>| m.map_or("Filesystem", String::as_str).to_string();
    if mode(spec.volume_mode.as_ref()) != mode(want.volume_mode.as_ref()) {
        return false;
    }
    let offered = spec.access_modes.clone().unwrap_or_default();
    if !want
        .access_modes
        .iter()
        .flatten()
        .all(|m| offered.contains(m))
    {
        return false;
    }
    let requested = storage(want.resources.as_ref().and_then(|r| r.requests.as_ref())).unwrap_or(0);
    if storage(spec.capacity.as_ref()).unwrap_or(0) < requested {
        return false;
    }
    if let Some(selector) = &want.selector
        && !label_selector_matches(selector, pv.metadata.labels.as_ref())
    {
        return false;
    }
    node.is_none_or(|n| volume_fits_node(pv, n))
}

/// The smallest volume that satisfies the claim, as upstream picks (least waste).
pub fn best_match<'a>(
    volumes: &'a [Arc<PersistentVolume>],
    claim: &PersistentVolumeClaim,
    node: Option<&Node>,
) -> Option<&'a PersistentVolume> {
    volumes
        .iter()
        .map(|v| &**v)
        .filter(|pv| satisfies(pv, claim, node))
        .min_by(|a, b| {
            let size = |pv: &PersistentVolume| {
                storage(pv.spec.as_ref().and_then(|s| s.capacity.as_ref())).unwrap_or(0)
            };
            size(a).cmp(&size(b))
        })
}

async fn sync_claim(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let volumes = ctx.volumes.state();
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty());
    if let Some(name) = volume_name {
        let Some(pv) = volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(&name))
        else {
            if claim_phase(claim) == "Bound" {
                set_claim_phase(ctx, claim, "Lost").await?;
                publish_event(
&ctx.recorder,
                    claim,
                    EventType::Warning,
                    "ClaimLost",
                    "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!".into(),
                )
                .await;
            }
            return Ok(());
        };
        let unclaimed = pv.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
        if refers_to(pv, claim) || unclaimed {
            return bind(ctx, pv, claim).await;
        }
        // Asked for a volume someone else holds: stay Pending until it is free.
        return Ok(());
    }
    if let Some(pv) = volumes.iter().find(|v| refers_to(v, claim)) {
        return bind(ctx, pv, claim).await;
    }
    let class_name = claim_class(claim);
    let class = ctx
        .classes
        .state()
        .into_iter()
        .find(|c| !class_name.is_empty() && c.metadata.name.as_deref() == Some(class_name));
    let selected = claim.annotations().get(SELECTED_NODE).cloned();
    if class.as_deref().is_some_and(waits_for_consumer) && selected.is_none() {
        // Binding waits until the scheduler places a pod that uses the claim.
        return Ok(());
    }
    let node = selected.as_ref().and_then(|n| {
        ctx.nodes
            .state()
            .into_iter()
            .find(|node| node.metadata.name.as_deref() == Some(n.as_str()))
    });
    if let Some(pv) = best_match(&volumes, claim, node.as_deref()) {
        return bind(ctx, pv, claim).await;
    }
    let Some(class) = class else {
        return Ok(());
    };
    let announced = claim.annotations().get(STORAGE_PROVISIONER) == Some(&class.provisioner);
    if !announced {
        provisioner::announce(ctx, claim, &class.provisioner).await?;
    }
    if class.provisioner != LOCAL_PATH_PROVISIONER {
        // Another provisioner's job; the annotation tells it the claim is waiting.
        return Ok(());
    }
    match selected {
        Some(node) => provisioner::provision(ctx, claim, &class, &node).await,
        None => {
            if !announced {
                publish_event(
&ctx.recorder,
                    claim,
                    EventType::Warning,
                    "ProvisioningFailed",
                    "configuration error, no node was specified: local-path volumes need a class with volumeBindingMode WaitForFirstConsumer".into(),
                )
                .await;
            }
            Ok(())
        }
    }
}

/// Writes both halves of the bind, each only when not yet written.
async fn bind(
    ctx: &Ctx,
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), kube::Error> {
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv_name = pv.name_any();
    let has_uid = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref())
        .is_some_and(|u| Some(u) == claim.metadata.uid.as_deref());
    if !has_uid {
        // The resourceVersion guards against binding one volume to two claims at once.
        let patch = json!({
            "metadata": {
                "resourceVersion": pv.resource_version(),
                "annotations": {BOUND_BY_CONTROLLER: "yes"},
            },
            "spec": {"claimRef": {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "namespace": claim.namespace(),
                "name": claim.name_any(),
                "uid": claim.uid(),
                "resourceVersion": claim.resource_version(),
            }},
        });
        pvs.patch(&pv_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    if volume_phase(pv) != "Bound" {
        let patch = json!({"status": {"phase": "Bound"}});
        pvs.patch_status(&pv_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    let current = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    let completed = claim.annotations().get(BIND_COMPLETED).is_some();
    if current != Some(pv_name.as_str()) || !completed {
        let mut annotations = serde_json::Map::new();
        annotations.insert(BIND_COMPLETED.into(), json!("yes"));
        if current != Some(pv_name.as_str()) {
            annotations.insert(BOUND_BY_CONTROLLER.into(), json!("yes"));
        }
        let patch = json!({
            "metadata": {"annotations": annotations},
            "spec": {"volumeName": pv_name},
        });
        claims
            .patch(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    if claim_phase(claim) != "Bound" {
        let spec = pv.spec.clone().unwrap_or_default();
        let patch = json!({"status": {
            "phase": "Bound",
            "accessModes": spec.access_modes,
            "capacity": spec.capacity,
        }});
        claims
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        tracing::info!(claim = %key(claim), volume = %pv_name, "bound");
    }
    Ok(())
}

async fn set_claim_phase(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    phase: &str,
) -> Result<(), kube::Error> {
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    let patch = json!({"status": {"phase": phase}});
    claims
        .patch_status(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

async fn set_volume_phase(
    ctx: &Ctx,
    pv: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Result<(), kube::Error> {
    let patch = json!({"status": {"phase": phase, "message": message}});
    Api::<PersistentVolume>::all(ctx.client.clone())
        .patch_status(
            &pv.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

async fn sync_volume(ctx: &Ctx, pv: &PersistentVolume) -> Result<(), kube::Error> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let phase = volume_phase(pv);
    let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        if phase != "Available" {
            set_volume_phase(ctx, pv, "Available", None).await?;
        }
        return Ok(());
    };
    let ref_uid = claim_ref.uid.clone().unwrap_or_default();
    let ns = claim_ref.namespace.clone().unwrap_or_default();
    let name = claim_ref.name.clone().unwrap_or_default();
    let cached = ctx.claims.state().into_iter().find(|c| {
        c.metadata.namespace.as_deref() == Some(ns.as_str())
            && c.metadata.name.as_deref() == Some(name.as_str())
    });
    let alive = |c: &PersistentVolumeClaim| {
        ref_uid.is_empty() || c.metadata.uid.as_deref() == Some(ref_uid.as_str())
    };
    if cached.as_deref().is_some_and(alive) {
        if phase == "Pending" {
            // Pre-bound to a claim that has not taken it yet.
            set_volume_phase(ctx, pv, "Available", None).await?;
        }
        return Ok(());
    }
    if ref_uid.is_empty() {
        if phase == "Pending" {
            set_volume_phase(ctx, pv, "Available", None).await?;
        }
        return Ok(());
    }
    // The cache may lag a claim created a moment ago: only the server's word that the
    // claim is gone releases a volume.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    if claims.get_opt(&name).await?.as_ref().is_some_and(alive) {
        return Ok(());
    }
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.clone())
        .unwrap_or_else(|| "Retain".into());
    match phase {
        "Released" => {}
        "Failed" => return Ok(()),
        _ => {
            set_volume_phase(ctx, pv, "Released", None).await?;
            tracing::info!(volume = %pv.name_any(), %policy, "claim gone; volume released");
            // The phase change comes back through the watch and reclaims then.
            return Ok(());
        }
    }
    match policy.as_str() {
        "Delete"
            if pv.annotations().get(PROVISIONED_BY).map(String::as_str)
                == Some(LOCAL_PATH_PROVISIONER) =>
        {
            let nodes = ctx.nodes.state();
            let hosts = pinned_hostnames(pv);
            let node_alive = hosts.iter().any(|h| {
                nodes
                    .iter()
                    .any(|n| n.metadata.name.as_deref() == Some(h.as_str()))
            });
            if !node_alive {
                // Nobody is left to clean the directory; the object at least goes.
                Api::<PersistentVolume>::all(ctx.client.clone())
                    .delete(&pv.name_any(), &Default::default())
                    .await?;
            }
            Ok(())
        }
        "Delete" => {
            let message = format!(
                "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
                pv.name_any()
            );
            set_volume_phase(ctx, pv, "Failed", Some(&message)).await?;
            publish_event(
                &ctx.recorder,
                pv,
                EventType::Warning,
                "VolumeFailedDelete",
                message,
            )
            .await;
            Ok(())
        }
        "Recycle" => {
            let message = "Recycle is not supported; use Delete or Retain".to_string();
            set_volume_phase(ctx, pv, "Failed", Some(&message)).await?;
            publish_event(
                &ctx.recorder,
                pv,
                EventType::Warning,
                "VolumeFailedRecycle",
                message,
            )
            .await;
            Ok(())
        }
        // Retain: the data stays and the volume stays Released until an admin acts.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(json: serde_json::Value) -> Arc<PersistentVolume> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    fn claim() -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}},
                     "selector": {"matchLabels": {"tier": "fast"}}},
        }))
        .unwrap()
    }

    fn volume(
        name: &str,
        size: &str,
        class: &str,
        modes: &[&str],
        tier: &str,
    ) -> Arc<PersistentVolume> {
        pv(json!({
            "metadata": {"name": name, "labels": {"tier": tier}},
            "spec": {"storageClassName": class, "accessModes": modes,
                     "capacity": {"storage": size}, "hostPath": {"path": "/x"}},
            "status": {"phase": "Available"},
        }))
    }

    #[test]
    fn smallest_satisfying_volume_wins() {
        let volumes = vec![
            volume("small", "500Mi", "manual", &["ReadWriteOnce"], "fast"),
            volume("big", "10Gi", "manual", &["ReadWriteOnce"], "fast"),
            volume(
                "fit",
                "2Gi",
                "manual",
                &["ReadWriteOnce", "ReadOnlyMany"],
                "fast",
            ),
            volume("other-class", "1Gi", "standard", &["ReadWriteOnce"], "fast"),
            volume("wrong-mode", "1Gi", "manual", &["ReadOnlyMany"], "fast"),
            volume("unselected", "1Gi", "manual", &["ReadWriteOnce"], "slow"),
        ];
        let found = best_match(&volumes, &claim(), None).map(|v| v.name_any());
        assert_eq!(found.as_deref(), Some("fit"));
        let mut block = claim();
        block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        assert!(best_match(&volumes, &block, None).is_none());
    }

    #[test]
    fn claimed_volumes_are_not_offered() {
        let taken = pv(json!({
            "metadata": {"name": "taken", "labels": {"tier": "fast"}},
            "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                     "capacity": {"storage": "1Gi"},
                     "claimRef": {"namespace": "default", "name": "other", "uid": "u9"}},
            "status": {"phase": "Bound"},
        }));
        assert!(best_match(std::slice::from_ref(&taken), &claim(), None).is_none());
        assert!(!refers_to(&taken, &claim()));
    }
}
