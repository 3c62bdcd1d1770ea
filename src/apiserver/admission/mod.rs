//! Admission plugins upstream always runs that need the namespace's policy objects:
//! the LimitRanger (`limitranger`) and ResourceQuota (`quota`); and the ServiceAccount
//! plugin (`serviceaccount`), which needs the pod's account. Both read their
//! objects through a `Policies` cache: a watch-fed mirror of every object, and, for a
//! namespace the mirror shows none in, a live list remembered for a while (as
//! upstream's plugins do with their live-lookup caches), so a namespace without
//! policies costs a create no store read, and a policy created a moment ago is not
//! missed while the mirror catches up.

pub mod limitranger;
pub mod quota;
pub mod serviceaccount;

use super::mirror::Mirror;
use rind_store::{Store, StoreError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a live lookup that found nothing is trusted (upstream's liveTTL).
const LIVE_TTL: Duration = Duration::from_secs(30);

pub struct Policies {
    prefix: &'static str,
    mirror: Arc<Mirror<Value>>,
    /// Namespaces a live list found empty, until when that answer stands.
    empty_until: Mutex<HashMap<String, Instant>>,
}

impl Policies {
    pub fn new(prefix: &'static str) -> Self {
        Policies {
            prefix,
            mirror: Mirror::new(prefix),
            empty_until: Mutex::default(),
        }
    }

    pub async fn start(&self, store: Arc<dyn Store>) -> Result<(), StoreError> {
        self.mirror.start(store).await
    }

    /// The policy objects of namespace `ns`.
    pub async fn in_namespace(
        &self,
        store: &dyn Store,
        ns: &str,
    ) -> Result<Vec<Value>, StoreError> {
        let prefix = format!("{}{ns}/", self.prefix);
        let mirrored = self.mirror.under(&prefix);
        if !mirrored.is_empty() {
            return Ok(mirrored.iter().map(|v| (**v).clone()).collect());
        }
        let now = Instant::now();
        {
            let empty = self.empty_until.lock().unwrap_or_else(|e| e.into_inner());
            if empty.get(ns).is_some_and(|until| *until > now) {
                return Ok(Vec::new());
            }
        }
        let page = rind_store::list_all(store, &prefix, None, 500).await?;
        let found: Vec<Value> = page
            .items
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        let mut empty = self.empty_until.lock().unwrap_or_else(|e| e.into_inner());
        if found.is_empty() {
            empty.insert(ns.to_string(), now + LIVE_TTL);
        } else {
            empty.remove(ns);
        }
        Ok(found)
    }
}
