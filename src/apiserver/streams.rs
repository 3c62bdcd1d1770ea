//! `pods/exec`, `pods/attach` and `pods/portforward`: the request's options become the
//! kubelet's parameters and the connection is handed to the kubelet of the pod's node
//! over HTTPS with the API server's kubelet client certificate. The upgrade, whichever
//! protocol the client asked for (WebSocket v5 or v4, SPDY, SPDY in WebSocket), is the
//! kubelet's to answer; its answer, an error included, goes back to the client as it
//! came (upstream's upgrade-aware proxy).

use super::kubelet;
use super::request::ResourceRequest;
use super::{Server, User, rbac};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::Method;
use rind_api::status::ApiError;
use rind_runtime::forward;

/// Headers the API server consumed: the kubelet must not see the client's
/// credentials (upstream's authentication and impersonation filters drop them).
const CONSUMED_HEADERS: &[&str] = &[
    "authorization",
    "impersonate-user",
    "impersonate-uid",
    "impersonate-group",
];

/// Query parameters, repeated keys kept in order (`command` repeats).
fn query_pairs(req: &Request) -> Result<Vec<(String, String)>, ApiError> {
    match req.uri().query() {
        None => Ok(Vec::new()),
        Some(q) => serde_urlencoded::from_str(q)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}"))),
    }
}

fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A boolean option as upstream's parameter codec reads it: absent is false, and so
/// are `0` and `false` in any case; anything else is true.
fn flag(pairs: &[(String, String)], key: &str) -> bool {
    last(pairs, key).is_some_and(rind_api::query::parse_bool)
}

/// The kubelet's query for an exec or attach: `input`, `output`, `error`, `tty` as `1`
/// and each `command`, keys sorted as Go's `url.Values.Encode` writes them.
fn remote_command_query(pairs: &[(String, String)], exec: bool) -> Result<String, ApiError> {
    let mut params: Vec<(&str, String)> = Vec::new();
    if exec {
        for (k, v) in pairs {
            if k == "command" {
                params.push(("command", v.clone()));
            }
        }
    }
    for (option, param) in [
        ("stderr", "error"),
        ("stdin", "input"),
        ("stdout", "output"),
        ("tty", "tty"),
    ] {
        if flag(pairs, option) {
            params.push((param, "1".into()));
        }
    }
    serde_urlencoded::to_string(&params).map_err(|e| ApiError::internal(e.to_string()))
}

/// The kubelet's `port` parameter from the client's `ports` (repeated or
/// comma-separated), each a port number (upstream's `[]int32` query conversion).
fn port_forward_query(pairs: &[(String, String)]) -> Result<String, ApiError> {
    let mut ports = Vec::new();
    for (k, v) in pairs {
        if k != "ports" {
            continue;
        }
        for p in v.split(',') {
            let port: u16 = p.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "cannot convert to []int32: strconv.ParseUint: parsing {p:?}: invalid syntax"
                ))
            })?;
            ports.push(port.to_string());
        }
    }
    if ports.is_empty() {
        return Ok(String::new());
    }
    serde_urlencoded::to_string([("port", ports.join(","))])
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Serves one `exec`, `attach` or `portforward` request.
pub async fn serve(
    server: &Server,
    r: &ResourceRequest,
    mut req: Request,
) -> Result<Response, ApiError> {
    let resource = r.resource;
    let sub = r.subresource.as_deref().unwrap_or_default();
    let name = r.name.as_deref().unwrap_or_default();
    let ns = r.namespace.as_deref();
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err(ApiError::method_not_supported(
            resource.plural,
            resource.group,
            req.method().as_str(),
        ));
    }
    // A WebSocket upgrade is a GET, authorized as `get`; running something in a pod
    // takes `create` as well (upstream's AuthorizePodWebsocketUpgradeCreatePermission).
    if req.method() == Method::GET {
        let user = req
            .extensions()
            .get::<User>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        let mut attributes = rbac::attributes(req.method(), req.uri());
        attributes.verb = "create".into();
        let decision = server.rbac.authorize(&user, &attributes);
        if !decision.allowed {
            return Err(ApiError::forbidden(
                resource.plural,
                resource.group,
                name,
                &decision.reason,
            ));
        }
    }
    // The options are read before anything is looked up, as upstream decodes them.
    let pairs = query_pairs(&req)?;
    let kubelet_query = match sub {
        "portforward" => port_forward_query(&pairs)?,
        _ => remote_command_query(&pairs, sub == "exec")?,
    };
    let pod = kubelet::load(server, resource, ns, name).await?;
    let namespace = ns.unwrap_or("default");
    let path = match sub {
        "portforward" => format!("/portForward/{namespace}/{name}?{kubelet_query}"),
        _ => {
            let container = kubelet::pick_container(&pod, name, last(&pairs, "container"))?;
            format!("/{sub}/{namespace}/{name}/{container}?{kubelet_query}")
        }
    };
    let node = kubelet::node_of(&pod, name)?;
    if !forward::is_upgrade(req.headers()) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let addr = kubelet::address(server, node).await?;
    let method = if req.method() == Method::GET {
        "GET"
    } else {
        "POST"
    };
    let tls = kubelet::connect(server, addr, method, &path).await?;
    for header in CONSUMED_HEADERS {
        req.headers_mut().remove(*header);
    }
    let response = forward::forward(tls, req, &addr.to_string(), &path)
        .await
        .map_err(|e| ApiError::internal(format!("error dialing backend: {e}")))?;
    Ok(response.map(Body::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn kubectl_exec_options_become_the_kubelets() {
        let q = pairs(
            "command=sh&command=-c&command=echo+%22a+b%22&container=c&stdin=true&stdout=true&stderr=true",
        );
        assert_eq!(
            remote_command_query(&q, true).unwrap(),
            "command=sh&command=-c&command=echo+%22a+b%22&error=1&input=1&output=1"
        );
        // The Python client writes booleans its own way.
        let q = pairs("command=ls&stdout=True&stderr=False&tty=false");
        assert_eq!(
            remote_command_query(&q, true).unwrap(),
            "command=ls&output=1"
        );
        // Attach has no command.
        let q = pairs("command=ls&stdout=true&tty=true");
        assert_eq!(remote_command_query(&q, false).unwrap(), "output=1&tty=1");
    }

    #[test]
    fn port_forward_ports() {
        assert_eq!(
            port_forward_query(&pairs("ports=80,8080&ports=9000")).unwrap(),
            "port=80%2C8080%2C9000"
        );
        assert_eq!(port_forward_query(&pairs("")).unwrap(), "");
        assert!(port_forward_query(&pairs("ports=http")).is_err());
    }
}
