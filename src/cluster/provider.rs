//! The Docker provider: node containers, the `rind` networks, and file and command access
//! into nodes. Everything it creates carries our labels, and everything it removes is
//! found by those labels, never by a name pattern.

use super::config::Cidr;
use super::docker::{LABEL_CLUSTER, LABEL_ROLE};
use super::pki::NodeFile;
use anyhow::{Context, bail};
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig,
    HostConfigCgroupnsModeEnum, Ipam, IpamConfig, Mount, MountType, MountVolumeOptions,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, ListNetworksOptions, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures::{StreamExt, TryStreamExt};
use rind_runtime::Role;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The Docker network the nodes of every IPv4 cluster share, as kind's `kind` network.
/// It has no IPv6 subnet: Docker sets each container's IPv6 up in its own namespace
/// (a re-execution of dockerd) on a network that has one, about 110 ms of dockerd's
/// CPU per node measured here, which an IPv4 cluster would pay for nothing.
pub const NETWORK: &str = "rind";
/// The network of dual-stack clusters: `rind`'s twin with an IPv6 subnet as well.
pub const NETWORK_DUAL: &str = "rind-dual";
/// Names another network to use (made when missing) instead of `rind` and `rind-dual`,
/// as kind's `KIND_EXPERIMENTAL_DOCKER_NETWORK` does.
pub const NETWORK_ENV: &str = "RIND_EXPERIMENTAL_DOCKER_NETWORK";

/// The network a new cluster's nodes are created on: `rind` (`rind-dual` for a
/// dual-stack cluster), or the one `NETWORK_ENV` names.
pub fn network_name(dual: bool) -> String {
    std::env::var(NETWORK_ENV)
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| if dual { NETWORK_DUAL } else { NETWORK }.to_string())
}
/// The node's static IP, kept in a label because a stopped container does not show in
/// the network's endpoint list, and its address must not be handed out again.
pub const LABEL_NODE_IP: &str = "io.rind.node-ip";
/// The host port the API server is published on (kept stable across restarts).
pub const LABEL_API_PORT: &str = "io.rind.api-port";

/// Subnets tried, in order, for a new node network: private ranges Docker does not use
/// by default that stay clear of the pod (10.244/16) and service (10.96/16) subnets.
const NETWORK_CANDIDATES: [&str; 8] = [
    "172.28.0.0/16",
    "172.29.0.0/16",
    "172.30.0.0/16",
    "172.31.0.0/16",
    "172.27.0.0/16",
    "172.26.0.0/16",
    "172.25.0.0/16",
    "172.24.0.0/16",
];

/// The `rind-dual` network's IPv6 subnet (a unique local range of our own, as kind
/// gives its `kind` network one): a dual-stack node takes the static address `::N`
/// where N is its IPv4 address's host number in the network's /16 (at most `::ffff`).
const NETWORK_V6: &str = "fd72:696e:64::/64";
const NETWORK_V6_GATEWAY: &str = "fd72:696e:64::1";
/// Where Docker picks the IPv6 addresses of containers that ask for none (the nodes
/// of IPv4 clusters on a `NETWORK_ENV` network made with IPv6, which get one whether
/// they use it or not): right above the static ones. (Docker 20.10's allocator cannot
/// hold a range as large as half the /64.)
const NETWORK_V6_DYNAMIC: &str = "fd72:696e:64::1:0/112";

/// A node network's name and subnets: IPv4, and IPv6 when the network has it (only
/// `rind-dual`, or a `NETWORK_ENV` network first made for a dual-stack cluster).
#[derive(Debug, Clone)]
pub struct NetworkSubnets {
    pub name: String,
    pub v4: Cidr,
    pub v6: Option<(Ipv6Addr, u8)>,
}

impl NetworkSubnets {
    /// A node's IPv6 address: the same host number in the IPv6 subnet as its IPv4
    /// address has in the IPv4 one, so it is as static as that and needs no
    /// bookkeeping of its own.
    pub fn v6_for(&self, v4: Ipv4Addr) -> Option<Ipv6Addr> {
        let (base, _) = self.v6?;
        let host = u32::from(v4) - u32::from(self.v4.addr);
        Some(Ipv6Addr::from(u128::from(base) + u128::from(host)))
    }

    /// The IPv6 address a dual-stack node on `v4` gets, or why there is none.
    pub fn require_v6_for(&self, v4: Ipv4Addr) -> anyhow::Result<Ipv6Addr> {
        self.v6_for(v4).with_context(|| {
            format!(
                "the Docker network {} has no IPv6 subnet, which a dual-stack cluster \
                 needs: delete every rind cluster on it so that it is removed, or name \
                 another network in {NETWORK_ENV}",
                self.name
            )
        })
    }
}

fn parse_v6(text: &str) -> Option<(Ipv6Addr, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    Some((addr.parse().ok()?, prefix.parse().ok()?))
}

#[derive(Debug, Clone)]
pub struct NodeContainer {
    pub name: String,
    pub cluster: String,
    pub role: String,
    pub ip: Option<Ipv4Addr>,
    /// The Docker network the container is attached to (kept while it is stopped).
    pub network: Option<String>,
}

/// Everything needed to create one node container.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub cluster: String,
    pub name: String,
    pub role: Role,
    pub image: String,
    pub ip: Ipv4Addr,
    /// The Docker network it is attached to, the cluster's.
    pub network: String,
    /// The node's static IPv6 address in a dual-stack cluster.
    pub ipv6: Option<Ipv6Addr>,
    /// Published host port for the API server (control-plane nodes).
    pub api_port: Option<(String, u16)>,
    pub extra_ports: Vec<super::config::PortMapping>,
    pub extra_mounts: Vec<super::config::Mount>,
    pub resources: Option<super::config::Resources>,
}

/// The role label of an HA cluster's load balancer container (kind's value), which
/// `get nodes` lists as kind does, and which is no Kubernetes node.
pub const LOAD_BALANCER_ROLE: &str = "external-load-balancer";

pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::ControlPlane => "control-plane",
        Role::Worker => "worker",
    }
}

fn label_filter(labels: &[String]) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), labels.to_vec())])
}

/// Every node container (running or not), optionally of one cluster.
pub async fn list_nodes(
    docker: &Docker,
    cluster: Option<&str>,
) -> anyhow::Result<Vec<NodeContainer>> {
    let label = match cluster {
        Some(name) => format!("{LABEL_CLUSTER}={name}"),
        None => LABEL_CLUSTER.to_string(),
    };
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&label_filter(&[label]))
        .build();
    let containers = docker
        .list_containers(Some(options))
        .await
        .context("listing node containers")?;
    let mut nodes: Vec<NodeContainer> = containers
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            NodeContainer {
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                cluster: labels.get(LABEL_CLUSTER).cloned().unwrap_or_default(),
                role: labels.get(LABEL_ROLE).cloned().unwrap_or_default(),
                ip: labels.get(LABEL_NODE_IP).and_then(|ip| ip.parse().ok()),
                network: c
                    .network_settings
                    .and_then(|n| n.networks)
                    .and_then(|n| n.into_keys().next()),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

/// The Kubernetes nodes of a cluster: its containers without the load balancer.
pub async fn list_internal_nodes(
    docker: &Docker,
    cluster: &str,
) -> anyhow::Result<Vec<NodeContainer>> {
    let mut nodes = list_nodes(docker, Some(cluster)).await?;
    nodes.retain(|n| n.role != LOAD_BALANCER_ROLE);
    Ok(nodes)
}

/// The cluster's load balancer container, when it has one (HA clusters).
pub async fn load_balancer_of(
    docker: &Docker,
    cluster: &str,
) -> anyhow::Result<Option<NodeContainer>> {
    Ok(list_nodes(docker, Some(cluster))
        .await?
        .into_iter()
        .find(|n| n.role == LOAD_BALANCER_ROLE))
}

pub async fn list_clusters(docker: &Docker) -> anyhow::Result<Vec<String>> {
    let names: BTreeSet<String> = list_nodes(docker, None)
        .await?
        .into_iter()
        .map(|n| n.cluster)
        .collect();
    Ok(names.into_iter().collect())
}

/// The subnets of the network a new cluster's nodes go on (`network_name`), creating
/// it when missing: with an IPv6 subnet when it is made for a dual-stack cluster.
pub async fn ensure_network(docker: &Docker, dual: bool) -> anyhow::Result<NetworkSubnets> {
    let name = network_name(dual);
    if let Some(subnet) = network_subnets(docker, &name).await? {
        return Ok(subnet);
    }
    let networks = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .context("listing Docker networks")?;
    let taken: Vec<Cidr> = networks
        .iter()
        .flat_map(|n| n.ipam.iter().flat_map(|ipam| ipam.config.iter().flatten()))
        .filter_map(|c| c.subnet.as_deref().and_then(Cidr::parse))
        .collect();
    let subnet = NETWORK_CANDIDATES
        .iter()
        .filter_map(|c| Cidr::parse(c))
        .find(|c| !taken.iter().any(|t| t.overlaps(c)))
        .with_context(|| {
            format!(
                "every candidate subnet for the {name} network overlaps an existing Docker network"
            )
        })?;
    // A fixed subnet is what lets nodes keep static IPs across restarts.
    let mut ipam = vec![IpamConfig {
        subnet: Some(subnet.to_string()),
        gateway: Some(subnet.host(1).to_string()),
        ..Default::default()
    }];
    if dual {
        ipam.push(IpamConfig {
            subnet: Some(NETWORK_V6.to_string()),
            ip_range: Some(NETWORK_V6_DYNAMIC.to_string()),
            gateway: Some(NETWORK_V6_GATEWAY.to_string()),
            ..Default::default()
        });
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".to_string()),
        // Dual-stack clusters give their nodes an IPv6 address on it, as kind's network
        // has one; without it Docker sets no IPv6 up per container.
        enable_ipv6: Some(dual),
        ipam: Some(Ipam {
            config: Some(ipam),
            ..Default::default()
        }),
        // Nodes route pod traffic to each other; masquerading between nodes of the
        // bridge would hide pod source addresses.
        options: Some(HashMap::from([(
            "com.docker.network.bridge.enable_ip_masquerade".to_string(),
            "true".to_string(),
        )])),
        labels: Some(HashMap::from([(LABEL_CLUSTER.to_string(), String::new())])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => Ok(NetworkSubnets {
            name,
            v4: subnet,
            v6: if dual { parse_v6(NETWORK_V6) } else { None },
        }),
        // Another `create cluster` made it in the meantime: use theirs.
        Err(err) => network_subnets(docker, &name)
            .await?
            .with_context(|| format!("creating the {name} network: {err}")),
    }
}

/// The network an existing cluster's nodes are on (where a node added to it goes).
pub async fn cluster_network(docker: &Docker, cluster: &str) -> anyhow::Result<NetworkSubnets> {
    let name = list_nodes(docker, Some(cluster))
        .await?
        .into_iter()
        .find_map(|n| n.network)
        .with_context(|| format!("no node of cluster {cluster} is attached to a network"))?;
    network_subnets(docker, &name)
        .await?
        .with_context(|| format!("the Docker network {name} of cluster {cluster} is gone"))
}

/// A network's subnets, or None when there is no network of that name.
async fn network_subnets(docker: &Docker, name: &str) -> anyhow::Result<Option<NetworkSubnets>> {
    match docker.inspect_network(name, None).await {
        Ok(network) => {
            let configs: Vec<_> = network
                .ipam
                .and_then(|ipam| ipam.config)
                .into_iter()
                .flatten()
                .collect();
            let subnet = configs
                .iter()
                .find_map(|c| c.subnet.as_deref().and_then(Cidr::parse))
                .with_context(|| {
                    format!("the Docker network {name} has no IPv4 subnet; remove it and retry")
                })?;
            let v6 = configs
                .iter()
                .find_map(|c| c.subnet.as_deref().and_then(parse_v6));
            Ok(Some(NetworkSubnets {
                name: name.to_string(),
                v4: subnet,
                v6,
            }))
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(err) => Err(err).with_context(|| format!("inspecting the {name} network")),
    }
}

/// Addresses on `network` held by nodes (running or stopped) or other containers.
pub async fn used_ips(docker: &Docker, network: &str) -> anyhow::Result<HashSet<Ipv4Addr>> {
    // Every node's address, whatever its network: two networks may share a subnet
    // (one made by another tool), and an address kept off both costs nothing.
    let mut used: HashSet<Ipv4Addr> = list_nodes(docker, None)
        .await?
        .into_iter()
        .filter_map(|n| n.ip)
        .collect();
    if let Ok(network) = docker.inspect_network(network, None).await {
        for endpoint in network.containers.unwrap_or_default().values() {
            let address = endpoint
                .ipv4_address
                .as_deref()
                .and_then(|a| a.split('/').next());
            if let Some(Ok(ip)) = address.map(str::parse) {
                used.insert(ip);
            }
        }
    }
    Ok(used)
}

/// An `extraPortMappings` entry as Docker's port key (`80/tcp`) and host binding: kind's
/// defaults, TCP and every address (`0.0.0.0`); host port 0 lets Docker pick one.
fn extra_port_binding(mapping: &super::config::PortMapping) -> (String, PortBinding) {
    let protocol = match mapping.protocol {
        Some(super::config::Protocol::Udp) => "udp",
        Some(super::config::Protocol::Sctp) => "sctp",
        Some(super::config::Protocol::Tcp) | None => "tcp",
    };
    let key = format!("{}/{protocol}", mapping.container_port);
    let binding = PortBinding {
        host_ip: Some(
            mapping
                .listen_address
                .clone()
                .unwrap_or_else(|| "0.0.0.0".to_string()),
        ),
        host_port: (mapping.host_port != 0).then(|| mapping.host_port.to_string()),
    };
    (key, binding)
}

/// An `extraMounts` entry as a Docker bind: `ro`/`rw`, `Z` for SELinux relabelling, and
/// the propagation kind maps it to (HostToContainer is `rslave`, Bidirectional
/// `rshared`, None Docker's default `rprivate`).
fn bind_mount(m: &super::config::Mount) -> String {
    let mut options = vec![if m.read_only { "ro" } else { "rw" }];
    if m.selinux_relabel {
        options.push("Z");
    }
    match m.propagation {
        Some(super::config::Propagation::HostToContainer) => options.push("rslave"),
        Some(super::config::Propagation::Bidirectional) => options.push("rshared"),
        Some(super::config::Propagation::None) | None => {}
    }
    format!("{}:{}:{}", m.host_path, m.container_path, options.join(","))
}

/// Creates (does not start) a node container with the recipe that works both where
/// `--privileged` is allowed and where the daemon lacks CAP_SYS_RESOURCE.
pub async fn create_node(docker: &Docker, spec: &NodeSpec) -> anyhow::Result<()> {
    let mut labels = HashMap::from([
        (LABEL_CLUSTER.to_string(), spec.cluster.clone()),
        (LABEL_ROLE.to_string(), role_label(spec.role).to_string()),
        (LABEL_NODE_IP.to_string(), spec.ip.to_string()),
    ]);
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    if let Some((address, port)) = &spec.api_port {
        labels.insert(LABEL_API_PORT.to_string(), port.to_string());
        let key = format!("{}/tcp", rind_runtime::paths::APISERVER_PORT);
        exposed.push(key.clone());
        port_bindings.insert(
            key,
            Some(vec![PortBinding {
                host_ip: Some(address.clone()),
                host_port: Some(port.to_string()),
            }]),
        );
    }
    for mapping in &spec.extra_ports {
        let (key, binding) = extra_port_binding(mapping);
        exposed.push(key.clone());
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    let binds: Vec<String> = spec.extra_mounts.iter().map(bind_mount).collect();
    let (memory, nano_cpus) = match &spec.resources {
        Some(r) => (
            r.memory.as_deref().map(parse_memory).transpose()?,
            r.cpus.map(|c| (c * 1e9) as i64),
        ),
        None => (None, None),
    };
    let host_config = HostConfig {
        // Every capability but CAP_SYS_RESOURCE: the node runs containerd, runc, etcd and
        // iptables, which need nearly all of them, and some hosts' daemons cannot grant
        // CAP_SYS_RESOURCE (`--privileged` fails there with "unable to apply caps").
        cap_add: Some(vec!["ALL".to_string()]),
        cap_drop: Some(vec!["SYS_RESOURCE".to_string()]),
        security_opt: Some(vec![
            // runc inside the node makes syscalls (mount, unshare, pivot_root) the
            // default profile blocks.
            "seccomp=unconfined".to_string(),
            // The default AppArmor profile forbids the mounts containerd makes.
            "apparmor=unconfined".to_string(),
        ]),
        // No masked or read-only paths (the CLI's `systempaths=unconfined`): /proc and
        // /sys must be writable for sysctls and cgroup mounts.
        masked_paths: Some(Vec::new()),
        readonly_paths: Some(Vec::new()),
        // Nested containers create device nodes (/dev/null, …) in their own cgroups.
        device_cgroup_rules: Some(vec!["a *:* rwm".to_string()]),
        // Our own cgroup namespace, so the node's init can mount cgroups as its root.
        cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
        // /run and /tmp on tmpfs: sockets and scratch must not survive a restart, as on
        // a real machine.
        tmpfs: Some(HashMap::from([
            ("/run".to_string(), "rw,nosuid,nodev,exec".to_string()),
            ("/tmp".to_string(), "rw,nosuid,nodev,exec".to_string()),
        ])),
        binds: (!binds.is_empty()).then_some(binds),
        // /var is a volume: containerd's images and snapshots, etcd's data, pod logs
        // live there, off the container's copy-on-write layer and across restarts.
        // Anonymous (removed with the node) and created empty: Docker's copy of the
        // image's /var into it cost 0.2–0.3 s per node, one node after another; the
        // node's init merges the image's /var itself (`rind_node::var`).
        mounts: Some(vec![Mount {
            target: Some("/var".to_string()),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions {
                no_copy: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        port_bindings: Some(port_bindings),
        // Bring the node back after a daemon restart unless the user stopped it.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        memory,
        nano_cpus,
        sysctls: spec.ipv6.map(|_| {
            HashMap::from([
                // Docker turns IPv6 off in containers by default, on the interfaces
                // there (`all`) and on those made later inside the node (`default`:
                // the pods' bridge and veths); a dual-stack node needs it on.
                (
                    "net.ipv6.conf.all.disable_ipv6".to_string(),
                    "0".to_string(),
                ),
                (
                    "net.ipv6.conf.default.disable_ipv6".to_string(),
                    "0".to_string(),
                ),
                // The node routes IPv6 pod traffic between its pods' bridge and other
                // nodes, as net.ipv4.ip_forward does for IPv4.
                ("net.ipv6.conf.all.forwarding".to_string(), "1".to_string()),
            ])
        }),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        hostname: Some(spec.name.clone()),
        image: Some(spec.image.clone()),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        host_config: Some(host_config),
        // A static address, so certificates, kubeconfigs and etcd peer URLs stay valid
        // when the node restarts.
        networking_config: Some(static_address(&spec.network, spec.ip, spec.ipv6)),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default()
        .name(&spec.name)
        .build();
    docker
        .create_container(Some(options), body)
        .await
        .with_context(|| format!("creating node container {}", spec.name))?;
    Ok(())
}

/// Marks a cluster's service load balancer container (`<cluster>-service-lb`). Not
/// `LABEL_CLUSTER`: that label means "a node", and this container is none.
pub const LABEL_SERVICE_LB: &str = "io.rind.service-lb";
/// The service load balancer's API credentials inside its container.
pub const SERVICE_LB_KUBECONFIG: &str = "/etc/rind/service-lb.conf";

pub fn service_lb_name(cluster: &str) -> String {
    format!("{cluster}-service-lb")
}

/// Creates and starts the cluster's service load balancer: the node image running
/// `rind node service-lb` on the host's network, so that it can open listeners on
/// host loopback addresses for LoadBalancer Services while the cluster runs (ports a
/// container publishes are fixed when it is created; a host-network process can open
/// new ones at any time). From the host's network namespace it reaches the nodes'
/// NodePorts through the `rind` bridge.
pub async fn create_service_lb(
    docker: &Docker,
    cluster: &str,
    image: &str,
    kubeconfig: &NodeFile,
) -> anyhow::Result<()> {
    let name = service_lb_name(cluster);
    let host_config = HostConfig {
        // The host's network: listeners for new Services appear on the host's loopback
        // at once, without recreating the container.
        network_mode: Some("host".to_string()),
        // Back after a daemon restart or host reboot, as the nodes are.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(HashMap::from([(
            LABEL_SERVICE_LB.to_string(),
            cluster.to_string(),
        )])),
        // The node image's entrypoint boots a node; this container runs one command.
        entrypoint: Some(vec![
            format!("/{}", super::image::node::RIND_IN_NODE),
            "node".to_string(),
            "service-lb".to_string(),
            "--kubeconfig".to_string(),
            SERVICE_LB_KUBECONFIG.to_string(),
        ]),
        host_config: Some(host_config),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    docker
        .create_container(Some(options), body)
        .await
        .with_context(|| format!("creating {name}"))?;
    copy_files(docker, &name, std::slice::from_ref(kubeconfig)).await?;
    start(docker, &name).await
}

/// The service load balancer containers of one cluster (at most one, by name).
pub async fn service_lb_containers(docker: &Docker, cluster: &str) -> anyhow::Result<Vec<String>> {
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&label_filter(&[format!("{LABEL_SERVICE_LB}={cluster}")]))
        .build();
    let containers = docker
        .list_containers(Some(options))
        .await
        .context("listing service load balancer containers")?;
    Ok(containers
        .into_iter()
        .filter_map(|c| c.names?.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .collect())
}

/// Creates and starts an HA cluster's load balancer: the node image running `rind node
/// lb` as its only process. It needs none of a node's privileges, volumes or mounts:
/// it only listens and dials on the cluster's network.
pub async fn create_load_balancer(
    docker: &Docker,
    lb: &super::plan::LoadBalancerPlan,
    ca_pem: &str,
) -> anyhow::Result<()> {
    let labels = HashMap::from([
        (LABEL_CLUSTER.to_string(), lb.cluster.clone()),
        (LABEL_ROLE.to_string(), LOAD_BALANCER_ROLE.to_string()),
        (LABEL_NODE_IP.to_string(), lb.ip.to_string()),
        (LABEL_API_PORT.to_string(), lb.api_port.1.to_string()),
    ]);
    let key = format!("{}/tcp", rind_runtime::paths::APISERVER_PORT);
    let host_config = HostConfig {
        // The API port on the host, at the port chosen once so kubeconfigs stay valid.
        port_bindings: Some(HashMap::from([(
            key.clone(),
            Some(vec![PortBinding {
                host_ip: Some(lb.api_port.0.clone()),
                host_port: Some(lb.api_port.1.to_string()),
            }]),
        )])),
        // Back after a daemon restart, as the nodes it fronts.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        hostname: Some(lb.name.clone()),
        image: Some(lb.image.clone()),
        // Our own binary from the node image, as the balancer instead of the node's init.
        entrypoint: Some(vec![
            "/usr/local/bin/rind".to_string(),
            "node".to_string(),
            "lb".to_string(),
        ]),
        labels: Some(labels),
        exposed_ports: Some(vec![key]),
        host_config: Some(host_config),
        // A static address: it is in every kubeconfig and certificate.
        networking_config: Some(static_address(&lb.network, lb.ip, None)),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default()
        .name(&lb.name)
        .build();
    docker
        .create_container(Some(options), body)
        .await
        .with_context(|| format!("creating the load balancer {}", lb.name))?;
    let mut files = vec![NodeFile {
        path: rind_runtime::paths::CA_CRT.to_string(),
        contents: ca_pem.as_bytes().to_vec(),
        mode: 0o644,
    }];
    files.push(load_balancer_config_file(&lb.backends)?);
    copy_files(docker, &lb.name, &files).await?;
    start(docker, &lb.name).await
}

fn load_balancer_config_file(backends: &[String]) -> anyhow::Result<NodeFile> {
    let config = rind_runtime::config::LoadBalancerConfig {
        backends: backends.to_vec(),
    };
    Ok(NodeFile {
        path: rind_runtime::paths::LOAD_BALANCER_CONFIG.to_string(),
        contents: serde_json::to_vec_pretty(&config)
            .context("encoding the load balancer config")?,
        mode: 0o644,
    })
}

/// Points the load balancer at `backends` (`IP:port`); it picks the change up within a
/// second, without dropping connections to the backends that stay.
pub async fn set_load_balancer_backends(
    docker: &Docker,
    container: &str,
    backends: &[String],
) -> anyhow::Result<()> {
    copy_files(docker, container, &[load_balancer_config_file(backends)?]).await
}

/// The cluster's `network` with the fixed address `ip` (and `ipv6`) for a container.
fn static_address(network: &str, ip: Ipv4Addr, ipv6: Option<Ipv6Addr>) -> NetworkingConfig {
    NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.to_string(),
            EndpointSettings {
                ipam_config: Some(EndpointIpamConfig {
                    ipv4_address: Some(ip.to_string()),
                    ipv6_address: ipv6.map(|ip| ip.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )])),
    }
}

/// Docker's memory sizes: a number with an optional b, k, m or g suffix.
fn parse_memory(text: &str) -> anyhow::Result<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let multiplier: i64 = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => bail!("resources.memory: {text:?} is not a memory size (e.g. 512m, 2g)"),
    };
    let value: i64 = digits
        .parse()
        .with_context(|| format!("resources.memory: {text:?} is not a memory size"))?;
    Ok(value * multiplier)
}

pub async fn start(docker: &Docker, name: &str) -> anyhow::Result<()> {
    docker
        .start_container(name, None)
        .await
        .with_context(|| format!("starting node {name}"))
}

/// Starts a node unless it runs already (Docker answers 304 Not Modified then).
pub async fn start_if_stopped(docker: &Docker, name: &str) -> anyhow::Result<()> {
    match docker.start_container(name, None).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(err) => Err(err).with_context(|| format!("starting node {name}")),
    }
}

/// Stops a node: SIGTERM to its init, which stops every component (each gets the
/// supervisor's grace period), then SIGKILL after `grace_seconds`.
pub async fn stop(docker: &Docker, name: &str, grace_seconds: i32) -> anyhow::Result<()> {
    let options = bollard::query_parameters::StopContainerOptionsBuilder::default()
        .t(grace_seconds)
        .build();
    match docker.stop_container(name, Some(options)).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(err) => Err(err).with_context(|| format!("stopping node {name}")),
    }
}

/// The image a node container was created from, and whether it runs.
pub async fn image_and_state(docker: &Docker, name: &str) -> anyhow::Result<(String, bool)> {
    let inspect = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspecting {name}"))?;
    let image = inspect
        .config
        .and_then(|c| c.image)
        .with_context(|| format!("{name} names no image"))?;
    let running = inspect.state.and_then(|s| s.running).unwrap_or(false);
    Ok((image, running))
}

/// Removes the containers (and their anonymous /var volumes) by name.
pub async fn remove_containers(docker: &Docker, names: &[String]) -> anyhow::Result<()> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let results = futures::future::join_all(names.iter().map(|name| {
        let options = options.clone();
        async move {
            match docker.remove_container(name, Some(options)).await {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(()),
                Err(err) => Err(err).with_context(|| format!("removing node {name}")),
            }
        }
    }))
    .await;
    results.into_iter().collect()
}

/// Removes `network` once no container is attached to it and no node (stopped ones
/// included) of any cluster was made on it.
pub async fn remove_network_if_unused(docker: &Docker, network: &str) -> anyhow::Result<()> {
    let inspected = match docker.inspect_network(network, None).await {
        Ok(n) => n,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("inspecting the {network} network")),
    };
    // Stopped nodes are not attached but still need the network to start again.
    if inspected.containers.map(|c| !c.is_empty()).unwrap_or(false)
        || list_nodes(docker, None)
            .await?
            .iter()
            .any(|n| n.network.as_deref().is_none_or(|n| n == network))
    {
        return Ok(());
    }
    match docker.remove_network(network).await {
        // A race with another cluster being created: it is in use again, keep it.
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 403 | 404 | 409,
            ..
        }) => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing the {network} network")),
    }
}

/// Writes files into a (created or running) node container.
pub async fn copy_files(
    docker: &Docker,
    container: &str,
    files: &[NodeFile],
) -> anyhow::Result<()> {
    let mut archive = tar::Builder::new(Vec::new());
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.contents.len() as u64);
        header.set_mode(file.mode);
        header.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
        header.set_cksum();
        archive
            .append_data(
                &mut header,
                file.path.trim_start_matches('/'),
                file.contents.as_slice(),
            )
            .with_context(|| format!("packing {}", file.path))?;
    }
    let bytes = archive.into_inner().context("packing files for the node")?;
    let options = UploadToContainerOptionsBuilder::default().path("/").build();
    docker
        .upload_to_container(container, Some(options), bollard::body_full(bytes.into()))
        .await
        .with_context(|| format!("copying files into {container}"))
}

/// Reads one file out of a node.
pub async fn read_file(docker: &Docker, container: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let chunks: Vec<bytes::Bytes> = docker
        .download_from_container(container, Some(options))
        .try_collect()
        .await
        .with_context(|| format!("reading {path} from {container}"))?;
    let data = chunks.concat();
    let mut archive = tar::Archive::new(data.as_slice());
    let mut entries = archive
        .entries()
        .context("reading the archive Docker returned")?;
    let mut entry = entries
        .next()
        .transpose()
        .context("reading the archive Docker returned")?
        .with_context(|| format!("{path} is missing in {container}"))?;
    let mut contents = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut contents)
        .with_context(|| format!("reading {path}"))?;
    Ok(contents)
}

/// The output of a command run in a node.
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command in a running node and collects its output.
pub async fn exec(docker: &Docker, container: &str, cmd: &[&str]) -> anyhow::Result<ExecOutput> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("running {cmd:?} in {container}"))?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&created.id, None).await?
    {
        while let Some(chunk) = output.next().await {
            match chunk? {
                bollard::container::LogOutput::StdOut { message } => {
                    stdout.extend_from_slice(&message)
                }
                bollard::container::LogOutput::StdErr { message } => {
                    stderr.extend_from_slice(&message)
                }
                _ => {}
            }
        }
    }
    let inspect = docker.inspect_exec(&created.id).await?;
    Ok(ExecOutput {
        exit_code: inspect.exit_code.unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// The host address and port the control plane's API server is published on.
pub async fn api_endpoint(docker: &Docker, container: &str) -> anyhow::Result<(String, u16)> {
    let inspect = docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspecting {container}"))?;
    let key = format!("{}/tcp", rind_runtime::paths::APISERVER_PORT);
    let binding = inspect
        .host_config
        .and_then(|h| h.port_bindings)
        .and_then(|mut p| p.remove(&key))
        .flatten()
        .and_then(|b| b.into_iter().next())
        .with_context(|| format!("{container} publishes no API server port"))?;
    let port = binding
        .host_port
        .as_deref()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("{container} has no fixed API server host port"))?;
    let address = match binding.host_ip.as_deref() {
        None | Some("") | Some("0.0.0.0") => "127.0.0.1".to_string(),
        Some(ip) => ip.to_string(),
    };
    Ok((address, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mappings_and_mounts_as_docker_takes_them() {
        use crate::config::{Mount, PortMapping, Propagation, Protocol};
        let (key, binding) = extra_port_binding(&PortMapping {
            container_port: 53,
            host_port: 5353,
            listen_address: Some("127.0.0.1".into()),
            protocol: Some(Protocol::Udp),
        });
        assert_eq!(key, "53/udp");
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some("5353"));
        let (key, binding) = extra_port_binding(&PortMapping {
            container_port: 80,
            host_port: 0,
            listen_address: None,
            protocol: None,
        });
        assert_eq!(key, "80/tcp");
        assert_eq!(binding.host_ip.as_deref(), Some("0.0.0.0"));
        assert_eq!(binding.host_port, None);
        let (key, _) = extra_port_binding(&PortMapping {
            container_port: 9,
            host_port: 9,
            listen_address: None,
            protocol: Some(Protocol::Sctp),
        });
        assert_eq!(key, "9/sctp");
        let mount = |read_only, selinux_relabel, propagation| Mount {
            host_path: "/h".into(),
            container_path: "/c".into(),
            read_only,
            selinux_relabel,
            propagation,
        };
        assert_eq!(bind_mount(&mount(false, false, None)), "/h:/c:rw");
        assert_eq!(
            bind_mount(&mount(true, true, Some(Propagation::HostToContainer))),
            "/h:/c:ro,Z,rslave"
        );
        assert_eq!(
            bind_mount(&mount(false, false, Some(Propagation::Bidirectional))),
            "/h:/c:rw,rshared"
        );
        assert_eq!(
            bind_mount(&mount(false, false, Some(Propagation::None))),
            "/h:/c:rw"
        );
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("5x").is_err());
    }
}
