//! The controllers against the real API server on loopback (memory store), with a
//! simulated kubelet that binds pods to a fake node, reports them Running and Ready,
//! and finishes graceful deletions — no containers, no Docker.

use super::{Settings, run_controllers};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use rind_runtime::leader::{Elector, LeaseConfig};
pub(super) use rind_testing::eventually;
use rind_testing::{DEADLINE, TestServer, client, start};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub(super) const FAKE_NODE: &str = "fake-node";

/// Pods with this annotation run but never turn Ready.
pub(super) const NOT_READY: &str = "test.rind.dev/not-ready";
/// Gives each pod the fake kubelet runs its own IP.
static NEXT_IP: AtomicUsize = AtomicUsize::new(10);

/// Binds an unbound pod to the fake node, then reports it Running and Ready.
async fn run_pod(client: &Client, pod: &Pod) -> Result<(), kube::Error> {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = pod.name_any();
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    if !bound {
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                kind: Some("Node".into()),
                name: Some(FAKE_NODE.into()),
                ..ObjectReference::default()
            },
        };
        let _: serde_json::Value = api
            .create_subresource("binding", &name, &PostParams::default(), &binding)
            .await?;
    }
    let now = Timestamp::now().to_string();
    let ready = if pod.annotations().contains_key(NOT_READY) {
        "False"
    } else {
        "True"
    };
    let n = NEXT_IP.fetch_add(1, Ordering::SeqCst);
    let ip = format!("10.244.{}.{}", n / 250, n % 250 + 2);
    let status = serde_json::json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
            {"type": "Ready", "status": ready, "lastTransitionTime": now},
        ],
    }});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// The simulated kubelet: every pod not yet Running is run; pods being deleted are
/// removed at once, as a kubelet does once their containers stop.
pub(super) fn fake_kubelet(client: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Pod> = Api::all(client.clone());
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        // The binding's own watch event still shows the pod Pending: run each pod once.
        let mut started = std::collections::HashSet::new();
        while let Some(event) = events.next().await {
            let Ok(pod) = event else { continue };
            let api: Api<Pod> =
                Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = api
                    .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                    .await;
                continue;
            }
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if running || started.contains(&uid) {
                continue;
            }
            match run_pod(&client, &pod).await {
                Ok(()) => {
                    started.insert(uid);
                }
                Err(e) => tracing::debug!("fake kubelet: {e}"),
            }
        }
    })
}

/// The API server, the controllers (leader of their own lease) and a fake kubelet.
pub(super) struct Cluster {
    pub server: TestServer,
    pub client: Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub(super) async fn cluster() -> Cluster {
    cluster_with(Settings {
        pod_subnet: "10.244.0.0/16".into(),
        clock: None,
        ..Settings::default()
    })
    .await
}

/// A cluster whose controllers run with these settings.
pub(super) async fn cluster_with(settings: Settings) -> Cluster {
    cluster_on(start().await, settings).await
}

/// A cluster on `server` whose controllers run with these settings.
pub(super) async fn cluster_on(server: TestServer, mut settings: Settings) -> Cluster {
    rind_runtime::logging::init("info");
    // The fake kubelet's node has no Node object: unless a test is about pod garbage
    // collection, its pods must not count as orphans however long the test runs.
    settings
        .pod_gc_quarantine
        .get_or_insert(Duration::from_secs(3600));
    let client = client(&server).await;
    let controllers = {
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = run_controllers(client, settings).await {
                panic!("controllers failed: {e}");
            }
        })
    };
    let kubelet = fake_kubelet(client.clone());
    Cluster {
        server,
        client,
        tasks: vec![controllers, kubelet],
    }
}

fn short_lease(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "kube-system".into(),
        name: "kube-controller-manager".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        renew_period: Duration::from_millis(300),
    }
}

/// A candidate whose "controllers" count how often they act while it leads.
fn candidate(
    client: Client,
    identity: &str,
    acted: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let mut elector = Elector::new(client, short_lease(identity));
    tokio::spawn(async move {
        elector
            .run(|| {
                let acted = acted.clone();
                async move {
                    loop {
                        acted.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
            .await
    })
}

async fn holder(client: &Client) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    api.get_opt("kube-controller-manager")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn only_the_lease_holder_acts_and_another_takes_over() {
    let server = start().await;
    let client = client(&server).await;
    let (a_acted, b_acted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = candidate(client.clone(), "a", a_acted.clone());
    let first = eventually("a leader", || async { holder(&client).await }).await;
    let b = candidate(client.clone(), "b", b_acted.clone());
    assert_eq!(first, "a", "the first candidate leads");
    // While a leads, b never acts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a_acted.load(Ordering::SeqCst) > 0);
    assert_eq!(b_acted.load(Ordering::SeqCst), 0);
    assert_eq!(holder(&client).await.as_deref(), Some("a"));

    // a dies without releasing: b takes over once the lease expires.
    a.abort();
    let stopped_at = tokio::time::Instant::now();
    eventually("b to take over", || async {
        (holder(&client).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    eventually("b to act", || async {
        (b_acted.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let took = stopped_at.elapsed();
    assert!(took <= Duration::from_secs(5), "took over after {took:?}");
    let lease: Lease = Api::namespaced(client.clone(), "kube-system")
        .get("kube-controller-manager")
        .await
        .unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn a_released_lease_is_taken_at_once() {
    let server = start().await;
    let client = client(&server).await;
    let mut a = Elector::new(client.clone(), short_lease("a"));
    let mut b = Elector::new(client.clone(), short_lease("b"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");
    a.release().await.unwrap();
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert!(!a.try_acquire_or_renew().await.unwrap());
}

pub(super) async fn pods_of(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

/// Like `eventually`, but on timeout the failure shows the workload objects as they are.
pub(super) async fn settle<T, F, Fut>(cluster: &Cluster, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let limit = DEADLINE - Duration::from_secs(1);
    match tokio::time::timeout(limit, eventually(what, check)).await {
        Ok(v) => v,
        Err(_) => {
            let state =
                rind_testing::ok(&cluster.server, &["get", "deploy,rs,pods", "-o", "yaml"]).await;
            panic!("timed out waiting for {what}; objects now:\n{state}")
        }
    }
}

pub(super) fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn replicaset_replaces_a_deleted_pod() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let cluster = cluster().await;
    let client = cluster.client.clone();
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &rs).await.unwrap();
    let ready = || async {
        let rs = api.get("web").await.ok()?;
        let status = rs.status?;
        (status.ready_replicas == Some(3) && status.available_replicas == Some(3)).then_some(())
    };
    eventually("3 ready replicas", ready).await;
    let pods = pods_of(&client, "default", "app=web").await;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ReplicaSet", Some(true))
        );
    }
    let victim = pods[0].name_any();
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    eventually("a replacement pod", || async {
        let pods = pods_of(&client, "default", "app=web").await;
        let ready: Vec<_> = pods.iter().filter(|p| is_ready(p)).collect();
        (ready.len() == 3 && ready.iter().all(|p| p.name_any() != victim)).then_some(())
    })
    .await;
    eventually("status back at 3", ready).await;

    // An orphan matching the selector is adopted (and the extra pod removed).
    let orphan: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "stray", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    eventually("3 pods again after adoption", || async {
        let pods = pods_of(&client, "default", "app=web").await;
        let live: Vec<_> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (live.len() == 3 && live.iter().all(|p| !p.owner_references().is_empty())).then_some(())
    })
    .await;

    let out = rind_testing::ok(&cluster.server, &["get", "events", "-o", "yaml"]).await;
    assert!(out.contains("SuccessfulCreate"), "{out}");
}

/// Counts, over a pod watch, the most live pods and the fewest Ready ones seen at once.
fn watch_bounds(
    client: Client,
    selector: &str,
) -> (
    Arc<std::sync::Mutex<(usize, usize)>>,
    tokio::task::JoinHandle<()>,
) {
    let bounds = Arc::new(std::sync::Mutex::new((0, usize::MAX)));
    let seen = bounds.clone();
    let api: Api<Pod> = Api::namespaced(client, "default");
    let config = watcher::Config::default().labels(selector);
    let task = tokio::spawn(async move {
        let mut pods: std::collections::HashMap<String, Pod> = Default::default();
        let mut events = watcher(api, config).boxed();
        while let Some(Ok(event)) = events.next().await {
            match event {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    pods.insert(p.name_any(), p);
                }
                watcher::Event::Delete(p) => {
                    pods.remove(&p.name_any());
                }
                watcher::Event::Init | watcher::Event::InitDone => continue,
            }
            let live = pods
                .values()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count();
            let ready = pods.values().filter(|p| is_ready(p)).count();
            let mut b = seen.lock().unwrap();
            *b = (b.0.max(live), b.1.min(ready));
        }
    });
    (bounds, task)
}

async fn rolled_out(
    api: &Api<k8s_openapi::api::apps::v1::Deployment>,
    replicas: i32,
) -> Option<()> {
    let d = api.get("web").await.ok()?;
    let s = d.status?;
    let done = s.observed_generation == d.metadata.generation
        && s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.available_replicas == Some(replicas);
    done.then_some(())
}

fn images(pods: &[Pod]) -> Vec<String> {
    let mut images: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.spec.as_ref()?.containers[0].image.clone())
        .collect();
    images.sort();
    images
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn deployment_rolls_within_surge_and_unavailability_and_undoes() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use rind_testing::ok;
    let cluster = cluster().await;
    let client = cluster.client.clone();
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    eventually("the first rollout", || rolled_out(&api, 4)).await;
    let first_rs: Vec<ReplicaSet> = Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(first_rs.len(), 1);
    let first_name = first_rs[0].name_any();
    assert_eq!(
        first_rs[0].annotations()["deployment.kubernetes.io/revision"],
        "1"
    );
    let hash = &first_rs[0].labels()["pod-template-hash"];
    assert_eq!(first_name, format!("web-{hash}"));

    let (bounds, watch) = watch_bounds(client.clone(), "app=web");
    eventually("the watch to see all pods", || async {
        (bounds.lock().unwrap().0 == 4).then_some(())
    })
    .await;
    *bounds.lock().unwrap() = (4, 4);
    ok(
        &cluster.server,
        &["set", "image", "deployment/web", "c=busybox:2"],
    )
    .await;
    settle(&cluster, "the update rollout", || async {
        rolled_out(&api, 4).await?;
        let pods = pods_of(&client, "default", "app=web").await;
        (images(&pods) == vec!["busybox:2"; 4]).then_some(())
    })
    .await;
    let (most, fewest) = *bounds.lock().unwrap();
    assert!(
        most <= 5,
        "more than replicas+maxSurge pods at once: {most}"
    );
    assert!(
        fewest >= 3,
        "fewer than replicas-maxUnavailable ready: {fewest}"
    );
    watch.abort();
    let d = api.get("web").await.unwrap();
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "2");
    let conditions = d.status.unwrap().conditions.unwrap();
    let progressing = conditions
        .iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    ok(
        &cluster.server,
        &["rollout", "status", "deployment/web", "--timeout=20s"],
    )
    .await;

    ok(&cluster.server, &["rollout", "undo", "deployment/web"]).await;
    settle(&cluster, "the rollback", || async {
        rolled_out(&api, 4).await?;
        let pods = pods_of(&client, "default", "app=web").await;
        (images(&pods) == vec!["busybox:1"; 4]).then_some(())
    })
    .await;
    let back: ReplicaSet = Api::namespaced(client.clone(), "default")
        .get(&first_name)
        .await
        .unwrap();
    assert_eq!(
        back.annotations()["deployment.kubernetes.io/revision"],
        "3",
        "{back:?}\n{:?}",
        api.get("web").await.unwrap().metadata
    );
    assert_eq!(back.spec.replicas, Some(4));
    let history = ok(&cluster.server, &["rollout", "history", "deployment/web"]).await;
    assert!(history.contains('2') && history.contains('3'), "{history}");
    let events = ok(&cluster.server, &["get", "events", "-o", "yaml"]).await;
    assert!(events.contains("ScalingReplicaSet"), "{events}");
}

fn web_deployment(replicas: i32) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}
        }
    }))
    .unwrap()
}

async fn replica_sets(client: &Client) -> Vec<k8s_openapi::api::apps::v1::ReplicaSet> {
    Api::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn cascading_deletes_background_orphan_foreground() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use rind_testing::ok;
    let cluster = cluster().await;
    let client = cluster.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");

    // Background (kubectl's default): the ReplicaSet and its pods go after the owner.
    deployments
        .create(&PostParams::default(), &web_deployment(2))
        .await
        .unwrap();
    settle(&cluster, "the deployment's pods", || async {
        rolled_out(&deployments, 2).await
    })
    .await;
    ok(&cluster.server, &["delete", "deployment", "web"]).await;
    settle(&cluster, "background cascade", || async {
        let none = replica_sets(&client).await.is_empty()
            && pods_of(&client, "default", "app=web").await.is_empty();
        none.then_some(())
    })
    .await;

    // Orphan: the owner goes, the ReplicaSet stays without its ownerReference.
    deployments
        .create(&PostParams::default(), &web_deployment(2))
        .await
        .unwrap();
    settle(&cluster, "the deployment's pods", || async {
        rolled_out(&deployments, 2).await
    })
    .await;
    ok(
        &cluster.server,
        &["delete", "deployment", "web", "--cascade=orphan"],
    )
    .await;
    let orphaned = settle(&cluster, "orphaned replica set", || async {
        let gone = deployments.get_opt("web").await.unwrap().is_none();
        let sets = replica_sets(&client).await;
        (gone && sets.len() == 1 && sets[0].owner_references().is_empty()).then(|| sets[0].clone())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        pods_of(&client, "default", "app=web").await.len(),
        2,
        "pods stay"
    );

    // Foreground: the pods go before the ReplicaSet does. A finalizer of ours on one pod
    // holds that dependent, so the owner's waiting state is observed, not raced.
    let name = orphaned.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let held_pod = pods_of(&client, "default", "app=web").await[0].name_any();
    let hold = |finalizers: Vec<&str>| {
        Patch::Merge(serde_json::json!({"metadata": {"finalizers": finalizers}}))
    };
    pods.patch(
        &held_pod,
        &PatchParams::default(),
        &hold(vec!["test.rind.dev/hold"]),
    )
    .await
    .unwrap();
    let out = rind_testing::kubectl(
        &cluster.server,
        &[
            "delete",
            "rs",
            &name,
            "--cascade=foreground",
            "--wait=false",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", rind_testing::stderr(&out));
    settle(
        &cluster,
        "the owner waiting on its held dependent",
        || async {
            let rs = sets.get_opt(&name).await.unwrap()?;
            let waiting = rs.metadata.deletion_timestamp.is_some()
                && rs.finalizers().iter().any(|f| f == "foregroundDeletion");
            let others_gone = pods_of(&client, "default", "app=web")
                .await
                .iter()
                .all(|p| p.name_any() == held_pod);
            (waiting && others_gone).then_some(())
        },
    )
    .await;
    pods.patch(&held_pod, &PatchParams::default(), &hold(vec![]))
        .await
        .unwrap();
    settle(&cluster, "foreground cascade", || async {
        sets.get_opt(&name).await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(
        pods_of(&client, "default", "app=web").await.is_empty(),
        "dependents were gone before the owner"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn endpoints_service_accounts_and_pod_cidrs() {
    use k8s_openapi::api::core::v1::{Endpoints, Node, ServiceAccount};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use rind_testing::ok;
    let cluster = cluster().await;
    let client = cluster.client.clone();

    // Every namespace gets a default ServiceAccount, also one made later.
    let team: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "team"}})).unwrap();
    Api::all(client.clone())
        .create(&PostParams::default(), &team)
        .await
        .unwrap();
    for ns in ["default", "kube-system", "team"] {
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        settle(&cluster, "a default service account", || async {
            api.get_opt("default").await.unwrap().map(|_| ())
        })
        .await;
    }

    // A node without a podCIDR gets one from the pod subnet.
    let node: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "n2"}})).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let cidr = settle(&cluster, "a podCIDR", || async {
        nodes.get("n2").await.unwrap().spec?.pod_cidr
    })
    .await;
    assert_eq!(cidr, "10.244.0.0/24");
    // Nodes registering together never share a block (allocations are serialized and
    // read the blocks in use from the API, not from a store that may lag).
    let names: Vec<String> = (3..9).map(|i| format!("n{i}")).collect();
    futures::future::join_all(names.iter().map(|name| {
        let node: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        let nodes = nodes.clone();
        async move { nodes.create(&PostParams::default(), &node).await.unwrap() }
    }))
    .await;
    let mut cidrs = std::collections::BTreeSet::from([cidr]);
    for name in &names {
        let got = settle(&cluster, "a podCIDR", || async {
            nodes.get(name).await.unwrap().spec?.pod_cidr
        })
        .await;
        assert!(cidrs.insert(got.clone()), "{got} was given twice");
    }

    // Endpoints list only Ready pods, with the named target port resolved.
    let svc = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("svc.json");
    std::fs::write(&file, svc.to_string()).unwrap();
    ok(&cluster.server, &["apply", "-f", file.to_str().unwrap()]).await;
    for (name, ready) in [("a", true), ("b", true), ("c", false)] {
        let annotations = if ready {
            serde_json::json!({})
        } else {
            serde_json::json!({NOT_READY: "yes"})
        };
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": "web"}, "annotations": annotations},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "ports": [{"name": "web", "containerPort": 8080}]}]}
        }))
        .unwrap();
        Api::<Pod>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let ip_of = |name: &'static str| {
        let pods = pods.clone();
        async move { pods.get(name).await.unwrap().status?.pod_ip }
    };
    let (a, b, c) = settle(&cluster, "pod IPs", || async {
        Some((ip_of("a").await?, ip_of("b").await?, ip_of("c").await?))
    })
    .await;
    assert!(a != b && b != c && a != c);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let addresses = |field: fn(
        &k8s_openapi::api::core::v1::EndpointSubset,
    )
        -> Option<&Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        let endpoints = endpoints.clone();
        async move {
            let ep = endpoints.get_opt("web").await.unwrap()?;
            let mut ips: Vec<String> = ep
                .subsets
                .iter()
                .flatten()
                .flat_map(|s| field(s).into_iter().flatten())
                .map(|a| a.ip.clone())
                .collect();
            ips.sort();
            Some(ips)
        }
    };
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    settle(&cluster, "ready endpoints", || async {
        let ready = addresses(|s| s.addresses.as_ref()).await?;
        let not_ready = addresses(|s| s.not_ready_addresses.as_ref()).await?;
        (ready == want && not_ready == vec![c.clone()]).then_some(())
    })
    .await;
    let ep = endpoints.get("web").await.unwrap();
    assert_eq!(ep.subsets.unwrap()[0].ports.as_ref().unwrap()[0].port, 8080);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    settle(&cluster, "one slice with every pod", || async {
        let slice = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .unwrap()
            .items;
        let ready: Vec<Option<bool>> = slice
            .first()?
            .endpoints
            .iter()
            .flatten()
            .map(|e| e.conditions.as_ref().and_then(|c| c.ready))
            .collect();
        (slice.len() == 1
            && ready.len() == 3
            && ready.iter().filter(|r| **r == Some(true)).count() == 2)
            .then_some(())
    })
    .await;

    // A deleted pod leaves; deleting the Service removes its Endpoints and slices.
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    settle(&cluster, "endpoints without a", || async {
        (addresses(|s| s.addresses.as_ref()).await? == vec![b.clone()]).then_some(())
    })
    .await;
    ok(&cluster.server, &["delete", "service", "web"]).await;
    settle(&cluster, "endpoints and slices gone", || async {
        let ep_gone = endpoints.get_opt("web").await.unwrap().is_none();
        let slices_gone = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .unwrap()
            .items
            .is_empty();
        (ep_gone && slices_gone).then_some(())
    })
    .await;
}

/// Plays the containers of a Job's pods: every Running pod of `job` ends in `phase`.
pub(super) async fn finish_pods(client: &Client, job: &str, phase: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pods = pods_of(
        client,
        "default",
        &format!("batch.kubernetes.io/job-name={job}"),
    )
    .await;
    for pod in pods {
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            let status = serde_json::json!({"status": {"phase": phase}});
            let _ = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn jobs_run_to_completions_and_fail_after_backoff_limit() {
    use k8s_openapi::api::batch::v1::Job;
    let cluster = cluster().await;
    let client = cluster.client.clone();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job = |name: &str, completions: i32, backoff: i32| -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "completions": completions, "parallelism": 2, "backoffLimit": backoff,
                "template": {"spec": {"restartPolicy": "Never",
                                      "containers": [{"name": "c", "image": "busybox"}]}}
            }
        }))
        .unwrap()
    };
    jobs.create(&PostParams::default(), &job("ok", 3, 6))
        .await
        .unwrap();
    let most_active = Arc::new(AtomicUsize::new(0));
    settle(&cluster, "the job to complete", || async {
        let pods = pods_of(&client, "default", "batch.kubernetes.io/job-name=ok").await;
        let active = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded"))
            .count();
        most_active.fetch_max(active, Ordering::SeqCst);
        finish_pods(&client, "ok", "Succeeded").await;
        let status = jobs.get("ok").await.unwrap().status?;
        let complete = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Complete" && c.status == "True");
        (complete && status.succeeded == Some(3)).then_some(())
    })
    .await;
    assert!(
        most_active.load(Ordering::SeqCst) <= 2,
        "parallelism exceeded"
    );
    let pods = pods_of(&client, "default", "batch.kubernetes.io/job-name=ok").await;
    assert_eq!(pods.len(), 3, "exactly completions pods ran");
    rind_testing::ok(
        &cluster.server,
        &[
            "wait",
            "--for=condition=complete",
            "job/ok",
            "--timeout=10s",
        ],
    )
    .await;

    jobs.create(&PostParams::default(), &job("bad", 3, 1))
        .await
        .unwrap();
    settle(&cluster, "the job to fail", || async {
        finish_pods(&client, "bad", "Failed").await;
        let status = jobs.get("bad").await.unwrap().status?;
        let failed = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Failed")?;
        (failed.reason.as_deref() == Some("BackoffLimitExceeded")).then_some(())
    })
    .await;
    let status = jobs.get("bad").await.unwrap().status.unwrap();
    assert!(status.failed.unwrap_or(0) >= 2);
    // `active` is `omitempty` upstream: no pod left running leaves it out.
    assert_eq!(status.active, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn daemonset_runs_one_pod_per_eligible_node_including_new_ones() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::Node;
    let cluster = cluster().await;
    let client = cluster.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    let node = |name: &str, disk: &str| -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"disk": disk}},
            "spec": {"podCIDR": "10.244.9.0/24"}
        }))
        .unwrap()
    };
    for (name, disk) in [("n1", "ssd"), ("n2", "ssd"), ("n3", "hdd")] {
        nodes
            .create(&PostParams::default(), &node(name, disk))
            .await
            .unwrap();
    }
    let ds: DaemonSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"nodeSelector": {"disk": "ssd"},
                                  "containers": [{"name": "c", "image": "busybox"}]}}
        }
    }))
    .unwrap();
    Api::<DaemonSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    let placed = |want: Vec<&'static str>| {
        let client = client.clone();
        async move {
            let pods = pods_of(&client, "default", "app=agent").await;
            let mut on: Vec<String> = pods
                .iter()
                .filter(|p| is_ready(p))
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect();
            on.sort();
            (on == want && pods.len() == want.len()).then_some(())
        }
    };
    settle(&cluster, "a pod on each ssd node", || {
        placed(vec!["n1", "n2"])
    })
    .await;
    nodes
        .create(&PostParams::default(), &node("n4", "ssd"))
        .await
        .unwrap();
    settle(&cluster, "a pod on the new node", || {
        placed(vec!["n1", "n2", "n4"])
    })
    .await;
    let ds = Api::<DaemonSet>::namespaced(client.clone(), "default")
        .get("agent")
        .await
        .unwrap();
    let status = ds.status.unwrap();
    assert_eq!(status.desired_number_scheduled, 3);
}

/// `admin`, `edit` and `view` start without rules of their own (as upstream's
/// defaults); the aggregation controller fills them, and a CRD's role labelled
/// aggregate-to-edit reaches `edit` and, through it, `admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn aggregated_cluster_roles_gain_labelled_roles_rules() {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    let cluster = cluster().await;
    let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
    let has_rule = |role: &ClusterRole, resource: &str| {
        role.rules
            .iter()
            .flatten()
            .any(|r| r.resources.iter().flatten().any(|x| x == resource))
    };
    eventually("view to aggregate system:aggregate-to-view", || async {
        let view = roles.get("view").await.ok()?;
        has_rule(&view, "pods/log").then_some(())
    })
    .await;
    let widgets: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "widgets-edit", "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["*"]}]
    }))
    .unwrap();
    roles
        .create(&PostParams::default(), &widgets)
        .await
        .unwrap();
    for aggregated in ["edit", "admin"] {
        eventually(&format!("{aggregated} to hold widgets"), || async {
            let role = roles.get(aggregated).await.ok()?;
            has_rule(&role, "widgets").then_some(())
        })
        .await;
    }
    let view = roles.get("view").await.unwrap();
    assert!(!has_rule(&view, "widgets"));
    roles
        .delete("widgets-edit", &DeleteParams::default())
        .await
        .unwrap();
    eventually("edit to drop widgets", || async {
        let edit = roles.get("edit").await.ok()?;
        (!has_rule(&edit, "widgets")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_ca_is_published_and_restored() {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    let cluster = cluster_with(Settings {
        root_ca: Some("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".into()),
        ..Settings::default()
    })
    .await;
    let client = cluster.client.clone();
    let team: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "team"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &team)
        .await
        .unwrap();
    let ca = |cm: ConfigMap| cm.data.and_then(|d| d.get("ca.crt").cloned());
    for ns in ["default", "kube-system", "team"] {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let got = settle(&cluster, "kube-root-ca.crt", || async {
            api.get_opt("kube-root-ca.crt").await.unwrap().and_then(ca)
        })
        .await;
        assert!(got.contains("CA"), "{got}");
    }
    // An edited or deleted copy is put back.
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let patch = serde_json::json!({"data": {"ca.crt": "tampered"}});
    api.patch(
        "kube-root-ca.crt",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    settle(&cluster, "the CA restored", || async {
        let cm = api.get("kube-root-ca.crt").await.unwrap();
        ca(cm).filter(|c| c.contains("BEGIN")).map(|_| ())
    })
    .await;
    api.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    settle(&cluster, "the CA recreated", || async {
        api.get_opt("kube-root-ca.crt").await.unwrap().and_then(ca)
    })
    .await;
}

/// A node that turns Ready loses its not-ready taints at the next node event, not at
/// the next periodic pass (5 s with the default grace): pods created right after a
/// node joins must be able to land on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn a_node_turning_ready_loses_its_not_ready_taints_at_once() {
    use k8s_openapi::api::core::v1::Node;
    let cluster = cluster().await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "joining"}}))
        .expect("a node object");
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let set_ready = |status: &'static str| {
        let nodes = nodes.clone();
        async move {
            let now = Timestamp::now().to_string();
            let patch = serde_json::json!({"status": {"conditions": [{
                "type": "Ready", "status": status, "reason": "Test",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }]}});
            nodes
                .patch_status("joining", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    let taint_keys = || {
        let nodes = nodes.clone();
        async move {
            let node = nodes.get("joining").await.unwrap();
            node.spec
                .and_then(|s| s.taints)
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.key)
                .collect::<Vec<_>>()
        }
    };
    set_ready("False").await;
    settle(&cluster, "the not-ready taints", || async {
        taint_keys()
            .await
            .iter()
            .any(|k| k == super::nodelifecycle::TAINT_NOT_READY)
            .then_some(())
    })
    .await;
    // Right after the pass that added them: a periodic pass would come 5 s later.
    let started = std::time::Instant::now();
    set_ready("True").await;
    settle(&cluster, "no not-ready taint", || async {
        taint_keys().await.is_empty().then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the taints went {took:?} after the node turned Ready"
    );
}

/// Pods bound to a node that is deleted are marked Failed and force-deleted once the
/// node has been gone for the quarantine; pods on other nodes stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn pods_of_a_deleted_node_are_collected() {
    use k8s_openapi::api::core::v1::Node;
    let cluster = cluster_with(Settings {
        pod_gc_quarantine: Some(Duration::from_secs(1)),
        ..Settings::default()
    })
    .await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    for name in ["doomed", "kept"] {
        let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("a node object");
        nodes.create(&PostParams::default(), &node).await.unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("on-{name}")},
            "spec": {"nodeName": name, "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .expect("a pod object");
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    settle(&cluster, "both pods running", || async {
        let running = pods
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == 2).then_some(())
    })
    .await;
    nodes
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    settle(&cluster, "the orphaned pod gone", || async {
        pods.get_opt("on-doomed")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(pods.get_opt("on-kept").await.unwrap().is_some());
}
