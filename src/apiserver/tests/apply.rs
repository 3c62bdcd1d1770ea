//! Patching, applying and dry runs driven by the real kubectl 1.37: client-side apply
//! (strategic merge patches), server-side apply with field ownership and conflicts,
//! the editing verbs (`edit`, `patch`, `label`, `annotate`, `set`) and `diff`.

use rind_testing::{TestServer, fails, kubectl_binary, ok, start, stderr, stdout, write};
use serde_json::Value;
use std::process::Output;

/// kubectl with extra environment (a scripted `EDITOR`).
async fn kubectl_with_env(server: &TestServer, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(kubectl_binary());
    cmd.arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .env("HOME", server.dir.path())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(std::time::Duration::from_secs(20), cmd.output())
        .await
        .expect("kubectl timed out")
        .expect("kubectl could not run")
}

async fn get_json(server: &TestServer, what: &str) -> Value {
    let args = ["get", what, "-o", "json", "--show-managed-fields"];
    serde_json::from_str(&ok(server, &args).await).unwrap()
}

/// The managers recorded in an object's managedFields, as `manager/operation`.
fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["manager"].as_str().unwrap_or_default(),
                        e["operation"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn config_map(mode: &str, other: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  mode: {mode}\n  other: {other}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn client_side_then_server_side_apply_with_conflicts() {
    let server = start().await;
    let dir = server.dir.path();
    let file = write(dir, "cm.yaml", &config_map("one", "keep"));
    let out = ok(&server, &["apply", "-f", &file]).await;
    assert!(out.contains("configmap/settings created"), "{out}");
    let out = ok(&server, &["apply", "-f", &file]).await;
    assert!(out.contains("configmap/settings unchanged"), "{out}");
    let file = write(dir, "cm.yaml", &config_map("two", "keep"));
    let out = ok(&server, &["apply", "-f", &file]).await;
    assert!(out.contains("configmap/settings configured"), "{out}");
    let cm = get_json(&server, "cm/settings").await;
    assert_eq!(cm["data"]["mode"], "two");
    assert!(
        cm["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .is_some_and(|a| a.contains("\"two\""))
    );
    assert_eq!(managers(&cm), vec!["kubectl-client-side-apply/Update"]);

    // Someone edits a field by hand; the edit's manager now owns it.
    let edit = kubectl_with_env(
        &server,
        &[("EDITOR", "sed -i s/mode:\\ two/mode:\\ edited/")],
        &["edit", "cm/settings"],
    )
    .await;
    assert!(edit.status.success(), "{}{}", stdout(&edit), stderr(&edit));
    let cm = get_json(&server, "cm/settings").await;
    assert_eq!(cm["data"]["mode"], "edited");
    assert!(
        managers(&cm).contains(&"kubectl-edit/Update".to_string()),
        "{cm}"
    );

    // A server-side apply that changes the edited field conflicts with the editor.
    let file = write(dir, "cm.yaml", &config_map("three", "keep"));
    let err = fails(&server, &["apply", "--server-side", "-f", &file]).await;
    assert!(
        err.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.mode"
        ),
        "{err}"
    );
    assert_eq!(
        get_json(&server, "cm/settings").await["data"]["mode"],
        "edited"
    );
    let out = ok(
        &server,
        &["apply", "--server-side", "--force-conflicts", "-f", &file],
    )
    .await;
    assert!(
        out.contains("configmap/settings serverside-applied"),
        "{out}"
    );
    let cm = get_json(&server, "cm/settings").await;
    assert_eq!(cm["data"]["mode"], "three");
    assert!(managers(&cm).contains(&"kubectl/Apply".to_string()), "{cm}");
    assert!(
        !managers(&cm).contains(&"kubectl-edit/Update".to_string()),
        "{cm}"
    );

    // Server-side apply creates, then updates, and drops what it stops applying.
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\n  labels:\n    tier: front\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n";
    let file = write(dir, "svc.yaml", svc);
    let out = ok(&server, &["apply", "--server-side", "-f", &file]).await;
    assert!(out.contains("service/web serverside-applied"), "{out}");
    let file = write(
        dir,
        "svc.yaml",
        &svc.replace("  labels:\n    tier: front\n", "")
            .replace("8080", "9090"),
    );
    let out = ok(&server, &["apply", "--server-side", "-f", &file]).await;
    assert!(out.contains("service/web serverside-applied"), "{out}");
    let svc = get_json(&server, "svc/web").await;
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 9090);
    assert!(
        svc["metadata"]
            .get("labels")
            .is_none_or(|l| l.get("tier").is_none()),
        "{svc}"
    );
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty())
    );
    let fields = &svc["metadata"]["managedFields"][0]["fieldsV1"];
    assert!(
        fields["f:spec"]["f:ports"]["k:{\"port\":80,\"protocol\":\"TCP\"}"].is_object(),
        "{fields}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn patch_label_annotate_and_set() {
    let server = start().await;
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: default\n  labels:\n    app: web\nspec:\n  containers:\n  - name: web\n    image: busybox:1.36\n    command: [sleep, '3600']\n";
    let file = write(server.dir.path(), "pod.yaml", pod);
    ok(&server, &["create", "-f", &file]).await;

    let out = ok(
        &server,
        &["patch", "pod", "web", "-p", r#"{"metadata":{"labels":{"tier":"back"}},"spec":{"containers":[{"name":"web","image":"busybox:1.37"}]}}"#],
    )
    .await;
    assert!(out.contains("pod/web patched"), "{out}");
    let p = get_json(&server, "pod/web").await;
    assert_eq!(p["metadata"]["labels"]["app"], "web");
    assert_eq!(p["metadata"]["labels"]["tier"], "back");
    assert_eq!(p["spec"]["containers"][0]["image"], "busybox:1.37");
    assert_eq!(p["spec"]["containers"][0]["command"][0], "sleep");

    ok(
        &server,
        &[
            "patch",
            "pod",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"annotations":{"note":"merged"}}}"#,
        ],
    )
    .await;
    ok(
        &server,
        &[
            "patch",
            "pod",
            "web",
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/containers/0/image","value":"busybox:1.38"}]"#,
        ],
    )
    .await;
    ok(&server, &["label", "pod", "web", "env=prod"]).await;
    ok(&server, &["label", "pod", "web", "tier-"]).await;
    ok(&server, &["annotate", "pod", "web", "owner=me"]).await;
    let out = ok(&server, &["set", "image", "pod/web", "web=busybox:1.39"]).await;
    assert!(out.contains("pod/web image updated"), "{out}");
    let p = get_json(&server, "pod/web").await;
    assert_eq!(p["metadata"]["annotations"]["note"], "merged");
    assert_eq!(p["metadata"]["annotations"]["owner"], "me");
    assert_eq!(p["metadata"]["labels"]["env"], "prod");
    assert!(p["metadata"]["labels"].get("tier").is_none());
    assert_eq!(p["spec"]["containers"][0]["image"], "busybox:1.39");
    let owners = managers(&p);
    for manager in [
        "kubectl-create",
        "kubectl-patch",
        "kubectl-label",
        "kubectl-annotate",
        "kubectl-set",
    ] {
        assert!(
            owners.contains(&format!("{manager}/Update")),
            "{manager}: {owners:?}"
        );
    }
    // The image changed hands from the creator to `set image`.
    let set = p["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kubectl-set")
        .unwrap();
    assert!(
        set["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"].is_object(),
        "{set}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn dry_runs_and_diff_never_persist() {
    let server = start().await;
    let dir = server.dir.path();
    let file = write(dir, "cm.yaml", &config_map("one", "keep"));

    ok(&server, &["create", "-f", &file, "--dry-run=server"]).await;
    ok(&server, &["apply", "-f", &file, "--dry-run=server"]).await;
    ok(
        &server,
        &["apply", "--server-side", "-f", &file, "--dry-run=server"],
    )
    .await;
    let err = fails(&server, &["get", "cm", "settings"]).await;
    assert!(err.contains("NotFound"), "{err}");

    ok(&server, &["apply", "-f", &file]).await;
    let before = get_json(&server, "cm/settings").await;
    let changed = write(dir, "changed.yaml", &config_map("two", "keep"));
    for args in [
        &["apply", "-f", &changed, "--dry-run=server"][..],
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &changed,
            "--dry-run=server",
        ],
        &["replace", "-f", &changed, "--dry-run=server"],
        &["label", "cm", "settings", "x=y", "--dry-run=server"],
        &[
            "patch",
            "cm",
            "settings",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"mode":"p"}}"#,
            "--dry-run=server",
        ],
        &["delete", "cm", "settings", "--dry-run=server"],
    ] {
        let out = kubectl_with_env(&server, &[], args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let out = ok(
        &server,
        &["apply", "-f", &changed, "--dry-run=server", "-o", "json"],
    )
    .await;
    let answered: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        answered["data"]["mode"], "two",
        "a dry run returns what would be stored"
    );

    // `diff` shows the change (exit 1) through dry-run patches.
    let out = kubectl_with_env(&server, &[], &["diff", "-f", &changed]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains("-  mode: one") && shown.contains("+  mode: two"),
        "{shown}"
    );
    let out = kubectl_with_env(
        &server,
        &[],
        &["diff", "--server-side", "--force-conflicts", "-f", &changed],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let after = get_json(&server, "cm/settings").await;
    assert_eq!(after, before, "nothing was persisted");

    // A namespace survives a dry-run delete, and nothing starts emptying it.
    let ns_file = write(
        dir,
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: keep\n",
    );
    ok(&server, &["create", "-f", &ns_file, "--dry-run=server"]).await;
    assert!(
        fails(&server, &["get", "ns", "keep"])
            .await
            .contains("NotFound")
    );
    ok(
        &server,
        &["delete", "namespace", "default", "--dry-run=server"],
    )
    .await;
    ok(&server, &["delete", "cm", "--all", "--dry-run=server"]).await;
    let ns = get_json(&server, "ns/default").await;
    assert_eq!(ns["status"]["phase"], "Active");
    assert!(ns["metadata"].get("deletionTimestamp").is_none());
    assert_eq!(get_json(&server, "cm/settings").await, before);
}

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: busybox:1.36\n        command: [sleep, '3600']\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn deployments_scale_set_and_apply() {
    let server = start().await;
    let file = write(server.dir.path(), "deploy.yaml", DEPLOYMENT);
    let out = ok(&server, &["apply", "-f", &file]).await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let out = ok(&server, &["apply", "-f", &file]).await;
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");

    ok(&server, &["scale", "deployment/web", "--replicas=3"]).await;
    let err = fails(&server, &["apply", "--server-side", "-f", &file]).await;
    // kubectl scale names no field manager: the User-Agent's product is the default.
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"),
        "{err}"
    );
    assert_eq!(
        get_json(&server, "deployment/web").await["spec"]["replicas"],
        3
    );
    ok(
        &server,
        &["apply", "--server-side", "--force-conflicts", "-f", &file],
    )
    .await;
    assert_eq!(
        get_json(&server, "deployment/web").await["spec"]["replicas"],
        1
    );

    let out = ok(
        &server,
        &["set", "image", "deployment/web", "web=busybox:1.37"],
    )
    .await;
    assert!(out.contains("deployment.apps/web image updated"), "{out}");
    let out = ok(
        &server,
        &[
            "set",
            "resources",
            "deployment/web",
            "-c",
            "web",
            "--limits=cpu=200m,memory=64Mi",
        ],
    )
    .await;
    assert!(out.contains("resource requirements updated"), "{out}");
    let d = get_json(&server, "deployment/web").await;
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "busybox:1.37");
    assert_eq!(container["resources"]["limits"]["cpu"], "200m");
    assert_eq!(container["command"][0], "sleep");
    assert!(
        managers(&d).contains(&"kubectl-set/Update".to_string()),
        "{d}"
    );
}
