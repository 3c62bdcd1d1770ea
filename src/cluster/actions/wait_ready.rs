//! `--wait`: polls until the control-plane node reports Ready.

use super::CreateContext;
use crate::client;
use anyhow::Context;

pub async fn execute(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    let cp = ctx.plan.control_plane();
    let title = format!(
        "Waiting ≤ {} for control-plane = Ready ⏳",
        super::super::duration::format(ctx.wait)
    );
    ctx.ui
        .step(&title, async {
            let config =
                client::admin_kubeconfig(ctx.docker, &ctx.plan.name, &cp.spec.name, false).await?;
            client::wait_for_node_ready(&config, &cp.spec.name, ctx.wait)
                .await
                .with_context(|| {
                    format!(
                        "node {} did not become Ready within {:?}",
                        cp.spec.name, ctx.wait
                    )
                })
        })
        .await
}
