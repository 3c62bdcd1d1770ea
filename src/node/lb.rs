//! The external load balancer of an HA cluster (`rind node lb`, the only process of the
//! `<cluster>-external-load-balancer` container, as kind runs haproxy there): a TCP
//! proxy on the API port that sends each new connection to the next API server whose
//! `/readyz` passed its last check.
//!
//! Every backend is checked every `CHECK_INTERVAL` with a `CHECK_TIMEOUT` bound. One
//! that refuses, resets or answers anything but 200 is out of the rotation at once; one
//! that times out twice in a row too (a single slow answer on a busy machine does not
//! count), which keeps a server that stops answering out within about a second. The
//! connections already proxied to a backend that stays out for `CUT_AFTER` are cut
//! (haproxy's `on-marked-down shutdown-sessions`), so watchers reconnect to a live
//! server instead of waiting on a peer that vanished without a FIN. The backend list is
//! re-read whenever its file changes (a control plane added or removed).

use rind_runtime::config::LoadBalancerConfig;
use rind_runtime::paths;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// When start-up is surely over and the code it ran can be unmapped.
const TRIM_AFTER: Duration = Duration::from_secs(5);

/// How often each backend's `/readyz` is asked.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(300);
/// How long a check may take: an interval and two timeouts stay within a second, the
/// longest a silent API server keeps receiving connections.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(350);
/// Timeouts in a row that take a backend out of the rotation.
const TIMEOUTS_TO_FAIL: u32 = 2;
/// How long a backend stays out before the connections proxied to it are cut.
const CUT_AFTER: Duration = Duration::from_secs(2);
/// How long connecting to a backend may take before the next one is tried (a stopped
/// node's address answers nothing, not even a reset).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error(transparent)]
    Config(#[from] rind_runtime::config::NodeConfigError),
    #[error("cannot read the cluster CA {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("backend {0:?} is not IP:port")]
    Backend(String),
}

/// What the last checks said of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// In the rotation.
    Ready,
    /// Out of the rotation; its connections live on.
    NotReady,
    /// Out for `CUT_AFTER` or removed: its connections are cut.
    Gone,
}

/// One API server: its health as last checked, which proxied connections follow.
struct Backend {
    health: watch::Sender<Health>,
    checker: tokio::task::JoinHandle<()>,
}

/// The backends by address, and a counter for round-robin.
#[derive(Default)]
pub struct Pool {
    backends: Mutex<BTreeMap<SocketAddr, Backend>>,
    next: AtomicUsize,
}

impl Pool {
    /// The healthy backends, starting at the next one in turn; when none is, every one
    /// (a cluster whose API servers all fail their checks, as on a machine too busy to
    /// answer in time, is better tried than refused outright).
    fn candidates(&self) -> Vec<(SocketAddr, watch::Receiver<Health>)> {
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let pick = |only_ready: bool| -> Vec<_> {
            backends
                .iter()
                .filter(|(_, b)| !only_ready || *b.health.borrow() == Health::Ready)
                .map(|(addr, b)| (*addr, b.health.subscribe()))
                .collect()
        };
        let mut healthy = pick(true);
        if healthy.is_empty() {
            healthy = pick(false);
        }
        if healthy.is_empty() {
            return healthy;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % healthy.len();
        healthy[start..]
            .iter()
            .chain(&healthy[..start])
            .cloned()
            .collect()
    }

    fn mark(&self, addr: SocketAddr, healthy: Health) {
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(backend) = backends.get(&addr) {
            backend.health.send_if_modified(|h| {
                let changed = *h != healthy;
                *h = healthy;
                changed
            });
        }
    }

    /// Makes the backend set `wanted`: new ones start not ready (out of the rotation until
    /// their first check passes), removed ones are marked down (cutting their
    /// connections) and stop being checked.
    fn set(
        &self,
        wanted: &[SocketAddr],
        spawn_checker: impl Fn(SocketAddr) -> tokio::task::JoinHandle<()>,
    ) {
        let mut backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends.retain(|addr, backend| {
            let keep = wanted.contains(addr);
            if !keep {
                eprintln!("rind lb: backend {addr} removed");
                backend.health.send_replace(Health::Gone);
                backend.checker.abort();
            }
            keep
        });
        for addr in wanted {
            if backends.contains_key(addr) {
                continue;
            }
            eprintln!("rind lb: backend {addr} added");
            let (health, _) = watch::channel(Health::NotReady);
            backends.insert(
                *addr,
                Backend {
                    health,
                    checker: spawn_checker(*addr),
                },
            );
        }
    }
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    /// Refused, reset, a TLS failure or an answer other than 200.
    Failed,
    TimedOut,
}

/// Asks an API server's `/readyz` over TLS, verifying its certificate with the cluster
/// CA (the API server lets anyone read it, as upstream's `system:public-info-viewer`).
pub struct Checker {
    tls: tokio_rustls::TlsConnector,
}

impl Checker {
    pub fn new(ca_pem: &[u8]) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        if roots.is_empty() {
            return Err("no certificate found".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Checker {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Whether `addr` answers `/readyz` with 200 within `CHECK_TIMEOUT`, and if not, why.
    pub async fn check(&self, addr: SocketAddr) -> (Verdict, String) {
        match tokio::time::timeout(CHECK_TIMEOUT, self.ask(addr)).await {
            Ok(Ok(status)) if status.starts_with("HTTP/1.1 200") => (Verdict::Ready, status),
            Ok(Ok(status)) => (Verdict::Failed, format!("answered {status:?}")),
            Ok(Err(e)) => (Verdict::Failed, e.to_string()),
            Err(_) => (
                Verdict::TimedOut,
                format!("no answer within {CHECK_TIMEOUT:?}"),
            ),
        }
    }

    /// The status line `/readyz` answers with.
    async fn ask(&self, addr: SocketAddr) -> std::io::Result<String> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls = self.tls.connect(name, tcp).await?;
        let request = format!(
            "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: rind-lb\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await?;
        // The status line is all that matters; it fits in the first read.
        let mut buf = [0u8; 64];
        let mut filled = 0;
        while filled < 12 {
            let n = tls.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        let head = String::from_utf8_lossy(&buf[..filled]);
        Ok(head.lines().next().unwrap_or_default().to_string())
    }
}

async fn check_loop(pool: Arc<Pool>, checker: Arc<Checker>, addr: SocketAddr) {
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = CheckState::default();
    let mut last = None;
    loop {
        ticker.tick().await;
        let (verdict, why) = checker.check(addr).await;
        let health = state.next(verdict, std::time::Instant::now());
        if last != Some(health) {
            match health {
                Health::Ready => eprintln!("rind lb: backend {addr} ready"),
                Health::NotReady => eprintln!("rind lb: backend {addr} not ready: {why}"),
                Health::Gone => eprintln!("rind lb: backend {addr} gone, its connections cut"),
            }
            last = Some(health);
        }
        pool.mark(addr, health);
    }
}

/// A backend's run of checks, which decides its health.
#[derive(Default)]
struct CheckState {
    timeouts: u32,
    /// When the backend left the rotation.
    out_since: Option<std::time::Instant>,
}

impl CheckState {
    fn next(&mut self, verdict: Verdict, now: std::time::Instant) -> Health {
        self.timeouts = match verdict {
            Verdict::TimedOut => self.timeouts + 1,
            _ => 0,
        };
        let fails = verdict == Verdict::Failed || self.timeouts >= TIMEOUTS_TO_FAIL;
        if verdict == Verdict::Ready {
            self.out_since = None;
            return Health::Ready;
        }
        if !fails && self.out_since.is_none() {
            // One slow answer: stays in until the next check says more.
            return Health::Ready;
        }
        let since = *self.out_since.get_or_insert(now);
        if now.duration_since(since) >= CUT_AFTER {
            Health::Gone
        } else {
            Health::NotReady
        }
    }
}

/// Starts checking a backend for the pool.
fn checking(
    pool: &Arc<Pool>,
    checker: &Arc<Checker>,
) -> impl Fn(SocketAddr) -> tokio::task::JoinHandle<()> {
    move |addr| tokio::spawn(check_loop(pool.clone(), checker.clone(), addr))
}

fn parse_backends(config: &LoadBalancerConfig) -> Result<Vec<SocketAddr>, LbError> {
    config
        .backends
        .iter()
        .map(|b| b.parse().map_err(|_| LbError::Backend(b.clone())))
        .collect()
}

/// Sends one client connection to a healthy backend, trying the next when connecting
/// fails, and cuts it when that backend is marked down.
async fn proxy(pool: Arc<Pool>, mut client: TcpStream) {
    for (addr, mut health) in pool.candidates() {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let mut upstream = match connected {
            Ok(Ok(stream)) => stream,
            _ => {
                // Out of rotation now; its checker puts it back once it answers.
                pool.mark(addr, Health::NotReady);
                continue;
            }
        };
        // Both ends of an API connection talk in small messages (watch events).
        let _ = upstream.set_nodelay(true);
        let _ = client.set_nodelay(true);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            _ = health.wait_for(|h| *h == Health::Gone) => {}
        }
        return;
    }
}

/// The backend file's modification time, to notice rewrites.
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Re-reads the backend list whenever its file changes.
async fn watch_config(pool: Arc<Pool>, checker: Arc<Checker>, path: PathBuf) {
    let mut seen = modified(&path);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match LoadBalancerConfig::load(&path)
            .map_err(LbError::from)
            .and_then(|c| parse_backends(&c))
        {
            Ok(backends) => pool.set(&backends, checking(&pool, &checker)),
            Err(e) => eprintln!("rind lb: keeping the current backends: {e}"),
        }
    }
}

/// Runs the load balancer until the process is stopped.
pub async fn run() -> Result<(), LbError> {
    let path = PathBuf::from(paths::LOAD_BALANCER_CONFIG);
    let backends = parse_backends(&LoadBalancerConfig::load(&path)?)?;
    let ca = std::fs::read(paths::CA_CRT).map_err(|e| LbError::Ca {
        path: paths::CA_CRT.into(),
        reason: e.to_string(),
    })?;
    let checker = Arc::new(Checker::new(&ca).map_err(|reason| LbError::Ca {
        path: paths::CA_CRT.into(),
        reason,
    })?);
    let addr = SocketAddr::from(([0, 0, 0, 0], paths::APISERVER_PORT));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| LbError::Listen { addr, source })?;
    let pool = Arc::new(Pool::default());
    pool.set(&backends, checking(&pool, &checker));
    tokio::spawn(watch_config(pool.clone(), checker, path));
    eprintln!("rind lb: listening on {addr}");
    // Start-up (configuration, TLS set-up, the first checks) is over within a few
    // seconds; from then on only the proxy loop and the checks run, so the binary's
    // pages that start-up mapped are given back (a load balancer that idles at a few
    // MB is the point; see `rind_runtime::memory`).
    tokio::spawn(async {
        tokio::time::sleep(TRIM_AFTER).await;
        rind_runtime::memory::drop_unused_code();
    });
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| LbError::Listen { addr, source })?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    tokio::spawn(proxy(pool.clone(), client));
                }
                // Out of file descriptors and the like: pass, the next accept may work.
                Err(e) => {
                    eprintln!("rind lb: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // PID 1 of its container: without this, `docker stop` waits 10 s to kill it.
            _ = sigterm.recv() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker() -> Arc<Checker> {
        let ca = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        Arc::new(Checker::new(ca.cert.pem().as_bytes()).unwrap())
    }

    /// No checks: the tests mark backends themselves.
    fn unchecked(_: SocketAddr) -> tokio::task::JoinHandle<()> {
        tokio::spawn(std::future::pending())
    }

    #[tokio::test]
    async fn ready_backends_take_turns_and_none_ready_means_try_all() {
        let pool = Arc::new(Pool::default());
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        pool.set(&[a, b], unchecked);
        pool.mark(a, Health::Ready);
        pool.mark(b, Health::Ready);
        let first: Vec<_> = pool.candidates().into_iter().map(|c| c.0).collect();
        let second: Vec<_> = pool.candidates().into_iter().map(|c| c.0).collect();
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], second[0]);
        pool.mark(a, Health::NotReady);
        let only: Vec<_> = pool.candidates().into_iter().map(|c| c.0).collect();
        assert_eq!(only, [b]);
        // None ready: every one is tried rather than none.
        pool.mark(b, Health::NotReady);
        assert_eq!(pool.candidates().len(), 2);
    }

    #[tokio::test]
    async fn removed_backends_cut_their_connections() {
        let pool = Arc::new(Pool::default());
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        pool.set(&[a], unchecked);
        pool.mark(a, Health::Ready);
        let (_, mut health) = pool.candidates().remove(0);
        pool.set(&[], unchecked);
        tokio::time::timeout(
            Duration::from_secs(1),
            health.wait_for(|h| *h == Health::Gone),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(pool.candidates().is_empty());
    }

    #[tokio::test]
    async fn a_closed_port_is_not_ready() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert_eq!(checker().check(addr).await.0, Verdict::Failed);
    }

    #[test]
    fn hard_failures_drop_at_once_timeouts_on_the_second_and_long_outages_cut() {
        let t0 = std::time::Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut state = CheckState::default();
        assert_eq!(state.next(Verdict::Ready, at(0)), Health::Ready);
        assert_eq!(state.next(Verdict::TimedOut, at(300)), Health::Ready);
        assert_eq!(state.next(Verdict::Ready, at(600)), Health::Ready);
        assert_eq!(state.next(Verdict::TimedOut, at(900)), Health::Ready);
        assert_eq!(state.next(Verdict::TimedOut, at(1200)), Health::NotReady);
        assert_eq!(state.next(Verdict::TimedOut, at(2000)), Health::NotReady);
        assert_eq!(state.next(Verdict::TimedOut, at(3200)), Health::Gone);
        assert_eq!(state.next(Verdict::Ready, at(3500)), Health::Ready);
        assert_eq!(state.next(Verdict::Failed, at(3800)), Health::NotReady);
        assert_eq!(state.next(Verdict::Ready, at(4100)), Health::Ready);
    }
}
