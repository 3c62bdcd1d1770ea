//! The cluster's service load balancer (`<cluster>-service-lb`, see
//! `rind_proxy::service_lb`): its container, with credentials of its own, and the
//! grant of what
//! upstream's service controller may do (read Services and Nodes, write Services'
//! status) and what kube-proxy may read (EndpointSlices), through the built-in roles.

use super::CreateContext;
use crate::{client, provider};
use anyhow::Context;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::Api;

/// The user name in the load balancer's client certificate.
pub const SERVICE_LB_USER: &str = "rind:service-lb";
/// Its bindings: the service controller's role (Services, their status, Nodes), and
/// kube-proxy's (EndpointSlices, to send `externalTrafficPolicy: Local` Services'
/// connections only to nodes with endpoints).
const ROLES: [(&str, &str); 2] = [
    ("rind:service-lb", "system:controller:service-controller"),
    ("rind:service-lb:endpoints", "system:node-proxier"),
];

/// Grants the load balancer's credentials their roles, once the API answers (run in
/// the cluster DNS step, beside its writes: each is a round of etcd commits). The
/// container itself starts with the nodes (`create_container`) and waits for the API
/// server; until these bindings exist its requests are refused and retried.
pub async fn grant(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    let config = ctx.admin_config().await?;
    let api: Api<ClusterRoleBinding> = Api::all(client::client_for(&config).await?);
    let grants = ROLES.map(|(binding_name, role)| {
        let api = &api;
        async move {
            let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
                "metadata": {"name": binding_name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [{
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": SERVICE_LB_USER,
                }],
            }))
            .context("building the service load balancer's role binding")?;
            client::create_unless_exists(api, &binding)
                .await
                .with_context(|| format!("granting the service load balancer {role}"))
        }
    });
    futures::future::try_join_all(grants).await?;
    ctx.ui.detail("the service load balancer has its roles");
    Ok(())
}

/// Creates and starts the `<cluster>-service-lb` container with credentials of its own;
/// run beside the nodes' creation, so it is up by the time the cluster is.
pub async fn create_container(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    let cp = ctx.plan.control_plane();
    let kubeconfig = ctx.pki.client_kubeconfig(
        provider::SERVICE_LB_KUBECONFIG,
        SERVICE_LB_USER,
        &cp.config.api_server_url,
    )?;
    provider::create_service_lb(ctx.docker, &ctx.plan.name, &cp.spec.image, &kubeconfig).await
}
