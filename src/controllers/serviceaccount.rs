//! The ServiceAccount controller: every namespace that is not being deleted has a
//! `default` ServiceAccount, recreated if someone deletes it.

use super::{ControllerError, RESYNC, error_policy};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::sync::Arc;

const DEFAULT: &str = "default";

pub async fn run(client: Client) -> Result<(), ControllerError> {
    // A deleted `default` account wakes its namespace.
    let namespace_of = |sa: ServiceAccount| -> Option<ObjectRef<Namespace>> {
        (sa.name_any() == DEFAULT).then(|| ObjectRef::new(&sa.namespace().unwrap_or_default()))
    };
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT}")),
        namespace_of,
    )
    .run(reconcile, error_policy, Arc::new(client))
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!("serviceaccount reconcile: {e}");
        }
    })
    .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, ControllerError> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(client.as_ref().clone(), &name);
    if api.get_opt(DEFAULT).await?.is_none() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                namespace: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::info!(namespace = %name, "created the default service account"),
            // Created meanwhile, or the namespace started terminating: both fine.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(RESYNC))
}
