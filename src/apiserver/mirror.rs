//! A watch-fed, in-memory copy of every object under one store prefix, decoded into
//! a typed form. The authorizer and the token authenticator consult these on every
//! request, so a request costs no store read; a change is seen as soon as the watch
//! delivers it (the eventual consistency upstream's informer caches have too).

use futures::StreamExt;
use rind_store::{Store, StoreError, WatchEvent};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// How long to wait before re-watching after the store failed.
const RETRY: Duration = Duration::from_secs(1);
/// Keys read per list page when (re)filling the mirror.
const PAGE: usize = 500;

pub struct Mirror<T> {
    prefix: &'static str,
    items: RwLock<BTreeMap<String, Arc<T>>>,
}

impl<T: DeserializeOwned + Send + Sync + 'static> Mirror<T> {
    /// An empty mirror of `prefix`; `start` fills it.
    pub fn new(prefix: &'static str) -> Arc<Self> {
        Arc::new(Mirror {
            prefix,
            items: RwLock::new(BTreeMap::new()),
        })
    }

    /// Fills the mirror from the store, then keeps it current on a background task
    /// that ends once the mirror is dropped.
    pub async fn start(self: &Arc<Self>, store: Arc<dyn Store>) -> Result<(), StoreError> {
        let revision = self.relist(store.as_ref()).await?;
        tokio::spawn(follow(Arc::downgrade(self), store, self.prefix, revision));
        Ok(())
    }

    /// Replaces the contents with a fresh list; returns the revision it was read at.
    async fn relist(&self, store: &dyn Store) -> Result<i64, StoreError> {
        let all = rind_store::list_all(store, self.prefix, None, PAGE).await?;
        let items = all
            .items
            .iter()
            .filter_map(|kv| Some((kv.key.clone(), Arc::new(decode::<T>(&kv.key, &kv.value)?))))
            .collect();
        *self.write() = items;
        Ok(all.revision)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<T>>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.items.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<T>>> {
        self.items.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The object stored at `key`.
    pub fn get(&self, key: &str) -> Option<Arc<T>> {
        self.read().get(key).cloned()
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub fn under(&self, prefix: &str) -> Vec<Arc<T>> {
        self.read()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every object.
    pub fn all(&self) -> Vec<Arc<T>> {
        self.read().values().cloned().collect()
    }
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(item) => Some(item),
        Err(e) => {
            // Validation keeps such objects out; one that slipped in grants nothing.
            tracing::warn!(key, "ignoring an object that does not decode: {e}");
            None
        }
    }
}

/// Applies the store's changes to the mirror until it is dropped; relists when the
/// watch cannot resume (compaction) and retries when the store fails.
async fn follow<T: DeserializeOwned + Send + Sync + 'static>(
    mirror: Weak<Mirror<T>>,
    store: Arc<dyn Store>,
    prefix: &'static str,
    mut revision: i64,
) {
    loop {
        match store.watch(prefix, revision).await {
            Ok(mut events) => {
                while let Some(event) = events.next().await {
                    let Some(mirror) = mirror.upgrade() else {
                        return;
                    };
                    match event {
                        Ok(WatchEvent::Put { kv, .. }) => {
                            revision = kv.mod_revision;
                            match decode::<T>(&kv.key, &kv.value) {
                                Some(item) => mirror.write().insert(kv.key, Arc::new(item)),
                                None => mirror.write().remove(&kv.key),
                            };
                        }
                        Ok(WatchEvent::Delete { prev, revision: at }) => {
                            revision = at;
                            mirror.write().remove(&prev.key);
                        }
                        Ok(WatchEvent::Progress { revision: at }) => revision = at,
                        Err(e) => {
                            tracing::warn!(prefix, "watch ended: {e}");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(prefix, "cannot watch: {e}"),
        }
        tokio::time::sleep(RETRY).await;
        let Some(live) = mirror.upgrade() else {
            return;
        };
        // Resuming from `revision` may be impossible (compacted); a relist always works.
        match live.relist(store.as_ref()).await {
            Ok(at) => revision = at,
            Err(e) => tracing::warn!(prefix, "cannot relist: {e}"),
        }
    }
}
