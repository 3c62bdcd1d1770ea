//! Node lifecycle and persistent volumes against the real API server (memory store),
//! the real controllers, the real scheduler and the kubelet's local-path reclaimer,
//! with two simulated kubelets: each registers its node, heartbeats (Lease and Ready
//! condition) until stopped, and runs the pods bound to it. A stopped kubelet does
//! nothing at all, like a dead node. Several components at once: this suite lives with
//! the test support, not in any one of them.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rind_api::storage::{SELECTED_NODE, STANDARD_CLASS};
use rind_controllers::{Settings, run_controllers};
use rind_testing::{TestServer, client, eventually, start};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const NODES: [&str; 2] = ["node-a", "node-b"];

/// Two fake kubelets; `alive[node]` switches a node's kubelet on and off.
struct Kubelets {
    alive: HashMap<&'static str, Arc<AtomicBool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Kubelets {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Kubelets {
    fn set_alive(&self, node: &str, alive: bool) {
        if let Some(flag) = self.alive.get(node) {
            flag.store(alive, Ordering::SeqCst);
        }
    }
}

async fn beat(client: &Client, node: &str) -> Result<(), kube::Error> {
    let now = Timestamp::now().to_string();
    // A node offers what a small real one does: the scheduler fits pods against it.
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    let status = json!({"status": {"capacity": resources, "allocatable": resources, "conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
        "lastHeartbeatTime": now, "lastTransitionTime": now,
    }]}});
    Api::<Node>::all(client.clone())
        .patch_status(node, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": MicroTime(Timestamp::now())},
    });
    Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
        .patch(
            node,
            &PatchParams::apply("fake-kubelet").force(),
            &Patch::Apply(&lease),
        )
        .await?;
    Ok(())
}

/// Runs the pods bound to `node` while it is alive: Running and Ready once bound,
/// removed once deleted.
async fn run_pods(client: &Client, node: &str) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    for pod in list {
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        if pod.metadata.deletion_timestamp.is_some() {
            api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await?;
            continue;
        }
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            continue;
        }
        let now = Timestamp::now().to_string();
        let status = json!({"status": {"phase": "Running", "startTime": now, "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
        ]}});
        api.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    }
    Ok(())
}

async fn kubelets(client: &Client) -> Kubelets {
    let mut alive = HashMap::new();
    let mut tasks = Vec::new();
    for node in NODES {
        let object: Node = serde_json::from_value(json!({
            "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
        }))
        .unwrap();
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &object)
            .await
            .unwrap();
        beat(client, node).await.unwrap();
        let flag = Arc::new(AtomicBool::new(true));
        alive.insert(node, flag.clone());
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if flag.load(Ordering::SeqCst) {
                    if let Err(e) = beat(&client, node).await {
                        tracing::debug!("fake heartbeat: {e}");
                    }
                    if let Err(e) = run_pods(&client, node).await {
                        tracing::debug!("fake kubelet: {e}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }));
    }
    Kubelets { alive, tasks }
}

/// The control plane (controllers with a 3 s node grace, and the scheduler) without
/// the shared harness's fake kubelet, which binds pods itself.
async fn control_plane() -> (Cluster, tokio::task::JoinHandle<()>) {
    let cluster = cluster_with(Settings {
        node_grace: Some(Duration::from_secs(3)),
        ..Settings::default()
    })
    .await;
    let client = cluster.client.clone();
    let scheduler = tokio::spawn(async move {
        if let Err(e) = rind_scheduler::run(client, Default::default()).await {
            panic!("scheduler failed: {e}");
        }
    });
    (cluster, scheduler)
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
}

fn taint_keys(node: &Node) -> Vec<(String, String)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect()
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn silent_node_is_tainted_and_its_pods_move() {
    let (cluster, scheduler) = control_plane().await;
    let _scheduler = AbortOnDrop(scheduler);
    let client = cluster.client.clone();
    let kubelets = kubelets(&client).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "containers": [{"name": "c", "image": "busybox"}],
                     "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                      "effect": "NoExecute", "tolerationSeconds": 2}]}}},
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    // The scheduler spreads the two replicas, one per node.
    let victim = eventually("a running replica on each node", || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        let on_a: Vec<Pod> = list
            .items
            .iter()
            .filter(|p| node_of(p).as_deref() == Some(NODES[0]))
            .cloned()
            .collect();
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == 2 && on_a.len() == 1).then(|| on_a[0].clone())
    })
    .await;

    kubelets.set_alive(NODES[0], false);
    let tainted = eventually("node-a Unknown with unreachable taints", || async {
        let node = nodes.get(NODES[0]).await.ok()?;
        let keys = taint_keys(&node);
        let want = [
            (
                "node.kubernetes.io/unreachable".to_string(),
                "NoSchedule".to_string(),
            ),
            (
                "node.kubernetes.io/unreachable".to_string(),
                "NoExecute".to_string(),
            ),
        ];
        (ready_status(&node).as_deref() == Some("Unknown") && want.iter().all(|w| keys.contains(w)))
            .then_some(node)
    })
    .await;
    let condition = tainted
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        condition.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    // node-b keeps beating and stays clean.
    assert!(taint_keys(&nodes.get(NODES[1]).await.unwrap()).is_empty());

    eventually(
        "the replica on node-a evicted and replaced on node-b",
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let victim_gone = list
                .items
                .iter()
                .filter(|p| p.uid() == victim.uid())
                .all(|p| p.metadata.deletion_timestamp.is_some());
            let live_on_b = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| node_of(p).as_deref() == Some(NODES[1]))
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            (victim_gone && live_on_b == 2).then_some(())
        },
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually("a TaintManagerEviction event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("TaintManagerEviction"))
            .then_some(())
    })
    .await;

    kubelets.set_alive(NODES[0], true);
    eventually("node-a Ready again without taints", || async {
        let node = nodes.get(NODES[0]).await.ok()?;
        (ready_status(&node).as_deref() == Some("True") && taint_keys(&node).is_empty())
            .then_some(())
    })
    .await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn pod_with_claim(name: &str, claim: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
    }))
    .unwrap()
}

#[tokio::test]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn standard_class_provisions_on_the_pods_node_and_deletes_on_release() {
    let (cluster, scheduler) = control_plane().await;
    let _scheduler = AbortOnDrop(scheduler);
    let client = cluster.client.clone();
    let _kubelets = kubelets(&client).await;
    // The node halves of the provisioner, each with its own scratch "root".
    let scratch = tempfile::tempdir().unwrap();
    let mut reclaimers = Vec::new();
    for node in NODES {
        let root = scratch.path().join(node);
        reclaimers.push(AbortOnDrop(tokio::spawn(rind_kubelet::local_path::run(
            client.clone(),
            node.to_string(),
            root,
        ))));
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    let created = claims.create(&PostParams::default(), &claim).await.unwrap();
    // DefaultStorageClass admission filled in the class.
    assert_eq!(
        created
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some(STANDARD_CLASS)
    );
    let uid = created.uid().unwrap();
    // WaitForFirstConsumer: nothing happens before a pod uses the claim.
    assert!(
        volumes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    pods.create(&PostParams::default(), &pod_with_claim("user", "data"))
        .await
        .unwrap();
    let (node, volume) = eventually(
        "the claim provisioned, bound, and the pod placed",
        || async {
            let claim = claims.get("data").await.ok()?;
            let node = claim.annotations().get(SELECTED_NODE)?.clone();
            let bound = claim.status.as_ref()?.phase.as_deref() == Some("Bound");
            let pv = volumes.get_opt(&format!("pvc-{uid}")).await.ok()??;
            let pod = pods.get("user").await.ok()?;
            (bound && node_of(&pod).as_deref() == Some(node.as_str())).then_some((node, pv))
        },
    )
    .await;
    let spec = volume.spec.clone().unwrap();
    assert_eq!(
        spec.host_path.as_ref().map(|h| h.path.clone()),
        Some(format!(
            "/var/local-path-provisioner/pvc-{uid}_default_data"
        ))
    );
    assert_eq!(
        rind_api::storage::pinned_hostnames(&volume),
        vec![node.clone()]
    );
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(
        spec.claim_ref.as_ref().and_then(|r| r.uid.clone()),
        Some(uid.clone())
    );
    let bound_claim = claims.get("data").await.unwrap();
    assert_eq!(
        bound_claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone()),
        Some(volume.name_any())
    );
    assert_eq!(
        bound_claim
            .annotations()
            .get("pv.kubernetes.io/bind-completed")
            .map(String::as_str),
        Some("yes")
    );

    // The directory the kubelet would have made on that node when mounting.
    let dir = scratch
        .path()
        .join(&node)
        .join(format!("var/local-path-provisioner/pvc-{uid}_default_data"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file"), "data").unwrap();
    pods.delete("user", &DeleteParams::default()).await.unwrap();
    claims
        .delete("data", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the released volume and its directory deleted", || async {
        let gone = volumes.get_opt(&volume.name_any()).await.ok()?.is_none();
        (gone && !dir.exists()).then_some(())
    })
    .await;
}

#[tokio::test]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn retained_volume_binds_then_stays_released() {
    let (cluster, scheduler) = control_plane().await;
    let _scheduler = AbortOnDrop(scheduler);
    let client = cluster.client.clone();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for (name, size, tier) in [
        ("small", "1Gi", "slow"),
        ("fits", "5Gi", "fast"),
        ("huge", "50Gi", "fast"),
    ] {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"tier": tier}},
            "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                     "capacity": {"storage": size}, "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": format!("/srv/{name}")}},
        }))
        .unwrap();
        volumes.create(&PostParams::default(), &pv).await.unwrap();
    }
    eventually("the volumes Available", || async {
        let list = volumes.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|v| v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available"))
            .then_some(())
    })
    .await;
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "keep"},
        "spec": {"storageClassName": "manual", "accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "2Gi"}},
                 "selector": {"matchLabels": {"tier": "fast"}}},
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();
    let pv = eventually("the claim bound to the smallest fitting volume", || async {
        let claim = claims.get("keep").await.ok()?;
        let pv = volumes.get("fits").await.ok()?;
        let claim_bound = claim.status.as_ref()?.phase.as_deref() == Some("Bound");
        let pv_bound = pv.status.as_ref()?.phase.as_deref() == Some("Bound");
        (claim_bound && pv_bound).then_some(pv)
    })
    .await;
    assert_eq!(
        pv.annotations()
            .get("pv.kubernetes.io/bound-by-controller")
            .map(String::as_str),
        Some("yes")
    );
    let claim = claims.get("keep").await.unwrap();
    assert_eq!(
        claim.spec.and_then(|s| s.volume_name).as_deref(),
        Some("fits")
    );
    claims
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap();
    let released = eventually("the volume Released", || async {
        let pv = volumes.get("fits").await.ok()?;
        (pv.status.as_ref()?.phase.as_deref() == Some("Released")).then_some(pv)
    })
    .await;
    // Retain keeps the volume and its claimRef (the data's last owner) for an admin.
    assert_eq!(
        released
            .spec
            .and_then(|s| s.claim_ref)
            .and_then(|r| r.name)
            .as_deref(),
        Some("keep")
    );
    for name in ["small", "huge"] {
        let pv = volumes.get(name).await.unwrap();
        assert_eq!(
            pv.status.and_then(|s| s.phase).as_deref(),
            Some("Available")
        );
    }
}

/// The API server and the controllers (run with `settings`); the tests bring their own
/// kubelets and scheduler.
struct Cluster {
    _server: TestServer,
    client: Client,
    controllers: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.controllers.abort();
    }
}

async fn cluster_with(settings: Settings) -> Cluster {
    rind_runtime::logging::init("info");
    let server = start().await;
    let client = client(&server).await;
    let controllers = {
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = run_controllers(client, settings).await {
                panic!("controllers failed: {e}");
            }
        })
    };
    Cluster {
        _server: server,
        client,
        controllers,
    }
}
