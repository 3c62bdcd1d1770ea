//! Startup reconciliation of the default RBAC policy, as upstream's API server does it
//! (`pkg/registry/rbac/reconciliation`): a missing object is created; an existing one
//! gets the labels, annotations, rules, aggregation selectors and subjects it lacks,
//! and nothing is taken away, so permissions a user added stay; an object whose
//! `rbac.authorization.kubernetes.io/autoupdate` annotation is `"false"` is the
//! user's and is left exactly as it is. Several API servers starting together are
//! harmless: every write is conditional on the revision read.

use super::defaults::{AUTOUPDATE_ANNOTATION, Policy};
use crate::Server;
use crate::bootstrap::Snapshot;
use crate::handlers::{create_object, decode, store_error, write_update};
use k8s_openapi::api::rbac::v1::PolicyRule;
use rind_api::rbac::uncovered;
use rind_api::registry::Resource;
use rind_api::status::ApiError;
use rind_store::StoreError;
use serde_json::{Map, Value, json};

/// What reconciling one stored object against its default calls for.
#[derive(Debug, PartialEq)]
pub enum Reconciled {
    Unchanged,
    /// Write this over the stored object.
    Update(Value),
    /// A binding's roleRef cannot change: delete the stored one and create this.
    Recreate(Value),
}

/// Reconciles one stored object of a kind with its default.
type Reconcile = fn(&Value, &Value) -> Reconciled;

/// How many times one object is re-read after losing a race with another writer.
const ATTEMPTS: usize = 5;

/// Whether the user has taken the object over.
fn protected(existing: &Value) -> bool {
    existing["metadata"]["annotations"][AUTOUPDATE_ANNOTATION] == "false"
}

/// Adds the expected labels and annotations the stored object lacks; where both have a
/// key, the stored value stays (upstream's `merge(expected, existing)`).
fn merge_metadata(result: &mut Value, expected: &Value) -> bool {
    let mut changed = false;
    for field in ["labels", "annotations"] {
        let Some(wanted) = expected["metadata"][field].as_object() else {
            continue;
        };
        let Some(meta) = result["metadata"].as_object_mut() else {
            continue;
        };
        let have = meta
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        if !have.is_object() {
            *have = Value::Object(Map::new());
        }
        if let Some(have) = have.as_object_mut() {
            for (key, value) in wanted {
                if !have.contains_key(key) {
                    have.insert(key.clone(), value.clone());
                    changed = true;
                }
            }
        }
    }
    changed
}

fn rules_of(object: &Value) -> Vec<PolicyRule> {
    object
        .get("rules")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default()
}

/// A Role or ClusterRole: the union of the stored rules and the default's, and the
/// default's aggregation selectors added to the stored ones.
pub fn reconcile_role(existing: &Value, expected: &Value) -> Reconciled {
    if protected(existing) {
        return Reconciled::Unchanged;
    }
    let mut result = existing.clone();
    let mut changed = merge_metadata(&mut result, expected);
    let missing = uncovered(&rules_of(existing), &rules_of(expected));
    if !missing.is_empty() {
        let mut rules: Vec<Value> = existing
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        rules.extend(missing.iter().filter_map(|r| serde_json::to_value(r).ok()));
        result["rules"] = json!(rules);
        changed = true;
    }
    if let Some(wanted) = expected["aggregationRule"]["clusterRoleSelectors"].as_array() {
        let mut selectors = existing["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for selector in wanted {
            if !selectors.contains(selector) {
                selectors.push(selector.clone());
                changed = true;
            }
        }
        result["aggregationRule"] = json!({"clusterRoleSelectors": selectors});
    }
    if changed {
        Reconciled::Update(result)
    } else {
        Reconciled::Unchanged
    }
}

/// Subjects are the same when they name the same kind, name and namespace.
fn same_subject(a: &Value, b: &Value) -> bool {
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    ["kind", "name", "namespace"]
        .iter()
        .all(|key| text(a, key) == text(b, key))
}

/// A RoleBinding or ClusterRoleBinding: the default's subjects added to the stored
/// ones; a changed roleRef means deleting and creating it again.
pub fn reconcile_binding(existing: &Value, expected: &Value) -> Reconciled {
    if protected(existing) {
        return Reconciled::Unchanged;
    }
    let mut result = existing.clone();
    let mut changed = merge_metadata(&mut result, expected);
    let mut subjects = existing["subjects"].as_array().cloned().unwrap_or_default();
    for subject in expected["subjects"].as_array().into_iter().flatten() {
        if !subjects.iter().any(|s| same_subject(s, subject)) {
            subjects.push(subject.clone());
            changed = true;
        }
    }
    if !subjects.is_empty() {
        result["subjects"] = json!(subjects);
    }
    if existing["roleRef"] != expected["roleRef"] {
        result["roleRef"] = expected["roleRef"].clone();
        if let Some(meta) = result["metadata"].as_object_mut() {
            for server_owned in ["resourceVersion", "uid", "creationTimestamp"] {
                meta.remove(server_owned);
            }
        }
        return Reconciled::Recreate(result);
    }
    if changed {
        Reconciled::Update(result)
    } else {
        Reconciled::Unchanged
    }
}

/// Creates or reconciles every object of `policy`.
pub async fn ensure_policy(
    server: &Server,
    seen: &Snapshot,
    policy: &Policy,
) -> Result<(), ApiError> {
    let kinds: [(&str, &[Value], Reconcile); 4] = [
        ("clusterroles", &policy.cluster_roles, reconcile_role),
        (
            "clusterrolebindings",
            &policy.cluster_role_bindings,
            reconcile_binding,
        ),
        ("roles", &policy.roles, reconcile_role),
        ("rolebindings", &policy.role_bindings, reconcile_binding),
    ];
    // The kinds side by side too: a binding may name a role not stored yet, as upstream
    // allows, and the writes of an HA cluster's API servers starting together on a busy
    // machine wait on etcd's commits, not on each other.
    let per_kind = kinds.map(|(plural, objects, reconcile)| async move {
        let resource = server
            .registry
            .lookup("rbac.authorization.k8s.io", "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
        crate::bootstrap::concurrently(
            objects
                .iter()
                .map(|object| ensure_one(server, seen, resource, object, reconcile))
                .collect(),
        )
        .await
    });
    futures::future::try_join_all(per_kind).await?;
    Ok(())
}

async fn ensure_one(
    server: &Server,
    seen: &Snapshot,
    resource: &'static Resource,
    expected: &Value,
    reconcile: Reconcile,
) -> Result<(), ApiError> {
    let name = expected["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = expected["metadata"]["namespace"].as_str();
    let key = resource.key(namespace, name);
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        let stored = seen
            .look(server, resource, namespace, name, attempt == 0)
            .await?;
        let Some(kv) = stored else {
            match create_object(server, resource, namespace, expected.clone()).await {
                Err(e) if e.code == 409 => {
                    last = Some(e);
                    continue;
                }
                other => return other.map(drop),
            }
        };
        let current = decode(&kv)?;
        let written = match reconcile(&current, expected) {
            Reconciled::Unchanged => return Ok(()),
            Reconciled::Update(next) => {
                write_update(server, resource, &key, kv.mod_revision, &current, next)
                    .await
                    .map(drop)
            }
            Reconciled::Recreate(next) => {
                match server.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(_) => {}
                    Err(e) => {
                        last = Some(store_error(e, resource, name));
                        continue;
                    }
                }
                match create_object(server, resource, namespace, next).await {
                    Err(e) if e.code == 409 => {
                        last = Some(e);
                        continue;
                    }
                    other => return other.map(drop),
                }
            }
        };
        match written {
            Ok(()) => return Ok(()),
            Err(e @ (StoreError::Conflict { .. } | StoreError::NotFound(_))) => {
                last = Some(store_error(e, resource, name));
            }
            Err(e) => return Err(store_error(e, resource, name)),
        }
    }
    Err(last.unwrap_or_else(|| {
        ApiError::internal(format!("cannot reconcile {} {name:?}", resource.plural))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(annotations: Value, labels: Value, rules: Value) -> Value {
        json!({"metadata": {"name": "r", "annotations": annotations, "labels": labels}, "rules": rules})
    }

    #[test]
    fn roles_gain_missing_rules_and_keep_added_ones() {
        let expected = role(
            json!({AUTOUPDATE_ANNOTATION: "true"}),
            json!({"kubernetes.io/bootstrapping": "rbac-defaults"}),
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
        );
        let edited = role(
            json!({AUTOUPDATE_ANNOTATION: "true", "note": "mine"}),
            json!({}),
            json!([
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}
            ]),
        );
        let Reconciled::Update(next) = reconcile_role(&edited, &expected) else {
            panic!("expected an update");
        };
        assert_eq!(
            next["rules"],
            json!([
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}
            ])
        );
        assert_eq!(
            next["metadata"]["labels"]["kubernetes.io/bootstrapping"],
            "rbac-defaults"
        );
        assert_eq!(next["metadata"]["annotations"]["note"], "mine");
        assert_eq!(reconcile_role(&next, &expected), Reconciled::Unchanged);
        // Marked as the user's: left alone.
        let mut taken = edited.clone();
        taken["metadata"]["annotations"][AUTOUPDATE_ANNOTATION] = json!("false");
        assert_eq!(reconcile_role(&taken, &expected), Reconciled::Unchanged);
    }

    #[test]
    fn aggregation_selectors_are_added() {
        let selector =
            json!({"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}});
        let expected = json!({"metadata": {"name": "edit"}, "aggregationRule": {"clusterRoleSelectors": [selector]}});
        let mine = json!({"matchLabels": {"team": "a"}});
        let existing = json!({"metadata": {"name": "edit"}, "aggregationRule": {"clusterRoleSelectors": [mine]},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        let Reconciled::Update(next) = reconcile_role(&existing, &expected) else {
            panic!("expected an update");
        };
        assert_eq!(
            next["aggregationRule"]["clusterRoleSelectors"],
            json!([mine, selector])
        );
        // Aggregated rules are the controller's: they stay.
        assert_eq!(next["rules"], existing["rules"]);
    }

    #[test]
    fn bindings_gain_subjects_and_are_recreated_for_a_new_role() {
        let user = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "u"});
        let other = json!({"kind": "ServiceAccount", "name": "sa", "namespace": "ns"});
        let expected = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "r"}, "subjects": [user]});
        let existing = json!({"metadata": {"name": "b", "uid": "1"}, "roleRef": {"kind": "ClusterRole", "name": "r"}, "subjects": [other]});
        let Reconciled::Update(next) = reconcile_binding(&existing, &expected) else {
            panic!("expected an update");
        };
        assert_eq!(next["subjects"], json!([other, user]));
        assert_eq!(reconcile_binding(&next, &expected), Reconciled::Unchanged);
        let mut moved = next.clone();
        moved["roleRef"]["name"] = json!("old");
        let Reconciled::Recreate(again) = reconcile_binding(&moved, &expected) else {
            panic!("expected a recreate");
        };
        assert_eq!(again["roleRef"]["name"], "r");
        assert!(again["metadata"].get("uid").is_none());
    }
}
