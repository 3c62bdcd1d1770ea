//! NetworkPolicy, compiled to nftables chains for the pods on this node (decide: pure,
//! unit-tested; the agent renders and applies the result in one transaction).
//!
//! Each node enforces the policies of its own pods: ingress where the destination pod
//! runs, egress where the source pod runs. Both directions pass the node's `forward`
//! hook (pod-to-pod on one node crosses the bridge, which br_netfilter hands to the IP
//! hooks; across nodes the packet is routed). A pod that some policy selects for a
//! direction is isolated in it: its traffic must match a rule of one of those policies,
//! else it is dropped; replies of allowed connections pass by conntrack state.
//!
//! The rules match IPv4 addresses. In a dual-stack cluster a pod also has an IPv6
//! address, which no rule is written for: a pod isolated in a direction has all its
//! IPv6 traffic in that direction dropped (`Compiled::ipv6_drops`), so a policy never
//! lets through over IPv6 what it would refuse over IPv4.
//!
//! Traffic between a pod and its own node (the kubelet's probes, host-network pods, the
//! node's own address) goes through the node's input and output hooks, not forward, so
//! policies never block it: upstream leaves node traffic to the implementation and
//! requires that the kubelet's probes keep working. Host-network pods are neither
//! selected by policies nor matched as peers (their address is the node's).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rind_api::object_selector::{Labels, label_selector_matches};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The label every namespace carries with its own name (upstream sets it on every
/// namespace; added here when absent so selectors on it always work).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// What policies need to know of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address in a dual-stack cluster.
    pub ipv6: Option<Ipv6Addr>,
    /// Runs on this node (its policies are enforced here).
    pub local: bool,
    /// Named container ports: (name, protocol, number).
    pub ports: Vec<(String, String, i32)>,
}

/// A pod with an IP of its own (not host network), not finished; None otherwise.
pub fn pod_view(pod: &Pod, node_name: &str) -> Option<PodView> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let ip: Ipv4Addr = status.pod_ip.as_deref()?.parse().ok()?;
    let ipv6 = status
        .pod_ips
        .iter()
        .flatten()
        .find_map(|p| p.ip.parse::<Ipv6Addr>().ok());
    let ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some((
                p.name.clone()?,
                p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                p.container_port,
            ))
        })
        .collect();
    Some(PodView {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ip,
        ipv6,
        local: spec.node_name.as_deref() == Some(node_name),
        ports,
    })
}

/// Namespace labels by name, each with its `kubernetes.io/metadata.name`.
pub fn namespace_labels(
    namespaces: impl IntoIterator<Item = (String, Labels)>,
) -> BTreeMap<String, Labels> {
    namespaces
        .into_iter()
        .map(|(name, mut labels)| {
            labels
                .entry(NAMESPACE_NAME_LABEL.to_string())
                .or_insert_with(|| name.clone());
            (name, labels)
        })
        .collect()
}

/// The chains that enforce policies on this node: `jumps` go into the forward chain
/// (after the conntrack rule), `chains` are the per-pod chains they jump to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    pub jumps: Vec<String>,
    pub chains: Vec<(String, Vec<String>)>,
    /// For the IPv6 table's forward chain: a drop of every IPv6 packet to (ingress)
    /// or from (egress) a pod isolated in that direction.
    pub ipv6_drops: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// The address of the other end: the source for ingress, the destination for egress.
    fn peer_field(self) -> &'static str {
        match self {
            Direction::Ingress => "ip saddr",
            Direction::Egress => "ip daddr",
        }
    }
    /// What an allowed packet does: ingress is the last check; egress returns so the
    /// destination's ingress check (same node) still runs.
    fn allow(self) -> &'static str {
        match self {
            Direction::Ingress => "accept",
            Direction::Egress => "return",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

/// The directions a policy isolates its pods in: `policyTypes`, or by default Ingress
/// and, when it has egress rules, Egress (upstream's defaulting).
fn policy_types(policy: &NetworkPolicy) -> BTreeSet<String> {
    let spec = policy.spec.as_ref();
    match spec.and_then(|s| s.policy_types.clone()) {
        Some(types) if !types.is_empty() => types.into_iter().collect(),
        _ => {
            let mut types = BTreeSet::from(["Ingress".to_string()]);
            if spec.and_then(|s| s.egress.as_ref()).is_some() {
                types.insert("Egress".to_string());
            }
            types
        }
    }
}

/// An IPv4 CIDR as (network, prefix); None for anything else (IPv6 blocks do not apply
/// to this IPv4 table).
fn parse_cidr(text: &str) -> Option<(u32, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    if prefix > 32 {
        return None;
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Some((u32::from(addr) & mask, prefix))
}

fn cidr_contains((net, prefix): (u32, u8), ip: Ipv4Addr) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == net
}

fn cidr_text((net, prefix): (u32, u8)) -> String {
    format!("{}/{prefix}", Ipv4Addr::from(net))
}

/// The other end of a rule, resolved.
enum Peer<'a> {
    Any,
    Block {
        cidr: (u32, u8),
        except: Vec<(u32, u8)>,
    },
    Pods(Vec<&'a PodView>),
}

/// One `ports` entry: a protocol and a port (number, range or name) or none.
enum PortSpec {
    Any,
    Protocol(String),
    Number(String, i32, Option<i32>),
    Named(String, String),
}

fn port_specs(ports: Option<&Vec<NetworkPolicyPort>>) -> Vec<PortSpec> {
    match ports {
        None => vec![PortSpec::Any],
        Some(list) if list.is_empty() => vec![PortSpec::Any],
        Some(list) => list
            .iter()
            .map(|p| {
                let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".to_string());
                match &p.port {
                    None => PortSpec::Protocol(protocol),
                    Some(IntOrString::Int(n)) => PortSpec::Number(protocol, *n, p.end_port),
                    Some(IntOrString::String(name)) => PortSpec::Named(protocol, name.clone()),
                }
            })
            .collect(),
    }
}

/// nftables' name for a Kubernetes protocol; None for one nftables does not match.
fn nft_protocol(protocol: &str) -> Option<&'static str> {
    match protocol {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

fn port_match(protocol: &str, port: i32, end: Option<i32>) -> Option<String> {
    let proto = nft_protocol(protocol)?;
    let valid = |p: i32| (1..=65535).contains(&p);
    if !valid(port) {
        return None;
    }
    Some(match end {
        Some(end) if valid(end) && end > port => format!("{proto} dport {port}-{end}"),
        _ => format!("{proto} dport {port}"),
    })
}

fn named_port(pod: &PodView, protocol: &str, name: &str) -> Option<i32> {
    pod.ports
        .iter()
        .find(|(n, p, _)| n == name && p == protocol)
        .map(|(_, _, port)| *port)
}

fn ip_set<'a>(ips: impl IntoIterator<Item = &'a Ipv4Addr>) -> String {
    let list: BTreeSet<&Ipv4Addr> = ips.into_iter().collect();
    let items: Vec<String> = list.iter().map(|ip| ip.to_string()).collect();
    format!("{{ {} }}", items.join(", "))
}

struct Cluster<'a> {
    pods: &'a [PodView],
    namespaces: &'a BTreeMap<String, Labels>,
}

impl<'a> Cluster<'a> {
    fn peers(&self, policy_ns: &str, peers: Option<&Vec<NetworkPolicyPeer>>) -> Vec<Peer<'a>> {
        let Some(peers) = peers.filter(|p| !p.is_empty()) else {
            return vec![Peer::Any];
        };
        peers
            .iter()
            .filter_map(|peer| {
                if let Some(block) = &peer.ip_block {
                    let cidr = parse_cidr(&block.cidr)?;
                    let except = block
                        .except
                        .iter()
                        .flatten()
                        .filter_map(|e| parse_cidr(e))
                        .collect();
                    return Some(Peer::Block { cidr, except });
                }
                let in_namespace = |ns: &str| match &peer.namespace_selector {
                    Some(sel) => label_selector_matches(sel, self.namespaces.get(ns)),
                    None => ns == policy_ns,
                };
                let pods = self
                    .pods
                    .iter()
                    .filter(|p| in_namespace(&p.namespace))
                    .filter(|p| {
                        peer.pod_selector
                            .as_ref()
                            .is_none_or(|sel| label_selector_matches(sel, Some(&p.labels)))
                    })
                    .collect();
                Some(Peer::Pods(pods))
            })
            .collect()
    }

    /// The nft lines of one rule (peers × ports) for `target`.
    fn rule_lines(
        &self,
        direction: Direction,
        target: &PodView,
        peers: &[Peer<'_>],
        ports: &[PortSpec],
    ) -> Vec<String> {
        let field = direction.peer_field();
        let allow = direction.allow();
        let mut lines = Vec::new();
        for peer in peers {
            for port in ports {
                // The port to match, given the pod a named port is looked up on.
                let resolve = |pod: &PodView| -> Option<Option<String>> {
                    match port {
                        PortSpec::Any => Some(None),
                        PortSpec::Protocol(p) => {
                            Some(Some(format!("meta l4proto {}", nft_protocol(p)?)))
                        }
                        PortSpec::Number(p, n, end) => Some(Some(port_match(p, *n, *end)?)),
                        PortSpec::Named(p, name) => {
                            Some(Some(port_match(p, named_port(pod, p, name)?, None)?))
                        }
                    }
                };
                let named = matches!(port, PortSpec::Named(..));
                let address = match peer {
                    Peer::Any => None,
                    Peer::Block { cidr, except } => {
                        let mut m = format!("{field} {}", cidr_text(*cidr));
                        if !except.is_empty() {
                            let set: Vec<String> = except.iter().map(|e| cidr_text(*e)).collect();
                            m.push_str(&format!(" {field} != {{ {} }}", set.join(", ")));
                        }
                        Some(m)
                    }
                    Peer::Pods(pods) if pods.is_empty() => continue,
                    Peer::Pods(pods) => {
                        Some(format!("{field} {}", ip_set(pods.iter().map(|p| &p.ip))))
                    }
                };
                if direction == Direction::Egress && named {
                    // A named port is the destination pod's: resolve it on each pod the
                    // peer covers, and match each port with the pods that have it.
                    let candidates: Vec<&PodView> = match peer {
                        Peer::Any => self.pods.iter().collect(),
                        Peer::Block { cidr, except } => self
                            .pods
                            .iter()
                            .filter(|p| cidr_contains(*cidr, p.ip))
                            .filter(|p| !except.iter().any(|e| cidr_contains(*e, p.ip)))
                            .collect(),
                        Peer::Pods(pods) => pods.clone(),
                    };
                    let mut by_port: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
                    for pod in candidates {
                        if let Some(Some(m)) = resolve(pod) {
                            by_port.entry(m).or_default().push(pod.ip);
                        }
                    }
                    for (m, ips) in by_port {
                        lines.push(format!("{field} {} {m} {allow}", ip_set(&ips)));
                    }
                    continue;
                }
                let Some(port_match) = resolve(target) else {
                    continue;
                };
                let parts: Vec<String> = address.into_iter().chain(port_match).collect();
                lines.push(if parts.is_empty() {
                    allow.to_string()
                } else {
                    format!("{} {allow}", parts.join(" "))
                });
            }
        }
        lines
    }
}

/// Compiles every policy for the local pods.
pub fn compile(
    policies: &[NetworkPolicy],
    pods: &[PodView],
    namespaces: &BTreeMap<String, Labels>,
) -> Compiled {
    let cluster = Cluster { pods, namespaces };
    let mut policies: Vec<&NetworkPolicy> = policies.iter().collect();
    policies.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    let mut local: Vec<&PodView> = pods.iter().filter(|p| p.local).collect();
    local.sort_by_key(|p| (&p.namespace, &p.name));
    let mut out = Compiled::default();
    let mut ingress_jumps = Vec::new();
    for direction in [Direction::Egress, Direction::Ingress] {
        for (index, pod) in local.iter().enumerate() {
            let selecting: Vec<&&NetworkPolicy> = policies
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(pod.namespace.as_str()))
                .filter(|p| policy_types(p).contains(direction.name()))
                .filter(|p| {
                    p.spec
                        .as_ref()
                        // An absent podSelector is the empty one: every pod of the namespace.
                        .is_some_and(|s| {
                            s.pod_selector
                                .as_ref()
                                .is_none_or(|sel| label_selector_matches(sel, Some(&pod.labels)))
                        })
                })
                .collect();
            if selecting.is_empty() {
                continue;
            }
            let mut lines = Vec::new();
            for policy in selecting {
                let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
                let Some(spec) = policy.spec.as_ref() else {
                    continue;
                };
                match direction {
                    Direction::Ingress => {
                        for rule in spec.ingress.iter().flatten() {
                            let peers = cluster.peers(ns, rule.from.as_ref());
                            let ports = port_specs(rule.ports.as_ref());
                            lines.extend(cluster.rule_lines(direction, pod, &peers, &ports));
                        }
                    }
                    Direction::Egress => {
                        for rule in spec.egress.iter().flatten() {
                            let peers = cluster.peers(ns, rule.to.as_ref());
                            let ports = port_specs(rule.ports.as_ref());
                            lines.extend(cluster.rule_lines(direction, pod, &peers, &ports));
                        }
                    }
                }
            }
            // Not matched by any rule: the pod is isolated in this direction.
            lines.push("drop".to_string());
            let (chain, jump) = match direction {
                Direction::Ingress => (format!("ingress-{index}"), "ip daddr"),
                Direction::Egress => (format!("egress-{index}"), "ip saddr"),
            };
            let line = format!(
                "{jump} {} jump {chain} comment \"{}/{}\"",
                pod.ip, pod.namespace, pod.name
            );
            if let Some(ipv6) = pod.ipv6 {
                let field = match direction {
                    Direction::Ingress => "ip6 daddr",
                    Direction::Egress => "ip6 saddr",
                };
                out.ipv6_drops.push(format!(
                    "{field} {ipv6} drop comment \"{}/{}\"",
                    pod.namespace, pod.name
                ));
            }
            match direction {
                Direction::Ingress => ingress_jumps.push(line),
                Direction::Egress => out.jumps.push(line),
            }
            out.chains.push((chain, lines));
        }
    }
    // Egress checks first: an allowed packet returns and meets its destination's
    // ingress check when that pod runs here too.
    out.jumps.extend(ingress_jumps);
    out
}

#[cfg(test)]
mod tests;
