//! Where things live inside a node. PKI and kubeconfigs follow kubeadm's layout so
//! that anyone who knows a kubeadm or kind node finds them where they expect.

pub const NODE_CONFIG: &str = "/etc/rind/node.json";
pub const LOG_DIR: &str = "/var/log/rind";
/// The external load balancer's backends (`config::LoadBalancerConfig`).
pub const LOAD_BALANCER_CONFIG: &str = "/etc/rind/load-balancer.json";

pub const CA_CRT: &str = "/etc/kubernetes/pki/ca.crt";
pub const CA_KEY: &str = "/etc/kubernetes/pki/ca.key";
pub const APISERVER_CRT: &str = "/etc/kubernetes/pki/apiserver.crt";
pub const APISERVER_KEY: &str = "/etc/kubernetes/pki/apiserver.key";
/// The API server's client certificate towards kubelets (logs, exec).
pub const APISERVER_KUBELET_CLIENT_CRT: &str = "/etc/kubernetes/pki/apiserver-kubelet-client.crt";
pub const APISERVER_KUBELET_CLIENT_KEY: &str = "/etc/kubernetes/pki/apiserver-kubelet-client.key";
/// The user that certificate names (its CN, as kubeadm's): the one caller kubelets serve.
pub const APISERVER_KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// The API server's client certificate towards etcd.
pub const APISERVER_ETCD_CLIENT_CRT: &str = "/etc/kubernetes/pki/apiserver-etcd-client.crt";
pub const APISERVER_ETCD_CLIENT_KEY: &str = "/etc/kubernetes/pki/apiserver-etcd-client.key";
/// Service-account token signing key pair.
pub const SA_KEY: &str = "/etc/kubernetes/pki/sa.key";
pub const SA_PUB: &str = "/etc/kubernetes/pki/sa.pub";

pub const ETCD_CA_CRT: &str = "/etc/kubernetes/pki/etcd/ca.crt";
pub const ETCD_CA_KEY: &str = "/etc/kubernetes/pki/etcd/ca.key";
pub const ETCD_SERVER_CRT: &str = "/etc/kubernetes/pki/etcd/server.crt";
pub const ETCD_SERVER_KEY: &str = "/etc/kubernetes/pki/etcd/server.key";
pub const ETCD_PEER_CRT: &str = "/etc/kubernetes/pki/etcd/peer.crt";
pub const ETCD_PEER_KEY: &str = "/etc/kubernetes/pki/etcd/peer.key";
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";

pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";
pub const SCHEDULER_CONF: &str = "/etc/kubernetes/scheduler.conf";
pub const CONTROLLER_MANAGER_CONF: &str = "/etc/kubernetes/controller-manager.conf";
/// The service proxy's kubeconfig, as user `system:kube-proxy` (bound to
/// `system:node-proxier` by the default policy), at kubeadm's kube-proxy path.
pub const PROXY_CONF: &str = "/var/lib/kube-proxy/kubeconfig.conf";
/// What the service proxy last programmed (JSON, rewritten after every sync).
pub const PROXY_STATUS: &str = "/run/rind/proxy-status.json";
/// The node supervisor's record of each component's process (`<name>.json`), which
/// the kubelet reports as the component's mirror pod.
pub const COMPONENT_STATUS_DIR: &str = "/run/rind/components";

/// The kubelet's serving certificate (its HTTPS port serves logs to the API server).
pub const KUBELET_SERVING_CRT: &str = "/var/lib/kubelet/pki/kubelet.crt";
pub const KUBELET_SERVING_KEY: &str = "/var/lib/kubelet/pki/kubelet.key";
/// Pod logs, laid out as the kubelet does: `/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log`.
pub const POD_LOG_DIR: &str = "/var/log/pods";

pub const CONTAINERD_SOCK: &str = "/run/containerd/containerd.sock";
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// Image archives baked into the node image, imported into containerd at boot.
pub const IMAGES_DIR: &str = "/opt/rind/images";

/// Ports inside the node.
pub const APISERVER_PORT: u16 = 6443;
pub const KUBELET_PORT: u16 = 10250;
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
/// etcd's plain-HTTP health and metrics port on loopback (kubeadm's).
pub const ETCD_METRICS_PORT: u16 = 2381;

/// The image every pod sandbox runs (a static busybox `sleep`), loaded at boot.
pub const PAUSE_IMAGE: &str = "docker.io/rind/pause:v1";
/// A small busybox image (`sh`, `sleep`, `wget`, …) for workloads, loaded at boot.
pub const BUSYBOX_IMAGE: &str = "docker.io/rind/busybox:v1";

/// The cluster DNS server's image: the libraries the rind binary links, run as
/// `rind dns` with the node's binary mounted in; loaded at boot.
pub const DNS_IMAGE: &str = "docker.io/rind/dns:v1";
/// The archive in `IMAGES_DIR` holding the images every node needs (pause, cluster DNS,
/// busybox), as the node image build puts it: one archive is one `ctr import` at boot,
/// where an archive per image cost a `ctr` process (and an import) each.
pub const SYSTEM_ARCHIVE: &str = "system.tar";
