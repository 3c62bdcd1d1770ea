//! Creates every node container at once and writes its configuration and certificates
//! into it (and in an HA cluster the API load balancer's container), then starts the
//! control planes, then the workers and the service load balancer's container.

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
            let started = std::time::Instant::now();
            let start = |role: Role| {
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
            };
            start(Role::ControlPlane).await?;
            futures::future::try_join(
                start(Role::Worker),
                super::start_service_lb::create_container(ctx),
            )
            .await?;
            Ok(())
        })
        .await
}
