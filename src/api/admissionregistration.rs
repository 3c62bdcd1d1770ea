//! `admissionregistration.k8s.io/v1`: the defaults and validation of webhook
//! configurations and CEL admission policies and their bindings, with upstream's
//! messages (`pkg/apis/admissionregistration/v1/defaults.go`, `validation.go`).
//! The server stores these objects; calling webhooks and evaluating policies is not
//! done yet, and the API server says so on every write.

use super::fields::{at, invalid_value, one_of, required};
use super::meta::child_mut;
use super::status::Cause;
use serde_json::{Map, Value, json};

const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Exact", "Equivalent"];
const SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun"];
const REINVOCATION_POLICIES: &[&str] = &["Never", "IfNeeded"];
const VALIDATION_ACTIONS: &[&str] = &["Deny", "Warn", "Audit"];
const PATCH_TYPES: &[&str] = &["ApplyConfiguration", "JSONPatch"];
const OPERATIONS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];

fn items<'a>(object: &'a Value, path: &[&str]) -> &'a [Value] {
    at(object, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn each_mut(object: &mut Value, key: &str, mut f: impl FnMut(&mut Map<String, Value>)) {
    if let Some(Value::Array(list)) = object.get_mut(key) {
        for item in list.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

/// The defaults of one webhook (`SetDefaults_ValidatingWebhook`/`MutatingWebhook`).
fn default_webhook(webhook: &mut Map<String, Value>, mutating: bool) {
    webhook.entry("failurePolicy").or_insert(json!("Fail"));
    webhook.entry("matchPolicy").or_insert(json!("Equivalent"));
    webhook.entry("namespaceSelector").or_insert(json!({}));
    webhook.entry("objectSelector").or_insert(json!({}));
    webhook.entry("timeoutSeconds").or_insert(json!(10));
    if mutating {
        webhook
            .entry("reinvocationPolicy")
            .or_insert(json!("Never"));
    }
    if let Some(Value::Array(rules)) = webhook.get_mut("rules") {
        for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
            rule.entry("scope").or_insert(json!("*"));
        }
    }
    if let Some(Value::Object(config)) = webhook.get_mut("clientConfig")
        && let Some(Value::Object(service)) = config.get_mut("service")
    {
        service.entry("port").or_insert(json!(443));
    }
}

pub fn default_webhook_configuration(object: &mut Value, mutating: bool) {
    each_mut(object, "webhooks", |w| default_webhook(w, mutating));
}

/// `matchConstraints` defaults shared by both policy kinds.
fn default_policy_spec(object: &mut Value) {
    let Some(root) = object.as_object_mut() else {
        return;
    };
    let spec = child_mut(root, "spec");
    spec.entry("failurePolicy").or_insert(json!("Fail"));
    if let Some(Value::Object(constraints)) = spec.get_mut("matchConstraints") {
        constraints
            .entry("matchPolicy")
            .or_insert(json!("Equivalent"));
        constraints.entry("namespaceSelector").or_insert(json!({}));
        constraints.entry("objectSelector").or_insert(json!({}));
    }
}

pub fn default_validating_policy(object: &mut Value) {
    default_policy_spec(object);
}

pub fn default_mutating_policy(object: &mut Value) {
    default_policy_spec(object);
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("reinvocationPolicy").or_insert(json!("Never"));
    }
}

/// A binding's paramRef: a missing parameter denies (`SetDefaults_ParamRef`).
pub fn default_binding(object: &mut Value) {
    if let Some(Value::Object(param)) = object.get_mut("spec").and_then(|s| s.get_mut("paramRef")) {
        param
            .entry("parameterNotFoundAction")
            .or_insert(json!("Deny"));
    }
}

/// Whether `name` is a DNS subdomain of at least three labels, as webhook names must be.
fn fully_qualified(name: &str) -> bool {
    super::validation::is_dns1123_subdomain(name) && name.split('.').count() >= 3
}

fn validate_rules(rules: &[Value], at_path: &str, causes: &mut Vec<Cause>) {
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("{at_path}[{i}]");
        for (field, allowed) in [("operations", OPERATIONS), ("scope", SCOPES)] {
            let values: Vec<&str> = match rule.get(field) {
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(one)) => vec![one.as_str()],
                _ => Vec::new(),
            };
            for value in values {
                if !allowed.contains(&value) {
                    causes.push(Cause::unsupported(
                        format!("{path}.{field}"),
                        value,
                        allowed,
                    ));
                }
            }
        }
        for field in ["apiGroups", "apiVersions", "resources"] {
            if items(rule, &[field]).is_empty() {
                causes.push(Cause::required(format!("{path}.{field}"), ""));
            }
        }
    }
}

/// A ValidatingWebhookConfiguration or MutatingWebhookConfiguration.
pub fn validate_webhook_configuration(object: &Value, mutating: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, webhook) in items(object, &["webhooks"]).iter().enumerate() {
        let path = format!("webhooks[{i}]");
        match webhook.get("name").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(format!("{path}.name"), "")),
            Some(name) if !fully_qualified(name) => causes.push(Cause::invalid(
                format!("{path}.name"),
                name,
                "should be a domain with at least three segments separated by dots",
            )),
            Some(name) if names.contains(&name) => {
                causes.push(Cause::duplicate(format!("{path}.name"), name))
            }
            Some(name) => names.push(name),
        }
        validate_rules(
            items(webhook, &["rules"]),
            &format!("{path}.rules"),
            &mut causes,
        );
        let config = webhook.get("clientConfig");
        let url = config
            .and_then(|c| c.get("url"))
            .is_some_and(|u| !u.is_null());
        let service = config
            .and_then(|c| c.get("service"))
            .is_some_and(|s| !s.is_null());
        if url == service {
            causes.push(Cause::required(
                format!("{path}.clientConfig"),
                "exactly one of url or service is required",
            ));
        }
        if service {
            for field in ["namespace", "name"] {
                if at(webhook, &["clientConfig", "service", field])
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(Cause::required(
                        format!("{path}.clientConfig.service.{field}"),
                        &format!("service {field} is required"),
                    ));
                }
            }
        }
        match webhook.get("sideEffects").and_then(Value::as_str) {
            None => causes.push(Cause::required(
                format!("{path}.sideEffects"),
                "must specify one of None, NoneOnDryRun",
            )),
            Some(value) if !SIDE_EFFECTS.contains(&value) => causes.push(Cause::unsupported(
                format!("{path}.sideEffects"),
                value,
                SIDE_EFFECTS,
            )),
            Some(_) => {}
        }
        if items(webhook, &["admissionReviewVersions"]).is_empty() {
            causes.push(Cause::required(
                format!("{path}.admissionReviewVersions"),
                "must specify one of v1, v1beta1",
            ));
        }
        if let Some(timeout) = webhook.get("timeoutSeconds").and_then(Value::as_i64)
            && !(1..=30).contains(&timeout)
        {
            causes.push(invalid_value(
                format!("{path}.timeoutSeconds"),
                &json!(timeout),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
        let mut in_webhook = Vec::new();
        one_of(
            webhook,
            &["failurePolicy"],
            FAILURE_POLICIES,
            &mut in_webhook,
        );
        one_of(webhook, &["matchPolicy"], MATCH_POLICIES, &mut in_webhook);
        if mutating {
            one_of(
                webhook,
                &["reinvocationPolicy"],
                REINVOCATION_POLICIES,
                &mut in_webhook,
            );
        }
        for mut cause in in_webhook {
            cause.field = format!("{path}.{}", cause.field);
            causes.push(cause);
        }
    }
    causes
}

/// What both policy kinds require of their spec.
fn validate_policy_common(object: &Value, causes: &mut Vec<Cause>) {
    if at(object, &["spec", "matchConstraints"]).is_none_or(Value::is_null) {
        causes.push(Cause::required("spec.matchConstraints", ""));
    } else {
        validate_rules(
            items(object, &["spec", "matchConstraints", "resourceRules"]),
            "spec.matchConstraints.resourceRules",
            causes,
        );
    }
    one_of(object, &["spec", "failurePolicy"], FAILURE_POLICIES, causes);
    if let Some(kind) = at(object, &["spec", "paramKind"]).filter(|k| !k.is_null()) {
        for field in ["apiVersion", "kind"] {
            if kind
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(Cause::required(format!("spec.paramKind.{field}"), ""));
            }
        }
    }
}

pub fn validate_validating_policy(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let validations = items(object, &["spec", "validations"]);
    if validations.is_empty() && items(object, &["spec", "auditAnnotations"]).is_empty() {
        causes.push(Cause::required(
            "spec.validations",
            "validations or auditAnnotations must contain at least one item",
        ));
    }
    for (i, validation) in validations.iter().enumerate() {
        if validation
            .get("expression")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(
                format!("spec.validations[{i}].expression"),
                "",
            ));
        }
    }
    validate_policy_common(object, &mut causes);
    causes
}

pub fn validate_mutating_policy(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mutations = items(object, &["spec", "mutations"]);
    if mutations.is_empty() {
        causes.push(Cause::required(
            "spec.mutations",
            "mutations must contain at least one item",
        ));
    }
    for (i, mutation) in mutations.iter().enumerate() {
        let path = format!("spec.mutations[{i}].patchType");
        match mutation.get("patchType").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(path, "")),
            Some(value) if !PATCH_TYPES.contains(&value) => {
                causes.push(Cause::unsupported(path, value, PATCH_TYPES))
            }
            Some(_) => {}
        }
    }
    one_of(
        object,
        &["spec", "reinvocationPolicy"],
        REINVOCATION_POLICIES,
        &mut causes,
    );
    validate_policy_common(object, &mut causes);
    causes
}

/// A ValidatingAdmissionPolicyBinding (`validating`) or MutatingAdmissionPolicyBinding.
pub fn validate_binding(object: &Value, validating: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    required(object, &["spec", "policyName"], &mut causes);
    if validating {
        let actions = items(object, &["spec", "validationActions"]);
        if actions.is_empty() {
            causes.push(Cause::required(
                "spec.validationActions",
                "at least one validation action is required",
            ));
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, action) in actions.iter().filter_map(Value::as_str).enumerate() {
            let path = format!("spec.validationActions[{i}]");
            if !VALIDATION_ACTIONS.contains(&action) {
                causes.push(Cause::unsupported(path, action, VALIDATION_ACTIONS));
            } else if seen.contains(&action) {
                causes.push(Cause::duplicate(path, action));
            } else {
                seen.push(action);
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(causes: &[Cause]) -> Vec<(String, String)> {
        causes
            .iter()
            .map(|c| (c.field.clone(), c.message.clone()))
            .collect()
    }

    #[test]
    fn webhooks_need_names_side_effects_versions_and_one_client() {
        let mut config = json!({"webhooks": [
            {"name": "pods.example.com", "clientConfig": {"url": "https://x"}, "sideEffects": "None", "admissionReviewVersions": ["v1"],
             "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]},
            {"name": "short", "clientConfig": {}, "timeoutSeconds": 40}
        ]});
        default_webhook_configuration(&mut config, true);
        assert_eq!(config["webhooks"][0]["rules"][0]["scope"], "*");
        assert_eq!(config["webhooks"][0]["reinvocationPolicy"], "Never");
        let causes = fields(&validate_webhook_configuration(&config, true));
        assert_eq!(
            causes,
            [
                (
                    "webhooks[1].name".into(),
                    "Invalid value: \"short\": should be a domain with at least three segments separated by dots".into()
                ),
                (
                    "webhooks[1].clientConfig".into(),
                    "Required value: exactly one of url or service is required".into()
                ),
                (
                    "webhooks[1].sideEffects".into(),
                    "Required value: must specify one of None, NoneOnDryRun".into()
                ),
                (
                    "webhooks[1].admissionReviewVersions".into(),
                    "Required value: must specify one of v1, v1beta1".into()
                ),
                (
                    "webhooks[1].timeoutSeconds".into(),
                    "Invalid value: 40: the timeout value must be between 1 and 30 seconds".into()
                ),
            ]
        );
    }

    #[test]
    fn policies_and_bindings() {
        let empty = json!({"spec": {}});
        assert_eq!(
            fields(&validate_validating_policy(&empty))[0],
            (
                "spec.validations".into(),
                "Required value: validations or auditAnnotations must contain at least one item"
                    .into()
            )
        );
        assert_eq!(
            fields(&validate_binding(&empty, true)),
            [
                ("spec.policyName".into(), "Required value".into()),
                (
                    "spec.validationActions".into(),
                    "Required value: at least one validation action is required".into()
                )
            ]
        );
        let mut policy = json!({"spec": {"matchConstraints": {"resourceRules": []}, "mutations": [{"patchType": "JSONPatch"}]}});
        default_mutating_policy(&mut policy);
        assert_eq!(policy["spec"]["failurePolicy"], "Fail");
        assert_eq!(
            policy["spec"]["matchConstraints"]["matchPolicy"],
            "Equivalent"
        );
        assert!(validate_mutating_policy(&policy).is_empty());
    }
}
