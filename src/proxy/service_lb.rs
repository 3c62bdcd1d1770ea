//! `type: LoadBalancer` Services without a cloud: the per-cluster service load balancer
//! (`rind node service-lb`), run in the container `<cluster>-service-lb` on the host's
//! network. For every LoadBalancer Service (without a `loadBalancerClass`) it listens on
//! a loopback address of the host, on each of the Service's TCP ports, forwards each
//! connection to a node's NodePort for that port, and records the address in
//! `status.loadBalancer.ingress` with `ipMode: Proxy` (so the nodes' proxies leave the
//! address alone). kind's cloud-provider-kind does the same job with an Envoy container
//! per Service; this needs no other image or tool, and keeps working while the CLI is
//! not running.
//!
//! The address is 127.0.0.1 when every port of the Service is free there; a Service
//! whose ports are taken (two Services on port 80, or a host process) gets the next
//! loopback address, 127.0.0.2 and so on, so the ports a user reaches are always the
//! Service's own. An address once given is kept across restarts (read back from the
//! status).

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long a connection to one node may take before the next node is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Loopback addresses handed out: 127.0.0.1 first, then .2, … (Linux routes all of
/// 127/8 to the loopback interface).
const MAX_ADDRESSES: u32 = 254;
/// The label that keeps a node out of load balancer pools (upstream's service
/// controller honours it too).
const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// Error recorded for a port this load balancer cannot forward (cloud-provider-specific
/// values take a domain prefix, as the API documents).
const PROTOCOL_ERROR: &str = "rind.dev/ProtocolNotSupported";

/// One Service's listeners: the address, and per TCP port its task.
struct Bound {
    ip: Ipv4Addr,
    ports: BTreeMap<u16, JoinHandle<()>>,
    /// Where connections go: node IP and NodePort per service port.
    backends: Arc<RwLock<HashMap<u16, Vec<SocketAddr>>>>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        for task in self.ports.values() {
            task.abort();
        }
    }
}

/// What a LoadBalancer Service asks for: its TCP ports with their NodePorts, and the
/// ports the load balancer cannot serve.
#[derive(Debug, PartialEq, Eq)]
struct Wanted {
    tcp: BTreeMap<u16, u16>,
    refused: Vec<(u16, String)>,
}

fn wanted(svc: &Service) -> Option<Wanted> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() != Some("LoadBalancer") || spec.load_balancer_class.is_some() {
        return None;
    }
    let mut out = Wanted {
        tcp: BTreeMap::new(),
        refused: Vec::new(),
    };
    for port in spec.ports.iter().flatten() {
        let number = u16::try_from(port.port).ok()?;
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        match (protocol, port.node_port.and_then(|p| u16::try_from(p).ok())) {
            ("TCP", Some(node_port)) => {
                out.tcp.insert(number, node_port);
            }
            (other, _) => out.refused.push((number, other.to_string())),
        }
    }
    Some(out)
}

/// The nodes connections may go to: Ready, not excluded, with an internal IP; by name.
fn node_ips(nodes: &[Arc<Node>]) -> Vec<(String, Ipv4Addr)> {
    nodes
        .iter()
        .filter(|n| {
            !n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(EXCLUDE_LABEL))
        })
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|n| {
            let ip = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse()
                .ok()?;
            Some((n.metadata.name.clone()?, ip))
        })
        .collect()
}

/// With `externalTrafficPolicy: Local` a node answers on the NodePort only with a
/// ready endpoint of its own (others drop the packets, as upstream), so only those
/// nodes get connections; None for `Cluster`, where every node answers.
fn local_nodes(svc: &Service, slices: &[Arc<EndpointSlice>]) -> Option<Vec<String>> {
    let spec = svc.spec.as_ref()?;
    if spec.external_traffic_policy.as_deref() != Some("Local") {
        return None;
    }
    let ns = svc.metadata.namespace.as_deref();
    let name = svc.metadata.name.as_deref()?;
    let mut nodes: Vec<String> = slices
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == ns)
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .is_some_and(|n| n == name)
        })
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .filter_map(|e| e.node_name.clone())
        .collect();
    nodes.sort();
    nodes.dedup();
    Some(nodes)
}

/// The loopback address the Service had before (from its status), if any.
fn previous_ip(svc: &Service) -> Option<Ipv4Addr> {
    svc.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok())
        .find(|ip| ip.is_loopback())
}

/// Binds every port at one address, or none.
async fn bind_all(ip: Ipv4Addr, ports: &[u16]) -> Option<Vec<(u16, TcpListener)>> {
    let mut bound = Vec::new();
    for port in ports {
        match TcpListener::bind((ip, *port)).await {
            Ok(listener) => bound.push((*port, listener)),
            Err(_) => return None,
        }
    }
    Some(bound)
}

async fn forward(mut client: TcpStream, backends: Vec<SocketAddr>) {
    if backends.is_empty() {
        return;
    }
    // Spread connections: start at a different node each time.
    let start = rand_index(backends.len());
    for i in 0..backends.len() {
        let backend = backends[(start + i) % backends.len()];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
            Ok(Ok(mut upstream)) => {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return;
            }
            Ok(Err(err)) => tracing::debug!(%backend, "connect failed: {err}"),
            Err(_) => tracing::debug!(%backend, "connect timed out"),
        }
    }
    tracing::warn!(
        "no node accepted a connection for {:?}",
        client.local_addr()
    );
}

fn rand_index(len: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos as usize % len
}

fn serve(
    listener: TcpListener,
    port: u16,
    backends: Arc<RwLock<HashMap<u16, Vec<SocketAddr>>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (client, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(port, "accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let targets = backends
                .read()
                .map(|b| b.get(&port).cloned().unwrap_or_default())
                .unwrap_or_default();
            tokio::spawn(forward(client, targets));
        }
    })
}

/// The status this load balancer gives a Service.
fn status_patch(ip: Ipv4Addr, want: &Wanted) -> serde_json::Value {
    let mut ports: Vec<serde_json::Value> = want
        .tcp
        .keys()
        .map(|p| serde_json::json!({"port": p, "protocol": "TCP"}))
        .collect();
    ports.extend(want.refused.iter().map(|(p, protocol)| {
        serde_json::json!({"port": p, "protocol": protocol, "error": PROTOCOL_ERROR})
    }));
    serde_json::json!({"status": {"loadBalancer": {"ingress": [
        {"ip": ip.to_string(), "ipMode": "Proxy", "ports": ports}
    ]}}})
}

/// Runs the service load balancer with the credentials in `kubeconfig` until killed.
pub async fn run(kubeconfig: &str) -> anyhow::Result<()> {
    rind_runtime::logging::init("info");
    let client = rind_runtime::client::from_kubeconfig_when_ready(kubeconfig, "service-lb")
        .await
        .with_context(|| format!("loading {kubeconfig}"))?;
    let wake = Arc::new(Notify::new());
    let (services, _s) = super::reflect_lean(Api::<Service>::all(client.clone()), "service", &wake);
    let (nodes, _n) = super::reflect_lean(Api::<Node>::all(client.clone()), "node", &wake);
    let (slices, _e) = super::reflect_lean(
        Api::<EndpointSlice>::all(client.clone()),
        "endpointslice",
        &wake,
    );
    // Until the first lists are in, every Service would look deleted.
    services
        .wait_until_ready()
        .await
        .context("listing services")?;
    nodes.wait_until_ready().await.context("listing nodes")?;
    slices
        .wait_until_ready()
        .await
        .context("listing endpointslices")?;
    tracing::info!("service load balancer running");
    let mut bound: HashMap<String, Bound> = HashMap::new();
    loop {
        reconcile(&client, &services, &nodes, &slices, &mut bound).await;
        // A failed bind or status write is retried at the next change or after a pause.
        let _ = tokio::time::timeout(Duration::from_secs(10), wake.notified()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn reconcile(
    client: &kube::Client,
    services: &Store<Service>,
    nodes: &Store<Node>,
    slices: &Store<EndpointSlice>,
    bound: &mut HashMap<String, Bound>,
) {
    let node_ips = node_ips(&nodes.state());
    let slices = slices.state();
    let services = services.state();
    let mut seen = Vec::new();
    for svc in &services {
        let Some(want) = wanted(svc) else { continue };
        let (Some(uid), Some(ns), Some(name)) = (
            svc.metadata.uid.clone(),
            svc.metadata.namespace.clone(),
            svc.metadata.name.clone(),
        ) else {
            continue;
        };
        seen.push(uid.clone());
        let ports: Vec<u16> = want.tcp.keys().copied().collect();
        // Ports changed: rebind from scratch (at the same address when possible).
        if bound
            .get(&uid)
            .is_some_and(|b| b.ports.keys().copied().collect::<Vec<_>>() != ports)
        {
            bound.remove(&uid);
        }
        if !bound.contains_key(&uid) {
            let taken: Vec<Ipv4Addr> = bound.values().map(|b| b.ip).collect();
            let candidates = previous_ip(svc)
                .into_iter()
                .chain((1..=MAX_ADDRESSES).map(|i| Ipv4Addr::new(127, 0, 0, i as u8)));
            let mut placed = None;
            for ip in candidates {
                // Two Services never share an address, so a port freed by one is never
                // grabbed by another in between.
                if taken.contains(&ip) {
                    continue;
                }
                if let Some(listeners) = bind_all(ip, &ports).await {
                    placed = Some((ip, listeners));
                    break;
                }
            }
            let Some((ip, listeners)) = placed else {
                tracing::warn!(service = %format!("{ns}/{name}"), "no loopback address has all its ports free");
                continue;
            };
            let backends = Arc::new(RwLock::new(HashMap::new()));
            let tasks = listeners
                .into_iter()
                .map(|(port, l)| (port, serve(l, port, backends.clone())))
                .collect();
            tracing::info!(service = %format!("{ns}/{name}"), %ip, ?ports, "listening");
            bound.insert(
                uid.clone(),
                Bound {
                    ip,
                    ports: tasks,
                    backends,
                },
            );
        }
        let Some(entry) = bound.get(&uid) else {
            continue;
        };
        let local = local_nodes(svc, &slices);
        let targets: HashMap<u16, Vec<SocketAddr>> = want
            .tcp
            .iter()
            .map(|(port, node_port)| {
                let addrs = node_ips
                    .iter()
                    .filter(|(node, _)| local.as_ref().is_none_or(|l| l.contains(node)))
                    .map(|(_, ip)| SocketAddr::from((*ip, *node_port)))
                    .collect();
                (*port, addrs)
            })
            .collect();
        if let Ok(mut current) = entry.backends.write() {
            *current = targets;
        }
        let patch = status_patch(entry.ip, &want);
        let current =
            serde_json::to_value(svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()))
                .unwrap_or_default();
        if current != patch["status"]["loadBalancer"] {
            let api: Api<Service> = Api::namespaced(client.clone(), &ns);
            if let Err(err) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(service = %format!("{ns}/{name}"), "recording the ingress failed: {err}");
            }
        }
    }
    // Services deleted or no longer of type LoadBalancer: stop listening, and clear the
    // status of those still there (as upstream's service controller does).
    let gone: Vec<String> = bound
        .keys()
        .filter(|u| !seen.contains(u))
        .cloned()
        .collect();
    for uid in gone {
        bound.remove(&uid);
        if let Some(svc) = services
            .iter()
            .find(|s| s.metadata.uid.as_deref() == Some(uid.as_str()))
            && let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name)
        {
            let api: Api<Service> = Api::namespaced(client.clone(), ns);
            let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": null}}});
            if let Err(err) = api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(service = %format!("{ns}/{name}"), "clearing the ingress failed: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(json: serde_json::Value) -> Service {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn wanted_ports() {
        let s = svc(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [
                {"port": 80, "nodePort": 30080},
                {"port": 53, "protocol": "UDP", "nodePort": 30053}
            ]}
        }));
        let w = wanted(&s).unwrap();
        assert_eq!(w.tcp, BTreeMap::from([(80, 30080)]));
        assert_eq!(w.refused, [(53, "UDP".to_string())]);
        let patch = status_patch(Ipv4Addr::LOCALHOST, &w);
        let ingress = &patch["status"]["loadBalancer"]["ingress"][0];
        assert_eq!(ingress["ip"], "127.0.0.1");
        assert_eq!(ingress["ipMode"], "Proxy");
        assert_eq!(ingress["ports"][1]["error"], PROTOCOL_ERROR);
        // Another implementation's Services, and other types, are not ours.
        let other = svc(serde_json::json!({
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb", "ports": []}
        }));
        assert!(wanted(&other).is_none());
        assert!(wanted(&svc(serde_json::json!({"spec": {"type": "NodePort"}}))).is_none());
    }

    #[test]
    fn local_policy_keeps_to_nodes_with_ready_endpoints() {
        let mut s = svc(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": []}
        }));
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.1.5"], "nodeName": "w1", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.5"], "nodeName": "w2", "conditions": {"ready": false}}
            ]
        }))
        .unwrap();
        let other: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.3.5"], "nodeName": "w3"}]
        }))
        .unwrap();
        let slices = [Arc::new(slice), Arc::new(other)];
        assert_eq!(local_nodes(&s, &slices), Some(vec!["w1".to_string()]));
        s.spec.as_mut().unwrap().external_traffic_policy = Some("Cluster".into());
        assert_eq!(local_nodes(&s, &slices), None);
    }

    #[tokio::test]
    async fn forwards_to_a_node_that_answers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A "node port" that answers, and one that refuses.
        let node = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node_addr = node.local_addr().unwrap();
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        tokio::spawn(async move {
            let (mut s, _) = node.accept().await.unwrap();
            s.write_all(b"hello").await.unwrap();
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let backends = Arc::new(RwLock::new(HashMap::from([(
            front_addr.port(),
            vec![closed_addr, node_addr],
        )])));
        let _task = serve(front, front_addr.port(), backends);
        let mut c = TcpStream::connect(front_addr).await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
    }
}
