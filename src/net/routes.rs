//! Routes to the other nodes' podCIDRs: every node sits on the same Docker network, so
//! a pod packet for another node's pod goes straight to that node's InternalIP, which
//! forwards it onto its own bridge (kindnet's model: no overlay, no encapsulation).
//!
//! Our routes carry their own routing protocol number, so the agent can tell them from
//! anyone else's and remove exactly those whose node has gone.

use std::collections::BTreeMap;
use std::process::Command;

/// The `proto` of the routes the agent owns. Values up to 255 are free for routing
/// daemons to claim; this one is not in iproute2's `rt_protos` list.
pub const ROUTE_PROTO: u8 = 146;
const IP: &str = "/usr/sbin/ip";

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cannot run {IP}: {0}")]
    Spawn(std::io::Error),
    #[error("`ip {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("cannot read `ip -j route` output: {0}")]
    Parse(serde_json::Error),
}

/// podCIDR → the node IP it is reached through.
pub type Routes = BTreeMap<String, String>;

/// What to change to get from `current` to `desired`: routes to replace (new or with a
/// new gateway) and destinations to delete.
pub fn diff(current: &Routes, desired: &Routes) -> (Vec<(String, String)>, Vec<String>) {
    let replace = desired
        .iter()
        .filter(|(dst, via)| current.get(*dst) != Some(via))
        .map(|(d, v)| (d.clone(), v.clone()))
        .collect();
    let delete = current
        .keys()
        .filter(|dst| !desired.contains_key(*dst))
        .cloned()
        .collect();
    (replace, delete)
}

/// Parses `ip -j route show proto N`: `[{"dst": "10.244.1.0/24", "gateway": "…"}, …]`.
pub fn parse_routes(json: &[u8]) -> Result<Routes, RouteError> {
    let list: Vec<serde_json::Value> = serde_json::from_slice(json).map_err(RouteError::Parse)?;
    Ok(list
        .iter()
        .filter_map(|r| {
            Some((
                r.get("dst")?.as_str()?.to_string(),
                r.get("gateway")?.as_str()?.to_string(),
            ))
        })
        .collect())
}

fn ip(args: &[&str]) -> Result<Vec<u8>, RouteError> {
    let out = Command::new(IP)
        .args(args)
        .output()
        .map_err(RouteError::Spawn)?;
    if !out.status.success() {
        return Err(RouteError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// Makes the kernel's routes of our protocol exactly `desired`, IPv4 and IPv6 (an IPv6
/// table is only looked at when IPv6 routes are wanted or ours are there); returns how
/// many changed.
pub fn sync(desired: &Routes) -> Result<usize, RouteError> {
    let proto = ROUTE_PROTO.to_string();
    let mut changed = 0;
    for family in ["-4", "-6"] {
        let v6 = family == "-6";
        let wanted: Routes = desired
            .iter()
            .filter(|(dst, _)| dst.contains(':') == v6)
            .map(|(d, v)| (d.clone(), v.clone()))
            .collect();
        let listed = ip(&[family, "-j", "route", "show", "proto", &proto]);
        let current = match listed {
            Ok(json) => parse_routes(&json)?,
            // A node without IPv6 (an IPv4 cluster) has no IPv6 routes to list.
            Err(_) if v6 && wanted.is_empty() => continue,
            Err(e) => return Err(e),
        };
        let (replace, delete) = diff(&current, &wanted);
        for (dst, via) in &replace {
            ip(&[family, "route", "replace", dst, "via", via, "proto", &proto])?;
            tracing::info!(%dst, %via, "route to a node's podCIDR");
        }
        for dst in &delete {
            ip(&[family, "route", "del", dst, "proto", &proto])?;
            tracing::info!(%dst, "removed the route of a node that left");
        }
        changed += replace.len() + delete.len();
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_adds_moves_and_removes() {
        let current = Routes::from([
            ("10.244.1.0/24".into(), "172.28.0.3".into()),
            ("10.244.2.0/24".into(), "172.28.0.4".into()),
            ("10.244.3.0/24".into(), "172.28.0.5".into()),
        ]);
        let desired = Routes::from([
            ("10.244.1.0/24".into(), "172.28.0.3".into()),
            ("10.244.2.0/24".into(), "172.28.0.9".into()),
            ("10.244.4.0/24".into(), "172.28.0.6".into()),
        ]);
        let (replace, delete) = diff(&current, &desired);
        assert_eq!(
            replace,
            [
                ("10.244.2.0/24".to_string(), "172.28.0.9".to_string()),
                ("10.244.4.0/24".to_string(), "172.28.0.6".to_string())
            ]
        );
        assert_eq!(delete, ["10.244.3.0/24"]);
        assert_eq!(diff(&desired, &desired), (vec![], vec![]));
    }

    #[test]
    fn parses_ip_json() {
        let json = br#"[{"dst":"10.244.1.0/24","gateway":"172.28.0.3","protocol":"146","flags":[]},{"dst":"default","dev":"eth0","flags":[]}]"#;
        assert_eq!(
            parse_routes(json).unwrap(),
            Routes::from([("10.244.1.0/24".into(), "172.28.0.3".into())])
        );
        assert_eq!(parse_routes(b"[]").unwrap(), Routes::new());
    }
}
