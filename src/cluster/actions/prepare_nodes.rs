//! Creates every node container at once, writes its configuration and certificates into
//! it, and starts it; in an HA cluster the load balancer container too.

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
                provider::start(ctx.docker, name).await?;
                ctx.ui
                    .detail(&format!("{name}: started at {} ({})", node.spec.ip, took()));
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
            Ok(())
        })
        .await
}
