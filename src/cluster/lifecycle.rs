//! What rind offers beyond kind on a cluster that exists: stopping and starting every
//! node (`stop cluster`, `start cluster`), adding a worker to a running cluster
//! (`add node`) and removing one after draining it (`delete node`).
//!
//! A cluster survives a stop and start (or `docker restart`, or a host reboot) because
//! of how its nodes are made (see `provider::create_node`): static IPs on the `rind`
//! network (certificates, kubeconfigs and etcd peer URLs stay valid), etcd's data and
//! containerd's images under the `/var` volume, and the API server published on a fixed
//! host port (the user's kubeconfig stays valid).

use super::config::{Cidr, Resources};
use super::pki::{self, NodeFile, NodeIdentity};
use super::ui::Ui;
use super::{client, docker, kubeconfig::Kubeconfig, provider};
use anyhow::{Context, bail};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use rind_runtime::{NodeConfig, Role, paths};
use std::time::{Duration, Instant};

/// How long `docker stop` lets a node's init stop its components before SIGKILL: the
/// supervisor gives each component 8 s after SIGTERM, all in parallel.
const STOP_GRACE_SECONDS: i32 = 15;
/// An API server of a restarted node answers within seconds; this bounds a broken one.
const API_DEADLINE: Duration = Duration::from_secs(180);
/// A new node's kubelet registers a few seconds after its container starts.
const REGISTER_DEADLINE: Duration = Duration::from_secs(180);
/// How often a drain retries an eviction a PodDisruptionBudget refused (kubectl's 5 s).
const EVICTION_RETRY: Duration = Duration::from_secs(5);
/// kubectl's mirror-pod annotation: such pods belong to the kubelet, not the API.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The cluster's nodes, or an error naming the cluster when it has none.
async fn nodes_of(
    docker: &bollard::Docker,
    cluster: &str,
) -> anyhow::Result<Vec<provider::NodeContainer>> {
    let nodes = provider::list_nodes(docker, Some(cluster)).await?;
    if nodes.is_empty() {
        bail!("no nodes found for cluster \"{cluster}\"");
    }
    Ok(nodes)
}

fn is_control_plane(node: &provider::NodeContainer) -> bool {
    node.role == provider::role_label(Role::ControlPlane)
}

/// The first control-plane node's container name.
fn control_plane(cluster: &str, nodes: &[provider::NodeContainer]) -> anyhow::Result<String> {
    nodes
        .iter()
        .find(|n| is_control_plane(n))
        .map(|n| n.name.clone())
        .with_context(|| format!("cluster \"{cluster}\" has no control-plane node"))
}

/// `rind stop cluster`: stops every node container. Docker's `unless-stopped` restart
/// policy then keeps them stopped across daemon restarts until `start cluster`.
pub async fn stop_cluster(cluster: &str, ui: &Ui) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    let nodes = nodes_of(&docker, cluster).await?;
    ui.step(&format!("Stopping cluster \"{cluster}\" ✋"), async {
        // Workers first, so their kubelets do not spend the grace period failing to
        // reach a control plane that is already gone.
        let (cps, workers): (Vec<_>, Vec<_>) = nodes.iter().partition(|n| is_control_plane(n));
        for group in [workers, cps] {
            futures::future::try_join_all(
                group
                    .iter()
                    .map(|n| provider::stop(&docker, &n.name, STOP_GRACE_SECONDS)),
            )
            .await?;
        }
        // The LoadBalancer Services' listeners on the host go with the cluster.
        for lb in provider::service_lb_containers(&docker, cluster).await? {
            provider::stop(&docker, &lb, STOP_GRACE_SECONDS).await?;
        }
        Ok(())
    })
    .await
}

/// `rind start cluster`: starts every node container, waits until the API server
/// answers on its published port and, with a non-zero `wait`, until every node has
/// reported Ready since this start (a Ready condition from before the stop is stale).
pub async fn start_cluster(cluster: &str, wait: Duration, ui: &Ui) -> anyhow::Result<()> {
    let docker = docker::connect().await?;
    let nodes = nodes_of(&docker, cluster).await?;
    let cp = control_plane(cluster, &nodes)?;
    let started = Timestamp::now();
    let config = ui
        .step(&format!("Starting cluster \"{cluster}\" 🚀"), async {
            futures::future::try_join_all(
                nodes
                    .iter()
                    .map(|n| provider::start_if_stopped(&docker, &n.name)),
            )
            .await?;
            for lb in provider::service_lb_containers(&docker, cluster).await? {
                provider::start_if_stopped(&docker, &lb).await?;
            }
            let config = client::admin_kubeconfig(&docker, cluster, &cp, false).await?;
            client::wait_for_api(&config, API_DEADLINE)
                .await
                .with_context(|| format!("the API server of {cp} did not come back"))?;
            Ok(config)
        })
        .await?;
    if !wait.is_zero() {
        // Every node container but an HA cluster's API load balancer, which is no Node.
        let names: Vec<String> = nodes
            .iter()
            .filter(|n| n.role != provider::LOAD_BALANCER_ROLE)
            .map(|n| n.name.clone())
            .collect();
        let title = format!(
            "Waiting ≤ {} for every node = Ready ⏳",
            super::duration::format(wait)
        );
        ui.step(&title, wait_ready_since(&config, &names, started, wait))
            .await?;
    }
    Ok(())
}

/// Polls until every named Node's Ready condition is True with a heartbeat at or after
/// `since` (seconds precision, as the API keeps it).
async fn wait_ready_since(
    config: &Kubeconfig,
    names: &[String],
    since: Timestamp,
    deadline: Duration,
) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client::client_for(config).await?);
    let since = since.as_second();
    let until = Instant::now() + deadline;
    loop {
        let mut waiting = Vec::new();
        for name in names {
            let fresh_ready = api.get_opt(name).await.ok().flatten().is_some_and(|node| {
                node.status
                    .and_then(|s| s.conditions)
                    .into_iter()
                    .flatten()
                    .any(|c| {
                        c.type_ == "Ready"
                            && c.status == "True"
                            && c.last_heartbeat_time
                                .is_some_and(|t| t.0.as_second() >= since)
                    })
            });
            if !fresh_ready {
                waiting.push(name.as_str());
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!(
                "{} did not report Ready within {deadline:?}",
                waiting.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What `rind add node` adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddRole {
    Worker,
    ControlPlane,
}

/// How to add a node (`rind add node`).
#[derive(Debug)]
pub struct AddNodeOptions {
    pub cluster: String,
    pub role: AddRole,
    /// The node image; by default the image of the cluster's control plane.
    pub image: Option<String>,
    /// Container limits, as a config file's per-node `resources`.
    pub resources: Option<Resources>,
    /// How long to wait for the new node to be Ready (zero: until it registers only).
    pub wait: Duration,
}

/// The next node name kind would give a node of this role: `<cluster>-worker`, then
/// `<cluster>-worker2`, … (the first one no container holds).
pub fn next_node_name(cluster: &str, base: &str, taken: &[String]) -> String {
    (1..)
        .map(|i| {
            if i == 1 {
                format!("{cluster}-{base}")
            } else {
                format!("{cluster}-{base}{i}")
            }
        })
        .find(|name| !taken.contains(name))
        .unwrap_or_else(|| format!("{cluster}-{base}"))
}

/// `rind add node`: a worker joins the running cluster with its own kubelet and proxy
/// credentials, signed by the cluster CA read out of the control plane; a control
/// plane (HA clusters only) is first announced to etcd as a member, gets the cluster's
/// authorities and service-account key, and is put behind the load balancer once it
/// registers. Returns the new node's name.
pub async fn add_node(options: &AddNodeOptions, ui: &Ui) -> anyhow::Result<String> {
    let cluster = options.cluster.as_str();
    let docker = docker::connect().await?;
    let nodes = nodes_of(&docker, cluster).await?;
    let control_plane_role = options.role == AddRole::ControlPlane;
    let load_balancer = provider::load_balancer_of(&docker, cluster).await?;
    if control_plane_role && load_balancer.is_none() {
        return refuse_control_plane(cluster, &nodes);
    }
    let cp = control_plane(cluster, &nodes)?;
    let (cp_image, running) = provider::image_and_state(&docker, &cp).await?;
    if !running {
        bail!(
            "the control plane {cp} is not running: start the cluster first (rind start cluster --name {cluster})"
        );
    }
    let taken: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let (role, base) = if control_plane_role {
        (Role::ControlPlane, "control-plane")
    } else {
        (Role::Worker, "worker")
    };
    let name = next_node_name(cluster, base, &taken);
    let cp_config: NodeConfig = {
        let bytes = provider::read_file(&docker, &cp, paths::NODE_CONFIG).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {} of {cp}", paths::NODE_CONFIG))?
    };
    let ca_crt = read_text(&docker, &cp, paths::CA_CRT).await?;
    let ca_key = read_text(&docker, &cp, paths::CA_KEY).await?;
    let image = options.image.clone().unwrap_or(cp_image);
    let network = provider::cluster_network(&docker, cluster).await?;
    let subnet: Cidr = network.v4;
    let used = provider::used_ips(&docker, &network.name).await?;
    let size = 1u32 << (32 - subnet.prefix);
    let ip = (2..size.saturating_sub(1))
        .map(|i| subnet.host(i))
        .find(|ip| !used.contains(ip))
        .with_context(|| format!("no free address left in {subnet} for {name}"))?;
    let config = NodeConfig {
        node_name: name.clone(),
        role,
        node_ip: ip.to_string(),
        // A node joining a dual-stack cluster is dual-stack too.
        node_ipv6: match cp_config.node_ipv6 {
            Some(_) => Some(network.require_v6_for(ip)?.to_string()),
            None => None,
        },
        // Per-node config-file labels belonged to the nodes they were written for.
        labels: Default::default(),
        etcd_initial_cluster: Vec::new(),
        etcd_join_existing: false,
        image: image.clone(),
        ..cp_config
    };
    let spec = provider::NodeSpec {
        cluster: cluster.to_string(),
        name: name.clone(),
        role,
        image,
        ip,
        network: network.name.clone(),
        ipv6: config.node_ipv6.as_deref().and_then(|ip| ip.parse().ok()),
        api_port: None,
        extra_ports: Vec::new(),
        extra_mounts: Vec::new(),
        resources: options.resources.clone(),
    };
    let service_ip = rind_runtime::config::service_ip(&config.service_subnet, 1)
        .with_context(|| format!("the service network {}", config.service_subnet))?
        .to_string();
    // The load balancer's name and address, which every API server certificate of an
    // HA cluster names (clients reach the API through it).
    let api_server_sans: Vec<String> = load_balancer
        .iter()
        .flat_map(|lb| [Some(lb.name.clone()), lb.ip.map(|ip| ip.to_string())])
        .flatten()
        .collect();
    let node_ip = config.node_ip.clone();
    let api_server_url = config.api_server_url.clone();
    let identity = NodeIdentity {
        name: &name,
        ip: &node_ip,
        control_plane: control_plane_role,
        service_ip: &service_ip,
        api_server_url: &api_server_url,
        api_server_sans: &api_server_sans,
    };
    let (config, mut files) = if control_plane_role {
        let cluster_pki = pki::ClusterPki::from_existing(
            (&ca_crt, &ca_key),
            (
                &read_text(&docker, &cp, paths::ETCD_CA_CRT).await?,
                &read_text(&docker, &cp, paths::ETCD_CA_KEY).await?,
            ),
            &read_text(&docker, &cp, paths::SA_KEY).await?,
            Vec::new(),
        )?;
        let files = cluster_pki.node_files(&identity)?;
        // Announced before its etcd starts: a new member must join an existing cluster
        // that already counts it, or the others refuse its peer connection.
        let members = add_member_when_healthy(&docker, cluster, &name, &node_ip).await?;
        let config = NodeConfig {
            etcd_initial_cluster: members,
            etcd_join_existing: true,
            ..config
        };
        (config, files)
    } else {
        (config, pki::worker_files(&ca_crt, &ca_key, &identity)?)
    };
    files.push(NodeFile {
        path: paths::NODE_CONFIG.to_string(),
        contents: serde_json::to_vec_pretty(&config).context("encoding the node config")?,
        mode: 0o644,
    });
    let admin = client::admin_kubeconfig(&docker, cluster, &cp, false).await?;
    let created = ui
        .step(&format!("Adding node {name} 🚜"), async {
            provider::create_node(&docker, &spec).await?;
            provider::copy_files(&docker, &name, &files).await?;
            provider::start(&docker, &name).await?;
            client::wait_for_nodes(&admin, std::slice::from_ref(&name), REGISTER_DEADLINE).await?;
            if control_plane_role {
                // Workloads keep to the workers, as on the control planes made with the
                // cluster (join_workers).
                if nodes
                    .iter()
                    .any(|n| n.role == provider::role_label(Role::Worker))
                {
                    let taint = k8s_openapi::api::core::v1::Taint {
                        key: super::actions::join_workers::CONTROL_PLANE_TAINT.to_string(),
                        effect: "NoSchedule".to_string(),
                        ..Default::default()
                    };
                    client::add_taint(&admin, &name, taint)
                        .await
                        .with_context(|| format!("marking {name} as control plane"))?;
                }
                // Its API server is up (its kubelet registered through it or the
                // others): the load balancer may send clients there now.
                super::etcd::sync_load_balancer(&docker, cluster).await?;
            }
            Ok(())
        })
        .await;
    if let Err(err) = created {
        // Best effort: the join error is what the user needs to see.
        let _ = provider::remove_containers(&docker, std::slice::from_ref(&name)).await;
        if control_plane_role {
            let _ = super::etcd::remove_member(&docker, cluster, &name, &config.node_ip).await;
            let _ = super::etcd::sync_load_balancer(&docker, cluster).await;
        }
        return Err(err.context(format!("failed to add node {name} to \"{cluster}\"")));
    }
    if !options.wait.is_zero() {
        let title = format!(
            "Waiting ≤ {} for {name} = Ready ⏳",
            super::duration::format(options.wait)
        );
        ui.step(
            &title,
            client::wait_for_node_ready(&admin, &name, options.wait),
        )
        .await?;
    }
    Ok(name)
}

/// `etcd::add_member`, retried while etcd answers "unhealthy cluster": it counts a
/// member as active only once its peers have been connected to it for a few seconds
/// (so a member just restarted does not count yet), and refuses a new member that the
/// active ones could not outvote.
async fn add_member_when_healthy(
    docker: &bollard::Docker,
    cluster: &str,
    name: &str,
    ip: &str,
) -> anyhow::Result<Vec<String>> {
    let until = Instant::now() + ETCD_HEALTHY_DEADLINE;
    loop {
        match super::etcd::add_member(docker, cluster, name, ip).await {
            Ok(members) => return Ok(members),
            Err(err)
                if Instant::now() < until && format!("{err:#}").contains("unhealthy cluster") =>
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// How long `rind add node --role control-plane` waits for etcd to accept a member.
const ETCD_HEALTHY_DEADLINE: Duration = Duration::from_secs(60);

/// A control plane joins etcd as a member and the load balancer must pick it up: both
/// need an HA-capable cluster (several etcd members and a load balancer in front of the
/// API servers), which a cluster made of one control plane is not.
fn refuse_control_plane(
    cluster: &str,
    nodes: &[provider::NodeContainer],
) -> anyhow::Result<String> {
    let control_planes = nodes.iter().filter(|n| is_control_plane(n)).count();
    bail!(
        "adding a control-plane node to \"{cluster}\" is not supported: it needs an HA cluster \
         (an etcd member joined at runtime and a load balancer in front of the API servers), \
         and \"{cluster}\" has {control_planes} control-plane node(s) and no load balancer; \
         add a worker with --role worker, or create the cluster with several control-plane nodes"
    )
}

async fn read_text(docker: &bollard::Docker, node: &str, path: &str) -> anyhow::Result<String> {
    String::from_utf8(provider::read_file(docker, node, path).await?)
        .with_context(|| format!("{path} of {node} is not UTF-8"))
}

/// How to delete a node (`rind delete node`).
#[derive(Debug)]
pub struct DeleteNodeOptions {
    pub cluster: String,
    pub node: String,
    /// How long the drain may take (evictions refused by PodDisruptionBudgets are
    /// retried until then).
    pub timeout: Duration,
}

/// `rind delete node`: drains the node as `kubectl drain --ignore-daemonsets --force
/// --delete-emptydir-data` does (cordon, then evict every pod through the Eviction API,
/// which honours PodDisruptionBudgets, and wait for them to be gone), removes its
/// container, deletes its Node object and the DaemonSet pods still bound to it (the
/// pods upstream's pod garbage collector removes once their node is gone).
pub async fn delete_node(options: &DeleteNodeOptions, ui: &Ui) -> anyhow::Result<()> {
    let (cluster, name) = (options.cluster.as_str(), options.node.as_str());
    let docker = docker::connect().await?;
    let nodes = nodes_of(&docker, cluster).await?;
    let node = nodes
        .iter()
        .find(|n| n.name == name)
        .with_context(|| format!("cluster \"{cluster}\" has no node named {name}"))?;
    if is_control_plane(node) {
        let others = nodes
            .iter()
            .filter(|n| is_control_plane(n) && n.name != name)
            .count();
        if others == 0 {
            bail!(
                "{name} is the only control-plane node of \"{cluster}\"; delete the cluster instead (rind delete cluster --name {cluster})"
            );
        }
        if provider::load_balancer_of(&docker, cluster)
            .await?
            .is_none()
        {
            bail!(
                "deleting control-plane node {name} of \"{cluster}\" is not supported: the cluster has no load balancer in front of its API servers"
            );
        }
    }
    let cp = control_plane(cluster, &nodes)?;
    let admin = client::admin_kubeconfig(&docker, cluster, &cp, false).await?;
    let kube = client::client_without_retries(&admin).await?;
    ui.step(&format!("Draining node {name} 🚧"), async {
        drain(kube.clone(), name, options.timeout).await
    })
    .await?;
    ui.step(&format!("Deleting node {name} 🔥"), async {
        if is_control_plane(node) {
            // Out of the load balancer first, so no new client lands on a server about
            // to go; then out of etcd while the others still form a quorum with it.
            let others: Vec<String> = nodes
                .iter()
                .filter(|n| n.name != name && n.role != provider::LOAD_BALANCER_ROLE)
                .filter(|n| is_control_plane(n))
                .filter_map(|n| n.ip.map(|ip| format!("{ip}:{}", paths::APISERVER_PORT)))
                .collect();
            if let Some(lb) = provider::load_balancer_of(&docker, cluster).await? {
                provider::set_load_balancer_backends(&docker, &lb.name, &others).await?;
            }
            let ip = node.ip.map(|ip| ip.to_string()).unwrap_or_default();
            super::etcd::remove_member(&docker, cluster, name, &ip).await?;
        }
        // The container goes first: a kubelet still running would register the Node
        // again right after it is deleted.
        provider::remove_containers(&docker, &[name.to_string()]).await?;
        let api: Api<Node> = Api::all(kube.clone());
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err).with_context(|| format!("deleting Node {name}")),
        }
        let pods: Api<Pod> = Api::all(kube.clone());
        for pod in pods_on(&pods, name).await? {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            // No kubelet is left to confirm the pod stopped: delete it at once.
            match Api::<Pod>::namespaced(kube.clone(), &ns)
                .delete(&pod_name, &DeleteParams::default().grace_period(0))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("deleting pod {ns}/{pod_name}"));
                }
            }
        }
        Ok(())
    })
    .await
}

/// Every pod bound to `node`.
async fn pods_on(pods: &Api<Pod>, node: &str) -> anyhow::Result<Vec<Pod>> {
    let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    Ok(pods
        .list(&params)
        .await
        .with_context(|| format!("listing the pods on {node}"))?
        .items)
}

/// Pods a drain leaves alone, as kubectl's: DaemonSet pods (their controller would put
/// them right back, and ignores the cordon) and mirror pods (the kubelet owns them).
fn drain_ignores(pod: &Pod) -> bool {
    let daemon = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "DaemonSet");
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    daemon || mirror
}

/// Cordons the node, evicts its pods (retrying those a PodDisruptionBudget protects) and
/// waits until they are gone.
async fn drain(kube: kube::Client, node: &str, timeout: Duration) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(kube.clone());
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"unschedulable": true}})),
        )
        .await
        .with_context(|| format!("cordoning {node}"))?;
    let all: Api<Pod> = Api::all(kube.clone());
    let until = Instant::now() + timeout;
    loop {
        let pending: Vec<Pod> = pods_on(&all, node)
            .await?
            .into_iter()
            .filter(|p| !drain_ignores(p))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut refused = Vec::new();
        for pod in pending
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(kube.clone(), &ns);
            match api.evict(&name, &EvictParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                // A PodDisruptionBudget allows no disruption now: retry later, as
                // kubectl drain does.
                Err(kube::Error::Api(status)) if status.code == 429 => {
                    refused.push(format!("{ns}/{name} ({})", status.message));
                }
                Err(err) => return Err(err).with_context(|| format!("evicting {ns}/{name}")),
            }
        }
        if Instant::now() >= until {
            let left: Vec<String> = pending
                .iter()
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.metadata.namespace.as_deref().unwrap_or_default(),
                        p.metadata.name.as_deref().unwrap_or_default()
                    )
                })
                .collect();
            bail!(
                "draining {node} did not finish within {timeout:?}: {} still on it{}",
                left.join(", "),
                if refused.is_empty() {
                    String::new()
                } else {
                    format!("; evictions refused: {}", refused.join(", "))
                }
            );
        }
        let pause = if refused.is_empty() {
            Duration::from_millis(500)
        } else {
            EVICTION_RETRY
        };
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_names_follow_kind() {
        let taken = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            next_node_name("dev", "worker", &taken(&["dev-control-plane"])),
            "dev-worker"
        );
        assert_eq!(
            next_node_name(
                "dev",
                "worker",
                &taken(&["dev-control-plane", "dev-worker", "dev-worker2"])
            ),
            "dev-worker3"
        );
        // A gap left by a deleted node is filled first.
        assert_eq!(
            next_node_name(
                "dev",
                "worker",
                &taken(&["dev-control-plane", "dev-worker", "dev-worker3"])
            ),
            "dev-worker2"
        );
    }

    #[test]
    fn drain_skips_daemonset_and_mirror_pods() {
        let pod = |value: serde_json::Value| -> Pod { serde_json::from_value(value).unwrap() };
        assert!(drain_ignores(&pod(serde_json::json!({"metadata": {
            "name": "d", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
            "name": "ds", "uid": "u", "controller": true}]}}))));
        assert!(drain_ignores(&pod(serde_json::json!({"metadata": {
            "name": "m", "annotations": {MIRROR_ANNOTATION: "x"}}}))));
        assert!(!drain_ignores(&pod(serde_json::json!({"metadata": {
            "name": "r", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "rs", "uid": "u", "controller": true}]}}))));
    }
}
