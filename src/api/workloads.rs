//! apps/v1 workloads (Deployment, ReplicaSet, StatefulSet, DaemonSet) and core/v1
//! ReplicationController: upstream's defaults and the validation of their common
//! fields, with upstream's messages (kubectl prints them verbatim).

use super::fields::{at, immutable, invalid_value, non_negative, one_of, required};
use super::meta::child_mut;
use super::pods;
use super::selector::LabelSelector;
use super::status::Cause;
use serde_json::{Map, Value, json};

/// Defaults a pod template (`{metadata, spec}`) at `path` like a pod's spec, without
/// the fields only pods get.
pub fn default_template(object: &mut Value, path: &[&str]) {
    let mut cur = &mut *object;
    for part in path {
        match cur.get_mut(*part) {
            Some(next) => cur = next,
            None => return,
        }
    }
    let Some(template) = cur.as_object_mut() else {
        return;
    };
    let spec = template.remove("spec").unwrap_or_else(|| json!({}));
    let mut pod = json!({ "spec": spec });
    pods::default_template_spec(&mut pod);
    if let Some(spec) = pod.get_mut("spec").map(Value::take) {
        template.insert("spec".into(), spec);
    }
}

/// Go's `%#v` of a `map[string]string`, as upstream's messages print label maps.
pub fn go_map(labels: Option<&Value>) -> String {
    let mut pairs: Vec<(String, String)> = labels
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "map[string]string(nil)".to_string();
    }
    pairs.sort();
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{}", json!(k), json!(v)))
        .collect();
    format!("map[string]string{{{}}}", body.join(", "))
}

/// Go's `%#v` of a `v1.LabelSelector`, as in upstream's immutable-selector message.
fn go_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return "(*v1.LabelSelector)(nil)".to_string();
    };
    let expressions: Vec<String> = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| {
                    let values: Vec<String> = e
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|v| v.iter().map(|x| x.to_string()).collect())
                        .unwrap_or_default();
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:[]string{{{}}}}}",
                        e.get("key").cloned().unwrap_or(json!("")),
                        e.get("operator").cloned().unwrap_or(json!("")),
                        values.join(", ")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expressions = if expressions.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        format!(
            "[]v1.LabelSelectorRequirement{{{}}}",
            expressions.join(", ")
        )
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{expressions}}}",
        go_map(selector.get("matchLabels"))
    )
}

/// The selector of a `metav1.LabelSelector` as the query syntax, for matching.
fn parse_label_selector(selector: &Value) -> Option<LabelSelector> {
    LabelSelector::parse(&super::scale::label_selector_string(selector)).ok()
}

/// Checks a workload's `spec.selector` (a LabelSelector) against its pod template.
fn validate_selector_and_template(object: &Value, kind: &str, causes: &mut Vec<Cause>) {
    let selector = at(object, &["spec", "selector"]).filter(|s| !s.is_null());
    let template_labels = at(object, &["spec", "template", "metadata", "labels"]);
    match selector {
        None => causes.push(Cause::required("spec.selector", "")),
        Some(sel) => {
            let empty = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
                && sel
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
            if empty {
                causes.push(invalid_value(
                    "spec.selector",
                    &json!(go_label_selector(Some(sel))),
                    &format!("empty selector is invalid for {kind}"),
                ));
            } else if let Some(parsed) = parse_label_selector(sel)
                && !parsed.matches(template_labels.and_then(Value::as_object))
            {
                causes.push(Cause {
                    reason: "FieldValueInvalid",
                    field: "spec.template.metadata.labels".into(),
                    message: format!(
                        "Invalid value: {}: `selector` does not match template `labels`",
                        go_map(template_labels)
                    ),
                });
            }
        }
    }
    validate_template(object, &["spec", "template"], &["Always"], causes);
}

/// Validates the pod template at `path`: present, a valid pod spec, and a restart
/// policy from `restart_policies`.
pub fn validate_template(
    object: &Value,
    path: &[&str],
    restart_policies: &[&str],
    causes: &mut Vec<Cause>,
) {
    let prefix = path.join(".");
    let Some(template) = at(object, path).filter(|t| !t.is_null()) else {
        causes.push(Cause::required(prefix, ""));
        return;
    };
    for mut cause in pods::validate_pod(template) {
        cause.field = format!("{prefix}.{}", cause.field);
        causes.push(cause);
    }
    causes.extend(
        super::validation::validate_metadata(template)
            .into_iter()
            .map(|mut c| {
                c.field = format!("{prefix}.{}", c.field);
                c
            }),
    );
    let mut restart = path.to_vec();
    restart.extend(["spec", "restartPolicy"]);
    match at(object, &restart).and_then(Value::as_str) {
        Some(policy) if !restart_policies.contains(&policy) => causes.push(Cause::unsupported(
            restart.join("."),
            policy,
            restart_policies,
        )),
        Some(_) => {}
        None => causes.push(Cause::required(restart.join("."), "")),
    }
}

fn spec_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    Some(child_mut(object.as_object_mut()?, "spec"))
}

pub fn default_deployment(object: &mut Value) {
    if let Some(spec) = spec_mut(object) {
        spec.entry("replicas").or_insert(json!(1));
        spec.entry("revisionHistoryLimit").or_insert(json!(10));
        spec.entry("progressDeadlineSeconds").or_insert(json!(600));
        let strategy = child_mut(spec, "strategy");
        strategy.entry("type").or_insert(json!("RollingUpdate"));
        if strategy.get("type") == Some(&json!("RollingUpdate")) {
            let rolling = child_mut(strategy, "rollingUpdate");
            rolling.entry("maxUnavailable").or_insert(json!("25%"));
            rolling.entry("maxSurge").or_insert(json!("25%"));
        }
    }
    default_template(object, &["spec", "template"]);
}

/// Whether an int-or-percent value is zero (`0` or `"0%"`).
fn is_zero(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::String(s)) => s.trim_end_matches('%') == "0",
        _ => false,
    }
}

pub fn validate_deployment(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    non_negative(object, &["spec", "replicas"], &mut causes);
    non_negative(object, &["spec", "revisionHistoryLimit"], &mut causes);
    non_negative(object, &["spec", "minReadySeconds"], &mut causes);
    validate_selector_and_template(object, "deployment", &mut causes);
    one_of(
        object,
        &["spec", "strategy", "type"],
        &["Recreate", "RollingUpdate"],
        &mut causes,
    );
    let rolling = at(object, &["spec", "strategy", "rollingUpdate"]).filter(|r| !r.is_null());
    match (at(object, &["spec", "strategy", "type"]), rolling) {
        (Some(t), Some(_)) if t == "Recreate" => causes.push(Cause::forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        (_, Some(r)) if is_zero(r.get("maxSurge")) && is_zero(r.get("maxUnavailable")) => causes
            .push(invalid_value(
                "spec.strategy.rollingUpdate.maxUnavailable",
                r.get("maxUnavailable").unwrap_or(&Value::Null),
                "may not be 0 when `maxSurge` is 0",
            )),
        _ => {}
    }
    if let (Some(deadline), Some(min_ready)) = (
        at(object, &["spec", "progressDeadlineSeconds"]).and_then(Value::as_i64),
        at(object, &["spec", "minReadySeconds"]).and_then(Value::as_i64),
    ) && deadline <= min_ready
    {
        causes.push(invalid_value(
            "spec.progressDeadlineSeconds",
            &json!(deadline),
            "must be greater than minReadySeconds",
        ));
    }
    causes
}

pub fn default_replica_set(object: &mut Value) {
    if let Some(spec) = spec_mut(object) {
        spec.entry("replicas").or_insert(json!(1));
    }
    default_template(object, &["spec", "template"]);
}

pub fn validate_replica_set(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    non_negative(object, &["spec", "replicas"], &mut causes);
    non_negative(object, &["spec", "minReadySeconds"], &mut causes);
    validate_selector_and_template(object, "replicaset", &mut causes);
    causes
}

pub fn default_stateful_set(object: &mut Value) {
    if let Some(spec) = spec_mut(object) {
        spec.entry("replicas").or_insert(json!(1));
        spec.entry("revisionHistoryLimit").or_insert(json!(10));
        spec.entry("podManagementPolicy")
            .or_insert(json!("OrderedReady"));
        let strategy = child_mut(spec, "updateStrategy");
        strategy.entry("type").or_insert(json!("RollingUpdate"));
        if strategy.get("type") == Some(&json!("RollingUpdate")) {
            child_mut(strategy, "rollingUpdate")
                .entry("partition")
                .or_insert(json!(0));
        }
        let retention = child_mut(spec, "persistentVolumeClaimRetentionPolicy");
        retention.entry("whenDeleted").or_insert(json!("Retain"));
        retention.entry("whenScaled").or_insert(json!("Retain"));
        if let Some(Value::Array(claims)) = spec.get_mut("volumeClaimTemplates") {
            for claim in claims.iter_mut() {
                default_claim(claim);
            }
        }
    }
    default_template(object, &["spec", "template"]);
}

/// A PersistentVolumeClaim's defaults (also applied to StatefulSet claim templates).
pub fn default_claim(claim: &mut Value) {
    let Some(root) = claim.as_object_mut() else {
        return;
    };
    child_mut(root, "spec")
        .entry("volumeMode")
        .or_insert(json!("Filesystem"));
    child_mut(root, "status")
        .entry("phase")
        .or_insert(json!("Pending"));
}

pub fn validate_stateful_set(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    non_negative(object, &["spec", "replicas"], &mut causes);
    non_negative(object, &["spec", "minReadySeconds"], &mut causes);
    validate_selector_and_template(object, "statefulset", &mut causes);
    one_of(
        object,
        &["spec", "podManagementPolicy"],
        &["OrderedReady", "Parallel"],
        &mut causes,
    );
    one_of(
        object,
        &["spec", "updateStrategy", "type"],
        &["OnDelete", "RollingUpdate"],
        &mut causes,
    );
    non_negative(
        object,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
        &mut causes,
    );
    causes
}

pub fn default_daemon_set(object: &mut Value) {
    if let Some(spec) = spec_mut(object) {
        spec.entry("revisionHistoryLimit").or_insert(json!(10));
        let strategy = child_mut(spec, "updateStrategy");
        strategy.entry("type").or_insert(json!("RollingUpdate"));
        if strategy.get("type") == Some(&json!("RollingUpdate")) {
            let rolling = child_mut(strategy, "rollingUpdate");
            rolling.entry("maxUnavailable").or_insert(json!(1));
            rolling.entry("maxSurge").or_insert(json!(0));
        }
    }
    default_template(object, &["spec", "template"]);
}

pub fn validate_daemon_set(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    non_negative(object, &["spec", "minReadySeconds"], &mut causes);
    validate_selector_and_template(object, "daemonset", &mut causes);
    one_of(
        object,
        &["spec", "updateStrategy", "type"],
        &["OnDelete", "RollingUpdate"],
        &mut causes,
    );
    causes
}

/// ReplicationControllers default their selector and labels from the template.
pub fn default_replication_controller(object: &mut Value) {
    let template_labels = at(object, &["spec", "template", "metadata", "labels"]).cloned();
    if let Some(spec) = spec_mut(object) {
        spec.entry("replicas").or_insert(json!(1));
        let selector_empty = spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if selector_empty && let Some(labels) = &template_labels {
            spec.insert("selector".into(), labels.clone());
        }
    }
    let labels_empty = at(object, &["metadata", "labels"])
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    if labels_empty && let Some(labels) = template_labels {
        super::meta::metadata_mut(object).insert("labels".into(), labels);
    }
    default_template(object, &["spec", "template"]);
}

pub fn validate_replication_controller(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    non_negative(object, &["spec", "replicas"], &mut causes);
    required(object, &["spec", "selector"], &mut causes);
    if let Some(selector) = at(object, &["spec", "selector"]).and_then(Value::as_object) {
        let labels = at(object, &["spec", "template", "metadata", "labels"]);
        let matches = selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !matches {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field: "spec.template.metadata.labels".into(),
                message: format!(
                    "Invalid value: {}: `selector` does not match template `labels`",
                    go_map(labels)
                ),
            });
        }
    }
    validate_template(object, &["spec", "template"], &["Always"], &mut causes);
    causes
}

/// apps/v1 selectors never change after creation.
pub fn validate_selector_update(old: &Value, new: &Value) -> Vec<Cause> {
    let before = at(old, &["spec", "selector"]);
    let after = at(new, &["spec", "selector"]);
    if before == after {
        return Vec::new();
    }
    vec![Cause {
        reason: "FieldValueInvalid",
        field: "spec.selector".into(),
        message: format!(
            "Invalid value: {}: field is immutable",
            go_label_selector(after)
        ),
    }]
}

/// A StatefulSet may change only some of its spec after creation.
pub fn validate_stateful_set_update(old: &Value, new: &Value) -> Vec<Cause> {
    const MUTABLE: &[&str] = &[
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    let fixed = |object: &Value| {
        let mut spec = at(object, &["spec"]).cloned().unwrap_or(Value::Null);
        if let Some(map) = spec.as_object_mut() {
            for key in MUTABLE {
                map.remove(*key);
            }
        }
        spec
    };
    if fixed(old) == fixed(new) {
        return Vec::new();
    }
    let mut causes = validate_selector_update(old, new);
    if causes.is_empty() {
        causes.push(Cause::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
    causes
}

/// Fields of a workload that never change, as `immutable` checks them.
pub fn validate_immutable(old: &Value, new: &Value, paths: &[&[&str]]) -> Vec<Cause> {
    let mut causes = Vec::new();
    for path in paths {
        immutable(old, new, path, &mut causes);
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(selector: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"selector": selector,
            "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    #[test]
    fn deployment_defaults() {
        let mut d = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        default_deployment(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert!(pod.get("tolerations").is_none());
        assert!(d["spec"]["template"].get("status").is_none());
        assert!(validate_deployment(&d).is_empty());
    }

    #[test]
    fn deployment_selector_must_match_labels() {
        let mut d = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "db"}));
        default_deployment(&mut d);
        let causes = validate_deployment(&d);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        assert_eq!(
            causes[0].message,
            "Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"
        );
        let mut missing = deployment(Value::Null, json!({"app": "web"}));
        default_deployment(&mut missing);
        assert_eq!(validate_deployment(&missing)[0].field, "spec.selector");
        let mut negative = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        negative["spec"]["replicas"] = json!(-1);
        default_deployment(&mut negative);
        assert_eq!(validate_deployment(&negative)[0].field, "spec.replicas");
    }

    #[test]
    fn selectors_are_immutable() {
        let old = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        let new = deployment(json!({"matchLabels": {"app": "b"}}), json!({"app": "b"}));
        let causes = validate_selector_update(&old, &new);
        assert_eq!(
            causes[0].message,
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        );
        assert!(validate_selector_update(&old, &old).is_empty());
    }

    #[test]
    fn statefulset_and_daemonset_defaults() {
        let mut s = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        s["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"}, "spec": {}}]);
        default_stateful_set(&mut s);
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            s["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert!(validate_stateful_set(&s).is_empty());
        let mut changed = s.clone();
        changed["spec"]["podManagementPolicy"] = json!("Parallel");
        assert_eq!(
            validate_stateful_set_update(&s, &changed)[0].reason,
            "FieldValueForbidden"
        );
        let mut ds = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        default_daemon_set(&mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            1
        );
    }

    #[test]
    fn replication_controller_selector_from_template() {
        let mut rc = json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        default_replication_controller(&mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "x"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "x"}));
        assert!(validate_replication_controller(&rc).is_empty());
    }
}
