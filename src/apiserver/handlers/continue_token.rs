//! The `continue` token of a paged list: where the list resumes (the last key it
//! returned) and the store revision it reads at, so every page shows the same
//! snapshot. Opaque to clients: URL-safe base64 of a small JSON document.

use base64::Engine;
use rind_api::status::ApiError;
use serde_json::json;

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct ContinueToken {
    pub(super) rv: i64,
    pub(super) start: String,
}

pub(super) fn encode_continue(rv: i64, start: &str) -> String {
    let json = json!({"rv": rv, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

pub(super) fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let token = decode_continue(&encode_continue(42, "/registry/pods/a/b")).unwrap();
        assert_eq!((token.rv, token.start.as_str()), (42, "/registry/pods/a/b"));
        assert!(decode_continue("!!").is_err());
    }
}
