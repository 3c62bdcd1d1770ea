//! TLS: the serving side with client-certificate authentication (our own accept loop,
//! so each connection's verified peer certificate becomes the request's user), and
//! the client side the API server uses towards kubelets.

use super::{Server, TlsFiles};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid PEM in {what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("invalid TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid client CA: {0}")]
    ClientCa(String),
    #[error(transparent)]
    ServiceSubnet(#[from] super::allocator::InvalidSubnet),
    #[error("bootstrapping default objects failed: {0}")]
    Bootstrap(String),
    #[error(transparent)]
    ServiceAccountKey(#[from] super::auth::token::KeyError),
}

/// The authenticated client: a certificate's CN is the user name, its O's the groups;
/// a service-account token's account is `system:serviceaccount:<ns>:<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ServeError::Pem {
            what,
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, ServeError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| ServeError::Pem {
        what,
        reason: match e {
            pem::Error::NoItemsFound => "no private key found".into(),
            e => e.to_string(),
        },
    })
}

fn roots(pem: &str, what: &'static str) -> Result<rustls::RootCertStore, ServeError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(pem, what)? {
        roots
            .add(cert)
            .map_err(|e| ServeError::ClientCa(e.to_string()))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    let roots = roots(&files.ca_pem, "the client CA")?;
    // Clients without a certificate still get a TLS session, so they can reach the
    // public endpoints (/healthz, /version) and get a proper 401 elsewhere.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServeError::ClientCa(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&files.cert_pem, "the serving certificate")?,
            key(&files.key_pem, "the serving key")?,
        )?;
    // h2 for multiplexed clients; http/1.1 for upgrades (exec, port-forward) and old clients.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS client configuration for talking to kubelets as the API server.
pub fn client_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, ServeError> {
    let roots = roots(&files.ca_pem, "the kubelet CA")?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            certs(&files.cert_pem, "the kubelet client certificate")?,
            key(&files.key_pem, "the kubelet client key")?,
        )?;
    Ok(Arc::new(config))
}

/// The user a verified client certificate names.
pub fn user_of(cert: &CertificateDer<'_>) -> Option<User> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(User { name, groups })
}

/// Accepts connections forever; each is served on its own task. A failing accept
/// (e.g. out of file descriptors) is logged and retried, not fatal.
pub async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    server: Arc<Server>,
) -> Result<(), ServeError> {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small writes (watch events) must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
            };
            let user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(user_of);
            let service =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    if let Some(user) = &user {
                        req.extensions_mut().insert(user.clone());
                    }
                    let server = server.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            server.handle(req.map(axum::body::Body::new)).await,
                        )
                    }
                });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
