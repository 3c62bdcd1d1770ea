//! The scheduler's picture of the cluster: one `NodeInfo` per node with everything the
//! filters and scores need precomputed (allocatable, summed requests, host ports, the
//! pods on it), updated incrementally from watch events and from our own decisions.
//! A pod we decided on but whose binding the watch has not shown yet is "assumed": it
//! already counts on its node, so the next decision does not wait for the API.

use super::resources::{self, Resources};
use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, Taint, WeightedPodAffinityTerm};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// A host port a pod asks for: (host IP, protocol, port).
pub type HostPort = (String, String, i32);

/// An assigned or assumed pod, with the parts the filters read precomputed.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub requests: Resources,
    pub non_zero: Resources,
    pub ports: Vec<HostPort>,
    pub required_affinity: Vec<PodAffinityTerm>,
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    pub preferred_affinity: Vec<WeightedPodAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedPodAffinityTerm>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let spec = pod.spec.as_ref();
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let aff = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let ports = spec
            .into_iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let host_port = p.host_port.filter(|hp| *hp > 0)?;
                Some((
                    p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    host_port,
                ))
            })
            .collect();
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            requests: resources::pod_requests(&pod, false),
            non_zero: resources::pod_requests(&pod, true),
            ports,
            required_affinity: aff
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            required_anti_affinity: anti
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            preferred_affinity: aff
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            preferred_anti_affinity: anti
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            pod,
        }
    }

    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }
}

/// One node and what is already placed on it.
#[derive(Debug)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    pub allocatable: Resources,
    /// Sum of the effective requests of the pods on the node.
    pub requested: Resources,
    /// The same with the scoring defaults for pods without requests.
    pub non_zero_requested: Resources,
    pub pods: HashMap<String, Arc<PodInfo>>,
    /// Host ports in use, with how many pods use each.
    pub used_ports: HashMap<HostPort, usize>,
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> Self {
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            node: node.clone(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            unschedulable: false,
            ready: false,
            allocatable: Resources::default(),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: HashMap::new(),
            used_ports: HashMap::new(),
        };
        info.set_node(node);
        info
    }

    /// Replaces the Node object, keeping the pods; returns whether anything the
    /// filters look at changed (a status heartbeat alone does not).
    pub fn set_node(&mut self, node: Arc<Node>) -> bool {
        let spec = node.spec.as_ref();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let ready = node_ready(&node);
        let allocatable = resources::node_allocatable(&node);
        let changed = labels != self.labels
            || taints != self.taints
            || unschedulable != self.unschedulable
            || ready != self.ready
            || allocatable != self.allocatable;
        self.labels = labels;
        self.taints = taints;
        self.unschedulable = unschedulable;
        self.ready = ready;
        self.allocatable = allocatable;
        self.node = node;
        changed
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        if let Some(old) = self.pods.remove(&pod.uid) {
            self.forget(&old);
        }
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero);
        for port in &pod.ports {
            *self.used_ports.entry(port.clone()).or_default() += 1;
        }
        self.pods.insert(pod.uid.clone(), pod);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let old = self.pods.remove(uid)?;
        self.forget(&old);
        Some(old)
    }

    fn forget(&mut self, pod: &PodInfo) {
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero);
        for port in &pod.ports {
            if let Some(n) = self.used_ports.get_mut(port) {
                *n -= 1;
                if *n == 0 {
                    self.used_ports.remove(port);
                }
            }
        }
    }
}

/// Every node, and where every placed pod is.
#[derive(Default)]
pub struct Cache {
    pub nodes: HashMap<String, NodeInfo>,
    /// Node names in a fixed order, so sampling can resume where it stopped.
    pub order: Vec<String>,
    /// Placed pod uid → node name (pods may name a node we have no object for yet;
    /// they are kept aside in `orphans` until it appears).
    placed: HashMap<String, String>,
    orphans: HashMap<String, HashMap<String, Arc<PodInfo>>>,
    /// Pods we decided on whose binding the watch has not confirmed.
    pub assumed: HashSet<String>,
    /// Placed pods with any (anti-)affinity (uid → node): only these can constrain an
    /// incoming pod that has no affinity of its own, so only these are walked then.
    pub with_affinity: HashMap<String, String>,
    /// Namespace labels, for affinity terms with a namespaceSelector.
    pub namespace_labels: HashMap<String, BTreeMap<String, String>>,
}

impl Cache {
    /// Adds or updates a node; returns whether the change can make pods fit.
    pub fn set_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(info) = self.nodes.get_mut(&name) {
            return info.set_node(node);
        }
        let mut info = NodeInfo::new(node);
        for pod in self
            .orphans
            .remove(&name)
            .into_iter()
            .flat_map(|m| m.into_values())
        {
            info.add_pod(pod);
        }
        self.nodes.insert(name.clone(), info);
        self.order.push(name);
        true
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.remove(name) {
            // The pods stay placed (upstream keeps them until they are deleted too).
            if !info.pods.is_empty() {
                self.orphans.insert(name.to_string(), info.pods);
            }
            self.order.retain(|n| n != name);
        }
    }

    /// Places a pod on a node (from the watch, or assumed by us).
    pub fn place(&mut self, node: &str, pod: Arc<PodInfo>) {
        self.unplace(&pod.uid);
        if pod.has_affinity() {
            self.with_affinity.insert(pod.uid.clone(), node.to_string());
        }
        self.placed.insert(pod.uid.clone(), node.to_string());
        match self.nodes.get_mut(node) {
            Some(info) => info.add_pod(pod),
            None => {
                self.orphans
                    .entry(node.to_string())
                    .or_default()
                    .insert(pod.uid.clone(), pod);
            }
        }
    }

    /// Removes a pod from wherever it is placed; returns whether it was.
    pub fn unplace(&mut self, uid: &str) -> bool {
        self.assumed.remove(uid);
        let Some(node) = self.placed.remove(uid) else {
            return false;
        };
        match self.nodes.get_mut(&node) {
            Some(info) => {
                info.remove_pod(uid);
            }
            None => {
                self.orphans.get_mut(&node).and_then(|m| m.remove(uid));
            }
        }
        self.with_affinity.remove(uid);
        true
    }

    pub fn placed_on(&self, uid: &str) -> Option<&str> {
        self.placed.get(uid).map(String::as_str)
    }

    pub fn placed_uids(&self) -> impl Iterator<Item = &String> {
        self.placed.keys()
    }

    pub fn assume(&mut self, node: &str, pod: Arc<PodInfo>) {
        let uid = pod.uid.clone();
        self.place(node, pod);
        self.assumed.insert(uid);
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, NodeCondition, NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A Ready node with the given labels and allocatable cpu/memory/pods.
    pub fn node(name: &str, labels: &[(&str, &str)], cpu: &str, mem: &str) -> Node {
        let mut labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert("kubernetes.io/hostname".into(), name.into());
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity(cpu.into())),
                    ("memory".to_string(), Quantity(mem.into())),
                    ("pods".to_string(), Quantity("110".into())),
                ])),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    /// A pod with one container requesting cpu/memory ("" for none) and labels.
    pub fn pod(name: &str, labels: &[(&str, &str)], cpu: &str, mem: &str) -> Pod {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if !mem.is_empty() {
            requests.insert("memory".to_string(), Quantity(mem.into()));
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![k8s_openapi::api::core::v1::Container {
                    name: "c".into(),
                    resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                        requests: Some(requests),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    pub fn with_host_port(mut p: Pod, port: i32) -> Pod {
        if let Some(spec) = p.spec.as_mut() {
            spec.containers[0].ports = Some(vec![ContainerPort {
                container_port: port,
                host_port: Some(port),
                ..ContainerPort::default()
            }]);
        }
        p
    }

    #[test]
    fn placing_and_removing_keeps_sums_exact() {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node("a", &[], "2", "4Gi")));
        let p = Arc::new(PodInfo::new(Arc::new(with_host_port(
            pod("p", &[], "500m", "1Gi"),
            80,
        ))));
        cache.assume("a", p.clone());
        let info = &cache.nodes["a"];
        assert_eq!(info.requested.milli_cpu, 500);
        assert_eq!(info.used_ports.len(), 1);
        assert!(cache.assumed.contains("uid-p"));
        // The watch confirming the binding replaces the assumed copy, not adds to it.
        cache.assumed.remove("uid-p");
        cache.place("a", p);
        assert_eq!(cache.nodes["a"].requested.milli_cpu, 500);
        assert!(cache.unplace("uid-p"));
        let info = &cache.nodes["a"];
        assert_eq!(info.requested, Resources::default());
        assert!(info.used_ports.is_empty() && info.pods.is_empty());
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_the_node() {
        let mut cache = Cache::default();
        let p = Arc::new(PodInfo::new(Arc::new(pod("p", &[], "1", ""))));
        cache.place("later", p);
        cache.set_node(Arc::new(node("later", &[], "2", "1Gi")));
        assert_eq!(cache.nodes["later"].requested.milli_cpu, 1000);
        cache.remove_node("later");
        assert!(cache.order.is_empty());
        assert!(cache.unplace("uid-p"));
    }

    #[test]
    fn heartbeats_are_not_changes() {
        let mut cache = Cache::default();
        let n = node("a", &[], "2", "1Gi");
        assert!(cache.set_node(Arc::new(n.clone())));
        assert!(!cache.set_node(Arc::new(n.clone())));
        let mut cordoned = n;
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        assert!(cache.set_node(Arc::new(cordoned)));
    }
}
