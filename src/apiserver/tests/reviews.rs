//! The review APIs driven by the real kubectl: `auth can-i`, `auth can-i --list` and
//! `auth whoami` (all sent as protobuf), plus their discovery entries.

use rind_testing::{fails, ok, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn kubectl_auth_reviews() {
    let server = start().await;
    assert_eq!(
        ok(&server, &["auth", "can-i", "create", "pods"]).await,
        "yes\n"
    );
    assert_eq!(
        ok(&server, &["auth", "can-i", "get", "/healthz"]).await,
        "yes\n"
    );
    let list = ok(&server, &["auth", "can-i", "--list"]).await;
    let header = list.lines().next().unwrap_or_default();
    assert!(
        header.contains("Resources") && header.contains("Verbs"),
        "{list}"
    );
    assert!(list.contains("*.*"), "{list}");
    let whoami = ok(&server, &["auth", "whoami"]).await;
    assert!(whoami.contains("kubernetes-admin"), "{whoami}");
    assert!(whoami.contains("kubeadm:cluster-admins"), "{whoami}");
    let json = ok(&server, &["auth", "whoami", "-o", "json"]).await;
    let review: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(review["status"]["userInfo"]["username"], "kubernetes-admin");

    // Discovery lists them as create-only; nothing can be read back.
    let resources = ok(
        &server,
        &[
            "api-resources",
            "--api-group=authorization.k8s.io",
            "-o",
            "wide",
        ],
    )
    .await;
    let line = resources
        .lines()
        .find(|l| l.starts_with("selfsubjectaccessreviews"))
        .unwrap_or_else(|| panic!("{resources}"));
    // NAME APIVERSION NAMESPACED KIND VERBS (no short names, no categories).
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields[2..],
        ["false", "SelfSubjectAccessReview", "create"],
        "{line}"
    );
    let err = fails(
        &server,
        &[
            "get",
            "--raw",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        ],
    )
    .await;
    assert!(err.contains("MethodNotAllowed"), "{err}");
}

/// The reviews and `serviceaccounts/token` have no Table rendering: a client accepting
/// nothing else gets upstream's 406 (and no review is made), while one that lists plain
/// JSON after the Table gets the created object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn table_only_accept_is_not_acceptable_where_there_is_no_table() {
    let server = start().await;
    ok(&server, &["create", "serviceaccount", "robot"]).await;
    let client = rind_testing::client(&server).await;
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    let post = |path: &str, accept: &str, body: serde_json::Value| {
        http::Request::post(path)
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap()
    };
    let review = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}},
    });
    let token = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {},
    });
    let endpoints = [
        (
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            review,
        ),
        (
            "/api/v1/namespaces/default/serviceaccounts/robot/token",
            token,
        ),
    ];
    for (path, body) in &endpoints {
        let err = client
            .request_text(post(path, table, body.clone()))
            .await
            .unwrap_err();
        match err {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 406, "{status:?}");
                assert_eq!(status.reason, "NotAcceptable", "{status:?}");
                assert_eq!(
                    status.message,
                    "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
                );
            }
            other => panic!("{path}: {other}"),
        }
        let created = client
            .request_text(post(
                path,
                &format!("{table},application/json"),
                body.clone(),
            ))
            .await
            .unwrap();
        let created: serde_json::Value = serde_json::from_str(&created).unwrap();
        assert_eq!(created["kind"], body["kind"], "{created}");
        assert!(created["status"].is_object(), "{created}");
    }
    // Stored resources still answer with a Table.
    let listed = client
        .request_text(
            http::Request::get("/api/v1/namespaces")
                .header("accept", table)
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(listed.contains("\"kind\":\"Table\""), "{listed}");
}
