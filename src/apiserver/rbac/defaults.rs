//! The ClusterRoles and ClusterRoleBindings every cluster starts with: upstream's
//! user-facing roles (cluster-admin, admin, edit, view with their aggregation),
//! discovery and self-review access for everyone authenticated, kubeadm's binding of
//! the admin kubeconfig's group, and roles for our own components' identities.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{Value, json};

/// Labels upstream marks bootstrap policy objects with.
fn bootstrap_labels() -> Value {
    json!({"kubernetes.io/bootstrapping": "rbac-defaults"})
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn urls(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn cluster_admin() -> Vec<Value> {
    vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])]
}

/// cluster-admin's rules, typed (what `system:masters` members hold).
pub fn cluster_admin_rules() -> Vec<PolicyRule> {
    cluster_admin()
        .into_iter()
        .filter_map(|r| serde_json::from_value(r).ok())
        .collect()
}

/// What `view` holds: reading namespaced workloads, but not secrets.
fn aggregate_to_view() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
                "namespaces",
            ],
            READ,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], READ),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
            READ,
        ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            READ,
        ),
        rule(
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            READ,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            READ,
        ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
            READ,
        ),
    ]
}

/// What `edit` adds: writing workloads, reading secrets, exec and port-forward.
fn aggregate_to_edit() -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
            READ,
        ),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
            WRITE,
        ),
        rule(
            &[""],
            &["pods/eviction", "serviceaccounts/token"],
            &["create"],
        ),
        rule(
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
            WRITE,
        ),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
            WRITE,
        ),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
        rule(&["batch"], &["cronjobs", "jobs"], WRITE),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
            WRITE,
        ),
        rule(&["policy"], &["poddisruptionbudgets"], WRITE),
        rule(&["discovery.k8s.io"], &["endpointslices"], WRITE),
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
        ),
    ]
}

/// What `admin` adds: managing access within the namespace.
fn aggregate_to_admin() -> Vec<Value> {
    vec![
        rule(
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
            &["create"],
        ),
        rule(
            &["rbac.authorization.k8s.io"],
            &["rolebindings", "roles"],
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
        ),
    ]
}

/// The scheduler reads the whole cluster state it scores against and writes only
/// bindings, pod status (conditions, nominations), preemption deletes, events and
/// its leader lease.
fn kube_scheduler() -> Vec<Value> {
    vec![
        rule(&["*"], &["*"], READ),
        rule(&[""], &["bindings", "pods/binding"], &["create"]),
        rule(&[""], &["pods/status"], &["patch", "update"]),
        rule(&[""], &["pods"], &["delete"]),
        // Volume binding: a WaitForFirstConsumer claim is annotated with the chosen node.
        rule(&[""], &["persistentvolumeclaims"], &["patch", "update"]),
        rule(
            &["", "events.k8s.io"],
            &["events"],
            &["create", "patch", "update"],
        ),
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["create", "get", "update"],
        ),
    ]
}

/// A kubelet registers and updates its Node and lease, runs the pods bound to it and
/// reads what their volumes and environment reference. Upstream narrows this to the
/// node's own objects with the Node authorizer, which rind does not have.
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
    ]
}

fn cluster_role(name: &str, rules: Vec<Value>, labels: Value) -> Value {
    let mut labels = labels;
    if let (Some(map), Some(defaults)) = (
        labels.as_object_mut(),
        bootstrap_labels().as_object().cloned(),
    ) {
        map.extend(defaults);
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules,
    })
}

/// A role whose rules come from every ClusterRole labelled `aggregate-to-<to>`;
/// `rules` is the union at bootstrap, as upstream's aggregation controller writes it.
fn aggregated(name: &str, to: &[&str], rules: Vec<Value>, labels: Value) -> Value {
    let selectors: Vec<Value> = to
        .iter()
        .map(|t| json!({"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{t}"): "true"}}))
        .collect();
    let mut role = cluster_role(name, rules, labels);
    role["aggregationRule"] = json!({"clusterRoleSelectors": selectors});
    role
}

fn aggregate_label(to: &str) -> Value {
    json!({format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"})
}

pub fn cluster_roles() -> Vec<Value> {
    let view = aggregate_to_view();
    let edit: Vec<Value> = view.iter().cloned().chain(aggregate_to_edit()).collect();
    let admin: Vec<Value> = edit.iter().cloned().chain(aggregate_to_admin()).collect();
    vec![
        cluster_role("cluster-admin", cluster_admin(), json!({})),
        cluster_role(
            "system:discovery",
            vec![urls(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
            json!({}),
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
            json!({}),
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
                &["get"],
            )],
            json!({}),
        ),
        aggregated("admin", &["admin"], admin, json!({})),
        aggregated("edit", &["edit"], edit, aggregate_label("admin")),
        aggregated("view", &["view"], view, {
            let mut labels = aggregate_label("admin");
            if let (Some(map), Some(edit)) = (
                labels.as_object_mut(),
                aggregate_label("edit").as_object().cloned(),
            ) {
                map.extend(edit);
            }
            labels
        }),
        cluster_role(
            "system:aggregate-to-admin",
            aggregate_to_admin(),
            aggregate_label("admin"),
        ),
        cluster_role(
            "system:aggregate-to-edit",
            aggregate_to_edit(),
            aggregate_label("edit"),
        ),
        cluster_role(
            "system:aggregate-to-view",
            aggregate_to_view(),
            aggregate_label("view"),
        ),
        cluster_role("system:kube-scheduler", kube_scheduler(), json!({})),
        // rind's controller-manager runs every controller under this one identity
        // (upstream gives each its own service account); the namespace and garbage
        // collectors alone need to delete any kind of object, custom ones included.
        cluster_role("system:kube-controller-manager", cluster_admin(), json!({})),
        cluster_role("system:node", node(), json!({})),
    ]
}

fn binding(name: &str, role: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, name)| {
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name})
        })
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": bootstrap_labels(),
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding(
            "cluster-admin",
            "cluster-admin",
            &[("Group", "system:masters")],
        ),
        binding(
            "system:discovery",
            "system:discovery",
            &[("Group", "system:authenticated")],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &[("Group", "system:authenticated")],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[
                ("Group", "system:authenticated"),
                ("Group", "system:unauthenticated"),
            ],
        ),
        // kubeadm's binding: the admin kubeconfig's certificate is in this group.
        binding(
            "kubeadm:cluster-admins",
            "cluster-admin",
            &[("Group", "kubeadm:cluster-admins")],
        ),
        binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            &[("User", "system:kube-scheduler")],
        ),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            &[("User", "system:kube-controller-manager")],
        ),
        // Without a Node authorizer, kubelets get their role through their group.
        binding("system:node", "system:node", &[("Group", "system:nodes")]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};

    #[test]
    fn defaults_are_valid_rbac_objects_and_every_binding_has_its_role() {
        let roles: Vec<ClusterRole> = cluster_roles()
            .into_iter()
            .map(|r| serde_json::from_value(r).unwrap())
            .collect();
        let names: Vec<String> = roles
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect();
        for b in cluster_role_bindings() {
            let b: ClusterRoleBinding = serde_json::from_value(b).unwrap();
            assert!(names.contains(&b.role_ref.name), "{}", b.role_ref.name);
        }
        let admin = roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some("admin"))
            .unwrap();
        // admin holds everything edit and view hold.
        assert!(admin.rules.as_ref().unwrap().len() > aggregate_to_edit().len());
        assert!(admin.aggregation_rule.is_some());
    }
}
