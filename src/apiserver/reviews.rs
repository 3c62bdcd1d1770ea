//! The review APIs: `selfsubjectaccessreviews` and `selfsubjectrulesreviews`
//! (`kubectl auth can-i [--list]`), `subjectaccessreviews` and
//! `localsubjectaccessreviews` (asking on behalf of another user) and
//! `selfsubjectreviews` (`kubectl auth whoami`). They are create-only and never
//! stored: the answer is the request object with its `status` filled in, decided by
//! the RBAC authorizer.

use super::rbac::Rbac;
use super::request::Rendering;
use super::{Json, User};
use rind_api::rbac::{Attributes, ResourceAttributes, effective_groups};
use rind_api::registry::Resource;
use rind_api::status::{ApiError, Cause};
use serde_json::{Map, Value, json};

/// The rules `user` has in `namespace`, as a SelfSubjectRulesReview's status.
fn rules(rbac: &Rbac, user: &User, namespace: &str) -> Value {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in rbac.rules(user, namespace) {
        if let Some(urls) = rule.non_resource_urls.filter(|u| !u.is_empty()) {
            non_resource_rules.push(json!({"verbs": rule.verbs, "nonResourceURLs": urls}));
        } else {
            let mut entry = json!({
                "verbs": rule.verbs,
                "apiGroups": rule.api_groups.unwrap_or_default(),
                "resources": rule.resources.unwrap_or_default(),
            });
            if let Some(names) = rule.resource_names.filter(|n| !n.is_empty()) {
                entry["resourceNames"] = json!(names);
            }
            resource_rules.push(entry);
        }
    }
    json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    })
}

/// `POST` of a review: fills in the status of `object` for `user`.
pub fn create(
    rbac: &Rbac,
    res: &Resource,
    namespace: Option<&str>,
    user: &User,
    mut object: Value,
) -> Result<Json, ApiError> {
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
        "SelfSubjectAccessReview" => access_review(rbac, res, user, fields)?,
        "SubjectAccessReview" => {
            let subject = subject_of(res, fields)?;
            access_review(rbac, res, &subject, fields)?
        }
        "LocalSubjectAccessReview" => {
            let subject = subject_of(res, fields)?;
            let namespace = namespace.unwrap_or_default();
            let spec = fields.get("spec");
            if spec.and_then(|s| s.get("nonResourceAttributes")).is_some() {
                return Err(invalid(
                    res,
                    Cause::invalid(
                        "spec.nonResourceAttributes",
                        "",
                        "disallowed on this kind of request",
                    ),
                ));
            }
            let asked = str_at(spec.and_then(|s| s.get("resourceAttributes")), "namespace");
            if asked != namespace {
                return Err(invalid(
                    res,
                    Cause::invalid(
                        "spec.resourceAttributes.namespace",
                        &asked,
                        "must match metadata.namespace",
                    ),
                ));
            }
            let metadata = fields.entry("metadata").or_insert_with(|| json!({}));
            metadata["namespace"] = json!(namespace);
            access_review(rbac, res, &subject, fields)?
        }
        "SelfSubjectRulesReview" => {
            let namespace = str_at(fields.get("spec"), "namespace");
            rules(rbac, user, &namespace)
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
    rbac: &Rbac,
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
    let decision = rbac.authorize(user, &attributes);
    let mut status = json!({"allowed": decision.allowed, "reason": decision.reason});
    if decision.denied {
        status["denied"] = Value::Bool(true);
    }
    Ok(status)
}

/// The user a SubjectAccessReview asks about: `spec.user` and `spec.groups`, at
/// least one of them given.
fn subject_of(res: &Resource, fields: &Map<String, Value>) -> Result<User, ApiError> {
    let spec = fields.get("spec");
    let name = str_at(spec, "user");
    let groups: Vec<String> = spec
        .and_then(|s| s.get("groups"))
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if name.is_empty() && groups.is_empty() {
        return Err(invalid(
            res,
            Cause::invalid(
                "spec.user",
                "",
                "at least one of user or group must be specified",
            ),
        ));
    }
    Ok(User { name, groups })
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

/// The user as authentication saw it: in `system:authenticated` unless anonymous.
fn user_info(user: &User) -> Value {
    let groups = effective_groups(&user.name, &user.groups);
    json!({"username": user.name, "groups": groups})
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_api::registry::Registry;

    fn admin() -> User {
        User {
            name: "kubernetes-admin".into(),
            groups: vec!["system:masters".into()],
        }
    }

    fn review_in(plural: &str, ns: Option<&str>, body: Value) -> Result<Value, ApiError> {
        let reg = Registry::default();
        let group = if plural == "selfsubjectreviews" {
            "authentication.k8s.io"
        } else {
            "authorization.k8s.io"
        };
        let res = reg.lookup(group, "v1", plural).unwrap();
        // No policy objects: only system:masters membership allows anything.
        create(&Rbac::default(), res, ns, &admin(), body).map(|j| j.value())
    }

    fn review(plural: &str, body: Value) -> Result<Value, ApiError> {
        review_in(plural, None, body)
    }

    #[test]
    fn subject_access_reviews_ask_about_someone_else() {
        let ask = |spec: Value| review("subjectaccessreviews", json!({"spec": spec}));
        let attributes = json!({"verb": "get", "resource": "pods", "namespace": "default"});
        let jane = ask(json!({"user": "jane", "resourceAttributes": attributes})).unwrap();
        assert_eq!(jane["status"]["allowed"], false);
        let masters = ask(json!({"user": "root", "groups": ["system:masters"],
            "resourceAttributes": attributes}))
        .unwrap();
        assert_eq!(masters["status"]["allowed"], true);
        let nobody = ask(json!({"resourceAttributes": attributes})).unwrap_err();
        assert_eq!(nobody.code, 422);
        assert!(nobody.message.contains("spec.user"), "{}", nobody.message);
        // A local review is about its own namespace only.
        let local = |ns: &str| {
            review_in(
                "localsubjectaccessreviews",
                Some("default"),
                json!({"spec": {"user": "jane", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": ns}}}),
            )
        };
        assert_eq!(
            local("default").unwrap()["metadata"]["namespace"],
            "default"
        );
        assert_eq!(local("other").unwrap_err().code, 422);
    }

    #[test]
    fn access_review_allows_masters_everything() {
        let out = review(
            "selfsubjectaccessreviews",
            json!({"spec": {"resourceAttributes": {"verb": "create", "resource": "pods"}}}),
        )
        .unwrap();
        assert_eq!(out["kind"], "SelfSubjectAccessReview");
        assert_eq!(out["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(out["status"]["allowed"], true);
        assert_eq!(out["status"]["reason"], "system:masters may do everything");
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
            json!(["system:masters", "system:authenticated"])
        );
        let wrong = review("selfsubjectreviews", json!({"kind": "Pod"})).unwrap_err();
        assert_eq!(wrong.code, 400);
    }
}
