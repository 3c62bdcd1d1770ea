//! The scheduler: assigns each pending pod that asks for `default-scheduler` to a
//! node. One task owns the cluster picture (cache.rs), fed by watches on nodes, pods
//! and namespaces; it takes pods from the queue (queue.rs), filters a sample of the
//! nodes (filters.rs with interpod.rs and spread.rs), scores the feasible ones
//! (scores.rs), assumes the pod onto the winner and hands the binding to a separate
//! task (bind.rs), so many bindings are in flight while the next pod is decided.
//! Reflectors of Services and workload controllers (owners.rs) give the selector that
//! upstream's default topology spreading counts pods with.
//! Only the holder of the Lease kube-system/kube-scheduler schedules.

mod bind;
mod cache;
mod filters;
mod interpod;
mod owners;
mod queue;
mod resources;
mod scores;
mod selectors;
mod spread;
#[cfg(test)]
mod tests;
mod volumes;

use cache::{Cache, PodInfo};
use filters::{Prepared, Rejection};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use queue::{ClusterEvent, Queue};
use rind_runtime::leader;
use rind_runtime::{NodeConfig, paths};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// How often back-off expiries are checked.
const TICK: Duration = Duration::from_millis(100);
/// Bindings in flight at once; beyond that the scheduling loop waits for one to end.
const MAX_BINDS_IN_FLIGHT: usize = 256;
/// Below this many nodes every node is filtered (upstream's minFeasibleNodesToFind).
const MIN_FEASIBLE_NODES: usize = 100;

/// Counters for the benchmark: where the scheduler's time goes.
#[derive(Debug, Default)]
pub struct Stats {
    /// Set once the caches are loaded and scheduling starts.
    pub ready: AtomicBool,
    pub attempts: AtomicU64,
    pub bound: AtomicU64,
    pub unschedulable: AtomicU64,
    pub bind_errors: AtomicU64,
    /// Time spent deciding (filter + score), in nanoseconds.
    pub decide_nanos: AtomicU64,
    /// Summed duration of the binding requests, in nanoseconds.
    pub bind_nanos: AtomicU64,
    /// Time the loop waited because MAX_BINDS_IN_FLIGHT bindings were outstanding.
    pub bind_wait_nanos: AtomicU64,
    pub nodes_filtered: AtomicU64,
    pub events_dropped: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Upstream's adaptive percentageOfNodesToScore: how many feasible nodes to find
/// before scoring (50% minus 1% per 125 nodes, at least 5%, at least 100 nodes).
pub fn feasible_nodes_to_find(all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES {
        return all;
    }
    let percentage = 50usize.saturating_sub(all / 125).max(5);
    (all * percentage / 100).max(MIN_FEASIBLE_NODES)
}

fn wants_us(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let scheduler = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(bind::SCHEDULER_NAME);
    scheduler == bind::SCHEDULER_NAME
        && !is_assigned(pod)
        && !is_finished(pod)
        && pod.metadata.deletion_timestamp.is_none()
}

fn is_assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// What the scheduling loop reacts to. Watch events are boxed: they are large and the
/// channel holds many.
enum Input {
    Node(Box<watcher::Event<Node>>),
    Pod(Box<watcher::Event<Pod>>),
    Namespace(Box<watcher::Event<Namespace>>),
    /// A claim, volume or storage class changed (the reflectors in `volumes` hold them).
    Volume,
    BindFailed {
        uid: String,
        error: String,
    },
}

/// Forwards a watch into the scheduling loop's channel.
fn forward<K>(
    api: Api<K>,
    tx: mpsc::UnboundedSender<Input>,
    wrap: fn(watcher::Event<K>) -> Input,
    what: &'static str,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let events = watcher(api, watcher::Config::default()).default_backoff();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    if tx.send(wrap(event)).is_err() {
                        return;
                    }
                }
                Err(err) => tracing::warn!("{what} watch error: {err}"),
            }
        }
    })
}

/// A relist (watch restart) in progress: what it has shown so far.
#[derive(Default)]
struct Relist {
    nodes: Option<HashSet<String>>,
    pods: Option<HashSet<String>>,
}

struct Scheduler {
    client: Client,
    cache: Cache,
    queue: Queue,
    stats: Arc<Stats>,
    binds: Arc<Semaphore>,
    events: bind::EventSink,
    tx: mpsc::UnboundedSender<Input>,
    /// Where the next node sample starts, so successive pods look at different nodes.
    next_start: usize,
    relist: Relist,
    /// Whether each watch has delivered its first complete list.
    synced: [bool; 3],
    volumes: volumes::Caches,
    /// Services and controllers, for the system default spread constraints.
    owners: owners::Owners,
}

impl Scheduler {
    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Node(event) => match *event {
                watcher::Event::Init => self.relist.nodes = Some(HashSet::new()),
                watcher::Event::InitApply(node) | watcher::Event::Apply(node) => {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    if let Some(seen) = self.relist.nodes.as_mut() {
                        seen.insert(name);
                    }
                    if self.cache.set_node(Arc::new(node)) {
                        self.queue.on_event(ClusterEvent::Node, now);
                    }
                }
                watcher::Event::Delete(node) => {
                    self.cache
                        .remove_node(node.metadata.name.as_deref().unwrap_or(""));
                }
                watcher::Event::InitDone => {
                    let seen = self.relist.nodes.take().unwrap_or_default();
                    let gone: Vec<String> = self
                        .cache
                        .order
                        .iter()
                        .filter(|n| !seen.contains(*n))
                        .cloned()
                        .collect();
                    for name in gone {
                        self.cache.remove_node(&name);
                    }
                    self.synced[0] = true;
                }
            },
            Input::Pod(event) => match *event {
                watcher::Event::Init => self.relist.pods = Some(HashSet::new()),
                watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                    if let Some(seen) = self.relist.pods.as_mut() {
                        seen.insert(pod.metadata.uid.clone().unwrap_or_default());
                    }
                    self.on_pod(Arc::new(pod), now);
                }
                watcher::Event::Delete(pod) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    self.forget_pod(&uid, now);
                }
                watcher::Event::InitDone => {
                    // Pods that vanished while the watch was down: neither placed nor
                    // pending any more. Assumed pods are kept: their binding is ours.
                    let seen = self.relist.pods.take().unwrap_or_default();
                    let gone: Vec<String> = self
                        .cache
                        .placed_uids()
                        .filter(|u| !seen.contains(*u) && !self.cache.assumed.contains(*u))
                        .cloned()
                        .collect();
                    for uid in gone {
                        self.forget_pod(&uid, now);
                    }
                    self.queue.retain(|uid| seen.contains(uid));
                    self.synced[1] = true;
                }
            },
            Input::Namespace(event) => match *event {
                watcher::Event::InitApply(ns) | watcher::Event::Apply(ns) => {
                    let name = ns.metadata.name.clone().unwrap_or_default();
                    let labels = ns.metadata.labels.clone().unwrap_or_default();
                    self.cache.namespace_labels.insert(name, labels);
                }
                watcher::Event::Delete(ns) => {
                    self.cache
                        .namespace_labels
                        .remove(ns.metadata.name.as_deref().unwrap_or(""));
                }
                watcher::Event::Init => {}
                watcher::Event::InitDone => self.synced[2] = true,
            },
            // A claim got bound or provisioned: pods waiting for it may go on.
            Input::Volume => self.queue.on_event(ClusterEvent::Volume, now),
            Input::BindFailed { uid, error } => {
                // The assumed placement never happened: undo it and retry later.
                self.cache.unplace(&uid);
                self.queue.on_event(ClusterEvent::PodRemoved, now);
                let delay = self.queue.bind_failed(&uid, now);
                tracing::warn!(%uid, retry_in = ?delay, "binding failed: {error}");
            }
        }
    }

    fn forget_pod(&mut self, uid: &str, now: Instant) {
        self.queue.remove(uid);
        if self.cache.unplace(uid) {
            self.queue.on_event(ClusterEvent::PodRemoved, now);
        }
    }

    fn on_pod(&mut self, pod: Arc<Pod>, now: Instant) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if is_assigned(&pod) {
            self.queue.remove(&uid);
            if is_finished(&pod) {
                // Finished pods no longer use their node (upstream's cache drops them).
                if self.cache.unplace(&uid) {
                    self.queue.on_event(ClusterEvent::PodRemoved, now);
                }
                return;
            }
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let known = self.cache.placed_on(&uid).is_some();
            self.cache.place(&node, Arc::new(PodInfo::new(pod)));
            if !known {
                self.queue.on_event(ClusterEvent::PodPlaced, now);
            }
            return;
        }
        if !wants_us(&pod) {
            self.forget_pod(&uid, now);
            return;
        }
        // Pending in the watch but assumed by us: the binding is still on its way.
        if self.cache.assumed.contains(&uid) {
            return;
        }
        self.queue.add_or_update(&uid, pod);
    }

    /// One attempt for one pod: filter a sample of nodes, score the feasible ones,
    /// assume the best and start binding it.
    async fn schedule_one(&mut self, uid: String, pod: Arc<Pod>) {
        let started = Instant::now();
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(PodInfo::new(pod.clone()));
        let claims = match volumes::claims_of(&pod, &self.volumes) {
            Ok(claims) => claims,
            Err(rejection) => {
                // The same reason holds for every node, as upstream reports it.
                let total = self.cache.order.len();
                let rejections = vec![vec![rejection]; total];
                self.unschedulable(&uid, pod, &rejections, total);
                return;
            }
        };
        let (chosen, rejections, total) = {
            let prepared = Prepared::new(&info, &self.cache);
            let all = self.cache.order.len();
            let want = feasible_nodes_to_find(all);
            let start = if all == 0 { 0 } else { self.next_start % all };
            let mut feasible = Vec::new();
            let mut rejections: Vec<Vec<Rejection>> = Vec::new();
            let mut processed = 0;
            for i in 0..all {
                processed += 1;
                let name = &self.cache.order[(start + i) % all];
                let Some(node) = self.cache.nodes.get(name) else {
                    continue;
                };
                let checked = prepared
                    .check(node)
                    .and_then(|()| claims.check(&node.node).map_err(|r| vec![r]));
                match checked {
                    Ok(()) => {
                        feasible.push(node);
                        if feasible.len() >= want {
                            break;
                        }
                    }
                    Err(reasons) => rejections.push(reasons),
                }
            }
            self.stats
                .nodes_filtered
                .fetch_add(processed as u64, Ordering::Relaxed);
            if all > 0 {
                self.next_start = (start + processed) % all;
            }
            let chosen = match feasible.len() {
                0 => None,
                // A single feasible node needs no scoring.
                1 => Some(feasible[0].name.clone()),
                _ => {
                    let owners = &self.owners;
                    let scorer =
                        scores::Scorer::new(&info, &prepared.selection, &self.cache, || {
                            owners.default_selector(&pod)
                        });
                    let totals = scorer.totals(&feasible);
                    scores::best(&totals).map(|i| feasible[i].name.clone())
                }
            };
            (chosen, rejections, all)
        };
        self.stats
            .decide_nanos
            .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
        let Some(node) = chosen else {
            self.unschedulable(&uid, pod, &rejections, total);
            return;
        };
        if !claims.all_bound() {
            // Its WaitForFirstConsumer claims are provisioned on the chosen node first;
            // the pod is bound once they are (the volume filter keeps it there), woken
            // by the claim's change.
            self.queue.failed(&uid, Instant::now(), false);
            if let Err(err) = claims.select_node(&self.client, &node).await {
                tracing::warn!(%uid, %node, "cannot select a node for the pod's claims: {err}");
            }
            return;
        }
        self.cache.assume(&node, info);
        let waited = Instant::now();
        let Ok(permit) = self.binds.clone().acquire_owned().await else {
            return;
        };
        self.stats
            .bind_wait_nanos
            .fetch_add(nanos(waited.elapsed()), Ordering::Relaxed);
        let client = self.client.clone();
        let stats = self.stats.clone();
        let tx = self.tx.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = bind::bind(&client, &pod, &node).await;
            drop(permit);
            stats
                .bind_nanos
                .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
            match result {
                Ok(()) => {
                    stats.bound.fetch_add(1, Ordering::Relaxed);
                    let message = format!(
                        "Successfully assigned {}/{} to {node}",
                        pod.metadata.namespace.as_deref().unwrap_or("default"),
                        pod.metadata.name.as_deref().unwrap_or("")
                    );
                    events.send(&pod, "Normal", "Scheduled", "Binding", message, &stats);
                }
                Err(err) => {
                    stats.bind_errors.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(Input::BindFailed {
                        uid,
                        error: err.to_string(),
                    });
                }
            }
        });
    }

    fn unschedulable(
        &mut self,
        uid: &str,
        pod: Arc<Pod>,
        rejections: &[Vec<Rejection>],
        total: usize,
    ) {
        self.stats.unschedulable.fetch_add(1, Ordering::Relaxed);
        let message = filters::unschedulable_message(total, rejections);
        // Pods held back by other pods' placement may fit once more pods are placed.
        let wants_pod_events = rejections
            .iter()
            .flatten()
            .any(|r| matches!(r, Rejection::PodAffinity | Rejection::Spread));
        let delay = self.queue.failed(uid, Instant::now(), wants_pod_events);
        tracing::info!(
            pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or("")),
            backoff = ?delay,
            "unschedulable: {message}"
        );
        self.events.send(
            &pod,
            "Warning",
            "FailedScheduling",
            "Scheduling",
            message.clone(),
            &self.stats,
        );
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(err) = bind::mark_unschedulable(&client, &pod, &message).await {
                tracing::warn!("cannot update the PodScheduled condition: {err}");
            }
        });
    }
}

/// Schedules until the watches end or the future is dropped (the lease was lost).
pub async fn run(client: Client, stats: Arc<Stats>) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watches = [
        forward(
            Api::<Node>::all(client.clone()),
            tx.clone(),
            |e| Input::Node(Box::new(e)),
            "node",
        ),
        forward(
            Api::<Pod>::all(client.clone()),
            tx.clone(),
            |e| Input::Pod(Box::new(e)),
            "pod",
        ),
        forward(
            Api::<Namespace>::all(client.clone()),
            tx.clone(),
            |e| Input::Namespace(Box::new(e)),
            "namespace",
        ),
    ];
    // The watch tasks end with this future (a lost lease drops it).
    struct AbortOnDrop<const N: usize>([tokio::task::JoinHandle<()>; N]);
    impl<const N: usize> Drop for AbortOnDrop<N> {
        fn drop(&mut self) {
            for task in &self.0 {
                task.abort();
            }
        }
    }
    let (volumes, volume_watches) =
        volumes::Caches::start(&client, tx.clone(), || Input::Volume).await?;
    let _watches = AbortOnDrop(watches);
    let _volume_watches = AbortOnDrop(volume_watches);
    let (owners, owner_watches) = owners::Owners::start(&client).await?;
    let _owner_watches = AbortOnDrop(owner_watches);
    let mut scheduler = Scheduler {
        events: bind::EventSink::start(client.clone()),
        client,
        cache: Cache::default(),
        queue: Queue::default(),
        stats,
        binds: Arc::new(Semaphore::new(MAX_BINDS_IN_FLIGHT)),
        tx,
        next_start: 0,
        relist: Relist::default(),
        synced: [false; 3],
        volumes,
        owners,
    };
    let mut last_tick = Instant::now();
    let mut announced = false;
    loop {
        // Take in everything the watches delivered before deciding anything.
        while let Ok(input) = rx.try_recv() {
            scheduler.handle(input);
        }
        if scheduler.synced.iter().all(|s| *s) {
            if !announced {
                tracing::info!(
                    nodes = scheduler.cache.order.len(),
                    pending = scheduler.queue.len(),
                    "caches loaded; scheduling"
                );
                announced = true;
                scheduler.stats.ready.store(true, Ordering::SeqCst);
            }
            if last_tick.elapsed() >= TICK {
                scheduler.queue.tick(Instant::now());
                last_tick = Instant::now();
            }
            if let Some((uid, pod)) = scheduler.queue.pop() {
                scheduler.schedule_one(uid, pod).await;
                // Let the binding tasks and watches run between decisions.
                tokio::task::yield_now().await;
                continue;
            }
        }
        tokio::select! {
            input = rx.recv() => match input {
                Some(input) => scheduler.handle(input),
                None => anyhow::bail!("the scheduler's watches ended"),
            },
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Runs the scheduler inside a node: campaigns for the lease and schedules while it
/// holds it; on SIGTERM gives the lease up so a peer takes over at once.
pub async fn run_node(_cfg: &NodeConfig) -> anyhow::Result<()> {
    rind_runtime::logging::init("info");
    let client =
        rind_runtime::client::from_kubeconfig_when_ready(paths::SCHEDULER_CONF, "scheduler")
            .await?;
    let stats = Arc::new(Stats::default());
    let mut elector = leader::Elector::new(
        client.clone(),
        leader::LeaseConfig::scheduler(leader::identity()),
    );
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        result = elector.run(|| run(client.clone(), stats.clone())) => result,
        _ = sigterm.recv() => Ok(()),
    };
    if let Err(e) = elector.release().await {
        tracing::warn!("releasing the lease: {e}");
    }
    result
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn only_unassigned_default_scheduler_pods() {
        let pod = || Pod {
            spec: Some(Default::default()),
            ..Pod::default()
        };
        assert!(wants_us(&pod()));
        let mut other = pod();
        other.spec.as_mut().unwrap().scheduler_name = Some("custom".into());
        assert!(!wants_us(&other));
        let mut bound = pod();
        bound.spec.as_mut().unwrap().node_name = Some("n".into());
        assert!(!wants_us(&bound));
    }

    #[test]
    fn sample_size_matches_upstream() {
        assert_eq!(feasible_nodes_to_find(3), 3);
        assert_eq!(feasible_nodes_to_find(100), 100);
        // 5,000 nodes: 50 - 40 = 10% → 500.
        assert_eq!(feasible_nodes_to_find(5000), 500);
        // Large clusters bottom out at 5%.
        assert_eq!(feasible_nodes_to_find(10_000), 500);
        assert_eq!(feasible_nodes_to_find(150), 100);
    }
}
