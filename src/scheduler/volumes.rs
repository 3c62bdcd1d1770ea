//! Volume binding for the scheduler: a pod whose claims are bound can only go where
//! their volumes are reachable (the PV's node affinity); a pod with an unbound claim of
//! an Immediate class waits until the volume controller binds it; a claim of a
//! WaitForFirstConsumer class gets `volume.kubernetes.io/selected-node` set to the node
//! chosen for its pod, and the pod is bound only once the claim is (upstream's PreBind
//! waits the same way), so the kubelet never sees a pod whose volume does not exist.

use super::filters::Rejection;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use rind_api::storage::{SELECTED_NODE, volume_fits_node, waits_for_consumer};
use rind_runtime::reflect::reflect_and_notify;
use std::sync::Arc;

/// The storage objects the scheduler watches.
pub struct Caches {
    pub claims: Store<PersistentVolumeClaim>,
    pub volumes: Store<PersistentVolume>,
    pub classes: Store<StorageClass>,
}

impl Caches {
    /// Starts reflectors for claims, volumes and classes; every change they see is
    /// also sent to the scheduling loop as `wake()`, so pods waiting on a claim move
    /// on. Returns once each has its first list, with the tasks that keep them filled.
    pub async fn start<I: Send + 'static>(
        client: &kube::Client,
        tx: tokio::sync::mpsc::UnboundedSender<I>,
        wake: fn() -> I,
    ) -> anyhow::Result<(Caches, [tokio::task::JoinHandle<()>; 3])> {
        // Each change wakes the scheduling loop; a loop that is gone ends the watch.
        let waking = |tx: tokio::sync::mpsc::UnboundedSender<I>| move || tx.send(wake()).is_ok();
        let config = watcher::Config::default;
        let (claims, claims_task) = reflect_and_notify(
            Api::all(client.clone()),
            config(),
            "claim",
            waking(tx.clone()),
        );
        let (volumes, volumes_task) = reflect_and_notify(
            Api::all(client.clone()),
            config(),
            "volume",
            waking(tx.clone()),
        );
        let (classes, classes_task) = reflect_and_notify(
            Api::all(client.clone()),
            config(),
            "storage class",
            waking(tx),
        );
        let tasks = [claims_task, volumes_task, classes_task];
        let caches = Caches {
            claims,
            volumes,
            classes,
        };
        for (ready, what) in [
            (caches.claims.wait_until_ready().await, "claim"),
            (caches.volumes.wait_until_ready().await, "volume"),
            (caches.classes.wait_until_ready().await, "storage class"),
        ] {
            if ready.is_err() {
                for task in &tasks {
                    task.abort();
                }
                anyhow::bail!("the {what} watch ended before its first list");
            }
        }
        Ok((caches, tasks))
    }
}

/// What a pod's claims ask of the node it goes to.
#[derive(Default)]
pub struct PodClaims {
    /// Volumes of bound claims: the node must satisfy their affinity.
    bound: Vec<Arc<PersistentVolume>>,
    /// Unbound claims of WaitForFirstConsumer classes.
    delayed: Vec<Arc<PersistentVolumeClaim>>,
}

fn volume_conflict() -> Rejection {
    Rejection::Volume("node(s) had volume node affinity conflict".into())
}

/// Collects the pod's claims; Err when the pod cannot go anywhere yet (the same
/// reason then holds for every node, as upstream reports it).
pub fn claims_of(pod: &Pod, caches: &Caches) -> Result<PodClaims, Rejection> {
    let ns = pod.namespace().unwrap_or_default();
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect();
    let mut out = PodClaims::default();
    if names.is_empty() {
        return Ok(out);
    }
    let claims = caches.claims.state();
    for name in names {
        let Some(claim) = claims.iter().find(|c| {
            c.metadata.namespace.as_deref() == Some(ns.as_str())
                && c.metadata.name.as_deref() == Some(name.as_str())
        }) else {
            return Err(Rejection::Volume(format!(
                "persistentvolumeclaim \"{name}\" not found"
            )));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(Rejection::Volume(format!(
                "persistentvolumeclaim \"{name}\" is being deleted"
            )));
        }
        let volume = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty());
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if let (Some(volume), true) = (volume, bound) {
            let Some(pv) = caches
                .volumes
                .state()
                .into_iter()
                .find(|v| v.metadata.name.as_deref() == Some(volume.as_str()))
            else {
                return Err(Rejection::Volume(
                    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
                        .into(),
                ));
            };
            out.bound.push(pv);
            continue;
        }
        let class = rind_api::storage::claim_class(claim);
        let delayed = caches
            .classes
            .state()
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(class) && waits_for_consumer(c));
        if !delayed || class.is_empty() {
            return Err(Rejection::Volume(
                "pod has unbound immediate PersistentVolumeClaims".into(),
            ));
        }
        out.delayed.push(claim.clone());
    }
    Ok(out)
}

impl PodClaims {
    /// The volume filter for one node.
    pub fn check(&self, node: &Node) -> Result<(), Rejection> {
        if self.bound.iter().any(|pv| !volume_fits_node(pv, node)) {
            return Err(volume_conflict());
        }
        // A claim already being provisioned for a node keeps its pod on that node.
        let name = node.metadata.name.as_deref().unwrap_or("");
        let elsewhere = self.delayed.iter().any(|c| {
            c.annotations()
                .get(SELECTED_NODE)
                .is_some_and(|n| n != name)
        });
        if elsewhere {
            return Err(volume_conflict());
        }
        Ok(())
    }

    /// Whether every claim is bound, so the pod itself can be bound.
    pub fn all_bound(&self) -> bool {
        self.delayed.is_empty()
    }

    /// Asks for the pod's delayed claims to be provisioned on `node`.
    pub async fn select_node(&self, client: &kube::Client, node: &str) -> Result<(), kube::Error> {
        for claim in &self.delayed {
            if claim.annotations().get(SELECTED_NODE).map(String::as_str) == Some(node) {
                continue;
            }
            let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
            Api::<PersistentVolumeClaim>::namespaced(
                client.clone(),
                &claim.namespace().unwrap_or_default(),
            )
            .patch(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn store<K>(items: Vec<K>) -> Store<K>
    where
        K: kube::Resource + Clone + std::fmt::Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let (reader, mut writer) = reflector::store::<K>();
        writer.apply_watcher_event(&Event::Init);
        for item in items {
            writer.apply_watcher_event(&Event::InitApply(item));
        }
        writer.apply_watcher_event(&Event::InitDone);
        reader
    }

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn caches(claims: Vec<serde_json::Value>, volumes: Vec<serde_json::Value>) -> Caches {
        Caches {
            claims: store(claims.into_iter().map(from).collect()),
            volumes: store(volumes.into_iter().map(from).collect()),
            classes: store(vec![
                from(
                    serde_json::json!({"metadata": {"name": "standard"}, "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}),
                ),
                from(
                    serde_json::json!({"metadata": {"name": "now"}, "provisioner": "x", "volumeBindingMode": "Immediate"}),
                ),
            ]),
        }
    }

    fn pod() -> Pod {
        from(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
        }))
    }

    fn node(name: &str) -> Node {
        from(
            serde_json::json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
        )
    }

    #[test]
    fn bound_volume_pins_the_pod() {
        let c = caches(
            vec![
                serde_json::json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {"storageClassName": "standard", "volumeName": "pv1"}, "status": {"phase": "Bound"}}),
            ],
            vec![
                serde_json::json!({"metadata": {"name": "pv1"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}]}}}}),
            ],
        );
        let claims = claims_of(&pod(), &c).unwrap();
        assert!(claims.check(&node("a")).is_ok());
        assert_eq!(claims.check(&node("b")), Err(volume_conflict()));
        assert!(claims.all_bound());
    }

    #[test]
    fn unbound_claims() {
        let wffc = caches(
            vec![
                serde_json::json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {"storageClassName": "standard"}}),
            ],
            vec![],
        );
        let claims = claims_of(&pod(), &wffc).unwrap();
        assert!(claims.check(&node("b")).is_ok());
        assert!(!claims.all_bound());
        let immediate = caches(
            vec![
                serde_json::json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {"storageClassName": "now"}}),
            ],
            vec![],
        );
        assert!(
            matches!(claims_of(&pod(), &immediate), Err(Rejection::Volume(m)) if m.contains("unbound immediate"))
        );
        let missing = caches(vec![], vec![]);
        assert!(
            matches!(claims_of(&pod(), &missing), Err(Rejection::Volume(m)) if m.contains("not found"))
        );
    }
}
