//! The agent's nftables table, `ip rind-net`: masquerade for pod traffic leaving the
//! pod network, and the NetworkPolicy chains; in a dual-stack cluster also `ip6
//! rind-net`, the same masquerade for the IPv6 pod network and the drops of IPv6
//! traffic of policy-isolated pods (policy rules match IPv4 only). The whole table is replaced in one `nft -f`
//! transaction each sync (create it if missing, delete it, create it anew — all or
//! nothing), so no packet ever sees half a ruleset.

use super::policy::Compiled;
use std::io::Write;
use std::process::{Command, Stdio};

pub const TABLE: &str = "rind-net";
const NFT: &str = "/usr/sbin/nft";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run {NFT}: {0}")]
    Spawn(std::io::Error),
    #[error("nft -f refused the ruleset: {0}")]
    Refused(String),
}

/// The tables' full text for the pod subnet (one CIDR, or an IPv4 and an IPv6 one,
/// comma-separated) and the compiled policies.
pub fn ruleset(pod_subnets: &str, policies: &Compiled) -> String {
    let mut text = String::new();
    let mut cidrs = rind_runtime::config::cidr_list(pod_subnets);
    let pod_subnet = cidrs.next().unwrap_or_default();
    let pod_subnet_v6 = cidrs.find(|c| c.contains(':'));
    // `table` then `delete table`: the first makes sure the second has something to
    // delete on the very first sync; both commit together with the new table below.
    text.push_str(&format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"));
    text.push_str(&format!("table ip {TABLE} {{\n"));
    text.push_str(&format!(
        "\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\t# Pods' traffic to anything outside the pod network leaves with the node's
\t\t# address, so replies come back through the node; pod-to-pod keeps pod addresses
\t\t# (NetworkPolicy and the receiving pod see who called).
\t\tip saddr {pod_subnet} ip daddr != {pod_subnet} masquerade
\t}}
"
    ));
    text.push_str(
        "\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
",
    );
    if !policies.jumps.is_empty() {
        text.push_str(
            "\t\t# Replies and related traffic of a connection a policy allowed.\n\
             \t\tct state established,related accept\n",
        );
        for jump in &policies.jumps {
            text.push_str(&format!("\t\t{jump}\n"));
        }
    }
    text.push_str("\t}\n");
    for (name, lines) in &policies.chains {
        text.push_str(&format!("\tchain {name} {{\n"));
        for line in lines {
            text.push_str(&format!("\t\t{line}\n"));
        }
        text.push_str("\t}\n");
    }
    text.push_str("}\n");
    if let Some(v6) = pod_subnet_v6 {
        text.push_str(&format!(
            "table ip6 {TABLE} {{}}\ndelete table ip6 {TABLE}\ntable ip6 {TABLE} {{
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\t# As for IPv4: pods' IPv6 traffic leaving the pod network leaves with the
\t\t# node's IPv6 address.
\t\tip6 saddr {v6} ip6 daddr != {v6} masquerade
\t}}
\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
"
        ));
        for line in &policies.ipv6_drops {
            text.push_str(&format!("\t\t{line}\n"));
        }
        text.push_str("\t}\n}\n");
    }
    text
}

/// Applies a ruleset with one `nft -f -` (one transaction).
pub fn apply(ruleset: &str) -> Result<(), NftError> {
    let mut child = Command::new(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if !out.status.success() {
        return Err(NftError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masquerade_only_ruleset_golden() {
        let expected = "table ip rind-net {}
delete table ip rind-net
table ip rind-net {
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\t# Pods' traffic to anything outside the pod network leaves with the node's
\t\t# address, so replies come back through the node; pod-to-pod keeps pod addresses
\t\t# (NetworkPolicy and the receiving pod see who called).
\t\tip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t}
}
";
        assert_eq!(ruleset("10.244.0.0/16", &Compiled::default()), expected);
    }

    #[test]
    fn dual_stack_adds_an_ipv6_table() {
        let compiled = Compiled {
            ipv6_drops: vec!["ip6 daddr fd00:10:244:1::5 drop comment \"d/a\"".into()],
            ..Compiled::default()
        };
        let text = ruleset("10.244.0.0/16,fd00:10:244::/56", &compiled);
        assert!(text.contains("ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade"));
        assert!(text.contains("delete table ip6 rind-net\ntable ip6 rind-net {"));
        assert!(
            text.contains("ip6 saddr fd00:10:244::/56 ip6 daddr != fd00:10:244::/56 masquerade")
        );
        assert!(
            text.ends_with("\t\tip6 daddr fd00:10:244:1::5 drop comment \"d/a\"\n\t}\n}\n"),
            "{text}"
        );
    }

    #[test]
    fn policy_chains_follow_the_conntrack_rule() {
        let compiled = Compiled {
            jumps: vec!["ip daddr 10.244.1.5 jump ingress-0 comment \"d/a\"".into()],
            chains: vec![(
                "ingress-0".into(),
                vec!["ip saddr { 10.244.2.3 } accept".into(), "drop".into()],
            )],
            ipv6_drops: Vec::new(),
        };
        let text = ruleset("10.244.0.0/16", &compiled);
        assert!(text.contains(
            "\t\tct state established,related accept\n\t\tip daddr 10.244.1.5 jump ingress-0 comment \"d/a\"\n\t}\n\tchain ingress-0 {\n\t\tip saddr { 10.244.2.3 } accept\n\t\tdrop\n\t}\n}\n"
        ), "{text}");
    }
}
