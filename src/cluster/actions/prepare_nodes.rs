//! Creates every node container at once and writes its configuration and certificates
//! into it (and in an HA cluster the API load balancer's container), then starts the
//! control planes; `start_workers` starts the workers and the service load balancer's
//! container while the next steps run.

use super::CreateContext;
use crate::pki::{NodeFile, NodeIdentity};
use crate::provider;
use anyhow::Context;
use rind_runtime::{Role, paths};

pub async fn execute(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    ctx.ui
        .step("Preparing nodes 📦", async {
            let sans = ctx.plan.api_server_sans();
            let sans = &sans;
            let prepared = ctx.plan.nodes.iter().map(|node| async move {
                let identity = NodeIdentity {
                    name: &node.config.node_name,
                    ip: &node.config.node_ip,
                    control_plane: node.spec.role == Role::ControlPlane,
                    service_ip: &ctx.plan.service_ip.to_string(),
                    api_server_url: &node.config.api_server_url,
                    api_server_sans: sans,
                };
                let mut files = ctx.pki.node_files(&identity)?;
                files.push(NodeFile {
                    path: paths::NODE_CONFIG.to_string(),
                    contents: serde_json::to_vec_pretty(&node.config)
                        .context("encoding the node config")?,
                    mode: 0o644,
                });
                let name = &node.spec.name;
                let started = std::time::Instant::now();
                let took = || format!("{:.2}s", started.elapsed().as_secs_f64());
                provider::create_node(ctx.docker, &node.spec).await?;
                ctx.ui
                    .debug(&format!("{name}: container created ({})", took()));
                provider::copy_files(ctx.docker, name, &files).await?;
                ctx.ui.debug(&format!(
                    "{name}: config and certificates copied ({})",
                    took()
                ));
                Ok::<_, anyhow::Error>(())
            });
            let load_balancer = async {
                match &ctx.plan.load_balancer {
                    Some(lb) => {
                        provider::create_load_balancer(ctx.docker, lb, &ctx.pki.ca_pem()).await
                    }
                    None => Ok(()),
                }
            };
            futures::future::try_join(futures::future::try_join_all(prepared), load_balancer)
                .await?;
            // Control planes first: everything else waits on their API servers, and
            // Docker starts containers side by side only in part (0.4–0.7 s each here),
            // so a control plane started last would hold the whole cluster back.
            start(ctx, Role::ControlPlane).await
        })
        .await
}

/// Starts the workers and the service load balancer's container. `create` runs this
/// beside the control-plane and cluster DNS steps, which need no worker: the starts
/// take Docker 1–2 s for three workers here, and the cluster DNS pods are then
/// created (and started on the control plane, as in kind) in the meantime.
pub async fn start_workers(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    futures::future::try_join(
        start(ctx, Role::Worker),
        super::start_service_lb::create_container(ctx),
    )
    .await?;
    Ok(())
}

/// Starts every node of `role` side by side.
async fn start(ctx: &CreateContext<'_>, role: Role) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    futures::future::try_join_all(
        ctx.plan
            .nodes
            .iter()
            .filter(move |node| node.spec.role == role)
            .map(|node| async move {
                provider::start(ctx.docker, &node.spec.name).await?;
                ctx.ui.detail(&format!(
                    "{}: started at {} ({:.2}s)",
                    node.spec.name,
                    node.spec.ip,
                    started.elapsed().as_secs_f64()
                ));
                Ok::<_, anyhow::Error>(())
            }),
    )
    .await?;
    Ok(())
}
