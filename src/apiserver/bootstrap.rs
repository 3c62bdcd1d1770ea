//! Objects every cluster has from the start: the system namespaces, the default
//! ServiceCIDR `kubernetes` (the configured service range, Ready), the
//! `default/kubernetes` Service, the system PriorityClasses, the default RBAC policy and the
//! default StorageClass `standard`. Created when absent and never overwritten, except
//! the RBAC policy, which is reconciled as upstream's (`rbac::reconcile`), and the
//! flowcontrol configuration and local APIServices (`system_objects`); restarts and
//! several API servers starting together on one etcd are harmless (each one's create
//! either lands, finds the object there, or waits for the one racing it to land).
//!
//! Two things keep a start cheap, since every API server does this before it serves:
//! - Each kind is read with one list (`Snapshot`), not one read per object.
//! - API servers starting together on one etcd (an HA cluster's first boot) take turns
//!   (`take_turn`). One writes the few hundred defaults; the others wait for it, then
//!   find everything there and write nothing. Writing them all at once, three times
//!   over, into a three-member etcd is what made every one of them slow.

use super::Server;
use super::handlers::{create_object, decode, store_error, write_update};
use rind_api::registry::Resource;
use rind_api::servicecidr;
use rind_api::status::ApiError;
use rind_api::storage::{DEFAULT_CLASS, LOCAL_PATH_PROVISIONER, STANDARD_CLASS};
use rind_store::{KeyValue, Store, StoreError};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How long an API server waits for another one that holds the `kubernetes` Service's
/// address to store the Service (a matter of milliseconds when it is alive).
const PEER_CREATE_DEADLINE: Duration = Duration::from_secs(30);
/// An IPAddress naming the `kubernetes` Service that is this old while the Service does
/// not exist was left by an API server that died between the two writes.
const STALE_ADDRESS_AGE: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// The store key API servers take turns on (outside `/registry/`: no API serves it).
pub const TURN_KEY: &str = "/rind/bootstrap";
/// How long an API server waits for the one writing the defaults before it writes them
/// too. That one takes well under a second when it is alive; one that died half-way
/// leaves the key unfinished, and the next server to start finishes for it.
const TURN_WAIT: Duration = Duration::from_secs(10);
/// How often a waiting API server looks whether its turn has come.
const TURN_POLL: Duration = Duration::from_millis(50);

/// What `TURN_KEY` holds: who writes the defaults, and whether it has.
#[derive(serde::Serialize, serde::Deserialize)]
struct Turn {
    holder: String,
    done: bool,
}

/// This server's turn to write the defaults: `finish` marks them written.
pub struct MyTurn {
    store: Arc<dyn Store>,
    holder: String,
    /// The revision of `TURN_KEY` this server read or wrote; None when no mark is kept
    /// (the defaults were written already, or the store could not say).
    revision: Option<i64>,
}

impl MyTurn {
    pub async fn finish(self) {
        let Some(revision) = self.revision else {
            return;
        };
        let done = Turn {
            holder: self.holder,
            done: true,
        };
        let Ok(value) = serde_json::to_vec(&done) else {
            return;
        };
        // A conflict means another server finished (or took over) meanwhile: its mark
        // stands.
        match self.store.update(TURN_KEY, value, revision).await {
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
            Err(e) => tracing::warn!("marking the defaults written: {e}"),
        }
    }
}

/// Waits until this server may write the defaults: at once when it is the first to
/// start (it takes `TURN_KEY`), when the defaults were written before (the key says
/// done; each server still reconciles them, which finds nothing to write), or when the
/// key's holder is this server (it died half-way before); otherwise when the holder
/// marks them written, or after `TURN_WAIT` if it never does. The key only spares work:
/// writing the defaults is safe with any number of servers at once, so a store error
/// here lets the server go on.
pub async fn take_turn(store: Arc<dyn Store>, holder: &str) -> MyTurn {
    take_turn_within(store, holder, TURN_WAIT).await
}

async fn take_turn_within(store: Arc<dyn Store>, holder: &str, wait: Duration) -> MyTurn {
    let started = Instant::now();
    let mut turn = MyTurn {
        store: store.clone(),
        holder: holder.to_string(),
        revision: None,
    };
    let mut waiting_for = None;
    loop {
        let stored = match store.get(TURN_KEY).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!("reading {TURN_KEY}: {e}; writing the defaults");
                return turn;
            }
        };
        let Some(kv) = stored else {
            let mine = Turn {
                holder: holder.to_string(),
                done: false,
            };
            let value = serde_json::to_vec(&mine).unwrap_or_default();
            match store.create(TURN_KEY, value).await {
                Ok(revision) => {
                    turn.revision = Some(revision);
                    return turn;
                }
                // Another server took it first: look at what it wrote.
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(e) => {
                    tracing::warn!("taking {TURN_KEY}: {e}; writing the defaults");
                    return turn;
                }
            }
        };
        match serde_json::from_slice::<Turn>(&kv.value) {
            Ok(stored) if stored.done => {
                if let Some(other) = waiting_for {
                    tracing::info!(
                        ms = started.elapsed().as_millis() as u64,
                        "API server {other} wrote the defaults"
                    );
                }
                return turn;
            }
            Ok(stored) if stored.holder != holder && started.elapsed() < wait => {
                if waiting_for.is_none() {
                    tracing::info!(
                        "waiting for API server {} to write the defaults",
                        stored.holder
                    );
                    waiting_for = Some(stored.holder);
                }
                tokio::time::sleep(TURN_POLL).await;
            }
            other => {
                if let Ok(stored) = &other
                    && stored.holder != holder
                {
                    tracing::warn!(
                        "API server {} did not write the defaults within {}s; writing them",
                        stored.holder,
                        wait.as_secs_f64()
                    );
                }
                turn.revision = Some(kv.mod_revision);
                return turn;
            }
        }
    }
}

/// Each kind's stored objects as one list read them, for the first look at each
/// object the bootstrap keeps: a start is then a few lists instead of a few hundred
/// reads (each an etcd round trip, and in an HA cluster a quorum read). A prefix is
/// listed when first asked for, once however many ask at the same time. Any later look
/// at an object (after a conflict, or to see what a create stored) reads the store.
#[derive(Default)]
pub struct Snapshot {
    prefixes: Mutex<HashMap<String, Arc<OnceCell<Listed>>>>,
}

/// One prefix's objects by key.
type Listed = HashMap<String, KeyValue>;

/// How many keys one list page holds.
const SNAPSHOT_PAGE: usize = 500;

impl Snapshot {
    /// The object `name` of `resource` (in `ns`): from the snapshot on the `first`
    /// look, from the store after.
    pub async fn look(
        &self,
        server: &Server,
        resource: &'static Resource,
        ns: Option<&str>,
        name: &str,
        first: bool,
    ) -> Result<Option<KeyValue>, ApiError> {
        let key = resource.key(ns, name);
        if !first {
            return server
                .store
                .get(&key)
                .await
                .map_err(|e| store_error(e, resource, name));
        }
        let prefix = resource.prefix(ns);
        let cell = self
            .prefixes
            .lock()
            .map_err(|_| ApiError::internal("the bootstrap snapshot is poisoned"))?
            .entry(prefix.clone())
            .or_default()
            .clone();
        let objects = cell
            .get_or_try_init(|| async {
                let page = rind_store::list_all(&*server.store, &prefix, None, SNAPSHOT_PAGE)
                    .await
                    .map_err(|e| store_error(e, resource, name))?;
                Ok::<_, ApiError>(
                    page.items
                        .into_iter()
                        .map(|kv| (kv.key.clone(), kv))
                        .collect(),
                )
            })
            .await?;
        Ok(objects.get(&key).cloned())
    }
}

async fn create_if_absent(
    server: &Server,
    seen: &Snapshot,
    plural: &str,
    ns: Option<&str>,
    object: serde_json::Value,
) -> Result<(), ApiError> {
    let resource = server
        .registry
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
    let name = rind_api::meta::name(&object).to_string();
    let deadline = Instant::now() + PEER_CREATE_DEADLINE;
    let mut first = true;
    loop {
        // Looked up first: a create of the `kubernetes` Service that exists already
        // would fail on its taken ClusterIP before it could answer AlreadyExists.
        let stored = seen.look(server, resource, ns, &name, first).await?;
        first = false;
        if stored.is_some() {
            return Ok(());
        }
        match create_object(server, resource, ns, object.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 409 => return Ok(()),
            // The Service's fixed ClusterIP is taken: another API server starting at
            // the same time took it for the same Service and is storing it now (as
            // upstream's API servers race on the same bootstrap, each reconciling what
            // the others wrote). Look again until it is there; an address left behind
            // by one that died in between is reclaimed.
            Err(e) if e.code == 422 && plural == "services" && Instant::now() < deadline => {
                tracing::info!(
                    "{}/{name} is being created by another API server: {}",
                    ns.unwrap_or_default(),
                    e.message
                );
                for ip in super::allocator::cluster_ips(&object) {
                    super::allocator::reclaim_stale(
                        server,
                        ip,
                        ns.unwrap_or_default(),
                        &name,
                        STALE_ADDRESS_AGE,
                    )
                    .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How many bootstrap writes are in flight at once. Each one waits for etcd's fsync; a
/// fresh cluster has a few hundred of them (RBAC policy, flowcontrol, APIServices), and
/// etcd commits concurrent writes in one batch, so the API server is ready in a fraction
/// of the time one-at-a-time writes take.
const CONCURRENT_WRITES: usize = 32;

/// Runs `writes` with up to `CONCURRENT_WRITES` in flight; the first error ends it.
/// Takes the writes as a `Vec`: a lazy iterator's closure kept inside a spawned future
/// trips the compiler's higher-ranked lifetime check ("FnOnce is not general enough").
pub(super) async fn concurrently<F>(writes: Vec<F>) -> Result<(), ApiError>
where
    F: std::future::Future<Output = Result<(), ApiError>>,
{
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(writes)
        .buffer_unordered(CONCURRENT_WRITES)
        .try_collect::<()>()
        .await
}

/// Writes what is missing of the defaults, in turn with any other API server starting
/// on the same store (`take_turn`); `holder` names this server to the others.
pub async fn ensure_defaults(server: &Server, holder: &str) -> Result<(), ApiError> {
    let turn = take_turn(server.store.clone(), holder).await;
    write_defaults(server).await?;
    turn.finish().await;
    Ok(())
}

async fn write_defaults(server: &Server) -> Result<(), ApiError> {
    let seen = &Snapshot::default();
    concurrently(
        NAMESPACES
            .iter()
            .map(|ns| {
                create_if_absent(
                    server,
                    seen,
                    "namespaces",
                    None,
                    json!({"metadata": {"name": ns}}),
                )
            })
            .collect(),
    )
    .await?;
    // Independent of each other: written side by side.
    futures::try_join!(
        default_service(server, seen),
        priority_classes(server, seen),
        async {
            let policy =
                super::rbac::defaults::policy().map_err(|e| ApiError::internal(e.to_string()))?;
            super::rbac::reconcile::ensure_policy(server, seen, &policy).await
        },
        super::system_objects::ensure_flowcontrol(server, seen),
        super::system_objects::ensure_api_services(server, seen),
        standard_storage_class(server, seen),
    )?;
    Ok(())
}

/// The default ServiceCIDR, then the `default/kubernetes` Service at its first address.
async fn default_service(server: &Server, seen: &Snapshot) -> Result<(), ApiError> {
    ensure_default_service_cidr(server, seen).await?;
    let cluster_ip = server.service_network.first().to_string();
    let service = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            // Single-stack of the primary family, in a dual-stack cluster too (as
            // upstream's API server keeps it).
            "ipFamilies": [server.service_network.families()[0]],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
        },
        "status": {"loadBalancer": {}},
    });
    create_if_absent(server, seen, "services", Some("default"), service).await
}

async fn priority_classes(server: &Server, seen: &Snapshot) -> Result<(), ApiError> {
    let classes = server
        .registry
        .lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::internal("priorityclasses are not registered"))?;
    concurrently(
        rind_api::scheduling::system_priority_classes()
            .into_iter()
            .map(|class| create_unless_seen(server, seen, classes, class))
            .collect(),
    )
    .await
}

/// Creates a cluster-scoped `object` unless the snapshot has it (or a create racing
/// this one stores it first).
async fn create_unless_seen(
    server: &Server,
    seen: &Snapshot,
    resource: &'static Resource,
    object: serde_json::Value,
) -> Result<(), ApiError> {
    let name = rind_api::meta::name(&object).to_string();
    if seen
        .look(server, resource, None, &name, true)
        .await?
        .is_some()
    {
        return Ok(());
    }
    match create_object(server, resource, None, object).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn standard_storage_class(server: &Server, seen: &Snapshot) -> Result<(), ApiError> {
    // kind's default class: local-path volumes on the node the pod lands on.
    let standard = json!({
        "metadata": {
            "name": STANDARD_CLASS,
            "annotations": {DEFAULT_CLASS: "true"},
        },
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    let storage_classes = server
        .registry
        .lookup("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| ApiError::internal("storageclasses are not registered"))?;
    create_unless_seen(server, seen, storage_classes, standard).await
}

/// The default ServiceCIDR, as upstream's API server keeps it: created from the
/// service range when absent, and marked Ready when it has no Ready condition yet and
/// still holds that range (a changed range is the administrator's to sort out).
async fn ensure_default_service_cidr(server: &Server, seen: &Snapshot) -> Result<(), ApiError> {
    let resource = server
        .registry
        .lookup("networking.k8s.io", "v1", "servicecidrs")
        .ok_or_else(|| ApiError::internal("servicecidrs are not registered"))?;
    let range = server.service_network.cidrs();
    let name = servicecidr::DEFAULT_NAME;
    let key = resource.key(None, name);
    let kv = match seen.look(server, resource, None, name, true).await? {
        Some(kv) => kv,
        None => {
            let object = json!({"metadata": {"name": name}, "spec": {"cidrs": range}});
            match create_object(server, resource, None, object).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
            seen.look(server, resource, None, name, false)
                .await?
                .ok_or_else(|| ApiError::internal("the default ServiceCIDR vanished"))?
        }
    };
    let current = decode(&kv)?;
    let has_ready = current
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.get("type") == Some(&json!(servicecidr::READY)))
        });
    let deleting = current.pointer("/metadata/deletionTimestamp").is_some();
    if has_ready || deleting || servicecidr::cidrs(&current) != range {
        return Ok(());
    }
    let mut next = current.clone();
    let now = rind_api::meta::format_time(rind_api::meta::now());
    next["status"] = json!({"conditions": [servicecidr::ready_condition(true, &now)]});
    match write_update(server, resource, &key, kv.mod_revision, &current, next).await {
        // Another API server got there first: its status stands.
        Ok(_) | Err(rind_store::StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(store_error(e, resource, servicecidr::DEFAULT_NAME)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_store::MemoryStore;

    fn stored_turn(kv: Option<KeyValue>) -> (String, bool) {
        let turn: Turn = serde_json::from_slice(&kv.expect("the key").value).expect("a turn");
        (turn.holder, turn.done)
    }

    #[tokio::test]
    async fn the_first_server_writes_and_marks_the_defaults_done() {
        let store: Arc<dyn Store> = MemoryStore::new();
        let turn = take_turn(store.clone(), "cp1").await;
        assert!(turn.revision.is_some());
        assert_eq!(
            stored_turn(store.get(TURN_KEY).await.unwrap()),
            ("cp1".into(), false)
        );
        turn.finish().await;
        assert_eq!(
            stored_turn(store.get(TURN_KEY).await.unwrap()),
            ("cp1".into(), true)
        );
        // A later start (a restart, another server) goes on at once and keeps no mark.
        let later = take_turn(store.clone(), "cp2").await;
        assert!(later.revision.is_none());
    }

    #[tokio::test]
    async fn another_server_waits_until_the_holder_is_done() {
        let store: Arc<dyn Store> = MemoryStore::new();
        let first = take_turn(store.clone(), "cp1").await;
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { take_turn(store, "cp2").await }
        });
        tokio::time::sleep(4 * TURN_POLL).await;
        assert!(!waiting.is_finished(), "it must wait for cp1");
        first.finish().await;
        let second = waiting.await.unwrap();
        assert!(second.revision.is_none(), "nothing left for cp2 to mark");
    }

    #[tokio::test]
    async fn a_holder_that_never_finishes_is_waited_for_only_so_long() {
        let store: Arc<dyn Store> = MemoryStore::new();
        let _dead = take_turn(store.clone(), "cp1").await;
        let wait = 3 * TURN_POLL;
        let started = Instant::now();
        let turn = take_turn_within(store.clone(), "cp2", wait).await;
        assert!(started.elapsed() >= wait);
        assert!(turn.revision.is_some());
        turn.finish().await;
        assert_eq!(
            stored_turn(store.get(TURN_KEY).await.unwrap()),
            ("cp2".into(), true)
        );
    }

    #[tokio::test]
    async fn a_holder_restarting_takes_its_turn_back_at_once() {
        let store: Arc<dyn Store> = MemoryStore::new();
        let _died = take_turn(store.clone(), "cp1").await;
        let started = Instant::now();
        let again = take_turn(store.clone(), "cp1").await;
        assert!(started.elapsed() < TURN_POLL);
        assert!(again.revision.is_some());
    }

    #[tokio::test]
    async fn an_unreadable_mark_is_taken_over() {
        let store: Arc<dyn Store> = MemoryStore::new();
        store.create(TURN_KEY, b"not json".to_vec()).await.unwrap();
        let turn = take_turn(store.clone(), "cp1").await;
        turn.finish().await;
        assert_eq!(
            stored_turn(store.get(TURN_KEY).await.unwrap()),
            ("cp1".into(), true)
        );
    }
}
