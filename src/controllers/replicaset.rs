//! The ReplicaSet controller: keeps `spec.replicas` pods matching the template alive,
//! each with a controller ownerReference to its ReplicaSet; adopts orphans the selector
//! matches, releases pods it no longer matches, and reports replicas, readyReplicas,
//! availableReplicas, fullyLabeledReplicas and observedGeneration in the status.

use super::owners::{self, Expectations};
use super::{ControllerError, RESYNC, error_policy, publish_event, recorder, reflected};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use rind_api::object_selector::{label_selector_is_empty, label_selector_matches};
use std::sync::Arc;
use std::time::Duration;

/// At most this many pods are created or deleted in one pass (upstream's burstReplicas).
const BURST: usize = 500;

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    expectations: Expectations,
    recorder: Recorder,
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (pods, pod_events) = reflected(Api::<Pod>::all(client.clone()));
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, "replicaset-controller"),
        client: client.clone(),
        pods,
        expectations: Expectations::default(),
    });
    // A pod change wakes its controlling ReplicaSet, or for an orphan every
    // ReplicaSet in its namespace that could adopt it.
    let owners_of = move |pod: Pod| -> Vec<ObjectRef<ReplicaSet>> {
        let ns = pod.namespace().unwrap_or_default();
        match owners::controller_of(&pod.metadata) {
            Some(owner) if owner.kind == "ReplicaSet" => {
                vec![ObjectRef::new(&owner.name).within(&ns)]
            }
            Some(_) => vec![],
            None => sets
                .state()
                .iter()
                .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
                .filter(|rs| {
                    !label_selector_is_empty(&rs.spec.selector)
                        && label_selector_matches(&rs.spec.selector, pod.metadata.labels.as_ref())
                })
                .map(|rs| ObjectRef::from_obj(rs.as_ref()))
                .collect(),
        }
    };
    controller
        .watches_stream(pod_events, owners_of)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("replicaset reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// When the pod turned Ready, if it is.
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        ready
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Whether the pod has been Ready for `min_ready` (upstream's IsPodAvailable).
pub fn is_available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| {
        min_ready <= 0 || since + jiff::SignedDuration::from_secs(i64::from(min_ready)) <= now
    })
}

/// How eagerly a pod goes on scale-down: unscheduled before scheduled, pending
/// before running, not ready before ready, recently ready before long ready, more
/// restarts first, newer first (upstream's ActivePods ordering).
fn deletion_rank(pod: &Pod) -> impl Ord {
    let status = pod.status.as_ref();
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let ready = ready_since(pod);
    let restarts: i32 = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0);
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        scheduled,
        phase,
        ready.is_some(),
        std::cmp::Reverse(ready),
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(created),
    )
}

/// The pod the template describes, owned by `rs`.
fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.template.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owners::controller_ref(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let ns = rs.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", rs.name_any());
    let uid = rs.uid().unwrap_or_default();
    let spec = &rs.spec;
    if !ctx.expectations.satisfied(&key, &ns, &ctx.pods) {
        // Our last creates/deletes have not reached the cache yet: counting now would
        // count them twice.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let deleting = rs.meta().deletion_timestamp.is_some();
    let mut owned = Vec::new();
    for pod in ctx.pods.state() {
        if pod.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        let matches = label_selector_matches(&spec.selector, pod.metadata.labels.as_ref());
        if owners::controlled_by(&pod.metadata, &uid) {
            if matches {
                owned.push(pod);
            } else if pod.metadata.deletion_timestamp.is_none() {
                owners::release(&pod_api, &pod.metadata, &uid).await?;
            }
        } else if owners::controller_of(&pod.metadata).is_none()
            && matches
            && !deleting
            && !label_selector_is_empty(&spec.selector)
            && pod.metadata.deletion_timestamp.is_none()
            && !is_terminal(&pod)
        {
            match owners::adopt(&pod_api, &pod.metadata, owners::controller_ref(rs.as_ref())).await
            {
                Ok(()) => owned.push(pod),
                // Changed or gone meanwhile: the next pass sees it as it is now.
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let active: Vec<Arc<Pod>> = owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !is_terminal(p))
        .cloned()
        .collect();
    let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let mut failure = None;
    if !deleting {
        if active.len() < want {
            failure = create_pods(&rs, &ctx, &key, want - active.len()).await;
        } else if active.len() > want {
            delete_pods(&rs, &ctx, &key, &active, active.len() - want).await?;
        }
    }
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let mut conditions: Vec<_> = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_.as_deref() != Some("ReplicaFailure"))
        .collect();
    if let Some(message) = &failure {
        conditions.push(k8s_openapi::api::apps::v1::ReplicaSetCondition {
            type_: Some("ReplicaFailure".into()),
            status: Some("True".into()),
            reason: Some("FailedCreate".into()),
            message: Some(message.clone()),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
        });
    }
    let status = ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(count(&|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
        })),
        ready_replicas: Some(count(&|p| ready_since(p).is_some())),
        available_replicas: Some(count(&|p| is_available(p, min_ready, now))),
        terminating_replicas: Some(
            i32::try_from(
                owned
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_some() && !is_terminal(p))
                    .count(),
            )
            .unwrap_or(i32::MAX),
        ),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    };
    if rs.status.as_ref() != Some(&status) {
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    // Pods that are Ready but not yet available count once minReadySeconds pass.
    let waiting = active
        .iter()
        .any(|p| ready_since(p).is_some() && !is_available(p, min_ready, now));
    if waiting || failure.is_some() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::requeue(RESYNC))
}

/// Creates `missing` pods in batches of 1, 2, 4, … (upstream's slow start, so a
/// template the server rejects fails once, not hundreds of times). Returns the
/// failure message if a create failed.
async fn create_pods(rs: &ReplicaSet, ctx: &Ctx, key: &str, missing: usize) -> Option<String> {
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod = pod_from_template(rs);
    let mut left = missing.min(BURST);
    let mut batch = 1;
    while left > 0 {
        let size = batch.min(left);
        let params = PostParams::default();
        let results = futures::future::join_all((0..size).map(|_| api.create(&params, &pod))).await;
        let mut failed = None;
        for result in results {
            match result {
                Ok(created) => {
                    let name = created.name_any();
                    ctx.expectations.created(key, name.clone());
                    publish_event(
                        &ctx.recorder,
                        rs,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    )
                    .await;
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        if let Some(message) = failed {
            publish_event(
                &ctx.recorder,
                rs,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating: {message}"),
            )
            .await;
            return Some(message);
        }
        left -= size;
        batch *= 2;
    }
    None
}

async fn delete_pods(
    rs: &ReplicaSet,
    ctx: &Ctx,
    key: &str,
    active: &[Arc<Pod>],
    extra: usize,
) -> Result<(), ControllerError> {
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut victims: Vec<&Arc<Pod>> = active.iter().collect();
    victims.sort_by_key(|p| deletion_rank(p));
    for pod in victims.into_iter().take(extra.min(BURST)) {
        let name = pod.name_any();
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                ctx.expectations.deleted(key, name.clone());
                publish_event(
                    &ctx.recorder,
                    rs,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: Option<&str>, phase: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "nodeName": node},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn scale_down_prefers_unscheduled_then_pending_then_unready() {
        let unscheduled = pod(None, "Pending", false);
        let pending = pod(Some("n"), "Pending", false);
        let unready = pod(Some("n"), "Running", false);
        let ready = pod(Some("n"), "Running", true);
        let mut pods = [&ready, &unready, &pending, &unscheduled];
        pods.sort_by_key(|p| deletion_rank(p));
        assert_eq!(pods, [&unscheduled, &pending, &unready, &ready]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod(Some("n"), "Running", true);
        let at: Timestamp = "2026-01-01T00:00:05Z".parse().unwrap();
        assert!(is_available(&p, 0, at));
        assert!(is_available(&p, 5, at));
        assert!(!is_available(&p, 6, at));
        assert!(!is_available(&pod(Some("n"), "Running", false), 0, at));
    }

    #[test]
    fn pods_carry_the_template_and_a_controller_reference() {
        let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "default", "uid": "u1"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "i"}]}}
            }
        }))
        .unwrap();
        let pod = pod_from_template(&rs);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("ReplicaSet", "u1", Some(true))
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(pod.metadata.labels.unwrap()["app"], "web");
    }
}
