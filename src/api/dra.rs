//! `resource.k8s.io/v1` (dynamic resource allocation): the defaults and validation
//! of DeviceClasses, ResourceClaims and their templates, ResourceSlices and
//! DeviceTaintRules, with upstream's messages (`pkg/apis/resource/validation`). rind
//! stores them; it has no DRA driver or allocator, so no claim is ever allocated.

use super::fields::{at, invalid_value, one_of, required};
use super::status::Cause;
use super::validation::{is_dns1123_label, is_dns1123_subdomain};
use serde_json::{Value, json};

const ALLOCATION_MODES: &[&str] = &["All", "ExactCount"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "NoExecute", "None"];

fn items<'a>(object: &'a Value, path: &[&str]) -> &'a [Value] {
    at(object, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `exactly` requests allocate `count` devices, one by default.
pub fn default_claim_spec(spec: &mut Value) {
    let Some(requests) = spec
        .get_mut("devices")
        .and_then(|d| d.get_mut("requests"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for request in requests {
        let Some(request) = request.as_object_mut() else {
            continue;
        };
        let subrequests: Vec<&mut Value> = if request.get("exactly").is_some_and(Value::is_object) {
            request.get_mut("exactly").into_iter().collect()
        } else {
            match request.get_mut("firstAvailable") {
                Some(Value::Array(list)) => list.iter_mut().collect(),
                _ => Vec::new(),
            }
        };
        for sub in subrequests {
            if let Some(map) = sub.as_object_mut() {
                let mode = map
                    .entry("allocationMode")
                    .or_insert(json!("ExactCount"))
                    .clone();
                if mode == "ExactCount" {
                    map.entry("count").or_insert(json!(1));
                }
            }
        }
    }
}

/// A DNS-label name of a request or subrequest.
fn label(value: Option<&Value>, path: String, causes: &mut Vec<Cause>) {
    match value.and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required(path, "")),
        Some(name) if !is_dns1123_label(name) => causes.extend(super::validation::validate_name(
            super::registry::NameRule::Label,
            name,
            &path,
        )),
        Some(_) => {}
    }
}

fn validate_device_request(request: &Value, path: &str, causes: &mut Vec<Cause>) {
    match request.get("deviceClassName").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required(format!("{path}.deviceClassName"), "")),
        Some(name) if !is_dns1123_subdomain(name) => {
            causes.extend(super::validation::validate_name(
                super::registry::NameRule::Subdomain,
                name,
                &format!("{path}.deviceClassName"),
            ))
        }
        Some(_) => {}
    }
    let mut local = Vec::new();
    one_of(request, &["allocationMode"], ALLOCATION_MODES, &mut local);
    if request.get("allocationMode").and_then(Value::as_str) == Some("ExactCount")
        && let Some(count) = request.get("count").and_then(Value::as_i64)
        && count <= 0
    {
        local.push(invalid_value(
            "count",
            &json!(count),
            "must be greater than zero",
        ));
    }
    for mut cause in local {
        cause.field = format!("{path}.{}", cause.field);
        causes.push(cause);
    }
}

/// A ResourceClaimSpec at `base` (`spec`, or `spec.spec` in a template).
fn validate_claim_spec(spec: &Value, base: &str, causes: &mut Vec<Cause>) {
    let mut names: Vec<&str> = Vec::new();
    for (i, request) in items(spec, &["devices", "requests"]).iter().enumerate() {
        let path = format!("{base}.devices.requests[{i}]");
        label(request.get("name"), format!("{path}.name"), causes);
        if let Some(name) = request.get("name").and_then(Value::as_str) {
            if names.contains(&name) {
                causes.push(Cause::duplicate(format!("{path}.name"), name));
            }
            names.push(name);
        }
        let exactly = request.get("exactly").is_some_and(|e| !e.is_null());
        let first = request.get("firstAvailable").is_some_and(|f| !f.is_null());
        match (exactly, first) {
            (true, false) => {
                validate_device_request(&request["exactly"], &format!("{path}.exactly"), causes)
            }
            (false, true) => {
                for (j, sub) in items(request, &["firstAvailable"]).iter().enumerate() {
                    let sub_path = format!("{path}.firstAvailable[{j}]");
                    label(sub.get("name"), format!("{sub_path}.name"), causes);
                    validate_device_request(sub, &sub_path, causes);
                }
            }
            _ => causes.push(Cause::required(
                path,
                "exactly one of `exactly` or `firstAvailable` is required",
            )),
        }
    }
}

pub fn validate_claim(claim: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(spec) = claim.get("spec") {
        validate_claim_spec(spec, "spec", &mut causes);
    }
    causes
}

pub fn validate_claim_template(template: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match at(template, &["spec", "spec"]) {
        Some(spec) => validate_claim_spec(spec, "spec.spec", &mut causes),
        None => causes.push(Cause::required("spec.spec", "")),
    }
    causes
}

/// A claim's (or template's) spec is fixed once created.
pub fn validate_spec_update(old: &Value, new: &Value) -> Vec<Cause> {
    if old.get("spec") == new.get("spec") {
        return Vec::new();
    }
    vec![invalid_value(
        "spec",
        new.get("spec").unwrap_or(&Value::Null),
        "field is immutable",
    )]
}

pub fn validate_device_class(class: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, selector) in items(class, &["spec", "selectors"]).iter().enumerate() {
        let path = format!("spec.selectors[{i}]");
        if selector.get("cel").is_none_or(Value::is_null) {
            causes.push(Cause::required(format!("{path}.cel"), ""));
        } else {
            if at(selector, &["cel", "expression"])
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(Cause::required(format!("{path}.cel.expression"), ""));
            }
        }
    }
    causes
}

/// Where a slice's devices live: exactly one of these must be set.
const NODE_FIELDS: &[&str] = &[
    "nodeName",
    "nodeSelector",
    "allNodes",
    "perDeviceNodeSelection",
];

pub fn validate_slice(slice: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match at(slice, &["spec", "driver"]).and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("spec.driver", "")),
        Some(driver) if !is_dns1123_subdomain(driver) => {
            causes.extend(super::validation::validate_name(
                super::registry::NameRule::Subdomain,
                driver,
                "spec.driver",
            ))
        }
        Some(_) => {}
    }
    required(slice, &["spec", "pool", "name"], &mut causes);
    match at(slice, &["spec", "pool", "resourceSliceCount"]).and_then(Value::as_i64) {
        Some(count) if count > 0 => {}
        Some(count) => causes.push(invalid_value(
            "spec.pool.resourceSliceCount",
            &json!(count),
            "must be greater than zero",
        )),
        None => causes.push(Cause::required("spec.pool.resourceSliceCount", "")),
    }
    let set = NODE_FIELDS
        .iter()
        .filter(|f| match at(slice, &["spec", f]) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        })
        .count();
    if set != 1 {
        causes.push(Cause::required(
            "spec",
            "exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required",
        ));
    }
    causes
}

pub fn validate_taint_rule(rule: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    required(rule, &["spec", "taint", "key"], &mut causes);
    match at(rule, &["spec", "taint", "effect"]).and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("spec.taint.effect", "")),
        Some(effect) if !TAINT_EFFECTS.contains(&effect) => causes.push(Cause::unsupported(
            "spec.taint.effect",
            effect,
            TAINT_EFFECTS,
        )),
        Some(_) => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_default_counts_and_need_one_request_form() {
        let mut spec = json!({"devices": {"requests": [
            {"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com"}},
            {"name": "Bad_Name"}
        ]}});
        default_claim_spec(&mut spec);
        assert_eq!(
            spec["devices"]["requests"][0]["exactly"],
            json!({"deviceClassName": "gpu.example.com", "allocationMode": "ExactCount", "count": 1})
        );
        let causes = validate_claim(&json!({"spec": spec}));
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.devices.requests[1].name", "spec.devices.requests[1]"]
        );
        assert_eq!(
            causes[1].message,
            "Required value: exactly one of `exactly` or `firstAvailable` is required"
        );
    }

    #[test]
    fn slices_name_driver_pool_and_one_node_field() {
        let good = json!({"spec": {"driver": "gpu.example.com", "nodeName": "n1",
            "pool": {"name": "p", "generation": 0, "resourceSliceCount": 1}}});
        assert!(validate_slice(&good).is_empty());
        let bad = json!({"spec": {"driver": "gpu.example.com", "nodeName": "n1", "allNodes": true,
            "pool": {"name": "p", "resourceSliceCount": 0}}});
        let messages: Vec<String> = validate_slice(&bad)
            .into_iter()
            .map(|c| c.message)
            .collect();
        assert_eq!(
            messages,
            [
                "Invalid value: 0: must be greater than zero",
                "Required value: exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required"
            ]
        );
    }
}
