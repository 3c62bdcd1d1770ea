//! Hidden `rind bench api`: the driver behind e2e/bench/api.py. It serves our API server
//! in this process on loopback over the etcd the script started, then measures the same
//! operations through the API (h2 over TLS, JSON) and straight against etcd (gRPC) with the
//! same concurrency, and prints the figures as one JSON document on stdout.

use crate::standalone::LoopbackPki;
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Subcommand;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rind_apiserver::serve;
use rind_runtime::paths;
use rind_store::{EtcdStore, Store, WatchEvent};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// API server against raw etcd: create/get/update/list/watch throughput and latency.
    Api(ApiArgs),
}

#[derive(clap::Args, Debug)]
pub struct ApiArgs {
    /// Client URL of the etcd to use (it should be empty).
    #[arg(long)]
    etcd: String,
    /// Concurrent clients for create, get and update.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Pods created (and then listed).
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Gets and updates measured.
    #[arg(long, default_value_t = 5_000)]
    reads: usize,
    /// Concurrent watchers of one event.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Events each watcher must see (one at a time).
    #[arg(long, default_value_t = 30)]
    events: usize,
    /// Times each LIST is repeated.
    #[arg(long, default_value_t = 5)]
    list_runs: usize,
    /// Rounds the creates are split into, etcd and API taking turns, so both sides see
    /// the same machine (a shared machine's speed drifts over a run).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// How long any single wait (server start, one event reaching all watchers) may take.
const DEADLINE: Duration = Duration::from_secs(60);
const NAMESPACE: &str = "bench";
const RAW_PREFIX: &str = "/bench-raw/pods/bench/";

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Api(args) => {
            let result = api(&args).await?;
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(())
        }
    }
}

/// Latencies of one phase and the wall time it took.
#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Phase {
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Adds another run of the same operation: its operations and its time.
    fn absorb(&mut self, other: Phase) {
        self.latencies.extend(other.latencies);
        self.wall += other.wall;
    }

    fn report(&self) -> Value {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| {
            if sorted.is_empty() {
                0.0
            } else {
                let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
                ms(sorted[i])
            }
        };
        json!({
            "ops": sorted.len(),
            "seconds": self.wall.as_secs_f64(),
            "throughput": self.throughput(),
            "p50_ms": at(0.50),
            "p99_ms": at(0.99),
            "max_ms": sorted.last().map_or(0.0, |d| ms(*d)),
        })
    }
}

/// Runs `op(0..total)` from `clients` concurrent tasks, each taking the next index.
async fn drive<F, Fut>(clients: usize, total: usize, op: F) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    drive_range(clients, 0..total, op).await
}

/// Runs `op` over `range` from `clients` concurrent tasks, each taking the next index.
async fn drive_range<F, Fut>(
    clients: usize,
    range: std::ops::Range<usize>,
    op: F,
) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let end = range.end;
    let next = Arc::new(AtomicUsize::new(range.start));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return anyhow::Ok(latencies);
                }
                let t = Instant::now();
                op(i).await?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(range.len());
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Phase {
        latencies,
        wall: started.elapsed(),
    })
}

/// A pod as a controller would create it: about 1 KB of JSON.
fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": "bench", "tier": "backend", "pod-template-hash": "5d8f7c9b6"},
            "annotations": {"bench.rind.io/purpose": "API throughput and latency"},
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "args": ["--listen", "0.0.0.0:8080", "--log-level", "info"],
                "env": [{"name": "MODE", "value": "bench"}, {"name": "REPLICA", "value": name}],
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "100m", "memory": "64Mi"},
                },
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    })
}

/// The bench's HTTP client: one h2 connection over rustls that every client task
/// multiplexes, as client-go does (and as the raw side's gRPC client does with etcd).
/// kube::Client was used before: its tower Buffer task, HTTP/1.1 pool and per-request
/// layers cost about a tenth of this process's CPU, which on two shared cores was
/// charged to the server (create ratio 0.50 with it, 0.53 without, alternating runs).
struct Api {
    /// `https://127.0.0.1:port`: h2 requests carry the authority in their URI.
    base: String,
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl Api {
    /// Sends one request and returns the response with its body still to be read.
    async fn send(
        &self,
        method: &str,
        path: &str,
        accept: &str,
        content_type: &str,
        body: Bytes,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("accept", accept)
            .header("content-type", content_type)
            .body(Full::new(body))?;
        Ok(self.sender.clone().send_request(request).await?)
    }

    /// Sends one request and returns the status and the whole body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        accept: &str,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let response = self
            .send(method, path, accept, content_type, body.into())
            .await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok((status, body))
    }

    /// Like `call` with JSON, failing unless the answer is `want`.
    async fn expect(
        &self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
        want: u16,
    ) -> anyhow::Result<Vec<u8>> {
        let content_type = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let (status, body) = self
            .call(method, path, "application/json", content_type, body)
            .await?;
        if status != want {
            bail!(
                "{method} {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}

/// Serves the API server on a loopback port over its own etcd connection.
async fn start_server(etcd: &str) -> anyhow::Result<Api> {
    use kube::client::ConfigExt;
    let store: Arc<dyn Store> = EtcdStore::connect(&[etcd.to_string()], None).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let pki = LoopbackPki::generate(addr.port())?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(pki.file(paths::ADMIN_CONF)?)?;
    let config = pki.config;
    tokio::spawn(async move {
        if let Err(err) = serve(config, store, listener).await {
            eprintln!("bench: API server failed: {err}");
        }
    });
    // The cluster-admin identity and the cluster CA, as kubectl would use them.
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let mut tls = config.rustls_client_config()?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    // Requests are small and latency-bound: no Nagle delay.
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(
            rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            tcp,
        )
        .await?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    let api = Api {
        base: format!("https://{addr}"),
        sender,
    };
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ready = api
            .call(
                "GET",
                "/api/v1/namespaces/default",
                "application/json",
                "application/json",
                Vec::new(),
            )
            .await;
        if matches!(ready, Ok((200, _))) {
            return Ok(api);
        }
        if Instant::now() > deadline {
            bail!("the API server did not become ready: {ready:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn api(args: &ApiArgs) -> anyhow::Result<Value> {
    let raw: Arc<dyn Store> = EtcdStore::connect(std::slice::from_ref(&args.etcd), None)
        .await
        .context("connecting to the benchmark etcd")?;
    let api = Arc::new(start_server(&args.etcd).await?);
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    api.expect(
        "POST",
        "/api/v1/namespaces",
        namespace.to_string().into_bytes(),
        201,
    )
    .await?;
    let n = args.objects;
    let mut results = serde_json::Map::new();
    // Every pod's body is serialized before the clock starts: what is measured is the
    // server, not the client building JSON on the same two cores.
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..n)
            .map(|i| serde_json::to_vec(&pod(&format!("pod-{i:05}"))).map(Bytes::from))
            .collect::<Result<_, _>>()?,
    );
    let sample = serde_json::to_vec(&pod("pod-00000"))?;

    // Create: the raw side writes the same bytes the client sends, with the create-if-
    // absent transaction the API server uses. The two sides take turns in rounds (which
    // goes first alternates), so a drift in the machine's speed hits both alike.
    let revisions: Arc<Vec<AtomicI64>> = Arc::new((0..n).map(|_| AtomicI64::new(0)).collect());
    let raw_create = {
        let (raw, revisions, bodies) = (raw.clone(), revisions.clone(), bodies.clone());
        move |i: usize| {
            let (raw, revisions, bodies) = (raw.clone(), revisions.clone(), bodies.clone());
            async move {
                let rev = raw
                    .create(&format!("{RAW_PREFIX}pod-{i:05}"), bodies[i].to_vec())
                    .await?;
                revisions[i].store(rev, Ordering::Relaxed);
                Ok(())
            }
        }
    };
    let api_create = {
        let (api, bodies) = (api.clone(), bodies.clone());
        move |i: usize| {
            let (api, bodies) = (api.clone(), bodies.clone());
            async move {
                api.expect(
                    "POST",
                    &format!("/api/v1/namespaces/{NAMESPACE}/pods"),
                    bodies[i].clone(),
                    201,
                )
                .await?;
                Ok(())
            }
        }
    };
    let rounds = args.rounds.clamp(1, n.max(1));
    let (mut raw_phase, mut api_phase) = (Phase::default(), Phase::default());
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (start, end) = (n * round / rounds, n * (round + 1) / rounds);
        let raw_turn = drive_range(args.clients, start..end, raw_create.clone());
        let api_turn = drive_range(args.clients, start..end, api_create.clone());
        let (raw_round, api_round) = if round % 2 == 0 {
            let raw_round = raw_turn.await?;
            (raw_round, api_turn.await?)
        } else {
            let api_round = api_turn.await?;
            (raw_turn.await?, api_round)
        };
        ratios.push(api_round.throughput() / raw_round.throughput().max(1e-9));
        raw_phase.absorb(raw_round);
        api_phase.absorb(api_round);
    }
    results.insert("etcd_create".into(), raw_phase.report());
    results.insert("api_create".into(), api_phase.report());
    results.insert("create_round_ratios".into(), json!(ratios));

    // Get: random-ish but spread keys (a stride co-prime with most sizes).
    let reads = args.reads;
    let phase = {
        let raw = raw.clone();
        drive(args.clients, reads, move |i| {
            let raw = raw.clone();
            async move {
                let key = format!("{RAW_PREFIX}pod-{:05}", (i * 7919) % n);
                raw.get(&key).await?.context("raw key missing")?;
                Ok(())
            }
        })
        .await?
    };
    results.insert("etcd_get".into(), phase.report());
    let phase = {
        let api = api.clone();
        drive(args.clients, reads, move |i| {
            let api = api.clone();
            async move {
                let path = format!(
                    "/api/v1/namespaces/{NAMESPACE}/pods/pod-{:05}",
                    (i * 7919) % n
                );
                api.expect("GET", &path, Vec::new(), 200).await?;
                Ok(())
            }
        })
        .await?
    };
    results.insert("api_get".into(), phase.report());

    // Update: each op changes a different object, so none conflict. The raw side is a
    // guarded put at the revision its create returned; the API side a merge patch.
    let updates = reads.min(n);
    let phase = {
        let (raw, revisions, value) = (raw.clone(), revisions.clone(), sample.clone());
        drive(args.clients, updates, move |i| {
            let (raw, revisions, value) = (raw.clone(), revisions.clone(), value.clone());
            async move {
                let expected = revisions[i].load(Ordering::Relaxed);
                raw.update(&format!("{RAW_PREFIX}pod-{i:05}"), value, expected)
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    results.insert("etcd_update".into(), phase.report());
    let phase = {
        let api = api.clone();
        drive(args.clients, updates, move |i| {
            let api = api.clone();
            async move {
                let path = format!("/api/v1/namespaces/{NAMESPACE}/pods/pod-{i:05}");
                let patch = json!({"metadata": {"labels": {"updated": "yes"}}});
                api.expect("PATCH", &path, patch.to_string().into_bytes(), 200)
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    results.insert("api_update".into(), phase.report());

    // List every pod, one request at a time.
    let lists: [(&str, &str, &str); 4] = [
        ("api_list_json", "", "application/json"),
        (
            "api_list_json_rv0",
            "?resourceVersion=0",
            "application/json",
        ),
        (
            "api_list_protobuf",
            "",
            "application/vnd.kubernetes.protobuf",
        ),
        (
            "api_list_table",
            "",
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        ),
    ];
    let mut raw_list = Vec::new();
    let started = Instant::now();
    for _ in 0..args.list_runs {
        let t = Instant::now();
        let page = raw.list(RAW_PREFIX, None, 0, None).await?;
        if page.items.len() != n {
            bail!("raw list returned {} keys, not {n}", page.items.len());
        }
        raw_list.push(t.elapsed());
    }
    results.insert(
        "etcd_list".into(),
        Phase {
            latencies: raw_list,
            wall: started.elapsed(),
        }
        .report(),
    );
    for (name, query, accept) in lists {
        let mut latencies = Vec::new();
        let started = Instant::now();
        for _ in 0..args.list_runs {
            let t = Instant::now();
            let path = format!("/api/v1/namespaces/{NAMESPACE}/pods{query}");
            let (status, body) = api
                .call("GET", &path, accept, "application/json", Vec::new())
                .await?;
            latencies.push(t.elapsed());
            if status != 200 {
                bail!("LIST {path} as {accept}: HTTP {status}");
            }
            if accept == "application/json" {
                let list: Value = serde_json::from_slice(&body)?;
                let count = list["items"].as_array().map_or(0, Vec::len);
                if count != n {
                    bail!("LIST {path} returned {count} pods, not {n}");
                }
            }
        }
        results.insert(
            name.into(),
            Phase {
                latencies,
                wall: started.elapsed(),
            }
            .report(),
        );
    }

    results.insert("etcd_watch".into(), raw_watch(&raw, args).await?.report());
    results.insert("api_watch".into(), api_watch(&api, args).await?.report());
    results.insert(
        "parameters".into(),
        json!({
            "clients": args.clients,
            "objects": n,
            "reads": reads,
            "watchers": args.watchers,
            "events": args.events,
            "list_runs": args.list_runs,
            "create_rounds": rounds,
            "pod_json_bytes": sample.len(),
        }),
    );
    Ok(Value::Object(results))
}

/// When each event (by index) was sent, and the arrival latencies seen so far.
#[derive(Default)]
struct Arrivals {
    sent: HashMap<usize, Instant>,
    latencies: Vec<Duration>,
    seen: HashMap<usize, usize>,
}

impl Arrivals {
    fn arrived(&mut self, event: usize) {
        if let Some(sent) = self.sent.get(&event) {
            self.latencies.push(sent.elapsed());
            *self.seen.entry(event).or_default() += 1;
        }
    }
}

/// Writes `events` objects one at a time; each must reach all watchers before the next.
async fn one_event_at_a_time<W, Fut>(
    arrivals: &Arc<Mutex<Arrivals>>,
    watchers: usize,
    events: usize,
    write: W,
) -> anyhow::Result<Phase>
where
    W: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    for event in 0..events {
        arrivals.lock().await.sent.insert(event, Instant::now());
        write(event).await?;
        let deadline = Instant::now() + DEADLINE;
        loop {
            if arrivals.lock().await.seen.get(&event).copied().unwrap_or(0) >= watchers {
                break;
            }
            if Instant::now() > deadline {
                bail!("event {event} did not reach all {watchers} watchers");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let latencies = std::mem::take(&mut arrivals.lock().await.latencies);
    Ok(Phase {
        latencies,
        wall: started.elapsed(),
    })
}

/// The event index in a name such as `ev-00012`.
fn event_index(name: &str) -> Option<usize> {
    name.strip_prefix("ev-")?.parse().ok()
}

async fn raw_watch(raw: &Arc<dyn Store>, args: &ApiArgs) -> anyhow::Result<Phase> {
    let prefix = "/bench-raw/configmaps/";
    let revision = raw.revision().await?;
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let mut tasks = Vec::new();
    for _ in 0..args.watchers {
        let mut stream = raw.watch(prefix, revision).await?;
        let arrivals = arrivals.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                if let Ok(WatchEvent::Put { kv, .. }) = event
                    && let Some(i) = kv.key.rsplit('/').next().and_then(event_index)
                {
                    arrivals.lock().await.arrived(i);
                }
            }
        }));
    }
    let value =
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}))?;
    let phase = one_event_at_a_time(&arrivals, args.watchers, args.events, |i| {
        let (raw, value) = (raw.clone(), value.clone());
        async move {
            raw.create(&format!("{prefix}ev-{i:05}"), value).await?;
            Ok(())
        }
    })
    .await;
    for task in tasks {
        task.abort();
    }
    phase
}

async fn api_watch(api: &Arc<Api>, args: &ApiArgs) -> anyhow::Result<Phase> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    let list: Value = serde_json::from_slice(&api.expect("GET", &path, Vec::new(), 200).await?)?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list without resourceVersion")?
        .to_string();
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let mut tasks = Vec::new();
    for _ in 0..args.watchers {
        // The server has registered the watch once its headers arrive.
        let watch = format!("{path}?watch=true&resourceVersion={rv}");
        let response = api
            .send(
                "GET",
                &watch,
                "application/json",
                "application/json",
                Bytes::new(),
            )
            .await?;
        if response.status() != 200 {
            bail!("watch {path}: HTTP {}", response.status());
        }
        let mut body = response.into_body();
        let arrivals = arrivals.clone();
        tasks.push(tokio::spawn(async move {
            let mut buffer = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buffer.extend_from_slice(&data);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    if let Some(i) = event["object"]["metadata"]["name"]
                        .as_str()
                        .and_then(event_index)
                    {
                        arrivals.lock().await.arrived(i);
                    }
                }
            }
        }));
    }
    let phase = one_event_at_a_time(&arrivals, args.watchers, args.events, |i| {
        let api = api.clone();
        let path = path.clone();
        async move {
            let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("ev-{i:05}")}, "data": {"k": "v"}});
            api.expect("POST", &path, object.to_string().into_bytes(), 201).await?;
            Ok(())
        }
    })
    .await;
    for task in tasks {
        task.abort();
    }
    phase
}
