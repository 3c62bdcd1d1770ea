//! The Endpoints and EndpointSlice controllers: for every Service with a selector, the
//! IPs of the pods it selects, with the Service's ports resolved against each pod
//! (a named targetPort is looked up among the pod's container ports). Ready pods are
//! addresses, the rest notReadyAddresses (all addresses with
//! `publishNotReadyAddresses`); pods being deleted are left out of Endpoints and shown
//! as terminating in EndpointSlices, as kube-proxy expects.

use super::owners;
use super::{ControllerError, RESYNC, error_policy, reflect, reflected};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Labels upstream puts on the slices it manages; kube-proxy finds slices by the first.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Marks the Endpoints objects this controller writes, so that only those are removed
/// when their Service goes (hand-made Endpoints of selector-less Services stay).
const ENDPOINTS_MANAGED_LABEL: &str = "endpoints.kubernetes.io/managed-by";
const ENDPOINTS_MANAGED_BY: &str = "endpoint-controller";
/// How often Endpoints left by deleted Services are looked for.
const SWEEP: Duration = Duration::from_secs(5);

struct Ctx {
    client: Client,
    pods: Store<Pod>,
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (pods, pod_events) = reflected(Api::<Pod>::all(client.clone()));
    let (endpoints, endpoints_task) = reflect(Api::<Endpoints>::all(client.clone()), "endpoints");
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let services = controller.store();
    let sweeper = tokio::spawn(sweep(client.clone(), services.clone(), endpoints));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        pods,
    });
    // A pod change wakes every Service in its namespace whose selector matches it.
    let selecting = move |pod: Pod| -> Vec<ObjectRef<Service>> {
        let ns = pod.namespace().unwrap_or_default();
        services
            .state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
            .filter(|s| {
                selector(s)
                    .is_some_and(|sel| sel.iter().all(|(k, v)| pod.labels().get(k) == Some(v)))
            })
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect()
    };
    controller
        .watches_stream(pod_events, selecting)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("endpoints reconcile: {e}");
            }
        })
        .await;
    endpoints_task.abort();
    sweeper.abort();
    Ok(())
}

/// The Service's selector, if it manages endpoints (a selector-less Service's
/// Endpoints are written by hand).
fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Removes the Endpoints we wrote for Services that no longer exist (EndpointSlices
/// carry an ownerReference and go with the garbage collector).
async fn sweep(client: Client, services: Store<Service>, endpoints: Store<Endpoints>) {
    loop {
        tokio::time::sleep(SWEEP).await;
        if services.wait_until_ready().await.is_err() {
            return;
        }
        for ep in endpoints.state() {
            let ours = ep.labels().get(ENDPOINTS_MANAGED_LABEL).map(String::as_str)
                == Some(ENDPOINTS_MANAGED_BY);
            let ns = ep.namespace().unwrap_or_default();
            let service = ObjectRef::<Service>::new(&ep.name_any()).within(&ns);
            if ours && services.get(&service).is_none() {
                let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
                if let Err(e) = api.delete(&ep.name_any(), &DeleteParams::default()).await {
                    tracing::debug!("deleting endpoints {ns}/{}: {e}", ep.name_any());
                }
            }
        }
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The Service's ports as this pod serves them; None when a named targetPort is not
/// among the pod's container ports (the pod cannot serve that Service port).
/// The hostname an endpoint is published under in DNS: the pod's `hostname`, only when
/// its `subdomain` names this Service (a StatefulSet's pods and their governing
/// Service), as upstream's controllers publish it.
fn dns_hostname(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let same_service = spec.subdomain.is_some() && spec.subdomain == svc.metadata.name;
    let same_namespace = pod.metadata.namespace == svc.metadata.namespace;
    spec.hostname
        .clone()
        .filter(|h| !h.is_empty() && same_service && same_namespace)
}

fn resolve_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let mut out = Vec::new();
    for port in svc.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
        let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
        let number = match &port.target_port {
            None => Some(port.port),
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(name)) => pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port),
        };
        if let Some(number) = number {
            out.push(EndpointPort {
                name: port.name.clone(),
                port: number,
                protocol: Some(protocol),
                app_protocol: port.app_protocol.clone(),
            });
        }
    }
    out
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// One group of pods serving the same resolved ports.
struct Group {
    ports: Vec<EndpointPort>,
    pods: Vec<Arc<Pod>>,
}

fn group_pods(svc: &Service, pods: Vec<Arc<Pod>>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for pod in pods {
        let ports = resolve_ports(svc, &pod);
        match groups.iter_mut().find(|g| g.ports == ports) {
            Some(g) => g.pods.push(pod),
            None => groups.push(Group {
                ports,
                pods: vec![pod],
            }),
        }
    }
    groups
}

/// The Service's IP families, primary first (IPv4 when the field is unset, as on a
/// Service stored before the API server filled it).
fn families(svc: &Service) -> Vec<String> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ip_families.clone())
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| vec!["IPv4".to_string()])
}

/// The pod's address of `family` (`IPv4` or `IPv6`), from `status.podIPs` (a
/// dual-stack pod has one of each), else `status.podIP`.
fn pod_ip(pod: &Pod, family: &str) -> Option<String> {
    let status = pod.status.as_ref()?;
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.clone());
    listed
        .chain(status.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .find(|ip| {
            ip.parse::<std::net::IpAddr>()
                .is_ok_and(|addr| addr.is_ipv6() == (family == "IPv6"))
        })
}

fn subsets(svc: &Service, groups: &[Group]) -> Vec<EndpointSubset> {
    let publish_all = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    // Endpoints hold one family: the Service's primary one, as upstream's controller.
    let family = families(svc).swap_remove(0);
    let mut out = Vec::new();
    for group in groups {
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for pod in group
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let Some(ip) = pod_ip(pod, &family) else {
                continue;
            };
            let address = EndpointAddress {
                ip,
                hostname: dns_hostname(svc, pod),
                node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(pod_ref(pod)),
            };
            if publish_all || is_ready(pod) {
                ready.push(address);
            } else {
                not_ready.push(address);
            }
        }
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        ready.sort_by(|a, b| a.ip.cmp(&b.ip));
        not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
        out.push(EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!group.ports.is_empty()).then(|| group.ports.clone()),
        });
    }
    out
}

fn slice_endpoints(svc: &Service, group: &Group, family: &str) -> Vec<Endpoint> {
    let publish_all = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let mut out: Vec<Endpoint> = group
        .pods
        .iter()
        .filter_map(|pod| {
            let ip = pod_ip(pod, family)?;
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let serving = publish_all || is_ready(pod);
            Some(Endpoint {
                addresses: vec![ip],
                conditions: Some(EndpointConditions {
                    ready: Some(serving && !terminating),
                    serving: Some(serving),
                    terminating: Some(terminating),
                }),
                hostname: dns_hostname(svc, pod),
                node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(pod_ref(pod)),
                ..Endpoint::default()
            })
        })
        .collect();
    out.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    out
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let Some(sel) = selector(&svc) else {
        return Ok(Action::await_change());
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| sel.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    let groups = group_pods(&svc, pods);
    write_endpoints(&ctx.client, &svc, subsets(&svc, &groups)).await?;
    write_slices(&ctx.client, &svc, &groups).await?;
    tracing::debug!(service = %format!("{ns}/{name}"), "endpoints synced");
    Ok(Action::requeue(RESYNC))
}

async fn write_endpoints(
    client: &Client,
    svc: &Service,
    subsets: Vec<EndpointSubset>,
) -> Result<(), ControllerError> {
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    let mut labels = svc.labels().clone();
    labels.insert(ENDPOINTS_MANAGED_LABEL.into(), ENDPOINTS_MANAGED_BY.into());
    let subsets = (!subsets.is_empty()).then_some(subsets);
    match api.get_opt(&svc.name_any()).await? {
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(svc.name_any()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                subsets,
            };
            api.create(&PostParams::default(), &ep).await?;
        }
        Some(mut ep) => {
            if ep.subsets == subsets && ep.metadata.labels.as_ref() == Some(&labels) {
                return Ok(());
            }
            ep.subsets = subsets;
            ep.metadata.labels = Some(labels);
            api.replace(&svc.name_any(), &PostParams::default(), &ep)
                .await?;
        }
    }
    Ok(())
}

/// A slice name that stays the same for the same Service, ports and address family.
fn slice_name(svc: &Service, ports: &[EndpointPort], family: &str) -> String {
    let mut text = serde_json::to_string(ports).unwrap_or_default();
    // IPv4 slices keep the names they had before slices came in two families.
    if family != "IPv4" {
        text.push_str(family);
    }
    let hash = text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let base: String = svc.name_any().chars().take(50).collect();
    format!("{base}-{hash:08x}")
}

async fn write_slices(
    client: &Client,
    svc: &Service,
    groups: &[Group],
) -> Result<(), ControllerError> {
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let existing = api
        .list(&kube::api::ListParams::default().labels(&format!(
            "{SERVICE_NAME_LABEL}={},{MANAGED_BY_LABEL}={MANAGED_BY}",
            svc.name_any()
        )))
        .await?
        .items;
    let mut wanted = Vec::new();
    // One slice per address family of the Service, as upstream's EndpointSlice
    // controller: a dual-stack Service has an IPv4 and an IPv6 slice.
    let families = families(svc);
    let mut pairs: Vec<(&Group, &str)> = Vec::new();
    for group in groups {
        for family in &families {
            pairs.push((group, family.as_str()));
        }
    }
    for (group, family) in pairs {
        let name = slice_name(svc, &group.ports, family);
        let mut labels = svc.labels().clone();
        labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        let ports: Vec<SlicePort> = group
            .ports
            .iter()
            .map(|p| SlicePort {
                name: p.name.clone(),
                port: Some(p.port),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                owner_references: Some(vec![owners::controller_ref(svc)]),
                ..ObjectMeta::default()
            },
            address_type: family.into(),
            endpoints: Some(slice_endpoints(svc, group, family)),
            ports: Some(ports),
        };
        match existing
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
        {
            None => {
                api.create(&PostParams::default(), &slice).await?;
            }
            Some(current) => {
                if current.endpoints != slice.endpoints
                    || current.ports != slice.ports
                    || current.metadata.labels != slice.metadata.labels
                {
                    let mut next = slice;
                    next.metadata.resource_version = current.metadata.resource_version.clone();
                    api.replace(&name, &PostParams::default(), &next).await?;
                }
            }
        }
        wanted.push(name);
    }
    for stale in existing.iter().filter(|s| {
        !wanted
            .iter()
            .any(|w| Some(w.as_str()) == s.metadata.name.as_deref())
    }) {
        match api
            .delete(&stale.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": "web"},
                {"name": "metrics", "port": 9090}
            ]}
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "uid": name},
                "spec": {"nodeName": "n", "containers": [{"name": "c", "ports": [
                    {"name": "web", "containerPort": 8080}
                ]}]},
                "status": {"podIP": ip, "conditions": [
                    {"type": "Ready", "status": if ready {"True"} else {"False"}}
                ]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn hostnames_are_published_for_the_pods_subdomain_only() {
        let mut member = (*pod("a", "10.0.0.1", true)).clone();
        let spec = member.spec.get_or_insert_default();
        spec.hostname = Some("web-0".into());
        spec.subdomain = service().metadata.name.clone();
        assert_eq!(dns_hostname(&service(), &member).as_deref(), Some("web-0"));
        member.spec.get_or_insert_default().subdomain = Some("other".into());
        assert_eq!(dns_hostname(&service(), &member), None);
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let ports = resolve_ports(&service(), &pod("a", "10.0.0.1", true));
        let numbers: Vec<_> = ports
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect();
        assert_eq!(numbers, [("http".into(), 8080), ("metrics".into(), 9090)]);
    }

    #[test]
    fn only_ready_pods_are_addresses() {
        let svc = service();
        let groups = group_pods(
            &svc,
            vec![pod("a", "10.0.0.1", true), pod("b", "10.0.0.2", false)],
        );
        let subsets = subsets(&svc, &groups);
        assert_eq!(subsets.len(), 1);
        let ready: Vec<_> = subsets[0]
            .addresses
            .iter()
            .flatten()
            .map(|a| a.ip.clone())
            .collect();
        let not_ready: Vec<_> = subsets[0]
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| a.ip.clone())
            .collect();
        assert_eq!(ready, ["10.0.0.1"]);
        assert_eq!(not_ready, ["10.0.0.2"]);
        let endpoints = slice_endpoints(&svc, &groups[0], "IPv4");
        let ready: Vec<_> = endpoints
            .iter()
            .map(|e| e.conditions.as_ref().unwrap().ready)
            .collect();
        assert_eq!(ready, [Some(true), Some(false)]);
    }

    #[test]
    fn dual_stack_pods_give_each_family_its_address() {
        let mut dual = (*pod("a", "10.0.0.1", true)).clone();
        dual.status.get_or_insert_default().pod_ips = Some(
            ["10.0.0.1", "fd00::1"]
                .iter()
                .map(|ip| k8s_openapi::api::core::v1::PodIP { ip: ip.to_string() })
                .collect(),
        );
        assert_eq!(pod_ip(&dual, "IPv4").as_deref(), Some("10.0.0.1"));
        assert_eq!(pod_ip(&dual, "IPv6").as_deref(), Some("fd00::1"));
        assert_eq!(pod_ip(&pod("b", "10.0.0.2", true), "IPv6"), None);
        let mut svc = service();
        assert_eq!(families(&svc), ["IPv4"]);
        svc.spec.get_or_insert_default().ip_families = Some(vec!["IPv6".into(), "IPv4".into()]);
        assert_eq!(families(&svc), ["IPv6", "IPv4"]);
        let groups = group_pods(&svc, vec![Arc::new(dual)]);
        let v6 = slice_endpoints(&svc, &groups[0], "IPv6");
        assert_eq!(v6[0].addresses, ["fd00::1"]);
        // Endpoints carry the primary family's address.
        let subsets = subsets(&svc, &groups);
        assert_eq!(subsets[0].addresses.as_ref().unwrap()[0].ip, "fd00::1");
        assert_ne!(
            slice_name(&svc, &groups[0].ports, "IPv4"),
            slice_name(&svc, &groups[0].ports, "IPv6")
        );
    }
}
