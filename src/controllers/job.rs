//! The Job controller: runs pods from the template until `completions` of them have
//! succeeded, at most `parallelism` at a time; fails the Job once more than
//! `backoffLimit` pods failed or `activeDeadlineSeconds` passed; reports active, ready,
//! succeeded and failed counts, start and completion times and the Complete/Failed
//! conditions `kubectl wait --for=condition=complete` looks for.

use super::owners::{self, Expectations};
use super::{ControllerError, ERROR_REQUEUE, RESYNC, is_conflict, recorder, reflected};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// Labels upstream puts on a Job's pods (the API server also selects by them).
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

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
    let job_of = |pod: Pod| -> Option<ObjectRef<Job>> {
        let owner = owners::controller_of(&pod.metadata)?;
        (owner.kind == "Job")
            .then(|| ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default()))
    };
    Controller::new(Api::<Job>::all(client), watcher::Config::default())
        .watches_stream(pod_events, job_of)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("job reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

fn error_policy(job: Arc<Job>, err: &ControllerError, _ctx: Arc<Ctx>) -> Action {
    if !is_conflict(err) {
        tracing::warn!(job = %job.name_any(), "sync failed: {err}");
    }
    Action::requeue(ERROR_REQUEUE)
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

async fn event(ctx: &Ctx, job: &Job, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &job.object_ref(&())).await {
        tracing::debug!("cannot record event: {e}");
    }
}

/// The pod the template describes, labelled and owned as upstream's Job pods are.
fn pod_from_template(job: &Job) -> Pod {
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
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", job.name_any())),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owners::controller_ref(job)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    if finished(&job) || job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
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
    let succeeded = count(&|p| phase(p) == "Succeeded");
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
        event(&ctx, &job, EventType::Warning, reason, message.to_string()).await;
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
        event(
            &ctx,
            &job,
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
        let pod = pod_from_template(&job);
        let missing = (want - active_count).max(0);
        for _ in 0..missing {
            match api.create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    ctx.expectations.created(&key, created.name_any());
                    active_count += 1;
                    event(
                        &ctx,
                        &job,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", created.name_any()),
                    )
                    .await;
                }
                Err(e) => {
                    event(
                        &ctx,
                        &job,
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
