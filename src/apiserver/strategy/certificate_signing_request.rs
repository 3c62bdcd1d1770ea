//! CertificateSigningRequests: the requester recorded from who sent the request
//! (`spec.username`, `spec.groups`), each endpoint changing only its own part (the
//! object its metadata, `approval` the Approved/Denied conditions, `status` the
//! signer's conditions and certificate), condition times stamped as upstream does, and
//! the admission upstream runs on them: CertificateSubjectRestriction on create,
//! CertificateApproval (the `approve` verb on the signer) on approval, and
//! CertificateSigning (the `sign` verb) when a certificate is set. The rules are
//! `rind_api::certificates`'.

use super::{AfterFieldManager, AsyncHook, Strategy};
use crate::handlers::Ctx;
use rind_api::certificates::{self, Requester, UpdatePath};
use rind_api::meta::{self, format_time, str_at};
use rind_api::rbac::{Attributes, ResourceAttributes, effective_groups};
use rind_api::status::{ApiError, Cause};
use serde_json::Value;

pub struct CertificateSigningRequest;

const GROUP: &str = "certificates.k8s.io";
const PLURAL: &str = "certificatesigningrequests";

fn now() -> String {
    format_time(meta::now())
}

/// Whether the request's user may `verb` (approve, sign) for `signer`: the signer by
/// name, or every signer of its domain (`example.com/*`), as upstream asks.
fn authorized_for_signer(ctx: &Ctx<'_>, verb: &str, signer: &str) -> bool {
    let Some(user) = ctx.user else {
        return false;
    };
    let ask = |name: &str| Attributes {
        verb: verb.to_string(),
        resource: Some(ResourceAttributes {
            group: GROUP.into(),
            version: "*".into(),
            resource: "signers".into(),
            name: name.into(),
            ..ResourceAttributes::default()
        }),
        path: String::new(),
    };
    if ctx.server.rbac.authorize(user, &ask(signer)).allowed {
        return true;
    }
    signer.split_once('/').is_some_and(|(domain, _)| {
        ctx.server
            .rbac
            .authorize(user, &ask(&format!("{domain}/*")))
            .allowed
    })
}

impl Strategy for CertificateSigningRequest {
    fn admit_create<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        csr: &'a mut Value,
    ) -> AsyncHook<'a, Option<AfterFieldManager>> {
        Some(Box::pin(async move {
            if let Some(why) = certificates::subject_restriction(csr) {
                return Err(ApiError::forbidden(PLURAL, GROUP, meta::name(csr), &why));
            }
            // Who asked is the server's to say, after the field manager (upstream sets it
            // in PrepareForCreate, so no manager owns it).
            let (name, groups) = match ctx.user {
                Some(user) => (
                    user.name.clone(),
                    effective_groups(&user.name, &user.groups),
                ),
                None => (String::new(), Vec::new()),
            };
            let after: AfterFieldManager = Box::new(move |csr: &mut Value| {
                let requester = Requester {
                    name: &name,
                    uid: "",
                    groups: &groups,
                };
                certificates::prepare_create(csr, Some(&requester));
                Ok(())
            });
            Ok(Some(after))
        }))
    }

    fn prepare_for_update(&self, subresource: Option<&str>, current: &Value, next: &mut Value) {
        // No endpoint changes the request itself.
        if let Some(spec) = current.get("spec") {
            next["spec"] = spec.clone();
        }
        match subresource {
            Some("approval") => {
                let conditions = next
                    .get("status")
                    .and_then(|s| s.get("conditions"))
                    .cloned();
                next["status"] = current
                    .get("status")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({}));
                match conditions {
                    Some(conditions) => next["status"]["conditions"] = conditions,
                    None => {
                        if let Some(status) = next["status"].as_object_mut() {
                            status.remove("conditions");
                        }
                    }
                }
                certificates::stamp_conditions(current, next, &now());
            }
            Some("status") => certificates::stamp_conditions(current, next, &now()),
            _ => {}
        }
    }

    fn validate_update(&self, current: &Value, next: &Value, causes: &mut Vec<Cause>) {
        causes.extend(certificates::validate_update(
            current,
            next,
            UpdatePath::Main,
        ));
    }

    fn validate_subresource_update(
        &self,
        subresource: &str,
        current: &Value,
        next: &Value,
        causes: &mut Vec<Cause>,
    ) {
        let path = match subresource {
            "approval" => UpdatePath::Approval,
            _ => UpdatePath::Status,
        };
        causes.extend(certificates::validate_update(current, next, path));
    }

    fn admit_subresource_update<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        subresource: &'a str,
        current: &'a Value,
        next: &'a Value,
    ) -> AsyncHook<'a, ()> {
        let signer = str_at(current, &["spec", "signerName"]).unwrap_or_default();
        let name = meta::name(current);
        let refuse = |verb: &str| {
            Err(ApiError::forbidden(
                PLURAL,
                GROUP,
                name,
                &format!("user not permitted to {verb} requests with signerName {signer:?}"),
            ))
        };
        let result = match subresource {
            "approval" if !authorized_for_signer(ctx, "approve", signer) => refuse("approve"),
            "status"
                if current.pointer("/status/certificate")
                    != next.pointer("/status/certificate")
                    && !authorized_for_signer(ctx, "sign", signer) =>
            {
                refuse("sign")
            }
            _ => return None,
        };
        Some(Box::pin(std::future::ready(result)))
    }
}
