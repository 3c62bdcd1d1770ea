//! The watch cache: one store watch per resource, fanned out to every client watch of
//! that resource, with a ring of recent events so a watch from a recent
//! resourceVersion starts without a new etcd watch.
//!
//! Each event is decoded (and, for plain JSON watchers, serialized) once however many
//! watchers it reaches: watchers share one `Arc<CachedEvent>` whose decoded forms are
//! filled in by whichever watcher needs them first.
//!
//! Semantics stay the store's: a watch from a revision older than the ring holds falls
//! back to its own store watch, so etcd still decides between replaying history and
//! answering `Compacted` (410 Gone at the API edge).

use super::handlers::{decode_as, set_resource_version};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use rind_api::registry::Resource;
use rind_api::status::ApiError;
use rind_store::{KeyValue, Store, StoreError, StoreResult, WatchEvent};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

#[cfg(test)]
mod tests;

/// Recent events kept per resource: a watcher that re-watches after a short gap (or
/// lists then watches) finds its resourceVersion here.
pub const RING_CAPACITY: usize = 4096;
/// Events a watcher may fall behind the feed before it must re-list (upstream likewise
/// drops watchers that cannot keep up rather than buffer without bound).
pub const LAG_LIMIT: usize = 4096;

/// One store event with its decoded and serialized forms, computed at most once.
pub struct CachedEvent {
    pub event: WatchEvent,
    resource: &'static Resource,
    object: OnceLock<Result<Value, ApiError>>,
    prev: OnceLock<Result<Option<Value>, ApiError>>,
    /// `{"type": …, "object": …}\n` for ADDED, MODIFIED and DELETED.
    lines: [OnceLock<Vec<u8>>; 3],
}

impl CachedEvent {
    pub fn new(resource: &'static Resource, event: WatchEvent) -> Self {
        CachedEvent {
            event,
            resource,
            object: OnceLock::new(),
            prev: OnceLock::new(),
            lines: Default::default(),
        }
    }

    /// The revision the event happened at (or, for progress, the store has reached).
    pub fn revision(&self) -> i64 {
        match &self.event {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
            WatchEvent::Progress { revision } => *revision,
        }
    }

    fn key(&self) -> Option<&str> {
        match &self.event {
            WatchEvent::Put { kv, .. } => Some(&kv.key),
            WatchEvent::Delete { prev, .. } => Some(&prev.key),
            WatchEvent::Progress { .. } => None,
        }
    }

    /// The object as the resource serves it: the new value of a put, the last value of
    /// a deleted object stamped with the deleting revision.
    pub fn object(&self) -> Result<&Value, ApiError> {
        self.object
            .get_or_init(|| match &self.event {
                WatchEvent::Put { kv, .. } => decode_as(self.resource, kv),
                WatchEvent::Delete { prev, revision } => {
                    let mut object = decode_as(self.resource, prev)?;
                    set_resource_version(&mut object, *revision);
                    Ok(object)
                }
                WatchEvent::Progress { .. } => Ok(Value::Null),
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The value a put replaced, if any.
    pub fn prev_object(&self) -> Result<Option<&Value>, ApiError> {
        self.prev
            .get_or_init(|| match &self.event {
                WatchEvent::Put {
                    prev: Some(prev), ..
                } => decode_as(self.resource, prev).map(Some),
                _ => Ok(None),
            })
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    /// The watch line for `kind` with the object as is (no Table or metadata-only form).
    pub fn json_line(&self, kind: &str) -> Result<&[u8], ApiError> {
        let slot = match kind {
            "ADDED" => 0,
            "MODIFIED" => 1,
            _ => 2,
        };
        if let Some(line) = self.lines[slot].get() {
            return Ok(line);
        }
        let line = rind_api::json::watch_event(kind, self.object()?);
        Ok(self.lines[slot].get_or_init(|| line))
    }
}

/// What a feed broadcasts: an event, or why it stopped.
#[derive(Clone)]
enum FeedItem {
    Event(Arc<CachedEvent>),
    Failed(Arc<StoreError>),
}

/// Events of one resource as the cache passes them to a client watch.
pub type CachedStream = BoxStream<'static, StoreResult<Arc<CachedEvent>>>;

/// The shared store watch of one resource.
struct Feed {
    state: Mutex<FeedState>,
}

struct FeedState {
    /// Every event after `since` is in `ring`, in order.
    ring: VecDeque<Arc<CachedEvent>>,
    /// The newest value of every key (deleted keys leave): raw bytes, a small fraction
    /// of what decoded objects would take.
    latest: HashMap<String, KeyValue>,
    since: i64,
    capacity: usize,
    tx: broadcast::Sender<FeedItem>,
    /// Set once the store watch has failed; the next watcher starts a new feed.
    closed: bool,
}

impl FeedState {
    /// The key and revision whose value the feed must read to tell what `event`
    /// replaced: `None` when `latest` knows it (always, once the feed's first list
    /// succeeded) or nothing was replaced.
    fn unknown_prev(&self, event: &WatchEvent) -> Option<(String, i64)> {
        let (key, revision) = match event {
            // A put that created its key replaced nothing.
            WatchEvent::Put { kv, .. } if kv.create_revision != kv.mod_revision => {
                (&kv.key, kv.mod_revision)
            }
            WatchEvent::Delete { prev, revision } => (&prev.key, *revision),
            _ => return None,
        };
        (!self.latest.contains_key(key)).then(|| (key.clone(), revision - 1))
    }

    /// Records `event`. The store's watch leaves out what each event replaced (see
    /// `Store::watch_without_prev`): it is the key's entry in `latest`, or `read`
    /// when `unknown_prev` asked for a read.
    fn push(&mut self, resource: &'static Resource, mut event: WatchEvent, read: Option<KeyValue>) {
        match &mut event {
            WatchEvent::Put { kv, prev } => {
                let replaced = self.latest.insert(kv.key.clone(), kv.clone());
                *prev = if kv.create_revision == kv.mod_revision {
                    None
                } else {
                    replaced.or(read)
                };
            }
            WatchEvent::Delete { prev, .. } => {
                if let Some(last) = self.latest.remove(&prev.key).or(read) {
                    *prev = last;
                }
            }
            WatchEvent::Progress { .. } => {}
        }
        let event = Arc::new(CachedEvent::new(resource, event));
        if !matches!(event.event, WatchEvent::Progress { .. }) {
            if self.ring.len() == self.capacity
                && let Some(oldest) = self.ring.pop_front()
            {
                self.since = oldest.revision();
            }
            self.ring.push_back(event.clone());
        }
        // No receiver is fine: the ring keeps the event for watchers still to come.
        let _ = self.tx.send(FeedItem::Event(event));
    }
}

pub struct WatchCache {
    store: Arc<dyn Store>,
    capacity: usize,
    lag_limit: usize,
    /// Feeds by resource (version and storage prefix); the async lock makes concurrent
    /// first watchers of a resource share one new store watch.
    feeds: Arc<tokio::sync::Mutex<HashMap<String, Arc<Feed>>>>,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_capacity(store, RING_CAPACITY, LAG_LIMIT)
    }

    pub fn with_capacity(store: Arc<dyn Store>, capacity: usize, lag_limit: usize) -> Self {
        WatchCache {
            store,
            capacity: capacity.max(1),
            lag_limit: lag_limit.max(1),
            feeds: Default::default(),
        }
    }

    /// The newest state of `key` the resource's feed has seen: the object and the
    /// revision it was written at. It may lag the
    /// store by the watch's delay, so it only serves as the expected state of a
    /// compare-and-swap write, which fails (and the writer reads) when it is stale.
    ///
    /// Writers of a resource nobody watches yet start its feed (as upstream keeps a
    /// watch cache for every resource), so later writes find their objects here.
    pub async fn latest(&self, resource: &'static Resource, key: &str) -> Option<(i64, Value)> {
        let feed = self.feed_of(resource).await?;
        let kv = {
            let state = feed.state.lock().ok()?;
            if state.closed {
                return None;
            }
            state.latest.get(key)?.clone()
        };
        Some((kv.mod_revision, decode_as(resource, &kv).ok()?))
    }

    /// The feed of `resource`, started (and `None`, as it knows nothing yet) when there
    /// is none.
    async fn feed_of(&self, resource: &'static Resource) -> Option<Arc<Feed>> {
        let mut feeds = self.feeds.lock().await;
        let id = feed_id(resource);
        match feeds.get(&id) {
            Some(feed) => Some(feed.clone()),
            None => {
                let revision = self.store.revision().await.ok()?;
                let feed = self.start_feed(resource, revision, &id).await.ok()?;
                feeds.insert(id, feed);
                None
            }
        }
    }

    /// Makes sure `resource` has a feed. Creates call it, so that a kind's feed starts
    /// while its objects are few (upstream fills every kind's watch cache at start)
    /// rather than at its first patch, when priming it means listing them all.
    pub async fn ensure_feed(&self, resource: &'static Resource) {
        self.feed_of(resource).await;
    }

    /// Every change under `prefix` (a prefix of `resource`'s keys) after
    /// `after_revision`, like `Store::watch`, served from the resource's shared feed.
    pub async fn watch(
        &self,
        resource: &'static Resource,
        prefix: &str,
        after_revision: i64,
    ) -> StoreResult<CachedStream> {
        let feed = {
            let mut feeds = self.feeds.lock().await;
            let id = feed_id(resource);
            match feeds.get(&id) {
                Some(feed) if !feed.state.lock().map(|s| s.closed).unwrap_or(true) => feed.clone(),
                _ => {
                    let feed = self.start_feed(resource, after_revision, &id).await?;
                    feeds.insert(id, feed.clone());
                    feed
                }
            }
        };
        let subscription = {
            let state = feed
                .state
                .lock()
                .map_err(|_| StoreError::Unavailable("watch cache lock poisoned".into()))?;
            // A watch from before the store's compaction is refused (410) as the store
            // would refuse it, even though the ring may still hold those events:
            // clients rely on compaction forcing a relist.
            let compacted = after_revision + 1 < self.store.compacted_revision();
            if after_revision >= state.since && !state.closed && !compacted {
                let replay: Vec<Arc<CachedEvent>> = state
                    .ring
                    .iter()
                    .filter(|event| event.revision() > after_revision)
                    .cloned()
                    .collect();
                Some((replay, state.tx.subscribe()))
            } else {
                None
            }
        };
        let Some((replay, rx)) = subscription else {
            // Older than the ring: etcd replays its history or says it is compacted.
            let events = self.store.watch(prefix, after_revision).await?;
            return Ok(events
                .map(move |event| event.map(|event| Arc::new(CachedEvent::new(resource, event))))
                .boxed());
        };
        let prefix = prefix.to_string();
        let live = BroadcastStream::new(rx).map(move |item| match item {
            Ok(FeedItem::Event(event)) => Ok(event),
            Ok(FeedItem::Failed(err)) => Err(copy_error(&err)),
            // Too slow to keep up: the client must re-list, as after a compaction.
            Err(BroadcastStreamRecvError::Lagged(_)) => Err(StoreError::Compacted {
                requested: after_revision,
                compacted: 0,
            }),
        });
        let events = stream::iter(replay.into_iter().map(Ok))
            .chain(live)
            .filter(move |item| {
                let keep = match item {
                    Ok(event) => match event.key() {
                        Some(key) => event.revision() > after_revision && key.starts_with(&prefix),
                        None => event.revision() >= after_revision,
                    },
                    Err(_) => true,
                };
                futures::future::ready(keep)
            })
            // An error ends the watch: the caller must start a new one.
            .scan(false, |failed, item| {
                let out = if *failed { None } else { Some(item) };
                if matches!(out, Some(Err(_))) {
                    *failed = true;
                }
                futures::future::ready(out)
            });
        Ok(events.boxed())
    }

    /// Opens the store watch of `resource` from `after_revision` and pumps it into a
    /// new feed until it fails.
    async fn start_feed(
        &self,
        resource: &'static Resource,
        after_revision: i64,
        id: &str,
    ) -> StoreResult<Arc<Feed>> {
        // A watch from a future revision waits for it; the feed itself starts at the
        // present so it serves everyone else at once.
        let after_revision = after_revision.min(self.store.revision().await?);
        // The feed knows every key's value (`latest`), so etcd need not send the value
        // each event replaced.
        let mut upstream = self
            .store
            .watch_without_prev(resource.key_prefix, after_revision)
            .await?;
        let (tx, _) = broadcast::channel(self.lag_limit);
        let feed = Arc::new(Feed {
            state: Mutex::new(FeedState {
                ring: VecDeque::new(),
                latest: HashMap::new(),
                since: after_revision,
                capacity: self.capacity,
                tx,
                closed: false,
            }),
        });
        let pumped = Arc::downgrade(&feed);
        let feeds = Arc::downgrade(&self.feeds);
        let id = id.to_string();
        let store = self.store.clone();
        tokio::spawn(async move {
            // Every object as of the feed's start, before any later event overrides it
            // (the store watch buffers those meanwhile). Without it a write would find
            // only objects changed since; a failed list merely leaves the map partial.
            let known = known_at(store.as_ref(), resource.key_prefix, after_revision).await;
            if let Some(feed) = pumped.upgrade()
                && let Ok(mut state) = feed.state.lock()
            {
                for kv in known {
                    state.latest.entry(kv.key.clone()).or_insert(kv);
                }
            }
            let failure = loop {
                let event = match upstream.next().await {
                    Some(Ok(event)) => event,
                    Some(Err(err)) => break err,
                    None => break StoreError::Unavailable("the store ended the watch".into()),
                };
                let Some(feed) = pumped.upgrade() else {
                    return;
                };
                // Only this task changes `latest` once the list is in, so what it lacks
                // now it still lacks after the read.
                let unknown = match feed.state.lock() {
                    Ok(state) => state.unknown_prev(&event),
                    Err(_) => return,
                };
                let read = match unknown {
                    Some((key, revision)) => match value_at(store.as_ref(), &key, revision).await {
                        Ok(kv) => Some(kv),
                        Err(err) => break err,
                    },
                    None => None,
                };
                let Ok(mut state) = feed.state.lock() else {
                    return;
                };
                state.push(resource, event, read);
            };
            if let Some(feed) = pumped.upgrade() {
                if let Ok(mut state) = feed.state.lock() {
                    state.closed = true;
                    let _ = state.tx.send(FeedItem::Failed(Arc::new(failure)));
                }
                // Forget the feed (unless a newer one already replaced it).
                if let Some(feeds) = feeds.upgrade() {
                    let mut feeds = feeds.lock().await;
                    if feeds
                        .get(&id)
                        .is_some_and(|current| Arc::ptr_eq(current, &feed))
                    {
                        feeds.remove(&id);
                    }
                }
            }
        });
        Ok(feed)
    }
}

/// Keys read per page when a feed learns the objects it starts with.
const PAGE: usize = 1000;

/// Every key under `prefix` as of `revision`; none when the store cannot say (the
/// copies only save reads, so the feed goes on without them).
async fn known_at(store: &dyn Store, prefix: &str, revision: i64) -> Vec<KeyValue> {
    match rind_store::list_all(store, prefix, Some(revision), PAGE).await {
        Ok(all) => all.items,
        Err(e) => {
            tracing::debug!(prefix, "watch cache starts without a list: {e}");
            Vec::new()
        }
    }
}

/// The value `key` had at `revision`: what an event after it replaced. Gone when that
/// revision was compacted, which ends the feed (its watchers re-list).
async fn value_at(store: &dyn Store, key: &str, revision: i64) -> StoreResult<KeyValue> {
    // Keys sort after their prefixes, so the key itself comes first when it exists.
    let page = store.list(key, None, 1, Some(revision)).await?;
    page.items
        .into_iter()
        .find(|kv| kv.key == key)
        .ok_or_else(|| {
            StoreError::Unavailable(format!(
                "the watch cache cannot tell what changed {key}: it had no value at revision {revision}"
            ))
        })
}

/// The feed of a resource: one per served version of a storage prefix.
fn feed_id(resource: &Resource) -> String {
    format!("{}|{}", resource.api_version(), resource.key_prefix)
}

/// A copy of a feed's failure for one watcher (store errors are not `Clone`).
fn copy_error(err: &StoreError) -> StoreError {
    match err {
        StoreError::Compacted {
            requested,
            compacted,
        } => StoreError::Compacted {
            requested: *requested,
            compacted: *compacted,
        },
        other => StoreError::Unavailable(other.to_string()),
    }
}
