//! Impersonation: `Impersonate-User` / `Impersonate-Group` headers (`kubectl --as`,
//! `--as-group`) make a request act as another user, if the requester may
//! `impersonate` that user, each group, and for a service account that account.

use super::super::User;
use crate::rbac::Rbac;
use http::HeaderMap;
use rind_api::rbac::{Attributes, ResourceAttributes, effective_groups, forbidden_reason};
use rind_api::status::ApiError;

const USER_HEADER: &str = "impersonate-user";
const GROUP_HEADER: &str = "impersonate-group";
const UID_HEADER: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Result<Vec<&'a str>, ApiError> {
    headers
        .get_all(name)
        .iter()
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request(format!("the {name} header is not text")))
        })
        .collect()
}

/// Checks that `requester` may impersonate `what` (`users`, `groups`,
/// `serviceaccounts`, `uids`, `userextras/<key>`) named `name`.
fn check(
    rbac: &Rbac,
    requester: &User,
    resource: &str,
    subresource: &str,
    group: &str,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let attributes = Attributes {
        verb: "impersonate".into(),
        resource: Some(ResourceAttributes {
            namespace: namespace.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: name.into(),
            ..Default::default()
        }),
        path: String::new(),
    };
    if rbac.authorize(requester, &attributes).allowed {
        return Ok(());
    }
    Err(ApiError::forbidden(
        resource,
        group,
        name,
        &forbidden_reason(&requester.name, &attributes),
    ))
}

/// The user the request acts as: `requester` itself without impersonation headers.
pub fn apply(rbac: &Rbac, requester: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let users = values(headers, USER_HEADER)?;
    let groups = values(headers, GROUP_HEADER)?;
    let uids = values(headers, UID_HEADER)?;
    let has_extra = headers.keys().any(|k| k.as_str().starts_with(EXTRA_PREFIX));
    let Some(name) = users.first().copied() else {
        if groups.is_empty() && uids.is_empty() && !has_extra {
            return Ok(requester);
        }
        return Err(ApiError::bad_request(
            "requested impersonation of groups, a uid or extra fields without impersonating a user",
        ));
    };
    if users.len() > 1 {
        return Err(ApiError::bad_request(
            "only one Impersonate-User header is allowed",
        ));
    }
    let service_account = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match service_account {
        Some((namespace, account)) => check(
            rbac,
            &requester,
            "serviceaccounts",
            "",
            "",
            namespace,
            account,
        )?,
        None => check(rbac, &requester, "users", "", "", "", name)?,
    }
    for group in &groups {
        check(rbac, &requester, "groups", "", "", "", group)?;
    }
    for uid in &uids {
        check(
            rbac,
            &requester,
            "uids",
            "",
            "authentication.k8s.io",
            "",
            uid,
        )?;
    }
    for (key, value) in headers.iter() {
        if let Some(extra) = key.as_str().strip_prefix(EXTRA_PREFIX) {
            let value = value.to_str().unwrap_or_default();
            check(
                rbac,
                &requester,
                "userextras",
                extra,
                "authentication.k8s.io",
                "",
                value,
            )?;
        }
    }
    let mut impersonated: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    if let Some((namespace, _)) = service_account
        && impersonated.is_empty()
    {
        impersonated.push("system:serviceaccounts".into());
        impersonated.push(format!("system:serviceaccounts:{namespace}"));
    }
    // Upstream's impersonation filter applies the authenticated-group rule too.
    Ok(User {
        name: name.to_string(),
        groups: effective_groups(name, &impersonated),
    })
}
