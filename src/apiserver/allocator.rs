//! ClusterIP and NodePort allocation for Services. ClusterIPs come from the ranges of
//! the Ready ServiceCIDRs (`networking.k8s.io/v1`; the default one, `kubernetes`, is
//! the configured service range), and an address is taken exactly when its IPAddress
//! object exists: allocating creates it (a create that finds it there means someone
//! else has the address), deleting the Service deletes it. A repair pass keeps the
//! two in step where a crash or an older rind left them apart. Dynamic addresses come
//! from a random start in the upper part of a range, the lower part kept for Services
//! that ask for an address (upstream's KEP-3070 split). NodePorts are still read from
//! the stored Services.

use super::Server;
use super::handlers::{create_object, decode, store_error};
use rind_api::meta::str_at;
use rind_api::servicecidr::{self, Cidr};
use rind_api::status::{ApiError, Cause};
use serde_json::Value;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

/// The NodePort range upstream uses by default.
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// Where IPAddresses are stored.
pub const IP_ADDRESSES: &str = "/registry/ipaddresses/";

/// The configured IPv4 service network such as `10.96.0.0/16`: the default
/// ServiceCIDR's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceNetwork {
    base: u32,
    bits: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid service subnet {0:?}: expected an IPv4 CIDR no smaller than /30")]
pub struct InvalidSubnet(String);

impl ServiceNetwork {
    pub fn parse(cidr: &str) -> Result<Self, InvalidSubnet> {
        let bad = || InvalidSubnet(cidr.to_string());
        let (addr, bits) = cidr.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let bits: u32 = bits.parse().map_err(|_| bad())?;
        if !(1..=30).contains(&bits) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - bits);
        Ok(ServiceNetwork {
            base: u32::from(addr) & mask,
            bits,
        })
    }

    /// The first usable address: the `kubernetes` Service's ClusterIP.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The network in canonical CIDR form.
    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.bits)
    }
}

fn lookup(
    server: &Server,
    group: &str,
    plural: &str,
) -> Result<&'static rind_api::registry::Resource, ApiError> {
    server
        .registry
        .lookup(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))
}

/// NodePorts held by stored Services.
async fn node_ports_in_use(server: &Server) -> Result<HashSet<i64>, ApiError> {
    let services = lookup(server, "", "services")?;
    let page = server
        .store
        .list(&services.prefix(None), None, 0, None)
        .await
        .map_err(|e| store_error(e, services, ""))?;
    let mut ports = HashSet::new();
    for kv in &page.items {
        let svc = decode(kv)?;
        let svc_ports = svc
            .get("spec")
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array);
        for port in svc_ports.into_iter().flatten() {
            if let Some(node_port) = port.get("nodePort").and_then(Value::as_i64) {
                ports.insert(node_port);
            }
        }
    }
    Ok(ports)
}

fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    ApiError::invalid("Service", "", name, &[Cause::invalid(field, value, detail)])
}

/// Upstream's refusal of a requested ClusterIP: the value shown is the Service's
/// `clusterIPs`, as Go prints a string slice.
fn refused_ip(name: &str, ip: &str, why: &str) -> ApiError {
    let cause = Cause {
        reason: "FieldValueInvalid",
        field: "spec.clusterIPs".into(),
        message: format!("Invalid value: []string{{{ip:?}}}: failed to allocate IP {ip}: {why}"),
    };
    ApiError::invalid("Service", "", name, &[cause])
}

/// The IPv4 ranges of the Ready ServiceCIDRs, read from the store: allocation must
/// not miss a range made Ready a moment ago.
async fn ready_ranges(server: &Server) -> Result<Vec<Cidr>, ApiError> {
    let resource = lookup(server, "networking.k8s.io", "servicecidrs")?;
    let page = server
        .store
        .list(&resource.prefix(None), None, 0, None)
        .await
        .map_err(|e| store_error(e, resource, ""))?;
    let mut ranges = Vec::new();
    for kv in &page.items {
        let object = decode(kv)?;
        if !servicecidr::is_ready(&object) {
            continue;
        }
        for text in servicecidr::cidrs(&object) {
            if let Some(cidr) = Cidr::parse(&text).filter(Cidr::is_ipv4)
                && !ranges.contains(&cidr)
            {
                ranges.push(cidr);
            }
        }
    }
    Ok(ranges)
}

/// How taking an address by creating its IPAddress went.
enum Taken {
    Ours,
    /// Someone else's IPAddress is there.
    Allocated,
}

/// Creates the IPAddress of `ip` for Service `ns/name`.
async fn take(server: &Server, ip: IpAddr, ns: &str, name: &str) -> Result<Taken, ApiError> {
    let resource = lookup(server, "networking.k8s.io", "ipaddresses")?;
    match create_object(
        server,
        resource,
        None,
        servicecidr::ip_address(ip, ns, name),
    )
    .await
    {
        Ok(_) => Ok(Taken::Ours),
        Err(e) if e.code == 409 => Ok(Taken::Allocated),
        Err(e) => Err(e),
    }
}

/// A free address of `cidr` for Service `ns/name`, its IPAddress created; None when
/// the range is full. Tries the upper part from a random start, then the lower part.
async fn allocate_next(
    server: &Server,
    cidr: &Cidr,
    ns: &str,
    name: &str,
) -> Result<Option<IpAddr>, ApiError> {
    let Some((first, last)) = cidr.usable() else {
        return Ok(None);
    };
    let offset = servicecidr::range_offset(cidr).min(last - first + 1);
    let mut parts = vec![(first + offset, last)];
    if offset > 0 {
        parts.push((first, first + offset - 1));
    }
    for (low, high) in parts {
        if low > high {
            continue;
        }
        let size = high - low + 1;
        let start = rand::random_range(0..size);
        for step in 0..size {
            let ip = cidr.address(low + (start + step) % size);
            // The mirror saves a create for addresses known to be taken; a stale
            // mirror only costs a create that finds the address there.
            if server
                .ip_addresses
                .get(&format!("{IP_ADDRESSES}{ip}"))
                .is_some()
            {
                continue;
            }
            if let Taken::Ours = take(server, ip, ns, name).await? {
                return Ok(Some(ip));
            }
        }
    }
    Ok(None)
}

/// Gives a new Service its ClusterIP (checking a requested one) and NodePorts.
pub async fn allocate(server: &Server, service: &mut Value) -> Result<(), ApiError> {
    let name = str_at(service, &["metadata", "name"])
        .unwrap_or_default()
        .to_string();
    let ns = str_at(service, &["metadata", "namespace"])
        .unwrap_or_default()
        .to_string();
    let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let wants_node_ports = matches!(kind.as_str(), "NodePort" | "LoadBalancer");
    let requested = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind == "ExternalName" || requested == "None" && !wants_node_ports {
        return Ok(());
    }
    // The address is taken before the NodePorts: a refused NodePort gives it back.
    let mut taken: Option<IpAddr> = None;
    if requested.is_empty() {
        let mut found = None;
        for cidr in ready_ranges(server).await? {
            if let Some(ip) = allocate_next(server, &cidr, &ns, &name).await? {
                found = Some(ip);
                break;
            }
        }
        let ip = found
            .ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?;
        spec.insert("clusterIP".into(), ip.to_string().into());
        spec.insert("clusterIPs".into(), vec![ip.to_string()].into());
        taken = Some(ip);
    } else if requested != "None" {
        let ip: IpAddr = requested.parse().map_err(|_| {
            invalid(
                &name,
                "spec.clusterIP",
                &requested,
                "must be a valid IP address",
            )
        })?;
        let ranges = ready_ranges(server).await?;
        let Some(cidr) = ranges.iter().find(|c| c.contains(ip)) else {
            return Err(refused_ip(
                &name,
                &requested,
                "the provided network does not match the current range",
            ));
        };
        let n = servicecidr::to_u128(ip);
        if cidr
            .usable()
            .is_none_or(|(first, last)| n < first || n > last)
        {
            return Err(refused_ip(
                &name,
                &requested,
                &format!(
                    "the provided IP ({requested}) is not in the valid range. The range of valid IPs is {cidr}"
                ),
            ));
        }
        if let Taken::Allocated = take(server, ip, &ns, &name).await? {
            return Err(refused_ip(
                &name,
                &requested,
                "provided IP is already allocated",
            ));
        }
        spec.entry("clusterIPs")
            .or_insert_with(|| vec![requested.clone()].into());
        taken = Some(ip);
    }
    if wants_node_ports && let Err(e) = allocate_node_ports(server, &name, spec).await {
        if let Some(ip) = taken {
            release_ip(server, ip, &ns, &name).await;
        }
        return Err(e);
    }
    Ok(())
}

async fn allocate_node_ports(
    server: &Server,
    name: &str,
    spec: &mut serde_json::Map<String, Value>,
) -> Result<(), ApiError> {
    let mut taken = node_ports_in_use(server).await?;
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for (i, port) in ports
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .enumerate()
        {
            match port.get("nodePort").and_then(Value::as_i64) {
                Some(p) if !NODE_PORTS.contains(&p) => {
                    return Err(invalid(
                        name,
                        &format!("spec.ports[{i}].nodePort"),
                        &p.to_string(),
                        "provided port is not in the valid range. The range of valid ports is 30000-32767",
                    ));
                }
                Some(p) if !taken.insert(p) => {
                    return Err(invalid(
                        name,
                        &format!("spec.ports[{i}].nodePort"),
                        &p.to_string(),
                        "provided port is already allocated",
                    ));
                }
                Some(_) => {}
                None => {
                    let p = pick_port(&taken)
                        .ok_or_else(|| ApiError::internal("no free NodePort left"))?;
                    taken.insert(p);
                    port.insert("nodePort".into(), p.into());
                }
            }
        }
    }
    Ok(())
}

fn pick_port(used: &HashSet<i64>) -> Option<i64> {
    for _ in 0..64 {
        let p = rand::random_range(NODE_PORTS);
        if !used.contains(&p) {
            return Some(p);
        }
    }
    NODE_PORTS.into_iter().find(|p| !used.contains(p))
}

/// The ClusterIPs a Service holds.
pub fn cluster_ips(service: &Value) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = rind_api::meta::strings(service.pointer("/spec/clusterIPs"))
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if let Some(ip) = str_at(service, &["spec", "clusterIP"]).and_then(|ip| ip.parse().ok())
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    ips
}

/// The `(namespace, name)` of the Service an IPAddress names as its parent.
fn parent_of(address: &Value) -> Option<(&str, &str)> {
    let parent = address.pointer("/spec/parentRef")?;
    let text = |key| parent.get(key).and_then(Value::as_str).unwrap_or_default();
    (text("resource") == "services" && text("group").is_empty())
        .then(|| (text("namespace"), text("name")))
}

/// Deletes the IPAddress of `ip` if it is Service `ns/name`'s (one that names another
/// parent is left alone).
async fn release_ip(server: &Server, ip: IpAddr, ns: &str, name: &str) {
    let Ok(resource) = lookup(server, "networking.k8s.io", "ipaddresses") else {
        return;
    };
    let key = resource.key(None, &ip.to_string());
    let Ok(Some(kv)) = server.store.get(&key).await else {
        return;
    };
    let Ok(address) = decode(&kv) else {
        return;
    };
    if parent_of(&address) == Some((ns, name))
        && let Err(e) = server.store.delete(&key, Some(kv.mod_revision)).await
    {
        // Gone or changed meanwhile: the repair pass settles what remains.
        tracing::debug!(%ip, "releasing a ClusterIP: {e}");
    }
}

/// Deletes the IPAddress of `ip` when it names Service `ns/name` and is older than
/// `age`: called while that Service does not exist, it is the leftover of a create
/// that took the address and died before storing the Service.
pub async fn reclaim_stale(
    server: &Server,
    ip: IpAddr,
    ns: &str,
    name: &str,
    age: jiff::SignedDuration,
) {
    let Ok(resource) = lookup(server, "networking.k8s.io", "ipaddresses") else {
        return;
    };
    let key = resource.key(None, &ip.to_string());
    let Ok(Some(kv)) = server.store.get(&key).await else {
        return;
    };
    let Ok(address) = decode(&kv) else {
        return;
    };
    let old = str_at(&address, &["metadata", "creationTimestamp"])
        .and_then(rind_api::meta::parse_time)
        .is_some_and(|t| rind_api::meta::now() - age > t);
    if old && parent_of(&address) == Some((ns, name)) {
        tracing::info!(%ip, service = %format!("{ns}/{name}"), "reclaiming an address its Service never got");
        // Changed or gone meanwhile: the next look settles it.
        let _ = server.store.delete(&key, Some(kv.mod_revision)).await;
    }
}

/// Gives back every ClusterIP of a Service that is gone (or was never stored).
pub async fn release(server: &Server, service: &Value) {
    let ns = str_at(service, &["metadata", "namespace"]).unwrap_or_default();
    let name = rind_api::meta::name(service);
    for ip in cluster_ips(service) {
        release_ip(server, ip, ns, name).await;
    }
}

/// How old an IPAddress without its Service must be before repair deletes it: an
/// address is taken before its Service is stored.
const ORPHAN_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);
/// How often the repair pass runs.
const REPAIR_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Brings IPAddresses in line with the stored Services: every ClusterIP a Service
/// holds gets its IPAddress (Services stored before rind kept IPAddresses, or whose
/// allocation was interrupted), and with `orphans`, IPAddresses this allocator made
/// whose Service no longer holds the address are deleted.
pub async fn repair(server: &Server, orphans: bool) -> Result<(), ApiError> {
    let services = lookup(server, "", "services")?;
    let page = rind_store::list_all(server.store.as_ref(), &services.prefix(None), None, 500)
        .await
        .map_err(|e| store_error(e, services, ""))?;
    let mut held = std::collections::BTreeMap::new();
    for kv in &page.items {
        let svc = decode(kv)?;
        let ns = str_at(&svc, &["metadata", "namespace"])
            .unwrap_or_default()
            .to_string();
        for ip in cluster_ips(&svc) {
            held.insert(ip, (ns.clone(), rind_api::meta::name(&svc).to_string()));
        }
    }
    let addresses = lookup(server, "networking.k8s.io", "ipaddresses")?;
    let page = rind_store::list_all(server.store.as_ref(), addresses.key_prefix, None, 500)
        .await
        .map_err(|e| store_error(e, addresses, ""))?;
    let mut recorded = HashSet::new();
    for kv in &page.items {
        let address = decode(kv)?;
        let Ok(ip) = rind_api::meta::name(&address).parse::<IpAddr>() else {
            continue;
        };
        recorded.insert(ip);
        let managed = str_at(
            &address,
            &["metadata", "labels", servicecidr::LABEL_MANAGED_BY],
        ) == Some(servicecidr::MANAGED_BY);
        let holder = held.get(&ip).map(|(ns, n)| (ns.as_str(), n.as_str()));
        let old = str_at(&address, &["metadata", "creationTimestamp"])
            .and_then(rind_api::meta::parse_time)
            .is_some_and(|t| rind_api::meta::now() - ORPHAN_GRACE > t);
        if orphans && managed && old && holder != parent_of(&address) {
            tracing::info!(%ip, "deleting an IPAddress no Service holds");
            match server.store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_)
                | Err(
                    rind_store::StoreError::NotFound(_) | rind_store::StoreError::Conflict { .. },
                ) => {}
                Err(e) => return Err(store_error(e, addresses, &ip.to_string())),
            }
        }
    }
    for (ip, (ns, name)) in held {
        if !recorded.contains(&ip) {
            tracing::info!(%ip, service = %format!("{ns}/{name}"), "recording a ClusterIP's IPAddress");
            take(server, ip, &ns, &name).await?;
        }
    }
    Ok(())
}

/// Runs the repair pass every `REPAIR_INTERVAL` for as long as the server runs.
pub async fn run_repair(server: std::sync::Arc<Server>) {
    loop {
        tokio::time::sleep(REPAIR_INTERVAL).await;
        if let Err(e) = repair(&server, true).await {
            tracing::warn!("repairing ClusterIP allocations: {}", e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn networks() {
        let net = ServiceNetwork::parse("10.96.5.7/16").unwrap();
        assert_eq!(net.first(), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(net.cidr(), "10.96.0.0/16");
        assert!(ServiceNetwork::parse("nonsense").is_err());
        assert!(ServiceNetwork::parse("10.0.0.0/31").is_err());
    }

    #[test]
    fn services_hold_their_cluster_ips() {
        let svc = json!({"spec": {"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"]}});
        assert_eq!(
            cluster_ips(&svc),
            vec!["10.96.0.9".parse::<IpAddr>().unwrap()]
        );
        assert!(cluster_ips(&json!({"spec": {"clusterIP": "None"}})).is_empty());
        let address = servicecidr::ip_address("10.96.0.9".parse().unwrap(), "ns", "web");
        assert_eq!(parent_of(&address), Some(("ns", "web")));
    }
}
