use super::ClusterName;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum LoadCommand {
    /// Loads images from the host's Docker into the nodes.
    DockerImage {
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        name: ClusterName,
        /// Comma-separated node names to load into (default: all).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
    /// Loads an image archive (docker save / OCI tar, plain or gzipped) into the nodes.
    ImageArchive {
        archive: PathBuf,
        #[command(flatten)]
        name: ClusterName,
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
}
