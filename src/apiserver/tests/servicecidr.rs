//! ServiceCIDRs and IPAddresses with the real kubectl: the default ServiceCIDR comes
//! from the service range, a Service's ClusterIP is taken by creating its IPAddress
//! (so an address someone else's IPAddress holds cannot be had) and given back when
//! the Service goes, and a second Ready ServiceCIDR widens what may be allocated.
//! Marking a new ServiceCIDR Ready is the controller-manager's (its suite covers it);
//! here the status is written by hand.

use rind_store::{KeyValue, ListPage, Store, StoreResult, WatchStream};
use rind_testing::{TestServer, fails, ok, start, write};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(server, &all).await).unwrap()
}

fn service_yaml(name: &str, namespace: &str, cluster_ip: Option<&str>) -> String {
    let ip = cluster_ip.map_or(String::new(), |ip| format!("  clusterIP: {ip}\n"));
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{ip}  ports:\n  - port: 80\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn cluster_ips_are_ip_addresses_from_service_cidrs() {
    let server = start().await;
    let dir = server.dir.path();

    // The default ServiceCIDR is the service range, Ready.
    let table = ok(&server, &["get", "servicecidrs"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CIDRS", "AGE"]);
    assert!(
        table.contains("kubernetes") && table.contains("10.96.0.0/16"),
        "{table}"
    );
    let default = get_json(&server, &["get", "servicecidr", "kubernetes"]).await;
    let ready = &default["status"]["conditions"][0];
    assert_eq!(
        (&ready["type"], &ready["status"]),
        (&json!("Ready"), &json!("True"))
    );
    assert_eq!(ready["message"], "Kubernetes default Service CIDR is ready");
    // The kubernetes Service's address is recorded too.
    let table = ok(&server, &["get", "ipaddresses"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PARENTREF"]);
    assert!(
        table.contains("10.96.0.1") && table.contains("services/default/kubernetes"),
        "{table}"
    );

    // A new Service's ClusterIP is an IPAddress with upstream's labels and parent.
    let file = write(dir, "web.yaml", &service_yaml("web", "default", None));
    ok(&server, &["create", "-f", &file]).await;
    let web = get_json(&server, &["get", "svc", "web"]).await;
    let ip = web["spec"]["clusterIP"].as_str().unwrap().to_string();
    let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
    // Dynamic addresses come from above the range's first 256 (kept for static ones).
    assert!(octets[..2] == [10, 96] && octets[2] >= 1, "{ip}");
    let address = get_json(&server, &["get", "ipaddress", &ip]).await;
    assert_eq!(
        address["metadata"]["labels"],
        json!({"ipaddress.kubernetes.io/ip-family": "IPv4", "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"})
    );
    assert_eq!(
        address["spec"]["parentRef"],
        json!({"resource": "services", "namespace": "default", "name": "web"})
    );
    // Deleting the Service gives its address back.
    ok(&server, &["delete", "svc", "web"]).await;
    let gone = fails(&server, &["get", "ipaddress", &ip]).await;
    assert!(gone.contains("NotFound"), "{gone}");

    // An address is taken exactly when its IPAddress exists, whoever made it.
    let held = write(
        dir,
        "held.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: IPAddress\nmetadata:\n  name: 10.96.0.60\nspec:\n  parentRef:\n    resource: services\n    namespace: default\n    name: elsewhere\n",
    );
    ok(&server, &["create", "-f", &held]).await;
    let file = write(
        dir,
        "static.yaml",
        &service_yaml("static", "default", Some("10.96.0.60")),
    );
    let err = fails(&server, &["create", "-f", &file]).await;
    assert!(
        err.contains("spec.clusterIPs: Invalid value: []string{\"10.96.0.60\"}: failed to allocate IP 10.96.0.60: provided IP is already allocated"),
        "{err}"
    );
    ok(&server, &["delete", "ipaddress", "10.96.0.60"]).await;
    ok(&server, &["create", "-f", &file]).await;
    let address = get_json(&server, &["get", "ipaddress", "10.96.0.60"]).await;
    assert_eq!(address["spec"]["parentRef"]["name"], "static");

    // Outside every Ready ServiceCIDR there is nothing to allocate from.
    let outside = write(
        dir,
        "outside.yaml",
        &service_yaml("outside", "default", Some("10.100.0.10")),
    );
    let err = fails(&server, &["create", "-f", &outside]).await;
    assert!(
        err.contains("failed to allocate IP 10.100.0.10: the provided network does not match the current range"),
        "{err}"
    );
    // A second ServiceCIDR widens the range once it is Ready.
    let extra = write(
        dir,
        "extra.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata:\n  name: extra\nspec:\n  cidrs:\n  - 10.100.0.0/24\n",
    );
    ok(&server, &["create", "-f", &extra]).await;
    let err = fails(&server, &["create", "-f", &outside]).await;
    assert!(err.contains("does not match the current range"), "{err}");
    let status = r#"{"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "", "message": "Kubernetes Service CIDR is ready", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}"#;
    ok(
        &server,
        &[
            "patch",
            "servicecidr",
            "extra",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    )
    .await;
    ok(&server, &["create", "-f", &outside]).await;
    let address = get_json(&server, &["get", "ipaddress", "10.100.0.10"]).await;
    assert_eq!(address["spec"]["parentRef"]["name"], "outside");
    // The network address of a range is not a Service's.
    let network = write(
        dir,
        "network.yaml",
        &service_yaml("network", "default", Some("10.100.0.0")),
    );
    let err = fails(&server, &["create", "-f", &network]).await;
    assert!(
        err.contains("the provided IP (10.100.0.0) is not in the valid range. The range of valid IPs is 10.100.0.0/24"),
        "{err}"
    );

    // Services deleted with their namespace give their addresses back too.
    ok(&server, &["create", "namespace", "team"]).await;
    let file = write(
        dir,
        "team.yaml",
        &service_yaml("api", "team", Some("10.96.0.70")),
    );
    ok(&server, &["create", "-f", &file]).await;
    ok(&server, &["delete", "namespace", "team", "--timeout=20s"]).await;
    let gone = fails(&server, &["get", "ipaddress", "10.96.0.70"]).await;
    assert!(gone.contains("NotFound"), "{gone}");

    // Both kinds are validated as upstream validates them.
    let bad = write(
        dir,
        "bad.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata:\n  name: bad\nspec:\n  cidrs:\n  - 10.200.0.1/24\n",
    );
    let err = fails(&server, &["create", "-f", &bad]).await;
    assert!(
        err.contains("spec.cidrs[0]: Invalid value: \"10.200.0.1/24\": must be in canonical form (\"10.200.0.0/24\")"),
        "{err}"
    );
    let bad = write(
        dir,
        "badip.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: IPAddress\nmetadata:\n  name: not-an-ip\nspec:\n  parentRef:\n    resource: services\n    name: x\n",
    );
    let err = fails(&server, &["create", "-f", &bad]).await;
    assert!(
        err.contains("metadata.name: Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
        "{err}"
    );
    let err = fails(
        &server,
        &[
            "patch",
            "servicecidr",
            "extra",
            "--type=merge",
            "-p",
            r#"{"spec": {"cidrs": ["10.101.0.0/24"]}}"#,
        ],
    )
    .await;
    assert!(err.contains("spec.cidrs: Invalid value"), "{err}");
    assert!(err.contains("field is immutable"), "{err}");
}

/// An HA control plane: API servers starting together on one store all come up (none
/// dies bootstrapping the `kubernetes` Service on its taken ClusterIP), and the Service
/// and its one IPAddress are the same for all of them. They take turns: one writes the
/// defaults and the others write nothing, so the store holds exactly as many writes as
/// one server alone makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn api_servers_starting_together_bootstrap_the_kubernetes_service_once() {
    let pki = rind_testing::make_pki();
    // Writes as slow as a busy etcd's, so that the five bootstraps overlap.
    let store = Counting::with_write_delay(Duration::from_millis(20));
    let servers = futures::future::join_all(
        (0..5).map(|_| rind_testing::start_with(&pki, None, store.clone())),
    )
    .await;
    let mut uids = Vec::new();
    for server in &servers {
        let svc = get_json(server, &["get", "svc", "kubernetes", "-n", "default"]).await;
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
        uids.push(svc["metadata"]["uid"].clone());
        let address = get_json(server, &["get", "ipaddress", "10.96.0.1"]).await;
        assert_eq!(
            address["spec"]["parentRef"],
            json!({"resource": "services", "namespace": "default", "name": "kubernetes"})
        );
    }
    uids.dedup();
    assert_eq!(uids.len(), 1, "{uids:?}");
    let alone = Counting::with_write_delay(Duration::ZERO);
    let _one = rind_testing::start_with(&pki, None, alone.clone()).await;
    let (together, one) = (store.writes(), alone.writes());
    // Each of the four others may have tried to take the turn key too.
    assert!(
        together <= one + 4,
        "five servers starting together tried {together} writes, one alone {one}"
    );
}

/// A restarted API server finds every default in place: its bootstrap reads each kind
/// with one list, not each object with a read of its own, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn a_restarted_api_server_reads_each_kind_once_and_writes_nothing() {
    let pki = rind_testing::make_pki();
    let store = Counting::new();
    let first = rind_testing::start_with(&pki, None, store.clone()).await;
    drop(first);
    let (writes, gets) = (store.writes(), store.gets());
    let _again = rind_testing::start_with(&pki, None, store.clone()).await;
    assert_eq!(store.writes(), writes, "writes of the restarted server");
    let gets = store.gets() - gets;
    assert!(
        gets < 20,
        "the restarted server read {gets} objects one by one"
    );
}

/// The in-memory store, counting the writes tried (whether they land or not) and the
/// single-object reads; each write may take a while first.
struct Counting {
    inner: Arc<rind_store::MemoryStore>,
    writes: AtomicUsize,
    gets: AtomicUsize,
    write_delay: Duration,
}

impl Counting {
    fn new() -> Arc<Counting> {
        Self::with_write_delay(Duration::ZERO)
    }
    fn with_write_delay(write_delay: Duration) -> Arc<Counting> {
        Arc::new(Counting {
            inner: rind_store::MemoryStore::new(),
            writes: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
            write_delay,
        })
    }
    async fn count_write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.write_delay).await;
    }
    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Store for Counting {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> StoreResult<ListPage> {
        self.inner.list(prefix, start_after, limit, revision).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> StoreResult<i64> {
        self.count_write().await;
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Vec<u8>, expected: i64) -> StoreResult<i64> {
        self.count_write().await;
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<i64>) -> StoreResult<(KeyValue, i64)> {
        self.count_write().await;
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: i64) -> StoreResult<WatchStream> {
        self.inner.watch(prefix, after).await
    }
    async fn watch_without_prev(&self, prefix: &str, after: i64) -> StoreResult<WatchStream> {
        self.inner.watch_without_prev(prefix, after).await
    }
    async fn revision(&self) -> StoreResult<i64> {
        self.inner.revision().await
    }
    async fn compact(&self, revision: i64) -> StoreResult<()> {
        self.inner.compact(revision).await
    }
    fn compacted_revision(&self) -> i64 {
        self.inner.compacted_revision()
    }
}
