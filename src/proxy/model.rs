//! What the proxy programs, read from Services and EndpointSlices: one entry per
//! Service port with the endpoints that serve it, chosen as upstream's kube-proxy
//! chooses them (ready endpoints; serving-but-terminating ones only when none is
//! ready; node-local ones for the `Local` traffic policies).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Label linking an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

/// The address family one data plane serves. A dual-stack node runs one of each, as
/// upstream's kube-proxy runs a proxier per family: IPv4 rules in `ip` tables and
/// iptables, IPv6 rules in `ip6` tables and ip6tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// EndpointSlices' `addressType` and Services' `ipFamilies` value.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// nftables' table family and address match keyword (`ip saddr`, `ip6 saddr`).
    pub fn nft(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// nftables' address type in set and map declarations.
    pub fn nft_addr(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    /// A single address as a prefix length (`/32`, `/128`).
    pub fn host_bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The loopback range, where node ports are not offered.
    pub fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }

    /// The iptables program of the family (`iptables`, `ip6tables`), to which
    /// `-save` and `-restore` are appended for the others.
    pub fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// The ICMP reply that refuses a connection.
    pub fn port_unreachable(self) -> &'static str {
        match self {
            Family::V4 => "icmp-port-unreachable",
            Family::V6 => "icmp6-port-unreachable",
        }
    }

    /// The full-address mask of `-m recent --mask`.
    pub fn full_mask(self) -> &'static str {
        match self {
            Family::V4 => "255.255.255.255",
            Family::V6 => "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        }
    }
}

/// `ip:port` as DNAT targets write it (`[ip]:port` for IPv6).
pub fn host_port(ip: &IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name iptables and nft both use.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (the slice's `nodeName`).
    pub local: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServicePort {
    /// `namespace/name:port` as kube-proxy names it (`namespace/name` for an unnamed port).
    pub name: String,
    pub cluster_ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub node_port: Option<u16>,
    /// `externalIPs` and the load balancer's ingress IPs: reached from outside like
    /// the node port (`externalTrafficPolicy` applies).
    pub external_ips: Vec<IpAddr>,
    /// `sessionAffinity: ClientIP` and its timeout in seconds.
    pub affinity: Option<u32>,
    pub internal_local: bool,
    pub external_local: bool,
    /// Every endpoint of the port, sorted, without duplicates.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// Endpoints for traffic that may go to any node: the ready ones, or, when none is
    /// ready, those still serving while they terminate (upstream's fallback, so
    /// connections drain during a rolling update instead of being refused).
    pub fn cluster_endpoints(&self) -> Vec<&Endpoint> {
        pick(self.endpoints.iter())
    }

    /// The same choice among this node's endpoints.
    pub fn local_endpoints(&self) -> Vec<&Endpoint> {
        pick(self.endpoints.iter().filter(|e| e.local))
    }

    /// Where traffic to the cluster IP goes (`internalTrafficPolicy`).
    pub fn internal_endpoints(&self) -> Vec<&Endpoint> {
        if self.internal_local {
            self.local_endpoints()
        } else {
            self.cluster_endpoints()
        }
    }

    /// Where traffic to the node port from outside goes (`externalTrafficPolicy`).
    pub fn external_endpoints(&self) -> Vec<&Endpoint> {
        if self.external_local {
            self.local_endpoints()
        } else {
            self.cluster_endpoints()
        }
    }
}

fn pick<'a>(all: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<_> = all.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    all.filter(|e| e.serving && e.terminating).collect()
}

/// Every proxied IPv4 Service port, sorted by name.
pub fn build(services: &[&Service], slices: &[&EndpointSlice], node: &str) -> Vec<ServicePort> {
    build_family(services, slices, node, Family::V4)
}

/// Every proxied Service port of `family`, sorted by name: each Service's ClusterIP of
/// that family with the endpoints of its slices of that family. Headless Services
/// (`clusterIP: None`), ExternalName Services and Services without an address of the
/// family are not proxied by this family's plane.
pub fn build_family(
    services: &[&Service],
    slices: &[&EndpointSlice],
    node: &str,
    family: Family,
) -> Vec<ServicePort> {
    // Endpoints by (namespace, service, port name, protocol).
    let mut endpoints: BTreeMap<(String, String, String, Protocol), BTreeSet<Endpoint>> =
        BTreeMap::new();
    for slice in slices {
        if slice.address_type != family.name() {
            continue;
        }
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        for port in slice.ports.iter().flatten() {
            let (Some(number), Some(protocol)) =
                (port.port, Protocol::parse(port.protocol.as_deref()))
            else {
                continue;
            };
            let Ok(number) = u16::try_from(number) else {
                continue;
            };
            let key = (
                ns.clone(),
                service.clone(),
                port.name.clone().unwrap_or_default(),
                protocol,
            );
            let set = endpoints.entry(key).or_default();
            for ep in slice.endpoints.iter().flatten() {
                let cond = ep.conditions.clone().unwrap_or_default();
                // Upstream: an unset `ready` means ready, an unset `serving` follows
                // `ready`, an unset `terminating` means not terminating.
                let ready = cond.ready.unwrap_or(true);
                let serving = cond.serving.unwrap_or(ready);
                let terminating = cond.terminating.unwrap_or(false);
                let local = ep.node_name.as_deref() == Some(node);
                // One address per endpoint is all upstream reads.
                let Some(ip) = ep
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .filter(|ip| Family::of(ip) == family)
                else {
                    continue;
                };
                set.insert(Endpoint {
                    ip,
                    port: number,
                    ready,
                    serving,
                    terminating,
                    local,
                });
            }
        }
    }
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .find(|ip| Family::of(ip) == family)
        else {
            // Headless ("None"), unallocated or of the other family: nothing to proxy.
            continue;
        };
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        let mut external_ips: Vec<IpAddr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .chain(
                svc.status
                    .iter()
                    .filter_map(|s| s.load_balancer.as_ref())
                    .flat_map(|lb| lb.ingress.iter().flatten())
                    // `ipMode: Proxy`: the load balancer proxies to the nodes itself
                    // (rind's service load balancer on host loopback addresses), so
                    // the address must not be captured on the nodes, as upstream.
                    .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
                    .filter_map(|i| i.ip.as_deref())
                    .filter_map(|ip| ip.parse().ok()),
            )
            .filter(|ip| Family::of(ip) == family)
            .collect();
        external_ips.sort();
        external_ips.dedup();
        let node_ports_allowed = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        for port in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
                continue;
            };
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let display = if port_name.is_empty() {
                format!("{ns}/{name}")
            } else {
                format!("{ns}/{name}:{port_name}")
            };
            let eps = endpoints
                .get(&(ns.clone(), name.clone(), port_name, protocol))
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            out.push(ServicePort {
                name: display,
                cluster_ip,
                port: number,
                protocol,
                node_port: port
                    .node_port
                    .filter(|_| node_ports_allowed)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0),
                external_ips: external_ips.clone(),
                affinity,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                endpoints: dedupe(eps),
            });
        }
    }
    out.sort_by(|a, b| (&a.name, a.protocol).cmp(&(&b.name, b.protocol)));
    out
}

/// One endpoint per address and port: a pod listed by two slices (during a move
/// between slices) counts once, with the most favourable conditions.
fn dedupe(mut eps: Vec<Endpoint>) -> Vec<Endpoint> {
    eps.sort_by(|a, b| {
        (a.ip, a.port)
            .cmp(&(b.ip, b.port))
            .then(b.ready.cmp(&a.ready))
    });
    eps.dedup_by(|later, first| (later.ip, later.port) == (first.ip, first.port));
    eps
}

/// The chain-name suffix kube-proxy style: a stable hash of what the chain is for, in
/// 16 base32 characters (iptables chain names are limited to 28 characters).
pub fn hash_name(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    for byte in &digest[..8] {
        bits = bits << 8 | u64::from(*byte);
    }
    (0..16)
        .map(|i| ALPHABET[((bits >> (60 - 4 * i)) & 0x1f) as usize] as char)
        .collect()
}

/// A fingerprint of a chain's rules: what the proxy remembers of what it wrote, so
/// the next sync can tell which chains changed without keeping their text.
pub fn digest(rules: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    rules.hash(&mut h);
    h.finish()
}

/// A fingerprint of everything a Service port's rules are made from: a sync
/// regenerates the rules of a port only when this changed.
pub fn fingerprint(sp: &ServicePort) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sp.hash(&mut h);
    h.finish()
}

/// Names of a Service port's chains, shared by both modes.
pub struct ChainIds {
    pub service: String,
    pub external: String,
}

impl ServicePort {
    pub fn ids(&self) -> ChainIds {
        let proto = self.protocol.lower();
        ChainIds {
            service: hash_name(&[&self.name, proto]),
            external: hash_name(&[&self.name, proto, "external"]),
        }
    }

    pub fn endpoint_id(&self, ep: &Endpoint) -> String {
        hash_name(&[
            &self.name,
            self.protocol.lower(),
            &format!("{}:{}", ep.ip, ep.port),
        ])
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;

    /// Compares `text` with the golden file `testdata/<name>`; `RIND_BLESS=1` rewrites
    /// the file instead (then review the diff).
    pub fn golden(name: &str, text: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        if std::env::var_os("RIND_BLESS").is_some() {
            std::fs::write(&path, text).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, expected, "{name} differs; got:\n{text}");
    }

    pub fn service(name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }))
        .unwrap()
    }

    pub fn slice(service: &str, port: i32, eps: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-x"), "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": eps,
        }))
        .unwrap()
    }

    fn ep(
        ip: &str,
        ready: bool,
        serving: bool,
        terminating: bool,
        node: &str,
    ) -> serde_json::Value {
        json!({"addresses": [ip], "nodeName": node,
               "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
    }

    #[test]
    fn ready_endpoints_win_and_terminating_ones_are_the_fallback() {
        let svc = service(
            "web",
            json!({"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}),
        );
        let both = slice(
            "web",
            8080,
            json!([
                ep("10.244.0.5", true, true, false, "n1"),
                ep("10.244.0.6", false, true, true, "n1"),
                ep("10.244.0.7", false, false, false, "n1"),
            ]),
        );
        let ports = build(&[&svc], &[&both], "n1");
        assert_eq!(ports.len(), 1);
        let ips: Vec<_> = ports[0]
            .cluster_endpoints()
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(ips, ["10.244.0.5"]);

        let draining = slice(
            "web",
            8080,
            json!([ep("10.244.0.6", false, true, true, "n1")]),
        );
        let ports = build(&[&svc], &[&draining], "n1");
        let ips: Vec<_> = ports[0]
            .cluster_endpoints()
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(ips, ["10.244.0.6"]);
    }

    #[test]
    fn local_policies_keep_this_nodes_endpoints() {
        let svc = service(
            "web",
            json!({"clusterIP": "10.96.0.20", "type": "NodePort", "internalTrafficPolicy": "Local",
                   "externalTrafficPolicy": "Local",
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        );
        let s = slice(
            "web",
            8080,
            json!([
                ep("10.244.0.5", true, true, false, "n1"),
                ep("10.244.1.5", true, true, false, "n2")
            ]),
        );
        let ports = build(&[&svc], &[&s], "n2");
        let internal: Vec<_> = ports[0]
            .internal_endpoints()
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(internal, ["10.244.1.5"]);
        assert_eq!(ports[0].node_port, Some(30080));
        assert_eq!(ports[0].cluster_endpoints().len(), 2);
    }

    #[test]
    fn external_ips_come_from_the_spec_and_the_load_balancer() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "lb", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.40", "type": "LoadBalancer", "externalIPs": ["192.0.2.9"],
                     "ports": [{"port": 80, "nodePort": 30090}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
        }))
        .unwrap();
        let ports = build(&[&svc], &[], "n1");
        let ips: Vec<_> = ports[0]
            .external_ips
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(ips, ["192.0.2.1", "192.0.2.9"]);
        assert_eq!(ports[0].node_port, Some(30090));
    }

    #[test]
    fn headless_and_external_name_services_are_not_proxied() {
        let headless = service("h", json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        let external = service(
            "e",
            json!({"type": "ExternalName", "externalName": "x.example"}),
        );
        assert!(build(&[&headless, &external], &[], "n1").is_empty());
    }

    #[test]
    fn hashes_are_stable_and_short() {
        assert_eq!(hash_name(&["default/web:http", "tcp"]).len(), 16);
        assert_eq!(hash_name(&["a"]), hash_name(&["a"]));
        assert_ne!(hash_name(&["a", "b"]), hash_name(&["ab"]));
    }
}
