//! `rind node standalone-apiserver`: the API server alone on loopback, against a
//! plain-HTTP etcd given on the command line, with freshly generated certificates and an
//! admin kubeconfig written to a directory. Test suites that drive the real clients
//! (the Python `kubernetes` package) use it to reach our server without Docker or a
//! node's file layout.

use anyhow::Context;
use rind_apiserver::{ServerConfig, TlsFiles, compaction, serve};
use rind_cluster::pki::{ClusterPki, NodeFile, NodeIdentity};
use rind_runtime::paths;
use rind_store::EtcdStore;
use std::path::Path;

/// The service network the standalone server allocates ClusterIPs from (kind's default).
const SERVICE_SUBNET: &str = "10.96.0.0/16";

/// A fresh cluster PKI for an API server on 127.0.0.1:`port`, and the server
/// configuration that serves with it. Everything that runs our API server on loopback
/// outside a node (this command, the API and scheduler benchmarks) starts from here.
pub struct LoopbackPki {
    pub config: ServerConfig,
    files: Vec<NodeFile>,
}

impl LoopbackPki {
    pub fn generate(port: u16) -> anyhow::Result<Self> {
        let url = format!("https://127.0.0.1:{port}");
        let pki = ClusterPki::generate().context("generating certificates")?;
        let files = pki
            .node_files(&NodeIdentity {
                name: "localhost",
                ip: "127.0.0.1",
                control_plane: true,
                service_ip: "10.96.0.1",
                api_server_url: &url,
                api_server_sans: &[],
            })
            .context("generating certificates")?;
        let text = |path| file(&files, path).map(str::to_string);
        let config = ServerConfig {
            serving: TlsFiles {
                cert_pem: text(paths::APISERVER_CRT)?,
                key_pem: text(paths::APISERVER_KEY)?,
                ca_pem: text(paths::CA_CRT)?,
            },
            kubelet_client: None,
            service_subnet: SERVICE_SUBNET.to_string(),
            service_account_key: Some(text(paths::SA_KEY)?),
            service_account_admission: false,
            identity: "standalone".to_string(),
        };
        Ok(LoopbackPki { config, files })
    }

    /// A generated file by its node path: `paths::ADMIN_CONF` (cluster-admin),
    /// `paths::SCHEDULER_CONF`, ...
    pub fn file(&self, path: &str) -> anyhow::Result<&str> {
        file(&self.files, path)
    }
}

/// The contents of the generated file at `path` (a node path such as `paths::CA_CRT`).
fn file<'a>(files: &'a [NodeFile], path: &str) -> anyhow::Result<&'a str> {
    let found = files
        .iter()
        .find(|f| f.path == path)
        .with_context(|| format!("the generated PKI has no {path}"))?;
    std::str::from_utf8(&found.contents).with_context(|| format!("{path} is not UTF-8"))
}

/// Serves until killed. `dir` receives `kubeconfig` (cluster-admin) once the port is
/// bound, so a caller may wait for that file and then for `/readyz`.
pub async fn run(etcd: &str, dir: &Path, port: u16) -> anyhow::Result<()> {
    rind_runtime::logging::init("warn");
    // Only loopback: this server is for tests on this machine.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let port = listener
        .local_addr()
        .context("reading the bound port")?
        .port();
    let pki = LoopbackPki::generate(port)?;
    let store = EtcdStore::connect(&[etcd.to_string()], None)
        .await
        .with_context(|| format!("connecting to etcd at {etcd}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Written whole under another name, then renamed: a waiting reader never sees half.
    let partial = dir.join("kubeconfig.partial");
    std::fs::write(&partial, pki.file(paths::ADMIN_CONF)?)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, dir.join("kubeconfig"))
        .with_context(|| format!("writing the kubeconfig in {}", dir.display()))?;
    tokio::spawn(compaction::run(store.clone(), compaction::INTERVAL));
    serve(pki.config, store, listener)
        .await
        .context("serving the API")
}
