//! The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule`
//! holds the union of the rules of every other ClusterRole its selectors match, as
//! upstream's `clusterrole-aggregation` controller keeps it. That is how `admin`,
//! `edit` and `view` (whose defaults carry no rules of their own) gain what the
//! `system:aggregate-to-*` roles grant, and what a CRD's role labelled
//! `rbac.authorization.k8s.io/aggregate-to-edit: "true"` adds.
//!
//! Any ClusterRole change can change any union, so every change re-derives all of
//! them from one reflector store (about eighty roles: a few microseconds).

use super::{ControllerError, ERROR_REQUEUE, RESYNC};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rind_api::rbac::aggregates;
use rind_runtime::reflect::reflect_and_notify;
use std::sync::Arc;
use tokio::sync::Notify;

/// The field manager upstream's controller writes with.
const MANAGER: &str = "clusterrole-aggregation-controller";

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let api = Api::<ClusterRole>::all(client);
    let changed = Arc::new(Notify::new());
    let notify = changed.clone();
    // The store has taken in each change before `changed` is signalled.
    let (store, watch) = reflect_and_notify(
        api.clone(),
        watcher::Config::default(),
        "clusterrole",
        move || {
            notify.notify_one();
            true
        },
    );
    let _watch = super::AbortOnDrop(watch);
    loop {
        let wait = match sync(&api, &store).await {
            Ok(()) => RESYNC,
            Err(e) => {
                tracing::warn!("clusterrole aggregation: {e}");
                ERROR_REQUEUE
            }
        };
        // A change, or the resync (or retry) period, whichever comes first.
        let _ = tokio::time::timeout(wait, changed.notified()).await;
    }
}

/// Writes every aggregated role whose rules are not the union its selectors make.
async fn sync(api: &Api<ClusterRole>, store: &Store<ClusterRole>) -> Result<(), ControllerError> {
    let roles = store.state();
    for role in roles.iter().filter(|r| r.aggregation_rule.is_some()) {
        let wanted = aggregated_rules(role, &roles);
        if role.rules.as_deref().unwrap_or_default() == wanted.as_slice() {
            continue;
        }
        let patch = serde_json::json!({"rules": wanted});
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        match api
            .patch(&role.name_any(), &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(role = %role.name_any(), "aggregated {} rules", wanted.len()),
            // Deleted meanwhile: nothing to aggregate into.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The union of the rules of the roles `role`'s selectors match (itself excluded),
/// taken in role-name order with duplicates dropped, as upstream builds it.
fn aggregated_rules(role: &ClusterRole, roles: &[Arc<ClusterRole>]) -> Vec<PolicyRule> {
    let Some(rule) = &role.aggregation_rule else {
        return Vec::new();
    };
    let mut matched: Vec<&ClusterRole> = roles
        .iter()
        .map(Arc::as_ref)
        .filter(|other| other.metadata.name != role.metadata.name)
        .filter(|other| {
            let labels: serde_json::Map<String, serde_json::Value> = other
                .labels()
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            aggregates(rule, Some(&labels))
        })
        .collect();
    matched.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for other in matched {
        for rule in other.rules.iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(value: serde_json::Value) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn union_of_matching_roles_in_name_order() {
        let edit = role(json!({"metadata": {"name": "edit"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}}]}}));
        let label = json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"});
        let pods = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
        let widgets =
            json!({"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["*"]});
        let roles = vec![
            edit.clone(),
            role(
                json!({"metadata": {"name": "z-widgets", "labels": label}, "rules": [widgets, pods]}),
            ),
            role(json!({"metadata": {"name": "a-pods", "labels": label}, "rules": [pods]})),
            role(
                json!({"metadata": {"name": "unlabelled"}, "rules": [{"apiGroups": ["x"], "resources": ["y"], "verbs": ["get"]}]}),
            ),
        ];
        let rules: Vec<serde_json::Value> = aggregated_rules(&edit, &roles)
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        assert_eq!(rules, [pods, widgets]);
    }
}
