//! Behaviour every `Store` backend must share, written once and run against the memory
//! store and a real etcd. Checks only use keys under their own prefixes and revisions
//! relative to what they wrote, so they can share one store; `compaction` is run last
//! because it affects the whole store.

use super::{KeyValue, Store, StoreError, WatchEvent, WatchStream};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

const EVENT_DEADLINE: Duration = Duration::from_secs(10);

pub async fn run_all(store: Arc<dyn Store>) {
    crud(&*store).await;
    list_paging(&*store).await;
    list_at_past_revision(&*store).await;
    list_all_pages(&*store).await;
    watch_live_and_replayed(&*store).await;
    watch_without_prev(&*store).await;
    watch_from_future_revision(&*store).await;
    watch_progress(&*store).await;
    compaction(&*store).await;
}

/// The next item of `stream` that is not a progress event.
async fn next_change(stream: &mut WatchStream) -> Result<WatchEvent, StoreError> {
    tokio::time::timeout(EVENT_DEADLINE, async {
        loop {
            match stream.next().await {
                Some(Ok(WatchEvent::Progress { .. })) => continue,
                Some(item) => return item,
                None => panic!("watch stream ended"),
            }
        }
    })
    .await
    .expect("no watch event within the deadline")
}

fn kv(key: &str, value: &[u8], create_revision: i64, mod_revision: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: value.to_vec(),
        create_revision,
        mod_revision,
    }
}

async fn crud(store: &dyn Store) {
    let key = "/conformance/crud/a";
    let start = store.revision().await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), None);

    let created = store.create(key, b"v1".to_vec()).await.unwrap();
    assert!(created > start);
    assert_eq!(store.revision().await.unwrap(), created);
    assert_eq!(
        store.get(key).await.unwrap(),
        Some(kv(key, b"v1", created, created))
    );
    assert!(matches!(
        store.create(key, b"again".to_vec()).await,
        Err(StoreError::AlreadyExists(k)) if k == key
    ));

    match store.update(key, b"v2".to_vec(), created - 1).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (created - 1, created)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let updated = store.update(key, b"v2".to_vec(), created).await.unwrap();
    assert_eq!(updated, created + 1);
    assert_eq!(
        store.get(key).await.unwrap(),
        Some(kv(key, b"v2", created, updated))
    );
    assert!(matches!(
        store
            .update("/conformance/crud/missing", b"x".to_vec(), 1)
            .await,
        Err(StoreError::NotFound(_))
    ));

    assert!(matches!(
        store.delete(key, Some(created)).await,
        Err(StoreError::Conflict { actual, .. }) if actual == updated
    ));
    let (prev, deleted) = store.delete(key, Some(updated)).await.unwrap();
    assert_eq!(prev, kv(key, b"v2", created, updated));
    assert_eq!(deleted, updated + 1);
    assert_eq!(store.get(key).await.unwrap(), None);
    assert!(matches!(
        store.delete(key, None).await,
        Err(StoreError::NotFound(_))
    ));

    // A re-created key starts a new life with a new create revision.
    let recreated = store.create(key, b"v3".to_vec()).await.unwrap();
    assert_eq!(
        store.get(key).await.unwrap(),
        Some(kv(key, b"v3", recreated, recreated))
    );
    let (_, unconditional) = store.delete(key, None).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), unconditional);
}

async fn list_paging(store: &dyn Store) {
    let prefix = "/conformance/list/";
    for name in ["c", "a", "e", "b", "d"] {
        store
            .create(&format!("{prefix}{name}"), name.as_bytes().to_vec())
            .await
            .unwrap();
    }
    // Shares the prefix's characters but not the trailing slash: must never be listed.
    store
        .create("/conformance/list0", b"outside".to_vec())
        .await
        .unwrap();
    let names = |page: &super::ListPage| -> Vec<String> {
        page.items
            .iter()
            .map(|kv| kv.key.trim_start_matches(prefix).to_string())
            .collect()
    };

    let all = store.list(prefix, None, 0, None).await.unwrap();
    assert_eq!(names(&all), ["a", "b", "c", "d", "e"]);
    assert!(!all.more);
    assert_eq!(all.revision, store.revision().await.unwrap());

    assert_eq!(all.count, 5);
    let first = store.list(prefix, None, 2, None).await.unwrap();
    assert_eq!(
        (names(&first), first.more),
        (vec!["a".into(), "b".into()], true)
    );
    // The count runs from the page's start to the end of the range.
    assert_eq!(first.count, 5);
    let last_key = first.items[1].key.clone();
    let second = store
        .list(prefix, Some(&last_key), 2, Some(first.revision))
        .await
        .unwrap();
    assert_eq!(
        (names(&second), second.more, second.count),
        (vec!["c".into(), "d".into()], true, 3)
    );
    assert_eq!(second.revision, first.revision);
    let last_key = second.items[1].key.clone();
    let third = store
        .list(prefix, Some(&last_key), 2, Some(first.revision))
        .await
        .unwrap();
    assert_eq!((names(&third), third.more), (vec!["e".into()], false));

    // A page that ends exactly at the last key has nothing more.
    let exact = store
        .list(prefix, Some(&format!("{prefix}c")), 2, None)
        .await
        .unwrap();
    assert_eq!(
        (names(&exact), exact.more),
        (vec!["d".into(), "e".into()], false)
    );

    let empty = store
        .list("/conformance/nothing/", None, 0, None)
        .await
        .unwrap();
    assert!(empty.items.is_empty() && !empty.more);
}

/// `list_all` reads every page at the first page's revision.
async fn list_all_pages(store: &dyn Store) {
    let prefix = "/conformance/all/";
    for i in 0..5 {
        store
            .create(&format!("{prefix}{i}"), vec![b'0' + i])
            .await
            .unwrap();
    }
    let all = super::list_all(store, prefix, None, 2).await.unwrap();
    let keys: Vec<&str> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        (0..5).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>()
    );
    assert!(!all.more);
    store
        .create(&format!("{prefix}5"), b"5".to_vec())
        .await
        .unwrap();
    let then = super::list_all(store, prefix, Some(all.revision), 2)
        .await
        .unwrap();
    assert_eq!(then.items, all.items);
    assert_eq!(then.revision, all.revision);
    let now = super::list_all(store, prefix, None, 4).await.unwrap();
    assert_eq!(now.items.len(), 6);
}

async fn list_at_past_revision(store: &dyn Store) {
    let prefix = "/conformance/past/";
    let (a, b, c) = (
        format!("{prefix}a"),
        format!("{prefix}b"),
        format!("{prefix}c"),
    );
    let a_created = store.create(&a, b"a1".to_vec()).await.unwrap();
    let then = store.create(&b, b"b1".to_vec()).await.unwrap();
    let a_updated = store.update(&a, b"a2".to_vec(), a_created).await.unwrap();
    store.delete(&b, None).await.unwrap();
    let c_created = store.create(&c, b"c1".to_vec()).await.unwrap();

    let old = store.list(prefix, None, 0, Some(then)).await.unwrap();
    assert_eq!(old.revision, then);
    assert_eq!(
        old.items,
        [
            kv(&a, b"a1", a_created, a_created),
            kv(&b, b"b1", then, then)
        ]
    );
    let now = store.list(prefix, None, 0, None).await.unwrap();
    assert_eq!(
        now.items,
        [
            kv(&a, b"a2", a_created, a_updated),
            kv(&c, b"c1", c_created, c_created)
        ]
    );
    let future = now.revision + 100;
    assert!(matches!(
        store.list(prefix, None, 0, Some(future)).await,
        Err(StoreError::FutureRevision(r)) if r == future
    ));
}

async fn watch_live_and_replayed(store: &dyn Store) {
    let prefix = "/conformance/watch/";
    let key = format!("{prefix}a");
    let start = store.revision().await.unwrap();
    let mut live = store.watch(prefix, start).await.unwrap();

    let created = store.create(&key, b"1".to_vec()).await.unwrap();
    store
        .create("/conformance/unwatched", b"x".to_vec())
        .await
        .unwrap();
    let updated = store.update(&key, b"2".to_vec(), created).await.unwrap();
    let (_, deleted) = store.delete(&key, None).await.unwrap();

    let expected = [
        WatchEvent::Put {
            kv: kv(&key, b"1", created, created),
            prev: None,
        },
        WatchEvent::Put {
            kv: kv(&key, b"2", created, updated),
            prev: Some(kv(&key, b"1", created, created)),
        },
        WatchEvent::Delete {
            prev: kv(&key, b"2", created, updated),
            revision: deleted,
        },
    ];
    for event in &expected {
        assert_eq!(&next_change(&mut live).await.unwrap(), event);
    }

    // A watch starting in the past replays history, then continues live.
    let mut replayed = store.watch(prefix, start).await.unwrap();
    for event in &expected {
        assert_eq!(&next_change(&mut replayed).await.unwrap(), event);
    }
    let mut from_middle = store.watch(prefix, updated).await.unwrap();
    assert_eq!(&next_change(&mut from_middle).await.unwrap(), &expected[2]);
    let again = store.create(&key, b"3".to_vec()).await.unwrap();
    for stream in [&mut live, &mut replayed, &mut from_middle] {
        assert_eq!(
            next_change(stream).await.unwrap(),
            WatchEvent::Put {
                kv: kv(&key, b"3", again, again),
                prev: None
            }
        );
    }
}

/// The same changes as `watch`, in the same order; what each replaced may be left out.
async fn watch_without_prev(store: &dyn Store) {
    let prefix = "/conformance/noprev/";
    let key = format!("{prefix}a");
    let start = store.revision().await.unwrap();
    let mut stream = store.watch_without_prev(prefix, start).await.unwrap();
    let created = store.create(&key, b"1".to_vec()).await.unwrap();
    let updated = store.update(&key, b"2".to_vec(), created).await.unwrap();
    let (_, deleted) = store.delete(&key, None).await.unwrap();

    match next_change(&mut stream).await.unwrap() {
        WatchEvent::Put { kv: got, prev } => {
            assert_eq!(got, kv(&key, b"1", created, created));
            assert_eq!(prev, None);
        }
        other => panic!("expected the creation, got {other:?}"),
    }
    match next_change(&mut stream).await.unwrap() {
        WatchEvent::Put { kv: got, prev } => {
            assert_eq!(got, kv(&key, b"2", created, updated));
            assert!(prev.is_none_or(|prev| prev == kv(&key, b"1", created, created)));
        }
        other => panic!("expected the update, got {other:?}"),
    }
    match next_change(&mut stream).await.unwrap() {
        WatchEvent::Delete { prev, revision } => {
            assert_eq!(revision, deleted);
            assert_eq!(prev.key, key);
            assert!(prev.value.is_empty() || prev == kv(&key, b"2", created, updated));
        }
        other => panic!("expected the deletion, got {other:?}"),
    }
}

async fn watch_from_future_revision(store: &dyn Store) {
    let prefix = "/conformance/future/";
    let current = store.revision().await.unwrap();
    let mut stream = store.watch(prefix, current + 1).await.unwrap();
    let skipped = store
        .create(&format!("{prefix}a"), b"1".to_vec())
        .await
        .unwrap();
    assert_eq!(skipped, current + 1);
    let wanted = store
        .create(&format!("{prefix}b"), b"2".to_vec())
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut stream).await.unwrap(),
        WatchEvent::Put {
            kv: kv(&format!("{prefix}b"), b"2", wanted, wanted),
            prev: None
        }
    );
}

async fn watch_progress(store: &dyn Store) {
    let current = store.revision().await.unwrap();
    let mut stream = store.watch("/conformance/idle/", current).await.unwrap();
    let progress = tokio::time::timeout(EVENT_DEADLINE, stream.next())
        .await
        .expect("no progress event within the deadline");
    match progress {
        Some(Ok(WatchEvent::Progress { revision })) => assert!(revision >= current),
        other => panic!("expected a progress event, got {other:?}"),
    }
}

async fn compaction(store: &dyn Store) {
    let key = "/conformance/compact/a";
    let first = store.create(key, b"1".to_vec()).await.unwrap();
    let second = store.update(key, b"2".to_vec(), first).await.unwrap();
    let third = store.update(key, b"3".to_vec(), second).await.unwrap();
    store.compact(second).await.unwrap();

    assert!(matches!(
        store
            .list("/conformance/compact/", None, 0, Some(first))
            .await,
        Err(StoreError::Compacted { .. })
    ));
    let at_compaction = store
        .list("/conformance/compact/", None, 0, Some(second))
        .await
        .unwrap();
    assert_eq!(at_compaction.items, [kv(key, b"2", first, second)]);

    // Watching from before the compaction fails, on the call or as the first item.
    let refused = match store.watch("/conformance/compact/", first - 1).await {
        Err(err) => err,
        Ok(mut stream) => next_change(&mut stream).await.unwrap_err(),
    };
    assert!(
        matches!(refused, StoreError::Compacted { .. }),
        "got {refused:?}"
    );
    // The compaction revision itself is still watchable. (Its event's prev may be gone:
    // etcd reads it at a compacted revision.)
    let mut stream = store
        .watch("/conformance/compact/", second - 1)
        .await
        .unwrap();
    match next_change(&mut stream).await.unwrap() {
        WatchEvent::Put { kv: got, .. } => assert_eq!(got, kv(key, b"2", first, second)),
        other => panic!("expected a put, got {other:?}"),
    }
    assert_eq!(
        next_change(&mut stream).await.unwrap(),
        WatchEvent::Put {
            kv: kv(key, b"3", first, third),
            prev: Some(kv(key, b"2", first, second)),
        }
    );

    assert!(matches!(
        store.compact(second).await,
        Err(StoreError::Compacted { .. })
    ));
}
