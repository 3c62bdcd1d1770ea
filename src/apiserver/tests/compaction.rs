//! kube-rs's watcher and reflector across a forced etcd compaction: the client is cut
//! off while objects change and etcd is compacted past what it has seen, so its resumed
//! watch is answered 410 Gone; it must relist and end with exactly the server's state.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher};
use rind_testing::{DEADLINE, client, eventually, make_pki, pod, start_etcd, start_with};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;

/// A TCP relay in front of the API server that can drop every open connection and hold
/// new ones back until released: the client side of a network partition.
struct Partition {
    address: std::net::SocketAddr,
    open: watch::Sender<bool>,
    connections: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Partition {
    async fn new(upstream: std::net::SocketAddr) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (open, gate) = watch::channel(true);
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut gate = gate.clone();
                tracked.lock().await.spawn(async move {
                    // Held connections wait here, before anything reaches the server.
                    if gate.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Partition {
            address,
            open,
            connections,
            accept,
        }
    }

    /// Closes every relayed connection and holds back new ones.
    async fn cut(&self) {
        self.open.send_replace(false);
        self.connections.lock().await.abort_all();
    }

    fn heal(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Name → resourceVersion of the pods a reflector store holds.
fn reflected(reader: &reflector::Store<Pod>) -> BTreeMap<String, String> {
    reader
        .state()
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

async fn listed(pods: &Api<Pod>) -> BTreeMap<String, String> {
    pods.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.unwrap_or_default(),
                p.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: e2e/test-all.sh runs it"]
async fn kube_rs_reflector_relists_after_compaction() {
    let (_etcd, store) = start_etcd().await;
    let server = start_with(&make_pki(), None, store).await;
    let direct = client(&server).await;
    let pods: Api<Pod> = Api::namespaced(direct.clone(), "default");
    for name in ["keep", "change", "remove"] {
        pods.create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }

    // The reflector reaches the server only through the partition.
    let mut config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let upstream: std::net::SocketAddr = config
        .cluster_url
        .authority()
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    let partition = Partition::new(upstream).await;
    config.cluster_url = format!("https://{}", partition.address).parse().unwrap();
    let watched: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), "default");
    let (reader, writer) = reflector::store();
    let (errors_tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = reflector(writer, watcher(watched, watcher::Config::default())).boxed();
        while let Some(item) = stream.next().await {
            if let Err(err) = item {
                // The test ends first; a closed channel is no failure of the stream.
                let _ = errors_tx.send(err);
            }
        }
    });

    let converged = |want: BTreeMap<String, String>| {
        let reader = reader.clone();
        async move {
            eventually("the reflector store to converge", || async {
                let have = reflected(&reader);
                (have == want)
                    .then_some(())
                    .ok_or_else(|| format!("has {have:?}, server has {want:?}"))
            })
            .await
        }
    };
    converged(listed(&pods).await).await;

    // Partitioned: the reflector's watch breaks and cannot reconnect while the pods
    // change and etcd drops the history the reflector would resume from.
    partition.cut().await;
    pods.create(&PostParams::default(), &pod("added"))
        .await
        .unwrap();
    pods.patch(
        "change",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"changed": "yes"}}})),
    )
    .await
    .unwrap();
    pods.delete("remove", &DeleteParams::default())
        .await
        .unwrap();
    let revision = server.store.revision().await.unwrap();
    server.store.compact(revision).await.unwrap();
    partition.heal();

    // The resumed watch is refused with 410 Gone (as an error event or the watch
    // request's own status), after which the watcher relists.
    let gone = tokio::time::timeout(DEADLINE, async {
        let mut seen = Vec::new();
        while let Some(err) = errors.recv().await {
            let code = match &err {
                watcher::Error::WatchError(status) => Some(status.code),
                watcher::Error::WatchStartFailed(kube::Error::Api(status)) => Some(status.code),
                _ => None,
            };
            seen.push(err.to_string());
            if code == Some(410) {
                return seen;
            }
        }
        panic!("the watcher stopped without a 410: {seen:?}");
    })
    .await
    .expect("the watcher never got 410 Gone");
    assert!(gone.last().unwrap().contains("410") || gone.last().unwrap().contains("Expired"));

    let want = listed(&pods).await;
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        ["added", "change", "keep"],
        "{want:?}"
    );
    converged(want).await;
    let changed = reader
        .state()
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some("change"))
        .unwrap();
    assert_eq!(
        changed.metadata.labels.as_ref().unwrap().get("changed"),
        Some(&"yes".to_string())
    );
    driver.abort();
}
