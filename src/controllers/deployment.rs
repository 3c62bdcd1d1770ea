//! The Deployment controller: one ReplicaSet per pod template (named and labelled by
//! the template's `pod-template-hash`), rolled from the old ones to the new one with
//! RollingUpdate (bounded by maxSurge and maxUnavailable) or Recreate; revisions in
//! `deployment.kubernetes.io/revision`, so `kubectl rollout undo` (which copies an old
//! ReplicaSet's template back) makes that ReplicaSet the new one again; pause, old
//! ReplicaSets pruned to `revisionHistoryLimit`, and the Progressing/Available
//! conditions with the progress deadline.

use super::owners::{self, Expectations};
use super::{ControllerError, RESYNC, error_policy, publish_event, recorder, reflected};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rind_api::object_selector::{label_selector_is_empty, label_selector_matches};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of the Deployment that are not copied to its ReplicaSets (upstream's
/// skipCopyAnnotation): ours, and kubectl's record of the applied configuration.
const NOT_COPIED: &[&str] = &[
    REVISION,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deployment.kubernetes.io/revision-history",
    "kubectl.kubernetes.io/last-applied-configuration",
];

struct Ctx {
    client: Client,
    sets: Store<ReplicaSet>,
    expectations: Expectations,
    recorder: Recorder,
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (sets, set_events) = reflected(Api::<ReplicaSet>::all(client.clone()));
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, "deployment-controller"),
        client: client.clone(),
        sets,
        expectations: Expectations::default(),
    });
    Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(set_events)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!("deployment reconcile: {e}");
        }
    })
    .await;
    Ok(())
}

/// FNV-1a, 32 bits: what upstream hashes pod templates with.
fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The `pod-template-hash` of a template: a hash of the template and the collision
/// count, spelled in upstream's alphabet without vowels (so it never forms words).
pub fn template_hash(template: &PodTemplateSpec, collision_count: i32) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if collision_count > 0 {
        bytes.extend_from_slice(&collision_count.to_le_bytes());
    }
    fnv32a(&bytes)
        .to_string()
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// Whether two templates are the same apart from the `pod-template-hash` label
/// (upstream's EqualIgnoreHash): how the current ReplicaSet is found, and how a
/// rollback back to an old template reuses its ReplicaSet.
pub fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(HASH_LABEL);
        }
        let mut v = serde_json::to_value(t).unwrap_or_default();
        prune_empty(&mut v);
        v
    };
    strip(a) == strip(b)
}

/// Drops nulls and empty objects and lists, recursively: kubectl writes a template
/// back from Go structs (`resources: {}`, `creationTimestamp: null`), and upstream's
/// semantic equality treats empty and absent alike.
fn prune_empty(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => true,
        Value::Object(map) => {
            map.retain(|_, v| !prune_empty(v));
            map.is_empty()
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune_empty(item);
            }
            items.is_empty()
        }
        _ => false,
    }
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// maxSurge or maxUnavailable as a count of pods (percentages of `replicas`, surge
/// rounded up, unavailability rounded down, as upstream).
fn resolve(value: Option<&IntOrString>, default: &str, replicas: i32, round_up: bool) -> i32 {
    let fallback = IntOrString::String(default.to_string());
    match value.unwrap_or(&fallback) {
        IntOrString::Int(n) => (*n).max(0),
        IntOrString::String(s) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = i64::from(replicas) * percent;
            let count = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            i32::try_from(count.max(0)).unwrap_or(i32::MAX)
        }
    }
}

/// (maxSurge, maxUnavailable) in pods; both zero would deadlock, so unavailability
/// becomes 1 then, as upstream.
fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let replicas = d.spec.replicas.unwrap_or(1);
    let rolling = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(
        rolling.and_then(|r| r.max_surge.as_ref()),
        "25%",
        replicas,
        true,
    );
    let unavailable = resolve(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        "25%",
        replicas,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable.min(replicas))
    }
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

/// Available pods of a ReplicaSet, never more than it is asked to run: right after a
/// scale-down its status may still count pods that are going away.
fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
        .min(spec_replicas(rs))
}

/// Everything a sync decides, computed from the Deployment and its ReplicaSets.
struct Sync<'a> {
    d: &'a Deployment,
    ctx: &'a Ctx,
    key: String,
    ns: String,
    new: Option<ReplicaSet>,
    old: Vec<ReplicaSet>,
    created_new: bool,
}

impl Sync<'_> {
    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.ns)
    }

    /// Sets a ReplicaSet's replicas (and the annotations saying what the Deployment
    /// wants), recording the write so the next sync waits until the cache shows it.
    /// No resourceVersion guard: only this controller writes a ReplicaSet's size, and
    /// the RS controller's status writes would make every guarded write conflict.
    async fn scale(&self, rs: &mut ReplicaSet, to: i32) -> Result<(), ControllerError> {
        let from = spec_replicas(rs);
        let (surge, _) = surge_and_unavailable(self.d);
        let replicas = self.d.spec.replicas.unwrap_or(1);
        let patch = serde_json::json!({
            "metadata": {
                "annotations": {
                    DESIRED_REPLICAS: replicas.to_string(),
                    MAX_REPLICAS: (replicas + surge).to_string(),
                },
            },
            "spec": {"replicas": to},
        });
        let updated = self
            .rs_api()
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        self.ctx.expectations.written(&self.key, &updated.metadata);
        *rs = updated;
        if from != to {
            let direction = if to > from { "up" } else { "down" };
            publish_event(
                &self.ctx.recorder,
                self.d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!(
                    "Scaled {direction} replica set {} from {from} to {to}",
                    rs.name_any()
                ),
            )
            .await;
        }
        Ok(())
    }

    fn max_old_revision(&self) -> i64 {
        self.old.iter().map(revision).max().unwrap_or(0)
    }

    /// The ReplicaSet for the current template: the existing one (its revision moved
    /// past every old one, as on a rollback), or a new one with `replicas`.
    async fn ensure_new(&mut self, replicas: i32) -> Result<(), ControllerError> {
        let max_old = self.max_old_revision();
        let next_revision = (max_old + 1).to_string();
        if let Some(rs) = self.new.as_ref() {
            if revision(rs) <= max_old {
                let patch = serde_json::json!({
                    "metadata": {
                                "annotations": {REVISION: next_revision},
                    }
                });
                let updated = self
                    .rs_api()
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                self.ctx.expectations.written(&self.key, &updated.metadata);
                self.new = Some(updated);
            }
            return Ok(());
        }
        let d = self.d;
        let collisions = d
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let hash = template_hash(&d.spec.template, collisions);
        let mut template = d.spec.template.clone();
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = d.spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut annotations: BTreeMap<String, String> = d
            .annotations()
            .iter()
            .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let (surge, _) = surge_and_unavailable(d);
        let desired = d.spec.replicas.unwrap_or(1);
        annotations.insert(REVISION.into(), next_revision);
        annotations.insert(DESIRED_REPLICAS.into(), desired.to_string());
        annotations.insert(MAX_REPLICAS.into(), (desired + surge).to_string());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", d.name_any())),
                namespace: Some(self.ns.clone()),
                labels: meta.labels.clone(),
                annotations: Some(annotations),
                owner_references: Some(vec![owners::controller_ref(d)]),
                ..ObjectMeta::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: d.spec.min_ready_seconds,
                selector,
                template: Some(template),
            },
            status: None,
        };
        match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.ctx.expectations.created(&self.key, created.name_any());
                publish_event(
                    &self.ctx.recorder,
                    self.d,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    format!(
                        "Scaled up replica set {} from 0 to {replicas}",
                        created.name_any()
                    ),
                )
                .await;
                self.new = Some(created);
                self.created_new = true;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // A ReplicaSet of that name exists that is not ours or has another
                // template: count a collision so the next hash differs.
                let status = serde_json::json!({"status": {"collisionCount": collisions + 1}});
                Api::<Deployment>::namespaced(self.ctx.client.clone(), &self.ns)
                    .patch_status(
                        &d.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&status),
                    )
                    .await?;
                Err(ControllerError::Invalid(format!(
                    "replica set {} already exists; hash collision counted",
                    rs.name_any()
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn all(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.new.iter().chain(self.old.iter())
    }

    /// The new ReplicaSet's next size under RollingUpdate: grow while the total stays
    /// within replicas + maxSurge (upstream's NewRSNewReplicas).
    fn rolling_new_size(&self) -> i32 {
        let replicas = self.d.spec.replicas.unwrap_or(1);
        let current_new = self.new.as_ref().map(spec_replicas).unwrap_or(0);
        if current_new >= replicas {
            return replicas;
        }
        let (surge, _) = surge_and_unavailable(self.d);
        // An old ReplicaSet just scaled down still has its pods until its controller
        // deletes them: count what exists as well as what is asked for, so the pods
        // really never exceed replicas + maxSurge.
        let total: i32 = self
            .all()
            .map(|rs| spec_replicas(rs).max(rs.status.as_ref().map_or(0, |s| s.replicas)))
            .sum();
        let max_total = replicas + surge;
        if total >= max_total {
            return current_new;
        }
        current_new + (max_total - total).min(replicas - current_new)
    }

    async fn rolling_update(&mut self) -> Result<(), ControllerError> {
        let replicas = self.d.spec.replicas.unwrap_or(1);
        if self.new.is_none() {
            let size = self.rolling_new_size();
            self.ensure_new(size).await?;
            return Ok(());
        }
        self.ensure_new(0).await?;
        let target = self.rolling_new_size();
        if let Some(mut rs) = self.new.take() {
            let current = spec_replicas(&rs);
            let result = if current != target && current <= replicas {
                self.scale(&mut rs, target).await
            } else if current > replicas {
                self.scale(&mut rs, replicas).await
            } else {
                Ok(())
            };
            self.new = Some(rs);
            result?;
        }
        self.scale_down_old().await
    }

    /// Scales old ReplicaSets down as far as keeping replicas − maxUnavailable pods
    /// available allows: unhealthy pods first, then available ones, oldest first.
    async fn scale_down_old(&mut self) -> Result<(), ControllerError> {
        let replicas = self.d.spec.replicas.unwrap_or(1);
        let (_, max_unavailable) = surge_and_unavailable(self.d);
        let old_total: i32 = self.old.iter().map(spec_replicas).sum();
        if old_total == 0 {
            return Ok(());
        }
        let all_total: i32 = self.all().map(spec_replicas).sum();
        let min_available = replicas - max_unavailable;
        let new_unavailable = self
            .new
            .as_ref()
            .map(|rs| spec_replicas(rs) - available(rs))
            .unwrap_or(0);
        let max_scaled_down = all_total - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(());
        }
        let mut old = std::mem::take(&mut self.old);
        old.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let result = self
            .scale_down(&mut old, max_scaled_down, min_available)
            .await;
        self.old = old;
        result
    }

    async fn scale_down(
        &self,
        old: &mut [ReplicaSet],
        max_scaled_down: i32,
        min_available: i32,
    ) -> Result<(), ControllerError> {
        // Pods that are not available cost nothing to remove.
        let mut cleaned = 0;
        for rs in old.iter_mut() {
            let unhealthy = spec_replicas(rs) - available(rs);
            if cleaned >= max_scaled_down || unhealthy <= 0 {
                continue;
            }
            let by = unhealthy.min(max_scaled_down - cleaned);
            self.scale(rs, spec_replicas(rs) - by).await?;
            cleaned += by;
        }
        let available_total: i32 =
            self.new.iter().map(available).sum::<i32>() + old.iter().map(available).sum::<i32>();
        let mut budget = (available_total - min_available).min(max_scaled_down - cleaned);
        for rs in old.iter_mut() {
            if budget <= 0 {
                break;
            }
            let by = spec_replicas(rs).min(budget);
            if by > 0 {
                self.scale(rs, spec_replicas(rs) - by).await?;
                budget -= by;
            }
        }
        Ok(())
    }

    /// Recreate: every old pod is gone before the new ReplicaSet gets any.
    async fn recreate(&mut self) -> Result<(), ControllerError> {
        let mut old = std::mem::take(&mut self.old);
        let mut result = Ok(());
        for rs in old.iter_mut().filter(|rs| spec_replicas(rs) > 0) {
            result = self.scale(rs, 0).await;
            if result.is_err() {
                break;
            }
        }
        self.old = old;
        result?;
        let old_pods_left = self.old.iter().any(|rs| {
            rs.status.as_ref().is_none_or(|s| {
                s.replicas > 0
                    || s.terminating_replicas.unwrap_or(0) > 0
                    || s.observed_generation < rs.metadata.generation
            })
        });
        if old_pods_left {
            return Ok(());
        }
        let replicas = self.d.spec.replicas.unwrap_or(1);
        self.ensure_new(replicas).await?;
        if let Some(mut rs) = self.new.take() {
            let result = if spec_replicas(&rs) != replicas {
                self.scale(&mut rs, replicas).await
            } else {
                Ok(())
            };
            self.new = Some(rs);
            result?;
        }
        Ok(())
    }

    /// While paused, only the size follows `spec.replicas` (when nothing is rolling).
    async fn paused(&mut self) -> Result<(), ControllerError> {
        let replicas = self.d.spec.replicas.unwrap_or(1);
        let old_active = self.old.iter().any(|rs| spec_replicas(rs) > 0);
        if let Some(mut rs) = self.new.take() {
            let result = if !old_active && spec_replicas(&rs) != replicas {
                self.scale(&mut rs, replicas).await
            } else {
                Ok(())
            };
            self.new = Some(rs);
            result?;
        }
        Ok(())
    }

    /// Deletes the oldest fully scaled-down ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self) -> Result<(), ControllerError> {
        let limit = usize::try_from(self.d.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
        let mut idle: Vec<&ReplicaSet> = self
            .old
            .iter()
            .filter(|rs| {
                spec_replicas(rs) == 0
                    && rs.metadata.deletion_timestamp.is_none()
                    && rs.status.as_ref().is_none_or(|s| {
                        s.replicas == 0 && s.observed_generation >= rs.metadata.generation
                    })
            })
            .collect();
        if idle.len() <= limit {
            return Ok(());
        }
        idle.sort_by_key(|rs| revision(rs));
        for rs in &idle[..idle.len() - limit] {
            match self
                .rs_api()
                .delete(&rs.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => self.ctx.expectations.deleted(&self.key, rs.name_any()),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The status the ReplicaSets add up to, with the conditions; and whether the
    /// rollout still has to be checked against its deadline.
    fn status(&self, now: Timestamp) -> (DeploymentStatus, Option<Duration>) {
        let d = self.d;
        let replicas = d.spec.replicas.unwrap_or(1);
        let sum = |f: &dyn Fn(&ReplicaSet) -> i32| -> i32 { self.all().map(f).sum() };
        let status_of = |rs: &ReplicaSet,
                         f: &dyn Fn(
            &k8s_openapi::api::apps::v1::ReplicaSetStatus,
        ) -> Option<i32>| { rs.status.as_ref().and_then(f).unwrap_or(0) };
        let total = sum(&|rs| status_of(rs, &|s| Some(s.replicas)));
        let ready = sum(&|rs| status_of(rs, &|s| s.ready_replicas));
        let avail = sum(&|rs| status_of(rs, &|s| s.available_replicas));
        let terminating = sum(&|rs| status_of(rs, &|s| s.terminating_replicas));
        let updated = self
            .new
            .as_ref()
            .map(|rs| status_of(rs, &|s| Some(s.replicas)))
            .unwrap_or(0);
        let previous = d.status.clone().unwrap_or_default();
        let mut conditions = previous.conditions.clone().unwrap_or_default();
        let (_, max_unavailable) = surge_and_unavailable(d);
        let minimum = avail >= replicas - max_unavailable;
        set_condition(
            &mut conditions,
            condition(
                "Available",
                minimum,
                if minimum {
                    "MinimumReplicasAvailable"
                } else {
                    "MinimumReplicasUnavailable"
                },
                if minimum {
                    "Deployment has minimum availability."
                } else {
                    "Deployment does not have minimum availability."
                },
                now,
            ),
            false,
        );
        let new_name = self
            .new
            .as_ref()
            .map(|rs| rs.name_any())
            .unwrap_or_default();
        let deadline = d.spec.progress_deadline_seconds.unwrap_or(600);
        let progressing = find(&conditions, "Progressing").cloned();
        let mut recheck = None;
        let complete = updated == replicas
            && total == replicas
            && avail == replicas
            && self.new.is_some()
            && self
                .old
                .iter()
                .all(|rs| status_of(rs, &|s| Some(s.replicas)) == 0);
        if d.spec.paused == Some(true) {
            let mut c = condition(
                "Progressing",
                true,
                "DeploymentPaused",
                "Deployment is paused",
                now,
            );
            c.status = Some("Unknown".into());
            set_condition(&mut conditions, c, false);
        } else if progressing.as_ref().and_then(|c| c.reason.as_deref()) == Some("DeploymentPaused")
        {
            let mut c = condition(
                "Progressing",
                true,
                "DeploymentResumed",
                "Deployment is resumed",
                now,
            );
            c.status = Some("Unknown".into());
            set_condition(&mut conditions, c, false);
        } else if complete {
            set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    true,
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                    now,
                ),
                false,
            );
        } else if self.created_new {
            set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    true,
                    "NewReplicaSetCreated",
                    &format!("Created new replica set \"{new_name}\""),
                    now,
                ),
                true,
            );
        } else if updated > previous.updated_replicas.unwrap_or(0)
            || ready > previous.ready_replicas.unwrap_or(0)
            || avail > previous.available_replicas.unwrap_or(0)
            || total < previous.replicas.unwrap_or(0)
            || progressing.is_none()
        {
            set_condition(
                &mut conditions,
                condition(
                    "Progressing",
                    true,
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{new_name}\" is progressing."),
                    now,
                ),
                true,
            );
        }
        if !complete
            && d.spec.paused != Some(true)
            && let Some(c) = find(&conditions, "Progressing")
            && c.status.as_deref() == Some("True")
        {
            let since = c.last_update_time.as_ref().map(|t| t.0).unwrap_or(now);
            let until = since + jiff::SignedDuration::from_secs(i64::from(deadline));
            if until <= now {
                set_condition(
                    &mut conditions,
                    condition(
                        "Progressing",
                        false,
                        "ProgressDeadlineExceeded",
                        &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                        now,
                    ),
                    false,
                );
            } else {
                recheck = Duration::try_from(until.duration_since(now)).ok();
            }
        }
        let status = DeploymentStatus {
            observed_generation: d.metadata.generation,
            replicas: Some(total),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(avail),
            unavailable_replicas: Some((replicas - avail).max(0)),
            terminating_replicas: Some(terminating),
            collision_count: previous.collision_count,
            conditions: Some(conditions),
        };
        (status, recheck)
    }
}

fn find<'a>(conditions: &'a [DeploymentCondition], type_: &str) -> Option<&'a DeploymentCondition> {
    conditions
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(if status { "True" } else { "False" }.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(now)),
        last_update_time: Some(Time(now)),
    }
}

/// Puts a condition in place, keeping lastTransitionTime while the status stays;
/// an unchanged status and reason is left alone unless `touch` (progress made).
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    mut c: DeploymentCondition,
    touch: bool,
) {
    if let Some(i) = conditions.iter().position(|e| e.type_ == c.type_) {
        let existing = &conditions[i];
        if existing.status == c.status {
            if existing.reason == c.reason && !touch {
                return;
            }
            c.last_transition_time = existing.last_transition_time.clone();
        }
        conditions[i] = c;
    } else {
        conditions.push(c);
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let ns = d.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", d.name_any());
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if label_selector_is_empty(&d.spec.selector) {
        return Err(ControllerError::Invalid(
            "an empty selector would select every pod".into(),
        ));
    }
    if !ctx.expectations.satisfied(&key, &ns, &ctx.sets) {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let uid = d.uid().unwrap_or_default();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let mut owned: Vec<ReplicaSet> = Vec::new();
    for rs in ctx.sets.state() {
        if rs.namespace().as_deref() != Some(ns.as_str()) {
            continue;
        }
        let matches = label_selector_matches(&d.spec.selector, rs.metadata.labels.as_ref());
        if owners::controlled_by(&rs.metadata, &uid) {
            if matches {
                owned.push(rs.as_ref().clone());
            } else {
                owners::release(&api, &rs.metadata, &uid).await?;
            }
        } else if owners::controller_of(&rs.metadata).is_none()
            && matches
            && rs.metadata.deletion_timestamp.is_none()
        {
            owners::adopt(&api, &rs.metadata, owners::controller_ref(d.as_ref())).await?;
            owned.push(rs.as_ref().clone());
        }
    }
    let (new, old): (Vec<ReplicaSet>, Vec<ReplicaSet>) = owned.into_iter().partition(|rs| {
        rs.spec
            .template
            .as_ref()
            .is_some_and(|t| same_template(t, &d.spec.template))
    });
    // Two ReplicaSets with one template cannot come from us; the oldest is the one.
    let mut new = new;
    new.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let mut new = new.into_iter();
    let current = new.next();
    let mut old = old;
    old.extend(new);
    let mut sync = Sync {
        d: d.as_ref(),
        ctx: ctx.as_ref(),
        key: key.clone(),
        ns: ns.clone(),
        new: current,
        old,
        created_new: false,
    };
    if d.spec.paused == Some(true) {
        sync.paused().await?;
    } else if is_recreate(&d) {
        sync.recreate().await?;
    } else {
        sync.rolling_update().await?;
    }
    sync.cleanup().await?;
    let revision_now = sync
        .new
        .as_ref()
        .and_then(|rs| rs.annotations().get(REVISION).cloned());
    if let Some(rev) = revision_now
        && d.annotations().get(REVISION) != Some(&rev)
    {
        let patch = serde_json::json!({"metadata": {"annotations": {REVISION: rev}}});
        Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
            .patch(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    let (status, recheck) = sync.status(Timestamp::now());
    if d.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({ "status": status });
        Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(Action::requeue(recheck.map_or(RESYNC, |r| r.min(RESYNC))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "i"}]}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn surge_rounds_up_and_unavailability_down() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(
            surge_and_unavailable(&deployment(10, pct("25%"), pct("25%"))),
            (3, 2)
        );
        assert_eq!(
            surge_and_unavailable(&deployment(3, IntOrString::Int(1), IntOrString::Int(0))),
            (1, 0)
        );
        assert_eq!(
            surge_and_unavailable(&deployment(3, IntOrString::Int(0), IntOrString::Int(0))),
            (0, 1)
        );
        assert_eq!(
            surge_and_unavailable(&deployment(1, pct("25%"), pct("25%"))),
            (1, 0)
        );
    }

    #[test]
    fn hashes_are_stable_vowel_free_and_change_with_collisions() {
        let d = deployment(1, IntOrString::Int(1), IntOrString::Int(0));
        let a = template_hash(&d.spec.template, 0);
        assert_eq!(a, template_hash(&d.spec.template, 0));
        assert_ne!(a, template_hash(&d.spec.template, 1));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let d = deployment(1, IntOrString::Int(1), IntOrString::Int(0));
        let mut hashed = d.spec.template.clone();
        hashed
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), "abc".into());
        assert!(same_template(&hashed, &d.spec.template));
        // As kubectl writes a template back: empty structs and null timestamps.
        hashed.spec.as_mut().unwrap().containers[0].resources = Some(Default::default());
        hashed.metadata.as_mut().unwrap().annotations = Some(Default::default());
        assert!(same_template(&hashed, &d.spec.template));
        hashed.spec.as_mut().unwrap().containers[0].image = Some("other".into());
        assert!(!same_template(&hashed, &d.spec.template));
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            condition("Progressing", true, "ReplicaSetUpdated", "m", t0),
            true,
        );
        set_condition(
            &mut conditions,
            condition("Progressing", true, "ReplicaSetUpdated", "m", t1),
            true,
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Some(Time(t0)));
        assert_eq!(conditions[0].last_update_time, Some(Time(t1)));
        set_condition(
            &mut conditions,
            condition("Progressing", false, "ProgressDeadlineExceeded", "m", t1),
            false,
        );
        assert_eq!(conditions[0].last_transition_time, Some(Time(t1)));
    }
}
