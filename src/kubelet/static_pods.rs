//! Mirror pods for the node's own components. In rind, etcd, the API server, the
//! controller manager, the scheduler, the network agent and the service proxy run
//! under the node's supervisor (src/node/supervisor.rs), not as CRI containers; this
//! module does for them what upstream's kubelet does for static pods: it publishes one
//! mirror pod per component in `kube-system` (named and labelled as kubeadm's), keeps
//! its status from the supervisor's record of the process and the component's own
//! health endpoint, re-creates it when someone deletes it, and serves the component's
//! log file as the pod's log. The pod workers leave mirror pods alone, so deleting or
//! evicting one never touches the process.

use super::cri::Cri;
use super::handlers::{self, Target};
use super::logs::{self, LogEntry, LogOptions};
use axum::body::Bytes;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HTTPGetAction, HostIP, Pod, PodCondition, PodIP,
    PodSecurityContext, PodSpec, PodStatus, Probe, SeccompProfile, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use rind_runtime::component_status::{ComponentStatus, ProcessState};
use rind_runtime::{NodeConfig, paths};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
const SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";
const NAMESPACE: &str = "kube-system";
/// How often the mirror pods are checked against the processes and their health.
const SYNC_PERIOD: Duration = Duration::from_secs(2);
/// The health check's timeout (kubeadm's probes allow 15 s; a local check that takes
/// more than a second already means the component is not answering).
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// What the supervisor writes at the start of every run in a component's log.
const RUN_MARKER: &str = "==== rind init ";
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// A supervised component shown as a static pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticComponent {
    /// The supervisor's name, also its log file's (`/var/log/rind/<name>.log`).
    pub supervised: &'static str,
    /// The pod's name before `-<node>`, its container's name and its `component`
    /// label, as kubeadm names them.
    pub name: &'static str,
    pub tier: &'static str,
    /// The component's own readiness endpoint: scheme, loopback or node host, port, path.
    pub health: Option<Health>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub scheme: &'static str,
    /// Loopback when the component only listens there, else the node's IP.
    pub on_loopback: bool,
    pub port: u16,
    pub path: &'static str,
}

/// The components and their pods. The control plane's names are kubeadm's. The
/// service proxy does kube-proxy's job (kubeadm's kubeconfig path, `kubeProxyMode`),
/// so its pod is `kube-proxy-<node>` as in kind. The network agent is rind's own and not
/// kindnet (its flags and logs are different), so its pod is `rind-net-<node>` rather
/// than a name that would send users looking for kindnet's behaviour.
pub const COMPONENTS: &[StaticComponent] = &[
    StaticComponent {
        supervised: "etcd",
        name: "etcd",
        tier: "control-plane",
        health: Some(Health {
            scheme: "HTTP",
            on_loopback: true,
            port: paths::ETCD_METRICS_PORT,
            path: "/health",
        }),
    },
    StaticComponent {
        supervised: "apiserver",
        name: "kube-apiserver",
        tier: "control-plane",
        health: Some(Health {
            scheme: "HTTPS",
            on_loopback: false,
            port: paths::APISERVER_PORT,
            path: "/readyz",
        }),
    },
    StaticComponent {
        supervised: "controller-manager",
        name: "kube-controller-manager",
        tier: "control-plane",
        health: None,
    },
    StaticComponent {
        supervised: "scheduler",
        name: "kube-scheduler",
        tier: "control-plane",
        health: None,
    },
    StaticComponent {
        supervised: "net",
        name: "rind-net",
        tier: "node",
        health: None,
    },
    StaticComponent {
        supervised: "proxy",
        name: "kube-proxy",
        tier: "node",
        health: None,
    },
];

pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// The component a mirror pod on this node stands for.
fn component_of(pod: &Pod) -> Option<&'static StaticComponent> {
    if !is_mirror(pod) || pod.metadata.namespace.as_deref() != Some(NAMESPACE) {
        return None;
    }
    let label = pod.metadata.labels.as_ref()?.get("component")?;
    COMPONENTS.iter().find(|c| c.name == label)
}

fn pod_name(component: &StaticComponent, node: &str) -> String {
    format!("{}-{node}", component.name)
}

/// A 128-bit hash of the pod as the kubelet defines it, hex-encoded as upstream's
/// static pod hashes are (32 hex digits); two FNV-1a runs with different offsets.
fn config_hash(pod: &Pod) -> String {
    let bytes = serde_json::to_vec(pod).unwrap_or_default();
    let fnv = |offset: u64| {
        bytes.iter().fold(offset, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

fn health_probe(health: &Health, node_ip: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            host: Some(if health.on_loopback {
                "127.0.0.1".to_string()
            } else {
                node_ip.to_string()
            }),
            path: Some(health.path.to_string()),
            port: IntOrString::Int(i32::from(health.port)),
            scheme: Some(health.scheme.to_string()),
            http_headers: None,
            ..Default::default()
        }),
        timeout_seconds: Some(1),
        period_seconds: Some(2),
        ..Default::default()
    }
}

/// The mirror pod of `component` as this node publishes it (no status).
pub fn desired_pod(
    component: &StaticComponent,
    status: &ComponentStatus,
    cfg: &NodeConfig,
    node_uid: &str,
    seen: &str,
) -> Pod {
    let container = Container {
        name: component.name.to_string(),
        image: Some(cfg.image.clone()),
        command: Some(status.command.clone()),
        image_pull_policy: Some("IfNotPresent".to_string()),
        readiness_probe: component.health.map(|h| health_probe(&h, &cfg.node_ip)),
        ..Default::default()
    };
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(component, &cfg.node_name)),
            namespace: Some(NAMESPACE.to_string()),
            labels: Some(BTreeMap::from([
                ("component".to_string(), component.name.to_string()),
                ("tier".to_string(), component.tier.to_string()),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_string(),
                kind: "Node".to_string(),
                name: cfg.node_name.clone(),
                uid: node_uid.to_string(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(cfg.node_name.clone()),
            host_network: Some(true),
            priority_class_name: Some("system-node-critical".to_string()),
            containers: vec![container],
            // Upstream's kubelet gives every static pod this toleration, so a tainted
            // node never evicts its own components.
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".to_string()),
                effect: Some("NoExecute".to_string()),
                ..Default::default()
            }]),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_string(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    let hash = config_hash(&pod);
    pod.metadata.annotations = Some(BTreeMap::from([
        (HASH_ANNOTATION.to_string(), hash.clone()),
        (MIRROR_ANNOTATION.to_string(), hash),
        (SEEN_ANNOTATION.to_string(), seen.to_string()),
        (SOURCE_ANNOTATION.to_string(), "file".to_string()),
    ]));
    pod
}

fn time(text: &str) -> Option<Time> {
    text.parse().ok().map(Time)
}

fn condition(kind: &str, ok: bool, since: &str, container: &str) -> PodCondition {
    let unready = !ok && (kind == "Ready" || kind == "ContainersReady");
    PodCondition {
        type_: kind.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        last_transition_time: time(since),
        reason: unready.then(|| "ContainersNotReady".to_string()),
        message: unready.then(|| format!("containers with unready status: [{container}]")),
        last_probe_time: None,
        observed_generation: None,
    }
}

/// The pod status of a component: the supervisor's process state, `ready` from its
/// health check, `ready_since` when readiness last changed.
pub fn pod_status(
    pod: &Pod,
    status: &ComponentStatus,
    ready: bool,
    ready_since: &str,
    node_ip: &str,
) -> PodStatus {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let running = status.state == ProcessState::Running;
    let ready = ready && running;
    let state = if running {
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time(&status.started_at),
            }),
            ..Default::default()
        }
    } else {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("CrashLoopBackOff".to_string()),
                message: Some(format!(
                    "back-off {}s restarting failed container={name} pod={pod_name}_{NAMESPACE}({uid})",
                    status.backoff_seconds.unwrap_or_default()
                )),
            }),
            ..Default::default()
        }
    };
    let last_state = status.last_exit.as_ref().map(|exit| ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: exit.exit_code,
            reason: Some(
                if exit.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .to_string(),
            ),
            message: Some(exit.description.clone()),
            started_at: time(&exit.started_at),
            finished_at: time(&exit.finished_at),
            ..Default::default()
        }),
        ..Default::default()
    });
    let first = status.first_started_at.as_str();
    PodStatus {
        phase: Some("Running".to_string()),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", true, first, &name),
            condition("Initialized", true, first, &name),
            condition("Ready", ready, ready_since, &name),
            condition("ContainersReady", ready, ready_since, &name),
            condition("PodScheduled", true, first, &name),
        ]),
        host_ip: Some(node_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: node_ip.to_string(),
        }]),
        pod_ip: Some(node_ip.to_string()),
        pod_ips: Some(vec![PodIP {
            ip: node_ip.to_string(),
        }]),
        start_time: time(first),
        qos_class: Some("BestEffort".to_string()),
        container_statuses: Some(vec![ContainerStatus {
            name,
            image,
            // No image was pulled: the process runs from the node's own filesystem.
            image_id: String::new(),
            ready,
            started: Some(running),
            restart_count: i32::try_from(status.restarts).unwrap_or(i32::MAX),
            state: Some(state),
            last_state: Some(last_state.unwrap_or_default()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// Keeps the mirror pods of this node's components published and their status
/// current, forever.
pub async fn run(
    client: kube::Client,
    cfg: NodeConfig,
    node_uid: String,
    store: Store<Pod>,
    cri: Cri,
) {
    let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let seen = jiff::Timestamp::now().to_string();
    let dir = PathBuf::from(paths::COMPONENT_STATUS_DIR);
    // Per pod: the last status sent (by pod uid) and readiness with its change time.
    let mut sent: HashMap<String, PodStatus> = HashMap::new();
    let mut readiness: HashMap<&'static str, (bool, String)> = HashMap::new();
    loop {
        for component in COMPONENTS {
            let status = match ComponentStatus::read(&dir, component.supervised) {
                Ok(Some(status)) => status,
                // The supervisor runs no such component on this node.
                Ok(None) => continue,
                Err(err) => {
                    tracing::warn!("mirror pod of {}: {err}", component.name);
                    continue;
                }
            };
            let desired = desired_pod(component, &status, &cfg, &node_uid, &seen);
            let name = pod_name(component, &cfg.node_name);
            let ready = status.state == ProcessState::Running
                && check(component, &cfg.node_ip, &desired, &cri).await;
            let entry = readiness
                .entry(component.name)
                .or_insert_with(|| (ready, jiff::Timestamp::now().to_string()));
            if entry.0 != ready {
                *entry = (ready, jiff::Timestamp::now().to_string());
            }
            let ready_since = entry.1.clone();
            let current = match store.get(&ObjectRef::<Pod>::new(&name).within(NAMESPACE)) {
                Some(current) => current,
                // Created, then given its status in the same round (not a period later:
                // `create cluster --wait` waits for these pods to be Running).
                None => match api.create(&PostParams::default(), &desired).await {
                    Ok(created) => {
                        tracing::info!(pod = %name, "created the mirror pod");
                        std::sync::Arc::new(created)
                    }
                    // Already there: the watch has not shown it yet.
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(err) => {
                        tracing::warn!(pod = %name, "creating the mirror pod: {err}");
                        continue;
                    }
                },
            };
            if !is_mirror(&current) {
                tracing::warn!(pod = %name, "a pod that is not a mirror pod holds the mirror pod's name");
                continue;
            }
            let uid = current.metadata.uid.clone().unwrap_or_default();
            let wanted_hash = desired
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MIRROR_ANNOTATION));
            let stale = current
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MIRROR_ANNOTATION))
                != wanted_hash;
            if current.metadata.deletion_timestamp.is_some() || stale {
                // As upstream: a mirror pod being deleted, or one for an older version of
                // the component, is removed at once and published again next round.
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                sent.remove(&uid);
                match api.delete(&name, &params).await {
                    Ok(_) => {
                        tracing::info!(pod = %name, "deleted the mirror pod to publish it again")
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(err) => tracing::warn!(pod = %name, "deleting the mirror pod: {err}"),
                }
                continue;
            }
            let new_status = pod_status(&current, &status, ready, &ready_since, &cfg.node_ip);
            if sent.get(&uid) == Some(&new_status) {
                continue;
            }
            let patch = serde_json::json!({ "status": new_status });
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    sent.insert(uid, new_status);
                }
                Err(err) => tracing::warn!(pod = %name, "updating the mirror pod's status: {err}"),
            }
        }
        let live: Vec<String> = store
            .state()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        sent.retain(|uid, _| live.contains(uid));
        tokio::time::sleep(SYNC_PERIOD).await;
    }
}

/// The component's own health check, where it has one (the readiness probe in its
/// mirror pod); a component without one is ready while its process runs.
async fn check(component: &StaticComponent, node_ip: &str, pod: &Pod, cri: &Cri) -> bool {
    let Some(container) = pod.spec.as_ref().and_then(|s| s.containers.first()) else {
        return false;
    };
    let Some(get) = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
    else {
        return component.health.is_none();
    };
    let target = Target {
        cri,
        container_id: "",
        container,
        pod_ip: node_ip,
    };
    match handlers::http_get(&target, get, CHECK_TIMEOUT).await {
        Ok(()) => true,
        Err(err) => {
            tracing::debug!(component = component.name, "health check failed: {err}");
            false
        }
    }
}

/// The log of a mirror pod's container: the component's log file. None for other pods.
pub fn component_log(pod: &Pod) -> Option<(&'static StaticComponent, PathBuf)> {
    let component = component_of(pod)?;
    Some((
        component,
        Path::new(paths::LOG_DIR).join(format!("{}.log", component.supervised)),
    ))
}

/// One line of a component's log; `run_start` marks the supervisor's marker line that
/// begins a run (a start of the process).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    run_start: bool,
    entry: LogEntry,
}

/// Splits a component's plain-text log into lines with timestamps. A line's time is
/// its own leading RFC 3339 stamp (our components' log format), the `ts` field of a
/// JSON line (etcd's structured logger), or else that of the line before it; the
/// supervisor's run marker always carries one.
#[derive(Default)]
struct PlainLines {
    unfinished: Vec<u8>,
    last_time: String,
}

fn own_time(line: &str) -> Option<String> {
    if let Some(rest) = line.strip_prefix(RUN_MARKER) {
        // The stamp holds colons itself; the note after it follows ": ".
        let stamp = rest.split(": ").next().unwrap_or_default();
        return stamp.parse::<jiff::Timestamp>().ok().map(|t| t.to_string());
    }
    if line.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let ts = value.get("ts")?.as_str()?;
        return ts.parse::<jiff::Timestamp>().ok().map(|t| t.to_string());
    }
    let first = line.split_whitespace().next()?;
    first.parse::<jiff::Timestamp>().ok().map(|t| t.to_string())
}

impl PlainLines {
    fn push(&mut self, bytes: &[u8]) -> Vec<Line> {
        self.unfinished.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(pos) = self.unfinished.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.unfinished.drain(..=pos).collect();
            let content = String::from_utf8_lossy(&raw[..raw.len() - 1]).into_owned();
            if let Some(t) = own_time(&content) {
                self.last_time = t;
            }
            lines.push(Line {
                run_start: content.starts_with(RUN_MARKER),
                entry: LogEntry {
                    timestamp: self.last_time.clone(),
                    content,
                },
            });
        }
        lines
    }
}

/// The lines of the current run (or, with `previous`, of the run before it); None
/// when there is no such run.
fn pick_run(lines: Vec<Line>, previous: bool) -> Option<Vec<LogEntry>> {
    let mut runs: Vec<Vec<LogEntry>> = vec![Vec::new()];
    for line in lines {
        if line.run_start {
            runs.push(Vec::new());
        }
        if let Some(run) = runs.last_mut() {
            run.push(line.entry);
        }
    }
    // Lines before the first marker belong to no run the supervisor started.
    runs.remove(0);
    if previous {
        runs.len()
            .checked_sub(2)
            .and_then(|i| runs.into_iter().nth(i))
    } else {
        runs.pop()
    }
}

/// Why a component's log cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ComponentLogError {
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious { container: String, pod: String },
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start")]
    NotStarted { container: String, pod: String },
}

/// Reads the component's log for `kubectl logs`: what is there now, already filtered
/// by the options, and the reader positioned after it for following.
pub async fn open_component_log(
    path: &Path,
    opts: &LogOptions,
    container: &str,
    pod: &str,
) -> Result<(Vec<LogEntry>, Option<tokio::fs::File>), ComponentLogError> {
    let not_started = || ComponentLogError::NotStarted {
        container: container.to_string(),
        pod: pod.to_string(),
    };
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|_| not_started())?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
        .await
        .map_err(|_| not_started())?;
    let lines = PlainLines::default().push(&buf);
    let Some(run) = pick_run(lines, opts.previous) else {
        return Err(if opts.previous {
            ComponentLogError::NoPrevious {
                container: container.to_string(),
                pod: pod.to_string(),
            }
        } else {
            not_started()
        });
    };
    let entries = logs::select(run, opts, jiff::Timestamp::now());
    // A followed log continues from the end of what was read; the unfinished last line
    // (if any) is read again with the rest.
    let follow = opts.follow && !opts.previous;
    Ok((entries, follow.then_some(file)))
}

/// Follows a component's log until the client leaves or the process restarts (the
/// next run marker), as a followed container log ends when the container does.
pub async fn follow_component_log(
    mut file: tokio::fs::File,
    timestamps: bool,
    mut budget: Option<u64>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut reader = PlainLines::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut chunk).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n > 0 {
            for line in reader.push(&chunk[..n]) {
                if line.run_start {
                    return;
                }
                if !super::server::send_within(&tx, &mut budget, line.entry.render(timestamps))
                    .await
                {
                    return;
                }
            }
            continue;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_runtime::Role;

    fn cfg() -> NodeConfig {
        NodeConfig {
            cluster_name: "rind".into(),
            node_name: "rind-control-plane".into(),
            role: Role::ControlPlane,
            node_ip: "172.30.0.2".into(),
            node_ipv6: None,
            api_server_url: "https://172.30.0.2:6443".into(),
            pod_subnet: "10.244.0.0/16".into(),
            service_subnet: "10.96.0.0/16".into(),
            labels: Default::default(),
            register_with_taints: Vec::new(),
            max_pods: None,
            etcd_initial_cluster: vec![],
            etcd_join_existing: false,
            disable_default_cni: false,
            kube_proxy_mode: Default::default(),
            dns_search: None,
            image: "rind/node:v0.1.0".into(),
            containerd_config_patches: vec![],
        }
    }

    fn status(state: ProcessState) -> ComponentStatus {
        ComponentStatus {
            name: "apiserver".into(),
            command: vec![
                "/usr/local/bin/rind".into(),
                "node".into(),
                "apiserver".into(),
            ],
            state,
            pid: Some(42),
            restarts: 1,
            first_started_at: "2026-01-01T00:00:00Z".into(),
            started_at: "2026-01-01T00:05:00Z".into(),
            last_exit: Some(rind_runtime::component_status::LastExit {
                exit_code: 137,
                description: "signal SIGKILL".into(),
                started_at: "2026-01-01T00:00:00Z".into(),
                finished_at: "2026-01-01T00:04:59Z".into(),
            }),
            backoff_seconds: Some(2),
        }
    }

    #[test]
    fn the_api_servers_mirror_pod_is_kubeadms() {
        let apiserver = &COMPONENTS[1];
        let pod = desired_pod(apiserver, &status(ProcessState::Running), &cfg(), "u1", "t");
        assert_eq!(
            pod.metadata.name.as_deref(),
            Some("kube-apiserver-rind-control-plane")
        );
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels["component"], "kube-apiserver");
        assert_eq!(labels["tier"], "control-plane");
        let notes = pod.metadata.annotations.clone().unwrap();
        assert_eq!(notes[SOURCE_ANNOTATION], "file");
        assert_eq!(notes[MIRROR_ANNOTATION], notes[HASH_ANNOTATION]);
        assert_eq!(notes[HASH_ANNOTATION].len(), 32);
        let owner = &pod.metadata.owner_references.clone().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "u1"));
        let spec = pod.spec.clone().unwrap();
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        let probe = spec.containers[0]
            .readiness_probe
            .clone()
            .unwrap()
            .http_get
            .unwrap();
        assert_eq!(probe.host.as_deref(), Some("172.30.0.2"));
        assert_eq!(probe.path.as_deref(), Some("/readyz"));
        assert!(is_mirror(&pod));
        assert_eq!(component_of(&pod), Some(apiserver));
        // The hash follows the command line.
        let mut other = status(ProcessState::Running);
        other.command.push("--v=2".into());
        let changed = desired_pod(apiserver, &other, &cfg(), "u1", "t");
        assert_ne!(
            changed.metadata.annotations.unwrap()[HASH_ANNOTATION],
            notes[HASH_ANNOTATION]
        );
    }

    #[test]
    fn status_follows_the_process() {
        let pod = desired_pod(
            &COMPONENTS[1],
            &status(ProcessState::Running),
            &cfg(),
            "u",
            "t",
        );
        let up = pod_status(
            &pod,
            &status(ProcessState::Running),
            true,
            "2026-01-01T00:06:00Z",
            "172.30.0.2",
        );
        let c = &up.container_statuses.clone().unwrap()[0];
        assert!(c.ready);
        assert_eq!(c.restart_count, 1);
        assert!(c.state.as_ref().unwrap().running.is_some());
        let last = c.last_state.clone().unwrap().terminated.unwrap();
        assert_eq!(
            (last.exit_code, last.reason.as_deref()),
            (137, Some("Error"))
        );
        let down = pod_status(
            &pod,
            &status(ProcessState::Restarting),
            true,
            "t",
            "172.30.0.2",
        );
        let c = &down.container_statuses.clone().unwrap()[0];
        assert!(!c.ready);
        let waiting = c.state.clone().unwrap().waiting.unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        let ready = down
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
    }

    #[test]
    fn log_runs_and_timestamps() {
        let text = "old line\n\
==== rind init 2026-01-01T00:00:00Z: starting /usr/local/bin/rind\n\
2026-01-01T00:00:01.5Z  INFO first run\n\
==== rind init 2026-01-01T00:10:00Z: starting /usr/local/bin/rind\n\
{\"level\":\"info\",\"ts\":\"2026-01-01T00:10:02.000Z\",\"msg\":\"json\"}\n\
a continuation\n";
        let lines = PlainLines::default().push(text.as_bytes());
        let current = pick_run(lines.clone(), false).unwrap();
        assert_eq!(current.len(), 3);
        assert_eq!(current[2].content, "a continuation");
        assert_eq!(current[2].timestamp, "2026-01-01T00:10:02Z");
        let previous = pick_run(lines.clone(), true).unwrap();
        assert_eq!(
            previous[1].content,
            "2026-01-01T00:00:01.5Z  INFO first run"
        );
        assert_eq!(previous[1].timestamp, "2026-01-01T00:00:01.5Z");
        let once = PlainLines::default().push(b"==== rind init 2026-01-01T00:00:00Z: x\n");
        assert!(pick_run(once, true).is_none());
    }
}
