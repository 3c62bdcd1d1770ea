//! The RBAC authorizer: Roles, ClusterRoles and their bindings evaluated from
//! watch-fed mirrors of the store, as upstream's RBAC authorizer does it. Members of
//! `system:masters` are allowed everything without a policy lookup.

pub mod defaults;
pub mod reconcile;

use super::User;
use super::mirror::Mirror;
use super::request::Query;
use http::Method;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use rind_api::rbac::{
    Attributes, MASTERS, ResourceAttributes, aggregates, effective_groups, forbidden_reason,
    rule_allows, subject_matches,
};
use rind_api::selector::FieldSelector;
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

/// Path segments that name a verb rather than a resource (`/api/v1/watch/pods`);
/// `proxy` has no subresource after its name.
const SPECIAL_VERBS: &[&str] = &["proxy", "watch"];
/// What may follow `/namespaces/NAME` as the namespace's own subresource.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// What a request does, in authorizer terms: upstream's `RequestInfoFactory`, which
/// reads the path alone (before anything routes it), so a resource this server does
/// not serve (`/api/v1/foos`) is still authorized as one, and whoever may not list it
/// learns 403 rather than that it is absent.
pub fn attributes(method: &Method, uri: &http::Uri) -> Attributes {
    request_info(method, uri).unwrap_or_else(|| path_attributes(method, uri))
}

/// A resource request's attributes, `None` for a non-resource URL.
fn request_info(method: &Method, uri: &http::Uri) -> Option<Attributes> {
    let trimmed = uri.path().trim_matches('/');
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
        return None;
    }
    let mut rest = &parts[1..];
    let mut group = "";
    if parts[0] == "apis" {
        if rest.len() < 3 {
            return None;
        }
        group = rest[0];
        rest = &rest[1..];
    }
    let version = rest[0];
    rest = &rest[1..];
    let mut verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    if SPECIAL_VERBS.contains(&rest[0]) {
        // Upstream cannot tell a kind from `/api/v1/watch` and fails the request;
        // as a plain URL it is denied or not found all the same.
        if rest.len() < 2 {
            return None;
        }
        verb = rest[0];
        rest = &rest[1..];
    }
    let mut namespace = "";
    if rest[0] == "namespaces" && rest.len() > 1 {
        namespace = rest[1];
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    let resource = rest[0];
    let mut name = rest.get(1).copied().unwrap_or_default().to_string();
    let subresource = match rest.get(2) {
        Some(sub) if verb != "proxy" => *sub,
        _ => "",
    };
    if name.is_empty() && verb == "get" {
        let query = Query::parse(uri).unwrap_or_default();
        verb = if query.flag("watch") { "watch" } else { "list" };
        // A list of one object by name is authorized as that object, so a role
        // limited to resourceNames may watch it (`kubectl get pod x -w`).
        if let Some(selected) = query
            .raw("fieldSelector")
            .and_then(|text| FieldSelector::parse_unchecked(text).ok())
            .and_then(|selector| selector.requires_exact("metadata.name").map(str::to_string))
            && is_path_segment_name(&selected)
        {
            name = selected;
        }
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection";
    }
    Some(Attributes {
        verb: verb.to_string(),
        resource: Some(ResourceAttributes {
            namespace: namespace.to_string(),
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            name,
        }),
        path: uri.path().to_string(),
    })
}

/// Upstream's `IsPathSegmentName`: a name that can be a URL path segment.
fn is_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains(['/', '%'])
}

/// Whether upstream's request deadline leaves a request alone
/// (`BasicLongRunningRequestCheck`): watches, proxies and the streaming subresources.
pub fn is_long_running(attributes: &Attributes) -> bool {
    let subresource = attributes
        .resource
        .as_ref()
        .map_or("", |r| r.subresource.as_str());
    matches!(attributes.verb.as_str(), "watch" | "proxy")
        || matches!(
            subresource,
            "attach" | "exec" | "proxy" | "log" | "portforward"
        )
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
            continue_token: None,
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
