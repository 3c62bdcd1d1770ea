//! Pod cgroups, laid out as upstream's kubelet does with the cgroupfs driver:
//! `/kubepods` (the node allocatable cgroup) holds Guaranteed pods and the
//! `burstable` and `besteffort` QoS cgroups, which hold the other pods; each pod has
//! `pod<uid>`, created with the pod's limits before its sandbox and given to the
//! runtime as the sandbox's cgroup parent, so the containers' cgroups sit under it
//! and the pod as a whole cannot use more than the sum of its containers' limits.
//!
//! Both cgroup versions are handled: nodes run on whatever their host runs (cgroup
//! v1 on some CI hosts, with each controller its own hierarchy). The cgroup root is a
//! parameter so the file operations are tested against a temporary directory.

use k8s_openapi::api::core::v1::{Container, Pod};
use rind_api::quantity::Quantity;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// Where the node mounts its cgroups.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The node allocatable cgroup, parent of every pod's.
const KUBEPODS: &str = "/kubepods";
const POD_PREFIX: &str = "pod";

/// Upstream's floor for cpu.shares (the kernel's minimum), also what every BestEffort
/// pod and the besteffort cgroup get.
pub const MIN_SHARES: u64 = 2;
/// The kernel's ceiling for cpu.shares.
const MAX_SHARES: u64 = 262_144;
/// The CFS period upstream uses, 100 ms.
pub const CPU_PERIOD_US: i64 = 100_000;
/// The smallest quota upstream sets, 1 ms per period.
const MIN_QUOTA_US: i64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy under {root} has the {controller} controller")]
    NoController {
        controller: &'static str,
        root: PathBuf,
    },
    #[error("failed to create cgroup {cgroup} ({path}): {source}")]
    Create {
        cgroup: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("failed to set {file} of cgroup {cgroup} to {value:?} ({path}): {source}")]
    Write {
        cgroup: String,
        file: &'static str,
        value: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("failed to read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cgroup {cgroup} still has processes {pids:?}")]
    Busy { cgroup: String, pids: Vec<i32> },
    #[error("failed to remove cgroup {cgroup} ({path}): {source}")]
    Remove {
        cgroup: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// A pod's quality of service class, which picks its place in the hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    /// The pod's class: `status.qosClass` as the API server set it at creation (it
    /// never changes afterwards), else computed the same way.
    pub fn of(pod: &Pod) -> Self {
        let computed;
        let class = match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
            Some(class) => class,
            None => {
                computed = super::status::qos_class(pod);
                computed
            }
        };
        match class {
            "Guaranteed" => Qos::Guaranteed,
            "BestEffort" => Qos::BestEffort,
            _ => Qos::Burstable,
        }
    }

    /// The class's cgroup; Guaranteed pods live directly in the node allocatable one.
    pub fn cgroup(self) -> String {
        match self {
            Qos::Guaranteed => KUBEPODS.to_string(),
            Qos::Burstable => format!("{KUBEPODS}/burstable"),
            Qos::BestEffort => format!("{KUBEPODS}/besteffort"),
        }
    }
}

/// The pod's cgroup as the runtime takes it (`cgroup_parent`): an absolute path in
/// the node's cgroup hierarchy, `pod<uid>` under its QoS class's cgroup.
pub fn pod_cgroup(qos: Qos, uid: &str) -> String {
    format!("{}/{POD_PREFIX}{uid}", qos.cgroup())
}

/// The pod uid a pod cgroup's name carries.
pub fn pod_uid(cgroup: &str) -> Option<&str> {
    let (_, leaf) = cgroup.rsplit_once('/')?;
    leaf.strip_prefix(POD_PREFIX).filter(|uid| !uid.is_empty())
}

/// upstream's MilliCPUToShares: 1024 shares per CPU, at least 2.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> u64 {
    let shares = u64::try_from(milli_cpu.max(0)).unwrap_or(0) * 1024 / 1000;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// upstream's MilliCPUToQuota over [`CPU_PERIOD_US`]: the CPU time allowed per period,
/// at least 1 ms.
pub fn milli_cpu_to_quota(milli_cpu: i64) -> i64 {
    (milli_cpu.saturating_mul(CPU_PERIOD_US) / 1000).max(MIN_QUOTA_US)
}

/// cgroup v2's cpu.weight for cpu.shares, the linear mapping of [2, 262144] onto
/// [1, 10000] that the node's runc applies to containers (500m → 512 shares → 20), so
/// pods and their containers are weighed alike.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + (shares - MIN_SHARES) * 9999 / (MAX_SHARES - MIN_SHARES)
}

/// What a cgroup is limited to. `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub cpu_shares: u64,
    /// CFS quota in µs per [`CPU_PERIOD_US`].
    pub cpu_quota: Option<i64>,
    pub memory_bytes: Option<i64>,
}

/// CPU in millicores and memory in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Amounts {
    milli_cpu: i64,
    memory: i64,
}

impl Amounts {
    fn add(self, other: Amounts) -> Amounts {
        Amounts {
            milli_cpu: self.milli_cpu.saturating_add(other.milli_cpu),
            memory: self.memory.saturating_add(other.memory),
        }
    }

    fn max(self, other: Amounts) -> Amounts {
        Amounts {
            milli_cpu: self.milli_cpu.max(other.milli_cpu),
            memory: self.memory.max(other.memory),
        }
    }

    fn of(
        list: Option<
            &std::collections::BTreeMap<
                String,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            >,
        >,
    ) -> Amounts {
        let get = |name: &str| {
            list.and_then(|l| l.get(name))
                .and_then(|q| Quantity::parse(&q.0))
        };
        Amounts {
            milli_cpu: get("cpu").map(|q| q.milli_value()).unwrap_or(0),
            memory: get("memory").map(|q| q.value()).unwrap_or(0),
        }
    }
}

fn limits_of(c: &Container) -> Amounts {
    Amounts::of(c.resources.as_ref().and_then(|r| r.limits.as_ref()))
}

/// A request left out is the limit, as the API server defaults it.
fn requests_of(c: &Container) -> Amounts {
    let resources = c.resources.as_ref();
    let requests = resources.and_then(|r| r.requests.as_ref());
    let (asked, limits) = (Amounts::of(requests), limits_of(c));
    let has = |name: &str| requests.is_some_and(|r| r.contains_key(name));
    Amounts {
        milli_cpu: if has("cpu") {
            asked.milli_cpu
        } else {
            limits.milli_cpu
        },
        memory: if has("memory") {
            asked.memory
        } else {
            limits.memory
        },
    }
}

/// The pod's total of `amounts`, as upstream aggregates requests and limits: app
/// containers and sidecars (init containers that keep running) add up; each other
/// init container runs alone beside the sidecars started before it, so the pod needs
/// the largest of those moments if it exceeds the sum. `seen` is shown each app
/// container's amounts and each init container's moment, as upstream's ContainerFn.
fn aggregate(
    pod: &Pod,
    amounts: impl Fn(&Container) -> Amounts,
    mut seen: impl FnMut(Amounts),
) -> Amounts {
    let Some(spec) = pod.spec.as_ref() else {
        return Amounts::default();
    };
    let mut total = Amounts::default();
    for c in &spec.containers {
        let own = amounts(c);
        seen(own);
        total = total.add(own);
    }
    let mut sidecars = Amounts::default();
    let mut init_peak = Amounts::default();
    for c in spec.init_containers.iter().flatten() {
        let own = amounts(c);
        let moment = if super::status::is_sidecar(c) {
            total = total.add(own);
            sidecars = sidecars.add(own);
            sidecars
        } else {
            own.add(sidecars)
        };
        seen(moment);
        init_peak = init_peak.max(moment);
    }
    total.max(init_peak)
}

/// The pod's RuntimeClass overhead, which upstream adds to requests and set limits.
fn overhead(pod: &Pod) -> Amounts {
    Amounts::of(pod.spec.as_ref().and_then(|s| s.overhead.as_ref()))
}

/// The pod's CPU request in millicores, overhead included.
pub fn pod_cpu_request(pod: &Pod) -> i64 {
    aggregate(pod, requests_of, |_| {})
        .add(overhead(pod))
        .milli_cpu
}

/// The pod cgroup's limits, as upstream's ResourceConfigForPod computes them: the CPU
/// weight from the sum of requests; the CPU quota and memory limit from the sums of
/// limits, Guaranteed pods always, Burstable ones only for a resource every container
/// limits (one unlimited container leaves the pod unlimited); BestEffort pods get
/// the minimal weight and nothing else.
pub fn pod_limits(pod: &Pod, qos: Qos) -> Limits {
    let requests = aggregate(pod, requests_of, |_| {});
    let (mut cpu_declared, mut memory_declared) = (true, true);
    let limits = aggregate(pod, limits_of, |each| {
        cpu_declared &= each.milli_cpu != 0;
        memory_declared &= each.memory != 0;
    });
    let extra = overhead(pod);
    let requests = requests.add(extra);
    let limits = Amounts {
        milli_cpu: if limits.milli_cpu != 0 {
            limits.milli_cpu + extra.milli_cpu
        } else {
            0
        },
        memory: if limits.memory != 0 {
            limits.memory + extra.memory
        } else {
            0
        },
    };
    let shares = milli_cpu_to_shares(requests.milli_cpu);
    let quota = milli_cpu_to_quota(limits.milli_cpu);
    match qos {
        Qos::Guaranteed => Limits {
            cpu_shares: shares,
            cpu_quota: Some(quota),
            memory_bytes: Some(limits.memory),
        },
        Qos::Burstable => Limits {
            cpu_shares: shares,
            cpu_quota: cpu_declared.then_some(quota),
            memory_bytes: memory_declared.then_some(limits.memory),
        },
        Qos::BestEffort => Limits {
            cpu_shares: MIN_SHARES,
            cpu_quota: None,
            memory_bytes: None,
        },
    }
}

/// The node's cgroup hierarchy.
#[derive(Clone, Debug)]
enum Layout {
    /// One unified hierarchy.
    V2 { root: PathBuf },
    /// One hierarchy per controller (or per group of controllers): the pod's limits
    /// go to the cpu and memory ones; the runtime creates the containers' cgroups
    /// (and so the pod's path) in all of them, so removal visits every one.
    V1 {
        cpu: PathBuf,
        memory: PathBuf,
        all: Vec<PathBuf>,
    },
}

/// The node's cgroups as the kubelet manages them.
#[derive(Clone, Debug)]
pub struct Cgroups {
    layout: Layout,
}

fn in_hierarchy(hierarchy: &Path, cgroup: &str) -> PathBuf {
    hierarchy.join(cgroup.trim_start_matches('/'))
}

/// The processes in one cgroup (not its children); none when it has no procs file.
fn pids_in(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

/// `dir` and the cgroups below it, children before their parents.
fn tree_bottom_up(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CgroupError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            tree_bottom_up(&entry.path(), out)?;
        }
    }
    out.push(dir.to_path_buf());
    Ok(())
}

impl Cgroups {
    /// Finds the hierarchy under `root`: cgroup v2 when the root is a unified
    /// hierarchy, else the v1 hierarchies mounted below it.
    pub fn detect(root: &Path) -> Result<Self, CgroupError> {
        if root.join("cgroup.controllers").exists() {
            return Ok(Self {
                layout: Layout::V2 {
                    root: root.to_path_buf(),
                },
            });
        }
        let entries = std::fs::read_dir(root).map_err(|source| CgroupError::Read {
            path: root.to_path_buf(),
            source,
        })?;
        let mut all: Vec<PathBuf> = entries
            .flatten()
            // Combined hierarchies (`cpu,cpuacct`) are also linked as `cpu` and
            // `cpuacct`: the links are skipped, the hierarchy is seen once.
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .filter(|p| p.join("cgroup.procs").exists())
            .collect();
        all.sort();
        let with = |controller: &'static str| {
            all.iter()
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.split(',').any(|c| c == controller))
                })
                .cloned()
                .ok_or(CgroupError::NoController {
                    controller,
                    root: root.to_path_buf(),
                })
        };
        let (cpu, memory) = (with("cpu")?, with("memory")?);
        Ok(Self {
            layout: Layout::V1 { cpu, memory, all },
        })
    }

    /// "cgroup v1" or "cgroup v2", for the logs.
    pub fn version(&self) -> &'static str {
        match self.layout {
            Layout::V2 { .. } => "cgroup v2",
            Layout::V1 { .. } => "cgroup v1",
        }
    }

    /// Whether `cgroup` is there to hold limits (in both the cpu and the memory
    /// hierarchy on cgroup v1).
    pub fn exists(&self, cgroup: &str) -> bool {
        match &self.layout {
            Layout::V2 { root } => in_hierarchy(root, cgroup).is_dir(),
            Layout::V1 { cpu, memory, .. } => {
                in_hierarchy(cpu, cgroup).is_dir() && in_hierarchy(memory, cgroup).is_dir()
            }
        }
    }

    /// Every hierarchy's directory of `cgroup`.
    fn dirs(&self, cgroup: &str) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V2 { root } => vec![in_hierarchy(root, cgroup)],
            Layout::V1 { all, .. } => all.iter().map(|h| in_hierarchy(h, cgroup)).collect(),
        }
    }

    /// The node allocatable cgroup, limited to what the node offers pods, and the two
    /// QoS cgroups in it; besteffort gets the minimal CPU weight, burstable the sum of
    /// its pods' requests (`set_burstable_requests`, zero until pods come).
    pub fn ensure_node(
        &self,
        allocatable_milli_cpu: i64,
        allocatable_memory: i64,
    ) -> Result<(), CgroupError> {
        self.ensure(
            KUBEPODS,
            &Limits {
                cpu_shares: milli_cpu_to_shares(allocatable_milli_cpu),
                cpu_quota: None,
                memory_bytes: (allocatable_memory > 0).then_some(allocatable_memory),
            },
        )?;
        let qos = Limits {
            cpu_shares: MIN_SHARES,
            cpu_quota: None,
            memory_bytes: None,
        };
        self.ensure(&Qos::Burstable.cgroup(), &qos)?;
        self.ensure(&Qos::BestEffort.cgroup(), &qos)
    }

    /// Gives the burstable cgroup the CPU weight of its pods' summed requests, as
    /// upstream's QoS manager does.
    pub fn set_burstable_requests(&self, milli_cpu: i64) -> Result<(), CgroupError> {
        self.write_shares(&Qos::Burstable.cgroup(), milli_cpu_to_shares(milli_cpu))
    }

    /// Creates `cgroup` (and its parents) and sets its limits; an existing one gets
    /// them again, so this can be repeated.
    pub fn ensure(&self, cgroup: &str, limits: &Limits) -> Result<(), CgroupError> {
        let create = |path: &Path| {
            std::fs::create_dir_all(path).map_err(|source| CgroupError::Create {
                cgroup: cgroup.to_string(),
                path: path.to_path_buf(),
                source,
            })
        };
        match &self.layout {
            Layout::V2 { root } => {
                // cgroup v2 hands a controller to a cgroup only when its parent enables
                // it for children: every level down to the pod enables cpu and memory
                // (the pod for its containers).
                let mut dir = root.clone();
                for part in cgroup.split('/').filter(|p| !p.is_empty()) {
                    dir.push(part);
                    create(&dir)?;
                    self.enable_controllers(cgroup, &dir)?;
                }
            }
            Layout::V1 { cpu, memory, .. } => {
                create(&in_hierarchy(cpu, cgroup))?;
                create(&in_hierarchy(memory, cgroup))?;
            }
        }
        self.write_shares(cgroup, limits.cpu_shares)?;
        self.write_quota(cgroup, limits.cpu_quota)?;
        self.write_memory(cgroup, limits.memory_bytes)
    }

    fn enable_controllers(&self, cgroup: &str, dir: &Path) -> Result<(), CgroupError> {
        let available_path = dir.join("cgroup.controllers");
        let available = match std::fs::read_to_string(&available_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(CgroupError::Read {
                    path: available_path,
                    source,
                });
            }
        };
        for controller in available.split_whitespace() {
            let result =
                std::fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"));
            // Only cpu and memory carry the pod's limits; another controller the
            // kernel refuses (a threaded-only one) is left to the runtime.
            if let Err(source) = result
                && matches!(controller, "cpu" | "memory")
            {
                return Err(CgroupError::Write {
                    cgroup: cgroup.to_string(),
                    file: "cgroup.subtree_control",
                    value: format!("+{controller}"),
                    path: dir.join("cgroup.subtree_control"),
                    source,
                });
            }
        }
        Ok(())
    }

    fn write(
        &self,
        cgroup: &str,
        hierarchy: &Path,
        file: &'static str,
        value: String,
    ) -> Result<(), CgroupError> {
        let path = in_hierarchy(hierarchy, cgroup).join(file);
        std::fs::write(&path, &value).map_err(|source| CgroupError::Write {
            cgroup: cgroup.to_string(),
            file,
            value,
            path,
            source,
        })
    }

    fn write_shares(&self, cgroup: &str, shares: u64) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V2 { root } => self.write(
                cgroup,
                root,
                "cpu.weight",
                shares_to_weight(shares).to_string(),
            ),
            Layout::V1 { cpu, .. } => self.write(cgroup, cpu, "cpu.shares", shares.to_string()),
        }
    }

    fn write_quota(&self, cgroup: &str, quota: Option<i64>) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V2 { root } => {
                let quota = quota.map_or_else(|| "max".to_string(), |q| q.to_string());
                self.write(cgroup, root, "cpu.max", format!("{quota} {CPU_PERIOD_US}"))
            }
            Layout::V1 { cpu, .. } => {
                self.write(cgroup, cpu, "cpu.cfs_period_us", CPU_PERIOD_US.to_string())?;
                self.write(
                    cgroup,
                    cpu,
                    "cpu.cfs_quota_us",
                    quota.unwrap_or(-1).to_string(),
                )
            }
        }
    }

    fn write_memory(&self, cgroup: &str, bytes: Option<i64>) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V2 { root } => {
                let value = bytes.map_or_else(|| "max".to_string(), |b| b.to_string());
                self.write(cgroup, root, "memory.max", value)
            }
            Layout::V1 { memory, .. } => self.write(
                cgroup,
                memory,
                "memory.limit_in_bytes",
                bytes.unwrap_or(-1).to_string(),
            ),
        }
    }

    /// The pod cgroups present on the node, in any hierarchy.
    pub fn pod_cgroups(&self) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for parent in [Qos::Guaranteed, Qos::Burstable, Qos::BestEffort].map(Qos::cgroup) {
            for dir in self.dirs(&parent) {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else {
                        continue;
                    };
                    if name.starts_with(POD_PREFIX) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                        found.insert(format!("{parent}/{name}"));
                    }
                }
            }
        }
        found
    }

    /// Removes `cgroup` and whatever the runtime left below it, in every hierarchy.
    /// A cgroup that still holds processes is left whole: `Busy` names them.
    pub fn remove(&self, cgroup: &str) -> Result<(), CgroupError> {
        let mut trees = Vec::new();
        for dir in self.dirs(cgroup) {
            if !dir.is_dir() {
                continue;
            }
            let mut tree = Vec::new();
            tree_bottom_up(&dir, &mut tree)?;
            trees.push(tree);
        }
        let mut pids = Vec::new();
        for dir in trees.iter().flatten() {
            pids.extend(pids_in(dir)?);
        }
        if !pids.is_empty() {
            pids.sort_unstable();
            pids.dedup();
            return Err(CgroupError::Busy {
                cgroup: cgroup.to_string(),
                pids,
            });
        }
        for dir in trees.iter().flatten() {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(CgroupError::Remove {
                        cgroup: cgroup.to_string(),
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

/// SIGKILLs processes left in a pod cgroup whose pod is gone, as upstream's cleanup
/// of orphaned pod cgroups does before it removes them.
pub fn kill(pids: &[i32]) {
    for &pid in pids {
        // One that exited meanwhile (ESRCH) is what was wanted.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
    use std::collections::BTreeMap;

    const MI: i64 = 1024 * 1024;

    fn list(kv: &[(&str, &str)]) -> Option<BTreeMap<String, K8sQuantity>> {
        (!kv.is_empty()).then(|| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), K8sQuantity(v.to_string())))
                .collect()
        })
    }

    fn container(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: list(limits),
                requests: list(requests),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    fn sidecar(limits: &[(&str, &str)]) -> Container {
        Container {
            restart_policy: Some("Always".into()),
            ..container(limits, &[])
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: (!init.is_empty()).then_some(init),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn limits_of_pod(p: &Pod) -> Limits {
        pod_limits(p, Qos::of(p))
    }

    #[test]
    fn pod_cgroups_are_named_as_upstream_names_them_with_cgroupfs() {
        assert_eq!(pod_cgroup(Qos::Guaranteed, "u-1"), "/kubepods/podu-1");
        assert_eq!(
            pod_cgroup(Qos::Burstable, "u-1"),
            "/kubepods/burstable/podu-1"
        );
        assert_eq!(
            pod_cgroup(Qos::BestEffort, "u-1"),
            "/kubepods/besteffort/podu-1"
        );
        assert_eq!(pod_uid("/kubepods/besteffort/podu-1"), Some("u-1"));
        assert_eq!(pod_uid("/kubepods/burstable"), None);
        assert_eq!(pod_uid("/kubepods/pod"), None);
    }

    #[test]
    fn the_class_is_the_status_one_else_computed_with_init_containers() {
        let limited = [("cpu", "1"), ("memory", "1Gi")];
        let mut p = pod(vec![container(&limited, &[])], vec![]);
        assert_eq!(Qos::of(&p), Qos::Guaranteed);
        // An init container without limits makes the pod Burstable, as upstream's.
        p.spec.as_mut().unwrap().init_containers = Some(vec![container(&[], &[])]);
        assert_eq!(Qos::of(&p), Qos::Burstable);
        // The API server's word, set at creation, wins.
        p.status = Some(PodStatus {
            qos_class: Some("BestEffort".into()),
            ..PodStatus::default()
        });
        assert_eq!(Qos::of(&p), Qos::BestEffort);
    }

    #[test]
    fn guaranteed_pods_get_the_sums_of_their_limits() {
        let p = pod(
            vec![
                container(&[("cpu", "100m"), ("memory", "64Mi")], &[]),
                container(&[("cpu", "200m"), ("memory", "32Mi")], &[]),
            ],
            vec![],
        );
        assert_eq!(Qos::of(&p), Qos::Guaranteed);
        assert_eq!(
            limits_of_pod(&p),
            Limits {
                cpu_shares: 307,
                cpu_quota: Some(30_000),
                memory_bytes: Some(96 * MI),
            }
        );
    }

    #[test]
    fn a_burstable_pod_is_limited_only_where_every_container_is() {
        // Both limit memory, one leaves CPU unlimited: no quota, a memory limit.
        let p = pod(
            vec![
                container(&[("cpu", "100m"), ("memory", "64Mi")], &[("cpu", "50m")]),
                container(&[("memory", "32Mi")], &[("cpu", "250m")]),
            ],
            vec![],
        );
        assert_eq!(Qos::of(&p), Qos::Burstable);
        assert_eq!(
            limits_of_pod(&p),
            Limits {
                cpu_shares: 307,
                cpu_quota: None,
                memory_bytes: Some(96 * MI),
            }
        );
        // Requests only: the weight, nothing else.
        let p = pod(
            vec![container(&[], &[("cpu", "500m"), ("memory", "1Gi")])],
            vec![],
        );
        assert_eq!(
            limits_of_pod(&p),
            Limits {
                cpu_shares: 512,
                cpu_quota: None,
                memory_bytes: None,
            }
        );
    }

    #[test]
    fn best_effort_pods_get_the_minimal_weight() {
        let p = pod(vec![container(&[], &[]), container(&[], &[])], vec![]);
        assert_eq!(Qos::of(&p), Qos::BestEffort);
        assert_eq!(
            limits_of_pod(&p),
            Limits {
                cpu_shares: MIN_SHARES,
                cpu_quota: None,
                memory_bytes: None,
            }
        );
    }

    #[test]
    fn init_containers_count_as_upstream_counts_them() {
        // A big init container: the pod needs its amount, more than the app's.
        let app = || container(&[("cpu", "100m"), ("memory", "64Mi")], &[]);
        let p = pod(
            vec![app()],
            vec![container(&[("cpu", "500m"), ("memory", "256Mi")], &[])],
        );
        assert_eq!(
            limits_of_pod(&p),
            Limits {
                cpu_shares: 512,
                cpu_quota: Some(50_000),
                memory_bytes: Some(256 * MI),
            }
        );
        // A sidecar adds to the app containers and to the init containers after it:
        // app + sidecar = 200m/96Mi, the init container beside the sidecar 300m/96Mi.
        let p = pod(
            vec![app()],
            vec![
                sidecar(&[("cpu", "100m"), ("memory", "32Mi")]),
                container(&[("cpu", "200m"), ("memory", "64Mi")], &[]),
            ],
        );
        assert_eq!(
            limits_of_pod(&p),
            Limits {
                cpu_shares: 307,
                cpu_quota: Some(30_000),
                memory_bytes: Some(96 * MI),
            }
        );
        // An init container without a memory limit leaves the pod without one.
        let p = pod(vec![app()], vec![container(&[("cpu", "100m")], &[])]);
        assert_eq!(Qos::of(&p), Qos::Burstable);
        let limits = limits_of_pod(&p);
        assert_eq!(
            (limits.cpu_quota, limits.memory_bytes),
            (Some(10_000), None)
        );
    }

    #[test]
    fn cpu_conversions_follow_upstream_and_runc() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(1_000_000), MAX_SHARES);
        assert_eq!(milli_cpu_to_quota(1), MIN_QUOTA_US);
        assert_eq!(milli_cpu_to_quota(250), 25_000);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(MAX_SHARES), 10_000);
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    fn touch(path: PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn cgroup_v2_files_get_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        );
        touch(
            root.join("kubepods/cgroup.controllers"),
            "cpu memory pids\n",
        );
        let cgroups = Cgroups::detect(root).unwrap();
        assert_eq!(cgroups.version(), "cgroup v2");
        cgroups.ensure_node(2000, 4096 * MI).unwrap();
        assert_eq!(read(root.join("kubepods/cpu.weight")), "79");
        assert_eq!(
            read(root.join("kubepods/memory.max")),
            (4096 * MI).to_string()
        );
        assert_eq!(read(root.join("kubepods/cpu.max")), "max 100000");
        // The pods' cgroups get cpu and memory from their parents.
        assert_eq!(read(root.join("kubepods/cgroup.subtree_control")), "+pids");
        assert_eq!(read(root.join("kubepods/besteffort/cpu.weight")), "1");
        cgroups.set_burstable_requests(1500).unwrap();
        assert_eq!(read(root.join("kubepods/burstable/cpu.weight")), "59");

        let limited = Limits {
            cpu_shares: 307,
            cpu_quota: Some(30_000),
            memory_bytes: Some(96 * MI),
        };
        cgroups.ensure("/kubepods/poda", &limited).unwrap();
        let pod_dir = root.join("kubepods/poda");
        assert_eq!(read(pod_dir.join("cpu.max")), "30000 100000");
        assert_eq!(read(pod_dir.join("memory.max")), "100663296");
        assert_eq!(read(pod_dir.join("cpu.weight")), "12");
        let unlimited = Limits {
            cpu_shares: 2,
            cpu_quota: None,
            memory_bytes: None,
        };
        cgroups
            .ensure("/kubepods/besteffort/podb", &unlimited)
            .unwrap();
        let pod_dir = root.join("kubepods/besteffort/podb");
        assert_eq!(read(pod_dir.join("cpu.max")), "max 100000");
        assert_eq!(read(pod_dir.join("memory.max")), "max");
    }

    /// A cgroup v1 root as a node mounts it: one hierarchy per controller group,
    /// combined ones linked under each controller's name.
    fn v1_root(root: &Path, hierarchies: &[&str]) {
        for h in hierarchies {
            touch(root.join(h).join("cgroup.procs"), "");
        }
        std::os::unix::fs::symlink(root.join("cpu,cpuacct"), root.join("cpu")).unwrap();
    }

    #[test]
    fn cgroup_v1_files_get_the_limits_in_their_hierarchies() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        v1_root(root, &["cpu,cpuacct", "memory", "pids", "systemd"]);
        let cgroups = Cgroups::detect(root).unwrap();
        assert_eq!(cgroups.version(), "cgroup v1");
        let limited = Limits {
            cpu_shares: 307,
            cpu_quota: Some(30_000),
            memory_bytes: Some(96 * MI),
        };
        assert!(!cgroups.exists("/kubepods/poda"));
        cgroups.ensure("/kubepods/poda", &limited).unwrap();
        assert!(cgroups.exists("/kubepods/poda"));
        let cpu = root.join("cpu,cpuacct/kubepods/poda");
        assert_eq!(read(cpu.join("cpu.shares")), "307");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "30000");
        let memory = root.join("memory/kubepods/poda/memory.limit_in_bytes");
        assert_eq!(read(memory), "100663296");
        // The runtime creates the rest.
        assert!(!root.join("pids/kubepods").exists());
        let unlimited = Limits {
            cpu_shares: 2,
            cpu_quota: None,
            memory_bytes: None,
        };
        cgroups.ensure("/kubepods/poda", &unlimited).unwrap();
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "-1");
    }

    #[test]
    fn a_hierarchy_without_cpu_or_memory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        v1_root(dir.path(), &["cpu,cpuacct", "pids"]);
        let err = Cgroups::detect(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::NoController {
                    controller: "memory",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_failed_write_names_the_cgroup_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(root.join("cgroup.controllers"), "");
        // A file where the cgroup's directory should be.
        touch(root.join("kubepods/burstable/podx"), "");
        let err = Cgroups::detect(root)
            .unwrap()
            .ensure(
                "/kubepods/burstable/podx",
                &Limits {
                    cpu_shares: 2,
                    cpu_quota: None,
                    memory_bytes: None,
                },
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("cgroup /kubepods/burstable/podx"),
            "{err}"
        );
    }

    #[test]
    fn pod_cgroups_are_found_and_removed_in_every_hierarchy() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        v1_root(root, &["cpu,cpuacct", "memory", "pids"]);
        let cgroups = Cgroups::detect(root).unwrap();
        // As runc leaves them: the pod's path in every hierarchy, a container's
        // cgroup below it in one.
        for h in ["cpu,cpuacct", "memory", "pids"] {
            std::fs::create_dir_all(root.join(h).join("kubepods/burstable/poda")).unwrap();
        }
        std::fs::create_dir_all(root.join("pids/kubepods/burstable/poda/ctr")).unwrap();
        std::fs::create_dir_all(root.join("memory/kubepods/besteffort/podb")).unwrap();
        std::fs::create_dir_all(root.join("memory/kubepods/podc")).unwrap();
        let found: Vec<String> = cgroups.pod_cgroups().into_iter().collect();
        assert_eq!(
            found,
            [
                "/kubepods/besteffort/podb",
                "/kubepods/burstable/poda",
                "/kubepods/podc"
            ]
        );

        cgroups.remove("/kubepods/burstable/poda").unwrap();
        for h in ["cpu,cpuacct", "memory", "pids"] {
            assert!(
                !root.join(h).join("kubepods/burstable/poda").exists(),
                "{h}"
            );
            assert!(root.join(h).join("kubepods/burstable").exists(), "{h}");
        }
        // Removing what is not there is done already.
        cgroups.remove("/kubepods/burstable/poda").unwrap();
    }

    #[test]
    fn a_pod_cgroup_with_processes_stays() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        v1_root(root, &["cpu,cpuacct", "memory"]);
        let cgroups = Cgroups::detect(root).unwrap();
        touch(
            root.join("memory/kubepods/poda/ctr/cgroup.procs"),
            "42\n7\n",
        );
        std::fs::create_dir_all(root.join("cpu,cpuacct/kubepods/poda")).unwrap();
        match cgroups.remove("/kubepods/poda") {
            Err(CgroupError::Busy { cgroup, pids }) => {
                assert_eq!((cgroup.as_str(), pids), ("/kubepods/poda", vec![7, 42]));
            }
            other => panic!("{other:?}"),
        }
        assert!(root.join("cpu,cpuacct/kubepods/poda").exists());
    }
}
