//! API errors and the `Status` objects they become on the wire. Reasons, codes and
//! message wording follow the upstream API server, because kubectl prints them
//! verbatim (`Error from server (<reason>): <message>`) and clients branch on them.
//!
//! The body's bytes are upstream's too, since third-party clients compare error bodies:
//! `Status`, `StatusDetails` and `Cause` are typed structs whose fields are declared in
//! the order of upstream's Go structs (k8s.io/apimachinery pkg/apis/meta/v1/types.go),
//! with each `omitempty` as a `skip_serializing_if`. A `serde_json::Value` could not
//! do this: its map sorts keys.

use serde::Serialize;
use serde_json::Value;
use std::io;

/// One field-level problem of an error: upstream's `StatusCause`, whose JSON keys
/// are `reason`, `message`, `field` in that order, each left out when empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// Upstream's cause type, e.g. `FieldValueRequired`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
    /// The human part, e.g. `Required value` or `Invalid value: "x": ...`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
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

/// Upstream's `StatusDetails`: what an error (or a delete) is about. Every field is
/// `omitempty` upstream, so a core-group resource has no `"group"` key. Upstream's
/// last field, `retryAfterSeconds`, is absent because rind never asks a client to wait.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Upstream puts the resource (`pods`) here for most errors and the kind (`Pod`)
    /// for `Invalid`; callers pass what upstream does.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
}

impl StatusDetails {
    /// Details naming one object of a resource (`kind` is the plural for most reasons).
    pub fn object(name: &str, group: &str, kind: &str) -> Self {
        StatusDetails {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
            ..Self::default()
        }
    }

    /// Details that carry only causes (apply conflicts, eviction refusals).
    pub fn causes(causes: Vec<Cause>) -> Self {
        StatusDetails {
            causes,
            ..Self::default()
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
    /// Boxed: inline it would make every `Result<_, ApiError>` several times larger.
    pub details: Option<Box<StatusDetails>>,
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

    fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    pub fn not_found(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {:?} not found", qualified(plural, group), name),
        )
        .with_details(StatusDetails::object(name, group, plural))
    }

    /// A URL that names no resource at all.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(StatusDetails::default())
    }

    pub fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {:?} already exists", qualified(plural, group), name),
        )
        .with_details(StatusDetails::object(name, group, plural))
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
        .with_details(StatusDetails::object(name, group, plural))
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
        Self::new(
            422,
            "Invalid",
            format!("{kind} {name:?} is invalid: {summary}"),
        )
        .with_details(StatusDetails {
            causes: causes.to_vec(),
            ..StatusDetails::object(name, group, kind)
        })
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
            .with_details(StatusDetails::object(name, group, plural))
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

    /// The `Status` object sent as the response body (or in a watch ERROR event).
    pub fn to_status(&self) -> Status {
        Status {
            kind: "Status",
            api_version: "v1",
            metadata: ListMeta {},
            status: "Failure",
            message: self.message.clone(),
            reason: self.reason,
            details: self.details.as_deref().cloned(),
            code: self.code,
        }
    }
}

/// Upstream's `ListMeta`, whose fields are all `omitempty` and none of which a
/// `Status` from the API server sets; Go's `omitempty` never drops a struct, so
/// it is always written as `"metadata":{}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListMeta {}

/// Upstream's `Status`: its `TypeMeta` (kind, apiVersion) inline, then metadata,
/// status, message, reason, details, code, each `omitempty` but metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_version: &'static str,
    metadata: ListMeta,
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<StatusDetails>,
    /// Unset (0, so left out) in upstream's success Statuses of deletes, bindings
    /// and evictions; the HTTP status carries the code there.
    #[serde(skip_serializing_if = "is_unset")]
    code: u16,
}

fn is_unset(code: &u16) -> bool {
    *code == 0
}

impl Status {
    /// The response body as upstream's JSON serializer writes it: `json.NewEncoder`
    /// (k8s.io/apimachinery pkg/runtime/serializer/json), so HTML-escaped and
    /// followed by a newline.
    pub fn to_body(&self) -> Vec<u8> {
        let mut body = self.to_compact();
        body.push(b'\n');
        body
    }

    /// The status as a streaming session (exec, attach) reports it on its error
    /// channel: upstream marshals a bare `metav1.Status` there, whose unset TypeMeta
    /// leaves `kind` and `apiVersion` out.
    pub fn untyped(mut self) -> Self {
        self.kind = "";
        self.api_version = "";
        self
    }

    /// The JSON without the newline, as it sits inside a watch event (Go compacts an
    /// embedded object, dropping the newline its encoder wrote).
    pub fn to_compact(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        let mut serializer = serde_json::Serializer::with_formatter(&mut body, GoEscapes);
        // Strings and integers written into a Vec: neither can fail.
        self.serialize(&mut serializer)
            .expect("a Status serializes into memory");
        body
    }
}

/// serde_json's escaping plus what Go's `encoding/json` adds by default (its
/// `SetEscapeHTML(true)`): `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes. Every
/// other escape (quote, backslash, control characters as `\n` or `\u001f`) is the
/// same in both.
struct GoEscapes;

impl serde_json::ser::Formatter for GoEscapes {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..at])?;
            writer.write_all(escaped.as_bytes())?;
            start = at + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// The `Status` a successful delete, binding or eviction returns when there is no
/// object to show. Upstream's registry builds these as `&metav1.Status{Status:
/// metav1.StatusSuccess, Details: …}` with no code, so none is written.
pub fn success(details: Option<StatusDetails>) -> Status {
    Status {
        kind: "Status",
        api_version: "v1",
        metadata: ListMeta {},
        status: "Success",
        message: String::new(),
        reason: "",
        details,
        code: 0,
    }
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
        let status: Value = serde_json::from_slice(&err.to_status().to_body()).unwrap();
        assert_eq!(
            status["details"]["causes"][1]["field"],
            "spec.containers[0].image"
        );
        assert_eq!(status["code"], 422);
    }

    // Expected bytes: kubernetes/kubernetes CHANGELOG-1.11.md quotes this body for
    // `kubectl get pods abc` (the audit note of #62695). The core group is "", so
    // upstream's `omitempty` leaves "group" out.
    #[test]
    fn not_found_body_is_upstreams() {
        let body = ApiError::not_found("pods", "", "abc").to_status().to_body();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"abc\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"abc\",\"kind\":\"pods\"},\"code\":404}\n"
        );
    }

    // The expected bytes below follow the field order and `omitempty` tags of
    // upstream's Status, StatusDetails and StatusCause (k8s.io/apimachinery
    // pkg/apis/meta/v1/types.go) as `json.NewEncoder` writes them, newline included.
    #[test]
    fn already_exists_body_is_upstreams() {
        let body = ApiError::already_exists("deployments", "apps", "web")
            .to_status()
            .to_body();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"deployments.apps \\\"web\\\" already exists\",\"reason\":\"AlreadyExists\",\"details\":{\"name\":\"web\",\"group\":\"apps\",\"kind\":\"deployments\"},\"code\":409}\n"
        );
    }

    #[test]
    fn invalid_body_is_upstreams() {
        let body = ApiError::invalid(
            "Pod",
            "",
            "p",
            &[Cause::required("spec.containers[0].image", "")],
        )
        .to_status()
        .to_body();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Pod \\\"p\\\" is invalid: spec.containers[0].image: Required value\",\"reason\":\"Invalid\",\"details\":{\"name\":\"p\",\"kind\":\"Pod\",\"causes\":[{\"reason\":\"FieldValueRequired\",\"message\":\"Required value\",\"field\":\"spec.containers[0].image\"}]},\"code\":422}\n"
        );
    }

    // Upstream's delete Status: registry.Store.finalizeDelete sets name, group,
    // kind (the resource) and uid, and no code.
    #[test]
    fn delete_success_body_is_upstreams() {
        let details = StatusDetails {
            uid: "u1".to_string(),
            ..StatusDetails::object("cm", "", "configmaps")
        };
        assert_eq!(
            String::from_utf8(success(Some(details)).to_body()).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Success\",\"details\":{\"name\":\"cm\",\"kind\":\"configmaps\",\"uid\":\"u1\"}}\n"
        );
    }

    // Go's encoder escapes HTML characters and U+2028/U+2029 in strings.
    #[test]
    fn strings_are_escaped_as_go_does() {
        let body = ApiError::bad_request("a<b>&c\u{2028}\"\n")
            .to_status()
            .to_compact();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"a\\u003cb\\u003e\\u0026c\\u2028\\\"\\n\",\"reason\":\"BadRequest\",\"code\":400}"
        );
    }
}
