//! The RBAC authorizer: Roles, ClusterRoles and their bindings evaluated from
//! watch-fed mirrors of the store, as upstream's RBAC authorizer does it. Members of
//! `system:masters` are allowed everything without a policy lookup.

pub mod defaults;
pub mod reconcile;

use super::User;
use super::mirror::Mirror;
use super::request::{Query, ResourceRequest, Target};
use http::Method;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use rind_api::rbac::{
    Attributes, MASTERS, ResourceAttributes, aggregates, effective_groups, forbidden_reason,
    rule_allows, subject_matches,
};
use rind_api::status::ApiError;
use rind_store::{Store, StoreError};
use std::sync::Arc;

const ROLES: &str = "/registry/roles/";
const ROLE_BINDINGS: &str = "/registry/rolebindings/";
const CLUSTER_ROLES: &str = "/registry/clusterroles/";
const CLUSTER_ROLE_BINDINGS: &str = "/registry/clusterrolebindings/";

/// An authorizer's answer. Neither allowed nor denied means "no opinion", which the
/// API server treats as a denial (RBAC never denies explicitly).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub denied: bool,
    pub reason: String,
}

pub struct Rbac {
    roles: Arc<Mirror<Role>>,
    role_bindings: Arc<Mirror<RoleBinding>>,
    cluster_roles: Arc<Mirror<ClusterRole>>,
    cluster_role_bindings: Arc<Mirror<ClusterRoleBinding>>,
}

/// What a request does, in authorizer terms (upstream's RequestInfo).
pub fn attributes(target: &Target, method: &Method, uri: &http::Uri) -> Attributes {
    let Target::Resource(r) = target else {
        return path_attributes(method, uri);
    };
    resource_attributes(r, method, uri)
}

/// What a request for a resource does, in authorizer terms.
pub fn resource_attributes(r: &ResourceRequest, method: &Method, uri: &http::Uri) -> Attributes {
    let watch = r.watch_path || Query::parse(uri).is_ok_and(|q| q.flag("watch"));
    let subresource = r.subresource.clone().unwrap_or_default();
    let verb = match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if r.name.is_some() => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if r.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    };
    let name = r.name.clone().unwrap_or_default();
    // A namespace is in itself: `get namespace x` is a request in namespace x.
    let namespace = match &r.namespace {
        Some(ns) => ns.clone(),
        None if r.resource.group.is_empty() && r.resource.plural == "namespaces" => name.clone(),
        None => String::new(),
    };
    Attributes {
        verb: verb.to_string(),
        resource: Some(ResourceAttributes {
            namespace,
            group: r.resource.group.to_string(),
            version: r.resource.version.to_string(),
            resource: r.resource.plural.to_string(),
            subresource,
            name,
        }),
        path: uri.path().to_string(),
    }
}

/// A request for a URL that is not an API resource: its verb is the lowercased method.
pub fn path_attributes(method: &Method, uri: &http::Uri) -> Attributes {
    Attributes {
        verb: method.as_str().to_ascii_lowercase(),
        resource: None,
        path: uri.path().to_string(),
    }
}

/// The 403 for a denied request, worded as upstream's.
pub fn forbidden(user: &User, attributes: &Attributes) -> ApiError {
    let reason = forbidden_reason(&user.name, attributes);
    match &attributes.resource {
        Some(r) => ApiError::forbidden(&r.resource, &r.group, &r.name, &reason),
        None => ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!("forbidden: {reason}"),
            details: Some(Box::default()),
        },
    }
}

impl Default for Rbac {
    /// Empty mirrors; `start` fills them.
    fn default() -> Rbac {
        Rbac {
            roles: Mirror::new(ROLES),
            role_bindings: Mirror::new(ROLE_BINDINGS),
            cluster_roles: Mirror::new(CLUSTER_ROLES),
            cluster_role_bindings: Mirror::new(CLUSTER_ROLE_BINDINGS),
        }
    }
}

impl Rbac {
    /// Fills the mirrors from the store and keeps them current.
    pub async fn start(&self, store: Arc<dyn Store>) -> Result<(), StoreError> {
        self.roles.start(store.clone()).await?;
        self.role_bindings.start(store.clone()).await?;
        self.cluster_roles.start(store.clone()).await?;
        self.cluster_role_bindings.start(store).await
    }

    /// A ClusterRole's rules, plus those of every ClusterRole its aggregation rule
    /// selects (upstream's aggregation controller writes the same union into the role).
    fn with_cluster_role_rules<R>(&self, name: &str, f: impl FnOnce(&[PolicyRule]) -> R) -> R {
        let Some(role) = self.cluster_roles.get(&format!("{CLUSTER_ROLES}{name}")) else {
            return f(&[]);
        };
        if role.aggregation_rule.is_none() {
            return f(role.rules.as_deref().unwrap_or_default());
        }
        f(&self.cluster_role_rules(name))
    }

    fn cluster_role_rules(&self, name: &str) -> Vec<PolicyRule> {
        let mut visiting = vec![name.to_string()];
        self.aggregated_rules(name, &mut visiting)
    }

    /// A role's rules and, when it aggregates, those of the roles it selects, theirs
    /// aggregated in turn: the defaults' `admin` takes `edit`'s, which takes `view`'s,
    /// all three empty until upstream's controller writes the unions. `visiting`
    /// holds the roles being expanded, so a cycle of selectors ends.
    fn aggregated_rules(&self, name: &str, visiting: &mut Vec<String>) -> Vec<PolicyRule> {
        let Some(role) = self.cluster_roles.get(&format!("{CLUSTER_ROLES}{name}")) else {
            return Vec::new();
        };
        let mut rules = role.rules.clone().unwrap_or_default();
        if let Some(aggregation) = &role.aggregation_rule {
            for other in self.cluster_roles.all() {
                let other_name = other.metadata.name.clone().unwrap_or_default();
                if visiting.contains(&other_name) {
                    continue;
                }
                let labels = other
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| serde_json::to_value(l).ok());
                if aggregates(aggregation, labels.as_ref().and_then(|l| l.as_object())) {
                    visiting.push(other_name.clone());
                    for rule in self.aggregated_rules(&other_name, visiting) {
                        if !rules.contains(&rule) {
                            rules.push(rule);
                        }
                    }
                    visiting.pop();
                }
            }
        }
        rules
    }

    /// The rule sets bound to `user` cluster-wide and, when `namespace` is not
    /// empty, in that namespace.
    /// Calls `visit` with each rule set `user` holds in `namespace` (cluster-wide ones
    /// first) and a way to describe where it comes from, until `visit` returns
    /// something. Rules are borrowed from the mirrors where no aggregation merges them.
    fn find_grant<R>(
        &self,
        user: &User,
        namespace: &str,
        mut visit: impl FnMut(&[PolicyRule], &dyn Fn() -> String) -> Option<R>,
    ) -> Option<R> {
        let groups = effective_groups(&user.name, &user.groups);
        for binding in self.cluster_role_bindings.all() {
            let Some(subject) = binding
                .subjects
                .iter()
                .flatten()
                .find(|s| subject_matches(s, &user.name, &groups, ""))
            else {
                continue;
            };
            if binding.role_ref.kind != "ClusterRole" {
                continue;
            }
            let source = || {
                format!(
                    "ClusterRoleBinding {:?} of ClusterRole {:?} to {} {:?}",
                    binding.metadata.name.as_deref().unwrap_or_default(),
                    binding.role_ref.name,
                    subject.kind,
                    subject.name
                )
            };
            let found =
                self.with_cluster_role_rules(&binding.role_ref.name, |rules| visit(rules, &source));
            if found.is_some() {
                return found;
            }
        }
        if namespace.is_empty() {
            return None;
        }
        for binding in self
            .role_bindings
            .under(&format!("{ROLE_BINDINGS}{namespace}/"))
        {
            let Some(subject) = binding
                .subjects
                .iter()
                .flatten()
                .find(|s| subject_matches(s, &user.name, &groups, namespace))
            else {
                continue;
            };
            let role = &binding.role_ref;
            let source = || {
                format!(
                    "RoleBinding {:?} of {} {:?} to {} {:?}",
                    binding.metadata.name.as_deref().unwrap_or_default(),
                    role.kind,
                    role.name,
                    subject.kind,
                    subject.name
                )
            };
            let found = match role.kind.as_str() {
                "ClusterRole" => {
                    self.with_cluster_role_rules(&role.name, |rules| visit(rules, &source))
                }
                "Role" => {
                    let held = self.roles.get(&format!("{ROLES}{namespace}/{}", role.name));
                    let rules = held.as_ref().and_then(|r| r.rules.as_deref());
                    visit(rules.unwrap_or_default(), &source)
                }
                _ => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// Whether `user` may do what `attributes` describe.
    pub fn authorize(&self, user: &User, attributes: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Decision {
                allowed: true,
                denied: false,
                reason: format!("{MASTERS} may do everything"),
            };
        }
        let namespace = attributes
            .resource
            .as_ref()
            .map(|r| r.namespace.as_str())
            .unwrap_or_default();
        // The first rule set that allows is enough: nothing else is looked up.
        let allowed_by = self.find_grant(user, namespace, |rules, source| {
            rules
                .iter()
                .any(|r| rule_allows(r, attributes))
                .then(source)
        });
        match allowed_by {
            Some(source) => Decision {
                allowed: true,
                denied: false,
                reason: format!("RBAC: allowed by {source}"),
            },
            None => Decision {
                allowed: false,
                denied: false,
                reason: String::new(),
            },
        }
    }

    /// The rules `user` holds in `namespace` (cluster-wide ones included), as a
    /// SelfSubjectRulesReview reports them.
    pub fn rules(&self, user: &User, namespace: &str) -> Vec<PolicyRule> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return defaults::cluster_admin_rules();
        }
        let mut rules: Vec<PolicyRule> = Vec::new();
        self.find_grant(user, namespace, |held, _| {
            for rule in held {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
            None::<()>
        });
        rules
    }
}
