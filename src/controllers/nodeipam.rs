//! Node IPAM: gives every node without one a /24 `spec.podCIDR` out of the cluster's
//! pod subnet (what the net agent routes and the CNI config hands out pod IPs from);
//! with a dual-stack pod subnet (`10.244.0.0/16,fd00:10:244::/56`) also a /64 of the
//! IPv6 range, `spec.podCIDRs` listing both, primary first, as upstream's range
//! allocator. A CIDR is never changed once set; taken ones are skipped.
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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Each node's share of the pod subnet, as kube-controller-manager's defaults
/// (`--node-cidr-mask-size-ipv4` and `-ipv6`).
const NODE_PREFIX_V4: u8 = 24;
const NODE_PREFIX_V6: u8 = 64;

/// One family's pod subnet, split in node-sized blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    base: u128,
    prefix: u8,
    v6: bool,
}

impl Subnet {
    pub fn parse(text: &str) -> Result<Self, ControllerError> {
        let bad = || ControllerError::Invalid(format!("pod subnet {text:?} is not a CIDR"));
        let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let (width, node_prefix, base) = match ip {
            IpAddr::V4(v4) => (32u8, NODE_PREFIX_V4, u128::from(u32::from(v4))),
            IpAddr::V6(v6) => (128u8, NODE_PREFIX_V6, u128::from(v6)),
        };
        if prefix > node_prefix {
            return Err(ControllerError::Invalid(format!(
                "pod subnet {text} is smaller than one node's /{node_prefix}"
            )));
        }
        let mask = u128::MAX
            .checked_shl(u32::from(width - prefix))
            .unwrap_or(0)
            & (u128::MAX >> (128 - u32::from(width)));
        Ok(Subnet {
            base: base & mask,
            prefix,
            v6: ip.is_ipv6(),
        })
    }

    fn node_prefix(&self) -> u8 {
        if self.v6 {
            NODE_PREFIX_V6
        } else {
            NODE_PREFIX_V4
        }
    }

    /// The node blocks in order, as `a.b.c.d/24` or `fd00:10:244:1::/64` (at most 2^16
    /// of them: an IPv6 range holds more than any cluster has nodes).
    fn blocks(&self) -> impl Iterator<Item = String> + '_ {
        let node_prefix = self.node_prefix();
        let width = if self.v6 { 128 } else { 32 };
        let count = 1u64 << (node_prefix - self.prefix).min(16);
        (0..count).map(move |i| {
            let start = self.base + (u128::from(i) << (width - u32::from(node_prefix)));
            let addr: IpAddr = if self.v6 {
                Ipv6Addr::from(start).into()
            } else {
                Ipv4Addr::from(start as u32).into()
            };
            format!("{addr}/{node_prefix}")
        })
    }

    /// The first block not in `taken`.
    pub fn first_free(&self, taken: &HashSet<String>) -> Option<String> {
        self.blocks().find(|b| !taken.contains(b))
    }
}

/// The pod subnet of each family, primary first, from upstream's comma-separated form.
pub fn parse_subnets(list: &str) -> Result<Vec<Subnet>, ControllerError> {
    let subnets = list
        .split(',')
        .map(|s| Subnet::parse(s.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let dual_ok = subnets.len() == 2 && subnets[0].v6 != subnets[1].v6;
    if subnets.len() > 2 || subnets.len() == 2 && !dual_ok {
        return Err(ControllerError::Invalid(format!(
            "pod subnet {list:?}: at most one CIDR per IP family"
        )));
    }
    Ok(subnets)
}

struct Ctx {
    client: Client,
    subnets: Vec<Subnet>,
    /// Held across list, choice and patch: one allocation at a time.
    allocating: Mutex<()>,
}

pub async fn run(client: Client, pod_subnet: String) -> Result<(), ControllerError> {
    let subnets = parse_subnets(&pod_subnet)?;
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Ctx {
        client,
        subnets,
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
    let taken: HashSet<String> = nodes
        .items
        .iter()
        .filter_map(|n| n.spec.as_ref())
        .flat_map(|spec| spec.pod_cidrs.iter().flatten().chain(spec.pod_cidr.iter()))
        .cloned()
        .collect();
    let cidrs = ctx
        .subnets
        .iter()
        .map(|subnet| {
            subnet.first_free(&taken).ok_or_else(|| {
                ControllerError::Invalid("the pod subnet has no free node block left".into())
            })
        })
        .collect::<Result<Vec<String>, _>>()?;
    let cidr = cidrs[0].clone();
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": current.resource_version()},
        "spec": {"podCIDR": cidr, "podCIDRs": cidrs},
    });
    api.patch(
        &node.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    tracing::info!(node = %node.name_any(), cidrs = %cidrs.join(","), "allocated podCIDRs");
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

    #[test]
    fn dual_stack_subnets_give_an_ipv6_block_per_node() {
        let subnets = parse_subnets("10.244.0.0/16,fd00:10:244::/56").unwrap();
        let mut taken = HashSet::from(["fd00:10:244::/64".to_string()]);
        assert_eq!(
            subnets[0].first_free(&taken).as_deref(),
            Some("10.244.0.0/24")
        );
        assert_eq!(
            subnets[1].first_free(&taken).as_deref(),
            Some("fd00:10:244:1::/64")
        );
        taken.insert("fd00:10:244:1::/64".to_string());
        assert_eq!(
            subnets[1].first_free(&taken).as_deref(),
            Some("fd00:10:244:2::/64")
        );
        assert!(parse_subnets("10.244.0.0/16,10.245.0.0/16").is_err());
        assert!(Subnet::parse("fd00::/65").is_err());
    }
}
