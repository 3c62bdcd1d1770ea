//! ResourceQuota: what objects cost (upstream's quota evaluators), which quotas an
//! object falls under (scopes), the admission check upstream's ResourceQuota plugin
//! makes on every create, and the usage the quota controller computes. The API
//! server's admission and the controller-manager's quota controller share this, so
//! they agree on every number. Behaviour and messages follow upstream's
//! pkg/quota/v1/evaluator/core, staging/src/k8s.io/apiserver/pkg/quota/v1 and
//! plugin/pkg/admission/resourcequota.

use super::fields::at;
use super::limitrange::Resources;
use super::meta::{parse_time, str_at};
use super::quantity::Amount;
use super::status::Cause;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Resource names a quota may name without a `/` (upstream's standardQuotaResources).
const STANDARD: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

/// Counted in whole units: a quota for them must be an integer.
const INTEGER: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

const SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

/// The resources of a pod that quota tracks (upstream's podResources).
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

const SERVICE_RESOURCES: &[&str] = &[
    "count/services",
    "services",
    "services.loadbalancers",
    "services.nodeports",
];

const CLAIM_RESOURCES: &[&str] = &[
    "count/persistentvolumeclaims",
    "persistentvolumeclaims",
    "requests.storage",
];

/// The storage-class-specific quota names end in these, after
/// `<class>.storageclass.storage.k8s.io/`.
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Core resources whose object count quota also answers to a plain name.
const LEGACY_ALIASES: &[(&str, &str)] = &[
    ("configmaps", "configmaps"),
    ("resourcequotas", "resourcequotas"),
    ("replicationcontrollers", "replicationcontrollers"),
    ("secrets", "secrets"),
];

/// Upstream's `ValidateResourceQuota` for the spec (names, values, scopes).
pub fn validate(quota: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let hard = at(quota, &["spec", "hard"]).and_then(Value::as_object);
    for (name, value) in hard.into_iter().flatten() {
        let field = format!("spec.hard[{name}]");
        if !name.contains('/') && !is_standard(name) {
            causes.push(Cause::invalid(
                &field,
                name,
                "must be a standard resource for quota",
            ));
        }
        let text = value
            .as_str()
            .map(str::to_string)
            .or_else(|| value.as_number().map(ToString::to_string));
        // Messages show the quantity as upstream's decoder leaves it: canonical.
        match text.as_deref().and_then(Amount::parse) {
            None => causes.push(super::fields::invalid_value(
                &field,
                value,
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            )),
            Some(q) if q.quantity.is_negative() => causes.push(Cause::invalid(
                &field,
                &q.to_string(),
                "must be greater than or equal to 0",
            )),
            Some(q) if is_integer_resource(name) && q.quantity.milli_value() % 1000 != 0 => {
                causes.push(Cause::invalid(&field, &q.to_string(), "must be an integer"));
            }
            Some(_) => {}
        }
    }
    let scopes = spec_scopes(quota);
    if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.name.as_str())) {
        causes.push(Cause::invalid(
            "spec.scopes",
            &bad.name,
            "unsupported scope",
        ));
    }
    let has = |name: &str| scopes.iter().any(|s| s.name == name);
    if has("Terminating") && has("NotTerminating") || has("BestEffort") && has("NotBestEffort") {
        causes.push(Cause::invalid(
            "spec.scopes",
            &scopes
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            "conflicting scopes",
        ));
    }
    causes
}

fn is_standard(name: &str) -> bool {
    STANDARD.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

fn is_integer_resource(name: &str) -> bool {
    INTEGER.contains(&name) || name.starts_with("count/")
}

/// One scope a quota is restricted to (`spec.scopes` are `Exists` requirements).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub name: String,
    pub operator: String,
    pub values: Vec<String>,
}

fn spec_scopes(quota: &Value) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = super::meta::strings(at(quota, &["spec", "scopes"]))
        .into_iter()
        .map(|name| Scope {
            name,
            operator: "Exists".into(),
            values: Vec::new(),
        })
        .collect();
    let expressions =
        at(quota, &["spec", "scopeSelector", "matchExpressions"]).and_then(Value::as_array);
    for e in expressions.into_iter().flatten() {
        scopes.push(Scope {
            name: str_at(e, &["scopeName"]).unwrap_or_default().to_string(),
            operator: str_at(e, &["operator"]).unwrap_or_default().to_string(),
            values: super::meta::strings(e.get("values")),
        });
    }
    scopes
}

fn resource_list(value: Option<&Value>) -> Resources {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Amount::parse(v.as_str()?)?)))
        .collect()
}

/// A ResourceQuota as admission sees it: its status (what the controller last
/// computed) and scopes.
#[derive(Clone, Debug, PartialEq)]
pub struct Quota {
    pub name: String,
    /// `status.hard`: what the controller has taken over from `spec.hard`.
    pub hard: Resources,
    pub used: Resources,
    pub scopes: Vec<Scope>,
}

impl Quota {
    pub fn from_object(quota: &Value) -> Quota {
        Quota {
            name: super::meta::name(quota).to_string(),
            hard: resource_list(at(quota, &["status", "hard"])),
            used: resource_list(at(quota, &["status", "used"])),
            scopes: spec_scopes(quota),
        }
    }

    /// `status.used` as JSON.
    pub fn used_json(&self) -> Value {
        to_json(&self.used)
    }
}

/// A resource list as the JSON object upstream writes.
pub fn to_json(list: &Resources) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect::<Map<String, Value>>(),
    )
}

/// What measures the usage of one kind of object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evaluator {
    Pods,
    Services,
    Claims,
    /// Any other resource: one per object (`count/<resource>[.<group>]`, and the
    /// legacy plain name for a few core resources).
    Count {
        group: String,
        plural: String,
    },
}

impl Evaluator {
    pub fn of(group: &str, plural: &str) -> Evaluator {
        match (group, plural) {
            ("", "pods") => Evaluator::Pods,
            ("", "services") => Evaluator::Services,
            ("", "persistentvolumeclaims") => Evaluator::Claims,
            _ => Evaluator::Count {
                group: group.to_string(),
                plural: plural.to_string(),
            },
        }
    }

    /// The evaluator a `count/<resource>[.<group>]` quota name is about.
    pub fn of_count_name(name: &str) -> Option<Evaluator> {
        let resource = name.strip_prefix("count/")?;
        let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
        Some(Self::of(group, plural))
    }

    /// `(group, plural)` of the objects it measures.
    pub fn resource(&self) -> (&str, &str) {
        match self {
            Evaluator::Pods => ("", "pods"),
            Evaluator::Services => ("", "services"),
            Evaluator::Claims => ("", "persistentvolumeclaims"),
            Evaluator::Count { group, plural } => (group, plural),
        }
    }

    /// `count/pods`, `count/deployments.apps`.
    pub fn count_name(&self) -> String {
        match self.resource() {
            ("", plural) => format!("count/{plural}"),
            (group, plural) => format!("count/{plural}.{group}"),
        }
    }

    fn alias(&self) -> Option<&'static str> {
        let ("", plural) = self.resource() else {
            return None;
        };
        LEGACY_ALIASES
            .iter()
            .find(|(p, _)| *p == plural)
            .map(|(_, alias)| *alias)
    }

    /// The names among `names` this evaluator measures (sorted, as upstream's).
    pub fn matching<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let mut found: Vec<String> = names
            .into_iter()
            .filter(|name| self.measures(name))
            .cloned()
            .collect();
        found.sort();
        found.dedup();
        found
    }

    fn measures(&self, name: &str) -> bool {
        match self {
            Evaluator::Pods => {
                POD_RESOURCES.contains(&name)
                    || name.starts_with("hugepages-")
                    || name.starts_with("requests.hugepages-")
                    || is_extended_request(name)
            }
            Evaluator::Services => SERVICE_RESOURCES.contains(&name),
            Evaluator::Claims => {
                CLAIM_RESOURCES.contains(&name)
                    || name.split_once(STORAGE_CLASS_SUFFIX).is_some_and(|(_, r)| {
                        r == "requests.storage" || r == "persistentvolumeclaims"
                    })
            }
            Evaluator::Count { .. } => name == self.count_name() || Some(name) == self.alias(),
        }
    }

    /// Whether `object` falls under `scope`; only pods (and claims, by class) have
    /// scopes, so no other object matches one.
    fn in_scope(&self, scope: &Scope, object: &Value) -> bool {
        match self {
            Evaluator::Pods => pod_in_scope(scope, object),
            _ => false,
        }
    }

    /// What `object` costs (upstream's `Usage`). `now` decides whether a pod being
    /// deleted is still charged.
    pub fn usage(&self, object: &Value, now: jiff::Timestamp) -> Resources {
        let mut usage = Resources::new();
        let one = Amount::count(1);
        match self {
            Evaluator::Pods => {
                usage.insert("count/pods".into(), one);
                if charged(object, now) {
                    usage = add(&usage, &pod_compute_usage(object));
                }
            }
            Evaluator::Services => {
                usage.insert("count/services".into(), one);
                usage.insert("services".into(), one);
                let ports = at(object, &["spec", "ports"])
                    .and_then(Value::as_array)
                    .map_or(&[][..], Vec::as_slice);
                let kind = str_at(object, &["spec", "type"]).unwrap_or("ClusterIP");
                let node_ports = match kind {
                    "NodePort" => ports.len(),
                    "LoadBalancer"
                        if at(object, &["spec", "allocateLoadBalancerNodePorts"])
                            == Some(&Value::Bool(false)) =>
                    {
                        ports.iter().filter(|p| p.get("nodePort").is_some()).count()
                    }
                    "LoadBalancer" => ports.len(),
                    _ => 0,
                };
                let balancers = i64::from(kind == "LoadBalancer");
                usage.insert("services.loadbalancers".into(), Amount::count(balancers));
                usage.insert(
                    "services.nodeports".into(),
                    Amount::count(i64::try_from(node_ports).unwrap_or(i64::MAX)),
                );
            }
            Evaluator::Claims => {
                usage.insert("count/persistentvolumeclaims".into(), one);
                usage.insert("persistentvolumeclaims".into(), one);
                let class = str_at(object, &["spec", "storageClassName"])
                    .or_else(|| {
                        str_at(
                            object,
                            &[
                                "metadata",
                                "annotations",
                                "volume.beta.kubernetes.io/storage-class",
                            ],
                        )
                    })
                    .filter(|c| !c.is_empty());
                if let Some(class) = class {
                    usage.insert(
                        format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                        one,
                    );
                }
                let requested = at(object, &["spec", "resources", "requests", "storage"])
                    .and_then(Value::as_str)
                    .and_then(Amount::parse);
                let allocated = at(object, &["status", "allocatedResources", "storage"])
                    .and_then(Value::as_str)
                    .and_then(Amount::parse);
                let storage = match (requested, allocated) {
                    (Some(r), Some(a)) if a.quantity > r.quantity => Some(a),
                    (Some(r), _) => Some(r),
                    (None, a) => a,
                };
                if let Some(storage) = storage {
                    usage.insert("requests.storage".into(), storage);
                    if let Some(class) = class {
                        usage.insert(
                            format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                            storage,
                        );
                    }
                }
            }
            Evaluator::Count { .. } => {
                usage.insert(self.count_name(), one);
                if let Some(alias) = self.alias() {
                    usage.insert(alias.to_string(), one);
                }
            }
        }
        usage
    }

    /// Upstream's pod evaluator insists that a pod set every cpu and memory figure a
    /// quota over it tracks (a compatibility wart upstream keeps).
    fn constraints(&self, required: &[String], object: &Value) -> Result<(), String> {
        if *self != Evaluator::Pods {
            return Ok(());
        }
        const VALIDATED: &[&str] = &[
            "cpu",
            "memory",
            "requests.cpu",
            "requests.memory",
            "limits.cpu",
            "limits.memory",
        ];
        // Pod-level resources, when set, stand for the containers'.
        if at(object, &["spec", "resources"])
            .and_then(Value::as_object)
            .is_some_and(|r| !r.is_empty())
        {
            return Ok(());
        }
        let required: BTreeSet<&str> = required
            .iter()
            .map(String::as_str)
            .filter(|r| VALIDATED.contains(r))
            .collect();
        let mut missing: std::collections::BTreeMap<&str, BTreeSet<String>> = Default::default();
        for field in ["containers", "initContainers"] {
            let containers = at(object, &["spec", field]).and_then(Value::as_array);
            for container in containers.into_iter().flatten() {
                let requests = resource_list(at(container, &["resources", "requests"]));
                let limits = resource_list(at(container, &["resources", "limits"]));
                let has = compute_usage(&requests, &limits);
                for name in &required {
                    if !has.contains_key(*name) {
                        let container_name = str_at(container, &["name"]).unwrap_or_default();
                        missing
                            .entry(name)
                            .or_default()
                            .insert(container_name.to_string());
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = missing
            .iter()
            .map(|(resource, names)| {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                format!("{resource} for: {}", names.join(","))
            })
            .collect();
        Err(format!("must specify {}", parts.join("; ")))
    }

    /// Whether an update of `old` to `new` can change what quota charges (upstream's
    /// `Handles` for updates); every create is handled.
    pub fn handles_update(&self, old: &Value, new: &Value) -> bool {
        match self {
            Evaluator::Pods => is_terminating(old) != is_terminating(new),
            Evaluator::Services | Evaluator::Claims => true,
            Evaluator::Count { .. } => false,
        }
    }
}

/// `requests.<name>` for an extended (non-native) resource.
fn is_extended_request(name: &str) -> bool {
    name.strip_prefix("requests.").is_some_and(|r| {
        r.contains('/') && !r.starts_with("kubernetes.io/") && !r.contains(".kubernetes.io/")
    })
}

fn is_terminating(pod: &Value) -> bool {
    at(pod, &["spec", "activeDeadlineSeconds"])
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0)
}

fn pod_in_scope(scope: &Scope, pod: &Value) -> bool {
    let best_effort = || {
        pod.get("spec")
            .and_then(Value::as_object)
            .is_some_and(|spec| super::pods::qos_class(spec) == "BestEffort")
    };
    match scope.name.as_str() {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => best_effort(),
        "NotBestEffort" => !best_effort(),
        "PriorityClass" => {
            let class = str_at(pod, &["spec", "priorityClassName"]).filter(|c| !c.is_empty());
            match (scope.operator.as_str(), class) {
                ("Exists", class) => class.is_some(),
                ("DoesNotExist", class) => class.is_none(),
                ("In", Some(class)) => scope.values.iter().any(|v| v == class),
                ("In", None) => false,
                ("NotIn", Some(class)) => !scope.values.iter().any(|v| v == class),
                ("NotIn", None) => true,
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    }
}

fn uses_cross_namespace_affinity(pod: &Value) -> bool {
    let crosses = |term: &Value| {
        term.get("namespaces")
            .and_then(Value::as_array)
            .is_some_and(|n| !n.is_empty())
            || term.get("namespaceSelector").is_some_and(|s| !s.is_null())
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let affinity = at(pod, &["spec", "affinity", kind]);
        let required = affinity
            .and_then(|a| a.get("requiredDuringSchedulingIgnoredDuringExecution"))
            .and_then(Value::as_array);
        let preferred = affinity
            .and_then(|a| a.get("preferredDuringSchedulingIgnoredDuringExecution"))
            .and_then(Value::as_array);
        required.into_iter().flatten().any(crosses)
            || preferred
                .into_iter()
                .flatten()
                .filter_map(|w| w.get("podAffinityTerm"))
                .any(crosses)
    })
}

/// Whether a pod's compute resources are charged: not once it has finished, nor
/// when it is stuck deleting past its grace period (upstream's `QuotaV1Pod`).
fn charged(pod: &Value, now: jiff::Timestamp) -> bool {
    if matches!(
        str_at(pod, &["status", "phase"]),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    let deleted = str_at(pod, &["metadata", "deletionTimestamp"]).and_then(parse_time);
    let grace = at(pod, &["metadata", "deletionGracePeriodSeconds"]).and_then(Value::as_i64);
    if let (Some(deleted), Some(grace)) = (deleted, grace) {
        let expired = deleted + jiff::SignedDuration::from_secs(grace);
        if now > expired {
            return false;
        }
    }
    true
}

/// A pod's effective requests and limits: its containers and init containers as
/// upstream sums them, the pod-level resources when it sets them, plus its overhead.
fn pod_compute_usage(pod: &Value) -> Resources {
    let mut requests = pod_total(pod, "requests");
    let mut limits = pod_total(pod, "limits");
    // Pod-level resources (cpu, memory) stand for the containers' sums.
    for (field, total) in [("requests", &mut requests), ("limits", &mut limits)] {
        for (name, amount) in resource_list(at(pod, &["spec", "resources", field])) {
            if name == "cpu" || name == "memory" {
                total.insert(name, amount);
            }
        }
    }
    let overhead = resource_list(at(pod, &["spec", "overhead"]));
    requests = add(&requests, &overhead);
    for (name, amount) in &overhead {
        if let Some(limit) = limits.get(name) {
            limits.insert(name.clone(), limit.add(amount));
        }
    }
    compute_usage(&requests, &limits)
}

fn pod_total(pod: &Value, field: &str) -> Resources {
    let list = |name| {
        at(pod, &["spec", name])
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    };
    let of = |c: &Value| resource_list(at(c, &["resources", field]));
    let mut total = Resources::new();
    for c in list("containers") {
        total = add(&total, &of(c));
    }
    let mut sidecars = Resources::new();
    let mut init = Resources::new();
    for c in list("initContainers") {
        let running = if str_at(c, &["restartPolicy"]) == Some("Always") {
            total = add(&total, &of(c));
            sidecars = add(&sidecars, &of(c));
            sidecars.clone()
        } else {
            add(&of(c), &sidecars)
        };
        for (k, v) in running {
            if init.get(&k).is_none_or(|t| v.quantity > t.quantity) {
                init.insert(k, v);
            }
        }
    }
    for (k, v) in init {
        if total.get(&k).is_none_or(|t| v.quantity > t.quantity) {
            total.insert(k, v);
        }
    }
    total
}

/// Upstream's `podComputeUsageHelper`: the quota names a set of requests and limits
/// charges.
fn compute_usage(requests: &Resources, limits: &Resources) -> Resources {
    let mut usage = Resources::new();
    usage.insert("pods".into(), Amount::count(1));
    for name in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(r) = requests.get(name) {
            usage.insert(name.into(), *r);
            usage.insert(format!("requests.{name}"), *r);
        }
        if let Some(l) = limits.get(name) {
            usage.insert(format!("limits.{name}"), *l);
        }
    }
    for (name, r) in requests {
        if name.starts_with("hugepages-") {
            usage.insert(name.clone(), *r);
            usage.insert(format!("requests.{name}"), *r);
        }
    }
    usage
}

/// Upstream's `quota.Add`.
pub fn add(a: &Resources, b: &Resources) -> Resources {
    let mut sum = a.clone();
    for (k, v) in b {
        let total = sum.get(k).map_or(*v, |mine| mine.add(v));
        sum.insert(k.clone(), total);
    }
    sum
}

/// Upstream's `quota.Mask`: only the named entries.
pub fn mask<'a>(list: &Resources, names: impl IntoIterator<Item = &'a String>) -> Resources {
    let names: BTreeSet<&String> = names.into_iter().collect();
    list.iter()
        .filter(|(k, _)| names.contains(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Upstream's `prettyPrint`: `name=value` pairs sorted by name, comma-separated.
pub fn pretty(list: &Resources) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a quota applies to an object: it names something the evaluator measures
/// and the object is in every one of its scopes.
fn applies(quota: &Quota, evaluator: &Evaluator, object: &Value) -> bool {
    !evaluator.matching(quota.hard.keys()).is_empty()
        && quota.scopes.iter().all(|s| evaluator.in_scope(s, object))
}

/// Upstream's `CheckRequest`: whether the create (or update from `old`) of `object`
/// fits every quota that applies, charging it to their `used`. Returns the indexes of
/// the quotas whose usage changed (to be written back before the object is stored),
/// or the reason for upstream's 403.
pub fn check_request(
    quotas: &mut [Quota],
    evaluator: &Evaluator,
    object: &Value,
    old: Option<&Value>,
    now: jiff::Timestamp,
) -> Result<Vec<usize>, String> {
    let mut interesting = Vec::new();
    for (i, quota) in quotas.iter().enumerate() {
        if !applies(quota, evaluator, object) {
            continue;
        }
        let restricted = evaluator.matching(quota.hard.keys());
        evaluator
            .constraints(&restricted, object)
            .map_err(|e| format!("failed quota: {}: {e}", quota.name))?;
        let known = restricted
            .iter()
            .filter(|r| quota.hard.contains_key(*r))
            .all(|r| quota.used.contains_key(r));
        if !known {
            return Err(format!(
                "status unknown for quota: {}, resources: {}",
                quota.name,
                restricted.join(",")
            ));
        }
        interesting.push(i);
    }
    let mut delta = evaluator.usage(object, now);
    let negative: Vec<&String> = delta
        .iter()
        .filter(|(_, v)| v.quantity.is_negative())
        .map(|(k, _)| k)
        .collect();
    if !negative.is_empty() {
        let names: Vec<&str> = negative.iter().map(|s| s.as_str()).collect();
        return Err(format!(
            "quota usage is negative for resource(s): {}",
            names.join(",")
        ));
    }
    if let Some(old) = old.filter(|o| str_at(o, &["metadata", "resourceVersion"]).is_some()) {
        let before = evaluator.usage(old, now);
        // Upstream's SubtractWithNonNegativeResult.
        for (k, v) in delta.iter_mut() {
            if let Some(b) = before.get(k) {
                let d = v.sub(b);
                *v = if d.quantity.is_negative() {
                    Amount::zero()
                } else {
                    d
                };
            }
        }
    }
    if delta.values().all(|v| v.quantity.is_zero()) || interesting.is_empty() {
        return Ok(Vec::new());
    }
    let mut changed = Vec::new();
    for i in interesting {
        let quota = &quotas[i];
        let requested = mask(&delta, quota.hard.keys());
        let new_used = add(&quota.used, &requested);
        let masked = mask(&new_used, requested.keys());
        let exceeded: Vec<String> = masked
            .iter()
            .filter(|(k, v)| quota.hard.get(*k).is_some_and(|h| v.quantity > h.quantity))
            .map(|(k, _)| k.clone())
            .collect();
        if !exceeded.is_empty() {
            return Err(format!(
                "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                quota.name,
                pretty(&mask(&requested, &exceeded)),
                pretty(&mask(&quota.used, &exceeded)),
                pretty(&mask(&quota.hard, &exceeded)),
            ));
        }
        let differs = new_used.len() != quota.used.len()
            || new_used
                .iter()
                .any(|(k, v)| quota.used.get(k).is_none_or(|u| u.quantity != v.quantity));
        if differs {
            quotas[i].used = new_used;
            changed.push(i);
        }
    }
    Ok(changed)
}

/// The evaluators a quota's controller must run for `hard`: the built-in ones that
/// measure something named, and an object counter for each `count/…` name.
pub fn evaluators_for(hard: &Resources) -> Vec<Evaluator> {
    let mut found: Vec<Evaluator> = Vec::new();
    let mut candidates = vec![Evaluator::Pods, Evaluator::Services, Evaluator::Claims];
    for (_, alias) in LEGACY_ALIASES {
        candidates.push(Evaluator::of("", alias));
    }
    candidates.extend(hard.keys().filter_map(|k| Evaluator::of_count_name(k)));
    for evaluator in candidates {
        if !evaluator.matching(hard.keys()).is_empty() && !found.contains(&evaluator) {
            found.push(evaluator);
        }
    }
    found
}

/// What the quota controller computes for one evaluator: every tracked name starts at
/// zero, then each object in the namespace that is in all of the quota's scopes adds
/// its usage (upstream's `CalculateUsageStats`).
pub fn usage_of(
    evaluator: &Evaluator,
    hard: &Resources,
    scopes: &[Scope],
    objects: &[Value],
    now: jiff::Timestamp,
) -> Resources {
    let mut used: Resources = evaluator
        .matching(hard.keys())
        .into_iter()
        .map(|name| (name, Amount::zero()))
        .collect();
    for object in objects {
        if scopes.iter().all(|s| evaluator.in_scope(s, object)) {
            used = add(&used, &evaluator.usage(object, now));
        }
    }
    used
}

/// The quota's `spec.hard` and scopes, for the controller.
pub fn spec_of(quota: &Value) -> (Resources, Vec<Scope>) {
    (
        resource_list(at(quota, &["spec", "hard"])),
        spec_scopes(quota),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::now()
    }

    fn quota(hard: Value, used: Value) -> Quota {
        Quota::from_object(&json!({"metadata": {"name": "q"}, "spec": {"hard": hard},
            "status": {"hard": hard, "used": used}}))
    }

    fn pod(cpu: &str) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}]}})
    }

    #[test]
    fn pods_cost_their_requests_and_limits() {
        let usage = Evaluator::Pods.usage(&pod("250m"), now());
        assert_eq!(
            pretty(&usage),
            "count/pods=1,cpu=250m,limits.memory=128Mi,memory=64Mi,pods=1,requests.cpu=250m,requests.memory=64Mi"
        );
        let mut done = pod("1");
        done["status"] = json!({"phase": "Succeeded"});
        assert_eq!(pretty(&Evaluator::Pods.usage(&done, now())), "count/pods=1");
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            pretty(&Evaluator::Services.usage(&lb, now())),
            "count/services=1,services=1,services.loadbalancers=1,services.nodeports=2"
        );
        let cm = Evaluator::of("", "configmaps");
        assert_eq!(
            pretty(&cm.usage(&json!({}), now())),
            "configmaps=1,count/configmaps=1"
        );
        let deploy = Evaluator::of_count_name("count/deployments.apps").unwrap();
        assert_eq!(deploy.resource(), ("apps", "deployments"));
    }

    #[test]
    fn the_third_pod_exceeds_a_quota_of_two() {
        let mut quotas = vec![quota(json!({"pods": "2"}), json!({"pods": "1"}))];
        let changed = check_request(&mut quotas, &Evaluator::Pods, &pod("1"), None, now()).unwrap();
        assert_eq!(changed, vec![0]);
        assert_eq!(quotas[0].used_json(), json!({"pods": "2"}));
        let err = check_request(&mut quotas, &Evaluator::Pods, &pod("1"), None, now()).unwrap_err();
        assert_eq!(
            err,
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        // A configmap is not the pods quota's business.
        let cm = Evaluator::of("", "configmaps");
        assert_eq!(
            check_request(&mut quotas, &cm, &json!({}), None, now()),
            Ok(vec![])
        );
    }

    #[test]
    fn unknown_status_and_missing_requests_are_refused() {
        let mut fresh = vec![Quota::from_object(&json!({"metadata": {"name": "q"},
            "spec": {"hard": {"pods": "2"}}}))];
        // Without status.hard the quota does not apply yet (the controller fills it).
        assert_eq!(
            check_request(&mut fresh, &Evaluator::Pods, &pod("1"), None, now()),
            Ok(vec![])
        );
        let mut unknown = vec![quota(
            json!({"pods": "2", "requests.cpu": "1"}),
            json!({"pods": "0"}),
        )];
        assert_eq!(
            check_request(&mut unknown, &Evaluator::Pods, &pod("1"), None, now()).unwrap_err(),
            "status unknown for quota: q, resources: pods,requests.cpu"
        );
        let mut cpu = vec![quota(
            json!({"limits.cpu": "2", "requests.memory": "1Gi"}),
            json!({"limits.cpu": "0", "requests.memory": "0"}),
        )];
        let bare = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"memory": "1Mi"}}}]}});
        assert_eq!(
            check_request(&mut cpu, &Evaluator::Pods, &bare, None, now()).unwrap_err(),
            "failed quota: q: must specify limits.cpu for: a,b; requests.memory for: a"
        );
    }

    #[test]
    fn scopes_select_pods() {
        let mut scoped = Quota::from_object(&json!({"metadata": {"name": "be"},
            "spec": {"scopes": ["BestEffort"]}, "status": {"hard": {"pods": "1"}, "used": {"pods": "1"}}}));
        scoped.scopes = spec_scopes(&json!({"spec": {"scopes": ["BestEffort"]}}));
        let mut quotas = vec![scoped];
        // A pod with requests is not best-effort: the quota does not apply.
        assert_eq!(
            check_request(&mut quotas, &Evaluator::Pods, &pod("1"), None, now()),
            Ok(vec![])
        );
        let best_effort = json!({"spec": {"containers": [{"name": "c"}]}});
        assert!(check_request(&mut quotas, &Evaluator::Pods, &best_effort, None, now()).is_err());
    }

    #[test]
    fn the_controller_sums_objects_from_zero() {
        let hard = resource_list(Some(
            &json!({"pods": "5", "requests.cpu": "2", "count/configmaps": "3"}),
        ));
        let evaluators = evaluators_for(&hard);
        assert_eq!(
            evaluators,
            vec![Evaluator::Pods, Evaluator::of("", "configmaps")]
        );
        let used = usage_of(
            &Evaluator::Pods,
            &hard,
            &[],
            &[pod("100m"), pod("250m")],
            now(),
        );
        assert_eq!(
            mask(&used, hard.keys()),
            resource_list(Some(&json!({"pods": "2", "requests.cpu": "350m"})))
        );
        let none = usage_of(&Evaluator::Pods, &hard, &[], &[], now());
        assert_eq!(pretty(&none), "pods=0,requests.cpu=0");
    }

    #[test]
    fn quota_specs_are_validated() {
        let bad = json!({"spec": {"hard": {"pods": "1.5", "cpu": "-1", "bogus": "1", "count/pods": "2"},
            "scopes": ["Terminating", "NotTerminating"]}});
        let messages: Vec<String> = validate(&bad)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            messages,
            vec![
                "spec.hard[bogus]: Invalid value: \"bogus\": must be a standard resource for quota",
                "spec.hard[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
                "spec.hard[pods]: Invalid value: \"1500m\": must be an integer",
                "spec.scopes: Invalid value: \"Terminating,NotTerminating\": conflicting scopes",
            ]
        );
    }
}
