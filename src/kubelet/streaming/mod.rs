//! Streams into pods through the kubelet's HTTPS port, as upstream's kubelet serves
//! them: `/exec` and `/attach` (a container's standard streams) and `/portForward` (a
//! pod's ports). The kubelet asks the runtime (CRI `Exec`, `Attach`, `PortForward`)
//! for a one-shot URL on its streaming server, then serves the client from there:
//!
//! - a WebSocket client offering `v5.channel.k8s.io` (kubectl 1.37, the Python
//!   client) is translated onto the runtime's SPDY session (`translate`), since
//!   runtimes speak v5 neither over WebSocket nor its close signal;
//! - a WebSocket client tunnelling SPDY (`SPDY/3.1+portforward.k8s.io`, kubectl's
//!   port-forward) has its messages unwrapped onto a SPDY upgrade (`tunnel`);
//! - every other upgrade (SPDY from older clients, WebSocket v1–v4) is spliced to the
//!   runtime as it came, since the runtime's own server speaks those.
//!
//! Each session lives in one task that owns both connections, so when either side
//! goes away the other is closed and nothing stays behind.

pub mod channel;
pub mod spdy;
mod translate;
mod tunnel;

use super::cri::{self, Cri, v1};
use super::spec::PodKey;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use rind_runtime::forward;

/// The `Sec-WebSocket-Protocol` values a request offers, in its order.
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn is_websocket(headers: &HeaderMap) -> bool {
    forward::is_upgrade(headers)
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// Upstream writes a runtime's gRPC error as its Go text, `NotFound` as 404.
fn runtime_error(err: &cri::CriError) -> Response {
    match err {
        cri::CriError::Call { source, .. } => {
            let status = if source.code() == tonic::Code::NotFound {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            text(
                status,
                format!(
                    "rpc error: code = {:?} desc = {}",
                    source.code(),
                    source.message()
                ),
            )
        }
        other => text(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// Which of a container's streams a session wants: the kubelet's `input`, `output`,
/// `error` and `tty` parameters (`1` is yes), as the API server passes them on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The options and the command (`command`, repeated) of an exec or attach request.
pub fn remote_command_options(query: Option<&str>) -> Result<(StreamOptions, Vec<String>), String> {
    let pairs: Vec<(String, String)> = query
        .map(|q| serde_urlencoded::from_str(q).map_err(|e| format!("invalid query: {e}")))
        .transpose()?
        .unwrap_or_default();
    let flag = |name: &str| pairs.iter().any(|(k, v)| k == name && v == "1");
    let tty = flag("tty");
    let options = StreamOptions {
        stdin: flag("input"),
        stdout: flag("output"),
        // A terminal carries both outputs on one stream: upstream drops stderr.
        stderr: flag("error") && !tty,
        tty,
    };
    if !options.stdin && !options.stdout && !options.stderr {
        return Err("you must specify at least 1 of stdin, stdout, stderr".into());
    }
    let command = pairs
        .into_iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v)
        .collect();
    Ok((options, command))
}

/// The ports of a WebSocket port-forward (`port`, repeated or comma-separated), as
/// upstream's `NewV4Options` reads them; SPDY clients name ports per stream instead.
pub fn forwarded_ports(headers: &HeaderMap, query: Option<&str>) -> Result<Vec<i32>, String> {
    if !is_websocket(headers) {
        return Ok(Vec::new());
    }
    let pairs: Vec<(String, String)> = query
        .map(|q| serde_urlencoded::from_str(q).map_err(|e| format!("invalid query: {e}")))
        .transpose()?
        .unwrap_or_default();
    let values: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "port")
        .map(|(_, v)| v.as_str())
        .collect();
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port: u16 = p
                .parse()
                .map_err(|e| format!("unable to parse {value:?} as a port: {e}"))?;
            if port < 1 {
                return Err(format!("port {value:?} must be > 0"));
            }
            ports.push(i32::from(port));
        }
    }
    Ok(ports)
}

fn find_pod(store: &Store<Pod>, namespace: &str, name: &str) -> Option<std::sync::Arc<Pod>> {
    store.get(&ObjectRef::<Pod>::new(name).within(namespace))
}

/// The running instance of a pod's container, as upstream's `findContainer` looks
/// among the runtime's running containers.
async fn running_container(
    cri: &Cri,
    pod: &Pod,
    container: &str,
) -> Result<Option<String>, cri::CriError> {
    let uid = PodKey::of(pod).uid;
    let mut running: Vec<v1::Container> = cri
        .running_containers_of(&uid, container)
        .await?
        .into_iter()
        // The runtime filtered already; checked again so a runtime that ignored the
        // filter cannot make an exec land in another container.
        .filter(|c| {
            c.labels.get(cri::LABEL_POD_UID) == Some(&uid)
                && c.labels.get(cri::LABEL_CONTAINER_NAME).map(String::as_str) == Some(container)
                && c.state == v1::ContainerState::ContainerRunning as i32
        })
        .collect();
    running.sort_by_key(|c| c.metadata.as_ref().map(|m| m.attempt));
    Ok(running.pop().map(|c| c.id))
}

fn container_spec<'a>(
    pod: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Exec,
    Attach,
}

/// `/exec/{namespace}/{pod}/{container}` and `/attach/…`.
pub async fn remote_command(
    cri: &Cri,
    store: &Store<Pod>,
    kind: Command,
    (namespace, pod_name, container): (String, String, String),
    req: Request,
) -> Response {
    let (options, command) = match remote_command_options(req.uri().query()) {
        Ok(parsed) => parsed,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let Some(pod) = find_pod(store, &namespace, &pod_name) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    let full_name = format!("{pod_name}_{namespace}");
    let id = match running_container(cri, &pod, &container).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            let message = match kind {
                Command::Exec => format!("container not found ({container:?})"),
                Command::Attach => format!("container {container} not found in pod {full_name}"),
            };
            return text(StatusCode::INTERNAL_SERVER_ERROR, message);
        }
        Err(e) => return runtime_error(&e),
    };
    let url = match kind {
        Command::Exec => {
            cri.exec(v1::ExecRequest {
                container_id: id,
                cmd: command,
                tty: options.tty,
                stdin: options.stdin,
                stdout: options.stdout,
                stderr: options.stderr,
            })
            .await
        }
        Command::Attach => {
            // Whether the process runs on a terminal was fixed when it started.
            let Some(spec) = container_spec(&pod, &container) else {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("container {container} not found in pod {full_name}"),
                );
            };
            cri.attach(v1::AttachRequest {
                container_id: id,
                stdin: options.stdin,
                tty: spec.tty.unwrap_or(false),
                stdout: options.stdout,
                stderr: options.stderr,
            })
            .await
        }
    };
    let url = match url {
        Ok(url) => url,
        Err(e) => return runtime_error(&e),
    };
    serve(url, req, Upgrade::RemoteCommand(options)).await
}

/// `/portForward/{namespace}/{pod}`.
pub async fn port_forward(
    cri: &Cri,
    store: &Store<Pod>,
    (namespace, pod_name): (String, String),
    req: Request,
) -> Response {
    let tunnel = is_websocket(req.headers())
        && offered_protocols(req.headers())
            .iter()
            .any(|p| p.starts_with(channel::TUNNEL_PREFIX) && p.ends_with(".k8s.io"));
    let ports = if tunnel {
        Vec::new()
    } else {
        match forwarded_ports(req.headers(), req.uri().query()) {
            Ok(ports) => ports,
            Err(message) => return text(StatusCode::BAD_REQUEST, message),
        }
    };
    let Some(pod) = find_pod(store, &namespace, &pod_name) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    let uid = PodKey::of(&pod).uid;
    let sandbox = match cri.list_sandboxes().await {
        Ok(sandboxes) => sandboxes.into_iter().find(|s| {
            s.labels.get(cri::LABEL_POD_UID) == Some(&uid)
                && s.state == v1::PodSandboxState::SandboxReady as i32
        }),
        Err(e) => return runtime_error(&e),
    };
    let Some(sandbox) = sandbox else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("pod not found (\"{pod_name}_{namespace}\")"),
        );
    };
    let url = match cri.port_forward(&sandbox.id, ports).await {
        Ok(url) => url,
        Err(e) => return runtime_error(&e),
    };
    serve(
        url,
        req,
        if tunnel {
            Upgrade::Tunnel
        } else {
            Upgrade::PassThrough
        },
    )
    .await
}

enum Upgrade {
    /// An exec or attach: translated when the client speaks v5.
    RemoteCommand(StreamOptions),
    /// kubectl's SPDY-in-WebSocket port-forward.
    Tunnel,
    PassThrough,
}

/// Where the runtime's one-shot URL points: its `host:port` and path.
pub struct Backend {
    pub authority: String,
    pub path: String,
}

impl Backend {
    fn parse(url: &str) -> Result<Backend, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("the runtime returned an invalid streaming URL {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            // containerd serves TLS only when configured to; rind never does.
            return Err(format!(
                "the runtime's streaming URL {url:?} is not plain HTTP"
            ));
        }
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| format!("the runtime's streaming URL {url:?} names no host"))?;
        let path = uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into());
        Ok(Backend { authority, path })
    }

    pub async fn connect(&self) -> std::io::Result<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(&self.authority).await?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

/// The runtime's answer to a SPDY upgrade.
pub enum Dialed {
    /// Upgraded, with the subprotocol the runtime chose.
    Upgraded {
        io: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
        protocol: String,
    },
    /// Anything but 101: the runtime's own response.
    Refused(axum::http::Response<hyper::body::Incoming>),
}

/// Upgrades a connection to the runtime's streaming server to SPDY/3.1, offering
/// `protocols` as `X-Stream-Protocol-Version`, as client-go's SPDY round tripper does.
pub async fn spdy_upgrade(backend: &Backend, protocols: &[&str]) -> Result<Dialed, String> {
    let tcp = backend
        .connect()
        .await
        .map_err(|e| format!("error dialing backend: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| format!("error dialing backend: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("runtime streaming connection ended: {e}");
        }
    });
    let mut request = axum::http::Request::post(&backend.path)
        .header(header::HOST, &backend.authority)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    for protocol in protocols {
        request = request.header(STREAM_PROTOCOL_HEADER, *protocol);
    }
    let request = request
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("error sending the upgrade request: {e}"))?;
    let upgraded_to_spdy = response.status() == StatusCode::SWITCHING_PROTOCOLS
        && response
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("spdy/3.1"));
    if !upgraded_to_spdy {
        return Ok(Dialed::Refused(response));
    }
    let protocol = response
        .headers()
        .get(STREAM_PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let io = hyper::upgrade::on(&mut response)
        .await
        .map_err(|e| format!("error upgrading the connection: {e}"))?;
    Ok(Dialed::Upgraded {
        io: hyper_util::rt::TokioIo::new(io),
        protocol,
    })
}

/// The header that negotiates the subprotocol of a SPDY upgrade.
pub const STREAM_PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";

async fn serve(url: String, req: Request, upgrade: Upgrade) -> Response {
    let backend = match Backend::parse(&url) {
        Ok(backend) => backend,
        Err(message) => return text(StatusCode::INTERNAL_SERVER_ERROR, message),
    };
    if !forward::is_upgrade(req.headers()) {
        // Upstream's upgrade-aware handler, upgrade required, via the kubelet's responder.
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Upgrade request required",
        );
    }
    let websocket = is_websocket(req.headers());
    let offers_v5 = offered_protocols(req.headers())
        .iter()
        .any(|p| p == channel::V5);
    match upgrade {
        Upgrade::RemoteCommand(options) if websocket && offers_v5 => {
            let (mut parts, _) = req.into_parts();
            match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
                Ok(ws) => ws
                    .protocols([channel::V5])
                    .on_upgrade(move |socket| translate::run(socket, backend, options)),
                Err(rejection) => rejection.into_response(),
            }
        }
        Upgrade::Tunnel => tunnel::serve(backend, req).await,
        _ => pass_through(backend, req).await,
    }
}

/// Hands the client's upgrade to the runtime unchanged.
async fn pass_through(backend: Backend, req: Request) -> Response {
    let tcp = match backend.connect().await {
        Ok(tcp) => tcp,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("error dialing backend: {e}"),
            );
        }
    };
    match forward::forward(tcp, req, &backend.authority, &backend.path).await {
        Ok(response) => response.map(Body::new),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error proxying to the runtime: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn remote_command_parameters() {
        let (options, command) = remote_command_options(Some(
            "command=sh&command=-c&command=echo+hi&input=1&output=1&error=1",
        ))
        .unwrap();
        assert_eq!(
            options,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        assert_eq!(command, ["sh", "-c", "echo hi"]);
        let (options, _) = remote_command_options(Some("output=1&error=1&tty=1")).unwrap();
        assert!(options.tty && options.stdout && !options.stderr);
        assert_eq!(
            remote_command_options(Some("command=ls&output=true")).unwrap_err(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
    }

    #[test]
    fn websocket_port_forwards_name_their_ports() {
        let mut headers = HeaderMap::new();
        assert_eq!(forwarded_ports(&headers, None), Ok(vec![]));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(
            forwarded_ports(&headers, Some("port=80,8080&port=9090")),
            Ok(vec![80, 8080, 9090])
        );
        assert_eq!(
            forwarded_ports(&headers, None).unwrap_err(),
            "query parameter \"port\" is required"
        );
        assert!(forwarded_ports(&headers, Some("port=0")).is_err());
        assert!(forwarded_ports(&headers, Some("port=http")).is_err());
    }

    #[test]
    fn streaming_urls() {
        let backend = Backend::parse("http://127.0.0.1:40123/exec/AbC").unwrap();
        assert_eq!(backend.authority, "127.0.0.1:40123");
        assert_eq!(backend.path, "/exec/AbC");
        assert!(Backend::parse("https://127.0.0.1:1/exec/x").is_err());
    }
}
