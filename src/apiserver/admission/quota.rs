//! The ResourceQuota admission plugin: every create of a namespaced object (and the
//! updates that can change what it costs) is checked against the namespace's quotas
//! and charged to their `status.used` before the object is stored, so two creates
//! racing for the last unit cannot both get it: the charge is a compare-and-swap on
//! each quota, re-evaluated on a lost race. What objects cost, and the 403 reasons,
//! are `rind_api::quota`'s; the quota controller (controller-manager) recomputes
//! usage from the objects, which also gives back what deletes free.

use super::super::handlers::{Ctx, decode, store_error, write_update};
use super::limitranger::refused_name;
use rind_api::quota::{Evaluator, Quota, check_request};
use rind_api::registry::{Resource, Storage};
use rind_api::status::ApiError;
use rind_store::StoreError;
use serde_json::Value;
use std::collections::BTreeSet;

/// Where ResourceQuotas are stored.
pub const RESOURCE_QUOTAS: &str = "/registry/resourcequotas/";

/// How often a lost race on a quota's status is re-evaluated (upstream: 3 retries).
const ATTEMPTS: usize = 4;

/// Whether creates and updates of `resource` are subject to quota at all: stored,
/// namespaced resources, except events (which upstream's quota ignores).
fn quota_applies(resource: &Resource) -> bool {
    resource.namespaced
        && resource.storage == Storage::Native
        && !(resource.plural == "events" && matches!(resource.group, "" | "events.k8s.io"))
}

/// Checks the create of `object` (or its update from `old`) against the namespace's
/// quotas and, unless `persist` is false (dry run), records the charge in them.
pub async fn admit(
    ctx: &Ctx<'_>,
    object: &Value,
    old: Option<&Value>,
    persist: bool,
) -> Result<(), ApiError> {
    let (server, resource) = (ctx.server, ctx.resource);
    let Some(ns) = ctx.namespace.filter(|_| quota_applies(resource)) else {
        return Ok(());
    };
    let evaluator = Evaluator::of(resource.group, resource.plural);
    if let Some(old) = old
        && !evaluator.handles_update(old, object)
    {
        return Ok(());
    }
    let known = server
        .resource_quotas
        .in_namespace(server.store.as_ref(), ns)
        .await
        .map_err(|e| store_error(e, resource, ""))?;
    if known.is_empty() {
        return Ok(());
    }
    let quotas_resource = server
        .registry
        .lookup("", "v1", "resourcequotas")
        .ok_or_else(|| ApiError::internal("resourcequotas are not registered"))?;
    // After a lost race only the quotas not yet charged are evaluated again.
    let mut pending: Option<BTreeSet<String>> = None;
    let mut last_failed = String::new();
    for _ in 0..ATTEMPTS {
        let page = server
            .store
            .list(&format!("{RESOURCE_QUOTAS}{ns}/"), None, 0, None)
            .await
            .map_err(|e| store_error(e, quotas_resource, ""))?;
        let mut stored = Vec::new();
        for kv in &page.items {
            let object = decode(kv)?;
            let wanted = pending
                .as_ref()
                .is_none_or(|names| names.contains(rind_api::meta::name(&object)));
            if wanted {
                stored.push((kv.key.clone(), kv.mod_revision, object));
            }
        }
        let mut quotas: Vec<Quota> = stored
            .iter()
            .map(|(_, _, q)| Quota::from_object(q))
            .collect();
        let changed = check_request(&mut quotas, &evaluator, object, old, rind_api::meta::now())
            .map_err(|why| {
                ApiError::forbidden(resource.plural, resource.group, &refused_name(object), &why)
            })?;
        if changed.is_empty() || !persist {
            return Ok(());
        }
        let mut failed = BTreeSet::new();
        for i in changed {
            let (key, revision, current) = &stored[i];
            let mut next = current.clone();
            if !next.get("status").is_some_and(Value::is_object) {
                next["status"] = serde_json::json!({});
            }
            next["status"]["used"] = quotas[i].used_json();
            match write_update(server, quotas_resource, key, *revision, current, next).await {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => {
                    failed.insert(quotas[i].name.clone());
                    last_failed.clone_from(&quotas[i].name);
                }
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(store_error(e, quotas_resource, &quotas[i].name)),
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        pending = Some(failed);
    }
    // Upstream answers with the last failed status update's error.
    Err(ApiError::modified("resourcequotas", "", &last_failed))
}
