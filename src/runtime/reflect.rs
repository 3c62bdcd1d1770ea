//! Reflector stores kept filled from a watch: the local copy of the objects that the
//! controllers, the scheduler and the kubelet act on, with the same watcher settings
//! (restarts with backoff, errors logged) everywhere.

use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::fmt::Debug;
use std::hash::Hash;

/// A kind a reflector can hold (what kube-runtime's reflector asks of it).
pub trait Reflectable:
    kube::Resource<DynamicType: Default + Eq + Hash + Clone>
    + Clone
    + Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Reflectable for K where
    K: kube::Resource<DynamicType: Default + Eq + Hash + Clone>
        + Clone
        + Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// A store of every `K` and the stream of touched objects that fills it; the store
/// only fills while the stream is polled. Used as a controller's trigger, the store
/// has seen a change before the reconcile it wakes runs (a separate watch for the
/// trigger could run ahead of the store).
pub fn reflected<K: Reflectable>(
    api: Api<K>,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) {
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// Keeps a store of every `K` filled by its own task for as long as the task runs.
pub fn reflect<K: Reflectable>(
    api: Api<K>,
    what: &'static str,
) -> (Store<K>, tokio::task::JoinHandle<()>) {
    reflect_and_notify(api, watcher::Config::default(), what, || true)
}

/// Keeps a store of the `K` that `config` selects filled by its own task, and calls
/// `notify` after every event, so a loop that reads the store learns it changed. The
/// task ends when `notify` returns false (whoever it told is gone).
pub fn reflect_and_notify<K: Reflectable>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    mut notify: impl FnMut() -> bool + Send + 'static,
) -> (Store<K>, tokio::task::JoinHandle<()>) {
    let (store, writer) = reflector::store::<K>();
    let events = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Err(err) = event {
                tracing::warn!("{what} watch error: {err}");
            }
            if !notify() {
                return;
            }
        }
    });
    (store, task)
}
