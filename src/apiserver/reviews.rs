//! The review APIs: `selfsubjectaccessreviews` and `selfsubjectrulesreviews`
//! (`kubectl auth can-i [--list]`) and `selfsubjectreviews` (`kubectl auth whoami`).
//! They are create-only and never stored: the answer is the request object with its
//! `status` filled in.
//!
//! There is no authorizer yet, so every authenticated user may do everything. The
//! decisions come from `authorize` and `rules` alone: a real (RBAC) authorizer
//! replaces their bodies, and the reviews follow.

use super::request::Rendering;
use super::{Json, User};
use crate::api::registry::Resource;
use crate::api::status::{ApiError, Cause};
use serde_json::{Map, Value, json};

/// The group every authenticated user is in, as upstream adds it.
const AUTHENTICATED: &str = "system:authenticated";

/// Why everything is allowed, as `kubectl auth can-i -v` shows it.
const ALLOW_ALL_REASON: &str =
    "rind: no authorizer configured, every authenticated user may do everything";

/// What a request would do: upstream's authorizer attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    /// A resource request (`Some`) or one to a non-resource URL such as `/healthz` (`None`).
    pub resource: Option<ResourceAttributes>,
    /// The URL of a non-resource request.
    pub path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub namespace: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// An authorizer's answer. Neither allowed nor denied means "no opinion".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub denied: bool,
    pub reason: String,
}

/// Whether `user` may do what `attributes` describe.
pub fn authorize(_user: &User, _attributes: &Attributes) -> Decision {
    Decision {
        allowed: true,
        denied: false,
        reason: ALLOW_ALL_REASON.to_string(),
    }
}

/// The rules `user` has in `namespace`, as a SelfSubjectRulesReview's status.
pub fn rules(_user: &User, _namespace: &str) -> Value {
    json!({
        "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
        "incomplete": false,
    })
}

/// `POST` of a review: fills in the status of `object` for `user`.
pub fn create(res: &Resource, user: &User, mut object: Value) -> Result<Json, ApiError> {
    let Some(fields) = object.as_object_mut() else {
        return Err(ApiError::bad_request("the request body is not an object"));
    };
    let kind = fields
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(res.kind);
    if kind != res.kind {
        return Err(ApiError::bad_request(format!(
            "the body is a {kind}, not a {}",
            res.kind
        )));
    }
    let status = match res.kind {
        "SelfSubjectAccessReview" => access_review(res, user, fields)?,
        "SelfSubjectRulesReview" => {
            let namespace = str_at(fields.get("spec"), "namespace");
            rules(user, &namespace)
        }
        "SelfSubjectReview" => json!({"userInfo": user_info(user)}),
        _ => {
            return Err(ApiError::method_not_supported(
                res.plural, res.group, "create",
            ));
        }
    };
    fields.insert("apiVersion".into(), Value::from(res.api_version()));
    fields.insert("kind".into(), Value::from(res.kind));
    fields.entry("metadata").or_insert_with(|| json!({}));
    fields.insert("status".into(), status);
    Ok(Json::created(object, Rendering::Object))
}

/// The status of a SelfSubjectAccessReview: exactly one of `resourceAttributes` and
/// `nonResourceAttributes` says what is asked about.
fn access_review(
    res: &Resource,
    user: &User,
    fields: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let spec = fields.get("spec");
    let resource = spec.and_then(|s| s.get("resourceAttributes"));
    let non_resource = spec.and_then(|s| s.get("nonResourceAttributes"));
    let attributes = match (resource, non_resource) {
        (Some(r), None) => Attributes {
            verb: str_at(Some(r), "verb"),
            resource: Some(ResourceAttributes {
                namespace: str_at(Some(r), "namespace"),
                group: str_at(Some(r), "group"),
                version: str_at(Some(r), "version"),
                resource: str_at(Some(r), "resource"),
                subresource: str_at(Some(r), "subresource"),
                name: str_at(Some(r), "name"),
            }),
            path: String::new(),
        },
        (None, Some(n)) => Attributes {
            verb: str_at(Some(n), "verb"),
            resource: None,
            path: str_at(Some(n), "path"),
        },
        (Some(_), Some(_)) => {
            return Err(invalid(
                res,
                Cause::invalid(
                    "spec.nonResourceAttributes",
                    "",
                    "cannot be specified in combination with resourceAttributes",
                ),
            ));
        }
        (None, None) => {
            return Err(invalid(
                res,
                Cause::required(
                    "spec.resourceAttributes",
                    "one of resourceAttributes or nonResourceAttributes must be specified",
                ),
            ));
        }
    };
    let decision = authorize(user, &attributes);
    let mut status = json!({"allowed": decision.allowed, "reason": decision.reason});
    if decision.denied {
        status["denied"] = Value::Bool(true);
    }
    Ok(status)
}

fn invalid(res: &Resource, cause: Cause) -> ApiError {
    ApiError::invalid(res.kind, res.group, "", &[cause])
}

/// `value.field` as a string, empty when missing.
fn str_at(value: Option<&Value>, field: &str) -> String {
    value
        .and_then(|v| v.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The user as authentication saw it: every authenticated user is also in
/// `system:authenticated`.
fn user_info(user: &User) -> Value {
    let mut groups = user.groups.clone();
    if !groups.iter().any(|g| g == AUTHENTICATED) {
        groups.push(AUTHENTICATED.to_string());
    }
    json!({"username": user.name, "groups": groups})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::Registry;

    fn admin() -> User {
        User {
            name: "kubernetes-admin".into(),
            groups: vec!["kubeadm:cluster-admins".into()],
        }
    }

    fn review(plural: &str, body: Value) -> Result<Value, ApiError> {
        let reg = Registry::default();
        let group = if plural == "selfsubjectreviews" {
            "authentication.k8s.io"
        } else {
            "authorization.k8s.io"
        };
        let res = reg.lookup(group, "v1", plural).unwrap();
        create(res, &admin(), body).map(|j| j.body)
    }

    #[test]
    fn access_review_allows_everything() {
        let out = review(
            "selfsubjectaccessreviews",
            json!({"spec": {"resourceAttributes": {"verb": "create", "resource": "pods"}}}),
        )
        .unwrap();
        assert_eq!(out["kind"], "SelfSubjectAccessReview");
        assert_eq!(out["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(out["status"]["allowed"], true);
        assert_eq!(out["status"]["reason"], ALLOW_ALL_REASON);
        assert_eq!(out["spec"]["resourceAttributes"]["resource"], "pods");
    }

    #[test]
    fn access_review_needs_exactly_one_attribute_set() {
        let none = review("selfsubjectaccessreviews", json!({"spec": {}})).unwrap_err();
        assert_eq!(none.code, 422);
        let both = json!({"spec": {
            "resourceAttributes": {"verb": "get"},
            "nonResourceAttributes": {"verb": "get", "path": "/healthz"},
        }});
        assert_eq!(
            review("selfsubjectaccessreviews", both).unwrap_err().code,
            422
        );
    }

    #[test]
    fn rules_review_lists_everything() {
        let out = review(
            "selfsubjectrulesreviews",
            json!({"spec": {"namespace": "default"}}),
        )
        .unwrap();
        assert_eq!(out["status"]["resourceRules"][0]["verbs"], json!(["*"]));
        assert_eq!(out["status"]["incomplete"], false);
    }

    #[test]
    fn self_review_names_the_user() {
        let out = review("selfsubjectreviews", json!({})).unwrap();
        assert_eq!(out["status"]["userInfo"]["username"], "kubernetes-admin");
        assert_eq!(
            out["status"]["userInfo"]["groups"],
            json!(["kubeadm:cluster-admins", "system:authenticated"])
        );
        let wrong = review("selfsubjectreviews", json!({"kind": "Pod"})).unwrap_err();
        assert_eq!(wrong.code, 400);
    }
}
