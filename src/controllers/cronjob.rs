//! The CronJob controller (as upstream's cronjob controller v2): at the most recent
//! scheduled time not yet run it creates a Job from `spec.jobTemplate`, honouring
//! `suspend`, `startingDeadlineSeconds` and `concurrencyPolicy`; it tracks the Jobs it
//! runs in `status.active`, records `lastScheduleTime`/`lastSuccessfulTime`, deletes
//! finished Jobs beyond the history limits, and wakes again at the next scheduled time.

use super::cron::Schedule;
use super::{ControllerError, RESYNC, error_policy, owners, publish_event, recorder, reflected};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// The annotation upstream puts on each Job with the time it was scheduled for.
const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Where the controller reads the time; tests pass a clock set just before a minute
/// boundary so they do not wait for a real one.
pub type Clock = fn() -> Timestamp;

struct Ctx {
    client: Client,
    jobs: Store<Job>,
    recorder: Recorder,
    now: Clock,
}

pub async fn run(client: Client, now: Clock) -> Result<(), ControllerError> {
    let (jobs, job_events) = reflected(Api::<Job>::all(client.clone()));
    let ctx = Arc::new(Ctx {
        recorder: recorder(&client, "cronjob-controller"),
        client: client.clone(),
        jobs,
        now,
    });
    Controller::new(Api::<CronJob>::all(client), watcher::Config::default())
        .owns_stream(job_events)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("cronjob reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

/// The finishing condition of a Job ("Complete" or "Failed"), if it has finished.
fn finished(job: &Job) -> Option<&str> {
    job.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Upstream names a CronJob's Job after the scheduled time in minutes since the epoch,
/// so the same scheduled time can never run twice (the second create conflicts).
fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn job_from_template(cronjob: &CronJob, scheduled: Timestamp) -> Job {
    let template = cronjob.spec.job_template.clone();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), scheduled.to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cronjob.name_any(), scheduled)),
            namespace: cronjob.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owners::controller_ref(cronjob)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Deletes a Job and, in the background, its pods (what upstream's controller asks for).
async fn delete_job(ctx: &Ctx, cronjob: &CronJob, name: &str) -> Result<(), ControllerError> {
    let ns = cronjob.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    publish_event(
        &ctx.recorder,
        cronjob,
        EventType::Normal,
        "SuccessfulDelete",
        format!("Deleted job {name}"),
    )
    .await;
    Ok(())
}

async fn reconcile(cronjob: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    if cronjob.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = &cronjob.spec;
    let ns = cronjob.namespace().unwrap_or_default();
    let uid = cronjob.uid().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
        .filter(|j| owners::controlled_by(&j.metadata, &uid))
        .collect();
    let previous = cronjob.status.clone().unwrap_or_default();
    let mut last_schedule = previous.last_schedule_time.clone();
    let mut last_successful = previous.last_successful_time.clone();

    // status.active: every unfinished Job of ours; a Job seen finishing is reported once.
    let mut active: Vec<ObjectReference> = Vec::new();
    for reference in previous.active.iter().flatten() {
        let name = reference.name.clone().unwrap_or_default();
        match jobs.iter().find(|j| j.name_any() == name) {
            Some(job) => {
                if let Some(how) = finished(job) {
                    if how == "Complete" {
                        let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                        if done.as_ref().map(|t| t.0) > last_successful.as_ref().map(|t| t.0) {
                            last_successful = done;
                        }
                    }
                    publish_event(
                        &ctx.recorder,
                        cronjob.as_ref(),
                        EventType::Normal,
                        "SawCompletedJob",
                        format!("Saw completed job: {name}, condition: {how}"),
                    )
                    .await;
                } else {
                    active.push(job_ref(job));
                }
            }
            // Not in the cache: it may be too new for it, so ask the API server.
            None => match api.get_opt(&name).await? {
                Some(job) if finished(&job).is_none() => active.push(job_ref(&job)),
                _ => {}
            },
        }
    }
    for job in &jobs {
        let known = active.iter().any(|r| r.uid == job.metadata.uid);
        if !known && finished(job).is_none() && job.metadata.deletion_timestamp.is_none() {
            active.push(job_ref(job));
        }
    }

    let now = (ctx.now)();
    let mut requeue = None;
    let zone_ok = matches!(spec.time_zone.as_deref(), None | Some("UTC" | "Etc/UTC"));
    if !zone_ok {
        publish_event(
            &ctx.recorder,
            cronjob.as_ref(),
            EventType::Warning,
            "UnknownTimeZone",
            format!(
                "invalid timeZone: {:?}: only UTC is supported",
                spec.time_zone.as_deref().unwrap_or_default()
            ),
        )
        .await;
    } else {
        match spec.schedule.parse::<Schedule>() {
            Err(e) => {
                publish_event(
                    &ctx.recorder,
                    cronjob.as_ref(),
                    EventType::Warning,
                    "InvalidSchedule",
                    format!("invalid schedule: {}: {e}", spec.schedule),
                )
                .await;
            }
            Ok(schedule) => {
                let created = cronjob
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(now, |t| t.0);
                let mut earliest = last_schedule.as_ref().map_or(created, |t| t.0);
                // Times older than the deadline can no longer start: not looking at
                // them also bounds the search after a long suspension (as upstream).
                let deadline = spec
                    .starting_deadline_seconds
                    .map(jiff::SignedDuration::from_secs);
                if let Some(oldest) = deadline.and_then(|d| now.checked_sub(d).ok()) {
                    earliest = earliest.max(oldest);
                }
                let missed = schedule.most_recent(earliest, now);
                let too_late = |t: Timestamp| {
                    deadline.is_some_and(|d| t.checked_add(d).is_ok_and(|end| end < now))
                };
                if let Some(scheduled) = missed.filter(|t| !too_late(*t))
                    && spec.suspend != Some(true)
                {
                    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
                    if policy == "Forbid" && !active.is_empty() {
                        tracing::debug!(cronjob = %cronjob.name_any(), "not starting: forbidden while a job runs");
                    } else {
                        if policy == "Replace" {
                            for reference in std::mem::take(&mut active) {
                                let name = reference.name.unwrap_or_default();
                                delete_job(&ctx, &cronjob, &name).await?;
                            }
                        }
                        let job = job_from_template(&cronjob, scheduled);
                        let name = job.name_any();
                        match api.create(&PostParams::default(), &job).await {
                            Ok(created) => {
                                publish_event(
                                    &ctx.recorder,
                                    cronjob.as_ref(),
                                    EventType::Normal,
                                    "SuccessfulCreate",
                                    format!("Created job {name}"),
                                )
                                .await;
                                active.push(job_ref(&created));
                            }
                            // Already created for this time (by an earlier sync).
                            Err(kube::Error::Api(s)) if s.code == 409 => {}
                            Err(e) => {
                                publish_event(
                                    &ctx.recorder,
                                    cronjob.as_ref(),
                                    EventType::Warning,
                                    "FailedCreate",
                                    format!("Error creating job: {e}"),
                                )
                                .await;
                                return Err(e.into());
                            }
                        }
                        last_schedule = Some(Time(scheduled));
                    }
                }
                requeue = schedule.next_after(now).and_then(|next| {
                    Duration::try_from(next.duration_since(now))
                        .ok()
                        .map(|d| d + Duration::from_millis(100))
                });
            }
        }
    }

    // Finished Jobs beyond the history limits go, oldest first.
    let limits = [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ];
    for (how, limit) in limits {
        let mut done: Vec<&Arc<Job>> = jobs
            .iter()
            .filter(|j| finished(j) == Some(how) && j.metadata.deletion_timestamp.is_none())
            .collect();
        let started = |j: &Job| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .or(j.metadata.creation_timestamp.as_ref())
                .map(|t| t.0)
        };
        // Same start times (a second's resolution) fall back to the name, which ends in
        // the scheduled minute, as upstream does.
        done.sort_by_key(|j| (started(j), j.name_any()));
        let keep = usize::try_from(limit.max(0)).unwrap_or(0);
        let extra = done.len().saturating_sub(keep);
        for job in done.into_iter().take(extra) {
            delete_job(&ctx, &cronjob, &job.name_any()).await?;
        }
    }

    let status = serde_json::json!({ "status": {
        "active": (!active.is_empty()).then_some(&active),
        "lastScheduleTime": last_schedule,
        "lastSuccessfulTime": last_successful,
    }});
    let unchanged = previous.active.unwrap_or_default() == active
        && previous.last_schedule_time == last_schedule
        && previous.last_successful_time == last_successful;
    if !unchanged {
        Api::<CronJob>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &cronjob.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await?;
    }
    Ok(Action::requeue(requeue.map_or(RESYNC, |d| d.min(RESYNC))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        let scheduled = "2024-01-01T10:30:00Z".parse().unwrap();
        assert_eq!(job_name("hello", scheduled), "hello-28401750");
    }
}
