//! `pods/log`: proxied to the kubelet of the pod's node over HTTPS, authenticated with
//! the API server's kubelet client certificate, streamed back as it arrives.

use super::handlers::{decode, store_error};
use super::request::Query;
use super::{Server, stream_response};
use axum::body::Body;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use rind_api::meta::str_at;
use rind_api::registry::Resource;
use rind_api::status::ApiError;
use serde_json::Value;
use std::net::IpAddr;

/// The kubelet port when a node does not report one.
const DEFAULT_KUBELET_PORT: i64 = rind_runtime::paths::KUBELET_PORT as i64;
/// The kubelet's log parameters passed through unchanged.
const PASSED_PARAMS: &[&str] = &[
    "follow",
    "tailLines",
    "timestamps",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod.get("spec")
        .and_then(|s| s.get(list))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The container whose log is wanted: the named one, or the pod's only container.
fn pick_container(pod: &Value, name: &str, wanted: Option<&str>) -> Result<String, ApiError> {
    let containers = container_names(pod, "containers");
    let init = container_names(pod, "initContainers");
    match wanted {
        Some(c) if containers.iter().chain(init.iter()).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Where a node's kubelet listens: its InternalIP and reported port.
async fn kubelet_address(server: &Server, node_name: &str) -> Result<(IpAddr, u16), ApiError> {
    let nodes = server
        .registry
        .lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not registered"))?;
    let kv = server
        .store
        .get(&nodes.key(None, node_name))
        .await
        .map_err(|e| store_error(e, nodes, node_name))?
        .ok_or_else(|| ApiError::not_found("nodes", "", node_name))?;
    let node = decode(&kv)?;
    let ip = node
        .get("status")
        .and_then(|s| s.get("addresses"))
        .and_then(Value::as_array)
        .and_then(|addrs| {
            addrs
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
                .and_then(|a| a.get("address").and_then(Value::as_str))
        })
        .and_then(|a| a.parse::<IpAddr>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "node {node_name:?} has no InternalIP address to reach its kubelet"
            ))
        })?;
    let port = node
        .get("status")
        .and_then(|s| s.get("daemonEndpoints"))
        .and_then(|d| d.get("kubeletEndpoint"))
        .and_then(|k| k.get("Port"))
        .and_then(Value::as_i64)
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    let port = u16::try_from(port).map_err(|_| {
        ApiError::internal(format!("node {node_name:?} reports kubelet port {port}"))
    })?;
    Ok((ip, port))
}

pub async fn proxy(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let key = resource.key(ns, name);
    let kv = server
        .store
        .get(&key)
        .await
        .map_err(|e| store_error(e, resource, name))?
        .ok_or_else(|| ApiError::not_found(resource.plural, resource.group, name))?;
    let pod = decode(&kv)?;
    let container = pick_container(&pod, name, query.get("container"))?;
    let node = str_at(&pod, &["spec", "nodeName"])
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let tls = server.kubelet_tls.clone().ok_or_else(|| {
        ApiError::unavailable("this API server has no kubelet client certificate")
    })?;
    let (ip, port) = kubelet_address(server, node).await?;
    let params: Vec<(&str, &str)> = PASSED_PARAMS
        .iter()
        .filter_map(|p| query.get(p).map(|v| (*p, v)))
        .collect();
    let query_string = serde_urlencoded::to_string(&params).unwrap_or_default();
    let path = format!(
        "/containerLogs/{}/{name}/{container}?{query_string}",
        ns.unwrap_or("default")
    );

    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!("Get \"https://{ip}:{port}{path}\": {e}"))
    };
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| unreachable(&e))?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    let tls_stream = connector
        .connect(rustls::pki_types::ServerName::IpAddress(ip.into()), tcp)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls_stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("kubelet log connection ended: {e}");
        }
    });
    let request = http::Request::get(&path)
        .header(http::header::HOST, format!("{ip}:{port}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unreachable(&e))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let message = body.trim().to_string();
        return Err(match status.as_u16() {
            400 => ApiError::bad_request(message),
            404 => ApiError::bad_request(if message.is_empty() {
                format!("container {container:?} in pod {name:?} has no logs")
            } else {
                message
            }),
            _ => ApiError::internal(format!("the kubelet answered {status}: {message}")),
        });
    }
    Ok(stream_response(
        "text/plain",
        Body::new(response.into_body()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_choice() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(pick_container(&one, "p", None).unwrap(), "a");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            pick_container(&two, "p", None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
        assert_eq!(pick_container(&two, "p", Some("b")).unwrap(), "b");
        assert!(pick_container(&two, "p", Some("c")).is_err());
    }
}
