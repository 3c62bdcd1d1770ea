//! What the workload controllers share: controller ownerReferences
//! (claim, adopt, release), and expectations — the writes a controller made that its
//! reflector store has not shown yet, so it does not act twice on a stale cache.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The ownerReference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The controller ownerReference an owner puts on what it creates or adopts.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `meta` is controlled by the owner with this uid.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// Writes `refs` as the object's ownerReferences, guarded by its resourceVersion so an
/// adoption or release never overwrites a change it did not see.
async fn write_owner_refs<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    refs: Vec<OwnerReference>,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "metadata": {
            "ownerReferences": refs,
            "resourceVersion": meta.resource_version,
            "uid": meta.uid,
        }
    });
    api.patch(
        meta.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Makes `owner` the controller of an orphan that matches its selector.
pub async fn adopt<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    owner: OwnerReference,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.push(owner);
    write_owner_refs(api, meta, refs).await
}

/// Drops the owner's reference from an object it no longer selects.
pub async fn release<K>(api: &Api<K>, meta: &ObjectMeta, owner_uid: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let refs: Vec<OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect();
    write_owner_refs(api, meta, refs).await
}

/// How long an expectation is trusted: a write whose effect never shows (the object
/// was removed by someone else at once) must not block its owner for ever.
const EXPECTATION_TTL: Duration = Duration::from_secs(30);

/// What one owner is waiting to see in the store.
#[derive(Default)]
struct Pending {
    /// Objects created, by name: must appear.
    created: Vec<String>,
    /// Objects deleted, by name: must be gone or being deleted.
    deleted: Vec<String>,
    /// Objects written, by name, with the resourceVersion written: the store must
    /// show that version or a later one.
    written: Vec<(String, u64)>,
    since: Option<Instant>,
}

/// Per-owner expectations, keyed by `namespace/name` of the owner.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

fn rv(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Expectations {
    fn with<R>(&self, owner: &str, f: impl FnOnce(&mut Pending) -> R) -> R {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.entry(owner.to_string()).or_default();
        entry.since.get_or_insert_with(Instant::now);
        f(entry)
    }

    pub fn created(&self, owner: &str, name: String) {
        self.with(owner, |p| p.created.push(name));
    }

    pub fn deleted(&self, owner: &str, name: String) {
        self.with(owner, |p| p.deleted.push(name));
    }

    pub fn written(&self, owner: &str, meta: &ObjectMeta) {
        let name = meta.name.clone().unwrap_or_default();
        self.with(owner, |p| p.written.push((name, rv(meta))));
    }

    /// Whether the store now shows every write made for `owner` (true when there are
    /// none); forgets what is satisfied.
    pub fn satisfied<K>(&self, owner: &str, namespace: &str, store: &Store<K>) -> bool
    where
        K: Resource<DynamicType = ()> + Clone,
    {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = pending.get_mut(owner) else {
            return true;
        };
        let find = |name: &str| {
            store.get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
        };
        entry.created.retain(|name| find(name).is_none());
        entry
            .deleted
            .retain(|name| find(name).is_some_and(|o| o.meta().deletion_timestamp.is_none()));
        entry
            .written
            .retain(|(name, at)| find(name).is_some_and(|o| rv(o.meta()) < *at));
        let done = entry.created.is_empty() && entry.deleted.is_empty() && entry.written.is_empty();
        let expired = entry.since.is_some_and(|s| s.elapsed() > EXPECTATION_TTL);
        if done || expired {
            pending.remove(owner);
            return true;
        }
        false
    }
}
