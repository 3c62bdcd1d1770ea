//! The cluster config file, kind's `v1alpha4` format: `kind: Cluster` with
//! `apiVersion: kind.x-k8s.io/v1alpha4` (or our alias `rind.dev/v1alpha4`).
//!
//! Unknown fields and bad values are errors naming the file, line and column, so a typo
//! never silently yields a different cluster than the one asked for.

use super::config_source::{Located, steps};
use super::{gates, kubeadm_patches};
use rind_runtime::ProxyMode;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const API_VERSIONS: [&str; 2] = ["kind.x-k8s.io/v1alpha4", "rind.dev/v1alpha4"];
pub const DEFAULT_POD_SUBNET: &str = "10.244.0.0/16";
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/16";
/// kind's defaults for `ipFamily: dual`: one range per family, IPv4 first.
pub const DEFAULT_DUAL_POD_SUBNET: &str = "10.244.0.0/16,fd00:10:244::/56";
pub const DEFAULT_DUAL_SERVICE_SUBNET: &str = "10.96.0.0/16,fd00:10:96::/112";
/// Present exactly when the kernel has IPVS (nodes share the host's kernel).
const IPVS_PROC: &str = "/proc/net/ip_vs";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    pub kind: String,
    pub api_version: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_nodes")]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub networking: Networking,
    #[serde(default)]
    pub feature_gates: BTreeMap<String, bool>,
    #[serde(default)]
    pub runtime_config: BTreeMap<String, String>,
    /// kubeadm patches: read for node labels and taints, API server certificate SANs
    /// and the kubelet settings rind has (`kubeadm_patches`); anything else is refused.
    #[serde(default)]
    pub kubeadm_config_patches: Vec<String>,
    #[serde(default, rename = "kubeadmConfigPatchesJSON6902")]
    pub kubeadm_config_patches_json6902: Vec<serde_json::Value>,
    #[serde(default)]
    pub containerd_config_patches: Vec<String>,
    /// Refused when present: rind merges only the TOML form into containerd's config.
    #[serde(default, rename = "containerdConfigPatchesJSON6902")]
    pub containerd_config_patches_json6902: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum Role {
    #[serde(rename = "control-plane")]
    ControlPlane,
    #[serde(rename = "worker")]
    Worker,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Node {
    pub role: Role,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub extra_mounts: Vec<Mount>,
    #[serde(default)]
    pub extra_port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub kubeadm_config_patches: Vec<String>,
    #[serde(default, rename = "kubeadmConfigPatchesJSON6902")]
    pub kubeadm_config_patches_json6902: Vec<serde_json::Value>,
    /// rind's own: limits for the node container.
    #[serde(default)]
    pub resources: Option<Resources>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub selinux_relabel: bool,
    #[serde(default)]
    pub propagation: Option<Propagation>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum Propagation {
    None,
    HostToContainer,
    Bidirectional,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u16,
    #[serde(default)]
    pub host_port: u16,
    #[serde(default)]
    pub listen_address: Option<String>,
    #[serde(default)]
    pub protocol: Option<Protocol>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// kind upper-cases the protocol before checking it, so `udp` is `UDP` (its
/// quick-start guide writes `protocol: udp`).
impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_uppercase().as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            _ => Err(serde::de::Error::custom(format!(
                "unknown port mapping protocol {text:?} (TCP, UDP or SCTP)"
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    #[serde(default)]
    pub cpus: Option<f64>,
    /// A Docker memory size such as `2g` or `512m`.
    #[serde(default)]
    pub memory: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Networking {
    #[serde(default = "default_ip_family")]
    pub ip_family: String,
    #[serde(default = "default_api_server_address")]
    pub api_server_address: String,
    /// 0 picks a free port.
    #[serde(default)]
    pub api_server_port: u16,
    /// Empty in the file: the default of the IP family, filled in by `Cluster::parse`.
    #[serde(default)]
    pub pod_subnet: String,
    #[serde(default)]
    pub service_subnet: String,
    #[serde(default, rename = "disableDefaultCNI")]
    pub disable_default_cni: bool,
    #[serde(default)]
    pub kube_proxy_mode: Option<String>,
    #[serde(default)]
    pub dns_search: Option<Vec<String>>,
}

impl Default for Networking {
    fn default() -> Self {
        Networking {
            ip_family: default_ip_family(),
            api_server_address: default_api_server_address(),
            api_server_port: 0,
            pod_subnet: default_pod_subnet(),
            service_subnet: default_service_subnet(),
            disable_default_cni: false,
            kube_proxy_mode: None,
            dns_search: None,
        }
    }
}

fn default_nodes() -> Vec<Node> {
    vec![Node {
        role: Role::ControlPlane,
        image: None,
        labels: BTreeMap::new(),
        extra_mounts: Vec::new(),
        extra_port_mappings: Vec::new(),
        kubeadm_config_patches: Vec::new(),
        kubeadm_config_patches_json6902: Vec::new(),
        resources: None,
    }]
}
fn default_ip_family() -> String {
    "ipv4".to_string()
}
fn default_api_server_address() -> String {
    "127.0.0.1".to_string()
}
fn default_pod_subnet() -> String {
    DEFAULT_POD_SUBNET.to_string()
}
fn default_service_subnet() -> String {
    DEFAULT_SERVICE_SUBNET.to_string()
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            kind: "Cluster".to_string(),
            api_version: API_VERSIONS[0].to_string(),
            name: None,
            nodes: default_nodes(),
            networking: Networking::default(),
            feature_gates: BTreeMap::new(),
            runtime_config: BTreeMap::new(),
            kubeadm_config_patches: Vec::new(),
            kubeadm_config_patches_json6902: Vec::new(),
            containerd_config_patches: Vec::new(),
            containerd_config_patches_json6902: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    /// `line` is where the field (or, for a default, its closest enclosing field) is.
    #[error("{source_name}:{}: {field}: {message}", line.map(|l| l.to_string()).unwrap_or_else(|| "-".to_string()))]
    Invalid {
        source_name: String,
        line: Option<u64>,
        field: String,
        message: String,
    },
}

/// An IPv4 subnet in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        let network = u32::from(addr) & Self::mask(prefix);
        Some(Cidr {
            addr: Ipv4Addr::from(network),
            prefix,
        })
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    /// The `index`-th address after the network address (1 = first host).
    pub fn host(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + index)
    }

    /// The `index`-th subnet of size `/prefix` inside this one.
    pub fn subnet(&self, prefix: u8, index: u32) -> Option<Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if u64::from(index) >= count {
            return None;
        }
        let size = 1u64 << (32 - prefix);
        let start = u64::from(u32::from(self.addr)) + u64::from(index) * size;
        Some(Cidr {
            addr: Ipv4Addr::from(start as u32),
            prefix,
        })
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        let prefix = self.prefix.min(other.prefix);
        let mask = Self::mask(prefix);
        u32::from(self.addr) & mask == u32::from(other.addr) & mask
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cluster {
    /// Parses and validates a config; `source_name` (a path or `stdin`) prefixes errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Cluster, ConfigError> {
        let mut cluster: Cluster =
            rind_runtime::yaml::from_str(text).map_err(|err| ConfigError::Parse {
                source_name: source_name.to_string(),
                message: err.to_string(),
            })?;
        // kind's defaults depend on the family, so they are filled in once it is known.
        let dual = cluster.networking.ip_family == "dual";
        if cluster.networking.pod_subnet.is_empty() {
            cluster.networking.pod_subnet = if dual {
                DEFAULT_DUAL_POD_SUBNET
            } else {
                DEFAULT_POD_SUBNET
            }
            .to_string();
        }
        if cluster.networking.service_subnet.is_empty() {
            cluster.networking.service_subnet = if dual {
                DEFAULT_DUAL_SERVICE_SUBNET
            } else {
                DEFAULT_SERVICE_SUBNET
            }
            .to_string();
        }
        let located = Located::read(text).unwrap_or_default();
        cluster.validate(source_name, &located)?;
        Ok(cluster)
    }

    fn validate(&self, source_name: &str, located: &Located) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            source_name: source_name.to_string(),
            line: located.line(&steps(field)),
            field: field.to_string(),
            message,
        };
        if self.kind != "Cluster" {
            return Err(invalid(
                "kind",
                format!("must be \"Cluster\", not {:?}", self.kind),
            ));
        }
        if !API_VERSIONS.contains(&self.api_version.as_str()) {
            return Err(invalid(
                "apiVersion",
                format!(
                    "{:?} is not supported (use one of {})",
                    self.api_version,
                    API_VERSIONS.join(", ")
                ),
            ));
        }
        if let Some(name) = &self.name {
            validate_cluster_name(name).map_err(|m| invalid("name", m))?;
        }
        if let Err(err) = rind_runtime::containerd_patch::check(&self.containerd_config_patches) {
            return Err(match err {
                rind_runtime::containerd_patch::PatchError::Patch { index, message } => invalid(
                    &format!("containerdConfigPatches[{index}]"),
                    format!("not valid TOML: {message}"),
                ),
                other => invalid("containerdConfigPatches", other.to_string()),
            });
        }
        let control_planes = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::ControlPlane)
            .count();
        if control_planes == 0 {
            return Err(invalid(
                "nodes",
                "at least one node must have role control-plane".to_string(),
            ));
        }
        self.proxy_mode()
            .map_err(|m| invalid("networking.kubeProxyMode", m))?;
        let dual = match self.networking.ip_family.as_str() {
            "ipv4" => false,
            "dual" => true,
            "ipv6" => {
                return Err(invalid(
                    "networking.ipFamily",
                    "\"ipv6\" (IPv6 single-stack) is not supported: rind's nodes, etcd and API \
                     servers talk over IPv4 on the rind network; use \"dual\" for IPv6 pods \
                     and Services beside IPv4 ones"
                        .to_string(),
                ));
            }
            other => {
                return Err(invalid(
                    "networking.ipFamily",
                    format!("{other:?} is not an IP family (ipv4, ipv6 or dual)"),
                ));
            }
        };
        for (field, value, v6_prefixes) in [
            // Each node gets a /64 of the IPv6 pod range (upstream's node CIDR mask).
            ("networking.podSubnet", &self.networking.pod_subnet, 1..=64),
            // Upstream's API server takes IPv6 service ranges of at most 2^20 addresses.
            (
                "networking.serviceSubnet",
                &self.networking.service_subnet,
                108..=120,
            ),
        ] {
            let cidrs: Vec<&str> = value.split(',').map(str::trim).collect();
            let (v4, v6) = match (dual, cidrs.as_slice()) {
                (false, [v4]) => (v4, None),
                (true, [v4, v6]) => (v4, Some(v6)),
                (false, _) => {
                    return Err(invalid(
                        field,
                        format!(
                            "{value:?} must be one IPv4 CIDR (several families need ipFamily: dual)"
                        ),
                    ));
                }
                (true, _) => {
                    return Err(invalid(
                        field,
                        format!(
                            "{value:?} must be an IPv4 CIDR and an IPv6 CIDR, comma-separated, for ipFamily: dual"
                        ),
                    ));
                }
            };
            let cidr = Cidr::parse(v4).ok_or_else(|| {
                invalid(
                    field,
                    format!(
                        "{v4:?} is not an IPv4 CIDR{}",
                        if dual {
                            " (rind's dual-stack clusters are IPv4-primary: list the IPv4 CIDR first)"
                        } else {
                            ""
                        }
                    ),
                )
            })?;
            if cidr.prefix > 24 {
                return Err(invalid(field, format!("{v4:?} is too small (at most /24)")));
            }
            if let Some(v6) = v6 {
                let prefix = v6
                    .split_once('/')
                    .filter(|(addr, _)| addr.parse::<std::net::Ipv6Addr>().is_ok())
                    .and_then(|(_, prefix)| prefix.parse::<u8>().ok())
                    .ok_or_else(|| invalid(field, format!("{v6:?} is not an IPv6 CIDR")))?;
                if !v6_prefixes.contains(&prefix) {
                    return Err(invalid(
                        field,
                        format!(
                            "{v6:?}: the IPv6 prefix must be between /{} and /{}",
                            v6_prefixes.start(),
                            v6_prefixes.end()
                        ),
                    ));
                }
            }
        }
        if self
            .networking
            .api_server_address
            .parse::<Ipv4Addr>()
            .is_err()
        {
            return Err(invalid(
                "networking.apiServerAddress",
                format!(
                    "{:?} is not an IPv4 address",
                    self.networking.api_server_address
                ),
            ));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for (j, mount) in node.extra_mounts.iter().enumerate() {
                if !mount.container_path.starts_with('/') {
                    return Err(invalid(
                        &format!("nodes[{i}].extraMounts[{j}].containerPath"),
                        format!("{:?} must be an absolute path", mount.container_path),
                    ));
                }
            }
            for (j, port) in node.extra_port_mappings.iter().enumerate() {
                if port.container_port == 0 {
                    return Err(invalid(
                        &format!("nodes[{i}].extraPortMappings[{j}].containerPort"),
                        "must be between 1 and 65535".to_string(),
                    ));
                }
            }
        }
        for (name, enabled) in &self.feature_gates {
            gates::check_feature_gate(name, *enabled)
                .map_err(|m| invalid(&format!("featureGates.\"{name}\""), m))?;
        }
        for (key, value) in &self.runtime_config {
            gates::check_runtime_config(key, value)
                .map_err(|m| invalid(&format!("runtimeConfig.\"{key}\""), m))?;
        }
        if !self.containerd_config_patches_json6902.is_empty() {
            return Err(invalid(
                "containerdConfigPatchesJSON6902",
                "JSON 6902 patches of containerd's config are not supported by rind; use containerdConfigPatches (TOML, merged as kind merges it)".to_string(),
            ));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for key in node.labels.keys() {
                kubeadm_patches::check_node_label(key)
                    .map_err(|m| invalid(&format!("nodes[{i}].labels.\"{key}\""), m))?;
            }
        }
        self.kubeadm_applied().map_err(|err| {
            let outer_line = located.line(&steps(&err.field));
            let line = match (outer_line, err.inner_line) {
                // The patch's position is where its text starts (the line after a
                // block scalar's `|`), which is the patch's own line 1.
                (Some(outer), Some(inner)) => Some(outer + inner - 1),
                (outer, _) => outer,
            };
            ConfigError::Invalid {
                source_name: source_name.to_string(),
                line,
                field: err.field,
                message: err.message,
            }
        })?;
        Ok(())
    }

    /// What the kubeadm patches ask of each node, in node order: cluster-wide patches
    /// first, then the node's own. A node's own patch that matches none of its kubeadm
    /// documents (an InitConfiguration patch on a node that joins) is refused, since
    /// kind would drop it without a word.
    pub fn kubeadm_applied(&self) -> Result<Vec<kubeadm_patches::Applied>, AppliedError> {
        let first_control_plane = self.nodes.iter().position(|n| n.role == Role::ControlPlane);
        let mut all = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let boot = if Some(i) == first_control_plane {
                kubeadm_patches::NodeBoot::Init
            } else {
                kubeadm_patches::NodeBoot::Join
            };
            let mut applied = kubeadm_patches::Applied::default();
            let lists = [
                (
                    String::new(),
                    &self.kubeadm_config_patches,
                    &self.kubeadm_config_patches_json6902,
                ),
                (
                    format!("nodes[{i}]."),
                    &node.kubeadm_config_patches,
                    &node.kubeadm_config_patches_json6902,
                ),
            ];
            for (own, (prefix, patches, json_patches)) in lists.into_iter().enumerate() {
                for (j, patch) in patches.iter().enumerate() {
                    let field = format!("{prefix}kubeadmConfigPatches[{j}]");
                    match kubeadm_patches::apply_merge(patch, boot, &mut applied) {
                        Ok(true) => {}
                        Ok(false) if own == 0 => {}
                        Ok(false) => return Err(AppliedError::unmatched(field, boot)),
                        Err(err) => return Err(AppliedError::from_patch(field, Some(patch), err)),
                    }
                }
                for (j, patch) in json_patches.iter().enumerate() {
                    let field = format!("{prefix}kubeadmConfigPatchesJSON6902[{j}]");
                    match kubeadm_patches::apply_json6902(patch, boot, &mut applied) {
                        Ok(true) => {}
                        Ok(false) if own == 0 => {}
                        Ok(false) => return Err(AppliedError::unmatched(field, boot)),
                        Err(err) => {
                            let field = match &err.field {
                                Some(inner) => format!("{field}.{inner}"),
                                None => field,
                            };
                            return Err(AppliedError::from_patch(field, None, err));
                        }
                    }
                }
            }
            all.push(applied);
        }
        Ok(all)
    }

    /// `networking.kubeProxyMode` as the nodes' proxy runs it: kind's values, iptables
    /// when unset (kind's default). `ipvs` needs the kernel's IPVS (`ip_vs`), which a
    /// node container cannot load; it is refused unless the kernel has it built in, and
    /// even then, since rind's proxy has no IPVS mode.
    pub fn proxy_mode(&self) -> Result<ProxyMode, String> {
        match self.networking.kube_proxy_mode.as_deref() {
            None | Some("iptables") => Ok(ProxyMode::Iptables),
            Some("nftables") => Ok(ProxyMode::Nftables),
            Some("none") => Ok(ProxyMode::None),
            Some("ipvs") if !std::path::Path::new(IPVS_PROC).exists() => Err(format!(
                "\"ipvs\" needs the kernel's IPVS support (the ip_vs module), which this kernel does not have ({IPVS_PROC} is absent); use \"iptables\" or \"nftables\""
            )),
            Some("ipvs") => Err(
                "\"ipvs\" is not supported by rind's service proxy; use \"iptables\" or \"nftables\""
                    .to_string(),
            ),
            Some(other) => Err(format!(
                "{other:?} is not a proxy mode (use \"iptables\", \"nftables\" or \"none\")"
            )),
        }
    }
}

/// A refused kubeadm patch: the config field holding it, the line inside the patch
/// text, and why.
#[derive(Debug)]
pub struct AppliedError {
    pub field: String,
    pub inner_line: Option<u64>,
    pub message: String,
}

impl AppliedError {
    fn unmatched(field: String, boot: kubeadm_patches::NodeBoot) -> Self {
        let message = match boot {
            kubeadm_patches::NodeBoot::Init => {
                "this node is the first control plane, which kubeadm initialises: a JoinConfiguration patch never applies to it (use InitConfiguration)"
            }
            kubeadm_patches::NodeBoot::Join => {
                "this node joins the cluster: an InitConfiguration patch never applies to it (use JoinConfiguration)"
            }
        };
        AppliedError {
            field,
            inner_line: None,
            message: message.to_string(),
        }
    }

    fn from_patch(field: String, text: Option<&String>, err: kubeadm_patches::PatchError) -> Self {
        let inner_line = match (text, &err.field) {
            (Some(text), Some(inner)) => kubeadm_patches::line_in_patch(text, inner),
            _ => None,
        };
        AppliedError {
            field,
            inner_line,
            message: err.message,
        }
    }
}

/// Cluster names become container and host names: DNS-1123 labels, short enough that
/// `<name>-control-plane` and friends stay valid.
pub fn validate_cluster_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty()
        || name.len() > 40
        || !valid_chars
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!(
            "{name:?} is not a valid cluster name: use 1-40 lowercase letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_kind_defaults() {
        let c = Cluster::parse(
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n",
            "c.yaml",
        )
        .unwrap();
        assert_eq!(c.nodes.len(), 1);
        assert_eq!(c.nodes[0].role, Role::ControlPlane);
        assert_eq!(c.networking.pod_subnet, "10.244.0.0/16");
        assert_eq!(c.networking.service_subnet, "10.96.0.0/16");
    }

    #[test]
    fn full_kind_config_parses() {
        let text = "kind: Cluster
apiVersion: rind.dev/v1alpha4
name: dev
networking:
  apiServerPort: 6443
  podSubnet: 10.250.0.0/16
nodes:
- role: control-plane
  labels: {tier: cp}
  extraPortMappings:
  - containerPort: 80
    hostPort: 8080
    protocol: TCP
  extraMounts:
  - hostPath: /tmp
    containerPath: /data
    readOnly: true
- role: worker
  resources: {cpus: 1.5, memory: 1g}
kubeadmConfigPatches:
- |
  kind: ClusterConfiguration
  apiServer:
    certSANs: [dev.example.com]
";
        let c = Cluster::parse(text, "c.yaml").unwrap();
        assert_eq!(c.name.as_deref(), Some("dev"));
        assert_eq!(c.nodes[1].role, Role::Worker);
        assert_eq!(c.nodes[0].extra_port_mappings[0].host_port, 8080);
        assert_eq!(
            c.kubeadm_applied().unwrap()[1].cert_sans,
            ["dev.example.com"]
        );
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraPortMapings: []\n";
        let err = Cluster::parse(text, "bad.yaml").unwrap_err().to_string();
        assert!(err.starts_with("bad.yaml"), "{err}");
        assert!(err.contains("extraPortMapings"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn bad_role_names_file_line_and_value() {
        let text = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: master\n";
        let err = Cluster::parse(text, "bad.yaml").unwrap_err().to_string();
        assert!(err.starts_with("bad.yaml"), "{err}");
        assert!(err.contains("master"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let text = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: worker\n";
        let err = Cluster::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(
            err.contains("nodes") && err.contains("control-plane"),
            "{err}"
        );
        let text = "kind: Cluster\napiVersion: v1\n";
        let err = Cluster::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(err.contains("apiVersion"), "{err}");
    }

    #[test]
    fn several_control_planes_are_accepted() {
        let text = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: control-plane\n- role: worker\n";
        let cluster = Cluster::parse(text, "ha.yaml").unwrap();
        let control_planes = cluster
            .nodes
            .iter()
            .filter(|n| n.role == Role::ControlPlane)
            .count();
        assert_eq!(control_planes, 2);
    }

    #[test]
    fn proxy_modes() {
        let parse = |mode: &str| {
            Cluster::parse(
                &format!(
                    "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  kubeProxyMode: {mode}\n"
                ),
                "p.yaml",
            )
        };
        assert_eq!(Cluster::default().proxy_mode(), Ok(ProxyMode::Iptables));
        assert_eq!(
            parse("nftables").unwrap().proxy_mode(),
            Ok(ProxyMode::Nftables)
        );
        assert_eq!(parse("none").unwrap().proxy_mode(), Ok(ProxyMode::None));
        let err = parse("ipvs").unwrap_err().to_string();
        assert!(
            err.starts_with("p.yaml:4: networking.kubeProxyMode:"),
            "{err}"
        );
        assert!(err.contains("ipvs"), "{err}");
        let err = parse("userspace").unwrap_err().to_string();
        assert!(err.contains("userspace"), "{err}");
    }

    #[test]
    fn ip_families_and_their_subnets() {
        let parse = |networking: &str| {
            Cluster::parse(
                &format!(
                    "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n{networking}"
                ),
                "n.yaml",
            )
        };
        // kind's per-family defaults.
        let dual = parse("  ipFamily: dual\n").unwrap();
        assert_eq!(dual.networking.pod_subnet, "10.244.0.0/16,fd00:10:244::/56");
        assert_eq!(
            dual.networking.service_subnet,
            "10.96.0.0/16,fd00:10:96::/112"
        );
        let v4 = parse("  ipFamily: ipv4\n").unwrap();
        assert_eq!(v4.networking.pod_subnet, "10.244.0.0/16");
        let custom = parse(
            "  ipFamily: dual\n  podSubnet: 10.100.0.0/16,fd00:100::/48\n  serviceSubnet: 10.200.0.0/16,fd00:200::/110\n",
        )
        .unwrap();
        assert_eq!(custom.networking.pod_subnet, "10.100.0.0/16,fd00:100::/48");
        let refused = |networking: &str, field: &str, words: &[&str]| {
            let err = parse(networking).unwrap_err().to_string();
            assert!(err.starts_with("n.yaml:"), "{err}");
            assert!(err.contains(field), "{err}");
            for word in words {
                assert!(err.contains(word), "{err}");
            }
        };
        refused(
            "  ipFamily: ipv6\n",
            "networking.ipFamily",
            &["IPv6 single-stack", "dual"],
        );
        refused("  ipFamily: both\n", "networking.ipFamily", &["both"]);
        // One CIDR per family, IPv4 first, and only with dual.
        refused(
            "  ipFamily: dual\n  podSubnet: 10.244.0.0/16\n",
            "networking.podSubnet",
            &["an IPv4 CIDR and an IPv6 CIDR"],
        );
        refused(
            "  podSubnet: 10.244.0.0/16,fd00:10:244::/56\n",
            "networking.podSubnet",
            &["ipFamily: dual"],
        );
        refused(
            "  ipFamily: dual\n  podSubnet: fd00:10:244::/56,10.244.0.0/16\n",
            "networking.podSubnet",
            &["IPv4-primary"],
        );
        refused(
            "  ipFamily: dual\n  serviceSubnet: 10.96.0.0/16,fd00:10:96::/64\n",
            "networking.serviceSubnet",
            &["/108", "/120"],
        );
        refused(
            "  ipFamily: dual\n  podSubnet: 10.244.0.0/16,fd00:10:244::/80\n",
            "networking.podSubnet",
            &["/64"],
        );
    }

    /// Every cluster config in kind's documentation (src/cluster/testdata/kind-docs,
    /// each with its source path), and what rind does with it: `Ok` loads and
    /// creates the cluster it describes; `Err(field)` is refused with an error naming
    /// that field (and its line).
    #[test]
    fn kind_documentation_configs() {
        let table: &[(&str, Result<(), &str>)] = &[
            // apiServer.extraArgs / extraVolumes: flags of kubeadm's API server.
            ("auditing-L47.yaml", Err("nodes[0].kubeadmConfigPatches[0]")),
            ("configuration-L22.yaml", Ok(())),
            ("configuration-L65.yaml", Ok(())),
            // CSIMigration is no gate of rind's (upstream removed it too).
            (
                "configuration-L76.yaml",
                Err("featureGates.\"CSIMigration\""),
            ),
            // api/alpha=false is honoured (rind serves no alpha API); apps/v1beta2 is not
            // an API rind serves.
            (
                "configuration-L92.yaml",
                Err("runtimeConfig.\"apps/v1beta2\""),
            ),
            // IPv6 single-stack is refused (nodes talk IPv4 to each other); dual-stack
            // is honoured.
            ("configuration-L127.yaml", Err("networking.ipFamily")),
            ("configuration-L137.yaml", Err("networking.ipFamily")),
            ("configuration-L147.yaml", Ok(())),
            ("configuration-L157.yaml", Ok(())),
            ("configuration-L179.yaml", Ok(())),
            ("configuration-L192.yaml", Ok(())),
            ("configuration-L211.yaml", Ok(())),
            ("configuration-L225.yaml", Ok(())),
            ("configuration-L246.yaml", Ok(())),
            // Loads; creating it needs the named image to be a rind node image.
            ("configuration-L279.yaml", Ok(())),
            ("configuration-L343.yaml", Ok(())),
            ("configuration-L394.yaml", Ok(())),
            ("configuration-L419.yaml", Ok(())),
            // enable-admission-plugins: an API server flag.
            (
                "configuration-L434.yaml",
                Err("nodes[0].kubeadmConfigPatches[0]"),
            ),
            ("configuration-L452.yaml", Ok(())),
            // Two control planes (HA).
            ("configuration-L473.yaml", Ok(())),
            // evictionHard 0% and a JSON 6902 certSANs patch: both honoured.
            ("kind-example-config-L1.yaml", Ok(())),
            (
                "known-issues-L295.yaml",
                Err("featureGates.\"KubeletInUserNamespace\""),
            ),
            ("known-issues-L334.yaml", Ok(())),
            ("private-registries-L47.yaml", Ok(())),
            ("private-registries-L173.yaml", Ok(())),
            ("quick-start-L386.yaml", Ok(())),
            ("quick-start-L398.yaml", Ok(())),
            ("quick-start-L413.yaml", Ok(())),
            ("quick-start-L436.yaml", Ok(())),
            (
                "quick-start-L450.yaml",
                Err("featureGates.\"FeatureGateName\""),
            ),
            ("rootless-L183.yaml", Ok(())),
            ("using-wsl2-L78.yaml", Ok(())),
            ("working-offline-L144.yaml", Ok(())),
            ("config-with-mounts-L1.yaml", Ok(())),
            ("config-with-port-mapping-L1.yaml", Ok(())),
            ("kind-with-registry-L38.yaml", Ok(())),
        ];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kind-docs");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut listed: Vec<String> = table.iter().map(|(f, _)| f.to_string()).collect();
        listed.sort();
        assert_eq!(files, listed, "every fixture has exactly one row");
        for (file, expected) in table {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let got = Cluster::parse(&text, file);
            match (expected, got) {
                (Ok(()), Ok(c)) => {
                    // Planning reads the patches too; it must agree with validation.
                    c.kubeadm_applied().unwrap();
                }
                (Err(field), Err(err)) => {
                    let err = err.to_string();
                    let prefix = format!("{file}:");
                    assert!(err.starts_with(&prefix), "{file}: {err}");
                    let line = err[prefix.len()..].split(':').next().unwrap();
                    assert!(line.parse::<u64>().is_ok(), "{file}: no line in {err}");
                    assert!(
                        err.contains(&format!(": {field}: ")),
                        "{file}: expected {field} in {err}"
                    );
                }
                (Ok(()), Err(err)) => panic!("{file} should load: {err}"),
                (Err(field), Ok(_)) => panic!("{file} should be refused naming {field}"),
            }
        }
    }

    #[test]
    fn patched_labels_taints_and_sans_reach_the_right_nodes() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/kind-docs/configuration-L452.yaml"),
        )
        .unwrap();
        let c = Cluster::parse(&text, "c.yaml").unwrap();
        let applied = c.kubeadm_applied().unwrap();
        assert!(applied[0].taints.is_empty());
        assert_eq!(applied[1].taints[0].key, "my-taint");
        assert_eq!(applied[1].taints[0].value.as_deref(), Some("presence"));
        let text = "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
  kubeadmConfigPatches:
  - |
    kind: InitConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        node-labels: a=b
";
        let err = Cluster::parse(text, "w.yaml").unwrap_err().to_string();
        // The line of the patch's text, whose kind is the culprit.
        assert!(
            err.starts_with("w.yaml:8: nodes[1].kubeadmConfigPatches[0]:"),
            "{err}"
        );
        assert!(err.contains("use JoinConfiguration"), "{err}");
        let text = "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
kubeadmConfigPatches:
- |
  kind: ClusterConfiguration
  apiServer:
    extraArgs:
      v: \"4\"
";
        let err = Cluster::parse(text, "a.yaml").unwrap_err().to_string();
        assert!(
            err.starts_with("a.yaml:7: kubeadmConfigPatches[0]:"),
            "{err}"
        );
        assert!(err.contains("apiServer.extraArgs"), "{err}");
    }

    #[test]
    fn protocol_is_case_insensitive_and_labels_are_checked() {
        let text = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  extraPortMappings:\n  - containerPort: 80\n    protocol: udp\n";
        let c = Cluster::parse(text, "p.yaml").unwrap();
        assert_eq!(
            c.nodes[0].extra_port_mappings[0].protocol,
            Some(Protocol::Udp)
        );
        let text = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n  labels:\n    node-role.kubernetes.io/web: \"\"\n";
        let err = Cluster::parse(text, "l.yaml").unwrap_err().to_string();
        assert!(
            err.starts_with("l.yaml:6: nodes[0].labels.\"node-role.kubernetes.io/web\":"),
            "{err}"
        );
    }

    #[test]
    fn cidr_arithmetic() {
        let pods = Cidr::parse("10.244.0.0/16").unwrap();
        assert_eq!(pods.subnet(24, 0).unwrap().to_string(), "10.244.0.0/24");
        assert_eq!(pods.subnet(24, 3).unwrap().to_string(), "10.244.3.0/24");
        assert!(pods.subnet(24, 256).is_none());
        assert_eq!(
            Cidr::parse("10.96.0.0/16").unwrap().host(1).to_string(),
            "10.96.0.1"
        );
        assert!(pods.overlaps(&Cidr::parse("10.244.5.0/24").unwrap()));
        assert!(!pods.overlaps(&Cidr::parse("172.18.0.0/16").unwrap()));
    }
}
