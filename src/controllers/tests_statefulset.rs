//! The StatefulSet controller and Indexed/TTL Jobs in the in-process cluster of
//! tests.rs (real API server, simulated kubelet). Ordering claims are checked over a
//! pod watch: the order in which the server's events show pods appear, turn Ready and
//! go away is the order the controller acted in.

use super::tests::{Cluster, NOT_READY, cluster, finish_pods, is_ready, pods_of, settle};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rind_testing::ok;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a pod watch saw, in order.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// A pod appeared; `predecessor_ready` tells whether the pod of the next lower
    /// ordinal was Ready at that moment (true for ordinal 0).
    Created {
        name: String,
        predecessor_ready: bool,
    },
    /// A pod started going away (deletionTimestamp set, or removed outright).
    Going(String),
    /// A pod was removed.
    Gone(String),
}

/// Records what happens to the pods of StatefulSet `set` over a watch.
fn record(client: Client, set: &str) -> (Arc<Mutex<Vec<Seen>>>, tokio::task::JoinHandle<()>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let api: Api<Pod> = Api::namespaced(client, "default");
    let set = set.to_string();
    let task = tokio::spawn(async move {
        let mut pods: HashMap<String, Pod> = HashMap::new();
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = events.next().await {
            let mut log = seen.lock().unwrap();
            match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let name = p.name_any();
                    let Some(ordinal) = name
                        .strip_prefix(&format!("{set}-"))
                        .and_then(|o| o.parse::<i32>().ok())
                    else {
                        continue;
                    };
                    let before = pods.get(&name).map(|old| old.uid() == p.uid());
                    if before != Some(true) {
                        let predecessor_ready = ordinal == 0
                            || pods
                                .get(&format!("{set}-{}", ordinal - 1))
                                .is_some_and(is_ready);
                        log.push(Seen::Created {
                            name: name.clone(),
                            predecessor_ready,
                        });
                    }
                    let was_going = pods.get(&name).is_some_and(|old| {
                        old.uid() == p.uid() && old.metadata.deletion_timestamp.is_some()
                    });
                    if p.metadata.deletion_timestamp.is_some() && !was_going {
                        log.push(Seen::Going(name.clone()));
                    }
                    pods.insert(name, p);
                }
                watcher::Event::Delete(p) => {
                    let name = p.name_any();
                    let was_going = pods
                        .get(&name)
                        .is_some_and(|old| old.metadata.deletion_timestamp.is_some());
                    if !was_going {
                        log.push(Seen::Going(name.clone()));
                    }
                    log.push(Seen::Gone(name.clone()));
                    pods.remove(&name);
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
    });
    (log, task)
}

fn stateful_set(name: &str, replicas: i32, extra: serde_json::Value) -> StatefulSet {
    let mut set = serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
        }
    });
    merge(&mut set, extra);
    serde_json::from_value(set).unwrap()
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// Live (not terminating) pods of the set, by name.
async fn live_pods(client: &Client, set: &str) -> Vec<Pod> {
    let mut pods: Vec<Pod> = pods_of(client, "default", &format!("app={set}"))
        .await
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    pods.sort_by_key(|p| p.name_any());
    pods
}

fn names(pods: &[Pod]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

/// Reports the pod Ready, as its kubelet would once its readiness probe passes.
async fn make_ready(client: &Client, name: &str) {
    let now = jiff::Timestamp::now().to_string();
    let status = serde_json::json!({"status": {"conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
    ]}});
    Api::<Pod>::namespaced(client.clone(), "default")
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

fn status_of(set: &StatefulSet) -> k8s_openapi::api::apps::v1::StatefulSetStatus {
    set.status.clone().unwrap_or_default()
}

async fn settled(api: &Api<StatefulSet>, name: &str, replicas: i32) -> Option<StatefulSet> {
    let set = api.get(name).await.ok()?;
    let s = status_of(&set);
    let done = s.observed_generation == set.metadata.generation
        && s.replicas == replicas
        && s.ready_replicas == Some(replicas)
        && s.updated_replicas == Some(replicas)
        && s.current_revision == s.update_revision;
    done.then_some(set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn ordered_statefulset_grows_in_order_keeps_identities_and_shrinks_from_the_top() {
    let cluster: Cluster = cluster().await;
    let client = cluster.client.clone();
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let (log, watch) = record(client.clone(), "web");
    // Pods never turn Ready by themselves: the test decides when each one does.
    let set = stateful_set(
        "web",
        3,
        serde_json::json!({"spec": {
            "template": {"metadata": {"annotations": {NOT_READY: "true"}}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                      "spec": {"accessModes": ["ReadWriteOnce"],
                                               "resources": {"requests": {"storage": "1Gi"}}}}],
        }}),
    );
    api.create(&PostParams::default(), &set).await.unwrap();
    for (i, name) in ["web-0", "web-1", "web-2"].iter().enumerate() {
        let count = i32::try_from(i + 1).unwrap();
        // The pod runs, unready; the controller has seen it (status counts it), and
        // its successor does not exist yet.
        settle(&cluster, &format!("{name} running"), || async {
            let set = api.get("web").await.ok()?;
            let pods = live_pods(&client, "web").await;
            let running = pods.iter().any(|p| {
                p.name_any() == *name
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            });
            (running && status_of(&set).replicas == count).then_some(())
        })
        .await;
        assert_eq!(
            names(&live_pods(&client, "web").await),
            ["web-0", "web-1", "web-2"][..=i],
            "no pod before its predecessor is Ready"
        );
        make_ready(&client, name).await;
    }
    let set = settle(&cluster, "3 ready replicas", || settled(&api, "web", 3)).await;
    let status = status_of(&set);
    assert_eq!(status.current_replicas, Some(3));
    assert_eq!(status.available_replicas, Some(3));
    let revision = status.update_revision.clone().unwrap();
    for (i, pod) in live_pods(&client, "web").await.iter().enumerate() {
        let labels = pod.labels();
        assert_eq!(labels["statefulset.kubernetes.io/pod-name"], pod.name_any());
        assert_eq!(labels["apps.kubernetes.io/pod-index"], i.to_string());
        assert_eq!(labels["controller-revision-hash"], revision);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(pod.name_any().as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let claim = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "data")
            .unwrap();
        assert_eq!(
            claim.persistent_volume_claim.as_ref().unwrap().claim_name,
            format!("data-web-{i}")
        );
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let claim_uid = claims.get("data-web-1").await.unwrap().uid();
    assert!(log.lock().unwrap().iter().all(|s| match s {
        Seen::Created {
            predecessor_ready, ..
        } => *predecessor_ready,
        _ => true,
    }));

    // A deleted pod comes back under its name, with its claim.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let old_uid = pods.get("web-1").await.unwrap().uid();
    pods.delete("web-1", &DeleteParams::default())
        .await
        .unwrap();
    settle(&cluster, "web-1 recreated", || async {
        let pod = pods.get("web-1").await.ok()?;
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        (pod.uid() != old_uid && running).then_some(())
    })
    .await;
    make_ready(&client, "web-1").await;
    settle(&cluster, "3 ready again", || settled(&api, "web", 3)).await;
    assert_eq!(claims.get("data-web-1").await.unwrap().uid(), claim_uid);

    // Scale down: web-2 goes, and only once it is gone does web-1 go.
    log.lock().unwrap().clear();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    settle(&cluster, "one replica", || async {
        let set = settled(&api, "web", 1).await?;
        let pods = pods_of(&client, "default", "app=web").await;
        (names(&pods) == ["web-0"]).then_some(set)
    })
    .await;
    let order: Vec<Seen> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| !matches!(s, Seen::Created { .. }))
        .cloned()
        .collect();
    assert_eq!(
        order,
        [
            Seen::Going("web-2".into()),
            Seen::Gone("web-2".into()),
            Seen::Going("web-1".into()),
            Seen::Gone("web-1".into()),
        ]
    );
    watch.abort();
    // Claims outlive the pods (retention policy Retain).
    let kept: Vec<String> = claims
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(kept, ["data-web-0", "data-web-1", "data-web-2"]);
    // The recorder folds later events of one reason into a series on the first.
    let events = ok(&cluster.server, &["get", "events", "-o", "yaml"]).await;
    assert!(
        events.contains("create Claim data-web-0 Pod web-0 in StatefulSet web success"),
        "{events}"
    );
    assert!(
        events.contains("delete Pod web-2 in StatefulSet web successful"),
        "{events}"
    );
}

fn images(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| {
            p.spec.as_ref().unwrap().containers[0]
                .image
                .clone()
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn rolling_update_goes_top_down_to_the_partition_and_undoes() {
    let cluster = cluster().await;
    let client = cluster.client.clone();
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let set = stateful_set(
        "db",
        3,
        serde_json::json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
                                                       "rollingUpdate": {"partition": 1}}}}),
    );
    api.create(&PostParams::default(), &set).await.unwrap();
    let first = settle(&cluster, "3 ready replicas", || settled(&api, "db", 3)).await;
    let first_revision = status_of(&first).update_revision.unwrap();

    // Partition 1: only ordinals 1 and 2 move, 2 first.
    let (log, watch) = record(client.clone(), "db");
    ok(
        &cluster.server,
        &["set", "image", "statefulset/db", "c=busybox:2"],
    )
    .await;
    let partial = settle(&cluster, "the partitioned rollout", || async {
        let set = api.get("db").await.ok()?;
        let s = status_of(&set);
        let pods = live_pods(&client, "db").await;
        let done = s.observed_generation == set.metadata.generation
            && s.updated_replicas == Some(2)
            && s.ready_replicas == Some(3)
            && images(&pods) == ["busybox:1", "busybox:2", "busybox:2"]
            && pods.iter().all(is_ready);
        done.then_some(set)
    })
    .await;
    let s = status_of(&partial);
    assert_eq!(s.current_revision.as_deref(), Some(first_revision.as_str()));
    assert_ne!(s.update_revision, s.current_revision);
    ok(
        &cluster.server,
        &["rollout", "status", "statefulset/db", "--timeout=20s"],
    )
    .await;
    let going: Vec<Seen> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| matches!(s, Seen::Going(_)))
        .cloned()
        .collect();
    assert_eq!(
        going,
        [Seen::Going("db-2".into()), Seen::Going("db-1".into())]
    );

    // Partition 0 finishes the rollout; the new revision becomes current.
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}),
        ),
    )
    .await
    .unwrap();
    let done = settle(&cluster, "the full rollout", || async {
        let set = settled(&api, "db", 3).await?;
        let pods = live_pods(&client, "db").await;
        (images(&pods) == ["busybox:2"; 3]).then_some(set)
    })
    .await;
    watch.abort();
    assert_ne!(
        status_of(&done).current_revision.as_deref(),
        Some(first_revision.as_str())
    );
    ok(
        &cluster.server,
        &["rollout", "status", "statefulset/db", "--timeout=20s"],
    )
    .await;
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let history = revisions
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items;
    assert_eq!(history.len(), 2);

    // Undo goes back to the first template, reusing its revision as the newest.
    ok(&cluster.server, &["rollout", "undo", "statefulset/db"]).await;
    settle(&cluster, "the rollback", || async {
        let set = settled(&api, "db", 3).await?;
        let pods = live_pods(&client, "db").await;
        let back = images(&pods) == ["busybox:1"; 3]
            && status_of(&set).update_revision.as_deref() == Some(first_revision.as_str());
        back.then_some(())
    })
    .await;
    let reused = revisions.get(&first_revision).await.unwrap();
    assert_eq!(reused.revision, Some(3));
    let listed = ok(&cluster.server, &["rollout", "history", "statefulset/db"]).await;
    assert!(listed.contains('2') && listed.contains('3'), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn parallel_statefulset_starts_and_stops_pods_together() {
    let cluster = cluster().await;
    let client = cluster.client.clone();
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    // Unready pods would hold an OrderedReady set at web-0; a Parallel one goes on.
    let set = stateful_set(
        "par",
        3,
        serde_json::json!({"spec": {
            "podManagementPolicy": "Parallel",
            "template": {"metadata": {"annotations": {NOT_READY: "true"}}},
        }}),
    );
    api.create(&PostParams::default(), &set).await.unwrap();
    settle(&cluster, "three unready pods", || async {
        let pods = live_pods(&client, "par").await;
        (names(&pods) == ["par-0", "par-1", "par-2"]).then_some(())
    })
    .await;
    api.patch(
        "par",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    settle(&cluster, "no pods", || async {
        let set = api.get("par").await.ok()?;
        let pods = pods_of(&client, "default", "app=par").await;
        (pods.is_empty() && status_of(&set).replicas == 0).then_some(())
    })
    .await;

    // An orphan bearing one of the set's names is adopted — and, beyond the (zero)
    // replicas, removed.
    let orphan: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "par-0", "labels": {"app": "par"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    settle(&cluster, "the orphan adopted and removed", || async {
        pods.get_opt("par-0").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn indexed_job_completes_every_index_and_ttl_deletes_finished_jobs() {
    let cluster = cluster().await;
    let client = cluster.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job = |name: &str, extra: serde_json::Value| -> Job {
        let mut job = serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "completions": 3, "parallelism": 3,
                "template": {"spec": {"restartPolicy": "Never",
                                      "containers": [{"name": "c", "image": "busybox"}]}}
            }
        });
        merge(&mut job, extra);
        serde_json::from_value(job).unwrap()
    };
    jobs.create(
        &PostParams::default(),
        &job(
            "idx",
            serde_json::json!({"spec": {"completionMode": "Indexed"}}),
        ),
    )
    .await
    .unwrap();
    let selector = "batch.kubernetes.io/job-name=idx";
    let pods = settle(&cluster, "a pod per index", || async {
        let pods = pods_of(&client, "default", selector).await;
        let running = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == 3).then_some(pods)
    })
    .await;
    let key = "batch.kubernetes.io/job-completion-index";
    let mut indexes: Vec<String> = Vec::new();
    for pod in &pods {
        let index = pod.annotations()[key].clone();
        assert_eq!(pod.labels()[key], index);
        assert_eq!(
            pod.spec.as_ref().unwrap().hostname.as_deref(),
            Some(format!("idx-{index}").as_str())
        );
        assert!(pod.name_any().starts_with(&format!("idx-{index}-")));
        indexes.push(index);
    }
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);

    // Index 1 alone succeeds, then 2 fails and is run again under the same index.
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let by_index = |i: &str| {
        pods.iter()
            .find(|p| p.annotations()[key] == i)
            .unwrap()
            .name_any()
    };
    let finish = |name: String, phase: &'static str| {
        let api = api.clone();
        async move {
            let status = serde_json::json!({"status": {"phase": phase}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
        }
    };
    finish(by_index("1"), "Succeeded").await;
    settle(&cluster, "completedIndexes 1", || async {
        let status = jobs.get("idx").await.ok()?.status?;
        (status.completed_indexes.as_deref() == Some("1") && status.succeeded == Some(1))
            .then_some(())
    })
    .await;
    finish(by_index("2"), "Failed").await;
    settle(&cluster, "index 2 run again", || async {
        let pods = pods_of(&client, "default", selector).await;
        let again = pods.iter().any(|p| {
            p.annotations().get(key).map(String::as_str) == Some("2")
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        });
        again.then_some(())
    })
    .await;
    settle(&cluster, "the indexed job to complete", || async {
        finish_pods(&client, "idx", "Succeeded").await;
        let status = jobs.get("idx").await.ok()?.status?;
        let complete = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Complete" && c.status == "True");
        (complete && status.completed_indexes.as_deref() == Some("0-2")).then_some(status)
    })
    .await;
    let status = jobs.get("idx").await.unwrap().status.unwrap();
    assert_eq!((status.succeeded, status.failed), (Some(3), Some(1)));

    // A finished Job with a TTL goes, with its pods; one without stays.
    jobs.create(
        &PostParams::default(),
        &job(
            "brief",
            serde_json::json!({"spec": {"ttlSecondsAfterFinished": 1}}),
        ),
    )
    .await
    .unwrap();
    settle(
        &cluster,
        "the TTL job to be deleted with its pods",
        || async {
            finish_pods(&client, "brief", "Succeeded").await;
            let gone = jobs.get_opt("brief").await.ok()?.is_none();
            let pods = pods_of(&client, "default", "batch.kubernetes.io/job-name=brief").await;
            (gone && pods.is_empty()).then_some(())
        },
    )
    .await;
    assert!(jobs.get_opt("idx").await.unwrap().is_some());
}
