//! The DaemonSet controller: one pod per eligible node — nodes its nodeSelector
//! matches whose NoSchedule/NoExecute taints the template tolerates — placed directly
//! with `spec.nodeName`, including nodes added later; pods on nodes no longer eligible
//! are removed; a changed template is rolled node by node (RollingUpdate, at most
//! `maxUnavailable` at a time) or left for the user to delete (OnDelete).

use super::deployment::template_hash;
use super::owners::{self, Expectations};
use super::{ControllerError, RESYNC, error_policy, publish_event, recorder, reflected};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The label telling which template a daemon pod was made from.
const REVISION_LABEL: &str = "controller-revision-hash";

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    expectations: Expectations,
    recorder: Recorder,
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (pods, pod_events) = reflected(Api::<Pod>::all(client.clone()));
    let (nodes, node_events) = reflected(Api::<Node>::all(client.clone()));
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, "daemonset-controller"),
        client,
        pods,
        nodes,
        expectations: Expectations::default(),
    });
    let set_of = |pod: Pod| -> Option<ObjectRef<DaemonSet>> {
        let owner = owners::controller_of(&pod.metadata)?;
        (owner.kind == "DaemonSet")
            .then(|| ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default()))
    };
    // Any node change may change where every DaemonSet belongs.
    let every_set = move |_node: Node| -> Vec<ObjectRef<DaemonSet>> {
        sets.state()
            .iter()
            .map(|ds| ObjectRef::from_obj(ds.as_ref()))
            .collect()
    };
    controller
        .watches_stream(pod_events, set_of)
        .watches_stream(node_events, every_set)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("daemonset reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        let key_ok = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(k) => k == taint.key,
        };
        let value_ok = t.operator.as_deref() == Some("Exists")
            || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        key_ok && value_ok && effect_ok
    })
}

/// The tolerations upstream's DaemonSet controller gives every daemon pod: a daemon
/// keeps running on a node that is unreachable, not ready, under resource pressure
/// or cordoned, since it is often what the node needs to recover (no tolerationSeconds:
/// the taint manager never evicts it).
fn daemon_tolerations() -> Vec<Toleration> {
    [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
    .into_iter()
    .map(|(key, effect)| Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".to_string()),
        effect: Some(effect.to_string()),
        ..Toleration::default()
    })
    .collect()
}

/// The template's tolerations plus the daemon ones it does not have yet.
fn with_daemon_tolerations(mut tolerations: Vec<Toleration>) -> Vec<Toleration> {
    for toleration in daemon_tolerations() {
        if !tolerations.contains(&toleration) {
            tolerations.push(toleration);
        }
    }
    tolerations
}

/// Whether a daemon pod from this template belongs on the node.
fn eligible(ds: &DaemonSet, node: &Node) -> bool {
    let spec = ds.spec.template.spec.as_ref();
    let selector_ok = spec
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|sel| sel.iter().all(|(k, v)| node.labels().get(k) == Some(v)));
    let tolerations =
        with_daemon_tolerations(spec.and_then(|s| s.tolerations.clone()).unwrap_or_default());
    let taints_ok = node
        .spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerates(&tolerations, t));
    selector_ok && taints_ok && node.metadata.deletion_timestamp.is_none()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let spec = &ds.spec;
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", ds.name_any());
    if !ctx.expectations.satisfied(&key, &ns, &ctx.pods) {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let uid = ds.uid().unwrap_or_default();
    let hash = template_hash(&spec.template, 0);
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in ctx.pods.state() {
        if pod.namespace().as_deref() == Some(ns.as_str())
            && owners::controlled_by(&pod.metadata, &uid)
            && pod.metadata.deletion_timestamp.is_none()
            && !matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        {
            by_node.entry(node_of(&pod)).or_default().push(pod);
        }
    }
    let nodes = ctx.nodes.state();
    let wanted: Vec<String> = nodes
        .iter()
        .filter(|n| eligible(&ds, n))
        .map(|n| n.name_any())
        .collect();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let on_delete = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete");
    let max_unavailable = match spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone())
    {
        Some(IntOrString::Int(n)) => n.max(1),
        Some(IntOrString::String(p)) => {
            let pct: i32 = p.trim_end_matches('%').parse().unwrap_or(0);
            (i32::try_from(wanted.len()).unwrap_or(i32::MAX) * pct / 100).max(1)
        }
        None => 1,
    };
    let mut unavailable = 0;
    let mut outdated = Vec::new();
    for node in &wanted {
        match by_node.get(node).and_then(|pods| pods.first()) {
            None => {
                create_pod(&ctx, &ds, &api, &key, node, &hash).await?;
                unavailable += 1;
            }
            Some(pod) => {
                if !is_ready(pod) {
                    unavailable += 1;
                }
                if pod.labels().get(REVISION_LABEL) != Some(&hash) {
                    outdated.push(pod.clone());
                }
            }
        }
    }
    let mut victims: Vec<Arc<Pod>> = by_node
        .iter()
        .filter(|(node, _)| !wanted.contains(node))
        .flat_map(|(_, pods)| pods.iter().cloned())
        .chain(
            by_node
                .values()
                .flat_map(|pods| pods.iter().skip(1).cloned()),
        )
        .collect();
    if !on_delete {
        // Outdated pods that are not ready first: replacing them costs no availability.
        outdated.sort_by_key(|p| is_ready(p));
        for pod in outdated {
            if is_ready(&pod) {
                if unavailable >= max_unavailable {
                    break;
                }
                unavailable += 1;
            }
            victims.push(pod);
        }
    }
    for pod in victims {
        match api.delete(&pod.name_any(), &DeleteParams::default()).await {
            Ok(_) => {
                ctx.expectations.deleted(&key, pod.name_any());
                publish_event(
                    &ctx.recorder,
                    ds.as_ref(),
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", pod.name_any()),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(
            wanted
                .iter()
                .filter_map(|n| by_node.get(n).and_then(|p| p.first()))
                .filter(|p| f(p))
                .count(),
        )
        .unwrap_or(i32::MAX)
    };
    let status = DaemonSetStatus {
        desired_number_scheduled: i32::try_from(wanted.len()).unwrap_or(i32::MAX),
        current_number_scheduled: count(&|_| true),
        number_ready: count(&is_ready),
        number_available: Some(count(&is_ready)),
        number_unavailable: Some(
            i32::try_from(wanted.len()).unwrap_or(i32::MAX) - count(&is_ready),
        ),
        updated_number_scheduled: Some(count(&|p| p.labels().get(REVISION_LABEL) == Some(&hash))),
        number_misscheduled: i32::try_from(by_node.keys().filter(|n| !wanted.contains(n)).count())
            .unwrap_or(i32::MAX),
        observed_generation: ds.metadata.generation,
        ..DaemonSetStatus::default()
    };
    if ds.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({ "status": status });
        Api::<DaemonSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(Action::requeue(RESYNC))
}

async fn create_pod(
    ctx: &Ctx,
    ds: &DaemonSet,
    api: &Api<Pod>,
    key: &str,
    node: &str,
    hash: &str,
) -> Result<(), ControllerError> {
    let template = ds.spec.template.clone();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.to_string());
    let mut spec = template.spec.unwrap_or_default();
    spec.node_name = Some(node.to_string());
    spec.tolerations = Some(with_daemon_tolerations(
        spec.tolerations.take().unwrap_or_default(),
    ));
    let pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owners::controller_ref(ds)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    };
    let created = api.create(&PostParams::default(), &pod).await?;
    ctx.expectations.created(key, created.name_any());
    publish_event(
        &ctx.recorder,
        ds,
        EventType::Normal,
        "SuccessfulCreate",
        format!("Created pod: {}", created.name_any()),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_need_tolerations() {
        let taint = Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        assert!(!tolerates(&[], &taint));
        let exists = Toleration {
            key: Some(taint.key.clone()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        assert!(tolerates(&[exists], &taint));
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        assert!(tolerates(&[everything], &taint));
    }

    #[test]
    fn daemons_stay_on_unreachable_and_cordoned_nodes() {
        let ds: DaemonSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
            }
        }))
        .unwrap();
        let node = |key: &str, effect: &str| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n"},
                "spec": {"taints": [{"key": key, "effect": effect}]}
            }))
            .unwrap()
        };
        assert!(eligible(
            &ds,
            &node("node.kubernetes.io/unreachable", "NoExecute")
        ));
        assert!(eligible(
            &ds,
            &node("node.kubernetes.io/not-ready", "NoExecute")
        ));
        assert!(eligible(
            &ds,
            &node("node.kubernetes.io/unschedulable", "NoSchedule")
        ));
        assert!(!eligible(&ds, &node("dedicated", "NoSchedule")));
        // Tolerations the template already has are not repeated.
        let twice = with_daemon_tolerations(daemon_tolerations());
        assert_eq!(twice, daemon_tolerations());
    }
}
