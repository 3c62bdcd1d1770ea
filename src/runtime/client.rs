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
