//! `pods/log`: proxied to the kubelet of the pod's node over HTTPS, authenticated with
//! the API server's kubelet client certificate, streamed back as it arrives.

use super::request::Query;
use super::{Server, kubelet, stream_response};
use axum::body::Body;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use rind_api::registry::Resource;
use rind_api::status::ApiError;

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

pub async fn proxy(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let pod = kubelet::load(server, resource, ns, name).await?;
    let container = kubelet::pick_container(&pod, name, query.get("container"))?;
    let node = kubelet::node_of(&pod, name)?;
    let addr = kubelet::address(server, node).await?;
    let params: Vec<(&str, &str)> = PASSED_PARAMS
        .iter()
        .filter_map(|p| query.get(p).map(|v| (*p, v)))
        .collect();
    let query_string = serde_urlencoded::to_string(&params).unwrap_or_default();
    let path = format!(
        "/containerLogs/{}/{name}/{container}?{query_string}",
        ns.unwrap_or("default")
    );

    let tls_stream = kubelet::connect(server, addr, "Get", &path).await?;
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::internal(format!("Get \"https://{addr}{path}\": {e}"))
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls_stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("kubelet log connection ended: {e}");
        }
    });
    let request = http::Request::get(&path)
        .header(http::header::HOST, addr.to_string())
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
