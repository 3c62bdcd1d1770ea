//! admissionregistration.k8s.io objects: stored and validated as upstream's, but
//! rind's API server neither calls admission webhooks nor evaluates CEL admission
//! policies yet, so every write tells the client so (a `Warning`) rather than
//! letting it believe the object is enforced.

use super::Strategy;

pub struct AdmissionConfiguration {
    /// What the server does not do for objects of this kind.
    missing: &'static str,
}

pub const WEBHOOKS: AdmissionConfiguration = AdmissionConfiguration {
    missing: "call admission webhooks",
};

pub const POLICIES: AdmissionConfiguration = AdmissionConfiguration {
    missing: "evaluate admission policies",
};

impl Strategy for AdmissionConfiguration {
    fn write_warning(&self, kind: &str) -> Option<String> {
        Some(format!(
            "rind does not {} yet: this {kind} is stored but not enforced",
            self.missing
        ))
    }
}
