//! `networking.k8s.io/v1` ServiceCIDRs and IPAddresses: the ranges Service ClusterIPs
//! come from and the record of each address handed out. The API server's allocator
//! allocates an address by creating its IPAddress (so an address is taken exactly
//! when its IPAddress exists) from the ranges of the Ready ServiceCIDRs; the
//! controller-manager marks new ServiceCIDRs Ready and holds a deleted one while
//! addresses only it covers are in use. Validation and names follow upstream's
//! pkg/apis/networking/validation and pkg/registry/core/service/ipallocator.

use super::fields::at;
use super::meta::str_at;
use super::status::Cause;
use super::validation::is_dns1123_subdomain;
use serde_json::{Value, json};
use std::net::IpAddr;

/// The ServiceCIDR every API server keeps from its service range.
pub const DEFAULT_NAME: &str = "kubernetes";
/// Who creates IPAddresses for Services (the `managed-by` label's value).
pub const MANAGED_BY: &str = "ipallocator.k8s.io";
pub const LABEL_MANAGED_BY: &str = "ipaddress.kubernetes.io/managed-by";
pub const LABEL_IP_FAMILY: &str = "ipaddress.kubernetes.io/ip-family";
/// Holds a deleted ServiceCIDR while addresses only it covers are allocated.
pub const FINALIZER: &str = "networking.k8s.io/service-cidr-finalizer";
/// The condition the allocator requires of a ServiceCIDR before it allocates from it.
pub const READY: &str = "Ready";

/// A parsed CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub bits: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, bits) = text.split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        // Rust would take a `+` sign that Go's parser refuses.
        if bits.starts_with('+') {
            return None;
        }
        let bits: u8 = bits.parse().ok()?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        if bits > width {
            return None;
        }
        Some(Cidr {
            network: mask(addr, bits),
            bits,
        })
    }

    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4() && mask(ip, self.bits) == self.network
    }

    /// The addresses a Service may get: all but the network address, and for IPv4
    /// the broadcast address.
    pub fn usable(&self) -> Option<(u128, u128)> {
        let width = if self.is_ipv4() { 32 } else { 128 };
        let base = to_u128(self.network);
        let size = 1u128.checked_shl(u32::from(width - self.bits)).unwrap_or(0);
        let last = if size == 0 {
            u128::MAX
        } else {
            base + size - 1
        };
        let first = base + 1;
        let last = if self.is_ipv4() {
            last.checked_sub(1)?
        } else {
            last
        };
        (first <= last).then_some((first, last))
    }

    pub fn address(&self, n: u128) -> IpAddr {
        if self.is_ipv4() {
            IpAddr::from(std::net::Ipv4Addr::from(n as u32))
        } else {
            IpAddr::from(std::net::Ipv6Addr::from(n))
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.bits)
    }
}

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::from(std::net::Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::from(std::net::Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

/// How many addresses at the bottom of a range are kept for Services that ask for a
/// specific ClusterIP (KEP-3070): `min(max(16, size/16), 256)`, none for tiny ranges.
pub fn range_offset(cidr: &Cidr) -> u128 {
    let width = if cidr.is_ipv4() { 32 } else { 128 };
    let size = 1u128
        .checked_shl(u32::from(width - cidr.bits))
        .unwrap_or(u128::MAX);
    if size <= 16 {
        0
    } else {
        (size / 16).clamp(16, 256)
    }
}

/// The CIDRs of a ServiceCIDR.
pub fn cidrs(service_cidr: &Value) -> Vec<String> {
    super::meta::strings(at(service_cidr, &["spec", "cidrs"]))
}

/// Whether the allocator may allocate from a ServiceCIDR: Ready and not being deleted.
pub fn is_ready(service_cidr: &Value) -> bool {
    let ready = at(service_cidr, &["status", "conditions"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| str_at(c, &["type"]) == Some(READY) && str_at(c, &["status"]) == Some("True"));
    ready && str_at(service_cidr, &["metadata", "deletionTimestamp"]).is_none()
}

/// The Ready condition, with upstream's message for the default ServiceCIDR or for
/// the others.
pub fn ready_condition(default: bool, now: &str) -> Value {
    let message = if default {
        "Kubernetes default Service CIDR is ready"
    } else {
        "Kubernetes Service CIDR is ready"
    };
    json!({"type": READY, "status": "True", "lastTransitionTime": now, "reason": "", "message": message})
}

/// The IPAddress recording that `ip` belongs to Service `namespace/name`.
pub fn ip_address(ip: IpAddr, namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip.to_string(),
            "labels": {
                LABEL_IP_FAMILY: if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                LABEL_MANAGED_BY: MANAGED_BY,
            },
        },
        // The core group is empty, which upstream's `group,omitempty` leaves out.
        "spec": {"parentRef": {"resource": "services", "namespace": namespace, "name": name}},
    })
}

fn validate_cidr(field: &str, text: &str, causes: &mut Vec<Cause>) {
    match Cidr::parse(text) {
        None => causes.push(Cause::invalid(
            field,
            text,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )),
        Some(cidr) if cidr.to_string() != text => causes.push(Cause::invalid(
            field,
            text,
            &format!("must be in canonical form ({:?})", cidr.to_string()),
        )),
        Some(_) => {}
    }
}

/// Upstream's `ValidateServiceCIDR`.
pub fn validate_service_cidr(service_cidr: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let list = cidrs(service_cidr);
    let spec = service_cidr.get("spec").cloned().unwrap_or(Value::Null);
    match list.len() {
        0 => causes.push(Cause::required("spec.cidrs", "at least one CIDR required")),
        n if n > 2 => causes.push(super::fields::invalid_value(
            "spec.cidrs",
            &spec,
            "may only hold up to 2 values",
        )),
        2 if list
            .iter()
            .filter_map(|c| Cidr::parse(c))
            .filter(Cidr::is_ipv4)
            .count()
            != 1
            || list.iter().any(|c| Cidr::parse(c).is_none()) =>
        {
            causes.push(super::fields::invalid_value(
                "spec.cidrs",
                &spec,
                "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64",
            ));
        }
        _ => {
            for (i, cidr) in list.iter().enumerate() {
                validate_cidr(&format!("spec.cidrs[{i}]"), cidr, &mut causes);
            }
        }
    }
    causes
}

/// A ServiceCIDR's ranges may not change.
pub fn validate_service_cidr_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    super::fields::immutable(old, new, &["spec", "cidrs"], &mut causes);
    causes
}

/// Upstream's `ValidateIPAddress`: the name is an IP address in canonical form, and
/// the parent reference names a resource and an object.
pub fn validate_ip_address(address: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = super::meta::name(address);
    match name.parse::<IpAddr>() {
        Err(_) => causes.push(Cause::invalid(
            "metadata.name",
            name,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )),
        Ok(ip) if ip.to_string() != name => causes.push(Cause::invalid(
            "metadata.name",
            name,
            &format!("must be in canonical form ({:?})", ip.to_string()),
        )),
        Ok(_) => {}
    }
    let Some(parent) = at(address, &["spec", "parentRef"]).filter(|p| p.is_object()) else {
        causes.push(Cause::required("spec.parentRef", ""));
        return causes;
    };
    let text = |key| str_at(parent, &[key]).unwrap_or_default();
    if !text("group").is_empty() && !is_dns1123_subdomain(text("group")) {
        causes.push(Cause::invalid(
            "spec.parentRef.group",
            text("group"),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ));
    }
    for key in ["resource", "name"] {
        if text(key).is_empty() {
            causes.push(Cause::required(format!("spec.parentRef.{key}"), ""));
        }
    }
    for key in ["resource", "name", "namespace"] {
        let value = text(key);
        let why = match value {
            "." => Some("may not be '.'".to_string()),
            ".." => Some("may not be '..'".to_string()),
            v if v.contains('/') => Some("may not contain '/'".to_string()),
            v if v.contains('%') => Some("may not contain '%'".to_string()),
            _ => None,
        };
        if let Some(why) = why {
            causes.push(Cause::invalid(format!("spec.parentRef.{key}"), value, &why));
        }
    }
    causes
}

/// An IPAddress's parent may not change.
pub fn validate_ip_address_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    super::fields::immutable(old, new, &["spec", "parentRef"], &mut causes);
    causes
}

/// The PARENTREF cell: `services/<namespace>/<name>` (group-qualified for other groups).
pub fn parent_ref_cell(address: &Value) -> String {
    let Some(parent) = at(address, &["spec", "parentRef"]).filter(|p| p.is_object()) else {
        return "<none>".to_string();
    };
    let text = |key| str_at(parent, &[key]).unwrap_or_default();
    let mut cell = if text("group").is_empty() {
        text("resource").to_lowercase()
    } else {
        format!("{}.{}", text("resource"), text("group")).to_lowercase()
    };
    if !text("namespace").is_empty() {
        cell.push('/');
        cell.push_str(text("namespace"));
    }
    cell.push('/');
    cell.push_str(text("name"));
    cell
}

/// Whether `name` is a valid ServiceCIDR name (a DNS subdomain).
pub fn valid_name(name: &str) -> bool {
    is_dns1123_subdomain(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_bound_their_addresses() {
        let cidr = Cidr::parse("10.96.0.0/16").unwrap();
        assert!(cidr.contains("10.96.255.255".parse().unwrap()));
        assert!(!cidr.contains("10.97.0.1".parse().unwrap()));
        let (first, last) = cidr.usable().unwrap();
        assert_eq!(cidr.address(first).to_string(), "10.96.0.1");
        assert_eq!(cidr.address(last).to_string(), "10.96.255.254");
        assert_eq!(range_offset(&cidr), 256);
        assert_eq!(range_offset(&Cidr::parse("10.0.0.0/28").unwrap()), 0);
        assert_eq!(range_offset(&Cidr::parse("10.0.0.0/24").unwrap()), 16);
        let v6 = Cidr::parse("2001:db8::/112").unwrap();
        assert_eq!(
            v6.address(v6.usable().unwrap().1).to_string(),
            "2001:db8::ffff"
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn service_cidrs_and_addresses_are_validated() {
        let messages = |causes: Vec<Cause>| -> Vec<String> {
            causes
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()
        };
        assert!(validate_service_cidr(&json!({"spec": {"cidrs": ["10.100.0.0/24"]}})).is_empty());
        assert_eq!(
            messages(validate_service_cidr(
                &json!({"spec": {"cidrs": ["10.100.0.1/24", "bogus/1"]}})
            )),
            vec![
                "spec.cidrs: Invalid value: {\"cidrs\":[\"10.100.0.1/24\",\"bogus/1\"]}: may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64"
            ]
        );
        assert_eq!(
            messages(validate_service_cidr(
                &json!({"spec": {"cidrs": ["10.100.0.1/24"]}})
            )),
            vec![
                "spec.cidrs[0]: Invalid value: \"10.100.0.1/24\": must be in canonical form (\"10.100.0.0/24\")"
            ]
        );
        assert_eq!(
            messages(validate_service_cidr(&json!({"spec": {}}))),
            vec!["spec.cidrs: Required value: at least one CIDR required"]
        );
        let ip = ip_address("10.96.0.5".parse().unwrap(), "default", "web");
        assert!(validate_ip_address(&ip).is_empty());
        assert_eq!(parent_ref_cell(&ip), "services/default/web");
        assert_eq!(ip["metadata"]["labels"][LABEL_MANAGED_BY], MANAGED_BY);
        let bad = json!({"metadata": {"name": "10.096.0.5"}, "spec": {"parentRef": {"resource": "services"}}});
        assert_eq!(
            messages(validate_ip_address(&bad)),
            vec![
                "metadata.name: Invalid value: \"10.096.0.5\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.parentRef.name: Required value",
            ]
        );
    }
}
