//! The API client every in-node component builds from its kubeconfig file.

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Builds a client from a kubeconfig file, as every in-node component does.
pub async fn from_kubeconfig(path: &str) -> anyhow::Result<Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {path}"))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {path}"))?;
    Client::try_from(config).context("building the API client")
}

/// How often a starting component asks whether the API server is ready: a fresh node's
/// API server comes up within a second or two, and every component waits on it.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Builds the client of `path` once the API server it names is ready (see
/// `wait_until_ready`).
pub async fn from_kubeconfig_when_ready(path: &str, component: &str) -> anyhow::Result<Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {path}"))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {path}"))?;
    let url = config.cluster_url.clone();
    let client = Client::try_from(config).context("building the API client")?;
    wait_until_ready(&client, &url, component).await;
    Ok(client)
}

/// Waits until the API server at `url` (the one behind `client`) answers `/readyz` with
/// `ok`, polling every 100 ms. In-node components call it before their first watch or
/// lease request: kube's watchers back off 0.8 s, 1.6 s, 3.2 s… after a refused
/// connection and a lease candidate waits its whole retry period, so a component that
/// started a moment before the API server would otherwise join seconds after it is up.
/// While nothing listens yet only a TCP connection is tried (the client would log an
/// error for every refused request); the first problem, and a changed one, is logged,
/// not one line per poll.
pub async fn wait_until_ready(client: &Client, url: &http::Uri, component: &str) {
    let started = std::time::Instant::now();
    let address = url.host().map(|host| {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url
            .port_u16()
            .unwrap_or(if url.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        (host, port)
    });
    let mut last = String::new();
    let mut note = |problem: String| {
        if problem != last {
            tracing::info!("{component}: waiting for the API server: {problem}");
            last = problem;
        }
    };
    loop {
        let listening = match &address {
            Some((host, port)) => tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map(drop)
                .map_err(|e| format!("{host}:{port}: {e}")),
            None => Ok(()),
        };
        let problem = match listening {
            Err(problem) => problem,
            Ok(()) => {
                let request = match http::Request::get("/readyz").body(Vec::new()) {
                    Ok(request) => request,
                    // A constant request always builds; nothing to wait for if not.
                    Err(_) => return,
                };
                match client.request_text(request).await {
                    Ok(body) if body.trim() == "ok" => break,
                    Ok(body) => format!("not ready: {}", body.trim()),
                    Err(err) => err.to_string(),
                }
            }
        };
        note(problem);
        tokio::time::sleep(READY_POLL).await;
    }
    if !last.is_empty() {
        tracing::info!(
            "{component}: the API server is ready after {:.2}s",
            started.elapsed().as_secs_f64()
        );
    }
}
