//! The cluster DNS server (`rind dns`), run as the `coredns` Deployment's pods in
//! kube-system behind the `kube-dns` Service, as kind runs CoreDNS. It watches
//! Services, EndpointSlices and Namespaces, rebuilds its index of the cluster's names
//! on every change (`records`), answers those names authoritatively and forwards the
//! rest to the resolvers of its own resolv.conf (the pod's `dnsPolicy: Default`: the
//! node's resolver, reached through the node's relay, `relay`).
//!
//! Answers are built by `handler` on hickory-server's message layer (truncation,
//! EDNS). TCP is served by hickory-server; UDP by our own loop (`udp`), which keeps
//! the wire bytes of the index's answers and serves repeated queries from them.

pub mod forward;
mod handler;
pub mod metrics;
pub mod records;
pub mod relay;
mod udp;

use anyhow::Context;
use futures::StreamExt;
use handler::{Handler, SharedZone};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
pub use metrics::Metrics;
use records::Zone;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a TCP connection may idle between queries before it is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Changes arriving this close together make one rebuild of the index.
const COALESCE: Duration = Duration::from_millis(20);

/// Where `rind dns` listens and what it reads.
#[derive(Clone, Debug, clap::Args)]
pub struct DnsArgs {
    /// A kubeconfig to reach the API with; in a pod, the mounted service-account
    /// token and `KUBERNETES_SERVICE_HOST` are used (in-cluster configuration).
    #[arg(long)]
    pub kubeconfig: Option<String>,
    /// The DNS port (UDP and TCP).
    #[arg(long, default_value_t = 53)]
    pub port: u16,
    /// The port of `/health` (liveness).
    #[arg(long, default_value_t = 8080)]
    pub health_port: u16,
    /// The port of `/ready` (readiness: every watch has synced).
    #[arg(long, default_value_t = 8181)]
    pub ready_port: u16,
    /// The port of `/metrics` (Prometheus text format).
    #[arg(long, default_value_t = 9153)]
    pub metrics_port: u16,
    /// Names outside the cluster go to this file's nameservers.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: String,
}

/// Runs the DNS server until the process ends.
pub async fn run(args: DnsArgs) -> anyhow::Result<()> {
    // hickory-server logs every TCP request at info (CoreDNS logs none without its
    // `log` plugin, which kind's Corefile does not enable).
    rind_runtime::logging::init("info,hickory_server=warn");
    let client = match &args.kubeconfig {
        Some(path) => rind_runtime::client::from_kubeconfig(path).await?,
        None => Client::try_default()
            .await
            .context("reading the in-cluster configuration")?,
    };
    let resolv = std::fs::read_to_string(&args.resolv_conf)
        .with_context(|| format!("reading {}", args.resolv_conf))?;
    let upstream = forward::Upstream::from_resolv_conf(&resolv);
    tracing::info!(upstream = ?upstream.servers, "forwarding names outside the cluster");

    let metrics = Arc::new(Metrics::default());
    let (udp, tcp) = bind(args.port).await?;
    tracing::info!(port = args.port, "DNS listening");
    let http = {
        let metrics = metrics.clone();
        let (health, ready, prom) = (args.health_port, args.ready_port, args.metrics_port);
        tokio::spawn(async move { metrics::serve_all(metrics, health, ready, prom).await })
    };
    // Once the index is loaded, start-up is over: the code it ran is unmapped.
    let ready = metrics.clone();
    tokio::spawn(async move {
        while !ready.ready.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        rind_runtime::memory::drop_unused_code();
    });
    tokio::select! {
        done = serve(client, upstream, udp, tcp, metrics) => done,
        done = http => done.context("the HTTP task")?.context("serving health, readiness and metrics"),
    }
}

/// Answers DNS on `udp` and `tcp` from the API `client` follows, forwarding other
/// names to `upstream`, until the sockets fail.
pub async fn serve(
    client: Client,
    upstream: forward::Upstream,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let zone = SharedZone::default();
    let serial = Arc::new(AtomicU32::new(0));
    let handler = Handler {
        zone: zone.clone(),
        upstream,
        metrics: metrics.clone(),
        serial: serial.clone(),
    };
    let mut server = hickory_server::Server::new(handler.clone());
    // 64 KiB: the largest DNS message, so a big answer never waits for buffer space.
    server.register_listener(tcp, TCP_IDLE, 65535);
    let watch = tokio::spawn(follow_api(client, zone, serial, metrics));
    tokio::select! {
        done = server.block_until_done() => done.context("serving DNS over TCP")?,
        done = udp::serve(udp, handler) => done.context("serving DNS over UDP")?,
        done = watch => done.context("the watch task")??,
    }
    Ok(())
}

/// Binds UDP and TCP on all addresses: IPv6 (dual-stack) where the pod has it, else
/// IPv4 alone.
async fn bind(port: u16) -> anyhow::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    if let (Ok(udp), Ok(tcp)) = (
        tokio::net::UdpSocket::bind(v6).await,
        tokio::net::TcpListener::bind(v6).await,
    ) {
        return Ok((udp, tcp));
    }
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let udp = tokio::net::UdpSocket::bind(v4)
        .await
        .with_context(|| format!("binding UDP {v4}"))?;
    let tcp = tokio::net::TcpListener::bind(v4)
        .await
        .with_context(|| format!("binding TCP {v4}"))?;
    Ok((udp, tcp))
}

/// A store of `K` kept by its own task, which wakes `changed` after every event.
fn watched<K>(api: Api<K>, changed: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    // managedFields are most of a Service's bytes and none of its DNS: not kept.
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Err(err) = event {
                tracing::warn!("watch: {err}");
            }
            changed.notify_one();
        }
    });
    store
}

/// Rebuilds the index whenever the API changes; marks the server ready once every
/// watch has listed.
async fn follow_api(
    client: Client,
    zone: SharedZone,
    serial: Arc<AtomicU32>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let changed = Arc::new(Notify::new());
    let services = watched(Api::<Service>::all(client.clone()), changed.clone());
    let slices = watched(Api::<EndpointSlice>::all(client.clone()), changed.clone());
    let namespaces = watched(Api::<Namespace>::all(client), changed.clone());
    services.wait_until_ready().await?;
    slices.wait_until_ready().await?;
    namespaces.wait_until_ready().await?;
    loop {
        let built = Zone::build(
            services.state().iter().map(|s| s.as_ref()),
            slices.state().iter().map(|s| s.as_ref()),
            namespaces
                .state()
                .iter()
                .filter_map(|ns| ns.metadata.name.clone()),
        );
        let names = built.len();
        // The serial first: an answer cached for the new index carries its serial.
        let now = jiff::Timestamp::now().as_second();
        serial.store(u32::try_from(now).unwrap_or_default(), Ordering::Relaxed);
        zone.set(built);
        if !metrics.ready.swap(true, Ordering::Relaxed) {
            tracing::info!(names, "cluster records loaded; ready");
        }
        changed.notified().await;
        tokio::time::sleep(COALESCE).await;
    }
}

#[cfg(test)]
mod tests;
