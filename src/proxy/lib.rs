//! The service proxy, run on every node: watches Services and EndpointSlices and
//! programs the node's packet filter so that cluster IPs and node ports reach the
//! Services' endpoints. Two data planes, as upstream's kube-proxy: `nftables` (our own
//! table, one `nft -f` transaction per sync) and `iptables` (our own chains, one
//! `iptables-restore --noflush` transaction per sync). A dual-stack node runs a plane
//! per family, as upstream's kube-proxy runs a proxier per family: the IPv6 one in
//! `ip6` tables or ip6tables, for Services' IPv6 ClusterIPs and the IPv6 slices.

pub mod dataplane;
pub mod iptables;
pub mod model;
pub mod nftables;
pub mod service_lb;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::ResourceExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use rind_runtime::reflect::Reflectable;
use rind_runtime::{NodeConfig, paths};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Changes arriving together (a rollout touches many slices at once) are applied in
/// one sync: the proxy waits this long after the first change before reading.
const BATCH: Duration = Duration::from_millis(20);
/// Every rule is rewritten this often, repairing anything changed behind our back;
/// in between, a sync writes only the chains, sets and map elements of the Service
/// ports that changed. Upstream's kube-proxy does a full sync hourly too (and after a
/// failure, as here): with a thousand Services a full one costs seconds of CPU.
const FULL_RESYNC: Duration = Duration::from_secs(3600);
/// After a failed sync, the next try is a full one after this pause.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the proxy inside a node, configured from the node's files.
pub async fn run_node(cfg: &NodeConfig) -> anyhow::Result<()> {
    rind_runtime::logging::init("info");
    let mode = cfg.kube_proxy_mode;
    // One plane per family of the pod network (one CIDR per family, primary first).
    let mut planes = rind_runtime::config::cidr_list(&cfg.pod_subnet)
        .map(|cidr| {
            let family = if cidr.contains(':') {
                model::Family::V6
            } else {
                model::Family::V4
            };
            Ok((
                family,
                dataplane::Dataplane::for_family(mode, cidr, family)?,
            ))
        })
        .collect::<Result<Vec<_>, dataplane::ProxyError>>()?;
    let client =
        rind_runtime::client::from_kubeconfig_when_ready(paths::PROXY_CONF, "proxy").await?;
    let wake = Arc::new(Notify::new());
    let (services, _services_task) =
        reflect_lean(Api::<Service>::all(client.clone()), "service", &wake);
    let (slices, _slices_task) =
        reflect_lean(Api::<EndpointSlice>::all(client), "endpointslice", &wake);
    // Programming before both lists are in would drop every rule of the Services
    // not listed yet.
    services
        .wait_until_ready()
        .await
        .context("the service watch ended before its first list")?;
    slices
        .wait_until_ready()
        .await
        .context("the endpointslice watch ended before its first list")?;
    tracing::info!(mode = ?mode, "services and endpointslices listed; programming rules");
    let mut status = dataplane::Status::new(mode);
    let mut last_full = Instant::now();
    let mut full = true;
    loop {
        let services = services.state();
        let slices = slices.state();
        // The newest change this sync includes (resourceVersions of one resource are
        // etcd revisions, so this tells a watcher which writes are now programmed).
        let revision = slices
            .iter()
            .map(|s| s.metadata.resource_version.as_deref())
            .chain(
                services
                    .iter()
                    .map(|s| s.metadata.resource_version.as_deref()),
            )
            .filter_map(|rv| rv.and_then(|rv| rv.parse::<u64>().ok()))
            .max()
            .unwrap_or(0);
        let svc_refs: Vec<&Service> = services.iter().map(|s| s.as_ref()).collect();
        let slice_refs: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
        let started = Instant::now();
        let mut all_ports = Vec::new();
        let mut result = Ok(dataplane::SyncStats::default());
        for (family, plane) in &mut planes {
            let ports = model::build_family(&svc_refs, &slice_refs, &cfg.node_name, *family);
            match plane.sync(&ports, full).await {
                Ok(stats) => {
                    if let Ok(total) = &mut result {
                        total.bytes += stats.bytes;
                    }
                }
                Err(err) => result = Err(err),
            }
            all_ports.extend(ports);
        }
        let ports = all_ports;
        match result {
            Ok(stats) => {
                let took = started.elapsed();
                status.record(full, took, revision, &ports, stats);
                if let Err(err) = status.write(paths::PROXY_STATUS) {
                    tracing::warn!("writing {}: {err}", paths::PROXY_STATUS);
                }
                tracing::debug!(full, ms = took.as_secs_f64() * 1e3, "synced");
                if full {
                    tracing::info!(
                        services = ports.len(),
                        ms = took.as_secs_f64() * 1e3,
                        "full sync done"
                    );
                    last_full = Instant::now();
                }
                full = false;
            }
            Err(err) => {
                tracing::error!("sync failed, retrying in full: {err}");
                full = true;
                tokio::time::sleep(RETRY).await;
                continue;
            }
        }
        let until_full = FULL_RESYNC.saturating_sub(last_full.elapsed());
        if tokio::time::timeout(until_full, wake.notified())
            .await
            .is_err()
        {
            full = true;
        } else {
            tokio::time::sleep(BATCH).await;
        }
    }
}

/// A store of every `K`, kept filled by its own task, waking `wake` after every
/// event. Objects are stored without their managedFields and annotations, which the
/// proxy never reads and which make up much of what it would otherwise hold (with a
/// thousand Services, most of the proxy's memory).
pub(crate) fn reflect_lean<K: Reflectable>(
    api: Api<K>,
    what: &'static str,
    wake: &Arc<Notify>,
) -> (Store<K>, tokio::task::JoinHandle<()>) {
    let (store, writer) = reflector::store::<K>();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|obj| {
            obj.managed_fields_mut().clear();
            obj.annotations_mut().clear();
        })
        .reflect(writer)
        .touched_objects();
    let wake = wake.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Err(err) = event {
                tracing::warn!("{what} watch error: {err}");
            }
            wake.notify_one();
        }
    });
    (store, task)
}
