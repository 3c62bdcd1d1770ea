//! With workers in the plan: waits until every worker's kubelet has registered its Node
//! (each with its own `system:node:<name>` credentials), then taints every control plane
//! `node-role.kubernetes.io/control-plane:NoSchedule` so workloads go to the workers, as
//! kind's clusters have it (kind removes kubeadm's taint only from single-node clusters).

use super::CreateContext;
use crate::client;
use anyhow::Context;
use k8s_openapi::api::core::v1::Taint;
use rind_runtime::Role;
use std::time::Duration;

/// A node's kubelet registers a few seconds after its container starts; this bounds a
/// node that never does.
const REGISTER_DEADLINE: Duration = Duration::from_secs(180);

/// The taint kubeadm puts on control-plane nodes.
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";

pub async fn execute(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    let workers: Vec<String> = ctx
        .plan
        .nodes
        .iter()
        .filter(|n| n.spec.role == Role::Worker)
        .map(|n| n.spec.name.clone())
        .collect();
    if workers.is_empty() {
        return Ok(());
    }
    ctx.ui
        .step("Joining worker nodes 🚜", async {
            let config = ctx.admin_config().await?;
            let control_planes: Vec<String> = ctx
                .plan
                .nodes
                .iter()
                .filter(|n| n.spec.role == Role::ControlPlane)
                .map(|n| n.spec.name.clone())
                .collect();
            let mut all = workers.clone();
            all.extend(control_planes.iter().cloned());
            client::wait_for_nodes(&config, &all, REGISTER_DEADLINE).await?;
            for name in &control_planes {
                let taint = Taint {
                    key: CONTROL_PLANE_TAINT.to_string(),
                    effect: "NoSchedule".to_string(),
                    ..Taint::default()
                };
                client::add_taint(&config, name, taint)
                    .await
                    .with_context(|| format!("marking {name} as control plane"))?;
            }
            Ok(())
        })
        .await
}
