//! The kubelet's HTTPS port (10250): container logs for the API server's `pods/log`
//! proxy, and `/healthz`. Only clients with a certificate from the cluster CA get in,
//! as with the real kubelet's x509 authentication.

use super::cri::{self, Cri, v1};
use super::logs::{self, Assembler, LogOptions};
use super::spec::PodKey;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
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
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the kubelet API on `listener` until the process ends.
pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig, store: Store<Pod>, cri: Cri) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(AppState { store, cri });
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!("accept failed: {err}");
                continue;
            }
        };
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
            let service = TowerToHyperService::new(app);
            if let Err(err) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, "connection ended: {err}");
            }
        });
    }
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
async fn send_within(tx: &mpsc::Sender<Bytes>, budget: &mut Option<u64>, text: String) -> bool {
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
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver-kubelet-client");
        let client = client_params.signed_by(&client_key, &issuer).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("kubelet.crt"), server.pem()).unwrap();
        std::fs::write(dir.path().join("kubelet.key"), server_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca: ca_cert.der().to_vec(),
            client_cert: client.der().clone(),
            client_key: client_key.serialize_der(),
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
    async fn https_requires_a_cluster_client_certificate() {
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
        let resp = get(port, with_cert, "/containerLogs/default/nope/c")
            .await
            .unwrap();
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");

        let anonymous = builder().with_no_client_auth();
        let refused = get(port, anonymous, "/healthz").await;
        assert!(refused.is_err() || !refused.unwrap().contains("200 OK"));
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
