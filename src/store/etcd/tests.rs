//! Runs the shared conformance suite against a real etcd started for the test (plain
//! and with client-certificate TLS), plus etcd-specific checks. etcd must be installed
//! (Debian `etcd-server`); without it these tests fail rather than skip.

use super::*;
use crate::conformance;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const START_DEADLINE: Duration = Duration::from_secs(30);

/// A throwaway single-member etcd on loopback, killed (by its PID) when dropped.
struct TestEtcd {
    /// Kept to start the same member again (same ports, same data).
    command: Command,
    child: Child,
    endpoint: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now; etcd binds it a moment later.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct TestPki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client: EtcdTls,
}

fn test_pki() -> TestPki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "etcd-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "etcd-server");
    // etcd's own gateway dials the member with the server certificate, as kubeadm's
    // etcd server certificate allows.
    server_params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-etcd-client");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &ca).unwrap();

    TestPki {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
        client: EtcdTls {
            ca_pem: ca_cert.pem().into_bytes(),
            cert_pem: client_cert.pem().into_bytes(),
            key_pem: client_key.serialize_pem().into_bytes(),
        },
    }
}

impl TestEtcd {
    fn start(pki: Option<&TestPki>) -> TestEtcd {
        let dir = tempfile::tempdir().unwrap();
        let scheme = if pki.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let log = dir.path().join("etcd.log");
        let mut command = Command::new("etcd");
        command
            .args(["--name", "test"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            // The conformance suite waits for a progress event; etcd's default is 10 min.
            .args(["--experimental-watch-progress-notify-interval", "1s"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(pki) = pki {
            let write = |name: &str, pem: &str| {
                let path = dir.path().join(name);
                std::fs::write(&path, pem).unwrap();
                path
            };
            command
                .arg("--cert-file")
                .arg(write("server.crt", &pki.server_cert_pem))
                .arg("--key-file")
                .arg(write("server.key", &pki.server_key_pem))
                .arg("--trusted-ca-file")
                .arg(write("ca.crt", &pki.ca_pem))
                .arg("--client-cert-auth");
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "the etcd tests need an `etcd` binary on PATH (Debian: apt-get install etcd-server)"
            ),
            Err(err) => panic!("cannot start etcd: {err}"),
        };
        TestEtcd {
            command,
            child,
            endpoint,
            log,
            _dir: dir,
        }
    }

    /// Kills the member and starts it again on the same ports and data.
    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = self.command.spawn().unwrap();
    }

    /// Connects once etcd answers, failing with etcd's log if it dies or never does.
    async fn connect(&mut self, tls: impl Fn() -> Option<EtcdTls>) -> Arc<EtcdStore> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let error = match EtcdStore::connect(std::slice::from_ref(&self.endpoint), tls()).await
            {
                Ok(store) => return store,
                Err(err) => err,
            };
            let exited = self.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "etcd at {} did not become ready ({error}; exit: {exited:?}); its log:\n{}",
                    self.endpoint,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
#[ignore = "needs etcd: e2e/test-all.sh runs it"]
async fn conformance_suite_on_etcd() {
    let mut etcd = TestEtcd::start(None);
    let store = etcd.connect(|| None).await;
    conformance::run_all(store).await;
}

#[tokio::test]
#[ignore = "needs etcd: e2e/test-all.sh runs it"]
async fn conformance_suite_on_etcd_with_client_certificates() {
    let pki = test_pki();
    let mut etcd = TestEtcd::start(Some(&pki));
    let tls = || {
        Some(EtcdTls {
            ca_pem: pki.client.ca_pem.clone(),
            cert_pem: pki.client.cert_pem.clone(),
            key_pem: pki.client.key_pem.clone(),
        })
    };
    let store = etcd.connect(tls).await;
    conformance::run_all(store).await;

    // A client certificate from another CA is refused. With TLS 1.3 the client learns
    // it as a bad-certificate alert or as the connection closing, depending on timing.
    let stranger = test_pki();
    let refused = EtcdStore::connect(
        std::slice::from_ref(&etcd.endpoint),
        Some(EtcdTls {
            ca_pem: pki.client.ca_pem.clone(),
            cert_pem: stranger.client.cert_pem,
            key_pem: stranger.client.key_pem,
        }),
    )
    .await;
    match refused {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("does not answer"), "{message}")
        }
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
#[ignore = "needs etcd: e2e/test-all.sh runs it"]
async fn calls_resume_after_etcd_restarts() {
    let mut etcd = TestEtcd::start(None);
    let store = etcd.connect(|| None).await;
    let written = store.create("/restart/a", b"1".to_vec()).await.unwrap();
    etcd.restart();
    // Calls fail as Unavailable while the member is down, then the store reconnects.
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        match store.get("/restart/a").await {
            Ok(found) => {
                let found = found.expect("the key written before the restart is there");
                assert_eq!((found.value, found.mod_revision), (b"1".to_vec(), written));
                break;
            }
            Err(StoreError::Unavailable(message)) => {
                assert!(Instant::now() < deadline, "no reconnection: {message}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("unexpected error: {err}"),
        }
    }
    let next = store.create("/restart/b", b"2".to_vec()).await.unwrap();
    assert!(next > written);
}

#[tokio::test]
#[ignore = "needs etcd: e2e/test-all.sh runs it"]
async fn answers_larger_than_the_flow_control_windows_arrive_whole() {
    let mut etcd = TestEtcd::start(None);
    let store = etcd.connect(|| None).await;
    // 6 MiB in one answer: past the 2 MiB stream and 4 MiB connection windows, so it
    // only arrives if the reader hands the window back as it goes.
    let value = vec![b'x'; 1 << 20];
    for i in 0..6 {
        store
            .create(&format!("/big/{i}"), value.clone())
            .await
            .unwrap();
    }
    let page = tokio::time::timeout(START_DEADLINE, store.list("/big/", None, 0, None))
        .await
        .expect("the answer stalled: flow-control windows not handed back")
        .unwrap();
    assert_eq!(page.items.len(), 6);
    assert!(page.items.iter().all(|kv| kv.value == value));
}

#[tokio::test]
async fn unreachable_etcd_is_unavailable() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    match EtcdStore::connect(&[endpoint], None).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("127.0.0.1")),
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn prefix_ends() {
    assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0");
    assert_eq!(prefix_end(b"a\xff"), b"b");
    assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    assert_eq!(prefix_end(b""), b"\0");
}
