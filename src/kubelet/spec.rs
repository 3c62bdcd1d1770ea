//! Translates a pod spec into CRI sandbox and container configurations.

use super::cri::{self, v1};
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::HashMap;

/// Identity of a pod as the kubelet tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodKey {
    pub fn of(pod: &Pod) -> Self {
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }

    /// The pod's log directory, laid out as the real kubelet does.
    pub fn log_dir(&self) -> String {
        format!(
            "{}/{}_{}_{}",
            crate::node::paths::POD_LOG_DIR,
            self.namespace,
            self.name,
            self.uid
        )
    }

    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (cri::LABEL_POD_NAME.to_string(), self.name.clone()),
            (cri::LABEL_POD_NAMESPACE.to_string(), self.namespace.clone()),
            (cri::LABEL_POD_UID.to_string(), self.uid.clone()),
        ])
    }
}

pub fn sandbox_config(pod: &Pod, attempt: u32) -> v1::PodSandboxConfig {
    let key = PodKey::of(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(key.labels());
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.clone().unwrap_or_default())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|hp| *hp > 0)?;
            let protocol = match p.protocol.as_deref() {
                Some("UDP") => v1::Protocol::Udp,
                Some("SCTP") => v1::Protocol::Sctp,
                _ => v1::Protocol::Tcp,
            };
            Some(v1::PortMapping {
                protocol: protocol as i32,
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.unwrap_or_default(),
            })
        })
        .collect();
    let host_network = spec.host_network.unwrap_or(false);
    let namespaces = v1::NamespaceOption {
        network: if host_network {
            v1::NamespaceMode::Node
        } else {
            v1::NamespaceMode::Pod
        } as i32,
        // Kubernetes pods do not share a PID namespace unless asked to.
        pid: if spec.share_process_namespace.unwrap_or(false) {
            v1::NamespaceMode::Pod
        } else {
            v1::NamespaceMode::Container
        } as i32,
        ipc: v1::NamespaceMode::Pod as i32,
        target_id: String::new(),
        userns_options: None,
    };
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: key.name.clone(),
            uid: key.uid.clone(),
            namespace: key.namespace.clone(),
            attempt,
        }),
        hostname: if host_network {
            String::new()
        } else {
            spec.hostname.clone().unwrap_or_else(|| key.name.clone())
        },
        log_directory: key.log_dir(),
        // No cluster DNS yet: the runtime then gives the pod the node's resolv.conf.
        dns_config: None,
        port_mappings,
        labels,
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces),
                ..v1::LinuxSandboxSecurityContext::default()
            }),
            sysctls: HashMap::new(),
            overhead: None,
            resources: None,
        }),
    }
}

/// What a container's environment may refer to through `valueFrom.fieldRef`.
pub struct FieldValues<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub node_ip: &'a str,
}

impl FieldValues<'_> {
    fn get(&self, path: &str) -> Option<String> {
        let meta = &self.pod.metadata;
        let spec = self.pod.spec.as_ref();
        match path {
            "metadata.name" => meta.name.clone(),
            "metadata.namespace" => meta.namespace.clone(),
            "metadata.uid" => meta.uid.clone(),
            "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
            "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
            "status.podIP" => Some(self.pod_ip.to_string()),
            "status.hostIP" => Some(self.node_ip.to_string()),
            _ => {
                let (map, key) = path.split_once("['")?;
                let key = key.strip_suffix("']")?;
                let source = match map {
                    "metadata.labels" => meta.labels.as_ref(),
                    "metadata.annotations" => meta.annotations.as_ref(),
                    _ => None,
                }?;
                source.get(key).cloned()
            }
        }
    }
}

/// Parses a Kubernetes quantity (`500m`, `128Mi`, `1G`, `2`) into a number of units.
pub fn parse_quantity(q: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let q = q.trim();
    for (suffix, factor) in SUFFIXES {
        if let Some(num) = q.strip_suffix(suffix) {
            return num.parse::<f64>().ok().map(|n| n * factor);
        }
    }
    q.parse().ok()
}

fn linux_resources(container: &Container) -> v1::LinuxContainerResources {
    let limits = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let mut res = v1::LinuxContainerResources::default();
    if let Some(cpu) = limits.get("cpu").and_then(|q| parse_quantity(&q.0)) {
        // CFS quota over the default 100 ms period, as the kubelet computes it.
        res.cpu_period = 100_000;
        res.cpu_quota = (cpu * 100_000.0).round() as i64;
    }
    if let Some(mem) = limits.get("memory").and_then(|q| parse_quantity(&q.0)) {
        res.memory_limit_in_bytes = mem as i64;
    }
    res
}

pub fn container_config(
    pod: &Pod,
    container: &Container,
    attempt: u32,
    fields: &FieldValues<'_>,
) -> v1::ContainerConfig {
    let key = PodKey::of(pod);
    let mut labels = key.labels();
    labels.insert(
        cri::LABEL_CONTAINER_NAME.to_string(),
        container.name.clone(),
    );
    let envs = container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|var| {
            let value = match (var.value, var.value_from) {
                (Some(v), _) => v,
                (None, Some(from)) => from
                    .field_ref
                    .and_then(|f| fields.get(&f.field_path))
                    .unwrap_or_default(),
                (None, None) => String::new(),
            };
            v1::KeyValue {
                key: var.name,
                value,
            }
        })
        .collect();
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: container.name.clone(),
            attempt,
        }),
        image: Some(v1::ImageSpec {
            image: container.image.clone().unwrap_or_default(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..v1::ImageSpec::default()
        }),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs,
        labels,
        log_path: format!("{}/{}.log", container.name, attempt),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(linux_resources(container)),
            security_context: Some(v1::LinuxContainerSecurityContext {
                privileged: container
                    .security_context
                    .as_ref()
                    .and_then(|s| s.privileged)
                    .unwrap_or(false),
                ..v1::LinuxContainerSecurityContext::default()
            }),
        }),
        ..v1::ContainerConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("busybox".into()),
                    ports: Some(vec![ContainerPort {
                        container_port: 80,
                        host_port: Some(8080),
                        ..ContainerPort::default()
                    }]),
                    env: Some(vec![
                        EnvVar {
                            name: "A".into(),
                            value: Some("1".into()),
                            value_from: None,
                        },
                        EnvVar {
                            name: "POD".into(),
                            value: None,
                            value_from: Some(EnvVarSource {
                                field_ref: Some(ObjectFieldSelector {
                                    field_path: "metadata.name".into(),
                                    api_version: None,
                                }),
                                ..EnvVarSource::default()
                            }),
                        },
                    ]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn sandbox_has_identity_logs_and_ports() {
        let cfg = sandbox_config(&pod(), 1);
        let meta = cfg.metadata.unwrap();
        assert_eq!((meta.name.as_str(), meta.attempt), ("web", 1));
        assert_eq!(cfg.log_directory, "/var/log/pods/default_web_u1");
        assert_eq!(cfg.port_mappings[0].host_port, 8080);
        assert_eq!(cfg.labels[cri::LABEL_POD_UID], "u1");
        assert_eq!(cfg.hostname, "web");
    }

    #[test]
    fn container_env_and_log_path() {
        let p = pod();
        let fields = FieldValues {
            pod: &p,
            pod_ip: "10.244.0.9",
            node_ip: "172.18.0.2",
        };
        let spec = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&p, spec, 2, &fields);
        assert_eq!(cfg.log_path, "c/2.log");
        assert_eq!(cfg.envs[1].value, "web");
        assert_eq!(cfg.labels[cri::LABEL_CONTAINER_NAME], "c");
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("128Mi"), Some(134217728.0));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("x"), None);
    }
}
