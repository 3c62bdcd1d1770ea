//! `pods/proxy`, `services/proxy` and `nodes/proxy`: the rest of the path after
//! `/proxy` (and the query) is asked of a pod's port, of one endpoint behind a
//! Service, or of a node's kubelet, and the answer streamed back, upgrades included —
//! what `kubectl proxy` and `kubectl get --raw …/proxy/…` use. The object's name may
//! carry a scheme and a port as upstream allows: `name`, `name:port`,
//! `scheme:name:port`.

use super::Server;
use super::kubelet;
use super::request::ResourceRequest;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use rand::Rng;
use rind_api::meta::str_at;
use rind_api::status::ApiError;
use rind_runtime::forward;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpStream;

/// The methods upstream proxies.
const PROXY_METHODS: &[Method] = &[
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
];

/// Headers the API server consumed: the backend must not see the client's
/// credentials (upstream's authentication and impersonation filters drop them).
const CONSUMED_HEADERS: &[&str] = &[
    "authorization",
    "impersonate-user",
    "impersonate-uid",
    "impersonate-group",
];

/// Upstream's `SplitSchemeNamePort`: `name`, `name:port` or `scheme:name:port`, the
/// scheme `http` or `https`, the name not empty.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

/// Where a proxied request goes.
struct Location {
    https: bool,
    addr: SocketAddr,
    /// Reached with the kubelet client certificate (a node's kubelet port).
    kubelet: bool,
}

fn pod_ip(pod: &Value) -> Option<IpAddr> {
    let first = pod
        .get("status")
        .and_then(|s| s.get("podIPs"))
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .and_then(|ip| ip.get("ip"))
        .and_then(Value::as_str)
        .or_else(|| str_at(pod, &["status", "podIP"]));
    first.and_then(|ip| ip.parse().ok())
}

/// Unicast addresses a pod can have; upstream refuses to proxy anywhere else.
fn global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_link_local())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

fn container_ports(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.get("spec")
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("ports").and_then(Value::as_array))
        .flatten()
}

/// A port given by number or by the name of one of the pod's container ports.
fn resolve_pod_port(pod: &Value, port: &str) -> Result<u16, ApiError> {
    if let Ok(number) = port.parse::<u16>() {
        return Ok(number);
    }
    container_ports(pod)
        .find(|p| p.get("name").and_then(Value::as_str) == Some(port))
        .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            ApiError::unavailable(format!(
                "error trying to reach service: dial tcp: unknown port tcp/{port}"
            ))
        })
}

async fn pod_location(
    server: &Server,
    r: &ResourceRequest,
    id: &str,
) -> Result<Location, ApiError> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid pod request {id:?}")))?;
    let pod = kubelet::load(server, r.resource, r.namespace.as_deref(), name).await?;
    let port = if port.is_empty() {
        // The first port any container declares, else the scheme's own.
        container_ports(&pod)
            .find_map(|p| p.get("containerPort").and_then(Value::as_u64))
            .map(|p| p.to_string())
            .unwrap_or_default()
    } else {
        port.to_string()
    };
    let ip = pod_ip(&pod)
        .filter(|ip| global_unicast(*ip))
        .ok_or_else(|| ApiError::bad_request("address not allowed"))?;
    let https = scheme == "https";
    let port = if port.is_empty() {
        if https { 443 } else { 80 }
    } else {
        resolve_pod_port(&pod, &port)?
    };
    Ok(Location {
        https,
        addr: SocketAddr::new(ip, port),
        kubelet: false,
    })
}

/// Whether an endpoint address is a pod that really has that IP (upstream proxies
/// only to pods).
async fn is_pod_address(server: &Server, ns: Option<&str>, address: &Value) -> bool {
    let Some(target) = address.get("targetRef") else {
        return false;
    };
    if target.get("kind").and_then(Value::as_str) != Some("Pod") {
        return false;
    }
    let Some(name) = target.get("name").and_then(Value::as_str) else {
        return false;
    };
    let namespace = target.get("namespace").and_then(Value::as_str).or(ns);
    let Ok(pod) = kubelet::load_core(server, "pods", namespace, name).await else {
        return false;
    };
    let ip = address.get("ip").and_then(Value::as_str);
    ip.is_some() && pod_ip(&pod).map(|p| p.to_string()).as_deref() == ip
}

async fn service_location(
    server: &Server,
    r: &ResourceRequest,
    id: &str,
) -> Result<Location, ApiError> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid service request {id:?}")))?;
    let ns = r.namespace.as_deref();
    // A port number stands for the service port's name, as Endpoints name them.
    let mut port_name = port.to_string();
    if let Ok(number) = port.parse::<i64>() {
        let service = kubelet::load(server, r.resource, ns, name).await?;
        let ports = service
            .get("spec")
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        port_name = ports
            .iter()
            .find(|p| p.get("port").and_then(Value::as_i64) == Some(number))
            .map(|p| {
                p.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            })
            .ok_or_else(|| {
                ApiError::unavailable(format!(
                    "no service port {number} found for service {name:?}"
                ))
            })?;
    }
    let endpoints = kubelet::load_core(server, "endpoints", ns, name).await?;
    let subsets = endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if subsets.is_empty() {
        return Err(ApiError::unavailable(format!(
            "no endpoints available for service {name:?}"
        )));
    }
    // Start at a random subset and address, as upstream spreads the load.
    let subset_seed = rand::rng().random_range(0..subsets.len());
    for i in 0..subsets.len() {
        let subset = &subsets[(subset_seed + i) % subsets.len()];
        let addresses = subset
            .get("addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if addresses.is_empty() {
            continue;
        }
        let ports = subset
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for endpoint_port in &ports {
            if endpoint_port
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                != port_name
            {
                continue;
            }
            let Some(number) = endpoint_port
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            let address_seed = rand::rng().random_range(0..addresses.len());
            for j in 0..addresses.len() {
                let address = &addresses[(address_seed + j) % addresses.len()];
                if !is_pod_address(server, ns, address).await {
                    continue;
                }
                let Some(ip) = address
                    .get("ip")
                    .and_then(Value::as_str)
                    .and_then(|ip| ip.parse().ok())
                else {
                    continue;
                };
                return Ok(Location {
                    https: scheme == "https",
                    addr: SocketAddr::new(ip, number),
                    kubelet: false,
                });
            }
        }
    }
    Err(ApiError::unavailable(format!(
        "no endpoints available for service {id:?}"
    )))
}

async fn node_location(server: &Server, id: &str) -> Result<Location, ApiError> {
    let (scheme, name, port) = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid node request {id:?}")))?;
    let kubelet = kubelet::address(server, name).await?;
    // The kubelet's own port (or none) is reached as the kubelet's API client.
    if port.is_empty() || port == kubelet.port().to_string() {
        return Ok(Location {
            https: true,
            addr: kubelet,
            kubelet: true,
        });
    }
    let port: u16 = port.parse().map_err(|_| {
        ApiError::unavailable(format!(
            "error trying to reach service: dial tcp: unknown port tcp/{port}"
        ))
    })?;
    Ok(Location {
        https: scheme == "https",
        addr: SocketAddr::new(kubelet.ip(), port),
        kubelet: false,
    })
}

/// Go's wording of a failed dial, which upstream puts after "error trying to reach service".
fn unreachable(addr: SocketAddr, e: &dyn std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!(
        "error trying to reach service: dial tcp {addr}: connect: {e}"
    ))
}

fn dial_error(addr: SocketAddr, e: &std::io::Error) -> ApiError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => unreachable(addr, &"connection refused"),
        std::io::ErrorKind::TimedOut => unreachable(addr, &"connection timed out"),
        std::io::ErrorKind::HostUnreachable => unreachable(addr, &"no route to host"),
        _ => unreachable(addr, e),
    }
}

/// Serves one proxy request.
pub async fn serve(
    server: &Server,
    r: &ResourceRequest,
    mut req: Request,
) -> Result<Response, ApiError> {
    if !PROXY_METHODS.contains(req.method()) {
        return Err(ApiError::method_not_supported(
            r.resource.plural,
            r.resource.group,
            req.method().as_str(),
        ));
    }
    let id = r.name.as_deref().unwrap_or_default();
    let query = req.uri().query().map(str::to_string);
    // Without a path after `/proxy`, the `path` option may name one.
    let mut path = r.proxy_path.clone();
    if path.is_empty()
        && let Some(option) = query.as_deref().and_then(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()?
                .into_iter()
                .rev()
                .find(|(k, _)| k == "path")
                .map(|(_, v)| v)
        })
    {
        path = if option.starts_with('/') {
            option
        } else {
            format!("/{option}")
        };
    }
    if path.is_empty() {
        // Upstream's answer to a bare `…/proxy`: the same with a slash.
        let location = match &query {
            Some(q) => format!("{}/?{q}", req.uri().path()),
            None => format!("{}/", req.uri().path()),
        };
        return Ok((
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response());
    }
    let location = match r.resource.plural {
        "pods" => pod_location(server, r, id).await?,
        "services" => service_location(server, r, id).await?,
        "nodes" => node_location(server, id).await?,
        other => {
            return Err(ApiError::internal(format!("{other} have no proxy")));
        }
    };
    let path_and_query = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    for header in CONSUMED_HEADERS {
        req.headers_mut().remove(*header);
    }
    let addr = location.addr;
    let authority = addr.to_string();
    let forwarded = if location.kubelet {
        let method = req.method().as_str().to_string();
        let io = kubelet::connect(server, addr, &method, &path_and_query).await?;
        forward::forward(io, req, &authority, &path_and_query).await
    } else {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| dial_error(addr, &e))?;
        let _ = tcp.set_nodelay(true);
        if location.https {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let tls = tokio_rustls::TlsConnector::from(insecure_tls())
                .connect(name, tcp)
                .await
                .map_err(|e| unreachable(addr, &e))?;
            forward::forward(tls, req, &authority, &path_and_query).await
        } else {
            forward::forward(tcp, req, &authority, &path_and_query).await
        }
    };
    forwarded
        .map(|response| response.map(Body::new))
        .map_err(|e| unreachable(addr, &e))
}

/// Upstream's proxy transport to pods and services skips certificate verification
/// (`InsecureSkipVerify`): what a pod serves is signed by whoever runs it.
fn insecure_tls() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_schemes_and_ports() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(
            split_scheme_name_port("web:8080"),
            Some(("", "web", "8080"))
        );
        assert_eq!(
            split_scheme_name_port("https:web:443"),
            Some(("https", "web", "443"))
        );
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn pod_ports_by_number_or_name() {
        let pod = serde_json::json!({"spec": {"containers": [
            {"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}
        ]}});
        assert_eq!(resolve_pod_port(&pod, "80").unwrap(), 80);
        assert_eq!(resolve_pod_port(&pod, "web").unwrap(), 8080);
        assert_eq!(
            resolve_pod_port(&pod, "db").unwrap_err().message,
            "error trying to reach service: dial tcp: unknown port tcp/db"
        );
        assert!(!global_unicast("127.0.0.1".parse().unwrap()));
        assert!(global_unicast("10.244.0.5".parse().unwrap()));
    }
}
