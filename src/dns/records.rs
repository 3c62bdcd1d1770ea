//! The cluster's DNS records, built from the API's Services, EndpointSlices and
//! Namespaces as CoreDNS's `kubernetes` plugin (the DNS spec for Kubernetes,
//! `cluster/addons/dns` schema 1.1.0) publishes them:
//!
//! - `svc.ns.svc.cluster.local`: the ClusterIPs (A/AAAA), a headless Service's ready
//!   endpoint addresses, or an ExternalName's CNAME;
//! - `host.svc.ns.svc.cluster.local` for every ready endpoint of a headless Service:
//!   its `hostname` (a StatefulSet pod's stable name) or its dashed address;
//! - `_port._proto.svc.ns.svc.cluster.local` SRV for each named port (and SRV on the
//!   Service's own name for all of them);
//! - PTR for ClusterIPs and headless endpoint addresses;
//! - `a-b-c-d.ns.pod.cluster.local` (CoreDNS's `pods insecure`, kind's setting),
//!   answered from the name itself in any namespace that exists.
//!
//! A name under the zone that none of these make is NXDOMAIN; a name that exists
//! without the asked type (`ns.svc.cluster.local`) is an empty answer. Everything here
//! is pure so it can be tested without a server; `Zone::build` makes a fresh index
//! from a snapshot each time the API changes.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The cluster domain (kubeadm's and kind's default).
pub const DOMAIN: &str = "cluster.local";
/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One record's data; names are absolute, lower-case, without the trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Ptr(String),
    Srv {
        weight: u16,
        port: u16,
        target: String,
    },
}

/// The types a query can ask for, as far as the index distinguishes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    A,
    Aaaa,
    Cname,
    Ptr,
    Srv,
    /// Any other type: nothing here has it, but the name may still exist.
    Other,
    /// `ANY`: every record of the name.
    Any,
}

impl Data {
    fn kind(&self) -> Kind {
        match self {
            Data::A(_) => Kind::A,
            Data::Aaaa(_) => Kind::Aaaa,
            Data::Cname(_) => Kind::Cname,
            Data::Ptr(_) => Kind::Ptr,
            Data::Srv { .. } => Kind::Srv,
        }
    }
}

/// What the index says about a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The name exists; these are its records of the asked type (none: NODATA). A
    /// CNAME is returned whatever the type asked, as a resolver expects.
    Records(Vec<Data>),
    /// The name is in the cluster's zones and does not exist.
    NxDomain,
    /// Not ours: forward it.
    NotOurs,
}

/// A named port of an EndpointSlice and the hosts (hostname or dashed address) of
/// the slice's ready endpoints that serve it.
struct SlicePort {
    name: String,
    proto: String,
    port: u16,
    hosts: Vec<String>,
}

/// A snapshot of the cluster's records.
#[derive(Debug, Default)]
pub struct Zone {
    records: HashMap<String, Vec<Data>>,
    /// Names that exist with no records of their own (`ns.svc.cluster.local`, and
    /// every name between a record and the zone's apex).
    empty_names: HashSet<String>,
    namespaces: HashSet<String>,
}

/// The DNS label of a protocol (`_tcp`, `_udp`, `_sctp`).
fn proto_label(protocol: Option<&str>) -> String {
    format!("_{}", protocol.unwrap_or("TCP").to_ascii_lowercase())
}

/// An address as a DNS label: `10-244-1-5`, `fd00--5` for IPv6.
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The reverse-lookup name of an address (`5.1.244.10.in-addr.arpa`).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut labels: Vec<String> = v6
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0xf])
                .map(|nibble| format!("{nibble:x}"))
                .collect();
            labels.reverse();
            format!("{}.ip6.arpa", labels.join("."))
        }
    }
}

fn address(ip: IpAddr) -> Data {
    match ip {
        IpAddr::V4(v4) => Data::A(v4),
        IpAddr::V6(v6) => Data::Aaaa(v6),
    }
}

/// SRV weights share 100 among the targets of one name, as CoreDNS divides them.
fn weight(targets: usize) -> u16 {
    u16::try_from(100 / targets.max(1)).unwrap_or(100).max(1)
}

impl Zone {
    /// The index of `services`, their `slices` and the existing `namespaces`.
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        namespaces: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut zone = Zone {
            namespaces: namespaces.into_iter().collect(),
            ..Zone::default()
        };
        let mut slices_of: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let labels = slice.metadata.labels.as_ref();
            let Some(service) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
                continue;
            };
            let ns = slice.metadata.namespace.clone().unwrap_or_default();
            slices_of
                .entry((ns, service.clone()))
                .or_default()
                .push(slice);
        }
        for ns in zone.namespaces.clone() {
            zone.empty_names.insert(format!("{ns}.svc.{DOMAIN}"));
            zone.empty_names.insert(format!("{ns}.pod.{DOMAIN}"));
        }
        for svc in services {
            let (Some(name), Some(ns)) = (&svc.metadata.name, &svc.metadata.namespace) else {
                continue;
            };
            let slices = slices_of
                .get(&(ns.clone(), name.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            zone.add_service(svc, name, ns, slices);
        }
        zone.fill_parents();
        for list in zone.records.values_mut() {
            list.sort();
            list.dedup();
        }
        zone
    }

    fn push(&mut self, name: String, data: Data) {
        self.records.entry(name).or_default().push(data);
    }

    fn add_service(&mut self, svc: &Service, name: &str, ns: &str, slices: &[&EndpointSlice]) {
        let Some(spec) = &svc.spec else { return };
        let fqdn = format!("{name}.{ns}.svc.{DOMAIN}");
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = &spec.external_name {
                let target = target.trim_end_matches('.').to_ascii_lowercase();
                self.push(fqdn, Data::Cname(target));
            }
            return;
        }
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let ports: Vec<(String, String, u16)> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let port = u16::try_from(p.port).ok()?;
                Some((p.name.clone()?, proto_label(p.protocol.as_deref()), port))
            })
            .filter(|(name, _, _)| !name.is_empty())
            .collect();
        if !headless {
            let ips = spec
                .cluster_ips
                .clone()
                .filter(|ips| !ips.is_empty())
                .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
                .unwrap_or_default();
            let ips: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.parse().ok()).collect();
            if ips.is_empty() {
                // No ClusterIP yet: the name exists, with nothing to answer.
                self.empty_names.insert(fqdn);
                return;
            }
            for ip in ips {
                self.push(fqdn.clone(), address(ip));
                self.push(reverse_name(ip), Data::Ptr(fqdn.clone()));
            }
            for (port_name, proto, port) in ports {
                let srv = Data::Srv {
                    weight: 100,
                    port,
                    target: fqdn.clone(),
                };
                self.push(format!("_{port_name}.{proto}.{fqdn}"), srv.clone());
                self.push(fqdn.clone(), srv);
            }
            return;
        }
        // Headless: every ready endpoint address, named by its hostname or address.
        let mut endpoints: BTreeSet<(String, IpAddr)> = BTreeSet::new();
        let mut slice_ports: Vec<SlicePort> = Vec::new();
        for slice in slices {
            let mut ready = Vec::new();
            for endpoint in slice.endpoints.iter().flatten() {
                let is_ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true);
                if !is_ready {
                    continue;
                }
                for ip in endpoint.addresses.iter().filter_map(|a| a.parse().ok()) {
                    let host = endpoint
                        .hostname
                        .clone()
                        .filter(|h| !h.is_empty())
                        .unwrap_or_else(|| dashed(ip))
                        .to_ascii_lowercase();
                    endpoints.insert((host.clone(), ip));
                    ready.push((host, ip));
                }
            }
            for port in slice.ports.iter().flatten() {
                let (Some(name), Some(number)) = (&port.name, port.port) else {
                    continue;
                };
                let Ok(number) = u16::try_from(number) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                slice_ports.push(SlicePort {
                    name: name.clone(),
                    proto: proto_label(port.protocol.as_deref()),
                    port: number,
                    hosts: ready.iter().map(|(host, _)| host.clone()).collect(),
                });
            }
        }
        // The Service's name exists even with no ready endpoint (NODATA, not NXDOMAIN).
        self.empty_names.insert(fqdn.clone());
        for (host, ip) in &endpoints {
            let host_fqdn = format!("{host}.{fqdn}");
            self.push(fqdn.clone(), address(*ip));
            self.push(host_fqdn.clone(), address(*ip));
            self.push(reverse_name(*ip), Data::Ptr(host_fqdn));
        }
        let mut by_port: HashMap<String, Vec<Data>> = HashMap::new();
        for named in slice_ports {
            let targets: BTreeSet<&String> = named.hosts.iter().collect();
            for host in targets {
                by_port
                    .entry(format!("_{}.{}.{fqdn}", named.name, named.proto))
                    .or_default()
                    .push(Data::Srv {
                        weight: 0,
                        port: named.port,
                        target: format!("{host}.{fqdn}"),
                    });
            }
        }
        let all: usize = by_port.values().map(Vec::len).sum();
        for (port_name, mut list) in by_port {
            let share = weight(list.len());
            for srv in &mut list {
                if let Data::Srv { weight, .. } = srv {
                    *weight = share;
                }
            }
            for srv in list {
                if let Data::Srv {
                    port, ref target, ..
                } = srv
                {
                    self.push(
                        fqdn.clone(),
                        Data::Srv {
                            weight: weight(all),
                            port,
                            target: target.clone(),
                        },
                    );
                }
                self.push(port_name.clone(), srv);
            }
        }
    }

    /// Every ancestor of a name with records, up to the zone's apex, exists too (an
    /// `_tcp.svc.ns…` label has no records but is no NXDOMAIN).
    fn fill_parents(&mut self) {
        let names: Vec<String> = self
            .records
            .keys()
            .chain(self.empty_names.iter())
            .filter(|n| n.ends_with(DOMAIN))
            .cloned()
            .collect();
        for name in names {
            let mut rest = name.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if parent.len() < DOMAIN.len() {
                    break;
                }
                self.empty_names.insert(parent.to_string());
                rest = parent;
            }
        }
        self.empty_names.insert(DOMAIN.to_string());
        self.empty_names.insert(format!("svc.{DOMAIN}"));
        self.empty_names.insert(format!("pod.{DOMAIN}"));
    }

    /// Answers `name` (lower-case, without the trailing dot) for `kind`.
    pub fn lookup(&self, name: &str, kind: Kind) -> Answer {
        if let Some(list) = self.records.get(name) {
            // A CNAME answers every type (a resolver then follows it).
            let cname: Vec<Data> = list
                .iter()
                .filter(|d| matches!(d, Data::Cname(_)))
                .cloned()
                .collect();
            if !cname.is_empty() {
                return Answer::Records(cname);
            }
            let found = list
                .iter()
                .filter(|d| kind == Kind::Any || d.kind() == kind)
                .cloned()
                .collect();
            return Answer::Records(found);
        }
        if self.empty_names.contains(name) {
            return Answer::Records(Vec::new());
        }
        if name == DOMAIN || name.ends_with(&format!(".{DOMAIN}")) {
            return self.pod_record(name, kind);
        }
        // Reverse names of addresses the cluster does not know go on to the node's
        // resolver, as CoreDNS's `fallthrough in-addr.arpa ip6.arpa` does.
        Answer::NotOurs
    }

    /// `a-b-c-d.ns.pod.cluster.local`: the address the name spells, in a namespace that
    /// exists.
    fn pod_record(&self, name: &str, kind: Kind) -> Answer {
        let suffix = format!(".pod.{DOMAIN}");
        let Some(rest) = name.strip_suffix(&suffix) else {
            return Answer::NxDomain;
        };
        let Some((host, ns)) = rest.split_once('.') else {
            return Answer::NxDomain;
        };
        if ns.contains('.') || !self.namespaces.contains(ns) {
            return Answer::NxDomain;
        }
        let ip: Option<IpAddr> = if host.contains("--") || host.matches('-').count() > 3 {
            host.replace('-', ":")
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        } else {
            host.replace('-', ".")
                .parse::<Ipv4Addr>()
                .ok()
                .map(IpAddr::V4)
        };
        let Some(ip) = ip else {
            return Answer::NxDomain;
        };
        let data = address(ip);
        if kind == Kind::Any || data.kind() == kind {
            Answer::Records(vec![data])
        } else {
            Answer::Records(Vec::new())
        }
    }

    /// How many names the index holds (for the log).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn slice(value: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(value).unwrap()
    }

    fn zone() -> Zone {
        let services = [
            service(json!({
                "metadata": {"name": "web", "namespace": "team"},
                "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                   {"name": "dns", "port": 53, "protocol": "UDP"}]},
            })),
            service(json!({
                "metadata": {"name": "db", "namespace": "team"},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]},
            })),
            service(json!({
                "metadata": {"name": "ext", "namespace": "team"},
                "spec": {"type": "ExternalName", "externalName": "Example.TEST."},
            })),
        ];
        let slices = [slice(json!({
            "metadata": {"name": "db-abc", "namespace": "team",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.1.5"], "conditions": {"ready": true}, "hostname": "db-0"},
                {"addresses": ["10.244.2.7"], "conditions": {"ready": true}},
                {"addresses": ["10.244.2.9"], "conditions": {"ready": false}},
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        }))];
        Zone::build(
            &services,
            &slices,
            ["team".to_string(), "default".to_string()],
        )
    }

    fn records(answer: Answer) -> Vec<Data> {
        match answer {
            Answer::Records(list) => list,
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn cluster_ip_services() {
        let z = zone();
        assert_eq!(
            records(z.lookup("web.team.svc.cluster.local", Kind::A)),
            [Data::A("10.96.0.20".parse().unwrap())]
        );
        assert_eq!(
            records(z.lookup("_http._tcp.web.team.svc.cluster.local", Kind::Srv)),
            [Data::Srv {
                weight: 100,
                port: 80,
                target: "web.team.svc.cluster.local".into()
            }]
        );
        assert_eq!(
            records(z.lookup("_dns._udp.web.team.svc.cluster.local", Kind::Srv)).len(),
            1
        );
        assert_eq!(
            records(z.lookup("web.team.svc.cluster.local", Kind::Srv)).len(),
            2
        );
        assert_eq!(
            records(z.lookup("20.0.96.10.in-addr.arpa", Kind::Ptr)),
            [Data::Ptr("web.team.svc.cluster.local".into())]
        );
        // The name exists; it has no AAAA.
        assert_eq!(
            z.lookup("web.team.svc.cluster.local", Kind::Aaaa),
            Answer::Records(vec![])
        );
    }

    #[test]
    fn headless_services_list_ready_endpoints() {
        let z = zone();
        let ips = records(z.lookup("db.team.svc.cluster.local", Kind::A));
        assert_eq!(
            ips,
            [
                Data::A("10.244.1.5".parse().unwrap()),
                Data::A("10.244.2.7".parse().unwrap())
            ]
        );
        // A StatefulSet pod's stable name, and a dashed name for the others.
        assert_eq!(
            records(z.lookup("db-0.db.team.svc.cluster.local", Kind::A)),
            [Data::A("10.244.1.5".parse().unwrap())]
        );
        assert_eq!(
            records(z.lookup("10-244-2-7.db.team.svc.cluster.local", Kind::A)).len(),
            1
        );
        assert_eq!(
            z.lookup("10-244-2-9.db.team.svc.cluster.local", Kind::A),
            Answer::NxDomain
        );
        let srv = records(z.lookup("_pg._tcp.db.team.svc.cluster.local", Kind::Srv));
        assert_eq!(
            srv,
            [
                Data::Srv {
                    weight: 50,
                    port: 5432,
                    target: "10-244-2-7.db.team.svc.cluster.local".into()
                },
                Data::Srv {
                    weight: 50,
                    port: 5432,
                    target: "db-0.db.team.svc.cluster.local".into()
                },
            ]
        );
        assert_eq!(
            records(z.lookup("5.1.244.10.in-addr.arpa", Kind::Ptr)),
            [Data::Ptr("db-0.db.team.svc.cluster.local".into())]
        );
    }

    #[test]
    fn external_names_pods_and_missing_names() {
        let z = zone();
        assert_eq!(
            records(z.lookup("ext.team.svc.cluster.local", Kind::A)),
            [Data::Cname("example.test".into())]
        );
        assert_eq!(
            records(z.lookup("10-244-0-3.default.pod.cluster.local", Kind::A)),
            [Data::A("10.244.0.3".parse().unwrap())]
        );
        assert_eq!(
            records(z.lookup("fd00--3.default.pod.cluster.local", Kind::Aaaa)),
            [Data::Aaaa("fd00::3".parse().unwrap())]
        );
        assert_eq!(
            z.lookup("10-244-0-3.nowhere.pod.cluster.local", Kind::A),
            Answer::NxDomain
        );
        assert_eq!(
            z.lookup("nothing.team.svc.cluster.local", Kind::A),
            Answer::NxDomain
        );
        assert_eq!(
            z.lookup("web.team.svc.cluster.local.team.svc.cluster.local", Kind::A),
            Answer::NxDomain
        );
        assert_eq!(
            z.lookup("team.svc.cluster.local", Kind::A),
            Answer::Records(vec![])
        );
        assert_eq!(
            z.lookup("_tcp.web.team.svc.cluster.local", Kind::A),
            Answer::Records(vec![])
        );
        assert_eq!(z.lookup("cluster.local", Kind::A), Answer::Records(vec![]));
        assert_eq!(z.lookup("example.test", Kind::A), Answer::NotOurs);
        assert_eq!(
            z.lookup("1.0.0.127.in-addr.arpa", Kind::Ptr),
            Answer::NotOurs
        );
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("10.96.0.1".parse().unwrap()),
            "1.0.96.10.in-addr.arpa"
        );
        let v6 = reverse_name("fd00::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0."), "{v6}");
        assert!(v6.ends_with(".0.0.d.f.ip6.arpa"), "{v6}");
        assert_eq!(v6.split('.').count(), 34, "{v6}");
        assert_eq!(dashed("fd00::5".parse().unwrap()), "fd00--5");
    }
}
