//! The scheduler against the real API server on loopback (memory store) with fake
//! Node objects: no kubelet, no Docker. Each test waits on conditions with a deadline.

use super::{Stats, run};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rind_runtime::leader::{Elector, LeaseConfig};
pub(super) use rind_testing::eventually;
use rind_testing::{client, start};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A Ready node with the given allocatable CPU and labels, as a kubelet registers it.
async fn add_node(client: &Client, name: &str, cpu: &str, labels: serde_json::Value) {
    let api: Api<Node> = Api::all(client.clone());
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = name.into();
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
    }))
    .unwrap();
    api.create(&PostParams::default(), &node).await.unwrap();
    let status = serde_json::json!({"status": {
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn add_pod(client: &Client, pod: serde_json::Value) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(pod).unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap()
}

async fn node_of(client: &Client, name: &str) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.get(name)
        .await
        .ok()?
        .spec?
        .node_name
        .filter(|n| !n.is_empty())
}

/// The PodScheduled=False condition's (reason, message), once the scheduler set it.
async fn unschedulable(client: &Client, name: &str) -> Option<(String, String)> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = api.get(name).await.ok()?;
    let cond = pod
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    Some((cond.reason?, cond.message?))
}

fn start_scheduler(client: &Client) -> (tokio::task::JoinHandle<()>, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let (client, s) = (client.clone(), stats.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = run(client, s).await {
            panic!("scheduler failed: {e}");
        }
    });
    (task, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn too_big_pod_is_unschedulable_until_a_big_node_appears() {
    let server = start().await;
    let client = client(&server).await;
    add_node(
        &client,
        "small-1",
        "1",
        serde_json::json!({"size": "small"}),
    )
    .await;
    add_node(
        &client,
        "small-2",
        "1",
        serde_json::json!({"size": "small"}),
    )
    .await;
    add_node(&client, "tiny", "8", serde_json::json!({"size": "tiny"})).await;
    let (scheduler, _) = start_scheduler(&client);
    add_pod(
        &client,
        serde_json::json!({
            "metadata": {"name": "big"},
            "spec": {
                "containers": [{"name": "c", "image": "busybox",
                                "resources": {"requests": {"cpu": "2"}}}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "size", "operator": "NotIn", "values": ["tiny"]}]}]}}},
            },
        }),
    )
    .await;
    let expected = "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu.";
    let (reason, message) =
        eventually("PodScheduled=False", || unschedulable(&client, "big")).await;
    assert_eq!(reason, "Unschedulable");
    assert_eq!(message, expected);
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = eventually("a FailedScheduling event", || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
        }
    })
    .await;
    assert_eq!(event.message.as_deref(), Some(expected));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(node_of(&client, "big").await, None);

    // The node event moves the parked pod back; it lands on the only node that fits.
    add_node(&client, "large", "4", serde_json::json!({"size": "large"})).await;
    let node = eventually("the pod bound", || node_of(&client, "big")).await;
    assert_eq!(node, "large");
    // Found as clients look for it: by the pod's name and the reason.
    let scheduled = eventually("a Scheduled event", || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default().fields("involvedObject.name=big,reason=Scheduled"))
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.message.as_deref() == Some("Successfully assigned default/big to large")
                })
        }
    })
    .await;
    // Written as upstream's events recorder writes it (events.k8s.io/v1).
    let involved = &scheduled.involved_object;
    assert_eq!(involved.kind.as_deref(), Some("Pod"));
    assert_eq!(involved.api_version.as_deref(), Some("v1"));
    assert!(involved.uid.as_deref().is_some_and(|u| !u.is_empty()));
    assert!(involved.resource_version.is_some());
    assert_eq!(
        scheduled.reporting_component.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(scheduled.action.as_deref(), Some("Binding"));
    assert!(scheduled.event_time.is_some());
    scheduler.abort();
}

fn replica(name: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "web"}},
                "topologyKey": "kubernetes.io/hostname"}]}},
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn anti_affinity_spreads_replicas_one_per_node() {
    let server = start().await;
    let client = client(&server).await;
    for name in ["n1", "n2", "n3"] {
        add_node(&client, name, "4", serde_json::json!({})).await;
    }
    let (scheduler, _) = start_scheduler(&client);
    // Created together, so the later decisions must count the earlier, still assumed ones.
    for i in 0..3 {
        add_pod(&client, replica(&format!("web-{i}"))).await;
    }
    let mut nodes = Vec::new();
    for i in 0..3 {
        let name = format!("web-{i}");
        nodes.push(eventually("a replica bound", || node_of(&client, &name)).await);
    }
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2", "n3"]);
    add_pod(&client, replica("web-3")).await;
    let (_, message) = eventually("the fourth replica unschedulable", || {
        unschedulable(&client, "web-3")
    })
    .await;
    assert_eq!(
        message,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );
    // A plain pod with the label is kept out by the replicas' own anti-affinity.
    add_pod(
        &client,
        serde_json::json!({
            "metadata": {"name": "plain", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }),
    )
    .await;
    let (_, message) = eventually("the plain pod unschedulable", || {
        unschedulable(&client, "plain")
    })
    .await;
    assert_eq!(
        message,
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules."
    );
    scheduler.abort();
}

fn plain(name: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    })
}

fn short_lease(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(3),
        renew_period: Duration::from_millis(300),
        ..LeaseConfig::scheduler(identity.into())
    }
}

/// A scheduler that schedules only while it holds the lease.
fn candidate(client: &Client, identity: &str) -> (tokio::task::JoinHandle<()>, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let mut elector = Elector::new(client.clone(), short_lease(identity));
    let (client, s) = (client.clone(), stats.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = elector.run(|| run(client.clone(), s.clone())).await {
            panic!("scheduler failed: {e}");
        }
    });
    (task, stats)
}

async fn holder(client: &Client) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    api.get_opt("kube-scheduler")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn only_the_leader_schedules_and_another_takes_over() {
    let server = start().await;
    let client = client(&server).await;
    add_node(&client, "n1", "4", serde_json::json!({})).await;
    let (a, a_stats) = candidate(&client, "a");
    let first = eventually("a leader", || holder(&client)).await;
    assert_eq!(first, "a");
    let (b, b_stats) = candidate(&client, "b");
    add_pod(&client, plain("p1")).await;
    eventually("p1 bound", || node_of(&client, "p1")).await;
    // The scheduler counts a binding once its answer arrives, which may be just after
    // the pod shows up bound.
    eventually("a to count p1", || async {
        (a_stats.bound.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(
        b_stats.attempts.load(Ordering::SeqCst),
        0,
        "b scheduled while a led"
    );

    // a dies without releasing: b takes the lease once it expires, then schedules.
    a.abort();
    eventually("b to take over", || async {
        (holder(&client).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    add_pod(&client, plain("p2")).await;
    eventually("p2 bound", || node_of(&client, "p2")).await;
    eventually("b to count p2", || async {
        (b_stats.bound.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    assert_eq!(a_stats.bound.load(Ordering::SeqCst), 1);
    b.abort();
}
