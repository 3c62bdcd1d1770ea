//! The StatefulSet controller: pods with stable identities `<set>-<ordinal>`, each with
//! its own PersistentVolumeClaims `<template>-<set>-<ordinal>` made before the pod and
//! kept when the pod goes (unless the retention policy says Delete). OrderedReady sets
//! grow one pod at a time, each only once its predecessor is Running and Ready, and
//! shrink from the highest ordinal, one pod at a time; Parallel sets do both at once.
//! Every template the set has had is kept as a ControllerRevision (what `kubectl
//! rollout history/undo` read); a changed template is rolled from the highest ordinal
//! down to `partition` (RollingUpdate) or left for the user to delete (OnDelete).

use super::deployment::{same_template, template_hash};
use super::owners::{self, Expectations};
use super::replicaset::is_available;
use super::{ControllerError, RESYNC, error_policy, publish_event, recorder, reflect, reflected};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rind_api::object_selector::{label_selector_is_empty, label_selector_matches};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The label naming the ControllerRevision a pod was made from.
const REVISION_LABEL: &str = "controller-revision-hash";
/// Labels upstream gives each pod so a Service can select one of them.
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label a ControllerRevision carries its hash in.
const HASH_LABEL: &str = "controller.kubernetes.io/hash";

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    recorder: Recorder,
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (pods, pod_events) = reflected(Api::<Pod>::all(client.clone()));
    let (revisions, revisions_task) = reflect(
        Api::<ControllerRevision>::all(client.clone()),
        "controllerrevision",
    );
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, "statefulset-controller"),
        client: client.clone(),
        pods,
        revisions,
        expectations: Expectations::default(),
    });
    let controller = Controller::new(Api::<StatefulSet>::all(client), watcher::Config::default());
    let sets = controller.store();
    // A pod change wakes its controlling set, or for an orphan the sets in its
    // namespace that could adopt it.
    let sets_of = move |pod: Pod| -> Vec<ObjectRef<StatefulSet>> {
        let ns = pod.namespace().unwrap_or_default();
        match owners::controller_of(&pod.metadata) {
            Some(owner) if owner.kind == "StatefulSet" => {
                vec![ObjectRef::new(&owner.name).within(&ns)]
            }
            Some(_) => vec![],
            None => sets
                .state()
                .iter()
                .filter(|set| set.namespace().as_deref() == Some(ns.as_str()))
                .filter(|set| ordinal_of(&set.name_any(), &pod.name_any()).is_some())
                .map(|set| ObjectRef::from_obj(set.as_ref()))
                .collect(),
        }
    };
    controller
        .watches_stream(pod_events, sets_of)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("statefulset reconcile: {e}");
            }
        })
        .await;
    revisions_task.abort();
    Ok(())
}

/// The ordinal in a pod name `<set>-<ordinal>`, if the pod is one of the set's.
fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    // "01" or "+1" would parse but is not a name the controller makes.
    if rest.is_empty()
        || (rest.len() > 1 && rest.starts_with('0'))
        || !rest.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    rest.parse().ok()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running"
        && pod
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Healthy as the ordered policies wait for it: Running, Ready and not going away.
fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_LABEL).map(String::as_str)
}

/// What a ControllerRevision stores: a strategic merge patch replacing the set's pod
/// template, the form `kubectl rollout undo` applies back to the set.
fn revision_data(template: &PodTemplateSpec) -> serde_json::Value {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), "replace".into());
    }
    serde_json::json!({"spec": {"template": template}})
}

/// The pod template a ControllerRevision stores, if it holds one.
fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.0.get("spec")?.get("template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// The claim name upstream gives ordinal `ordinal`'s copy of a claim template.
fn claim_name(template: &PersistentVolumeClaim, set: &str, ordinal: i32) -> String {
    format!("{}-{set}-{ordinal}", template.name_any())
}

fn retention(set: &StatefulSet) -> (bool, bool) {
    let policy = set.spec.persistent_volume_claim_retention_policy.as_ref();
    let delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        delete(policy.and_then(|p| p.when_deleted.as_ref())),
        delete(policy.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// The claims ordinal `ordinal` uses, as the templates describe them. Under
/// `whenDeleted: Delete` the set owns them, so the garbage collector removes them with
/// the set; otherwise nothing owns them and they outlive it.
fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let (when_deleted, _) = retention(set);
    let selector_labels = set.spec.selector.match_labels.clone().unwrap_or_default();
    set.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let mut labels = template.labels().clone();
            labels.extend(selector_labels.clone());
            let owner = when_deleted.then(|| OwnerReference {
                controller: None,
                ..owners::controller_ref(set)
            });
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(template, &set.name_any(), ordinal)),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    owner_references: owner.map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// Pod `ordinal` of the set, from `template` at `revision`: its stable name, hostname
/// and subdomain, identity labels, and a volume for each of its claims.
fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let set_name = set.name_any();
    let name = format!("{set_name}-{ordinal}");
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    if !set
        .spec
        .service_name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        spec.subdomain = set.spec.service_name.clone();
    }
    let mut volumes = spec.volumes.take().unwrap_or_default();
    for claim in set.spec.volume_claim_templates.iter().flatten() {
        let volume_name = claim.name_any();
        // A claim template replaces a template volume of the same name (as upstream).
        volumes.retain(|v| v.name != volume_name);
        volumes.push(Volume {
            name: volume_name,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(claim, &set_name, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owners::controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The set's current and update revisions (name and template).
struct Revisions {
    current: (String, PodTemplateSpec),
    update: (String, PodTemplateSpec),
}

/// Finds or records the ControllerRevision of the set's template, and the revision its
/// status says is current; prunes history beyond `revisionHistoryLimit`. Returns None
/// when the update revision's name collided with another template's (the collision
/// count has been raised; the next pass retries under a new name).
async fn revisions(
    set: &StatefulSet,
    ctx: &Ctx,
    pods: &[Arc<Pod>],
) -> Result<Option<Revisions>, ControllerError> {
    let ns = set.namespace().unwrap_or_default();
    let uid = set.uid().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let mut history: Vec<Arc<ControllerRevision>> = ctx
        .revisions
        .state()
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
        .filter(|r| owners::controlled_by(&r.metadata, &uid))
        .collect();
    history.sort_by_key(|r| (r.revision.unwrap_or(0), r.name_any()));
    let latest = history.last().and_then(|r| r.revision).unwrap_or(0);
    let template = set.spec.template.clone();
    let status = set.status.clone().unwrap_or_default();
    let collisions = status.collision_count.unwrap_or(0);
    let equal = history
        .iter()
        .rev()
        .find(|r| template_of(r).is_some_and(|t| same_template(&t, &template)));
    let update_name = match equal {
        // A rollback to an earlier template makes that revision the newest again.
        Some(r) if r.revision.unwrap_or(0) < latest => {
            let patch = serde_json::json!({"revision": latest + 1});
            api.patch(
                &r.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            r.name_any()
        }
        Some(r) => r.name_any(),
        None => {
            let hash = template_hash(&template, collisions);
            let name = format!("{}-{hash}", set.name_any());
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash);
            let revision = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    owner_references: Some(vec![owners::controller_ref(set)]),
                    ..ObjectMeta::default()
                },
                data: RawExtension(revision_data(&template)),
                revision: Some(latest + 1),
            };
            match api.create(&PostParams::default(), &revision).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Ours but not in the store yet, or another template's hash.
                    let existing = api.get(&name).await?;
                    let ours = owners::controlled_by(&existing.metadata, &uid)
                        && template_of(&existing).is_some_and(|t| same_template(&t, &template));
                    if !ours {
                        let patch =
                            serde_json::json!({"status": {"collisionCount": collisions + 1}});
                        Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
                            .patch_status(
                                &set.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(&patch),
                            )
                            .await?;
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e.into()),
            }
            name
        }
    };
    let current = status
        .current_revision
        .as_deref()
        .and_then(|name| history.iter().find(|r| r.name_any() == name))
        .and_then(|r| Some((r.name_any(), template_of(r)?)))
        .unwrap_or_else(|| (update_name.clone(), template.clone()));
    prune_history(set, ctx, &history, &[&current.0, &update_name], pods).await?;
    Ok(Some(Revisions {
        current,
        update: (update_name, template),
    }))
}

/// Deletes the oldest revisions beyond `revisionHistoryLimit`, never one a pod or the
/// status still refers to.
async fn prune_history(
    set: &StatefulSet,
    ctx: &Ctx,
    history: &[Arc<ControllerRevision>],
    live: &[&str],
    pods: &[Arc<Pod>],
) -> Result<(), ControllerError> {
    let limit = usize::try_from(set.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
    let old: Vec<&Arc<ControllerRevision>> = history
        .iter()
        .filter(|r| {
            let name = r.name_any();
            !live.contains(&name.as_str()) && !pods.iter().any(|p| revision_of(p) == Some(&name))
        })
        .collect();
    let excess = old.len().saturating_sub(limit);
    let api: Api<ControllerRevision> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    for revision in old.into_iter().take(excess) {
        match api
            .delete(&revision.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Creates the pod's claims that do not exist yet, then the pod.
async fn create_pod(
    set: &StatefulSet,
    ctx: &Ctx,
    key: &str,
    pod: &Pod,
    ordinal: i32,
) -> Result<(), ControllerError> {
    let ns = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    let pod_name = pod.name_any();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    for claim in claims_for(set, ordinal) {
        let name = claim.name_any();
        match claims.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                publish_event(
                    &ctx.recorder,
                    set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("create Claim {name} Pod {pod_name} in StatefulSet {set_name} success"),
                )
                .await;
            }
            // Kept from an earlier pod of this ordinal: the new pod reuses it.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                publish_event(&ctx.recorder,
                    set,
                    EventType::Warning,
                    "FailedCreate",
                    format!("create Claim {name} for Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
                )
                .await;
                return Err(e.into());
            }
        }
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), pod).await {
        Ok(_) => {
            ctx.expectations.created(key, pod_name.clone());
            publish_event(
                &ctx.recorder,
                set,
                EventType::Normal,
                "SuccessfulCreate",
                format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
            )
            .await;
            Ok(())
        }
        // The old pod of this name is still going away: the next pass creates it.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => {
            publish_event(
                &ctx.recorder,
                set,
                EventType::Warning,
                "FailedCreate",
                format!("create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
            )
            .await;
            Err(e.into())
        }
    }
}

/// Deletes this very pod (not a later one of the same name).
async fn delete_pod(
    set: &StatefulSet,
    ctx: &Ctx,
    key: &str,
    pod: &Pod,
) -> Result<(), ControllerError> {
    let ns = set.namespace().unwrap_or_default();
    let name = pod.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .delete(&name, &params)
        .await
    {
        Ok(_) => {
            ctx.expectations.deleted(key, name.clone());
            publish_event(
                &ctx.recorder,
                set,
                EventType::Normal,
                "SuccessfulDelete",
                format!(
                    "delete Pod {name} in StatefulSet {} successful",
                    set.name_any()
                ),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Under `whenScaled: Delete`, makes a condemned pod the owner of its claims, so the
/// garbage collector removes them once the pod is gone (as upstream does).
async fn hand_claims_to_pod(
    set: &StatefulSet,
    ctx: &Ctx,
    pod: &Pod,
    ordinal: i32,
) -> Result<(), ControllerError> {
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    };
    for claim in claims_for(set, ordinal) {
        let Some(existing) = api.get_opt(&claim.name_any()).await? else {
            continue;
        };
        if existing
            .owner_references()
            .iter()
            .any(|r| r.uid == owner.uid)
        {
            continue;
        }
        let mut refs = existing.owner_references().to_vec();
        refs.push(owner.clone());
        let patch = serde_json::json!({"metadata": {
            "ownerReferences": refs,
            "resourceVersion": existing.metadata.resource_version,
        }});
        api.patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(())
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    let key = format!("{ns}/{set_name}");
    if !ctx.expectations.satisfied(&key, &ns, &ctx.pods) {
        // Our last creates/deletes are not in the cache yet: acting now would repeat them.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let uid = set.uid().unwrap_or_default();
    let spec = &set.spec;
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut pods: Vec<Arc<Pod>> = Vec::new();
    for pod in ctx.pods.state() {
        if pod.namespace().as_deref() != Some(ns.as_str()) {
            continue;
        }
        if owners::controlled_by(&pod.metadata, &uid) {
            pods.push(pod);
            continue;
        }
        // An orphan with one of our names that the selector matches is ours to manage
        // (left by an orphaning delete of an earlier set of this name).
        let adoptable = owners::controller_of(&pod.metadata).is_none()
            && pod.metadata.deletion_timestamp.is_none()
            && !label_selector_is_empty(&spec.selector)
            && label_selector_matches(&spec.selector, pod.metadata.labels.as_ref())
            && ordinal_of(&set_name, &pod.name_any()).is_some();
        if adoptable {
            match owners::adopt(
                &pod_api,
                &pod.metadata,
                owners::controller_ref(set.as_ref()),
            )
            .await
            {
                Ok(()) => pods.push(pod),
                // Changed or gone meanwhile: the next pass sees it as it is now.
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let Some(revs) = revisions(&set, &ctx, &pods).await? else {
        return Ok(Action::requeue(Duration::from_millis(200)));
    };
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let end = start.saturating_add(replicas);
    let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0);
    let mut members: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    let mut condemned: Vec<(i32, Arc<Pod>)> = Vec::new();
    for pod in &pods {
        match ordinal_of(&set_name, &pod.name_any()) {
            Some(i) if (start..end).contains(&i) => {
                members.insert(i, pod.clone());
            }
            Some(i) => condemned.push((i, pod.clone())),
            // Not a name this set makes: nothing to do with it here.
            None => {}
        }
    }
    let (_, scale_delete) = retention(&set);

    // Every ordinal in range gets its pod; ordered sets go one pod at a time.
    let mut blocked = false;
    for ordinal in start..end {
        let Some(pod) = members.get(&ordinal) else {
            // Below the partition a new pod keeps the current revision (upstream).
            let (revision, template) = if rolling && ordinal < partition {
                &revs.current
            } else {
                &revs.update
            };
            let pod = new_pod(&set, template, revision, ordinal);
            create_pod(&set, &ctx, &key, &pod, ordinal).await?;
            if ordered {
                blocked = true;
                break;
            }
            continue;
        };
        if matches!(phase(pod), "Failed" | "Succeeded") && !is_terminating(pod) {
            // A finished pod is replaced under the same name.
            delete_pod(&set, &ctx, &key, pod).await?;
            if ordered {
                blocked = true;
                break;
            }
            continue;
        }
        if ordered && !is_healthy(pod) {
            blocked = true;
            break;
        }
    }

    // Pods beyond the range go, highest ordinal first; ordered sets wait for each to
    // be gone before the next, and only while every remaining pod is healthy.
    condemned.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    if !blocked {
        for (ordinal, pod) in &condemned {
            if is_terminating(pod) {
                if ordered {
                    blocked = true;
                    break;
                }
                continue;
            }
            if scale_delete {
                hand_claims_to_pod(&set, &ctx, pod, *ordinal).await?;
            }
            delete_pod(&set, &ctx, &key, pod).await?;
            if ordered {
                blocked = true;
                break;
            }
        }
    }

    // RollingUpdate: from the highest ordinal down to the partition, replace one pod
    // not at the update revision, once all pods above it are healthy again.
    if rolling && !blocked && condemned.is_empty() {
        for ordinal in (start.max(partition)..end).rev() {
            let Some(pod) = members.get(&ordinal) else {
                break;
            };
            if revision_of(pod) != Some(revs.update.0.as_str()) && !is_terminating(pod) {
                delete_pod(&set, &ctx, &key, pod).await?;
                break;
            }
            if !is_healthy(pod) {
                break;
            }
        }
    }

    let status = status_of(&set, &pods, &revs, Timestamp::now());
    if set.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({ "status": status });
        Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&set_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let waiting = min_ready > 0 && status.available_replicas != status.ready_replicas;
    Ok(Action::requeue(if waiting {
        Duration::from_secs(1)
    } else {
        RESYNC
    }))
}

/// The set's status from its pods (as upstream counts them: every pod created; ready
/// and available ones; current and updated ones among those not terminating).
fn status_of(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    revs: &Revisions,
    now: Timestamp,
) -> StatefulSetStatus {
    let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(pods.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let live = |p: &Pod| !is_terminating(p);
    let replicas = count(&|_| true);
    let ready = count(&is_running_and_ready);
    let updated = count(&|p| live(p) && revision_of(p) == Some(revs.update.0.as_str()));
    let mut current = count(&|p| live(p) && revision_of(p) == Some(revs.current.0.as_str()));
    let mut current_revision = revs.current.0.clone();
    let rolling = set
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    // A finished rollout makes the update revision the current one.
    if rolling && updated == replicas && ready == replicas {
        current = updated;
        current_revision = revs.update.0.clone();
    }
    let previous = set.status.clone().unwrap_or_default();
    StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(count(&|p| {
            is_running_and_ready(p) && is_available(p, min_ready, now)
        })),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(revs.update.0.clone()),
        collision_count: Some(previous.collision_count.unwrap_or(0)),
        conditions: previous.conditions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "i"}],
                                      "volumes": [{"name": "www", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"},
                                          "spec": {"accessModes": ["ReadWriteOnce"]}}],
            }
        }))
        .unwrap()
    }

    #[test]
    fn ordinals_come_only_from_names_the_set_makes() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webb-1"), None);
        assert_eq!(ordinal_of("web", "web-a-1"), None);
    }

    #[test]
    fn pods_have_stable_identity_and_claim_volumes() {
        let set = set();
        let pod = new_pod(&set, &set.spec.template, "web-abc", 2);
        assert_eq!(pod.name_any(), "web-2");
        let labels = pod.labels();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes.len(), 1, "the claim replaces the same-named volume");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "www-web-2"
        );
        let claims = claims_for(&set, 2);
        assert_eq!(claims[0].name_any(), "www-web-2");
        assert_eq!(claims[0].labels()["app"], "web");
        assert!(claims[0].metadata.owner_references.is_none(), "Retain");
    }

    #[test]
    fn revisions_store_a_template_replacing_patch() {
        let set = set();
        let data = revision_data(&set.spec.template);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let revision = ControllerRevision {
            data: RawExtension(data),
            ..ControllerRevision::default()
        };
        assert!(same_template(
            &template_of(&revision).unwrap(),
            &set.spec.template
        ));
    }
}
