//! The built-in types beyond pods, driven by the real kubectl: creating each kind from
//! a manifest, its table columns, `get all`, `scale`, discovery listings and
//! upstream's validation errors.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, Patch, PatchParams, PostParams};
use rind_testing::{client, fails, ok, pod, start, write};

const MANIFESTS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: busybox:1.36
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      nodeSelector: {kubernetes.io/os: linux}
      containers:
      - name: agent
        image: busybox:1.36
---
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: busybox:1.36
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: hello
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: hello
            image: busybox:1.36
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData: {user: admin}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: read-pods
subjects:
- kind: ServiceAccount
  name: default
  namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: reader
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  # Not `standard`: every cluster starts with that one (bootstrap.rs).
  name: fast
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
"#;

/// The first line of `kubectl get` output, columns separated by single spaces.
fn header(output: &str) -> String {
    output
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn builtin_kinds_with_kubectl() {
    let server = start().await;
    let file = write(server.dir.path(), "all.yaml", MANIFESTS);
    let created = ok(&server, &["create", "-f", &file]).await;
    for line in [
        "deployment.apps/web created",
        "statefulset.apps/db created",
        "daemonset.apps/agent created",
        "job.batch/pi created",
        "cronjob.batch/hello created",
        "configmap/settings created",
        "secret/creds created",
        "role.rbac.authorization.k8s.io/reader created",
        "rolebinding.rbac.authorization.k8s.io/read-pods created",
        "storageclass.storage.k8s.io/fast created",
    ] {
        assert!(created.contains(line), "{created}");
    }

    let expected = [
        ("deployments", "NAME READY UP-TO-DATE AVAILABLE AGE", "0/2"),
        ("statefulsets", "NAME READY AGE", "0/1"),
        (
            "daemonsets",
            "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE",
            "kubernetes.io/os=linux",
        ),
        ("jobs", "NAME STATUS COMPLETIONS DURATION AGE", "0/1"),
        (
            "cronjobs",
            "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE",
            "*/5 * * * *",
        ),
        ("configmaps", "NAME DATA AGE", "settings"),
        ("secrets", "NAME TYPE DATA AGE", "Opaque"),
        ("roles", "NAME CREATED AT", "reader"),
        ("rolebindings", "NAME ROLE AGE", "Role/reader"),
        (
            "storageclasses",
            "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE",
            "fast (default)",
        ),
    ];
    for (plural, columns, cell) in expected {
        let out = ok(&server, &["get", plural]).await;
        assert_eq!(header(&out), columns, "{plural}: {out}");
        assert!(out.contains(cell), "{plural}: {out}");
    }
    let wide = ok(&server, &["get", "deploy", "-o", "wide"]).await;
    assert_eq!(
        header(&wide),
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR"
    );
    assert!(
        wide.contains("nginx:1.27") && wide.contains("app=web"),
        "{wide}"
    );

    // Defaults as upstream fills them in.
    let strategy = ok(
        &server,
        &["get", "deploy", "web", "-o", "jsonpath={.spec.strategy.rollingUpdate.maxSurge} {.spec.revisionHistoryLimit} {.spec.template.spec.restartPolicy} {.metadata.generation}"],
    )
    .await;
    assert_eq!(strategy, "25% 10 Always 1");
    let job = ok(
        &server,
        &[
            "get",
            "job",
            "pi",
            "-o",
            "jsonpath={.spec.backoffLimit} {.spec.completionMode} {.spec.selector.matchLabels}",
        ],
    )
    .await;
    assert!(
        job.starts_with("6 NonIndexed ") && job.contains("batch.kubernetes.io/controller-uid"),
        "{job}"
    );
    let secret = ok(
        &server,
        &["get", "secret", "creds", "-o", "jsonpath={.data.user}"],
    )
    .await;
    assert_eq!(secret, "YWRtaW4=");

    let all = ok(&server, &["get", "all"]).await;
    for name in [
        "deployment.apps/web",
        "statefulset.apps/db",
        "daemonset.apps/agent",
        "job.batch/pi",
        "cronjob.batch/hello",
        "service/kubernetes",
    ] {
        assert!(all.contains(name), "{all}");
    }
    assert!(!all.contains("configmap/"), "{all}");

    // Scale goes through the scale subresource and bumps the generation once.
    let scaled = ok(&server, &["scale", "deployment", "web", "--replicas=5"]).await;
    assert!(scaled.contains("deployment.apps/web scaled"), "{scaled}");
    let replicas = ok(
        &server,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}",
        ],
    )
    .await;
    assert_eq!(replicas, "5 2");
    ok(
        &server,
        &[
            "scale",
            "deployment",
            "web",
            "--current-replicas=5",
            "--replicas=3",
        ],
    )
    .await;
    let err = fails(
        &server,
        &[
            "scale",
            "deployment",
            "web",
            "--current-replicas=5",
            "--replicas=1",
        ],
    )
    .await;
    assert!(err.contains("Expected replicas to be 5, was 3"), "{err}");
    ok(&server, &["label", "deploy", "web", "tier=front"]).await;
    let generation = ok(
        &server,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.generation}",
        ],
    )
    .await;
    assert_eq!(generation, "3", "a label change is not a spec change");
}

/// Secret `data` wrapped across lines, as `base64` without `-w0` writes it, is
/// accepted as upstream accepts it and reads back as the same bytes on one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn secret_data_may_be_line_wrapped() {
    let server = start().await;
    let original: Vec<u8> = (0..=255u8).rev().chain(*b"end of the secret").collect();
    let canonical = STANDARD.encode(&original);
    let wrapped: String = canonical
        .as_bytes()
        .chunks(76)
        .map(|line| format!("    {}\n", String::from_utf8_lossy(line)))
        .collect();
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: wrapped\ndata:\n  block: |\n{wrapped}  crlf: \"aGVs\\r\\nbG8=\\r\\n\"\n"
    );
    let file = write(server.dir.path(), "wrapped.yaml", &manifest);
    ok(&server, &["create", "-f", &file]).await;
    let read = |key: &'static str| {
        let server = &server;
        async move {
            let path = format!("jsonpath={{.data.{key}}}");
            ok(server, &["get", "secret", "wrapped", "-o", &path]).await
        }
    };
    let block = read("block").await;
    assert_eq!(block, canonical);
    assert_eq!(STANDARD.decode(&block).unwrap(), original);
    assert_eq!(read("crlf").await, "aGVsbG8=");

    // Updates are stored canonical too.
    ok(
        &server,
        &[
            "patch",
            "secret",
            "wrapped",
            "-p",
            r#"{"data":{"patched":"d29y\nbGQ=\n"}}"#,
        ],
    )
    .await;
    assert_eq!(read("patched").await, "d29ybGQ=");

    // What upstream's decoder refuses is still refused.
    let err = fails(
        &server,
        &[
            "patch",
            "secret",
            "wrapped",
            "-p",
            r#"{"data":{"bad":"d29y bGQ="}}"#,
        ],
    )
    .await;
    assert!(err.contains("illegal base64 data at input byte 4"), "{err}");
}

/// A just-created workload carries the status upstream's Go types write at their zero
/// values (clients index into `status.replicas`), in GET and LIST alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn created_workloads_show_zero_status() {
    let server = start().await;
    let file = write(server.dir.path(), "all.yaml", MANIFESTS);
    ok(&server, &["create", "-f", &file]).await;
    let status = |kind: &'static str, name: &'static str| {
        let server = &server;
        async move {
            let json = ok(server, &["get", kind, name, "-o", "json"]).await;
            let object: serde_json::Value = serde_json::from_str(&json).unwrap();
            object["status"].clone()
        }
    };
    let sts = status("statefulset", "db").await;
    assert_eq!(sts["replicas"], 0, "{sts}");
    assert_eq!(sts["availableReplicas"], 0, "{sts}");
    assert_eq!(status("deployment", "web").await, serde_json::json!({}));

    let list = ok(&server, &["get", "statefulsets", "-o", "json"]).await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["items"][0]["status"]["replicas"], 0, "{list}");
}

/// ConfigMap `binaryData` is `[]byte` upstream too: line-wrapped base64 is accepted
/// and stored on one line, and what does not decode is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn config_map_binary_data_is_base64() {
    let server = start().await;
    let original: Vec<u8> = (0..=255u8).chain(*b"end of the config").collect();
    let canonical = STANDARD.encode(&original);
    let wrapped: String = canonical
        .as_bytes()
        .chunks(76)
        .map(|line| format!("    {}\n", String::from_utf8_lossy(line)))
        .collect();
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: wrapped\nbinaryData:\n  block: |\n{wrapped}"
    );
    let file = write(server.dir.path(), "wrapped.yaml", &manifest);
    ok(&server, &["create", "-f", &file]).await;
    let block = ok(
        &server,
        &[
            "get",
            "configmap",
            "wrapped",
            "-o",
            "jsonpath={.binaryData.block}",
        ],
    )
    .await;
    assert_eq!(block, canonical);
    assert_eq!(STANDARD.decode(&block).unwrap(), original);

    let bad = write(
        server.dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\nbinaryData:\n  spaced: \"d29y bGQ=\"\n",
    );
    // Upstream's decoder refuses it before anything validates: a 400 naming the byte.
    let err = fails(&server, &["create", "-f", &bad]).await;
    assert!(
        err.contains(
            r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: illegal base64 data at input byte 4"#
        ),
        "{err}"
    );
    fails(&server, &["get", "configmap", "bad"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn workload_validation_errors() {
    let server = start().await;
    let mismatch = write(
        server.dir.path(),
        "mismatch.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n",
    );
    let err = fails(&server, &["create", "-f", &mismatch]).await;
    assert!(
        err.contains(r#"The Deployment "bad" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{"app":"db"}: `selector` does not match template `labels`"#),
        "{err}"
    );

    let file = write(
        server.dir.path(),
        "rs.yaml",
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: front\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: front}\n  template:\n    metadata:\n      labels: {app: front, v: '1'}\n    spec:\n      containers:\n      - name: c\n        image: busybox\n",
    );
    ok(&server, &["create", "-f", &file]).await;
    let err = fails(
        &server,
        &[
            "patch",
            "rs",
            "front",
            "--type=merge",
            "-p",
            r#"{"spec":{"selector":{"matchLabels":{"app":"front","v":"1"}}}}"#,
        ],
    )
    .await;
    assert!(
        err.contains("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"front\", \"v\":\"1\"}") && err.contains("field is immutable"),
        "{err}"
    );
    let err = fails(&server, &["scale", "rs", "front", "--replicas=-1"]).await;
    assert!(
        err.contains("--replicas=COUNT") || err.contains("must be greater than or equal to 0"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn discovery_lists_every_group() {
    let server = start().await;
    let versions = ok(&server, &["api-versions"]).await;
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v1",
        "autoscaling/v2",
        "coordination.k8s.io/v1",
        "discovery.k8s.io/v1",
        "events.k8s.io/v1",
        "networking.k8s.io/v1",
        "node.k8s.io/v1",
        "policy/v1",
        "rbac.authorization.k8s.io/v1",
        "scheduling.k8s.io/v1",
        "storage.k8s.io/v1",
    ] {
        assert!(versions.lines().any(|l| l == gv), "{gv}: {versions}");
    }
    let resources = ok(&server, &["api-resources"]).await;
    for row in [
        "deployments deploy apps/v1 true Deployment",
        "horizontalpodautoscalers hpa autoscaling/v2 true HorizontalPodAutoscaler",
        "cronjobs cj batch/v1 true CronJob",
        "persistentvolumes pv v1 false PersistentVolume",
        "priorityclasses pc scheduling.k8s.io/v1 false PriorityClass",
        "clusterroles rbac.authorization.k8s.io/v1 false ClusterRole",
        "storageclasses sc storage.k8s.io/v1 false StorageClass",
    ] {
        let found = resources
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == row);
        assert!(found, "{row}: {resources}");
    }
    let classes = ok(&server, &["get", "priorityclasses"]).await;
    assert_eq!(
        header(&classes),
        "NAME VALUE GLOBAL-DEFAULT AGE PREEMPTIONPOLICY"
    );
    assert!(
        classes.contains("system-node-critical") && classes.contains("2000001000"),
        "{classes}"
    );
    let hpa = write(
        server.dir.path(),
        "hpa.yaml",
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: web\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 4\n  targetCPUUtilizationPercentage: 60\n",
    );
    ok(&server, &["create", "-f", &hpa]).await;
    let v2 = ok(
        &server,
        &[
            "get",
            "hpa.v2.autoscaling",
            "web",
            "-o",
            "jsonpath={.spec.metrics[0].resource.target.averageUtilization}",
        ],
    )
    .await;
    assert_eq!(v2, "60");
    let table = ok(&server, &["get", "hpa"]).await;
    assert!(
        table.contains("Deployment/web") && table.contains("cpu: <unknown>/60%"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn evictions_respect_disruption_budgets() {
    let server = start().await;
    let client = client(&server).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut web = pod("web-1");
    web.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    pods.create(&PostParams::default(), &web).await.unwrap();
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client, "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}
    }))
    .unwrap();
    budgets.create(&PostParams::default(), &pdb).await.unwrap();

    // kube-rs retries 429s with backoff; kubectl's raw request shows the refusal at once.
    let eviction = write(
        server.dir.path(),
        "eviction.json",
        r#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1"}}"#,
    );
    let refused = fails(
        &server,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/web-1/eviction",
            "-f",
            &eviction,
        ],
    )
    .await;
    assert!(
        refused.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{refused}"
    );

    // The disruption controller's verdict: one pod may go.
    let status = serde_json::json!({"status": {"observedGeneration": 1, "disruptionsAllowed": 1,
        "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}});
    budgets
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    assert!(pods.get_opt("web-1").await.unwrap().is_none());
    let after = budgets.get_status("web").await.unwrap();
    let after = after.status.unwrap();
    assert_eq!(after.disruptions_allowed, Some(0));
    assert!(after.disrupted_pods.unwrap().contains_key("web-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn kubectl_drain_evicts_pods() {
    let server = start().await;
    let objects = write(
        server.dir.path(),
        "objects.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  namespace: default\nspec:\n  nodeName: worker\n  containers:\n  - name: c\n    image: busybox:1.36\n",
    );
    ok(&server, &["create", "-f", &objects]).await;
    // drain POSTs a policy/v1 Eviction (as protobuf) for each pod, then waits for it
    // to be gone.
    let out = ok(
        &server,
        &[
            "drain",
            "worker",
            "--force",
            "--grace-period=0",
            "--timeout=15s",
        ],
    )
    .await;
    assert!(out.contains("pod/bare evicted"), "{out}");
    let gone = fails(&server, &["get", "pod", "bare"]).await;
    assert!(gone.contains("NotFound"), "{gone}");
}
