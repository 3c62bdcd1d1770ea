//! Per-kind rules of the write and delete paths, as upstream's per-resource
//! strategies: the generic handlers call these hooks and never ask which kind they
//! serve, so a kind with special rules is one file here plus its line in `of`.
//! Every hook defaults to "nothing special". Defaults and validation that need no
//! server state and apply to many kinds live in `rind_api::kinds`.

mod admission;
mod certificate_signing_request;
mod namespace;
mod persistent_volume_claim;
mod pod;
mod priority_class;
mod service;

use super::Server;
use super::handlers::Ctx;
use futures::future::BoxFuture;
use rind_api::registry::Resource;
use rind_api::status::{ApiError, Cause};
use serde_json::Value;
use std::sync::Arc;

/// A hook that needs server state: `None` when the kind has nothing to do, so kinds
/// without such rules box no future.
pub type AsyncHook<'a, T> = Option<BoxFuture<'a, Result<T, ApiError>>>;

/// What create admission does to the object once the field manager has recorded the
/// client's fields: upstream's admission plugins run after it, so the fields they add
/// are no one's. A plugin may also refuse the object here.
pub type AfterFieldManager = Box<dyn Fn(&mut Value) -> Result<(), ApiError> + Send + Sync>;

/// A kind's hooks into the generic handlers; each kind implements only those it needs.
pub trait Strategy: Sync {
    /// Clears what a client may not set on create, before the generic create rules.
    fn prepare_for_create(&self, _object: &mut Value) {}

    /// Defaults and validation of a main-resource write (create, update, patch),
    /// after `rind_api::kinds`' own.
    fn default_and_validate(&self, _object: &mut Value, _causes: &mut Vec<Cause>) {}

    /// Admission with server state, once per create before the object is admitted.
    fn admit_create<'a>(
        &'a self,
        _ctx: &'a Ctx<'a>,
        _object: &'a mut Value,
    ) -> AsyncHook<'a, Option<AfterFieldManager>> {
        None
    }

    /// Reserves what the admitted object needs just before it is stored (not run on a
    /// dry run, which must reserve nothing).
    fn begin_create<'a>(&'a self, _ctx: &'a Ctx<'a>, _object: &'a mut Value) -> AsyncHook<'a, ()> {
        None
    }

    /// Gives back what `begin_create` reserved when the object could not be stored.
    fn abort_create<'a>(&'a self, _ctx: &'a Ctx<'a>, _object: &'a Value) -> AsyncHook<'a, ()> {
        None
    }

    /// Gives back what a stored object held, once it is gone from the store (by any
    /// delete: of the object, of a collection, of its namespace, or its last
    /// finalizer removed).
    fn deleted<'a>(&'a self, _server: &'a Server, _object: &'a Value) -> AsyncHook<'a, ()> {
        None
    }

    /// Carries over what an update may not change or may leave out, before the
    /// server-owned metadata is restored.
    fn prepare_for_update(&self, _subresource: Option<&str>, _current: &Value, _next: &mut Value) {}

    /// Rules comparing a main-resource write with the stored object, after
    /// `rind_api::kinds::validate_update`.
    fn validate_update(&self, _current: &Value, _next: &Value, _causes: &mut Vec<Cause>) {}

    /// Rules comparing a subresource write (`status`, `approval`, `ephemeralcontainers`)
    /// with the stored object.
    fn validate_subresource_update(
        &self,
        _subresource: &str,
        _current: &Value,
        _next: &Value,
        _causes: &mut Vec<Cause>,
    ) {
    }

    /// Admission with server state of an admitted subresource write.
    fn admit_subresource_update<'a>(
        &'a self,
        _ctx: &'a Ctx<'a>,
        _subresource: &'a str,
        _current: &'a Value,
        _next: &'a Value,
    ) -> AsyncHook<'a, ()> {
        None
    }

    /// Admission with server state of an admitted update or patch of the main resource.
    fn admit_update<'a>(&'a self, _ctx: &'a Ctx<'a>, _object: &'a Value) -> AsyncHook<'a, ()> {
        None
    }

    /// How long a delete waits before the object goes (upstream's CheckGracefulDelete);
    /// `requested` is the client's `gracePeriodSeconds`.
    fn grace_period(&self, _object: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Whether something of the kind's own, besides `metadata.finalizers`, still
    /// holds the object back from deletion.
    fn holds_deletion(&self, _object: &Value) -> bool {
        false
    }

    /// Marks an object whose deletion now waits (grace period or finalizers).
    fn mark_deleting(&self, _object: &mut Value) {}

    /// Work that follows a successful DELETE of one object.
    fn after_delete(&self, _server: &Arc<Server>, _name: &str) {}

    /// A warning for the client after each create, update or patch of an object of
    /// `kind`: what the stored object asks for that this server does not do yet.
    fn write_warning(&self, _kind: &str) -> Option<String> {
        None
    }
}

/// Kinds with no rules beyond the generic ones.
struct Plain;

impl Strategy for Plain {}

/// The rules of `resource`'s kind. A static match: no lookup structure, nothing allocated.
pub fn of(resource: &Resource) -> &'static dyn Strategy {
    match (resource.group, resource.kind) {
        ("", "Pod") => &pod::Pod,
        ("", "Service") => &service::Service,
        ("", "Namespace") => &namespace::Namespace,
        ("", "PersistentVolumeClaim") => &persistent_volume_claim::PersistentVolumeClaim,
        ("scheduling.k8s.io", "PriorityClass") => &priority_class::PriorityClass,
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
        ) => &admission::WEBHOOKS,
        ("admissionregistration.k8s.io", _) => &admission::POLICIES,
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            &certificate_signing_request::CertificateSigningRequest
        }
        _ => &Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_api::registry::Registry;
    use serde_json::json;

    #[test]
    fn registry_entries_find_their_kinds_rules() {
        let reg = Registry::default();
        let entry = |group, plural| of(reg.lookup(group, "v1", plural).unwrap());
        let bound = json!({"spec": {"nodeName": "n"}});
        assert_eq!(entry("", "pods").grace_period(&bound, None), 30);
        assert_eq!(entry("", "configmaps").grace_period(&bound, None), 0);
        let finalized = json!({"spec": {"finalizers": ["kubernetes"]}});
        assert!(entry("", "namespaces").holds_deletion(&finalized));
        assert!(!entry("", "configmaps").holds_deletion(&finalized));
        let server = json!({"spec": {"clusterIP": "10.96.0.10"}});
        let mut client = json!({"spec": {}});
        entry("", "services").prepare_for_update(None, &server, &mut client);
        assert_eq!(client["spec"]["clusterIP"], "10.96.0.10");
    }
}
