//! Serving CustomResourceDefinitions: every API server watches the stored CRDs and
//! keeps its registry in step — an accepted CRD's served versions become registry
//! entries (and so routes, discovery and openapi), its status gets the accepted names,
//! `NamesAccepted`/`Established` and `storedVersions`, and a deleted CRD's objects are
//! deleted before its cleanup finalizer is dropped. Watching (rather than acting in
//! the write handlers) keeps every API server of an HA cluster serving the same set.

use super::Server;
use super::handlers::{decode, write_update};
use futures::StreamExt;
use rind_api::crd::{self, CLEANUP_FINALIZER, definition};
use rind_api::meta::{self, metadata_mut};
use rind_api::registry::Resource;
use rind_api::status::ApiError;
use rind_store::{StoreError, WatchEvent};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long to wait before re-listing after the watch failed (store restarting).
const RETRY: Duration = Duration::from_secs(1);

fn definitions(server: &Server) -> Result<&'static Resource, ApiError> {
    server
        .registry
        .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| ApiError::internal("customresourcedefinitions are not registered"))
}

/// Loads every stored CRD (so the server serves them before it accepts requests).
pub async fn load(server: &Server) -> Result<i64, ApiError> {
    let crds = definitions(server)?;
    let page = server
        .store
        .list(crds.key_prefix, None, 0, None)
        .await
        .map_err(|e| super::handlers::store_error(e, crds, ""))?;
    let names: Vec<String> = page
        .items
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(crds.key_prefix))
        .map(str::to_string)
        .collect();
    for stale in served_crds(server)
        .into_iter()
        .filter(|n| !names.contains(n))
    {
        server.registry.set_custom(&stale, Vec::new());
    }
    for kv in &page.items {
        reconcile(server, crds, &decode(kv)?, kv.mod_revision).await;
    }
    Ok(page.revision)
}

fn served_crds(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = server
        .registry
        .all()
        .filter_map(|r| r.custom.map(|c| c.crd_name.clone()))
        .collect();
    names.dedup();
    names
}

/// Follows CRD changes for as long as the server runs.
pub async fn run(server: Arc<Server>, mut revision: i64) {
    loop {
        if let Err(e) = follow(&server, revision).await {
            tracing::info!("watching CustomResourceDefinitions: {e}; re-listing");
        }
        tokio::time::sleep(RETRY).await;
        match load(&server).await {
            Ok(listed) => revision = listed,
            Err(e) => tracing::warn!("listing CustomResourceDefinitions: {}", e.message),
        }
    }
}

async fn follow(server: &Server, revision: i64) -> Result<(), StoreError> {
    let Ok(crds) = definitions(server) else {
        return Ok(());
    };
    let mut events = server.store.watch(crds.key_prefix, revision).await?;
    while let Some(event) = events.next().await {
        match event? {
            WatchEvent::Put { kv, .. } => {
                if let Ok(object) = decode(&kv) {
                    reconcile(server, crds, &object, kv.mod_revision).await;
                }
            }
            WatchEvent::Delete { prev, .. } => {
                if let Some(name) = prev.key.strip_prefix(crds.key_prefix) {
                    server.registry.set_custom(name, Vec::new());
                }
            }
            WatchEvent::Progress { .. } => {}
        }
    }
    Ok(())
}

/// Brings the registry and the CRD's status in line with the stored CRD.
async fn reconcile(server: &Server, crds: &'static Resource, crd: &Value, revision: i64) {
    let name = meta::name(crd).to_string();
    let result = if meta::str_at(crd, &["metadata", "deletionTimestamp"]).is_some() {
        server.registry.set_custom(&name, Vec::new());
        remove_objects(server, crds, crd, revision).await
    } else {
        establish(server, crds, crd, revision).await
    };
    if let Err(e) = result {
        tracing::warn!(crd = %name, "reconciling the CustomResourceDefinition: {}", e.message);
    }
}

/// Why the CRD's names cannot be served, if they cannot: another resource of the
/// group already has its plural or kind.
fn name_conflict(server: &Server, crd: &Value) -> Option<String> {
    let spec = crd.get("spec")?;
    let group = meta::str_at(spec, &["group"])?;
    let names = definition::accepted_names(spec);
    let plural = meta::str_at(&names, &["plural"]).unwrap_or_default();
    let kind = meta::str_at(&names, &["kind"]).unwrap_or_default();
    let own = meta::name(crd);
    server
        .registry
        .all()
        .filter(|r| r.group == group && r.custom.is_none_or(|c| c.crd_name != own))
        .find_map(|r| {
            if r.plural == plural {
                Some(format!("{plural:?} is already in use"))
            } else if r.kind == kind {
                Some(format!("{kind:?} is already in use"))
            } else {
                None
            }
        })
}

async fn establish(
    server: &Server,
    crds: &'static Resource,
    crd: &Value,
    revision: i64,
) -> Result<(), ApiError> {
    let name = meta::name(crd).to_string();
    let conflict = name_conflict(server, crd);
    if conflict.is_none() && definition::validate(crd).is_empty() {
        // Served before the status says Established, so whoever waits for the
        // condition finds the resource there.
        server
            .registry
            .set_custom(&name, crd::served_resources(crd));
    } else {
        server.registry.set_custom(&name, Vec::new());
    }
    let mut next = crd.clone();
    next["status"] = definition::status(crd, conflict.as_deref());
    write(server, crds, crd, next, revision).await
}

async fn write(
    server: &Server,
    crds: &'static Resource,
    current: &Value,
    next: Value,
    revision: i64,
) -> Result<(), ApiError> {
    let name = meta::name(current).to_string();
    let key = crds.key(None, &name);
    match write_update(server, crds, &key, revision, current, next).await {
        // Someone wrote meanwhile: the watch brings that version, reconciled again.
        Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(super::handlers::store_error(e, crds, &name)),
    }
}

/// Deletes every object of a deleted CRD (all versions share one storage prefix),
/// then drops the cleanup finalizer so the CRD itself goes.
async fn remove_objects(
    server: &Server,
    crds: &'static Resource,
    crd: &Value,
    revision: i64,
) -> Result<(), ApiError> {
    let holds = crd
        .get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
    if !holds {
        return Ok(());
    }
    let group = meta::str_at(crd, &["spec", "group"]).unwrap_or_default();
    let plural = meta::str_at(crd, &["status", "acceptedNames", "plural"])
        .or_else(|| meta::str_at(crd, &["spec", "names", "plural"]))
        .unwrap_or_default();
    if !group.is_empty() && !plural.is_empty() {
        let prefix = format!("/registry/{group}/{plural}/");
        loop {
            let page = server
                .store
                .list(&prefix, None, 0, None)
                .await
                .map_err(|e| super::handlers::store_error(e, crds, ""))?;
            if page.items.is_empty() {
                break;
            }
            for kv in page.items {
                match server.store.delete(&kv.key, None).await {
                    Ok(_) | Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(super::handlers::store_error(e, crds, "")),
                }
            }
        }
    }
    let mut next = crd.clone();
    if let Some(list) = metadata_mut(&mut next)
        .get_mut("finalizers")
        .and_then(Value::as_array_mut)
    {
        list.retain(|f| f != CLEANUP_FINALIZER);
    }
    let mut conditions = crd
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| meta::str_at(c, &["type"]) != Some("Terminating"));
    conditions.push(json!({
        "type": "Terminating", "status": "True", "reason": "InstanceDeletionCompleted",
        "message": "removed all instances",
        "lastTransitionTime": meta::format_time(meta::now()),
    }));
    if !next.get("status").is_some_and(Value::is_object) {
        next["status"] = json!({});
    }
    next["status"]["conditions"] = json!(conditions);
    write(server, crds, crd, next, revision).await
}
