//! `create cluster` as a list of actions, each in its own file with one `execute`, run in
//! order (kind's model), but for the workers' start, which runs beside the control-plane
//! and DNS steps. On failure the nodes are removed unless `--retain`.

mod install_dns;
pub mod join_workers;
mod prepare_nodes;
mod start_control_plane;
mod start_service_lb;
mod wait_ready;

use super::kubeconfig::Kubeconfig;
use super::pki::ClusterPki;
use super::plan::ClusterPlan;
use super::ui::Ui;
use bollard::Docker;
use std::path::PathBuf;
use std::time::Duration;

pub struct CreateContext<'a> {
    pub docker: &'a Docker,
    pub ui: &'a Ui,
    pub plan: ClusterPlan,
    pub pki: ClusterPki,
    /// The user's kubeconfig to merge the cluster's context into.
    pub kubeconfig: PathBuf,
    /// How long to wait for the control plane to be Ready (zero: don't wait).
    pub wait: Duration,
    /// The host's admin kubeconfig, read from the first control plane once (each read
    /// is three Docker calls) and shared by the steps.
    pub admin: tokio::sync::OnceCell<Kubeconfig>,
}

impl CreateContext<'_> {
    /// The admin kubeconfig for reaching the cluster from the host.
    pub async fn admin_config(&self) -> anyhow::Result<Kubeconfig> {
        let cp = self.plan.control_plane();
        self.admin
            .get_or_try_init(|| {
                super::client::admin_kubeconfig(self.docker, &self.plan.name, &cp.spec.name, false)
            })
            .await
            .cloned()
    }
}

pub async fn create(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    prepare_nodes::execute(ctx).await?;
    // The workers start while the control plane comes up and the cluster DNS is
    // written; a failure of either side ends the other.
    futures::future::try_join(prepare_nodes::start_workers(ctx), async {
        start_control_plane::execute(ctx).await?;
        install_dns::execute(ctx).await
    })
    .await?;
    join_workers::execute(ctx).await?;
    install_dns::wait_for_default_account_of(ctx).await?;
    if !ctx.wait.is_zero() {
        wait_ready::execute(ctx).await?;
    }
    Ok(())
}

/// The context name kubectl users see: `rind-<cluster>` (kind's `kind-<cluster>`).
pub fn context_name(cluster: &str) -> String {
    format!("rind-{cluster}")
}
