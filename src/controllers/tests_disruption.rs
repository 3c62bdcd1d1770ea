//! The disruption controller: PodDisruptionBudget statuses from the pods they select,
//! as the eviction subresource reads them.

use super::tests::{cluster, eventually};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, PostParams};
use serde_json::json;

async fn status_of(api: &Api<PodDisruptionBudget>, name: &str) -> serde_json::Value {
    serde_json::to_value(api.get(name).await.unwrap().status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn budgets_count_healthy_pods_and_gate_evictions() {
    let c = cluster().await;
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    for (name, spec) in [
        ("min", json!({"minAvailable": 2})),
        ("max", json!({"maxUnavailable": "34%"})),
        (
            "bare",
            json!({"maxUnavailable": 1, "selector": {"matchLabels": {"app": "bare"}}}),
        ),
    ] {
        let mut spec = spec;
        if spec.get("selector").is_none() {
            spec["selector"] = json!({"matchLabels": {"app": "web"}});
        }
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"}, "spec": spec,
        }))
        .unwrap();
        budgets.create(&PostParams::default(), &pdb).await.unwrap();
    }
    // A pod no controller manages: maxUnavailable cannot tell how many are expected.
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bare", "namespace": "default", "labels": {"app": "bare"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &bare)
        .await
        .unwrap();

    let min = eventually("the minAvailable budget's status", || async {
        let s = status_of(&budgets, "min").await;
        (s["currentHealthy"] == 3 && s["disruptionsAllowed"] == 1)
            .then(|| s.clone())
            .ok_or(format!("{s}"))
    })
    .await;
    assert_eq!(min["desiredHealthy"], 2, "{min}");
    assert_eq!(min["expectedPods"], 3, "{min}");
    assert_eq!(min["conditions"][0]["type"], "DisruptionAllowed");
    assert_eq!(min["conditions"][0]["status"], "True");
    // 34% of three unavailable rounds up to two: one pod must stay healthy.
    let max = eventually("the maxUnavailable budget's status", || async {
        let s = status_of(&budgets, "max").await;
        (s["disruptionsAllowed"] == 2)
            .then(|| s.clone())
            .ok_or(format!("{s}"))
    })
    .await;
    assert_eq!(
        (max["desiredHealthy"].clone(), max["expectedPods"].clone()),
        (json!(1), json!(3))
    );
    let bare_status = eventually("the bare pod's budget to refuse", || async {
        let s = status_of(&budgets, "bare").await;
        (s["conditions"][0]["reason"] == "SyncFailed")
            .then(|| s.clone())
            .ok_or(format!("{s}"))
    })
    .await;
    assert_eq!(bare_status["disruptionsAllowed"], 0, "{bare_status}");

    // The budget refuses evicting the bare pod (429, which this client must not retry).
    let kubeconfig = kube::config::Kubeconfig::read_from(&c.server.kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    let pods: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    match pods.evict("bare", &EvictParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 429, "{status:?}"),
        other => panic!("evicting the bare pod: {other:?}"),
    }
}
