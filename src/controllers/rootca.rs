//! The root-CA publisher (upstream's `root-ca-cert-publisher`): every namespace that is
//! not being deleted holds the ConfigMap `kube-root-ca.crt` with the cluster CA under
//! `ca.crt`, put back as it was if someone edits or deletes it. Pods' projected
//! `kube-api-access-*` volumes read their `ca.crt` from it.

use super::{ControllerError, RESYNC, error_policy};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;

const NAME: &str = "kube-root-ca.crt";
const KEY: &str = "ca.crt";
/// Upstream's description of the ConfigMap, word for word.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Ctx {
    client: Client,
    ca_pem: String,
}

pub async fn run(client: Client, ca_pem: String) -> Result<(), ControllerError> {
    // A changed or deleted ConfigMap wakes its namespace.
    let namespace_of = |cm: ConfigMap| -> Option<ObjectRef<Namespace>> {
        (cm.name_any() == NAME).then(|| ObjectRef::new(&cm.namespace().unwrap_or_default()))
    };
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={NAME}")),
        namespace_of,
    )
    .run(reconcile, error_policy, Arc::new(Ctx { client, ca_pem }))
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!("root-ca-cert-publisher reconcile: {e}");
        }
    })
    .await;
    Ok(())
}

/// The ConfigMap as the publisher writes it.
fn wanted(namespace: &str, ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(namespace.into()),
            annotations: Some(BTreeMap::from([(
                "kubernetes.io/description".to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(KEY.to_string(), ca_pem.to_string())])),
        ..ConfigMap::default()
    }
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let want = wanted(&name, &ctx.ca_pem);
    match api.get_opt(NAME).await? {
        None => match api.create(&PostParams::default(), &want).await {
            Ok(_) => tracing::info!(namespace = %name, "published the root CA"),
            // Created meanwhile, or the namespace started terminating: both fine.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return Err(e.into()),
        },
        Some(mut current) if current.data != want.data || current.binary_data.is_some() => {
            // Upstream puts back its data and annotation and keeps the rest.
            current.data = want.data;
            current.binary_data = None;
            current
                .metadata
                .annotations
                .get_or_insert_default()
                .insert("kubernetes.io/description".into(), DESCRIPTION.into());
            match api.replace(NAME, &PostParams::default(), &current).await {
                Ok(_) => tracing::info!(namespace = %name, "restored the root CA"),
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                    return Ok(Action::requeue(std::time::Duration::from_millis(200)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Some(_) => {}
    }
    Ok(Action::requeue(RESYNC))
}
