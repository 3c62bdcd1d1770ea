//! The external load balancer of an HA cluster (`rind node lb`, the only process of the
//! `<cluster>-external-load-balancer` container, as kind runs haproxy there): a TCP
//! proxy on the API port that sends each new connection to the next API server whose
//! `/readyz` passed its last check.
//!
//! Every backend is asked `/readyz` every `CHECK_INTERVAL` on one kept-alive TLS
//! connection (a handshake per check would cost both sides more than the check), with
//! a `CHECK_TIMEOUT` bound. One that refuses, resets or answers anything but 200 is out
//! of the rotation at once. One that does not answer in time is told apart by whether
//! its kernel acknowledged the request: if not, the node is gone (stopped, cut off), and
//! two such checks in a row take it out, within about a second; if so, the server is
//! alive but slow (an API server booting beside five other nodes on two cores), and
//! only `SLOW_TO_FAIL` of those in a row take it out, so a busy boot does not flap every
//! server out and back. The connections already proxied to a backend that stays out for
//! `CUT_AFTER` are cut (haproxy's `on-marked-down shutdown-sessions`), so watchers
//! reconnect to a live server instead of waiting on a peer that vanished without a FIN.
//! The backend list is re-read whenever its file changes (a control plane added or
//! removed).

use rind_runtime::config::LoadBalancerConfig;
use rind_runtime::paths;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::client::TlsStream;

/// When start-up is surely over and the code it ran can be unmapped.
const TRIM_AFTER: Duration = Duration::from_secs(5);

/// How often each backend's `/readyz` is asked.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(300);
/// How long a check may take: an interval and two timeouts stay within a second, the
/// longest a silent API server keeps receiving connections.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(350);
/// Unacknowledged requests in a row that take a backend out of the rotation.
const TIMEOUTS_TO_FAIL: u32 = 2;
/// Acknowledged but unanswered requests in a row that do: a frozen server (its kernel
/// still acknowledges) is out after about five seconds.
const SLOW_TO_FAIL: u32 = 8;
/// The most of an answer's head the checker reads.
const MAX_HEAD: usize = 8 * 1024;
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

    /// Sets a backend's health and logs a change, `why` saying what a check found. Both
    /// under the pool's lock: a check that ends while `set` removes its backend (its
    /// task is only aborted at its next await) then finds it gone and says nothing,
    /// so a backend's last log line stays "removed". Returns whether it changed.
    fn mark(&self, addr: SocketAddr, healthy: Health, why: &str) -> bool {
        let backends = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        backends.get(&addr).is_some_and(|backend| {
            backend.health.send_if_modified(|h| {
                let changed = *h != healthy;
                *h = healthy;
                if changed {
                    match healthy {
                        Health::Ready => eprintln!("rind lb: backend {addr} ready"),
                        Health::NotReady => eprintln!("rind lb: backend {addr} not ready: {why}"),
                        Health::Gone => {
                            eprintln!("rind lb: backend {addr} gone, its connections cut")
                        }
                    }
                }
                changed
            })
        })
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
    /// No answer in time, and the request (or the connection attempt) was not even
    /// acknowledged: the node is unreachable.
    TimedOut,
    /// No answer in time, but the server's kernel acknowledged the request: the
    /// process is alive and busy (or frozen).
    Slow,
}

/// Asks an API server's `/readyz` over TLS, verifying its certificate with the cluster
/// CA (the API server lets anyone read it, as upstream's `system:public-info-viewer`).
pub struct Checker {
    tls: tokio_rustls::TlsConnector,
}

/// One backend's kept-alive connection, if any.
#[derive(Default)]
pub struct Connection {
    tls: Option<TlsStream<TcpStream>>,
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
    /// Reuses `conn` when it is open, and leaves it open when the answer allows.
    pub async fn check(&self, conn: &mut Connection, addr: SocketAddr) -> (Verdict, String) {
        let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
        let no_answer = || format!("no answer within {CHECK_TIMEOUT:?}");
        let mut tls = match conn.tls.take() {
            Some(tls) => tls,
            None => {
                let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                    Ok(Ok(tcp)) => tcp,
                    Ok(Err(e)) => return (Verdict::Failed, e.to_string()),
                    Err(_) => return (Verdict::TimedOut, no_answer()),
                };
                let fd = tcp.as_raw_fd();
                let name = ServerName::IpAddress(addr.ip().into());
                match answered_by(deadline, fd, self.tls.connect(name, tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return (Verdict::Failed, e.to_string()),
                    Err(verdict) => return (verdict, no_answer()),
                }
            }
        };
        let fd = tls.get_ref().0.as_raw_fd();
        match answered_by(deadline, fd, ask(&mut tls, addr)).await {
            Ok(Ok(answer)) => {
                if answer.reusable {
                    conn.tls = Some(tls);
                }
                if answer.status.starts_with("HTTP/1.1 200") {
                    (Verdict::Ready, answer.status)
                } else {
                    (Verdict::Failed, format!("answered {:?}", answer.status))
                }
            }
            Ok(Err(e)) => (Verdict::Failed, e.to_string()),
            // The connection's state is unknown now (an answer may still come): dropped.
            Err(verdict) => (verdict, no_answer()),
        }
    }
}

/// Runs `step` on the socket `fd` until `deadline`; when time runs out, `Slow` if the
/// peer's kernel acknowledged everything sent on `fd`, `TimedOut` if not.
async fn answered_by<T>(
    deadline: tokio::time::Instant,
    fd: RawFd,
    step: impl std::future::Future<Output = T>,
) -> Result<T, Verdict> {
    tokio::pin!(step);
    tokio::select! {
        done = &mut step => Ok(done),
        // `step` still owns the socket here, so `fd` is open.
        _ = tokio::time::sleep_until(deadline) => Err(match unacknowledged_bytes(fd) {
            Some(0) => Verdict::Slow,
            _ => Verdict::TimedOut,
        }),
    }
}

/// Bytes sent on a TCP socket that its peer has not acknowledged yet (`SIOCOUTQ`).
fn unacknowledged_bytes(fd: RawFd) -> Option<u32> {
    let mut queued: libc::c_int = 0;
    // SAFETY: `fd` is an open socket (see `answered_by`) and `queued` outlives the call.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then_some(queued as u32)
}

/// A `/readyz` answer: its status line, and whether the connection can carry the next.
struct Answer {
    status: String,
    reusable: bool,
}

/// Sends `GET /readyz` and reads the whole answer (its body is a word or two).
async fn ask(tls: &mut TlsStream<TcpStream>, addr: SocketAddr) -> std::io::Result<Answer> {
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: rind-lb\r\n\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("an answer head over 8 KiB"));
        }
        let mut chunk = [0u8; 512];
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.lines().next().unwrap_or_default().to_string();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    // Only an answer whose end is known leaves the connection usable; the rest
    // (chunked, delimited by close) are not worth parsing for a status line.
    let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
    let closing = header("connection").is_some_and(|v| v == "close");
    let Some(length) = length.filter(|_| !closing) else {
        return Ok(Answer {
            status,
            reusable: false,
        });
    };
    let mut body = buf.len() - head_end;
    while body < length {
        let mut chunk = [0u8; 512];
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body += n;
    }
    Ok(Answer {
        status,
        reusable: body == length,
    })
}

async fn check_loop(pool: Arc<Pool>, checker: Arc<Checker>, addr: SocketAddr) {
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = CheckState::default();
    let mut conn = Connection::default();
    loop {
        ticker.tick().await;
        let (verdict, why) = checker.check(&mut conn, addr).await;
        let health = state.next(verdict, std::time::Instant::now());
        pool.mark(addr, health, &why);
    }
}

/// A backend's run of checks, which decides its health.
#[derive(Default)]
struct CheckState {
    /// Unanswered checks in a row whose request was not acknowledged.
    timeouts: u32,
    /// Unanswered checks in a row of either kind.
    unanswered: u32,
    /// Whether the backend is in the rotation (not before its first good answer).
    in_rotation: bool,
    /// When the backend last left the rotation (never, if it was never in).
    out_since: Option<std::time::Instant>,
}

impl CheckState {
    fn next(&mut self, verdict: Verdict, now: std::time::Instant) -> Health {
        self.timeouts = match verdict {
            Verdict::TimedOut => self.timeouts + 1,
            _ => 0,
        };
        self.unanswered = match verdict {
            Verdict::TimedOut | Verdict::Slow => self.unanswered + 1,
            _ => 0,
        };
        let fails = verdict == Verdict::Failed
            || self.timeouts >= TIMEOUTS_TO_FAIL
            || self.unanswered >= SLOW_TO_FAIL;
        if verdict == Verdict::Ready {
            self.in_rotation = true;
            self.out_since = None;
            return Health::Ready;
        }
        if fails && self.in_rotation {
            self.in_rotation = false;
            self.out_since = Some(now);
        }
        // Unanswered checks short of failing change nothing: a backend in the rotation
        // stays in, and one out (or never in) stays out until it answers.
        if self.in_rotation {
            return Health::Ready;
        }
        // One never in the rotation has no connections of its own to cut: only those
        // sent to it while no backend was ready, which may well work.
        let Some(since) = self.out_since else {
            return Health::NotReady;
        };
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
                pool.mark(addr, Health::NotReady, "a client's connection to it failed");
                continue;
            }
        };
        // Both ends of an API connection talk in small messages (watch events).
        let _ = upstream.set_nodelay(true);
        let _ = client.set_nodelay(true);
        // Cut when the backend goes from serving to gone while this connection lives,
        // not when it is gone already: with no backend ready every one is tried, and
        // such a connection may well work.
        health.borrow_and_update();
        let gone = async {
            while health.changed().await.is_ok() {
                if *health.borrow_and_update() == Health::Gone {
                    return;
                }
            }
            // The backend was removed (its sender dropped after saying Gone).
        };
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            _ = gone => {}
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
        pool.mark(a, Health::Ready, "test");
        pool.mark(b, Health::Ready, "test");
        let first: Vec<_> = pool.candidates().into_iter().map(|c| c.0).collect();
        let second: Vec<_> = pool.candidates().into_iter().map(|c| c.0).collect();
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], second[0]);
        pool.mark(a, Health::NotReady, "test");
        let only: Vec<_> = pool.candidates().into_iter().map(|c| c.0).collect();
        assert_eq!(only, [b]);
        // None ready: every one is tried rather than none.
        pool.mark(b, Health::NotReady, "test");
        assert_eq!(pool.candidates().len(), 2);
    }

    #[tokio::test]
    async fn removed_backends_cut_their_connections() {
        let pool = Arc::new(Pool::default());
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        pool.set(&[a], unchecked);
        pool.mark(a, Health::Ready, "test");
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
        // A check that ends after the removal finds no backend: no change, no log line.
        assert!(!pool.mark(a, Health::Ready, "a late check"));
        assert_eq!(*health.borrow(), Health::Gone);
    }

    #[tokio::test]
    async fn with_no_backend_ready_a_connection_to_a_gone_one_lives() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = upstream.accept().await.unwrap();
            let mut buf = [0u8; 4];
            conn.read_exact(&mut buf).await.unwrap();
            conn.write_all(&buf).await.unwrap();
            std::future::pending::<()>().await;
        });
        let pool = Arc::new(Pool::default());
        pool.set(&[backend], unchecked);
        pool.mark(backend, Health::Gone, "test");
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let proxying = pool.clone();
        tokio::spawn(async move {
            let (client, _) = front.accept().await.unwrap();
            proxy(proxying, client).await;
        });
        let mut client = TcpStream::connect(front_addr).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut echoed = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), client.read_exact(&mut echoed))
            .await
            .expect("the proxied connection was cut")
            .unwrap();
        assert_eq!(&echoed, b"ping");
    }

    #[tokio::test]
    async fn a_closed_port_is_not_ready() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut conn = Connection::default();
        assert_eq!(checker().check(&mut conn, addr).await.0, Verdict::Failed);
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

    #[test]
    fn slow_answers_keep_a_backend_where_it_is_until_they_last() {
        let t0 = std::time::Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut state = CheckState::default();
        // Slow from the start: never put in the rotation.
        assert_eq!(state.next(Verdict::Slow, at(0)), Health::NotReady);
        // Never in the rotation: never gone, however long it fails.
        assert_eq!(state.next(Verdict::Failed, at(100)), Health::NotReady);
        assert_eq!(state.next(Verdict::TimedOut, at(5000)), Health::NotReady);
        assert_eq!(state.next(Verdict::Ready, at(5300)), Health::Ready);
        // In the rotation: slow answers (even mixed with one unacknowledged request)
        // keep it in until SLOW_TO_FAIL of them in a row.
        let mut t = 5300;
        for i in 1..SLOW_TO_FAIL {
            t += 300;
            let verdict = if i == 3 {
                Verdict::TimedOut
            } else {
                Verdict::Slow
            };
            assert_eq!(state.next(verdict, at(t)), Health::Ready, "check {i}");
        }
        assert_eq!(state.next(Verdict::Slow, at(t + 300)), Health::NotReady);
        // Out: a slow answer does not bring it back, an answer does.
        assert_eq!(state.next(Verdict::Slow, at(t + 600)), Health::NotReady);
        assert_eq!(state.next(Verdict::Ready, at(t + 900)), Health::Ready);
    }

    /// A TLS server on loopback answering every request on a connection with `answer`
    /// after `delay`, counting the connections it accepted.
    async fn server(
        answer: &'static str,
        delay: Duration,
    ) -> (SocketAddr, Arc<Checker>, Arc<AtomicUsize>) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let checker = Arc::new(Checker::new(cert.cert.pem().as_bytes()).unwrap());
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        tokio::time::sleep(delay).await;
                        if tls.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, checker, accepted)
    }

    #[tokio::test]
    async fn checks_reuse_one_connection_while_answers_allow() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        let (addr, checker, accepted) = server(ok, Duration::ZERO).await;
        let mut conn = Connection::default();
        for _ in 0..3 {
            assert_eq!(checker.check(&mut conn, addr).await.0, Verdict::Ready);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        let failing = "HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\n\r\n";
        let (addr, checker, accepted) = server(failing, Duration::ZERO).await;
        let mut conn = Connection::default();
        for _ in 0..2 {
            let (verdict, why) = checker.check(&mut conn, addr).await;
            assert_eq!(verdict, Verdict::Failed);
            assert!(why.contains("500"), "{why}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_server_that_acknowledges_but_does_not_answer_is_slow() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (addr, checker, _) = server(ok, Duration::from_secs(5)).await;
        let mut conn = Connection::default();
        assert_eq!(checker.check(&mut conn, addr).await.0, Verdict::Slow);
    }
}
