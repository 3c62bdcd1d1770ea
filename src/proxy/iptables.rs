//! The `iptables` mode: our own chains in the `nat` and `filter` tables, written with
//! one `iptables-restore --noflush` per sync (as kube-proxy does). A chain named in
//! the input is flushed and refilled by the same transaction; chains not named are
//! left as they are, so a sync rewrites only the Services that changed (and the
//! shared dispatch chains when a Service's part of them changed), and the kernel sees
//! every change at once. The IPv6 plane of a dual-stack node writes the same chains
//! with `ip6tables-restore`.

use crate::model::{Endpoint, Family, ServicePort, digest, fingerprint, host_port};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// The mark bit that asks for masquerading on the way out (kube-proxy's bit).
pub const MASQ_MARK: &str = "0x4000";

pub const SERVICES: &str = "RIND-SERVICES";
pub const NODEPORTS: &str = "RIND-NODEPORTS";
pub const POSTROUTING: &str = "RIND-POSTROUTING";
pub const MARK_MASQ: &str = "RIND-MARK-MASQ";
pub const FILTER: &str = "RIND-FILTER";

/// Chain name → its rules (the text after `-A CHAIN`), per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub filter: BTreeMap<String, Vec<String>>,
    pub nat: BTreeMap<String, Vec<String>>,
}

/// The rules of one Service port: the nat chains that are its own (their names hash
/// the port's name) and its rules in the shared chains. A sync regenerates this only
/// for the ports whose Service or endpoints changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortRules {
    pub nat: BTreeMap<String, Vec<String>>,
    /// Its rules in RIND-SERVICES (cluster IP, external IPs).
    pub services: Vec<String>,
    /// Its rules in RIND-NODEPORTS.
    pub nodeports: Vec<String>,
    /// Its refusals in RIND-FILTER.
    pub rejects: Vec<String>,
}

/// Every chain of the proxy for these Service ports.
pub fn generate(ports: &[ServicePort], pod_subnet: &str, family: Family) -> Tables {
    let rules: Vec<PortRules> = ports
        .iter()
        .map(|sp| port_rules(sp, pod_subnet, family))
        .collect();
    let mut tables = shared_chains(rules.iter(), family);
    for port in &rules {
        for (name, chain) in &port.nat {
            tables.nat.insert(name.clone(), chain.clone());
        }
    }
    tables
}

/// The chains every port has rules in (and the fixed ones), from each port's rules in
/// the order of the ports.
fn shared_chains<'a>(ports: impl Iterator<Item = &'a PortRules>, family: Family) -> Tables {
    let mut services = Vec::new();
    let mut nodeports = Vec::new();
    let mut rejects = Vec::new();
    for port in ports {
        services.extend(port.services.iter().cloned());
        nodeports.extend(port.nodeports.iter().cloned());
        rejects.extend(port.rejects.iter().cloned());
    }
    let mut filter: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut nat: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Last in the chain, after every cluster IP: anything to one of the node's own
    // addresses may be a node port (not 127.0.0.0/8: node ports on localhost would
    // need route_localnet, which upstream's nftables mode no longer offers either).
    services.push(format!(
        "-m comment --comment \"rind service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d {} -j {NODEPORTS}",
        family.loopback()
    ));
    nat.insert(SERVICES.into(), services);
    nat.insert(NODEPORTS.into(), nodeports);
    nat.insert(
        MARK_MASQ.into(),
        vec![format!("-j MARK --or-mark {MASQ_MARK}")],
    );
    nat.insert(
        POSTROUTING.into(),
        vec![
            format!("-m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
            // Cleared so a packet that comes back through the stack is not
            // masqueraded twice.
            format!("-j MARK --xor-mark {MASQ_MARK}"),
            "-m comment --comment \"rind service traffic requiring SNAT\" -j MASQUERADE --random-fully".into(),
        ],
    );
    filter.insert(FILTER.into(), rejects);
    Tables { filter, nat }
}

/// The rules of one Service port.
pub fn port_rules(sp: &ServicePort, pod_subnet: &str, family: Family) -> PortRules {
    let host = family.host_bits();
    let unreachable = format!("REJECT --reject-with {}", family.port_unreachable());
    let mut nat: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut services = Vec::new();
    let mut nodeports = Vec::new();
    let mut rejects = Vec::new();
    let ids = sp.ids();
    let svc_chain = format!("RIND-SVC-{}", ids.service);
    let svl_chain = format!("RIND-SVL-{}", ids.service);
    let ext_chain = format!("RIND-EXT-{}", ids.service);
    let proto = sp.protocol.lower();
    let dest = format!(
        "-d {}/{host} -p {proto} -m {proto} --dport {}",
        sp.cluster_ip, sp.port
    );
    let cluster = sp.cluster_endpoints();
    let local = sp.local_endpoints();
    // The balancing chains, made only when something jumps to them.
    let mut want_svc = false;
    let mut want_svl = false;
    if sp.internal_endpoints().is_empty() {
        // No endpoint for traffic to the cluster IP: refused at once, as
        // upstream does (dropped when only the node-local ones were eligible).
        let (why, target) = if sp.internal_local && !cluster.is_empty() {
            ("has no local endpoints", "DROP")
        } else {
            ("has no endpoints", unreachable.as_str())
        };
        rejects.push(format!(
            "{dest} -m comment --comment \"{} cluster IP {why}\" -j {target}",
            sp.name
        ));
    } else {
        let target = if sp.internal_local {
            want_svl = true;
            &svl_chain
        } else {
            want_svc = true;
            &svc_chain
        };
        services.push(format!(
            "{dest} -m comment --comment \"{} cluster IP\" -j {target}",
            sp.name
        ));
    }
    if sp.node_port.is_some() || !sp.external_ips.is_empty() {
        if sp.external_endpoints().is_empty() {
            let (why, target) = if sp.external_local && !cluster.is_empty() {
                ("has no local endpoints", "DROP")
            } else {
                ("has no endpoints", unreachable.as_str())
            };
            if let Some(node_port) = sp.node_port {
                rejects.push(format!(
                    "-m addrtype --dst-type LOCAL -p {proto} -m {proto} --dport {node_port} -m comment --comment \"{} node port {why}\" -j {target}",
                    sp.name
                ));
            }
            for ip in &sp.external_ips {
                rejects.push(format!(
                    "-d {ip}/{host} -p {proto} -m {proto} --dport {} -m comment --comment \"{} external IP {why}\" -j {target}",
                    sp.port, sp.name
                ));
            }
        }
        let mut ext = Vec::new();
        if sp.external_local {
            // Pods calling a node port are not "external": they may use any
            // endpoint, as may the node itself (masqueraded, so replies return).
            if !cluster.is_empty() {
                want_svc = true;
                ext.push(format!(
                    "-s {pod_subnet} -m comment --comment \"pod traffic for {} external destinations\" -j {svc_chain}",
                    sp.name
                ));
                ext.push(format!(
                    "-m addrtype --src-type LOCAL -m comment --comment \"masquerade LOCAL traffic for {} external destinations\" -j {MARK_MASQ}",
                    sp.name
                ));
                ext.push(format!(
                    "-m addrtype --src-type LOCAL -m comment --comment \"route LOCAL traffic for {} external destinations\" -j {svc_chain}",
                    sp.name
                ));
            }
            // Traffic from outside keeps its source address (the point of
            // `Local`): no masquerade, only this node's endpoints.
            if !local.is_empty() {
                want_svl = true;
                ext.push(format!("-j {svl_chain}"));
            }
        } else if !cluster.is_empty() {
            // From outside to any node: masqueraded, so replies come back here.
            want_svc = true;
            ext.push(format!(
                "-m comment --comment \"masquerade traffic for {} external destinations\" -j {MARK_MASQ}",
                sp.name
            ));
            ext.push(format!("-j {svc_chain}"));
        }
        if !ext.is_empty() {
            if let Some(node_port) = sp.node_port {
                nodeports.push(format!(
                    "-p {proto} -m {proto} --dport {node_port} -m comment --comment \"{}\" -j {ext_chain}",
                    sp.name
                ));
            }
            for ip in &sp.external_ips {
                services.push(format!(
                    "-d {ip}/{host} -p {proto} -m {proto} --dport {} -m comment --comment \"{} external IP\" -j {ext_chain}",
                    sp.port, sp.name
                ));
            }
            nat.insert(ext_chain, ext);
        }
    }
    let mut sep_needed: Vec<&Endpoint> = Vec::new();
    if want_svc {
        nat.insert(svc_chain.clone(), balance(sp, &cluster, pod_subnet, &dest));
        sep_needed.extend(cluster.iter().copied());
    }
    if want_svl {
        nat.insert(svl_chain.clone(), balance(sp, &local, pod_subnet, &dest));
        sep_needed.extend(local.iter().copied());
    }
    for ep in sep_needed {
        let chain = format!("RIND-SEP-{}", sp.endpoint_id(ep));
        if nat.contains_key(&chain) {
            continue;
        }
        let mut rules = vec![format!(
            // Hairpin: a pod reaching itself through its Service would see its
            // own address as the source and answer itself directly.
            "-s {}/{host} -m comment --comment \"{}\" -j {MARK_MASQ}",
            ep.ip, sp.name
        )];
        let recent = match sp.affinity {
            Some(_) => format!(
                "-m recent --name {chain} --mask {} --rsource --set ",
                family.full_mask()
            ),
            None => String::new(),
        };
        rules.push(format!(
            "-p {proto} -m comment --comment \"{}\" {recent}-m {proto} -j DNAT --to-destination {}",
            sp.name,
            host_port(&ep.ip, ep.port)
        ));
        nat.insert(chain, rules);
    }
    PortRules {
        nat,
        services,
        nodeports,
        rejects,
    }
}

/// A balancing chain: masquerade for callers outside the pod network, then the
/// affinity checks, then a random pick among `eps` with equal chances.
fn balance(sp: &ServicePort, eps: &[&Endpoint], pod_subnet: &str, dest: &str) -> Vec<String> {
    let mut rules = vec![format!(
        // Callers outside the pod network (the node itself, host-network pods) are
        // masqueraded so the endpoint's reply comes back through this node.
        "! -s {pod_subnet} {dest} -m comment --comment \"{} cluster IP\" -j {MARK_MASQ}",
        sp.name
    )];
    if let Some(seconds) = sp.affinity {
        for ep in eps {
            let sep = format!("RIND-SEP-{}", sp.endpoint_id(ep));
            rules.push(format!(
                "-m comment --comment \"{} -> {}:{}\" -m recent --name {sep} --rcheck --seconds {seconds} --reap -j {sep}",
                sp.name, ep.ip, ep.port
            ));
        }
    }
    let n = eps.len();
    for (i, ep) in eps.iter().enumerate() {
        let sep = format!("RIND-SEP-{}", sp.endpoint_id(ep));
        let comment = format!(
            "-m comment --comment \"{} -> {}:{}\"",
            sp.name, ep.ip, ep.port
        );
        if i + 1 < n {
            // Each rule takes its share of what the rules before it left over.
            let p = 1.0 / (n - i) as f64;
            rules.push(format!(
                "{comment} -m statistic --mode random --probability {p:.10} -j {sep}"
            ));
        } else {
            rules.push(format!("{comment} -j {sep}"));
        }
    }
    rules
}

/// The jumps from the built-in chains into ours, as `(table, chain, rule)`. A full sync
/// inserts those `iptables-save` does not show (`missing_hooks`, `with_hooks`) at the
/// head of their chain, in the same restore; appending them at every sync would add a
/// copy each time.
pub fn hooks() -> Vec<(&'static str, &'static str, Vec<String>)> {
    let jump = |chain: &str, comment: &str| -> Vec<String> {
        ["-m", "comment", "--comment", comment, "-j", chain]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let new_only = |chain: &str, comment: &str| -> Vec<String> {
        let mut rule: Vec<String> = ["-m", "conntrack", "--ctstate", "NEW"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        rule.extend(jump(chain, comment));
        rule
    };
    vec![
        // Traffic arriving (from pods, or from outside to a node port).
        ("nat", "PREROUTING", jump(SERVICES, "rind service portals")),
        // Traffic the node itself sends (host-network pods, the node's processes).
        ("nat", "OUTPUT", jump(SERVICES, "rind service portals")),
        (
            "nat",
            "POSTROUTING",
            jump(POSTROUTING, "rind postrouting rules"),
        ),
        // Refusals of Services without endpoints, for new connections only.
        ("filter", "INPUT", new_only(FILTER, "rind service refusals")),
        (
            "filter",
            "FORWARD",
            new_only(FILTER, "rind service refusals"),
        ),
        (
            "filter",
            "OUTPUT",
            new_only(FILTER, "rind service refusals"),
        ),
    ]
}

/// The hooks that `filter_save` and `nat_save` (`iptables-save -t TABLE` output) do
/// not show: no rule of the hook's chain has its comment and its jump.
pub fn missing_hooks(
    filter_save: &str,
    nat_save: &str,
) -> Vec<(&'static str, &'static str, Vec<String>)> {
    hooks()
        .into_iter()
        .filter(|(table, chain, rule)| {
            let save = if *table == "nat" {
                nat_save
            } else {
                filter_save
            };
            let after = |flag: &str| {
                rule.iter()
                    .position(|a| a == flag)
                    .and_then(|i| rule.get(i + 1))
                    .map(String::as_str)
                    .unwrap_or_default()
            };
            let (comment, target) = (after("--comment"), after("-j"));
            // iptables-save quotes a comment with spaces, and only then.
            let quoted = format!("--comment \"{comment}\" ");
            let bare = format!("--comment {comment} ");
            let jump = format!(" -j {target}");
            !save.lines().any(|line| {
                line.strip_prefix("-A ")
                    .and_then(|l| l.strip_prefix(*chain))
                    .is_some_and(|l| l.starts_with(' '))
                    && (line.contains(&quoted) || line.contains(&bare))
                    && line.trim_end().ends_with(&jump)
            })
        })
        .collect()
}

/// `text` (an `iptables-restore --noflush` input) with `hooks` inserted at the head of
/// their chains, in their table's transaction (one is added for a table `text` leaves
/// alone). Our chains are declared before, so the jumps find their targets.
pub fn with_hooks(text: &str, hooks: &[(&'static str, &'static str, Vec<String>)]) -> String {
    let insert = |table: &str| -> String {
        hooks
            .iter()
            .filter(|(t, _, _)| *t == table)
            .map(|(_, chain, rule)| {
                let args: Vec<String> = rule
                    .iter()
                    .map(|a| {
                        if a.contains(' ') {
                            format!("\"{a}\"")
                        } else {
                            a.clone()
                        }
                    })
                    .collect();
                format!("-I {chain} 1 {}\n", args.join(" "))
            })
            .collect()
    };
    let mut out = String::new();
    let mut table = None;
    let mut done = BTreeSet::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = Some(name.to_string());
        } else if line == "COMMIT"
            && let Some(name) = table.take()
        {
            out.push_str(&insert(&name));
            done.insert(name);
        }
        out.push_str(line);
        out.push('\n');
    }
    for name in ["filter", "nat"] {
        let lines = insert(name);
        if !done.contains(name) && !lines.is_empty() {
            let _ = write!(out, "*{name}\n{lines}COMMIT\n");
        }
    }
    out
}

/// The `iptables-restore --noflush` input that turns `old` (what the kernel holds;
/// a chain with unknown rules is listed with `None`) into `new`: changed and new
/// chains are declared (which flushes them) and refilled, vanished ones deleted,
/// unchanged ones not mentioned at all.
pub fn render(new: &Tables, old: &Known) -> String {
    let delta = |chains: &BTreeMap<String, Vec<String>>, old: &BTreeMap<String, Option<u64>>| {
        let mut d = Delta::default();
        for (name, rules) in chains {
            if old.get(name) != Some(&Some(digest(rules))) {
                d.write.insert(name.clone(), rules.clone());
            }
        }
        for name in old.keys().filter(|n| !chains.contains_key(*n)) {
            d.delete.insert(name.clone());
        }
        d
    };
    render_delta(&delta(&new.filter, &old.filter), &delta(&new.nat, &old.nat))
}

/// The chains of one table a sync writes (declared, which flushes them, and refilled)
/// and deletes.
#[derive(Clone, Debug, Default)]
pub struct Delta {
    pub write: BTreeMap<String, Vec<String>>,
    pub delete: BTreeSet<String>,
}

/// One `iptables-restore --noflush` input for these changes of the filter and nat
/// tables; empty when there are none.
pub fn render_delta(filter: &Delta, nat: &Delta) -> String {
    let mut out = String::new();
    for (table, d) in [("filter", filter), ("nat", nat)] {
        if d.write.is_empty() && d.delete.is_empty() {
            continue;
        }
        let _ = writeln!(out, "*{table}");
        // A chain to delete is declared too, which flushes it: rules of other chains
        // jumping to it are rewritten in this transaction, its own are gone, so the
        // -X below finds it unreferenced and empty.
        for name in d.write.keys().chain(d.delete.iter()) {
            let _ = writeln!(out, ":{name} - [0:0]");
        }
        for (name, rules) in &d.write {
            for rule in rules {
                let _ = writeln!(out, "-A {name} {rule}");
            }
        }
        for name in &d.delete {
            let _ = writeln!(out, "-X {name}");
        }
        let _ = writeln!(out, "COMMIT");
    }
    out
}

/// What the kernel holds of one Service port after a sync, as the next sync needs it
/// to write only what changed: a fingerprint of the port it was generated from, the
/// digest of each of its own chains (not their text), and its rules in the shared
/// chains (which are rebuilt from these when a port's part of them changes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortApplied {
    pub input: u64,
    pub nat: BTreeMap<String, u64>,
    pub services: Vec<String>,
    pub nodeports: Vec<String>,
    pub rejects: Vec<String>,
}

/// What the kernel holds after a sync: each Service port's part (keyed by name and
/// protocol) and the digests of the shared chains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub ports: BTreeMap<(String, &'static str), PortApplied>,
    pub filter: BTreeMap<String, u64>,
    pub nat: BTreeMap<String, u64>,
}

impl PortRules {
    fn applied(self, input: u64) -> PortApplied {
        PortApplied {
            input,
            nat: self
                .nat
                .iter()
                .map(|(k, v)| (k.clone(), digest(v)))
                .collect(),
            services: self.services,
            nodeports: self.nodeports,
            rejects: self.rejects,
        }
    }
}

impl Applied {
    /// Every chain this sync left in the kernel, with its digest: what a full sync would
    /// find, for the tests (the dataplane reads `iptables-save` instead).
    #[cfg(test)]
    pub fn known(&self) -> Known {
        let mut known = Known {
            filter: self
                .filter
                .iter()
                .map(|(k, v)| (k.clone(), Some(*v)))
                .collect(),
            nat: self
                .nat
                .iter()
                .map(|(k, v)| (k.clone(), Some(*v)))
                .collect(),
        };
        for port in self.ports.values() {
            known
                .nat
                .extend(port.nat.iter().map(|(k, v)| (k.clone(), Some(*v))));
        }
        known
    }

    fn record_shared(&mut self, shared: &Tables) {
        let digests = |m: &BTreeMap<String, Vec<String>>| {
            m.iter()
                .map(|(k, v)| (k.clone(), digest(v)))
                .collect::<BTreeMap<_, _>>()
        };
        self.filter = digests(&shared.filter);
        self.nat = digests(&shared.nat);
    }
}

/// One sync: the `iptables-restore --noflush` input (empty when nothing changed) and
/// what the kernel holds once it is committed.
pub struct Plan {
    pub text: String,
    pub applied: Applied,
}

fn port_key(sp: &ServicePort) -> (String, &'static str) {
    (sp.name.clone(), sp.protocol.lower())
}

/// A full sync: every chain written, whatever `known` says their rules are, and the
/// chains of ours that `known` lists but these ports do not have deleted.
pub fn plan_full(ports: &[ServicePort], pod_subnet: &str, known: &Known, family: Family) -> Plan {
    let rules: Vec<PortRules> = ports
        .iter()
        .map(|sp| port_rules(sp, pod_subnet, family))
        .collect();
    let mut tables = shared_chains(rules.iter(), family);
    let mut applied = Applied::default();
    applied.record_shared(&tables);
    for port in &rules {
        for (name, chain) in &port.nat {
            tables.nat.insert(name.clone(), chain.clone());
        }
    }
    let mut known = known.clone();
    known.forget_rules();
    let text = render(&tables, &known);
    for (sp, r) in ports.iter().zip(rules) {
        applied
            .ports
            .insert(port_key(sp), r.applied(fingerprint(sp)));
    }
    Plan { text, applied }
}

/// A partial sync from `old`: only the ports whose fingerprint changed are
/// regenerated; their own chains are written or deleted, and the shared chains
/// (RIND-SERVICES, RIND-NODEPORTS, RIND-FILTER) are rewritten only when some port's
/// part of them changed. The text for the Services that did not change is never made.
pub fn plan_partial(
    ports: &[ServicePort],
    pod_subnet: &str,
    mut old: Applied,
    family: Family,
) -> Plan {
    let mut applied = Applied::default();
    let mut nat = Delta::default();
    let mut shared_dirty = false;
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
        let empty = PortApplied::default();
        let prev = prev.as_ref().unwrap_or(&empty);
        for (name, chain) in &rules.nat {
            if prev.nat.get(name) != Some(&digest(chain)) {
                nat.write.insert(name.clone(), chain.clone());
            }
        }
        for name in prev.nat.keys().filter(|n| !rules.nat.contains_key(*n)) {
            nat.delete.insert(name.clone());
        }
        shared_dirty |= prev.services != rules.services
            || prev.nodeports != rules.nodeports
            || prev.rejects != rules.rejects;
        applied.ports.insert(key, rules.applied(input));
    }
    for gone in old.ports.values() {
        nat.delete.extend(gone.nat.keys().cloned());
        shared_dirty = true;
    }
    let mut filter = Delta::default();
    if shared_dirty {
        // In the order of the ports, as a full sync writes them.
        let parts = ports.iter().filter_map(|sp| {
            applied.ports.get(&port_key(sp)).map(|p| PortRules {
                nat: BTreeMap::new(),
                services: p.services.clone(),
                nodeports: p.nodeports.clone(),
                rejects: p.rejects.clone(),
            })
        });
        let parts: Vec<PortRules> = parts.collect();
        let shared = shared_chains(parts.iter(), family);
        for (chains, digests, delta) in [
            (&shared.filter, &old.filter, &mut filter),
            (&shared.nat, &old.nat, &mut nat),
        ] {
            for (name, rules) in chains {
                if digests.get(name) != Some(&digest(rules)) {
                    delta.write.insert(name.clone(), rules.clone());
                }
            }
        }
        applied.record_shared(&shared);
    } else {
        applied.filter = old.filter;
        applied.nat = old.nat;
    }
    Plan {
        text: render_delta(&filter, &nat),
        applied,
    }
}

/// What the kernel holds of our chains: the digest of their rules as we wrote them,
/// or `None` for chains found in the kernel at start whose rules we did not write.
#[derive(Clone, Debug, Default)]
pub struct Known {
    pub filter: BTreeMap<String, Option<u64>>,
    pub nat: BTreeMap<String, Option<u64>>,
}

impl Known {
    pub fn from_tables(t: &Tables) -> Known {
        let wrap = |m: &BTreeMap<String, Vec<String>>| {
            m.iter()
                .map(|(k, v)| (k.clone(), Some(digest(v))))
                .collect()
        };
        Known {
            filter: wrap(&t.filter),
            nat: wrap(&t.nat),
        }
    }

    /// Our chains in `iptables-save` output of one table, contents unknown.
    pub fn parse_save(text: &str) -> BTreeMap<String, Option<u64>> {
        text.lines()
            .filter_map(|l| l.strip_prefix(':'))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| name.starts_with("RIND-"))
            .map(|name| (name.to_string(), None))
            .collect()
    }

    /// Forgets every chain's rules, so the next render rewrites them all (a full
    /// resync) while still knowing which chains exist.
    pub fn forget_rules(&mut self) {
        for v in self.filter.values_mut().chain(self.nat.values_mut()) {
            *v = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build;
    use crate::model::tests::{golden, service, slice};
    use serde_json::json;

    /// What `iptables-save -t nat` and `-t filter` print with every hook in place (as
    /// read off a node).
    const NAT_SAVE: &str = "*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:RIND-SERVICES - [0:0]
-A PREROUTING -m comment --comment \"rind service portals\" -j RIND-SERVICES
-A PREROUTING -d 172.28.0.1/32 -j DOCKER_OUTPUT
-A OUTPUT -m comment --comment \"rind service portals\" -j RIND-SERVICES
-A POSTROUTING -m comment --comment \"rind postrouting rules\" -j RIND-POSTROUTING
COMMIT
";
    const FILTER_SAVE: &str = "*filter
:INPUT ACCEPT [0:0]
:RIND-FILTER - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment \"rind service refusals\" -j RIND-FILTER
-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"rind service refusals\" -j RIND-FILTER
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"rind service refusals\" -j RIND-FILTER
COMMIT
";

    #[test]
    fn hooks_in_place_are_not_inserted_again() {
        assert!(missing_hooks(FILTER_SAVE, NAT_SAVE).is_empty());
        assert_eq!(with_hooks("", &missing_hooks(FILTER_SAVE, NAT_SAVE)), "");
    }

    #[test]
    fn missing_hooks_go_into_their_tables_transaction() {
        // A fresh node: nothing of ours; one hook removed by hand on another.
        let all = missing_hooks("*filter\nCOMMIT\n", "*nat\nCOMMIT\n");
        assert_eq!(all.len(), hooks().len());
        let nat_without_output = NAT_SAVE.replace(
            "-A OUTPUT -m comment --comment \"rind service portals\" -j RIND-SERVICES\n",
            "",
        );
        let missing = missing_hooks(FILTER_SAVE, &nat_without_output);
        assert_eq!(
            missing.iter().map(|(t, c, _)| (*t, *c)).collect::<Vec<_>>(),
            [("nat", "OUTPUT")]
        );
        // The restore's nat transaction gets it before its COMMIT; the filter one, which
        // needs none, is left as it was.
        let text = "*filter\n:RIND-FILTER - [0:0]\nCOMMIT\n*nat\n:RIND-SERVICES - [0:0]\nCOMMIT\n";
        assert_eq!(
            with_hooks(text, &missing),
            "*filter\n:RIND-FILTER - [0:0]\nCOMMIT\n*nat\n:RIND-SERVICES - [0:0]\n\
             -I OUTPUT 1 -m comment --comment \"rind service portals\" -j RIND-SERVICES\nCOMMIT\n"
        );
        // A restore that leaves the table alone gets a transaction of its own.
        assert_eq!(
            with_hooks("", &missing),
            "*nat\n-I OUTPUT 1 -m comment --comment \"rind service portals\" -j RIND-SERVICES\nCOMMIT\n"
        );
        let fresh = with_hooks("", &all);
        assert!(fresh.starts_with("*filter\n-I INPUT 1 -m conntrack --ctstate NEW -m comment --comment \"rind service refusals\" -j RIND-FILTER\n"), "{fresh}");
    }

    #[test]
    fn a_rule_of_another_chain_or_target_is_not_the_hook() {
        let elsewhere = "-A FORWARD -m comment --comment \"rind service portals\" -j RIND-SERVICES\n\
                         -A PREROUTING -m comment --comment \"rind service portals\" -j OTHER\n\
                         -A PREROUTINGX -m comment --comment \"rind service portals\" -j RIND-SERVICES\n";
        let missing = missing_hooks(FILTER_SAVE, elsewhere);
        assert!(
            missing
                .iter()
                .any(|(t, c, _)| (*t, *c) == ("nat", "PREROUTING")),
            "{missing:?}"
        );
    }

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
        let tables = generate(&ports(), "10.244.0.0/16", V4);
        let text = render(&tables, &Known::default());
        golden("iptables-full.txt", &text);
        // The first sync of a process writes exactly that.
        assert_eq!(
            plan_full(&ports(), "10.244.0.0/16", &Known::default(), V4).text,
            text
        );
    }

    #[test]
    fn partial_sync_touches_only_what_changed() {
        let before = plan_full(&ports(), "10.244.0.0/16", &Known::default(), V4);
        let mut changed = ports();
        // The second endpoint leaves.
        changed[1].endpoints.pop();
        let after = plan_partial(&changed, "10.244.0.0/16", before.applied, V4);
        golden("iptables-partial.txt", &after.text);
        // Nothing changed: nothing to write.
        let again = plan_partial(&changed, "10.244.0.0/16", after.applied.clone(), V4);
        assert_eq!(again.text, "");
        assert_eq!(again.applied, after.applied);
    }

    #[test]
    fn ipv6_plane_writes_ipv6_addresses() {
        let web = service(
            "web",
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00:10:96::20"],
                   "ipFamilies": ["IPv4", "IPv6"], "type": "NodePort", "sessionAffinity": "ClientIP",
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        );
        let mut s = slice(
            "web",
            8080,
            json!([{"addresses": ["fd00:10:244:1::5"], "nodeName": "n1", "conditions": {"ready": true}}]),
        );
        s.address_type = "IPv6".into();
        let ports = crate::model::build_family(&[&web], &[&s], "n1", Family::V6);
        let text = render(
            &generate(&ports, "fd00:10:244::/56", Family::V6),
            &Known::default(),
        );
        assert!(
            text.contains("-d fd00:10:96::20/128 -p tcp -m tcp --dport 80"),
            "{text}"
        );
        assert!(
            text.contains("--to-destination [fd00:10:244:1::5]:8080"),
            "{text}"
        );
        assert!(text.contains("-s fd00:10:244:1::5/128 "), "{text}");
        assert!(
            text.contains("--mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            "{text}"
        );
        assert!(text.contains("! -d ::1/128 -j RIND-NODEPORTS"), "{text}");
        assert!(!text.contains("/32"), "{text}");
        // The first sync of the IPv6 plane writes exactly that.
        let full = plan_full(&ports, "fd00:10:244::/56", &Known::default(), Family::V6);
        assert_eq!(full.text, text);
    }

    /// What `iptables-restore --noflush` makes of our input: each table's chains, with
    /// its refusals (a jump to a missing chain, deleting a chain that is not empty or
    /// still jumped to) as panics.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    struct Kernel {
        tables: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    }

    fn target(rule: &str) -> Option<&str> {
        let (_, after) = rule.split_once("-j ")?;
        after
            .split_whitespace()
            .next()
            .filter(|t| t.starts_with("RIND-"))
    }

    impl Kernel {
        fn apply(&self, text: &str) -> Kernel {
            let mut k = self.clone();
            let mut table = String::new();
            for line in text.lines() {
                if let Some(t) = line.strip_prefix('*') {
                    table = t.to_string();
                    continue;
                }
                if line == "COMMIT" {
                    continue;
                }
                let chains = k.tables.entry(table.clone()).or_default();
                if let Some(decl) = line.strip_prefix(':') {
                    let name = decl.split_whitespace().next().expect(line);
                    chains.insert(name.to_string(), Vec::new());
                } else if let Some(rule) = line.strip_prefix("-A ") {
                    let (name, rule) = rule.split_once(' ').expect(line);
                    if let Some(t) = target(rule) {
                        assert!(chains.contains_key(t), "no chain {t}: {line}");
                    }
                    chains.get_mut(name).expect(line).push(rule.to_string());
                } else if let Some(name) = line.strip_prefix("-X ") {
                    assert!(chains[name].is_empty(), "not empty: {line}");
                    let used = chains.values().flatten().any(|r| target(r) == Some(name));
                    assert!(!used, "still jumped to: {line}");
                    chains.remove(name);
                } else {
                    panic!("unknown line: {line}");
                }
            }
            k
        }
    }

    #[test]
    fn partial_syncs_end_where_full_syncs_do() {
        for (family, subnet, steps) in [
            (Family::V4, "10.244.0.0/16", crate::nftables::tests::steps()),
            (Family::V6, "fd00::/64", crate::nftables::tests::steps_v6()),
        ] {
            partial_syncs_end_where_full_syncs_do_in(family, subnet, &steps);
        }
    }

    fn partial_syncs_end_where_full_syncs_do_in(
        family: Family,
        subnet: &str,
        steps: &[Vec<ServicePort>],
    ) {
        let first = plan_full(&steps[0], subnet, &Known::default(), family);
        if family == Family::V6 {
            assert!(first.text.contains("/128 "), "{}", first.text);
            assert!(!first.text.contains("/32 "), "{}", first.text);
        }
        let mut kernel = Kernel::default().apply(&first.text);
        let mut applied = first.applied;
        for (i, ports) in steps.iter().enumerate().skip(1) {
            let partial = plan_partial(ports, subnet, applied, family);
            kernel = kernel.apply(&partial.text);
            let full = plan_full(ports, subnet, &Known::default(), family);
            assert_eq!(partial.applied, full.applied, "step {i}");
            assert_eq!(kernel, Kernel::default().apply(&full.text), "step {i}");
            // A full resync over what the partial ones left (knowing which chains
            // exist) gives the same too.
            let resync = plan_full(ports, subnet, &partial.applied.known(), family);
            assert_eq!(kernel.apply(&resync.text), kernel, "step {i}");
            applied = partial.applied;
        }
    }

    #[test]
    fn partial_sync_leaves_the_other_services_alone() {
        let subnet = "10.244.0.0/16";
        let mut ports: Vec<ServicePort> = (0..10u8)
            .map(|i| {
                let mut sp = crate::nftables::tests::steps()[0][1].clone();
                sp.name = format!("default/a{i}:http");
                sp.cluster_ip = std::net::Ipv4Addr::new(10, 96, 1, i).into();
                sp.node_port = None;
                sp
            })
            .collect();
        let before = plan_full(&ports, subnet, &Known::default(), V4);
        ports[3].endpoints[0].ip = std::net::Ipv4Addr::new(10, 244, 9, 9).into();
        let after = plan_partial(&ports, subnet, before.applied, V4);
        let ours = format!("RIND-SVC-{}", ports[3].ids().service);
        // Its balancing chain, the new endpoint's chain, the old one's deletion.
        assert!(after.text.contains(&ours), "{}", after.text);
        for line in after.text.lines() {
            let about_others = (0..10).filter(|i| *i != 3).any(|i| {
                line.contains(&format!("a{i}:http")) || line.contains(&format!("10.96.1.{i}/"))
            });
            assert!(!about_others, "{line}\n{}", after.text);
        }
        assert!(!after.text.contains(SERVICES), "{}", after.text);
    }

    #[test]
    fn save_output_names_our_chains() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:RIND-SERVICES - [0:0]\n:KUBE-X - [0:0]\n-A PREROUTING -j RIND-SERVICES\nCOMMIT\n";
        let known = Known::parse_save(save);
        assert_eq!(known.keys().collect::<Vec<_>>(), ["RIND-SERVICES"]);
    }
}
