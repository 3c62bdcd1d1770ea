//! Authentication: who a request comes from. A verified client certificate names the
//! user (CN) and groups (O); otherwise a bearer token must be a service-account token
//! this cluster issued, for a service account (and bound object) that still exists.
//! Also the two token APIs: `serviceaccounts/<name>/token` (TokenRequest) issues
//! tokens and `tokenreviews` checks them for others.

pub mod impersonation;
pub mod token;

use super::mirror::Mirror;
use super::request::Rendering;
use super::{Json, Server, User};
use http::HeaderMap;
use k8s_openapi::api::core::v1::ServiceAccount;
use rind_api::meta::{self, format_time};
use rind_api::rbac::{ANONYMOUS, UNAUTHENTICATED};
use rind_api::registry::Resource;
use rind_api::status::{ApiError, Cause};
use rind_store::{Store, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;
use token::{Claims, ISSUER, KubernetesClaims, ObjectRef, TokenError, TokenKey};

const SERVICE_ACCOUNTS: &str = "/registry/serviceaccounts/";
/// Groups every service account is in, besides its namespace's.
const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// Upstream's defaults and bounds for `expirationSeconds`.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;

pub struct Authenticator {
    key: TokenKey,
    service_accounts: Arc<Mirror<ServiceAccount>>,
}

/// A token that passed every check, and who it authenticates.
pub struct Authenticated {
    pub claims: Claims,
    pub user: User,
}

impl Authenticator {
    pub fn new(key: TokenKey) -> Self {
        Authenticator {
            key,
            service_accounts: Mirror::new(SERVICE_ACCOUNTS),
        }
    }

    /// Fills the service-account mirror and keeps it current.
    pub async fn start(&self, store: Arc<dyn Store>) -> Result<(), StoreError> {
        self.service_accounts.start(store).await
    }

    /// The service account `namespace/name` as the mirror has it.
    pub fn service_account(&self, namespace: &str, name: &str) -> Option<Arc<ServiceAccount>> {
        self.service_accounts
            .get(&format!("{SERVICE_ACCOUNTS}{namespace}/{name}"))
    }

    /// The request's user: its certificate's, else its bearer token's, else (no
    /// credential at all) `system:anonymous`, whom RBAC then treats like anyone else.
    /// A token that is not valid is a 401 whatever the path: upstream authenticates
    /// before it looks at the path, and falls back to anonymous only when no
    /// authenticator found a credential, never when one was rejected.
    pub async fn authenticate(
        &self,
        server: &Server,
        headers: &HeaderMap,
        certificate_user: Option<&User>,
    ) -> Result<User, ApiError> {
        if let Some(user) = certificate_user {
            return Ok(user.clone());
        }
        let Some(token) = bearer_token(headers) else {
            return Ok(User {
                name: ANONYMOUS.to_string(),
                groups: vec![UNAUTHENTICATED.to_string()],
            });
        };
        match self.review(server, token, &[ISSUER]).await {
            Ok(found) => Ok(found.user),
            Err(e) => {
                tracing::debug!("bearer token rejected: {e}");
                Err(ApiError::unauthorized())
            }
        }
    }

    /// Checks `token` for one of `audiences`: signature, expiry, and that its service
    /// account and bound object are the ones it was issued for.
    pub async fn review(
        &self,
        server: &Server,
        token: &str,
        audiences: &[&str],
    ) -> Result<Authenticated, TokenError> {
        let claims = self.key.verify(token, audiences, meta::now().as_second())?;
        let k = &claims.kubernetes;
        let key = format!(
            "{SERVICE_ACCOUNTS}{}/{}",
            k.namespace, k.serviceaccount.name
        );
        let account = self.service_accounts.get(&key).ok_or_else(|| {
            TokenError::Stale(format!(
                "service account {}/{} does not exist",
                k.namespace, k.serviceaccount.name
            ))
        })?;
        if account.metadata.uid.as_deref() != Some(k.serviceaccount.uid.as_str()) {
            return Err(TokenError::Stale(format!(
                "service account {}/{} was recreated since the token was issued",
                k.namespace, k.serviceaccount.name
            )));
        }
        for (plural, namespaced, bound) in [
            ("pods", true, &k.pod),
            ("secrets", true, &k.secret),
            ("nodes", false, &k.node),
        ] {
            if let Some(bound) = bound {
                let ns = namespaced.then_some(k.namespace.as_str());
                let current = bound_object_uid(server, plural, ns, &bound.name)
                    .await
                    .map_err(|e| TokenError::Stale(e.message))?;
                if current.as_deref() != Some(bound.uid.as_str()) {
                    return Err(TokenError::Stale(format!(
                        "the {plural} object {:?} the token is bound to no longer exists",
                        bound.name
                    )));
                }
            }
        }
        let user = User {
            name: claims.username(),
            groups: vec![
                SERVICE_ACCOUNTS_GROUP.to_string(),
                format!("{SERVICE_ACCOUNTS_GROUP}:{}", k.namespace),
                rind_api::rbac::AUTHENTICATED.to_string(),
            ],
        };
        Ok(Authenticated { claims, user })
    }

    /// `POST serviceaccounts/<name>/token`: a TokenRequest answered with a new token.
    pub async fn token_request(
        &self,
        server: &Server,
        namespace: &str,
        name: &str,
        mut request: Value,
    ) -> Result<Json, ApiError> {
        let invalid = |cause: Cause| {
            ApiError::invalid("TokenRequest", "authentication.k8s.io", name, &[cause])
        };
        let accounts = lookup(server, "", "serviceaccounts")?;
        let (_, account) =
            super::handlers::read(server, accounts, &accounts.key(Some(namespace), name), name)
                .await?;
        let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
        let expiration = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION,
            Some(v) => v.as_i64().ok_or_else(|| {
                invalid(Cause::invalid(
                    "spec.expirationSeconds",
                    &v.to_string(),
                    "must be an integer",
                ))
            })?,
        };
        if expiration < MIN_EXPIRATION {
            return Err(invalid(Cause::invalid(
                "spec.expirationSeconds",
                &expiration.to_string(),
                "may not specify a duration less than 10 minutes",
            )));
        }
        if expiration > MAX_EXPIRATION {
            return Err(invalid(Cause::invalid(
                "spec.expirationSeconds",
                &expiration.to_string(),
                "may not specify a duration larger than 2^32 seconds",
            )));
        }
        let audiences: Vec<String> = spec
            .get("audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .filter(|a: &Vec<String>| !a.is_empty())
            .unwrap_or_else(|| vec![ISSUER.to_string()]);
        let mut claims = KubernetesClaims {
            namespace: namespace.to_string(),
            serviceaccount: ObjectRef {
                name: name.to_string(),
                uid: meta::str_at(&account, &["metadata", "uid"])
                    .unwrap_or_default()
                    .to_string(),
            },
            ..Default::default()
        };
        if let Some(bound) = spec.get("boundObjectRef").filter(|b| !b.is_null()) {
            bind_object(server, namespace, bound, &mut claims)
                .await
                .map_err(|e| match e {
                    BindError::Invalid(cause) => invalid(cause),
                    BindError::Api(e) => e,
                })?;
        }
        let now = meta::now();
        let now_s = now.as_second();
        let claims = Claims {
            iss: ISSUER.to_string(),
            sub: token::service_account_user(namespace, name),
            aud: audiences.clone(),
            exp: now_s + expiration,
            iat: now_s,
            nbf: now_s,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: claims,
        };
        let signed = self
            .key
            .issue(&claims)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let expires = jiff::Timestamp::from_second(claims.exp)
            .map_err(|e| ApiError::internal(format!("expiry out of range: {e}")))?;
        let Some(fields) = request.as_object_mut() else {
            return Err(ApiError::bad_request("the request body is not an object"));
        };
        fields.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
        fields.insert("kind".into(), json!("TokenRequest"));
        fields.insert(
            "metadata".into(),
            json!({"name": name, "namespace": namespace, "creationTimestamp": format_time(now)}),
        );
        let mut spec = spec;
        spec["audiences"] = json!(audiences);
        spec["expirationSeconds"] = json!(expiration);
        fields.insert("spec".into(), spec);
        fields.insert(
            "status".into(),
            json!({"token": signed, "expirationTimestamp": format_time(expires)}),
        );
        Ok(Json::created(request, Rendering::Object))
    }

    /// `POST tokenreviews`: whether `spec.token` is valid, and for whom.
    pub async fn token_review(
        &self,
        server: &Server,
        res: &Resource,
        mut review: Value,
    ) -> Result<Json, ApiError> {
        let token = meta::str_at(&review, &["spec", "token"])
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            return Err(ApiError::invalid(
                res.kind,
                res.group,
                "",
                &[Cause::required("spec.token", "")],
            ));
        }
        let requested: Vec<String> = review
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        // Without audiences, the token must be meant for the API server itself.
        let accepted: Vec<&str> = if requested.is_empty() {
            vec![ISSUER]
        } else {
            requested.iter().map(String::as_str).collect()
        };
        let status = match self.review(server, &token, &accepted).await {
            Ok(found) => {
                let audiences: Vec<&String> = found
                    .claims
                    .aud
                    .iter()
                    .filter(|a| accepted.contains(&a.as_str()))
                    .collect();
                let k = &found.claims.kubernetes;
                let mut extra = serde_json::Map::new();
                extra.insert(
                    "authentication.kubernetes.io/credential-id".into(),
                    json!([format!("JTI={}", found.claims.jti)]),
                );
                if let Some(pod) = &k.pod {
                    extra.insert(
                        "authentication.kubernetes.io/pod-name".into(),
                        json!([pod.name]),
                    );
                    extra.insert(
                        "authentication.kubernetes.io/pod-uid".into(),
                        json!([pod.uid]),
                    );
                }
                json!({
                    "authenticated": true,
                    "user": {
                        "username": found.user.name,
                        "uid": k.serviceaccount.uid,
                        "groups": found.user.groups,
                        "extra": extra,
                    },
                    "audiences": audiences,
                })
            }
            Err(e) => json!({"authenticated": false, "user": {}, "error": e.to_string()}),
        };
        let Some(fields) = review.as_object_mut() else {
            return Err(ApiError::bad_request("the request body is not an object"));
        };
        fields.insert("apiVersion".into(), Value::from(res.api_version()));
        fields.insert("kind".into(), Value::from(res.kind));
        fields.entry("metadata").or_insert_with(|| json!({}));
        fields.insert("status".into(), status);
        Ok(Json::created(review, Rendering::Object))
    }
}

/// The token of an `Authorization: Bearer <token>` header, split as upstream's bearer
/// authenticator does: another scheme or an empty token is no credential (anonymous),
/// not a bad one.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.trim().split(' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn lookup(server: &Server, group: &str, plural: &str) -> Result<&'static Resource, ApiError> {
    server
        .registry
        .lookup(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))
}

/// The uid of a token's bound object, None when it is gone or being deleted.
async fn bound_object_uid(
    server: &Server,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<String>, ApiError> {
    let res = lookup(server, "", plural)?;
    let key = res.key(namespace, name);
    match super::handlers::read(server, res, &key, name).await {
        Ok((_, object)) if object.pointer("/metadata/deletionTimestamp").is_none() => {
            Ok(meta::str_at(&object, &["metadata", "uid"]).map(String::from))
        }
        Ok(_) => Ok(None),
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

enum BindError {
    Invalid(Cause),
    Api(ApiError),
}

/// Records `spec.boundObjectRef` in the claims, after checking the object exists
/// (with the given uid, if any).
async fn bind_object(
    server: &Server,
    namespace: &str,
    bound: &Value,
    claims: &mut KubernetesClaims,
) -> Result<(), BindError> {
    let kind = meta::str_at(bound, &["kind"]).unwrap_or_default();
    let name = meta::str_at(bound, &["name"]).unwrap_or_default();
    let (plural, ns) = match kind {
        "Pod" => ("pods", Some(namespace)),
        "Secret" => ("secrets", Some(namespace)),
        "Node" => ("nodes", None),
        other => {
            return Err(BindError::Invalid(Cause::unsupported(
                "spec.boundObjectRef.kind",
                other,
                &["Pod", "Node", "Secret"],
            )));
        }
    };
    if name.is_empty() {
        return Err(BindError::Invalid(Cause::required(
            "spec.boundObjectRef.name",
            "",
        )));
    }
    let uid = bound_object_uid(server, plural, ns, name)
        .await
        .map_err(BindError::Api)?
        .ok_or_else(|| BindError::Api(ApiError::not_found(plural, "", name)))?;
    if let Some(wanted) = meta::str_at(bound, &["uid"]).filter(|u| !u.is_empty())
        && wanted != uid
    {
        return Err(BindError::Api(ApiError::conflict(
            plural,
            "",
            name,
            &format!(
                "the UID in the bound object reference ({wanted}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
            ),
        )));
    }
    let reference = Some(ObjectRef {
        name: name.to_string(),
        uid,
    });
    match kind {
        "Pod" => claims.pod = reference,
        "Secret" => claims.secret = reference,
        _ => claims.node = reference,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_of(value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(value).unwrap(),
        );
        bearer_token(&headers).map(String::from)
    }

    #[test]
    fn bearer_tokens_are_split_as_upstream() {
        assert_eq!(token_of("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token_of("bearer abc").as_deref(), Some("abc"));
        assert_eq!(token_of("BEARER abc ").as_deref(), Some("abc"));
        // No token, or another scheme, is no credential: the request is anonymous.
        assert_eq!(token_of("Bearer "), None);
        assert_eq!(token_of("Bearer  abc"), None);
        assert_eq!(token_of("Basic YWRtaW46YWRtaW4="), None);
        assert_eq!(token_of("Bearer"), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
