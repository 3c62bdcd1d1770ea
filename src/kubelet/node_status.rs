//! Registers the Node object, keeps its status fresh and renews the node's Lease in
//! `kube-node-lease`, which is how the control plane knows the kubelet is alive.

use super::cri::Cri;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rind_runtime::{NodeConfig, Role};
use std::collections::BTreeMap;
use std::time::Duration;

pub const KUBELET_VERSION: &str = "v1.37.0";
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(10);
/// How often a Ready node's runtime is checked between heartbeats (a CRI `Status`
/// call: cheap), so that a failure is reported within a second.
const READY_CHECK_PERIOD: Duration = Duration::from_secs(1);
/// How often a NotReady node's runtime is checked: a new node turns Ready this soon
/// after its CNI config appears (upstream's fast status updates poll at 100 ms, as here).
const NOT_READY_CHECK_PERIOD: Duration = Duration::from_millis(100);
const LEASE_DURATION_SECONDS: i32 = 40;
const LEASE_NAMESPACE: &str = "kube-node-lease";
const MAX_PODS: &str = "110";

#[derive(Debug, thiserror::Error)]
pub enum NodeStatusError {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

/// Facts about the machine the node reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemInfo {
    pub cpus: String,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub os_image: String,
    pub kernel_version: String,
    pub machine_id: String,
    pub boot_id: String,
    pub runtime_version: String,
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// CPUs from the cgroup's CFS quota when the node container is limited, else the
/// CPUs the process may run on.
fn read_cpus() -> String {
    // The CPUs the process may run on, from its affinity mask: std's
    // `available_parallelism` already rounds the cgroup quota down to whole CPUs, which
    // would hide a fractional limit (1.5 CPUs would read as 1).
    let host = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(count_cpu_list)
        })
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let quota = read_trimmed("/sys/fs/cgroup/cpu.max")
        .and_then(|s| {
            let (q, p) = s.split_once(' ')?;
            Some((q.parse::<f64>().ok()?, p.parse::<f64>().ok()?))
        })
        .or_else(|| {
            let q = read_trimmed("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")?
                .parse::<f64>()
                .ok()?;
            let p = read_trimmed("/sys/fs/cgroup/cpu/cpu.cfs_period_us")?
                .parse::<f64>()
                .ok()?;
            (q > 0.0).then_some((q, p))
        });
    match quota {
        Some((q, p)) if p > 0.0 && q / p < host as f64 => {
            format!("{}m", (q / p * 1000.0).round() as u64)
        }
        _ => host.to_string(),
    }
}

/// How many CPUs a kernel CPU list names (`0-3,6` is five).
fn count_cpu_list(list: &str) -> usize {
    list.trim()
        .split(',')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => usize::from(part.parse::<usize>().is_ok()),
        })
        .sum()
}

/// Memory: the smaller of the machine's memory and the node container's cgroup limit.
fn read_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let limit = read_trimmed("/sys/fs/cgroup/memory.max")
        .or_else(|| read_trimmed("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|s| s.parse::<u64>().ok());
    match limit {
        Some(l) if total == 0 || l < total => l,
        _ => total,
    }
}

// `fsblkcnt_t` is 32 bits on some targets and 64 on others.
#[allow(clippy::useless_conversion)]
fn read_storage(path: &str) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| u64::from(s.blocks()) * s.fragment_size())
        .unwrap_or(0)
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

impl SystemInfo {
    pub fn read(runtime_version: String) -> Self {
        Self {
            cpus: read_cpus(),
            memory_bytes: read_memory(),
            ephemeral_storage_bytes: read_storage("/var"),
            os_image: os_image(),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            machine_id: read_trimmed("/etc/machine-id").unwrap_or_default(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            runtime_version,
        }
    }
}

/// The Kubernetes name of the architecture (`amd64`, `arm64`).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn node_labels(cfg: &NodeConfig) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), cfg.node_name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch().to_string()),
    ]);
    if cfg.role == Role::ControlPlane {
        labels.insert(
            "node-role.kubernetes.io/control-plane".to_string(),
            String::new(),
        );
    }
    labels.extend(cfg.labels.clone());
    labels
}

/// How long a runtime status check may take before the runtime counts as down.
const RUNTIME_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The node's readiness as last checked: the problems upstream's kubelet would name
/// (empty when ready) and since when that verdict has held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub problems: Vec<String>,
    pub since: Timestamp,
}

/// Asks the runtime for its health (CRI `Status`), as the kubelet's runtime-state
/// check does each sync, and words what is wrong the way upstream's node status does.
pub async fn runtime_problems(cri: &Cri) -> Vec<String> {
    let status = match tokio::time::timeout(RUNTIME_CHECK_TIMEOUT, cri.status()).await {
        Ok(Ok(status)) => status,
        Ok(Err(err)) => {
            tracing::warn!("container runtime status check failed: {err}");
            return vec!["container runtime is down".to_string()];
        }
        Err(_) => {
            tracing::warn!("container runtime status check timed out");
            return vec!["container runtime is down".to_string()];
        }
    };
    let condition = |type_: &str| status.conditions.iter().find(|c| c.r#type == type_);
    let mut problems = Vec::new();
    for (type_, what) in [
        ("RuntimeReady", "container runtime not ready"),
        ("NetworkReady", "container runtime network not ready"),
    ] {
        match condition(type_) {
            Some(c) if c.status => {}
            Some(c) => problems.push(format!(
                "{what}: {type_}=false reason:{} message:{}",
                c.reason, c.message
            )),
            None => problems.push(format!(
                "{what}: {type_}=false reason: message:the runtime did not report {type_}"
            )),
        }
    }
    problems
}

/// The sync loop counts as stuck when it has not relisted the runtime for this long,
/// upstream's PLEG threshold.
const SYNC_LOOP_THRESHOLD: Duration = Duration::from_secs(180);

/// The pod sync loop's health as upstream's PLEG check words it.
fn sync_problem(since_relist: Duration) -> Option<String> {
    (since_relist > SYNC_LOOP_THRESHOLD).then(|| {
        format!(
            "PLEG is not healthy: pleg was last seen active {} ago; threshold is 3m0s",
            super::backoff::go_duration(since_relist)
        )
    })
}

/// Upstream joins several problems as an aggregate error does: one alone is shown as
/// it is, more are bracketed and comma-separated.
fn not_ready_message(problems: &[String]) -> String {
    match problems {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn conditions(now: Timestamp, since: Timestamp, readiness: &Readiness) -> Vec<NodeCondition> {
    let cond =
        |type_: &str, status: &str, reason: &str, message: &str, since: Timestamp| NodeCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(Time(since)),
        };
    let ready = if readiness.problems.is_empty() {
        cond(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
            readiness.since,
        )
    } else {
        cond(
            "Ready",
            "False",
            "KubeletNotReady",
            &not_ready_message(&readiness.problems),
            readiness.since,
        )
    };
    vec![
        cond(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            since,
        ),
        cond(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            since,
        ),
        cond(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            since,
        ),
        ready,
    ]
}

pub fn node_status(
    cfg: &NodeConfig,
    info: &SystemInfo,
    now: Timestamp,
    since: Timestamp,
    readiness: &Readiness,
) -> NodeStatus {
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(info.cpus.clone())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", info.memory_bytes / 1024)),
        ),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Ki", info.ephemeral_storage_bytes / 1024)),
        ),
        (
            "pods".to_string(),
            Quantity(
                cfg.max_pods
                    .map_or_else(|| MAX_PODS.to_string(), |m| m.to_string()),
            ),
        ),
    ]);
    // A dual-stack node has an InternalIP of each family, the primary (IPv4) first,
    // as the kubelet's `--node-ip` with two addresses gives it.
    let internal_ips = std::iter::once(&cfg.node_ip)
        .chain(cfg.node_ipv6.iter())
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.clone(),
        });
    NodeStatus {
        addresses: Some(
            internal_ips
                .chain(std::iter::once(NodeAddress {
                    type_: "Hostname".into(),
                    address: cfg.node_name.clone(),
                }))
                .collect(),
        ),
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(conditions(now, since, readiness)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(rind_runtime::paths::KUBELET_PORT),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            boot_id: info.boot_id.clone(),
            container_runtime_version: info.runtime_version.clone(),
            kernel_version: info.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: info.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: info.os_image.clone(),
            system_uuid: info.machine_id.clone(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

pub fn node(cfg: &NodeConfig, info: &SystemInfo, now: Timestamp, readiness: &Readiness) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            labels: Some(node_labels(cfg)),
            ..ObjectMeta::default()
        },
        // No podCIDR: as with upstream's `--allocate-node-cidrs`, the controller-manager's
        // node IPAM hands each node its share of the pod subnet. Taints only at
        // registration, as `--register-with-taints`: later changes are the user's.
        spec: Some(NodeSpec {
            taints: (!cfg.register_with_taints.is_empty()).then(|| {
                cfg.register_with_taints
                    .iter()
                    .map(|t| k8s_openapi::api::core::v1::Taint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: t.effect.clone(),
                        time_added: None,
                    })
                    .collect()
            }),
            ..NodeSpec::default()
        }),
        status: Some(node_status(cfg, info, now, now, readiness)),
    }
}

/// Creates the Node (or refreshes an existing one) and returns its uid.
pub async fn register(
    client: &kube::Client,
    cfg: &NodeConfig,
    info: &SystemInfo,
    readiness: &Readiness,
) -> Result<String, NodeStatusError> {
    let api: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now();
    let desired = node(cfg, info, now, readiness);
    let created = match api.create(&PostParams::default(), &desired).await {
        Ok(n) => {
            tracing::info!(node = %cfg.node_name, "registered the node");
            n
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            tracing::info!(node = %cfg.node_name, "the node exists; refreshing it");
            let patch = serde_json::json!({
                "metadata": { "labels": node_labels(cfg) },
            });
            api.patch(
                &cfg.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?
        }
        Err(err) => return Err(err.into()),
    };
    let patch = serde_json::json!({ "status": node_status(cfg, info, now, now, readiness) });
    api.patch_status(
        &cfg.node_name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(created.metadata.uid.unwrap_or_default())
}

/// Checks the runtime often and posts the node status (and renews the lease) at once
/// when the node's readiness changes, and otherwise every 10 s, forever. The quick
/// checks are what upstream's kubelet gets from its fast status updates at start and
/// its runtime-state events: a node turns Ready as soon as its network agent has
/// written the CNI config, not at the next heartbeat, and NotReady as soon as the
/// runtime fails. Failures are logged and retried at the next beat: a kubelet never
/// gives up on its API server.
pub async fn heartbeat(
    client: kube::Client,
    cri: Cri,
    cfg: NodeConfig,
    info: SystemInfo,
    node_uid: String,
    mut readiness: Readiness,
    sync_health: super::pods::SyncHealth,
) {
    let since = Timestamp::now();
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let mut last_post: Option<std::time::Instant> = None;
    loop {
        let now = Timestamp::now();
        let mut problems = runtime_problems(&cri).await;
        problems.extend(sync_problem(sync_health.since()));
        let changed = problems.is_empty() != readiness.problems.is_empty();
        if changed {
            tracing::info!(?problems, "node readiness changed");
            readiness.since = now;
        }
        readiness.problems = problems;
        let due = last_post.is_none_or(|at| at.elapsed() >= HEARTBEAT_PERIOD);
        if changed || due {
            last_post = Some(std::time::Instant::now());
            let patch =
                serde_json::json!({ "status": node_status(&cfg, &info, now, since, &readiness) });
            if let Err(err) = nodes
                .patch_status(
                    &cfg.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!("node status update failed: {err}");
            }
            if let Err(err) = renew_lease(&leases, &cfg.node_name, &node_uid, now).await {
                tracing::warn!("lease renewal failed: {err}");
            }
        }
        tokio::time::sleep(if readiness.problems.is_empty() {
            READY_CHECK_PERIOD
        } else {
            NOT_READY_CHECK_PERIOD
        })
        .await;
    }
}

async fn renew_lease(
    leases: &Api<Lease>,
    node_name: &str,
    node_uid: &str,
    now: Timestamp,
) -> Result<(), NodeStatusError> {
    let spec = LeaseSpec {
        holder_identity: Some(node_name.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(MicroTime(now)),
        ..LeaseSpec::default()
    };
    match leases.get_opt(node_name).await? {
        Some(mut lease) => {
            lease.spec = Some(spec);
            leases
                .replace(node_name, &PostParams::default(), &lease)
                .await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node_name.to_string()),
                    namespace: Some(LEASE_NAMESPACE.to_string()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: node_name.to_string(),
                        uid: node_uid.to_string(),
                        ..OwnerReference::default()
                    }]),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(role: Role) -> NodeConfig {
        NodeConfig {
            cluster_name: "rind".into(),
            node_name: "rind-control-plane".into(),
            role,
            node_ip: "172.18.0.2".into(),
            node_ipv6: None,
            api_server_url: "https://172.18.0.2:6443".into(),
            pod_subnet: "10.244.0.0/16".into(),
            service_subnet: "10.96.0.0/16".into(),
            labels: BTreeMap::from([("tier".to_string(), "gold".to_string())]),
            register_with_taints: Vec::new(),
            max_pods: None,
            etcd_initial_cluster: vec![],
            etcd_join_existing: false,
            disable_default_cni: false,
            kube_proxy_mode: Default::default(),
            dns_search: None,
            image: String::new(),
            containerd_config_patches: vec![],
        }
    }

    fn info() -> SystemInfo {
        SystemInfo {
            cpus: "2".into(),
            memory_bytes: 4 * 1024 * 1024 * 1024,
            ephemeral_storage_bytes: 10 * 1024 * 1024 * 1024,
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel_version: "6.1.0".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            runtime_version: "containerd://1.6.20".into(),
        }
    }

    #[test]
    fn control_plane_node_object() {
        let now: Timestamp = "2026-11-22T00:00:00Z".parse().unwrap();
        let ready = Readiness {
            problems: vec![],
            since: now,
        };
        // maxPods and --register-with-taints from the config's kubeadm patches.
        let mut patched = cfg(Role::Worker);
        patched.max_pods = Some(20);
        patched.register_with_taints = vec![rind_runtime::RegisterTaint {
            key: "dedicated".into(),
            value: None,
            effect: "NoSchedule".into(),
        }];
        let n = node(&patched, &info(), now, &ready);
        assert_eq!(n.status.unwrap().capacity.unwrap()["pods"].0, "20");
        let taints = n.spec.unwrap().taints.unwrap();
        assert_eq!(
            (taints[0].key.as_str(), taints[0].effect.as_str()),
            ("dedicated", "NoSchedule")
        );
        let n = node(&cfg(Role::ControlPlane), &info(), now, &ready);
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels["node-role.kubernetes.io/control-plane"], "");
        assert_eq!(labels["kubernetes.io/hostname"], "rind-control-plane");
        assert_eq!(labels["tier"], "gold");
        assert_eq!(n.spec.unwrap().pod_cidr, None);
        let status = n.status.unwrap();
        let cap = status.capacity.unwrap();
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        assert_eq!(
            status
                .daemon_endpoints
                .unwrap()
                .kubelet_endpoint
                .unwrap()
                .port,
            10250
        );
        let ni = status.node_info.unwrap();
        assert_eq!(ni.kubelet_version, "v1.37.0");
        assert_eq!(ni.container_runtime_version, "containerd://1.6.20");
    }

    #[test]
    fn runtime_problems_make_the_node_not_ready() {
        let now: Timestamp = "2026-11-22T00:00:00Z".parse().unwrap();
        let down = Readiness {
            problems: vec!["container runtime is down".into()],
            since: now,
        };
        let ready = |r: &Readiness| {
            conditions(now, now, r)
                .into_iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
        };
        let c = ready(&down);
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
            (
                "False",
                Some("KubeletNotReady"),
                Some("container runtime is down")
            )
        );
        let two = Readiness {
            problems: vec!["a".into(), "b".into()],
            since: now,
        };
        assert_eq!(ready(&two).message.as_deref(), Some("[a, b]"));
    }

    #[test]
    fn a_stuck_sync_loop_is_a_problem() {
        assert_eq!(sync_problem(Duration::from_secs(5)), None);
        assert_eq!(
            sync_problem(Duration::from_secs(200)).as_deref(),
            Some("PLEG is not healthy: pleg was last seen active 3m20s ago; threshold is 3m0s")
        );
    }

    #[test]
    fn worker_has_no_role_label() {
        let labels = node_labels(&cfg(Role::Worker));
        assert!(!labels.contains_key("node-role.kubernetes.io/control-plane"));
    }

    #[test]
    fn reads_this_machine() {
        let i = SystemInfo::read("containerd://x".into());
        assert!(i.memory_bytes > 0);
        assert!(!i.cpus.is_empty());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-3,6\n"), 5);
        assert_eq!(count_cpu_list("0"), 1);
        assert_eq!(count_cpu_list("0-1"), 2);
        assert_eq!(count_cpu_list(""), 0);
    }
}
