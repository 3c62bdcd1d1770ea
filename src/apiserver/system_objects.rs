//! Objects an upstream API server keeps in line with itself at every start, beyond
//! the plain defaults of `bootstrap`:
//! - API Priority and Fairness configuration (`rind_api::flowcontrol`): the mandatory
//!   objects are restored whatever a user did to them; the suggested ones are created
//!   when missing and updated while their `apf.kubernetes.io/autoupdate-spec`
//!   annotation is "true".
//! - One local APIService per built-in group-version, reported Available as upstream's
//!   availability controller reports local services.
//!
//! Every write is conditional on the revision read, so API servers starting together
//! converge.

use super::Server;
use super::bootstrap::Snapshot;
use super::handlers::{create_object, decode, store_error, write_update};
use jiff::Timestamp;
use rind_api::flowcontrol::{self, AUTOUPDATE_ANNOTATION};
use rind_api::meta;
use rind_api::registry::Resource;
use rind_api::status::ApiError;
use rind_store::StoreError;
use serde_json::{Value, json};

/// What to do with the stored version of a desired object: `Some(next)` to write.
type Decide<'a> = &'a (dyn Fn(&Value) -> Option<Value> + Sync);

const ATTEMPTS: usize = 5;

fn lookup(server: &Server, group: &str, plural: &str) -> Result<&'static Resource, ApiError> {
    server
        .registry
        .lookup(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))
}

/// Creates `desired` when missing; otherwise writes what `decide` makes of the stored
/// object, if anything.
async fn ensure(
    server: &Server,
    seen: &Snapshot,
    resource: &'static Resource,
    desired: &Value,
    decide: Decide<'_>,
) -> Result<(), ApiError> {
    let name = meta::name(desired).to_string();
    let key = resource.key(None, &name);
    for attempt in 0..ATTEMPTS {
        let stored = seen
            .look(server, resource, None, &name, attempt == 0)
            .await?;
        let Some(kv) = stored else {
            match create_object(server, resource, None, desired.clone()).await {
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e),
                // A created object has no status yet; the next round decides on it.
                Ok(_) => continue,
            }
        };
        let current = decode(&kv)?;
        let Some(next) = decide(&current) else {
            return Ok(());
        };
        match write_update(server, resource, &key, kv.mod_revision, &current, next).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => continue,
            Err(e) => return Err(store_error(e, resource, &name)),
        }
    }
    Err(ApiError::internal(format!(
        "cannot bring {} {name:?} in line: it keeps changing",
        resource.plural
    )))
}

/// The stored object with `desired`'s spec (and annotation), if they differ.
fn with_spec(current: &Value, desired: &Value) -> Option<Value> {
    let annotation = &current["metadata"]["annotations"][AUTOUPDATE_ANNOTATION];
    if current.get("spec") == desired.get("spec") && annotation == "true" {
        return None;
    }
    let mut next = current.clone();
    next["spec"] = desired["spec"].clone();
    meta::metadata_mut(&mut next)
        .entry("annotations")
        .or_insert_with(|| json!({}))[AUTOUPDATE_ANNOTATION] = json!("true");
    Some(next)
}

pub async fn ensure_flowcontrol(server: &Server, seen: &Snapshot) -> Result<(), ApiError> {
    let levels = lookup(
        server,
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
    )?;
    let schemas = lookup(server, "flowcontrol.apiserver.k8s.io", "flowschemas")?;
    let (mandatory_levels, mandatory_schemas) = flowcontrol::mandatory();
    let (suggested_levels, suggested_schemas) = flowcontrol::suggested();
    let restore = |desired: &Value| {
        let desired = desired.clone();
        move |current: &Value| with_spec(current, &desired)
    };
    let update_if_auto = |desired: &Value| {
        let desired = desired.clone();
        move |current: &Value| {
            (current["metadata"]["annotations"][AUTOUPDATE_ANNOTATION] == "true")
                .then(|| with_spec(current, &desired))
                .flatten()
        }
    };
    // All at once: a schema naming a level not stored yet is valid (upstream marks it
    // dangling until the level comes), and each round of writes waits on etcd's commit.
    let mut writes = Vec::new();
    for (resource, mandatory, suggested) in [
        (levels, &mandatory_levels, &suggested_levels),
        (schemas, &mandatory_schemas, &suggested_schemas),
    ] {
        for desired in mandatory.iter() {
            writes.push(Box::pin(async move {
                let decide = restore(desired);
                ensure(server, seen, resource, desired, &decide).await
            })
                as std::pin::Pin<
                    Box<dyn std::future::Future<Output = _> + Send + '_>,
                >);
        }
        for desired in suggested.iter() {
            writes.push(Box::pin(async move {
                let decide = update_if_auto(desired);
                ensure(server, seen, resource, desired, &decide).await
            }));
        }
    }
    crate::bootstrap::concurrently(writes).await
}

/// Upstream's discovery order of the built-in groups: each group's
/// `groupPriorityMinimum` and each version's `versionPriority`, from the aggregator's
/// priority table (`pkg/controlplane/apiserver/aggregator.go`).
fn priority(group: &str, version: &str) -> (i64, i64) {
    let group_priority = match group {
        "" => 18000,
        "apiregistration.k8s.io" => 18000,
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "autoscaling" => 17500,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "networking.k8s.io" => 17200,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "storage.k8s.io" => 16800,
        "admissionregistration.k8s.io" | "apiextensions.k8s.io" => 16700,
        "scheduling.k8s.io" => 16600,
        "coordination.k8s.io" => 16500,
        "node.k8s.io" => 16300,
        "discovery.k8s.io" => 16200,
        "flowcontrol.apiserver.k8s.io" => 16100,
        "resource.k8s.io" => 15900,
        _ => 15000,
    };
    let version_priority = match (group, version) {
        ("", _) => 1,
        ("autoscaling", "v2") => 30,
        ("flowcontrol.apiserver.k8s.io", _) => 21,
        _ => 15,
    };
    (group_priority, version_priority)
}

/// What upstream's availability controller reports for a local APIService.
fn available(now: &str) -> Value {
    json!({"conditions": [{
        "type": "Available",
        "status": "True",
        "lastTransitionTime": now,
        "reason": "Local",
        "message": "Local APIServices are always available",
    }]})
}

pub async fn ensure_api_services(server: &Server, seen: &Snapshot) -> Result<(), ApiError> {
    let services = lookup(server, "apiregistration.k8s.io", "apiservices")?;
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut versions = vec![("", "v1")];
    for (group, group_versions) in server.registry.builtin_groups() {
        versions.extend(group_versions.into_iter().map(|v| (group, v)));
    }
    let now = &now;
    crate::bootstrap::concurrently(versions.into_iter().map(|(group, version)| async move {
        let (group_priority, version_priority) = priority(group, version);
        let desired = json!({
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": format!("{version}.{group}"), "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": group_priority, "versionPriority": version_priority},
        });
        let status = available(now);
        let decide = |current: &Value| {
            let spec_ok = current.get("spec") == desired.get("spec");
            let available = current["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Available" && c["status"] == "True");
            if spec_ok && available {
                return None;
            }
            let mut next = current.clone();
            next["spec"] = desired["spec"].clone();
            if !available {
                next["status"] = status.clone();
            }
            Some(next)
        };
        ensure(server, seen, services, &desired, &decide).await
    }).collect())
    .await
}
