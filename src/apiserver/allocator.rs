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
use std::net::IpAddr;

/// The NodePort range upstream uses by default.
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// Where IPAddresses are stored.
pub const IP_ADDRESSES: &str = "/registry/ipaddresses/";

/// The configured service network such as `10.96.0.0/16`, or one range per family for
/// a dual-stack cluster (`10.96.0.0/16,fd00:10:96::/112`, upstream's
/// `--service-cluster-ip-range`): the default ServiceCIDR's ranges, primary first.
/// Its families are the ones Services may ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNetwork {
    ranges: Vec<Cidr>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid service subnet {0:?}: expected an IPv4 CIDR no smaller than /30, an IPv6 CIDR \
     between /108 and /126, or one of each, comma-separated"
)]
pub struct InvalidSubnet(String);

pub const IPV4: &str = "IPv4";
pub const IPV6: &str = "IPv6";

fn family_of(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { IPV4 } else { IPV6 }
}

impl ServiceNetwork {
    pub fn parse(list: &str) -> Result<Self, InvalidSubnet> {
        let bad = || InvalidSubnet(list.to_string());
        let mut ranges: Vec<Cidr> = Vec::new();
        for text in list.split(',') {
            let cidr = Cidr::parse(text.trim()).ok_or_else(bad)?;
            // Upstream refuses IPv6 ranges of more than 2^20 addresses.
            let sizes = if cidr.is_ipv4() { 1..=30 } else { 108..=126 };
            if !sizes.contains(&cidr.bits) || ranges.iter().any(|r| r.is_ipv4() == cidr.is_ipv4()) {
                return Err(bad());
            }
            ranges.push(cidr);
        }
        Ok(ServiceNetwork { ranges })
    }

    /// The first usable address of the primary range: the `kubernetes` Service's
    /// ClusterIP.
    pub fn first(&self) -> IpAddr {
        let primary = self.ranges[0];
        primary.address(servicecidr::to_u128(primary.network) + 1)
    }

    /// The ranges in canonical CIDR form, primary first.
    pub fn cidrs(&self) -> Vec<String> {
        self.ranges.iter().map(Cidr::to_string).collect()
    }

    /// The families Services may have, primary first.
    pub fn families(&self) -> Vec<&'static str> {
        self.ranges.iter().map(|r| family_of(r.network)).collect()
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

/// The ranges of the Ready ServiceCIDRs, read from the store: allocation must not miss
/// a range made Ready a moment ago.
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
            if let Some(cidr) = Cidr::parse(&text)
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

/// Gives a new Service its IP families (upstream's defaulting by the cluster's
/// families), its ClusterIPs, one per family (checking requested ones) and NodePorts.
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
    if kind == "ExternalName" {
        return Ok(());
    }
    init_ip_families(&server.service_network, &name, spec)?;
    let wants_node_ports = matches!(kind.as_str(), "NodePort" | "LoadBalancer");
    let families: Vec<String> = rind_api::meta::strings(spec.get("ipFamilies"));
    let requested: Vec<String> = rind_api::meta::strings(spec.get("clusterIPs"));
    if requested.first().map(String::as_str) == Some("None") {
        spec.insert("clusterIP".into(), "None".into());
        spec.insert("clusterIPs".into(), vec!["None"].into());
        if wants_node_ports {
            allocate_node_ports(server, &name, spec).await?;
        }
        return Ok(());
    }
    // The addresses are taken before the NodePorts: a refused one gives them back.
    let mut taken: Vec<IpAddr> = Vec::new();
    let result = take_cluster_ips(server, &ns, &name, &families, &requested, &mut taken).await;
    let result = match result {
        Ok(()) => {
            let ips: Vec<String> = taken.iter().map(IpAddr::to_string).collect();
            spec.insert("clusterIP".into(), ips[0].clone().into());
            spec.insert("clusterIPs".into(), ips.into());
            if wants_node_ports {
                allocate_node_ports(server, &name, spec).await
            } else {
                Ok(())
            }
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        for ip in taken {
            release_ip(server, ip, &ns, &name).await;
        }
    }
    result
}

/// One ClusterIP per family, requested ones checked and taken, the others allocated
/// from the Ready ranges of their family; `taken` collects what was taken.
async fn take_cluster_ips(
    server: &Server,
    ns: &str,
    name: &str,
    families: &[String],
    requested: &[String],
    taken: &mut Vec<IpAddr>,
) -> Result<(), ApiError> {
    let ranges = ready_ranges(server).await?;
    for (i, family) in families.iter().enumerate() {
        let wanted = requested.get(i).filter(|ip| !ip.is_empty());
        let Some(requested) = wanted else {
            let mut found = None;
            for cidr in ranges.iter().filter(|c| family_of(c.network) == family) {
                if let Some(ip) = allocate_next(server, cidr, ns, name).await? {
                    found = Some(ip);
                    break;
                }
            }
            let ip = found.ok_or_else(|| {
                ApiError::internal(format!(
                    "failed to allocate a serviceIP: range is full ({family})"
                ))
            })?;
            taken.push(ip);
            continue;
        };
        let ip: IpAddr = requested.parse().map_err(|_| {
            invalid(
                name,
                &format!("spec.clusterIPs[{i}]"),
                requested,
                "must be a valid IP address",
            )
        })?;
        let Some(cidr) = ranges.iter().find(|c| c.contains(ip)) else {
            return Err(refused_ip(
                name,
                requested,
                "the provided network does not match the current range",
            ));
        };
        let n = servicecidr::to_u128(ip);
        if cidr
            .usable()
            .is_none_or(|(first, last)| n < first || n > last)
        {
            return Err(refused_ip(
                name,
                requested,
                &format!(
                    "the provided IP ({requested}) is not in the valid range. The range of valid IPs is {cidr}"
                ),
            ));
        }
        if let Taken::Allocated = take(server, ip, ns, name).await? {
            return Err(refused_ip(
                name,
                requested,
                "provided IP is already allocated",
            ));
        }
        taken.push(ip);
    }
    Ok(())
}

const POLICIES: &[&str] = &["SingleStack", "PreferDualStack", "RequireDualStack"];

/// Upstream's defaulting and checking of `ipFamilyPolicy`, `ipFamilies` and
/// `clusterIPs` on create (pkg/registry/core/service/storage/alloc.go
/// `initIPFamilyFields` and validation's `ValidateServiceClusterIPsRelatedFields`):
/// a policy defaults to SingleStack (RequireDualStack for a headless Service without
/// selector); families follow requested ClusterIPs, else the primary family, with
/// the other one added when the policy asks for two and the cluster has two; a
/// family the cluster lacks, or dual-stack required of a single-stack cluster, is
/// refused.
fn init_ip_families(
    network: &ServiceNetwork,
    name: &str,
    spec: &mut serde_json::Map<String, Value>,
) -> Result<(), ApiError> {
    let cluster = network.families();
    let cluster_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut ips: Vec<String> = rind_api::meta::strings(spec.get("clusterIPs"));
    if ips.is_empty() && !cluster_ip.is_empty() {
        ips.push(cluster_ip.clone());
    }
    let headless = ips.first().map(String::as_str) == Some("None");
    let selectorless = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_none_or(|s| s.is_empty());
    let policy = match spec.get("ipFamilyPolicy").and_then(Value::as_str) {
        Some(p) => p.to_string(),
        None if headless && selectorless => "RequireDualStack".to_string(),
        None => "SingleStack".to_string(),
    };
    let mut families: Vec<String> = rind_api::meta::strings(spec.get("ipFamilies"));
    let mut causes = Vec::new();
    if !POLICIES.contains(&policy.as_str()) {
        causes.push(Cause::unsupported("spec.ipFamilyPolicy", &policy, POLICIES));
    }
    if !cluster_ip.is_empty() && ips.first() != Some(&cluster_ip) {
        causes.push(Cause::invalid(
            "spec.clusterIPs",
            &ips.join(","),
            "first value must match `spec.clusterIP`",
        ));
    }
    if ips.len() > 2 {
        causes.push(Cause::invalid(
            "spec.clusterIPs",
            &ips.join(","),
            "may only hold up to 2 values",
        ));
    }
    let mut ip_families = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        if ip == "None" {
            if i > 0 || ips.len() > 1 {
                causes.push(Cause::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    ip,
                    "must be empty when the first value is `None`",
                ));
            }
            continue;
        }
        match ip.parse::<IpAddr>() {
            Ok(addr) => ip_families.push(family_of(addr)),
            Err(_) => causes.push(Cause::invalid(
                format!("spec.clusterIPs[{i}]"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )),
        }
    }
    if ip_families.len() == 2 && ip_families[0] == ip_families[1] {
        causes.push(Cause::invalid(
            "spec.clusterIPs",
            &ips.join(","),
            "may specify no more than one IP for each IP family",
        ));
    }
    if families.len() > 2 {
        causes.push(Cause::invalid(
            "spec.ipFamilies",
            &families.join(","),
            "may specify no more than 2 items",
        ));
    }
    for (i, family) in families.iter().enumerate() {
        if family != IPV4 && family != IPV6 {
            causes.push(Cause::unsupported(
                format!("spec.ipFamilies[{i}]"),
                family,
                &[IPV4, IPV6],
            ));
        } else if families[..i].contains(family) {
            causes.push(Cause {
                reason: "FieldValueDuplicate",
                field: format!("spec.ipFamilies[{i}]"),
                message: format!("Duplicate value: {family:?}"),
            });
        } else if let Some(ip_family) = ip_families.get(i)
            && ip_family != family
        {
            causes.push(Cause::invalid(
                format!("spec.clusterIPs[{i}]"),
                &ips[i],
                &format!("expected an {family} value as indicated by `ipFamilies[{i}]`"),
            ));
        }
    }
    if policy == "SingleStack" && (families.len() > 1 || ip_families.len() > 1) {
        causes.push(Cause::invalid(
            "spec.ipFamilyPolicy",
            &policy,
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("Service", "", name, &causes));
    }
    // Families follow the requested ClusterIPs.
    for (i, family) in ip_families.iter().enumerate() {
        if i >= families.len() {
            if !cluster.contains(family) {
                causes.push(Cause::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    &ips[i],
                    &format!("{family} is not configured on this cluster"),
                ));
            } else {
                families.push(family.to_string());
            }
        }
    }
    // A headless Service may ask for both families of a single-stack cluster (the
    // default of one without selector): it gets what the cluster has.
    if !headless && policy == "RequireDualStack" && cluster.len() < 2 {
        causes.push(Cause::invalid(
            "spec.ipFamilyPolicy",
            &policy,
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, family) in families.iter().enumerate() {
        if !cluster.contains(&family.as_str()) {
            causes.push(Cause::invalid(
                format!("spec.ipFamilies[{i}]"),
                family,
                &format!("{family} is not configured on this cluster"),
            ));
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("Service", "", name, &causes));
    }
    if families.is_empty() {
        families.push(cluster[0].to_string());
    }
    if policy != "SingleStack" && families.len() == 1 && cluster.len() == 2 {
        let other = if families[0] == IPV4 { IPV6 } else { IPV4 };
        families.push(other.to_string());
    }
    spec.insert("ipFamilyPolicy".into(), policy.into());
    spec.insert("ipFamilies".into(), families.into());
    // `clusterIPs` follows `clusterIP` (`["None"]` for a headless Service).
    if !ips.is_empty() {
        spec.insert("clusterIPs".into(), ips.into());
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
        assert_eq!(
            net.first(),
            IpAddr::from(std::net::Ipv4Addr::new(10, 96, 0, 1))
        );
        assert_eq!(net.cidrs(), ["10.96.0.0/16"]);
        assert_eq!(net.families(), [IPV4]);
        assert!(ServiceNetwork::parse("nonsense").is_err());
        assert!(ServiceNetwork::parse("10.0.0.0/31").is_err());
        let dual = ServiceNetwork::parse("10.96.0.0/16,fd00:10:96::/112").unwrap();
        assert_eq!(dual.cidrs(), ["10.96.0.0/16", "fd00:10:96::/112"]);
        assert_eq!(dual.families(), [IPV4, IPV6]);
        // One range per family, and no IPv6 range upstream would refuse as too large.
        assert!(ServiceNetwork::parse("10.96.0.0/16,10.97.0.0/16").is_err());
        assert!(ServiceNetwork::parse("10.96.0.0/16,fd00::/64").is_err());
    }

    fn families(network: &str, spec: Value) -> Result<Value, Vec<String>> {
        let net = ServiceNetwork::parse(network).unwrap();
        let mut spec = spec.as_object().unwrap().clone();
        match init_ip_families(&net, "web", &mut spec) {
            Ok(()) => Ok(json!({
                "policy": spec["ipFamilyPolicy"],
                "families": spec["ipFamilies"],
            })),
            Err(e) => Err(e
                .details
                .map(|d| d.causes)
                .unwrap_or_default()
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()),
        }
    }

    #[test]
    fn ip_families_default_and_check_as_upstream() {
        const V4: &str = "10.96.0.0/16";
        const DUAL: &str = "10.96.0.0/16,fd00:10:96::/112";
        let selected = json!({"selector": {"app": "web"}});
        // Single-stack of the primary family unless asked otherwise.
        assert_eq!(
            families(DUAL, selected.clone()).unwrap(),
            json!({"policy": "SingleStack", "families": ["IPv4"]})
        );
        assert_eq!(
            families(V4, selected.clone()).unwrap(),
            json!({"policy": "SingleStack", "families": ["IPv4"]})
        );
        // Both families when asked for and there.
        for policy in ["PreferDualStack", "RequireDualStack"] {
            assert_eq!(
                families(
                    DUAL,
                    json!({"selector": {"a": "b"}, "ipFamilyPolicy": policy})
                )
                .unwrap(),
                json!({"policy": policy, "families": ["IPv4", "IPv6"]})
            );
        }
        assert_eq!(
            families(
                DUAL,
                json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6"]})
            )
            .unwrap(),
            json!({"policy": "PreferDualStack", "families": ["IPv6", "IPv4"]})
        );
        // PreferDualStack settles for one family; RequireDualStack does not.
        assert_eq!(
            families(V4, json!({"ipFamilyPolicy": "PreferDualStack"})).unwrap(),
            json!({"policy": "PreferDualStack", "families": ["IPv4"]})
        );
        assert_eq!(
            families(V4, json!({"ipFamilyPolicy": "RequireDualStack"})).unwrap_err(),
            [
                "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
            ]
        );
        assert_eq!(
            families(V4, json!({"ipFamilies": ["IPv6"]})).unwrap_err(),
            ["spec.ipFamilies[0]: Invalid value: \"IPv6\": IPv6 is not configured on this cluster"]
        );
        // Families follow requested addresses.
        assert_eq!(
            families(DUAL, json!({"clusterIP": "fd00:10:96::20"})).unwrap(),
            json!({"policy": "SingleStack", "families": ["IPv6"]})
        );
        assert!(
            families(DUAL, json!({"ipFamilies": ["IPv4", "IPv6"]})).unwrap_err()[0]
                .starts_with("spec.ipFamilyPolicy:")
        );
        assert!(
            families(
                DUAL,
                json!({"ipFamilyPolicy": "RequireDualStack", "clusterIPs": ["10.96.0.20", "10.96.0.21"]})
            )
            .unwrap_err()[0]
                .contains("no more than one IP for each IP family")
        );
        assert!(
            families(
                DUAL,
                json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"], "clusterIPs": ["10.96.0.20"]})
            )
            .unwrap_err()[0]
                .contains("expected an IPv6 value")
        );
        // A headless Service without selector asks for both; a single-stack cluster
        // gives it its one.
        assert_eq!(
            families(V4, json!({"clusterIP": "None"})).unwrap(),
            json!({"policy": "RequireDualStack", "families": ["IPv4"]})
        );
        assert_eq!(
            families(DUAL, json!({"clusterIP": "None"})).unwrap(),
            json!({"policy": "RequireDualStack", "families": ["IPv4", "IPv6"]})
        );
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
