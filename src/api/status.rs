//! API errors and the `Status` objects they become on the wire. Reasons, codes and
//! message wording follow the upstream API server, because kubectl prints them
//! verbatim (`Error from server (<reason>): <message>`) and clients branch on them.

use serde_json::{Value, json};

/// One field-level problem of an `Invalid` error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Upstream's cause type, e.g. `FieldValueRequired`.
    pub reason: &'static str,
    pub field: String,
    /// The human part, e.g. `Required value` or `Invalid value: "x": ...`.
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        }
    }

    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", Value::from(value)),
        }
    }

    pub fn unsupported(field: impl Into<String>, value: &str, allowed: &[&str]) -> Self {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("{:?}", a)).collect();
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                Value::from(value),
                allowed.join(", ")
            ),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Cause {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {}", Value::from(value)),
        }
    }
}

/// An error the API server answers with: an HTTP code plus a `Status` body.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// `pods` for the core group, `leases.coordination.k8s.io` otherwise: how upstream
/// names a resource in messages.
pub fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {:?} not found", qualified(plural, group), name),
        )
        .with_details(json!({"name": name, "group": group, "kind": plural}))
    }

    /// A URL that names no resource at all.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {:?} already exists", qualified(plural, group), name),
        )
        .with_details(json!({"name": name, "group": group, "kind": plural}))
    }

    pub fn conflict(plural: &str, group: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {:?}: {why}",
                qualified(plural, group),
                name
            ),
        )
        .with_details(json!({"name": name, "group": group, "kind": plural}))
    }

    /// The stale-resourceVersion conflict, worded exactly as upstream.
    pub fn modified(plural: &str, group: &str, name: &str) -> Self {
        Self::conflict(
            plural,
            group,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[Cause]) -> Self {
        let rendered: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{kind} {name:?} is invalid: {summary}"),
        )
        .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    /// A well-formed request the server cannot process (e.g. a failing JSON patch `test`).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// `<resource> "<name>" is forbidden: <why>` (the name part left out when empty).
    pub fn forbidden(plural: &str, group: &str, name: &str, why: &str) -> Self {
        let what = if name.is_empty() {
            qualified(plural, group)
        } else {
            format!("{} {name:?}", qualified(plural, group))
        };
        Self::new(403, "Forbidden", format!("{what} is forbidden: {why}"))
            .with_details(json!({"name": name, "group": group, "kind": plural}))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// A body over the size limit (or one that could not be read whole).
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            // Upstream's wording.
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// The `Accept` header names no rendering the endpoint can produce; upstream's
    /// negotiation error lists the media types its serializers speak.
    pub fn not_acceptable() -> Self {
        Self::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )
    }

    pub fn method_not_supported(plural: &str, group: &str, verb: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "{verb} is not supported on resources of kind {:?}",
                qualified(plural, group)
            ),
        )
    }

    /// A resourceVersion older than the store keeps.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object sent as the response body (or a watch ERROR event).
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// The `Status` a successful delete or binding returns when there is no object to show.
pub fn success(code: u16, details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": code,
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_message_matches_upstream() {
        let err = ApiError::modified("leases", "coordination.k8s.io", "l1");
        assert_eq!(
            err.message,
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"l1\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(err.code, 409);
    }

    #[test]
    fn invalid_lists_all_causes() {
        let err = ApiError::invalid(
            "Pod",
            "",
            "p",
            &[
                Cause::required("spec.containers[0].name", ""),
                Cause::required("spec.containers[0].image", ""),
            ],
        );
        assert_eq!(
            err.message,
            "Pod \"p\" is invalid: [spec.containers[0].name: Required value, spec.containers[0].image: Required value]"
        );
        let status = err.to_status();
        assert_eq!(
            status["details"]["causes"][1]["field"],
            "spec.containers[0].image"
        );
        assert_eq!(status["code"], 422);
    }
}
