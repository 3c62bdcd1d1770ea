//! Reaching what stands behind the API server: a node's kubelet (its address from the
//! Node object, a TLS connection with the API server's kubelet client certificate) and
//! the objects the connect subresources read (a pod and the container a request
//! means), as upstream's `ConnectionInfoGetter` and pod strategy find them.

use super::Server;
use super::handlers::{decode, store_error};
use rind_api::registry::Resource;
use rind_api::status::ApiError;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The kubelet port when a node does not report one.
const DEFAULT_KUBELET_PORT: i64 = rind_runtime::paths::KUBELET_PORT as i64;

/// Reads one stored object of `resource`, or upstream's 404.
pub async fn load(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let kv = server
        .store
        .get(&resource.key(ns, name))
        .await
        .map_err(|e| store_error(e, resource, name))?
        .ok_or_else(|| ApiError::not_found(resource.plural, resource.group, name))?;
    decode(&kv)
}

/// A stored object of the core group by its plural (`nodes`, `endpoints`).
pub async fn load_core(
    server: &Server,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let resource = server
        .registry
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
    load(server, resource, ns, name).await
}

fn names(pod: &Value, list: &str) -> Vec<String> {
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

/// The container a request means: the named one (init and ephemeral containers
/// included), or the pod's only container (upstream's `validateContainer`).
pub fn pick_container(
    pod: &Value,
    pod_name: &str,
    wanted: Option<&str>,
) -> Result<String, ApiError> {
    let containers = names(pod, "containers");
    let mut all = names(pod, "initContainers");
    all.extend(containers.iter().cloned());
    all.extend(names(pod, "ephemeralContainers"));
    match wanted {
        Some(c) if all.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None if containers.is_empty() => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}"
        ))),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            all.join(" ")
        ))),
    }
}

/// The node a pod runs on, or upstream's 400 for a pod not scheduled yet.
pub fn node_of<'a>(pod: &'a Value, pod_name: &str) -> Result<&'a str, ApiError> {
    rind_api::meta::str_at(pod, &["spec", "nodeName"])
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {pod_name} does not have a host assigned"))
        })
}

/// Where a node's kubelet listens: its InternalIP and reported port.
pub async fn address(server: &Server, node_name: &str) -> Result<SocketAddr, ApiError> {
    let node = load_core(server, "nodes", None, node_name).await?;
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
    Ok(SocketAddr::new(ip, port))
}

/// A TLS connection to the kubelet at `addr` as the API server's kubelet client.
/// `path` only words the error, as upstream's transport names the URL it failed on.
pub async fn connect(
    server: &Server,
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> Result<TlsStream<TcpStream>, ApiError> {
    let tls = server.kubelet_tls.clone().ok_or_else(|| {
        ApiError::unavailable("this API server has no kubelet client certificate")
    })?;
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!("{method} \"https://{addr}{path}\": {e}"))
    };
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable(&e))?;
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(tls)
        .connect(
            rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            tcp,
        )
        .await
        .map_err(|e| unreachable(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_choice() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(pick_container(&one, "p", None).unwrap(), "a");
        let two = json!({"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a"}, {"name": "b"}],
            "ephemeralContainers": [{"name": "debug"}],
        }});
        assert_eq!(
            pick_container(&two, "p", None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [init a b debug]"
        );
        assert_eq!(pick_container(&two, "p", Some("b")).unwrap(), "b");
        assert_eq!(pick_container(&two, "p", Some("debug")).unwrap(), "debug");
        assert_eq!(
            pick_container(&two, "p", Some("c")).unwrap_err().message,
            "container c is not valid for pod p"
        );
        let none = json!({"spec": {"containers": []}});
        assert_eq!(
            pick_container(&none, "p", None).unwrap_err().message,
            "a container name must be specified for pod p"
        );
    }
}
