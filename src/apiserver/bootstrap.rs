//! Objects every cluster has from the start: the system namespaces and the
//! `default/kubernetes` Service. Created when absent, never overwritten, so restarts
//! and several API servers starting together are harmless.

use super::Server;
use super::handlers::create_object;
use crate::api::status::ApiError;
use serde_json::json;
use std::net::Ipv4Addr;

const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The first usable address of an IPv4 CIDR (`10.96.0.0/16` → `10.96.0.1`).
fn first_ip(cidr: &str) -> Result<Ipv4Addr, ApiError> {
    let bad = || ApiError::internal(format!("invalid service subnet {cidr:?}"));
    let (addr, bits) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    if bits >= 31 {
        return Err(bad());
    }
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Ok(Ipv4Addr::from((u32::from(addr) & mask) + 1))
}

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
    match create_object(server, resource, ns, object, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn ensure_defaults(server: &Server, service_subnet: &str) -> Result<(), ApiError> {
    for ns in NAMESPACES {
        create_if_absent(
            server,
            "namespaces",
            None,
            json!({"metadata": {"name": ns}}),
        )
        .await?;
    }
    let cluster_ip = first_ip(service_subnet)?.to_string();
    let service = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
        },
        "status": {"loadBalancer": {}},
    });
    create_if_absent(server, "services", Some("default"), service).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_service_ip() {
        assert_eq!(
            first_ip("10.96.0.0/16").unwrap(),
            Ipv4Addr::new(10, 96, 0, 1)
        );
        assert_eq!(
            first_ip("10.96.5.7/12").unwrap(),
            Ipv4Addr::new(10, 96, 0, 1)
        );
        assert!(first_ip("nonsense").is_err());
    }
}
