//! Pod defaulting and validation: the fields a real API server fills in on create
//! (so `kubectl get pod -o yaml` looks as users expect and the kubelet can rely on
//! them) and the checks that turn a broken pod into a 422 with field causes.

use super::meta::child_mut;
use super::quantity::Quantity;
use super::status::Cause;
use super::validation::is_dns1123_label;
use serde_json::{Map, Value, json};

/// Upstream's defaults for a pod (what decoding fills in, before the field manager
/// records who set what), applied in place. Only absent fields are filled, so user
/// choices and updates survive. What admission adds afterwards is `admit_pod`.
pub fn default_pod(pod: &mut Value) {
    default_pod_or_template(pod, true);
}

/// The defaults of a pod template's spec (workloads, PodTemplate): a pod's, except
/// that upstream leaves two to pods only: `enableServiceLinks`, and requests filled
/// from limits (a template keeps exactly the resources its author wrote).
pub fn default_template_spec(pod: &mut Value) {
    default_pod_or_template(pod, false);
}

fn default_pod_or_template(pod: &mut Value, is_pod: bool) {
    let Some(pod_map) = pod.as_object_mut() else {
        return;
    };
    let spec = child_mut(pod_map, "spec");
    let defaults = [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("securityContext", json!({})),
    ];
    for (key, value) in defaults {
        spec.entry(key).or_insert(value);
    }
    if is_pod {
        spec.entry("enableServiceLinks").or_insert(json!(true));
    }
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                default_container(container, is_pod);
            }
        }
    }
    let qos = qos_class(spec);
    let status = child_mut(pod_map, "status");
    status.entry("phase").or_insert(json!("Pending"));
    status.insert("qosClass".into(), json!(qos));
}

/// The taints a node gets when it stops being Ready or stops reporting; every pod
/// tolerates them for 5 minutes unless it says otherwise.
const DEFAULT_TOLERATED_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// What upstream's pod admission plugins add to a pod being created or updated (`old`
/// is the stored pod on update), besides the priority a new pod gets from its class
/// (the API server's `priority` module). They run after the field manager, so these
/// fields are in no one's `managedFields`:
/// - Priority, on update: the stored `priority` and `preemptionPolicy` carry over to a
///   write that leaves them out (both are immutable).
/// - DefaultTolerationSeconds: each of the two node-failure taints that no toleration
///   already covers gets a `NoExecute` toleration of 300 s.
pub fn admit_pod(pod: &mut Value, old: Option<&Value>) {
    let Some(pod_map) = pod.as_object_mut() else {
        return;
    };
    let spec = child_mut(pod_map, "spec");
    let stored = old.and_then(|old| old.get("spec"));
    for key in ["priority", "preemptionPolicy"] {
        if !spec.contains_key(key)
            && let Some(value) = stored.and_then(|s| s.get(key))
        {
            spec.insert(key.into(), value.clone());
        }
    }
    let covered = |taint: &str, tolerations: &[Value]| {
        tolerations.iter().any(|t| {
            let field = |name| t.get(name).and_then(Value::as_str).unwrap_or_default();
            (field("key") == taint || field("key").is_empty())
                && (field("effect") == "NoExecute" || field("effect").is_empty())
        })
    };
    let mut tolerations = match spec.remove("tolerations") {
        Some(Value::Array(tolerations)) => tolerations,
        // Not a list: validation reports it; leave it as it came.
        Some(other) => {
            spec.insert("tolerations".into(), other);
            return;
        }
        None => Vec::new(),
    };
    for taint in DEFAULT_TOLERATED_TAINTS {
        if !covered(taint, &tolerations) {
            tolerations.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    spec.insert("tolerations".into(), Value::Array(tolerations));
}

fn default_container(container: &mut Map<String, Value>, requests_from_limits: bool) {
    if !container.contains_key("imagePullPolicy") {
        let image = container
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        container.insert("imagePullPolicy".into(), json!(default_pull_policy(image)));
    }
    container
        .entry("terminationMessagePath")
        .or_insert(json!("/dev/termination-log"));
    container
        .entry("terminationMessagePolicy")
        .or_insert(json!("File"));
    let resources = child_mut(container, "resources");
    // Upstream defaults a missing request to the limit for the same resource.
    if let Some(Value::Object(limits)) = resources
        .get("limits")
        .filter(|_| requests_from_limits)
        .cloned()
    {
        let requests = child_mut(resources, "requests");
        for (name, quantity) in limits {
            requests.entry(name).or_insert(quantity);
        }
        if requests.is_empty() {
            resources.remove("requests");
        }
    }
    if let Some(Value::Array(ports)) = container.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.entry("protocol").or_insert(json!("TCP"));
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` for any other tag or digest.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // A tag is after the last `:` that follows the last `/` (a registry port is not a tag).
    let last_part = image.rsplit('/').next().unwrap_or(image);
    match last_part.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn quantity_of(resources: Option<&Value>, kind: &str, name: &str) -> Option<Quantity> {
    match resources?.get(kind)?.get(name)? {
        Value::String(s) => Quantity::parse(s),
        Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    }
}

/// The pod's QoS class from its containers' cpu and memory requests and limits.
pub fn qos_class(spec: &Map<String, Value>) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any_set = false;
    let mut guaranteed = !containers.is_empty();
    for container in containers {
        let resources = container.get("resources");
        for name in ["cpu", "memory"] {
            let request = quantity_of(resources, "requests", name);
            let limit = quantity_of(resources, "limits", name);
            any_set |= request.is_some() || limit.is_some();
            // Guaranteed needs a limit for both, with the request (defaulted to the limit) equal.
            if limit.is_none() || request.is_some_and(|r| Some(r) != limit) {
                guaranteed = false;
            }
        }
    }
    if !any_set {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

/// Field problems of a (defaulted) pod.
pub fn validate_pod(pod: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = pod.get("spec");
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => causes.push(Cause::required("spec.containers", "")),
        Some(list) if list.is_empty() => causes.push(Cause::required("spec.containers", "")),
        Some(_) => {}
    }
    let mut seen = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(items) = spec.and_then(|s| s.get(list)).and_then(Value::as_array) else {
            continue;
        };
        for (i, container) in items.iter().enumerate() {
            let at = format!("spec.{list}[{i}]");
            match container.get("name").and_then(Value::as_str) {
                None | Some("") => causes.push(Cause::required(format!("{at}.name"), "")),
                Some(name) if !is_dns1123_label(name) => {
                    causes.extend(super::validation::validate_name(
                        super::registry::NameRule::Label,
                        name,
                        &format!("{at}.name"),
                    ))
                }
                Some(name) if seen.contains(&name) => {
                    causes.push(Cause::duplicate(format!("{at}.name"), name))
                }
                Some(name) => seen.push(name),
            }
            match container.get("image").and_then(Value::as_str) {
                None | Some("") => causes.push(Cause::required(format!("{at}.image"), "")),
                Some(_) => {}
            }
            if let Some(policy) = container.get("imagePullPolicy").and_then(Value::as_str)
                && !PULL_POLICIES.contains(&policy)
            {
                causes.push(Cause::unsupported(
                    format!("{at}.imagePullPolicy"),
                    policy,
                    PULL_POLICIES,
                ));
            }
        }
    }
    if let Some(policy) = spec
        .and_then(|s| s.get("restartPolicy"))
        .and_then(Value::as_str)
        && !RESTART_POLICIES.contains(&policy)
    {
        causes.push(Cause::unsupported(
            "spec.restartPolicy",
            policy,
            RESTART_POLICIES,
        ));
    }
    causes
}

/// What an ephemeral container may not set (upstream's `validateEphemeralContainers`):
/// it runs once, beside the others, with no ports, probes or resources of its own.
const EPHEMERAL_FORBIDDEN: &[&str] = &[
    "lifecycle",
    "livenessProbe",
    "ports",
    "readinessProbe",
    "resizePolicy",
    "resources",
    "restartPolicy",
    "startupProbe",
];

/// Defaults for the ephemeral containers of a pod, as for its other containers.
pub fn default_ephemeral_containers(pod: &mut Value) {
    let Some(Value::Array(list)) = pod
        .get_mut("spec")
        .and_then(|s| s.get_mut("ephemeralContainers"))
    else {
        return;
    };
    for container in list.iter_mut().filter_map(Value::as_object_mut) {
        default_container(container, false);
        // An ephemeral container has no resources; the default leaves none.
        if container
            .get("resources")
            .is_some_and(|r| r.as_object().is_some_and(Map::is_empty))
        {
            container.remove("resources");
        }
    }
}

fn containers_of<'a>(pod: &'a Value, list: &str) -> &'a [Value] {
    pod.get("spec")
        .and_then(|s| s.get(list))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// An update through `pods/ephemeralcontainers`: existing ephemeral containers stay
/// as they are, new ones are complete and named uniquely, and name their target.
pub fn validate_ephemeral_containers_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let path = "spec.ephemeralContainers";
    let before = containers_of(old, "ephemeralContainers");
    let after = containers_of(new, "ephemeralContainers");
    let name = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    for previous in before {
        match after.iter().find(|c| name(c) == name(previous)) {
            None => causes.push(Cause::forbidden(
                path,
                &format!(
                    "existing ephemeral containers {:?} may not be removed\n",
                    name(previous)
                ),
            )),
            Some(current) if current != previous => causes.push(Cause::forbidden(
                path,
                &format!(
                    "existing ephemeral containers {:?} may not be changed\n",
                    name(previous)
                ),
            )),
            Some(_) => {}
        }
    }
    let mut names: Vec<String> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| containers_of(new, list))
        .map(name)
        .collect();
    let targets = names.clone();
    for (i, container) in after.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let this = name(container);
        if before.iter().any(|c| name(c) == this) {
            names.push(this);
            continue;
        }
        if this.is_empty() {
            causes.push(Cause::required(format!("{at}.name"), ""));
        } else if !is_dns1123_label(&this) {
            causes.extend(super::validation::validate_name(
                super::registry::NameRule::Label,
                &this,
                &format!("{at}.name"),
            ));
        } else if names.contains(&this) {
            causes.push(Cause::duplicate(format!("{at}.name"), &this));
        }
        names.push(this);
        if container
            .get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("{at}.image"), ""));
        }
        for field in EPHEMERAL_FORBIDDEN {
            let set = match container.get(*field) {
                None | Some(Value::Null) => false,
                Some(Value::Object(map)) => !map.is_empty(),
                Some(Value::Array(list)) => !list.is_empty(),
                Some(_) => true,
            };
            if set {
                causes.push(Cause::forbidden(
                    format!("{at}.{field}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        if let Some(target) = container
            .get("targetContainerName")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            && !targets.iter().any(|t| t == target)
        {
            causes.push(Cause {
                reason: "FieldValueNotFound",
                field: format!("{at}.targetContainerName"),
                message: format!("Not found: {}", Value::from(target)),
            });
        }
    }
    causes
}

/// The spec with the fields an update may change blanked out, for comparing.
fn immutable_part(spec: Option<&Value>) -> Value {
    let mut spec = spec.cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(containers)) = map.get_mut(list) {
                for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                    container.remove("image");
                }
            }
        }
        for key in [
            "activeDeadlineSeconds",
            "tolerations",
            "schedulingGates",
            "terminationGracePeriodSeconds",
        ] {
            map.remove(key);
        }
    }
    spec
}

/// Upstream's rule: a pod's spec is fixed once created, except images, the active
/// deadline, added tolerations and the removal of scheduling gates.
pub fn validate_pod_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    // An unchanged spec (most updates touch metadata or status) breaks no rule.
    if old.get("spec") == new.get("spec") {
        return causes;
    }
    if immutable_part(old.get("spec")) != immutable_part(new.get("spec")) {
        causes.push(Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    let tolerations = |pod: &Value| {
        pod.get("spec")
            .and_then(|s| s.get("tolerations"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let new_tolerations = tolerations(new);
    if tolerations(old)
        .iter()
        .any(|t| !new_tolerations.contains(t))
    {
        causes.push(Cause::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_like_upstream() {
        let mut pod = json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "a", "image": "busybox"},
                {"name": "b", "image": "registry:5000/x:1.0", "ports": [{"containerPort": 80}]}
            ]}
        });
        default_pod(&mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["containers"][1]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            spec["containers"][0]["terminationMessagePath"],
            "/dev/termination-log"
        );
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn admission_adds_node_failure_tolerations() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        admit_pod(&mut pod, None);
        let keys: Vec<&str> = pod["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, DEFAULT_TOLERATED_TAINTS);
        // Admitting again (an update) adds nothing.
        let before = pod.clone();
        admit_pod(&mut pod, Some(&before));
        assert_eq!(pod, before);

        // A toleration of one taint (any effect) covers it; the other is still added.
        let mut pod = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists"},
            {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]}});
        admit_pod(&mut pod, None);
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 3);
        assert_eq!(tolerations[2]["key"], "node.kubernetes.io/unreachable");
        // A toleration of every NoExecute taint covers both.
        let mut pod =
            json!({"spec": {"tolerations": [{"operator": "Exists", "effect": "NoExecute"}]}});
        admit_pod(&mut pod, None);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn admission_on_update_carries_the_stored_priority() {
        let old = json!({"spec": {"priority": 1000, "preemptionPolicy": "Never"}});
        let mut new = json!({"spec": {}});
        admit_pod(&mut new, Some(&old));
        assert_eq!(new["spec"]["priority"], 1000);
        assert_eq!(new["spec"]["preemptionPolicy"], "Never");
        // A stored pod without them (written before admission existed) gets none.
        let mut new = json!({"spec": {}});
        admit_pod(&mut new, Some(&json!({"spec": {}})));
        assert!(new["spec"].get("priority").is_none());
    }

    #[test]
    fn templates_get_no_pod_only_defaults() {
        let mut template = json!({"spec": {"containers": [
            {"name": "a", "image": "x", "resources": {"limits": {"cpu": "1"}}}
        ]}});
        default_template_spec(&mut template);
        assert_eq!(template["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(template["spec"].get("enableServiceLinks").is_none());
        assert!(
            template["spec"]["containers"][0]["resources"]
                .get("requests")
                .is_none()
        );
    }

    #[test]
    fn pull_policy() {
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn qos_classes() {
        let qos = |containers: Value| {
            let mut pod = json!({"spec": {"containers": containers}});
            default_pod(&mut pod);
            pod["status"]["qosClass"].as_str().unwrap().to_string()
        };
        assert_eq!(
            qos(
                json!([{"name": "a", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}])
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos(
                json!([{"name": "a", "image": "i", "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}}])
            ),
            "Burstable"
        );
        assert_eq!(
            qos(
                json!([{"name": "a", "image": "i", "resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}])
            ),
            "Guaranteed"
        );
        assert_eq!(qos(json!([{"name": "a", "image": "i"}])), "BestEffort");
    }

    #[test]
    fn updates_may_only_change_images() {
        let mut old = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}]}});
        default_pod(&mut old);
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("x:2");
        assert!(validate_pod_update(&old, &new).is_empty());
        new["spec"]["containers"][0]["command"] = json!(["sh"]);
        assert_eq!(validate_pod_update(&old, &new)[0].field, "spec");
        let mut rebound = old.clone();
        rebound["spec"]["nodeName"] = json!("n1");
        assert!(!validate_pod_update(&old, &rebound).is_empty());
    }

    #[test]
    fn validation_causes() {
        let pod = json!({"spec": {"containers": [{"image": "x"}, {"name": "b"}, {"name": "b", "image": "y"}]}});
        let fields: Vec<String> = validate_pod(&pod).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec![
                "spec.containers[0].name",
                "spec.containers[1].image",
                "spec.containers[2].name"
            ]
        );
        assert_eq!(
            validate_pod(&json!({"spec": {}}))[0].field,
            "spec.containers"
        );
    }
}
