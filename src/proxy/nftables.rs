//! The `nftables` mode: everything in our own table `ip rind-proxy` (and, for the
//! IPv6 plane of a dual-stack node, `ip6 rind-proxy`), changed by one
//! `nft -f` transaction per sync. Cluster IPs and node ports are looked up in verdict
//! maps (one lookup, not a rule per Service); each Service port has a balancing chain
//! that picks an endpoint with `numgen random`. A full sync deletes and rewrites the
//! whole table; a partial one regenerates only the Service ports that changed, flushes
//! and refills their chains, deletes those that went, and deletes and adds their map
//! elements one by one. Either is one transaction, so the kernel switches from the old
//! rules to the new at once.

use crate::iptables::MASQ_MARK;
use crate::model::{Endpoint, Family, ServicePort, digest, fingerprint, host_port};
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

/// The rules of one Service port: the chains and sets that are its own (their names
/// hash the port's name, so no two ports share one) and its elements in the shared
/// maps. A sync regenerates this only for the ports whose Service or endpoints
/// changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortRules {
    pub chains: BTreeMap<String, Vec<String>>,
    pub sets: BTreeMap<String, String>,
    /// (map, key, verdict).
    pub elements: Vec<(&'static str, String, String)>,
}

/// What the kernel holds of one Service port after a sync, as the next sync needs it
/// to write only what changed: a fingerprint of the port it was generated from, each
/// chain's digest (not its text), the sets and the map elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortApplied {
    pub input: u64,
    pub chains: BTreeMap<String, u64>,
    pub sets: BTreeMap<String, String>,
    pub elements: Vec<(&'static str, String, String)>,
}

/// What the kernel holds after a sync, per Service port (keyed by name and protocol).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub ports: BTreeMap<(String, &'static str), PortApplied>,
}

fn port_key(sp: &ServicePort) -> (String, &'static str) {
    (sp.name.clone(), sp.protocol.lower())
}

impl PortRules {
    fn applied(&self, input: u64) -> PortApplied {
        PortApplied {
            input,
            chains: self
                .chains
                .iter()
                .map(|(k, v)| (k.clone(), digest(v)))
                .collect(),
            sets: self.sets.clone(),
            elements: self.elements.clone(),
        }
    }
}

/// Every chain, set and map element of the table for these Service ports.
pub fn generate(ports: &[ServicePort], pod_subnet: &str, family: Family) -> Table {
    let rules: Vec<PortRules> = ports
        .iter()
        .map(|sp| port_rules(sp, pod_subnet, family))
        .collect();
    assemble(rules.iter(), family)
}

/// The whole table from the rules of every port.
fn assemble<'a>(ports: impl Iterator<Item = &'a PortRules>, family: Family) -> Table {
    let mut t = Table::default();
    for (name, _) in MAPS {
        t.maps.insert(name.into(), Vec::new());
    }
    for port in ports {
        for (name, rules) in &port.chains {
            t.chains.insert(name.clone(), rules.clone());
        }
        for (name, decl) in &port.sets {
            t.sets.insert(name.clone(), decl.clone());
        }
        for (map, key, verdict) in &port.elements {
            if let Some(m) = t.maps.get_mut(*map) {
                m.push(format!("{key} : {verdict}"));
            }
        }
    }
    t.chains.extend(fixed_chains(family));
    t
}

/// The rules of one Service port.
pub fn port_rules(sp: &ServicePort, pod_subnet: &str, family: Family) -> PortRules {
    let ip = family.nft();
    let mut elements: Vec<(&'static str, String, String)> = Vec::new();
    let mut push = |map: &'static str, key: &str, verdict: String| {
        elements.push((map, key.to_string(), verdict));
    };
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sets = BTreeMap::new();
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
        push("no-endpoint-services", &key, verdict.into());
    } else if sp.internal_local {
        want_svl = true;
        push("service-ips", &key, format!("goto {svl}"));
    } else {
        want_svc = true;
        push("service-ips", &key, format!("goto {svc}"));
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
                push("no-endpoint-nodeports", np_key, verdict.into());
            }
            for k in &ext_keys {
                push("no-endpoint-services", k, verdict.into());
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
                push("service-nodeports", np_key, format!("goto {ext}"));
            }
            for k in &ext_keys {
                push("service-ips", k, format!("goto {ext}"));
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
    PortRules {
        chains,
        sets,
        elements,
    }
}

/// The chains that are the same whatever the Services: the hooks, the map lookups,
/// masquerading and refusals. Written by full syncs only.
fn fixed_chains(family: Family) -> BTreeMap<String, Vec<String>> {
    let ip = family.nft();
    let mut chains = BTreeMap::new();
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
    chains
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

/// The `nft -f` input that writes `new` whole, for when what the kernel holds is
/// unknown (the first sync of this process, a periodic full resync, the sync after a
/// failed one): the table is deleted and made afresh in the same transaction.
pub fn render_full(new: &Table, family: Family) -> String {
    let tbl = table(family);
    let mut out = String::new();
    let _ = writeln!(out, "add table {tbl}");
    let _ = writeln!(out, "delete table {tbl}");
    let _ = writeln!(out, "add table {tbl}");
    for (name, hook) in BASE_CHAINS {
        let _ = writeln!(out, "add chain {tbl} {name} {{ {hook} ; policy accept ; }}");
    }
    for (name, kind) in MAPS {
        let kind = kind.replace("ADDR", family.nft_addr());
        let _ = writeln!(out, "add map {tbl} {name} {{ type {kind} ; }}");
    }
    let is_base = |n: &str| BASE_CHAINS.iter().any(|(b, _)| *b == n);
    for name in new.chains.keys().filter(|n| !is_base(n)) {
        let _ = writeln!(out, "add chain {tbl} {name}");
    }
    for (name, decl) in &new.sets {
        let _ = writeln!(out, "add set {tbl} {name} {{ {decl} }}");
    }
    for (name, _) in MAPS {
        let _ = writeln!(out, "flush map {tbl} {name}");
    }
    for (name, rules) in &new.chains {
        for rule in rules {
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

/// One sync: the `nft -f` input (empty when nothing changed) and what the kernel holds
/// once it is committed.
pub struct Plan {
    pub text: String,
    pub applied: Applied,
}

/// The sync that brings the kernel from `old` (None: unknown, so a full sync) to these
/// Service ports. A partial sync regenerates only the ports whose fingerprint changed
/// and writes only their chains, sets and map elements: changed chains are flushed and
/// refilled, vanished ones deleted, map elements deleted and added one by one, all in
/// one transaction. The text for the Services that did not change is never made.
pub fn plan(ports: &[ServicePort], pod_subnet: &str, old: Option<Applied>, family: Family) -> Plan {
    let Some(mut old) = old else {
        let rules: Vec<PortRules> = ports
            .iter()
            .map(|sp| port_rules(sp, pod_subnet, family))
            .collect();
        let text = render_full(&assemble(rules.iter(), family), family);
        let applied = Applied {
            ports: ports
                .iter()
                .zip(&rules)
                .map(|(sp, r)| (port_key(sp), r.applied(fingerprint(sp))))
                .collect(),
        };
        return Plan { text, applied };
    };
    let mut applied = Applied::default();
    let mut changes = Changes::default();
    for sp in ports {
        let key = port_key(sp);
        let input = fingerprint(sp);
        let prev = match old.ports.remove(&key) {
            Some(prev) if prev.input == input => {
                applied.ports.insert(key, prev);
                continue;
            }
            prev => prev,
        };
        let rules = port_rules(sp, pod_subnet, family);
        changes.diff(prev.as_ref(), Some(&rules));
        applied.ports.insert(key, rules.applied(input));
    }
    for gone in old.ports.values() {
        changes.diff(Some(gone), None);
    }
    Plan {
        text: changes.render(table(family)),
        applied,
    }
}

/// What a partial sync writes, gathered over the ports that changed.
#[derive(Default)]
struct Changes {
    /// Chains to create (they did not exist).
    add_chains: BTreeSet<String>,
    /// Chains that existed and change or go: emptied first.
    flush_chains: BTreeSet<String>,
    delete_chains: BTreeSet<String>,
    /// New and changed chains with their rules.
    fill: BTreeMap<String, Vec<String>>,
    add_sets: BTreeMap<String, String>,
    delete_sets: BTreeSet<String>,
    /// Map → keys to delete.
    delete_elements: BTreeMap<&'static str, Vec<String>>,
    /// Map → `key : verdict` to add.
    add_elements: BTreeMap<&'static str, Vec<String>>,
}

impl Changes {
    /// Adds what turns one port's `old` rules into `new` (None: the port is new, or gone).
    fn diff(&mut self, old: Option<&PortApplied>, new: Option<&PortRules>) {
        let empty_old = PortApplied::default();
        let empty_new = PortRules::default();
        let old = old.unwrap_or(&empty_old);
        let new = new.unwrap_or(&empty_new);
        for (name, rules) in &new.chains {
            match old.chains.get(name) {
                Some(d) if *d == digest(rules) => continue,
                Some(_) => {
                    self.flush_chains.insert(name.clone());
                }
                None => {
                    self.add_chains.insert(name.clone());
                }
            }
            self.fill.insert(name.clone(), rules.clone());
        }
        for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
            self.flush_chains.insert(name.clone());
            self.delete_chains.insert(name.clone());
        }
        for (name, decl) in &new.sets {
            if old.sets.get(name) != Some(decl) {
                self.add_sets.insert(name.clone(), decl.clone());
            }
        }
        for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
            self.delete_sets.insert(name.clone());
        }
        for (map, key, verdict) in &old.elements {
            if !new
                .elements
                .iter()
                .any(|(m, k, v)| m == map && k == key && v == verdict)
            {
                self.delete_elements
                    .entry(*map)
                    .or_default()
                    .push(key.clone());
            }
        }
        for (map, key, verdict) in &new.elements {
            if !old
                .elements
                .iter()
                .any(|(m, k, v)| m == map && k == key && v == verdict)
            {
                self.add_elements
                    .entry(*map)
                    .or_default()
                    .push(format!("{key} : {verdict}"));
            }
        }
    }

    /// The transaction, ordered so that nothing is deleted while something refers to
    /// it: map elements pointing at a chain go before the chain is flushed and deleted,
    /// chains using an affinity set are flushed before the set is deleted.
    fn render(&self, tbl: &str) -> String {
        let mut out = String::new();
        for name in &self.add_chains {
            let _ = writeln!(out, "add chain {tbl} {name}");
        }
        for (name, decl) in &self.add_sets {
            let _ = writeln!(out, "add set {tbl} {name} {{ {decl} }}");
        }
        for (map, keys) in &self.delete_elements {
            let _ = writeln!(out, "delete element {tbl} {map} {{ {} }}", keys.join(", "));
        }
        for name in &self.flush_chains {
            let _ = writeln!(out, "flush chain {tbl} {name}");
        }
        for name in &self.delete_chains {
            let _ = writeln!(out, "delete chain {tbl} {name}");
        }
        for name in &self.delete_sets {
            let _ = writeln!(out, "delete set {tbl} {name}");
        }
        for (name, rules) in &self.fill {
            for rule in rules {
                let _ = writeln!(out, "add rule {tbl} {name} {rule}");
            }
        }
        for (map, elements) in &self.add_elements {
            let _ = writeln!(out, "add element {tbl} {map} {{ {} }}", elements.join(", "));
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
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

    const V4: Family = Family::V4;

    #[test]
    fn golden_full_sync() {
        let text = render_full(&generate(&ports(), "10.244.0.0/16", V4), V4);
        golden("nftables-full.txt", &text);
        // The first sync of a process writes exactly that.
        assert_eq!(plan(&ports(), "10.244.0.0/16", None, V4).text, text);
    }

    #[test]
    fn partial_sync_rewrites_only_what_changed() {
        let before = plan(&ports(), "10.244.0.0/16", None, V4);
        let mut changed = ports();
        changed[1].endpoints.pop();
        let after = plan(&changed, "10.244.0.0/16", Some(before.applied), V4);
        golden("nftables-partial.txt", &after.text);
        // Nothing changed: nothing to write.
        let again = plan(&changed, "10.244.0.0/16", Some(after.applied.clone()), V4);
        assert_eq!(again.text, "");
        assert_eq!(again.applied, after.applied);
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
        let text = render_full(
            &generate(&ports, "fd00:10:244::/56", Family::V6),
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
        // The first sync of the IPv6 plane writes exactly that.
        assert_eq!(
            plan(&ports, "fd00:10:244::/56", None, Family::V6).text,
            text
        );
        // The IPv4 plane proxies the same Service by its IPv4 address only.
        let v4_ports = crate::model::build_family(&[&web], &[&s, &v4], "n1", Family::V4);
        assert_eq!(v4_ports[0].cluster_ip.to_string(), "10.96.0.20");
        assert!(v4_ports[0].endpoints.is_empty());
    }

    /// Services a0..a9 with two endpoints each; `bump` replaces one endpoint of a3.
    fn many(bump: bool) -> Vec<ServicePort> {
        let mut svcs = Vec::new();
        let mut slices = Vec::new();
        for i in 0..10 {
            let name = format!("a{i}");
            svcs.push(service(
                &name,
                json!({"clusterIP": format!("10.96.1.{i}"), "ports": [{"name": "http", "port": 80}]}),
            ));
            let second = if bump && i == 3 { 99 } else { 2 };
            slices.push(slice(
                &name,
                8080,
                json!([
                    {"addresses": [format!("10.244.{i}.1")], "nodeName": "n1", "conditions": {"ready": true}},
                    {"addresses": [format!("10.244.{i}.{second}")], "nodeName": "n1", "conditions": {"ready": true}},
                ]),
            ));
        }
        let svcs: Vec<&_> = svcs.iter().collect();
        let slices: Vec<&_> = slices.iter().collect();
        build(&svcs, &slices, "n1")
    }

    #[test]
    fn partial_sync_touches_only_the_changed_service() {
        let before = plan(&many(false), "10.244.0.0/16", None, V4);
        let after = plan(&many(true), "10.244.0.0/16", Some(before.applied), V4);
        let ours: Vec<String> = many(false)
            .iter()
            .chain(many(true).iter())
            .filter(|sp| sp.name == "default/a3:http")
            .flat_map(|sp| port_rules(sp, "10.244.0.0/16", V4).chains.into_keys())
            .collect();
        assert!(!after.text.is_empty());
        for line in after.text.lines() {
            assert!(
                ours.iter().any(|c| line.contains(c.as_str())),
                "a line about another Service: {line}\n{}",
                after.text
            );
        }
        // The map is not rewritten: a3's element keeps its verdict (its chain's name).
        assert!(!after.text.contains("element"), "{}", after.text);
    }

    /// What `nft -f` makes of our transactions: the table's chains, sets and map
    /// elements, with the kernel's refusals (a missing chain, set or element, a chain
    /// deleted while not empty or still referred to, an element added twice with
    /// another verdict) as panics. A transaction applies whole or not at all.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    struct Kernel {
        /// The table's family (`ip`, `ip6`) once it was added.
        table: Option<String>,
        chains: BTreeMap<String, Vec<String>>,
        sets: BTreeMap<String, String>,
        maps: BTreeMap<String, BTreeMap<String, String>>,
    }

    fn refs(text: &str) -> (Vec<String>, Vec<String>) {
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}')
            .filter(|w| !w.is_empty())
            .collect();
        let chains = words
            .windows(2)
            .filter(|w| w[0] == "goto" || w[0] == "jump")
            .map(|w| w[1].to_string())
            .collect();
        let sets = words
            .iter()
            .filter_map(|w| w.strip_prefix('@'))
            .map(str::to_string)
            .collect();
        (chains, sets)
    }

    impl Kernel {
        fn apply(&self, text: &str) -> Kernel {
            let mut k = self.clone();
            for line in text.lines() {
                k.command(line);
            }
            k
        }

        fn referenced(&self, chain: &str) -> bool {
            self.chains
                .values()
                .flatten()
                .chain(self.maps.values().flat_map(|m| m.values()))
                .any(|r| refs(r).0.iter().any(|c| c == chain))
        }

        fn command(&mut self, line: &str) {
            let (head, rest) = line.split_once(" rind-proxy").expect(line);
            let (verb, family) = head.rsplit_once(' ').expect(line);
            let rest = rest.trim();
            let (name, body) = rest.split_once(' ').unwrap_or((rest, ""));
            let inner = || {
                body.trim()
                    .trim_start_matches('{')
                    .trim_end_matches('}')
                    .trim()
                    .to_string()
            };
            if verb == "add table" && self.table.is_none() {
                self.table = Some(family.to_string());
                return;
            }
            // One plane's transaction names its own family's table only.
            assert_eq!(self.table.as_deref(), Some(family), "no such table: {line}");
            if verb == "add table" {
                return;
            }
            match verb {
                "delete table" => *self = Kernel::default(),
                "add chain" => {
                    self.chains.entry(name.into()).or_default();
                }
                "add map" => {
                    self.maps.entry(name.into()).or_default();
                }
                "add set" => {
                    let decl = inner();
                    let old = self.sets.insert(name.into(), decl.clone());
                    assert!(old.is_none() || old == Some(decl), "set redeclared: {line}");
                }
                "flush map" => self.maps.get_mut(name).expect(line).clear(),
                "flush chain" => self.chains.get_mut(name).expect(line).clear(),
                "delete chain" => {
                    assert!(self.chains[name].is_empty(), "not empty: {line}");
                    assert!(!self.referenced(name), "still referred to: {line}");
                    self.chains.remove(name);
                }
                "delete set" => {
                    let used = self
                        .chains
                        .values()
                        .flatten()
                        .any(|r| refs(r).1.iter().any(|s| s == name));
                    assert!(!used, "still referred to: {line}");
                    self.sets.remove(name).expect(line);
                }
                "add rule" => {
                    let (chains, sets) = refs(body);
                    for c in chains {
                        assert!(self.chains.contains_key(&c), "no chain {c}: {line}");
                    }
                    for s in sets {
                        assert!(
                            self.sets.contains_key(&s) || self.maps.contains_key(&s),
                            "no set {s}: {line}"
                        );
                    }
                    self.chains
                        .get_mut(name)
                        .expect(line)
                        .push(body.to_string());
                }
                "add element" => {
                    for element in inner().split(", ") {
                        let (key, verdict) = element.split_once(" : ").expect(line);
                        for c in refs(verdict).0 {
                            assert!(self.chains.contains_key(&c), "no chain {c}: {line}");
                        }
                        let map = self.maps.get_mut(name).expect(line);
                        let old = map.insert(key.into(), verdict.into());
                        assert!(
                            old.is_none() || old.as_deref() == Some(verdict),
                            "clash: {line}"
                        );
                    }
                }
                "delete element" => {
                    for key in inner().split(", ") {
                        self.maps
                            .get_mut(name)
                            .expect(line)
                            .remove(key)
                            .expect(line);
                    }
                }
                _ => panic!("unknown command: {line}"),
            }
        }
    }

    /// A sequence of states a cluster goes through, each as Service ports.
    pub(crate) fn steps() -> Vec<Vec<ServicePort>> {
        let web = |timeout: u32, extra: serde_json::Value| {
            let mut spec = json!({"clusterIP": "10.96.0.20", "type": "NodePort", "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": timeout}},
                "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            service("web", spec)
        };
        let empty = service(
            "empty",
            json!({"clusterIP": "10.96.0.30", "ports": [{"name": "http", "port": 80}]}),
        );
        let eps = |ips: &[(&str, &str, bool)]| {
            let list: Vec<serde_json::Value> = ips
                .iter()
                .map(|(ip, node, ready)| json!({"addresses": [ip], "nodeName": node, "conditions": {"ready": ready}}))
                .collect();
            serde_json::Value::Array(list)
        };
        let two = eps(&[("10.244.0.5", "n1", true), ("10.244.0.6", "n2", true)]);
        let one = eps(&[("10.244.0.5", "n1", true)]);
        let remote = eps(&[("10.244.0.6", "n2", true)]);
        let none = eps(&[("10.244.0.6", "n2", false)]);
        let local = json!({"externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local", "externalIPs": ["192.0.2.9"]});
        vec![
            build(
                &[&web(60, json!({})), &empty],
                &[&slice("web", 8080, two.clone())],
                "n1",
            ),
            // An endpoint leaves.
            build(
                &[&web(60, json!({})), &empty],
                &[&slice("web", 8080, one.clone())],
                "n1",
            ),
            // The empty Service gets one; the affinity timeout (in the sets' names) changes.
            build(
                &[&web(90, json!({})), &empty],
                &[
                    &slice("web", 8080, two.clone()),
                    &slice("empty", 9090, one.clone()),
                ],
                "n1",
            ),
            // Local traffic policies with only a remote endpoint: drops.
            build(
                &[&web(90, local.clone()), &empty],
                &[&slice("web", 8080, remote)],
                "n1",
            ),
            // No ready endpoint at all: refusals.
            build(
                &[&web(90, local), &empty],
                &[&slice("web", 8080, none)],
                "n1",
            ),
            // A Service goes away.
            build(&[&empty], &[&slice("empty", 9090, one)], "n1"),
            // And everything comes back.
            build(
                &[&web(60, json!({})), &empty],
                &[&slice("web", 8080, two)],
                "n1",
            ),
            vec![],
        ]
    }

    /// The same steps on the IPv6 plane: every address `10.x.y.z` (and the example
    /// external IP) moved into `fd00::/64` with the same last three bytes.
    pub(crate) fn steps_v6() -> Vec<Vec<ServicePort>> {
        use std::net::{IpAddr, Ipv6Addr};
        let v6 = |ip: &mut IpAddr| {
            if let IpAddr::V4(v4) = *ip {
                let [_, a, b, c] = v4.octets();
                *ip = IpAddr::V6(Ipv6Addr::new(
                    0xfd00,
                    0,
                    0,
                    0,
                    0,
                    a.into(),
                    b.into(),
                    c.into(),
                ));
            }
        };
        let mut steps = steps();
        for sp in steps.iter_mut().flatten() {
            v6(&mut sp.cluster_ip);
            sp.external_ips.iter_mut().for_each(v6);
            sp.endpoints.iter_mut().for_each(|ep| v6(&mut ep.ip));
        }
        steps
    }

    #[test]
    fn partial_syncs_end_where_full_syncs_do() {
        for (family, subnet, steps) in [
            (Family::V4, "10.244.0.0/16", steps()),
            (Family::V6, "fd00::/64", steps_v6()),
        ] {
            partial_syncs_end_where_full_syncs_do_in(family, subnet, &steps);
        }
    }

    fn partial_syncs_end_where_full_syncs_do_in(
        family: Family,
        subnet: &str,
        steps: &[Vec<ServicePort>],
    ) {
        let first = plan(&steps[0], subnet, None, family);
        if family == Family::V6 {
            assert!(first.text.contains("ip6 rind-proxy"), "{}", first.text);
            assert!(first.text.contains("dnat to [fd00::"), "{}", first.text);
        }
        let mut kernel = Kernel::default().apply(&first.text);
        let mut applied = first.applied;
        for (i, ports) in steps.iter().enumerate().skip(1) {
            let partial = plan(ports, subnet, Some(applied), family);
            kernel = kernel.apply(&partial.text);
            let full = plan(ports, subnet, None, family);
            assert_eq!(partial.applied, full.applied, "step {i}");
            assert_eq!(kernel, Kernel::default().apply(&full.text), "step {i}");
            // A full sync over what the partial ones left gives the same too.
            assert_eq!(kernel.apply(&full.text), kernel, "step {i}");
            applied = partial.applied;
        }
    }
}
