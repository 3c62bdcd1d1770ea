//! The API server on loopback with a memory store and rcgen-made certificates, driven
//! by the real kubectl 1.37 and by kube-rs exactly as users and our components do.

mod admission;
mod apply;
mod auth;
mod compaction;
mod crd;
mod kubectl;
mod openapi;
mod protobuf;
mod reviews;
mod servicecidr;
mod streams;
mod surface;
mod types;
mod upstream_bytes;
mod watch;
mod wire;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use rcgen::ExtendedKeyUsagePurpose;
use rind_apiserver::TlsFiles;
use rind_store::MemoryStore;
use rind_testing::{
    DEADLINE, Pki, TestServer, client, eventually, fails, kubectl_binary, leaf, make_pki, ok, pod,
    start, start_etcd, start_with, stderr, write,
};

const POD_YAML: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: team\n  labels:\n    app: web\nspec:\n  containers:\n  - name: web\n    image: busybox:1.36\n    command: [sleep, '3600']\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn kubectl_end_to_end() {
    kubectl_flow(&start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: e2e/test-all.sh runs it"]
async fn kubectl_end_to_end_on_etcd() {
    let (_etcd, store) = start_etcd().await;
    let server = start_with(&make_pki(), None, store).await;
    kubectl_flow(&server).await;
    // Objects sit under upstream's keys as JSON, without their resourceVersion.
    let kv = server
        .store
        .get("/registry/pods/team/web")
        .await
        .unwrap()
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(stored["kind"], "Pod");
    assert!(stored["metadata"].get("resourceVersion").is_none());
    assert!(
        server
            .store
            .get("/registry/namespaces/kube-system")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        server
            .store
            .get("/registry/services/specs/default/kubernetes")
            .await
            .unwrap()
            .is_some()
    );
}

async fn kubectl_flow(server: &TestServer) {
    let version = ok(server, &["version"]).await;
    assert!(version.contains("Server Version: v1.37.0"), "{version}");

    let namespaces = ok(server, &["get", "ns"]).await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(namespaces.contains(ns), "{namespaces}");
    }
    assert!(namespaces.starts_with("NAME"), "{namespaces}");
    assert!(namespaces.contains("Active"), "{namespaces}");
    let svc = ok(server, &["get", "svc", "kubernetes", "-n", "default"]).await;
    assert!(
        svc.contains("10.96.0.1") && svc.contains("443/TCP"),
        "{svc}"
    );

    // kubectl's typed `create namespace` sends protobuf; the same object from a file
    // (JSON) then already exists.
    ok(server, &["create", "namespace", "team"]).await;
    let ns_file = write(
        server.dir.path(),
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    );
    let exists = fails(server, &["create", "-f", &ns_file]).await;
    assert!(exists.contains("AlreadyExists"), "{exists}");
    let file = write(server.dir.path(), "pod.yaml", POD_YAML);
    ok(server, &["create", "-f", &file]).await;
    let err = fails(server, &["create", "-f", &file]).await;
    assert!(
        err.contains("Error from server (AlreadyExists)")
            && err.contains("pods \"web\" already exists"),
        "{err}"
    );

    let missing = fails(server, &["run", "x", "-n", "nowhere", "--image=busybox"]).await;
    assert!(
        missing.contains("namespaces \"nowhere\" not found"),
        "{missing}"
    );

    ok(
        server,
        &[
            "run",
            "hello",
            "-n",
            "team",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "echo hi",
        ],
    )
    .await;
    let yaml = ok(server, &["get", "pod", "hello", "-n", "team", "-o", "yaml"]).await;
    for expected in [
        "restartPolicy: Never",
        "dnsPolicy: ClusterFirst",
        "schedulerName: default-scheduler",
        "imagePullPolicy: Always",
        "phase: Pending",
        "qosClass: BestEffort",
        "uid:",
        "creationTimestamp:",
    ] {
        assert!(yaml.contains(expected), "missing {expected} in {yaml}");
    }
    // Admission's fields are there but owned by no one; the defaults belong to the
    // creator (upstream defaults before the field manager, admits after it).
    let args = [
        "get",
        "pod",
        "hello",
        "-n",
        "team",
        "-o",
        "json",
        "--show-managed-fields",
    ];
    let pod: serde_json::Value = serde_json::from_str(&ok(server, &args).await).unwrap();
    assert_eq!(pod["spec"]["priority"], 0, "{pod}");
    assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
    let owned = &pod["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
    for field in ["f:dnsPolicy", "f:enableServiceLinks", "f:restartPolicy"] {
        assert!(owned.get(field).is_some(), "{field} not owned: {owned}");
    }
    for field in ["f:priority", "f:preemptionPolicy", "f:tolerations"] {
        assert!(owned.get(field).is_none(), "{field} owned: {owned}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(server, &["get", "pods", "-n", "team", "-o", "json"]).await)
            .unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"].as_array().unwrap().len(), 2);
    let wide = ok(server, &["get", "pods", "-n", "team", "-o", "wide"]).await;
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    assert!(
        wide.contains("hello") && wide.contains("0/1") && wide.contains("Pending"),
        "{wide}"
    );
    let selected = ok(
        server,
        &["get", "pods", "-n", "team", "-l", "app=web", "-o", "name"],
    )
    .await;
    assert_eq!(selected.trim(), "pod/web");
    let unscheduled = ok(
        server,
        &[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName=",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(unscheduled.lines().count(), 2, "{unscheduled}");

    // Client-side apply patches with a strategic merge: the container keeps its command.
    let applied = write(
        server.dir.path(),
        "applied.yaml",
        &POD_YAML.replace("app: web", "app: web\n    tier: back"),
    );
    let out = ok(server, &["apply", "-f", &applied]).await;
    assert!(out.contains("pod/web configured"), "{out}");
    let command = ok(
        server,
        &[
            "get",
            "pod",
            "web",
            "-n",
            "team",
            "-o",
            "jsonpath={.spec.containers[0].command} {.metadata.labels.tier}",
        ],
    )
    .await;
    assert_eq!(command, "[\"sleep\",\"3600\"] back");

    let invalid = write(
        server.dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers:\n  - name: c\n",
    );
    let err = fails(server, &["create", "-f", &invalid, "--validate=false"]).await;
    assert!(
        err.contains("The Pod \"Bad_Name\" is invalid")
            && err.contains("* spec.containers[0].image: Required value"),
        "{err}"
    );

    // A replace with a stale resourceVersion is a conflict.
    let stale = ok(server, &["get", "pod", "web", "-n", "team", "-o", "yaml"]).await;
    let stale_file = write(server.dir.path(), "stale.yaml", &stale);
    ok(
        server,
        &[
            "label",
            "pod",
            "web",
            "-n",
            "team",
            "tier=front",
            "--overwrite",
        ],
    )
    .await;
    let err = fails(server, &["replace", "-f", &stale_file]).await;
    assert!(
        err.contains("Error from server (Conflict)")
            && err.contains("Operation cannot be fulfilled on pods \"web\": the object has been modified; please apply your changes to the latest version and try again"),
        "{err}"
    );

    // `get -w` sees a later change.
    let mut watch = tokio::process::Command::new(kubectl_binary())
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["get", "pods", "-n", "team", "-w", "--output-watch-events"])
        .env("HOME", server.dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watch.stdout.take().unwrap()));
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, "hello").await;
    ok(
        server,
        &["annotate", "pod", "hello", "-n", "team", "note=changed"],
    )
    .await;
    read_until(&mut lines, &mut seen, "MODIFIED").await;
    watch.kill().await.unwrap();

    // An unbound pod goes at once.
    let out = ok(server, &["delete", "pod", "hello", "-n", "team"]).await;
    assert!(out.contains("pod \"hello\" deleted"), "{out}");
    let err = fails(server, &["get", "pod", "hello", "-n", "team"]).await;
    assert!(
        err.contains("Error from server (NotFound): pods \"hello\" not found"),
        "{err}"
    );

    // No credentials is system:anonymous, whom bootstrap policy lets read no pods.
    let anonymous = fails(server, &["--context", "anonymous", "get", "pods"]).await;
    assert!(anonymous.contains("(Forbidden)"), "{anonymous}");
    // Probes are public, as upstream's.
    for probe in ["/readyz", "/livez", "/healthz"] {
        assert_eq!(
            ok(server, &["--context", "anonymous", "get", "--raw", probe]).await,
            "ok"
        );
    }
}

/// Reads watch output lines until one contains `want`, failing at the deadline.
async fn read_until(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<String>,
    want: &str,
) {
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.clone());
            if line.contains(want) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found.ok(),
        Some(true),
        "watch never showed {want:?}: {seen:?}"
    );
}

type Events = futures::stream::BoxStream<'static, Result<watcher::Event<Pod>, watcher::Error>>;

async fn next_event(events: &mut Events) -> watcher::Event<Pod> {
    tokio::time::timeout(DEADLINE, events.try_next())
        .await
        .expect("watcher stalled")
        .unwrap()
        .expect("watcher ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn kube_rs_watcher_sees_changes() {
    let server = start().await;
    let client = client(&server).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("before"))
        .await
        .unwrap();
    // Streaming lists (sendInitialEvents) end their initial events with a bookmark.
    let mut streaming = watcher(pods.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut streamed = Vec::new();
    loop {
        match next_event(&mut streaming).await {
            watcher::Event::InitApply(p) => streamed.push(p.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(streamed, ["before"]);
    let mut events = watcher(pods.clone(), watcher::Config::default()).boxed();
    let mut names = Vec::new();
    // The initial list, then a live create.
    loop {
        match next_event(&mut events).await {
            watcher::Event::InitApply(p) => names.push(p.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(names, ["before"]);
    pods.create(&PostParams::default(), &pod("after"))
        .await
        .unwrap();
    loop {
        if let watcher::Event::Apply(p) = next_event(&mut events).await {
            assert_eq!(p.metadata.name.as_deref(), Some("after"));
            assert!(p.metadata.resource_version.is_some());
            break;
        }
    }
    pods.delete("after", &DeleteParams::default())
        .await
        .unwrap();
    loop {
        if let watcher::Event::Delete(p) = next_event(&mut events).await {
            assert_eq!(p.metadata.name.as_deref(), Some("after"));
            break;
        }
    }
}

/// The Python client's Watch sends `watch=True`; upstream decodes any value but `0` and
/// `false` (in any case) as true, so this is a watch, not a list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn watch_true_in_any_case_streams_events() {
    let server = start().await;
    let client = client(&server).await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "watched"}})).unwrap();
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let request =
        http::Request::get("/api/v1/namespaces/default/configmaps?watch=True&timeoutSeconds=1")
            .body(Vec::new())
            .unwrap();
    let body = client.request_text(request).await.unwrap();
    let events: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let added: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .map(|e| e["object"]["metadata"]["name"].clone())
        .collect();
    assert_eq!(added, ["watched"], "{body}");
}

/// Upstream selects on fields of the typed object, so an unset field is its zero value:
/// a fresh node is schedulable (`false`), an unscheduled pod's node is `""`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn field_selectors_compare_unset_fields_as_zero_values() {
    let server = start().await;
    let client = client(&server).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "fresh"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let names = |list: kube::api::ObjectList<Node>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect()
    };
    let schedulable = ListParams::default().fields("spec.unschedulable=false");
    assert_eq!(names(nodes.list(&schedulable).await.unwrap()), ["fresh"]);
    let cordoned = ListParams::default().fields("spec.unschedulable=true");
    assert!(nodes.list(&cordoned).await.unwrap().items.is_empty());

    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("pending"))
        .await
        .unwrap();
    let unscheduled = ListParams::default().fields("spec.nodeName=");
    let listed = pods.list(&unscheduled).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].metadata.name.as_deref(), Some("pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn binding_graceful_delete_and_finalizers() {
    let server = start().await;
    let client = client(&server).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("bound"))
        .await
        .unwrap();
    let binding = serde_json::json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"}, "target": {"kind": "Node", "name": "node-1"}});
    let bind = |body: serde_json::Value| {
        let pods = pods.clone();
        async move {
            pods.create_subresource::<_, serde_json::Value>(
                "binding",
                "bound",
                &PostParams::default(),
                &body,
            )
            .await
        }
    };
    bind(binding.clone()).await.unwrap();
    let again = bind(binding).await.unwrap_err();
    assert!(
        again.to_string().contains("already assigned to node"),
        "{again}"
    );
    let bound = pods.get("bound").await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("node-1")
    );
    let scheduled = bound.status.unwrap().conditions.unwrap();
    assert!(
        scheduled
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );

    // A bound pod is only marked; the kubelet's grace-0 delete removes it.
    let first = pods
        .delete("bound", &DeleteParams::default())
        .await
        .unwrap();
    let marked = first.left().expect("a graceful delete returns the pod");
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(pods.get_opt("bound").await.unwrap().is_some());
    pods.delete(
        "bound",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());

    // Finalizers hold an object until the last one is removed.
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    maps.create(&PostParams::default(), &cm).await.unwrap();
    maps.delete("held", &DeleteParams::default()).await.unwrap();
    let held = maps.get("held").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    maps.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(maps.get_opt("held").await.unwrap().is_none());

    // JSON patch with a failing test is rejected; a stale resourceVersion conflicts.
    let jp: json_patch::Patch = serde_json::from_value(
        serde_json::json!([{"op": "test", "path": "/metadata/name", "value": "x"}]),
    )
    .unwrap();
    let cm2: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "c2"}, "data": {"a": "1"}}))
            .unwrap();
    let created = maps.create(&PostParams::default(), &cm2).await.unwrap();
    assert!(
        maps.patch("c2", &PatchParams::default(), &Patch::<()>::Json(jp))
            .await
            .is_err()
    );
    let mut stale = created.clone();
    maps.patch(
        "c2",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"b": "2"}})),
    )
    .await
    .unwrap();
    stale.data = Some([("c".to_string(), "3".to_string())].into());
    let err = maps
        .replace("c2", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the object has been modified"),
        "{err}"
    );
}

/// What the fake kubelet saw of a log request.
#[derive(Debug, Clone)]
struct KubeletRequest {
    path_and_query: String,
    client_cn: Option<String>,
}

/// A kubelet stand-in on loopback: HTTPS with client certificates required, answering
/// `/containerLogs/...` with `first line`, then (when following) `second line` once
/// `release` is notified.
async fn fake_kubelet(
    pki: &Pki,
    release: std::sync::Arc<tokio::sync::Notify>,
    seen: tokio::sync::mpsc::UnboundedSender<KubeletRequest>,
) -> (u16, tokio::task::JoinHandle<()>) {
    use hyper_util::rt::TokioIo;
    let (cert, key) = leaf(
        pki,
        &["127.0.0.1"],
        "kubelet",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let certs: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(_) => continue,
            };
            let client_cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| rind_apiserver::tls::user_of(c))
                .map(|u| u.name);
            let release = release.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let path_and_query = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        seen.send(KubeletRequest {
                            path_and_query: path_and_query.clone(),
                            client_cn: client_cn.clone(),
                        })
                        .unwrap();
                        let follow = path_and_query.contains("follow=true");
                        let release = release.clone();
                        let lines = futures::stream::once(async {
                            Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(
                                "first line\n",
                            )))
                        })
                        .chain(futures::stream::once(async move {
                            if follow {
                                release.notified().await;
                            }
                            Ok(hyper::body::Frame::data(bytes::Bytes::from(
                                "second line\n",
                            )))
                        }));
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::StreamBody::new(lines),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn logs_are_proxied_from_the_kubelet() {
    let pki = make_pki();
    let (client_cert, client_key) = leaf(
        &pki,
        &[],
        "kube-apiserver-kubelet-client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let kubelet_client = TlsFiles {
        cert_pem: client_cert,
        key_pem: client_key,
        ca_pem: pki.ca_pem.clone(),
    };
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (kubelet_port, kubelet) = fake_kubelet(&pki, release.clone(), seen_tx).await;
    let server = start_with(&pki, Some(kubelet_client), MemoryStore::new()).await;
    let client = client(&server).await;

    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "node-1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut logged = pod("logged");
    logged.spec.as_mut().unwrap().node_name = Some("node-1".into());
    pods.create(&PostParams::default(), &logged).await.unwrap();

    let out = ok(&server, &["logs", "logged", "--tail=5"]).await;
    assert_eq!(out, "first line\nsecond line\n");
    let request = seen.recv().await.unwrap();
    assert_eq!(
        request.path_and_query,
        "/containerLogs/default/logged/c?tailLines=5"
    );
    assert_eq!(
        request.client_cn.as_deref(),
        Some("kube-apiserver-kubelet-client")
    );

    // Following streams: the first line arrives before the kubelet has sent the second.
    let mut follow = tokio::process::Command::new(kubectl_binary())
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["logs", "-f", "logged"])
        .env("HOME", server.dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(follow.stdout.take().unwrap()));
    let mut seen_lines = Vec::new();
    read_until(&mut lines, &mut seen_lines, "first line").await;
    release.notify_one();
    read_until(&mut lines, &mut seen_lines, "second line").await;
    let status = tokio::time::timeout(DEADLINE, follow.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    let mut two = pod("two");
    two.spec.as_mut().unwrap().containers.push(
        serde_json::from_value(serde_json::json!({"name": "d", "image": "busybox:1.36"})).unwrap(),
    );
    pods.create(&PostParams::default(), &two).await.unwrap();
    // kubectl picks a container itself; other clients get upstream's error.
    let err = pods
        .logs("two", &kube::api::LogParams::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a container name must be specified for pod two, choose one of: [c d]"),
        "{err}"
    );
    let err = fails(&server, &["logs", "pending-nowhere"]).await;
    assert!(err.contains("pods \"pending-nowhere\" not found"), "{err}");
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn services_get_cluster_ips_and_node_ports() {
    let server = start().await;
    let client = client(&server).await;
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client, "default");
    let svc = |name: &str, spec: serde_json::Value| {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
            .unwrap()
    };
    let web = services
        .create(&PostParams::default(), &svc("web", serde_json::json!({"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]})))
        .await
        .unwrap();
    let spec = web.spec.unwrap();
    let ip: std::net::Ipv4Addr = spec.cluster_ip.unwrap().parse().unwrap();
    assert_eq!(ip.octets()[..2], [10, 96]);
    let port = &spec.ports.unwrap()[0];
    assert!((30000..=32767).contains(&port.node_port.unwrap()));
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
    );
    let taken = services
        .create(
            &PostParams::default(),
            &svc(
                "dup",
                serde_json::json!({"clusterIP": "10.96.0.1", "ports": [{"port": 1}]}),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        taken
            .to_string()
            .contains("provided IP is already allocated"),
        "{taken}"
    );
    // An update that leaves the allocations out keeps them.
    let patched = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port,
        port.node_port
    );
    let out = ok(&server, &["get", "svc", "web"]).await;
    assert!(
        out.contains(&format!("80:{}/TCP", port.node_port.unwrap())),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn namespace_deletion_empties_the_namespace() {
    let server = start().await;
    let client = client(&server).await;
    let file = write(
        server.dir.path(),
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: doomed\n",
    );
    ok(&server, &["create", "-f", &file]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "doomed");
    pods.create(&PostParams::default(), &pod("loose"))
        .await
        .unwrap();
    let mut bound = pod("bound");
    bound.spec.as_mut().unwrap().node_name = Some("node-1".into());
    pods.create(&PostParams::default(), &bound).await.unwrap();

    // `kubectl delete ns` waits until the namespace is really gone.
    let delete = tokio::spawn({
        let kubeconfig = server.kubeconfig.clone();
        let home = server.dir.path().to_path_buf();
        async move {
            tokio::process::Command::new(kubectl_binary())
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(["delete", "ns", "doomed"])
                .env("HOME", home)
                .kill_on_drop(true)
                .output()
                .await
                .unwrap()
        }
    });
    // The bound pod terminates gracefully; play the kubelet's final delete.
    eventually("the bound pod to be marked for deletion", || async {
        let current = pods.get_opt("bound").await.unwrap();
        current
            .is_some_and(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    assert!(pods.get_opt("loose").await.unwrap().is_none());
    let phase = ok(
        &server,
        &["get", "ns", "doomed", "-o", "jsonpath={.status.phase}"],
    )
    .await;
    assert_eq!(phase, "Terminating");
    let refused = fails(&server, &["run", "late", "-n", "doomed", "--image=busybox"]).await;
    assert!(
        refused.contains("because it is being terminated"),
        "{refused}"
    );
    pods.delete(
        "bound",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let out = tokio::time::timeout(DEADLINE, delete)
        .await
        .expect("namespace never went away")
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = fails(&server, &["get", "ns", "doomed"]).await;
    assert!(err.contains("namespaces \"doomed\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn metadata_lists_and_expired_watches() {
    paging_and_compaction(&start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: e2e/test-all.sh runs it"]
async fn metadata_lists_and_expired_watches_on_etcd() {
    let (_etcd, store) = start_etcd().await;
    paging_and_compaction(&start_with(&make_pki(), None, store).await).await;
}

async fn paging_and_compaction(server: &TestServer) {
    let client = client(server).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let first = pods
        .create(&PostParams::default(), &pod("a"))
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.clone().unwrap();
    pods.create(&PostParams::default(), &pod("b"))
        .await
        .unwrap();

    let metas = pods
        .list_metadata(&kube::api::ListParams::default().limit(1))
        .await
        .unwrap();
    assert_eq!(metas.items.len(), 1);
    assert_eq!(metas.items[0].metadata.name.as_deref(), Some("a"));
    let token = metas.metadata.continue_.clone().expect("a continue token");
    let rest = pods
        .list_metadata(
            &kube::api::ListParams::default()
                .limit(1)
                .continue_token(&token),
        )
        .await
        .unwrap();
    assert_eq!(rest.items[0].metadata.name.as_deref(), Some("b"));
    assert!(rest.metadata.continue_.is_none());

    // generateName gets upstream's five-character suffix.
    let mut generated = pod("");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = pods
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = generated.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    pods.delete(&name, &DeleteParams::default()).await.unwrap();

    // deletecollection honours the selector.
    let mut labelled = pod("labelled");
    labelled.metadata.labels = Some([("sweep".to_string(), "yes".to_string())].into());
    pods.create(&PostParams::default(), &labelled)
        .await
        .unwrap();
    pods.delete_collection(
        &DeleteParams::default(),
        &kube::api::ListParams::default().labels("sweep=yes"),
    )
    .await
    .unwrap();
    let left: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["a", "b"]);

    // A watch from a compacted revision gets a 410 Expired error event.
    pods.create(&PostParams::default(), &pod("c"))
        .await
        .unwrap();
    let now = server.store.revision().await.unwrap();
    server.store.compact(now).await.unwrap();
    let mut stream = pods
        .watch(&kube::api::WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    let event = tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match event {
        kube::api::WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn events_k8s_io_shares_core_events() {
    let server = start().await;
    let client = client(&server).await;
    let new_events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let event = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p.1"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "rind/kubelet",
        "reportingInstance": "node-1",
        "action": "Starting",
        "reason": "Started",
        "type": "Normal",
        "note": "Started container c",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}
    }))
    .unwrap();
    new_events
        .create(&PostParams::default(), &event)
        .await
        .unwrap();
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let stored = core.get("p.1").await.unwrap();
    assert_eq!(stored.message.as_deref(), Some("Started container c"));
    assert_eq!(stored.involved_object.name.as_deref(), Some("p"));
    let selected = core
        .list(&kube::api::ListParams::default().fields("involvedObject.name=p"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
    let out = ok(&server, &["get", "events"]).await;
    assert!(
        out.contains("Started") && out.contains("pod/p") && out.contains("Started container c"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn server_side_apply_creates_and_merges() {
    let server = start().await;
    let client = client(&server).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let params = PatchParams::apply("rind-test");
    let applied = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}});
    let created = maps
        .patch("ssa", &params, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(created.data.unwrap()["a"], "1");
    let again = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "2"}});
    let merged = maps
        .patch("ssa", &params, &Patch::Apply(&again))
        .await
        .unwrap();
    // The manager stopped applying `a`, and nobody else owns it: it is gone.
    let data = merged.data.unwrap();
    assert_eq!((data.len(), data["b"].as_str()), (1, "2"));

    // Status through apply, as controllers written with kube-rs often do.
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();
    let status = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    let updated = pods
        .patch_status("p", &params, &Patch::Apply(&status))
        .await
        .unwrap();
    let status = updated.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));

    let file = write(
        server.dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-kubectl\ndata:\n  k: v\n",
    );
    let out = ok(&server, &["apply", "--server-side", "-f", &file]).await;
    assert!(out.contains("serverside-applied"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn leases_for_heartbeats_and_elections() {
    use k8s_openapi::api::coordination::v1::Lease;
    let server = start().await;
    let client = client(&server).await;
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "node-1"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2026-01-01T00:00:00.000000Z"}
    }))
    .unwrap();
    // PUT creates a missing lease, as upstream allows for leases.
    let created = leases
        .replace("node-1", &PostParams::default(), &lease)
        .await
        .unwrap();
    let mut renewed = created.clone();
    renewed.spec.as_mut().unwrap().lease_duration_seconds = Some(41);
    let renewed = leases
        .replace("node-1", &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        created.metadata.resource_version
    );
    // A contender holding a stale copy loses.
    let err = leases
        .replace("node-1", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("leases.coordination.k8s.io \"node-1\": the object has been modified"),
        "{err}"
    );
    let out = ok(&server, &["get", "leases", "-A"]).await;
    assert!(out.contains("HOLDER") && out.contains("node-1"), "{out}");
}
