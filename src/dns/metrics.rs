//! Counters of the DNS server, served in Prometheus' text format on the `metrics`
//! port (9153, where kind's CoreDNS serves its own), and the `/health` and `/ready`
//! endpoints the Deployment's probes use (CoreDNS's `health` on 8080 and `ready` on
//! 8181).

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use hickory_server::proto::op::ResponseCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    requests: AtomicU64,
    forwarded: AtomicU64,
    cache_hits: AtomicU64,
    noerror: AtomicU64,
    nxdomain: AtomicU64,
    servfail: AtomicU64,
    other: AtomicU64,
    /// Set once every watch has listed its objects: answers are then complete.
    pub ready: AtomicBool,
}

impl Metrics {
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// A UDP query answered from the cache of answers (`udp`).
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn answered(&self, code: ResponseCode) {
        let counter = match code {
            ResponseCode::NoError => &self.noerror,
            ResponseCode::NXDomain => &self.nxdomain,
            ResponseCode::ServFail => &self.servfail,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# HELP rind_dns_requests_total DNS requests received.\n\
             # TYPE rind_dns_requests_total counter\n\
             rind_dns_requests_total {}\n\
             # HELP rind_dns_forward_requests_total Requests forwarded to the upstream resolvers.\n\
             # TYPE rind_dns_forward_requests_total counter\n\
             rind_dns_forward_requests_total {}\n\
             # HELP rind_dns_cache_hits_total UDP requests answered from the cache of answers.\n\
             # TYPE rind_dns_cache_hits_total counter\n\
             rind_dns_cache_hits_total {}\n\
             # HELP rind_dns_responses_total DNS responses by response code.\n\
             # TYPE rind_dns_responses_total counter\n\
             rind_dns_responses_total{{rcode=\"NOERROR\"}} {}\n\
             rind_dns_responses_total{{rcode=\"NXDOMAIN\"}} {}\n\
             rind_dns_responses_total{{rcode=\"SERVFAIL\"}} {}\n\
             rind_dns_responses_total{{rcode=\"other\"}} {}\n",
            get(&self.requests),
            get(&self.forwarded),
            get(&self.cache_hits),
            get(&self.noerror),
            get(&self.nxdomain),
            get(&self.servfail),
            get(&self.other),
        )
    }
}

/// Serves `router` on `port` of every address until the process ends: IPv6 (dual-stack)
/// where the pod has it, else IPv4 alone.
async fn serve(port: u16, router: Router) -> std::io::Result<()> {
    let v6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    let listener = match tokio::net::TcpListener::bind(v6).await {
        Ok(listener) => listener,
        Err(_) => tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).await?,
    };
    axum::serve(listener, router).await
}

/// How long `/ready` waits for the records to load before answering 503: well within a
/// probe's default one-second timeout.
const READY_HOLD: std::time::Duration = std::time::Duration::from_millis(700);

/// `/health` (alive: the process answers), `/ready` (every watch has synced) and
/// `/metrics`, each on its own port as CoreDNS has them.
pub async fn serve_all(
    metrics: Arc<Metrics>,
    health: u16,
    ready: u16,
    prometheus: u16,
) -> std::io::Result<()> {
    let health_router = Router::new().route("/health", get(|| async { "OK" }));
    let ready_metrics = metrics.clone();
    let ready_router = Router::new().route(
        "/ready",
        get(move || {
            let metrics = ready_metrics.clone();
            async move {
                // A probe that comes while the records are still loading (the kubelet's
                // first comes the moment the container starts) is held for a moment
                // instead of failed at once: a failed probe is retried only a whole
                // period later, and the cluster has no DNS until then.
                let until = std::time::Instant::now() + READY_HOLD;
                while !metrics.ready.load(Ordering::Relaxed) {
                    if std::time::Instant::now() >= until {
                        return (StatusCode::SERVICE_UNAVAILABLE, "kubernetes");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                (StatusCode::OK, "OK")
            }
        }),
    );
    let prometheus_router = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { metrics.render() }
        }),
    );
    tokio::try_join!(
        serve(health, health_router),
        serve(ready, ready_router),
        serve(prometheus, prometheus_router),
    )?;
    Ok(())
}
