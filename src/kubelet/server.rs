//! The kubelet's HTTPS port (10250): container logs for the API server's `pods/log`,
//! the streams behind `pods/exec`, `pods/attach` and `pods/portforward` (see
//! `streaming`), the pod list and `/healthz` for `nodes/proxy`. Clients present a
//! certificate from the cluster CA (x509 authentication, as the real kubelet's); only
//! the API server's kubelet client is authorized, anyone else gets upstream's 401
//! (no certificate) or 403.

use super::cri::{self, Cri, v1};
use super::logs::{self, Assembler, LogOptions};
use super::spec::PodKey;
use super::static_pods;
use super::streaming::{self, Command};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use rind_runtime::paths::APISERVER_KUBELET_CLIENT_USER;
use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// How often a followed log is polled for new lines, and how many polls pass between
/// asking the runtime whether the container still runs.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
const FOLLOW_POLLS_PER_CHECK: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid PEM in {path}: {source}")]
    Pem {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no private key")]
    NoKey { path: String },
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier setup failed: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

#[derive(Clone)]
struct AppState {
    store: Store<Pod>,
    cri: Cri,
}

fn read_pem(path: &str) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::Read {
        path: path.to_string(),
        source,
    })
}

fn pem_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let pem = read_pem(path)?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ServerError::Pem {
            path: path.to_string(),
            source,
        })
}

pub fn tls_config(
    cert: &str,
    key: &str,
    client_ca: &str,
) -> Result<rustls::ServerConfig, ServerError> {
    let chain = pem_certs(cert)?;
    let key_pem = read_pem(key)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| match source {
        pem::Error::NoItemsFound => ServerError::NoKey {
            path: key.to_string(),
        },
        source => ServerError::Pem {
            path: key.to_string(),
            source,
        },
    })?;
    let mut roots = RootCertStore::empty();
    for ca in pem_certs(client_ca)? {
        roots.add(ca)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // A client without a certificate still gets a TLS session, and then upstream's 401.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Who a connection's client certificate names (its CN), if it presented one.
#[derive(Clone, Debug)]
struct Peer(Option<String>);

fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_string)
}

/// The authorizer's view of a request, as upstream's kubelet builds it: the verb from
/// the method, resource `nodes`, the subresource from the path.
fn attributes(method: &Method, path: &str) -> (&'static str, &'static str) {
    let verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    let under = |root: &str| path == root || path.starts_with(&format!("{root}/"));
    let subresource = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else if under("/healthz") {
        "healthz"
    } else if under("/configz") {
        "configz"
    } else {
        "proxy"
    };
    (verb, subresource)
}

/// x509 authentication, then authorization of the API server's identity alone.
async fn authorize(req: Request, next: Next) -> Response {
    let user = req.extensions().get::<Peer>().and_then(|p| p.0.clone());
    match user {
        None => text(StatusCode::UNAUTHORIZED, "Unauthorized".into()),
        Some(user) if user == APISERVER_KUBELET_CLIENT_USER => next.run(req).await,
        Some(user) => {
            let (verb, subresource) = attributes(req.method(), req.uri().path());
            text(
                StatusCode::FORBIDDEN,
                format!(
                    "Forbidden (user={user}, verb={verb}, resource=nodes, subresource={subresource})"
                ),
            )
        }
    }
}

fn router(store: Store<Pod>, cri: Cri) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        // Unknown paths are authorized first too, as upstream's filter runs before routing.
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found") })
        .layer(middleware::from_fn(authorize))
        .with_state(AppState { store, cri })
}

/// Serves the kubelet API on `listener` until the process ends.
pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig, store: Store<Pod>, cri: Cri) {
    let app = router(store, cri);
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!("accept failed: {err}");
                // Out of descriptors, most likely: give the streams a moment to end.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Interactive streams write a keystroke at a time.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(err) => {
                    tracing::debug!(%peer, "TLS handshake failed: {err}");
                    return;
                }
            };
            let user = Peer(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(common_name),
            );
            let service = TowerToHyperService::new(app.layer(axum::Extension(user)));
            if let Err(err) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, "connection ended: {err}");
            }
        });
    }
}

async fn exec(
    State(state): State<AppState>,
    Path(target): Path<(String, String, String)>,
    req: Request,
) -> Response {
    streaming::remote_command(&state.cri, &state.store, Command::Exec, target, req).await
}

async fn attach(
    State(state): State<AppState>,
    Path(target): Path<(String, String, String)>,
    req: Request,
) -> Response {
    streaming::remote_command(&state.cri, &state.store, Command::Attach, target, req).await
}

async fn port_forward(
    State(state): State<AppState>,
    Path(target): Path<(String, String)>,
    req: Request,
) -> Response {
    streaming::port_forward(&state.cri, &state.store, target, req).await
}

/// `/pods`: the pods bound to this node, as a v1 PodList.
async fn pods(State(state): State<AppState>) -> Response {
    let items: Vec<serde_json::Value> = state
        .store
        .state()
        .iter()
        .filter_map(|pod| serde_json::to_value(pod.as_ref()).ok())
        .collect();
    let list = serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        list.to_string(),
    )
        .into_response()
}

fn text(status: StatusCode, msg: String) -> Response {
    (status, msg).into_response()
}

/// The numbered log files (`<restartCount>.log`) of a container, oldest first.
async fn log_files(dir: &str) -> Vec<(u32, String)> {
    let mut files = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) {
                files.push((n, entry.path().display().to_string()));
            }
        }
    }
    files.sort();
    files
}

async fn container_logs(
    State(state): State<AppState>,
    Path((namespace, pod_name, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let opts = match logs::parse_options(query.as_deref()) {
        Ok(opts) => opts,
        Err(err) => return text(StatusCode::BAD_REQUEST, err.to_string()),
    };
    let Some(pod) = state
        .store
        .get(&ObjectRef::<Pod>::new(&pod_name).within(&namespace))
    else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod_name} is not on this node"),
        );
    };
    if let Some((component, path)) = static_pods::component_log(&pod) {
        return component_logs(component, &path, opts, &pod_name, &container).await;
    }
    let key = PodKey::of(&pod);
    let dir = format!("{}/{}", key.log_dir(), container);
    let files = log_files(&dir).await;
    let chosen = if opts.previous {
        files.len().checked_sub(2).and_then(|i| files.get(i))
    } else {
        files.last()
    };
    let Some((attempt, path)) = chosen.cloned() else {
        let msg = if opts.previous {
            format!("previous terminated container \"{container}\" in pod \"{pod_name}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{pod_name}\" is waiting to start")
        };
        return text(StatusCode::BAD_REQUEST, msg);
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let follow = opts.follow && !opts.previous;
    tokio::spawn(stream_log(
        path,
        opts,
        follow.then_some(Liveness {
            cri: state.cri,
            uid: key.uid,
            container,
            attempt,
        }),
        tx,
    ));
    let body =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body)
        .unwrap_or_else(|err| text(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))
}

/// A mirror pod's log: its component's log file (static_pods.rs).
async fn component_logs(
    component: &static_pods::StaticComponent,
    path: &std::path::Path,
    opts: LogOptions,
    pod_name: &str,
    container: &str,
) -> Response {
    if container != component.name {
        return text(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not valid for pod {pod_name}"),
        );
    }
    let (entries, follow) =
        match static_pods::open_component_log(path, &opts, container, pod_name).await {
            Ok(found) => found,
            Err(err) => return text(StatusCode::BAD_REQUEST, err.to_string()),
        };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut budget = opts.limit_bytes;
        for entry in entries {
            if !send_within(&tx, &mut budget, entry.render(opts.timestamps)).await {
                return;
            }
        }
        if let Some(file) = follow {
            static_pods::follow_component_log(file, opts.timestamps, budget, tx).await;
        }
    });
    let body =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body)
        .unwrap_or_else(|err| text(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))
}

/// Tells whether the writer of a followed log may still add to it.
#[async_trait::async_trait]
trait StillWriting: Send + Sync {
    async fn running(&self) -> bool;
}

/// The container instance writing a followed log, looked up in the runtime.
struct Liveness {
    cri: Cri,
    uid: String,
    container: String,
    attempt: u32,
}

#[async_trait::async_trait]
impl StillWriting for Liveness {
    async fn running(&self) -> bool {
        let Ok(containers) = self.cri.list_containers().await else {
            // If the runtime cannot answer, keep following rather than cut the stream.
            return true;
        };
        containers.iter().any(|c| {
            c.labels.get(cri::LABEL_POD_UID) == Some(&self.uid)
                && c.labels.get(cri::LABEL_CONTAINER_NAME) == Some(&self.container)
                && c.metadata.as_ref().map(|m| m.attempt) == Some(self.attempt)
                && (c.state == v1::ContainerState::ContainerRunning as i32
                    || c.state == v1::ContainerState::ContainerCreated as i32)
        })
    }
}

/// Sends as much of `text` as `budget` (the bytes `limitBytes` still allows, `None`
/// for no limit) lets through; false once the stream should end: the client left or
/// the limit is reached.
pub(super) async fn send_within(
    tx: &mpsc::Sender<Bytes>,
    budget: &mut Option<u64>,
    text: String,
) -> bool {
    let mut bytes = Bytes::from(text);
    if let Some(left) = budget {
        let allowed = usize::try_from(*left).unwrap_or(usize::MAX);
        if bytes.len() >= allowed {
            bytes.truncate(allowed);
            *left = 0;
        } else {
            *left -= bytes.len() as u64;
        }
    }
    let exhausted = *budget == Some(0);
    if !bytes.is_empty() && tx.send(bytes).await.is_err() {
        return false;
    }
    !exhausted
}

async fn stream_log(
    path: String,
    opts: LogOptions,
    follow: Option<impl StillWriting>,
    tx: mpsc::Sender<Bytes>,
) {
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return;
    };
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).await.is_err() {
        return;
    }
    let mut assembler = Assembler::default();
    let mut budget = opts.limit_bytes;
    let existing = logs::select(assembler.push(&buf), &opts, jiff::Timestamp::now());
    for entry in existing {
        if !send_within(&tx, &mut budget, entry.render(opts.timestamps)).await {
            return;
        }
    }
    let Some(liveness) = follow else {
        return;
    };
    let mut chunk = vec![0u8; 64 * 1024];
    let mut idle_polls = 0;
    let mut exited = false;
    loop {
        let n = match file.read(&mut chunk).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n > 0 {
            idle_polls = 0;
            for entry in assembler.push(&chunk[..n]) {
                if !send_within(&tx, &mut budget, entry.render(opts.timestamps)).await {
                    return;
                }
            }
            continue;
        }
        // The file is read to its end after the container exited: nothing more comes.
        if exited {
            return;
        }
        idle_polls += 1;
        if idle_polls % FOLLOW_POLLS_PER_CHECK == 0 && !liveness.running().await {
            exited = true;
            continue;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::AsyncWriteExt;
    use tokio_rustls::TlsConnector;

    struct Pki {
        dir: tempfile::TempDir,
        ca: Vec<u8>,
        client_cert: rustls::pki_types::CertificateDer<'static>,
        client_key: Vec<u8>,
        /// A certificate from the same CA for someone other than the API server.
        node_cert: rustls::pki_types::CertificateDer<'static>,
        node_key: Vec<u8>,
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test-ca");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let client_cert = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.der().clone(), key.serialize_der())
        };
        let (client, client_key) = client_cert(APISERVER_KUBELET_CLIENT_USER);
        let (node_cert, node_key) = client_cert("system:node:worker");
        std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("kubelet.crt"), server.pem()).unwrap();
        std::fs::write(dir.path().join("kubelet.key"), server_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca: ca_cert.der().to_vec(),
            client_cert: client,
            client_key,
            node_cert,
            node_key,
        }
    }

    async fn get(port: u16, client: rustls::ClientConfig, path: &str) -> std::io::Result<String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await?;
        let mut resp = String::new();
        tls.read_to_string(&mut resp).await?;
        Ok(resp)
    }

    #[test]
    fn a_key_file_without_a_key_or_with_broken_pem_is_named_in_the_error() {
        let pki = pki();
        let file = |name: &str| pki.dir.path().join(name).display().to_string();
        // A certificate where the key belongs: PEM, but no private key in it.
        let err = tls_config(&file("kubelet.crt"), &file("kubelet.crt"), &file("ca.crt"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, format!("{} holds no private key", file("kubelet.crt")));
        std::fs::write(
            pki.dir.path().join("broken.key"),
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = tls_config(&file("kubelet.crt"), &file("broken.key"), &file("ca.crt"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("invalid PEM in {}: ", file("broken.key"))),
            "{err}"
        );
    }

    #[tokio::test]
    async fn only_the_api_servers_certificate_is_served() {
        let pki = pki();
        let file = |name: &str| pki.dir.path().join(name).display().to_string();
        let tls = tls_config(&file("kubelet.crt"), &file("kubelet.key"), &file("ca.crt")).unwrap();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let store = Writer::<Pod>::default().as_reader();
        let server = tokio::spawn(serve(listener, tls, store, Cri::new("/nonexistent.sock")));

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(pki.ca.clone()))
            .unwrap();
        let builder = || {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
        };
        let key = rustls::pki_types::PrivateKeyDer::try_from(pki.client_key.clone()).unwrap();
        let with_cert = builder()
            .with_client_auth_cert(vec![pki.client_cert.clone()], key)
            .unwrap();
        let resp = get(port, with_cert.clone(), "/healthz").await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("ok"), "{resp}");
        let resp = get(port, with_cert.clone(), "/containerLogs/default/nope/c")
            .await
            .unwrap();
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
        let resp = get(port, with_cert.clone(), "/pods").await.unwrap();
        assert!(
            resp.ends_with(r#"{"apiVersion":"v1","items":[],"kind":"PodList","metadata":{}}"#),
            "{resp}"
        );
        // A stream endpoint checks its parameters before anything else.
        let resp = get(port, with_cert.clone(), "/exec/default/p/c?command=id")
            .await
            .unwrap();
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
        assert!(
            resp.ends_with("you must specify at least 1 of stdin, stdout, stderr"),
            "{resp}"
        );
        let resp = get(port, with_cert, "/exec/default/p/c?command=id&output=1")
            .await
            .unwrap();
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
        assert!(resp.ends_with("pod does not exist"), "{resp}");

        // Upstream's kubelet with anonymous authentication off.
        let anonymous = builder().with_no_client_auth();
        for path in [
            "/healthz",
            "/exec/default/p/c?command=id&output=1",
            "/nowhere",
        ] {
            let resp = get(port, anonymous.clone(), path).await.unwrap();
            assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
            assert!(resp.ends_with("\r\n\r\nUnauthorized"), "{resp}");
        }
        let node_key = rustls::pki_types::PrivateKeyDer::try_from(pki.node_key.clone()).unwrap();
        let node = builder()
            .with_client_auth_cert(vec![pki.node_cert.clone()], node_key)
            .unwrap();
        let resp = get(port, node.clone(), "/pods").await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
        assert!(
            resp.ends_with(
                "Forbidden (user=system:node:worker, verb=get, resource=nodes, subresource=proxy)"
            ),
            "{resp}"
        );
        let resp = get(port, node, "/healthz").await.unwrap();
        assert!(resp.ends_with("subresource=healthz)"), "{resp}");
        server.abort();
    }

    struct Flag(Arc<AtomicBool>);

    #[async_trait::async_trait]
    impl StillWriting for Flag {
        async fn running(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    async fn collect(mut rx: mpsc::Receiver<Bytes>) -> String {
        let mut out = String::new();
        while let Some(chunk) = rx.recv().await {
            out.push_str(&String::from_utf8_lossy(&chunk));
        }
        out
    }

    #[tokio::test]
    async fn tail_with_timestamps() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(
            file,
            "2026-11-22T00:00:01Z stdout F one\n2026-11-22T00:00:02Z stdout F two\n"
        )
        .unwrap();
        let opts = LogOptions {
            tail_lines: Some(1),
            timestamps: true,
            ..LogOptions::default()
        };
        let (tx, rx) = mpsc::channel(4);
        let path = file.path().display().to_string();
        tokio::spawn(stream_log(path, opts, None::<Flag>, tx));
        assert_eq!(collect(rx).await, "2026-11-22T00:00:02Z two\n");
    }

    #[tokio::test]
    async fn limit_bytes_cuts_the_output_and_ends_a_followed_stream() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(
            file,
            "2026-11-22T00:00:01Z stdout F one\n2026-11-22T00:00:02Z stdout F two\n"
        )
        .unwrap();
        let opts = LogOptions {
            follow: true,
            limit_bytes: Some(6),
            ..LogOptions::default()
        };
        let (tx, rx) = mpsc::channel(4);
        let path = file.path().display().to_string();
        // The writer never stops: only the limit can end this stream.
        let running = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(stream_log(path, opts, Some(Flag(running)), tx));
        let got = tokio::time::timeout(Duration::from_secs(10), collect(rx))
            .await
            .unwrap();
        assert_eq!(got, "one\ntw");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn follow_streams_until_the_writer_is_gone() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "2026-11-22T00:00:01Z stdout F first").unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let opts = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        let (tx, mut rx) = mpsc::channel(4);
        let path = file.path().display().to_string();
        let task = tokio::spawn(stream_log(path, opts, Some(Flag(running.clone())), tx));
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first, Bytes::from("first\n"));
        write!(file, "2026-11-22T00:00:02Z stdout P sec").unwrap();
        writeln!(file, "\n2026-11-22T00:00:02Z stdout F ond").unwrap();
        running.store(false, Ordering::SeqCst);
        let rest = tokio::time::timeout(Duration::from_secs(10), collect(rx))
            .await
            .unwrap();
        assert_eq!(rest, "second\n");
        task.await.unwrap();
    }
}
