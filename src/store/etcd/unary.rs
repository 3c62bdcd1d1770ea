//! The transport of etcd's unary calls (KV reads, writes, transactions): one HTTP/2
//! connection driven straight from the calling task.
//!
//! tonic's `Channel` hands every request to a buffer task, then to hyper's dispatch
//! task, then to the connection, and spawns a task per request body: three task hops
//! for a call that is one small frame each way, each a possible cross-thread wake-up.
//! Without them the API benchmark's creates ran about 5% faster on two cores.
//! Here the caller writes its request into the h2 connection's state itself and is
//! woken once, by the connection task, when the answer is in. The generated tonic
//! clients still encode and decode the messages; watch streams keep tonic's `Channel`.

use bytes::{Buf, Bytes};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a connection may go without any answer to a ping before it is dropped
/// (and the next call reconnects).
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// One etcd member's address.
#[derive(Clone, Debug)]
pub struct Member {
    /// `host:port`, what TCP connects to.
    address: String,
    /// The origin the requests name (`http://host:port`): etcd routes by path only, but
    /// HTTP/2 requires a scheme and an authority.
    origin: http::Uri,
    /// The name its TLS certificate must carry; `None` for plain HTTP.
    server_name: Option<ServerName<'static>>,
}

impl Member {
    pub fn parse(url: &str, tls: bool) -> Result<Member, String> {
        let uri: http::Uri = url.parse().map_err(|err| format!("{err}"))?;
        let scheme = uri.scheme_str().unwrap_or("http");
        if scheme == "https" && !tls {
            return Err("an https endpoint needs client TLS settings".into());
        }
        let Some(authority) = uri.authority() else {
            return Err("no host in the endpoint".into());
        };
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 2379 });
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let server_name = if scheme == "https" {
            Some(
                ServerName::try_from(host.to_string())
                    .map_err(|err| format!("{host} is not a TLS server name: {err}"))?,
            )
        } else {
            None
        };
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let origin = format!("{scheme}://{address}")
            .parse()
            .map_err(|err| format!("{err}"))?;
        Ok(Member {
            address,
            origin,
            server_name,
        })
    }
}

/// The live connection and which one it is, so a failure is only acted on once.
struct Live {
    generation: u64,
    sender: h2::client::SendRequest<Bytes>,
    origin: http::Uri,
}

/// Unary gRPC calls over one HTTP/2 connection to the first member that answers;
/// reconnects (trying each member in turn) when it breaks. Cheap to clone.
#[derive(Clone)]
pub struct Unary {
    inner: Arc<Inner>,
}

struct Inner {
    members: Vec<Member>,
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
    keepalive: Duration,
    live: Mutex<Option<Live>>,
    /// Held while connecting, so concurrent callers wait for one new connection
    /// instead of each opening their own. Counts the connections made.
    connecting: tokio::sync::Mutex<u64>,
}

impl Unary {
    pub fn new(
        members: Vec<Member>,
        tls: Option<TlsConnector>,
        connect_timeout: Duration,
        keepalive: Duration,
    ) -> Unary {
        Unary {
            inner: Arc::new(Inner {
                members,
                tls,
                connect_timeout,
                keepalive,
                live: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(0),
            }),
        }
    }

    /// A sender ready for one more stream, and the origin its requests name.
    async fn ready(&self) -> Result<(h2::client::SendRequest<Bytes>, http::Uri), BoxError> {
        if let Some(ready) = self.try_live().await {
            return Ok(ready);
        }
        let mut made = self.inner.connecting.lock().await;
        // Someone else may have reconnected while this caller waited.
        if let Some(ready) = self.try_live().await {
            return Ok(ready);
        }
        let mut failures = Vec::new();
        for member in &self.inner.members {
            match self.connect(member).await {
                Ok(sender) => {
                    *made += 1;
                    let sender = sender.ready().await?;
                    *self.lock_live() = Some(Live {
                        generation: *made,
                        sender: sender.clone(),
                        origin: member.origin.clone(),
                    });
                    return Ok((sender, member.origin.clone()));
                }
                Err(err) => failures.push(format!("{}: {err}", member.address)),
            }
        }
        Err(failures.join("; ").into())
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, Option<Live>> {
        // A panic elsewhere while holding it leaves only a handle behind: keep going.
        self.inner
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current connection once it can take a stream; forgets it if it is broken.
    async fn try_live(&self) -> Option<(h2::client::SendRequest<Bytes>, http::Uri)> {
        let (generation, sender, origin) = {
            let live = self.lock_live();
            let live = live.as_ref()?;
            (live.generation, live.sender.clone(), live.origin.clone())
        };
        match sender.ready().await {
            Ok(sender) => Some((sender, origin)),
            Err(_) => {
                let mut live = self.lock_live();
                if live.as_ref().is_some_and(|l| l.generation == generation) {
                    *live = None;
                }
                None
            }
        }
    }

    async fn connect(&self, member: &Member) -> Result<h2::client::SendRequest<Bytes>, BoxError> {
        let inner = &self.inner;
        let tcp = tokio::time::timeout(inner.connect_timeout, TcpStream::connect(&member.address))
            .await
            .map_err(|_| format!("no connection within {:?}", inner.connect_timeout))??;
        // Requests are single small frames: send each at once rather than wait for
        // more to fill a segment.
        tcp.set_nodelay(true)?;
        let mut builder = h2::client::Builder::new();
        // etcd answers a LIST of thousands of objects in one message: windows of
        // 2 MiB (stream) and 4 MiB (connection) keep it from stalling on updates.
        builder
            .initial_window_size(2 << 20)
            .initial_connection_window_size(4 << 20);
        match (&inner.tls, &member.server_name) {
            (Some(tls), Some(name)) => {
                let stream =
                    tokio::time::timeout(inner.connect_timeout, tls.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| {
                            format!("no TLS handshake within {:?}", inner.connect_timeout)
                        })??;
                Ok(self.drive(builder.handshake(stream).await?))
            }
            _ => Ok(self.drive(builder.handshake(tcp).await?)),
        }
    }

    /// Spawns the task that drives the connection's I/O, and the one that pings it
    /// while it is open; returns its request handle.
    fn drive<T>(
        &self,
        (sender, mut connection): (
            h2::client::SendRequest<Bytes>,
            h2::client::Connection<T, Bytes>,
        ),
    ) -> h2::client::SendRequest<Bytes>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let pings = connection.ping_pong();
        let io = tokio::spawn(async move {
            // It ends when every handle is dropped or the peer goes away; the next call
            // then finds the sender broken and reconnects.
            let _ = connection.await;
        });
        if let Some(mut pings) = pings {
            let (every, abort) = (self.inner.keepalive, io.abort_handle());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if abort.is_finished() {
                        return;
                    }
                    // A member that stopped answering (but never closed the socket)
                    // must not hold every call forever.
                    let pong = tokio::time::timeout(PING_TIMEOUT, pings.ping(h2::Ping::opaque()));
                    if !matches!(pong.await, Ok(Ok(_))) {
                        abort.abort();
                        return;
                    }
                }
            });
        }
        sender
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Unary {
    type Response = http::Response<Answer>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is awaited per call (connection and stream capacity), in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let unary = self.clone();
        Box::pin(async move {
            let (mut head, body) = request.into_parts();
            // A unary request body is one encoded message: gather it (no copy when it
            // is one chunk) so it goes out as one DATA frame that also ends the stream.
            let message = body.collect().await?.to_bytes();
            let (mut sender, origin) = unary.ready().await?;
            let mut uri = http::uri::Parts::from(origin);
            uri.path_and_query = head.uri.path_and_query().cloned();
            head.uri = http::Uri::from_parts(uri)?;
            let (answer, mut stream) =
                sender.send_request(http::Request::from_parts(head, ()), false)?;
            stream.send_data(message, true)?;
            let (head, body) = answer.await?.into_parts();
            Ok(http::Response::from_parts(head, Answer { body }))
        })
    }
}

/// An answer's body as tonic reads it: DATA frames, then the trailers with the status.
pub struct Answer {
    body: h2::RecvStream,
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, h2::Error>>> {
        let body = &mut self.body;
        match body.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                // Give the window back at once: the data is ours now.
                let _ = body.flow_control().release_capacity(data.remaining());
                return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
            }
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
            Poll::Ready(None) => {}
            Poll::Pending => return Poll::Pending,
        }
        match body.poll_trailers(cx) {
            Poll::Ready(Ok(Some(trailers))) => {
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
            }
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(err)) => Poll::Ready(Some(Err(err))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

/// The TLS client side of a connection to etcd: etcd's CA, our client certificate, and
/// HTTP/2 offered by ALPN (etcd's gRPC listener requires it).
pub fn tls_connector(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<TlsConnector, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::{Error as PemError, PemObject};
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_certs = |pem: &[u8], what: &str| {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| format!("{what}: {err}"))?;
        if certs.is_empty() {
            return Err(format!("{what}: no certificate in the PEM"));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(ca_pem, "etcd CA")? {
        roots.add(cert).map_err(|err| format!("etcd CA: {err}"))?;
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| match err {
        PemError::NoItemsFound => "etcd client key: no private key in the PEM".to_string(),
        err => format!("etcd client key: {err}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(pem_certs(cert_pem, "etcd client certificate")?, key)
        .map_err(|err| format!("etcd client certificate: {err}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
