//! Hidden `rind node …` subcommands: what runs inside a node container.

use anyhow::Context;
use clap::Subcommand;
use rind_runtime::{NodeConfig, paths};
use std::path::Path;

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// PID 1 of a node: mounts, containerd, etcd and every component, supervised.
    Init,
    /// The external load balancer of an HA cluster: the API port, forwarded to every
    /// ready API server (the only process of `<cluster>-external-load-balancer`).
    Lb,
    /// The Kubernetes API server.
    Apiserver,
    /// The controller-manager: workload, garbage-collection and other control loops.
    ControllerManager,
    /// The scheduler.
    Scheduler,
    /// The kubelet.
    Kubelet,
    /// The pod network agent: CNI config, routes to other nodes, masquerade, NetworkPolicy.
    Net,
    /// The service proxy (cluster IPs and node ports as nftables or iptables rules).
    Proxy,
    /// Relays DNS queries sent to the node's IP to the node's own resolver (Docker's
    /// embedded DNS, which pods cannot reach directly).
    DnsRelay,
    /// The API server alone on 127.0.0.1 against a plain-HTTP etcd, with generated
    /// certificates and an admin kubeconfig written to `--dir` (for client test suites).
    StandaloneApiserver {
        /// The etcd client URL, e.g. http://127.0.0.1:2379.
        #[arg(long)]
        etcd: String,
        /// Where the admin kubeconfig is written once the port is bound.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// The port to listen on; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Benchmarks the scheduler against an API server on loopback (e2e/bench/scheduler.py).
    BenchScheduler(rind_bench::scheduler::BenchArgs),
    /// The cluster's service load balancer (container `<cluster>-service-lb`, on the
    /// host's network): LoadBalancer Services on host loopback addresses.
    ServiceLb {
        /// Credentials for the API server.
        #[arg(long)]
        kubeconfig: String,
    },
    /// Prints the ID of an image the node's runtime holds (nothing if absent); lets
    /// `rind load` skip nodes that already have an image.
    ImageId { image: String },
}

pub async fn run(cmd: NodeCommand) -> anyhow::Result<()> {
    let load =
        || NodeConfig::load(Path::new(paths::NODE_CONFIG)).context("loading the node config");
    match cmd {
        NodeCommand::Init => rind_node::run_init().await,
        NodeCommand::Lb => rind_node::run_load_balancer().await,
        NodeCommand::Apiserver => rind_apiserver::run_node(&load()?).await,
        NodeCommand::ControllerManager => rind_controllers::run_node(&load()?).await,
        NodeCommand::Scheduler => rind_scheduler::run_node(&load()?).await,
        NodeCommand::Kubelet => rind_kubelet::run_node(&load()?).await,
        NodeCommand::Net => rind_net::run_node(&load()?).await,
        NodeCommand::Proxy => rind_proxy::run_node(&load()?).await,
        NodeCommand::DnsRelay => {
            rind_runtime::logging::init("info");
            let cfg = load()?;
            let ip: std::net::IpAddr = cfg
                .node_ip
                .parse()
                .with_context(|| format!("the node IP {:?}", cfg.node_ip))?;
            let resolv = std::fs::read_to_string("/etc/resolv.conf")
                .context("reading the node's /etc/resolv.conf")?;
            rind_dns::relay::run(ip, rind_dns::forward::Upstream::from_resolv_conf(&resolv))
                .await
                .context("relaying DNS")
        }
        NodeCommand::StandaloneApiserver { etcd, dir, port } => {
            rind_bench::standalone::run(&etcd, &dir, port).await
        }
        NodeCommand::BenchScheduler(args) => rind_bench::scheduler::run_bench(args).await,
        NodeCommand::ServiceLb { kubeconfig } => rind_proxy::service_lb::run(&kubeconfig).await,
        NodeCommand::ImageId { image } => {
            if let Some(id) = rind_kubelet::image_id(&image).await? {
                println!("{id}");
            }
            Ok(())
        }
    }
}
