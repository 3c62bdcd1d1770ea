//! The Endpoints and EndpointSlice of the `default/kubernetes` Service, as upstream's
//! API server keeps them with its lease endpoint reconciler: every API server holds a
//! lease that it renews, and writes the addresses of exactly the API servers whose
//! lease is live, so in-cluster clients reach the API through the Service's cluster IP
//! and one that is gone drops out once its lease expires. Written through the API with
//! the node's admin credentials once this server answers, then again every interval
//! (so a deleted or edited object comes back).
//!
//! Upstream keeps those leases as TTL keys under `/registry/masterleases/`; here they
//! are `coordination.k8s.io/v1` Leases in `kube-system` labelled as upstream labels
//! its API server identity leases (`apiserver.kubernetes.io/identity=kube-apiserver`),
//! one per advertised address, so `kubectl get leases -n kube-system` shows them.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use std::collections::BTreeMap;
use std::time::Duration;

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";
const LEASE_NAMESPACE: &str = "kube-system";
/// Upstream's label on API server identity leases.
const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
const IDENTITY: &str = "kube-apiserver";
/// The address an API server's lease stands for.
const ADDRESS_ANNOTATION: &str = "rind.dev/advertise-address";
/// How often leases are renewed and the objects checked (upstream: 10 s).
const INTERVAL: Duration = Duration::from_secs(5);
/// How long an API server stays listed after its last renewal (upstream's master
/// lease TTL: 15 s).
const LEASE_SECONDS: i32 = 15;

/// Keeps this API server's address in `default/kubernetes` for as long as it runs.
pub async fn run(address: String, port: u16) {
    let client = loop {
        match rind_runtime::client::from_kubeconfig(rind_runtime::paths::ADMIN_CONF).await {
            Ok(c) => break c,
            Err(err) => tracing::warn!("kubernetes endpoints: {err:#}"),
        }
        tokio::time::sleep(INTERVAL).await;
    };
    loop {
        let done = async {
            renew(&client, &address).await?;
            let live = live_addresses(&client, &address).await?;
            reconcile(&client, &live, port).await
        };
        if let Err(err) = done.await {
            tracing::info!("reconciling the kubernetes service endpoints: {err}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

fn lease_name(address: &str) -> String {
    format!("apiserver-{}", address.replace(['.', ':'], "-"))
}

/// Creates or renews this API server's lease.
async fn renew(client: &kube::Client, address: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let name = lease_name(address);
    let now = MicroTime(Timestamp::now());
    match leases.get_opt(&name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    labels: Some(BTreeMap::from([(IDENTITY_LABEL.into(), IDENTITY.into())])),
                    annotations: Some(BTreeMap::from([(
                        ADDRESS_ANNOTATION.into(),
                        address.to_string(),
                    )])),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..LeaseSpec::default()
                }),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(LEASE_SECONDS);
            leases
                .replace(&name, &PostParams::default(), &lease)
                .await?;
        }
    }
    Ok(())
}

/// Whether a lease was renewed within its duration, by `now`.
fn is_live(lease: &Lease, now: Timestamp) -> bool {
    let Some(spec) = &lease.spec else {
        return false;
    };
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return false;
    };
    renewed.0 + jiff::SignedDuration::from_secs(i64::from(seconds)) > now
}

/// The addresses of every API server with a live lease (always including ours);
/// leases expired for a whole duration more are deleted, as upstream's identity lease
/// garbage collector does.
async fn live_addresses(client: &kube::Client, own: &str) -> Result<Vec<String>, kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let list = leases
        .list(&ListParams::default().labels(&format!("{IDENTITY_LABEL}={IDENTITY}")))
        .await?;
    let now = Timestamp::now();
    let grace = jiff::SignedDuration::from_secs(i64::from(LEASE_SECONDS));
    let mut addresses = vec![own.to_string()];
    for lease in &list.items {
        let address = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ADDRESS_ANNOTATION));
        if is_live(lease, now) {
            addresses.extend(address.cloned());
        } else if !is_live(lease, now - grace) {
            let name = lease.metadata.name.clone().unwrap_or_default();
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: lease.metadata.resource_version.clone(),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            // Renewed or deleted meanwhile by another API server: fine either way.
            if let Err(err) = leases.delete(&name, &params).await {
                tracing::debug!("deleting the expired lease {name}: {err}");
            }
        }
    }
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

fn port_list(port: u16) -> Vec<EndpointPort> {
    vec![EndpointPort {
        name: Some("https".into()),
        port: i32::from(port),
        protocol: Some("TCP".into()),
        app_protocol: None,
    }]
}

/// Writes `addresses` as the Endpoints and EndpointSlice of `default/kubernetes`.
async fn reconcile(
    client: &kube::Client,
    addresses: &[String],
    port: u16,
) -> Result<(), kube::Error> {
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let current = endpoints.get_opt(NAME).await?;
    let subsets = Some(vec![EndpointSubset {
        addresses: Some(
            addresses
                .iter()
                .map(|ip| EndpointAddress {
                    ip: ip.clone(),
                    ..EndpointAddress::default()
                })
                .collect(),
        ),
        not_ready_addresses: None,
        ports: Some(port_list(port)),
    }]);
    // Upstream marks it so the EndpointSlice mirroring controller leaves it alone
    // (the API server writes the slice itself).
    let labels = BTreeMap::from([(
        "endpointslice.kubernetes.io/skip-mirror".to_string(),
        "true".to_string(),
    )]);
    match current {
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    namespace: Some(NAMESPACE.into()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                subsets,
            };
            endpoints.create(&PostParams::default(), &ep).await?;
        }
        Some(mut ep) => {
            if ep.subsets != subsets || ep.metadata.labels.as_ref() != Some(&labels) {
                ep.subsets = subsets;
                ep.metadata.labels = Some(labels);
                endpoints.replace(NAME, &PostParams::default(), &ep).await?;
            }
        }
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let wanted_endpoints: Vec<Endpoint> = addresses
        .iter()
        .map(|ip| Endpoint {
            addresses: vec![ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: None,
                terminating: None,
            }),
            ..Endpoint::default()
        })
        .collect();
    let ports = Some(vec![SlicePort {
        name: Some("https".into()),
        port: Some(i32::from(port)),
        protocol: Some("TCP".into()),
        app_protocol: None,
    }]);
    let labels = BTreeMap::from([("kubernetes.io/service-name".to_string(), NAME.to_string())]);
    match slices.get_opt(NAME).await? {
        None => {
            let slice = EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    namespace: Some(NAMESPACE.into()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                address_type: "IPv4".into(),
                endpoints: Some(wanted_endpoints),
                ports,
            };
            slices.create(&PostParams::default(), &slice).await?;
        }
        Some(mut slice) => {
            if slice.endpoints.as_ref() != Some(&wanted_endpoints)
                || slice.ports != ports
                || slice.metadata.labels.as_ref() != Some(&labels)
            {
                slice.endpoints = Some(wanted_endpoints);
                slice.ports = ports;
                slice.metadata.labels = Some(labels);
                slices.replace(NAME, &PostParams::default(), &slice).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(renewed: Timestamp, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_lives_for_its_duration_after_renewal() {
        let now = Timestamp::now();
        let ago = |s: i64| now - jiff::SignedDuration::from_secs(s);
        assert!(is_live(&lease(ago(14), 15), now));
        assert!(!is_live(&lease(ago(16), 15), now));
        assert!(!is_live(&Lease::default(), now));
        assert_eq!(lease_name("172.28.0.2"), "apiserver-172-28-0-2");
    }
}
