//! The `nftables` mode: everything in our own table `ip rind-proxy` (and, for the
//! IPv6 plane of a dual-stack node, `ip6 rind-proxy`), changed by one
//! `nft -f` transaction per sync. Cluster IPs and node ports are looked up in verdict
//! maps (one lookup, not a rule per Service); each Service port has a balancing chain
//! that picks an endpoint with `numgen random`. A sync rewrites the maps and the
//! chains that changed and deletes the chains that went, all in the same
//! transaction, so the kernel switches from the old rules to the new at once.

use crate::iptables::MASQ_MARK;
use crate::model::{Endpoint, Family, ServicePort, digest, host_port};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

pub const TABLE: &str = "ip rind-proxy";
pub const TABLE_V6: &str = "ip6 rind-proxy";

/// The table of a family's plane.
pub fn table(family: Family) -> &'static str {
    match family {
        Family::V4 => TABLE,
        Family::V6 => TABLE_V6,
    }
}

/// The chains hooked into the kernel's netfilter path, with their hook and priority.
const BASE_CHAINS: [(&str, &str); 6] = [
    // Before routing, so DNAT decides where the packet goes (from pods, from outside).
    ("nat-prerouting", "type nat hook prerouting priority dstnat"),
    // The node's own connections (host-network pods, processes in the node).
    ("nat-output", "type nat hook output priority -100"),
    (
        "nat-postrouting",
        "type nat hook postrouting priority srcnat",
    ),
    // Refusals, ahead of any other filter (priority below filter's 0).
    ("filter-input", "type filter hook input priority -110"),
    ("filter-forward", "type filter hook forward priority -110"),
    ("filter-output", "type filter hook output priority -110"),
];

/// Our maps and their element types (`ADDR` is the family's address type).
const MAPS: [(&str, &str); 4] = [
    ("service-ips", "ADDR . inet_proto . inet_service : verdict"),
    ("service-nodeports", "inet_proto . inet_service : verdict"),
    (
        "no-endpoint-services",
        "ADDR . inet_proto . inet_service : verdict",
    ),
    (
        "no-endpoint-nodeports",
        "inet_proto . inet_service : verdict",
    ),
];

/// The proxy's whole table: regular chains with their rules, affinity sets with their
/// declaration, and the elements of each map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub chains: BTreeMap<String, Vec<String>>,
    pub sets: BTreeMap<String, String>,
    pub maps: BTreeMap<String, Vec<String>>,
}

/// What a sync wrote, as the next sync needs it: each chain's digest, the sets, and
/// a digest of the maps' elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub chains: BTreeMap<String, u64>,
    pub sets: BTreeSet<String>,
    pub maps: u64,
}

impl Table {
    pub fn applied(&self) -> Applied {
        let elements: Vec<String> = self
            .maps
            .iter()
            .flat_map(|(name, e)| std::iter::once(name.clone()).chain(e.iter().cloned()))
            .collect();
        Applied {
            chains: self
                .chains
                .iter()
                .map(|(k, v)| (k.clone(), digest(v)))
                .collect(),
            sets: self.sets.keys().cloned().collect(),
            maps: digest(&elements),
        }
    }
}

pub fn generate(ports: &[ServicePort], pod_subnet: &str, family: Family) -> Table {
    let ip = family.nft();
    let mut t = Table::default();
    for (name, _) in MAPS {
        t.maps.insert(name.into(), Vec::new());
    }
    let mut push = |map: &str, element: String| {
        if let Some(m) = t.maps.get_mut(map) {
            m.push(element);
        }
    };
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sets = BTreeMap::new();
    for sp in ports {
        let id = sp.ids().service;
        let svc = format!("svc-{id}");
        let svl = format!("svl-{id}");
        let ext = format!("ext-{id}");
        let proto = sp.protocol.lower();
        let key = format!("{} . {proto} . {}", sp.cluster_ip, sp.port);
        let cluster = sp.cluster_endpoints();
        let local = sp.local_endpoints();
        let (mut want_svc, mut want_svl) = (false, false);
        if sp.internal_endpoints().is_empty() {
            let verdict = if sp.internal_local && !cluster.is_empty() {
                "drop"
            } else {
                "goto reject-chain"
            };
            push("no-endpoint-services", format!("{key} : {verdict}"));
        } else if sp.internal_local {
            want_svl = true;
            push("service-ips", format!("{key} : goto {svl}"));
        } else {
            want_svc = true;
            push("service-ips", format!("{key} : goto {svc}"));
        }
        if sp.node_port.is_some() || !sp.external_ips.is_empty() {
            let np_key = sp.node_port.map(|np| format!("{proto} . {np}"));
            let ext_keys: Vec<String> = sp
                .external_ips
                .iter()
                .map(|ip| format!("{ip} . {proto} . {}", sp.port))
                .collect();
            if sp.external_endpoints().is_empty() {
                let verdict = if sp.external_local && !cluster.is_empty() {
                    "drop"
                } else {
                    "goto reject-chain"
                };
                if let Some(np_key) = &np_key {
                    push("no-endpoint-nodeports", format!("{np_key} : {verdict}"));
                }
                for k in &ext_keys {
                    push("no-endpoint-services", format!("{k} : {verdict}"));
                }
            }
            let mut rules = Vec::new();
            if sp.external_local {
                if !cluster.is_empty() {
                    want_svc = true;
                    // Pods and the node itself may use any endpoint; the node's own
                    // connections are masqueraded so replies come back.
                    rules.push(format!("{ip} saddr {pod_subnet} goto {svc}"));
                    rules.push("fib saddr type local jump mark-for-masquerade".into());
                    rules.push(format!("fib saddr type local goto {svc}"));
                }
                if !local.is_empty() {
                    // From outside: source kept, this node's endpoints only.
                    want_svl = true;
                    rules.push(format!("goto {svl}"));
                }
            } else if !cluster.is_empty() {
                want_svc = true;
                // From outside to any node: masqueraded, so replies come back here.
                rules.push("jump mark-for-masquerade".into());
                rules.push(format!("goto {svc}"));
            }
            if !rules.is_empty() {
                if let Some(np_key) = &np_key {
                    push("service-nodeports", format!("{np_key} : goto {ext}"));
                }
                for k in &ext_keys {
                    push("service-ips", format!("{k} : goto {ext}"));
                }
                chains.insert(ext, rules);
            }
        }
        let mut seps: Vec<&Endpoint> = Vec::new();
        if want_svc {
            chains.insert(svc, balance(sp, &cluster, pod_subnet, family));
            seps.extend(cluster.iter().copied());
        }
        if want_svl {
            chains.insert(svl, balance(sp, &local, pod_subnet, family));
            seps.extend(local.iter().copied());
        }
        for ep in seps {
            let epid = sp.endpoint_id(ep);
            let chain = format!("sep-{epid}");
            if chains.contains_key(&chain) {
                continue;
            }
            // Hairpin: a pod reaching itself through its Service is masqueraded, or
            // it would answer its own address directly.
            let mut rules = vec![format!("{ip} saddr {} jump mark-for-masquerade", ep.ip)];
            if let Some(seconds) = sp.affinity {
                let set = affinity_set(&epid, seconds);
                rules.push(format!("update @{set} {{ {ip} saddr }}"));
                sets.insert(
                    set,
                    format!(
                        "type {} ; flags dynamic,timeout ; timeout {seconds}s ;",
                        family.nft_addr()
                    ),
                );
            }
            rules.push(format!(
                "meta l4proto {proto} dnat to {}",
                host_port(&ep.ip, ep.port)
            ));
            chains.insert(chain, rules);
        }
    }
    chains.insert(
        "services".into(),
        vec![
            format!("{ip} daddr . meta l4proto . th dport vmap @service-ips"),
            // Node ports on every address of the node but loopback (that would need
            // route_localnet, which upstream's nftables mode does not offer either).
            format!(
                "fib daddr type local {ip} daddr != {} meta l4proto . th dport vmap @service-nodeports",
                family.loopback()
            ),
        ],
    );
    chains.insert(
        "mark-for-masquerade".into(),
        vec![format!("meta mark set meta mark | {MASQ_MARK}")],
    );
    chains.insert(
        "masquerading".into(),
        vec![
            format!("meta mark & {MASQ_MARK} == 0 return"),
            // Cleared so a packet coming back through the stack is not masqueraded twice.
            format!("meta mark set meta mark ^ {MASQ_MARK}"),
            "masquerade fully-random".into(),
        ],
    );
    chains.insert(
        "filter-checks".into(),
        vec![
            format!("ct state new {ip} daddr . meta l4proto . th dport vmap @no-endpoint-services"),
            "ct state new fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports"
                .into(),
        ],
    );
    // Upstream refuses connections to a Service without endpoints with an ICMP
    // port-unreachable (TCP clients see "connection refused" at once).
    chains.insert("reject-chain".into(), vec!["reject".into()]);
    chains.insert("nat-prerouting".into(), vec!["jump services".into()]);
    chains.insert("nat-output".into(), vec!["jump services".into()]);
    chains.insert("nat-postrouting".into(), vec!["jump masquerading".into()]);
    for base in ["filter-input", "filter-forward", "filter-output"] {
        chains.insert(base.into(), vec!["jump filter-checks".into()]);
    }
    t.chains = chains;
    t.sets = sets;
    t
}

/// One set per endpoint remembers the clients it served; the timeout is part of the
/// name because a set's timeout cannot be changed in place.
fn affinity_set(epid: &str, seconds: u32) -> String {
    format!("affinity-{epid}-{seconds}")
}

fn balance(sp: &ServicePort, eps: &[&Endpoint], pod_subnet: &str, family: Family) -> Vec<String> {
    let proto = sp.protocol.lower();
    let ip = family.nft();
    let mut rules = vec![format!(
        // Callers outside the pod network are masqueraded so the reply comes back
        // through this node.
        "{ip} daddr {} {proto} dport {} {ip} saddr != {pod_subnet} jump mark-for-masquerade",
        sp.cluster_ip, sp.port
    )];
    if let Some(seconds) = sp.affinity {
        for ep in eps {
            let epid = sp.endpoint_id(ep);
            rules.push(format!(
                "{ip} saddr @{} goto sep-{epid}",
                affinity_set(&epid, seconds)
            ));
        }
    }
    let arms: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, ep)| format!("{i} : goto sep-{}", sp.endpoint_id(ep)))
        .collect();
    rules.push(format!(
        "numgen random mod {} vmap {{ {} }}",
        eps.len(),
        arms.join(", ")
    ));
    rules
}

/// The `nft -f` input that turns `old` into `new` in one transaction. `old` is None
/// when what the kernel holds is unknown (the first sync of this process, or a full
/// resync): then the table is deleted and made afresh in the same transaction.
pub fn render(new: &Table, old: Option<&Applied>, family: Family) -> String {
    let tbl = table(family);
    let mut out = String::new();
    let _ = writeln!(out, "add table {tbl}");
    if old.is_none() {
        let _ = writeln!(out, "delete table {tbl}");
        let _ = writeln!(out, "add table {tbl}");
    }
    let empty = Applied::default();
    let old = old.unwrap_or(&empty);
    for (name, hook) in BASE_CHAINS {
        let _ = writeln!(out, "add chain {tbl} {name} {{ {hook} ; policy accept ; }}");
    }
    for (name, kind) in MAPS {
        let kind = kind.replace("ADDR", family.nft_addr());
        let _ = writeln!(out, "add map {tbl} {name} {{ type {kind} ; }}");
    }
    let changed: Vec<&String> = new
        .chains
        .iter()
        .filter(|(name, rules)| old.chains.get(*name) != Some(&digest(rules)))
        .map(|(name, _)| name)
        .collect();
    let stale: Vec<&String> = old
        .chains
        .keys()
        .filter(|n| !new.chains.contains_key(*n))
        .collect();
    let is_base = |n: &str| BASE_CHAINS.iter().any(|(b, _)| *b == n);
    for name in &changed {
        if !is_base(name) {
            let _ = writeln!(out, "add chain {tbl} {name}");
        }
    }
    for (name, decl) in &new.sets {
        let _ = writeln!(out, "add set {tbl} {name} {{ {decl} }}");
    }
    // Empty the maps and the chains that change or go: this drops every reference
    // to what is deleted below.
    for (name, _) in MAPS {
        let _ = writeln!(out, "flush map {tbl} {name}");
    }
    for name in changed.iter().chain(stale.iter()) {
        if old.chains.contains_key(*name) {
            let _ = writeln!(out, "flush chain {tbl} {name}");
        }
    }
    for name in &stale {
        let _ = writeln!(out, "delete chain {tbl} {name}");
    }
    for name in old.sets.iter().filter(|s| !new.sets.contains_key(*s)) {
        let _ = writeln!(out, "delete set {tbl} {name}");
    }
    for name in &changed {
        for rule in &new.chains[*name] {
            let _ = writeln!(out, "add rule {tbl} {name} {rule}");
        }
    }
    for (name, elements) in &new.maps {
        if !elements.is_empty() {
            let _ = writeln!(
                out,
                "add element {tbl} {name} {{ {} }}",
                elements.join(", ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build;
    use crate::model::tests::{golden, service, slice};
    use serde_json::json;

    fn ports() -> Vec<ServicePort> {
        let web = service(
            "web",
            json!({"clusterIP": "10.96.0.20", "type": "NodePort", "sessionAffinity": "ClientIP", "externalIPs": ["192.0.2.9"],
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        );
        let empty = service(
            "empty",
            json!({"clusterIP": "10.96.0.30", "ports": [{"name": "http", "port": 80}]}),
        );
        let s = slice(
            "web",
            8080,
            json!([
                {"addresses": ["10.244.0.5"], "nodeName": "n1", "conditions": {"ready": true}},
                {"addresses": ["10.244.0.6"], "nodeName": "n2", "conditions": {"ready": true}},
            ]),
        );
        build(&[&web, &empty], &[&s], "n1")
    }

    #[test]
    fn golden_full_sync() {
        let text = render(
            &generate(&ports(), "10.244.0.0/16", Family::V4),
            None,
            Family::V4,
        );
        golden("nftables-full.txt", &text);
    }

    #[test]
    fn partial_sync_rewrites_only_what_changed() {
        let before = generate(&ports(), "10.244.0.0/16", Family::V4);
        let mut changed = ports();
        changed[1].endpoints.pop();
        let after = generate(&changed, "10.244.0.0/16", Family::V4);
        let text = render(&after, Some(&before.applied()), Family::V4);
        golden("nftables-partial.txt", &text);
    }

    #[test]
    fn ipv6_plane_uses_the_ip6_table_and_addresses() {
        let web = service(
            "web",
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00:10:96::20"],
                   "ipFamilies": ["IPv4", "IPv6"], "type": "NodePort",
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        );
        let mut s = slice(
            "web",
            8080,
            json!([{"addresses": ["fd00:10:244:1::5"], "nodeName": "n1", "conditions": {"ready": true}}]),
        );
        s.address_type = "IPv6".into();
        let v4 = slice("web", 8080, json!([]));
        let ports = crate::model::build_family(&[&web], &[&s, &v4], "n1", Family::V6);
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].cluster_ip.to_string(), "fd00:10:96::20");
        assert_eq!(ports[0].endpoints.len(), 1);
        let text = render(
            &generate(&ports, "fd00:10:244::/56", Family::V6),
            None,
            Family::V6,
        );
        assert!(text.contains("add table ip6 rind-proxy\n"), "{text}");
        assert!(text.contains("type ipv6_addr . inet_proto . inet_service : verdict"));
        assert!(text.contains("dnat to [fd00:10:244:1::5]:8080"), "{text}");
        assert!(
            text.contains("fd00:10:96::20 . tcp . 80 : goto svc-"),
            "{text}"
        );
        assert!(text.contains("ip6 daddr != ::1/128 meta l4proto"), "{text}");
        assert!(!text.contains(" ip saddr"), "{text}");
        // The IPv4 plane proxies the same Service by its IPv4 address only.
        let v4_ports = crate::model::build_family(&[&web], &[&s, &v4], "n1", Family::V4);
        assert_eq!(v4_ports[0].cluster_ip.to_string(), "10.96.0.20");
        assert!(v4_ports[0].endpoints.is_empty());
    }
}
