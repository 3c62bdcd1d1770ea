//! The persistent volume controller: binds claims to volumes (binder.rs), provisions
//! local-path volumes for claims of classes whose provisioner is
//! `rancher.io/local-path` (provisioner.rs), and moves volumes whose claim is gone to
//! Released, where their reclaim policy decides what happens.
//!
//! Deleting a local-path volume means removing its directory on its node, which only
//! something running on that node can do. The volume's node affinity names exactly one
//! node, so that node's kubelet (src/kubelet/local_path.rs) is the one that removes the
//! directory and then the PV object; no two nodes ever act on the same volume. Only
//! when that node no longer exists does this controller delete the PV itself (there is
//! no directory left to clean up with it).

mod binder;
mod provisioner;

use super::{ControllerError, RESYNC, recorder, reflected};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use std::sync::Arc;
use tokio::sync::Notify;

pub(super) struct Ctx {
    client: Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    nodes: Store<Node>,
    recorder: Recorder,
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (claims, claim_events) = reflected(Api::<PersistentVolumeClaim>::all(client.clone()));
    let (volumes, volume_events) = reflected(Api::<PersistentVolume>::all(client.clone()));
    let (classes, class_events) = reflected(Api::<StorageClass>::all(client.clone()));
    let (nodes, node_events) = reflected(Api::<Node>::all(client.clone()));
    // Every change anywhere triggers a pass over all claims and volumes: the binder's
    // decisions depend on all four kinds together, and a local cluster holds few. Each
    // watch runs in its own task so every store fills even while a pass waits.
    let wake = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for events in [
        claim_events.map(|e| e.map(|_| ())).boxed(),
        volume_events.map(|e| e.map(|_| ())).boxed(),
        class_events.map(|e| e.map(|_| ())).boxed(),
        node_events.map(|e| e.map(|_| ())).boxed(),
    ] {
        let wake = wake.clone();
        tasks.push(crate::AbortOnDrop(tokio::spawn(async move {
            let mut events = events;
            while let Some(event) = events.next().await {
                if let Err(e) = event {
                    tracing::warn!("persistent volume watch error: {e}");
                }
                wake.notify_one();
            }
        })));
    }
    let ctx = Ctx {
        recorder: recorder(&client, "persistentvolume-controller"),
        client,
        claims,
        volumes,
        classes,
        nodes,
    };
    loop {
        let _ = tokio::time::timeout(RESYNC / 12, wake.notified()).await;
        if ctx.claims.wait_until_ready().await.is_err()
            || ctx.volumes.wait_until_ready().await.is_err()
            || ctx.classes.wait_until_ready().await.is_err()
            || ctx.nodes.wait_until_ready().await.is_err()
        {
            return Err(ControllerError::Invalid(
                "a persistent volume watch ended".into(),
            ));
        }
        binder::sync_all(&ctx).await;
    }
}
