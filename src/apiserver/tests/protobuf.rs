//! kubectl's typed clients POST protobuf bodies (`application/vnd.kubernetes.protobuf`):
//! the real kubectl 1.37 creates objects that way here, and what it created reads back
//! with the fields it sent.

use rind_testing::{TestServer, fails, kubectl, ok, start, stderr};
use serde_json::Value;

async fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    serde_json::from_str(&ok(server, &full).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn kubectl_typed_creates_send_protobuf() {
    let server = start().await;
    ok(&server, &["create", "namespace", "pb"]).await;
    assert_eq!(
        get_json(&server, &["get", "namespace", "pb"]).await["status"]["phase"],
        "Active"
    );

    // core/v1 kinds.
    ok(
        &server,
        &[
            "-n",
            "pb",
            "create",
            "configmap",
            "cm",
            "--from-literal=a=b",
            "--from-literal=c=d",
        ],
    )
    .await;
    let yaml = ok(
        &server,
        &["-n", "pb", "get", "configmap", "cm", "-o", "yaml"],
    )
    .await;
    assert!(
        yaml.contains("  a: b\n") && yaml.contains("  c: d\n"),
        "{yaml}"
    );
    ok(
        &server,
        &[
            "-n",
            "pb",
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=pw=hunter2",
        ],
    )
    .await;
    let secret = get_json(&server, &["-n", "pb", "get", "secret", "s"]).await;
    assert_eq!(secret["data"]["pw"], "aHVudGVyMg==");
    assert_eq!(secret["type"], "Opaque");
    ok(&server, &["-n", "pb", "create", "serviceaccount", "robot"]).await;
    assert_eq!(
        get_json(&server, &["-n", "pb", "get", "serviceaccount", "robot"]).await["metadata"]["name"],
        "robot"
    );

    // A server-side dry run decodes the same body and stores nothing.
    ok(
        &server,
        &[
            "-n",
            "pb",
            "create",
            "configmap",
            "dry",
            "--from-literal=x=y",
            "--dry-run=server",
        ],
    )
    .await;
    let missing = fails(&server, &["-n", "pb", "get", "configmap", "dry"]).await;
    assert!(missing.contains("NotFound"), "{missing}");

    // Other groups.
    ok(
        &server,
        &[
            "-n",
            "pb",
            "create",
            "deployment",
            "web",
            "--image=busybox:1.36",
            "--replicas=2",
            "--port=80",
        ],
    )
    .await;
    let deployment = get_json(&server, &["-n", "pb", "get", "deployment", "web"]).await;
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["selector"]["matchLabels"]["app"], "web");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "busybox:1.36");
    assert_eq!(container["ports"][0]["containerPort"], 80);

    ok(
        &server,
        &[
            "-n",
            "pb",
            "create",
            "job",
            "once",
            "--image=busybox:1.36",
            "--",
            "echo",
            "hi",
        ],
    )
    .await;
    let job = get_json(&server, &["-n", "pb", "get", "job", "once"]).await;
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(
        pod["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );

    ok(
        &server,
        &[
            "-n",
            "pb",
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ],
    )
    .await;
    let role = get_json(&server, &["-n", "pb", "get", "role", "reader"]).await;
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    assert_eq!(role["rules"][0]["resources"], serde_json::json!(["pods"]));
    assert_eq!(role["rules"][0]["apiGroups"], serde_json::json!([""]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn kubectl_typed_creates_in_other_groups() {
    let server = start().await;
    let n = ["-n", "default"];
    let run = |args: &'static [&'static str]| {
        let mut full = n.to_vec();
        full.extend(args);
        full
    };
    ok(
        &server,
        &run(&["create", "deployment", "web", "--image=busybox:1.36"]),
    )
    .await;
    ok(
        &server,
        &run(&["create", "service", "clusterip", "web", "--tcp=80:8080"]),
    )
    .await;
    let svc = get_json(&server, &run(&["get", "service", "web"])).await;
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);

    ok(
        &server,
        &run(&["create", "quota", "q", "--hard=pods=10,cpu=2"]),
    )
    .await;
    let quota = get_json(&server, &run(&["get", "resourcequota", "q"])).await;
    assert_eq!(quota["spec"]["hard"]["pods"], "10");

    ok(
        &server,
        &[
            "create",
            "priorityclass",
            "high",
            "--value=1000",
            "--description=hi",
        ],
    )
    .await;
    assert_eq!(
        get_json(&server, &["get", "priorityclass", "high"]).await["value"],
        1000
    );

    ok(
        &server,
        &run(&[
            "create",
            "pdb",
            "pdb",
            "--selector=app=web",
            "--min-available=50%",
        ]),
    )
    .await;
    let pdb = get_json(&server, &run(&["get", "pdb", "pdb"])).await;
    assert_eq!(pdb["spec"]["minAvailable"], "50%");

    ok(
        &server,
        &run(&["create", "ingress", "ing", "--rule=foo.com/bar=web:80"]),
    )
    .await;
    let ingress = get_json(&server, &run(&["get", "ingress", "ing"])).await;
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"],
        80
    );

    ok(
        &server,
        &run(&[
            "create",
            "cronjob",
            "tick",
            "--image=busybox:1.36",
            "--schedule=*/5 * * * *",
            "--",
            "date",
        ]),
    )
    .await;
    let cronjob = get_json(&server, &run(&["get", "cronjob", "tick"])).await;
    assert_eq!(cronjob["spec"]["schedule"], "*/5 * * * *");

    // A job from the cronjob's template: the whole stored pod template and an owner
    // reference travel back as protobuf.
    ok(
        &server,
        &run(&["create", "job", "manual", "--from=cronjob/tick"]),
    )
    .await;
    let job = get_json(&server, &run(&["get", "job", "manual"])).await;
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "CronJob");
    assert_eq!(owner["uid"], cronjob["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["date"])
    );

    ok(&server, &run(&["create", "serviceaccount", "robot"])).await;
    ok(
        &server,
        &run(&[
            "create",
            "rolebinding",
            "rb",
            "--clusterrole=view",
            "--serviceaccount=default:robot",
        ]),
    )
    .await;
    let binding = get_json(&server, &run(&["get", "rolebinding", "rb"])).await;
    assert_eq!(binding["subjects"][0]["name"], "robot");
    ok(
        &server,
        &[
            "create",
            "clusterrole",
            "logs",
            "--verb=get",
            "--non-resource-url=/logs",
        ],
    )
    .await;
    let role = get_json(&server, &["get", "clusterrole", "logs"]).await;
    assert_eq!(
        role["rules"][0]["nonResourceURLs"],
        serde_json::json!(["/logs"])
    );
    ok(
        &server,
        &[
            "create",
            "clusterrolebinding",
            "crb",
            "--clusterrole=logs",
            "--user=alice",
        ],
    )
    .await;
    let binding = get_json(&server, &["get", "clusterrolebinding", "crb"]).await;
    assert_eq!(binding["roleRef"]["name"], "logs");

    ok(
        &server,
        &run(&["autoscale", "deployment", "web", "--max=5", "--cpu=70%"]),
    )
    .await;
    let hpa = get_json(&server, &run(&["get", "hpa", "web"])).await;
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "web");
    let metric = &hpa["spec"]["metrics"][0]["resource"];
    assert_eq!(metric["name"], "cpu");
    assert_eq!(metric["target"]["averageUtilization"], 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn malformed_protobuf_is_a_bad_request() {
    let server = start().await;
    // kubectl's raw mode sends the file as-is with the Content-Type it is told.
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.pb");
    std::fs::write(&body, b"k8s\0\x0a\x05garbage").unwrap();
    let out = kubectl(
        &server,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            &body.display().to_string(),
        ],
    )
    .await;
    // Whatever Content-Type --raw claims, the envelope is recognised by its magic.
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("BadRequest") || err.contains("malformed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn kubectl_debug_copies_a_pod_through_protobuf() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: default\n  labels: {app: app}\nspec:\n  terminationGracePeriodSeconds: 0\n  enableServiceLinks: false\n  volumes:\n  - name: scratch\n    emptyDir: {sizeLimit: 64Mi}\n  containers:\n  - name: app\n    image: busybox:1.36\n    command: [sleep, '3600']\n    env:\n    - {name: MODE, value: test}\n    ports:\n    - {containerPort: 8080, name: http}\n    readinessProbe:\n      httpGet: {path: /healthz, port: http}\n      periodSeconds: 5\n    resources:\n      limits: {cpu: 500m, memory: 64Mi}\n    volumeMounts:\n    - {name: scratch, mountPath: /scratch}\n",
    )
    .unwrap();
    ok(&server, &["create", "-f", &pod.display().to_string()]).await;
    // The copy is built from the stored pod and created with kubectl's typed client.
    ok(
        &server,
        &[
            "debug",
            "app",
            "--copy-to=app-debug",
            "--keep-readiness=true",
            "--image=busybox:1.36",
            "--container=debugger",
            "--",
            "sleep",
            "1",
        ],
    )
    .await;
    let copy = get_json(&server, &["get", "pod", "app-debug"]).await;
    let spec = &copy["spec"];
    assert_eq!(spec["terminationGracePeriodSeconds"], 0);
    assert_eq!(spec["enableServiceLinks"], false);
    assert_eq!(spec["volumes"][0]["emptyDir"]["sizeLimit"], "64Mi");
    let app = &spec["containers"][0];
    assert_eq!(app["env"][0]["value"], "test");
    assert_eq!(app["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(app["readinessProbe"]["periodSeconds"], 5);
    assert_eq!(app["resources"]["limits"]["cpu"], "500m");
    assert_eq!(app["volumeMounts"][0]["mountPath"], "/scratch");
    assert_eq!(spec["containers"][1]["name"], "debugger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn kubectl_drain_deletes_with_protobuf_delete_options() {
    let server = start().await;
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects.yaml");
    std::fs::write(
        &objects,
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  namespace: default\nspec:\n  nodeName: worker\n  containers:\n  - name: c\n    image: busybox:1.36\n",
    )
    .unwrap();
    ok(&server, &["create", "-f", &objects.display().to_string()]).await;
    // Without evictions, drain deletes each pod with a typed client: DELETE carrying
    // DeleteOptions{gracePeriodSeconds: 0} as protobuf.
    ok(
        &server,
        &[
            "drain",
            "worker",
            "--disable-eviction",
            "--force",
            "--grace-period=0",
            "--timeout=15s",
        ],
    )
    .await;
    let gone = fails(&server, &["get", "pod", "bare"]).await;
    assert!(gone.contains("NotFound"), "{gone}");
}
