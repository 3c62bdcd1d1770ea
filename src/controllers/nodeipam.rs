//! Node IPAM: gives every node without one a /24 `spec.podCIDR` out of the cluster's
//! pod subnet (what the net agent routes and the CNI config hands out pod IPs from).
//! A CIDR is never changed once set; taken ones are skipped.
//!
//! A block is never handed out twice, also across restarts: the blocks in use are read
//! from the API with a fresh list at each allocation (not from the reflector store, which
//! is empty until its first list completes after a restart), allocations are serialized,
//! and the patch carries the resourceVersion it was decided on, so a node that got a
//! CIDR meanwhile refuses the second one with a conflict.

use super::{ControllerError, RESYNC, error_policy};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio::sync::Mutex;

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
    /// Held across list, choice and patch: one allocation at a time.
    allocating: Mutex<()>,
}

pub async fn run(client: Client, pod_subnet: String) -> Result<(), ControllerError> {
    let subnet = Subnet::parse(&pod_subnet)?;
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Ctx {
        client,
        subnet,
        allocating: Mutex::new(()),
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

/// A node's podCIDR, when it has one.
fn pod_cidr(node: &Node) -> Option<String> {
    node.spec
        .as_ref()?
        .pod_cidr
        .clone()
        .filter(|c| !c.is_empty())
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, ControllerError> {
    if pod_cidr(&node).is_some() {
        return Ok(Action::requeue(RESYNC));
    }
    let api = Api::<Node>::all(ctx.client.clone());
    let _one_at_a_time = ctx.allocating.lock().await;
    let nodes = api.list(&ListParams::default()).await?;
    let Some(current) = nodes.items.iter().find(|n| n.name_any() == node.name_any()) else {
        // Deleted meanwhile.
        return Ok(Action::await_change());
    };
    if pod_cidr(current).is_some() {
        return Ok(Action::requeue(RESYNC));
    }
    let taken: HashSet<String> = nodes.items.iter().filter_map(pod_cidr).collect();
    let cidr = ctx.subnet.first_free(&taken).ok_or_else(|| {
        ControllerError::Invalid("the pod subnet has no free node block left".into())
    })?;
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": current.resource_version()},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    });
    api.patch(
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
