//! The actions probes and lifecycle hooks run against a container: a command inside
//! it (CRI `ExecSync`), an HTTP GET, a TCP connect or a gRPC health check to the
//! pod's address, and a sleep. Failures are worded as upstream's probers word them,
//! since they end up in `Unhealthy` events users read.

use super::cri::Cri;
use http_body_util::{BodyExt, Empty};
use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

#[allow(clippy::all, clippy::pedantic)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

/// What probes send as User-Agent, as upstream's `kube-probe/<major>.<minor>`.
const USER_AGENT: &str = "kube-probe/1.37";

/// How an action ended: `Err` carries the failure message.
pub type Outcome = Result<(), String>;

/// Where an action runs: the container (for commands) and its pod's address.
pub struct Target<'a> {
    pub cri: &'a Cri,
    pub container_id: &'a str,
    pub container: &'a Container,
    pub pod_ip: &'a str,
}

/// A port given by number or by the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .or_else(|| name.parse().ok()),
    };
    number
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| match port {
            IntOrString::Int(n) => format!("invalid port number: {n}"),
            IntOrString::String(name) => {
                format!("couldn't find port: {name} in {}", container.name)
            }
        })
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An I/O error as Go's net package prints a failed dial.
fn dial_error(addr: &str, err: &std::io::Error) -> String {
    let what = match err.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => format!("connect: {err}"),
    };
    format!("dial tcp {addr}: {what}")
}

async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(dial_error(addr, &err)),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Runs a command in the container; success is exit code 0, failure's message is
/// what the command printed.
pub async fn exec(target: &Target<'_>, command: &[String], timeout: Duration) -> Outcome {
    let seconds = timeout.as_secs().max(1) as i64;
    let call = target
        .cri
        .exec_sync(target.container_id, command.to_vec(), seconds);
    // The runtime enforces the timeout; ours only guards against a runtime that hangs.
    let reply = match tokio::time::timeout(timeout + Duration::from_secs(2), call).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(err)) if err.to_string().contains("timeout") => {
            return Err(format!("command {:?} timed out", command.join(" ")));
        }
        Ok(Err(err)) => return Err(err.to_string()),
        Err(_) => return Err(format!("command {:?} timed out", command.join(" "))),
    };
    if reply.exit_code == 0 {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&reply.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&reply.stderr));
    Err(output)
}

/// Connects to the pod's port; success is an accepted connection.
pub async fn tcp(target: &Target<'_>, host: Option<&str>, port: u16, timeout: Duration) -> Outcome {
    let addr = host_port(host.unwrap_or(target.pod_ip), port);
    connect(&addr, timeout).await.map(drop)
}

/// A TLS verifier that accepts any certificate: upstream's HTTPS probes and hooks
/// skip verification, since pods serve self-signed certificates as often as not.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn send_get<S>(io: S, request: hyper::Request<Empty<bytes::Bytes>>) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let code = response.status().as_u16();
    // Upstream reads (a bounded part of) the body; draining it lets the server finish.
    let _ = response.into_body().collect().await;
    Ok(code)
}

/// GETs a path on the pod; success is a status from 200 to 399.
pub async fn http_get(target: &Target<'_>, action: &HTTPGetAction, timeout: Duration) -> Outcome {
    let port = resolve_port(&action.port, target.container)?;
    let host = action
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .unwrap_or(target.pod_ip);
    let addr = host_port(host, port);
    let https = action
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
    let path = action.path.clone().unwrap_or_default();
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let url = format!("{}://{addr}{path}", if https { "https" } else { "http" });
    let mut builder = hyper::Request::get(&path)
        .header(hyper::header::HOST, &addr)
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .header(hyper::header::ACCEPT, "*/*");
    if let Some(headers) = builder.headers_mut() {
        for header in action.http_headers.iter().flatten() {
            // A header named in the probe replaces the default of the same name.
            if let (Ok(name), Ok(value)) = (
                hyper::header::HeaderName::from_bytes(header.name.as_bytes()),
                hyper::header::HeaderValue::from_str(&header.value),
            ) {
                headers.insert(name, value);
            }
        }
    }
    let request = builder
        .body(Empty::new())
        .map_err(|e| format!("Get {url:?}: {e}"))?;
    let attempt = async {
        let stream = connect(&addr, timeout).await?;
        if https {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, stream)
                .await
                .map_err(|e| e.to_string())?;
            send_get(tls, request).await
        } else {
            send_get(stream, request).await
        }
    };
    let code = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(code)) => code,
        Ok(Err(err)) => return Err(format!("Get {url:?}: {err}")),
        Err(_) => {
            return Err(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ));
        }
    };
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// Calls the gRPC health service on the pod's port; success is `SERVING`.
pub async fn grpc(target: &Target<'_>, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = host_port(target.pod_ip, port);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(err) => {
            return Err(format!(
                "timeout: failed to connect service {addr:?} within {}s: {err}",
                timeout.as_secs()
            ));
        }
    };
    let mut client = health::health_client::HealthClient::new(channel);
    let request = health::HealthCheckRequest {
        service: service.to_string(),
    };
    match client.check(request).await {
        Ok(reply) => {
            let status = reply.into_inner().status();
            if status == health::health_check_response::ServingStatus::Serving {
                Ok(())
            } else {
                Err(format!(
                    "service unhealthy (responded with {:?})",
                    status.as_str_name()
                ))
            }
        }
        Err(status) if status.code() == tonic::Code::DeadlineExceeded => Err(format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs()
        )),
        Err(status) => Err(format!(
            "error: health rpc probe failed: {}",
            status.message()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    #[test]
    fn ports_by_number_and_name() {
        let c = Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }]),
            ..Container::default()
        };
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &c),
            Err("couldn't find port: grpc in web".to_string())
        );
        assert_eq!(host_port("fd00::1", 80), "[fd00::1]:80");
    }

    #[tokio::test]
    async fn refused_connections_are_worded_as_go_dials() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = connect(&addr, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err, format!("dial tcp {addr}: connect: connection refused"));
    }
}
