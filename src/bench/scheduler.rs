//! The scheduler benchmark's harness (`rind node bench-scheduler`, hidden; driven by
//! e2e/bench/scheduler.py). It starts a real etcd and our API server on loopback,
//! registers many fake Ready nodes, measures the raw pod create rate with pods no
//! scheduler picks up, then starts the real scheduler (the same `run` a node runs,
//! with its own client and credentials) and creates the measured pods, sampling the
//! scheduler's count of answered bindings, then checks through the API that every pod
//! is bound. Prints one JSON object on stdout.

use crate::standalone::LoopbackPki;
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use rind_apiserver::serve;
use rind_runtime::paths;
use rind_scheduler::{Stats, run};
use rind_store::Store;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Fake nodes to register.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 10000)]
    pub pods: usize,
    /// Pods created (and never scheduled) to measure the API's raw create rate.
    #[arg(long, default_value_t = 2000)]
    pub baseline_pods: usize,
    /// Create requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Give up waiting for the pods to be bound after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// The etcd child process and its data directory; killed and removed on drop, so a
/// failed run leaves nothing behind.
struct Etcd {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    url: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_etcd() -> anyhow::Result<Etcd> {
    let dir = tempfile::tempdir().context("creating etcd's data directory")?;
    let url = format!("http://127.0.0.1:{}", free_port()?);
    let peer = format!("http://127.0.0.1:{}", free_port()?);
    let log = std::fs::File::create(dir.path().join("etcd.log"))?;
    let child = std::process::Command::new("etcd")
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("bench={peer}")])
        // Room for 15,000+ objects and their history (the default is 2 GiB too).
        .args(["--quota-backend-bytes", "8589934592"])
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting etcd (Debian package etcd-server)")?;
    Ok(Etcd {
        child,
        _dir: dir,
        url,
    })
}

async fn client_from(kubeconfig: &[u8]) -> anyhow::Result<Client> {
    let text = std::str::from_utf8(kubeconfig)?;
    let kc = kube::config::Kubeconfig::from_yaml(text)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(Client::try_from(config)?)
}

fn node_object(i: usize) -> anyhow::Result<Node> {
    let name = format!("bench-node-{i:05}");
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % 10),
        }},
        "status": {
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }))?)
}

fn pod_object(name: &str, scheduler: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {
            "schedulerName": scheduler,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
        },
    }))?)
}

/// A runtime owned by async code: dropped without waiting for its tasks (dropping a
/// runtime the ordinary way from inside another one panics).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle().clone(),
            None => unreachable!("the runtime is only taken on drop"),
        }
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Creates `count` objects with `concurrency` requests in flight; returns the seconds
/// from the first request to the last answer.
async fn create_all<F, Fut>(count: usize, concurrency: usize, make: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    stream::iter(0..count)
        .map(make)
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(started.elapsed().as_secs_f64())
}

pub async fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let etcd = start_etcd()?;
    let store = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rind_store::EtcdStore::connect(std::slice::from_ref(&etcd.url), None).await {
                Ok(store) if store.revision().await.is_ok() => break store,
                _ if Instant::now() > deadline => bail!("etcd did not start"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let pki = LoopbackPki::generate(port)?;
    let admin = client_from(pki.file(paths::ADMIN_CONF)?.as_bytes()).await?;
    let scheduler_kubeconfig = pki.file(paths::SCHEDULER_CONF)?.as_bytes().to_vec();
    let server = tokio::spawn(async move { serve(pki.config, store, listener).await });
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while namespaces.get_opt("default").await.ok().flatten().is_none() {
        if Instant::now() > deadline {
            bail!("the API server did not come up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let nodes_api: Api<Node> = Api::all(admin.clone());
    let node_seconds = create_all(args.nodes, args.concurrency, |i| {
        let api = nodes_api.clone();
        async move {
            api.create(&PostParams::default(), &node_object(i)?)
                .await
                .context("creating a node")?;
            Ok(())
        }
    })
    .await?;
    // The API server may drop status on create (kubelets set it either way); make
    // sure every node is Ready with its allocatable before scheduling starts.
    let sample = nodes_api.get("bench-node-00000").await?;
    let kept_status = sample
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .is_some();
    if !kept_status {
        create_all(args.nodes, args.concurrency, |i| {
            let api = nodes_api.clone();
            async move {
                let node = node_object(i)?;
                let name = node.metadata.name.clone().unwrap_or_default();
                let status = serde_json::json!({ "status": node.status });
                api.patch_status(
                    &name,
                    &Default::default(),
                    &kube::api::Patch::Merge(&status),
                )
                .await
                .context("setting a node's status")?;
                Ok(())
            }
        })
        .await?;
    }

    let pods_api: Api<Pod> = Api::namespaced(admin.clone(), "default");
    // Baseline: the same pods, for a scheduler that does not exist, so they stay
    // pending; this is what the API alone sustains on this machine right now.
    let baseline_seconds = create_all(args.baseline_pods, args.concurrency, |i| {
        let api = pods_api.clone();
        async move {
            api.create(
                &PostParams::default(),
                &pod_object(&format!("baseline-{i:05}"), "no-such-scheduler")?,
            )
            .await
            .context("creating a baseline pod")?;
            Ok(())
        }
    })
    .await?;

    let stats = Arc::new(Stats::default());
    // On a node the scheduler is a process of its own with its own threads; here it
    // gets a runtime of its own, so the API server's request load shares the CPU with
    // it as the OS shares it between processes rather than starving one task.
    let scheduler_runtime = OwnRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scheduler")
            .enable_all()
            .build()
            .context("starting the scheduler's runtime")?,
    ));
    let scheduler = {
        let stats = stats.clone();
        scheduler_runtime.handle().spawn(async move {
            let client = client_from(&scheduler_kubeconfig).await?;
            run(client, stats).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stats.ready.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            bail!("the scheduler did not load its caches");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let t0 = Instant::now();
    // When each pod was bound: the scheduler counts a binding once the API answered it
    // (the pod is bound in etcd then). Sampling that count costs the run nothing, where
    // a watch of every pod would decode 20,000 events on the same two cores; the API is
    // asked afterwards whether the pods really are bound.
    let sampler = {
        let stats = stats.clone();
        let pods = args.pods as u64;
        tokio::spawn(async move {
            let mut times = Vec::with_capacity(args.pods);
            let mut seen = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while seen < pods {
                tick.tick().await;
                let now = stats.bound.load(Ordering::SeqCst).min(pods);
                let at = t0.elapsed().as_secs_f64();
                times.extend((seen..now).map(|_| at));
                seen = now;
            }
            times
        })
    };
    let create_seconds = create_all(args.pods, args.concurrency, |i| {
        let api = pods_api.clone();
        async move {
            api.create(
                &PostParams::default(),
                &pod_object(&format!("pod-{i:05}"), "default-scheduler")?,
            )
            .await
            .context("creating a pod")?;
            Ok(())
        }
    })
    .await?;
    let remaining = Duration::from_secs(args.timeout).saturating_sub(t0.elapsed());
    let times = match tokio::time::timeout(remaining, sampler).await {
        Ok(times) => times?,
        Err(_) => bail!(
            "only {} of {} pods were bound within {} s",
            stats.bound.load(Ordering::SeqCst),
            args.pods,
            args.timeout
        ),
    };
    let bound = pods_api
        .list(
            &ListParams::default()
                .labels("app=bench")
                .fields("spec.nodeName!="),
        )
        .await?
        .items
        .len();
    if bound != args.pods {
        bail!(
            "the scheduler counted {} bindings but the API shows {bound} bound pods",
            args.pods
        );
    }
    scheduler.abort();
    server.abort();
    let last = times.iter().copied().fold(0.0, f64::max);
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::SeqCst) as f64;
    let attempts = n(&stats.attempts).max(1.0);
    let result = serde_json::json!({
        "nodes": args.nodes,
        "pods": args.pods,
        "node_register_seconds": node_seconds,
        "baseline_pods": args.baseline_pods,
        "baseline_create_per_second": args.baseline_pods as f64 / baseline_seconds,
        "create_seconds": create_seconds,
        "create_per_second_while_scheduling": args.pods as f64 / create_seconds,
        "first_create_to_last_bound_seconds": last,
        "bound_per_second": args.pods as f64 / last,
        "scheduler": {
            "attempts": n(&stats.attempts),
            "bound": n(&stats.bound),
            "unschedulable": n(&stats.unschedulable),
            "bind_errors": n(&stats.bind_errors),
            "decide_seconds_total": n(&stats.decide_nanos) / 1e9,
            "decide_micros_per_pod": n(&stats.decide_nanos) / 1e3 / attempts,
            "nodes_filtered_per_pod": n(&stats.nodes_filtered) / attempts,
            "bind_request_millis_mean": n(&stats.bind_nanos) / 1e6 / n(&stats.bound).max(1.0),
            "waiting_for_bind_slots_seconds": n(&stats.bind_wait_nanos) / 1e9,
            "events_dropped": n(&stats.events_dropped),
        },
        "bound_seconds": times,
    });
    println!("{result}");
    drop(etcd);
    Ok(())
}
