//! Table cells of the workload, config, storage, networking, RBAC and policy kinds,
//! following upstream's printers cell for cell (kubectl shows them verbatim).

use super::{array, created, name_of, or_none, s};
use crate::meta::{age, format_time, parse_time, str_at};
use crate::scale::{label_selector_string, workload_selector};
use serde_json::{Value, json};

fn at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    crate::fields::at(object, path)
}

fn int(object: &Value, path: &[&str]) -> Value {
    json!(at(object, path).and_then(Value::as_i64).unwrap_or(0))
}

/// `a,b` or `<none>`.
fn joined(items: Vec<String>) -> Value {
    if items.is_empty() {
        s("<none>")
    } else {
        s(items.join(","))
    }
}

/// The CONTAINERS and IMAGES cells of a pod template at `path`.
fn containers_images(object: &Value, path: &[&str]) -> [Value; 2] {
    let mut containers = path.to_vec();
    containers.extend(["spec", "containers"]);
    let list = array(object, &containers);
    let field = |key: &str| {
        list.iter()
            .map(|c| str_at(c, &[key]).unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    [s(field("name")), s(field("image"))]
}

/// The SELECTOR cell of a workload (a LabelSelector, or a plain map for
/// ReplicationControllers).
fn selector(object: &Value) -> Value {
    let text = workload_selector(object);
    if text.is_empty() {
        s("<none>")
    } else {
        s(text)
    }
}

fn map_pairs(map: Option<&Value>) -> Value {
    let mut pairs: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    joined(pairs)
}

fn deployment(d: &Value) -> Vec<Value> {
    let [containers, images] = containers_images(d, &["spec", "template"]);
    vec![
        name_of(d),
        s(format!(
            "{}/{}",
            int(d, &["status", "readyReplicas"]),
            int(d, &["spec", "replicas"])
        )),
        int(d, &["status", "updatedReplicas"]),
        int(d, &["status", "availableReplicas"]),
        s(created(d)),
        containers,
        images,
        selector(d),
    ]
}

fn replica_set(rs: &Value) -> Vec<Value> {
    let [containers, images] = containers_images(rs, &["spec", "template"]);
    vec![
        name_of(rs),
        int(rs, &["spec", "replicas"]),
        int(rs, &["status", "replicas"]),
        int(rs, &["status", "readyReplicas"]),
        s(created(rs)),
        containers,
        images,
        selector(rs),
    ]
}

fn stateful_set(sts: &Value) -> Vec<Value> {
    let [containers, images] = containers_images(sts, &["spec", "template"]);
    vec![
        name_of(sts),
        s(format!(
            "{}/{}",
            int(sts, &["status", "readyReplicas"]),
            int(sts, &["spec", "replicas"])
        )),
        s(created(sts)),
        containers,
        images,
    ]
}

fn daemon_set(ds: &Value) -> Vec<Value> {
    let [containers, images] = containers_images(ds, &["spec", "template"]);
    vec![
        name_of(ds),
        int(ds, &["status", "desiredNumberScheduled"]),
        int(ds, &["status", "currentNumberScheduled"]),
        int(ds, &["status", "numberReady"]),
        int(ds, &["status", "updatedNumberScheduled"]),
        int(ds, &["status", "numberAvailable"]),
        map_pairs(at(ds, &["spec", "template", "spec", "nodeSelector"])),
        s(created(ds)),
        containers,
        images,
        selector(ds),
    ]
}

fn condition_true(object: &Value, kind: &str) -> bool {
    array(object, &["status", "conditions"])
        .iter()
        .any(|c| str_at(c, &["type"]) == Some(kind) && str_at(c, &["status"]) == Some("True"))
}

/// The STATUS of a Job, as upstream's printer decides it from the conditions.
fn job_status(job: &Value) -> &'static str {
    if condition_true(job, "Complete") {
        "Complete"
    } else if condition_true(job, "Failed") {
        "Failed"
    } else if str_at(job, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else if condition_true(job, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if condition_true(job, "Suspended") {
        "Suspended"
    } else {
        "Running"
    }
}

fn job(job: &Value) -> Vec<Value> {
    let succeeded = int(job, &["status", "succeeded"]);
    let completions = match at(job, &["spec", "completions"]).and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = at(job, &["spec", "parallelism"])
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = str_at(job, &["status", "startTime"]).and_then(parse_time);
    let end = str_at(job, &["status", "completionTime"]).and_then(parse_time);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(start), None) => age(Some(&format_time(start))),
        (Some(start), Some(end)) => {
            crate::meta::human_duration(end.as_second() - start.as_second())
        }
    };
    let [containers, images] = containers_images(job, &["spec", "template"]);
    vec![
        name_of(job),
        s(job_status(job)),
        s(completions),
        s(duration),
        s(created(job)),
        containers,
        images,
        selector(job),
    ]
}

fn cron_job(cj: &Value) -> Vec<Value> {
    let [containers, images] = containers_images(cj, &["spec", "jobTemplate", "spec", "template"]);
    let last = match str_at(cj, &["status", "lastScheduleTime"]) {
        Some(t) => age(Some(t)),
        None => "<none>".to_string(),
    };
    let job_selector = at(cj, &["spec", "jobTemplate", "spec", "selector"])
        .map(label_selector_string)
        .filter(|t| !t.is_empty());
    vec![
        name_of(cj),
        s(str_at(cj, &["spec", "schedule"]).unwrap_or_default()),
        or_none(str_at(cj, &["spec", "timeZone"])),
        json!(
            at(cj, &["spec", "suspend"])
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        json!(array(cj, &["status", "active"]).len()),
        s(last),
        s(created(cj)),
        containers,
        images,
        or_none(job_selector.as_deref()),
    ]
}

fn count(object: &Value, key: &str) -> usize {
    object
        .get(key)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

/// Access modes the way kubectl abbreviates them.
fn access_modes(object: &Value, path: &[&str]) -> Value {
    let modes: Vec<String> = array(object, path)
        .iter()
        .filter_map(Value::as_str)
        .map(|m| {
            match m {
                "ReadWriteOnce" => "RWO",
                "ReadOnlyMany" => "ROX",
                "ReadWriteMany" => "RWX",
                "ReadWriteOncePod" => "RWOP",
                other => other,
            }
            .to_string()
        })
        .collect();
    s(modes.join(","))
}

fn claim(pvc: &Value) -> Vec<Value> {
    let phase = if str_at(pvc, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else {
        str_at(pvc, &["status", "phase"]).unwrap_or_default()
    };
    let bound = phase == "Bound";
    let storage = if bound {
        str_at(pvc, &["status", "capacity", "storage"]).unwrap_or_default()
    } else {
        ""
    };
    vec![
        name_of(pvc),
        s(phase),
        s(str_at(pvc, &["spec", "volumeName"]).unwrap_or_default()),
        s(storage),
        if bound {
            access_modes(pvc, &["status", "accessModes"])
        } else {
            s("")
        },
        or_none(str_at(pvc, &["spec", "storageClassName"])),
        or_none(str_at(pvc, &["spec", "volumeAttributesClassName"])),
        s(created(pvc)),
        or_none(str_at(pvc, &["spec", "volumeMode"])),
    ]
}

fn volume(pv: &Value) -> Vec<Value> {
    let claim = match at(pv, &["spec", "claimRef"]) {
        Some(r) => format!(
            "{}/{}",
            str_at(r, &["namespace"]).unwrap_or_default(),
            str_at(r, &["name"]).unwrap_or_default()
        ),
        None => String::new(),
    };
    let phase = if str_at(pv, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else {
        str_at(pv, &["status", "phase"]).unwrap_or_default()
    };
    vec![
        name_of(pv),
        s(str_at(pv, &["spec", "capacity", "storage"]).unwrap_or_default()),
        access_modes(pv, &["spec", "accessModes"]),
        s(str_at(pv, &["spec", "persistentVolumeReclaimPolicy"]).unwrap_or_default()),
        s(phase),
        s(claim),
        s(str_at(pv, &["spec", "storageClassName"]).unwrap_or_default()),
        or_none(str_at(pv, &["spec", "volumeAttributesClassName"])),
        s(str_at(pv, &["status", "reason"]).unwrap_or_default()),
        s(created(pv)),
        or_none(str_at(pv, &["spec", "volumeMode"])),
    ]
}

/// At most three addresses, then how many more there are, as upstream abbreviates.
fn abbreviate(addresses: Vec<String>) -> Value {
    if addresses.is_empty() {
        return s("<none>");
    }
    let shown = addresses
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if addresses.len() > 3 {
        s(format!("{shown} + {} more...", addresses.len() - 3))
    } else {
        s(shown)
    }
}

fn endpoints(ep: &Value) -> Vec<Value> {
    let mut addresses = Vec::new();
    for subset in array(ep, &["subsets"]) {
        let ports = array(subset, &["ports"]);
        for address in array(subset, &["addresses"]) {
            let ip = str_at(address, &["ip"]).unwrap_or_default();
            if ports.is_empty() {
                addresses.push(ip.to_string());
            }
            for port in ports {
                addresses.push(format!("{ip}:{}", int(port, &["port"])));
            }
        }
    }
    vec![name_of(ep), abbreviate(addresses), s(created(ep))]
}

fn endpoint_slice(slice: &Value) -> Vec<Value> {
    let ports: Vec<String> = array(slice, &["ports"])
        .iter()
        .map(|p| int(p, &["port"]).to_string())
        .collect();
    let addresses: Vec<String> = array(slice, &["endpoints"])
        .iter()
        .flat_map(|e| array(e, &["addresses"]).iter())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    vec![
        name_of(slice),
        s(str_at(slice, &["addressType"]).unwrap_or_default()),
        if ports.is_empty() {
            s("<unset>")
        } else {
            s(ports.join(","))
        },
        abbreviate(addresses),
        s(created(slice)),
    ]
}

fn ingress(ing: &Value) -> Vec<Value> {
    let hosts: Vec<String> = array(ing, &["spec", "rules"])
        .iter()
        .filter_map(|r| str_at(r, &["host"]).map(str::to_string))
        .collect();
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else {
        hosts.join(",")
    };
    let addresses: Vec<String> = array(ing, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| {
            str_at(i, &["ip"])
                .or_else(|| str_at(i, &["hostname"]))
                .map(str::to_string)
        })
        .collect();
    let ports = if array(ing, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name_of(ing),
        or_none(str_at(ing, &["spec", "ingressClassName"])),
        s(hosts),
        s(addresses.join(",")),
        s(ports),
        s(created(ing)),
    ]
}

fn ingress_class(class: &Value) -> Vec<Value> {
    let parameters = at(class, &["spec", "parameters"]).map(|p| {
        let group = str_at(p, &["apiGroup"]).unwrap_or_default();
        let kind = str_at(p, &["kind"]).unwrap_or_default();
        let name = str_at(p, &["name"]).unwrap_or_default();
        if group.is_empty() {
            format!("{kind}/{name}")
        } else {
            format!("{kind}.{group}/{name}")
        }
    });
    vec![
        name_of(class),
        s(str_at(class, &["spec", "controller"]).unwrap_or_default()),
        or_none(parameters.as_deref()),
        s(created(class)),
    ]
}

fn network_policy(np: &Value) -> Vec<Value> {
    let text = at(np, &["spec", "podSelector"])
        .map(label_selector_string)
        .unwrap_or_default();
    vec![
        name_of(np),
        s(if text.is_empty() {
            "<none>".to_string()
        } else {
            text
        }),
        s(created(np)),
    ]
}

fn created_at(object: &Value) -> Vec<Value> {
    vec![
        name_of(object),
        s(str_at(object, &["metadata", "creationTimestamp"]).unwrap_or_default()),
    ]
}

fn binding(rb: &Value) -> Vec<Value> {
    let subjects = |kind: &str| {
        let names: Vec<String> = array(rb, &["subjects"])
            .iter()
            .filter(|s| str_at(s, &["kind"]) == Some(kind))
            .map(|s| {
                let name = str_at(s, &["name"]).unwrap_or_default();
                match (kind, str_at(s, &["namespace"])) {
                    ("ServiceAccount", Some(ns)) => format!("{ns}/{name}"),
                    _ => name.to_string(),
                }
            })
            .collect();
        s(names.join(", "))
    };
    vec![
        name_of(rb),
        s(format!(
            "{}/{}",
            str_at(rb, &["roleRef", "kind"]).unwrap_or_default(),
            str_at(rb, &["roleRef", "name"]).unwrap_or_default()
        )),
        s(created(rb)),
        subjects("User"),
        subjects("Group"),
        subjects("ServiceAccount"),
    ]
}

fn storage_class(sc: &Value) -> Vec<Value> {
    let mut name = str_at(sc, &["metadata", "name"])
        .unwrap_or_default()
        .to_string();
    let annotations = at(sc, &["metadata", "annotations"]);
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|k| annotations.and_then(|a| a.get(*k)) == Some(&json!("true")));
    if is_default {
        name.push_str(" (default)");
    }
    vec![
        s(name),
        s(str_at(sc, &["provisioner"]).unwrap_or_default()),
        s(str_at(sc, &["reclaimPolicy"]).unwrap_or("Delete")),
        s(str_at(sc, &["volumeBindingMode"]).unwrap_or("Immediate")),
        json!(
            sc.get("allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        s(created(sc)),
    ]
}

fn priority_class(pc: &Value) -> Vec<Value> {
    vec![
        name_of(pc),
        int(pc, &["value"]),
        json!(
            pc.get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        ),
        s(created(pc)),
        or_none(str_at(pc, &["preemptionPolicy"])),
    ]
}

/// An autoscaling/v2 HPA's row.
pub fn hpa(hpa: &Value) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(hpa, &["spec", "scaleTargetRef", "kind"]).unwrap_or_default(),
        str_at(hpa, &["spec", "scaleTargetRef", "name"]).unwrap_or_default()
    );
    let current = array(hpa, &["status", "currentMetrics"]);
    let targets: Vec<String> = array(hpa, &["spec", "metrics"])
        .iter()
        .map(|m| {
            let name = str_at(m, &["resource", "name"]).unwrap_or("<metric>");
            let target = at(m, &["resource", "target", "averageUtilization"])
                .map(|v| format!("{v}%"))
                .unwrap_or_else(|| "<unset>".to_string());
            let now = current
                .iter()
                .find(|c| str_at(c, &["resource", "name"]) == Some(name))
                .and_then(|c| at(c, &["resource", "current", "averageUtilization"]))
                .map(|v| format!("{v}%"))
                .unwrap_or_else(|| "<unknown>".to_string());
            format!("{name}: {now}/{target}")
        })
        .collect();
    vec![
        name_of(hpa),
        s(reference),
        s(if targets.is_empty() {
            "<none>".to_string()
        } else {
            targets.join(", ")
        }),
        json!(
            at(hpa, &["spec", "minReplicas"])
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
        int(hpa, &["spec", "maxReplicas"]),
        int(hpa, &["status", "currentReplicas"]),
        s(created(hpa)),
    ]
}

fn int_or_string(value: Option<&Value>) -> Value {
    match value {
        Some(Value::String(t)) => s(t.clone()),
        Some(Value::Number(n)) => s(n.to_string()),
        _ => s("N/A"),
    }
}

fn pdb(pdb: &Value) -> Vec<Value> {
    vec![
        name_of(pdb),
        int_or_string(at(pdb, &["spec", "minAvailable"])),
        int_or_string(at(pdb, &["spec", "maxUnavailable"])),
        int(pdb, &["status", "disruptionsAllowed"]),
        s(created(pdb)),
    ]
}

fn pod_template(pt: &Value) -> Vec<Value> {
    let [containers, images] = containers_images(pt, &["template"]);
    vec![
        name_of(pt),
        containers,
        images,
        map_pairs(at(pt, &["template", "metadata", "labels"])),
    ]
}

fn controller_revision(cr: &Value) -> Vec<Value> {
    let controller = array(cr, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| o.get("controller") == Some(&json!(true)))
        .map(|o| {
            let kind = str_at(o, &["kind"]).unwrap_or_default().to_lowercase();
            let group = str_at(o, &["apiVersion"])
                .and_then(|v| v.split_once('/'))
                .map(|(g, _)| format!(".{g}"))
                .unwrap_or_default();
            format!("{kind}{group}/{}", str_at(o, &["name"]).unwrap_or_default())
        });
    vec![
        name_of(cr),
        or_none(controller.as_deref()),
        int(cr, &["revision"]),
        s(created(cr)),
    ]
}

fn resource_quota(quota: &Value) -> Vec<Value> {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    if let Some(hard) = at(quota, &["status", "hard"]).and_then(Value::as_object) {
        let mut keys: Vec<&String> = hard.keys().collect();
        keys.sort();
        for key in keys {
            let used = at(quota, &["status", "used", key])
                .and_then(Value::as_str)
                .unwrap_or("0");
            let limit = hard[key].as_str().unwrap_or_default();
            let text = format!("{key}: {used}/{limit}");
            if key.starts_with("limits.") {
                limits.push(text);
            } else {
                requests.push(text);
            }
        }
    }
    vec![
        name_of(quota),
        s(created(quota)),
        s(requests.join(", ")),
        s(limits.join(", ")),
    ]
}

/// The Healthy condition of a ComponentStatus: STATUS, MESSAGE and ERROR.
fn component_status(cs: &Value) -> Vec<Value> {
    let healthy = array(cs, &["conditions"])
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Healthy"));
    let text = |key: &str| s(healthy.and_then(|c| str_at(c, &[key])).unwrap_or_default());
    let status = match healthy.and_then(|c| str_at(c, &["status"])) {
        Some("True") => "Healthy",
        Some(_) => "Unhealthy",
        None => "Unknown",
    };
    vec![name_of(cs), s(status), text("message"), text("error")]
}

fn api_service(service: &Value) -> Vec<Value> {
    let backend = match at(service, &["spec", "service"]) {
        Some(svc) if !svc.is_null() => format!(
            "{}/{}",
            str_at(svc, &["namespace"]).unwrap_or_default(),
            str_at(svc, &["name"]).unwrap_or_default()
        ),
        _ => "Local".to_string(),
    };
    let available = array(service, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == Some("Available"));
    let available = match available {
        None => "Unknown".to_string(),
        Some(c) if str_at(c, &["status"]) == Some("True") => "True".to_string(),
        Some(c) => format!(
            "{} ({})",
            str_at(c, &["status"]).unwrap_or_default(),
            str_at(c, &["reason"]).unwrap_or_default()
        ),
    };
    vec![
        name_of(service),
        s(backend),
        s(available),
        s(created(service)),
    ]
}

fn flow_schema(fs: &Value) -> Vec<Value> {
    let method = str_at(fs, &["spec", "distinguisherMethod", "type"]);
    let dangling = array(fs, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == Some("Dangling"))
        .and_then(|c| str_at(c, &["status"]));
    let missing = match dangling {
        Some("True") => "True",
        Some("False") => "False",
        _ => "?",
    };
    vec![
        name_of(fs),
        s(str_at(fs, &["spec", "priorityLevelConfiguration", "name"]).unwrap_or_default()),
        int(fs, &["spec", "matchingPrecedence"]),
        or_none(method),
        s(created(fs)),
        s(missing),
    ]
}

fn priority_level(pl: &Value) -> Vec<Value> {
    let none = || s("<none>");
    let limited = at(pl, &["spec", "limited"]).filter(|l| !l.is_null());
    let shares = limited.map_or_else(none, |l| int(l, &["nominalConcurrencyShares"]));
    let queuing = limited
        .and_then(|l| at(l, &["limitResponse", "queuing"]))
        .filter(|q| !q.is_null());
    let queue = |key: &str| queuing.map_or_else(none, |q| int(q, &[key]));
    vec![
        name_of(pl),
        s(str_at(pl, &["spec", "type"]).unwrap_or_default()),
        shares,
        queue("queues"),
        queue("handSize"),
        queue("queueLengthLimit"),
        s(created(pl)),
    ]
}

/// `apiVersion/kind` of a policy's paramKind, or `<unset>`.
fn param_kind(policy: &Value) -> Value {
    match at(policy, &["spec", "paramKind"]).filter(|p| !p.is_null()) {
        Some(kind) => s(format!(
            "{}/{}",
            str_at(kind, &["apiVersion"]).unwrap_or_default(),
            str_at(kind, &["kind"]).unwrap_or_default()
        )),
        None => s("<unset>"),
    }
}

/// A binding's paramRef: `namespace/name`, `name`, or `<unset>`.
fn param_ref(binding: &Value) -> Value {
    let Some(param) = at(binding, &["spec", "paramRef"]).filter(|p| !p.is_null()) else {
        return s("<unset>");
    };
    let name = str_at(param, &["name"]).unwrap_or("*");
    match str_at(param, &["namespace"]).filter(|ns| !ns.is_empty()) {
        Some(ns) => s(format!("{ns}/{name}")),
        None => s(name),
    }
}

/// pending, allocated or allocated,reserved; deleted first when it is going away.
fn resource_claim(claim: &Value) -> Vec<Value> {
    let mut states = Vec::new();
    let deleting = str_at(claim, &["metadata", "deletionTimestamp"]).is_some();
    if deleting {
        states.push("deleted");
    }
    if at(claim, &["status", "allocation"]).is_none_or(Value::is_null) {
        if !deleting {
            states.push("pending");
        }
    } else {
        states.push("allocated");
        if !array(claim, &["status", "reservedFor"]).is_empty() {
            states.push("reserved");
        }
    }
    vec![name_of(claim), s(states.join(",")), s(created(claim))]
}

/// Cells for `group`/`kind`, or None when the kind prints only NAME and AGE.
pub fn cells(group: &str, kind: &str, object: &Value) -> Option<Vec<Value>> {
    Some(match (group, kind) {
        ("apps", "Deployment") => deployment(object),
        ("apps", "ReplicaSet") | ("", "ReplicationController") => replica_set(object),
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps", "DaemonSet") => daemon_set(object),
        ("apps", "ControllerRevision") => controller_revision(object),
        ("batch", "Job") => job(object),
        ("batch", "CronJob") => cron_job(object),
        ("", "Secret") => vec![
            name_of(object),
            s(str_at(object, &["type"]).unwrap_or_default()),
            json!(count(object, "data")),
            s(created(object)),
        ],
        ("", "ServiceAccount") => vec![
            name_of(object),
            json!(array(object, &["secrets"]).len()),
            s(created(object)),
        ],
        ("", "PersistentVolumeClaim") => claim(object),
        ("", "PersistentVolume") => volume(object),
        ("", "Endpoints") => endpoints(object),
        ("", "PodTemplate") => pod_template(object),
        ("", "ResourceQuota") => resource_quota(object),
        ("", "LimitRange") => created_at(object),
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(object),
        ("networking.k8s.io", "Ingress") => ingress(object),
        ("networking.k8s.io", "IngressClass") => ingress_class(object),
        ("networking.k8s.io", "NetworkPolicy") => network_policy(object),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => created_at(object),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => binding(object),
        ("storage.k8s.io", "StorageClass") => storage_class(object),
        ("storage.k8s.io", "VolumeAttachment") => vec![
            name_of(object),
            s(str_at(object, &["spec", "attacher"]).unwrap_or_default()),
            s(str_at(object, &["spec", "source", "persistentVolumeName"]).unwrap_or_default()),
            s(str_at(object, &["spec", "nodeName"]).unwrap_or_default()),
            json!(
                at(object, &["status", "attached"])
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            s(created(object)),
        ],
        ("storage.k8s.io", "CSINode") => vec![
            name_of(object),
            json!(array(object, &["spec", "drivers"]).len()),
            s(created(object)),
        ],
        ("scheduling.k8s.io", "PriorityClass") => priority_class(object),
        ("policy", "PodDisruptionBudget") => pdb(object),
        ("", "ComponentStatus") => component_status(object),
        ("apiregistration.k8s.io", "APIService") => api_service(object),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => flow_schema(object),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => priority_level(object),
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
        ) => vec![
            name_of(object),
            json!(array(object, &["webhooks"]).len()),
            s(created(object)),
        ],
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => vec![
            name_of(object),
            json!(array(object, &["spec", "validations"]).len()),
            param_kind(object),
            s(created(object)),
        ],
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy") => vec![
            name_of(object),
            json!(array(object, &["spec", "mutations"]).len()),
            param_kind(object),
            s(created(object)),
        ],
        (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding" | "MutatingAdmissionPolicyBinding",
        ) => vec![
            name_of(object),
            s(str_at(object, &["spec", "policyName"]).unwrap_or_default()),
            param_ref(object),
            s(created(object)),
        ],
        ("resource.k8s.io", "ResourceClaim") => resource_claim(object),
        ("resource.k8s.io", "ResourceSlice") => vec![
            name_of(object),
            s(str_at(object, &["spec", "nodeName"]).unwrap_or_default()),
            s(str_at(object, &["spec", "driver"]).unwrap_or_default()),
            s(str_at(object, &["spec", "pool", "name"]).unwrap_or_default()),
            s(created(object)),
        ],
        ("storage.k8s.io", "VolumeAttributesClass") => vec![
            name_of(object),
            s(str_at(object, &["driverName"]).unwrap_or_default()),
            s(created(object)),
        ],
        ("node.k8s.io", "RuntimeClass") => vec![
            name_of(object),
            s(str_at(object, &["handler"]).unwrap_or_default()),
            s(created(object)),
        ],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use crate::registry::Registry;
    use crate::table::{IncludeObject, table};
    use serde_json::{Value, json};

    fn row(group: &str, version: &str, plural: &str, object: Value) -> (Vec<String>, Vec<Value>) {
        let reg = Registry::default();
        let res = reg.lookup(group, version, plural).unwrap();
        let t = table(res, &[object], json!({}), IncludeObject::Metadata);
        let names = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["priority"] == 0)
            .map(|c| c["name"].as_str().unwrap().to_uppercase())
            .collect();
        let cells = t["rows"][0]["cells"].as_array().unwrap().clone();
        assert_eq!(
            cells.len(),
            t["columnDefinitions"].as_array().unwrap().len()
        );
        (names, cells)
    }

    #[test]
    fn deployment_row() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let (names, c) = row("apps", "v1", "deployments", d);
        assert_eq!(names, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
        assert_eq!(c[1], "2/3");
        assert_eq!((c[2].clone(), c[3].clone()), (json!(3), json!(2)));
        assert_eq!(c[5], "nginx,side");
        assert_eq!(c[6], "nginx:1,busybox");
        assert_eq!(c[7], "app=web");
    }

    #[test]
    fn job_and_cron_job_rows() {
        let j = json!({"metadata": {"name": "pi"}, "spec": {"completions": 1},
            "status": {"succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:07Z",
                "conditions": [{"type": "Complete", "status": "True"}]}});
        let (names, c) = row("batch", "v1", "jobs", j);
        assert_eq!(names, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]);
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[3].as_str()),
            (Some("Complete"), Some("1/1"), Some("7s"))
        );
        let cj = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/5 * * * *", "suspend": false}});
        let (names, c) = row("batch", "v1", "cronjobs", cj);
        assert_eq!(
            names,
            [
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE"
            ]
        );
        assert_eq!(c[2], "<none>");
        assert_eq!(c[3], false);
        assert_eq!(c[5], "<none>");
    }

    #[test]
    fn config_storage_and_rbac_rows() {
        let (names, c) = row(
            "",
            "v1",
            "secrets",
            json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "", "b": ""}}),
        );
        assert_eq!(names, ["NAME", "TYPE", "DATA", "AGE"]);
        assert_eq!(c[2], 2);
        let sc = json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"});
        let (_, c) = row("storage.k8s.io", "v1", "storageclasses", sc);
        assert_eq!(c[0], "standard (default)");
        assert_eq!(c[3], "WaitForFirstConsumer");
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "ns"}]});
        let (names, c) = row("rbac.authorization.k8s.io", "v1", "rolebindings", rb);
        assert_eq!(names, ["NAME", "ROLE", "AGE"]);
        assert_eq!(c[1], "Role/reader");
        assert_eq!(c[5], "ns/default");
        let (names, _) = row(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            json!({"metadata": {"name": "r"}}),
        );
        assert_eq!(names, ["NAME", "CREATED AT"]);
        let hpa = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50}});
        let (_, c) = row("autoscaling", "v1", "horizontalpodautoscalers", hpa);
        assert_eq!(c[1], "Deployment/web");
        assert_eq!(c[2], "cpu: <unknown>/50%");
    }
}
