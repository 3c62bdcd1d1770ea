//! Periodic compaction of the store's history, as kube-apiserver does it: each round
//! compacts up to the revision seen one round earlier, so a watcher always has at least
//! one interval of history to resume from, and etcd's database does not grow forever.

use rind_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// kube-apiserver's default `--etcd-compaction-interval`.
pub const INTERVAL: Duration = Duration::from_secs(300);

pub async fn run(store: Arc<dyn Store>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    let mut previous: Option<i64> = None;
    loop {
        ticker.tick().await;
        let current = match store.revision().await {
            Ok(revision) => revision,
            Err(err) => {
                tracing::warn!("compaction: reading the store revision: {err}");
                continue;
            }
        };
        if let Some(revision) = previous.filter(|r| *r > 1) {
            match store.compact(revision).await {
                // Another API server (HA) compacted at least as far already.
                Ok(()) | Err(StoreError::Compacted { .. }) => {
                    tracing::debug!(revision, "compacted")
                }
                Err(err) => tracing::warn!(revision, "compaction failed: {err}"),
            }
        }
        previous = Some(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_store::MemoryStore;
    use std::time::Instant;

    #[tokio::test]
    async fn history_older_than_one_round_is_compacted() {
        let store = MemoryStore::new();
        let first = store.create("/registry/a", b"1".to_vec()).await.unwrap();
        store
            .update("/registry/a", b"2".to_vec(), first)
            .await
            .unwrap();
        let task = tokio::spawn(run(store.clone(), Duration::from_millis(20)));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match store.list("/registry/", None, 0, Some(first)).await {
                Err(StoreError::Compacted { .. }) => break,
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                other => panic!("history was not compacted: {other:?}"),
            }
        }
        task.abort();
        // The latest value survives compaction.
        assert_eq!(store.get("/registry/a").await.unwrap().unwrap().value, b"2");
    }
}
