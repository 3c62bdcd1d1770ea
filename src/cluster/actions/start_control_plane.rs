//! Waits until the API server answers through the published port, then merges the
//! cluster's context into the user's kubeconfig.

use super::{CreateContext, context_name};
use crate::client;
use crate::kubeconfig;
use anyhow::Context;
use std::time::Duration;

/// The control plane of a fresh node comes up in seconds; this bounds a broken one.
const API_SERVER_DEADLINE: Duration = Duration::from_secs(180);

pub async fn execute(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    let cp = ctx.plan.control_plane();
    let config = ctx
        .ui
        .step("Starting control-plane 🕹️", async {
            let config = ctx.admin_config().await?;
            client::wait_for_api(&config, API_SERVER_DEADLINE)
                .await
                .with_context(|| {
                    format!("the API server of {} did not become ready", cp.spec.name)
                })?;
            Ok(config)
        })
        .await?;
    let path = ctx.kubeconfig.clone();
    tokio::task::spawn_blocking(move || {
        kubeconfig::update_user_kubeconfig(&path, |c| c.merge(&config))
    })
    .await
    .context("updating the kubeconfig")??;
    let context = context_name(&ctx.plan.name);
    ctx.ui
        .info(&format!("Set kubectl context to \"{context}\""));
    Ok(())
}
