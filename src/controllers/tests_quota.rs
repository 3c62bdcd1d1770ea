//! The ResourceQuota controller with the API server's quota admission, driven by the
//! real kubectl: `status.used` follows creates and deletes, and a quota of two pods
//! refuses the third with upstream's message.

use super::tests::{cluster, eventually};
use rind_testing::{fails, ok};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn quota_usage_follows_objects_and_limits_pods() {
    let c = cluster().await;
    let server = &c.server;
    ok(server, &["create", "namespace", "team"]).await;
    ok(server, &["create", "configmap", "before", "-n", "team"]).await;
    ok(
        server,
        &[
            "create",
            "quota",
            "small",
            "-n",
            "team",
            "--hard=pods=2,configmaps=5,requests.cpu=1,count/secrets=3",
        ],
    )
    .await;
    let used = |expected: &'static [(&'static str, &'static str)]| async move {
        eventually("the quota's usage", || async {
            let out = ok(
                server,
                &["get", "quota", "small", "-n", "team", "-o", "json"],
            )
            .await;
            let quota: Value = serde_json::from_str(&out).unwrap();
            let used = &quota["status"]["used"];
            let matches = expected.iter().all(|(k, v)| used[*k] == *v);
            if matches {
                Ok(quota)
            } else {
                Err(format!("used: {used}"))
            }
        })
        .await
    };
    // The controller fills hard from spec and counts what is there.
    let quota = used(&[
        ("pods", "0"),
        ("configmaps", "1"),
        ("requests.cpu", "0"),
        ("count/secrets", "0"),
    ])
    .await;
    assert_eq!(quota["status"]["hard"]["pods"], "2", "{quota}");
    // Every container must say how much cpu it requests once a quota tracks it.
    let err = fails(
        server,
        &["run", "bare", "-n", "team", "--image=busybox:1.36"],
    )
    .await;
    assert!(
        err.contains(
            "pods \"bare\" is forbidden: failed quota: small: must specify requests.cpu for: bare"
        ),
        "{err}"
    );
    for name in ["one", "two"] {
        ok(server, &["run", name, "-n", "team", "--image=busybox:1.36", "--overrides",
            r#"{"spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "250m"}}}]}}"#]).await;
    }
    used(&[("pods", "2"), ("requests.cpu", "500m")]).await;
    let err = fails(server, &["run", "three", "-n", "team", "--image=busybox:1.36", "--overrides",
        r#"{"spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "250m"}}}]}}"#]).await;
    assert!(
        err.contains("Error from server (Forbidden): pods \"three\" is forbidden: exceeded quota: small, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    ok(server, &["create", "secret", "generic", "s1", "-n", "team"]).await;
    ok(server, &["create", "configmap", "after", "-n", "team"]).await;
    used(&[("count/secrets", "1"), ("configmaps", "2")]).await;
    // Deletes give usage back.
    ok(
        server,
        &["delete", "pod", "one", "-n", "team", "--wait=true"],
    )
    .await;
    ok(server, &["delete", "configmap", "before", "-n", "team"]).await;
    used(&[("pods", "1"), ("requests.cpu", "250m"), ("configmaps", "1")]).await;
    ok(server, &["run", "three", "-n", "team", "--image=busybox:1.36", "--overrides",
        r#"{"spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "250m"}}}]}}"#]).await;
    used(&[("pods", "2"), ("requests.cpu", "500m")]).await;
    // The table shows used/hard per resource, as kubectl's printer does.
    let table = ok(server, &["get", "quota", "-n", "team"]).await;
    assert!(
        table.contains("configmaps: 1/5, count/secrets: 1/3, pods: 2/2, requests.cpu: 500m/1"),
        "{table}"
    );
}
