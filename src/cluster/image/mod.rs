//! Placeholder until the image builder lands.
use super::ui::Ui;
use bollard::Docker;
use std::path::Path;

pub async fn ensure_node_image(
    _docker: &Docker,
    _ui: &Ui,
    image: Option<&str>,
) -> anyhow::Result<String> {
    Ok(image.unwrap_or("rind/node:dev").to_string())
}
pub async fn build_node_image(
    _docker: &Docker,
    _ui: &Ui,
    _source: Option<&Path>,
    _tag: Option<&str>,
) -> anyhow::Result<String> {
    anyhow::bail!("not built")
}
