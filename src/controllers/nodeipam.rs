//! Node IPAM: gives every node without one a /24 `spec.podCIDR` out of the cluster's
//! pod subnet (what the net agent routes and the CNI config hands out pod IPs from).
//! A CIDR is never changed once set; taken ones are skipped.

use super::{ControllerError, RESYNC, error_policy};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

/// Each node's share of the pod subnet, as kube-controller-manager's default.
const NODE_PREFIX: u8 = 24;

/// The pod subnet, split in node-sized blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    pub fn parse(text: &str) -> Result<Self, ControllerError> {
        let bad = || ControllerError::Invalid(format!("pod subnet {text:?} is not an IPv4 CIDR"));
        let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > NODE_PREFIX {
            return Err(ControllerError::Invalid(format!(
                "pod subnet {text} is smaller than one node's /{NODE_PREFIX}"
            )));
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Ok(Subnet {
            base: u32::from(ip) & mask,
            prefix,
        })
    }

    /// The node blocks in order, as `a.b.c.d/24`.
    fn blocks(&self) -> impl Iterator<Item = String> + '_ {
        let count = 1u64 << (NODE_PREFIX - self.prefix);
        (0..count).map(move |i| {
            let start = self.base + ((i as u32) << (32 - NODE_PREFIX));
            format!("{}/{NODE_PREFIX}", Ipv4Addr::from(start))
        })
    }

    /// The first block not in `taken`.
    pub fn first_free(&self, taken: &HashSet<String>) -> Option<String> {
        self.blocks().find(|b| !taken.contains(b))
    }
}

struct Ctx {
    client: Client,
    subnet: Subnet,
    nodes: Store<Node>,
    /// Blocks handed out whose node the store may not show yet.
    handed_out: Mutex<HashSet<String>>,
}

pub async fn run(client: Client, pod_subnet: String) -> Result<(), ControllerError> {
    let subnet = Subnet::parse(&pod_subnet)?;
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Ctx {
        client,
        subnet,
        nodes: controller.store(),
        handed_out: Mutex::default(),
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!("node ipam reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    let has_cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .is_some_and(|c| !c.is_empty());
    if has_cidr {
        return Ok(Action::requeue(RESYNC));
    }
    let cidr = {
        let mut handed_out = ctx.handed_out.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken: HashSet<String> = ctx
            .nodes
            .state()
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
            .collect();
        taken.extend(handed_out.iter().cloned());
        let cidr = ctx.subnet.first_free(&taken).ok_or_else(|| {
            ControllerError::Invalid("the pod subnet has no free node block left".into())
        })?;
        handed_out.insert(cidr.clone());
        cidr
    };
    let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    Api::<Node>::all(ctx.client.clone())
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    tracing::info!(node = %node.name_any(), %cidr, "allocated podCIDR");
    Ok(Action::requeue(RESYNC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_come_in_order_and_skip_taken_ones() {
        let subnet = Subnet::parse("10.244.0.0/16").unwrap();
        let mut taken = HashSet::new();
        assert_eq!(subnet.first_free(&taken).as_deref(), Some("10.244.0.0/24"));
        taken.insert("10.244.0.0/24".to_string());
        taken.insert("10.244.1.0/24".to_string());
        assert_eq!(subnet.first_free(&taken).as_deref(), Some("10.244.2.0/24"));
        let tiny = Subnet::parse("10.0.0.0/24").unwrap();
        taken.insert("10.0.0.0/24".to_string());
        assert_eq!(tiny.first_free(&taken), None);
        assert!(Subnet::parse("10.0.0.0/25").is_err());
        assert!(Subnet::parse("nonsense").is_err());
    }
}
