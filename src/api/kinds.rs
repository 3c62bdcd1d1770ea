//! Per-kind defaulting and validation for every built-in type besides pods and
//! services (which have their own modules): the one place the generic handlers call,
//! dispatching on the registry entry. A resource without rules here is stored as sent.

use super::fields::{at, immutable, invalid_value, non_negative, one_of, required};
use super::meta::child_mut;
use super::registry::Resource;
use super::status::Cause;
use super::{
    admissionregistration as admission, autoscaling, batch, byte_fields, crd, dra, flowcontrol,
    workloads,
};
use base64::Engine;
use serde_json::{Value, json};

/// Fills in upstream's defaults; also applied to every update, so a replaced object
/// compares equal to the stored one when only defaults differ.
pub fn default(resource: &Resource, object: &mut Value) {
    match (resource.group, resource.kind) {
        ("apps", "Deployment") => workloads::default_deployment(object),
        ("apps", "ReplicaSet") => workloads::default_replica_set(object),
        ("apps", "StatefulSet") => workloads::default_stateful_set(object),
        ("apps", "DaemonSet") => workloads::default_daemon_set(object),
        ("", "ReplicationController") => workloads::default_replication_controller(object),
        ("", "PodTemplate") => workloads::default_template(object, &["template"]),
        ("batch", "Job") => batch::default_job(object),
        ("batch", "CronJob") => batch::default_cron_job(object),
        ("", "Secret") => default_secret(object),
        ("", "ConfigMap") => canonicalize_bytes(object, "binaryData"),
        ("", "PersistentVolumeClaim") => workloads::default_claim(object),
        ("", "PersistentVolume") => default_volume(object),
        ("storage.k8s.io", "StorageClass") => default_storage_class(object),
        ("scheduling.k8s.io", "PriorityClass") => {
            if let Some(root) = object.as_object_mut() {
                root.entry("preemptionPolicy")
                    .or_insert(json!("PreemptLowerPriority"));
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") if resource.version == "v2" => {
            autoscaling::default_hpa(object)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd::definition::default(object),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            if let Some(root) = object.as_object_mut() {
                child_mut(root, "spec")
                    .entry("minReplicas")
                    .or_insert(json!(1));
            }
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            admission::default_webhook_configuration(object, false)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            admission::default_webhook_configuration(object, true)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            admission::default_validating_policy(object)
        }
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy") => {
            admission::default_mutating_policy(object)
        }
        (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding" | "MutatingAdmissionPolicyBinding",
        ) => admission::default_binding(object),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => flowcontrol::default_flow_schema(object),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => {
            flowcontrol::default_priority_level(object)
        }
        ("resource.k8s.io", "ResourceClaim") => {
            if let Some(spec) = object.get_mut("spec") {
                dra::default_claim_spec(spec);
            }
        }
        ("resource.k8s.io", "ResourceClaimTemplate") => {
            if let Some(spec) = object.get_mut("spec").and_then(|s| s.get_mut("spec")) {
                dra::default_claim_spec(spec);
            }
        }
        ("apiregistration.k8s.io", "APIService") => {
            if let Some(Value::Object(service)) =
                object.get_mut("spec").and_then(|s| s.get_mut("service"))
            {
                service.entry("port").or_insert(json!(443));
            }
        }
        _ => {}
    }
}

/// The field problems of a (defaulted) object.
pub fn validate(resource: &Resource, object: &Value) -> Vec<Cause> {
    match (resource.group, resource.kind) {
        ("apps", "Deployment") => workloads::validate_deployment(object),
        ("apps", "ReplicaSet") => workloads::validate_replica_set(object),
        ("apps", "StatefulSet") => workloads::validate_stateful_set(object),
        ("apps", "DaemonSet") => workloads::validate_daemon_set(object),
        ("", "ReplicationController") => workloads::validate_replication_controller(object),
        ("batch", "Job") => batch::validate_job(object),
        ("batch", "CronJob") => batch::validate_cron_job(object),
        ("", "Secret") => validate_secret(object),
        ("", "ConfigMap") => {
            let mut causes = validate_config_keys(object);
            validate_bytes(object, "binaryData", &mut causes);
            causes
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd::definition::validate(object),
        ("", "PersistentVolumeClaim") => validate_claim(object),
        ("storage.k8s.io", "StorageClass") => {
            let mut causes = Vec::new();
            required(object, &["provisioner"], &mut causes);
            one_of(
                object,
                &["reclaimPolicy"],
                &["Delete", "Retain"],
                &mut causes,
            );
            one_of(
                object,
                &["volumeBindingMode"],
                &["Immediate", "WaitForFirstConsumer"],
                &mut causes,
            );
            causes
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            let mut causes = Vec::new();
            if at(object, &["value"]).and_then(Value::as_i64).is_none() {
                causes.push(Cause::required("value", ""));
            }
            causes
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let mut causes = Vec::new();
            required(object, &["roleRef", "name"], &mut causes);
            one_of(
                object,
                &["roleRef", "kind"],
                &["Role", "ClusterRole"],
                &mut causes,
            );
            causes
        }
        ("autoscaling", "HorizontalPodAutoscaler") => validate_hpa(object),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            admission::validate_webhook_configuration(object, false)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            admission::validate_webhook_configuration(object, true)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            admission::validate_validating_policy(object)
        }
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy") => {
            admission::validate_mutating_policy(object)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            admission::validate_binding(object, true)
        }
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding") => {
            admission::validate_binding(object, false)
        }
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => flowcontrol::validate_flow_schema(object),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => {
            flowcontrol::validate_priority_level(object)
        }
        ("resource.k8s.io", "DeviceClass") => dra::validate_device_class(object),
        ("resource.k8s.io", "ResourceClaim") => dra::validate_claim(object),
        ("resource.k8s.io", "ResourceClaimTemplate") => dra::validate_claim_template(object),
        ("resource.k8s.io", "ResourceSlice") => dra::validate_slice(object),
        ("resource.k8s.io", "DeviceTaintRule") => dra::validate_taint_rule(object),
        ("storage.k8s.io", "VolumeAttributesClass") => {
            let mut causes = Vec::new();
            required(object, &["driverName"], &mut causes);
            causes
        }
        ("apiregistration.k8s.io", "APIService") => validate_api_service(object),
        ("", "LimitRange") => super::limitrange::validate(object),
        ("", "ResourceQuota") => super::quota::validate(object),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            super::certificates::validate(object)
        }
        ("networking.k8s.io", "ServiceCIDR") => super::servicecidr::validate_service_cidr(object),
        ("networking.k8s.io", "IPAddress") => super::servicecidr::validate_ip_address(object),
        ("discovery.k8s.io", "EndpointSlice") => {
            let mut causes = Vec::new();
            required(object, &["addressType"], &mut causes);
            one_of(
                object,
                &["addressType"],
                &["IPv4", "IPv6", "FQDN"],
                &mut causes,
            );
            causes
        }
        _ => Vec::new(),
    }
}

/// Rules comparing the stored object with its replacement (main resource writes).
pub fn validate_update(resource: &Resource, old: &Value, new: &Value) -> Vec<Cause> {
    match (resource.group, resource.kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            workloads::validate_selector_update(old, new)
        }
        ("apps", "StatefulSet") => workloads::validate_stateful_set_update(old, new),
        ("batch", "Job") => batch::validate_job_update(old, new),
        ("", "Secret") => {
            let mut causes = workloads::validate_immutable(old, new, &[&["type"]]);
            causes.extend(validate_immutable_data(old, new));
            causes
        }
        ("", "ConfigMap") => validate_immutable_data(old, new),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            crd::definition::validate_update(old, new)
        }
        ("", "PersistentVolumeClaim") => validate_claim_update(old, new),
        ("networking.k8s.io", "ServiceCIDR") => {
            super::servicecidr::validate_service_cidr_update(old, new)
        }
        ("networking.k8s.io", "IPAddress") => {
            super::servicecidr::validate_ip_address_update(old, new)
        }
        ("", "Service") => {
            let mut causes = Vec::new();
            let set = at(old, &["spec", "clusterIP"]).is_some_and(|ip| ip != "");
            if set {
                immutable(old, new, &["spec", "clusterIP"], &mut causes);
            }
            causes
        }
        ("storage.k8s.io", "StorageClass") => {
            let mut causes = Vec::new();
            for field in ["parameters", "provisioner", "reclaimPolicy"] {
                if old.get(field) != new.get(field) {
                    causes.push(Cause::forbidden(
                        field,
                        &format!("updates to {field} are forbidden."),
                    ));
                }
            }
            causes.extend(workloads::validate_immutable(
                old,
                new,
                &[&["volumeBindingMode"]],
            ));
            causes
        }
        ("scheduling.k8s.io", "PriorityClass") if old.get("value") != new.get("value") => {
            vec![Cause::forbidden(
                "value",
                "may not be changed in an update.",
            )]
        }
        ("resource.k8s.io", "ResourceClaim" | "ResourceClaimTemplate") => {
            dra::validate_spec_update(old, new)
        }
        ("storage.k8s.io", "VolumeAttributesClass") => {
            let mut causes = Vec::new();
            immutable(old, new, &["driverName"], &mut causes);
            if old.get("parameters") != new.get("parameters") {
                causes.push(Cause::forbidden(
                    "parameters",
                    "updates to parameters are forbidden.",
                ));
            }
            causes
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding")
            if old.get("roleRef") != new.get("roleRef") =>
        {
            vec![invalid_value(
                "roleRef",
                new.get("roleRef").unwrap_or(&Value::Null),
                "cannot change roleRef",
            )]
        }
        _ => Vec::new(),
    }
}

/// The zero value of a status field that upstream's Go type has no `omitempty` for.
#[derive(Clone, Copy, Debug)]
enum Zero {
    /// An `int32` count: `0`.
    Count,
    /// A slice: Go writes a nil slice as `null`.
    NullList,
}

/// The status upstream shows for a just-created object of the kinds whose strategy
/// resets status on create (`PrepareForCreate`: `obj.Status = XStatus{}`): Go's JSON
/// encoder writes the status struct (never omitted) with every field that has no
/// `omitempty` at its zero value, and clients index into those fields. None for kinds
/// without such a reset, whose status a create simply drops.
///
/// Fields checked against kubernetes/api's `apps/v1/types.go`, `batch/v1/types.go`,
/// `core/v1/types.go`, `autoscaling/v1/types.go`, `autoscaling/v2/types.go` and
/// `policy/v1/types.go` (the `XStatus` structs' json tags).
fn created_status(resource: &Resource) -> Option<&'static [(&'static str, Zero)]> {
    use Zero::{Count, NullList};
    Some(match (resource.group, resource.version, resource.kind) {
        // Every DeploymentStatus, JobStatus and CronJobStatus field is omitempty.
        ("apps", "v1", "Deployment") | ("batch", "v1", "Job" | "CronJob") => &[],
        ("apps", "v1", "StatefulSet") => &[("replicas", Count), ("availableReplicas", Count)],
        ("apps", "v1", "ReplicaSet") | ("", "v1", "ReplicationController") => {
            &[("replicas", Count)]
        }
        ("apps", "v1", "DaemonSet") => &[
            ("currentNumberScheduled", Count),
            ("numberMisscheduled", Count),
            ("desiredNumberScheduled", Count),
            ("numberReady", Count),
        ],
        // v1 and v2 differ: v2's currentReplicas is omitempty, its currentMetrics not.
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => {
            &[("currentReplicas", Count), ("desiredReplicas", Count)]
        }
        ("autoscaling", "v2", "HorizontalPodAutoscaler") => {
            &[("desiredReplicas", Count), ("currentMetrics", NullList)]
        }
        ("policy", "v1", "PodDisruptionBudget") => &[
            ("disruptionsAllowed", Count),
            ("currentHealthy", Count),
            ("desiredHealthy", Count),
            ("expectedPods", Count),
        ],
        _ => return None,
    })
}

/// What a create does to a client-sent object before defaulting: the status of a
/// type with a status subresource is the controllers' to write, so it starts empty
/// (as upstream renders empty: see `created_status`).
pub fn prepare_create(resource: &Resource, object: &mut Value) {
    // Nodes report their own status on registration; namespaces and pods are handled
    // by their own rules.
    let keeps_status = resource.group.is_empty()
        && matches!(resource.kind, "Node" | "Namespace" | "Pod" | "Service");
    if resource.has_status()
        && !keeps_status
        && let Some(root) = object.as_object_mut()
    {
        match created_status(resource) {
            Some(fields) => {
                let zero = |zero: Zero| match zero {
                    Zero::Count => json!(0),
                    Zero::NullList => Value::Null,
                };
                let status = fields
                    .iter()
                    .map(|&(field, value)| (field.to_string(), zero(value)))
                    .collect();
                root.insert("status".into(), Value::Object(status));
            }
            None => {
                root.remove("status");
            }
        }
    }
    if resource.group == "apiextensions.k8s.io" && resource.kind == "CustomResourceDefinition" {
        // Holds a deleted CRD until the API server has deleted its objects.
        let finalizers = super::meta::metadata_mut(object)
            .entry("finalizers")
            .or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f == crd::CLEANUP_FINALIZER)
        {
            list.push(json!(crd::CLEANUP_FINALIZER));
        }
    }
}

/// Upstream decodes a `map[string][]byte` field (Secret `data`, ConfigMap
/// `binaryData`) into bytes and encodes them again when it stores them, so
/// line-wrapped base64 reads back on one line. Values that do not decode are left for
/// `validate_bytes` to refuse.
fn canonicalize_bytes(object: &mut Value, field: &str) {
    if let Some(Value::Object(map)) = object.get_mut(field) {
        for value in map.values_mut() {
            if let Some(canonical) = value.as_str().and_then(byte_fields::canonical) {
                *value = json!(canonical);
            }
        }
    }
}

/// Refuses the values of a `map[string][]byte` field that upstream could not decode.
fn validate_bytes(object: &Value, field: &str, causes: &mut Vec<Cause>) {
    let Some(map) = object.get(field).and_then(Value::as_object) else {
        return;
    };
    for (key, value) in map {
        let decodes = value
            .as_str()
            .is_some_and(|v| byte_fields::decode(v).is_ok());
        if !decodes {
            causes.push(invalid_value(
                format!("{field}[{key}]"),
                value,
                "must be base64 encoded",
            ));
        }
    }
}

fn default_secret(secret: &mut Value) {
    canonicalize_bytes(secret, "data");
    let Some(root) = secret.as_object_mut() else {
        return;
    };
    root.entry("type").or_insert(json!("Opaque"));
    // `stringData` is write-only: its entries become base64 `data`, overriding it.
    if let Some(Value::Object(strings)) = root.remove("stringData") {
        let data = child_mut(root, "data");
        for (key, value) in strings {
            let text = value.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(key, json!(encoded));
        }
    }
}

const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

/// Keys of `data`/`binaryData` must be usable as file names and env names.
fn validate_config_keys(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for part in ["data", "binaryData"] {
        let Some(map) = object.get(part).and_then(Value::as_object) else {
            continue;
        };
        for key in map.keys() {
            let valid = !key.is_empty()
                && key.len() <= 253
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && key != "."
                && key != ".."
                && !key.starts_with("..");
            if !valid {
                causes.push(Cause::invalid(
                    format!("{part}[{key}]"),
                    key,
                    CONFIG_KEY_MSG,
                ));
            }
        }
    }
    causes
}

fn validate_secret(secret: &Value) -> Vec<Cause> {
    let mut causes = validate_config_keys(secret);
    let data = secret.get("data").and_then(Value::as_object);
    let has = |key: &str| data.is_some_and(|d| d.contains_key(key));
    let needs: &[&str] = match at(secret, &["type"]).and_then(Value::as_str) {
        Some("kubernetes.io/tls") => &["tls.crt", "tls.key"],
        Some("kubernetes.io/dockerconfigjson") => &[".dockerconfigjson"],
        Some("kubernetes.io/dockercfg") => &[".dockercfg"],
        _ => &[],
    };
    for key in needs {
        if !has(key) {
            causes.push(Cause::required(format!("data[{key}]"), ""));
        }
    }
    validate_bytes(secret, "data", &mut causes);
    causes
}

/// ConfigMaps and Secrets marked `immutable: true` keep their data and the mark.
fn validate_immutable_data(old: &Value, new: &Value) -> Vec<Cause> {
    if old.get("immutable") != Some(&json!(true)) {
        return Vec::new();
    }
    let mut causes = Vec::new();
    if new.get("immutable") != Some(&json!(true)) {
        causes.push(Cause::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for field in ["data", "binaryData"] {
        if old.get(field) != new.get(field) {
            causes.push(Cause::forbidden(
                field,
                "field is immutable when `immutable` is set",
            ));
        }
    }
    causes
}

fn default_volume(volume: &mut Value) {
    let Some(root) = volume.as_object_mut() else {
        return;
    };
    let spec = child_mut(root, "spec");
    spec.entry("persistentVolumeReclaimPolicy")
        .or_insert(json!("Retain"));
    spec.entry("volumeMode").or_insert(json!("Filesystem"));
    child_mut(root, "status")
        .entry("phase")
        .or_insert(json!("Pending"));
}

fn default_storage_class(class: &mut Value) {
    let Some(root) = class.as_object_mut() else {
        return;
    };
    root.entry("reclaimPolicy").or_insert(json!("Delete"));
    root.entry("volumeBindingMode")
        .or_insert(json!("Immediate"));
}

const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

fn validate_claim(claim: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let modes = at(claim, &["spec", "accessModes"]).and_then(Value::as_array);
    match modes {
        None => causes.push(Cause::required("spec.accessModes", "")),
        Some(list) if list.is_empty() => causes.push(Cause::required("spec.accessModes", "")),
        Some(list) => {
            for mode in list.iter().filter_map(Value::as_str) {
                if !ACCESS_MODES.contains(&mode) {
                    causes.push(Cause::unsupported("spec.accessModes", mode, ACCESS_MODES));
                }
            }
        }
    }
    let from_source = at(claim, &["spec", "dataSourceRef"]).is_some();
    if !from_source
        && at(claim, &["spec", "resources", "requests", "storage"]).is_none_or(Value::is_null)
    {
        causes.push(Cause::required("spec.resources[storage]", ""));
    }
    one_of(
        claim,
        &["spec", "volumeMode"],
        &["Block", "Filesystem"],
        &mut causes,
    );
    causes
}

/// A claim's spec is fixed once created, except its storage request (to grow it)
/// and its volume attributes class.
fn validate_claim_update(old: &Value, new: &Value) -> Vec<Cause> {
    let fixed = |claim: &Value| {
        let mut spec = claim.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(map) = spec.as_object_mut() {
            map.remove("volumeAttributesClassName");
            // The storage request may grow; the binder fills in volumeName.
            if let Some(Value::Object(resources)) = map.get_mut("resources") {
                resources.remove("requests");
            }
            map.remove("volumeName");
        }
        spec
    };
    if fixed(old) == fixed(new) {
        return Vec::new();
    }
    vec![Cause::forbidden(
        "spec",
        "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
    )]
}

/// An APIService is named `<version>.<group>` and orders itself by two priorities.
fn validate_api_service(service: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let version = at(service, &["spec", "version"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = at(service, &["spec", "group"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = super::meta::name(service);
    let expected = format!("{version}.{group}");
    if name != expected {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            &format!("must be {expected}"),
        ));
    }
    if version.is_empty() {
        causes.push(Cause::required("spec.version", ""));
    }
    for (field, limit) in [("groupPriorityMinimum", 20000), ("versionPriority", 1000)] {
        let value = at(service, &["spec", field])
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if value <= 0 || value > limit {
            causes.push(invalid_value(
                format!("spec.{field}"),
                &json!(value),
                &format!("must be positive and less than {limit}"),
            ));
        }
    }
    causes
}

fn validate_hpa(hpa: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    required(hpa, &["spec", "scaleTargetRef", "kind"], &mut causes);
    required(hpa, &["spec", "scaleTargetRef", "name"], &mut causes);
    non_negative(hpa, &["spec", "minReplicas"], &mut causes);
    let min = at(hpa, &["spec", "minReplicas"]).and_then(Value::as_i64);
    match at(hpa, &["spec", "maxReplicas"]).and_then(Value::as_i64) {
        None => causes.push(Cause::required("spec.maxReplicas", "")),
        Some(max) if max < 1 => causes.push(invalid_value(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than 0",
        )),
        Some(max) if min.is_some_and(|m| max < m) => causes.push(invalid_value(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        )),
        Some(_) => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::Map;

    fn map(value: &Value) -> &Map<String, Value> {
        value.as_object().unwrap()
    }

    fn lookup(group: &str, version: &str, plural: &str) -> &'static Resource {
        Registry::default().lookup(group, version, plural).unwrap()
    }

    #[test]
    fn secrets_fold_string_data() {
        let secrets = lookup("", "v1", "secrets");
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"user": "admin"}, "data": {"a": "Yg=="}});
        default(secrets, &mut s);
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"]["user"], "YWRtaW4=");
        assert!(!map(&s).contains_key("stringData"));
        assert!(validate(secrets, &s).is_empty());
        let bad = json!({"type": "kubernetes.io/tls", "data": {"bad key": "!!"}});
        let fields: Vec<String> = validate(secrets, &bad)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert!(fields.contains(&"data[bad key]".to_string()));
        assert!(fields.contains(&"data[tls.crt]".to_string()));
    }

    #[test]
    fn config_map_binary_data_is_canonical_base64() {
        let cms = lookup("", "v1", "configmaps");
        let mut cm = json!({"binaryData": {"a": "aGVs\nbG8=\n"}, "data": {"b": "aGVs\nbG8=\n"}});
        default(cms, &mut cm);
        assert_eq!(cm["binaryData"]["a"], "aGVsbG8=");
        // `data` holds plain strings, kept as sent.
        assert_eq!(cm["data"]["b"], "aGVs\nbG8=\n");
        assert!(validate(cms, &cm).is_empty());
        let mut bad = json!({"binaryData": {"a": "aGVs bG8="}});
        default(cms, &mut bad);
        let causes = validate(cms, &bad);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "binaryData[a]");
    }

    #[test]
    fn immutable_config_maps_keep_data() {
        let cms = lookup("", "v1", "configmaps");
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        let causes = validate_update(cms, &old, &new);
        assert_eq!(causes[0].field, "data");
        assert_eq!(
            causes[0].message,
            "Forbidden: field is immutable when `immutable` is set"
        );
        assert!(validate_update(cms, &json!({"data": {"a": "1"}}), &new).is_empty());
    }

    #[test]
    fn claims_and_storage_classes() {
        let pvcs = lookup("", "v1", "persistentvolumeclaims");
        let mut claim = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        default(pvcs, &mut claim);
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert!(validate(pvcs, &claim).is_empty());
        let mut grown = claim.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(validate_update(pvcs, &claim, &grown).is_empty());
        let mut changed = claim.clone();
        changed["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(validate_update(pvcs, &claim, &changed)[0].field, "spec");
        let classes = lookup("storage.k8s.io", "v1", "storageclasses");
        let mut sc = json!({"provisioner": "rancher.io/local-path"});
        default(classes, &mut sc);
        assert_eq!(
            (&sc["reclaimPolicy"], &sc["volumeBindingMode"]),
            (&json!("Delete"), &json!("Immediate"))
        );
        assert!(validate(classes, &sc).is_empty());
    }

    /// The status of a just-created object, whatever status the client sent.
    fn created(group: &str, version: &str, plural: &str) -> Value {
        let mut object = json!({"spec": {}, "status": {"replicas": 3, "observedGeneration": 2}});
        prepare_create(lookup(group, version, plural), &mut object);
        object.get("status").cloned().unwrap_or(Value::Null)
    }

    /// The fields with no `omitempty` in kubernetes/api's `XStatus` Go structs, each
    /// checked against the file named beside it.
    #[test]
    fn create_leaves_upstreams_zero_status() {
        // apps/v1/types.go
        assert_eq!(created("apps", "v1", "deployments"), json!({}));
        assert_eq!(
            created("apps", "v1", "statefulsets"),
            json!({"replicas": 0, "availableReplicas": 0})
        );
        assert_eq!(created("apps", "v1", "replicasets"), json!({"replicas": 0}));
        assert_eq!(
            created("apps", "v1", "daemonsets"),
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
                   "desiredNumberScheduled": 0, "numberReady": 0})
        );
        // batch/v1/types.go
        assert_eq!(created("batch", "v1", "jobs"), json!({}));
        assert_eq!(created("batch", "v1", "cronjobs"), json!({}));
        // core/v1/types.go
        assert_eq!(
            created("", "v1", "replicationcontrollers"),
            json!({"replicas": 0})
        );
        // autoscaling/v1/types.go, autoscaling/v2/types.go
        assert_eq!(
            created("autoscaling", "v1", "horizontalpodautoscalers"),
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        );
        assert_eq!(
            created("autoscaling", "v2", "horizontalpodautoscalers"),
            json!({"desiredReplicas": 0, "currentMetrics": null})
        );
        // policy/v1/types.go
        assert_eq!(
            created("policy", "v1", "poddisruptionbudgets"),
            json!({"disruptionsAllowed": 0, "currentHealthy": 0,
                   "desiredHealthy": 0, "expectedPods": 0})
        );
    }

    #[test]
    fn create_clears_controller_status() {
        let claims = lookup("", "v1", "persistentvolumeclaims");
        let mut c = json!({"spec": {}, "status": {"phase": "Bound"}});
        prepare_create(claims, &mut c);
        assert!(c.get("status").is_none());
        let nodes = lookup("", "v1", "nodes");
        let mut n = json!({"status": {"capacity": {}}});
        prepare_create(nodes, &mut n);
        assert!(n.get("status").is_some());
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let services = lookup("", "v1", "services");
        let old = json!({"spec": {"clusterIP": "10.96.0.5"}});
        let new = json!({"spec": {"clusterIP": "10.96.0.6"}});
        assert_eq!(
            validate_update(services, &old, &new)[0].message,
            "Invalid value: \"10.96.0.6\": field is immutable"
        );
    }
}
