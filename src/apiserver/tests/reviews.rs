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
