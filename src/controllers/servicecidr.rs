//! The ServiceCIDR controller: every ServiceCIDR is held by the
//! `networking.k8s.io/service-cidr-finalizer` and marked Ready, which is what lets the
//! API server's allocator hand out its addresses. A deleted ServiceCIDR keeps its
//! finalizer while an IPAddress lies in its ranges and in no other Ready ServiceCIDR
//! (its condition then says so, reason `Terminating`), and a grace period after its
//! deletion began, so no allocator still counting it Ready hands out an address
//! after the check; then the finalizer goes and the object with it. As upstream's
//! pkg/controller/servicecidrs.

use super::{ControllerError, error_policy};
use futures::StreamExt;
use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rind_api::servicecidr::{self, Cidr};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long after its deletion began a ServiceCIDR may go (upstream's grace).
const DELETION_GRACE: Duration = Duration::from_secs(10);

struct Ctx {
    client: Client,
    cidrs: Store<ServiceCIDR>,
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let controller = Controller::new(
        Api::<ServiceCIDR>::all(client.clone()),
        watcher::Config::default(),
    );
    let cidrs = controller.store();
    let deleting = cidrs.clone();
    // A released address may let a deleted ServiceCIDR go.
    let wake_deleting = move |_: IPAddress| -> Vec<ObjectRef<ServiceCIDR>> {
        deleting
            .state()
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_some())
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect()
    };
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        cidrs,
    });
    controller
        .watches(
            Api::<IPAddress>::all(client),
            watcher::Config::default(),
            wake_deleting,
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("servicecidr reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

fn to_value<T: serde::Serialize>(object: &T) -> Result<Value, ControllerError> {
    serde_json::to_value(object).map_err(|e| ControllerError::Invalid(e.to_string()))
}

fn ready(object: &Value) -> Option<&Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type") == Some(&json!(servicecidr::READY)))
}

async fn set_condition(ctx: &Ctx, name: &str, condition: Value) -> Result<(), ControllerError> {
    let patch = json!({"status": {"conditions": [condition]}});
    Api::<ServiceCIDR>::all(ctx.client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn reconcile(cidr: Arc<ServiceCIDR>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let name = cidr.name_any();
    let object = to_value(cidr.as_ref())?;
    let finalizers = cidr.finalizers();
    let held = finalizers.iter().any(|f| f == servicecidr::FINALIZER);
    let api = Api::<ServiceCIDR>::all(ctx.client.clone());
    let Some(deleted_at) = &cidr.metadata.deletion_timestamp else {
        if !held {
            let mut list = finalizers.to_vec();
            list.push(servicecidr::FINALIZER.to_string());
            let patch = json!({"metadata": {"finalizers": list, "resourceVersion": cidr.resource_version()}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        if ready(&object).and_then(|c| c.get("status")) != Some(&json!("True")) {
            let now = rind_api::meta::format_time(rind_api::meta::now());
            set_condition(&ctx, &name, servicecidr::ready_condition(false, &now)).await?;
        }
        return Ok(Action::await_change());
    };
    if !held {
        return Ok(Action::await_change());
    }
    let stranded = stranded_addresses(&ctx, &cidr).await?;
    if !stranded.is_empty() {
        let terminating =
            ready(&object).and_then(|c| c.get("reason")) == Some(&json!("Terminating"));
        if !terminating {
            let now = rind_api::meta::format_time(rind_api::meta::now());
            let condition = json!({
                "type": servicecidr::READY, "status": "False", "reason": "Terminating",
                "message": "There are still IPAddresses referencing the ServiceCIDR, please remove them or create a new ServiceCIDR",
                "lastTransitionTime": now,
            });
            set_condition(&ctx, &name, condition).await?;
        }
        return Ok(Action::await_change());
    }
    // Allocators may still count it Ready for a moment: wait out the grace.
    let since = jiff::Timestamp::now().duration_since(deleted_at.0);
    let grace = jiff::SignedDuration::try_from(DELETION_GRACE).unwrap_or_default();
    if since < grace {
        let left = (grace - since).unsigned_abs();
        return Ok(Action::requeue(left.max(Duration::from_millis(100))));
    }
    let kept: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != servicecidr::FINALIZER)
        .cloned()
        .collect();
    let patch =
        json!({"metadata": {"finalizers": kept, "resourceVersion": cidr.resource_version()}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(servicecidr = %name, "no address depends on it any more: released");
    Ok(Action::await_change())
}

/// The addresses in `cidr`'s ranges that no other Ready ServiceCIDR covers.
async fn stranded_addresses(ctx: &Ctx, cidr: &ServiceCIDR) -> Result<Vec<IpAddr>, ControllerError> {
    let ranges = |c: &ServiceCIDR| -> Vec<Cidr> {
        c.spec
            .as_ref()
            .and_then(|s| s.cidrs.clone())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Cidr::parse(t))
            .collect()
    };
    let own = ranges(cidr);
    let mut others = Vec::new();
    for other in ctx.cidrs.state() {
        if other.name_any() != cidr.name_any() && servicecidr::is_ready(&to_value(other.as_ref())?)
        {
            others.extend(ranges(&other));
        }
    }
    let addresses = Api::<IPAddress>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(addresses
        .items
        .iter()
        .filter_map(|a| a.name_any().parse::<IpAddr>().ok())
        .filter(|ip| own.iter().any(|c| c.contains(*ip)) && !others.iter().any(|c| c.contains(*ip)))
        .collect())
}
