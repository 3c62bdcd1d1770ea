//! The CronJob controller (as upstream's cronjob controller v2): at the most recent
//! scheduled time not yet run it creates a Job from `spec.jobTemplate`, honouring
//! `suspend`, `startingDeadlineSeconds` and `concurrencyPolicy`; it tracks the Jobs it
//! runs in `status.active`, records `lastScheduleTime`/`lastSuccessfulTime`, deletes
//! finished Jobs beyond the history limits, and wakes again at the next scheduled time.

use super::{ControllerError, ERROR_REQUEUE, RESYNC, is_conflict, owners, recorder, reflected};
use futures::StreamExt;
use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
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

fn error_policy(cronjob: Arc<CronJob>, err: &ControllerError, _ctx: Arc<Ctx>) -> Action {
    if !is_conflict(err) {
        tracing::warn!(cronjob = %cronjob.name_any(), "sync failed: {err}");
    }
    Action::requeue(ERROR_REQUEUE)
}

async fn event(ctx: &Ctx, cronjob: &CronJob, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &cronjob.object_ref(&())).await {
        tracing::debug!("cannot record event: {e}");
    }
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
    event(
        ctx,
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
                    event(
                        &ctx,
                        &cronjob,
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
        event(
            &ctx,
            &cronjob,
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
                event(
                    &ctx,
                    &cronjob,
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
                                event(
                                    &ctx,
                                    &cronjob,
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
                                event(
                                    &ctx,
                                    &cronjob,
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

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("expected exactly 5 fields, found {0}")]
    FieldCount(usize),
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("bad value {0:?}")]
    Value(String),
    #[error("{0} is out of range {1}-{2}")]
    Range(u32, u32, u32),
    #[error("beginning of range {0} beyond end {1}")]
    Reversed(u32, u32),
}

/// A parsed 5-field cron schedule in UTC: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether day-of-month / day-of-week was `*` (or `?`): cron then requires both
    /// to match; when both are restricted a day matching either one runs.
    days_star: bool,
    weekdays_star: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field's bits, and whether it was a plain `*`.
fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    first_name: u32,
) -> Result<(u64, bool), ScheduleError> {
    let value = |s: &str| -> Result<u32, ScheduleError> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(first_name + u32::try_from(i).unwrap_or(0));
        }
        s.parse::<u32>()
            .map_err(|_| ScheduleError::Value(s.to_string()))
    };
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| ScheduleError::Value(s.into()))?,
                ),
            ),
            None => (part, None),
        };
        if step == Some(0) {
            return Err(ScheduleError::Value(part.into()));
        }
        let (lo, hi) = if range == "*" || range == "?" {
            star |= step.is_none_or(|s| s == 1);
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `5/15` means from 5 to the end in steps of 15.
            (v, if step.is_some() { max } else { v })
        };
        for v in [lo, hi] {
            if v < min || v > max {
                return Err(ScheduleError::Range(v, min, max));
            }
        }
        if lo > hi {
            return Err(ScheduleError::Reversed(lo, hi));
        }
        let step = usize::try_from(step.unwrap_or(1)).unwrap_or(1);
        for v in (lo..=hi).step_by(step) {
            bits |= 1 << v;
        }
    }
    Ok((bits, star))
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(ScheduleError::Descriptor(other.into()));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(ScheduleError::FieldCount(fields.len()));
        };
        let (minutes, _) = field(minute, 0, 59, &[], 0)?;
        let (hours, _) = field(hour, 0, 23, &[], 0)?;
        let (days, days_star) = field(day, 1, 31, &[], 0)?;
        let (months, _) = field(month, 1, 12, &MONTHS, 1)?;
        // 7 is Sunday too, as in most crons.
        let (mut weekdays, weekdays_star) = field(weekday, 0, 7, &WEEKDAYS, 0)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_star,
            weekdays_star,
        })
    }
}

fn has(bits: u64, v: i8) -> bool {
    u32::try_from(v).is_ok_and(|v| bits & (1 << v) != 0)
}

impl Schedule {
    fn day_matches(&self, t: DateTime) -> bool {
        let day = has(self.days, t.day());
        let weekday = has(self.weekdays, t.weekday().to_sunday_zero_offset());
        if self.days_star || self.weekdays_star {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// The first scheduled time strictly after `after`; None if there is none within
    /// five years (e.g. the 30th of February).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        use jiff::ToSpan;
        let start = after.to_zoned(TimeZone::UTC).datetime();
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let end_year = start.year().saturating_add(5);
        while t.year() <= end_year {
            t = if !has(self.months, t.month()) {
                t.first_of_month()
                    .start_of_day()
                    .checked_add(1.month())
                    .ok()?
            } else if !self.day_matches(t) {
                t.start_of_day().checked_add(1.day()).ok()?
            } else if !has(self.hours, t.hour()) {
                t.with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?
            } else if !has(self.minutes, t.minute()) {
                t.checked_add(1.minute()).ok()?
            } else {
                return TimeZone::UTC.to_timestamp(t).ok();
            };
        }
        None
    }

    /// The latest scheduled time in (`earliest`, `now`], if any.
    pub fn most_recent(&self, earliest: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let mut found = None;
        let mut t = earliest;
        while let Some(next) = self.next_after(t).filter(|n| *n <= now) {
            found = Some(next);
            t = next;
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        schedule
            .parse::<Schedule>()
            .unwrap()
            .next_after(at(after))
            .unwrap()
            .to_string()
    }

    #[test]
    fn examples_from_the_cron_documentation() {
        // Every minute.
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:30Z"),
            "2024-01-01T10:01:00Z"
        );
        // "0 0 13 * 5": the 13th or any Friday (both day fields restricted: either).
        assert_eq!(
            next("0 0 13 * 5", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "2024-01-12T00:00:00Z"),
            "2024-01-13T00:00:00Z"
        );
        // Every 15 minutes.
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T10:16:00Z"),
            "2024-01-01T10:30:00Z"
        );
        // 22:00 on weekdays (names and ranges).
        assert_eq!(
            next("0 22 * * MON-FRI", "2024-01-05T22:00:00Z"),
            "2024-01-08T22:00:00Z"
        );
        // A list with a range and a step.
        assert_eq!(
            next("23 0-20/2 * * *", "2024-01-01T00:23:00Z"),
            "2024-01-01T02:23:00Z"
        );
        assert_eq!(
            next("23 0-20/2 * * *", "2024-01-01T20:23:00Z"),
            "2024-01-02T00:23:00Z"
        );
        assert_eq!(
            next("5,10 4 * * sun", "2024-01-01T00:00:00Z"),
            "2024-01-07T04:05:00Z"
        );
        // Month names; 7 is Sunday.
        assert_eq!(
            next("0 0 1 jan,Jul *", "2024-02-01T00:00:00Z"),
            "2024-07-01T00:00:00Z"
        );
        assert_eq!(
            next("0 12 * * 7", "2024-01-01T00:00:00Z"),
            "2024-01-07T12:00:00Z"
        );
        // `5/20`: from 5 on, every 20.
        assert_eq!(
            next("5/20 * * * *", "2024-01-01T10:25:00Z"),
            "2024-01-01T10:45:00Z"
        );
        // Leap day.
        assert_eq!(
            next("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
    }

    #[test]
    fn macros() {
        let t = "2024-05-15T10:30:00Z";
        assert_eq!(next("@hourly", t), "2024-05-15T11:00:00Z");
        assert_eq!(next("@daily", t), "2024-05-16T00:00:00Z");
        assert_eq!(next("@midnight", t), "2024-05-16T00:00:00Z");
        assert_eq!(next("@weekly", t), "2024-05-19T00:00:00Z");
        assert_eq!(next("@monthly", t), "2024-06-01T00:00:00Z");
        assert_eq!(next("@yearly", t), "2025-01-01T00:00:00Z");
        assert_eq!(next("@annually", t), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn bad_schedules_are_rejected() {
        for bad in [
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
            "* * * FOO *",
            "@reboot",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad} should not parse");
        }
        assert_eq!(
            "0 0 30 2 *"
                .parse::<Schedule>()
                .unwrap()
                .next_after(at("2024-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn only_the_most_recent_missed_time_counts() {
        let s: Schedule = "*/10 * * * *".parse().unwrap();
        let recent = s.most_recent(at("2024-01-01T10:00:00Z"), at("2024-01-01T10:35:00Z"));
        assert_eq!(recent, Some(at("2024-01-01T10:30:00Z")));
        assert_eq!(
            s.most_recent(at("2024-01-01T10:30:00Z"), at("2024-01-01T10:35:00Z")),
            None
        );
        assert_eq!(
            job_name("hello", at("2024-01-01T10:30:00Z")),
            "hello-28401750"
        );
    }
}
