//! The node's CNI network configuration for containerd's CRI plugin.

use rind_runtime::paths;
use serde_json::json;

pub const CONFLIST_NAME: &str = "10-rind.conflist";

/// The conflist for pods on this node, given its podCIDR.
///
/// Loopback needs no entry here: containerd's CRI plugin always sets up `lo` in every
/// pod itself with the `loopback` plugin from the same bin_dir.
pub fn conflist(pod_cidr: &str) -> serde_json::Value {
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
                // Pods' traffic to anything outside the node's pod range leaves with the
                // node's address, so replies find their way back through Docker's network.
                "ipMasq": true,
                // A pod reaching a Service that load-balances back to itself goes out and
                // back in through the same bridge port.
                "hairpinMode": true,
                "ipam": {
                    // Addresses from this node's podCIDR, handed out from a local file store.
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    // Pods' default route points at the bridge (the gateway).
                    "routes": [{ "dst": "0.0.0.0/0" }]
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

/// Writes the conflist where containerd's CRI plugin looks for it.
pub fn write(pod_cidr: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(paths::CNI_CONF_DIR)?;
    let text = serde_json::to_string_pretty(&conflist(pod_cidr)).map_err(std::io::Error::other)?;
    let path = std::path::Path::new(paths::CNI_CONF_DIR).join(CONFLIST_NAME);
    // Written whole to a temporary name, then renamed: containerd watches the directory
    // and must never read a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
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
      "ipMasq": true,
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
            serde_json::to_string_pretty(&conflist("10.244.1.0/24")).unwrap(),
            expected
        );
    }
}
