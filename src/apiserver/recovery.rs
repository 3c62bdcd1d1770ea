//! Upstream's panic recovery (`WithPanicRecovery`): a request whose handler panics is
//! answered 500 and logged with its method and path, and the server goes on serving.
//! Without it the panic unwinds the task serving the connection (HTTP/1) or stream
//! (HTTP/2): the client gets no answer, and the log does not say which request did it.
//!
//! Upstream answers the sentence below as plain text; here it is the message of an
//! `InternalError` Status, as `NewInternalError` words it, so clients show it as any
//! other API error. A panic while a streamed body (watch, logs) is being sent happens
//! after the response has started, outside this, and still ends that connection or
//! stream.

use super::ErrorResponse;
use axum::response::Response;
use futures::FutureExt;
use http::{Method, Uri};
use rind_api::status::ApiError;
use std::panic::AssertUnwindSafe;

/// What upstream's panic recovery tells the client.
const PANICKED: &str = "This request caused apiserver to panic. Look in the logs for details.";

/// Runs one request's handling; a panic in it becomes upstream's 500.
pub(crate) async fn catch_panic(
    method: &Method,
    uri: &Uri,
    handling: impl Future<Output = Response>,
) -> Response {
    // Unwind safety is asserted, as upstream's recover() does implicitly: the state a
    // handler shares is the store and caches behind locks, and what a half-done
    // request left there is what any failed request leaves.
    match AssertUnwindSafe(handling).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            tracing::error!(%method, %uri, "apiserver panic'd: {reason}");
            ApiError::internal(format!("Internal error occurred: {PANICKED}")).into_response()
        }
    }
}

/// Test builds only: a request with this header panics in the handler, so the tests
/// can see a real panic recovered.
#[cfg(test)]
pub(crate) const PANIC_HEADER: &str = "x-rind-test-panic";

#[cfg(test)]
pub(crate) fn panic_if_asked(headers: &http::HeaderMap) {
    if headers.contains_key(PANIC_HEADER) {
        panic!("the test asked this request to panic");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Server, allocator, auth};
    use super::*;
    use axum::body::Body;
    use http::StatusCode;
    use http_body_util::BodyExt;
    use std::sync::Arc;

    fn server() -> Arc<Server> {
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        Arc::new(Server::new(
            rind_store::memory::MemoryStore::new(),
            None,
            allocator::ServiceNetwork::parse("10.96.0.0/16").unwrap(),
            auth::token::TokenKey::from_pem(&key).unwrap(),
        ))
    }

    async fn body(response: Response) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn a_panicking_request_is_a_500_status_and_the_next_one_is_served() {
        let server = server();
        let panicking = http::Request::get("/api/v1/namespaces/default/pods")
            .header(PANIC_HEADER, "1")
            .body(Body::empty())
            .unwrap();
        let response = server.clone().handle(panicking).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let status: serde_json::Value = serde_json::from_slice(&body(response).await).unwrap();
        assert_eq!(
            status,
            serde_json::json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Internal error occurred: This request caused apiserver to panic. \
                            Look in the logs for details.",
                "reason": "InternalError",
                "code": 500,
            })
        );

        // As an admin: this server has no bootstrap policy granting anonymous probes.
        let next = http::Request::get("/healthz")
            .extension(crate::tls::User {
                name: "kubernetes-admin".into(),
                groups: vec![rind_api::rbac::MASTERS.into()],
            })
            .body(Body::empty())
            .unwrap();
        let response = server.handle(next).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, b"ok");
    }
}
