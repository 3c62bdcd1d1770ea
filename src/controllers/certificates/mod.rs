//! The certificate controllers upstream's controller-manager runs for
//! CertificateSigningRequests:
//! - the signer of the built-in signers `kubernetes.io/kube-apiserver-client`,
//!   `kubernetes.io/kube-apiserver-client-kubelet` and `kubernetes.io/kubelet-serving`,
//!   with the cluster CA (the one the API server trusts for client certificates): an
//!   approved request its signer accepts gets `status.certificate`; one it refuses
//!   gets the `Failed` condition (reason `SignerValidationFailure`) instead;
//! - the approver of kubelets' client certificates: a kubelet client request is
//!   approved when a SubjectAccessReview says its requester may create
//!   `certificatesigningrequests/selfnodeclient` (renewing its own certificate) or
//!   `certificatesigningrequests/nodeclient` (any node's).
//!
//! The signer runs only where the CA key is (control-plane nodes).

pub mod signer;

use super::{ControllerError, error_policy};
use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rind_api::certificates::{self, KUBE_APISERVER_CLIENT_KUBELET, has_condition};
use serde_json::{Value, json};
use signer::Authority;
use std::sync::Arc;
use std::time::Duration;

/// The CA the built-in signers sign with, as PEM.
#[derive(Clone, Debug)]
pub struct SigningCa {
    pub cert_pem: String,
    pub key_pem: String,
}

struct Ctx {
    client: Client,
    authority: Option<Authority>,
}

pub async fn run(client: Client, ca: Option<SigningCa>) -> Result<(), ControllerError> {
    let authority = match ca {
        Some(ca) => Some(
            Authority::new(&ca.cert_pem, &ca.key_pem)
                .map_err(|e| ControllerError::Invalid(e.to_string()))?,
        ),
        None => None,
    };
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        authority,
    });
    Controller::new(
        Api::<CertificateSigningRequest>::all(client),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!("certificatesigningrequest reconcile: {e}");
        }
    })
    .await;
    Ok(())
}

fn usages(csr: &Value) -> Vec<String> {
    rind_api::meta::strings(csr.pointer("/spec/usages"))
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    let now = rind_api::meta::format_time(rind_api::meta::now());
    json!({"type": kind, "status": "True", "reason": reason, "message": message,
           "lastUpdateTime": now, "lastTransitionTime": now})
}

fn push_condition(csr: &mut Value, condition: Value) {
    if !csr.get("status").is_some_and(Value::is_object) {
        csr["status"] = json!({});
    }
    match csr["status"]
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
    {
        Some(list) => list.push(condition),
        None => csr["status"]["conditions"] = json!([condition]),
    }
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Ctx>,
) -> Result<Action, ControllerError> {
    let mut object =
        serde_json::to_value(csr.as_ref()).map_err(|e| ControllerError::Invalid(e.to_string()))?;
    let decided = has_condition(&object, "Approved") || has_condition(&object, "Denied");
    if !decided {
        approve(&ctx, &csr.name_any(), &mut object).await?;
        return Ok(Action::await_change());
    }
    let issued = object
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty());
    if !has_condition(&object, "Approved") || has_condition(&object, "Failed") || issued {
        return Ok(Action::await_change());
    }
    if let Some(authority) = &ctx.authority {
        sign(&ctx, authority, &csr.name_any(), object).await?;
    }
    Ok(Action::await_change())
}

/// Issues the certificate of an approved request, or marks it Failed when its signer
/// refuses it; leaves requests for other signers alone.
async fn sign(
    ctx: &Ctx,
    authority: &Authority,
    name: &str,
    mut object: Value,
) -> Result<(), ControllerError> {
    let signer = rind_api::meta::str_at(&object, &["spec", "signerName"])
        .unwrap_or_default()
        .to_string();
    let usages = usages(&object);
    let usages: Vec<&str> = usages.iter().map(String::as_str).collect();
    // The API server validated the request on create; one that no longer parses is
    // the same kind of refusal.
    let request = certificates::request_pem(&object)
        .ok_or_else(|| "spec.request is not base64".to_string())
        .and_then(|pem| certificates::parse_request(&pem));
    let verdict = request.and_then(|r| {
        certificates::signer_accepts(&signer, &r, &usages).map(|accepted| accepted.then_some(r))
    });
    match verdict {
        Ok(None) => return Ok(()),
        Ok(Some(request)) => {
            let requested = object
                .pointer("/spec/expirationSeconds")
                .and_then(Value::as_u64)
                .map(Duration::from_secs);
            let pem = authority
                .sign(&request, &usages, requested, jiff::Timestamp::now())
                .map_err(|e| ControllerError::Invalid(format!("signing {name}: {e}")))?;
            use base64::Engine;
            object["status"]["certificate"] =
                json!(base64::engine::general_purpose::STANDARD.encode(pem));
            tracing::info!(csr = %name, %signer, "issued a certificate");
        }
        Err(why) => {
            push_condition(
                &mut object,
                condition("Failed", "SignerValidationFailure", &why),
            );
            tracing::info!(csr = %name, %signer, "refused to sign: {why}");
        }
    }
    let next: CertificateSigningRequest =
        serde_json::from_value(object).map_err(|e| ControllerError::Invalid(e.to_string()))?;
    Api::<CertificateSigningRequest>::all(ctx.client.clone())
        .replace_status(name, &PostParams::default(), &next)
        .await?;
    Ok(())
}

/// Whether the requester of `csr` may create `certificatesigningrequests/<subresource>`.
async fn may(ctx: &Ctx, csr: &Value, subresource: &str) -> Result<bool, ControllerError> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: rind_api::meta::str_at(csr, &["spec", "username"]).map(str::to_string),
            uid: rind_api::meta::str_at(csr, &["spec", "uid"]).map(str::to_string),
            groups: Some(rind_api::meta::strings(csr.pointer("/spec/groups"))),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                verb: Some("create".into()),
                subresource: Some(subresource.into()),
                version: Some("*".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(ctx.client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Upstream's CSR approver for kubelet client certificates.
async fn approve(ctx: &Ctx, name: &str, object: &mut Value) -> Result<(), ControllerError> {
    if rind_api::meta::str_at(object, &["spec", "signerName"])
        != Some(KUBE_APISERVER_CLIENT_KUBELET)
    {
        return Ok(());
    }
    let Some(request) =
        certificates::request_pem(object).and_then(|pem| certificates::parse_request(&pem).ok())
    else {
        return Ok(());
    };
    let usages = usages(object);
    let usages: Vec<&str> = usages.iter().map(String::as_str).collect();
    if !certificates::is_kubelet_client_request(&request, &usages) {
        return Ok(());
    }
    let own =
        rind_api::meta::str_at(object, &["spec", "username"]) == Some(request.common_name.as_str());
    let message = if own && may(ctx, object, "selfnodeclient").await? {
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    } else if may(ctx, object, "nodeclient").await? {
        "Auto approving kubelet client certificate after SubjectAccessReview."
    } else {
        tracing::info!(csr = %name, "kubelet client request not approved: its requester may not create nodeclient requests");
        return Ok(());
    };
    push_condition(object, condition("Approved", "AutoApproved", message));
    let next: CertificateSigningRequest = serde_json::from_value(object.clone())
        .map_err(|e| ControllerError::Invalid(e.to_string()))?;
    Api::<CertificateSigningRequest>::all(ctx.client.clone())
        .replace_subresource("approval", name, &PostParams::default(), &next)
        .await?;
    tracing::info!(csr = %name, "approved a kubelet client certificate request");
    Ok(())
}
