//! The node's CNI network configuration for containerd's CRI plugin, written for the
//! podCIDR node IPAM gave this node. containerd reports its network not ready until a
//! config is there, so a node without one (before its podCIDR comes, or with
//! `disableDefaultCNI`, where no agent runs) stays NotReady.

use rind_runtime::paths;
use serde_json::json;
use std::path::{Path, PathBuf};

pub const CONFLIST_NAME: &str = "10-rind.conflist";

/// Where the node's own interface MTU is read: pods' interfaces take the same, so a
/// full-size pod packet still fits once routed out of the node (a larger one would be
/// fragmented or dropped on a network with a smaller MTU).
pub const UPLINK_MTU: &str = "/sys/class/net/eth0/mtu";

/// The conflist for pods on this node, given its podCIDRs (one per family, the
/// primary first: a dual-stack node's pods get an address of each) and the uplink's
/// MTU.
///
/// Loopback needs no entry here: containerd's CRI plugin always sets up `lo` in every
/// pod itself with the `loopback` plugin from the same bin_dir.
pub fn conflist(pod_cidrs: &[String], mtu: u32) -> serde_json::Value {
    // One host-local range set per family: the plugin hands out one address from each.
    let ranges: Vec<serde_json::Value> = pod_cidrs
        .iter()
        .map(|cidr| json!([{ "subnet": cidr }]))
        .collect();
    // Pods' default routes, one per family they have, point at the bridge (the
    // gateway).
    let routes: Vec<serde_json::Value> = pod_cidrs
        .iter()
        .map(|cidr| json!({ "dst": if cidr.contains(':') { "::/0" } else { "0.0.0.0/0" } }))
        .collect();
    json!({
        "cniVersion": "0.4.0",
        "name": "rind",
        "plugins": [
            {
                // A Linux bridge joins every pod on the node; pods reach each other
                // directly through it.
                "type": "bridge",
                "bridge": "cni0",
                // The bridge holds the subnet's gateway address, so pods route off-node
                // through the node.
                "isGateway": true,
                // No masquerade from the plugin (it would hide pod addresses from pods on
                // other nodes): the network agent masquerades only traffic that leaves
                // the cluster's pod network.
                "ipMasq": false,
                // A pod reaching a Service that load-balances back to itself goes out and
                // back in through the same bridge port.
                "hairpinMode": true,
                "mtu": mtu,
                "ipam": {
                    // Addresses from this node's podCIDRs, handed out from a local file
                    // store.
                    "type": "host-local",
                    "ranges": ranges,
                    "routes": routes
                }
            },
            {
                // hostPort mappings for pods; snat makes hairpin hostPort traffic work.
                "type": "portmap",
                "capabilities": { "portMappings": true },
                "snat": true
            }
        ]
    })
}

/// The node's uplink MTU, or 1500 (Ethernet's) when it cannot be read.
pub fn uplink_mtu() -> u32 {
    std::fs::read_to_string(UPLINK_MTU)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500)
}

fn conflist_path(dir: &Path) -> PathBuf {
    dir.join(CONFLIST_NAME)
}

/// Writes the conflist where containerd's CRI plugin looks for it, unless it already
/// says exactly that; returns whether it wrote.
pub fn write(dir: &Path, pod_cidrs: &[String], mtu: u32) -> std::io::Result<bool> {
    let text =
        serde_json::to_string_pretty(&conflist(pod_cidrs, mtu)).map_err(std::io::Error::other)?;
    let path = conflist_path(dir);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    // Written whole to a temporary name, then renamed: containerd watches the directory
    // and must never read a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)?;
    Ok(true)
}

/// The directory containerd reads CNI configs from.
pub fn conf_dir() -> &'static Path {
    Path::new(paths::CNI_CONF_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_golden() {
        let expected = r#"{
  "cniVersion": "0.4.0",
  "name": "rind",
  "plugins": [
    {
      "bridge": "cni0",
      "hairpinMode": true,
      "ipMasq": false,
      "ipam": {
        "ranges": [
          [
            {
              "subnet": "10.244.1.0/24"
            }
          ]
        ],
        "routes": [
          {
            "dst": "0.0.0.0/0"
          }
        ],
        "type": "host-local"
      },
      "isGateway": true,
      "mtu": 1450,
      "type": "bridge"
    },
    {
      "capabilities": {
        "portMappings": true
      },
      "snat": true,
      "type": "portmap"
    }
  ]
}"#;
        assert_eq!(
            serde_json::to_string_pretty(&conflist(&["10.244.1.0/24".into()], 1450)).unwrap(),
            expected
        );
    }

    #[test]
    fn dual_stack_pods_get_a_range_and_a_default_route_per_family() {
        let list = conflist(&["10.244.1.0/24".into(), "fd00:10:244:1::/64".into()], 1500);
        let ipam = &list["plugins"][0]["ipam"];
        assert_eq!(
            ipam["ranges"],
            json!([[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]])
        );
        assert_eq!(
            ipam["routes"],
            json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}])
        );
    }

    #[test]
    fn written_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let one = ["10.244.1.0/24".to_string()];
        let two = ["10.244.2.0/24".to_string()];
        assert!(write(dir.path(), &one, 1500).unwrap());
        assert!(!write(dir.path(), &one, 1500).unwrap());
        assert!(write(dir.path(), &two, 1500).unwrap());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, [CONFLIST_NAME]);
    }
}
