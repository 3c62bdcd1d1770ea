//! The key-value store under the API server: a `Store` trait with an etcd backend and
//! an in-memory backend that share revision and watch semantics.
//!
//! Revisions are etcd's: one cluster-wide counter, bumped by every write; an object's
//! resourceVersion is the mod revision of its key.

use async_trait::async_trait;
use futures::stream::BoxStream;

/// One stored key with the revisions etcd keeps for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// A page of keys under a prefix, read at one revision.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    /// The store revision the page was read at (for the list's resourceVersion).
    pub revision: i64,
    /// True when keys after the last returned one remain (a `continue` is needed).
    pub more: bool,
    /// How many keys the range held from where the page began, the returned ones
    /// included (etcd's `count`): what a list's `remainingItemCount` is made from.
    pub count: usize,
}

/// What happened to a key, as seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created (`prev` is None) or updated (`prev` is its former value).
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A key was deleted; `prev` is its last value, `revision` the deleting revision.
    Delete { prev: KeyValue, revision: i64 },
    /// Nothing changed up to `revision`; lets watchers send bookmarks.
    Progress { revision: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {key} was modified (expected revision {expected}, found {actual})")]
    Conflict {
        key: String,
        expected: i64,
        actual: i64,
    },
    #[error("revision {requested} has been compacted (oldest available {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("revision {0} is in the future")]
    FutureRevision(i64),
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Every key under `prefix` at one revision (`revision`, or the latest when None), read
/// `page` keys at a time so that no single answer grows with the prefix. The answer's
/// `revision` is the one all pages were read at.
pub async fn list_all(
    store: &dyn Store,
    prefix: &str,
    revision: Option<i64>,
    page: usize,
) -> StoreResult<ListPage> {
    let mut items = Vec::new();
    let mut start_after: Option<String> = None;
    let mut revision = revision;
    loop {
        let mut answer = store
            .list(prefix, start_after.as_deref(), page, revision)
            .await?;
        // Later pages are read at the first page's revision: one consistent snapshot.
        revision = Some(answer.revision);
        start_after = answer.items.last().map(|kv| kv.key.clone());
        items.append(&mut answer.items);
        if !answer.more || start_after.is_none() {
            return Ok(ListPage {
                count: items.len(),
                items,
                revision: answer.revision,
                more: false,
            });
        }
    }
}
pub type WatchStream = BoxStream<'static, StoreResult<WatchEvent>>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value of one key, at the latest revision.
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>>;

    /// Keys under `prefix` in key order, starting strictly after `start_after` when
    /// given, at most `limit` (0 = no limit), read at `revision` (None = latest).
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> StoreResult<ListPage>;

    /// Creates `key`; fails with `AlreadyExists` if present. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> StoreResult<i64>;

    /// Replaces `key` only if its mod revision is `expected_revision`; `Conflict`
    /// otherwise, `NotFound` when absent. Returns the new revision.
    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> StoreResult<i64>;

    /// Deletes `key` (only at `expected_revision` when given). Returns the deleted
    /// value and the deleting revision.
    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<i64>,
    ) -> StoreResult<(KeyValue, i64)>;

    /// Every change under `prefix` after `after_revision` (exclusive), in order.
    /// `Compacted` when that revision is gone. Progress events arrive periodically.
    async fn watch(&self, prefix: &str, after_revision: i64) -> StoreResult<WatchStream>;

    /// `watch` for a watcher that keeps the newest value of every key itself, so it
    /// knows what each event replaced: events may come without it (a put's `prev` is
    /// None, a delete's `prev` carries only the key and an empty value), which spares
    /// etcd reading and sending the previous revision of every changed key. Backends
    /// that have the previous value at no cost may still send it.
    async fn watch_without_prev(
        &self,
        prefix: &str,
        after_revision: i64,
    ) -> StoreResult<WatchStream> {
        self.watch(prefix, after_revision).await
    }

    /// The store's current revision.
    async fn revision(&self) -> StoreResult<i64>;

    /// Discards history before `revision`.
    async fn compact(&self, revision: i64) -> StoreResult<()>;

    /// The revision before which this process knows history is gone: its own
    /// compactions, and any it learnt of from a `Compacted` answer to one; 0 when none.
    /// Caches above the store use it to refuse (410) what the store would refuse.
    fn compacted_revision(&self) -> i64 {
        0
    }
}

#[cfg(test)]
mod conformance;
pub mod etcd;
/// The in-memory backend serves the fast API tests (every component's, through
/// rind-testing, which turns on the `memory` feature); nothing in the product runs on it.
#[cfg(any(test, feature = "memory"))]
pub mod memory;

pub use etcd::{EtcdStore, EtcdTls};
#[cfg(any(test, feature = "memory"))]
pub use memory::MemoryStore;
