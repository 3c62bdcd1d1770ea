//! The `iptables` mode: our own chains in the `nat` and `filter` tables, written with
//! one `iptables-restore --noflush` per sync (as kube-proxy does). A chain named in
//! the input is flushed and refilled by the same transaction; chains not named are
//! left as they are, so a sync rewrites only the Services that changed, and the
//! kernel sees every change at once. The IPv6 plane of a dual-stack node writes the
//! same chains with `ip6tables-restore`.

use crate::model::{Endpoint, Family, ServicePort, digest, host_port};
use std::collections::BTreeMap;
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

/// Every chain of the proxy for these Service ports.
pub fn generate(ports: &[ServicePort], pod_subnet: &str, family: Family) -> Tables {
    let host = family.host_bits();
    let unreachable = format!("REJECT --reject-with {}", family.port_unreachable());
    let mut filter: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut nat: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut services = Vec::new();
    let mut nodeports = Vec::new();
    let mut rejects = Vec::new();
    for sp in ports {
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
    }
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

/// The jumps from the built-in chains into ours, as `(table, chain, rule)`; kept in
/// place by `iptables -C`/`-I` rather than by the restore, which would append a
/// second copy at every sync.
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

/// The `iptables-restore --noflush` input that turns `old` (what the kernel holds;
/// a chain with unknown rules is listed with `None`) into `new`: changed and new
/// chains are declared (which flushes them) and refilled, vanished ones deleted,
/// unchanged ones not mentioned at all.
pub fn render(new: &Tables, old: &Known) -> String {
    let mut out = String::new();
    for (table, chains, old) in [
        ("filter", &new.filter, &old.filter),
        ("nat", &new.nat, &old.nat),
    ] {
        let changed: Vec<&String> = chains
            .iter()
            .filter(|(name, rules)| old.get(*name) != Some(&Some(digest(rules))))
            .map(|(name, _)| name)
            .collect();
        let stale: Vec<&String> = old.keys().filter(|n| !chains.contains_key(*n)).collect();
        if changed.is_empty() && stale.is_empty() {
            continue;
        }
        let _ = writeln!(out, "*{table}");
        for name in changed.iter().chain(stale.iter()) {
            let _ = writeln!(out, ":{name} - [0:0]");
        }
        for name in &changed {
            for rule in &chains[*name] {
                let _ = writeln!(out, "-A {name} {rule}");
            }
        }
        for name in &stale {
            let _ = writeln!(out, "-X {name}");
        }
        let _ = writeln!(out, "COMMIT");
    }
    out
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
        let tables = generate(&ports(), "10.244.0.0/16", Family::V4);
        let text = render(&tables, &Known::default());
        golden("iptables-full.txt", &text);
    }

    #[test]
    fn partial_sync_touches_only_what_changed() {
        let before = generate(&ports(), "10.244.0.0/16", Family::V4);
        let mut changed = ports();
        // The second endpoint leaves.
        changed[1].endpoints.pop();
        let after = generate(&changed, "10.244.0.0/16", Family::V4);
        let text = render(&after, &Known::from_tables(&before));
        golden("iptables-partial.txt", &text);
        // Nothing changed: nothing to write.
        assert_eq!(render(&after, &Known::from_tables(&after)), "");
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
    }

    #[test]
    fn save_output_names_our_chains() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:RIND-SERVICES - [0:0]\n:KUBE-X - [0:0]\n-A PREROUTING -j RIND-SERVICES\nCOMMIT\n";
        let known = Known::parse_save(save);
        assert_eq!(known.keys().collect::<Vec<_>>(), ["RIND-SERVICES"]);
    }
}
