//! The Endpoints and EndpointSlice of the `default/kubernetes` Service, as upstream's
//! API server keeps them (its endpoint reconciler): every API server puts its own
//! address and port there, so that in-cluster clients reach the API through the
//! Service's cluster IP. Written through the API with the node's admin credentials
//! once this server answers, then checked again periodically (so a deleted or edited
//! object comes back).
//!
//! Addresses of other API servers are kept; one that is gone for good stays listed
//! until an administrator removes it (upstream expires them through leases).

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use std::collections::BTreeMap;
use std::time::Duration;

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";
/// How often the objects are checked (upstream's reconcile interval is 10 s).
const INTERVAL: Duration = Duration::from_secs(10);

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
        if let Err(err) = reconcile(&client, &address, port).await {
            tracing::info!("reconciling the kubernetes service endpoints: {err}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

fn port_list(port: u16) -> Vec<EndpointPort> {
    vec![EndpointPort {
        name: Some("https".into()),
        port: i32::from(port),
        protocol: Some("TCP".into()),
        app_protocol: None,
    }]
}

async fn reconcile(client: &kube::Client, address: &str, port: u16) -> Result<(), kube::Error> {
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    let current = endpoints.get_opt(NAME).await?;
    let mut addresses: Vec<String> = current
        .iter()
        .flat_map(|e| e.subsets.iter().flatten())
        .flat_map(|s| s.addresses.iter().flatten())
        .map(|a| a.ip.clone())
        .collect();
    if !addresses.iter().any(|a| a == address) {
        addresses.push(address.to_string());
    }
    addresses.sort();
    addresses.dedup();
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
