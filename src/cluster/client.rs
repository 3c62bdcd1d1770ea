//! Talking to a cluster's API server from the host, with the admin credentials read out
//! of the control-plane node (so nothing about a cluster is kept on the host).

use super::kubeconfig::Kubeconfig;
use super::provider;
use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use rind_runtime::paths;
use std::time::{Duration, Instant};

/// How often waits on a new cluster look again: each costs one small request, and the
/// wait ends this close to the moment the thing waited for happens.
const POLL: Duration = Duration::from_millis(100);

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

/// An API client that returns a 429 or 503 answer at once instead of retrying it (the
/// default client retries those for minutes): a drain must see an eviction a
/// PodDisruptionBudget refuses, to retry it on its own schedule and deadline.
pub async fn client_without_retries(config: &Kubeconfig) -> anyhow::Result<kube::Client> {
    let parsed: kube::config::Kubeconfig =
        serde_json::from_value(config.0.clone()).context("the admin kubeconfig is malformed")?;
    let options = kube::config::KubeConfigOptions::default();
    let mut config = kube::Config::from_custom_kubeconfig(parsed, &options)
        .await
        .context("loading the admin kubeconfig")?;
    config.default_retry = false;
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
        tokio::time::sleep(POLL).await;
    }
}

/// Polls until the Node `node` reports Ready, or `deadline` passes.
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
        tokio::time::sleep(POLL).await;
    }
}

/// Polls (one list per round) until every named Node exists (its kubelet registered
/// it), or `deadline` passes.
pub async fn wait_for_nodes(
    config: &Kubeconfig,
    names: &[String],
    deadline: Duration,
) -> anyhow::Result<()> {
    let client = client_for(config).await?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let until = Instant::now() + deadline;
    loop {
        let missing: Vec<&str> = match nodes.list(&kube::api::ListParams::default()).await {
            Ok(list) => names
                .iter()
                .filter(|n| {
                    !list
                        .items
                        .iter()
                        .any(|node| node.metadata.name.as_deref() == Some(n.as_str()))
                })
                .map(|n| n.as_str())
                .collect(),
            Err(_) => names.iter().map(|n| n.as_str()).collect(),
        };
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= until {
            anyhow::bail!("timed out waiting for {} to register", missing.join(", "));
        }
        tokio::time::sleep(POLL).await;
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
    let until = Instant::now() + CREATE_RETRY_DEADLINE;
    loop {
        let mut current = match nodes.get(node).await {
            Ok(current) => current,
            // As in `create_unless_exists`: an HA cluster's other API servers may still
            // be starting behind the load balancer.
            Err(err) if transient(&err) && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(err) => return Err(err).with_context(|| format!("reading node {node}")),
        };
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
            Err(err) if transient(&err) && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(err).with_context(|| format!("tainting node {node}")),
        }
    }
}

/// What keeps a cluster from being ready for use, as `--wait` defines it: each of
/// `nodes` registered and Ready, every kube-system Deployment and DaemonSet with all its
/// pods created, and every kube-system pod Running. Empty when it is ready.
pub async fn not_ready(client: &kube::Client, nodes: &[String]) -> anyhow::Result<Vec<String>> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    use k8s_openapi::api::core::v1::Pod;
    const NS: &str = "kube-system";
    let params = kube::api::ListParams::default();
    let node_api = kube::Api::<Node>::all(client.clone());
    let deployment_api = kube::Api::<Deployment>::namespaced(client.clone(), NS);
    let daemonset_api = kube::Api::<DaemonSet>::namespaced(client.clone(), NS);
    let pod_api = kube::Api::<Pod>::namespaced(client.clone(), NS);
    let (listed, deployments, daemonsets, pods) = futures::try_join!(
        node_api.list(&params),
        deployment_api.list(&params),
        daemonset_api.list(&params),
        pod_api.list(&params),
    )
    .context("reading the cluster's state")?;
    let mut pending = Vec::new();
    for name in nodes {
        let node = listed
            .items
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name.as_str()));
        let ready = node
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        match (node, ready) {
            (None, _) => pending.push(format!("node {name} not registered")),
            (Some(_), false) => pending.push(format!("node {name} not Ready")),
            _ => {}
        }
    }
    for d in &deployments.items {
        let want = d.spec.replicas.unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        let observed = status.observed_generation >= d.metadata.generation;
        let have = status.updated_replicas.unwrap_or(0);
        if !observed || have < want {
            pending.push(format!(
                "deployment {NS}/{} has {have} of {want} pods",
                d.metadata.name.as_deref().unwrap_or_default()
            ));
        }
    }
    for d in &daemonsets.items {
        let status = d.status.clone().unwrap_or_default();
        let observed = status.observed_generation >= d.metadata.generation;
        if !observed || status.current_number_scheduled < status.desired_number_scheduled {
            pending.push(format!(
                "daemonset {NS}/{} has {} of {} pods",
                d.metadata.name.as_deref().unwrap_or_default(),
                status.current_number_scheduled,
                status.desired_number_scheduled
            ));
        }
    }
    for p in &pods.items {
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        // A finished pod (a Job's) is done, not waiting.
        if phase != "Running" && phase != "Succeeded" {
            pending.push(format!(
                "pod {NS}/{} {phase}",
                p.metadata.name.as_deref().unwrap_or_default()
            ));
        }
    }
    Ok(pending)
}

/// How long creating one object is retried on transient failures.
const CREATE_RETRY_DEADLINE: Duration = Duration::from_secs(30);

/// Creates `object` unless it exists already (409 counts as done). In an HA cluster the
/// other API servers are still starting behind the load balancer while `create cluster`
/// writes its first objects, and one may close a connection as it starts or restarts: a
/// request that did not reach an answer (or got a 5xx or 429) is tried again for a
/// while; any other refusal is returned at once.
pub async fn create_unless_exists<K>(api: &kube::Api<K>, object: &K) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let until = Instant::now() + CREATE_RETRY_DEADLINE;
    loop {
        let err = match api.create(&kube::api::PostParams::default(), object).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => return Ok(()),
            Err(err) => err,
        };
        if !transient(&err) || Instant::now() >= until {
            return Err(err.into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A failure worth trying again: no answer at all (a connection closed or refused), or
/// an answer saying the server cannot serve now (5xx, 429).
fn transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        _ => true,
    }
}
