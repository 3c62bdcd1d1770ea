use super::ClusterName;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum LoadCommand {
    /// Loads docker images from host into nodes
    #[command(long_about = "Loads docker images from host into all or specified nodes by name")]
    DockerImage {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
        #[command(flatten)]
        name: ClusterName,
        /// comma separated list of nodes to load images into
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
    /// Loads docker image from archive into nodes
    #[command(
        long_about = "Loads docker image from archive (docker save / OCI tar, plain or gzipped) into all or specified nodes by name"
    )]
    ImageArchive {
        #[arg(required = true, value_name = "IMAGE.tar")]
        archives: Vec<PathBuf>,
        #[command(flatten)]
        name: ClusterName,
        /// comma separated list of nodes to load images into
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
}
