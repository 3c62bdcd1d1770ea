//! The disruption controller: keeps every PodDisruptionBudget's status current, which
//! the eviction subresource reads to allow or refuse an eviction (`kubectl drain`,
//! `rind delete node`). As upstream's:
//! - the pods are those of the budget's namespace its selector matches (policy/v1: an
//!   empty selector matches every pod of the namespace);
//! - `minAvailable: N`: N pods must stay healthy and the expected count is the number of
//!   matched pods; `minAvailable: P%` and `maxUnavailable` count the pods expected from
//!   the scale of the pods' controllers (ReplicaSet, StatefulSet,
//!   ReplicationController, or the Deployment owning a ReplicaSet), and a pod without
//!   such a controller leaves the budget allowing nothing;
//! - a pod is healthy when Ready and not being deleted, and a pod an eviction has just
//!   been granted for (`status.disruptedPods`) is not counted until it is gone, for at
//!   most two minutes;
//! - `disruptionsAllowed` is healthy minus desired, never below zero, with the
//!   `DisruptionAllowed` condition saying so.

use super::{ControllerError, RESYNC, error_policy};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rind_api::meta::format_time;
use rind_api::selector::LabelSelector;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How long a granted eviction keeps its pod out of the healthy count while the pod has
/// not been deleted (upstream's `DeletionTimeout`).
const DISRUPTED_TIMEOUT_SECONDS: i64 = 120;

struct Ctx {
    client: Client,
    pods: Store<Pod>,
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (pods, pod_events) = rind_runtime::reflect::reflected(Api::<Pod>::all(client.clone()));
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    // A pod that changes wakes every budget of its namespace.
    let woken = pod_events.filter_map(move |pod| {
        let refs = match pod {
            Ok(pod) => budgets_in(&budgets, &pod.namespace().unwrap_or_default()),
            Err(e) => {
                tracing::debug!("disruption pod watch: {e}");
                Vec::new()
            }
        };
        futures::future::ready(Some(futures::stream::iter(refs)))
    });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods,
    });
    controller
        .reconcile_on(woken.flatten())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("disruption reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

fn budgets_in(
    budgets: &Store<PodDisruptionBudget>,
    ns: &str,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    budgets
        .state()
        .iter()
        .filter(|b| b.namespace().as_deref() == Some(ns))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// The budget's selector as our label selector (None: it selects nothing).
fn selector_of(pdb: &PodDisruptionBudget) -> Option<LabelSelector> {
    let selector = pdb.spec.as_ref()?.selector.as_ref()?;
    let value = serde_json::to_value(selector).ok()?;
    LabelSelector::parse(&rind_api::scale::label_selector_string(&value)).ok()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// `value` of `total` (an integer, or a percentage rounded up as upstream does).
fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value {s:?}: not an integer or percentage"))?;
            Ok(((percent * i64::from(total) + 99) / 100) as i32)
        }
    }
}

/// How many pods the controllers of `pods` want, or why that cannot be told.
async fn expected_from_controllers(ctx: &Ctx, ns: &str, pods: &[&Pod]) -> Result<i32, String> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    for pod in pods {
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .ok_or_else(|| format!("found no controller for pod {:?}", pod.name_any()))?;
        if scales.contains_key(&owner.uid) {
            continue;
        }
        let scale = controller_scale(ctx, ns, &owner.kind, &owner.name).await?;
        scales.insert(owner.uid.clone(), scale);
    }
    Ok(scales.values().sum())
}

/// The replicas a controller wants: a ReplicaSet owned by a Deployment counts the
/// Deployment's replicas, as upstream's finders do.
async fn controller_scale(ctx: &Ctx, ns: &str, kind: &str, name: &str) -> Result<i32, String> {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
    use k8s_openapi::api::core::v1::ReplicationController;
    let missing = |e: kube::Error| format!("reading {kind} {ns}/{name}: {e}");
    match kind {
        "ReplicaSet" => {
            let rs = Api::<ReplicaSet>::namespaced(ctx.client.clone(), ns)
                .get(name)
                .await
                .map_err(missing)?;
            let deployment = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true) && o.kind == "Deployment");
            if let Some(owner) = deployment {
                let d = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
                    .get(&owner.name)
                    .await
                    .map_err(|e| format!("reading Deployment {ns}/{}: {e}", owner.name))?;
                return Ok(d.spec.replicas.unwrap_or(1));
            }
            Ok(rs.spec.replicas.unwrap_or(1))
        }
        "StatefulSet" => Ok(Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
            .get(name)
            .await
            .map_err(missing)?
            .spec
            .replicas
            .unwrap_or(1)),
        "ReplicationController" => Ok(Api::<ReplicationController>::namespaced(
            ctx.client.clone(),
            ns,
        )
        .get(name)
        .await
        .map_err(missing)?
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(1)),
        other => Err(format!(
            "pods controlled by a {other} have no scale to count expected pods from"
        )),
    }
}

/// What the status should say.
struct Counts {
    expected: i32,
    desired: i32,
    healthy: i32,
    disrupted: BTreeMap<String, String>,
}

async fn count(
    ctx: &Ctx,
    pdb: &PodDisruptionBudget,
    now: jiff::Timestamp,
) -> Result<Counts, String> {
    let ns = pdb.namespace().unwrap_or_default();
    let spec = pdb.spec.clone().unwrap_or_default();
    let selector = selector_of(pdb);
    let state = ctx.pods.state();
    let pods: Vec<&Pod> = state
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| {
            let labels: serde_json::Map<String, Value> = p
                .metadata
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            selector.as_ref().is_some_and(|s| s.matches(Some(&labels)))
        })
        .collect();
    // Granted evictions still pending: kept until the pod is being deleted, gone, or
    // the timeout passes.
    let recorded = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let mut disrupted = BTreeMap::new();
    for (name, at) in recorded {
        let pending = pods
            .iter()
            .any(|p| p.name_any() == name && p.metadata.deletion_timestamp.is_none());
        if pending && now.as_second() - at.0.as_second() < DISRUPTED_TIMEOUT_SECONDS {
            disrupted.insert(name, format_time(at.0));
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && is_ready(p)
                && !disrupted.contains_key(&p.name_any())
        })
        .count() as i32;
    let (expected, desired) = match (&spec.min_available, &spec.max_unavailable) {
        (_, Some(max)) => {
            let expected = expected_from_controllers(ctx, &ns, &pods).await?;
            (expected, (expected - scaled(max, expected)?).max(0))
        }
        (Some(IntOrString::Int(n)), None) => (pods.len() as i32, *n),
        (Some(min), None) => {
            let expected = expected_from_controllers(ctx, &ns, &pods).await?;
            (expected, scaled(min, expected)?)
        }
        (None, None) => (pods.len() as i32, 0),
    };
    Ok(Counts {
        expected,
        desired,
        healthy,
        disrupted,
    })
}

async fn reconcile(
    pdb: Arc<PodDisruptionBudget>,
    ctx: Arc<Ctx>,
) -> Result<Action, ControllerError> {
    if pdb.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = jiff::Timestamp::now();
    let generation = pdb.metadata.generation.unwrap_or(0);
    let status = match count(&ctx, &pdb, now).await {
        Ok(c) => {
            let allowed = (c.healthy - c.desired).max(0);
            json!({
                "observedGeneration": generation,
                "disruptedPods": c.disrupted,
                "disruptionsAllowed": allowed,
                "currentHealthy": c.healthy,
                "desiredHealthy": c.desired,
                "expectedPods": c.expected,
                "conditions": [condition(&pdb, allowed > 0, if allowed > 0 { "SufficientPods" } else { "InsufficientPods" }, "", now)],
            })
        }
        // As upstream: a budget that cannot be computed allows nothing, and says why.
        Err(why) => json!({
            "observedGeneration": generation,
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
            "conditions": [condition(&pdb, false, "SyncFailed", &why, now)],
        }),
    };
    let current = serde_json::to_value(&pdb.status).unwrap_or(Value::Null);
    if same_status(&current, &status) {
        return Ok(Action::requeue(RESYNC));
    }
    let mut next = (*pdb).clone();
    next.status = Some(
        serde_json::from_value(status)
            .map_err(|e| ControllerError::Invalid(format!("PodDisruptionBudget status: {e}")))?,
    );
    let ns = pdb.namespace().unwrap_or_default();
    Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &ns)
        .replace_status(&pdb.name_any(), &PostParams::default(), &next)
        .await?;
    Ok(Action::requeue(RESYNC))
}

/// The `DisruptionAllowed` condition, keeping its transition time while its status
/// stays the same.
fn condition(
    pdb: &PodDisruptionBudget,
    allowed: bool,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> Value {
    let status = if allowed { "True" } else { "False" };
    let since = pdb
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed" && c.status == status)
        .map(|c| format_time(c.last_transition_time.0))
        .unwrap_or_else(|| format_time(now));
    json!({
        "type": "DisruptionAllowed",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": pdb.metadata.generation.unwrap_or(0),
    })
}

/// Whether the status written already says `want` (absent empty maps count as empty).
fn same_status(current: &Value, want: &Value) -> bool {
    let normal = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.retain(|_, field| {
                !(field.is_null() || field.as_object().is_some_and(|o| o.is_empty()))
            });
        }
        v
    };
    normal(current) == normal(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3), Ok(2));
        assert_eq!(scaled(&IntOrString::String("100%".into()), 4), Ok(4));
        assert_eq!(scaled(&IntOrString::Int(1), 10), Ok(1));
        assert!(scaled(&IntOrString::String("half".into()), 4).is_err());
    }

    #[test]
    fn equal_statuses_ignore_empty_maps() {
        assert!(same_status(
            &json!({"disruptionsAllowed": 1, "disruptedPods": null}),
            &json!({"disruptionsAllowed": 1, "disruptedPods": {}})
        ));
        assert!(!same_status(
            &json!({"disruptionsAllowed": 1}),
            &json!({"disruptionsAllowed": 0})
        ));
    }
}
