//! A v5 WebSocket exec or attach, run through the runtime's SPDY session: upstream's
//! stream translator (k8s.io/apiserver util/proxy, which the kubelet uses for v5). The
//! client's channels become SPDY streams on a v4 session with the runtime, one stream
//! per requested channel plus the error stream; the runtime's exit status comes back
//! on the error channel in the translator's words, then a WebSocket close.
//!
//! One task runs the whole session, reading both connections and writing each frame
//! in the order it was read, so a command's output always precedes its status. When
//! the client goes away the runtime connection is dropped with it, which ends the
//! runtime's side of the session.

use super::channel::{self, Inbound, Outcome};
use super::spdy::{self, Codec, Frame, Headers};
use super::{Backend, Dialed, StreamOptions, spdy_upgrade};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use rind_runtime::forward::IDLE_TIMEOUT;
use std::time::Duration;
use tokio_util::codec::Framed;

/// How long the runtime has to accept the streams (upstream's stream creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client has, after the status, to read the rest and close (upstream's
/// translator waits this long for the client's close).
const FINISH_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The most of the runtime's error stream kept: a status is a few hundred bytes.
const MAX_ERROR_STREAM: usize = 64 * 1024;

type Session = Framed<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>, Codec>;

/// How a session ended.
enum Ended {
    /// The client closed or broke its connection: nobody is left to tell.
    ClientGone,
    /// The command is done (or could not run): report this and close.
    Finished(Outcome),
}

/// The SPDY streams of one session, in the order client-go opens them.
#[derive(Debug, Default)]
struct Streams {
    error: u32,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

/// Serves one v5 client on `socket` from the runtime's streaming URL at `backend`.
pub async fn run(socket: WebSocket, backend: Backend, options: StreamOptions) {
    serve(socket, backend, options, IDLE_TIMEOUT).await
}

/// `run`, cutting the session once nothing has moved either way for `idle`.
async fn serve(mut socket: WebSocket, backend: Backend, options: StreamOptions, idle: Duration) {
    // Upstream tells the client the session is up with an empty message on the
    // lowest channel it writes.
    let first = if options.stdout {
        channel::STDOUT
    } else if options.stderr {
        channel::STDERR
    } else {
        channel::ERROR
    };
    if socket
        .send(Message::Binary(Bytes::from(vec![first])))
        .await
        .is_err()
    {
        return;
    }
    let ended = match connect(&backend).await {
        Ok(session) => relay(&mut socket, session, options, idle).await,
        Err(message) => Ended::Finished(Outcome::Error(message)),
    };
    if let Ended::Finished(outcome) = ended {
        finish(socket, &outcome).await;
    }
}

async fn connect(backend: &Backend) -> Result<Session, String> {
    match spdy_upgrade(backend, &[channel::REMOTE_COMMAND_V4]).await? {
        Dialed::Upgraded { io, protocol } if protocol == channel::REMOTE_COMMAND_V4 => {
            Ok(Framed::new(io, Codec::default()))
        }
        Dialed::Upgraded { protocol, .. } => Err(format!(
            "the runtime chose streaming protocol {protocol:?}, not {}",
            channel::REMOTE_COMMAND_V4
        )),
        Dialed::Refused(response) => {
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                .unwrap_or_else(|_| "unable to read error from server response".into());
            Err(format!("unable to upgrade connection: {body}"))
        }
    }
}

/// Opens the session's streams and waits until the runtime has accepted each.
async fn open_streams(session: &mut Session, options: StreamOptions) -> Result<Streams, String> {
    let mut next_id = 1;
    let mut open = |kind: &str| {
        let id = next_id;
        next_id += 2;
        (
            id,
            Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: Headers::new(&[("streamType", kind)]),
            },
        )
    };
    let mut frames = Vec::new();
    let mut streams = Streams::default();
    let (id, frame) = open("error");
    streams.error = id;
    frames.push(frame);
    for (wanted, kind, slot) in [
        (options.stdin, "stdin", &mut streams.stdin),
        (options.stdout, "stdout", &mut streams.stdout),
        (options.stderr, "stderr", &mut streams.stderr),
        (options.tty, "resize", &mut streams.resize),
    ] {
        if wanted {
            let (id, frame) = open(kind);
            *slot = Some(id);
            frames.push(frame);
        }
    }
    let mut waiting = frames.len();
    for frame in frames {
        session.send(frame).await.map_err(|e| e.to_string())?;
    }
    let accepted = async {
        while waiting > 0 {
            match session.next().await {
                Some(Ok(Frame::SynReply { .. })) => waiting -= 1,
                Some(Ok(Frame::RstStream { stream_id, status })) => {
                    return Err(format!(
                        "the runtime refused stream {stream_id} (status {status})"
                    ));
                }
                Some(Ok(Frame::Ping { id })) if id % 2 == 0 => {
                    session
                        .send(Frame::Ping { id })
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the runtime closed the connection".into()),
            }
        }
        Ok(())
    };
    tokio::time::timeout(STREAM_CREATION_TIMEOUT, accepted)
        .await
        .map_err(|_| "timed out waiting for the runtime to accept the streams".to_string())??;
    Ok(streams)
}

/// Moves data both ways until the command is done or the client is gone.
async fn relay(
    socket: &mut WebSocket,
    mut session: Session,
    options: StreamOptions,
    idle: Duration,
) -> Ended {
    let streams = match open_streams(&mut session, options).await {
        Ok(streams) => streams,
        Err(message) => return Ended::Finished(Outcome::Error(message)),
    };
    let (mut to_runtime, mut from_runtime) = session.split();
    let mut stdout_open = streams.stdout.is_some();
    let mut stderr_open = streams.stderr.is_some();
    let mut error_open = true;
    let mut stdin_open = streams.stdin.is_some();
    let mut resize_open = streams.resize.is_some();
    let mut error = Vec::new();
    let fin = |stream_id| Frame::Data {
        stream_id,
        flags: spdy::FLAG_FIN,
        data: Bytes::new(),
    };
    loop {
        if !stdout_open && !stderr_open && !error_open {
            return Ended::Finished(channel::decode_v4(&error));
        }
        tokio::select! {
            // Upstream's WebSocket idle timeout: a silent session is closed.
            () = tokio::time::sleep(idle) => return Ended::ClientGone,
            message = socket.recv() => {
                let data = match message {
                    Some(Ok(Message::Binary(data))) => data,
                    // Upstream reads text messages the same way.
                    Some(Ok(Message::Text(text))) => Bytes::from(text),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Ended::ClientGone,
                };
                let to_send = match channel::parse(&data) {
                    Ok(Inbound::Empty) => None,
                    Ok(Inbound::Data { channel: channel::STDIN, data }) if stdin_open => {
                        streams.stdin.map(|stream_id| Frame::Data {
                            stream_id,
                            flags: 0,
                            data: Bytes::copy_from_slice(data),
                        })
                    }
                    Ok(Inbound::Data { channel: channel::RESIZE, data }) if resize_open => {
                        streams.resize.map(|stream_id| Frame::Data {
                            stream_id,
                            flags: 0,
                            data: Bytes::copy_from_slice(data),
                        })
                    }
                    // Channels the client does not write to, or has closed: dropped.
                    Ok(Inbound::Data { .. }) => None,
                    Ok(Inbound::Close { channel: channel::STDIN }) if stdin_open => {
                        stdin_open = false;
                        streams.stdin.map(fin)
                    }
                    Ok(Inbound::Close { channel: channel::RESIZE }) if resize_open => {
                        resize_open = false;
                        streams.resize.map(fin)
                    }
                    Ok(Inbound::Close { .. }) => None,
                    Err(why) => {
                        tracing::debug!("exec client protocol error: {why}");
                        return Ended::ClientGone;
                    }
                };
                if let Some(frame) = to_send
                    && let Err(e) = to_runtime.send(frame).await
                {
                    return Ended::Finished(Outcome::Error(e.to_string()));
                }
            }
            frame = from_runtime.next() => {
                let frame = match frame {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => return Ended::Finished(Outcome::Error(e.to_string())),
                    // The runtime hung up: every stream has ended.
                    None => return Ended::Finished(channel::decode_v4(&error)),
                };
                let reply = match frame {
                    Frame::Data { stream_id, flags, data } => {
                        let ends = flags & spdy::FLAG_FIN != 0;
                        let out = if Some(stream_id) == streams.stdout {
                            stdout_open &= !ends;
                            Some(channel::STDOUT)
                        } else if Some(stream_id) == streams.stderr {
                            stderr_open &= !ends;
                            Some(channel::STDERR)
                        } else {
                            if stream_id == streams.error {
                                error_open &= !ends;
                                let room = MAX_ERROR_STREAM.saturating_sub(error.len());
                                error.extend_from_slice(&data[..data.len().min(room)]);
                            }
                            None
                        };
                        if let Some(out) = out
                            && !data.is_empty()
                            && socket
                                .send(Message::Binary(channel::message(out, &data).into()))
                                .await
                                .is_err()
                        {
                            return Ended::ClientGone;
                        }
                        None
                    }
                    Frame::SynReply { stream_id, flags, .. }
                    | Frame::Headers { stream_id, flags, .. }
                        if flags & spdy::FLAG_FIN != 0 =>
                    {
                        close_stream(&streams, stream_id, &mut stdout_open, &mut stderr_open, &mut error_open);
                        None
                    }
                    Frame::RstStream { stream_id, .. } => {
                        close_stream(&streams, stream_id, &mut stdout_open, &mut stderr_open, &mut error_open);
                        None
                    }
                    // The runtime pings with even IDs; answering keeps it content.
                    Frame::Ping { id } if id % 2 == 0 => Some(Frame::Ping { id }),
                    // Streams are the client's to open in this protocol.
                    Frame::SynStream { stream_id, .. } => Some(Frame::RstStream {
                        stream_id,
                        status: spdy::REFUSED_STREAM,
                    }),
                    _ => None,
                };
                if let Some(reply) = reply
                    && let Err(e) = to_runtime.send(reply).await
                {
                    return Ended::Finished(Outcome::Error(e.to_string()));
                }
            }
        }
    }
}

fn close_stream(
    streams: &Streams,
    stream_id: u32,
    stdout_open: &mut bool,
    stderr_open: &mut bool,
    error_open: &mut bool,
) {
    if Some(stream_id) == streams.stdout {
        *stdout_open = false;
    } else if Some(stream_id) == streams.stderr {
        *stderr_open = false;
    } else if stream_id == streams.error {
        *error_open = false;
    }
}

/// Reports the outcome, closes, and waits for the client's close so that output
/// still in flight reaches it (upstream's `finish`).
async fn finish(mut socket: WebSocket, outcome: &Outcome) {
    let status = channel::message(channel::ERROR, &channel::status(outcome));
    if socket.send(Message::Binary(status.into())).await.is_err() {
        return;
    }
    let close = CloseFrame {
        code: 1000,
        reason: "".into(),
    };
    if socket.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    let drained = async { while let Some(Ok(_)) = socket.recv().await {} };
    let _ = tokio::time::timeout(FINISH_TIMEOUT, drained).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::any;
    use axum::{Router, extract::ws::WebSocketUpgrade};
    use hyper_util::rt::TokioIo;
    use std::sync::Arc;
    use tokio::net::TcpListener;
    use tokio::sync::Notify;
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

    const DEADLINE: Duration = Duration::from_secs(20);

    /// A runtime streaming server with one session: accepts the client's streams,
    /// then hands them to `script`. `done` fires once its connection is closed.
    async fn fake_runtime<F, Fut>(script: F) -> (String, Arc<Notify>)
    where
        F: FnOnce(Framed<TokioIo<hyper::upgrade::Upgraded>, Codec>, Vec<(u32, String)>) -> Fut
            + Send
            + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let done = Arc::new(Notify::new());
        let notify = done.clone();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (upgraded_tx, upgraded_rx) = tokio::sync::oneshot::channel();
            let upgraded_tx = std::sync::Mutex::new(Some(upgraded_tx));
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    assert_eq!(req.method(), hyper::Method::POST);
                    assert_eq!(req.uri().path(), "/exec/token");
                    assert_eq!(
                        req.headers()["x-stream-protocol-version"],
                        "v4.channel.k8s.io"
                    );
                    let on = hyper::upgrade::on(&mut req);
                    if let Some(tx) = upgraded_tx.lock().unwrap().take() {
                        let _ = tx.send(on);
                    }
                    async {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(101)
                                .header("connection", "Upgrade")
                                .header("upgrade", "SPDY/3.1")
                                .header("x-stream-protocol-version", "v4.channel.k8s.io")
                                .body(http_body_util::Empty::<Bytes>::new())
                                .unwrap(),
                        )
                    }
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::spawn(conn);
            let upgraded = upgraded_rx.await.unwrap().await.unwrap();
            let mut session = Framed::new(TokioIo::new(upgraded), Codec::default());
            let mut streams = Vec::new();
            // The client opens its streams before sending anything else.
            while streams.len() < 4 {
                match session.next().await.unwrap().unwrap() {
                    Frame::SynStream {
                        stream_id, headers, ..
                    } => {
                        assert_eq!(headers.0[0].0, "streamtype");
                        streams.push((stream_id, headers.0[0].1.clone()));
                        session
                            .send(Frame::SynReply {
                                stream_id,
                                flags: 0,
                                headers: Headers::default(),
                            })
                            .await
                            .unwrap();
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            script(session, streams).await;
            notify.notify_one();
        });
        (format!("127.0.0.1:{}", addr.port()), done)
    }

    /// Serves `translate::run` over plain HTTP for one client; returns its URL.
    async fn translator(runtime: String) -> (String, tokio::task::JoinHandle<()>) {
        translator_idle(runtime, IDLE_TIMEOUT).await
    }

    async fn translator_idle(
        runtime: String,
        idle: Duration,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let options = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let app = Router::new().route(
            "/exec",
            any(move |ws: WebSocketUpgrade| async move {
                let backend = Backend {
                    authority: runtime,
                    path: "/exec/token".into(),
                };
                ws.protocols([channel::V5])
                    .on_upgrade(move |socket| serve(socket, backend, options, idle))
            }),
        );
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (format!("ws://127.0.0.1:{port}/exec"), server)
    }

    async fn connect(
        url: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "v5.channel.k8s.io, v4.channel.k8s.io".parse().unwrap(),
        );
        let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "v5.channel.k8s.io"
        );
        ws
    }

    fn stream_of(streams: &[(u32, String)], kind: &str) -> u32 {
        streams.iter().find(|(_, k)| k == kind).unwrap().0
    }

    #[tokio::test]
    async fn a_command_runs_with_stdin_and_reports_its_exit_code() {
        let (runtime, done) = fake_runtime(|mut session, streams| async move {
            let stdin = stream_of(&streams, "stdin");
            let mut input = Vec::new();
            // Read stdin to its end (the client's close signal becomes FIN).
            loop {
                match session.next().await.unwrap().unwrap() {
                    Frame::Data { stream_id, flags, data } if stream_id == stdin => {
                        input.extend_from_slice(&data);
                        if flags & spdy::FLAG_FIN != 0 {
                            break;
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            let send = |kind: &str, data: &[u8], flags| Frame::Data {
                stream_id: stream_of(&streams, kind),
                flags,
                data: Bytes::copy_from_slice(data),
            };
            let upper = input.to_ascii_uppercase();
            session.send(send("stdout", &upper, spdy::FLAG_FIN)).await.unwrap();
            session.send(send("stderr", b"err", spdy::FLAG_FIN)).await.unwrap();
            let status = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [cat], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
            session.send(send("error", status, spdy::FLAG_FIN)).await.unwrap();
        })
        .await;
        let (url, _server) = translator(runtime).await;
        let mut ws = connect(&url).await;
        ws.send(tungstenite::Message::binary(b"\x00hello ".to_vec()))
            .await
            .unwrap();
        ws.send(tungstenite::Message::binary(b"\x00world".to_vec()))
            .await
            .unwrap();
        ws.send(tungstenite::Message::binary(vec![255, 0]))
            .await
            .unwrap();
        let mut received = Vec::new();
        let collect = async {
            while let Some(message) = ws.next().await {
                match message.unwrap() {
                    tungstenite::Message::Binary(data) => received.push(data.to_vec()),
                    tungstenite::Message::Close(frame) => {
                        assert_eq!(u16::from(frame.unwrap().code), 1000);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        };
        tokio::time::timeout(DEADLINE, collect).await.unwrap();
        let expected: Vec<Vec<u8>> = vec![
            vec![1],
            b"\x01HELLO WORLD".to_vec(),
            b"\x02err".to_vec(),
            channel::message(channel::ERROR, &channel::status(&Outcome::Exit(3))),
        ];
        assert_eq!(received, expected);
        tokio::time::timeout(DEADLINE, done.notified())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_client_that_goes_away_ends_the_runtime_session() {
        let ended = Arc::new(Notify::new());
        let seen_end = ended.clone();
        let (runtime, done) = fake_runtime(|mut session, streams| async move {
            let stdout = stream_of(&streams, "stdout");
            session
                .send(Frame::Data {
                    stream_id: stdout,
                    flags: 0,
                    data: Bytes::from_static(b"running"),
                })
                .await
                .unwrap();
            // The command would run on; the session must end once the client has gone.
            loop {
                match session.next().await {
                    None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                }
            }
            seen_end.notify_one();
        })
        .await;
        let (url, _server) = translator(runtime).await;
        let mut ws = connect(&url).await;
        let first_output = async {
            loop {
                if let tungstenite::Message::Binary(data) = ws.next().await.unwrap().unwrap()
                    && data.as_ref() == b"\x01running"
                {
                    return;
                }
            }
        };
        tokio::time::timeout(DEADLINE, first_output).await.unwrap();
        drop(ws);
        tokio::time::timeout(DEADLINE, ended.notified())
            .await
            .unwrap();
        tokio::time::timeout(DEADLINE, done.notified())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_silent_session_is_cut_after_the_idle_timeout() {
        let ended = Arc::new(Notify::new());
        let seen_end = ended.clone();
        let (runtime, _done) = fake_runtime(|mut session, _streams| async move {
            while let Some(Ok(_)) = session.next().await {}
            seen_end.notify_one();
        })
        .await;
        let (url, _server) = translator_idle(runtime, Duration::from_millis(200)).await;
        let mut ws = connect(&url).await;
        // Nothing is sent either way: both connections end.
        tokio::time::timeout(DEADLINE, ended.notified())
            .await
            .unwrap();
        let drained = async { while let Some(Ok(_)) = ws.next().await {} };
        tokio::time::timeout(DEADLINE, drained).await.unwrap();
    }

    #[tokio::test]
    async fn a_runtime_that_refuses_is_reported_on_the_error_channel() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let runtime = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(
                    hyper::Response::builder()
                        .status(404)
                        .body(http_body_util::Full::new(Bytes::from_static(
                            b"token not found\n",
                        )))
                        .unwrap(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
        let (url, _server) = translator(runtime).await;
        let mut ws = connect(&url).await;
        let mut received = Vec::new();
        let collect = async {
            while let Some(Ok(message)) = ws.next().await {
                if let tungstenite::Message::Binary(data) = message {
                    received.push(data.to_vec());
                }
            }
        };
        tokio::time::timeout(DEADLINE, collect).await.unwrap();
        assert_eq!(received[0], vec![1]);
        assert_eq!(
            String::from_utf8_lossy(&received[1]),
            "\u{3}{\"metadata\":{},\"status\":\"Failure\",\"message\":\"Internal error occurred: unable to upgrade connection: token not found\",\"reason\":\"InternalError\",\"details\":{\"causes\":[{\"message\":\"unable to upgrade connection: token not found\"}]},\"code\":500}"
        );
    }
}
