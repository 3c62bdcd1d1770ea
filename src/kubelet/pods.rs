//! Pod workers: drive the runtime towards the pods bound to this node, like the real
//! kubelet's sync loop. A relist of the runtime every second (the kubelet's PLEG)
//! syncs every pod, a watch event the pods it changed; each pod syncs in its own task
//! so a slow graceful stop never holds up the others. Everything is derived from the
//! runtime's state and labels, so a restarted kubelet adopts what is already running.

use super::backoff::{RestartBackoff, backoff, go_duration};
use super::cgroups::{self, CgroupError, Cgroups, Qos};
use super::cri::{self, Cri, CriError, v1};
use super::dns;
use super::env::{self, ApiSources, NodeAllocatable, Sources};
use super::lifecycle;
use super::probes::Prober;
use super::spec::{self, FieldValues, PodKey};
use super::status::{self, ContainerView, Exit, Instance, SandboxView, Waiting};
use super::volumes::{Prepared, VolumeCtx};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Event, ObjectReference, Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::Store;
use rind_runtime::events;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const RELIST_PERIOD: Duration = Duration::from_secs(1);
/// How often a running pod's configMap, secret, downwardAPI and projected volumes are
/// compared with their sources.
const VOLUME_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Cri(#[from] CriError),
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("unable to ensure pod container exists: {0}")]
    PodCgroup(#[from] CgroupError),
}

/// The kubelet's writes to the API server about pods.
#[async_trait::async_trait]
pub trait PodApi: Send + Sync {
    async fn patch_status(&self, key: &PodKey, status: &PodStatus) -> Result<(), kube::Error>;
    /// Finishes a graceful deletion: grace period 0, only for this very pod (uid).
    async fn delete_now(&self, key: &PodKey) -> Result<(), kube::Error>;
    /// Records an Event about the pod or one of its containers (`events::pod_reference`,
    /// `events::container_reference`); a failure is only logged, events are advisory.
    async fn record_event(
        &self,
        regarding: ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    );
    /// The client volumes read their claims, configMaps and secrets with (None: a
    /// test runtime without an API server; pods with volumes then cannot start).
    fn client(&self) -> Option<kube::Client> {
        None
    }
}

/// Events waiting to be written; beyond this they are dropped (and logged), as
/// upstream's event broadcaster drops events when its queue is full: events are
/// advisory and must never hold up a pod's start.
const EVENT_QUEUE: usize = 1000;
/// Event writes in flight at once.
const EVENT_WRITERS: usize = 16;

/// [`PodApi`] over the real API server.
pub struct KubePodApi {
    pub client: kube::Client,
    pub node_name: String,
    events: tokio::sync::mpsc::Sender<Event>,
}

impl KubePodApi {
    /// Also starts the background writer of the kubelet's Events: a sync only queues
    /// them, so the three or four Events of a pod's start cost it no API round trip.
    pub fn new(client: kube::Client, node_name: String) -> Self {
        let (events, mut queued) = tokio::sync::mpsc::channel::<Event>(EVENT_QUEUE);
        let writer = client.clone();
        tokio::spawn(async move {
            let writers = Arc::new(tokio::sync::Semaphore::new(EVENT_WRITERS));
            while let Some(event) = queued.recv().await {
                let Ok(permit) = writers.clone().acquire_owned().await else {
                    return;
                };
                let client = writer.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let namespace = event.metadata.namespace.clone().unwrap_or_default();
                    let api: Api<Event> = Api::namespaced(client, &namespace);
                    if let Err(err) = api.create(&PostParams::default(), &event).await {
                        let pod = event.involved_object.name.unwrap_or_default();
                        let reason = event.reason.unwrap_or_default();
                        tracing::warn!(%pod, %reason, "cannot record event: {err}");
                    }
                });
            }
        });
        Self {
            client,
            node_name,
            events,
        }
    }
}

#[async_trait::async_trait]
impl PodApi for KubePodApi {
    fn client(&self) -> Option<kube::Client> {
        Some(self.client.clone())
    }

    async fn patch_status(&self, key: &PodKey, status: &PodStatus) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn delete_now(&self, key: &PodKey) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        // The uid precondition keeps a new pod of the same name safe.
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(key.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&key.name, &params).await {
            Ok(_) => Ok(()),
            // Already gone, or replaced by a new pod of the same name: nothing to do.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn record_event(
        &self,
        regarding: ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let pod = regarding.name.clone().unwrap_or_default();
        let event = events::legacy_event(
            regarding,
            "kubelet",
            &self.node_name,
            type_,
            reason,
            message,
        );
        if let Err(err) = self.events.try_send(event) {
            tracing::warn!(%pod, %reason, "event dropped: {err}");
        }
    }
}

/// Image pulls that failed, per pod container, to space out retries.
#[derive(Default)]
struct PullFailures {
    by_container: HashMap<(String, String), (u32, Instant)>,
}

pub struct PodWorkers {
    api: Arc<dyn PodApi>,
    cri: Cri,
    node_ip: String,
    /// The node's IPv6 address in a dual-stack cluster: host-network pods' second IP.
    node_ipv6: Option<String>,
    /// Variables every container gets (the API server's Service address).
    service_env: Vec<(String, String)>,
    /// The cluster DNS Service and the node's resolver, for each pod's resolv.conf.
    dns: dns::ClusterDns,
    store: Store<Pod>,
    in_flight: Mutex<HashSet<String>>,
    pulls: Mutex<PullFailures>,
    /// The last status sent per pod uid. Comparing with it, not with the API's copy,
    /// means a field the server normalises differently never causes endless patches.
    sent: Mutex<HashMap<String, serde_json::Value>>,
    /// Pods whose sandbox creation failed and was reported already.
    sandbox_failures: Mutex<HashSet<String>>,
    /// Exited container instances whose back-off was reported already, so a crash
    /// gives one BackOff event rather than one per relist.
    backoffs_reported: Mutex<HashSet<String>>,
    restarts: RestartBackoff,
    prober: Arc<Prober>,
    /// What `resourceFieldRef` reports for limits a container leaves out.
    node: NodeAllocatable,
    /// When each pod's API-backed volumes were last brought up to date.
    volume_refreshes: Mutex<HashMap<String, Instant>>,
    /// When the last relist of the runtime succeeded: the node's readiness checks
    /// that the sync loop is alive (upstream's PLEG health).
    sync_health: SyncHealth,
    /// The resourceVersion of each pod as its last sync was started with: a watch
    /// event syncs only the pods that changed, not all of them (50 pods starting at
    /// once would otherwise resync every pod on each of their hundreds of events).
    synced_versions: Mutex<HashMap<String, String>>,
    /// When each pod's last sync ended: a relist whose runtime listing is older must
    /// not start a sync from it (it could miss the containers that sync created).
    finished: Mutex<HashMap<String, Instant>>,
    /// Poked when a sync ends, so a change that arrived while it ran is not left
    /// waiting for the next periodic relist.
    resync: Notify,
    /// The node's pod cgroups (None: the runtime's default cgroup for every pod, as
    /// in tests without a cgroup hierarchy of their own).
    cgroups: Option<Cgroups>,
    /// The summed CPU requests of Burstable pods last written to their QoS cgroup.
    burstable_requests: Mutex<Option<i64>>,
    /// Pod cgroups whose processes were killed already, so a cgroup that takes a
    /// while to empty is reported once.
    cgroups_killed: Mutex<HashSet<String>>,
}

/// The time of the sync loop's last successful relist, shared with the heartbeat.
#[derive(Clone, Debug)]
pub struct SyncHealth(Arc<Mutex<Instant>>);

impl Default for SyncHealth {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }
}

impl SyncHealth {
    fn mark(&self) {
        if let Ok(mut at) = self.0.lock() {
            *at = Instant::now();
        }
    }

    /// How long ago the loop last relisted.
    pub fn since(&self) -> Duration {
        self.0.lock().map(|at| at.elapsed()).unwrap_or_default()
    }
}

/// Removes a pod's uid from the in-flight set when its sync task ends, however it ends.
struct InFlight {
    workers: Arc<PodWorkers>,
    uid: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut finished) = self.workers.finished.lock() {
            finished.insert(self.uid.clone(), Instant::now());
        }
        if let Ok(mut set) = self.workers.in_flight.lock() {
            set.remove(&self.uid);
        }
        self.workers.resync.notify_one();
    }
}

/// The runtime's objects of one pod.
#[derive(Default, Clone)]
struct PodRuntime {
    sandboxes: Vec<v1::PodSandbox>,
    containers: Vec<v1::Container>,
}

impl PodRuntime {
    /// A ready sandbox or a container not exited: processes of the pod may run.
    fn may_run(&self) -> bool {
        self.sandboxes
            .iter()
            .any(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
            || self
                .containers
                .iter()
                .any(|c| c.state != v1::ContainerState::ContainerExited as i32)
    }
}

/// What one relist saw that decides which pod cgroups may go.
struct CgroupUpkeep {
    /// Pods that run or are to run: their cgroups stay.
    active: HashSet<String>,
    /// Finished pods: their syncs never start anything again.
    finished: HashSet<String>,
    /// Pods with processes the runtime may still be running.
    running: HashSet<String>,
    /// The summed CPU requests of the Burstable pods not finished.
    burstable_milli_cpu: i64,
}

impl CgroupUpkeep {
    fn observe(pods: &[Arc<Pod>], runtime: &HashMap<String, PodRuntime>) -> Self {
        let mut upkeep = CgroupUpkeep {
            active: HashSet::new(),
            finished: HashSet::new(),
            running: runtime
                .iter()
                .filter(|(_, objects)| objects.may_run())
                .map(|(uid, _)| uid.clone())
                .collect(),
            burstable_milli_cpu: 0,
        };
        for pod in pods {
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            let finished = matches!(phase, Some("Succeeded" | "Failed"));
            if !finished && !super::static_pods::is_mirror(pod) && Qos::of(pod) == Qos::Burstable {
                upkeep.burstable_milli_cpu += cgroups::pod_cpu_request(pod);
            }
            if finished {
                upkeep.finished.insert(uid);
            } else if pod.metadata.deletion_timestamp.is_none() {
                upkeep.active.insert(uid);
            }
        }
        upkeep
    }

    /// Whether the cgroup of pod `uid` may go. A pod being deleted or gone from the
    /// API may still have a sync or teardown under way (`in_flight`) that needs it;
    /// a finished pod's sync only ever stops its sandbox.
    fn removable(&self, uid: &str, in_flight: &HashSet<String>) -> bool {
        if self.active.contains(uid) || self.running.contains(uid) {
            return false;
        }
        self.finished.contains(uid) || !in_flight.contains(uid)
    }
}

fn label<'a>(labels: &'a HashMap<String, String>, key: &str) -> &'a str {
    labels.get(key).map(String::as_str).unwrap_or("")
}

fn from_nanos(nanos: i64) -> Option<Timestamp> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
}

impl PodWorkers {
    /// The node's IPv6 address, in a dual-stack cluster.
    pub fn with_node_ipv6(mut self, node_ipv6: Option<String>) -> Self {
        self.node_ipv6 = node_ipv6;
        self
    }

    /// Puts each pod in a pod cgroup of its own under `cgroups`.
    pub fn with_cgroups(mut self, cgroups: Option<Cgroups>) -> Self {
        self.cgroups = cgroups;
        self
    }

    // Each argument is a separate piece of node configuration the kubelet read at start.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        api: Arc<dyn PodApi>,
        cri: Cri,
        node_ip: String,
        service_env: Vec<(String, String)>,
        dns: dns::ClusterDns,
        store: Store<Pod>,
        node: NodeAllocatable,
        sync_health: SyncHealth,
    ) -> Self {
        Self {
            node,
            sync_health,
            volume_refreshes: Mutex::new(HashMap::new()),
            prober: Arc::new(Prober::new(cri.clone(), api.clone())),
            restarts: RestartBackoff::default(),
            api,
            cri,
            node_ip,
            node_ipv6: None,
            service_env,
            dns,
            store,
            in_flight: Mutex::new(HashSet::new()),
            pulls: Mutex::new(PullFailures::default()),
            sent: Mutex::new(HashMap::new()),
            sandbox_failures: Mutex::new(HashSet::new()),
            backoffs_reported: Mutex::new(HashSet::new()),
            synced_versions: Mutex::new(HashMap::new()),
            finished: Mutex::new(HashMap::new()),
            resync: Notify::new(),
            cgroups: None,
            burstable_requests: Mutex::new(None),
            cgroups_killed: Mutex::new(HashSet::new()),
        }
    }

    /// True when the pod's API-backed volumes are due for an update (and marks them
    /// done): every [`VOLUME_REFRESH`], so a changed ConfigMap or Secret reaches a
    /// running pod within upstream's usual minute and the API is not asked every second.
    fn refresh_due(&self, uid: &str) -> bool {
        let Ok(mut last) = self.volume_refreshes.lock() else {
            return false;
        };
        let now = Instant::now();
        match last.get(uid) {
            Some(at) if now.duration_since(*at) < VOLUME_REFRESH => false,
            // A pod's first sync has just written its volumes (or found them written):
            // comparing them with their sources again at once is API calls for nothing.
            None => {
                last.insert(uid.to_string(), now);
                false
            }
            Some(_) => {
                last.insert(uid.to_string(), now);
                true
            }
        }
    }

    /// True the first time a pod's sandbox failure is seen.
    fn first_failure(&self, uid: &str) -> bool {
        self.sandbox_failures
            .lock()
            .is_ok_and(|mut seen| seen.insert(uid.to_string()))
    }

    /// Runs the sync loop forever; `wake` is notified on every watch event. Every
    /// [`RELIST_PERIOD`] every pod syncs (that is how exits and probe results are
    /// seen); in between, a watch event or the end of a sync syncs only the pods whose
    /// object changed since their last sync.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>) {
        let mut next_full = tokio::time::Instant::now();
        loop {
            let every_pod = tokio::time::Instant::now() >= next_full;
            if every_pod {
                next_full = tokio::time::Instant::now() + RELIST_PERIOD;
            }
            match self.relist(every_pod).await {
                Ok(()) => self.sync_health.mark(),
                Err(err) => tracing::warn!("relist failed: {err}"),
            }
            tokio::select! {
                () = wake.notified() => {}
                () = self.resync.notified() => {}
                () = tokio::time::sleep_until(next_full) => {}
            }
        }
    }

    async fn relist(self: &Arc<Self>, every_pod: bool) -> Result<(), CriError> {
        let listed_at = Instant::now();
        let sandboxes = self.cri.list_sandboxes().await?;
        let containers = self.cri.list_containers().await?;
        let mut runtime: HashMap<String, PodRuntime> = HashMap::new();
        for sandbox in sandboxes {
            let uid = label(&sandbox.labels, cri::LABEL_POD_UID).to_string();
            runtime.entry(uid).or_default().sandboxes.push(sandbox);
        }
        for container in containers {
            let uid = label(&container.labels, cri::LABEL_POD_UID).to_string();
            runtime.entry(uid).or_default().containers.push(container);
        }
        if let Ok(mut reported) = self.backoffs_reported.lock() {
            let present: HashSet<&str> = runtime
                .values()
                .flat_map(|r| r.containers.iter().map(|c| c.id.as_str()))
                .collect();
            reported.retain(|id| present.contains(id.as_str()));
        }
        let running: HashSet<String> = runtime
            .values()
            .flat_map(|r| r.containers.iter())
            .filter(|c| c.state == v1::ContainerState::ContainerRunning as i32)
            .map(|c| c.id.clone())
            .collect();
        self.prober.retain(&running, listed_at);
        let mut pods = self.store.state();
        // Oldest first, so in a burst the runtime gets the pods' calls in that order.
        pods.sort_by(|a, b| {
            let created = |p: &Pod| p.metadata.creation_timestamp.clone().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let known: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        // Taken before the loops below consume the lists.
        let cgroup_upkeep =
            (every_pod && self.cgroups.is_some()).then(|| CgroupUpkeep::observe(&pods, &runtime));
        self.restarts.retain_pods(&known);
        if let Ok(mut refreshes) = self.volume_refreshes.lock() {
            refreshes.retain(|uid, _| known.contains(uid));
        }
        if let Ok(mut versions) = self.synced_versions.lock() {
            versions.retain(|uid, _| known.contains(uid));
        }
        let mut synced_since_listing = HashSet::new();
        if let Ok(mut finished) = self.finished.lock() {
            finished.retain(|uid, at| {
                if *at >= listed_at {
                    synced_since_listing.insert(uid.clone());
                }
                runtime.contains_key(uid) || known.contains(uid)
            });
        }
        for pod in pods {
            // Mirror pods stand for processes the node's supervisor runs
            // (static_pods.rs): nothing of theirs is in the runtime to sync.
            if super::static_pods::is_mirror(&pod) {
                continue;
            }
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            // A sync that ended after the listing may have changed what it shows; the
            // relist its end triggers takes this pod.
            if synced_since_listing.contains(&uid) {
                continue;
            }
            let version = pod.metadata.resource_version.clone().unwrap_or_default();
            let unchanged = self
                .synced_versions
                .lock()
                .is_ok_and(|versions| versions.get(&uid) == Some(&version));
            if unchanged && !every_pod {
                continue;
            }
            let objects = runtime.get(&uid).cloned().unwrap_or_default();
            let started = self.spawn(uid.clone(), move |w| async move {
                let key = PodKey::of(&pod);
                if let Err(err) = w.sync_pod(&pod, objects).await {
                    tracing::warn!(pod = %format!("{}/{}", key.namespace, key.name), "sync failed: {err}");
                }
            });
            if started && let Ok(mut versions) = self.synced_versions.lock() {
                versions.insert(uid, version);
            }
        }
        // Sandboxes of pods the API no longer has: the pod was deleted outright.
        for (uid, objects) in runtime {
            if known.contains(&uid) || synced_since_listing.contains(&uid) {
                continue;
            }
            self.spawn(uid.clone(), move |w| async move {
                tracing::info!(%uid, "removing the sandboxes of a pod that no longer exists");
                if let Err(err) = w.teardown(&objects, 0).await {
                    tracing::warn!(%uid, "teardown failed: {err}");
                }
                if let Some(sandbox) = objects.sandboxes.first()
                    && let Some(meta) = &sandbox.metadata
                {
                    let key = PodKey {
                        namespace: meta.namespace.clone(),
                        name: meta.name.clone(),
                        uid: meta.uid.clone(),
                    };
                    // The logs go with the pod, as with the real kubelet's cleanup.
                    let _ = tokio::fs::remove_dir_all(key.log_dir()).await;
                    super::volumes::remove_pod_dir(&key.uid).await;
                }
            });
        }
        if let (Some(upkeep), Some(cgroups)) = (cgroup_upkeep, self.cgroups.clone()) {
            let workers = self.clone();
            // Directory walks and writes on cgroupfs: off the async threads.
            let _ =
                tokio::task::spawn_blocking(move || workers.tend_cgroups(&cgroups, &upkeep)).await;
        }
        Ok(())
    }

    /// Removes the pod cgroups no pod needs any more (pods gone from the API, or
    /// finished, once nothing of theirs runs; also those a previous kubelet left), and
    /// keeps the burstable cgroup's weight at its pods' summed requests. A pod cgroup
    /// that still holds processes has them killed and is removed on a later relist,
    /// as upstream's cleanup of orphaned pod cgroups does.
    fn tend_cgroups(&self, cgroups: &Cgroups, upkeep: &CgroupUpkeep) {
        let in_flight = self
            .in_flight
            .lock()
            .map(|set| set.clone())
            .unwrap_or_default();
        for cgroup in cgroups.pod_cgroups() {
            let Some(uid) = cgroups::pod_uid(&cgroup) else {
                continue;
            };
            if !upkeep.removable(uid, &in_flight) {
                continue;
            }
            match cgroups.remove(&cgroup) {
                Ok(()) => {
                    tracing::info!(%uid, %cgroup, "removed the pod cgroup");
                    if let Ok(mut killed) = self.cgroups_killed.lock() {
                        killed.remove(&cgroup);
                    }
                }
                Err(CgroupError::Busy { pids, .. }) => {
                    let first = self
                        .cgroups_killed
                        .lock()
                        .is_ok_and(|mut killed| killed.insert(cgroup.clone()));
                    if first {
                        tracing::warn!(%uid, %cgroup, ?pids, "the pod is gone but its cgroup still has processes; killing them");
                    }
                    cgroups::kill(&pids);
                }
                Err(err) => tracing::warn!(%uid, "{err}"),
            }
        }
        let Ok(mut last) = self.burstable_requests.lock() else {
            return;
        };
        if *last != Some(upkeep.burstable_milli_cpu) {
            match cgroups.set_burstable_requests(upkeep.burstable_milli_cpu) {
                Ok(()) => *last = Some(upkeep.burstable_milli_cpu),
                Err(err) => tracing::warn!("{err}"),
            }
        }
    }

    /// The pod cgroup the runtime is to put `pod`'s sandbox and containers in; empty
    /// without pod cgroups.
    fn cgroup_parent(&self, pod: &Pod) -> String {
        match &self.cgroups {
            Some(_) => cgroups::pod_cgroup(
                Qos::of(pod),
                pod.metadata.uid.as_deref().unwrap_or_default(),
            ),
            None => String::new(),
        }
    }

    /// Creates the pod's cgroup with its limits unless it exists: before its first
    /// sandbox (which goes in it), and again should it have gone (a sandbox that a
    /// kubelet without pod cgroups made). A failure is an event naming the cgroup,
    /// once per pod; the sync retries.
    async fn ensure_pod_cgroup(&self, pod: &Pod, key: &PodKey) -> Result<(), SyncError> {
        let Some(cgroups) = &self.cgroups else {
            return Ok(());
        };
        let qos = Qos::of(pod);
        let cgroup = cgroups::pod_cgroup(qos, &key.uid);
        if cgroups.exists(&cgroup) {
            return Ok(());
        }
        let Err(err) = cgroups.ensure(&cgroup, &cgroups::pod_limits(pod, qos)) else {
            return Ok(());
        };
        let err = SyncError::from(err);
        if self.first_failure(&format!("{}/cgroup", key.uid)) {
            self.api
                .record_event(
                    events::pod_reference(pod),
                    "Warning",
                    "FailedCreatePodContainer",
                    &err.to_string(),
                )
                .await;
        }
        Err(err)
    }

    /// Starts `work` for a pod unless a sync of the same pod is still running; says
    /// whether it started.
    fn spawn<F, Fut>(self: &Arc<Self>, uid: String, work: F) -> bool
    where
        F: FnOnce(Arc<Self>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        {
            let Ok(mut set) = self.in_flight.lock() else {
                return false;
            };
            if !set.insert(uid.clone()) {
                return false;
            }
        }
        let guard = InFlight {
            workers: self.clone(),
            uid,
        };
        let fut = work(self.clone());
        tokio::spawn(async move {
            fut.await;
            drop(guard);
        });
        true
    }

    /// Stops every container and sandbox of a pod and removes the sandboxes.
    async fn teardown(&self, objects: &PodRuntime, grace_seconds: i64) -> Result<(), CriError> {
        let running = objects
            .containers
            .iter()
            .filter(|c| c.state == v1::ContainerState::ContainerRunning as i32);
        let stops = running.map(|c| self.cri.stop_container(&c.id, grace_seconds));
        for result in futures::future::join_all(stops).await {
            result?;
        }
        for sandbox in &objects.sandboxes {
            self.cri.stop_sandbox(&sandbox.id).await?;
            self.cri.remove_sandbox(&sandbox.id).await?;
        }
        Ok(())
    }

    /// A pod being deleted: reported not ready at once, its containers stopped
    /// (preStop hooks, then SIGTERM and SIGKILL after the grace period), their final
    /// states reported, then the API object removed.
    async fn terminate(
        &self,
        pod: &Pod,
        key: &PodKey,
        objects: &PodRuntime,
    ) -> Result<(), SyncError> {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or_else(|| lifecycle::termination_grace(pod));
        tracing::info!(pod = %key.name, namespace = %key.namespace, grace, "stopping the pod for deletion");
        let running: Vec<&v1::Container> = objects
            .containers
            .iter()
            .filter(|c| c.state == v1::ContainerState::ContainerRunning as i32)
            .collect();
        if !running.is_empty() {
            let terminating = status::terminating(pod, Timestamp::now());
            self.send_status(key, &terminating).await?;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let stops = running.iter().map(|c| {
            let name = label(&c.labels, cri::LABEL_CONTAINER_NAME);
            let container = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|s| s.name == name);
            lifecycle::stop(
                &self.cri,
                self.api.as_ref(),
                pod,
                container,
                &c.id,
                &pod_ip,
                grace,
                true,
                None,
            )
        });
        for result in futures::future::join_all(stops).await {
            result?;
        }
        if !running.is_empty() {
            // The containers' final states, written before the object goes, so
            // clients that watch the pod see how each one ended.
            let views = self.final_views(&spec, objects).await?;
            let finished = status::terminated_pod(pod, &views, Timestamp::now());
            self.send_status(key, &finished).await?;
        }
        self.teardown(objects, 0).await?;
        self.api.delete_now(key).await?;
        // The logs go with the pod, as with the real kubelet's cleanup.
        let _ = tokio::fs::remove_dir_all(key.log_dir()).await;
        tracing::info!(pod = %key.name, namespace = %key.namespace, "pod deleted");
        Ok(())
    }

    /// A pod asking for something rind's kubelet does not implement never starts: its
    /// containers wait with `CreateContainerConfigError` naming the fields, and one
    /// event says the same. `Some(())` when the pod was refused.
    async fn refuse_unsupported(&self, pod: &Pod, key: &PodKey) -> Result<Option<()>, SyncError> {
        let unsupported = spec::unsupported_fields(pod);
        if unsupported.is_empty() {
            return Ok(None);
        }
        let message = format!(
            "rind's kubelet does not implement {}",
            unsupported.join(", ")
        );
        if self.first_failure(&format!("{}/unsupported", key.uid)) {
            tracing::warn!(pod = %key.name, namespace = %key.namespace, "{message}");
            self.api
                .record_event(events::pod_reference(pod), "Warning", "Failed", &message)
                .await;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let waiting = |c: &Container| {
            let mut view = status::not_started(c, "CreateContainerConfigError");
            if let Some(w) = view.waiting.as_mut() {
                w.message = message.clone();
            }
            view
        };
        let init: Vec<ContainerView> = spec.init_containers.iter().flatten().map(waiting).collect();
        let views: Vec<ContainerView> = spec.containers.iter().map(waiting).collect();
        let refused = status::compute(pod, &self.node_ip, None, &init, &views, Timestamp::now());
        self.send_status(key, &refused).await?;
        Ok(Some(()))
    }

    /// `activeDeadlineSeconds` counted from the pod's start: once past, its containers
    /// are stopped and the pod fails with upstream's `DeadlineExceeded`.
    async fn past_deadline(
        &self,
        pod: &Pod,
        key: &PodKey,
        objects: &PodRuntime,
    ) -> Result<bool, SyncError> {
        let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        let started = pod.status.as_ref().and_then(|s| s.start_time.as_ref());
        let (Some(deadline), Some(started)) = (deadline, started) else {
            return Ok(false);
        };
        let active = Timestamp::now().duration_since(started.0).as_secs();
        if active < deadline {
            return Ok(false);
        }
        let message = "Pod was active on the node longer than the specified deadline";
        self.fail_pod(pod, key, objects, "DeadlineExceeded", message)
            .await?;
        Ok(true)
    }

    /// A disk-backed emptyDir past its `sizeLimit` gets its pod evicted, as
    /// upstream's eviction manager does (checked with the volume refresh).
    async fn over_volume_limit(
        &self,
        pod: &Pod,
        key: &PodKey,
        objects: &PodRuntime,
    ) -> Result<bool, SyncError> {
        let root = Path::new(super::volumes::PODS_DIR);
        let Some((volume, limit)) = super::volumes::empty_dir_over_limit(pod, root) else {
            return Ok(false);
        };
        let message = format!("Usage of EmptyDir volume {volume:?} exceeds the limit {limit:?}. ");
        self.fail_pod(pod, key, objects, "Evicted", &message)
            .await?;
        Ok(true)
    }

    /// Stops the pod's containers for good and reports it Failed with `reason`.
    async fn fail_pod(
        &self,
        pod: &Pod,
        key: &PodKey,
        objects: &PodRuntime,
        reason: &str,
        message: &str,
    ) -> Result<(), SyncError> {
        tracing::info!(pod = %key.name, namespace = %key.namespace, reason, "{message}");
        self.api
            .record_event(events::pod_reference(pod), "Warning", reason, message)
            .await;
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        let grace = lifecycle::termination_grace(pod);
        for c in objects
            .containers
            .iter()
            .filter(|c| c.state == v1::ContainerState::ContainerRunning as i32)
        {
            let name = label(&c.labels, cri::LABEL_CONTAINER_NAME);
            let container = spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .find(|s| s.name == name);
            lifecycle::stop(
                &self.cri,
                self.api.as_ref(),
                pod,
                container,
                &c.id,
                &pod_ip,
                grace,
                false,
                None,
            )
            .await?;
        }
        let views = self.final_views(&spec, objects).await?;
        let mut failed = status::terminated_pod(pod, &views, Timestamp::now());
        failed.phase = Some("Failed".into());
        failed.reason = Some(reason.into());
        failed.message = Some(message.into());
        self.send_status(key, &failed).await
    }

    /// How each app container ended, for the status written when a pod stops for
    /// good (deleted, or past its deadline).
    async fn final_views(
        &self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        objects: &PodRuntime,
    ) -> Result<Vec<ContainerView>, CriError> {
        let mut views = Vec::new();
        for container in &spec.containers {
            let newest = objects
                .containers
                .iter()
                .filter(|c| label(&c.labels, cri::LABEL_CONTAINER_NAME) == container.name)
                .max_by_key(|c| c.metadata.as_ref().map(|m| m.attempt));
            let mut view = status::not_started(container, "ContainerCreating");
            if let Some(newest) = newest {
                view.waiting = None;
                view.restart_count = newest
                    .metadata
                    .as_ref()
                    .map(|m| m.attempt as i32)
                    .unwrap_or(0);
                view.current = Some(self.instance(&newest.id).await?);
            }
            views.push(view);
        }
        Ok(views)
    }

    /// Patches the pod's status unless it is what was sent last.
    async fn send_status(&self, key: &PodKey, new_status: &PodStatus) -> Result<(), SyncError> {
        let encoded = serde_json::to_value(new_status).unwrap_or_default();
        let unchanged = self
            .sent
            .lock()
            .ok()
            .is_some_and(|sent| sent.get(&key.uid) == Some(&encoded));
        if !unchanged {
            tracing::info!(pod = %key.name, namespace = %key.namespace, phase = ?new_status.phase, "updating pod status");
            self.api.patch_status(key, new_status).await?;
            if let Ok(mut sent) = self.sent.lock() {
                sent.insert(key.uid.clone(), encoded);
            }
        }
        Ok(())
    }

    async fn sync_pod(&self, pod: &Pod, objects: PodRuntime) -> Result<(), SyncError> {
        let key = PodKey::of(pod);
        if pod.metadata.deletion_timestamp.is_some() {
            return self.terminate(pod, &key, &objects).await;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // A finished pod keeps its containers, so its logs stay readable; only the
            // sandbox stops, which gives its IP back.
            for sandbox in &objects.sandboxes {
                if sandbox.state == v1::PodSandboxState::SandboxReady as i32 {
                    tracing::info!(pod = %key.name, namespace = %key.namespace, "pod finished; stopping its sandbox");
                    self.cri.stop_sandbox(&sandbox.id).await?;
                }
            }
            return Ok(());
        }
        if let Some(done) = self.refuse_unsupported(pod, &key).await? {
            return Ok(done);
        }
        if self.past_deadline(pod, &key, &objects).await? {
            return Ok(());
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .as_deref()
            .unwrap_or("Always")
            .to_string();

        let ready = objects
            .sandboxes
            .iter()
            .filter(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
            .max_by_key(|s| s.created_at);
        self.ensure_pod_cgroup(pod, &key).await?;
        let prepared = Prepared::default();
        let sandbox_id = match ready {
            Some(sandbox) => sandbox.id.clone(),
            None => {
                let attempt = objects
                    .sandboxes
                    .iter()
                    .filter_map(|s| s.metadata.as_ref().map(|m| m.attempt + 1))
                    .max()
                    .unwrap_or(0);
                // A dead sandbox takes its containers with it: clear it out first.
                self.teardown(&objects, 0).await?;
                tracing::info!(pod = %key.name, namespace = %key.namespace, attempt, "creating the pod sandbox");
                tokio::fs::create_dir_all(key.log_dir()).await.ok();
                let pod_dns = self.dns.for_pod(pod);
                for warning in &pod_dns.warnings {
                    self.api
                        .record_event(
                            events::pod_reference(pod),
                            "Warning",
                            "DNSConfigForming",
                            warning,
                        )
                        .await;
                }
                // Sandboxes are not rationed: with 50 at once, four at a time (oldest
                // first) made the last pod run later (e2e/bench/pod_stages.py), since
                // creating one waits on more than the CPU.
                let started = Instant::now();
                let sandbox = async {
                    let created = self
                        .cri
                        .run_sandbox(spec::sandbox_config(
                            pod,
                            attempt,
                            pod_dns.config,
                            self.cgroup_parent(pod),
                        ))
                        .await;
                    tracing::info!(pod = %key.name, namespace = %key.namespace, ms = started.elapsed().as_millis(), "sandbox created");
                    created
                };
                // The volumes are made ready meanwhile: the runtime's work on the
                // sandbox is mostly not the kubelet's CPU, and the volumes' API round
                // trips then cost the pod's start nothing.
                let (created, ()) = match self.api.client() {
                    Some(client) => {
                        // No pod IP yet: volumes that show it are left for later.
                        let fields = FieldValues {
                            pod,
                            pod_ip: "",
                            node_ip: &self.node_ip,
                            service_env: &self.service_env,
                        };
                        let volume_ctx = VolumeCtx {
                            client: &client,
                            pod,
                            root: Path::new(super::volumes::PODS_DIR),
                            fields: &fields,
                            node: self.node,
                        };
                        tokio::join!(
                            sandbox,
                            super::volumes::prepare_ahead(&volume_ctx, &prepared)
                        )
                    }
                    None => (sandbox.await, ()),
                };
                match created {
                    Ok(id) => id,
                    Err(err) => {
                        // Only the first failure becomes an event; retries every relist
                        // would flood the event list.
                        if attempt == 0 && self.first_failure(&key.uid) {
                            self.api
                                .record_event(
                                    events::pod_reference(pod),
                                    "Warning",
                                    "FailedCreatePodSandBox",
                                    &format!("Failed to create pod sandbox: {err}"),
                                )
                                .await;
                        }
                        return Err(err.into());
                    }
                }
            }
        };
        let sandbox_status = self.cri.sandbox_status(&sandbox_id).await?;
        let sandbox_attempt = sandbox_status
            .metadata
            .as_ref()
            .map(|m| m.attempt)
            .unwrap_or(0);
        let sandbox_view = SandboxView {
            ready: sandbox_status.state == v1::PodSandboxState::SandboxReady as i32,
            // A host-network pod has no network of its own: its IP is the node's.
            ip: if spec.host_network.unwrap_or(false) {
                Some(self.node_ip.clone())
            } else {
                sandbox_status
                    .network
                    .as_ref()
                    .map(|n| n.ip.clone())
                    .filter(|ip| !ip.is_empty())
            },
            additional_ips: if spec.host_network.unwrap_or(false) {
                self.node_ipv6.iter().cloned().collect()
            } else {
                sandbox_status
                    .network
                    .iter()
                    .flat_map(|n| n.additional_ips.iter())
                    .map(|ip| ip.ip.clone())
                    .filter(|ip| !ip.is_empty())
                    .collect()
            },
        };
        let pod_ip = sandbox_view.ip.clone().unwrap_or_default();
        let sandbox_config = spec::sandbox_config(
            pod,
            sandbox_attempt,
            self.dns.for_pod(pod).config,
            self.cgroup_parent(pod),
        );
        let fields = FieldValues {
            pod,
            pod_ip: &pod_ip,
            node_ip: &self.node_ip,
            service_env: &self.service_env,
        };

        let instances_of = |name: &str| {
            let mut found: Vec<&v1::Container> = objects
                .containers
                .iter()
                .filter(|c| {
                    c.pod_sandbox_id == sandbox_id
                        && label(&c.labels, cri::LABEL_CONTAINER_NAME) == name
                })
                .collect();
            found.sort_by_key(|c| std::cmp::Reverse(c.metadata.as_ref().map(|m| m.attempt)));
            found
        };
        // Init containers run one after another, each to success, before any app
        // container starts. A failed one is retried unless the pod never restarts.
        let init_policy = if policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        // Once an app container has run, the pod stays initialized even if a sidecar
        // restarts later, as upstream's.
        let already_initialized = spec
            .containers
            .iter()
            .any(|c| !instances_of(&c.name).is_empty());
        let mut initialized = true;
        let mut init_views = Vec::new();
        for container in spec.init_containers.iter().flatten() {
            if !initialized {
                init_views.push(status::not_started(container, "PodInitializing"));
                continue;
            }
            // A sidecar (an init container with restartPolicy Always) starts in order,
            // lets the next one start once it has started, and runs for the pod's life.
            let sidecar = status::is_sidecar(container);
            let ctx = ContainerCtx {
                pod,
                key: &key,
                container,
                policy: if sidecar { "Always" } else { init_policy },
                sandbox_id: &sandbox_id,
                sandbox_config: &sandbox_config,
                fields: &fields,
                pid_target: None,
                prepared: &prepared,
            };
            let view = self
                .sync_container(&ctx, &instances_of(&container.name))
                .await?;
            initialized = already_initialized || view.initialized();
            init_views.push(view);
        }
        let mut views = Vec::new();
        for container in &spec.containers {
            if !initialized {
                views.push(status::not_started(container, "PodInitializing"));
                continue;
            }
            let ctx = ContainerCtx {
                pod,
                key: &key,
                container,
                policy: &policy,
                sandbox_id: &sandbox_id,
                sandbox_config: &sandbox_config,
                fields: &fields,
                pid_target: None,
                prepared: &prepared,
            };
            views.push(
                self.sync_container(&ctx, &instances_of(&container.name))
                    .await?,
            );
        }
        // Ephemeral containers (`kubectl debug`): started once in a running pod, never
        // restarted, in their target's PID namespace when they name one.
        let mut ephemeral_views = Vec::new();
        for ephemeral in spec.ephemeral_containers.iter().flatten() {
            let Some(container) = ephemeral_as_container(ephemeral) else {
                continue;
            };
            if !initialized {
                ephemeral_views.push(status::not_started(&container, "PodInitializing"));
                continue;
            }
            let pid_target = ephemeral.target_container_name.as_ref().and_then(|target| {
                instances_of(target)
                    .first()
                    .filter(|c| c.state == v1::ContainerState::ContainerRunning as i32)
                    .map(|c| c.id.clone())
            });
            let ctx = ContainerCtx {
                pod,
                key: &key,
                container: &container,
                policy: "Never",
                sandbox_id: &sandbox_id,
                sandbox_config: &sandbox_config,
                fields: &fields,
                pid_target,
                prepared: &prepared,
            };
            ephemeral_views.push(
                self.sync_container(&ctx, &instances_of(&container.name))
                    .await?,
            );
        }

        // Every VOLUME_REFRESH: the eviction check of emptyDir limits, then the
        // API-backed volumes brought up to date.
        let refresh = self.api.client().is_some() && self.refresh_due(&key.uid);
        if refresh && self.over_volume_limit(pod, &key, &objects).await? {
            return Ok(());
        }
        if let Some(client) = self.api.client()
            && refresh
        {
            let volume_ctx = VolumeCtx {
                client: &client,
                pod,
                root: Path::new(super::volumes::PODS_DIR),
                fields: &fields,
                node: self.node,
            };
            super::volumes::refresh(&volume_ctx).await;
        }
        let mut new_status = status::compute(
            pod,
            &self.node_ip,
            Some(&sandbox_view),
            &init_views,
            &views,
            Timestamp::now(),
        );
        new_status.ephemeral_container_statuses =
            (!ephemeral_views.is_empty()).then(|| status::statuses(&ephemeral_views));
        self.send_status(&key, &new_status).await
    }

    /// Makes one container match the spec and reports what it looks like.
    async fn sync_container(
        &self,
        ctx: &ContainerCtx<'_>,
        instances: &[&v1::Container],
    ) -> Result<ContainerView, SyncError> {
        let name = ctx.container.name.clone();
        let image = ctx.container.image.clone().unwrap_or_default();
        let newest = instances.first().copied();
        let restart_count = newest
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.attempt as i32)
            .unwrap_or(0);
        let mut view = ContainerView {
            name: name.clone(),
            image: image.clone(),
            restart_count,
            current: None,
            previous: None,
            waiting: None,
            ready: false,
            started: false,
            sidecar: super::status::is_sidecar(ctx.container) && ctx.policy == "Always",
        };
        if let Some(prev) = instances.get(1) {
            view.previous = Some(self.instance(&prev.id).await?);
        }
        let Some(newest) = newest else {
            match self.start_new(ctx, 0).await? {
                Ok(id) => self.just_started(ctx, &id, &mut view).await?,
                Err(waiting) => view.waiting = Some(waiting),
            }
            return Ok(view);
        };
        if newest.state == v1::ContainerState::ContainerCreated as i32 {
            self.cri.start_container(&newest.id).await?;
        }
        let current = self.instance(&newest.id).await?;
        let Some(exit) = current.exit.clone() else {
            let verdict = self
                .prober
                .watch(ctx.pod, ctx.container, &current.id, ctx.fields.pod_ip);
            view.ready = verdict.ready;
            view.started = verdict.started;
            view.current = Some(current);
            return Ok(view);
        };
        let restart = match ctx.policy {
            "Never" => false,
            "OnFailure" => exit.code != 0,
            _ => true,
        };
        if !restart {
            view.current = Some(current);
            return Ok(view);
        }
        let finished = exit.finished_at.unwrap_or_else(Timestamp::now);
        let ran = current
            .started_at
            .map(|started| finished.duration_since(started))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        let delay = self.restarts.delay(
            &format!("{}/{}", ctx.key.uid, name),
            &current.id,
            ran,
            restart_count,
        );
        let elapsed = Timestamp::now().duration_since(finished);
        if elapsed.as_secs() < delay.as_secs() as i64 {
            let first_report = self
                .backoffs_reported
                .lock()
                .is_ok_and(|mut seen| seen.insert(current.id.clone()));
            if first_report {
                let message = format!(
                    "Back-off restarting failed container {name} in pod {}_{}({})",
                    ctx.key.name, ctx.key.namespace, ctx.key.uid
                );
                self.api
                    .record_event(ctx.container_reference(), "Warning", "BackOff", &message)
                    .await;
            }
            view.previous = Some(current.clone());
            view.current = Some(current);
            view.waiting = Some(Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    go_duration(delay),
                    name,
                    ctx.key.name,
                    ctx.key.namespace,
                    ctx.key.uid
                ),
            });
            return Ok(view);
        }
        // Keep the instance that just exited for `logs --previous`; older ones go.
        for old in instances.iter().skip(1) {
            self.cri.remove_container(&old.id).await?;
        }
        tracing::info!(pod = %ctx.key.name, container = %name, attempt = restart_count + 1, "restarting container");
        view.previous = Some(current);
        view.restart_count = restart_count + 1;
        match self.start_new(ctx, restart_count as u32 + 1).await? {
            Ok(id) => self.just_started(ctx, &id, &mut view).await?,
            Err(waiting) => view.waiting = Some(waiting),
        }
        Ok(view)
    }

    /// Fills `view` for an instance this sync has just started: its state and, while
    /// it runs, what its probes say (a container without a readiness probe is ready
    /// at once, as upstream's prober reports it), so the first status patch is
    /// complete and no second patch follows for readiness alone.
    async fn just_started(
        &self,
        ctx: &ContainerCtx<'_>,
        id: &str,
        view: &mut ContainerView,
    ) -> Result<(), CriError> {
        let current = self.instance(id).await?;
        if current.exit.is_none() {
            let verdict = self
                .prober
                .watch(ctx.pod, ctx.container, &current.id, ctx.fields.pod_ip);
            view.ready = verdict.ready;
            view.started = verdict.started;
        }
        view.current = Some(current);
        Ok(())
    }

    /// Creates and starts a container instance. An unusable image or a runtime
    /// refusal is a state of the container (`Ok(Err(waiting))`), not a sync failure.
    async fn start_new(
        &self,
        ctx: &ContainerCtx<'_>,
        attempt: u32,
    ) -> Result<Result<String, Waiting>, SyncError> {
        let image = ctx.container.image.clone().unwrap_or_default();
        if let Err(waiting) = self.ensure_image(ctx, &image).await? {
            return Ok(Err(waiting));
        }
        if let Err(message) = self.verify_non_root(ctx, &image).await? {
            self.api
                .record_event(
                    ctx.container_reference(),
                    "Warning",
                    "Failed",
                    &format!("Error: {message}"),
                )
                .await;
            return Ok(Err(Waiting {
                reason: "CreateContainerConfigError".into(),
                message,
            }));
        }
        let name = &ctx.container.name;
        let sources: Box<dyn Sources> = match self.api.client() {
            Some(client) => Box::new(ApiSources(client)),
            None => Box::new(NoSources),
        };
        let env = match env::resolve(sources.as_ref(), ctx.container, ctx.fields, self.node).await {
            Ok(env) => env,
            Err(message) => {
                tracing::info!(pod = %ctx.key.name, container = %name, "container config: {message}");
                self.api
                    .record_event(
                        ctx.container_reference(),
                        "Warning",
                        "Failed",
                        &format!("Error: {message}"),
                    )
                    .await;
                return Ok(Err(Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message,
                }));
            }
        };
        let env_vars: HashMap<String, String> = env.iter().cloned().collect();
        let mounts = match self.api.client() {
            Some(client) => {
                let volume_ctx = VolumeCtx {
                    client: &client,
                    pod: ctx.pod,
                    root: Path::new(super::volumes::PODS_DIR),
                    fields: ctx.fields,
                    node: self.node,
                };
                super::volumes::mounts(&volume_ctx, ctx.container, &env_vars, ctx.prepared).await
            }
            None if ctx
                .container
                .volume_mounts
                .as_ref()
                .is_none_or(Vec::is_empty) =>
            {
                Ok(Vec::new())
            }
            None => Err(super::volumes::VolumeError::Unsupported("*".into())),
        };
        let mounts = match mounts {
            Ok(mounts) => mounts,
            Err(err) => {
                // Not ready yet (an unbound claim, a missing configMap): the next sync
                // tries again; one event per pod, not one per retry.
                tracing::info!(pod = %ctx.key.name, container = %ctx.container.name, "volumes not ready: {err}");
                if self.first_failure(&format!("{}/mount", ctx.key.uid)) {
                    self.api
                        .record_event(
                            events::pod_reference(ctx.pod),
                            "Warning",
                            "FailedMount",
                            &format!("MountVolume.SetUp failed: {err}"),
                        )
                        .await;
                }
                return Ok(Err(Waiting {
                    reason: "ContainerCreating".into(),
                    message: err.to_string(),
                }));
            }
        };
        let mut config = spec::container_config(ctx.pod, ctx.container, attempt, &env);
        if let Some(target) = &ctx.pid_target
            && let Some(ns) = config
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut())
                .and_then(|sc| sc.namespace_options.as_mut())
        {
            ns.pid = v1::NamespaceMode::Target as i32;
            ns.target_id = target.clone();
        }
        config.mounts = mounts;
        if let Err(err) = termination_message_file(ctx, attempt, &mut config).await {
            tracing::warn!(pod = %ctx.key.name, container = %ctx.container.name, "termination message file: {err}");
        }
        let id = match self
            .cri
            .create_container(ctx.sandbox_id, config, ctx.sandbox_config.clone())
            .await
        {
            Ok(id) => id,
            Err(err) => {
                tracing::warn!(pod = %ctx.key.name, container = %name, "create failed: {err}");
                self.api
                    .record_event(
                        ctx.container_reference(),
                        "Warning",
                        "Failed",
                        &format!("Error: {err}"),
                    )
                    .await;
                return Ok(Err(Waiting {
                    reason: "CreateContainerError".into(),
                    message: err.to_string(),
                }));
            }
        };
        self.api
            .record_event(
                ctx.container_reference(),
                "Normal",
                "Created",
                &format!("Created container: {name}"),
            )
            .await;
        if let Err(err) = self.cri.start_container(&id).await {
            tracing::warn!(pod = %ctx.key.name, container = %name, "start failed: {err}");
            self.api
                .record_event(
                    ctx.container_reference(),
                    "Warning",
                    "Failed",
                    &format!("Error: {err}"),
                )
                .await;
            return Ok(Err(Waiting {
                reason: "RunContainerError".into(),
                message: err.to_string(),
            }));
        }
        tracing::info!(pod = %ctx.key.name, namespace = %ctx.key.namespace, container = %name, id = %id, "container started");
        self.api
            .record_event(
                ctx.container_reference(),
                "Normal",
                "Started",
                &format!("Started container {name}"),
            )
            .await;
        if let Err(message) = lifecycle::post_start(
            &self.cri,
            self.api.as_ref(),
            ctx.pod,
            ctx.container,
            &id,
            ctx.fields.pod_ip,
        )
        .await
        {
            return Ok(Err(Waiting {
                reason: "PostStartHookError".into(),
                message,
            }));
        }
        Ok(Ok(id))
    }

    /// Makes sure the runtime holds the image as the container's `imagePullPolicy`
    /// asks: `Never` uses only what is present, `IfNotPresent` pulls what is absent,
    /// `Always` pulls every time (and so fails where no registry is reachable, as on
    /// kind: images loaded with `rind load docker-image` want `IfNotPresent`).
    async fn ensure_image(
        &self,
        ctx: &ContainerCtx<'_>,
        image: &str,
    ) -> Result<Result<(), Waiting>, CriError> {
        let policy = ctx
            .container
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(image).to_string());
        let present = self.cri.image_status(image).await?.is_some();
        if present && policy != "Always" {
            self.api
                .record_event(
                    ctx.container_reference(),
                    "Normal",
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                )
                .await;
            return Ok(Ok(()));
        }
        if policy == "Never" {
            let message =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            self.api
                .record_event(
                    ctx.container_reference(),
                    "Warning",
                    "ErrImageNeverPull",
                    &message,
                )
                .await;
            return Ok(Err(Waiting {
                reason: "ErrImageNeverPull".into(),
                message,
            }));
        }
        let failure_key = (ctx.key.uid.clone(), ctx.container.name.clone());
        let previous = self
            .pulls
            .lock()
            .ok()
            .and_then(|p| p.by_container.get(&failure_key).copied());
        if let Some((_, retry_at)) = previous
            && Instant::now() < retry_at
        {
            return Ok(Err(Waiting {
                reason: "ImagePullBackOff".into(),
                message: format!("Back-off pulling image \"{image}\""),
            }));
        }
        if previous.is_some() {
            self.api
                .record_event(
                    ctx.container_reference(),
                    "Normal",
                    "BackOff",
                    &format!("Back-off pulling image \"{image}\""),
                )
                .await;
        }
        self.api
            .record_event(
                ctx.container_reference(),
                "Normal",
                "Pulling",
                &format!("Pulling image \"{image}\""),
            )
            .await;
        let started = Instant::now();
        // With pull secrets, each matching credential is tried in turn, then none.
        let credentials = match self.api.client() {
            Some(client) => super::pull_secrets::credentials(&client, ctx.pod, image).await,
            None => Vec::new(),
        };
        let mut pulled = Err(CriError::Missing { what: "image" });
        for auth in credentials.into_iter().map(Some).chain([None]) {
            pulled = self.cri.pull_image(image, auth).await;
            if pulled.is_ok() {
                break;
            }
        }
        match pulled {
            Ok(_) => {
                if let Ok(mut p) = self.pulls.lock() {
                    p.by_container.remove(&failure_key);
                }
                let took = started.elapsed().as_secs_f64();
                self.api
                    .record_event(
                        ctx.container_reference(),
                        "Normal",
                        "Pulled",
                        &format!(
                            "Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting)"
                        ),
                    )
                    .await;
                Ok(Ok(()))
            }
            Err(err) => {
                let count = previous.map(|(c, _)| c + 1).unwrap_or(1);
                if let Ok(mut p) = self.pulls.lock() {
                    p.by_container
                        .insert(failure_key, (count, Instant::now() + backoff(count)));
                }
                tracing::warn!(%image, "image pull failed: {err}");
                let message = format!("Failed to pull image \"{image}\": {err}");
                self.api
                    .record_event(ctx.container_reference(), "Warning", "Failed", &message)
                    .await;
                self.api
                    .record_event(
                        ctx.container_reference(),
                        "Warning",
                        "Failed",
                        "Error: ErrImagePull",
                    )
                    .await;
                Ok(Err(Waiting {
                    reason: "ErrImagePull".into(),
                    message: format!("failed to pull image \"{image}\": {err}"),
                }))
            }
        }
    }

    /// `runAsNonRoot`: the user the container will run as (its own or the pod's
    /// `runAsUser`, else the image's) must provably not be root; messages as upstream's.
    async fn verify_non_root(
        &self,
        ctx: &ContainerCtx<'_>,
        image: &str,
    ) -> Result<Result<(), String>, CriError> {
        let pod_sc = ctx
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref());
        let sc = ctx.container.security_context.as_ref();
        let non_root = sc
            .and_then(|s| s.run_as_non_root)
            .or(pod_sc.and_then(|s| s.run_as_non_root))
            .unwrap_or(false);
        if !non_root {
            return Ok(Ok(()));
        }
        let pod_name = format!("{}_{}({})", ctx.key.name, ctx.key.namespace, ctx.key.uid);
        let name = &ctx.container.name;
        let run_as = sc
            .and_then(|s| s.run_as_user)
            .or(pod_sc.and_then(|s| s.run_as_user));
        if let Some(uid) = run_as {
            return Ok(if uid == 0 {
                Err(format!(
                    "container's runAsUser breaks non-root policy (pod: {pod_name:?}, container: {name})"
                ))
            } else {
                Ok(())
            });
        }
        let status = self.cri.image_status(image).await?;
        let uid = status
            .as_ref()
            .and_then(|i| i.uid.as_ref())
            .map(|u| u.value);
        let username = status.map(|i| i.username).unwrap_or_default();
        Ok(match (uid, username.as_str()) {
            (Some(0), _) | (None, "") => Err(format!(
                "container has runAsNonRoot and image will run as root (pod: {pod_name:?}, container: {name})"
            )),
            (None, user) => Err(format!(
                "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod_name:?}, container: {name})"
            )),
            (Some(_), _) => Ok(()),
        })
    }

    async fn instance(&self, id: &str) -> Result<Instance, CriError> {
        let status = self.cri.container_status(id).await?;
        let image_id = [&status.image_id, &status.image_ref]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .or_else(|| status.image.as_ref().map(|i| i.image.clone()))
            .unwrap_or_default();
        let exit = (status.state == v1::ContainerState::ContainerExited as i32).then(|| Exit {
            code: status.exit_code,
            finished_at: from_nanos(status.finished_at),
            reason: match status.reason.as_str() {
                // containerd says "Completed"/"Error" itself; we derive those from the code.
                "Completed" | "Error" => String::new(),
                other => other.to_string(),
            },
            message: if status.message.is_empty() {
                termination_message(&status)
            } else {
                status.message.clone()
            },
        });
        Ok(Instance {
            id: status.id,
            image_id,
            started_at: from_nanos(status.started_at),
            exit,
        })
    }
}

/// The annotations that carry a container's termination message settings to its
/// exit, under upstream's names.
const ANNOTATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
const ANNOTATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// Upstream reads at most this much of a termination message file.
const MESSAGE_MAX_BYTES: usize = 4096;
/// With `FallbackToLogsOnError`: at most this many of the log's last lines and bytes.
const MESSAGE_LOG_LINES: usize = 80;
const MESSAGE_LOG_BYTES: usize = 2048;

/// Gives the container an empty file at its `terminationMessagePath` (default
/// `/dev/termination-log`) for its last words, as upstream's kubelet does, unless a
/// volume is mounted there.
async fn termination_message_file(
    ctx: &ContainerCtx<'_>,
    attempt: u32,
    config: &mut v1::ContainerConfig,
) -> std::io::Result<()> {
    let path = ctx
        .container
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".to_string());
    if config.mounts.iter().any(|m| m.container_path == path) {
        return Ok(());
    }
    let dir = Path::new(super::volumes::PODS_DIR)
        .join(&ctx.key.uid)
        .join("containers")
        .join(&ctx.container.name);
    tokio::fs::create_dir_all(&dir).await?;
    let file = dir.join(format!("termination-log-{attempt}"));
    tokio::fs::write(&file, b"").await?;
    // Any user the container runs as must be able to write it.
    tokio::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o666)).await?;
    config.mounts.push(v1::Mount {
        container_path: path.clone(),
        host_path: file.display().to_string(),
        ..v1::Mount::default()
    });
    config
        .annotations
        .insert(ANNOTATION_MESSAGE_PATH.to_string(), path);
    config.annotations.insert(
        ANNOTATION_MESSAGE_POLICY.to_string(),
        ctx.container
            .termination_message_policy
            .clone()
            .unwrap_or_else(|| "File".to_string()),
    );
    Ok(())
}

/// What an exited container left as its termination message: its message file, or,
/// with `FallbackToLogsOnError` after a failure and an empty file, its log's tail.
fn termination_message(status: &v1::ContainerStatus) -> String {
    let Some(path) = status.annotations.get(ANNOTATION_MESSAGE_PATH) else {
        return String::new();
    };
    let file = status
        .mounts
        .iter()
        .find(|m| &m.container_path == path)
        .and_then(|m| std::fs::read(&m.host_path).ok())
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&file[..file.len().min(MESSAGE_MAX_BYTES)]).into_owned();
    let fallback = status
        .annotations
        .get(ANNOTATION_MESSAGE_POLICY)
        .map(String::as_str)
        == Some("FallbackToLogsOnError");
    if !message.is_empty() || !fallback || status.exit_code == 0 {
        return message;
    }
    let log = std::fs::read_to_string(&status.log_path).unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        // CRI log lines: time, stream, tag (P partial / F full), then the text.
        .map(|line| line.splitn(4, ' ').nth(3).unwrap_or(""))
        .collect();
    let tail = lines[lines.len().saturating_sub(MESSAGE_LOG_LINES)..].join("\n");
    let start = tail.len().saturating_sub(MESSAGE_LOG_BYTES);
    let start = (start..=tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(tail.len());
    tail[start..].to_string()
}

/// The policy the API server defaults to (`Always` for `:latest` or no tag), for a
/// pod that reached the kubelet without one.
fn default_pull_policy(image: &str) -> &'static str {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        _ if image.contains('@') => "IfNotPresent",
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// An ephemeral container as the container it runs as: the same fields but the
/// target, which is not a container's.
fn ephemeral_as_container(
    ephemeral: &k8s_openapi::api::core::v1::EphemeralContainer,
) -> Option<Container> {
    let mut value = serde_json::to_value(ephemeral).ok()?;
    if let Some(fields) = value.as_object_mut() {
        fields.remove("targetContainerName");
    }
    serde_json::from_value(value).ok()
}

/// No ConfigMaps or Secrets: a runtime without an API server (tests).
struct NoSources;

#[async_trait::async_trait]
impl Sources for NoSources {
    async fn config_map(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, String> {
        Ok(None)
    }
    async fn secret(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, String> {
        Ok(None)
    }
}

/// Everything a container sync needs to know about its pod.
struct ContainerCtx<'a> {
    pod: &'a Pod,
    key: &'a PodKey,
    container: &'a Container,
    policy: &'a str,
    sandbox_id: &'a str,
    sandbox_config: &'a v1::PodSandboxConfig,
    fields: &'a FieldValues<'a>,
    /// For an ephemeral container with a target: the running container whose PID
    /// namespace it joins.
    pid_target: Option<String>,
    /// The pod's volumes this sync has made ready already.
    prepared: &'a Prepared,
}

impl ContainerCtx<'_> {
    /// What the container's events point at (`spec.containers{NAME}`).
    fn container_reference(&self) -> ObjectReference {
        events::container_reference(self.pod, &self.container.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn pod_in(uid: &str, phase: &str, deleting: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                deletion_timestamp: deleting.then(|| Time(Timestamp::now())),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                        requests: Some(
                            [("cpu".to_string(), Quantity("250m".into()))]
                                .into_iter()
                                .collect(),
                        ),
                        ..Default::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                qos_class: Some("Burstable".into()),
                ..PodStatus::default()
            }),
        })
    }

    #[test]
    fn pod_cgroups_go_once_nothing_needs_them() {
        let pods = [
            pod_in("running", "Running", false),
            pod_in("deleting", "Running", true),
            pod_in("done", "Succeeded", false),
            pod_in("done-running", "Failed", false),
        ];
        let runtime = HashMap::from([
            (
                "done-running".to_string(),
                PodRuntime {
                    sandboxes: vec![v1::PodSandbox {
                        state: v1::PodSandboxState::SandboxReady as i32,
                        ..v1::PodSandbox::default()
                    }],
                    containers: Vec::new(),
                },
            ),
            (
                "gone-exited".to_string(),
                PodRuntime {
                    sandboxes: Vec::new(),
                    containers: vec![v1::Container {
                        state: v1::ContainerState::ContainerExited as i32,
                        ..v1::Container::default()
                    }],
                },
            ),
        ]);
        let upkeep = CgroupUpkeep::observe(&pods, &runtime);
        let in_flight = HashSet::from(["deleting".to_string(), "done".to_string()]);
        let removable = |uid: &str| upkeep.removable(uid, &in_flight);
        assert!(!removable("running"));
        // Its termination is under way.
        assert!(!removable("deleting"));
        assert!(removable("done"));
        assert!(!removable("done-running"));
        assert!(removable("gone-exited"));
        assert!(removable("gone"));
        assert!(!upkeep.removable("deleting-done", &HashSet::from(["deleting-done".into()])));
        // The burstable cgroup weighs the pods not finished: running and deleting.
        assert_eq!(upkeep.burstable_milli_cpu, 500);
    }

    /// Records what the kubelet would write to the API server.
    #[derive(Default)]
    struct FakeApi {
        statuses: Mutex<HashMap<String, PodStatus>>,
        deleted: Mutex<HashSet<String>>,
        events: Mutex<Vec<(String, String)>>,
        event_messages: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl PodApi for FakeApi {
        async fn patch_status(&self, key: &PodKey, status: &PodStatus) -> Result<(), kube::Error> {
            self.statuses
                .lock()
                .unwrap()
                .insert(key.uid.clone(), status.clone());
            Ok(())
        }
        async fn delete_now(&self, key: &PodKey) -> Result<(), kube::Error> {
            self.deleted.lock().unwrap().insert(key.uid.clone());
            Ok(())
        }
        async fn record_event(
            &self,
            regarding: ObjectReference,
            _type: &str,
            reason: &str,
            message: &str,
        ) {
            self.events
                .lock()
                .unwrap()
                .push((regarding.uid.unwrap_or_default(), reason.to_string()));
            self.event_messages
                .lock()
                .unwrap()
                .push(message.to_string());
        }
    }

    fn test_pod(name: &str, policy: &str, script: &str, image: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(uuid::Uuid::new_v4().to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    command: Some(vec!["sh".into(), "-c".into(), script.into()]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn workers_with_cgroups(api: Arc<FakeApi>, root: &Path) -> PodWorkers {
        PodWorkers::new(
            api,
            Cri::new("/nonexistent/containerd.sock"),
            "172.18.0.2".into(),
            Vec::new(),
            dns::ClusterDns::default(),
            Writer::<Pod>::default().as_reader(),
            NodeAllocatable {
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
            },
            SyncHealth::default(),
        )
        .with_cgroups(Some(Cgroups::detect(root).unwrap()))
    }

    #[tokio::test]
    async fn the_pod_cgroup_is_made_with_its_limits_and_given_to_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "").unwrap();
        let workers = workers_with_cgroups(Arc::new(FakeApi::default()), dir.path());
        let pod = test_pod("p", "Always", "true", "img");
        let key = PodKey::of(&pod);
        workers.ensure_pod_cgroup(&pod, &key).await.unwrap();
        let cgroup = format!("/kubepods/besteffort/pod{}", key.uid);
        assert_eq!(workers.cgroup_parent(&pod), cgroup);
        let weight = dir.path().join(&cgroup[1..]).join("cpu.weight");
        assert_eq!(std::fs::read_to_string(weight).unwrap(), "1");
    }

    #[tokio::test]
    async fn a_pod_cgroup_that_cannot_be_made_is_one_event_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "").unwrap();
        // A file where the node allocatable cgroup should be.
        std::fs::write(dir.path().join("kubepods"), "").unwrap();
        let api = Arc::new(FakeApi::default());
        let workers = workers_with_cgroups(api.clone(), dir.path());
        let pod = test_pod("p", "Always", "true", "img");
        let key = PodKey::of(&pod);
        let cgroup = format!("/kubepods/besteffort/pod{}", key.uid);
        for _ in 0..2 {
            let err = workers.ensure_pod_cgroup(&pod, &key).await.unwrap_err();
            assert!(err.to_string().contains(&cgroup), "{err}");
        }
        let events = api.events.lock().unwrap().clone();
        assert_eq!(
            events,
            [(key.uid.clone(), "FailedCreatePodContainer".to_string())]
        );
        let message = api.event_messages.lock().unwrap()[0].clone();
        assert!(
            message.starts_with("unable to ensure pod container exists: failed to create cgroup ")
                && message.contains(&cgroup),
            "{message}"
        );
    }

    /// Relists until `done` holds for the pod's reported status, feeding each status
    /// back into the store as the API server's watch would.
    async fn sync_until(
        workers: &Arc<PodWorkers>,
        api: &FakeApi,
        writer: &mut Writer<Pod>,
        pod: &mut Pod,
        what: &str,
        done: impl Fn(&PodStatus) -> bool,
    ) -> PodStatus {
        let uid = pod.metadata.uid.clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            writer.apply_watcher_event(&Event::Apply(pod.clone()));
            workers.relist(true).await.unwrap();
            let status = api.statuses.lock().unwrap().get(&uid).cloned();
            if let Some(status) = status {
                pod.status = Some(status.clone());
                if done(&status) {
                    return status;
                }
            }
            assert!(
                Instant::now() < deadline,
                "pod never became {what}: {:?}",
                pod.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn runtime_of(cri: &Cri, uid: &str) -> (usize, usize) {
        let is_ours = |l: &HashMap<String, String>| {
            l.get(cri::LABEL_POD_UID).map(String::as_str) == Some(uid)
        };
        let sandboxes = cri.list_sandboxes().await.unwrap();
        let containers = cri.list_containers().await.unwrap();
        (
            sandboxes.iter().filter(|s| is_ours(&s.labels)).count(),
            containers.iter().filter(|c| is_ours(&c.labels)).count(),
        )
    }

    /// Pod lifecycles against a real runtime: `RIND_CRI_SOCKET=… RIND_CRI_IMAGE=<image
    /// with sh> cargo test pods::tests -- --ignored`, inside a node container.
    #[tokio::test]
    #[ignore = "needs a CRI runtime socket"]
    async fn pod_lifecycles_against_a_runtime() {
        let socket = std::env::var("RIND_CRI_SOCKET").unwrap();
        let image = std::env::var("RIND_CRI_IMAGE").unwrap();
        let cri = Cri::new(&socket);
        let api = Arc::new(FakeApi::default());
        let mut writer = Writer::<Pod>::default();
        let workers = Arc::new(PodWorkers::new(
            api.clone(),
            cri.clone(),
            "172.18.0.2".into(),
            spec::kubernetes_service_env("10.96.0.0/16"),
            dns::ClusterDns::default(),
            writer.as_reader(),
            NodeAllocatable {
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
            },
            SyncHealth::default(),
        ));

        // A pod that prints and exits: Succeeded, logs kept.
        let mut done = test_pod("done", "Never", "echo hello from rind", &image);
        let status = sync_until(&workers, &api, &mut writer, &mut done, "Succeeded", |s| {
            s.phase.as_deref() == Some("Succeeded")
        })
        .await;
        let cs = &status.container_statuses.unwrap()[0];
        assert!(!cs.image_id.is_empty());
        assert!(
            cs.container_id
                .as_deref()
                .unwrap()
                .starts_with("containerd://")
        );
        let key = PodKey::of(&done);
        let log = std::fs::read_to_string(format!("{}/c/0.log", key.log_dir())).unwrap();
        assert!(log.contains("hello from rind"), "{log}");
        let reasons: Vec<String> = api
            .events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect();
        assert_eq!(reasons, ["Pulled", "Created", "Started"]);

        // A long-running pod: Running with an IP, then graceful deletion.
        let mut run = test_pod("run", "Always", "sleep 3600", &image);
        let status = sync_until(&workers, &api, &mut writer, &mut run, "Running", |s| {
            s.phase.as_deref() == Some("Running")
        })
        .await;
        assert!(status.pod_ip.is_some_and(|ip| ip.starts_with("10.244.")));
        run.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        run.metadata.deletion_grace_period_seconds = Some(1);
        let run_uid = run.metadata.uid.clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !api.deleted.lock().unwrap().contains(&run_uid) {
            writer.apply_watcher_event(&Event::Apply(run.clone()));
            workers.relist(true).await.unwrap();
            assert!(Instant::now() < deadline, "pod was never deleted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(runtime_of(&cri, &run_uid).await, (0, 0));

        // A crashing pod goes into back-off with its last exit code shown.
        let mut crash = test_pod("crash", "Always", "exit 3", &image);
        let status = sync_until(
            &workers,
            &api,
            &mut writer,
            &mut crash,
            "backing off",
            |s| {
                s.container_statuses.as_ref().is_some_and(|cs| {
                    cs[0]
                        .state
                        .as_ref()
                        .and_then(|st| st.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CrashLoopBackOff")
                })
            },
        )
        .await;
        let backoffs = api
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(uid, r)| Some(uid) == crash.metadata.uid.as_ref() && r == "BackOff")
            .count();
        assert_eq!(backoffs, 1);
        let last = status.container_statuses.unwrap()[0]
            .last_state
            .clone()
            .unwrap();
        assert_eq!(last.terminated.unwrap().exit_code, 3);

        // Pods deleted outright lose their sandboxes on the next relist.
        for pod in [&done, &run, &crash] {
            writer.apply_watcher_event(&Event::Delete(pod.clone()));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for pod in [&done, &crash] {
            let uid = pod.metadata.uid.clone().unwrap();
            while runtime_of(&cri, &uid).await != (0, 0) {
                workers.relist(true).await.unwrap();
                assert!(Instant::now() < deadline, "orphan {uid} was not removed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
