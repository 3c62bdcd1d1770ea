//! The pod garbage collector, as upstream's podgc controller behaves: every pass it
//! force-deletes
//! - orphaned pods: bound to a node that no longer exists (after the node has been
//!   missing for a quarantine, and confirmed by a direct read, so that a node whose
//!   watch event is late is not condemned): marked `Failed` with a `DisruptionTarget`
//!   condition first, so that Jobs and clients see why;
//! - pods being deleted that were never scheduled (no kubelet will finish them);
//! - pods being deleted on a node that is not Ready and carries the
//!   `node.kubernetes.io/out-of-service` taint (the user declared it gone for good);
//! - the oldest terminated (Succeeded/Failed) pods beyond the threshold.
//!
//! Without it a pod bound to a node removed with `rind delete node` (a DaemonSet's, or
//! one that a drain left alone) would stay in the API forever.

use super::{ControllerError, reflect};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Upstream's gcCheckPeriod.
const PERIOD: Duration = Duration::from_secs(20);
/// Upstream's quarantineTime: how long a node must be missing from the watch cache
/// before its pods count as orphans.
pub const QUARANTINE: Duration = Duration::from_secs(40);
/// Upstream's `--terminated-pod-gc-threshold` default.
pub const TERMINATED_THRESHOLD: usize = 12500;
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// What one pass decides for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Its node is gone: mark it Failed with this condition message, then force-delete.
    Orphaned,
    /// Terminating and nobody will finish it: mark it Failed, then force-delete.
    Abandoned,
    /// Terminated and beyond the threshold: delete.
    Excess,
}

/// Which pods to collect, given the pods, the nodes the cache holds, the nodes missing
/// for at least the quarantine (and confirmed gone), and the threshold. Pure, so the
/// rules are tested without a cluster.
pub(crate) fn decide(
    pods: &[Pod],
    nodes: &HashMap<String, Node>,
    gone: &HashSet<String>,
    threshold: usize,
) -> Vec<(Pod, Verdict)> {
    let mut out = Vec::new();
    let mut terminated: Vec<&Pod> = Vec::new();
    for pod in pods {
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if is_terminal(pod) && !deleting {
            terminated.push(pod);
        }
        if node_name.is_empty() {
            if deleting {
                out.push((pod.clone(), Verdict::Abandoned));
            }
        } else if let Some(node) = nodes.get(&node_name) {
            if deleting && out_of_service(node) {
                out.push((pod.clone(), Verdict::Abandoned));
            }
        } else if gone.contains(&node_name) {
            out.push((pod.clone(), Verdict::Orphaned));
        }
    }
    if terminated.len() > threshold {
        terminated.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let excess = terminated.len() - threshold;
        let already: HashSet<String> = out.iter().map(|(p, _)| key(p)).collect();
        out.extend(
            terminated
                .into_iter()
                .filter(|p| !already.contains(&key(p)))
                .take(excess)
                .map(|p| (p.clone(), Verdict::Excess)),
        );
    }
    out
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Not Ready and tainted out-of-service, as upstream's gcTerminating requires both.
fn out_of_service(node: &Node) -> bool {
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE));
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    tainted && !ready
}

pub async fn run(client: Client, quarantine: Duration) -> Result<(), ControllerError> {
    let (pods, pods_task) = reflect(Api::<Pod>::all(client.clone()), "pod");
    let (nodes, nodes_task) = reflect(Api::<Node>::all(client.clone()), "node");
    let _guards = [pods_task, nodes_task].map(super::AbortOnDrop);
    for (ready, what) in [
        (pods.wait_until_ready().await, "pod"),
        (nodes.wait_until_ready().await, "node"),
    ] {
        ready.map_err(|_| ControllerError::Invalid(format!("the {what} watch ended")))?;
    }
    // When each missing node was first seen missing (on our clock).
    let mut missing_since: HashMap<String, Instant> = HashMap::new();
    // Passes come more often than upstream's 20 s while a node is in quarantine, so
    // that its pods go soon after the quarantine ends rather than up to 20 s later.
    let period = PERIOD.min(quarantine / 2).max(Duration::from_millis(100));
    loop {
        if let Err(e) = pass(&client, &pods, &nodes, &mut missing_since, quarantine).await {
            tracing::warn!("pod garbage collection: {e}");
        }
        tokio::time::sleep(period).await;
    }
}

async fn pass(
    client: &Client,
    pods: &Store<Pod>,
    nodes: &Store<Node>,
    missing_since: &mut HashMap<String, Instant>,
    quarantine: Duration,
) -> Result<(), ControllerError> {
    let pods: Vec<Pod> = pods.state().iter().map(|p| (**p).clone()).collect();
    let nodes: HashMap<String, Node> = nodes
        .state()
        .iter()
        .map(|n| (n.name_any(), (**n).clone()))
        .collect();
    let wanted: HashSet<String> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .filter(|n| !n.is_empty() && !nodes.contains_key(n))
        .collect();
    missing_since.retain(|n, _| wanted.contains(n));
    let now = Instant::now();
    let mut gone = HashSet::new();
    let node_api: Api<Node> = Api::all(client.clone());
    for name in &wanted {
        let since = *missing_since.entry(name.clone()).or_insert(now);
        if now.duration_since(since) < quarantine {
            continue;
        }
        // The cache may lag: only a node the API server itself does not have is gone.
        if node_api.get_opt(name).await?.is_none() {
            gone.insert(name.clone());
        } else {
            missing_since.remove(name);
        }
    }
    for (pod, verdict) in decide(&pods, &nodes, &gone, TERMINATED_THRESHOLD) {
        if let Err(e) = collect(client, &pod, &verdict).await {
            tracing::warn!(pod = %key(&pod), "cannot collect: {e}");
        }
    }
    Ok(())
}

async fn collect(client: &Client, pod: &Pod, verdict: &Verdict) -> Result<(), ControllerError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let name = pod.name_any();
    if *verdict != Verdict::Excess && !is_terminal(pod) {
        let mut status = json!({"phase": "Failed"});
        if *verdict == Verdict::Orphaned {
            // Upstream's condition for a pod the garbage collector deletes.
            status["conditions"] = json!([{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists",
                "lastTransitionTime": Timestamp::now().to_string(),
            }]);
        }
        let patch = Patch::Strategic(json!({"status": status}));
        match api
            .patch_status(&name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(pod = %key(pod), ?verdict, "force deleting");
    // Upstream deletes with a zero grace period and a UID precondition: a pod
    // recreated under the same name in the meantime is not touched.
    let mut params = DeleteParams::default().grace_period(0);
    params.preconditions = Some(kube::api::Preconditions {
        uid: pod.metadata.uid.clone(),
        resource_version: None,
    });
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, phase: &str, deleting: bool, created: i64) -> Pod {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "default", "uid": name,
                         "creationTimestamp": Timestamp::from_second(created).unwrap().to_string()},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase},
        });
        if deleting {
            value["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(value).expect("a pod")
    }

    fn node(name: &str, ready: bool, out_of_service: bool) -> (String, Node) {
        let taints = if out_of_service {
            json!([{"key": OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}])
        } else {
            json!([])
        };
        let node = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .expect("a node");
        (name.to_string(), node)
    }

    fn verdicts(found: Vec<(Pod, Verdict)>) -> Vec<(String, Verdict)> {
        let mut v: Vec<_> = found.into_iter().map(|(p, v)| (p.name_any(), v)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn pods_on_a_confirmed_gone_node_are_orphans_and_quarantined_ones_wait() {
        let nodes = HashMap::from([node("alive", true, false)]);
        let pods = [
            pod("on-alive", "alive", "Running", false, 1),
            pod("on-gone", "gone", "Running", false, 2),
            pod("on-missing", "missing", "Running", false, 3),
        ];
        let gone = HashSet::from(["gone".to_string()]);
        assert_eq!(
            verdicts(decide(&pods, &nodes, &gone, 100)),
            [("on-gone".to_string(), Verdict::Orphaned)]
        );
    }

    #[test]
    fn terminating_pods_nobody_finishes_are_abandoned() {
        let nodes = HashMap::from([
            node("down", false, true),
            node("tainted-but-ready", true, true),
            node("plain-down", false, false),
        ]);
        let pods = [
            pod("unscheduled-deleting", "", "Pending", true, 1),
            pod("unscheduled", "", "Pending", false, 2),
            pod("on-out-of-service", "down", "Running", true, 3),
            pod("running-on-out-of-service", "down", "Running", false, 4),
            pod("on-ready-tainted", "tainted-but-ready", "Running", true, 5),
            pod("on-plain-down", "plain-down", "Running", true, 6),
        ];
        assert_eq!(
            verdicts(decide(&pods, &nodes, &HashSet::new(), 100)),
            [
                ("on-out-of-service".to_string(), Verdict::Abandoned),
                ("unscheduled-deleting".to_string(), Verdict::Abandoned),
            ]
        );
    }

    #[test]
    fn the_oldest_terminated_pods_beyond_the_threshold_go() {
        let nodes = HashMap::from([node("n", true, false)]);
        let pods = [
            pod("done-3", "n", "Succeeded", false, 30),
            pod("done-1", "n", "Failed", false, 10),
            pod("running", "n", "Running", false, 5),
            pod("done-2", "n", "Succeeded", false, 20),
        ];
        assert_eq!(
            verdicts(decide(&pods, &nodes, &HashSet::new(), 1)),
            [
                ("done-1".to_string(), Verdict::Excess),
                ("done-2".to_string(), Verdict::Excess),
            ]
        );
        assert!(decide(&pods, &nodes, &HashSet::new(), 3).is_empty());
    }
}
