//! Turns a cluster config into concrete nodes: names, roles, addresses, pod CIDRs and
//! ports, decided before anything is created (as kind plans its nodes first).

use super::config::{Cidr, Cluster, Role as ConfigRole};
use super::provider::{NetworkSubnets, NodeSpec};
use anyhow::Context;
use rind_runtime::{NodeConfig, Role, paths};
use std::collections::HashSet;
use std::net::Ipv4Addr;

pub struct ClusterPlan {
    pub name: String,
    /// Extra names for the API server's certificate (ClusterConfiguration
    /// `apiServer.certSANs` in the kubeadm patches).
    pub cert_sans: Vec<String>,
    pub nodes: Vec<NodePlan>,
    pub service_ip: Ipv4Addr,
    /// With more than one control plane: the container in front of their API servers.
    pub load_balancer: Option<LoadBalancerPlan>,
}

/// The `<cluster>-external-load-balancer` container of an HA cluster (kind's name): it
/// publishes the API port on the host and forwards to every ready API server.
#[derive(Debug, Clone)]
pub struct LoadBalancerPlan {
    pub cluster: String,
    pub name: String,
    pub image: String,
    /// The cluster's Docker network.
    pub network: String,
    pub ip: Ipv4Addr,
    /// The host address and port the API is published on.
    pub api_port: (String, u16),
    /// The API servers as `IP:port`.
    pub backends: Vec<String>,
}

/// kind's name for an HA cluster's load balancer container.
pub fn load_balancer_name(cluster: &str) -> String {
    format!("{cluster}-external-load-balancer")
}

pub struct NodePlan {
    pub spec: NodeSpec,
    pub config: NodeConfig,
}

impl ClusterPlan {
    /// Names the API server's certificate must carry besides the node's own: the load
    /// balancer's name and address, which clients dial in an HA cluster.
    pub fn api_server_sans(&self) -> Vec<String> {
        self.load_balancer
            .iter()
            .flat_map(|lb| [lb.name.clone(), lb.ip.to_string()])
            .collect()
    }

    pub fn control_plane(&self) -> &NodePlan {
        // The config is validated to have a control-plane node, and planning keeps order.
        self.nodes
            .iter()
            .find(|n| n.spec.role == Role::ControlPlane)
            .unwrap_or(&self.nodes[0])
    }
}

/// Node names as kind gives them: `<cluster>-control-plane`, `<cluster>-control-plane2`,
/// `<cluster>-worker`, `<cluster>-worker2`, …
fn node_names(cluster: &str, roles: &[ConfigRole]) -> Vec<String> {
    let (mut control_planes, mut workers) = (0, 0);
    roles
        .iter()
        .map(|role| {
            let (base, count) = match role {
                ConfigRole::ControlPlane => ("control-plane", &mut control_planes),
                ConfigRole::Worker => ("worker", &mut workers),
            };
            *count += 1;
            if *count == 1 {
                format!("{cluster}-{base}")
            } else {
                format!("{cluster}-{base}{count}")
            }
        })
        .collect()
}

pub fn plan(
    name: &str,
    config: &Cluster,
    default_image: &str,
    network: NetworkSubnets,
    used_ips: &HashSet<Ipv4Addr>,
    api_port: u16,
) -> anyhow::Result<ClusterPlan> {
    let subnet = network.v4;
    // The config is validated before planning: a dual-stack list is IPv4 first, so
    // the IPv4 range is the first entry either way.
    let pod_subnet = config.networking.pod_subnet.clone();
    let service_subnet = config.networking.service_subnet.clone();
    let first_service_cidr = rind_runtime::config::cidr_list(&service_subnet)
        .next()
        .and_then(Cidr::parse)
        .context("networking.serviceSubnet")?;
    let service_ip = first_service_cidr.host(1);
    let dual = config.networking.ip_family == "dual";
    let kube_proxy_mode = config
        .proxy_mode()
        .map_err(|m| anyhow::anyhow!("networking.kubeProxyMode: {m}"))?;
    let roles: Vec<ConfigRole> = config.nodes.iter().map(|n| n.role).collect();
    let names = node_names(name, &roles);
    // Addresses from .2 up (.1 is the bridge's gateway), skipping every one in use.
    let size = 1u32 << (32 - subnet.prefix);
    let mut free = (2..size.saturating_sub(1))
        .map(|i| subnet.host(i))
        .filter(|ip| !used_ips.contains(ip));
    let mut ips = Vec::new();
    for node_name in &names {
        ips.push(
            free.next()
                .with_context(|| format!("no free address left in {subnet} for {node_name}"))?,
        );
    }
    let cp_index = roles
        .iter()
        .position(|r| *r == ConfigRole::ControlPlane)
        .context("no control-plane node")?;
    let control_plane_ips: Vec<Ipv4Addr> = ips
        .iter()
        .zip(&roles)
        .filter(|(_, role)| **role == ConfigRole::ControlPlane)
        .map(|(ip, _)| *ip)
        .collect();
    // With several control planes every client (host, kubelets, in-node components)
    // goes through the load balancer, so losing any one control plane loses no client.
    let load_balancer = if control_plane_ips.len() > 1 {
        let lb_name = load_balancer_name(name);
        let ip = free
            .next()
            .with_context(|| format!("no free address left in {subnet} for {lb_name}"))?;
        Some(LoadBalancerPlan {
            cluster: name.to_string(),
            name: lb_name,
            image: default_image.to_string(),
            network: network.name.clone(),
            ip,
            api_port: (config.networking.api_server_address.clone(), api_port),
            backends: control_plane_ips
                .iter()
                .map(|ip| format!("{ip}:{}", paths::APISERVER_PORT))
                .collect(),
        })
    } else {
        None
    };
    let api_server_ip = load_balancer.as_ref().map_or(ips[cp_index], |lb| lb.ip);
    let api_server_url = format!("https://{api_server_ip}:{}", paths::APISERVER_PORT);
    let etcd_initial_cluster: Vec<String> = names
        .iter()
        .zip(&ips)
        .zip(&roles)
        .filter(|(_, role)| **role == ConfigRole::ControlPlane)
        .map(|((n, ip), _)| format!("{n}=https://{ip}:{}", paths::ETCD_PEER_PORT))
        .collect();
    // The config is validated before planning; this only fails for configs built in code.
    let patched = config
        .kubeadm_applied()
        .map_err(|err| anyhow::anyhow!("{}: {}", err.field, err.message))?;
    let mut nodes = Vec::new();
    for (index, ((node, node_name), ip)) in config.nodes.iter().zip(&names).zip(&ips).enumerate() {
        let applied = &patched[index];
        // kind implements `labels` with the kubelet's --node-labels, as the patches do.
        let mut labels = node.labels.clone();
        labels.extend(applied.labels.clone());
        // Relative host paths are relative to the working directory, as in kind.
        let extra_mounts = node
            .extra_mounts
            .iter()
            .map(|m| {
                let mut m = m.clone();
                let absolute = std::path::absolute(&m.host_path)
                    .with_context(|| format!("extraMounts hostPath {:?}", m.host_path))?;
                m.host_path = absolute.to_string_lossy().into_owned();
                Ok(m)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let role = match node.role {
            ConfigRole::ControlPlane => Role::ControlPlane,
            ConfigRole::Worker => Role::Worker,
        };
        let api_port = (load_balancer.is_none() && index == cp_index)
            .then(|| (config.networking.api_server_address.clone(), api_port));
        nodes.push(NodePlan {
            spec: NodeSpec {
                cluster: name.to_string(),
                name: node_name.clone(),
                role,
                image: node
                    .image
                    .clone()
                    .unwrap_or_else(|| default_image.to_string()),
                ip: *ip,
                network: network.name.clone(),
                ipv6: if dual {
                    Some(network.require_v6_for(*ip)?)
                } else {
                    None
                },
                api_port,
                extra_ports: node.extra_port_mappings.clone(),
                extra_mounts,
                resources: node.resources.clone(),
            },
            config: NodeConfig {
                cluster_name: name.to_string(),
                node_name: node_name.clone(),
                role,
                node_ip: ip.to_string(),
                node_ipv6: if dual {
                    Some(network.require_v6_for(*ip)?.to_string())
                } else {
                    None
                },
                api_server_url: api_server_url.clone(),
                pod_subnet: pod_subnet.clone(),
                service_subnet: service_subnet.clone(),
                labels,
                register_with_taints: applied
                    .taints
                    .iter()
                    .map(|t| rind_runtime::RegisterTaint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: t.effect.clone(),
                    })
                    .collect(),
                max_pods: applied.max_pods,
                etcd_initial_cluster: if role == Role::ControlPlane {
                    etcd_initial_cluster.clone()
                } else {
                    Vec::new()
                },
                etcd_join_existing: false,
                disable_default_cni: config.networking.disable_default_cni,
                kube_proxy_mode,
                dns_search: config.networking.dns_search.clone(),
                image: node
                    .image
                    .clone()
                    .unwrap_or_else(|| default_image.to_string()),
                containerd_config_patches: config.containerd_config_patches.clone(),
            },
        });
    }
    // The address the API is published on is a name clients verify, as kind lists it
    // in kubeadm's certSANs (127.0.0.1 is in every certificate already; 0.0.0.0 is
    // reached as 127.0.0.1).
    let published = &config.networking.api_server_address;
    let mut cert_sans: Vec<String> = Vec::new();
    if published != "127.0.0.1" && published != "0.0.0.0" {
        cert_sans.push(published.clone());
    }
    for san in patched.iter().flat_map(|a| &a.cert_sans) {
        if !cert_sans.contains(san) {
            cert_sans.push(san.clone());
        }
    }
    Ok(ClusterPlan {
        name: name.to_string(),
        cert_sans,
        nodes,
        service_ip,
        load_balancer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_runtime::ProxyMode;

    #[test]
    fn names_addresses_and_cidrs() {
        let config = Cluster::parse(
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: worker\n- role: worker\n",
            "c.yaml",
        )
        .unwrap();
        let used = HashSet::from(["172.28.0.3".parse().unwrap()]);
        let plan = plan(
            "dev",
            &config,
            "rind/node:v1",
            NetworkSubnets {
                name: "rind".to_string(),
                v4: Cidr::parse("172.28.0.0/16").unwrap(),
                v6: None,
            },
            &used,
            40000,
        )
        .unwrap();
        let names: Vec<_> = plan.nodes.iter().map(|n| n.spec.name.as_str()).collect();
        assert_eq!(names, ["dev-control-plane", "dev-worker", "dev-worker2"]);
        let ips: Vec<_> = plan
            .nodes
            .iter()
            .map(|n| n.config.node_ip.as_str())
            .collect();
        assert_eq!(ips, ["172.28.0.2", "172.28.0.4", "172.28.0.5"]);
        assert!(
            plan.nodes
                .iter()
                .all(|n| n.config.kube_proxy_mode == ProxyMode::Iptables)
        );
        assert!(!plan.nodes[0].config.disable_default_cni);
        assert_eq!(
            plan.nodes[1].config.api_server_url,
            "https://172.28.0.2:6443"
        );
        assert_eq!(
            plan.control_plane().spec.api_port,
            Some(("127.0.0.1".to_string(), 40000))
        );
        assert!(plan.nodes[1].spec.api_port.is_none());
        assert_eq!(
            plan.nodes[0].config.etcd_initial_cluster,
            ["dev-control-plane=https://172.28.0.2:2380"]
        );
        assert_eq!(plan.service_ip.to_string(), "10.96.0.1");
        assert!(plan.load_balancer.is_none());
        assert!(plan.cert_sans.is_empty());
        assert!(plan.nodes.iter().all(|n| n.config.node_ipv6.is_none()));
    }

    #[test]
    fn dual_stack_nodes_get_an_ipv6_address_of_the_same_host_number() {
        let config = Cluster::parse(
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  ipFamily: dual\nnodes:\n- role: control-plane\n- role: worker\n",
            "c.yaml",
        )
        .unwrap();
        let network = NetworkSubnets {
            name: "rind-dual".to_string(),
            v4: Cidr::parse("172.28.0.0/16").unwrap(),
            v6: Some(("fd72:696e:64::".parse().unwrap(), 64)),
        };
        let planned = plan(
            "dual",
            &config,
            "rind/node:v1",
            network.clone(),
            &HashSet::new(),
            40000,
        )
        .unwrap();
        let worker = &planned.nodes[1];
        assert_eq!(worker.config.node_ip, "172.28.0.3");
        assert_eq!(worker.config.node_ipv6.as_deref(), Some("fd72:696e:64::3"));
        assert_eq!(worker.spec.ipv6, Some("fd72:696e:64::3".parse().unwrap()));
        assert_eq!(worker.config.pod_subnet, "10.244.0.0/16,fd00:10:244::/56");
        assert_eq!(
            worker.config.service_subnet,
            "10.96.0.0/16,fd00:10:96::/112"
        );
        assert_eq!(planned.service_ip.to_string(), "10.96.0.1");
        // A network without IPv6 cannot hold a dual-stack cluster.
        let err = plan(
            "dual",
            &config,
            "rind/node:v1",
            NetworkSubnets {
                v6: None,
                ..network
            },
            &HashSet::new(),
            40000,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("no IPv6 subnet"), "{err}");
    }

    #[test]
    fn patches_and_the_published_address_reach_nodes_and_certificates() {
        let config = Cluster::parse(
            "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  apiServerAddress: 192.0.2.7
kubeadmConfigPatches:
- |
  kind: ClusterConfiguration
  apiServer:
    certSANs: [api.example.com]
nodes:
- role: control-plane
  labels: {tier: cp}
  kubeadmConfigPatches:
  - |
    kind: InitConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        node-labels: ingress-ready=true
- role: worker
  extraMounts:
  - hostPath: relative/dir
    containerPath: /data
  kubeadmConfigPatches:
  - |
    kind: JoinConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        register-with-taints: dedicated=db:NoExecute
",
            "c.yaml",
        )
        .unwrap();
        let plan = plan(
            "dev",
            &config,
            "rind/node:v1",
            NetworkSubnets {
                name: "rind".to_string(),
                v4: Cidr::parse("172.28.0.0/16").unwrap(),
                v6: None,
            },
            &HashSet::new(),
            40000,
        )
        .unwrap();
        assert_eq!(plan.cert_sans, ["192.0.2.7", "api.example.com"]);
        let cp = &plan.nodes[0].config;
        assert_eq!(cp.labels["tier"], "cp");
        assert_eq!(cp.labels["ingress-ready"], "true");
        assert!(cp.register_with_taints.is_empty());
        let worker = &plan.nodes[1];
        assert!(!worker.config.labels.contains_key("ingress-ready"));
        assert_eq!(
            worker.config.register_with_taints,
            [rind_runtime::RegisterTaint {
                key: "dedicated".into(),
                value: Some("db".into()),
                effect: "NoExecute".into()
            }]
        );
        // A relative hostPath is taken from the working directory, as kind does.
        let expected = std::env::current_dir().unwrap().join("relative/dir");
        assert_eq!(
            worker.spec.extra_mounts[0].host_path,
            expected.to_string_lossy()
        );
    }

    #[test]
    fn several_control_planes_share_etcd_behind_a_load_balancer() {
        let config = Cluster::parse(
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: control-plane\n- role: control-plane\n- role: worker\n",
            "c.yaml",
        )
        .unwrap();
        let plan = plan(
            "ha",
            &config,
            "rind/node:v1",
            NetworkSubnets {
                name: "rind".to_string(),
                v4: Cidr::parse("172.28.0.0/16").unwrap(),
                v6: None,
            },
            &HashSet::new(),
            40000,
        )
        .unwrap();
        let names: Vec<_> = plan.nodes.iter().map(|n| n.spec.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ha-control-plane",
                "ha-control-plane2",
                "ha-control-plane3",
                "ha-worker"
            ]
        );
        let lb = plan.load_balancer.as_ref().unwrap();
        assert_eq!(lb.name, "ha-external-load-balancer");
        assert_eq!(lb.ip.to_string(), "172.28.0.6");
        assert_eq!(lb.api_port, ("127.0.0.1".to_string(), 40000));
        assert_eq!(
            lb.backends,
            ["172.28.0.2:6443", "172.28.0.3:6443", "172.28.0.4:6443"]
        );
        // Nodes publish nothing; every one reaches the API through the balancer.
        assert!(plan.nodes.iter().all(|n| n.spec.api_port.is_none()));
        assert!(
            plan.nodes
                .iter()
                .all(|n| n.config.api_server_url == "https://172.28.0.6:6443")
        );
        let members = [
            "ha-control-plane=https://172.28.0.2:2380",
            "ha-control-plane2=https://172.28.0.3:2380",
            "ha-control-plane3=https://172.28.0.4:2380",
        ];
        assert_eq!(plan.nodes[2].config.etcd_initial_cluster, members);
        assert!(plan.nodes[3].config.etcd_initial_cluster.is_empty());
        assert_eq!(
            plan.api_server_sans(),
            ["ha-external-load-balancer", "172.28.0.6"]
        );
    }
}
