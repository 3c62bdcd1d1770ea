//! The pod network agent, run on every node (`rind node net`), modelled on kind's
//! kindnet: it waits for node IPAM to give this node its podCIDR, writes the CNI config
//! for it, keeps a route to every other node's podCIDR via that node's InternalIP as
//! nodes come and go (in a dual-stack cluster, for each family: the IPv6 podCIDR via
//! the node's IPv6 InternalIP), masquerades pod traffic leaving the pod network, and enforces
//! NetworkPolicy. Everything comes from watches; each change (or a periodic resync, which
//! repairs what someone else changed) runs one sync of all three. With
//! `networking.disableDefaultCNI` the node runs no agent at all (src/node/init.rs).

pub mod cni;
pub mod nft;
pub mod policy;
pub mod routes;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use rind_runtime::reflect::reflect_and_notify;
use rind_runtime::{NodeConfig, paths};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A full sync at least this often, whatever events come: routes or rules removed by
/// hand come back.
const RESYNC: Duration = Duration::from_secs(30);
/// Events arriving this close together are handled by one sync.
const COALESCE: Duration = Duration::from_millis(20);
/// The pause after a failed sync before the next attempt.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("CNI config in {dir}: {source}")]
    Cni { dir: String, source: std::io::Error },
    #[error(transparent)]
    Routes(#[from] routes::RouteError),
    #[error(transparent)]
    Nft(#[from] nft::NftError),
}

struct Stores {
    nodes: Store<Node>,
    pods: Store<Pod>,
    namespaces: Store<Namespace>,
    policies: Store<NetworkPolicy>,
}

/// What the last sync applied. A sync an event wakes applies only what differs from it:
/// most events (a pod's status, a Node's heartbeat) change neither routes nor rules,
/// and while a cluster boots they come by the dozen, each sync costing `ip` and `nft`
/// processes. The periodic full sync applies everything, so what someone else changed
/// in the kernel is repaired.
#[derive(Default)]
struct Applied {
    routes: Option<routes::Routes>,
    ruleset: String,
}

pub async fn run_node(cfg: &NodeConfig) -> anyhow::Result<()> {
    rind_runtime::logging::init("info");
    // The node's own credentials (group system:nodes), as kindnet uses its own.
    let client =
        rind_runtime::client::from_kubeconfig_when_ready(paths::KUBELET_CONF, "net").await?;
    let wake = Arc::new(Notify::new());
    let notifier = || {
        let wake = wake.clone();
        move || {
            wake.notify_one();
            true
        }
    };
    let config = watcher::Config::default;
    let (nodes, _n) = reflect_and_notify(Api::all(client.clone()), config(), "node", notifier());
    let (pods, _p) = reflect_and_notify(Api::all(client.clone()), config(), "pod", notifier());
    let (namespaces, _s) =
        reflect_and_notify(Api::all(client.clone()), config(), "namespace", notifier());
    let (policies, _q) = reflect_and_notify(
        Api::all(client.clone()),
        config(),
        "networkpolicy",
        notifier(),
    );
    let stores = Stores {
        nodes,
        pods,
        namespaces,
        policies,
    };
    for ready in [
        stores.nodes.wait_until_ready().await,
        stores.pods.wait_until_ready().await,
        stores.namespaces.wait_until_ready().await,
        stores.policies.wait_until_ready().await,
    ] {
        ready?;
    }
    let mtu = cni::uplink_mtu();
    tracing::info!(node = %cfg.node_name, mtu, "network agent started");
    let mut applied = Applied::default();
    let mut full = true;
    let mut next_full = tokio::time::Instant::now();
    loop {
        if full {
            next_full = tokio::time::Instant::now() + RESYNC;
        }
        let retry = match sync(cfg, &stores, mtu, &mut applied, full) {
            Ok(()) => false,
            Err(err) => {
                tracing::warn!("network sync failed: {err}");
                true
            }
        };
        let wait = if retry {
            tokio::time::Instant::now() + RETRY
        } else {
            next_full
        };
        tokio::select! {
            _ = wake.notified() => tokio::time::sleep(COALESCE).await,
            _ = tokio::time::sleep_until(wait) => {}
        }
        // After a failure nothing of the last pass is trusted.
        full = retry || tokio::time::Instant::now() >= next_full;
    }
}

/// One pass: CNI config, routes, nftables table; `full` applies routes and table even
/// when they are what the last pass applied.
fn sync(
    cfg: &NodeConfig,
    stores: &Stores,
    mtu: u32,
    applied: &mut Applied,
    full: bool,
) -> Result<(), SyncError> {
    let nodes = stores.nodes.state();
    let own_cidrs = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(cfg.node_name.as_str()))
        .map(|n| pod_cidrs(n))
        .unwrap_or_default();
    if !own_cidrs.is_empty() {
        let written =
            cni::write(cni::conf_dir(), &own_cidrs, mtu).map_err(|source| SyncError::Cni {
                dir: cni::conf_dir().display().to_string(),
                source,
            })?;
        if written {
            let cidrs = own_cidrs.join(",");
            tracing::info!(%cidrs, mtu, "wrote the CNI config for the node's podCIDRs");
        }
    }
    let desired: routes::Routes = nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(cfg.node_name.as_str()))
        .flat_map(|n| {
            // Each podCIDR goes via the node's InternalIP of the same family.
            let ips = internal_ips(n);
            pod_cidrs(n).into_iter().filter_map(move |cidr| {
                let v6 = cidr.contains(':');
                let via = ips.iter().find(|ip| ip.contains(':') == v6)?.clone();
                Some((cidr, via))
            })
        })
        .collect();
    if full || applied.routes.as_ref() != Some(&desired) {
        // Forgotten first: if this pass fails half-way, the next one applies again.
        applied.routes = None;
        routes::sync(&desired)?;
        applied.routes = Some(desired);
    }
    let namespaces = policy::namespace_labels(stores.namespaces.state().iter().map(|ns| {
        (
            ns.metadata.name.clone().unwrap_or_default(),
            ns.metadata.labels.clone().unwrap_or_default(),
        )
    }));
    let pods: Vec<policy::PodView> = stores
        .pods
        .state()
        .iter()
        .filter_map(|p| policy::pod_view(p, &cfg.node_name))
        .collect();
    let policies: Vec<NetworkPolicy> = stores
        .policies
        .state()
        .iter()
        .map(|p| (**p).clone())
        .collect();
    let compiled = policy::compile(&policies, &pods, &namespaces);
    let ruleset = nft::ruleset(&cfg.pod_subnet, &compiled);
    let changed = ruleset != applied.ruleset;
    if full || changed {
        applied.ruleset.clear();
        nft::apply(&ruleset)?;
        if changed {
            tracing::info!(
                policy_chains = compiled.chains.len(),
                "applied the nftables table"
            );
        }
        applied.ruleset = ruleset;
    }
    Ok(())
}

/// A node's podCIDRs, one per family, primary first (`spec.podCIDRs`, else the
/// single `spec.podCIDR`).
fn pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<String> = spec
        .pod_cidrs
        .iter()
        .flatten()
        .filter(|c| !c.is_empty())
        .cloned()
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    spec.pod_cidr
        .iter()
        .filter(|c| !c.is_empty())
        .cloned()
        .collect()
}

/// A node's InternalIPs (one per family on a dual-stack node).
fn internal_ips(node: &Node) -> Vec<String> {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .collect()
}
