//! The scheduler: assigns each pending pod that asks for `default-scheduler` to a
//! node. Pending pods come from a watch with `spec.nodeName=`; nodes and assigned pods
//! from reflectors. Each attempt runs the filters, scores the feasible nodes and binds
//! (see queue.rs, filters.rs, scores.rs, bind.rs).

mod bind;
mod filters;
mod queue;
mod scores;

use crate::node::{NodeConfig, paths};
use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Even without events, pods in back-off get their next attempt this often.
const RESYNC: Duration = Duration::from_secs(1);
/// How long a binding we made counts towards its node before the watch shows it.
const ASSUME_TTL: Duration = Duration::from_secs(30);

/// Keeps a reflector store filled from a watch and pokes `wake` on every change.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    wake: Arc<Notify>,
    what: &'static str,
) -> Store<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store::<K>();
    let events = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Err(err) = event {
                tracing::warn!("{what} watch error: {err}");
            }
            wake.notify_one();
        }
    });
    store
}

struct Scheduler {
    client: Client,
    nodes: Store<Node>,
    pending: Store<Pod>,
    all_pods: Store<Pod>,
    queue: queue::Queue,
    /// Pods we bound whose binding the watch has not shown yet: uid → (node, when).
    assumed: HashMap<String, (String, Instant)>,
    known_nodes: HashSet<String>,
}

fn wants_us(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let scheduler = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(bind::SCHEDULER_NAME);
    let unassigned = spec
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty);
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    scheduler == bind::SCHEDULER_NAME
        && unassigned
        && !finished
        && pod.metadata.deletion_timestamp.is_none()
}

impl Scheduler {
    /// Pods per node: assigned pods that are not finished, plus our assumed bindings.
    fn pods_per_node(&mut self) -> HashMap<String, usize> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut seen = HashSet::new();
        for pod in self.all_pods.state() {
            let finished = matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone())
                && !node.is_empty()
            {
                if let Some(uid) = &pod.metadata.uid {
                    seen.insert(uid.clone());
                }
                if !finished {
                    *counts.entry(node).or_default() += 1;
                }
            }
        }
        let now = Instant::now();
        self.assumed
            .retain(|uid, (_, at)| !seen.contains(uid) && now.duration_since(*at) < ASSUME_TTL);
        for (node, _) in self.assumed.values() {
            *counts.entry(node.clone()).or_default() += 1;
        }
        counts
    }

    async fn run_once(&mut self) {
        let nodes = self.nodes.state();
        let node_names: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        if node_names != self.known_nodes {
            // A new or removed node may change every earlier verdict.
            self.queue.flush();
            self.known_nodes = node_names;
        }
        // A pod the full pod watch already shows bound is done, even if the pending
        // watch has not caught up yet.
        let bound: HashSet<String> = self
            .all_pods
            .state()
            .iter()
            .filter(|p| !wants_us(p))
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let pending: Vec<Arc<Pod>> = self
            .pending
            .state()
            .into_iter()
            .filter(|p| wants_us(p))
            .filter(|p| {
                p.metadata
                    .uid
                    .as_ref()
                    .is_none_or(|uid| !bound.contains(uid))
            })
            .collect();
        let pending_uids: HashSet<String> = pending
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        self.queue.retain(&pending_uids);
        for pod in pending {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if self.assumed.contains_key(&uid) || !self.queue.due(&uid, Instant::now()) {
                continue;
            }
            self.schedule_one(&pod, &nodes).await;
        }
    }

    async fn schedule_one(&mut self, pod: &Pod, nodes: &[Arc<Node>]) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let pod_ref = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("")
        );
        let mut feasible = Vec::new();
        let mut rejections = Vec::new();
        for node in nodes {
            match filters::check(pod, node) {
                Ok(()) => feasible.extend(node.metadata.name.as_deref()),
                Err(rejection) => rejections.push(rejection),
            }
        }
        let counts = self.pods_per_node();
        let Some(chosen) = scores::pick(&feasible, &counts).map(str::to_string) else {
            let message = filters::unschedulable_message(nodes.len(), &rejections);
            let delay = self.queue.failed(&uid, Instant::now());
            tracing::info!(pod = %pod_ref, retry_in = ?delay, "unschedulable: {message}");
            if let Err(err) =
                bind::record_event(&self.client, pod, "Warning", "FailedScheduling", &message).await
            {
                tracing::warn!(pod = %pod_ref, "cannot record event: {err}");
            }
            if let Err(err) = bind::mark_unschedulable(&self.client, pod, &message).await {
                tracing::warn!(pod = %pod_ref, "cannot update pod condition: {err}");
            }
            return;
        };
        match bind::bind(&self.client, pod, &chosen).await {
            Ok(()) => {
                tracing::info!(pod = %pod_ref, node = %chosen, "bound");
                self.assumed.insert(uid, (chosen.clone(), Instant::now()));
                let message = format!("Successfully assigned {pod_ref} to {chosen}");
                if let Err(err) =
                    bind::record_event(&self.client, pod, "Normal", "Scheduled", &message).await
                {
                    tracing::warn!(pod = %pod_ref, "cannot record event: {err}");
                }
            }
            Err(err) => {
                let delay = self.queue.failed(&uid, Instant::now());
                tracing::warn!(pod = %pod_ref, node = %chosen, retry_in = ?delay, "binding failed: {err}");
            }
        }
    }
}

/// Runs the scheduler inside a node, configured from the node's files.
pub async fn run_node(_cfg: &NodeConfig) -> anyhow::Result<()> {
    crate::kubelet::init_tracing();
    let client = crate::kubelet::client_from_kubeconfig(paths::SCHEDULER_CONF).await?;
    let wake = Arc::new(Notify::new());
    let nodes = reflect(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        wake.clone(),
        "node",
    );
    let pending = reflect(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields("spec.nodeName="),
        wake.clone(),
        "pending pod",
    );
    let all_pods = reflect(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
        wake.clone(),
        "pod",
    );
    for (store_ready, what) in [
        (nodes.wait_until_ready().await, "node"),
        (pending.wait_until_ready().await, "pending pod"),
        (all_pods.wait_until_ready().await, "pod"),
    ] {
        store_ready.with_context(|| format!("the {what} watch ended before its first list"))?;
    }
    tracing::info!("caches loaded; scheduling");
    let mut scheduler = Scheduler {
        client,
        nodes,
        pending,
        all_pods,
        queue: queue::Queue::default(),
        assumed: HashMap::new(),
        known_nodes: HashSet::new(),
    };
    loop {
        scheduler.run_once().await;
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(RESYNC) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filters::tests::pod;

    #[test]
    fn only_unassigned_default_scheduler_pods() {
        assert!(wants_us(&pod()));
        let mut other = pod();
        other.spec.as_mut().unwrap().scheduler_name = Some("custom".into());
        assert!(!wants_us(&other));
        let mut bound = pod();
        bound.spec.as_mut().unwrap().node_name = Some("n".into());
        assert!(!wants_us(&bound));
    }
}
