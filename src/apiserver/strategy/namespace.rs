//! Namespaces: every namespace is labelled with its name and held on delete by its
//! spec finalizers (`kubernetes`, which the namespace cleanup (`namespaces`) removes
//! once the namespace is empty, and any a client adds through `finalize`); meanwhile
//! it is `Terminating`.

use super::Strategy;
use crate::Server;
use crate::namespaces;
use rind_api::meta::{self, child_mut, metadata_mut};
use rind_api::status::Cause;
use serde_json::{Value, json};
use std::sync::Arc;

pub struct Namespace;

impl Strategy for Namespace {
    fn default_and_validate(&self, namespace: &mut Value, _causes: &mut Vec<Cause>) {
        let name = meta::name(namespace).to_string();
        // Upstream labels every namespace with its name so selectors can pick namespaces.
        let labels = child_mut(metadata_mut(namespace), "labels");
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        if let Some(root) = namespace.as_object_mut() {
            // Holds a deleted namespace until its contents are gone (see namespaces.rs).
            child_mut(root, "spec")
                .entry("finalizers")
                .or_insert(json!(["kubernetes"]));
            child_mut(root, "status")
                .entry("phase")
                .or_insert(json!("Active"));
        }
    }

    fn prepare_for_update(&self, subresource: Option<&str>, current: &Value, next: &mut Value) {
        // A namespace's spec (its finalizers) is written through `finalize` only, as
        // upstream's; the namespace cleanup removes `kubernetes` there too.
        if subresource == Some("finalize") {
            return;
        }
        match current.get("spec") {
            Some(spec) => next["spec"] = spec.clone(),
            None => {
                if let Some(root) = next.as_object_mut() {
                    root.remove("spec");
                }
            }
        }
    }

    fn holds_deletion(&self, namespace: &Value) -> bool {
        namespace
            .get("spec")
            .and_then(|s| s.get("finalizers"))
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
    }

    fn mark_deleting(&self, namespace: &mut Value) {
        if let Some(root) = namespace.as_object_mut() {
            child_mut(root, "status").insert("phase".into(), json!("Terminating"));
        }
    }

    fn after_delete(&self, server: &Arc<Server>, name: &str) {
        namespaces::spawn_cleanup(server.clone(), name.to_string());
    }
}
