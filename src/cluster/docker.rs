//! The connection to the host's Docker Engine.

use anyhow::Context;
use bollard::Docker;

/// Connects to the local engine (DOCKER_HOST or the default socket) and agrees on an
/// API version, since daemons here may speak only API 1.41.
pub async fn connect() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_defaults().context("connecting to the Docker Engine")?;
    let docker = docker.negotiate_version().await.context(
        "cannot reach the Docker Engine (is dockerd running and is its socket readable?)",
    )?;
    Ok(docker)
}

/// Labels on every container, volume and network rind creates.
pub const LABEL_CLUSTER: &str = "io.rind.cluster";
pub const LABEL_ROLE: &str = "io.rind.role";
