//! CertificateSigningRequests (`certificates.k8s.io/v1`): the PKCS#10 request they
//! carry, their validation on create and on each kind of update (main resource,
//! `status`, `approval`), and the checks each built-in signer makes before it signs.
//! The API server validates with these, the controller-manager's signer signs with
//! them. Rules and messages follow upstream's pkg/apis/certificates (validation,
//! helpers) and pkg/controller/certificates/signer.

use super::byte_fields;
use super::fields::at;
use super::meta::str_at;
use super::status::Cause;
use super::validation::is_dns1123_label;
use serde_json::Value;
use std::net::IpAddr;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Signs client certificates the API server accepts (the cluster CA).
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// Signs kubelets' client certificates.
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Signs kubelets' serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// The v1beta1 catch-all, not accepted through v1.
pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// Every `spec.usages` value upstream accepts.
pub const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// What a signer needs of a PKCS#10 request whose signature checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The subject as DER, copied into the certificate unchanged.
    pub subject_der: Vec<u8>,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    /// The SubjectPublicKeyInfo as DER.
    pub public_key_der: Vec<u8>,
}

/// Parses and checks a PEM-encoded PKCS#10 request as upstream's `ParseCSR` and
/// `CheckSignature` do; the error is upstream's message where it has a fixed one.
pub fn parse_request(pem: &[u8]) -> Result<Request, String> {
    let wrong_type = || "PEM block type must be CERTIFICATE REQUEST".to_string();
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| wrong_type())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(wrong_type());
    }
    let (rest, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("asn1: structure error: {e}"))?;
    if !rest.is_empty() {
        return Err("asn1: syntax error: trailing data".into());
    }
    let info = &csr.certification_request_info;
    if csr.verify_signature().is_err() {
        // Go's x509 words the failure by key algorithm.
        let algorithm = info.subject_pki.algorithm.algorithm.to_id_string();
        return Err(match algorithm.as_str() {
            "1.2.840.113549.1.1.1" => "crypto/rsa: verification error",
            "1.3.101.112" => "x509: Ed25519 verification failure",
            _ => "x509: ECDSA verification failure",
        }
        .into());
    }
    let text = |v: Option<&x509_parser::x509::AttributeTypeAndValue>| {
        v.and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut request = Request {
        subject_der: info.subject.as_raw().to_vec(),
        common_name: text(info.subject.iter_common_name().next()),
        organizations: info
            .subject
            .iter_organization()
            .map(|o| text(Some(o)))
            .collect(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        emails: Vec::new(),
        uris: Vec::new(),
        public_key_der: info.subject_pki.raw.to_vec(),
    };
    for extension in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = extension {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(dns) => request.dns_names.push(dns.to_string()),
                    GeneralName::RFC822Name(email) => request.emails.push(email.to_string()),
                    GeneralName::URI(uri) => request.uris.push(uri.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                            _ => None,
                        };
                        request.ip_addresses.extend(ip);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(request)
}

/// The PEM bytes of `spec.request` (base64 in JSON).
pub fn request_pem(csr: &Value) -> Option<Vec<u8>> {
    byte_fields::decode(str_at(csr, &["spec", "request"])?).ok()
}

/// Go's `%#v` of a byte slice, which is how upstream's field errors show `request`.
fn go_bytes(bytes: &[u8]) -> String {
    let items: Vec<String> = bytes.iter().map(|b| format!("{b:#x}")).collect();
    format!("[]byte{{{}}}", items.join(", "))
}

fn conditions(csr: &Value) -> &[Value] {
    at(csr, &["status", "conditions"])
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn condition_type(condition: &Value) -> &str {
    str_at(condition, &["type"]).unwrap_or_default()
}

/// Whether the request carries a `True` condition of `kind` (Approved, Denied, Failed).
pub fn has_condition(csr: &Value, kind: &str) -> bool {
    conditions(csr)
        .iter()
        .any(|c| condition_type(c) == kind && str_at(c, &["status"]) == Some("True"))
}

/// What the compatibility options of upstream's validation allow for an update of
/// `old` (None on create): problems already stored are tolerated.
#[derive(Clone, Copy, Debug, Default)]
struct Options {
    allow_both_approved_and_denied: bool,
    allow_legacy_signer: bool,
    allow_duplicate_condition_types: bool,
    allow_empty_condition_type: bool,
    allow_arbitrary_certificate: bool,
    allow_unknown_usages: bool,
    allow_duplicate_usages: bool,
}

fn usages(csr: &Value) -> Vec<&str> {
    at(csr, &["spec", "usages"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn options(new: &Value, old: Option<&Value>) -> Options {
    let Some(old) = old else {
        return Options::default();
    };
    let types: Vec<&str> = conditions(old).iter().map(condition_type).collect();
    let mut seen = std::collections::BTreeSet::new();
    let old_usages = usages(old);
    let mut seen_usages = std::collections::BTreeSet::new();
    Options {
        allow_both_approved_and_denied: types.contains(&"Approved") && types.contains(&"Denied"),
        allow_legacy_signer: str_at(old, &["spec", "signerName"]) == Some(LEGACY_UNKNOWN),
        allow_duplicate_condition_types: !types.iter().all(|t| seen.insert(*t)),
        allow_empty_condition_type: types.contains(&""),
        allow_arbitrary_certificate: at(new, &["status", "certificate"])
            == at(old, &["status", "certificate"])
            || validate_certificate(old).is_err(),
        allow_unknown_usages: old_usages.iter().any(|u| !USAGES.contains(u)),
        allow_duplicate_usages: !old_usages.iter().all(|u| seen_usages.insert(*u)),
    }
}

/// Upstream's `ValidateSignerName`.
fn validate_signer_name(name: &str, causes: &mut Vec<Cause>) {
    const FIELD: &str = "spec.signerName";
    if name.is_empty() {
        causes.push(Cause::required(FIELD, ""));
        return;
    }
    let Some((domain, path)) = name.split_once('/').filter(|(_, p)| !p.contains('/')) else {
        causes.push(Cause::invalid(
            FIELD,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    };
    if domain.len() > 253 {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: FIELD.into(),
            message: "Too long: may not be more than 253 bytes".to_string(),
        });
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some(bad) = labels.iter().find(|l| !is_dns1123_label(l)) {
        causes.push(Cause::invalid(
            FIELD,
            domain,
            &format!(
                "validating label {bad:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ),
        ));
    }
    if labels.len() < 2 {
        causes.push(Cause::invalid(
            FIELD,
            domain,
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if path.is_empty() || path == "." || path == ".." || path.contains('%') {
        let why = match path {
            "." => "may not be '.'".to_string(),
            ".." => "may not be '..'".to_string(),
            "" => "may not be empty".to_string(),
            _ => "may not contain '%'".to_string(),
        };
        causes.push(Cause::invalid(FIELD, path, &why));
    }
}

/// Upstream's `validateCertificate` of `status.certificate` (PEM CERTIFICATE blocks).
fn validate_certificate(csr: &Value) -> Result<(), String> {
    let Some(text) = str_at(csr, &["status", "certificate"]).filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let pem = byte_fields::decode(text).map_err(|_| "illegal base64 data".to_string())?;
    let mut blocks = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(&pem) {
        let Ok(block) = block else { break };
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                block.label
            ));
        }
        if block.parse_x509().is_err() {
            return Err("x509: malformed certificate".into());
        }
        blocks += 1;
    }
    if blocks == 0 {
        return Err("must contain at least one CERTIFICATE PEM block".into());
    }
    Ok(())
}

fn validate_with(csr: &Value, opts: Options) -> Vec<Cause> {
    let mut causes = Vec::new();
    let request = str_at(csr, &["spec", "request"]).unwrap_or_default();
    let pem = byte_fields::decode(request).unwrap_or_default();
    if let Err(why) = parse_request(&pem) {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            field: "spec.request".into(),
            message: format!("Invalid value: {}: {why}", go_bytes(&pem)),
        });
    }
    let usages = usages(csr);
    if usages.is_empty() {
        causes.push(Cause::required("spec.usages", ""));
    }
    if !opts.allow_unknown_usages {
        for (i, usage) in usages.iter().enumerate() {
            if !USAGES.contains(usage) {
                causes.push(Cause::unsupported(
                    format!("spec.usages[{i}]"),
                    usage,
                    USAGES,
                ));
            }
        }
    }
    if !opts.allow_duplicate_usages {
        for (i, usage) in usages.iter().enumerate() {
            if usages[..i].contains(usage) {
                causes.push(Cause::duplicate(format!("spec.usages[{i}]"), usage));
            }
        }
    }
    let signer = str_at(csr, &["spec", "signerName"]).unwrap_or_default();
    if !opts.allow_legacy_signer && signer == LEGACY_UNKNOWN {
        causes.push(Cause::invalid(
            "spec.signerName",
            signer,
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        validate_signer_name(signer, &mut causes);
    }
    if let Some(seconds) = at(csr, &["spec", "expirationSeconds"]).and_then(Value::as_i64)
        && seconds < 600
    {
        causes.push(super::fields::invalid_value(
            "spec.expirationSeconds",
            &Value::from(seconds),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    let mut seen = Vec::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in conditions(csr).iter().enumerate() {
        let kind = condition_type(c);
        if !opts.allow_empty_condition_type && kind.is_empty() {
            causes.push(Cause::required(format!("status.conditions[{i}].type"), ""));
        }
        let only_true = matches!(kind, "Approved" | "Denied" | "Failed");
        match str_at(c, &["status"]).unwrap_or_default() {
            "" => causes.push(Cause::required(
                format!("status.conditions[{i}].status"),
                "",
            )),
            "True" => {}
            "False" | "Unknown" if !only_true => {}
            other => causes.push(Cause::unsupported(
                format!("status.conditions[{i}].status"),
                other,
                if only_true {
                    &["True"]
                } else {
                    &["False", "True", "Unknown"]
                },
            )),
        }
        if !opts.allow_both_approved_and_denied {
            match kind {
                "Approved" => {
                    approved = true;
                    if denied {
                        causes.push(Cause::invalid(
                            "status.conditions",
                            kind,
                            "Approved and Denied conditions are mutually exclusive",
                        ));
                    }
                }
                "Denied" => {
                    denied = true;
                    if approved {
                        causes.push(Cause::invalid(
                            "status.conditions",
                            kind,
                            "Approved and Denied conditions are mutually exclusive",
                        ));
                    }
                }
                _ => {}
            }
        }
        if !opts.allow_duplicate_condition_types {
            if seen.contains(&kind) {
                causes.push(Cause::duplicate(
                    format!("status.conditions[{i}].type"),
                    kind,
                ));
            }
            seen.push(kind);
        }
    }
    if !opts.allow_arbitrary_certificate
        && let Err(why) = validate_certificate(csr)
    {
        causes.push(Cause::invalid(
            "status.certificate",
            "<certificate data>",
            &why,
        ));
    }
    causes
}

/// Validation of a new request.
pub fn validate(csr: &Value) -> Vec<Cause> {
    validate_with(csr, options(csr, None))
}

/// Which endpoint an update came through: each may change only its own part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdatePath {
    /// The object itself: metadata only.
    Main,
    /// `status`: the signer's conditions and `status.certificate`.
    Status,
    /// `approval`: the Approved and Denied conditions.
    Approval,
}

/// Validation of an update through `path`.
pub fn validate_update(old: &Value, new: &Value, path: UpdatePath) -> Vec<Cause> {
    let opts = options(new, Some(old));
    let mut causes = validate_with(new, opts);
    let of_type = |csr: &Value, kind: &str| -> Vec<Value> {
        conditions(csr)
            .iter()
            .filter(|c| condition_type(c) == kind)
            .cloned()
            .collect()
    };
    for kind in ["Approved", "Denied", "Failed"] {
        if of_type(new, kind).len() < of_type(old, kind).len() {
            causes.push(Cause::forbidden(
                "status.conditions",
                &format!("updates may not remove a condition of type {kind:?}"),
            ));
        }
    }
    if path != UpdatePath::Approval {
        for kind in ["Approved", "Denied"] {
            let (before, after) = (of_type(old, kind), of_type(new, kind));
            if after.len() > before.len() {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not add a condition of type {kind:?}"),
                ));
            } else if after.len() == before.len() && after != before {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not modify a condition of type {kind:?}"),
                ));
            }
        }
    }
    let old_cert = str_at(old, &["status", "certificate"]).unwrap_or_default();
    let new_cert = str_at(new, &["status", "certificate"]).unwrap_or_default();
    if old_cert != new_cert {
        if path != UpdatePath::Status {
            causes.push(Cause::forbidden(
                "status.certificate",
                "updates may not set certificate content",
            ));
        } else if !old_cert.is_empty() {
            causes.push(Cause::forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            ));
        }
    }
    causes
}

/// The request's user, as upstream records who created it.
pub struct Requester<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    pub groups: &'a [String],
}

/// What a create does before validation: the requester is whoever sent it, whatever
/// the body claims, and a request cannot be created approved.
pub fn prepare_create(csr: &mut Value, requester: Option<&Requester<'_>>) {
    let Some(root) = csr.as_object_mut() else {
        return;
    };
    let spec = super::meta::child_mut(root, "spec");
    for key in ["username", "uid", "groups", "extra"] {
        spec.remove(key);
    }
    if let Some(user) = requester {
        if !user.name.is_empty() {
            spec.insert("username".into(), user.name.into());
        }
        if !user.uid.is_empty() {
            spec.insert("uid".into(), user.uid.into());
        }
        if !user.groups.is_empty() {
            spec.insert("groups".into(), user.groups.into());
        }
    }
    root.remove("status");
}

/// Stamps the times of conditions an update adds or changes, as upstream does: a
/// missing `lastUpdateTime` is now; a missing `lastTransitionTime` is the stored one
/// of the same type when its status is unchanged, else now.
pub fn stamp_conditions(old: &Value, new: &mut Value, now: &str) {
    let previous: Vec<Value> = conditions(old).to_vec();
    let Some(list) = new
        .get_mut("status")
        .and_then(|s| s.get_mut("conditions"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for c in list.iter_mut().filter_map(Value::as_object_mut) {
        let set = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|t| !t.is_empty());
        if !set(c.get("lastUpdateTime")) {
            c.insert("lastUpdateTime".into(), now.into());
        }
        if !set(c.get("lastTransitionTime")) {
            let kind = c.get("type").cloned();
            let status = c.get("status").cloned();
            let kept = previous
                .iter()
                .find(|p| p.get("type") == kind.as_ref() && p.get("status") == status.as_ref())
                .and_then(|p| p.get("lastTransitionTime"))
                .filter(|t| t.as_str().is_some_and(|t| !t.is_empty()))
                .cloned();
            c.insert(
                "lastTransitionTime".into(),
                kept.unwrap_or_else(|| now.into()),
            );
        }
    }
}

/// Upstream's CertificateSubjectRestriction admission: the API server's client signer
/// may not be asked for a `system:masters` certificate.
pub fn subject_restriction(csr: &Value) -> Option<String> {
    if str_at(csr, &["spec", "signerName"]) != Some(KUBE_APISERVER_CLIENT) {
        return None;
    }
    let request = parse_request(&request_pem(csr)?).ok()?;
    request
        .organizations
        .iter()
        .any(|o| o == "system:masters")
        .then(|| {
            format!(
                "use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not allowed"
            )
        })
}

fn same_set(usages: &[&str], wanted: &[&str]) -> bool {
    let have: std::collections::BTreeSet<&str> = usages.iter().copied().collect();
    let want: std::collections::BTreeSet<&str> = wanted.iter().copied().collect();
    have == want
}

/// The signer's own checks of an approved request (upstream's `isKubeletServing`,
/// `isKubeletClient`, `isKubeAPIServerClient`): `Ok(false)` for a signer it does not
/// run, `Err` with the reason for the Failed condition when it refuses.
pub fn signer_accepts(signer: &str, request: &Request, usages: &[&str]) -> Result<bool, String> {
    let system_nodes = request.organizations == ["system:nodes"];
    let node_name = request.common_name.starts_with("system:node:");
    match signer {
        KUBELET_SERVING => {
            if !system_nodes {
                return Err("subject organization is not system:nodes".into());
            }
            if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
                return Err("DNS or IP subjectAltName is required".into());
            }
            if !request.emails.is_empty() {
                return Err("Email subjectAltNames are not allowed".into());
            }
            if !request.uris.is_empty() {
                return Err("URI subjectAltNames are not allowed".into());
            }
            const RSA: &[&str] = &["digital signature", "key encipherment", "server auth"];
            if !same_set(usages, RSA) && !same_set(usages, &["digital signature", "server auth"]) {
                return Err(format!("usages did not match [{}]", RSA.join(" ")));
            }
            if !node_name {
                return Err("subject common name does not begin with system:node:".into());
            }
            Ok(true)
        }
        KUBE_APISERVER_CLIENT_KUBELET => {
            if !system_nodes {
                return Err("subject organization is not system:nodes".into());
            }
            if !request.dns_names.is_empty() {
                return Err("DNS subjectAltNames are not allowed".into());
            }
            if !request.emails.is_empty() {
                return Err("Email subjectAltNames are not allowed".into());
            }
            if !request.ip_addresses.is_empty() {
                return Err("IP subjectAltNames are not allowed".into());
            }
            if !request.uris.is_empty() {
                return Err("URI subjectAltNames are not allowed".into());
            }
            if !node_name {
                return Err("subject common name does not begin with system:node:".into());
            }
            const RSA: &[&str] = &["client auth", "digital signature", "key encipherment"];
            if !same_set(usages, RSA) && !same_set(usages, &["client auth", "digital signature"]) {
                return Err(format!("usages did not match [{}]", RSA.join(" ")));
            }
            Ok(true)
        }
        KUBE_APISERVER_CLIENT => {
            let mut client_auth = false;
            for usage in usages {
                match *usage {
                    "digital signature" | "key encipherment" => {}
                    "client auth" => client_auth = true,
                    other => return Err(format!("invalid usage for client certificate: {other}")),
                }
            }
            if !client_auth {
                return Err("missing required usage for client certificate: client auth".into());
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Whether a request is one a kubelet makes for its own client certificate, which
/// upstream's approver may approve on its own (upstream's `IsKubeletClientCSR`).
pub fn is_kubelet_client_request(request: &Request, usages: &[&str]) -> bool {
    signer_accepts(KUBE_APISERVER_CLIENT_KUBELET, request, usages).is_ok()
}

/// The CONDITION cell of the table: Approved or Denied (or Pending), then Failed and
/// Issued when they apply.
pub fn condition_summary(csr: &Value) -> String {
    let kinds: Vec<&str> = conditions(csr).iter().map(condition_type).collect();
    let mut status = if kinds.contains(&"Denied") {
        "Denied".to_string()
    } else if kinds.contains(&"Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if kinds.contains(&"Failed") {
        status.push_str(",Failed");
    }
    if str_at(csr, &["status", "certificate"]).is_some_and(|c| !c.is_empty()) {
        status.push_str(",Issued");
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};
    use serde_json::json;

    fn csr_pem(cn: &str, orgs: &[&str], dns: &[&str]) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName((*d).try_into().unwrap()))
            .collect();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn csr(pem: &str, signer: &str, usages: &[&str]) -> Value {
        json!({"metadata": {"name": "r"}, "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer, "usages": usages}})
    }

    #[test]
    fn requests_are_parsed_and_checked() {
        let pem = csr_pem("system:node:n1", &["system:nodes"], &["n1.example"]);
        let parsed = parse_request(pem.as_bytes()).unwrap();
        assert_eq!(parsed.common_name, "system:node:n1");
        assert_eq!(parsed.organizations, ["system:nodes"]);
        assert_eq!(parsed.dns_names, ["n1.example"]);
        assert_eq!(
            parse_request(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
        assert!(
            validate(&csr(
                &pem,
                KUBELET_SERVING,
                &["digital signature", "server auth"]
            ))
            .is_empty()
        );
        let bad = csr("nonsense", "example.com", &[]);
        let messages: Vec<String> = validate(&bad)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(messages, vec![
            "spec.request: Invalid value: []byte{0x6e, 0x6f, 0x6e, 0x73, 0x65, 0x6e, 0x73, 0x65}: PEM block type must be CERTIFICATE REQUEST".to_string(),
            "spec.usages: Required value".to_string(),
            "spec.signerName: Invalid value: \"example.com\": must be a fully qualified domain and path of the form 'example.com/signer-name'".to_string(),
        ]);
        let legacy = csr(
            &pem,
            LEGACY_UNKNOWN,
            &["client auth", "client auth", "bogus"],
        );
        let fields: Vec<String> = validate(&legacy)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert!(
            fields.contains(&"spec.usages[1]: Duplicate value: \"client auth\"".to_string()),
            "{fields:?}"
        );
        assert!(
            fields
                .iter()
                .any(|f| f.starts_with("spec.usages[2]: Unsupported value: \"bogus\"")),
            "{fields:?}"
        );
        assert!(fields.contains(&"spec.signerName: Invalid value: \"kubernetes.io/legacy-unknown\": the legacy signerName is not allowed via this API version".to_string()), "{fields:?}");
    }

    #[test]
    fn updates_change_only_their_part() {
        let pem = csr_pem("bob", &[], &[]);
        let old = csr(&pem, KUBE_APISERVER_CLIENT, &["client auth"]);
        let mut approved = old.clone();
        approved["status"] = json!({"conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove"}]});
        assert!(validate_update(&old, &approved, UpdatePath::Approval).is_empty());
        let causes = validate_update(&old, &approved, UpdatePath::Status);
        assert_eq!(
            causes[0].message,
            "Forbidden: updates may not add a condition of type \"Approved\""
        );
        let mut both = approved.clone();
        both["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "Denied", "status": "True"}));
        assert_eq!(
            validate_update(&approved, &both, UpdatePath::Approval)[0].message,
            "Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"
        );
        let mut signed = approved.clone();
        signed["status"]["certificate"] = json!("bm90IGEgY2VydA==");
        let causes = validate_update(&approved, &signed, UpdatePath::Status);
        assert_eq!(causes[0].field, "status.certificate");
        assert_eq!(
            causes[0].message,
            "Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block"
        );
        assert_eq!(
            validate_update(&approved, &signed, UpdatePath::Main)
                .last()
                .unwrap()
                .message,
            "Forbidden: updates may not set certificate content"
        );
    }

    #[test]
    fn signers_check_subjects_and_usages() {
        let node =
            parse_request(csr_pem("system:node:n1", &["system:nodes"], &[]).as_bytes()).unwrap();
        assert_eq!(
            signer_accepts(
                KUBE_APISERVER_CLIENT_KUBELET,
                &node,
                &["digital signature", "client auth"]
            ),
            Ok(true)
        );
        assert_eq!(
            signer_accepts(KUBE_APISERVER_CLIENT_KUBELET, &node, &["client auth"]),
            Err("usages did not match [client auth digital signature key encipherment]".into())
        );
        assert_eq!(
            signer_accepts(
                KUBELET_SERVING,
                &node,
                &["digital signature", "server auth"]
            ),
            Err("DNS or IP subjectAltName is required".into())
        );
        let user = parse_request(csr_pem("bob", &["dev"], &[]).as_bytes()).unwrap();
        assert_eq!(
            signer_accepts(KUBE_APISERVER_CLIENT_KUBELET, &user, &["client auth"]),
            Err("subject organization is not system:nodes".into())
        );
        assert_eq!(
            signer_accepts(
                KUBE_APISERVER_CLIENT,
                &user,
                &["client auth", "digital signature"]
            ),
            Ok(true)
        );
        assert_eq!(
            signer_accepts(
                KUBE_APISERVER_CLIENT,
                &user,
                &["client auth", "server auth"]
            ),
            Err("invalid usage for client certificate: server auth".into())
        );
        assert_eq!(
            signer_accepts("example.com/other", &user, &["client auth"]),
            Ok(false)
        );
        assert!(is_kubelet_client_request(
            &node,
            &["digital signature", "key encipherment", "client auth"]
        ));
    }

    #[test]
    fn conditions_summarize_and_get_their_times() {
        let old = json!({"status": {"conditions": [{"type": "Approved", "status": "True", "lastTransitionTime": "T0"}]}});
        let mut new = json!({"status": {"conditions": [
            {"type": "Approved", "status": "True"}, {"type": "Failed", "status": "True"}]}});
        stamp_conditions(&old, &mut new, "T1");
        assert_eq!(new["status"]["conditions"][0]["lastTransitionTime"], "T0");
        assert_eq!(new["status"]["conditions"][0]["lastUpdateTime"], "T1");
        assert_eq!(new["status"]["conditions"][1]["lastTransitionTime"], "T1");
        assert_eq!(condition_summary(&new), "Approved,Failed");
        assert_eq!(condition_summary(&json!({})), "Pending");
        let pem = csr_pem("root", &["system:masters"], &[]);
        assert_eq!(
            subject_restriction(&csr(&pem, KUBE_APISERVER_CLIENT, &["client auth"])).unwrap(),
            "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
        );
    }
}
