//! RBAC evaluation as upstream defines it, over plain objects: what a request is
//! (authorizer attributes), whether a policy rule covers it, whether a binding's
//! subject is a given user, and which ClusterRoles an aggregation rule pulls in.
//! The API server's authorizer feeds these from its watch-fed caches.

use super::selector::LabelSelector;
use k8s_openapi::api::rbac::v1::{AggregationRule, PolicyRule, Subject};
use serde_json::Value;

/// What a request would do: upstream's authorizer attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    /// A resource request (`Some`) or one to a non-resource URL such as `/healthz` (`None`).
    pub resource: Option<ResourceAttributes>,
    /// The URL of a non-resource request.
    pub path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub namespace: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// The group every authenticated user is in, as upstream adds it.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Who a request without credentials is: upstream's anonymous authenticator (on by
/// default, and in kind) names it so, and RBAC then decides what it may do.
pub const ANONYMOUS: &str = "system:anonymous";
/// The anonymous user's only group; bootstrap policy binds just
/// `system:public-info-viewer` to it.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";

/// `groups` as authorization sees them: plus `system:authenticated`, as upstream's
/// authenticated-group adder puts it on every user but the anonymous one and those
/// already in it or in `system:unauthenticated`.
pub fn effective_groups(name: &str, groups: &[String]) -> Vec<String> {
    let mut groups = groups.to_vec();
    if name != ANONYMOUS
        && !groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED)
    {
        groups.push(AUTHENTICATED.to_string());
    }
    groups
}
/// Members are allowed everything, without consulting any policy (upstream's
/// privileged group).
pub const MASTERS: &str = "system:masters";

fn has(list: &[String], wanted: &str) -> bool {
    list.iter().any(|v| v == "*" || v == wanted)
}

/// Whether `rule` covers the request `attributes` describe.
pub fn rule_allows(rule: &PolicyRule, attributes: &Attributes) -> bool {
    if !has(&rule.verbs, &attributes.verb) {
        return false;
    }
    match &attributes.resource {
        Some(r) => {
            let groups = rule.api_groups.as_deref().unwrap_or_default();
            let resources = rule.resources.as_deref().unwrap_or_default();
            let names = rule.resource_names.as_deref().unwrap_or_default();
            has(groups, &r.group)
                && resource_matches(resources, &r.resource, &r.subresource)
                && (names.is_empty() || names.contains(&r.name))
        }
        None => rule
            .non_resource_urls
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|url| url_matches(url, &attributes.path)),
    }
}

/// `*`, the exact `resource[/subresource]`, or `*/subresource`.
fn resource_matches(rules: &[String], resource: &str, subresource: &str) -> bool {
    rules.iter().any(|r| {
        if r == "*" {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        match r.split_once('/') {
            Some((res, sub)) => (res == resource || res == "*") && sub == subresource,
            None => false,
        }
    })
}

/// Non-resource URLs match exactly or, with a trailing `*`, by prefix.
fn url_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule == path,
    }
}

/// Whether a binding in `binding_namespace` (empty for ClusterRoleBindings) names
/// the user `name` with `groups`.
pub fn subject_matches(
    subject: &Subject,
    name: &str,
    groups: &[String],
    binding_namespace: &str,
) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == name,
        "Group" => groups.contains(&subject.name),
        "ServiceAccount" => {
            let namespace = subject
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(binding_namespace);
            name == format!("system:serviceaccount:{namespace}:{}", subject.name)
        }
        _ => false,
    }
}

/// Whether a ClusterRole labelled `labels` is pulled in by `rule`: any of its
/// selectors matching is enough.
pub fn aggregates(rule: &AggregationRule, labels: Option<&serde_json::Map<String, Value>>) -> bool {
    rule.cluster_role_selectors
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|selector| {
            let Ok(selector) = serde_json::to_value(selector) else {
                return false;
            };
            let text = super::scale::label_selector_string(&selector);
            // An empty selector would select every role; upstream ignores it.
            !text.is_empty() && LabelSelector::parse(&text).is_ok_and(|s| s.matches(labels))
        })
}

/// `rule` split into rules of one verb on one group and resource (or one URL), as
/// upstream's `BreakdownRule` does before comparing policies, so coverage is decided
/// per permission and not per rule shape.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut parts = Vec::new();
    for group in rule.api_groups.iter().flatten() {
        for resource in rule.resources.iter().flatten() {
            for verb in &rule.verbs {
                parts.push(PolicyRule {
                    api_groups: Some(vec![group.clone()]),
                    resources: Some(vec![resource.clone()]),
                    resource_names: rule.resource_names.clone(),
                    verbs: vec![verb.clone()],
                    non_resource_urls: None,
                });
            }
        }
    }
    for url in rule.non_resource_urls.iter().flatten() {
        for verb in &rule.verbs {
            parts.push(PolicyRule {
                non_resource_urls: Some(vec![url.clone()]),
                verbs: vec![verb.clone()],
                ..Default::default()
            });
        }
    }
    parts
}

fn covers_all(owner: &[String], wanted: &[String]) -> bool {
    owner.iter().any(|o| o == "*") || wanted.iter().all(|w| owner.contains(w))
}

/// Whether the owner's resources cover every wanted one; `*/status` covers `pods/status`.
fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    covers_all(owner, wanted)
        || wanted.iter().all(|w| {
            owner.contains(w)
                || w.split_once('/')
                    .is_some_and(|(_, sub)| owner.iter().any(|o| *o == format!("*/{sub}")))
        })
}

/// Whether `owner` grants everything `sub` (one broken-down rule) does: upstream's
/// `ruleCovers`.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    let owner_urls = list(&owner.non_resource_urls);
    let sub_urls = list(&sub.non_resource_urls);
    let urls = sub_urls
        .iter()
        .all(|u| owner_urls.iter().any(|o| url_matches(o, u)));
    let owner_names = list(&owner.resource_names);
    let names = owner_names.is_empty()
        || (!list(&sub.resource_names).is_empty()
            && covers_all(&owner_names, &list(&sub.resource_names)));
    covers_all(&owner.verbs, &sub.verbs)
        && covers_all(&list(&owner.api_groups), &list(&sub.api_groups))
        && resources_cover(&list(&owner.resources), &list(&sub.resources))
        && urls
        && names
}

/// The permissions of `wanted` that no rule of `owner` grants, broken down one verb
/// and resource each (upstream's `validation.Covers`): what reconciling a default
/// role adds to the stored one.
pub fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    wanted
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect()
}

/// How a denial reads, as upstream words it after `<resource> is forbidden: `.
pub fn forbidden_reason(user: &str, attributes: &Attributes) -> String {
    let Some(r) = &attributes.resource else {
        return format!(
            "User {user:?} cannot {} path {:?}",
            attributes.verb, attributes.path
        );
    };
    let resource = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    let scope = if r.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", r.namespace)
    };
    format!(
        "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        attributes.verb, r.group
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(value: Value) -> PolicyRule {
        serde_json::from_value(value).unwrap()
    }

    fn resource(verb: &str, group: &str, res: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                namespace: "default".into(),
                group: group.into(),
                resource: res.into(),
                subresource: sub.into(),
                name: name.into(),
                ..Default::default()
            }),
            path: String::new(),
        }
    }

    #[test]
    fn coverage_is_decided_per_permission() {
        let owner = [
            rule(
                json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "*/status"]}),
            ),
            rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz/*"]})),
            rule(
                json!({"verbs": ["update"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
            ),
        ];
        let wanted = [
            rule(
                json!({"verbs": ["get", "watch"], "apiGroups": [""], "resources": ["pods", "pods/status"]}),
            ),
            rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz/etcd", "/livez"]})),
            rule(json!({"verbs": ["update"], "apiGroups": [""], "resources": ["configmaps"]})),
        ];
        let missing: Vec<Value> = uncovered(&owner, &wanted)
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        assert_eq!(
            missing,
            [
                json!({"verbs": ["watch"], "apiGroups": [""], "resources": ["pods"]}),
                json!({"verbs": ["watch"], "apiGroups": [""], "resources": ["pods/status"]}),
                json!({"verbs": ["get"], "nonResourceURLs": ["/livez"]}),
                // A grant on one name does not cover every name.
                json!({"verbs": ["update"], "apiGroups": [""], "resources": ["configmaps"]}),
            ]
        );
        assert!(uncovered(&wanted, &wanted).is_empty());
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_names() {
        let pods =
            rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}));
        assert!(rule_allows(&pods, &resource("get", "", "pods", "", "web")));
        assert!(!rule_allows(
            &pods,
            &resource("delete", "", "pods", "", "web")
        ));
        assert!(!rule_allows(
            &pods,
            &resource("get", "apps", "pods", "", "")
        ));
        // A subresource needs its own entry.
        assert!(!rule_allows(
            &pods,
            &resource("get", "", "pods", "log", "web")
        ));
        let logs = rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*/log"]}));
        assert!(rule_allows(
            &logs,
            &resource("get", "", "pods", "log", "web")
        ));
        let named = rule(
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["configmaps"], "resourceNames": ["a"]}),
        );
        assert!(rule_allows(
            &named,
            &resource("update", "", "configmaps", "", "a")
        ));
        assert!(!rule_allows(
            &named,
            &resource("update", "", "configmaps", "", "b")
        ));
        assert!(!rule_allows(
            &named,
            &resource("list", "", "configmaps", "", "")
        ));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix() {
        let discovery = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/api", "/apis/*"]}));
        let get = |path: &str| Attributes {
            verb: "get".into(),
            resource: None,
            path: path.into(),
        };
        assert!(rule_allows(&discovery, &get("/api")));
        assert!(rule_allows(&discovery, &get("/apis/apps/v1")));
        assert!(!rule_allows(&discovery, &get("/api/v1")));
        assert!(!rule_allows(
            &discovery,
            &resource("get", "", "pods", "", "")
        ));
    }

    #[test]
    fn subjects_name_users_groups_and_service_accounts() {
        let subject = |v: Value| -> Subject { serde_json::from_value(v).unwrap() };
        let groups = vec!["devs".to_string()];
        assert!(subject_matches(
            &subject(json!({"kind": "User", "name": "jane"})),
            "jane",
            &[],
            ""
        ));
        assert!(subject_matches(
            &subject(json!({"kind": "Group", "name": "devs"})),
            "jane",
            &groups,
            ""
        ));
        let sa = subject(json!({"kind": "ServiceAccount", "name": "bot"}));
        assert!(subject_matches(
            &sa,
            "system:serviceaccount:team:bot",
            &[],
            "team"
        ));
        assert!(!subject_matches(
            &sa,
            "system:serviceaccount:other:bot",
            &[],
            "team"
        ));
    }

    #[test]
    fn aggregation_selects_by_labels() {
        let rule: AggregationRule = serde_json::from_value(json!({"clusterRoleSelectors": [
            {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}
        ]}))
        .unwrap();
        let labels = json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"});
        assert!(aggregates(&rule, labels.as_object()));
        assert!(!aggregates(&rule, json!({"x": "y"}).as_object()));
        assert!(!aggregates(&rule, None));
    }

    #[test]
    fn denials_read_as_upstream() {
        assert_eq!(
            forbidden_reason("x", &resource("list", "", "pods", "", "")),
            r#"User "x" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        let mut nodes = resource("get", "", "nodes", "status", "n1");
        if let Some(r) = nodes.resource.as_mut() {
            r.namespace.clear();
        }
        assert_eq!(
            forbidden_reason("x", &nodes),
            r#"User "x" cannot get resource "nodes/status" in API group "" at the cluster scope"#
        );
    }
}
