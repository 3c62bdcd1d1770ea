//! API errors and the `Status` objects they become on the wire. Reasons, codes and
//! message wording follow the upstream API server, because kubectl prints them
//! verbatim (`Error from server (<reason>): <message>`) and clients branch on them.
//!
//! The body's bytes are upstream's too, since third-party clients compare error bodies:
//! `Status`, `StatusDetails` and `Cause` are typed structs mirroring upstream's Go
//! structs (k8s.io/apimachinery pkg/apis/meta/v1/types.go, fields in their order, each
//! `omitempty` a `skip_serializing_if`), and the body is written by the encoder every
//! object goes through (`crate::json`), which follows those Go structs' field order,
//! omit rules and string escapes.

use serde::Serialize;
use serde_json::Value;

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
    /// The `metadata.continue` of the Status: the token an expired paged list may go on
    /// with (`expired_continue`).
    pub continue_token: Option<String>,
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
            continue_token: None,
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
        // Upstream names the kind with its group (`Deployment.apps "web" is invalid`).
        Self::new(
            422,
            "Invalid",
            format!("{} {name:?} is invalid: {summary}", qualified(kind, group)),
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

    /// A paged list whose snapshot was compacted away, as upstream's etcd store answers
    /// it: 410 with a `continue` token (`token`) that goes on at the latest revision,
    /// giving an inconsistent list.
    pub fn expired_continue(token: String) -> Self {
        let mut err = Self::expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        );
        err.continue_token = Some(token);
        err
    }

    /// A request that did not finish within its deadline (`?timeout=`, at most the
    /// server's), in the words of upstream's timeout filter.
    pub fn deadline_exceeded() -> Self {
        Self::new(
            504,
            "Timeout",
            "Timeout: request did not complete within the allotted timeout",
        )
        .with_details(StatusDetails::default())
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// An error upstream's handler got as a plain Go error rather than a Status: 500
    /// with no reason (`ErrorToAPIStatus`).
    pub fn unconverted(message: impl Into<String>) -> Self {
        Self::new(500, "", message)
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
            metadata: ListMeta {
                continue_token: self.continue_token.clone(),
            },
            status: "Failure",
            message: self.message.clone(),
            reason: self.reason,
            details: self.details.as_deref().cloned(),
            code: self.code,
        }
    }
}

/// Upstream's `ListMeta`, whose fields are all `omitempty`; of them a `Status` from the
/// API server sets only `continue` (an expired paged list's). Go's `omitempty` never
/// drops a struct, so it is always written, `"metadata":{}` when empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListMeta {
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_token: Option<String>,
}

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
    /// embedded object, dropping the newline its encoder wrote), written by the encoder
    /// every object goes through (`crate::json`): Go's field order and escapes.
    pub fn to_compact(&self) -> Vec<u8> {
        // The encoder finds a kind's struct by its type metadata, so an untyped Status
        // is written typed and its two leading members (always these bytes) cut out.
        let typed = Status {
            kind: "Status",
            api_version: "v1",
            ..self.clone()
        };
        let bytes = match serde_json::to_value(&typed) {
            Ok(value) => crate::json::to_vec(&value),
            // Strings and integers only: a Status always converts.
            Err(_) => return Vec::new(),
        };
        const TYPE_META: &[u8] = br#""kind":"Status","apiVersion":"v1","#;
        match bytes
            .strip_prefix(b"{")
            .and_then(|rest| rest.strip_prefix(TYPE_META))
        {
            Some(rest) if self.kind.is_empty() => [b"{".as_slice(), rest].concat(),
            _ => bytes,
        }
    }
}

/// The `Status` a successful delete, binding or eviction returns when there is no
/// object to show. Upstream's registry builds these as `&metav1.Status{Status:
/// metav1.StatusSuccess, Details: …}` with no code, so none is written.
pub fn success(details: Option<StatusDetails>) -> Status {
    Status {
        kind: "Status",
        api_version: "v1",
        metadata: ListMeta {
            continue_token: None,
        },
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
    fn expired_continue_carries_its_token_in_the_metadata() {
        let body = ApiError::expired_continue("tok".into())
            .to_status()
            .to_body();
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.starts_with(
                "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{\"continue\":\"tok\"},\"status\":\"Failure\",\"message\":\"The provided continue parameter is too old"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("\"reason\":\"Expired\",\"code\":410}\n"),
            "{text}"
        );
    }

    #[test]
    fn invalid_names_the_kind_with_its_group() {
        let err = ApiError::invalid(
            "Deployment",
            "apps",
            "web",
            &[Cause::required("spec.selector", "")],
        );
        assert_eq!(
            err.message,
            "Deployment.apps \"web\" is invalid: spec.selector: Required value"
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
