//! Namespace deletion: a deleted namespace turns `Terminating` and is held by its
//! `kubernetes` finalizer while everything inside it is deleted (pods gracefully, so
//! kubelets stop their containers); then the finalizer is dropped and the namespace
//! goes. Upstream does this in the controller-manager; until rind has a namespace
//! controller the API server does it itself, resuming after restarts.

use super::Server;
use super::handlers::{
    DeleteOptions, Deleted, Filter, collect, decode, delete_object, write_update,
};
use super::request::Query;
use rind_api::meta::{self, child_mut};
use rind_api::status::ApiError;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How often a terminating namespace is re-checked while pods in it shut down.
const RECHECK: Duration = Duration::from_secs(1);

/// Where namespaces are stored (`Resource::key_prefix` of core/v1 namespaces).
pub const NAMESPACES: &str = "/registry/namespaces/";

/// What a create in a namespace needs to know of it, as the server's mirror keeps it.
#[derive(Deserialize)]
pub struct NamespaceState {
    #[serde(default)]
    metadata: NamespaceMeta,
}

#[derive(Deserialize, Default)]
struct NamespaceMeta {
    #[serde(rename = "deletionTimestamp")]
    deletion_timestamp: Option<Value>,
}

impl NamespaceState {
    pub fn terminating(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }
}

/// Starts the cleanup of `name` if it is being deleted; a no-op otherwise.
pub fn spawn_cleanup(server: Arc<Server>, name: String) {
    tokio::spawn(async move {
        if let Err(e) = cleanup(&server, &name).await {
            tracing::warn!(namespace = %name, "namespace cleanup failed: {e}");
        }
    });
}

/// Resumes the cleanup of every namespace left terminating (e.g. by a restart).
pub async fn resume_all(server: &Arc<Server>) -> Result<(), ApiError> {
    let namespaces = server
        .registry
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
    let filter = Filter::from_query(namespaces, &Query::default())?;
    let (items, _, _) = collect(server, namespaces, None, &filter, 0, &Query::default()).await?;
    for ns in items {
        if meta::str_at(&ns, &["metadata", "deletionTimestamp"]).is_some() {
            spawn_cleanup(server.clone(), meta::name(&ns).to_string());
        }
    }
    Ok(())
}

/// Deletes what is in the namespace; true when nothing is left.
async fn empty_namespace(server: &Server, name: &str) -> Result<bool, ApiError> {
    let mut remaining = 0;
    for resource in server.registry.all().filter(|r| r.namespaced) {
        let filter = Filter::from_query(resource, &Query::default())?;
        let (items, _, _) =
            collect(server, resource, Some(name), &filter, 0, &Query::default()).await?;
        for item in items {
            let item_name = meta::name(&item);
            match delete_object(
                server,
                resource,
                Some(name),
                item_name,
                &DeleteOptions::default(),
            )
            .await
            {
                Ok(Deleted::Gone(_)) => {}
                Ok(Deleted::Pending(_)) => remaining += 1,
                // Deleted meanwhile by someone else: fine. Changed meanwhile: next round.
                Err(e) if e.code == 404 => {}
                Err(e) if e.code == 409 => remaining += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(remaining == 0)
}

async fn cleanup(server: &Server, name: &str) -> Result<(), ApiError> {
    let namespaces = server
        .registry
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
    let key = namespaces.key(None, name);
    loop {
        let Some(kv) = server
            .store
            .get(&key)
            .await
            .map_err(|e| super::handlers::store_error(e, namespaces, name))?
        else {
            return Ok(());
        };
        let current = decode(&kv)?;
        if meta::str_at(&current, &["metadata", "deletionTimestamp"]).is_none() {
            return Ok(());
        }
        if empty_namespace(server, name).await? {
            let mut next = current.clone();
            if let Some(root) = next.as_object_mut() {
                let spec = child_mut(root, "spec");
                let kept: Vec<Value> = spec
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .map(|f| f.iter().filter(|v| *v != "kubernetes").cloned().collect())
                    .unwrap_or_default();
                spec.insert("finalizers".into(), json!(kept));
            }
            match write_update(server, namespaces, &key, kv.mod_revision, &current, next).await {
                Ok(_) => return Ok(()),
                // Someone changed the namespace meanwhile; look again.
                Err(rind_store::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(super::handlers::store_error(e, namespaces, name)),
            }
        }
        tokio::time::sleep(RECHECK).await;
    }
}
