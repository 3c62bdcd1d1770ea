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
    /// The node's static IP on its cluster's Docker network (`rind`, or `rind-dual`).
    pub node_ip: String,
    /// The node's static IPv6 address on the `rind-dual` network in a dual-stack cluster
    /// (`networking.ipFamily: dual`), its second InternalIP; None in an IPv4 cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ipv6: Option<String>,
    /// Where components reach the API server from inside the cluster (`https://IP:6443`).
    pub api_server_url: String,
    /// The cluster's pod network (kind default 10.244.0.0/16); a dual-stack cluster
    /// lists one CIDR per family, IPv4 first, comma-separated as upstream's
    /// `--cluster-cidr` (`10.244.0.0/16,fd00:10:244::/56`).
    pub pod_subnet: String,
    /// The service network (kind default 10.96.0.0/16); dual-stack as `pod_subnet`,
    /// as upstream's `--service-cluster-ip-range` (`10.96.0.0/16,fd00:10:96::/112`).
    pub service_subnet: String,
    /// Extra node labels from the cluster config.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints the kubelet puts on its Node when it registers it (kubelet's
    /// `--register-with-taints`, from the config's kubeadm patches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub register_with_taints: Vec<RegisterTaint>,
    /// KubeletConfiguration `maxPods` from the kubeadm patches: the node's pod
    /// capacity (None: upstream's default, 110).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<u32>,
    /// etcd members as `name=https://IP:2380`, for the control-plane nodes.
    #[serde(default)]
    pub etcd_initial_cluster: Vec<String>,
    /// The member joins a running etcd cluster (a control plane added to a cluster that
    /// exists, after `etcdctl member add`) instead of forming a new one with the others.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub etcd_join_existing: bool,
    /// `networking.disableDefaultCNI`: no network agent runs and no CNI config is
    /// written, so the runtime reports its network not ready until the user installs a
    /// CNI (as kind, which then installs no kindnet).
    #[serde(default)]
    pub disable_default_cni: bool,
    /// `networking.kubeProxyMode`: how the service proxy programs Services.
    #[serde(default)]
    pub kube_proxy_mode: ProxyMode,
    /// `networking.dnsSearch`: the node's search domains in place of those Docker
    /// gives it (None keeps Docker's, as kind does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_search: Option<Vec<String>>,
    /// The node container's image, which the kubelet names as the image of the node's
    /// own components in their mirror pods (they run from its filesystem).
    #[serde(default)]
    pub image: String,
    /// `containerdConfigPatches`: TOML merged into containerd's configuration at boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containerd_config_patches: Vec<String>,
}

/// A taint as `--register-with-taints` names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterTaint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: String,
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

/// What the external load balancer of an HA cluster forwards to, written by the host
/// to `paths::LOAD_BALANCER_CONFIG` and re-read by the balancer whenever it changes
/// (a control plane added or removed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerConfig {
    /// The API servers as `IP:port`.
    pub backends: Vec<String>,
}

impl LoadBalancerConfig {
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

/// The CIDRs of a comma-separated list such as `10.244.0.0/16,fd00:10:244::/56`
/// (upstream's dual-stack flag syntax), the primary family first.
pub fn cidr_list(subnets: &str) -> impl Iterator<Item = &str> {
    subnets.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// The address `offset` places into a service network given as `base/prefix` (of a
/// dual-stack list, the primary family's): the `kubernetes` Service has the first
/// (1), the cluster DNS Service the tenth (10), as kubeadm assigns them. None when
/// the text is no CIDR or the range ends first.
pub fn service_ip(subnet: &str, offset: u32) -> Option<std::net::IpAddr> {
    let (base, prefix) = cidr_list(subnet).next()?.split_once('/')?;
    let prefix: u32 = prefix.parse().ok()?;
    match base.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let size = 1u64 << 32u32.checked_sub(prefix)?;
            (u64::from(offset) < size).then_some(())?;
            Some(std::net::Ipv4Addr::from(u32::from(v4).checked_add(offset)?).into())
        }
        std::net::IpAddr::V6(v6) => {
            let bits = 128u32.checked_sub(prefix)?;
            (bits >= 32 || u64::from(offset) < (1u64 << bits)).then_some(())?;
            Some(std::net::Ipv6Addr::from(u128::from(v6).checked_add(u128::from(offset))?).into())
        }
    }
}

#[cfg(test)]
mod service_ip_tests {
    use super::service_ip;

    #[test]
    fn offsets_into_the_service_network() {
        assert_eq!(
            service_ip("10.96.0.0/16", 10).unwrap().to_string(),
            "10.96.0.10"
        );
        assert_eq!(
            service_ip("fd00:10:96::/112", 10).unwrap().to_string(),
            "fd00:10:96::a"
        );
        assert_eq!(
            service_ip("10.96.0.0/16,fd00:10:96::/112", 10)
                .unwrap()
                .to_string(),
            "10.96.0.10"
        );
        assert_eq!(service_ip("10.96.0.0/29", 10), None);
        assert_eq!(service_ip("nonsense", 1), None);
    }
}
