//! An in-memory `Store` with etcd's revision and watch semantics, for tests and for
//! running the API server without an etcd.
//!
//! Every key keeps its versions (tombstones included) so a list can be read at a past
//! revision, and an event log keeps every write so a watch can start in the past;
//! `compact` trims both exactly as etcd's compaction does.

use super::{KeyValue, ListPage, Store, StoreError, StoreResult, WatchEvent, WatchStream};
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// How often an idle watcher is told the current revision, like etcd's progress notify.
const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    progress_interval: Duration,
}

/// One version of a key; `kv` is None for the tombstone a delete leaves.
struct Version {
    mod_revision: i64,
    kv: Option<KeyValue>,
}

struct LoggedEvent {
    revision: i64,
    key: String,
    event: WatchEvent,
}

struct Watcher {
    id: u64,
    prefix: String,
    /// Events up to here are not wanted (a watch may start from a future revision).
    after_revision: i64,
    tx: mpsc::UnboundedSender<StoreResult<WatchEvent>>,
    /// Whether an event went out since the last progress tick (only idle watchers get
    /// progress events, as in etcd).
    busy: bool,
}

struct Inner {
    revision: i64,
    /// The revision of the last compaction; reads and watches before it fail.
    compacted: i64,
    keys: BTreeMap<String, Vec<Version>>,
    log: VecDeque<LoggedEvent>,
    watchers: Vec<Watcher>,
    next_watcher_id: u64,
}

impl MemoryStore {
    pub fn new() -> Arc<MemoryStore> {
        Self::with_progress_interval(DEFAULT_PROGRESS_INTERVAL)
    }

    /// A store whose watchers get progress events every `progress_interval` when idle.
    pub fn with_progress_interval(progress_interval: Duration) -> Arc<MemoryStore> {
        Arc::new(MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                // A fresh etcd is at revision 1; the first write makes revision 2.
                revision: 1,
                compacted: 0,
                keys: BTreeMap::new(),
                log: VecDeque::new(),
                watchers: Vec::new(),
                next_watcher_id: 0,
            })),
            progress_interval,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

/// Every critical section leaves `Inner` consistent, so a panic elsewhere while the
/// lock was held does not make the data unusable.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn current(&self, key: &str) -> Option<&KeyValue> {
        self.keys.get(key)?.last()?.kv.as_ref()
    }

    /// Records a write at a new revision and fans its event out to matching watchers.
    fn commit(&mut self, key: &str, kv: Option<KeyValue>, event: WatchEvent) -> i64 {
        let revision = self.revision;
        self.keys.entry(key.to_string()).or_default().push(Version {
            mod_revision: revision,
            kv,
        });
        self.watchers.retain_mut(|watcher| {
            if !key.starts_with(&watcher.prefix) || revision <= watcher.after_revision {
                return true;
            }
            watcher.busy = true;
            watcher.tx.send(Ok(event.clone())).is_ok()
        });
        self.log.push_back(LoggedEvent {
            revision,
            key: key.to_string(),
            event,
        });
        revision
    }

    fn next_revision(&mut self) -> i64 {
        self.revision += 1;
        self.revision
    }

    fn check_readable(&self, revision: i64) -> StoreResult<()> {
        if revision < self.compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: self.compacted,
            });
        }
        if revision > self.revision {
            return Err(StoreError::FutureRevision(revision));
        }
        Ok(())
    }
}

/// The value `versions` held at `revision`, if the key existed then.
fn value_at(versions: &[Version], revision: i64) -> Option<&KeyValue> {
    versions
        .iter()
        .rev()
        .find(|version| version.mod_revision <= revision)?
        .kv
        .as_ref()
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        Ok(self.lock().current(key).cloned())
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> StoreResult<ListPage> {
        let inner = self.lock();
        // Like etcd, a revision of 0 or less means "latest".
        let revision = match revision {
            Some(revision) if revision > 0 => {
                inner.check_readable(revision)?;
                revision
            }
            _ => inner.revision,
        };
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut visible = inner
            .keys
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(_, versions)| value_at(versions, revision));
        let mut items = Vec::new();
        let mut count = 0;
        for kv in visible.by_ref() {
            count += 1;
            if limit == 0 || items.len() < limit {
                items.push(kv.clone());
            }
        }
        Ok(ListPage {
            more: count > items.len(),
            items,
            revision,
            count,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> StoreResult<i64> {
        let mut inner = self.lock();
        if inner.current(key).is_some() {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        let revision = inner.next_revision();
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        };
        let event = WatchEvent::Put {
            kv: kv.clone(),
            prev: None,
        };
        Ok(inner.commit(key, Some(kv), event))
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> StoreResult<i64> {
        let mut inner = self.lock();
        let Some(prev) = inner.current(key).cloned() else {
            return Err(StoreError::NotFound(key.to_string()));
        };
        if prev.mod_revision != expected_revision {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected: expected_revision,
                actual: prev.mod_revision,
            });
        }
        let revision = inner.next_revision();
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.create_revision,
            mod_revision: revision,
        };
        let event = WatchEvent::Put {
            kv: kv.clone(),
            prev: Some(prev),
        };
        Ok(inner.commit(key, Some(kv), event))
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<i64>,
    ) -> StoreResult<(KeyValue, i64)> {
        let mut inner = self.lock();
        let Some(prev) = inner.current(key).cloned() else {
            return Err(StoreError::NotFound(key.to_string()));
        };
        if let Some(expected) = expected_revision
            && prev.mod_revision != expected
        {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                actual: prev.mod_revision,
            });
        }
        let revision = inner.next_revision();
        let event = WatchEvent::Delete {
            prev: prev.clone(),
            revision,
        };
        inner.commit(key, None, event);
        Ok((prev, revision))
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> StoreResult<WatchStream> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = {
            let mut inner = self.lock();
            // etcd refuses a start revision (after_revision + 1) below the compaction
            // revision; like etcd, the refusal arrives on the stream.
            if after_revision + 1 < inner.compacted {
                let compacted = inner.compacted;
                let _ = tx.send(Err(StoreError::Compacted {
                    requested: after_revision,
                    compacted,
                }));
                return Ok(UnboundedReceiverStream::new(rx).boxed());
            }
            // Replaying and registering under one lock hold means no write can fall
            // between the history and the live events.
            for logged in &inner.log {
                if logged.revision > after_revision && logged.key.starts_with(prefix) {
                    let _ = tx.send(Ok(logged.event.clone()));
                }
            }
            let id = inner.next_watcher_id;
            inner.next_watcher_id += 1;
            inner.watchers.push(Watcher {
                id,
                prefix: prefix.to_string(),
                after_revision,
                tx: tx.clone(),
                busy: false,
            });
            id
        };
        tokio::spawn(send_progress(
            Arc::downgrade(&self.inner),
            id,
            tx,
            self.progress_interval,
        ));
        Ok(UnboundedReceiverStream::new(rx).boxed())
    }

    async fn revision(&self) -> StoreResult<i64> {
        Ok(self.lock().revision)
    }

    async fn compact(&self, revision: i64) -> StoreResult<()> {
        let mut inner = self.lock();
        if revision <= inner.compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: inner.compacted,
            });
        }
        if revision > inner.revision {
            return Err(StoreError::FutureRevision(revision));
        }
        inner.keys.retain(|_, versions| {
            // Keep the version visible at `revision` (unless it is a tombstone) and
            // everything newer, as etcd does.
            let visible = versions
                .iter()
                .rposition(|version| version.mod_revision <= revision);
            if let Some(index) = visible {
                let drop_visible = versions[index].kv.is_none();
                versions.drain(..index + usize::from(drop_visible));
            }
            !versions.is_empty()
        });
        while inner
            .log
            .front()
            .is_some_and(|logged| logged.revision < revision)
        {
            inner.log.pop_front();
        }
        inner.compacted = revision;
        Ok(())
    }

    fn compacted_revision(&self) -> i64 {
        self.lock().compacted
    }
}

/// Sends a progress event to watcher `id` at every idle tick, and forgets the watcher
/// once its stream is dropped. Progress is sent under the store lock so it can never
/// overtake a write.
async fn send_progress(
    inner: Weak<Mutex<Inner>>,
    id: u64,
    tx: mpsc::UnboundedSender<StoreResult<WatchEvent>>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        let dropped = tokio::select! {
            _ = tx.closed() => true,
            _ = ticks.tick() => false,
        };
        let Some(inner) = inner.upgrade() else { return };
        let mut inner = lock(&inner);
        let revision = inner.revision;
        let Some(watcher) = inner.watchers.iter_mut().find(|w| w.id == id) else {
            return;
        };
        if dropped
            || (!std::mem::take(&mut watcher.busy)
                && watcher
                    .tx
                    .send(Ok(WatchEvent::Progress { revision }))
                    .is_err())
        {
            inner.watchers.retain(|w| w.id != id);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[tokio::test]
    async fn conformance_suite() {
        conformance::run_all(MemoryStore::with_progress_interval(Duration::from_millis(
            100,
        )))
        .await;
    }

    #[tokio::test]
    async fn dropped_watchers_are_forgotten() {
        let store = MemoryStore::new();
        let stream = store.watch("/a/", 1).await.unwrap();
        assert_eq!(store.lock().watchers.len(), 1);
        drop(stream);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !store.lock().watchers.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "watcher still registered"
            );
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn busy_watchers_get_no_progress() {
        let store = MemoryStore::with_progress_interval(Duration::from_millis(50));
        let mut stream = store.watch("/a/", 1).await.unwrap();
        let created = store.create("/a/x", b"1".to_vec()).await.unwrap();
        assert!(matches!(
            stream.next().await,
            Some(Ok(WatchEvent::Put { kv, .. })) if kv.mod_revision == created
        ));
        // The tick after the write is skipped; the next one reports the revision.
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            WatchEvent::Progress { revision: created }
        );
    }

    #[tokio::test]
    async fn compaction_drops_old_versions_and_tombstones() {
        let store = MemoryStore::new();
        let r1 = store.create("/k/a", b"1".to_vec()).await.unwrap();
        let r2 = store.update("/k/a", b"2".to_vec(), r1).await.unwrap();
        let r3 = store.create("/k/b", b"1".to_vec()).await.unwrap();
        let (_, r4) = store.delete("/k/b", None).await.unwrap();
        store.compact(r4).await.unwrap();
        let inner = store.lock();
        assert_eq!(inner.keys.len(), 1, "the deleted key is gone entirely");
        let versions = &inner.keys["/k/a"];
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].mod_revision, r2);
        assert!(inner.log.iter().all(|logged| logged.revision >= r4));
        assert!(r3 < r4);
    }
}
