//! The rest of issue 3's kubectl acceptance list, each against upstream's exact output
//! where it matters: output formats and every selector form, chunked lists, the
//! imperative `create` generators, `set resources`, `wait`, `describe`, and `delete`
//! with each cascade (with our garbage collector running, as in a cluster).

use rind_testing::{
    DEADLINE, TestServer, eventually, fails, kubectl, kubectl_binary, ok, start, stderr, write,
};
use serde_json::Value;

/// Five config maps in namespace `sel` with assorted labels, made from one file.
async fn labelled_config_maps(server: &TestServer) {
    ok(server, &["create", "namespace", "sel"]).await;
    let labels = [
        ("cm-1", "tier: front"),
        ("cm-2", "tier: back"),
        ("cm-3", "tier: front\n    canary: \"yes\""),
        ("cm-4", "canary: \"no\""),
        ("cm-5", "tier: db"),
    ];
    let docs: Vec<String> = labels
        .iter()
        .map(|(name, labels)| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: sel\n  labels:\n    {labels}\ndata:\n  name: {name}\n"
            )
        })
        .collect();
    let file = write(server.dir.path(), "cms.yaml", &docs.join("---\n"));
    let out = ok(server, &["create", "-f", &file]).await;
    assert_eq!(
        out,
        "configmap/cm-1 created\nconfigmap/cm-2 created\nconfigmap/cm-3 created\nconfigmap/cm-4 created\nconfigmap/cm-5 created\n"
    );
}

/// The names `kubectl get cm -n sel` prints for extra arguments.
async fn names(server: &TestServer, extra: &[&str]) -> String {
    let mut args = vec!["get", "cm", "-n", "sel", "-o", "name"];
    args.extend_from_slice(extra);
    ok(server, &args)
        .await
        .lines()
        .map(|l| l.trim_start_matches("configmap/"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn get_formats_selectors_and_chunks() {
    let server = start().await;
    labelled_config_maps(&server).await;

    // Every label selector form.
    for (selector, want) in [
        ("tier=front", "cm-1 cm-3"),
        ("tier==front", "cm-1 cm-3"),
        ("tier!=front", "cm-2 cm-4 cm-5"),
        ("tier in (front,db)", "cm-1 cm-3 cm-5"),
        ("tier notin (front,db)", "cm-2 cm-4"),
        ("canary", "cm-3 cm-4"),
        ("!canary", "cm-1 cm-2 cm-5"),
        ("tier,canary=yes", "cm-3"),
        ("tier=nothing", ""),
    ] {
        assert_eq!(names(&server, &["-l", selector]).await, want, "{selector}");
    }
    let err = fails(&server, &["get", "cm", "-n", "sel", "-l", "tier in front"]).await;
    assert!(err.contains("unable to parse requirement"), "{err}");

    // Field selectors: names, negation, and a field the kind cannot select on.
    assert_eq!(
        names(&server, &["--field-selector", "metadata.name=cm-2"]).await,
        "cm-2"
    );
    assert_eq!(
        names(
            &server,
            &["--field-selector", "metadata.name!=cm-2", "-l", "tier"]
        )
        .await,
        "cm-1 cm-3 cm-5"
    );
    let err = fails(
        &server,
        &[
            "get",
            "cm",
            "-n",
            "sel",
            "--field-selector",
            "data.name=cm-1",
        ],
    )
    .await;
    // Kinds without their own field labels answer with apimachinery's default message.
    assert!(
        err.contains(
            r#"field selector "data.name=cm-1": "data.name" is not a known field selector: only "metadata.name", "metadata.namespace""#
        ),
        "{err}"
    );

    // Pods have field labels of their own, and their conversion's shorter message.
    let err = fails(
        &server,
        &["get", "pods", "--field-selector", "spec.image=x"],
    )
    .await;
    assert!(
        err.contains(r#"field selector "spec.image=x": field label not supported: spec.image"#),
        "{err}"
    );

    // Output formats.
    let columns = ok(
        &server,
        &[
            "get",
            "cm",
            "-n",
            "sel",
            "-l",
            "tier",
            "-o",
            "custom-columns=NAME:.metadata.name,TIER:.metadata.labels.tier,DATA:.data.name",
        ],
    )
    .await;
    assert_eq!(
        columns,
        "NAME   TIER    DATA\ncm-1   front   cm-1\ncm-2   back    cm-2\ncm-3   front   cm-3\ncm-5   db      cm-5\n"
    );
    let path = ok(
        &server,
        &[
            "get",
            "cm",
            "-n",
            "sel",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.tier};{end}",
        ],
    )
    .await;
    assert_eq!(path, "cm-1=front;cm-2=back;cm-3=front;cm-4=;cm-5=db;");
    let yaml = ok(&server, &["get", "cm", "cm-1", "-n", "sel", "-o", "yaml"]).await;
    assert!(
        yaml.starts_with("apiVersion: v1\ndata:\n  name: cm-1\nkind: ConfigMap\nmetadata:\n"),
        "{yaml}"
    );
    let json: Value =
        serde_json::from_str(&ok(&server, &["get", "cm", "cm-1", "-n", "sel", "-o", "json"]).await)
            .unwrap();
    assert_eq!(json["metadata"]["labels"]["tier"], "front");
    let wide = ok(
        &server,
        &["get", "cm", "-n", "sel", "-o", "wide", "-l", "canary"],
    )
    .await;
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"]);
    assert_eq!(wide.lines().count(), 3, "{wide}");

    // -A adds the namespace column and spans namespaces.
    let all = ok(&server, &["get", "cm", "-A", "-l", "tier=front"]).await;
    let rows: Vec<Vec<&str>> = all
        .lines()
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAMESPACE", "NAME", "DATA"],
            vec!["sel", "cm-1", "1"],
            vec!["sel", "cm-3", "1"]
        ]
    );

    // --chunk-size=2 over five objects: three list calls, joined into one table.
    let out = kubectl(
        &server,
        &["get", "cm", "-n", "sel", "--chunk-size=2", "-v=6"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let listed: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(listed, ["cm-1", "cm-2", "cm-3", "cm-4", "cm-5"], "{table}");
    let log = stderr(&out);
    let calls = log
        .lines()
        .filter(|l| l.contains("/namespaces/sel/configmaps?") && l.contains("limit=2"))
        .count();
    let continued = log
        .lines()
        .filter(|l| l.contains("/namespaces/sel/configmaps?") && l.contains("continue="))
        .count();
    assert_eq!((calls, continued), (3, 2), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn watch_with_a_selector_shows_only_matches() {
    let server = start().await;
    labelled_config_maps(&server).await;
    let mut watch = tokio::process::Command::new(kubectl_binary())
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args([
            "get",
            "cm",
            "-n",
            "sel",
            "-l",
            "tier=front",
            "-w",
            "-o",
            "name",
        ])
        .env("HOME", server.dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watch.stdout.take().unwrap()));
    let mut next = async || {
        tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("watch printed nothing")
            .unwrap()
            .expect("watch ended")
    };
    assert_eq!(next().await, "configmap/cm-1");
    assert_eq!(next().await, "configmap/cm-3");
    // A non-matching change first, then a matching one: only the latter is printed.
    ok(&server, &["label", "cm", "cm-2", "-n", "sel", "seen=no"]).await;
    ok(&server, &["label", "cm", "cm-4", "-n", "sel", "tier=front"]).await;
    assert_eq!(next().await, "configmap/cm-4");
    watch.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn imperative_creates_and_set_resources() {
    let server = start().await;
    for (args, want) in [
        (
            vec!["create", "namespace", "imp"],
            "namespace/imp created\n",
        ),
        (
            vec![
                "create",
                "configmap",
                "cfg",
                "-n",
                "imp",
                "--from-literal=a=1",
                "--from-literal=b=2",
            ],
            "configmap/cfg created\n",
        ),
        (
            vec![
                "create",
                "secret",
                "generic",
                "creds",
                "-n",
                "imp",
                "--from-literal=user=admin",
            ],
            "secret/creds created\n",
        ),
        (
            vec![
                "create",
                "deployment",
                "web",
                "-n",
                "imp",
                "--image=busybox:1.36",
                "--replicas=2",
            ],
            "deployment.apps/web created\n",
        ),
        (
            vec![
                "create",
                "job",
                "once",
                "-n",
                "imp",
                "--image=busybox:1.36",
                "--",
                "true",
            ],
            "job.batch/once created\n",
        ),
    ] {
        assert_eq!(ok(&server, &args).await, want, "{args:?}");
    }
    let cfg = ok(
        &server,
        &["get", "cm", "cfg", "-n", "imp", "-o", "jsonpath={.data}"],
    )
    .await;
    assert_eq!(cfg, r#"{"a":"1","b":"2"}"#);
    let secret = ok(
        &server,
        &[
            "get",
            "secret",
            "creds",
            "-n",
            "imp",
            "-o",
            "jsonpath={.type} {.data.user}",
        ],
    )
    .await;
    assert_eq!(secret, "Opaque YWRtaW4=");
    let job: Value = serde_json::from_str(
        &ok(&server, &["get", "job", "once", "-n", "imp", "-o", "json"]).await,
    )
    .unwrap();
    // The job's selector and template labels are generated from its uid, as upstream's.
    let uid = job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    let err = fails(&server, &["create", "configmap", "cfg", "-n", "imp"]).await;
    assert_eq!(
        err.trim(),
        r#"error: failed to create configmap: configmaps "cfg" already exists"#
    );

    let out = ok(
        &server,
        &[
            "set",
            "resources",
            "deployment/web",
            "-n",
            "imp",
            "--limits=cpu=200m,memory=64Mi",
            "--requests=cpu=100m",
        ],
    )
    .await;
    assert_eq!(out, "deployment.apps/web resource requirements updated\n");
    let resources = ok(
        &server,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "imp",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].resources}",
        ],
    )
    .await;
    assert_eq!(
        resources,
        r#"{"limits":{"cpu":"200m","memory":"64Mi"},"requests":{"cpu":"100m"}}"#
    );
}

/// Starts `kubectl wait ARGS` and returns once kubectl has read the object (its first
/// answered request, seen in its `-v=6` log), so what the test does next cannot beat
/// the wait's start: `--for=delete` on an object already gone exits quietly.
async fn wait_in_background(
    server: &TestServer,
    args: &[&str],
) -> tokio::task::JoinHandle<std::process::Output> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(kubectl_binary())
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .arg("wait")
        .args(args)
        .args(["--timeout", "20s", "-v=6"])
        .env("HOME", server.dir.path())
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let started = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
            if line.contains("200 OK") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(started, Ok(true)),
        "kubectl wait never read the object:\n{log}"
    );
    tokio::spawn(async move {
        // Keep draining the log so kubectl never blocks on a full pipe.
        while let Ok(Some(line)) = stderr.next_line().await {
            log.push_str(&line);
            log.push('\n');
        }
        let mut out = child.wait_with_output().await.unwrap();
        out.stderr = log.into_bytes();
        out
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn wait_for_conditions_and_deletion() {
    let server = start().await;
    ok(
        &server,
        &["run", "waiter", "--image=busybox:1.36", "--restart=Never"],
    )
    .await;
    let ready = wait_in_background(&server, &["--for=condition=Ready", "pod/waiter"]).await;
    ok(
        &server,
        &[
            "patch",
            "pod",
            "waiter",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        ],
    )
    .await;
    let out = ready.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pod/waiter condition met\n"
    );

    // Already true: returns at once. A condition that never holds times out.
    let out = ok(
        &server,
        &[
            "wait",
            "--for=jsonpath={.status.conditions[0].status}=True",
            "pod/waiter",
        ],
    )
    .await;
    assert_eq!(out, "pod/waiter condition met\n");
    let err = fails(
        &server,
        &[
            "wait",
            "--for=condition=Initialized",
            "pod/waiter",
            "--timeout=1s",
        ],
    )
    .await;
    assert!(
        err.contains("timed out waiting for the condition on pods/waiter"),
        "{err}"
    );

    let gone = wait_in_background(&server, &["--for=delete", "pod/waiter"]).await;
    ok(&server, &["delete", "pod", "waiter", "--wait=false"]).await;
    let out = gone.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pod/waiter condition met\n"
    );
}

/// `describe` output's lines with runs of blanks made one: kubectl aligns columns by
/// the longest key present, which is its layout, not what the server said.
fn squeezed(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn describe_pod_deployment_node_and_service() {
    let server = start().await;
    let node = write(
        server.dir.path(),
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: worker-1\n  labels:\n    kubernetes.io/hostname: worker-1\nstatus:\n  capacity:\n    cpu: \"2\"\n    memory: 4Gi\n    pods: \"110\"\n",
    );
    ok(&server, &["create", "-f", &node]).await;
    ok(
        &server,
        &["run", "shown", "--image=busybox:1.36", "--labels=app=shown"],
    )
    .await;
    ok(
        &server,
        &["create", "deployment", "shown", "--image=busybox:1.36"],
    )
    .await;
    ok(
        &server,
        &["expose", "pod", "shown", "--port=80", "--target-port=8080"],
    )
    .await;

    let pod = squeezed(&ok(&server, &["describe", "pod", "shown"]).await);
    for line in [
        "Name: shown",
        "Namespace: default",
        "Labels: app=shown",
        "Status: Pending",
        "Image: busybox:1.36",
        "QoS Class: BestEffort",
        "Events: <none>",
    ] {
        assert!(
            pod.iter().any(|l| l == line),
            "missing {line:?} in {pod:#?}"
        );
    }
    let deployment = squeezed(&ok(&server, &["describe", "deployment", "shown"]).await);
    for line in [
        "Name: shown",
        "Selector: app=shown",
        "StrategyType: RollingUpdate",
        "RollingUpdateStrategy: 25% max unavailable, 25% max surge",
    ] {
        assert!(
            deployment.iter().any(|l| l == line),
            "missing {line:?} in {deployment:#?}"
        );
    }
    let node = squeezed(&ok(&server, &["describe", "node", "worker-1"]).await);
    for line in [
        "Name: worker-1",
        "Labels: kubernetes.io/hostname=worker-1",
        "cpu: 2",
        "pods: 110",
    ] {
        assert!(
            node.iter().any(|l| l == line),
            "missing {line:?} in {node:#?}"
        );
    }
    let service = squeezed(&ok(&server, &["describe", "service", "shown"]).await);
    for line in [
        "Name: shown",
        "Selector: app=shown",
        "Type: ClusterIP",
        "Port: <unset> 80/TCP",
        "TargetPort: 8080/TCP",
    ] {
        assert!(
            service.iter().any(|l| l == line),
            "missing {line:?} in {service:#?}"
        );
    }
}

fn pod_yaml(name: &str, spec_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{spec_extra}  containers:\n  - name: c\n    image: busybox\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn pods_get_their_priority_from_their_class() {
    let server = start().await;
    let dir = server.dir.path();
    let priority = |pod: &Value| {
        (
            pod["spec"]["priority"].clone(),
            pod["spec"]["priorityClassName"].clone(),
        )
    };

    // A built-in class gives its value; no class gives 0.
    let file = write(
        dir,
        "critical.yaml",
        &pod_yaml("critical", "  priorityClassName: system-node-critical\n"),
    );
    let pod: Value =
        serde_json::from_str(&ok(&server, &["create", "-f", &file, "-o", "json"]).await).unwrap();
    assert_eq!(
        priority(&pod),
        (
            serde_json::json!(2_000_001_000),
            serde_json::json!("system-node-critical")
        )
    );
    assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    let file = write(dir, "plain.yaml", &pod_yaml("plain", ""));
    let pod: Value =
        serde_json::from_str(&ok(&server, &["create", "-f", &file, "-o", "json"]).await).unwrap();
    assert_eq!(priority(&pod), (serde_json::json!(0), Value::Null));

    // Upstream's refusals, word for word.
    let file = write(
        dir,
        "missing.yaml",
        &pod_yaml("missing", "  priorityClassName: nope\n"),
    );
    let err = fails(&server, &["create", "-f", &file]).await;
    assert!(
        err.contains("pods \"missing\" is forbidden: no PriorityClass with name nope was found"),
        "{err}"
    );
    let file = write(dir, "given.yaml", &pod_yaml("given", "  priority: 7\n"));
    let err = fails(&server, &["create", "-f", &file]).await;
    assert!(
        err.contains("pods \"given\" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"),
        "{err}"
    );

    // A global default class names itself in pods that name none (once the server's
    // mirror has seen it: ask with dry runs until then).
    let class = write(
        dir,
        "class.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: everyone\nvalue: 1000\nglobalDefault: true\npreemptionPolicy: Never\n",
    );
    ok(&server, &["create", "-f", &class]).await;
    let file = write(dir, "later.yaml", &pod_yaml("later", ""));
    let pod = eventually("the default class to apply", || async {
        let args = [
            "create",
            "-f",
            &file,
            "--dry-run=server",
            "-o",
            "json",
            "--show-managed-fields",
        ];
        let pod: Value = serde_json::from_str(&ok(&server, &args).await).unwrap();
        if pod["spec"]["priorityClassName"].is_null() {
            Err(format!("a dry run gave {pod}"))
        } else {
            Ok(pod)
        }
    })
    .await;
    assert_eq!(
        priority(&pod),
        (serde_json::json!(1000), serde_json::json!("everyone"))
    );
    assert_eq!(pod["spec"]["preemptionPolicy"], "Never");
    // The dry runs stored nothing; what the class filled in belongs to no manager.
    let err = fails(&server, &["get", "pod", "later"]).await;
    assert!(err.contains("NotFound"), "{err}");
    let owned = &pod["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
    assert!(owned.get("f:priorityClassName").is_none(), "{owned}");
    assert!(owned.get("f:containers").is_some(), "{owned}");

    // One default only: neither a new class nor an existing one may become another.
    let second = write(
        dir,
        "second.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: second\nvalue: 5\nglobalDefault: true\n",
    );
    let refused = "priorityclasses.scheduling.k8s.io \"second\" is forbidden: PriorityClass everyone is already marked as default. Only one default can exist";
    let err = fails(&server, &["create", "-f", &second]).await;
    assert!(err.contains(refused), "{err}");
    ok(&server, &["create", "priorityclass", "second", "--value=5"]).await;
    let args = [
        "patch",
        "priorityclass",
        "second",
        "--type=merge",
        "-p",
        r#"{"globalDefault":true}"#,
    ];
    let err = fails(&server, &args).await;
    assert!(err.contains(refused), "{err}");
    // The default itself may still be changed.
    let args = ["label", "priorityclass", "everyone", "team=a"];
    ok(&server, &args).await;
}

/// Field labels that upstream reads from another path: an Event's `source` is
/// `source.component`, else `reportingComponent`; a Job's `status.successful` is
/// `status.succeeded`. Unknown labels are refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn field_labels_read_where_upstream_reads_them() {
    let server = start().await;
    let event = |name: &str, source: &str| {
        format!(
            "apiVersion: v1\nkind: Event\nmetadata:\n  name: {name}\ninvolvedObject:\n  kind: Pod\n  name: p\n  namespace: default\nreason: Started\ntype: Normal\n{source}\n"
        )
    };
    let docs = [
        event("from-kubelet", "source:\n  component: kubelet\n  host: n1"),
        event(
            "from-controller",
            "reportingComponent: job-controller\nreportingInstance: i\naction: Sync\neventTime: \"2024-01-01T00:00:00.000000Z\"",
        ),
    ];
    let file = write(server.dir.path(), "events.yaml", &docs.join("---\n"));
    ok(&server, &["create", "-f", &file]).await;
    let names = |selector: &'static str| {
        let server = &server;
        async move {
            ok(
                server,
                &["get", "events", "--field-selector", selector, "-o", "name"],
            )
            .await
        }
    };
    assert_eq!(names("source=kubelet").await, "event/from-kubelet\n");
    assert_eq!(
        names("source=job-controller").await,
        "event/from-controller\n"
    );
    assert_eq!(
        names("reportingComponent=job-controller").await,
        "event/from-controller\n"
    );
    let err = fails(
        &server,
        &["get", "events", "--field-selector", "source.host=n1"],
    )
    .await;
    assert!(
        err.contains("field label not supported: source.host"),
        "{err}"
    );

    ok(
        &server,
        &["create", "job", "once", "--image=busybox", "--", "true"],
    )
    .await;
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "jobs",
                "--field-selector",
                "status.successful=0",
                "-o",
                "name"
            ]
        )
        .await,
        "job.batch/once\n"
    );
    ok(
        &server,
        &[
            "patch",
            "job",
            "once",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"succeeded":1}}"#,
        ],
    )
    .await;
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "jobs",
                "--field-selector",
                "status.successful=1",
                "-o",
                "name"
            ]
        )
        .await,
        "job.batch/once\n"
    );
}
