//! The watch cache over the in-memory store: fan-out from one store watch, replay from
//! the ring, fallback to the store (and 410's `Compacted`) for older revisions.

use super::*;
use async_trait::async_trait;
use rind_api::registry::Registry;
use rind_store::{KeyValue, ListPage, MemoryStore, WatchStream};
use rind_testing::eventually;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(10);

/// The memory store, counting the watches opened on it. Its watches without the
/// replaced values leave them out as etcd does, and its lists can be made to fail.
struct Counting {
    inner: Arc<MemoryStore>,
    watches: AtomicUsize,
    lists: AtomicUsize,
    lists_fail: AtomicBool,
}

#[async_trait]
impl Store for Counting {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> StoreResult<ListPage> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        if self.lists_fail.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("lists fail in this test".into()));
        }
        self.inner.list(prefix, start_after, limit, revision).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> StoreResult<i64> {
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Vec<u8>, expected: i64) -> StoreResult<i64> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<i64>) -> StoreResult<(KeyValue, i64)> {
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: i64) -> StoreResult<WatchStream> {
        self.watches.fetch_add(1, Ordering::SeqCst);
        self.inner.watch(prefix, after).await
    }
    async fn watch_without_prev(&self, prefix: &str, after: i64) -> StoreResult<WatchStream> {
        let events = self.watch(prefix, after).await?;
        Ok(events
            .map(|event| {
                event.map(|event| match event {
                    WatchEvent::Put { kv, .. } => WatchEvent::Put { kv, prev: None },
                    WatchEvent::Delete { prev, revision } => WatchEvent::Delete {
                        prev: KeyValue {
                            key: prev.key,
                            ..KeyValue::default()
                        },
                        revision,
                    },
                    progress => progress,
                })
            })
            .boxed())
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

fn setup(capacity: usize, lag_limit: usize) -> (Arc<Counting>, WatchCache, &'static Resource) {
    let store = Arc::new(Counting {
        inner: MemoryStore::new(),
        watches: AtomicUsize::new(0),
        lists: AtomicUsize::new(0),
        lists_fail: AtomicBool::new(false),
    });
    let cache = WatchCache::with_capacity(store.clone(), capacity, lag_limit);
    let resource = Registry::default()
        .lookup("", "v1", "configmaps")
        .expect("configmaps are registered");
    (store, cache, resource)
}

async fn put(store: &Counting, resource: &Resource, ns: &str, name: &str) -> i64 {
    let value = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}});
    store
        .create(
            &resource.key(Some(ns), name),
            value.to_string().into_bytes(),
        )
        .await
        .unwrap()
}

/// The next event that is not a progress notification.
async fn next_change(stream: &mut CachedStream) -> StoreResult<Arc<CachedEvent>> {
    loop {
        let item = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("no event before the deadline")
            .expect("the stream ended");
        match item {
            Ok(event) if matches!(event.event, WatchEvent::Progress { .. }) => continue,
            other => return other,
        }
    }
}

fn name_of(event: &CachedEvent) -> String {
    event.object().unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn many_watchers_share_one_store_watch_and_one_serialization() {
    let (store, cache, resource) = setup(16, 64);
    let start = store.revision().await.unwrap();
    let mut watchers = Vec::new();
    for _ in 0..5 {
        watchers.push(
            cache
                .watch(resource, &resource.prefix(None), start)
                .await
                .unwrap(),
        );
    }
    assert_eq!(store.watches.load(Ordering::SeqCst), 1);
    put(&store, resource, "default", "a").await;
    let mut seen = Vec::new();
    for watcher in &mut watchers {
        seen.push(next_change(watcher).await.unwrap());
    }
    // Every watcher got the same event object, so its line is serialized once.
    for event in &seen {
        assert!(Arc::ptr_eq(event, &seen[0]));
    }
    let line = seen[0].json_line("ADDED").unwrap();
    assert!(
        line.starts_with(br#"{"type":"ADDED","object":{"kind":"ConfigMap""#)
            && line.ends_with(b"}\n")
    );
    assert!(std::ptr::eq(line, seen[4].json_line("ADDED").unwrap()));
}

#[tokio::test]
async fn a_recent_revision_is_replayed_from_the_ring() {
    let (store, cache, resource) = setup(16, 64);
    let start = store.revision().await.unwrap();
    let mut first = cache
        .watch(resource, &resource.prefix(None), start)
        .await
        .unwrap();
    let rev_a = put(&store, resource, "default", "a").await;
    put(&store, resource, "default", "b").await;
    assert_eq!(name_of(&next_change(&mut first).await.unwrap()), "a");
    assert_eq!(name_of(&next_change(&mut first).await.unwrap()), "b");
    // A later watcher from `a`'s revision starts after it, without a store watch.
    let mut late = cache
        .watch(resource, &resource.prefix(None), rev_a)
        .await
        .unwrap();
    assert_eq!(name_of(&next_change(&mut late).await.unwrap()), "b");
    put(&store, resource, "default", "c").await;
    assert_eq!(name_of(&next_change(&mut late).await.unwrap()), "c");
    assert_eq!(store.watches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_namespace_watch_sees_only_its_namespace() {
    let (store, cache, resource) = setup(16, 64);
    let start = store.revision().await.unwrap();
    let mut ns = cache
        .watch(resource, &resource.prefix(Some("one")), start)
        .await
        .unwrap();
    put(&store, resource, "two", "x").await;
    put(&store, resource, "one", "y").await;
    assert_eq!(name_of(&next_change(&mut ns).await.unwrap()), "y");
}

#[tokio::test]
async fn older_than_the_ring_falls_back_to_the_store() {
    let (store, cache, resource) = setup(2, 64);
    let start = store.revision().await.unwrap();
    let mut first = cache
        .watch(resource, &resource.prefix(None), start)
        .await
        .unwrap();
    for name in ["a", "b", "c", "d"] {
        put(&store, resource, "default", name).await;
    }
    for name in ["a", "b", "c", "d"] {
        assert_eq!(name_of(&next_change(&mut first).await.unwrap()), name);
    }
    // The ring holds only c and d; a watch from the start replays from the store.
    let mut old = cache
        .watch(resource, &resource.prefix(None), start)
        .await
        .unwrap();
    assert_eq!(store.watches.load(Ordering::SeqCst), 2);
    for name in ["a", "b", "c", "d"] {
        assert_eq!(name_of(&next_change(&mut old).await.unwrap()), name);
    }
}

#[tokio::test]
async fn older_than_the_ring_and_compacted_is_gone() {
    let (store, cache, resource) = setup(2, 64);
    let start = store.revision().await.unwrap();
    let mut first = cache
        .watch(resource, &resource.prefix(None), start)
        .await
        .unwrap();
    let mut last = 0;
    for name in ["a", "b", "c", "d"] {
        last = put(&store, resource, "default", name).await;
    }
    for _ in 0..4 {
        next_change(&mut first).await.unwrap();
    }
    store.compact(last).await.unwrap();
    let mut old = cache
        .watch(resource, &resource.prefix(None), start)
        .await
        .unwrap();
    assert!(matches!(
        next_change(&mut old).await,
        Err(StoreError::Compacted { .. })
    ));
}

#[tokio::test]
async fn a_watcher_that_falls_behind_must_relist() {
    let (store, cache, resource) = setup(16, 2);
    let start = store.revision().await.unwrap();
    let mut slow = cache
        .watch(resource, &resource.prefix(None), start)
        .await
        .unwrap();
    let mut last = 0;
    for name in ["a", "b", "c", "d", "e"] {
        last = put(&store, resource, "default", name).await;
    }
    // Wait until the feed has taken in every write (the slow watcher reads nothing).
    eventually(&format!("the feed to see {last}"), || async {
        let feeds = cache.feeds.lock().await;
        feeds
            .values()
            .any(|feed| {
                let state = feed.state.lock().unwrap();
                state
                    .ring
                    .back()
                    .is_some_and(|event| event.revision() == last)
            })
            .then_some(())
    })
    .await;
    assert!(matches!(
        next_change(&mut slow).await,
        Err(StoreError::Compacted { .. })
    ));
    // The error ends that watch.
    assert!(slow.next().await.is_none());
}

#[tokio::test]
async fn within_the_ring_but_compacted_is_gone() {
    // The ring is large enough to hold everything, yet a watch from before the store's
    // compaction must still be refused: clients rely on compaction forcing a relist.
    let (store, cache, resource) = setup(64, 64);
    let start = store.revision().await.unwrap();
    let mut first = cache
        .watch(resource, &resource.prefix(None), start)
        .await
        .unwrap();
    let mut last = 0;
    for name in ["a", "b", "c"] {
        last = put(&store, resource, "default", name).await;
    }
    for _ in 0..3 {
        next_change(&mut first).await.unwrap();
    }
    store.compact(last).await.unwrap();
    let mut old = cache
        .watch(resource, &resource.prefix(None), start)
        .await
        .unwrap();
    assert!(matches!(
        next_change(&mut old).await,
        Err(StoreError::Compacted { .. })
    ));
    // From the compaction revision on, the ring still serves the watch.
    let mut recent = cache
        .watch(resource, &resource.prefix(None), last - 1)
        .await
        .unwrap();
    assert_eq!(name_of(&next_change(&mut recent).await.unwrap()), "c");
    assert_eq!(store.watches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn latest_is_the_newest_value_the_feed_has_seen() {
    let (store, cache, resource) = setup(2, 64);
    let key = resource.key(Some("default"), "a");
    // The first question starts the feed, which then knows what existed before it.
    let created = put(&store, resource, "default", "a").await;
    assert!(cache.latest(resource, &key).await.is_none());
    eventually("the feed to know a", || async {
        let at = cache.latest(resource, &key).await.map(|(at, _)| at);
        (at == Some(created)).then_some(())
    })
    .await;
    assert_eq!(store.watches.load(Ordering::SeqCst), 1);
    let start = store.revision().await.unwrap();
    let mut watcher = cache
        .watch(resource, &resource.prefix(None), start)
        .await
        .unwrap();
    let changed = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "a", "namespace": "default"}, "data": {"k": "v"}});
    let revision = store
        .update(&key, changed.to_string().into_bytes(), start)
        .await
        .unwrap();
    next_change(&mut watcher).await.unwrap();
    let (at, object) = cache.latest(resource, &key).await.expect("cached");
    assert_eq!(at, revision);
    assert_eq!(object["data"]["k"], "v");
    assert_eq!(object["metadata"]["resourceVersion"], revision.to_string());
    // Events that push a's out of the two-event ring do not make it forgotten.
    put(&store, resource, "default", "b").await;
    put(&store, resource, "default", "c").await;
    next_change(&mut watcher).await.unwrap();
    next_change(&mut watcher).await.unwrap();
    assert_eq!(
        cache.latest(resource, &key).await.map(|(at, _)| at),
        Some(revision)
    );
    assert!(
        cache
            .latest(resource, &resource.key(Some("default"), "c"))
            .await
            .is_some()
    );
    // A deleted object has no current state.
    let c = resource.key(Some("default"), "c");
    store.delete(&c, None).await.unwrap();
    next_change(&mut watcher).await.unwrap();
    assert!(cache.latest(resource, &c).await.is_none());
}

fn configmap(name: &str, value: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"}, "data": {"k": value}})
    .to_string()
    .into_bytes()
}

/// Updates `a` from `v1` to `v2`, deletes it, and checks what the feed's watcher saw:
/// the replaced value of the update and the last value of the deletion, which the
/// store's watch (like etcd's without `prev_kv`) did not send.
async fn update_and_delete_show_what_they_replaced(
    store: &Counting,
    watcher: &mut CachedStream,
    created: i64,
) {
    let key = "/registry/configmaps/default/a";
    let updated = store
        .update(key, configmap("a", "v2"), created)
        .await
        .unwrap();
    let (_, deleted) = store.delete(key, None).await.unwrap();
    let update = next_change(watcher).await.unwrap();
    assert_eq!(update.object().unwrap()["data"]["k"], "v2");
    let before = update.prev_object().unwrap().expect("the replaced value");
    assert_eq!(before["data"]["k"], "v1");
    assert_eq!(before["metadata"]["resourceVersion"], created.to_string());
    let deletion = next_change(watcher).await.unwrap();
    assert_eq!(deletion.revision(), deleted);
    let last = deletion.object().unwrap();
    assert_eq!(last["data"]["k"], "v2");
    assert_eq!(last["metadata"]["resourceVersion"], deleted.to_string());
    assert!(updated < deleted);
}

/// A store holding configmap `a` (at the returned revision) and a watcher of the
/// cache from then on; the feed's first list fails when `lists_fail`.
async fn watching_a(
    lists_fail: bool,
) -> (
    Arc<Counting>,
    WatchCache,
    &'static Resource,
    CachedStream,
    i64,
) {
    let (store, cache, resource) = setup(16, 64);
    let key = resource.key(Some("default"), "a");
    assert_eq!(key, "/registry/configmaps/default/a");
    let created = store.create(&key, configmap("a", "v1")).await.unwrap();
    store.lists_fail.store(lists_fail, Ordering::SeqCst);
    let watcher = cache
        .watch(resource, &resource.prefix(None), created)
        .await
        .unwrap();
    (store, cache, resource, watcher, created)
}

#[tokio::test]
async fn the_feed_tells_what_each_event_replaced_from_its_own_values() {
    let (store, cache, resource, mut watcher, created) = watching_a(false).await;
    let key = resource.key(Some("default"), "a");
    // The feed's first list (which taught it `a`) is its only read.
    eventually("the feed to know a", || async {
        cache.latest(resource, &key).await.map(|_| ())
    })
    .await;
    let lists = store.lists.load(Ordering::SeqCst);
    update_and_delete_show_what_they_replaced(&store, &mut watcher, created).await;
    assert_eq!(store.lists.load(Ordering::SeqCst), lists);
}

#[tokio::test]
async fn a_feed_without_its_first_list_reads_what_events_replaced() {
    let (store, _cache, _, mut watcher, created) = watching_a(true).await;
    // The feed gave up its list: it knows nothing it did not see change.
    eventually("the feed to list", || async {
        (store.lists.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    store.lists_fail.store(false, Ordering::SeqCst);
    update_and_delete_show_what_they_replaced(&store, &mut watcher, created).await;
    // It read a's value before the update; the deletion's came from the update.
    assert_eq!(store.lists.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_feed_that_cannot_read_a_replaced_value_fails_its_watchers() {
    let (store, _cache, resource, mut watcher, created) = watching_a(true).await;
    let key = resource.key(Some("default"), "a");
    store
        .update(&key, configmap("a", "v2"), created)
        .await
        .unwrap();
    // Lists still fail: the feed cannot tell what the update replaced, so rather than
    // pass on an event without it, it ends and its watchers must start again.
    assert!(next_change(&mut watcher).await.is_err());
}
