//! The Job controller: runs pods from the template until `completions` of them have
//! succeeded, at most `parallelism` at a time; fails the Job once more than
//! `backoffLimit` pods failed or `activeDeadlineSeconds` passed; reports active, ready,
//! succeeded and failed counts, start and completion times and the Complete/Failed
//! conditions `kubectl wait --for=condition=complete` looks for. Indexed Jobs give each
//! pod a completion index (annotation, label and hostname `<job>-<index>`) and finish
//! once every index in `0..completions` has succeeded. A finished Job with
//! `ttlSecondsAfterFinished` is deleted (in the background) once that time has passed —
//! upstream's TTL-after-finished controller, here because it reads the same objects.

use super::owners::{self, Expectations};
use super::{ControllerError, RESYNC, error_policy, publish_event, recorder, reflected};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// Labels upstream puts on a Job's pods (the API server also selects by them).
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The annotation (and label) carrying an Indexed Job pod's completion index.
const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    expectations: Expectations,
    recorder: Recorder,
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (pods, pod_events) = reflected(Api::<Pod>::all(client.clone()));
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, "job-controller"),
        client: client.clone(),
        pods,
        expectations: Expectations::default(),
    });
    Controller::new(Api::<Job>::all(client), watcher::Config::default())
        .owns_stream(pod_events)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("job reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn finished(job: &Job) -> bool {
    job.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// When the Job finished: its Complete or Failed condition's transition time.
fn finished_at(job: &Job) -> Option<Timestamp> {
    job.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// A finished Job with a TTL: deleted once the TTL has passed since it finished, its
/// pods with it (background propagation); until then, looked at again when it is due.
async fn expire(job: &Job, ctx: &Ctx, now: Timestamp) -> Result<Action, ControllerError> {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let (Some(ttl), Some(at)) = (ttl, finished_at(job)) else {
        return Ok(Action::await_change());
    };
    let due = at + jiff::SignedDuration::from_secs(i64::from(ttl.max(0)));
    if due > now {
        let wait = Duration::try_from(due.duration_since(now)).unwrap_or(RESYNC);
        return Ok(Action::requeue(wait.min(RESYNC)));
    }
    let params = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Background),
        // Only this Job: one recreated under the same name has its own TTL.
        preconditions: Some(kube::api::Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// An Indexed Job pod's completion index, if it has a valid one.
fn index_of(pod: &Pod) -> Option<i32> {
    pod.annotations().get(INDEX_KEY)?.parse().ok()
}

/// A set of indexes as upstream writes `completedIndexes`: ascending, runs of
/// consecutive indexes as ranges ("0-2,4").
fn index_ranges(indexes: &std::collections::BTreeSet<i32>) -> String {
    let mut runs: Vec<(i32, i32)> = Vec::new();
    for &i in indexes {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    runs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The pod the template describes, labelled and owned as upstream's Job pods are;
/// with `index`, the pod of that completion index.
fn pod_from_template(job: &Job, index: Option<i32>) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(JOB_NAME_LABEL.into(), job.name_any());
    labels.insert(CONTROLLER_UID_LABEL.into(), job.uid().unwrap_or_default());
    labels.insert("job-name".into(), job.name_any());
    labels.insert("controller-uid".into(), job.uid().unwrap_or_default());
    let mut annotations = meta.annotations;
    let mut spec = template.spec;
    let mut prefix = job.name_any();
    if let Some(index) = index {
        labels.insert(INDEX_KEY.into(), index.to_string());
        annotations
            .get_or_insert_with(Default::default)
            .insert(INDEX_KEY.into(), index.to_string());
        prefix = format!("{prefix}-{index}");
        if let Some(spec) = spec.as_mut() {
            spec.hostname = Some(prefix.clone());
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations,
            owner_references: Some(vec![owners::controller_ref(job)]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if finished(&job) {
        return expire(&job, &ctx, Timestamp::now()).await;
    }
    let Some(spec) = job.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let ns = job.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", job.name_any());
    if !ctx.expectations.satisfied(&key, &ns, &ctx.pods) {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let uid = job.uid().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| owners::controlled_by(&p.metadata, &uid))
        .collect();
    let active: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(pods.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions.unwrap_or(1);
    // Indexed: the distinct valid indexes that have succeeded, each counting once.
    let succeeded_indexes: std::collections::BTreeSet<i32> = pods
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .filter_map(|p| index_of(p))
        .filter(|i| (0..completions).contains(i))
        .collect();
    let succeeded = if indexed {
        i32::try_from(succeeded_indexes.len()).unwrap_or(i32::MAX)
    } else {
        count(&|p| phase(p) == "Succeeded")
    };
    let failed = count(&|p| phase(p) == "Failed");
    let ready = count(&|p| {
        p.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| c.type_ == "Ready" && c.status == "True")
    });
    let now = Timestamp::now();
    let previous = job.status.clone().unwrap_or_default();
    let started = previous.start_time.as_ref().map_or(now, |t| t.0);
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let deadline = spec
        .active_deadline_seconds
        .map(|s| started + jiff::SignedDuration::from_secs(s));

    let mut conditions = previous.conditions.clone().unwrap_or_default();
    let mut completion_time = previous.completion_time.clone();
    let failure = if failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| d <= now) {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    let complete = match spec.completions {
        Some(n) => succeeded >= n,
        // Without completions, the first success ends the Job once nothing runs.
        None => succeeded > 0 && active.is_empty(),
    };
    let mut active_count = i32::try_from(active.len()).unwrap_or(i32::MAX);
    if let Some((reason, message)) = failure {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        for pod in &active {
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        active_count = 0;
        conditions.push(condition("FailureTarget", reason, message, now));
        conditions.push(condition("Failed", reason, message, now));
        publish_event(
            &ctx.recorder,
            job.as_ref(),
            EventType::Warning,
            reason,
            message.to_string(),
        )
        .await;
    } else if complete {
        conditions.push(condition(
            "SuccessCriteriaMet",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        ));
        conditions.push(condition(
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        ));
        completion_time = Some(Time(now));
        publish_event(
            &ctx.recorder,
            job.as_ref(),
            EventType::Normal,
            "Completed",
            "Job completed".into(),
        )
        .await;
    } else if spec.suspend != Some(true) {
        let remaining = match spec.completions {
            Some(n) => (n - succeeded).max(0),
            None if succeeded > 0 => 0,
            None => parallelism,
        };
        let want = parallelism.min(remaining);
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let missing = usize::try_from((want - active_count).max(0)).unwrap_or(0);
        // Indexed: the lowest indexes neither succeeded nor running get a pod each.
        let indexes: Vec<Option<i32>> = if indexed {
            let running: std::collections::BTreeSet<i32> =
                active.iter().filter_map(|p| index_of(p)).collect();
            (0..completions)
                .filter(|i| !succeeded_indexes.contains(i) && !running.contains(i))
                .take(missing)
                .map(Some)
                .collect()
        } else {
            vec![None; missing]
        };
        for index in indexes {
            let pod = pod_from_template(&job, index);
            match api.create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    ctx.expectations.created(&key, created.name_any());
                    active_count += 1;
                    publish_event(
                        &ctx.recorder,
                        job.as_ref(),
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", created.name_any()),
                    )
                    .await;
                }
                Err(e) => {
                    publish_event(
                        &ctx.recorder,
                        job.as_ref(),
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    )
                    .await;
                    return Err(e.into());
                }
            }
        }
    }
    let status = JobStatus {
        active: Some(active_count),
        ready: Some(ready),
        succeeded: Some(succeeded),
        failed: Some(failed),
        terminating: Some(0),
        start_time: Some(Time(started)),
        completion_time,
        conditions: (!conditions.is_empty()).then_some(conditions),
        completed_indexes: (indexed && !succeeded_indexes.is_empty())
            .then(|| index_ranges(&succeeded_indexes)),
        ..JobStatus::default()
    };
    if job.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({ "status": status });
        Api::<Job>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &job.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    let recheck = deadline
        .and_then(|d| Duration::try_from(d.duration_since(now)).ok())
        .map_or(RESYNC, |d| d.min(RESYNC));
    Ok(Action::requeue(recheck))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_are_written_as_ranges() {
        let set = |v: &[i32]| v.iter().copied().collect();
        assert_eq!(index_ranges(&set(&[])), "");
        assert_eq!(index_ranges(&set(&[3])), "3");
        assert_eq!(index_ranges(&set(&[0, 1, 2, 4])), "0-2,4");
        assert_eq!(index_ranges(&set(&[1, 3, 4, 5, 7, 8])), "1,3-5,7-8");
    }
}
