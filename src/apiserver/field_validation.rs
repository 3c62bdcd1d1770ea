//! `fieldValidation`: what a write does with fields its kind does not have. Upstream
//! never stores them for built-in kinds; the request decides whether they fail it
//! (`Strict`), come back as `Warning` headers (`Warn`, the default) or vanish quietly
//! (`Ignore`, what `kubectl --validate=false` sends).

use super::request::{BodyType, Query};
use axum::response::Response;
use http::HeaderValue;
use rind_api::crd;
use rind_api::registry::Resource;
use rind_api::schema::fields::{BodyShape, Mistyped, key_occurrences};
use rind_api::schema::schemas;
use rind_api::status::{ApiError, Cause};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    Ignore,
    Warn,
    Strict,
}

impl Validation {
    pub fn from_query(query: &Query) -> Result<Self, ApiError> {
        match query.get("fieldValidation") {
            None | Some("Warn") => Ok(Validation::Warn),
            Some("Ignore") => Ok(Validation::Ignore),
            Some("Strict") => Ok(Validation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// A request body as sent, next to its decoded form: duplicate fields are named from
/// it (the decoded body keeps only the last), and problems ordered as they appear.
#[derive(Clone, Copy)]
pub struct Sent<'a> {
    pub raw: &'a [u8],
    /// Its decoding found a field set twice.
    pub duplicated: bool,
}

/// Checks a create or update body, dropping unknown fields from it; returns the
/// warnings to send, or the error a `Strict` request gets.
pub fn check_object(
    resource: &Resource,
    duplicated: Option<Sent<'_>>,
    body: &mut Value,
    query: &Query,
) -> Result<Vec<String>, ApiError> {
    let mode = Validation::from_query(query)?;
    let unknown = match (resource.custom, schema_name(resource)) {
        (Some(custom), _) => crd::structural::prune_object(&custom.schema, body),
        (None, Some(name)) => {
            let (unknown, mistyped) = schemas().prune_checked(name, body, BodyShape::Object);
            // A value its field's type cannot take fails whatever fieldValidation says.
            if let Some(mistyped) = mistyped {
                return Err(undecodable(resource, &mistyped));
            }
            unknown
        }
        (None, None) => return Ok(Vec::new()),
    };
    let problems = problems(duplicated, unknown);
    if mode == Validation::Strict && !problems.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
            problems.join(", "),
            kind = resource.kind,
            version = resource.version,
        )));
    }
    Ok(warnings(mode, problems))
}

/// What checking a patch found.
#[derive(Debug)]
pub struct PatchCheck {
    /// Warnings to send (`Warn`).
    pub warnings: Vec<String>,
    /// The patch can only add fields the kind has: a merge or strategic merge patch of a
    /// built-in kind with no unknown field. The patched object (the stored one, which
    /// has none, plus these) then needs no pruning.
    pub adds_known_fields_only: bool,
}

/// Checks a patch body. Only what the patch adds is looked at (the stored object has
/// no unknown fields); the unknown ones are dropped when the patched object is
/// admitted, so the patch itself is left as it came.
pub fn check_patch(
    resource: &Resource,
    name: &str,
    duplicated: Option<Sent<'_>>,
    patch: &Value,
    kind: BodyType,
    query: &Query,
) -> Result<PatchCheck, ApiError> {
    let mode = Validation::from_query(query)?;
    let unknown = match (resource.custom, schema_name(resource), kind) {
        // What a JSON patch adds to a custom object shows when the result is pruned.
        (Some(_), _, BodyType::JsonPatch) => Vec::new(),
        (Some(custom), _, _) => crd::structural::prune_object(&custom.schema, &mut patch.clone()),
        (None, Some(schema), _) => {
            let (unknown, mistyped) = if kind == BodyType::JsonPatch {
                schemas().json_patch_checked(schema, patch)
            } else {
                schemas().prune_checked(schema, &mut patch.clone(), BodyShape::MergePatch)
            };
            // Upstream decodes the patched object, fails, and calls the patch invalid.
            if let Some(mistyped) = mistyped {
                let rendered = serde_json::to_string(patch).unwrap_or_default();
                return Err(ApiError::invalid(
                    resource.kind,
                    resource.group,
                    name,
                    &[Cause::invalid("patch", &rendered, &mistyped.message)],
                ));
            }
            unknown
        }
        (None, None, _) => {
            return Ok(PatchCheck {
                warnings: Vec::new(),
                adds_known_fields_only: false,
            });
        }
    };
    let adds_known_fields_only = unknown.is_empty()
        && resource.custom.is_none()
        && matches!(kind, BodyType::MergePatch | BodyType::StrategicMergePatch);
    let problems = problems(duplicated, unknown);
    if mode == Validation::Strict && !problems.is_empty() {
        // Upstream reports a patch that adds unknown fields as an invalid `patch`.
        let rendered = serde_json::to_string(patch).unwrap_or_default();
        let detail = format!("strict decoding error: {}", problems.join(", "));
        return Err(ApiError::invalid(
            resource.kind,
            resource.group,
            name,
            &[Cause::invalid("patch", &rendered, &detail)],
        ));
    }
    Ok(PatchCheck {
        warnings: warnings(mode, problems),
        adds_known_fields_only,
    })
}

/// Drops every field `object` has that its kind does not: nothing unknown is stored.
/// Fails for a value its field's type cannot take (a patch can move one there), so
/// nothing stored is undecodable for upstream's clients.
pub fn prune(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    if let Some(name) = schema_name(resource)
        && let (_, Some(mistyped)) = schemas().prune_checked(name, object, BodyShape::Object)
    {
        return Err(undecodable(resource, &mistyped));
    }
    Ok(())
}

/// Upstream's answer to a body its decoder cannot read into the kind's type.
fn undecodable(resource: &Resource, mistyped: &Mistyped) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: {message}",
        kind = resource.kind,
        version = resource.version,
        message = mistyped.message,
    ))
}

/// Sends each warning as upstream does: `Warning: 299 - "<text>"`.
pub fn add_warnings(response: &mut Response, warnings: &[String]) {
    for warning in warnings {
        let quoted = Value::from(warning.as_str()).to_string();
        if let Ok(value) = HeaderValue::from_str(&format!("299 - {quoted}")) {
            response.headers_mut().append(http::header::WARNING, value);
        }
    }
}

fn schema_name(resource: &Resource) -> Option<&'static str> {
    schemas().kind_name(resource.group, resource.version, resource.kind)
}

/// Duplicate and unknown fields as upstream's strict decoder words them, in document
/// order (a field that is both is reported as unknown).
fn problems(sent: Option<Sent<'_>>, unknown: Vec<String>) -> Vec<String> {
    // Upstream's strict decoder reports problems as it meets them in the body; the
    // body is walked again for that only when there is an order to tell.
    let occurrences = match sent {
        Some(sent) if sent.duplicated || unknown.len() > 1 => key_occurrences(sent.raw),
        _ => Vec::new(),
    };
    let mut found: Vec<(String, &str)> = Vec::new();
    for (path, repeated) in occurrences {
        let what = match (repeated, unknown.contains(&path)) {
            (true, false) => "duplicate",
            (false, true) => "unknown",
            _ => continue,
        };
        if !found.iter().any(|(p, w)| *p == path && *w == what) {
            found.push((path, what));
        }
    }
    // Unknown fields the walk did not name (a body that is not JSON), in path order.
    let mut rest: Vec<String> = unknown
        .into_iter()
        .filter(|path| !found.iter().any(|(p, _)| p == path))
        .collect();
    rest.sort_by(|a, b| a.split('.').cmp(b.split('.')));
    found
        .into_iter()
        .chain(rest.into_iter().map(|path| (path, "unknown")))
        .map(|(path, what)| format!("{what} field {path:?}"))
        .collect()
}

fn warnings(mode: Validation, problems: Vec<String>) -> Vec<String> {
    if mode == Validation::Warn {
        problems
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_api::registry::Registry;
    use serde_json::json;

    fn query(q: &str) -> Query {
        Query::parse(&format!("/x?{q}").parse().unwrap()).unwrap()
    }

    #[test]
    fn modes() {
        let reg = Registry::default();
        let pods = reg.lookup("", "v1", "pods").unwrap();
        let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                          "spec": {"foo": 1, "containers": [{"name": "c", "image": "i"}]}});
        let raw = Sent {
            raw: br#"{"spec": {"foo": 1, "containers": [{"name": "c", "image": "i"}], "foo": 2}}"#,
            duplicated: true,
        };
        let dup = Sent {
            raw: br#"{"metadata": {"name": "p", "name": "p"}, "spec": {"foo": 1}}"#,
            duplicated: true,
        };
        let err = check_object(
            pods,
            Some(raw),
            &mut body.clone(),
            &query("fieldValidation=Strict"),
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.foo\""
        );
        let mut warned = body.clone();
        assert_eq!(
            check_object(pods, Some(raw), &mut warned, &query("")).unwrap(),
            vec!["unknown field \"spec.foo\""]
        );
        assert!(warned["spec"].get("foo").is_none());
        let mut ignored = body.clone();
        assert!(
            check_object(
                pods,
                Some(raw),
                &mut ignored,
                &query("fieldValidation=Ignore")
            )
            .unwrap()
            .is_empty()
        );
        assert_eq!(ignored, warned);
        assert_eq!(
            check_object(
                pods,
                Some(raw),
                &mut body.clone(),
                &query("fieldValidation=x")
            )
            .unwrap_err()
            .code,
            400
        );
        let err = check_object(
            pods,
            Some(dup),
            &mut body.clone(),
            &query("fieldValidation=Strict"),
        )
        .unwrap_err();
        assert!(
            err.message.ends_with(
                "strict decoding error: duplicate field \"metadata.name\", unknown field \"spec.foo\""
            ),
            "{}",
            err.message
        );
        // In the order the body has them, as upstream's decoder meets them.
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                          "spec": {"unknownField": "foo", "replicas": 3}});
        let deployments = reg.lookup("apps", "v1", "deployments").unwrap();
        let sent = Sent {
            raw: br#"{"spec": {"unknownField": "foo", "replicas": 2, "replicas": 3}}"#,
            duplicated: true,
        };
        let err = check_object(
            deployments,
            Some(sent),
            &mut body.clone(),
            &query("fieldValidation=Strict"),
        )
        .unwrap_err();
        assert!(
            err.message.ends_with(
                "strict decoding error: unknown field \"spec.unknownField\", duplicate field \"spec.replicas\""
            ),
            "{}",
            err.message
        );
        let patch = json!({"spec": {"bar": 1}});
        let err = check_patch(
            pods,
            "p",
            None,
            &patch,
            BodyType::StrategicMergePatch,
            &query("fieldValidation=Strict"),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .ends_with("strict decoding error: unknown field \"spec.bar\""),
            "{}",
            err.message
        );
    }
}
