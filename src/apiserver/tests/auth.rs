//! Service-account tokens, bearer authentication, RBAC and impersonation, driven by
//! the real kubectl: `create token`, a kubeconfig holding that token (forbidden until
//! a RoleBinding grants it), `auth can-i [--list]` with `--as` and with the token,
//! 401 for bad tokens, anonymous requests authorized by RBAC, and TokenReview.

use base64::Engine;
use rind_testing::{
    DEADLINE, TestServer, eventually, fails, kubectl, kubectl_binary, ok, start, stderr, stdout,
    write,
};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;

const BOT: &str = "system:serviceaccount:default:bot";

/// Runs kubectl against `kubeconfig` (not the admin one).
async fn kubectl_with(server: &TestServer, kubeconfig: &PathBuf, args: &[&str]) -> Output {
    tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(kubectl_binary())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env("HOME", server.dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl timed out")
    .expect("kubectl could not run")
}

/// A copy of the admin kubeconfig whose current context uses `token`, made with
/// kubectl's own `config` commands.
async fn token_kubeconfig(server: &TestServer, name: &str, token: &str) -> PathBuf {
    let path = server.dir.path().join(format!("{name}.kubeconfig"));
    std::fs::copy(&server.kubeconfig, &path).unwrap();
    let credentials = format!("--token={token}");
    for args in [
        vec!["config", "set-credentials", name, credentials.as_str()],
        vec![
            "config",
            "set-context",
            name,
            "--cluster=rind",
            "--user",
            name,
        ],
        vec!["config", "use-context", name],
    ] {
        let out = kubectl_with(server, &path, &args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    path
}

/// `kubectl auth can-i` prints yes or no (and exits 1 on no).
async fn can_i(server: &TestServer, kubeconfig: &PathBuf, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = kubectl_with(server, kubeconfig, &all).await;
    stdout(&out).trim().to_string()
}

/// Polls until kubectl with `kubeconfig` succeeds (a new binding reaches the
/// authorizer's watch-fed cache); returns stdout.
async fn eventually_ok(server: &TestServer, kubeconfig: &PathBuf, args: &[&str]) -> String {
    eventually(&format!("{args:?} to succeed"), || async {
        let out = kubectl_with(server, kubeconfig, args).await;
        if out.status.success() {
            Ok(stdout(&out))
        } else {
            Err(stderr(&out))
        }
    })
    .await
}

/// Polls until kubectl with `kubeconfig` fails with `expected` in its stderr.
async fn eventually_fails(
    server: &TestServer,
    kubeconfig: &PathBuf,
    args: &[&str],
    expected: &str,
) {
    eventually(&format!("{args:?} to fail with {expected:?}"), || async {
        let out = kubectl_with(server, kubeconfig, args).await;
        if !out.status.success() && stderr(&out).contains(expected) {
            Ok(())
        } else {
            Err(format!("{}{}", stdout(&out), stderr(&out)))
        }
    })
    .await
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn token_review(server: &TestServer, token: &str, audiences: &[&str]) -> Value {
    let file = write(
        server.dir.path(),
        "review.json",
        &serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        })
        .to_string(),
    );
    // kubectl validates create-only kinds itself, against /openapi/v2.
    let out = ok(server, &["create", "-f", &file, "-o", "json"]).await;
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn service_account_tokens_and_rbac() {
    let server = start().await;
    let admin = server.kubeconfig.clone();
    ok(&server, &["create", "serviceaccount", "bot"]).await;
    let uid = ok(
        &server,
        &["get", "sa", "bot", "-o", "jsonpath={.metadata.uid}"],
    )
    .await;

    // The token carries upstream's claims and lives an hour by default.
    let token = ok(&server, &["create", "token", "bot"]).await;
    let token = token.trim();
    let claims = claims_of(token);
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert_eq!(claims["sub"], BOT);
    assert_eq!(claims["kubernetes.io"]["namespace"], "default");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "bot");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"],
        uid.as_str()
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let short = ok(&server, &["create", "token", "bot", "--duration=20m"]).await;
    let short = claims_of(short.trim());
    assert_eq!(
        short["exp"].as_i64().unwrap() - short["iat"].as_i64().unwrap(),
        1200
    );
    let too_short = fails(&server, &["create", "token", "bot", "--duration=5m"]).await;
    assert!(
        too_short.contains("may not specify a duration less than 10 minutes"),
        "{too_short}"
    );
    let missing = fails(&server, &["create", "token", "nobody"]).await;
    assert!(
        missing.contains(r#"serviceaccounts "nobody" not found"#),
        "{missing}"
    );

    // Authenticated but granted nothing beyond discovery and self-reviews.
    let bot = token_kubeconfig(&server, "bot", token).await;
    let whoami = ok_with(&server, &bot, &["auth", "whoami"]).await;
    assert!(whoami.contains(BOT), "{whoami}");
    assert!(
        whoami.contains("system:serviceaccounts:default"),
        "{whoami}"
    );
    let denied = kubectl_with(&server, &bot, &["get", "pods"]).await;
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains(&format!(
            r#"Error from server (Forbidden): pods is forbidden: User "{BOT}" cannot list resource "pods" in API group "" in the namespace "default""#
        )),
        "{}",
        stderr(&denied)
    );
    assert_eq!(can_i(&server, &bot, &["list", "pods"]).await, "no");
    assert_eq!(
        can_i(&server, &admin, &["list", "pods", &format!("--as={BOT}")]).await,
        "no"
    );

    // A RoleBinding to `view` in default grants reading there, and nothing more.
    ok(
        &server,
        &[
            "create",
            "rolebinding",
            "bot-view",
            "--clusterrole=view",
            "--serviceaccount=default:bot",
        ],
    )
    .await;
    let pods = eventually_ok(&server, &bot, &["get", "pods"]).await;
    assert!(pods.is_empty(), "{pods}");
    for (args, answer) in [
        (vec!["list", "pods"], "yes"),
        (vec!["watch", "deployments.apps"], "yes"),
        (vec!["get", "pods", "--subresource=log"], "yes"),
        (vec!["create", "pods", "--subresource=exec"], "no"),
        (vec!["delete", "pods"], "no"),
        (vec!["create", "deployments.apps"], "no"),
        (vec!["list", "secrets"], "no"),
        (vec!["list", "pods", "-n", "kube-system"], "no"),
        (vec!["list", "nodes"], "no"),
        (vec!["get", "/api"], "yes"),
    ] {
        assert_eq!(can_i(&server, &bot, &args).await, answer, "{args:?}");
        let mut as_bot = args.clone();
        let flag = format!("--as={BOT}");
        as_bot.push(&flag);
        assert_eq!(can_i(&server, &admin, &as_bot).await, answer, "{as_bot:?}");
    }
    let list = ok_with(&server, &bot, &["auth", "can-i", "--list"]).await;
    let pods_row = list
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(pods_row.contains("[get list watch]"), "{list}");
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    assert!(!list.contains("*.*"), "{list}");

    // --as: the admin may impersonate; a plain user gets what its bindings give.
    assert_eq!(
        can_i(
            &server,
            &admin,
            &["create", "deployments.apps", "--as=jane"]
        )
        .await,
        "no"
    );
    ok(
        &server,
        &[
            "create",
            "rolebinding",
            "jane-edit",
            "--clusterrole=edit",
            "--user=jane",
        ],
    )
    .await;
    eventually_ok(&server, &admin, &["get", "deployments", "--as=jane"]).await;
    assert_eq!(
        can_i(
            &server,
            &admin,
            &["create", "deployments.apps", "--as=jane"]
        )
        .await,
        "yes"
    );
    assert_eq!(
        can_i(
            &server,
            &admin,
            &[
                "create",
                "rolebindings.rbac.authorization.k8s.io",
                "--as=jane"
            ]
        )
        .await,
        "no"
    );
    assert_eq!(
        can_i(
            &server,
            &admin,
            &["delete", "pods", "-n", "kube-system", "--as=jane"]
        )
        .await,
        "no"
    );
    // A group given with --as-group counts too.
    assert_eq!(
        can_i(
            &server,
            &admin,
            &["list", "nodes", "--as=jane", "--as-group=system:masters"]
        )
        .await,
        "yes"
    );
    let forbidden = fails(&server, &["get", "nodes", "--as=jane"]).await;
    assert!(
        forbidden.contains(r#"nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope"#),
        "{forbidden}"
    );
    // The service account may not impersonate anyone.
    let impersonating = kubectl_with(&server, &bot, &["get", "pods", "--as=jane"]).await;
    assert!(
        stderr(&impersonating).contains(&format!(
            r#"users "jane" is forbidden: User "{BOT}" cannot impersonate resource "users" in API group "" at the cluster scope"#
        )),
        "{}",
        stderr(&impersonating)
    );

    // ClusterRoles aggregate: a new role labelled for `view` extends the binding.
    assert_eq!(can_i(&server, &bot, &["list", "nodes"]).await, "no");
    let extra = write(
        server.dir.path(),
        "aggregate.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: view-nodes\n  labels:\n    rbac.authorization.k8s.io/aggregate-to-view: \"true\"\nrules:\n- apiGroups: [\"\"]\n  resources: [nodes]\n  verbs: [list]\n",
    );
    ok(&server, &["create", "-f", &extra]).await;
    // Only within the RoleBinding's namespace: nodes are cluster-scoped, so a
    // ClusterRoleBinding is needed before they can be listed.
    ok(
        &server,
        &[
            "create",
            "clusterrolebinding",
            "bot-view",
            "--clusterrole=view",
            "--serviceaccount=default:bot",
        ],
    )
    .await;
    eventually_ok(&server, &bot, &["get", "nodes"]).await;

    // TokenReview: valid for the API server's audience, not for another.
    let review = token_review(&server, token, &[]).await;
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(review["status"]["user"]["username"], BOT);
    assert_eq!(review["status"]["user"]["uid"], uid.as_str());
    let other = token_review(&server, token, &["vault"]).await;
    assert_eq!(other["status"]["authenticated"], false, "{other}");
    let garbage = token_review(&server, "garbage", &[]).await;
    assert_eq!(garbage["status"]["authenticated"], false);
    assert!(garbage["status"]["error"].is_string(), "{garbage}");

    // Deleting the service account ends its tokens.
    ok(&server, &["delete", "sa", "bot"]).await;
    eventually_fails(&server, &bot, &["get", "pods"], "Unauthorized").await;
    let after = token_review(&server, token, &[]).await;
    assert_eq!(after["status"]["authenticated"], false, "{after}");
}

async fn ok_with(server: &TestServer, kubeconfig: &PathBuf, args: &[&str]) -> String {
    let out = kubectl_with(server, kubeconfig, args).await;
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn anonymous_requests_get_what_rbac_grants_system_unauthenticated() {
    let server = start().await;
    // The `anonymous` context sends no credential the server knows: the request is
    // system:anonymous in system:unauthenticated, which bootstrap policy binds
    // system:public-info-viewer to, and nothing else.
    let version = ok(
        &server,
        &["--context=anonymous", "get", "--raw", "/version"],
    )
    .await;
    assert!(version.contains("gitVersion"), "{version}");
    for probe in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(
            ok(&server, &["--context=anonymous", "get", "--raw", probe]).await,
            "ok"
        );
    }
    // Discovery is system:discovery's, bound to system:authenticated only; a path
    // that does not exist is refused the same way, before anything routes it.
    for path in ["/api", "/apis", "/openapi/v2", "/no/such/path"] {
        let denied = fails(&server, &["--context=anonymous", "get", "--raw", path]).await;
        assert!(
            denied.contains(&format!(
                "Error from server (Forbidden): forbidden: User \"system:anonymous\" cannot get path \"{path}\""
            )),
            "{path}: {denied}"
        );
    }
    let denied = fails(&server, &["--context=anonymous", "get", "configmaps"]).await;
    assert!(
        denied.contains(
            "Error from server (Forbidden): configmaps is forbidden: User \"system:anonymous\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        ),
        "{denied}"
    );
    // can-i asks with a SelfSubjectAccessReview, which system:basic-user grants
    // only to system:authenticated.
    let denied = fails(
        &server,
        &["--context=anonymous", "auth", "can-i", "get", "pods"],
    )
    .await;
    assert!(
        denied.contains(
            "selfsubjectaccessreviews.authorization.k8s.io is forbidden: User \"system:anonymous\" cannot create resource \"selfsubjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope"
        ),
        "{denied}"
    );
    // What an admin binds to system:unauthenticated, anonymous requests then get.
    ok(
        &server,
        &[
            "create",
            "clusterrolebinding",
            "anonymous-view",
            "--clusterrole=view",
            "--group=system:unauthenticated",
        ],
    )
    .await;
    ok(
        &server,
        &["create", "configmap", "shared", "--from-literal=k=v"],
    )
    .await;
    eventually("anonymous to list configmaps", || async {
        let out = kubectl(&server, &["--context=anonymous", "get", "configmaps"]).await;
        if out.status.success() && stdout(&out).contains("shared") {
            Ok(())
        } else {
            Err(format!("{}{}", stdout(&out), stderr(&out)))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn bad_and_pod_bound_tokens_are_unauthorized() {
    let server = start().await;
    // The harness's `bad-token` context holds a token this server never issued.
    let garbage = fails(&server, &["--context=bad-token", "get", "pods"]).await;
    assert!(garbage.contains("Unauthorized"), "{garbage}");
    // Bad credentials are refused before the path is looked at: public paths too,
    // which answer requests without credentials.
    for path in [
        "/api/v1/namespaces",
        "/version",
        "/healthz",
        "/readyz",
        "/livez",
        "/openapi/v2",
        "/apis",
        "/no/such/path",
    ] {
        let raw = kubectl(&server, &["--context=bad-token", "get", "--raw", path]).await;
        assert!(!raw.status.success(), "{path}: {}", stdout(&raw));
        assert!(
            stderr(&raw).contains("Unauthorized"),
            "{path}: {}",
            stderr(&raw)
        );
    }
    let version = ok(
        &server,
        &["--context=anonymous", "get", "--raw", "/version"],
    )
    .await;
    assert!(version.contains("gitVersion"), "{version}");

    // A token bound to a pod dies with the pod.
    ok(&server, &["create", "serviceaccount", "runner"]).await;
    ok(
        &server,
        &["run", "web", "--image=busybox:1.36", "--restart=Never"],
    )
    .await;
    let token = ok(
        &server,
        &[
            "create",
            "token",
            "runner",
            "--bound-object-kind=Pod",
            "--bound-object-name=web",
        ],
    )
    .await;
    let claims = claims_of(token.trim());
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "web");
    let runner = token_kubeconfig(&server, "runner", token.trim()).await;
    let whoami = ok_with(&server, &runner, &["auth", "whoami"]).await;
    assert!(
        whoami.contains("system:serviceaccount:default:runner"),
        "{whoami}"
    );
    let unbound = fails(
        &server,
        &[
            "create",
            "token",
            "runner",
            "--bound-object-kind=Pod",
            "--bound-object-name=nope",
        ],
    )
    .await;
    assert!(unbound.contains(r#"pods "nope" not found"#), "{unbound}");
    ok(
        &server,
        &["delete", "pod", "web", "--grace-period=0", "--force"],
    )
    .await;
    eventually_fails(&server, &runner, &["auth", "whoami"], "Unauthorized").await;
}

/// The users our components present (their certificates in cluster/pki.rs) keep
/// what they need under RBAC, and no more than their roles say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn component_identities_have_their_access() {
    let server = start().await;
    let admin = server.kubeconfig.clone();
    let scheduler = ["--as=system:kube-scheduler"];
    let kubelet = ["--as=system:node:n1", "--as-group=system:nodes"];
    let controllers = ["--as=system:kube-controller-manager"];
    let cases: &[(&[&str], &[&str], &str)] = &[
        (&scheduler, &["watch", "pods", "-A"], "yes"),
        (&scheduler, &["list", "nodes"], "yes"),
        (
            &scheduler,
            &["create", "pods", "--subresource=binding"],
            "yes",
        ),
        (
            &scheduler,
            &["patch", "pods", "--subresource=status"],
            "yes",
        ),
        (&scheduler, &["create", "events"], "yes"),
        (
            &scheduler,
            &[
                "update",
                "leases.coordination.k8s.io/kube-scheduler",
                "-n",
                "kube-system",
            ],
            "yes",
        ),
        // Upstream's role names the scheduler's own lease; outside kube-system
        // (where system::leader-locking-kube-scheduler grants any) it has no other.
        (
            &scheduler,
            &["update", "leases.coordination.k8s.io/x", "-n", "default"],
            "no",
        ),
        (&scheduler, &["create", "deployments.apps"], "no"),
        (&scheduler, &["delete", "nodes"], "no"),
        (&kubelet, &["watch", "pods", "-A"], "yes"),
        (&kubelet, &["create", "nodes"], "yes"),
        (&kubelet, &["patch", "nodes", "--subresource=status"], "yes"),
        (&kubelet, &["patch", "pods", "--subresource=status"], "yes"),
        (&kubelet, &["delete", "pods"], "yes"),
        (&kubelet, &["create", "events"], "yes"),
        (
            &kubelet,
            &[
                "update",
                "leases.coordination.k8s.io",
                "-n",
                "kube-node-lease",
            ],
            "yes",
        ),
        (&kubelet, &["get", "secrets"], "yes"),
        (&kubelet, &["delete", "deployments.apps"], "no"),
        (&kubelet, &["create", "pods", "--subresource=binding"], "no"),
        (
            &controllers,
            &["delete", "widgets.example.com", "-A"],
            "yes",
        ),
        (
            &controllers,
            &["create", "endpointslices.discovery.k8s.io"],
            "yes",
        ),
        (
            &controllers,
            &["patch", "deployments.apps", "--subresource=status"],
            "yes",
        ),
    ];
    for (who, what, answer) in cases {
        let args: Vec<&str> = what.iter().chain(who.iter()).copied().collect();
        assert_eq!(can_i(&server, &admin, &args).await, *answer, "{args:?}");
    }
}

/// The names of `objects` as `kubectl get -o name` prints them (`kind.group/name`).
fn names(kind: &str, objects: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{kind}.rbac.authorization.k8s.io/{}",
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn listed(out: &str) -> Vec<String> {
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    names.dedup();
    names
}

/// Every default object of upstream's bootstrap policy exists, labelled, annotated and
/// with the rules and aggregation rules of the fixture (`rbac/bootstrap-policy.yaml`),
/// and the label selects nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn bootstrap_policy_is_upstreams() {
    let server = start().await;
    let policy = rind_apiserver::bootstrap_policy().unwrap();
    let selector = "-lkubernetes.io/bootstrapping=rbac-defaults";
    for (kind, plural, objects) in [
        ("clusterrole", "clusterroles", &policy.cluster_roles),
        (
            "clusterrolebinding",
            "clusterrolebindings",
            &policy.cluster_role_bindings,
        ),
        ("role", "roles", &policy.roles),
        ("rolebinding", "rolebindings", &policy.role_bindings),
    ] {
        let out = ok(&server, &["get", plural, "-A", selector, "-o", "name"]).await;
        assert_eq!(listed(&out), names(kind, objects), "{plural}");
        let stored: Value = serde_json::from_str(
            &ok(&server, &["get", plural, "-A", selector, "-o", "json"]).await,
        )
        .unwrap();
        for expected in objects {
            let meta = &expected["metadata"];
            let found = stored["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| {
                    o["metadata"]["name"] == meta["name"]
                        && o["metadata"]["namespace"] == meta["namespace"]
                })
                .unwrap_or_else(|| panic!("{plural} {} is missing", meta["name"]));
            for field in ["rules", "aggregationRule", "roleRef", "subjects"] {
                assert_eq!(found.get(field), expected.get(field), "{field} of {meta}");
            }
            for field in ["labels", "annotations"] {
                assert_eq!(found["metadata"][field], meta[field], "{field} of {meta}");
            }
        }
    }
    // kubectl's own table for one of them.
    let out = ok(&server, &["get", "clusterrole", "system:auth-delegator"]).await;
    assert!(
        out.starts_with("NAME") && out.contains("CREATED AT"),
        "{out}"
    );
}

/// The usual binding of a token-reviewing service account: `system:auth-delegator`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn auth_delegator_lets_a_service_account_review_tokens() {
    let server = start().await;
    ok(&server, &["create", "serviceaccount", "reviewer"]).await;
    let token = ok(&server, &["create", "token", "reviewer"]).await;
    let reviewer = token_kubeconfig(&server, "reviewer", token.trim()).await;
    let review = write(
        server.dir.path(),
        "delegated-review.json",
        &serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token.trim()},
        })
        .to_string(),
    );
    // kubectl validates against the CRDs too, which this account may not list.
    let create = [
        "create",
        "-f",
        review.as_str(),
        "--validate=false",
        "-o",
        "json",
    ];
    let refused = kubectl_with(&server, &reviewer, &create).await;
    assert!(
        stderr(&refused).contains(
            "tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:default:reviewer\" cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope"
        ),
        "{}",
        stderr(&refused)
    );
    ok(
        &server,
        &[
            "create",
            "clusterrolebinding",
            "reviewer",
            "--clusterrole=system:auth-delegator",
            "--serviceaccount=default:reviewer",
        ],
    )
    .await;
    let out = eventually_ok(&server, &reviewer, &create).await;
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["status"]["authenticated"], true, "{answer}");
    assert_eq!(
        answer["status"]["user"]["username"],
        "system:serviceaccount:default:reviewer"
    );
    assert_eq!(
        can_i(&server, &reviewer, &["create", "subjectaccessreviews"]).await,
        "yes"
    );
}

/// A restart reconciles the default policy as upstream's API server does: a deleted
/// default comes back, rules a user removed are added again while those the user added
/// stay, and an object marked `autoupdate: "false"` keeps the user's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn restarts_reconcile_the_default_policy() {
    let pki = rind_testing::make_pki();
    let store = rind_store::MemoryStore::new();
    let first = rind_testing::start_with(&pki, None, store.clone()).await;
    let custom = r#"[{"op": "replace", "path": "/rules", "value": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]}]"#;
    for role in ["system:heapster", "system:kube-dns"] {
        ok(
            &first,
            &["patch", "clusterrole", role, "--type=json", "-p", custom],
        )
        .await;
    }
    ok(
        &first,
        &[
            "annotate",
            "clusterrole",
            "system:kube-dns",
            "rbac.authorization.kubernetes.io/autoupdate=false",
            "--overwrite",
        ],
    )
    .await;
    ok(&first, &["delete", "clusterrole", "system:monitoring"]).await;
    ok(
        &first,
        &[
            "patch",
            "clusterrolebinding",
            "system:basic-user",
            "--type=json",
            "-p",
            r#"[{"op": "replace", "path": "/subjects", "value": [{"kind": "User", "name": "someone", "apiGroup": "rbac.authorization.k8s.io"}]}]"#,
        ],
    )
    .await;
    drop(first);

    let second = rind_testing::start_with(&pki, None, store).await;
    let rules = |out: String| -> Value { serde_json::from_str(&out).unwrap() };
    let heapster = rules(
        ok(
            &second,
            &[
                "get",
                "clusterrole",
                "system:heapster",
                "-o",
                "jsonpath={.rules}",
            ],
        )
        .await,
    );
    let resources: Vec<&str> = heapster
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    for resource in [
        "widgets",
        "events",
        "namespaces",
        "nodes",
        "pods",
        "deployments",
    ] {
        assert!(resources.contains(&resource), "{resource}: {heapster}");
    }
    let dns = rules(
        ok(
            &second,
            &[
                "get",
                "clusterrole",
                "system:kube-dns",
                "-o",
                "jsonpath={.rules}",
            ],
        )
        .await,
    );
    assert_eq!(dns, rules(custom.to_string())[0]["value"], "{dns}");
    ok(&second, &["get", "clusterrole", "system:monitoring"]).await;
    let subjects = ok(
        &second,
        &[
            "get",
            "clusterrolebinding",
            "system:basic-user",
            "-o",
            "jsonpath={.subjects[*].name}",
        ],
    )
    .await;
    assert_eq!(subjects, "someone system:authenticated");
}
