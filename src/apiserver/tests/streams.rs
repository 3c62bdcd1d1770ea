//! `pods/exec` and `nodes/proxy` through the API server with the real kubectl, to a
//! kubelet stand-in that speaks the kubelet's side of the protocols: the request
//! reaches the pod's node with the kubelet client certificate and the kubelet's
//! parameters, the WebSocket upgrade passes through, and kubectl reports what the
//! "kubelet" sent, exit code included. Authorization of the upgrade (`get` and
//! `create`) and upstream's errors are checked too. The kubelet's own streaming
//! (runtime sessions, SPDY) has its tests beside it and in e2e/test_streams.py.

use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use rcgen::ExtendedKeyUsagePurpose;
use rind_apiserver::TlsFiles;
use rind_store::MemoryStore;
use rind_testing::{
    DEADLINE, Pki, client, eventually, fails, kubectl, kubectl_binary, leaf, make_pki, ok, pod,
    start_with, stderr, stdout,
};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

/// What the stand-in saw of one request.
#[derive(Debug)]
struct Seen {
    method: String,
    path_and_query: String,
    client_cn: Option<String>,
    protocols: String,
}

/// A kubelet on loopback: HTTPS with client certificates, answering `/healthz`, and
/// on `/exec/…` accepting a `v5.channel.k8s.io` WebSocket on which it plays a command
/// that echoes its input to stdout (once the client closes stdin, when it asked for
/// input), writes `oops` to stderr and exits 3.
async fn stand_in(
    pki: &Pki,
    seen: tokio::sync::mpsc::UnboundedSender<Seen>,
) -> (u16, tokio::task::JoinHandle<()>) {
    let (cert, key) = leaf(
        pki,
        &["127.0.0.1"],
        "kubelet",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
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
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let client_cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| rind_apiserver::tls::user_of(c))
                .map(|u| u.name);
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |mut req: http::Request<hyper::body::Incoming>| {
                        let path_and_query = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string()
                        };
                        let protocols = header("sec-websocket-protocol");
                        let key = header("sec-websocket-key");
                        seen.send(Seen {
                            method: req.method().to_string(),
                            path_and_query: path_and_query.clone(),
                            client_cn: client_cn.clone(),
                            protocols: protocols.clone(),
                        })
                        .unwrap();
                        let empty = http_body_util::Full::new(bytes::Bytes::new());
                        let response = if path_and_query == "/healthz" {
                            http::Response::new(http_body_util::Full::new(bytes::Bytes::from("ok")))
                        } else if path_and_query.starts_with("/exec/")
                            && protocols.contains("v5.channel.k8s.io")
                        {
                            let stdin = path_and_query.contains("input=1");
                            let upgrade = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let io = TokioIo::new(upgrade.await.unwrap());
                                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                                    io,
                                    Role::Server,
                                    None,
                                )
                                .await;
                                play_command(ws, stdin).await;
                            });
                            http::Response::builder()
                                .status(101)
                                .header("connection", "Upgrade")
                                .header("upgrade", "websocket")
                                .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
                                .header("sec-websocket-protocol", "v5.channel.k8s.io")
                                .body(empty)
                                .unwrap()
                        } else {
                            http::Response::builder().status(404).body(empty).unwrap()
                        };
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (port, task)
}

async fn play_command<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, stdin: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let binary = |data: Vec<u8>| Message::binary(data);
    ws.send(binary(vec![1])).await.unwrap();
    let mut input = Vec::new();
    if stdin {
        while let Some(Ok(message)) = ws.next().await {
            let data = message.into_data();
            match data.as_ref() {
                [0, rest @ ..] => input.extend_from_slice(rest),
                [255, 0] => break,
                _ => {}
            }
        }
    }
    let mut out = vec![1];
    out.extend(if stdin { input } else { b"hi\n".to_vec() });
    ws.send(binary(out)).await.unwrap();
    ws.send(binary(b"\x02oops\n".to_vec())).await.unwrap();
    let status = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: command terminated with exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
    let mut error = vec![3];
    error.extend_from_slice(status);
    ws.send(binary(error)).await.unwrap();
    // A normal closure: kubectl reads anything else as a broken stream.
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = ws.close(Some(normal)).await;
    while let Some(Ok(_)) = ws.next().await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn exec_and_node_proxy_reach_the_kubelet() {
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
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let (kubelet_port, kubelet) = stand_in(&pki, seen_tx).await;
    let server = start_with(&pki, Some(kubelet_client), MemoryStore::new()).await;
    let client = client(&server).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "node-1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}}
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut shell = pod("shell");
    shell.spec.as_mut().unwrap().node_name = Some("node-1".into());
    pods.create(&PostParams::default(), &shell).await.unwrap();
    pods.create(&PostParams::default(), &pod("pending"))
        .await
        .unwrap();

    // kubectl 1.37 speaks WebSocket v5: what the kubelet writes comes out of kubectl,
    // and the command's exit code becomes kubectl's.
    let out = kubectl(
        &server,
        &["exec", "shell", "--", "sh", "-c", "echo \"a b\""],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n");
    assert_eq!(stderr(&out), "oops\ncommand terminated with exit code 3\n");
    let request = seen.recv().await.unwrap();
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.path_and_query,
        "/exec/default/shell/c?command=sh&command=-c&command=echo+%22a+b%22&error=1&output=1"
    );
    assert_eq!(
        request.client_cn.as_deref(),
        Some("kube-apiserver-kubelet-client")
    );
    assert!(
        request.protocols.contains("v5.channel.k8s.io"),
        "{request:?}"
    );

    // With -i, kubectl's input reaches the kubelet and its end is the v5 close signal.
    let mut cat = tokio::process::Command::new(kubectl_binary())
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["exec", "-i", "shell", "--", "cat"])
        .env("HOME", server.dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut input = cat.stdin.take().unwrap();
    input.write_all(b"hello from stdin\n").await.unwrap();
    drop(input);
    let out = tokio::time::timeout(DEADLINE, cat.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stdout(&out), "hello from stdin\n");
    assert_eq!(out.status.code(), Some(3));
    let request = seen.recv().await.unwrap();
    assert_eq!(
        request.path_and_query,
        "/exec/default/shell/c?command=cat&error=1&input=1&output=1"
    );

    // Upstream's errors before anything reaches a kubelet.
    let err = fails(&server, &["exec", "shell", "-c", "nope", "--", "true"]).await;
    assert!(
        err.contains("container nope is not valid for pod shell"),
        "{err}"
    );
    let err = fails(&server, &["exec", "pending", "--", "true"]).await;
    assert!(
        err.contains("pod pending does not have a host assigned"),
        "{err}"
    );
    let err = fails(
        &server,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/shell/exec?command=id&stdout=true",
        ],
    )
    .await;
    assert!(
        err.contains("Error from server (BadRequest): Upgrade request required"),
        "{err}"
    );

    // A WebSocket upgrade is a GET: `get` lets it past the filter, `create` is needed too.
    ok(
        &server,
        &[
            "create",
            "role",
            "exec-get",
            "--verb=get",
            "--resource=pods/exec",
        ],
    )
    .await;
    ok(
        &server,
        &[
            "create",
            "rolebinding",
            "viewer",
            "--role=exec-get",
            "--user=viewer",
        ],
    )
    .await;
    let raw = "/api/v1/namespaces/default/pods/shell/exec?command=id&stdout=true";
    let denied = eventually("the binding to reach the authorizer", || async {
        let out = kubectl(&server, &["get", "--raw", raw, "--as=viewer"]).await;
        let err = stderr(&out);
        err.contains("is forbidden: \n")
            .then_some(err.clone())
            .ok_or(err)
    })
    .await;
    assert!(
        denied.contains("Error from server (Forbidden): pods \"shell\" is forbidden: \n"),
        "{denied}"
    );
    ok(
        &server,
        &[
            "create",
            "role",
            "exec-create",
            "--verb=create",
            "--resource=pods/exec",
        ],
    )
    .await;
    ok(
        &server,
        &[
            "create",
            "rolebinding",
            "viewer-create",
            "--role=exec-create",
            "--user=viewer",
        ],
    )
    .await;
    eventually("create on pods/exec to reach the authorizer", || async {
        let out = kubectl(&server, &["get", "--raw", raw, "--as=viewer"]).await;
        let err = stderr(&out);
        err.contains("Upgrade request required")
            .then_some(())
            .ok_or(err)
    })
    .await;

    // nodes/proxy reaches the kubelet's own port as its API client.
    let health = ok(
        &server,
        &["get", "--raw", "/api/v1/nodes/node-1/proxy/healthz"],
    )
    .await;
    assert_eq!(health, "ok");
    let request = loop {
        let request = seen.recv().await.unwrap();
        if request.path_and_query == "/healthz" {
            break request;
        }
    };
    assert_eq!(
        request.client_cn.as_deref(),
        Some("kube-apiserver-kubelet-client")
    );
    let err = fails(
        &server,
        &["get", "--raw", "/api/v1/nodes/nowhere/proxy/healthz"],
    )
    .await;
    assert!(err.contains("nodes \"nowhere\" not found"), "{err}");
    kubelet.abort();
}
