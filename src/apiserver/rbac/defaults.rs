//! The RBAC policy every cluster starts with: upstream's bootstrap policy, whole, read
//! from `bootstrap-policy.yaml` (a transcription of upstream's policy fixtures, cited
//! there), plus what a kubeadm cluster adds and what rind's own components need
//! beyond it. The latter carry no `kubernetes.io/bootstrapping` label, so
//! `kubectl get clusterroles -l kubernetes.io/bootstrapping=rbac-defaults` lists
//! upstream's roles and nothing else.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Upstream's fixture, transcribed.
const FIXTURE: &str = include_str!("bootstrap-policy.yaml");

/// The label upstream marks every bootstrap policy object with.
pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
/// Reconciliation at startup updates an object unless this annotation says "false".
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const RBAC_VERSION: &str = "rbac.authorization.k8s.io/v1";

#[derive(Debug, thiserror::Error)]
#[error("the built-in RBAC policy (bootstrap-policy.yaml) does not parse: {0}")]
pub struct PolicyError(String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Fixture {
    cluster_roles: Vec<RoleEntry>,
    controller_roles: Vec<RoleEntry>,
    cluster_role_bindings: Vec<BindingEntry>,
    roles: Vec<RoleEntry>,
    role_bindings: Vec<BindingEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RoleEntry {
    #[serde(default)]
    namespace: Option<String>,
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    aggregation_rule: Option<Value>,
    #[serde(default)]
    rules: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BindingEntry {
    #[serde(default)]
    namespace: Option<String>,
    name: String,
    role_ref: String,
    #[serde(default)]
    subjects: Vec<Value>,
}

/// A policy: the objects to reconcile, in the order they are created.
#[derive(Debug, Default)]
pub struct Policy {
    pub cluster_roles: Vec<Value>,
    pub cluster_role_bindings: Vec<Value>,
    pub roles: Vec<Value>,
    pub role_bindings: Vec<Value>,
}

fn metadata(name: &str, namespace: Option<&str>, labels: Map<String, Value>) -> Value {
    let mut meta = json!({
        "name": name,
        "labels": labels,
        "annotations": {AUTOUPDATE_ANNOTATION: "true"},
    });
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

fn bootstrap_labels(extra: &BTreeMap<String, String>) -> Map<String, Value> {
    let mut labels: Map<String, Value> = extra.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    labels.insert(BOOTSTRAPPING_LABEL.into(), json!("rbac-defaults"));
    labels
}

fn role(kind: &str, entry: &RoleEntry) -> Value {
    let mut role = json!({
        "apiVersion": RBAC_VERSION,
        "kind": kind,
        "metadata": metadata(&entry.name, entry.namespace.as_deref(), bootstrap_labels(&entry.labels)),
    });
    if let Some(rule) = &entry.aggregation_rule {
        role["aggregationRule"] = rule.clone();
    }
    if let Some(rules) = &entry.rules {
        role["rules"] = json!(rules);
    }
    role
}

fn binding(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    role_kind: &str,
    role_name: &str,
    subjects: &[Value],
    labels: Map<String, Value>,
) -> Value {
    let mut binding = json!({
        "apiVersion": RBAC_VERSION,
        "kind": kind,
        "metadata": metadata(name, namespace, labels),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": role_kind, "name": role_name},
    });
    if !subjects.is_empty() {
        binding["subjects"] = json!(subjects);
    }
    binding
}

/// Upstream's bootstrap policy, exactly as its fixtures list it.
pub fn bootstrap_policy() -> Result<Policy, PolicyError> {
    let fixture: Fixture =
        rind_runtime::yaml::from_str(FIXTURE).map_err(|e| PolicyError(e.to_string()))?;
    let mut policy = Policy::default();
    for entry in fixture
        .cluster_roles
        .iter()
        .chain(&fixture.controller_roles)
    {
        policy.cluster_roles.push(role("ClusterRole", entry));
    }
    let labels = bootstrap_labels(&BTreeMap::new());
    for entry in &fixture.cluster_role_bindings {
        policy.cluster_role_bindings.push(binding(
            "ClusterRoleBinding",
            &entry.name,
            None,
            "ClusterRole",
            &entry.role_ref,
            &entry.subjects,
            labels.clone(),
        ));
    }
    // Upstream's ControllerRoleBindings: each controller runs as the kube-system
    // ServiceAccount named after its role.
    for entry in &fixture.controller_roles {
        let account = entry
            .name
            .strip_prefix("system:controller:")
            .unwrap_or(&entry.name);
        policy.cluster_role_bindings.push(binding(
            "ClusterRoleBinding",
            &entry.name,
            None,
            "ClusterRole",
            &entry.name,
            &[json!({"kind": "ServiceAccount", "name": account, "namespace": "kube-system"})],
            labels.clone(),
        ));
    }
    for entry in &fixture.roles {
        policy.roles.push(role("Role", entry));
    }
    for entry in &fixture.role_bindings {
        policy.role_bindings.push(binding(
            "RoleBinding",
            &entry.name,
            entry.namespace.as_deref(),
            "Role",
            &entry.role_ref,
            &entry.subjects,
            labels.clone(),
        ));
    }
    Ok(policy)
}

/// The whole default policy: upstream's, then kubeadm's and rind's own objects.
pub fn policy() -> Result<Policy, PolicyError> {
    let mut policy = bootstrap_policy()?;
    let own = |name: &str, rules: Vec<Value>| {
        json!({
            "apiVersion": RBAC_VERSION,
            "kind": "ClusterRole",
            "metadata": metadata(name, None, Map::new()),
            "rules": rules,
        })
    };
    // rind's controller-manager runs every controller under its one identity, where
    // upstream's gives each controller its own ServiceAccount and role; the namespace
    // and garbage collectors alone need to delete any kind, custom ones included.
    policy
        .cluster_roles
        .push(own(CONTROLLER_MANAGER_ROLE, cluster_admin()));
    // Upstream's kubelets get their access from the Node authorizer, which rind does
    // not have; this role grants what rind's kubelet does.
    policy.cluster_roles.push(own(NODE_ROLE, node()));
    let user = |name: &str| json!({"apiGroup": RBAC_GROUP, "kind": "User", "name": name});
    let group = |name: &str| json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": name});
    for (name, role, subject) in [
        // kubeadm's binding: the admin kubeconfig's certificate is in this group.
        (
            "kubeadm:cluster-admins",
            "cluster-admin",
            group("kubeadm:cluster-admins"),
        ),
        (
            CONTROLLER_MANAGER_ROLE,
            CONTROLLER_MANAGER_ROLE,
            user("system:kube-controller-manager"),
        ),
        (NODE_ROLE, NODE_ROLE, group("system:nodes")),
    ] {
        policy.cluster_role_bindings.push(binding(
            "ClusterRoleBinding",
            name,
            None,
            "ClusterRole",
            role,
            &[subject],
            Map::new(),
        ));
    }
    Ok(policy)
}

/// rind's own roles, named as kubeadm names its additions.
const CONTROLLER_MANAGER_ROLE: &str = "rind:kube-controller-manager";
const NODE_ROLE: &str = "rind:node";

const READ: &[&str] = &["get", "list", "watch"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn cluster_admin() -> Vec<Value> {
    vec![
        rule(&["*"], &["*"], &["*"]),
        json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
    ]
}

/// cluster-admin's rules, typed (what `system:masters` members hold).
pub fn cluster_admin_rules() -> Vec<PolicyRule> {
    cluster_admin()
        .into_iter()
        .filter_map(|r| serde_json::from_value(r).ok())
        .collect()
}

/// A kubelet registers and updates its Node and lease, runs the pods bound to it and
/// reads what their volumes and environment reference. Upstream narrows this to the
/// node's own objects with the Node authorizer.
fn node() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "pods",
                "nodes",
                "services",
                "endpoints",
                "configmaps",
                "secrets",
                "persistentvolumeclaims",
                "persistentvolumes",
                "serviceaccounts",
                "namespaces",
            ],
            READ,
        ),
        rule(
            &[""],
            &["nodes", "nodes/status"],
            &["create", "delete", "patch", "update"],
        ),
        rule(&[""], &["pods"], &["create", "delete"]),
        rule(&[""], &["pods/status"], &["patch", "update"]),
        // Local-path reclaim: the node holding a released volume's directory removes
        // it, then the PersistentVolume (src/kubelet/local_path.rs).
        rule(&[""], &["persistentvolumes"], &["delete"]),
        rule(
            &[""],
            &["pods/eviction", "serviceaccounts/token"],
            &["create"],
        ),
        rule(
            &["", "events.k8s.io"],
            &["events"],
            &["create", "patch", "update"],
        ),
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["create", "delete", "get", "patch", "update"],
        ),
        rule(
            &["storage.k8s.io"],
            &["csidrivers", "csinodes", "volumeattachments"],
            READ,
        ),
        rule(&["node.k8s.io"], &["runtimeclasses"], READ),
        // The network agent (src/net) runs with the node's credentials and enforces
        // NetworkPolicy.
        rule(&["networking.k8s.io"], &["networkpolicies"], READ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};

    #[test]
    fn the_policy_parses_and_every_binding_has_its_role() {
        let policy = policy().unwrap();
        let roles: Vec<ClusterRole> = policy
            .cluster_roles
            .iter()
            .map(|r| serde_json::from_value(r.clone()).unwrap())
            .collect();
        let names: Vec<String> = roles
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect();
        for b in &policy.cluster_role_bindings {
            let b: ClusterRoleBinding = serde_json::from_value(b.clone()).unwrap();
            assert!(names.contains(&b.role_ref.name), "{}", b.role_ref.name);
        }
        let local: Vec<Role> = policy
            .roles
            .iter()
            .map(|r| serde_json::from_value(r.clone()).unwrap())
            .collect();
        for b in &policy.role_bindings {
            let b: RoleBinding = serde_json::from_value(b.clone()).unwrap();
            assert!(
                local
                    .iter()
                    .any(|r| r.metadata.name.as_deref() == Some(&b.role_ref.name)
                        && r.metadata.namespace == b.metadata.namespace)
            );
        }
        let delegator = roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some("system:auth-delegator"))
            .unwrap();
        assert_eq!(delegator.rules.as_ref().unwrap().len(), 2);
    }

    /// Upstream's counts: 31 cluster roles and 40 controller roles, 12 cluster role
    /// bindings plus one per controller role, 7 roles and 7 role bindings; every one
    /// labelled and annotated as upstream's.
    #[test]
    fn bootstrap_objects_are_upstreams() {
        let policy = bootstrap_policy().unwrap();
        assert_eq!(policy.cluster_roles.len(), 31 + 40);
        assert_eq!(policy.cluster_role_bindings.len(), 12 + 40);
        assert_eq!((policy.roles.len(), policy.role_bindings.len()), (7, 7));
        let all = policy
            .cluster_roles
            .iter()
            .chain(&policy.cluster_role_bindings)
            .chain(&policy.roles)
            .chain(&policy.role_bindings);
        for object in all {
            let meta = &object["metadata"];
            assert_eq!(
                meta["labels"][BOOTSTRAPPING_LABEL], "rbac-defaults",
                "{object}"
            );
            assert_eq!(
                meta["annotations"][AUTOUPDATE_ANNOTATION], "true",
                "{object}"
            );
        }
        let own = super::policy().unwrap();
        let extra: Vec<&Value> = own
            .cluster_roles
            .iter()
            .chain(&own.cluster_role_bindings)
            .filter(|o| o["metadata"]["labels"].get(BOOTSTRAPPING_LABEL).is_some())
            .collect();
        assert_eq!(
            extra.len(),
            policy.cluster_roles.len() + policy.cluster_role_bindings.len()
        );
    }
}
