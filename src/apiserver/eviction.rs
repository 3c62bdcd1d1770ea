//! `POST pods/NAME/eviction`: a pod deletion that respects PodDisruptionBudgets
//! (`kubectl drain` evicts through it and retries while it answers 429).

use super::handlers::{
    DeleteOptions, Filter, MAX_RETRIES, collect, delete_object, read, store_error, write_update,
};
use super::request::Query;
use super::{Json, Server};
use rind_api::disruption;
use rind_api::meta;
use rind_api::registry::Resource;
use rind_api::status::{ApiError, Cause, StatusDetails, success};
use rind_store::StoreError;
use serde_json::Value;

fn too_many_requests(message: &str, cause: Option<String>) -> ApiError {
    ApiError {
        code: 429,
        reason: "TooManyRequests",
        message: message.to_string(),
        details: cause.map(|message| {
            Box::new(StatusDetails::causes(vec![Cause {
                reason: "DisruptionBudget",
                message,
                field: String::new(),
            }]))
        }),
        continue_token: None,
    }
}

/// Takes one disruption from the budget covering the pod, or says why not; a dry run
/// only checks.
async fn take_disruption(
    server: &Server,
    ns: Option<&str>,
    pod: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let budgets = server
        .registry
        .lookup("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not registered"))?;
    let filter = Filter::from_query(budgets, &Query::default())?;
    for _ in 0..MAX_RETRIES {
        let (all, _, _) = collect(server, budgets, ns, &filter, 0, &Query::default()).await?;
        let covering = disruption::covering(pod, &all);
        let pdb = match covering.as_slice() {
            [] => return Ok(()),
            [one] => (*one).clone(),
            _ => {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
        };
        if let Some(why) = disruption::refusal(&pdb) {
            return Err(too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
                Some(why),
            ));
        }
        if dry_run {
            return Ok(());
        }
        let pdb_name = meta::name(&pdb).to_string();
        let key = budgets.key(ns, &pdb_name);
        let (kv, current) = read(server, budgets, &key, &pdb_name).await?;
        let mut next = current.clone();
        disruption::record(&mut next, meta::name(pod), meta::now());
        match write_update(server, budgets, &key, kv.mod_revision, &current, next).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(e, budgets, &pdb_name)),
        }
    }
    Err(ApiError::modified(
        budgets.plural,
        budgets.group,
        meta::name(pod),
    ))
}

pub async fn evict(
    server: &Server,
    pods: &Resource,
    ns: Option<&str>,
    name: &str,
    eviction: Value,
    query: &Query,
) -> Result<Json, ApiError> {
    let options = DeleteOptions::from_request(eviction.get("deleteOptions"), query)?;
    let (_, pod) = read(server, pods, &pods.key(ns, name), name).await?;
    let finished = matches!(
        meta::str_at(&pod, &["status", "phase"]),
        Some("Succeeded" | "Failed")
    );
    let deleting = meta::str_at(&pod, &["metadata", "deletionTimestamp"]).is_some();
    // Pods that are done or already going cost the budget nothing.
    if !finished && !deleting {
        take_disruption(server, ns, &pod, options.is_dry_run()).await?;
    }
    delete_object(server, pods, ns, name, &options).await?;
    Ok(Json::bytes(
        http::StatusCode::CREATED,
        success(None).to_body(),
        super::request::Rendering::Object,
    ))
}
