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

/// The same connection with a request timeout fit for building images. bollard's
/// default of 120 s covers a whole request, and an image import streams mmdebstrap's
/// output for as long as mmdebstrap runs (minutes on a loaded 2-core machine), so
/// image builds, imports and commits get this much longer bound instead.
pub fn for_image_builds(docker: &Docker) -> Docker {
    const IMAGE_BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
    docker.clone().with_timeout(IMAGE_BUILD_TIMEOUT)
}

/// Labels on every container, volume and network rind creates.
pub const LABEL_CLUSTER: &str = "io.rind.cluster";
pub const LABEL_ROLE: &str = "io.rind.role";
