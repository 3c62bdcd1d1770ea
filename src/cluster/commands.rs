//! Host commands: each takes its parsed arguments and does the work.

use super::ui::Ui;
use crate::cli::{
    build::BuildCommand, create::CreateCommand, delete::DeleteCommand, export::ExportCommand,
    get::GetCommand, load::LoadCommand,
};

pub async fn create(_cmd: CreateCommand, _ui: &Ui) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub async fn delete(_cmd: DeleteCommand, _ui: &Ui) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub async fn get(_cmd: GetCommand) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub async fn export(_cmd: ExportCommand, _ui: &Ui) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub async fn load(_cmd: LoadCommand, _ui: &Ui) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub async fn build(cmd: BuildCommand, ui: &Ui) -> anyhow::Result<()> {
    match cmd {
        BuildCommand::NodeImage { source, image } => {
            let docker = super::docker::connect().await?;
            let tag =
                super::image::build_node_image(&docker, ui, source.as_deref(), image.as_deref())
                    .await?;
            ui.info(&format!("Image \"{tag}\" build completed."));
            Ok(())
        }
    }
}
