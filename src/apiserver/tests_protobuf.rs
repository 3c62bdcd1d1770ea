//! kubectl's typed clients POST protobuf bodies (`application/vnd.kubernetes.protobuf`):
//! the real kubectl 1.37 creates objects that way here, and what it created reads back
//! with the fields it sent.

use super::tests::{TestServer, fails, kubectl, ok, start, stderr};
use serde_json::Value;

async fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    serde_json::from_str(&ok(server, &full).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    // Sent as JSON by --raw, the envelope is still recognised by its magic.
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("BadRequest") || err.contains("malformed"),
        "{err}"
    );
}
