//! Talking to a cluster's API server from the host, with the admin credentials read out
//! of the control-plane node (so nothing about a cluster is kept on the host).

use super::kubeconfig::Kubeconfig;
use super::provider;
use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use rind_runtime::paths;
use std::time::{Duration, Instant};

/// The admin kubeconfig of a cluster, named `rind-<cluster>`, pointing at the published
/// port on the host, or with `internal` at the node's name on the Docker network (the
/// load balancer's in an HA cluster, as kind's).
pub async fn admin_kubeconfig(
    docker: &bollard::Docker,
    cluster: &str,
    control_plane: &str,
    internal: bool,
) -> anyhow::Result<Kubeconfig> {
    let text = provider::read_file(docker, control_plane, paths::ADMIN_CONF).await?;
    let text = String::from_utf8(text).context("admin.conf is not UTF-8")?;
    let mut config = Kubeconfig::parse(&text, std::path::Path::new(paths::ADMIN_CONF))?;
    // An HA cluster's API is its load balancer, on the host and on the network alike.
    let front = match provider::load_balancer_of(docker, cluster).await? {
        Some(lb) => lb.name,
        None => control_plane.to_string(),
    };
    let server = if internal {
        format!("https://{front}:{}", paths::APISERVER_PORT)
    } else {
        let (address, port) = provider::api_endpoint(docker, &front).await?;
        format!("https://{address}:{port}")
    };
    config.set_server(&server);
    config.rename(&super::actions::context_name(cluster));
    Ok(config)
}

/// An API client from an admin kubeconfig.
pub async fn client_for(config: &Kubeconfig) -> anyhow::Result<kube::Client> {
    let parsed: kube::config::Kubeconfig =
        serde_json::from_value(config.0.clone()).context("the admin kubeconfig is malformed")?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(parsed, &options)
        .await
        .context("loading the admin kubeconfig")?;
    kube::Client::try_from(config).context("building an API client")
}

/// Polls `/readyz` until it answers ok or `deadline` passes.
pub async fn wait_for_api(config: &Kubeconfig, deadline: Duration) -> anyhow::Result<()> {
    let client = client_for(config).await?;
    let until = Instant::now() + deadline;
    loop {
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .context("building a request")?;
        let last = match client.request_text(request).await {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => format!("not ready: {body}"),
            Err(err) => err.to_string(),
        };
        if Instant::now() >= until {
            anyhow::bail!("gave up after {deadline:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls the Node until its Ready condition is True or `deadline` passes.
pub async fn wait_for_node_ready(
    config: &Kubeconfig,
    node: &str,
    deadline: Duration,
) -> anyhow::Result<()> {
    let client = client_for(config).await?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let until = Instant::now() + deadline;
    loop {
        if let Ok(Some(node)) = nodes.get_opt(node).await {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return Ok(());
            }
        }
        if Instant::now() >= until {
            anyhow::bail!("timed out");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls until every named Node exists (its kubelet registered it), or `deadline` passes.
pub async fn wait_for_nodes(
    config: &Kubeconfig,
    names: &[String],
    deadline: Duration,
) -> anyhow::Result<()> {
    let client = client_for(config).await?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let until = Instant::now() + deadline;
    let mut missing: Vec<&String> = names.iter().collect();
    loop {
        let mut still = Vec::new();
        for name in missing {
            if !matches!(nodes.get_opt(name).await, Ok(Some(_))) {
                still.push(name);
            }
        }
        missing = still;
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= until {
            let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            anyhow::bail!("timed out waiting for {} to register", names.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Adds `taint` to a Node unless a taint with its key and effect is there already, as
/// kubeadm's mark-control-plane phase does: read, add, replace with the read
/// resourceVersion, and again on a conflict (the node lifecycle controller manages
/// taints of its own on the same list).
pub async fn add_taint(
    config: &Kubeconfig,
    node: &str,
    taint: k8s_openapi::api::core::v1::Taint,
) -> anyhow::Result<()> {
    let client = client_for(config).await?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    loop {
        let mut current = nodes
            .get(node)
            .await
            .with_context(|| format!("reading node {node}"))?;
        let spec = current.spec.get_or_insert_with(Default::default);
        let taints = spec.taints.get_or_insert_with(Vec::new);
        if taints
            .iter()
            .any(|t| t.key == taint.key && t.effect == taint.effect)
        {
            return Ok(());
        }
        taints.push(taint.clone());
        match nodes
            .replace(node, &kube::api::PostParams::default(), &current)
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(err) => return Err(err).with_context(|| format!("tainting node {node}")),
        }
    }
}
