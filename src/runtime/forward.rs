//! Forwarding one HTTP request over a connection the caller opened, upgrades included,
//! as upstream's UpgradeAwareHandler does for the API server (to kubelets and pods)
//! and for the kubelet (to the runtime's streaming server). A request that asks for
//! an upgrade (WebSocket, SPDY) gets the backend's answer: on `101 Switching
//! Protocols` the two upgraded connections are spliced until either side is done; on
//! anything else the backend's response goes back as it came, so the client reads the
//! backend's own error.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{0}")]
    Handshake(hyper::Error),
    #[error("{0}")]
    Send(hyper::Error),
    #[error("invalid request target {0:?}")]
    Target(String),
}

/// Headers that describe one hop, never forwarded (RFC 9110 section 7.6.1, as Go's
/// ReverseProxy strips them). An upgrade keeps `Connection` and `Upgrade`: they are
/// the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// How long a spliced pair may sit with nothing moving in either direction before it
/// is cut: upstream's streaming idle timeout (kubelet `--streaming-connection-idle-timeout`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 60 * 60);

/// Whether `headers` ask for a protocol upgrade.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Names listed in Connection are hop-by-hop too.
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(&name);
        }
    }
    for name in HOP_BY_HOP {
        if upgrade && (*name == "connection" || *name == "upgrade") {
            continue;
        }
        headers.remove(*name);
    }
}

/// Sends `req` to `path_and_query` on the backend at the other end of `io` (named
/// `authority` in the Host header) and returns the backend's response. When both
/// ask for and get an upgrade, a task splices the client's upgraded connection with
/// the backend's once the caller's server has sent the 101 it returns.
pub async fn forward<IO, B>(
    io: IO,
    mut req: Request<B>,
    authority: &str,
    path_and_query: &str,
) -> Result<Response<Incoming>, ForwardError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let uri: Uri = path_and_query
        .parse()
        .map_err(|_| ForwardError::Target(path_and_query.to_string()))?;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    if let Ok(host) = HeaderValue::from_str(authority) {
        headers.insert(header::HOST, host);
    }
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(ForwardError::Handshake)?;
    // The connection task ends with the response body, or hands its connection to the
    // upgrade and ends then.
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("forwarded connection ended: {e}");
        }
    });
    let mut response = sender.send_request(req).await.map_err(ForwardError::Send)?;
    match client_upgrade {
        Some(client) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let backend = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let (client, backend) = match tokio::try_join!(client, backend) {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::debug!("upgrade did not complete: {e}");
                        return;
                    }
                };
                splice(TokioIo::new(client), TokioIo::new(backend), IDLE_TIMEOUT).await;
            });
        }
        _ => strip_hop_by_hop(response.headers_mut(), false),
    }
    Ok(response)
}

/// Copies both ways between `a` and `b` until both directions are done, one fails, or
/// nothing moves for `idle`. A direction that reaches its end shuts the other side's
/// write half, which is how a client's end of input reaches the backend. Both
/// connections are closed when this returns.
pub async fn splice<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let activity = tokio::sync::Notify::new();
    let a_to_b = pump(&mut a_read, &mut b_write, &activity);
    let b_to_a = pump(&mut b_read, &mut a_write, &activity);
    let watchdog = async {
        loop {
            if tokio::time::timeout(idle, activity.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    tokio::select! {
        result = async { tokio::try_join!(a_to_b, b_to_a) } => {
            if let Err(e) = result {
                tracing::debug!("spliced connection failed: {e}");
            }
        }
        () = watchdog => tracing::debug!("spliced connection idle for {idle:?}: closed"),
    }
}

/// One direction of a splice: copies until the reader ends, then shuts the writer.
async fn pump<R, W>(from: &mut R, to: &mut W, activity: &tokio::sync::Notify) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        activity.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_requests_are_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!is_upgrade(&headers));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(is_upgrade(&headers));
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, x-hop"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert(
            "x-stream-protocol-version",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let mut upgrade = headers.clone();
        strip_hop_by_hop(&mut upgrade, true);
        let mut names: Vec<&str> = upgrade.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            ["connection", "upgrade", "x-stream-protocol-version"]
        );
        strip_hop_by_hop(&mut headers, false);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-stream-protocol-version"]);
    }

    #[tokio::test]
    async fn splice_carries_both_ways_and_half_closes() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (backend, mut backend_peer) = tokio::io::duplex(64);
        let task = tokio::spawn(splice(client, backend, Duration::from_secs(60)));
        use tokio::io::AsyncReadExt;
        client_peer.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        backend_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        // The client is done writing: the backend reads the end, still answers.
        client_peer.shutdown().await.unwrap();
        assert_eq!(backend_peer.read(&mut buf).await.unwrap(), 0);
        backend_peer.write_all(b"pong").await.unwrap();
        backend_peer.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client_peer.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"pong");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn an_idle_splice_is_cut() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (backend, _backend_peer) = tokio::io::duplex(64);
        tokio::time::timeout(
            Duration::from_secs(10),
            splice(client, backend, Duration::from_millis(50)),
        )
        .await
        .expect("the idle splice ends");
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        assert_eq!(client_peer.read(&mut buf).await.unwrap(), 0);
    }
}
