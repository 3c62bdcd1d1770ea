//! The ResourceQuota controller: every quota's `status.hard` is its `spec.hard`, and
//! its `status.used` what the objects in its namespace (those in all of its scopes)
//! cost, as upstream's quota evaluators measure it (`rind_api::quota`, which the API
//! server's quota admission shares). Admission charges creates as they happen; this
//! controller recomputes from the objects, which is also what gives back the usage of
//! deleted and finished objects.
//!
//! A quota is recomputed when it changes and when a pod, service, claim, configmap,
//! secret or replication controller in its namespace does; `count/<resource>` quotas
//! over other resources are recomputed on the resync.

use super::{ControllerError, RESYNC, error_policy};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use kube::api::{Api, ListParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use rind_api::limitrange::Resources;
use rind_api::quantity::Amount;
use rind_api::quota::{self, Evaluator};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

struct Ctx {
    client: Client,
    /// Where each measured resource is served, found by discovery.
    resources: Mutex<HashMap<(String, String), ApiResource>>,
}

/// The touched objects of one kind, as the namespaces they are in.
fn namespaces_of<K>(
    client: &Client,
) -> impl Stream<Item = Result<String, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .map(|object| object.map(|o| o.namespace().unwrap_or_default()))
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let controller = Controller::new(
        Api::<ResourceQuota>::all(client.clone()),
        watcher::Config::default(),
    );
    let quotas = controller.store();
    // A change to a measured object wakes every quota of its namespace.
    let triggers = futures::stream::select_all([
        namespaces_of::<Pod>(&client).boxed(),
        namespaces_of::<Service>(&client).boxed(),
        namespaces_of::<PersistentVolumeClaim>(&client).boxed(),
        namespaces_of::<ConfigMap>(&client).boxed(),
        namespaces_of::<Secret>(&client).boxed(),
        namespaces_of::<ReplicationController>(&client).boxed(),
    ]);
    let woken = triggers.filter_map(move |ns| {
        let refs = match ns {
            Ok(ns) => quotas_in(&quotas, &ns),
            Err(e) => {
                tracing::debug!("resourcequota trigger watch: {e}");
                Vec::new()
            }
        };
        futures::future::ready(Some(futures::stream::iter(refs)))
    });
    let ctx = Arc::new(Ctx {
        client,
        resources: Mutex::default(),
    });
    controller
        .reconcile_on(woken.flatten())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("resourcequota reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

fn quotas_in(quotas: &Store<ResourceQuota>, ns: &str) -> Vec<ObjectRef<ResourceQuota>> {
    quotas
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == Some(ns))
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// Where `(group, plural)` is served, asking discovery on a miss (a resource of a CRD
/// may appear at any time).
async fn api_resource(
    ctx: &Ctx,
    group: &str,
    plural: &str,
) -> Result<Option<ApiResource>, ControllerError> {
    let key = (group.to_string(), plural.to_string());
    if let Some(found) = ctx
        .resources
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(Some(found.clone()));
    }
    let served = match kube::discovery::group(&ctx.client, group).await {
        Ok(served) => served,
        // A group no one serves has no objects to count.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let found = served
        .recommended_resources()
        .into_iter()
        .map(|(resource, _)| resource)
        .find(|r| r.plural == plural);
    if let Some(found) = &found {
        ctx.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, found.clone());
    }
    Ok(found)
}

/// Every object `evaluator` measures in `ns`, as JSON.
async fn objects(
    ctx: &Ctx,
    evaluator: &Evaluator,
    ns: &str,
) -> Result<Vec<Value>, ControllerError> {
    let (group, plural) = evaluator.resource();
    let Some(resource) = api_resource(ctx, group, plural).await? else {
        return Ok(Vec::new());
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
    let list = api.list(&ListParams::default()).await?;
    list.items
        .into_iter()
        .map(|o| serde_json::to_value(o).map_err(|e| ControllerError::Invalid(e.to_string())))
        .collect()
}

/// Whether two resource lists hold the same amounts (upstream's `quota.Equals`).
fn same(a: &Resources, b: &Resources) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| w.quantity == v.quantity))
}

fn list_at(object: &Value, path: &[&str]) -> Option<Resources> {
    let map = rind_api::fields::at(object, path)?.as_object()?;
    Some(
        map.iter()
            .filter_map(|(k, v)| Some((k.clone(), Amount::parse(v.as_str()?)?)))
            .collect(),
    )
}

async fn reconcile(rq: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let ns = rq.namespace().unwrap_or_default();
    let mut object =
        serde_json::to_value(rq.as_ref()).map_err(|e| ControllerError::Invalid(e.to_string()))?;
    let (hard, scopes) = quota::spec_of(&object);
    let old_hard = list_at(&object, &["status", "hard"]);
    let old_used = list_at(&object, &["status", "used"]);
    // Usage of names no evaluator measures keeps its last observation.
    let mut used = old_used.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    for evaluator in quota::evaluators_for(&hard) {
        let items = objects(&ctx, &evaluator, &ns).await?;
        used.extend(quota::usage_of(&evaluator, &hard, &scopes, &items, now));
    }
    let used = quota::mask(&used, hard.keys());
    let dirty = !old_hard.as_ref().is_some_and(|h| same(h, &hard))
        || !old_used.as_ref().is_some_and(|u| same(u, &used));
    if dirty {
        object["status"] = serde_json::json!({
            "hard": quota::to_json(&hard),
            "used": quota::to_json(&used),
        });
        let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
        let next: ResourceQuota =
            serde_json::from_value(object).map_err(|e| ControllerError::Invalid(e.to_string()))?;
        api.replace_status(&rq.name_any(), &PostParams::default(), &next)
            .await?;
    }
    Ok(Action::requeue(RESYNC))
}
