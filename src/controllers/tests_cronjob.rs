//! The CronJob controller in the in-process cluster of tests.rs, with a clock the test
//! moves forward a minute at a time instead of waiting for real minutes to pass.

use super::Settings;
use super::tests::{cluster_with, eventually, finish_pods, settle};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use std::sync::atomic::{AtomicI64, Ordering};

/// How far the controller's clock is ahead of the real one, in seconds.
static OFFSET: AtomicI64 = AtomicI64::new(0);

fn test_now() -> Timestamp {
    Timestamp::now() + SignedDuration::from_secs(OFFSET.load(Ordering::SeqCst))
}

fn cronjob() -> CronJob {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "tick", "namespace": "default"},
        "spec": {
            "schedule": "* * * * *",
            "successfulJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": {"made-by": "tick"}},
                "spec": {"template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                }}},
            },
        },
    }))
    .unwrap()
}

/// The CronJob's Jobs, oldest first (their names end in the scheduled minute).
async fn jobs_of(api: &Api<Job>) -> Vec<Job> {
    let mut jobs = api
        .list(&ListParams::default().labels("made-by=tick"))
        .await
        .unwrap()
        .items;
    jobs.retain(|j| j.metadata.deletion_timestamp.is_none());
    jobs.sort_by_key(|j| j.name_any());
    jobs
}

/// Moves the clock a minute on, then lets `job` succeed: its completion wakes the
/// controller, which then sees the next scheduled time has come.
async fn next_minute(cluster: &super::tests::Cluster, api: &Api<Job>, job: &str) {
    OFFSET.fetch_add(60, Ordering::SeqCst);
    settle(cluster, &format!("{job} to complete"), || async {
        finish_pods(&cluster.client, job, "Succeeded").await;
        let status = api.get(job).await.ok()?.status?;
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Complete" && c.status == "True")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn cronjob_runs_jobs_on_schedule_and_keeps_history_limits() {
    let cluster = cluster_with(Settings {
        pod_subnet: String::new(),
        clock: Some(test_now),
        ..Settings::default()
    })
    .await;
    let client = cluster.client.clone();
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // The controller's clock at second 58 of the real minute: the first run comes
    // within two seconds, and no scheduled time lies between the real creation time
    // and the controller's now.
    let second = Timestamp::now().as_second().rem_euclid(60);
    OFFSET.store(58 - second, Ordering::SeqCst);
    let created = cronjobs
        .create(&PostParams::default(), &cronjob())
        .await
        .unwrap();

    let first = eventually("the first job", || async { jobs_of(&jobs).await.pop() }).await;
    let minute = first
        .name_any()
        .strip_prefix("tick-")
        .unwrap()
        .parse::<i64>()
        .unwrap();
    let scheduled = Timestamp::from_second(minute * 60).unwrap();
    assert_eq!(
        first.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        scheduled.to_string()
    );
    let owner = &first.owner_references()[0];
    assert_eq!(owner.uid, created.uid().unwrap());
    assert_eq!(owner.controller, Some(true));
    eventually("status.active and lastScheduleTime", || async {
        let status = cronjobs.get("tick").await.ok()?.status?;
        let active = status.active?;
        (active.len() == 1
            && active[0].name.as_deref() == Some(first.name_any().as_str())
            && status.last_schedule_time?.0 == scheduled)
            .then_some(())
    })
    .await;

    next_minute(&cluster, &jobs, &first.name_any()).await;
    let second = format!("tick-{}", minute + 1);
    settle(&cluster, "the second job", || async {
        jobs.get_opt(&second).await.ok()?.map(|_| ())
    })
    .await;
    let status = cronjobs.get("tick").await.unwrap().status.unwrap();
    assert!(status.last_successful_time.is_some());

    // With successfulJobsHistoryLimit 1, the first finished job goes once the second has.
    next_minute(&cluster, &jobs, &second).await;
    let third = format!("tick-{}", minute + 2);
    let names = settle(
        &cluster,
        "the third job and the first one deleted",
        || async {
            let names: Vec<String> = jobs_of(&jobs).await.iter().map(|j| j.name_any()).collect();
            (names == [second.clone(), third.clone()]).then_some(names)
        },
    )
    .await;
    assert_eq!(names.len(), 2);

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually("the controller's events", || async {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("tick"))
            .filter_map(|e| e.reason)
            .collect();
        ["SuccessfulCreate", "SawCompletedJob", "SuccessfulDelete"]
            .iter()
            .all(|r| reasons.iter().any(|x| x == r))
            .then_some(())
    })
    .await;
}
