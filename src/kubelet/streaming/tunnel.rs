//! kubectl's port-forward: SPDY/3.1 frames carried in WebSocket binary messages
//! (subprotocol `SPDY/3.1+portforward.k8s.io`), as upstream's tunneling handler serves
//! it. The runtime is asked for a plain SPDY upgrade first, offering the protocols
//! the client tunnels; only once it has agreed is the WebSocket accepted, with the
//! runtime's choice as its subprotocol, and from then on the bytes of each message go
//! to the runtime and the runtime's bytes come back as messages. Nothing here parses
//! SPDY: the client and the runtime speak it end to end.

use super::channel::TUNNEL_PREFIX;
use super::{Backend, Dialed, offered_protocols, spdy_upgrade, text};
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::extract::Request;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rind_runtime::forward::IDLE_TIMEOUT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn serve(backend: Backend, req: Request) -> Response {
    let tunnelled: Vec<String> = offered_protocols(req.headers())
        .into_iter()
        .filter_map(|p| p.strip_prefix(TUNNEL_PREFIX).map(str::to_string))
        .filter(|p| p.ends_with(".k8s.io"))
        .collect();
    let (mut parts, _) = req.into_parts();
    let ws = match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let offered: Vec<&str> = tunnelled.iter().map(String::as_str).collect();
    let (io, protocol) = match spdy_upgrade(&backend, &offered).await {
        Ok(Dialed::Upgraded { io, protocol }) => (io, protocol),
        // The runtime's refusal goes to the client as it came.
        Ok(Dialed::Refused(response)) => return response.map(Body::new),
        Err(message) => return text(StatusCode::INTERNAL_SERVER_ERROR, message),
    };
    let chosen = format!("{TUNNEL_PREFIX}{protocol}");
    ws.protocols([chosen])
        .on_upgrade(move |socket| carry(socket, io))
}

/// Moves bytes between the WebSocket's messages and the runtime's connection until
/// either ends (or nothing moves for the streaming idle timeout).
async fn carry<IO>(mut socket: WebSocket, io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut from_runtime, mut to_runtime) = tokio::io::split(io);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let idle = tokio::time::sleep(IDLE_TIMEOUT);
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if to_runtime.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    let _ = to_runtime.shutdown().await;
                    return;
                }
            },
            read = from_runtime.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if socket.send(message).await.is_err() {
                        return;
                    }
                }
            },
            () = idle => break,
        }
    }
    let close = CloseFrame {
        code: 1000,
        reason: "".into(),
    };
    let _ = socket.send(Message::Close(Some(close))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::ws::WebSocketUpgrade;
    use axum::routing::any;
    use futures::{SinkExt, StreamExt};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite;

    const DEADLINE: Duration = Duration::from_secs(20);

    /// Serves `carry` on a WebSocket, its runtime side the other end of a pipe.
    async fn tunnel() -> (String, DuplexStream) {
        let (ours, runtime) = tokio::io::duplex(1024);
        let ours = Arc::new(Mutex::new(Some(ours)));
        let app = Router::new().route(
            "/pf",
            any(move |ws: WebSocketUpgrade| {
                let io = ours.lock().unwrap().take().unwrap();
                async move { ws.on_upgrade(move |socket| carry(socket, io)) }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("ws://127.0.0.1:{port}/pf"), runtime)
    }

    #[tokio::test]
    async fn messages_become_bytes_and_bytes_messages() {
        let (url, mut runtime) = tunnel().await;
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(tungstenite::Message::binary(b"\x80\x03 frame".to_vec()))
            .await
            .unwrap();
        let mut buf = [0u8; 8];
        tokio::time::timeout(DEADLINE, runtime.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"\x80\x03 frame");
        runtime.write_all(b"reply").await.unwrap();
        let reply = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
        assert_eq!(reply.unwrap().unwrap().into_data().as_ref(), b"reply");
        // The runtime hangs up: the client gets a normal close.
        drop(runtime);
        let closed = tokio::time::timeout(DEADLINE, ws.next()).await.unwrap();
        assert!(
            matches!(closed, Some(Ok(tungstenite::Message::Close(_)))),
            "{closed:?}"
        );
    }

    #[tokio::test]
    async fn a_client_that_goes_away_ends_the_runtime_connection() {
        let (url, mut runtime) = tunnel().await;
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        drop(ws);
        let mut rest = Vec::new();
        tokio::time::timeout(DEADLINE, runtime.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
    }
}
