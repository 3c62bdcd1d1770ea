//! LimitRanges: their validation, and what upstream's LimitRanger admission plugin
//! (always on in a real cluster) does with them. A new pod's containers get the
//! `default` limits and `defaultRequest` requests of every Container limit they lack,
//! noted in the `kubernetes.io/limit-ranger` annotation; then each Container and Pod
//! limit's `min`, `max` and `maxLimitRequestRatio` is enforced, and each
//! PersistentVolumeClaim limit's `min` and `max` on a claim's storage request.
//! Messages are upstream's (plugin/pkg/admission/limitranger/admission.go and
//! pkg/apis/core/validation's ValidateLimitRange), because kubectl prints them.

use super::fields::{at, invalid_value};
use super::meta::metadata_mut;
use super::quantity::{Amount, Quantity};
use super::status::Cause;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The annotation naming what the plugin defaulted on a pod.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// A resource list (`requests`, `max`, …) read as amounts; unparsable entries (which
/// validation refuses) are left out.
pub type Resources = BTreeMap<String, Amount>;

fn resources(value: Option<&Value>) -> Resources {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Amount::parse(&quantity_text(v)?)?)))
        .collect()
}

/// A quantity as JSON text (a string, or a bare number some clients send).
fn quantity_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `spec.limits` entries of a LimitRange.
fn limits(range: &Value) -> &[Value] {
    at(range, &["spec", "limits"])
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn limit_type(limit: &Value) -> &str {
    limit
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

const STANDARD_TYPES: &[&str] = &["Pod", "Container", "PersistentVolumeClaim"];

/// Upstream's `ValidateLimitRange`, but for the resource-name checks.
pub fn validate(range: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut seen_types = BTreeSet::new();
    for (i, limit) in limits(range).iter().enumerate() {
        let path = format!("spec.limits[{i}]");
        let kind = limit_type(limit);
        if !kind.contains('/') && !STANDARD_TYPES.contains(&kind) {
            causes.push(Cause::invalid(
                format!("{path}.type"),
                kind,
                "must be a standard limit type or fully qualified",
            ));
        }
        if !seen_types.insert(kind.to_string()) {
            causes.push(Cause::duplicate(format!("{path}.type"), kind));
        }
        let mut lists = BTreeMap::new();
        for field in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            let Some(map) = limit.get(field).and_then(Value::as_object) else {
                continue;
            };
            for (name, value) in map {
                if quantity_text(value)
                    .and_then(|t| Quantity::parse(&t))
                    .is_none()
                {
                    causes.push(invalid_value(
                        format!("{path}.{field}[{name}]"),
                        value,
                        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    ));
                }
            }
            lists.insert(field, resources(Some(&Value::Object(map.clone()))));
        }
        let list = |field: &str| lists.get(field).cloned().unwrap_or_default();
        if kind == "Pod" {
            for field in ["default", "defaultRequest"] {
                if !list(field).is_empty() {
                    causes.push(Cause::forbidden(
                        format!("{path}.{field}"),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        }
        if kind == "PersistentVolumeClaim"
            && !list("min").contains_key("storage")
            && !list("max").contains_key("storage")
        {
            causes.push(Cause::required(
                format!("{path}.limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        let (min, max, default, default_request, ratio) = (
            list("min"),
            list("max"),
            if kind == "Pod" {
                Resources::new()
            } else {
                list("default")
            },
            if kind == "Pod" {
                Resources::new()
            } else {
                list("defaultRequest")
            },
            list("maxLimitRequestRatio"),
        );
        let names: BTreeSet<&String> = [&min, &max, &default, &default_request, &ratio]
            .into_iter()
            .flat_map(|l| l.keys())
            .collect();
        for name in names {
            let invalid = |field: &str, value: &Amount, detail: String| {
                Cause::invalid(
                    format!("{path}.{field}[{name}]"),
                    &value.to_string(),
                    &detail,
                )
            };
            let (lo, hi) = (min.get(name), max.get(name));
            let (def, def_req) = (default.get(name), default_request.get(name));
            if let (Some(lo), Some(hi)) = (lo, hi)
                && lo.quantity > hi.quantity
            {
                causes.push(invalid(
                    "min",
                    lo,
                    format!("min value {lo} is greater than max value {hi}"),
                ));
            }
            if let (Some(req), Some(lo)) = (def_req, lo)
                && lo.quantity > req.quantity
            {
                causes.push(invalid(
                    "defaultRequest",
                    req,
                    format!("min value {lo} is greater than default request value {req}"),
                ));
            }
            if let (Some(req), Some(hi)) = (def_req, hi)
                && req.quantity > hi.quantity
            {
                causes.push(invalid(
                    "defaultRequest",
                    req,
                    format!("default request value {req} is greater than max value {hi}"),
                ));
            }
            if let (Some(req), Some(def)) = (def_req, def)
                && req.quantity > def.quantity
            {
                causes.push(invalid(
                    "defaultRequest",
                    req,
                    format!(
                        "default request value {req} is greater than default limit value {def}"
                    ),
                ));
            }
            if let (Some(def), Some(lo)) = (def, lo)
                && lo.quantity > def.quantity
            {
                causes.push(invalid(
                    "default",
                    lo,
                    format!("min value {lo} is greater than default value {def}"),
                ));
            }
            if let (Some(def), Some(hi)) = (def, hi)
                && def.quantity > hi.quantity
            {
                causes.push(invalid(
                    "default",
                    hi,
                    format!("default value {def} is greater than max value {hi}"),
                ));
            }
            if let Some(r) = ratio.get(name) {
                if r.quantity < Quantity::from_i64(1) {
                    causes.push(invalid(
                        "maxLimitRequestRatio",
                        r,
                        format!("ratio {r} is less than 1"),
                    ));
                }
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    let limit = hi.quantity.milli_value() as f64 / lo.quantity.milli_value() as f64;
                    let wanted = r.quantity.milli_value() as f64 / 1000.0;
                    if wanted > limit {
                        causes.push(invalid(
                            "maxLimitRequestRatio",
                            r,
                            format!("ratio {r} is greater than max/min = {limit:.6}"),
                        ));
                    }
                }
            }
            // Resources that may not be overcommitted (hugepages, extended
            // resources) need equal default limits and requests.
            let overcommit = !name.starts_with("hugepages-")
                && (!name.contains('/') || name.starts_with("kubernetes.io/"));
            if let (Some(def), Some(req)) = (def, def_req)
                && !overcommit
                && def.quantity != req.quantity
            {
                causes.push(invalid(
                    "defaultRequest",
                    req,
                    format!(
                        "default value {def} must equal to defaultRequest value {req} in {name}"
                    ),
                ));
            }
        }
    }
    causes
}

/// The `default` limits and `defaultRequest` requests of a range's Container limits.
fn container_defaults(range: &Value) -> (Resources, Resources) {
    let mut requests = Resources::new();
    let mut limits_out = Resources::new();
    for limit in limits(range)
        .iter()
        .filter(|l| limit_type(l) == "Container")
    {
        requests.extend(resources(limit.get("defaultRequest")));
        limits_out.extend(resources(limit.get("default")));
    }
    (requests, limits_out)
}

/// Fills a container's missing requests and limits; returns the annotation parts.
fn merge_container(
    container: &mut Map<String, Value>,
    requests: &Resources,
    limits_in: &Resources,
    prefix: &str,
    notes: &mut Vec<String>,
) {
    let name = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let resources = super::meta::child_mut(container, "resources");
    let mut set = |field: &str, defaults: &Resources| {
        let mut added = Vec::new();
        if defaults.is_empty() {
            return added;
        }
        let list = super::meta::child_mut(resources, field);
        for (k, v) in defaults {
            if !list.contains_key(k) {
                list.insert(k.clone(), json!(v.to_string()));
                added.push(k.clone());
            }
        }
        if list.is_empty() {
            resources.remove(field);
        }
        added
    };
    let set_limits = set("limits", limits_in);
    let set_requests = set("requests", requests);
    if resources.is_empty() {
        container.remove("resources");
    }
    // Sorted, as upstream sorts them.
    if !set_requests.is_empty() {
        notes.push(format!(
            "{} request for {prefix} {name}",
            set_requests.join(", ")
        ));
    }
    if !set_limits.is_empty() {
        notes.push(format!(
            "{} limit for {prefix} {name}",
            set_limits.join(", ")
        ));
    }
}

/// The mutating half of the plugin for a new pod: each range in turn fills its
/// Container defaults into the containers and init containers that lack them, and
/// (as upstream, range by range) sets the annotation to what it filled in. Returns
/// whether the pod changed.
pub fn default_pod(ranges: &[Value], pod: &mut Value) -> bool {
    let mut changed = false;
    for range in ranges {
        let (requests, limits_in) = container_defaults(range);
        let mut notes = Vec::new();
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return changed;
        };
        for (list, prefix) in [
            ("containers", "container"),
            ("initContainers", "init container"),
        ] {
            if let Some(Value::Array(containers)) = spec.get_mut(list) {
                for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                    merge_container(container, &requests, &limits_in, prefix, &mut notes);
                }
            }
        }
        if !notes.is_empty() {
            changed = true;
            let annotations = super::meta::child_mut(metadata_mut(pod), "annotations");
            annotations.insert(
                ANNOTATION.into(),
                json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
            );
        }
    }
    changed
}

/// Upstream's `utilerrors.NewAggregate(errs).Error()`: one message alone, several
/// (duplicates dropped) in brackets.
fn aggregate(errors: Vec<String>) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

/// Request, limit and enforced value at a common precision (milli when all fit), as
/// upstream's `requestLimitEnforcedValues`.
fn enforced_values(
    request: Option<&Amount>,
    limit: Option<&Amount>,
    enforced: &Amount,
) -> (i64, i64, i64) {
    const MAX_MILLI: i64 = i64::MAX / 1000;
    let value = |a: Option<&Amount>| a.map_or(0, |a| a.quantity.value());
    let milli = |a: Option<&Amount>| a.map_or(0, |a| a.quantity.milli_value());
    let (r, l, e) = (value(request), value(limit), enforced.quantity.value());
    if r <= MAX_MILLI && l <= MAX_MILLI && e <= MAX_MILLI {
        (
            milli(request),
            milli(limit),
            enforced.quantity.milli_value(),
        )
    } else {
        (r, l, e)
    }
}

fn min_constraint(
    kind: &str,
    name: &str,
    enforced: &Amount,
    requests: &Resources,
    limits_in: &Resources,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits_in.get(name));
    let (r, l, e) = enforced_values(req, lim, enforced);
    match (req, lim) {
        (None, _) => Some(format!(
            "minimum {name} usage per {kind} is {enforced}.  No request is specified"
        )),
        (Some(req), _) if r < e => Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but request is {req}"
        )),
        (_, Some(lim)) if l < e => Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    name: &str,
    enforced: &Amount,
    requests: &Resources,
    limits_in: &Resources,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits_in.get(name));
    let (r, l, e) = enforced_values(req, lim, enforced);
    match (req, lim) {
        (_, None) => Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No limit is specified"
        )),
        (_, Some(lim)) if l > e => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
        )),
        (Some(req), _) if r > e => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {req}"
        )),
        _ => None,
    }
}

/// The max of a PersistentVolumeClaim limit: only the request is the user's.
fn max_request_constraint(
    kind: &str,
    name: &str,
    enforced: &Amount,
    requests: &Resources,
) -> Option<String> {
    let req = requests.get(name);
    let (r, _, e) = enforced_values(req, None, enforced);
    match req {
        None => Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No request is specified"
        )),
        Some(req) if r > e => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {req}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: &Amount,
    requests: &Resources,
    limits_in: &Resources,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits_in.get(name));
    let (r, l, _) = enforced_values(req, lim, enforced);
    if req.is_none() || r == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    if lim.is_none() || l == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let observed = l as f64 / r as f64;
    let (scaled, max) = if enforced.quantity.value() <= i64::MAX / 1000 {
        (observed * 1000.0, enforced.quantity.milli_value() as f64)
    } else {
        (observed, enforced.quantity.value() as f64)
    };
    (scaled > max).then(|| {
        format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"
        )
    })
}

/// Checks one set of requests and limits against a limit's min, max and ratio.
fn check_limit(
    limit: &Value,
    kind: &str,
    requests: &Resources,
    limits_in: &Resources,
    errors: &mut Vec<String>,
) {
    for (name, enforced) in resources(limit.get("min")) {
        errors.extend(min_constraint(kind, &name, &enforced, requests, limits_in));
    }
    for (name, enforced) in resources(limit.get("max")) {
        errors.extend(max_constraint(kind, &name, &enforced, requests, limits_in));
    }
    for (name, enforced) in resources(limit.get("maxLimitRequestRatio")) {
        errors.extend(ratio_constraint(
            kind, &name, &enforced, requests, limits_in,
        ));
    }
}

fn container_resources(container: &Value) -> (Resources, Resources) {
    let resources_of = |field| resources(at(container, &["resources", field]));
    (resources_of("requests"), resources_of("limits"))
}

fn add_into(total: &mut Resources, more: &Resources) {
    for (k, v) in more {
        let sum = total.get(k).map_or(*v, |t| t.add(v));
        total.insert(k.clone(), sum);
    }
}

fn max_into(total: &mut Resources, more: &Resources) {
    for (k, v) in more {
        if total.get(k).is_none_or(|t| v.quantity > t.quantity) {
            total.insert(k.clone(), *v);
        }
    }
}

/// A pod's effective requests or limits (`requests`: index 0 of
/// `container_resources`): its containers summed, its restartable (sidecar) init
/// containers added, and the largest of what any init container needs while it runs.
fn pod_totals(pod: &Value, requests: bool) -> Resources {
    let pick = |c: &Value| {
        let (r, l) = container_resources(c);
        if requests { r } else { l }
    };
    let list = |field| {
        at(pod, &["spec", field])
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    };
    let mut total = Resources::new();
    for c in list("containers") {
        add_into(&mut total, &pick(c));
    }
    let mut sidecars = Resources::new();
    let mut init = Resources::new();
    for c in list("initContainers") {
        let own = pick(c);
        let running = if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut with = own;
            add_into(&mut with, &sidecars);
            with
        };
        max_into(&mut init, &running);
    }
    max_into(&mut total, &init);
    total
}

/// The validating half of the plugin for a pod: the first range it breaks, with
/// every constraint of that range it breaks, as upstream's Forbidden reason.
pub fn validate_pod(ranges: &[Value], pod: &Value) -> Option<String> {
    for range in ranges {
        let mut errors = Vec::new();
        for limit in limits(range) {
            match limit_type(limit) {
                "Container" => {
                    for field in ["containers", "initContainers"] {
                        let containers = at(pod, &["spec", field]).and_then(Value::as_array);
                        for c in containers.into_iter().flatten() {
                            let (requests, limits_in) = container_resources(c);
                            check_limit(limit, "Container", &requests, &limits_in, &mut errors);
                        }
                    }
                }
                "Pod" => {
                    let (requests, limits_in) = (pod_totals(pod, true), pod_totals(pod, false));
                    check_limit(limit, "Pod", &requests, &limits_in, &mut errors);
                }
                _ => {}
            }
        }
        if let Some(message) = aggregate(errors) {
            return Some(message);
        }
    }
    None
}

/// The plugin for a claim: the storage request against each PersistentVolumeClaim
/// limit's min and max.
pub fn validate_claim(ranges: &[Value], claim: &Value) -> Option<String> {
    for range in ranges {
        let mut errors = Vec::new();
        let requests = resources(at(claim, &["spec", "resources", "requests"]));
        for limit in limits(range)
            .iter()
            .filter(|l| limit_type(l) == "PersistentVolumeClaim")
        {
            for (name, enforced) in resources(limit.get("min")) {
                errors.extend(min_constraint(
                    "PersistentVolumeClaim",
                    &name,
                    &enforced,
                    &requests,
                    &Resources::new(),
                ));
            }
            for (name, enforced) in resources(limit.get("max")) {
                errors.extend(max_request_constraint(
                    "PersistentVolumeClaim",
                    &name,
                    &enforced,
                    &requests,
                ));
            }
        }
        if let Some(message) = aggregate(errors) {
            return Some(message);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        json!({"metadata": {"name": "lr"}, "spec": {"limits": limits}})
    }

    #[test]
    fn defaults_fill_what_containers_lack_and_are_noted() {
        let ranges = [range(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "0.1"}}]))];
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "app", "resources": {"limits": {"memory": "1Gi"}}}],
            "initContainers": [{"name": "setup"}]}});
        assert!(default_pod(&ranges, &mut pod));
        let app = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(app["requests"]["cpu"], "100m");
        assert_eq!(app["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu request for container app; cpu limit for container app; cpu request for init container setup; cpu, memory limit for init container setup"
        );
        let mut untouched = json!({"spec": {"containers": [{"name": "c"}]}});
        assert!(!default_pod(
            &[range(json!([{"type": "Pod", "max": {"cpu": "1"}}]))],
            &mut untouched
        ));
        assert!(untouched["metadata"].is_null());
    }

    #[test]
    fn constraints_use_upstreams_messages() {
        let ranges = [range(json!([{"type": "Container",
            "min": {"cpu": "100m"}, "max": {"memory": "1Gi"}, "maxLimitRequestRatio": {"cpu": "2"}}]))];
        let ok = json!({"spec": {"containers": [{"name": "c", "resources": {
            "requests": {"cpu": "200m"}, "limits": {"cpu": "400m", "memory": "512Mi"}}}]}});
        assert_eq!(validate_pod(&ranges, &ok), None);
        let small = json!({"spec": {"containers": [{"name": "c", "resources": {
            "requests": {"cpu": "50m"}, "limits": {"cpu": "50m", "memory": "512Mi"}}}]}});
        assert_eq!(
            validate_pod(&ranges, &small).unwrap(),
            "minimum cpu usage per Container is 100m, but request is 50m"
        );
        let bare = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            validate_pod(&ranges, &bare).unwrap(),
            "[minimum cpu usage per Container is 100m.  No request is specified, maximum memory usage per Container is 1Gi.  No limit is specified, cpu max limit to request ratio per Container is 2, but no request is specified or request is 0]"
        );
        let greedy = json!({"spec": {"containers": [{"name": "c", "resources": {
            "requests": {"cpu": "100m"}, "limits": {"cpu": "300m", "memory": "2Gi"}}}]}});
        assert_eq!(
            validate_pod(&ranges, &greedy).unwrap(),
            "[maximum memory usage per Container is 1Gi, but limit is 2Gi, cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000]"
        );
        let pod_max = [range(json!([{"type": "Pod", "max": {"cpu": "1"}}]))];
        let two = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "600m"}, "limits": {"cpu": "600m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "600m"}, "limits": {"cpu": "600m"}}}]}});
        assert_eq!(
            validate_pod(&pod_max, &two).unwrap(),
            "maximum cpu usage per Pod is 1, but limit is 1200m"
        );
        let claims = [range(
            json!([{"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}}]),
        )];
        let big = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
        assert_eq!(
            validate_claim(&claims, &big).unwrap(),
            "maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi"
        );
    }

    #[test]
    fn validation_orders_min_default_and_max() {
        let bad = range(json!([
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"},
             "default": {"cpu": "3"}, "defaultRequest": {"cpu": "4"}, "maxLimitRequestRatio": {"cpu": "500m"}},
            {"type": "Pod", "default": {"cpu": "1"}},
            {"type": "Pod"},
            {"type": "Bogus"},
        ]));
        let messages: Vec<String> = validate(&bad)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert!(messages.contains(&"spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1".to_string()), "{messages:?}");
        assert!(messages.contains(&"spec.limits[0].defaultRequest[cpu]: Invalid value: \"4\": default request value 4 is greater than default limit value 3".to_string()), "{messages:?}");
        assert!(messages.contains(&"spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: \"500m\": ratio 500m is less than 1".to_string()), "{messages:?}");
        assert!(
            messages.contains(
                &"spec.limits[1].default: Forbidden: may not be specified when `type` is 'Pod'"
                    .to_string()
            ),
            "{messages:?}"
        );
        assert!(
            messages.contains(&"spec.limits[2].type: Duplicate value: \"Pod\"".to_string()),
            "{messages:?}"
        );
        assert!(messages.contains(&"spec.limits[3].type: Invalid value: \"Bogus\": must be a standard limit type or fully qualified".to_string()), "{messages:?}");
        let good = range(
            json!([{"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}}]),
        );
        assert!(validate(&good).is_empty());
    }
}
