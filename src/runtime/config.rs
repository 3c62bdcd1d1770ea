//! What a node knows about itself and its cluster. `create cluster` writes it as JSON
//! to `/etc/rind/node.json` in every node before the node starts; every component
//! inside the node reads it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    pub cluster_name: String,
    /// The node's name, also its container name and hostname (`<cluster>-control-plane`).
    pub node_name: String,
    pub role: Role,
    /// The node's static IP on the `rind` Docker network.
    pub node_ip: String,
    /// Where components reach the API server from inside the cluster (`https://IP:6443`).
    pub api_server_url: String,
    /// The cluster's pod network (kind default 10.244.0.0/16).
    pub pod_subnet: String,
    /// The service network (kind default 10.96.0.0/16).
    pub service_subnet: String,
    /// Extra node labels from the cluster config.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// etcd members as `name=https://IP:2380`, for the control-plane nodes.
    #[serde(default)]
    pub etcd_initial_cluster: Vec<String>,
    /// `networking.disableDefaultCNI`: no network agent runs and no CNI config is
    /// written, so the runtime reports its network not ready until the user installs a
    /// CNI (as kind, which then installs no kindnet).
    #[serde(default)]
    pub disable_default_cni: bool,
    /// `networking.kubeProxyMode`: how the service proxy programs Services.
    #[serde(default)]
    pub kube_proxy_mode: ProxyMode,
}

/// The service proxy's mode, kind's `networking.kubeProxyMode` values that this kernel
/// can serve (`ipvs` is refused when the cluster is created).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// kind's default.
    #[default]
    Iptables,
    Nftables,
    /// No service proxy runs on the nodes.
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    #[error("cannot read node config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("node config {path} is invalid: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, NodeConfigError> {
        let text = std::fs::read(path).map_err(|source| NodeConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| NodeConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}
