use super::ClusterName;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Exports cluster kubeconfig
    Kubeconfig {
        #[command(flatten)]
        name: ClusterName,
        /// sets kubeconfig path instead of $KUBECONFIG or $HOME/.kube/config
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// use internal address instead of external
        #[arg(long)]
        internal: bool,
    },
    /// Exports logs to a tempdir or [output-dir] if specified
    #[command(long_about = "Exports logs to a tempdir or [output-dir] if specified.

Per node: every component's log (/var/log/rind, containerd's among them, with kubelet.log
and containerd.log also at the top as on kind), the pods' logs (/var/log/pods), the
node's console output (serial.log, what its init printed) and `docker inspect`
(inspect.json), and what images its runtime holds (images.log); docker-info.txt and
rind-version.txt beside. An [output-dir] ending in .tar.gz or .tgz is written as that
gzipped tar instead of a folder.")]
    Logs {
        #[command(flatten)]
        name: ClusterName,
        /// the folder (or .tar.gz / .tgz archive) to write
        #[arg(value_name = "output-dir")]
        dir: Option<PathBuf>,
    },
}
