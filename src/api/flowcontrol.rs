//! `flowcontrol.apiserver.k8s.io/v1` (API Priority and Fairness): the defaults and
//! validation of FlowSchemas and PriorityLevelConfigurations, and the objects every
//! upstream API server maintains: the mandatory `exempt` and `catch-all` pairs and the
//! suggested set, as data from upstream's
//! `staging/src/k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap/default.go`
//! (k8s.io/apiserver v0.37.0-beta.0). rind stores them so clients that read or
//! tune them find upstream's; its API server does not queue requests by them.

use super::fields::{at, invalid_value, one_of, required};
use super::meta::child_mut;
use super::status::Cause;
use serde_json::{Value, json};

/// Upstream keeps objects with this annotation "true" in line with its defaults.
pub const AUTOUPDATE_ANNOTATION: &str = "apf.kubernetes.io/autoupdate-spec";

const TYPES: &[&str] = &["Exempt", "Limited"];
const RESPONSE_TYPES: &[&str] = &["Queue", "Reject"];
const DISTINGUISHERS: &[&str] = &["ByUser", "ByNamespace"];
const SUBJECT_KINDS: &[&str] = &["Group", "ServiceAccount", "User"];

/// `SetDefaults_FlowSchemaSpec`: precedence 1000 when unset (or zero).
pub fn default_flow_schema(schema: &mut Value) {
    let Some(root) = schema.as_object_mut() else {
        return;
    };
    let spec = child_mut(root, "spec");
    if spec
        .get("matchingPrecedence")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        == 0
    {
        spec.insert("matchingPrecedence".into(), json!(1000));
    }
}

/// `SetDefaults_PriorityLevelConfiguration` and friends.
pub fn default_priority_level(level: &mut Value) {
    let Some(spec) = level.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(Value::Object(limited)) = spec.get_mut("limited") {
        limited
            .entry("nominalConcurrencyShares")
            .or_insert(json!(30));
        limited.entry("lendablePercent").or_insert(json!(0));
        if let Some(Value::Object(queuing)) = limited
            .get_mut("limitResponse")
            .and_then(|r| r.get_mut("queuing"))
        {
            queuing.entry("queues").or_insert(json!(64));
            queuing.entry("handSize").or_insert(json!(8));
            queuing.entry("queueLengthLimit").or_insert(json!(50));
        }
    }
    if let Some(Value::Object(exempt)) = spec.get_mut("exempt") {
        exempt.entry("nominalConcurrencyShares").or_insert(json!(0));
        exempt.entry("lendablePercent").or_insert(json!(0));
    }
}

pub fn validate_flow_schema(schema: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    required(
        schema,
        &["spec", "priorityLevelConfiguration", "name"],
        &mut causes,
    );
    if let Some(precedence) = at(schema, &["spec", "matchingPrecedence"]).and_then(Value::as_i64) {
        if precedence <= 0 {
            causes.push(invalid_value(
                "spec.matchingPrecedence",
                &json!(precedence),
                "must be a positive value",
            ));
        } else if precedence > 10000 {
            causes.push(invalid_value(
                "spec.matchingPrecedence",
                &json!(precedence),
                "must not be greater than 10000",
            ));
        }
    }
    one_of(
        schema,
        &["spec", "distinguisherMethod", "type"],
        DISTINGUISHERS,
        &mut causes,
    );
    let rules = at(schema, &["spec", "rules"])
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let subjects = rule.get("subjects").and_then(Value::as_array);
        if subjects.is_none_or(Vec::is_empty) {
            causes.push(Cause::required(format!("spec.rules[{i}].subjects"), ""));
        }
        for (j, subject) in subjects.into_iter().flatten().enumerate() {
            let path = format!("spec.rules[{i}].subjects[{j}].kind");
            match subject.get("kind").and_then(Value::as_str) {
                None | Some("") => causes.push(Cause::required(path, "")),
                Some(kind) if !SUBJECT_KINDS.contains(&kind) => {
                    causes.push(Cause::unsupported(path, kind, SUBJECT_KINDS))
                }
                Some(_) => {}
            }
        }
        let has_rules = ["resourceRules", "nonResourceRules"].iter().any(|k| {
            rule.get(k)
                .and_then(Value::as_array)
                .is_some_and(|l| !l.is_empty())
        });
        if !has_rules {
            causes.push(Cause::required(
                format!("spec.rules[{i}]"),
                "at least one of resourceRules and nonResourceRules has to be non-empty",
            ));
        }
    }
    causes
}

pub fn validate_priority_level(level: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let kind = at(level, &["spec", "type"]).and_then(Value::as_str);
    let set = |field: &str| at(level, &["spec", field]).is_some_and(|v| !v.is_null());
    match kind {
        None | Some("") => causes.push(Cause::required("spec.type", "")),
        Some(kind) if !TYPES.contains(&kind) => {
            causes.push(Cause::unsupported("spec.type", kind, TYPES))
        }
        Some("Limited") => {
            if !set("limited") {
                causes.push(Cause::required(
                    "spec.limited",
                    "must not be empty when type is Limited",
                ));
            }
            if set("exempt") {
                causes.push(Cause::forbidden(
                    "spec.exempt",
                    "must be nil if the type is Limited",
                ));
            }
        }
        Some(_) => {
            if set("limited") {
                causes.push(Cause::forbidden(
                    "spec.limited",
                    "must be nil if the type is not Limited",
                ));
            }
        }
    }
    if let Some(response) = at(level, &["spec", "limited", "limitResponse"]) {
        match response.get("type").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required("spec.limited.limitResponse.type", "")),
            Some(kind) if !RESPONSE_TYPES.contains(&kind) => causes.push(Cause::unsupported(
                "spec.limited.limitResponse.type",
                kind,
                RESPONSE_TYPES,
            )),
            Some("Queue") if response.get("queuing").is_none_or(Value::is_null) => {
                causes.push(Cause::required(
                    "spec.limited.limitResponse.queuing",
                    "must not be empty if type is Queue",
                ))
            }
            Some(_) => {}
        }
    }
    causes
}

fn level(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name, "annotations": {AUTOUPDATE_ANNOTATION: "true"}},
        "spec": spec,
    })
}

/// A Limited level queuing with `queues`, `hand` and a queue length of 50.
fn queued(name: &str, shares: i64, lendable: i64, queues: i64, hand: i64) -> Value {
    level(
        name,
        json!({"type": "Limited", "limited": {
            "nominalConcurrencyShares": shares,
            "lendablePercent": lendable,
            "limitResponse": {"type": "Queue", "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": 50}},
        }}),
    )
}

fn schema(name: &str, level: &str, precedence: i64, method: Option<&str>, rules: Value) -> Value {
    let mut spec = json!({
        "priorityLevelConfiguration": {"name": level},
        "matchingPrecedence": precedence,
        "rules": [rules],
    });
    if let Some(method) = method {
        spec["distinguisherMethod"] = json!({"type": method});
    }
    json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name, "annotations": {AUTOUPDATE_ANNOTATION: "true"}},
        "spec": spec,
    })
}

fn groups(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({"kind": "Group", "group": {"name": n}}))
        .collect()
}

fn users(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({"kind": "User", "user": {"name": n}}))
        .collect()
}

fn kube_system_accounts() -> Vec<Value> {
    vec![
        json!({"kind": "ServiceAccount", "serviceAccount": {"name": "*", "namespace": "kube-system"}}),
    ]
}

/// Every verb on everything, cluster-scoped objects included, and every URL.
fn everything(subjects: Vec<Value>) -> Value {
    json!({
        "subjects": subjects,
        "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true}],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    })
}

/// The mandatory objects, which upstream restores whatever a user did to them.
pub fn mandatory() -> (Vec<Value>, Vec<Value>) {
    let levels = vec![
        level(
            "catch-all",
            json!({"type": "Limited", "limited": {
                "nominalConcurrencyShares": 5, "lendablePercent": 0, "limitResponse": {"type": "Reject"},
            }}),
        ),
        level(
            "exempt",
            json!({"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}),
        ),
    ];
    let schemas = vec![
        schema(
            "exempt",
            "exempt",
            1,
            None,
            everything(groups(&["system:masters"])),
        ),
        schema(
            "catch-all",
            "catch-all",
            10000,
            Some("ByUser"),
            everything(groups(&["system:unauthenticated", "system:authenticated"])),
        ),
    ];
    (levels, schemas)
}

/// The suggested objects, created when missing and kept up to date while their
/// autoupdate annotation says "true".
pub fn suggested() -> (Vec<Value>, Vec<Value>) {
    let levels = vec![
        queued("system", 30, 33, 64, 6),
        queued("node-high", 40, 25, 64, 6),
        queued("leader-election", 10, 0, 16, 4),
        queued("workload-high", 40, 50, 128, 6),
        queued("workload-low", 100, 90, 128, 6),
        queued("global-default", 20, 50, 128, 6),
    ];
    let mut election_subjects = users(&["system:kube-controller-manager", "system:kube-scheduler"]);
    election_subjects.extend(kube_system_accounts());
    let schemas = vec![
        schema(
            "system-nodes",
            "system",
            500,
            Some("ByUser"),
            everything(groups(&["system:nodes"])),
        ),
        schema(
            "system-node-high",
            "node-high",
            400,
            Some("ByUser"),
            json!({
                "subjects": groups(&["system:nodes"]),
                "resourceRules": [
                    {"verbs": ["*"], "apiGroups": [""], "resources": ["nodes", "nodes/status"], "namespaces": ["*"], "clusterScope": true},
                    {"verbs": ["*"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "namespaces": ["*"]},
                ],
            }),
        ),
        schema(
            "probes",
            "exempt",
            2,
            None,
            json!({
                "subjects": groups(&["system:unauthenticated", "system:authenticated"]),
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}],
            }),
        ),
        schema(
            "system-leader-election",
            "leader-election",
            100,
            Some("ByUser"),
            json!({
                "subjects": election_subjects,
                "resourceRules": [{"verbs": ["get", "create", "update"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "namespaces": ["*"]}],
            }),
        ),
        schema(
            "kube-controller-manager",
            "workload-high",
            800,
            Some("ByNamespace"),
            everything(users(&["system:kube-controller-manager"])),
        ),
        schema(
            "kube-scheduler",
            "workload-high",
            800,
            Some("ByNamespace"),
            everything(users(&["system:kube-scheduler"])),
        ),
        schema(
            "kube-system-service-accounts",
            "workload-high",
            900,
            Some("ByNamespace"),
            everything(kube_system_accounts()),
        ),
        schema(
            "service-accounts",
            "workload-low",
            9000,
            Some("ByUser"),
            everything(groups(&["system:serviceaccounts"])),
        ),
        schema(
            "global-default",
            "global-default",
            9900,
            Some("ByUser"),
            everything(groups(&["system:unauthenticated", "system:authenticated"])),
        ),
    ];
    (levels, schemas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_defaults_are_valid() {
        let (mut levels, mut schemas) = mandatory();
        let (more_levels, more_schemas) = suggested();
        levels.extend(more_levels);
        schemas.extend(more_schemas);
        assert_eq!((levels.len(), schemas.len()), (8, 11));
        for level in &levels {
            assert!(validate_priority_level(level).is_empty(), "{level}");
        }
        for schema in &schemas {
            assert!(validate_flow_schema(schema).is_empty(), "{schema}");
            let target = &schema["spec"]["priorityLevelConfiguration"]["name"];
            assert!(levels.iter().any(|l| &l["metadata"]["name"] == target));
        }
    }

    #[test]
    fn limited_levels_default_and_need_their_settings() {
        let mut level = json!({"spec": {"type": "Limited", "limited": {"limitResponse": {"type": "Queue", "queuing": {}}}}});
        default_priority_level(&mut level);
        assert_eq!(level["spec"]["limited"]["nominalConcurrencyShares"], 30);
        assert_eq!(
            level["spec"]["limited"]["limitResponse"]["queuing"],
            json!({"queues": 64, "handSize": 8, "queueLengthLimit": 50})
        );
        let bad = json!({"spec": {"type": "Limited"}});
        assert_eq!(
            validate_priority_level(&bad)[0].message,
            "Required value: must not be empty when type is Limited"
        );
        let mut schema = json!({"spec": {"priorityLevelConfiguration": {"name": "x"}}});
        default_flow_schema(&mut schema);
        assert_eq!(schema["spec"]["matchingPrecedence"], 1000);
    }
}
