//! Watches with selectors from a list's resourceVersion, as upstream's conformance test
//! "pods should be submitted and removed" does: list with a selector, watch with the
//! same selector from the list's resourceVersion, then see matching objects arrive,
//! change and leave. An object entering the selector is ADDED, one leaving it DELETED,
//! one changed while matching MODIFIED.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use rind_testing::{DEADLINE, TestServer, client, make_pki, pod, start, start_etcd, start_with};
use serde_json::json;

type Events = futures::stream::BoxStream<'static, kube::Result<WatchEvent<Pod>>>;

/// The next event that is not a bookmark, as `(type, pod name)`.
async fn next(events: &mut Events) -> (&'static str, String) {
    loop {
        let event = tokio::time::timeout(DEADLINE, events.try_next())
            .await
            .expect("watch stalled")
            .expect("watch failed")
            .expect("watch ended");
        let (kind, pod) = match event {
            WatchEvent::Added(p) => ("ADDED", p),
            WatchEvent::Modified(p) => ("MODIFIED", p),
            WatchEvent::Deleted(p) => ("DELETED", p),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(status) => panic!("watch error: {status:?}"),
        };
        return (kind, pod.metadata.name.unwrap_or_default());
    }
}

/// A fresh namespace per flow, as the conformance suite makes one per test.
async fn namespace(client: &kube::Client, name: &str) -> Api<Pod> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    Api::namespaced(client.clone(), name)
}

/// An empty list with `selector`, then a watch with the same selector from its version.
async fn list_then_watch(pods: &Api<Pod>, list: &ListParams, watch: &WatchParams) -> Events {
    let listed = pods.list(list).await.unwrap();
    assert!(listed.items.is_empty(), "{:?}", listed.items);
    let rv = listed
        .metadata
        .resource_version
        .expect("a list resourceVersion");
    pods.watch(watch, &rv).await.unwrap().boxed()
}

fn labelled(name: &str, time: &str) -> Pod {
    let mut pod = pod(name);
    pod.metadata.labels = Some(
        [("name", "foo"), ("time", time)]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
    );
    pod
}

fn now() -> DeleteParams {
    DeleteParams::default().grace_period(0)
}

/// Upstream's conformance pattern with a label selector, then every transition.
async fn label_selector_flow(server: &TestServer) {
    let client = client(server).await;
    let pods = namespace(&client, "pods-label").await;
    let mut events = list_then_watch(
        &pods,
        &ListParams::default().labels("time=1"),
        &WatchParams::default().labels("time=1"),
    )
    .await;
    // The first write after the list: its revision is the list's plus one.
    pods.create(&PostParams::default(), &labelled("submitted", "1"))
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, ("ADDED", "submitted".into()));
    pods.create(&PostParams::default(), &labelled("other", "2"))
        .await
        .unwrap();
    let time = |value: &str| Patch::Merge(json!({"metadata": {"labels": {"time": value}}}));
    let params = PatchParams::default();
    pods.patch("submitted", &params, &time("2")).await.unwrap();
    assert_eq!(next(&mut events).await, ("DELETED", "submitted".into()));
    pods.patch("other", &params, &time("1")).await.unwrap();
    assert_eq!(next(&mut events).await, ("ADDED", "other".into()));
    let annotate = Patch::Merge(json!({"metadata": {"annotations": {"seen": "yes"}}}));
    pods.patch("other", &params, &annotate).await.unwrap();
    assert_eq!(next(&mut events).await, ("MODIFIED", "other".into()));
    pods.delete("submitted", &now()).await.unwrap();
    pods.delete("other", &now()).await.unwrap();
    assert_eq!(next(&mut events).await, ("DELETED", "other".into()));
}

/// The informer of the conformance test may open its watch only after the test created
/// the pod, and other kinds may be written meanwhile: the watch from the list's version
/// must still replay the creation (from the cache's ring or the store's history).
async fn created_before_the_watch_flow(server: &TestServer) {
    let client = client(server).await;
    let pods = namespace(&client, "pods-late").await;
    let listed = pods
        .list(&ListParams::default().labels("time=1"))
        .await
        .unwrap();
    let rv = listed
        .metadata
        .resource_version
        .expect("a list resourceVersion");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "pods-late");
    let configmap: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    configmaps
        .create(&PostParams::default(), &configmap)
        .await
        .unwrap();
    pods.create(&PostParams::default(), &labelled("early", "1"))
        .await
        .unwrap();
    let selected = WatchParams::default().labels("time=1");
    let mut events: Events = pods.watch(&selected, &rv).await.unwrap().boxed();
    assert_eq!(next(&mut events).await, ("ADDED", "early".into()));
    // A streaming list (sendInitialEvents) with the same selector sees it as initial.
    let streaming = WatchParams::streaming_lists().labels("time=1");
    let mut streamed: Events = pods.watch(&streaming, "").await.unwrap().boxed();
    assert_eq!(next(&mut streamed).await, ("ADDED", "early".into()));
    pods.delete("early", &now()).await.unwrap();
    assert_eq!(next(&mut events).await, ("DELETED", "early".into()));
    assert_eq!(next(&mut streamed).await, ("DELETED", "early".into()));
}

/// A kubelet's watch: `spec.nodeName` of its node. A pod enters it when bound, is
/// MODIFIED while bound (a graceful delete only marks it) and DELETED when removed.
async fn field_selector_flow(server: &TestServer) {
    let client = client(server).await;
    let pods = namespace(&client, "pods-field").await;
    let mut events = list_then_watch(
        &pods,
        &ListParams::default().fields("spec.nodeName=node-a"),
        &WatchParams::default().fields("spec.nodeName=node-a"),
    )
    .await;
    let bound = |name: &str, node: &str| {
        let mut pod = pod(name);
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.into());
        }
        pod
    };
    pods.create(&PostParams::default(), &bound("here", "node-a"))
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, ("ADDED", "here".into()));
    pods.create(&PostParams::default(), &bound("elsewhere", "node-b"))
        .await
        .unwrap();
    // Unbound, then bound to the watched node: it enters the selector.
    pods.create(&PostParams::default(), &pod("scheduled"))
        .await
        .unwrap();
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "scheduled"},
        "target": {"kind": "Node", "name": "node-a"},
    });
    let _: serde_json::Value = pods
        .create_subresource("binding", "scheduled", &PostParams::default(), &binding)
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, ("ADDED", "scheduled".into()));
    let params = PatchParams::default();
    let label = Patch::Merge(json!({"metadata": {"labels": {"seen": "yes"}}}));
    pods.patch("elsewhere", &params, &label).await.unwrap();
    pods.patch("here", &params, &label).await.unwrap();
    assert_eq!(next(&mut events).await, ("MODIFIED", "here".into()));
    // A bound pod's graceful delete marks it for its kubelet; the removal follows.
    pods.delete("elsewhere", &now()).await.unwrap();
    pods.delete("here", &DeleteParams::default()).await.unwrap();
    assert_eq!(next(&mut events).await, ("MODIFIED", "here".into()));
    pods.delete("here", &now()).await.unwrap();
    assert_eq!(next(&mut events).await, ("DELETED", "here".into()));
    pods.delete("scheduled", &now()).await.unwrap();
    assert_eq!(next(&mut events).await, ("DELETED", "scheduled".into()));
}

async fn flows(server: &TestServer) {
    label_selector_flow(server).await;
    created_before_the_watch_flow(server).await;
    field_selector_flow(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn selector_watch_from_list_version() {
    flows(&start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: e2e/test-all.sh runs it"]
async fn selector_watch_from_list_version_on_etcd() {
    let (_etcd, store) = start_etcd().await;
    flows(&start_with(&make_pki(), None, store).await).await;
}
