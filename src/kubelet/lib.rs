//! The kubelet: registers the node and reports its readiness from the runtime's
//! health, runs the pods bound to it through the container runtime (CRI) — probes,
//! lifecycle hooks, graceful deletion, volumes, env — reports their status and serves
//! their logs and streams (exec, attach, port-forward).

mod backoff;
mod cgroups;
mod cri;
mod dns;
mod env;
mod handlers;
mod lifecycle;
pub mod local_path;
mod logs;
mod node_status;
mod pods;
mod probes;
mod pull_secrets;
mod server;
mod spec;
mod static_pods;
mod status;
mod streaming;
mod volumes;

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;
use rind_runtime::reflect::reflect_and_notify;
use rind_runtime::{NodeConfig, paths};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long to wait between tries while containerd or the API server come up: both are
/// local or a network hop away and come up within a second or two of the node, so a
/// short poll lets the node register the moment they answer.
const STARTUP_RETRY: Duration = Duration::from_millis(100);

async fn connect_runtime() -> (cri::Cri, cri::v1::VersionResponse) {
    let runtime = cri::Cri::new(paths::CONTAINERD_SOCK);
    let mut last = String::new();
    loop {
        match runtime.version().await {
            Ok(version) => return (runtime, version),
            // Once per distinct error, not once per poll.
            Err(err) if err.to_string() != last => {
                last = err.to_string();
                tracing::info!("waiting for the container runtime: {last}");
            }
            Err(_) => {}
        }
        tokio::time::sleep(STARTUP_RETRY).await;
    }
}

/// Runs the kubelet inside a node, configured from the node's files.
pub async fn run_node(cfg: &NodeConfig) -> anyhow::Result<()> {
    rind_runtime::logging::init("info");
    // The runtime first: it is local and answers long before the API server.
    let (runtime, version) = connect_runtime().await;
    let client =
        rind_runtime::client::from_kubeconfig_when_ready(paths::KUBELET_CONF, "kubelet").await?;
    tracing::info!(
        runtime = %version.runtime_name,
        version = %version.runtime_version,
        "connected to the container runtime"
    );
    let info = node_status::SystemInfo::read(format!(
        "{}://{}",
        version.runtime_name, version.runtime_version
    ));
    let readiness = node_status::Readiness {
        problems: node_status::runtime_problems(&runtime).await,
        since: jiff::Timestamp::now(),
    };
    let node_uid = loop {
        match node_status::register(&client, cfg, &info, &readiness).await {
            Ok(uid) => break uid,
            Err(err) => tracing::info!("waiting for the API server to register the node: {err}"),
        }
        tokio::time::sleep(STARTUP_RETRY).await;
    };
    let node_allocatable = env::NodeAllocatable {
        cpu_millis: rind_api::quantity::Quantity::parse(&info.cpus)
            .map(|q| q.milli_value())
            .unwrap_or(1000),
        memory_bytes: i64::try_from(info.memory_bytes).unwrap_or(i64::MAX),
    };
    let pod_cgroups = node_cgroups(node_allocatable);
    let sync_health = pods::SyncHealth::default();
    tokio::spawn(node_status::heartbeat(
        client.clone(),
        runtime.clone(),
        cfg.clone(),
        info,
        node_uid.clone(),
        readiness,
        sync_health.clone(),
    ));

    tokio::spawn(local_path::run(
        client.clone(),
        cfg.node_name.clone(),
        std::path::PathBuf::from("/"),
    ));

    let wake = Arc::new(Notify::new());
    let notify = wake.clone();
    let selector = format!("spec.nodeName={}", cfg.node_name);
    let (store, _pod_watch) = reflect_and_notify(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields(&selector),
        "pod",
        move || {
            notify.notify_one();
            true
        },
    );
    // Syncing before the first full list would tear down the sandboxes of pods not
    // listed yet.
    store
        .wait_until_ready()
        .await
        .context("the pod watch ended before its first list")?;
    tracing::info!("pod list loaded; starting pod workers");
    tokio::spawn(static_pods::run(
        client.clone(),
        cfg.clone(),
        node_uid.clone(),
        store.clone(),
        runtime.clone(),
    ));
    let workers = Arc::new(
        pods::PodWorkers::new(
            Arc::new(pods::KubePodApi::new(client, cfg.node_name.clone())),
            runtime.clone(),
            cfg.node_ip.clone(),
            spec::kubernetes_service_env(&cfg.service_subnet),
            dns::ClusterDns {
                server: dns::cluster_dns_ip(&cfg.service_subnet)
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                node: dns::ResolvConf::read_node().reachable_from_pods(&cfg.node_ip),
            },
            store.clone(),
            node_allocatable,
            sync_health,
        )
        .with_node_ipv6(cfg.node_ipv6.clone())
        .with_cgroups(pod_cgroups),
    );
    tokio::spawn(workers.run(wake));

    let tls = server::tls_config(
        paths::KUBELET_SERVING_CRT,
        paths::KUBELET_SERVING_KEY,
        paths::CA_CRT,
    )?;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", paths::KUBELET_PORT))
        .await
        .with_context(|| format!("listening on port {}", paths::KUBELET_PORT))?;
    tracing::info!(port = paths::KUBELET_PORT, "kubelet API listening");
    server::serve(listener, tls, store, runtime).await;
    Ok(())
}

/// The node allocatable and QoS cgroups the pods' cgroups go in. Without them (no
/// usable cgroup hierarchy) pods still run, in the runtime's default cgroup, and
/// the log says why.
fn node_cgroups(allocatable: env::NodeAllocatable) -> Option<cgroups::Cgroups> {
    let root = std::path::Path::new(cgroups::CGROUP_ROOT);
    let prepared = cgroups::Cgroups::detect(root).and_then(|cgroups| {
        cgroups.ensure_node(allocatable.cpu_millis, allocatable.memory_bytes)?;
        Ok(cgroups)
    });
    match prepared {
        Ok(cgroups) => {
            tracing::info!(version = cgroups.version(), "pod cgroups under /kubepods");
            Some(cgroups)
        }
        Err(err) => {
            tracing::error!("pods run without pod cgroups, in the runtime's default cgroup: {err}");
            None
        }
    }
}

/// The runtime's ID of `image` (its config digest, the same as Docker's image ID), or
/// None when the node's containerd does not hold it.
pub async fn image_id(image: &str) -> anyhow::Result<Option<String>> {
    let cri = cri::Cri::new(rind_runtime::paths::CONTAINERD_SOCK);
    let status = cri
        .image_status(image)
        .await
        .context("asking containerd for the image")?;
    Ok(status.map(|image| image.id))
}
