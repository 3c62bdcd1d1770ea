//! Each pod's DNS configuration (the CRI `DNSConfig` the runtime writes to the pod's
//! `/etc/resolv.conf`), decided as upstream's kubelet decides it: `dnsPolicy` picks
//! the cluster DNS Service or the node's resolver, `dnsConfig` is merged on top, and
//! the result is cut to the resolver's limits with a warning naming what was dropped.

use super::cri::v1;
use k8s_openapi::api::core::v1::Pod;

/// The node's resolver configuration the kubelet hands to `Default` pods (upstream's
/// `--resolv-conf` default).
pub const NODE_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The cluster's DNS domain (kubeadm's `clusterDomain` default, as kind uses).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// At most this many nameservers reach a pod: glibc reads no more (upstream's
/// `MaxDNSNameservers`).
const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains (upstream's `MaxDNSSearchPaths`).
const MAX_SEARCH_PATHS: usize = 32;
/// At most this many characters on the search line (upstream's `MaxDNSSearchListChars`).
const MAX_SEARCH_CHARS: usize = 2048;

/// What the kubelet knows about DNS on its node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterDns {
    /// The `kube-dns` Service's IP: the tenth address of the service network.
    pub server: String,
    /// The node's resolver, for `Default` pods and host-network `ClusterFirst` pods.
    pub node: ResolvConf,
}

/// The parts of a resolv.conf that matter to a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text; the last `search` line wins, as in glibc, and search
    /// domains lose a trailing dot (upstream normalises them the same way).
    pub fn parse(text: &str) -> Self {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => conf.nameservers.extend(fields.next().map(str::to_string)),
                Some("search") => {
                    conf.searches = fields
                        .filter(|s| *s != ".")
                        .map(|s| s.trim_end_matches('.').to_string())
                        .collect();
                }
                Some("options") => conf.options.extend(fields.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// The configuration as a pod sees the same resolver: a loopback nameserver (Docker's
    /// embedded DNS at 127.0.0.11) is only reachable inside the node's own network
    /// namespace, so pods reach it at the node's IP, where the node's DNS relay
    /// (`rind node dns-relay`) passes queries on to it.
    pub fn reachable_from_pods(mut self, node_ip: &str) -> Self {
        let mut servers = Vec::new();
        for server in self.nameservers.drain(..) {
            let loopback = server
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
            let server = if loopback {
                node_ip.to_string()
            } else {
                server
            };
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
        self.nameservers = servers;
        self
    }

    /// The node's resolv.conf, or an empty one when it cannot be read (a pod then gets
    /// the runtime's copy of the node's file).
    pub fn read_node() -> Self {
        match std::fs::read_to_string(NODE_RESOLV_CONF) {
            Ok(text) => Self::parse(&text),
            Err(err) => {
                tracing::warn!("cannot read {NODE_RESOLV_CONF}: {err}");
                Self::default()
            }
        }
    }
}

/// The tenth address of the service network, which the `kube-dns` Service gets (as
/// kubeadm picks it).
pub fn cluster_dns_ip(service_subnet: &str) -> Option<std::net::IpAddr> {
    rind_runtime::config::service_ip(service_subnet, 10)
}

/// A pod's DNS configuration and the warnings (upstream's `DNSConfigForming` event
/// messages) about what did not fit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PodDns {
    /// None leaves the pod the runtime's copy of the node's resolv.conf.
    pub config: Option<v1::DnsConfig>,
    pub warnings: Vec<String>,
}

enum Source {
    Cluster,
    Node,
    Empty,
}

impl ClusterDns {
    /// The DNS configuration of `pod`.
    pub fn for_pod(&self, pod: &Pod) -> PodDns {
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let source = match spec.dns_policy.as_deref() {
            Some("None") => Source::Empty,
            Some("Default") => Source::Node,
            Some("ClusterFirstWithHostNet") => Source::Cluster,
            // ClusterFirst (the default): a host-network pod uses the node's resolver,
            // since the cluster DNS is reached through the pod network.
            _ if host_network => Source::Node,
            _ => Source::Cluster,
        };
        let mut conf = match source {
            Source::Empty => ResolvConf::default(),
            Source::Node => self.node.clone(),
            Source::Cluster => {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                let mut searches = vec![
                    format!("{namespace}.svc.{CLUSTER_DOMAIN}"),
                    format!("svc.{CLUSTER_DOMAIN}"),
                    CLUSTER_DOMAIN.to_string(),
                ];
                searches.extend(self.node.searches.iter().cloned());
                ResolvConf {
                    nameservers: vec![self.server.clone()],
                    searches,
                    options: vec!["ndots:5".to_string()],
                }
            }
        };
        if let Some(extra) = &spec.dns_config {
            append_unique(
                &mut conf.nameservers,
                extra.nameservers.iter().flatten().cloned(),
            );
            append_unique(&mut conf.searches, extra.searches.iter().flatten().cloned());
            for option in extra.options.iter().flatten() {
                let Some(name) = option.name.as_deref() else {
                    continue;
                };
                let text = match option.value.as_deref() {
                    Some(value) => format!("{name}:{value}"),
                    None => name.to_string(),
                };
                // A pod's option replaces the one of the same name it would inherit.
                match conf
                    .options
                    .iter_mut()
                    .find(|o| o.split(':').next() == Some(name))
                {
                    Some(existing) => *existing = text,
                    None => conf.options.push(text),
                }
            }
        }
        let mut warnings = Vec::new();
        if conf.nameservers.len() > MAX_NAMESERVERS {
            conf.nameservers.truncate(MAX_NAMESERVERS);
            warnings.push(format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                conf.nameservers.join(" ")
            ));
        }
        if fit_searches(&mut conf.searches) {
            warnings.push(format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                conf.searches.join(" ")
            ));
        }
        let config = match source {
            // With nothing decided and nothing added, the runtime's copy of the node's
            // file is exactly the node's resolver.
            Source::Node if conf == ResolvConf::default() => None,
            _ => Some(v1::DnsConfig {
                servers: conf.nameservers,
                searches: conf.searches,
                options: conf.options,
            }),
        };
        PodDns { config, warnings }
    }
}

fn append_unique(list: &mut Vec<String>, extra: impl Iterator<Item = String>) {
    for item in extra {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// Cuts the search list to the resolver's limits; true when something was dropped.
fn fit_searches(searches: &mut Vec<String>) -> bool {
    let mut dropped = false;
    if searches.len() > MAX_SEARCH_PATHS {
        searches.truncate(MAX_SEARCH_PATHS);
        dropped = true;
    }
    while searches.iter().map(String::len).sum::<usize>() + searches.len().saturating_sub(1)
        > MAX_SEARCH_CHARS
    {
        searches.pop();
        dropped = true;
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dns() -> ClusterDns {
        ClusterDns {
            server: "10.96.0.10".into(),
            node: ResolvConf::parse(
                "# Generated by Docker\nnameserver 172.18.0.1\nsearch example.test. .\noptions ndots:0 edns0\n",
            ),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "team"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn containers() -> serde_json::Value {
        json!([{"name": "c", "image": "busybox"}])
    }

    #[test]
    fn parses_resolv_conf() {
        let conf = dns().node;
        assert_eq!(conf.nameservers, ["172.18.0.1"]);
        assert_eq!(conf.searches, ["example.test"]);
        assert_eq!(conf.options, ["ndots:0", "edns0"]);
    }

    #[test]
    fn loopback_nameservers_become_the_node() {
        let conf = ResolvConf::parse("nameserver 127.0.0.11\nnameserver 10.0.0.2\n")
            .reachable_from_pods("172.18.0.3");
        assert_eq!(conf.nameservers, ["172.18.0.3", "10.0.0.2"]);
    }

    #[test]
    fn tenth_service_ip() {
        assert_eq!(
            cluster_dns_ip("10.96.0.0/16").unwrap().to_string(),
            "10.96.0.10"
        );
        assert_eq!(
            cluster_dns_ip("fd00:10:96::/112").unwrap().to_string(),
            "fd00:10:96::a"
        );
    }

    #[test]
    fn cluster_first() {
        let got = dns().for_pod(&pod(json!({"containers": containers()})));
        let config = got.config.unwrap();
        assert_eq!(config.servers, ["10.96.0.10"]);
        assert_eq!(
            config.searches,
            [
                "team.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "example.test"
            ]
        );
        assert_eq!(config.options, ["ndots:5"]);
        assert!(got.warnings.is_empty());
    }

    #[test]
    fn host_network_follows_the_policy() {
        let first = dns().for_pod(&pod(
            json!({"containers": containers(), "hostNetwork": true, "dnsPolicy": "ClusterFirst"}),
        ));
        assert_eq!(first.config.unwrap().servers, ["172.18.0.1"]);
        let with_host = dns().for_pod(&pod(json!({"containers": containers(), "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})));
        assert_eq!(with_host.config.unwrap().servers, ["10.96.0.10"]);
    }

    #[test]
    fn default_and_none() {
        let default = dns().for_pod(&pod(
            json!({"containers": containers(), "dnsPolicy": "Default"}),
        ));
        let config = default.config.unwrap();
        assert_eq!(config.servers, ["172.18.0.1"]);
        assert_eq!(config.searches, ["example.test"]);
        assert_eq!(config.options, ["ndots:0", "edns0"]);
        // An unreadable node file leaves the runtime's copy of it.
        let unread = ClusterDns {
            server: "10.96.0.10".into(),
            node: ResolvConf::default(),
        };
        let default_pod = pod(json!({"containers": containers(), "dnsPolicy": "Default"}));
        assert_eq!(unread.for_pod(&default_pod).config, None);
        let none = dns().for_pod(&pod(json!({
            "containers": containers(),
            "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": ["a.test"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]},
        })));
        let config = none.config.unwrap();
        assert_eq!(config.servers, ["1.2.3.4"]);
        assert_eq!(config.searches, ["a.test"]);
        assert_eq!(config.options, ["ndots:2", "edns0"]);
    }

    #[test]
    fn dns_config_merges_and_limits_apply() {
        let searches: Vec<String> = (0..40).map(|i| format!("d{i}.test")).collect();
        let got = dns().for_pod(&pod(json!({
            "containers": containers(),
            "dnsConfig": {
                "nameservers": ["10.96.0.10", "1.1.1.1", "2.2.2.2", "3.3.3.3"],
                "searches": searches,
                "options": [{"name": "ndots", "value": "1"}, {"name": "timeout", "value": "2"}],
            },
        })));
        let config = got.config.unwrap();
        assert_eq!(config.servers, ["10.96.0.10", "1.1.1.1", "2.2.2.2"]);
        assert_eq!(config.searches.len(), 32);
        assert_eq!(config.searches[4], "d0.test");
        assert_eq!(config.options, ["ndots:1", "timeout:2"]);
        assert_eq!(got.warnings.len(), 2);
        assert!(
            got.warnings[0].ends_with("the applied nameserver line is: 10.96.0.10 1.1.1.1 2.2.2.2")
        );
        assert!(got.warnings[1].starts_with("Search Line limits were exceeded"));
    }
}
