//! `--wait`: polls until every node is Ready and the system pods are Running (see
//! `client::not_ready`). kind waits for the control-plane nodes only; a cluster whose
//! DNS pods are still Pending is not one a user can run workloads on yet. As on kind,
//! running out of time is a warning, not a failure: the cluster is kept and usable.

use super::CreateContext;
use crate::client;
use crate::duration::format;
use std::time::{Duration, Instant};

/// How often the cluster is looked at: small next to the second or so each node
/// component needs, so the wait ends close to the moment the cluster is ready.
const POLL: Duration = Duration::from_millis(100);

pub async fn execute(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    let started = Instant::now();
    let title = format!(
        "Waiting ≤ {} for every node = Ready and system pods = Running ⏳",
        format(ctx.wait)
    );
    let nodes: Vec<String> = ctx.plan.nodes.iter().map(|n| n.spec.name.clone()).collect();
    let result = ctx
        .ui
        .step(&title, async {
            let config = ctx.admin_config().await?;
            let client = client::client_for(&config).await?;
            let until = started + ctx.wait;
            let mut last: Vec<String> = Vec::new();
            loop {
                let pending = match client::not_ready(&client, &nodes).await {
                    Ok(pending) => pending,
                    Err(err) => vec![format!("{err:#}")],
                };
                if pending.is_empty() {
                    return Ok(());
                }
                if pending != last {
                    ctx.ui.detail(&format!(
                        "{:.1}s: waiting for {}",
                        started.elapsed().as_secs_f64(),
                        pending.join(", ")
                    ));
                    last = pending;
                }
                if Instant::now() >= until {
                    anyhow::bail!("still waiting for {}", last.join(", "));
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
    match result {
        Ok(()) => ctx
            .ui
            .info(&format!(" • Ready after {} 💚", format(started.elapsed()))),
        Err(err) => {
            ctx.ui.info(" • WARNING: Timed out waiting for Ready ⚠️");
            ctx.ui.detail(&format!("{err:#}"));
        }
    }
    Ok(())
}
