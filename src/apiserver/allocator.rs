//! ClusterIP and NodePort allocation for Services. Used addresses are read from the
//! stored Services themselves (no separate bitmap yet), and a free one is picked at
//! random so concurrent creates rarely collide.

use super::Server;
use super::handlers::decode;
use rind_api::meta::str_at;
use rind_api::status::{ApiError, Cause};
use serde_json::Value;
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// The NodePort range upstream uses by default.
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// An IPv4 service network such as `10.96.0.0/16`.
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

    fn size(&self) -> u32 {
        1u32 << (32 - self.bits)
    }

    /// The first usable address: the `kubernetes` Service's ClusterIP.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.base && ip < self.base + self.size() - 1
    }

    fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.bits)
    }
}

/// ClusterIPs and NodePorts held by stored Services.
async fn in_use(server: &Server) -> Result<(HashSet<Ipv4Addr>, HashSet<i64>), ApiError> {
    let services = server
        .registry
        .lookup("", "v1", "services")
        .ok_or_else(|| ApiError::internal("services are not registered"))?;
    let page = server
        .store
        .list(&services.prefix(None), None, 0, None)
        .await
        .map_err(|e| super::handlers::store_error(e, services, ""))?;
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for kv in &page.items {
        let svc = decode(kv)?;
        if let Some(ip) = str_at(&svc, &["spec", "clusterIP"]).and_then(|ip| ip.parse().ok()) {
            ips.insert(ip);
        }
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
    Ok((ips, ports))
}

fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    ApiError::invalid("Service", "", name, &[Cause::invalid(field, value, detail)])
}

/// Gives a new Service its ClusterIP (checking a requested one) and NodePorts.
pub async fn allocate(server: &Server, service: &mut Value) -> Result<(), ApiError> {
    let name = str_at(service, &["metadata", "name"])
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
    let (used_ips, used_ports) = in_use(server).await?;
    let net = server.service_network;
    if requested.is_empty() {
        let ip = pick_ip(&net, &used_ips).ok_or_else(|| {
            ApiError::internal(format!(
                "failed to allocate a serviceIP: range {} is full",
                net.cidr()
            ))
        })?;
        spec.insert("clusterIP".into(), ip.to_string().into());
        spec.insert("clusterIPs".into(), vec![ip.to_string()].into());
    } else if requested != "None" {
        let ip: Ipv4Addr = requested.parse().map_err(|_| {
            invalid(
                &name,
                "spec.clusterIP",
                &requested,
                "must be a valid IP address",
            )
        })?;
        if !net.contains(ip) {
            return Err(invalid(
                &name,
                "spec.clusterIPs",
                &requested,
                &format!(
                    "failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}",
                    net.cidr()
                ),
            ));
        }
        if used_ips.contains(&ip) {
            return Err(invalid(
                &name,
                "spec.clusterIPs",
                &requested,
                &format!("failed to allocate IP {requested}: provided IP is already allocated"),
            ));
        }
        spec.entry("clusterIPs")
            .or_insert_with(|| vec![requested.clone()].into());
    }
    if wants_node_ports {
        let mut taken = used_ports;
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for (i, port) in ports
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .enumerate()
            {
                match port.get("nodePort").and_then(Value::as_i64) {
                    Some(p) if !NODE_PORTS.contains(&p) => {
                        return Err(invalid(
                            &name,
                            &format!("spec.ports[{i}].nodePort"),
                            &p.to_string(),
                            "provided port is not in the valid range. The range of valid ports is 30000-32767",
                        ));
                    }
                    Some(p) if !taken.insert(p) => {
                        return Err(invalid(
                            &name,
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
    }
    Ok(())
}

fn pick_ip(net: &ServiceNetwork, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let usable = net.size() - 2;
    // Random probes first (cheap, collision-resistant); a full scan when the range is crowded.
    for _ in 0..64 {
        let ip = Ipv4Addr::from(net.base + 1 + rand::random_range(0..usable));
        if !used.contains(&ip) {
            return Some(ip);
        }
    }
    (1..=usable)
        .map(|o| Ipv4Addr::from(net.base + o))
        .find(|ip| !used.contains(ip))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let net = ServiceNetwork::parse("10.96.5.7/16").unwrap();
        assert_eq!(net.first(), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(net.cidr(), "10.96.0.0/16");
        assert!(net.contains(Ipv4Addr::new(10, 96, 255, 254)));
        assert!(!net.contains(Ipv4Addr::new(10, 96, 255, 255)));
        assert!(!net.contains(Ipv4Addr::new(10, 97, 0, 1)));
        assert!(ServiceNetwork::parse("nonsense").is_err());
        let tiny = ServiceNetwork::parse("10.0.0.0/30").unwrap();
        let used: HashSet<_> = [Ipv4Addr::new(10, 0, 0, 1)].into();
        assert_eq!(pick_ip(&tiny, &used), Some(Ipv4Addr::new(10, 0, 0, 2)));
        let full: HashSet<_> = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)].into();
        assert_eq!(pick_ip(&tiny, &full), None);
    }
}
