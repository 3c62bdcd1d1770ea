//! The node lifecycle controller: notices kubelets that stopped heartbeating, marks
//! their nodes' Ready condition Unknown, keeps the not-ready/unreachable taints in step
//! with the Ready condition, and evicts pods from NoExecute-tainted nodes once their
//! tolerations run out (upstream's taint manager), so their owners replace them elsewhere.

use super::{ControllerError, publish_event, recorder, reflect};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use rind_runtime::reflect::reflect_and_notify;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Upstream's node-monitor-grace-period: how stale a heartbeat may get before the node
/// counts as unreachable (four missed 10 s kubelet beats).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(40);

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const STOPPED_POSTING: &str = "Kubelet stopped posting node status.";

struct Ctx {
    client: Client,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    recorder: Recorder,
    grace: SignedDuration,
    /// NoExecute taints carry timeAdded; for one someone added without it, the time we
    /// first saw it starts the toleration clock: (node, taint key) → first seen.
    first_seen: HashMap<(String, String), Timestamp>,
    /// Pods we asked to delete: a cache that has not caught up must not evict twice.
    evicted: HashSet<String>,
    /// Per node: the last heartbeat value seen and when (on our clock) it was seen to
    /// change. Staleness is measured on our clock from that moment, as upstream does:
    /// a controller that just started (after `rind stop/start`, or a leader change)
    /// gives every node a full grace period instead of condemning it for beats it
    /// could not have seen, and node clocks never matter.
    observed: HashMap<String, (Option<Timestamp>, std::time::Instant)>,
}

pub async fn run(client: Client, grace: Duration) -> Result<(), ControllerError> {
    // Every node change wakes the loop: a node that just went Ready loses its
    // not-ready taints at once, as upstream's event-driven tainting pass does, instead
    // of staying unschedulable until the next periodic pass (pods created meanwhile
    // would all land on the other nodes).
    let changed = Arc::new(Notify::new());
    let (nodes, nodes_task) = {
        let changed = Arc::downgrade(&changed);
        reflect_and_notify(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            "node",
            move || changed.upgrade().map(|n| n.notify_one()).is_some(),
        )
    };
    let (leases, leases_task) = reflect(
        Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
        "node lease",
    );
    let (pods, pods_task) = reflect(Api::<Pod>::all(client.clone()), "pod");
    let _guards = [nodes_task, leases_task, pods_task].map(super::AbortOnDrop);
    for (ready, what) in [
        (nodes.wait_until_ready().await, "node"),
        (leases.wait_until_ready().await, "lease"),
        (pods.wait_until_ready().await, "pod"),
    ] {
        ready.map_err(|_| ControllerError::Invalid(format!("the {what} watch ended")))?;
    }
    let grace = SignedDuration::try_from(grace)
        .map_err(|e| ControllerError::Invalid(format!("node grace period: {e}")))?;
    let mut ctx = Ctx {
        recorder: recorder(&client, "node-controller"),
        client,
        nodes,
        leases,
        pods,
        grace,
        first_seen: HashMap::new(),
        evicted: HashSet::new(),
        observed: HashMap::new(),
    };
    // Upstream looks every 5 s with a 40 s grace; a short grace (tests) looks more often.
    let period =
        (grace.unsigned_abs() / 8).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        ctx.monitor_nodes().await;
        ctx.evict_pods().await;
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = changed.notified() => {}
        }
    }
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The taints the Ready condition calls for: unreachable while Unknown (or missing),
/// not-ready while False, none while True.
pub fn wanted_taint_key(ready: Option<&str>) -> Option<&'static str> {
    match ready {
        Some("True") => None,
        Some("False") => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    }
}

/// The node's taints with the lifecycle ones replaced by what `ready` calls for; taints
/// that stay keep their timeAdded (it starts the pods' toleration clocks).
pub fn desired_taints(current: &[Taint], ready: Option<&str>, now: Timestamp) -> Vec<Taint> {
    let wanted = wanted_taint_key(ready);
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| {
            let ours = t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY;
            let ours_effect = t.effect == "NoSchedule" || t.effect == "NoExecute";
            !(ours && ours_effect) || Some(t.key.as_str()) == wanted
        })
        .cloned()
        .collect();
    if let Some(key) = wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !out.iter().any(|t| t.key == key && t.effect == effect) {
                out.push(Taint {
                    key: key.to_string(),
                    effect: effect.to_string(),
                    value: None,
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    out
}

/// Whether `toleration` tolerates `taint` (the rules of the scheduler and taint manager).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = toleration.key.as_deref().unwrap_or("");
    effect_ok
        && match toleration.operator.as_deref().unwrap_or("Equal") {
            "Exists" => key.is_empty() || key == taint.key,
            _ => {
                key == taint.key
                    && toleration.value.as_deref().unwrap_or("")
                        == taint.value.as_deref().unwrap_or("")
            }
        }
}

/// When a pod on a node with these NoExecute taints must go: None when it tolerates them
/// all for ever, `since_of(taint)` plus the shortest tolerationSeconds otherwise, and at
/// once (`now`) when some taint is not tolerated at all.
pub fn eviction_time(
    tolerations: &[Toleration],
    taints: &[Taint],
    now: Timestamp,
    since_of: impl Fn(&Taint) -> Timestamp,
) -> Option<Timestamp> {
    let mut earliest: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        // Several matching tolerations: the shortest bound wins, as upstream computes it.
        let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else {
            continue;
        };
        let at = since_of(taint)
            .checked_add(SignedDuration::from_secs(seconds.max(0)))
            .unwrap_or(Timestamp::MAX);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest
}

impl Ctx {
    /// The latest sign of life from the node's kubelet: its Lease renewal or the Ready
    /// condition's heartbeat (only compared with earlier values, never with our clock).
    fn last_heartbeat(&self, node: &Node) -> Option<Timestamp> {
        let name = node.name_any();
        let lease = self
            .leases
            .state()
            .into_iter()
            .find(|l| l.metadata.name.as_deref() == Some(name.as_str()))
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let status =
            ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
        [lease, status].into_iter().flatten().max()
    }

    async fn monitor_nodes(&mut self) {
        let now = Timestamp::now();
        let nodes = self.nodes.state();
        self.observed.retain(|name, _| {
            nodes
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(name))
        });
        for node in nodes {
            let name = node.name_any();
            let beat = self.last_heartbeat(&node);
            let seen = std::time::Instant::now();
            let entry = self.observed.entry(name.clone()).or_insert((beat, seen));
            if entry.0 != beat {
                *entry = (beat, seen);
            }
            let stale = seen.duration_since(entry.1) > self.grace.unsigned_abs();
            let ready = ready_condition(&node).map(|c| c.status.clone());
            if stale && ready.as_deref() != Some("Unknown") {
                match self.mark_unknown(&node, now).await {
                    Ok(()) => {
                        tracing::info!(node = %name, "node stopped heartbeating; Ready is Unknown");
                        publish_event(
                            &self.recorder,
                            &*node,
                            EventType::Normal,
                            "NodeNotReady",
                            format!("Node {name} status is now: NodeNotReady"),
                        )
                        .await;
                    }
                    Err(e) => tracing::warn!(node = %name, "cannot mark the node Unknown: {e}"),
                }
                // The taints follow on the next pass, from the updated condition.
                continue;
            }
            // A node whose kubelet has not reported yet is left alone until its grace
            // period runs out (upstream's node startup grace): no taint before then.
            if ready.is_none() {
                continue;
            }
            if let Err(e) = self.sync_taints(&node, ready.as_deref(), now).await {
                tracing::warn!(node = %name, "cannot update the node's taints: {e}");
            }
        }
    }

    /// Sets every condition the kubelet owns to Unknown, as upstream does when the
    /// kubelet falls silent: nobody knows any more whether they hold.
    async fn mark_unknown(&self, node: &Node, now: Timestamp) -> Result<(), kube::Error> {
        let mut conditions: Vec<NodeCondition> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if !conditions.iter().any(|c| c.type_ == "Ready") {
            conditions.push(NodeCondition {
                type_: "Ready".into(),
                ..NodeCondition::default()
            });
        }
        for c in &mut conditions {
            if c.status != "Unknown" {
                c.last_transition_time = Some(Time(now));
            }
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some(STOPPED_POSTING.into());
        }
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "status": {"conditions": conditions},
        });
        Api::<Node>::all(self.client.clone())
            .patch_status(
                &node.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    async fn sync_taints(
        &self,
        node: &Node,
        ready: Option<&str>,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let desired = desired_taints(&current, ready, now);
        if desired == current {
            return Ok(());
        }
        // The resourceVersion makes a concurrent taint edit (kubectl taint) a conflict
        // we retry from fresh data, instead of one we silently overwrite.
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"taints": desired},
        });
        Api::<Node>::all(self.client.clone())
            .patch(
                &node.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    async fn evict_pods(&mut self) {
        let now = Timestamp::now();
        let mut tainted: HashMap<String, Vec<Taint>> = HashMap::new();
        let mut live_keys = HashSet::new();
        for node in self.nodes.state() {
            let name = node.name_any();
            let taints: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.effect == "NoExecute")
                .collect();
            for t in &taints {
                let key = (name.clone(), t.key.clone());
                self.first_seen.entry(key.clone()).or_insert(now);
                live_keys.insert(key);
            }
            if !taints.is_empty() {
                tainted.insert(name, taints);
            }
        }
        self.first_seen.retain(|k, _| live_keys.contains(k));
        let pods = self.pods.state();
        let live_uids: HashSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
        self.evicted.retain(|uid| live_uids.contains(uid));
        for pod in pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let Some(taints) = tainted.get(&node) else {
                continue;
            };
            let uid = pod.uid().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() || self.evicted.contains(&uid) {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            let since_of = |t: &Taint| {
                t.time_added.as_ref().map(|t| t.0).unwrap_or_else(|| {
                    self.first_seen
                        .get(&(node.clone(), t.key.clone()))
                        .copied()
                        .unwrap_or(now)
                })
            };
            let Some(at) = eviction_time(&tolerations, taints, now, since_of) else {
                continue;
            };
            if at > now {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            // Preconditioned on the uid: a pod recreated under the same name stays.
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{ns}/{name}"), %node, "evicting a pod from a NoExecute-tainted node");
                    self.evicted.insert(uid);
                    publish_event(
                        &self.recorder,
                        &*pod,
                        EventType::Normal,
                        "TaintManagerEviction",
                        format!("Marking for deletion Pod {ns}/{name}"),
                    )
                    .await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                    self.evicted.insert(uid);
                }
                Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), "eviction failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let now = Timestamp::now();
        let other = taint("dedicated", "NoSchedule");
        let unknown = desired_taints(std::slice::from_ref(&other), Some("Unknown"), now);
        assert_eq!(unknown.len(), 3);
        assert!(unknown.contains(&other));
        assert!(unknown.iter().any(|t| t.key == TAINT_UNREACHABLE
            && t.effect == "NoExecute"
            && t.time_added.is_some()));
        // Stable: applying again changes nothing (timeAdded kept).
        let later = now.checked_add(SignedDuration::from_secs(5)).unwrap();
        assert_eq!(desired_taints(&unknown, Some("Unknown"), later), unknown);
        let not_ready = desired_taints(&unknown, Some("False"), now);
        assert!(not_ready.iter().all(|t| t.key != TAINT_UNREACHABLE));
        assert_eq!(
            not_ready
                .iter()
                .filter(|t| t.key == TAINT_NOT_READY)
                .count(),
            2
        );
        assert_eq!(desired_taints(&not_ready, Some("True"), now), vec![other]);
    }

    #[test]
    fn eviction_waits_for_the_shortest_toleration() {
        let now = Timestamp::now();
        let taints = [taint(TAINT_UNREACHABLE, "NoExecute")];
        let since = |_: &Taint| now;
        assert_eq!(eviction_time(&[], &taints, now, since), Some(now));
        let tol = [
            toleration(TAINT_UNREACHABLE, Some(30)),
            toleration(TAINT_UNREACHABLE, Some(5)),
        ];
        assert_eq!(
            eviction_time(&tol, &taints, now, since),
            now.checked_add(SignedDuration::from_secs(5)).ok()
        );
        let forever = [toleration(TAINT_UNREACHABLE, None)];
        assert_eq!(eviction_time(&forever, &taints, now, since), None);
        let wrong_key = [toleration(TAINT_NOT_READY, Some(300))];
        assert_eq!(eviction_time(&wrong_key, &taints, now, since), Some(now));
        // NoSchedule taints never evict.
        assert_eq!(
            eviction_time(&[], &[taint(TAINT_UNREACHABLE, "NoSchedule")], now, since),
            None
        );
    }
}
