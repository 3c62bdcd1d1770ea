//! `pods/log`: proxied to the kubelet of the pod's node over HTTPS, authenticated with
//! the API server's kubelet client certificate, streamed back as it arrives.

use super::request::Query;
use super::{Server, kubelet, stream_response};
use axum::body::Body;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use rind_api::fields::invalid_value;
use rind_api::registry::Resource;
use rind_api::status::{ApiError, Cause};
use serde_json::Value;

/// The log options upstream's `PodLogOptions` decoding reads: booleans and integers
/// through the shared query parsers (a bad integer is 400 with Go's words), then
/// `ValidatePodLogOptions` (422 Invalid `PodLogOptions`). They are passed on to the
/// kubelet in canonical form, so it reads exactly what was checked here.
fn log_params(query: &Query, name: &str) -> Result<Vec<(&'static str, String)>, ApiError> {
    let mut params = Vec::new();
    for flag in ["follow", "previous"] {
        if query.flag(flag) {
            params.push((flag, "true".to_string()));
        }
    }
    let since_seconds = query.int("sinceSeconds")?;
    let since_time = query.get("sinceTime");
    if query.flag("timestamps") {
        params.push(("timestamps", "true".to_string()));
    }
    let tail_lines = query.int("tailLines")?;
    let limit_bytes = query.int("limitBytes")?;
    let mut causes = Vec::new();
    if let Some(tail) = tail_lines.filter(|t| *t < 0) {
        causes.push(invalid_value(
            "tailLines",
            &Value::from(tail),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(limit) = limit_bytes.filter(|l| *l < 1) {
        causes.push(invalid_value(
            "limitBytes",
            &Value::from(limit),
            "must be greater than 0",
        ));
    }
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => causes.push(Cause::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(since), None) if since < 1 => causes.push(invalid_value(
            "sinceSeconds",
            &Value::from(since),
            "must be greater than 0",
        )),
        _ => {}
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("PodLogOptions", "", name, &causes));
    }
    let numbers = [
        ("sinceSeconds", since_seconds),
        ("tailLines", tail_lines),
        ("limitBytes", limit_bytes),
    ];
    params.extend(
        numbers
            .into_iter()
            .filter_map(|(key, value)| value.map(|v| (key, v.to_string()))),
    );
    if let Some(time) = since_time {
        params.push(("sinceTime", time.to_string()));
    }
    Ok(params)
}

pub async fn proxy(
    server: &Server,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    query: &Query,
) -> Result<Response, ApiError> {
    let params = log_params(query, name)?;
    let pod = kubelet::load(server, resource, ns, name).await?;
    let container = kubelet::pick_container(&pod, name, query.get("container"))?;
    let node = kubelet::node_of(&pod, name)?;
    let addr = kubelet::address(server, node).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(uri: &str) -> Result<Vec<(&'static str, String)>, ApiError> {
        log_params(&Query::parse(&uri.parse().unwrap()).unwrap(), "p")
    }

    #[test]
    fn log_options_decode_and_validate_as_upstream() {
        assert_eq!(
            params("/x?follow=True&tailLines=5&timestamps=0&limitBytes=10").unwrap(),
            [
                ("follow", "true".to_string()),
                ("tailLines", "5".to_string()),
                ("limitBytes", "10".to_string())
            ]
        );
        let err = params("/x?tailLines=abc").unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, r#"strconv.ParseInt: parsing "abc": invalid syntax"#)
        );
        let err = params("/x?tailLines=-1&sinceSeconds=0").unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            r#"PodLogOptions "p" is invalid: [tailLines: Invalid value: -1: must be greater than or equal to 0, sinceSeconds: Invalid value: 0: must be greater than 0]"#
        );
        let err = params("/x?sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z").unwrap_err();
        assert_eq!(
            err.message,
            "PodLogOptions \"p\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
        );
    }
}
