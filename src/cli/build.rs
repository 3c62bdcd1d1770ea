use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum BuildCommand {
    /// Builds the node image (and the base image when missing).
    NodeImage {
        /// A rind source tree to build the node's binary from (default: this binary).
        #[arg(long)]
        source: Option<PathBuf>,
        /// Tag of the node image (default: rind/node:<version>).
        #[arg(long)]
        image: Option<String>,
    },
}
