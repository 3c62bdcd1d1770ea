//! Objects every cluster has from the start: the system namespaces, the default
//! ServiceCIDR `kubernetes` (the configured service range, Ready), the
//! `default/kubernetes` Service, the system PriorityClasses, the default RBAC policy and the
//! default StorageClass `standard`. Created when absent and never overwritten, except
//! the RBAC policy, which is reconciled as upstream's (`rbac::reconcile`), and the
//! flowcontrol configuration and local APIServices (`system_objects`); restarts and
//! several API servers starting together on one etcd are harmless (each one's create
//! either lands, finds the object there, or waits for the one racing it to land).

use super::Server;
use super::handlers::{create_object, decode, store_error, write_update};
use rind_api::servicecidr;
use rind_api::status::ApiError;
use rind_api::storage::{DEFAULT_CLASS, LOCAL_PATH_PROVISIONER, STANDARD_CLASS};
use serde_json::json;
use std::time::{Duration, Instant};

const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How long an API server waits for another one that holds the `kubernetes` Service's
/// address to store the Service (a matter of milliseconds when it is alive).
const PEER_CREATE_DEADLINE: Duration = Duration::from_secs(30);
/// An IPAddress naming the `kubernetes` Service that is this old while the Service does
/// not exist was left by an API server that died between the two writes.
const STALE_ADDRESS_AGE: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

async fn create_if_absent(
    server: &Server,
    plural: &str,
    ns: Option<&str>,
    object: serde_json::Value,
) -> Result<(), ApiError> {
    let resource = server
        .registry
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
    let name = rind_api::meta::name(&object).to_string();
    let deadline = Instant::now() + PEER_CREATE_DEADLINE;
    loop {
        // Looked up first: a create of the `kubernetes` Service that exists already
        // would fail on its taken ClusterIP before it could answer AlreadyExists.
        let stored = server
            .store
            .get(&resource.key(ns, &name))
            .await
            .map_err(|e| super::handlers::store_error(e, resource, &name))?;
        if stored.is_some() {
            return Ok(());
        }
        match create_object(server, resource, ns, object.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 409 => return Ok(()),
            // The Service's fixed ClusterIP is taken: another API server starting at
            // the same time took it for the same Service and is storing it now (as
            // upstream's API servers race on the same bootstrap, each reconciling what
            // the others wrote). Look again until it is there; an address left behind
            // by one that died in between is reclaimed.
            Err(e) if e.code == 422 && plural == "services" && Instant::now() < deadline => {
                tracing::info!(
                    "{}/{name} is being created by another API server: {}",
                    ns.unwrap_or_default(),
                    e.message
                );
                for ip in super::allocator::cluster_ips(&object) {
                    super::allocator::reclaim_stale(
                        server,
                        ip,
                        ns.unwrap_or_default(),
                        &name,
                        STALE_ADDRESS_AGE,
                    )
                    .await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How many bootstrap writes are in flight at once. Each one waits for etcd's fsync; a
/// fresh cluster has a few hundred of them (RBAC policy, flowcontrol, APIServices), and
/// etcd commits concurrent writes in one batch, so the API server is ready in a fraction
/// of the time one-at-a-time writes take.
const CONCURRENT_WRITES: usize = 32;

/// Runs `writes` with up to `CONCURRENT_WRITES` in flight; the first error ends it.
/// Takes the writes as a `Vec`: a lazy iterator's closure kept inside a spawned future
/// trips the compiler's higher-ranked lifetime check ("FnOnce is not general enough").
pub(super) async fn concurrently<F>(writes: Vec<F>) -> Result<(), ApiError>
where
    F: std::future::Future<Output = Result<(), ApiError>>,
{
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(writes)
        .buffer_unordered(CONCURRENT_WRITES)
        .try_collect::<()>()
        .await
}

pub async fn ensure_defaults(server: &Server) -> Result<(), ApiError> {
    concurrently(
        NAMESPACES
            .iter()
            .map(|ns| {
                create_if_absent(
                    server,
                    "namespaces",
                    None,
                    json!({"metadata": {"name": ns}}),
                )
            })
            .collect(),
    )
    .await?;
    // Independent of each other: written side by side.
    futures::try_join!(
        default_service(server),
        priority_classes(server),
        async {
            let policy =
                super::rbac::defaults::policy().map_err(|e| ApiError::internal(e.to_string()))?;
            super::rbac::reconcile::ensure_policy(server, &policy).await
        },
        super::system_objects::ensure_flowcontrol(server),
        super::system_objects::ensure_api_services(server),
        standard_storage_class(server),
    )?;
    Ok(())
}

/// The default ServiceCIDR, then the `default/kubernetes` Service at its first address.
async fn default_service(server: &Server) -> Result<(), ApiError> {
    ensure_default_service_cidr(server).await?;
    let cluster_ip = server.service_network.first().to_string();
    let service = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            // Single-stack of the primary family, in a dual-stack cluster too (as
            // upstream's API server keeps it).
            "ipFamilies": [server.service_network.families()[0]],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
        },
        "status": {"loadBalancer": {}},
    });
    create_if_absent(server, "services", Some("default"), service).await
}

async fn priority_classes(server: &Server) -> Result<(), ApiError> {
    let classes = server
        .registry
        .lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::internal("priorityclasses are not registered"))?;
    concurrently(
        rind_api::scheduling::system_priority_classes()
            .into_iter()
            .map(|class| async move {
                match create_object(server, classes, None, class).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.code == 409 => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .collect(),
    )
    .await
}

async fn standard_storage_class(server: &Server) -> Result<(), ApiError> {
    // kind's default class: local-path volumes on the node the pod lands on.
    let standard = json!({
        "metadata": {
            "name": STANDARD_CLASS,
            "annotations": {DEFAULT_CLASS: "true"},
        },
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    });
    let storage_classes = server
        .registry
        .lookup("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| ApiError::internal("storageclasses are not registered"))?;
    match create_object(server, storage_classes, None, standard).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The default ServiceCIDR, as upstream's API server keeps it: created from the
/// service range when absent, and marked Ready when it has no Ready condition yet and
/// still holds that range (a changed range is the administrator's to sort out).
async fn ensure_default_service_cidr(server: &Server) -> Result<(), ApiError> {
    let resource = server
        .registry
        .lookup("networking.k8s.io", "v1", "servicecidrs")
        .ok_or_else(|| ApiError::internal("servicecidrs are not registered"))?;
    let range = server.service_network.cidrs();
    let object = json!({"metadata": {"name": servicecidr::DEFAULT_NAME}, "spec": {"cidrs": range}});
    match create_object(server, resource, None, object).await {
        Ok(_) => {}
        Err(e) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    let key = resource.key(None, servicecidr::DEFAULT_NAME);
    let kv = server
        .store
        .get(&key)
        .await
        .map_err(|e| store_error(e, resource, servicecidr::DEFAULT_NAME))?
        .ok_or_else(|| ApiError::internal("the default ServiceCIDR vanished"))?;
    let current = decode(&kv)?;
    let has_ready = current
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.get("type") == Some(&json!(servicecidr::READY)))
        });
    let deleting = current.pointer("/metadata/deletionTimestamp").is_some();
    if has_ready || deleting || servicecidr::cidrs(&current) != range {
        return Ok(());
    }
    let mut next = current.clone();
    let now = rind_api::meta::format_time(rind_api::meta::now());
    next["status"] = json!({"conditions": [servicecidr::ready_condition(true, &now)]});
    match write_update(server, resource, &key, kv.mod_revision, &current, next).await {
        // Another API server got there first: its status stands.
        Ok(_) | Err(rind_store::StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(store_error(e, resource, servicecidr::DEFAULT_NAME)),
    }
}
