//! Resource amounts as the scheduler counts them: a pod's effective request (containers
//! summed, init containers by the max rule, sidecars added, overhead on top) and a
//! node's allocatable. CPU is kept in millicores and everything else in whole units, so
//! comparisons are exact integer arithmetic like upstream's `resource.Quantity`.

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// What a container without a CPU request counts as when scoring (upstream: 100m).
pub const DEFAULT_MILLI_CPU: i64 = 100;
/// What a container without a memory request counts as when scoring (upstream: 200Mi).
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Only meaningful for allocatable: how many pods the node takes.
    pub pods: i64,
    /// Extended resources (`example.com/gpu`, `hugepages-2Mi`, ...).
    pub scalar: BTreeMap<String, i64>,
}

/// A quantity in the unit this resource is counted in, rounded up as upstream's (a
/// request of 0.5m CPU is 1m); unparseable text counts as 0 (the API server validates
/// quantities, so this only guards against surprises).
fn amount(name: &str, q: &Quantity) -> i64 {
    let Some(quantity) = rind_api::quantity::Quantity::parse(&q.0) else {
        return 0;
    };
    if name == "cpu" {
        quantity.milli_value()
    } else {
        quantity.value()
    }
}

impl Resources {
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let v = amount(name, q);
            match name.as_str() {
                "cpu" => r.milli_cpu = v,
                "memory" => r.memory = v,
                "ephemeral-storage" => r.ephemeral_storage = v,
                "pods" => r.pods = v,
                _ => {
                    r.scalar.insert(name.clone(), v);
                }
            }
        }
        r
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            let entry = self.scalar.entry(k.clone()).or_default();
            *entry -= v;
            if *entry == 0 {
                self.scalar.remove(k);
            }
        }
    }

    /// Each amount becomes the larger of the two.
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let entry = self.scalar.entry(k.clone()).or_default();
            *entry = (*entry).max(*v);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let mut r = Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
    if non_zero {
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        if !requests.is_some_and(|l| l.contains_key("cpu")) {
            r.milli_cpu = DEFAULT_MILLI_CPU;
        }
        if !requests.is_some_and(|l| l.contains_key("memory")) {
            r.memory = DEFAULT_MEMORY;
        }
    }
    r
}

/// The pod's effective request. `non_zero` substitutes the scoring defaults for
/// containers that request no CPU or memory, so empty pods still spread by load.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c, non_zero));
    }
    // Init containers run one after another before the app containers: the pod needs
    // the largest of them. Sidecars (restartPolicy Always) keep running, so they add to
    // the app containers and to every init container started after them.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c, non_zero);
        let during = if c.restart_policy.as_deref() == Some("Always") {
            total.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            let mut during = own;
            during.add(&sidecars);
            during
        };
        init_peak.max_with(&during);
    }
    total.max_with(&init_peak);
    // RuntimeClass overhead (the sandbox's own cost) comes on top of everything.
    total.add(&Resources::from_list(spec.overhead.as_ref()));
    total
}

/// What the node offers pods: status.allocatable, or capacity when no allocatable is set.
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let list = status
        .and_then(|s| s.allocatable.as_ref())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    Resources::from_list(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    pub fn container(cpu: &str, mem: &str) -> Container {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if !mem.is_empty() {
            requests.insert("memory".to_string(), Quantity(mem.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    #[test]
    fn containers_add_init_containers_take_the_max() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container("100m", "1Gi"), container("200m", "")],
                init_containers: Some(vec![container("1", "100Mi"), container("", "2Gi")]),
                overhead: Some(BTreeMap::from([(
                    "cpu".to_string(),
                    Quantity("10m".into()),
                )])),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let r = pod_requests(&pod, false);
        assert_eq!(r.milli_cpu, 1010);
        assert_eq!(r.memory, 2 * 1024 * 1024 * 1024);
        // Scoring counts the second container's missing memory as 200Mi.
        let nz = pod_requests(&pod, true);
        assert_eq!(nz.memory, 2 * 1024 * 1024 * 1024);
        assert_eq!(nz.milli_cpu, 1010);
    }

    #[test]
    fn sidecars_add_to_app_and_later_init_containers() {
        let mut sidecar = container("500m", "");
        sidecar.restart_policy = Some("Always".into());
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container("100m", "")],
                init_containers: Some(vec![sidecar, container("800m", "")]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        // App phase: 100m + 500m sidecar = 600m; second init: 800m + 500m = 1300m.
        assert_eq!(pod_requests(&pod, false).milli_cpu, 1300);
    }

    #[test]
    fn extended_resources_and_units() {
        let list = BTreeMap::from([
            ("cpu".to_string(), Quantity("1.5".into())),
            ("memory".to_string(), Quantity("1M".into())),
            ("example.com/gpu".to_string(), Quantity("2".into())),
            ("pods".to_string(), Quantity("110".into())),
        ]);
        let r = Resources::from_list(Some(&list));
        assert_eq!(r.milli_cpu, 1500);
        assert_eq!(r.memory, 1_000_000);
        assert_eq!(r.pods, 110);
        assert_eq!(r.scalar.get("example.com/gpu"), Some(&2));
    }
}
