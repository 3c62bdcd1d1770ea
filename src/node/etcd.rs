//! etcd on a control-plane node: command line as kubeadm's static pod has it.

use rind_runtime::{NodeConfig, paths};

pub const BINARY: &str = "/usr/bin/etcd";

/// etcd's arguments: TLS for clients and peers with client-certificate auth on both,
/// exactly kubeadm's file layout, so `etcdctl` with the kubeadm paths works in a node.
pub fn args(cfg: &NodeConfig) -> Vec<String> {
    let ip = &cfg.node_ip;
    let client_port = paths::ETCD_CLIENT_PORT;
    let peer_port = paths::ETCD_PEER_PORT;
    let metrics_port = paths::ETCD_METRICS_PORT;
    let initial_cluster = if cfg.etcd_initial_cluster.is_empty() {
        format!("{}=https://{ip}:{peer_port}", cfg.node_name)
    } else {
        cfg.etcd_initial_cluster.join(",")
    };
    let mut args = vec![
        format!("--name={}", cfg.node_name),
        format!("--data-dir={}", paths::ETCD_DATA_DIR),
        format!("--cert-file={}", paths::ETCD_SERVER_CRT),
        format!("--key-file={}", paths::ETCD_SERVER_KEY),
        format!("--trusted-ca-file={}", paths::ETCD_CA_CRT),
        "--client-cert-auth=true".to_string(),
        format!("--peer-cert-file={}", paths::ETCD_PEER_CRT),
        format!("--peer-key-file={}", paths::ETCD_PEER_KEY),
        format!("--peer-trusted-ca-file={}", paths::ETCD_CA_CRT),
        "--peer-client-cert-auth=true".to_string(),
        format!("--listen-client-urls=https://127.0.0.1:{client_port},https://{ip}:{client_port}"),
        format!("--advertise-client-urls=https://{ip}:{client_port}"),
        format!("--listen-peer-urls=https://{ip}:{peer_port}"),
        format!("--initial-advertise-peer-urls=https://{ip}:{peer_port}"),
        format!("--initial-cluster={initial_cluster}"),
        // The members of a new cluster start together from a fixed member list; a
        // control plane added later joins the running cluster it was announced to
        // (`etcdctl member add`). The token keeps members of different clusters from
        // ever talking to each other.
        format!(
            "--initial-cluster-state={}",
            if cfg.etcd_join_existing {
                "existing"
            } else {
                "new"
            }
        ),
        format!("--initial-cluster-token={}", cfg.cluster_name),
        // kubeadm's value: snapshots often enough to keep the WAL small.
        "--snapshot-count=10000".to_string(),
        // The structured logger; etcd 3.4's default (capnslog) is deprecated.
        "--logger=zap".to_string(),
        // Idle watches get a progress notification every few seconds (default: ten
        // minutes), which the API server turns into watch bookmarks.
        "--experimental-watch-progress-notify-interval=5s".to_string(),
        // kubeadm's health endpoint: plain HTTP on loopback only, so the kubelet checks
        // etcd's /health for the mirror pod's readiness without a client certificate.
        format!("--listen-metrics-urls=http://127.0.0.1:{metrics_port}"),
    ];
    if cfg.etcd_initial_cluster.len() <= 1 && !cfg.etcd_join_existing {
        // A lone member has no peer to hear heartbeats from, yet waits a whole election
        // timeout (1 s by default) before electing itself, at every boot: the API server
        // and everything after it wait on that. Short timings make it leader in about
        // 0.2 s; they cannot cause a needless election since there is no one to lose
        // touch with (a cluster without a load balancer never gains a second member:
        // `rind add node --role control-plane` refuses it).
        args.push("--heartbeat-interval=20".to_string());
        args.push("--election-timeout=200".to_string());
    }
    args
}

/// etcd 3.4 refuses to start on architectures other than amd64, arm64 and ppc64le
/// unless told that the architecture is deliberately unsupported.
pub fn env() -> Vec<(String, String)> {
    let etcd_arch = match std::env::consts::ARCH {
        "x86_64" | "aarch64" | "powerpc64" => None,
        "arm" => Some("arm"),
        "s390x" => Some("s390x"),
        "riscv64" => Some("riscv64"),
        other => Some(other),
    };
    etcd_arch
        .map(|a| vec![("ETCD_UNSUPPORTED_ARCH".to_string(), a.to_string())])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_runtime::Role;

    fn cfg(initial: Vec<String>) -> NodeConfig {
        NodeConfig {
            cluster_name: "rind".into(),
            node_name: "rind-control-plane".into(),
            role: Role::ControlPlane,
            node_ip: "172.30.0.2".into(),
            node_ipv6: None,
            api_server_url: "https://172.30.0.2:6443".into(),
            pod_subnet: "10.244.0.0/16".into(),
            service_subnet: "10.96.0.0/16".into(),
            labels: Default::default(),
            register_with_taints: Vec::new(),
            max_pods: None,
            etcd_initial_cluster: initial,
            etcd_join_existing: false,
            disable_default_cni: false,
            kube_proxy_mode: Default::default(),
            dns_search: None,
            image: String::new(),
            containerd_config_patches: vec![],
        }
    }

    #[test]
    fn args_golden_single_member() {
        let expected = "\
--name=rind-control-plane
--data-dir=/var/lib/etcd
--cert-file=/etc/kubernetes/pki/etcd/server.crt
--key-file=/etc/kubernetes/pki/etcd/server.key
--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
--client-cert-auth=true
--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
--peer-key-file=/etc/kubernetes/pki/etcd/peer.key
--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
--peer-client-cert-auth=true
--listen-client-urls=https://127.0.0.1:2379,https://172.30.0.2:2379
--advertise-client-urls=https://172.30.0.2:2379
--listen-peer-urls=https://172.30.0.2:2380
--initial-advertise-peer-urls=https://172.30.0.2:2380
--initial-cluster=rind-control-plane=https://172.30.0.2:2380
--initial-cluster-state=new
--initial-cluster-token=rind
--snapshot-count=10000
--logger=zap
--experimental-watch-progress-notify-interval=5s
--listen-metrics-urls=http://127.0.0.1:2381
--heartbeat-interval=20
--election-timeout=200";
        assert_eq!(args(&cfg(vec![])).join("\n"), expected);
    }

    #[test]
    fn args_use_given_initial_cluster() {
        let a = args(&cfg(vec![
            "a=https://172.30.0.2:2380".into(),
            "b=https://172.30.0.3:2380".into(),
        ]));
        // Members of a real cluster keep etcd's default timings.
        assert!(!a.iter().any(|arg| arg.starts_with("--election-timeout")));
        assert!(a.contains(
            &"--initial-cluster=a=https://172.30.0.2:2380,b=https://172.30.0.3:2380".to_string()
        ));
    }
}
