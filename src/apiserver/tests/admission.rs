//! The admission plugins upstream always runs that enforce a namespace's policies,
//! driven by the real kubectl: the LimitRanger (defaults and limits of pods and
//! claims) and ResourceQuota admission (charges at create, upstream's 403s). The
//! quota controller that computes `status.used` from the objects is the
//! controller-manager's; here the quota's status is written by hand where needed.

use rind_testing::{TestServer, eventually, fails, kubectl, ok, start, write};
use serde_json::Value;

async fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(server, &all).await).unwrap()
}

const LIMIT_RANGE: &str = "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: cpu-defaults\n  namespace: limited\nspec:\n  limits:\n  - type: Container\n    defaultRequest:\n      cpu: 100m\n    default:\n      cpu: 200m\n      memory: 512Mi\n    max:\n      memory: 1Gi\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn limit_ranges_default_and_limit_new_pods() {
    let server = start().await;
    ok(&server, &["create", "namespace", "limited"]).await;
    let file = write(server.dir.path(), "lr.yaml", LIMIT_RANGE);
    ok(&server, &["create", "-f", &file]).await;
    let listed = ok(&server, &["get", "limits", "-n", "limited"]).await;
    assert!(listed.contains("cpu-defaults"), "{listed}");

    // The mirror the plugin reads may lag the create by a moment.
    let pod = eventually("the new pod to get the LimitRange's defaults", || async {
        let _ = kubectl(
            &server,
            &["delete", "pod", "app", "-n", "limited", "--wait=false"],
        )
        .await;
        ok(
            &server,
            &[
                "run",
                "app",
                "-n",
                "limited",
                "--image=busybox:1.36",
                "--restart=Never",
                "--",
                "sleep",
                "1",
            ],
        )
        .await;
        let pod = get_json(&server, &["get", "pod", "app", "-n", "limited"]).await;
        (pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "100m").then_some(pod)
    })
    .await;
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(resources["limits"]["cpu"], "200m", "{pod}");
    assert_eq!(resources["limits"]["memory"], "512Mi", "{pod}");
    // Defaulted after the pod's own defaults: no memory request from the new limit.
    assert!(resources["requests"].get("memory").is_none(), "{pod}");
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu request for container app; cpu, memory limit for container app"
    );
    // Its QoS class follows the resources it was given.
    assert_eq!(pod["status"]["qosClass"], "Burstable");

    // A container over the range's max is refused with upstream's message.
    let big = write(
        server.dir.path(),
        "big.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\n  namespace: limited\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    resources:\n      limits:\n        memory: 2Gi\n",
    );
    let err = fails(&server, &["create", "-f", &big]).await;
    assert!(
        err.contains("Error from server (Forbidden): error when creating")
            && err.contains("pods \"big\" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi"),
        "{err}"
    );
    // A pod in another namespace is left alone.
    ok(
        &server,
        &["run", "free", "--image=busybox:1.36", "--restart=Never"],
    )
    .await;
    let free = get_json(&server, &["get", "pod", "free"]).await;
    assert!(
        free["spec"]["containers"][0]
            .get("resources")
            .is_none_or(|r| r.get("requests").is_none()),
        "{free}"
    );

    // LimitRanges themselves are validated as upstream does.
    let bad = write(
        server.dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: bad\n  namespace: limited\nspec:\n  limits:\n  - type: Container\n    min:\n      cpu: '2'\n    max:\n      cpu: '1'\n",
    );
    let err = fails(&server, &["create", "-f", &bad]).await;
    assert!(
        err.contains(
            "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn quota_admission_charges_and_refuses() {
    let server = start().await;
    ok(&server, &["create", "namespace", "quoted"]).await;
    ok(
        &server,
        &[
            "create",
            "quota",
            "pods",
            "-n",
            "quoted",
            "--hard=pods=2,count/configmaps=5",
        ],
    )
    .await;
    // Until the quota controller has written the quota's status, the quota does not
    // apply (upstream matches quotas by `status.hard`).
    ok(&server, &["create", "configmap", "c0", "-n", "quoted"]).await;
    // Hard limits known but their usage not: upstream refuses to guess.
    let patch_status = |status: &'static str| {
        let server = &server;
        async move {
            ok(
                server,
                &[
                    "patch",
                    "quota",
                    "pods",
                    "-n",
                    "quoted",
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    status,
                ],
            )
            .await
        }
    };
    patch_status(r#"{"status": {"hard": {"pods": "2", "count/configmaps": "5"}, "used": {"count/configmaps": "1"}}}"#).await;
    let err = fails(
        &server,
        &[
            "run",
            "early",
            "-n",
            "quoted",
            "--image=busybox:1.36",
            "--restart=Never",
        ],
    )
    .await;
    assert!(
        err.contains(
            "pods \"early\" is forbidden: status unknown for quota: pods, resources: pods"
        ),
        "{err}"
    );
    // What the quota controller would write: hard from the spec and what is used.
    patch_status(r#"{"status": {"used": {"pods": "0", "count/configmaps": "1"}}}"#).await;
    for name in ["one", "two"] {
        ok(
            &server,
            &[
                "run",
                name,
                "-n",
                "quoted",
                "--image=busybox:1.36",
                "--restart=Never",
            ],
        )
        .await;
    }
    let err = fails(
        &server,
        &[
            "run",
            "three",
            "-n",
            "quoted",
            "--image=busybox:1.36",
            "--restart=Never",
        ],
    )
    .await;
    assert!(
        err.contains("Error from server (Forbidden): pods \"three\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    // Admission charged the two creates it let through, and a configmap.
    ok(&server, &["create", "configmap", "c1", "-n", "quoted"]).await;
    let quota = get_json(&server, &["get", "quota", "pods", "-n", "quoted"]).await;
    assert_eq!(quota["status"]["used"]["count/configmaps"], "2", "{quota}");
    assert_eq!(quota["status"]["used"]["pods"], "2", "{quota}");
    // A dry run is checked but charges nothing.
    ok(
        &server,
        &[
            "create",
            "configmap",
            "c2",
            "-n",
            "quoted",
            "--dry-run=server",
        ],
    )
    .await;
    let quota = get_json(&server, &["get", "quota", "pods", "-n", "quoted"]).await;
    assert_eq!(quota["status"]["used"]["count/configmaps"], "2", "{quota}");
    let table = ok(&server, &["get", "quota", "-n", "quoted"]).await;
    assert!(
        table.contains("count/configmaps: 2/5, pods: 2/2"),
        "{table}"
    );
    // Bad quotas are refused with upstream's causes.
    let err = fails(
        &server,
        &["create", "quota", "bad", "-n", "quoted", "--hard=pods=1.5"],
    )
    .await;
    // kubectl sends the quantity in canonical form.
    assert!(
        err.contains("spec.hard[pods]: Invalid value: \"1500m\": must be an integer"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn service_accounts_are_required_and_their_token_is_mounted() {
    let server = rind_testing::start_with_service_accounts().await;
    ok(&server, &["create", "namespace", "accounts"]).await;
    let run = [
        "run",
        "app",
        "-n",
        "accounts",
        "--image=busybox:1.36",
        "--restart=Never",
    ];
    // No controller manager here: the namespace has no `default` account yet.
    let refused = fails(&server, &run).await;
    assert!(
        refused.contains(r#"pods "app" is forbidden: error looking up service account accounts/default: serviceaccount "default" not found"#),
        "{refused}"
    );
    ok(
        &server,
        &["create", "serviceaccount", "default", "-n", "accounts"],
    )
    .await;
    ok(&server, &run).await;
    let pod = get_json(&server, &["get", "pod", "app", "-n", "accounts"]).await;
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], "default", "{pod}");
    assert_eq!(spec["serviceAccount"], "default", "{pod}");
    let volume = &spec["volumes"][0];
    let name = volume["name"].as_str().unwrap();
    let suffix = name.strip_prefix("kube-api-access-").unwrap();
    assert!(
        suffix.len() == 5
            && suffix
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{name}"
    );
    assert_eq!(
        volume["projected"],
        serde_json::json!({
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        }),
        "{pod}"
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        serde_json::json!([{"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
        "{pod}"
    );
    // The fields the plugin adds are no one's: kubectl run's manager owns none of them.
    let managed = pod["metadata"]["managedFields"].to_string();
    assert!(!managed.contains("f:volumes"), "{managed}");

    // An account (or a pod) that opts out gets no token.
    let quiet = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: quiet\n  namespace: accounts\nautomountServiceAccountToken: false\n";
    let file = write(server.dir.path(), "quiet.yaml", quiet);
    ok(&server, &["create", "-f", &file]).await;
    ok(
        &server,
        &[
            "run",
            "silent",
            "-n",
            "accounts",
            "--image=busybox:1.36",
            "--restart=Never",
            "--overrides",
            r#"{"spec": {"serviceAccountName": "quiet"}}"#,
        ],
    )
    .await;
    let pod = get_json(&server, &["get", "pod", "silent", "-n", "accounts"]).await;
    assert_eq!(pod["spec"]["serviceAccountName"], "quiet", "{pod}");
    assert!(pod["spec"].get("volumes").is_none(), "{pod}");
    assert!(
        pod["spec"]["containers"][0].get("volumeMounts").is_none(),
        "{pod}"
    );
}
