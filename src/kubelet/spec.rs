//! Translates a pod spec into CRI sandbox and container configurations.

use super::cri::{self, v1};
use k8s_openapi::api::core::v1::{Container, Pod};
use rind_api::quantity::Quantity;
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
            rind_runtime::paths::POD_LOG_DIR,
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

/// The namespaces of the pod's sandbox and of each of its containers. The runtime
/// reads a container's own options (absent ones mean "the pod's"), so both must say
/// it: Kubernetes containers do not share a PID namespace unless asked to.
fn namespace_options(pod: &Pod) -> v1::NamespaceOption {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let host_pid = spec.and_then(|s| s.host_pid).unwrap_or(false);
    let host_ipc = spec.and_then(|s| s.host_ipc).unwrap_or(false);
    let shared_pid = spec
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false);
    v1::NamespaceOption {
        network: if host_network {
            v1::NamespaceMode::Node
        } else {
            v1::NamespaceMode::Pod
        } as i32,
        pid: if host_pid {
            v1::NamespaceMode::Node
        } else if shared_pid {
            v1::NamespaceMode::Pod
        } else {
            v1::NamespaceMode::Container
        } as i32,
        ipc: if host_ipc {
            v1::NamespaceMode::Node
        } else {
            v1::NamespaceMode::Pod
        } as i32,
        target_id: String::new(),
        userns_options: None,
    }
}

/// The CRI sandbox configuration of `pod`; `dns_config` is its resolver
/// configuration (`dns::ClusterDns::for_pod`), `cgroup_parent` its pod cgroup
/// (`cgroups::pod_cgroup`; empty for the runtime's default), which the runtime also
/// puts the pod's containers under.
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    dns_config: Option<v1::DnsConfig>,
    cgroup_parent: String,
) -> v1::PodSandboxConfig {
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
    let namespaces = namespace_options(pod);
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
        dns_config,
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
            cgroup_parent,
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces),
                // The runtime must know up front whether the sandbox will hold
                // privileged containers.
                privileged: spec.containers.iter().any(|c| {
                    c.security_context
                        .as_ref()
                        .and_then(|s| s.privileged)
                        .unwrap_or(false)
                }),
                ..v1::LinuxSandboxSecurityContext::default()
            }),
            sysctls: spec
                .security_context
                .as_ref()
                .and_then(|sc| sc.sysctls.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.name, s.value))
                .collect(),
            overhead: None,
            resources: None,
        }),
    }
}

/// What a container's environment is built from: the pod's fields for
/// `valueFrom.fieldRef`, and the variables every container gets first.
pub struct FieldValues<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub node_ip: &'a str,
    /// `KUBERNETES_SERVICE_HOST` and friends; the container's own env may override them.
    pub service_env: &'a [(String, String)],
}

/// The variables that point in-cluster clients at the API server's Service, as the
/// kubelet sets them for the `kubernetes` Service in `default` (first service IP, 443).
pub fn kubernetes_service_env(service_subnet: &str) -> Vec<(String, String)> {
    let Some(ip) = first_service_ip(service_subnet) else {
        return Vec::new();
    };
    let host = ip.to_string();
    let url_host = if ip.is_ipv6() {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let url = format!("tcp://{url_host}:443");
    [
        ("KUBERNETES_SERVICE_HOST", host.clone()),
        ("KUBERNETES_SERVICE_PORT", "443".to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443".to_string()),
        ("KUBERNETES_PORT", url.clone()),
        ("KUBERNETES_PORT_443_TCP", url),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp".to_string()),
        ("KUBERNETES_PORT_443_TCP_PORT", "443".to_string()),
        ("KUBERNETES_PORT_443_TCP_ADDR", host),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The first address of the service network, which the API server's Service gets.
pub fn first_service_ip(subnet: &str) -> Option<std::net::IpAddr> {
    let (base, _) = subnet.split_once('/')?;
    match base.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            Some(std::net::Ipv4Addr::from(u32::from(v4).checked_add(1)?).into())
        }
        std::net::IpAddr::V6(v6) => {
            Some(std::net::Ipv6Addr::from(u128::from(v6).checked_add(1)?).into())
        }
    }
}

/// Expands `$(VAR)` references as Kubernetes does in env values, command and args:
/// known variables are replaced, unknown references stay as written, `$$` is a `$`.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

impl FieldValues<'_> {
    /// The value of a downward API field path, None for a path upstream does not
    /// offer. A label or annotation that is absent reads as empty, as upstream's.
    pub fn get(&self, path: &str) -> Option<String> {
        let meta = &self.pod.metadata;
        let spec = self.pod.spec.as_ref();
        match path {
            "metadata.name" => meta.name.clone(),
            "metadata.namespace" => meta.namespace.clone(),
            "metadata.uid" => meta.uid.clone(),
            "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
            "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
            // One address family per pod and node here, so the lists hold one each.
            "status.podIP" | "status.podIPs" => Some(self.pod_ip.to_string()),
            "status.hostIP" | "status.hostIPs" => Some(self.node_ip.to_string()),
            _ => {
                let (map, key) = path.split_once("['")?;
                let key = key.strip_suffix("']")?;
                let source = match map {
                    "metadata.labels" => meta.labels.as_ref(),
                    "metadata.annotations" => meta.annotations.as_ref(),
                    _ => return None,
                };
                Some(source.and_then(|m| m.get(key).cloned()).unwrap_or_default())
            }
        }
    }
}

/// The kernel's floor for cpu.shares.
const MIN_CPU_SHARES: i64 = 2;

fn linux_resources(container: &Container) -> v1::LinuxContainerResources {
    let limits = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    let mut res = v1::LinuxContainerResources::default();
    let limit = |name: &str| limits.get(name).and_then(|q| Quantity::parse(&q.0));
    // The CPU request is the container's share under contention: 1024 shares per
    // core (cgroup v2's cpu.weight is derived from it by the runtime), at least 2,
    // which is also what a container without a request gets, as upstream's.
    let cpu_request = requests
        .get("cpu")
        .and_then(|q| Quantity::parse(&q.0))
        .or_else(|| limit("cpu"));
    res.cpu_shares = cpu_request
        .map(|q| q.milli_value().saturating_mul(1024) / 1000)
        .unwrap_or(0)
        .max(MIN_CPU_SHARES);
    if let Some(cpu) = limit("cpu") {
        // CFS quota over the default 100 ms period, as the kubelet computes it.
        res.cpu_period = 100_000;
        res.cpu_quota = cpu.milli_value().saturating_mul(100);
    }
    if let Some(mem) = limit("memory") {
        res.memory_limit_in_bytes = mem.value();
    }
    res
}

/// Where `Localhost` seccomp profiles live on the node, as upstream's kubelet root.
const SECCOMP_ROOT: &str = "/var/lib/kubelet/seccomp";

/// The seccomp profile the runtime applies; none asked for is `Unconfined`, the
/// kubelet's default without the SeccompDefault option.
fn seccomp(profile: Option<&k8s_openapi::api::core::v1::SeccompProfile>) -> v1::SecurityProfile {
    use v1::security_profile::ProfileType;
    match profile.map(|p| (p.type_.as_str(), p.localhost_profile.as_deref())) {
        Some(("RuntimeDefault", _)) => v1::SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        Some(("Localhost", Some(path))) => v1::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: format!("{SECCOMP_ROOT}/{path}"),
        },
        _ => v1::SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
    }
}

/// The fields of the pod that rind's kubelet does not implement, named by their
/// path, with the value that would need them. A pod using one is refused at start
/// rather than run differently from what it asks for.
pub fn unsupported_fields(pod: &Pod) -> Vec<String> {
    let mut out = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    if spec.host_users == Some(false) {
        out.push("spec.hostUsers: false (user namespaces)".to_string());
    }
    if spec.resources.is_some() {
        out.push("spec.resources (pod-level resources)".to_string());
    }
    if spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        out.push("spec.resourceClaims".to_string());
    }
    if spec.host_aliases.as_ref().is_some_and(|h| !h.is_empty()) {
        out.push("spec.hostAliases".to_string());
    }
    if spec.set_hostname_as_fqdn == Some(true) {
        out.push("spec.setHostnameAsFQDN: true".to_string());
    }
    if spec.os.as_ref().is_some_and(|os| os.name != "linux") {
        out.push("spec.os.name: only linux".to_string());
    }
    if let Some(sc) = &spec.security_context {
        if sc.se_linux_options.is_some() {
            out.push("spec.securityContext.seLinuxOptions".to_string());
        }
        if sc.windows_options.is_some() {
            out.push("spec.securityContext.windowsOptions".to_string());
        }
        if sc
            .app_armor_profile
            .as_ref()
            .is_some_and(|a| a.type_ == "Localhost")
        {
            out.push("spec.securityContext.appArmorProfile: Localhost".to_string());
        }
        if sc.supplemental_groups_policy.as_deref() == Some("Strict") {
            out.push("spec.securityContext.supplementalGroupsPolicy: Strict".to_string());
        }
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("initContainers", c))
        .chain(spec.containers.iter().map(|c| ("containers", c)));
    for (list, c) in containers {
        let at = format!("spec.{list}[{}]", c.name);
        if c.volume_devices.as_ref().is_some_and(|d| !d.is_empty()) {
            out.push(format!("{at}.volumeDevices"));
        }
        if c.lifecycle
            .as_ref()
            .is_some_and(|l| l.stop_signal.is_some())
        {
            out.push(format!("{at}.lifecycle.stopSignal"));
        }
        if let Some(sc) = &c.security_context {
            if sc.se_linux_options.is_some() {
                out.push(format!("{at}.securityContext.seLinuxOptions"));
            }
            if sc.windows_options.is_some() {
                out.push(format!("{at}.securityContext.windowsOptions"));
            }
            if sc.proc_mount.as_deref() == Some("Unmasked") {
                out.push(format!("{at}.securityContext.procMount: Unmasked"));
            }
            if sc
                .app_armor_profile
                .as_ref()
                .is_some_and(|a| a.type_ == "Localhost")
            {
                out.push(format!("{at}.securityContext.appArmorProfile: Localhost"));
            }
        }
    }
    out
}

/// The container's security settings: the container's own over the pod's.
fn security_context(pod: &Pod, container: &Container) -> v1::LinuxContainerSecurityContext {
    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    v1::LinuxContainerSecurityContext {
        capabilities: Some(v1::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged: sc.privileged.unwrap_or(false),
        run_as_user: sc
            .run_as_user
            .or(pod_sc.run_as_user)
            .map(|value| v1::Int64Value { value }),
        run_as_group: sc
            .run_as_group
            .or(pod_sc.run_as_group)
            .map(|value| v1::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        // fsGroup joins the supplemental groups, so the volumes it owns are writable.
        supplemental_groups: pod_sc
            .supplemental_groups
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(pod_sc.fs_group)
            .collect(),
        seccomp: Some(seccomp(
            sc.seccomp_profile
                .as_ref()
                .or(pod_sc.seccomp_profile.as_ref()),
        )),
        // Kubernetes allows privilege escalation unless told otherwise.
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        namespace_options: Some(namespace_options(pod)),
        ..v1::LinuxContainerSecurityContext::default()
    }
}

/// The runtime's configuration of a container whose environment (`env`, in order,
/// from `super::env::resolve`) is already known; command and args may refer to it.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    attempt: u32,
    env: &[(String, String)],
) -> v1::ContainerConfig {
    let key = PodKey::of(pod);
    let mut labels = key.labels();
    labels.insert(
        cri::LABEL_CONTAINER_NAME.to_string(),
        container.name.clone(),
    );
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let expand_all = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter().flatten().map(|s| expand(s, &vars)).collect()
    };
    let command = expand_all(&container.command);
    let args = expand_all(&container.args);
    let envs = env
        .iter()
        .map(|(key, value)| v1::KeyValue {
            key: key.clone(),
            value: value.clone(),
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
        command,
        args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs,
        labels,
        log_path: format!("{}/{}.log", container.name, attempt),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(linux_resources(container)),
            security_context: Some(security_context(pod, container)),
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

    struct NoSources;

    #[async_trait::async_trait]
    impl crate::env::Sources for NoSources {
        async fn config_map(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Option<std::collections::BTreeMap<String, String>>, String> {
            Ok(None)
        }
        async fn secret(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Option<std::collections::BTreeMap<String, String>>, String> {
            Ok(None)
        }
    }

    #[test]
    fn sandbox_has_identity_logs_and_ports() {
        let cfg = sandbox_config(&pod(), 1, None, String::new());
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
        let service_env = kubernetes_service_env("10.96.0.0/16");
        let fields = FieldValues {
            pod: &p,
            pod_ip: "10.244.0.9",
            node_ip: "172.18.0.2",
            service_env: &service_env,
        };
        let mut spec = p.spec.as_ref().unwrap().containers[0].clone();
        spec.args = Some(vec!["echo $(POD) $(MISSING) $$(POD)".into()]);
        spec.env.as_mut().unwrap().push(EnvVar {
            name: "URL".into(),
            value: Some(
                "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)/$(A)".into(),
            ),
            value_from: None,
        });
        let node = crate::env::NodeAllocatable {
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
        };
        let env = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(crate::env::resolve(&NoSources, &spec, &fields, node))
            .unwrap();
        let cfg = container_config(&p, &spec, 2, &env);
        assert_eq!(cfg.log_path, "c/2.log");
        let env: HashMap<_, _> = cfg
            .envs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect();
        assert_eq!(env["POD"], "web");
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(env["URL"], "https://10.96.0.1:443/1");
        assert_eq!(cfg.args, ["echo web $(MISSING) $(POD)"]);
        assert_eq!(cfg.labels[cri::LABEL_CONTAINER_NAME], "c");
    }

    #[test]
    fn security_context_container_over_pod() {
        use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, SecurityContext};
        let mut p = pod();
        let spec = p.spec.as_mut().unwrap();
        spec.security_context = Some(PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            ..PodSecurityContext::default()
        });
        spec.containers[0].security_context = Some(SecurityContext {
            run_as_user: Some(2000),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..SecurityContext::default()
        });
        let sc = security_context(&p, &p.spec.as_ref().unwrap().containers[0]);
        assert_eq!(sc.run_as_user.map(|v| v.value), Some(2000));
        assert_eq!(sc.run_as_group.map(|v| v.value), Some(3000));
        assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
        assert_eq!(sc.capabilities.unwrap().drop_capabilities, ["ALL"]);
        // Each container in its own PID namespace unless the pod shares one.
        let pid = |p: &Pod| {
            security_context(p, &p.spec.as_ref().unwrap().containers[0])
                .namespace_options
                .unwrap()
                .pid
        };
        assert_eq!(pid(&p), v1::NamespaceMode::Container as i32);
        p.spec.as_mut().unwrap().share_process_namespace = Some(true);
        assert_eq!(pid(&p), v1::NamespaceMode::Pod as i32);
    }

    #[test]
    fn host_namespaces_sysctls_seccomp_and_refused_fields() {
        let mut p = pod();
        let spec = p.spec.as_mut().unwrap();
        spec.host_pid = Some(true);
        spec.host_ipc = Some(true);
        spec.security_context = Some(
            serde_json::from_value(serde_json::json!({
                "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}],
                "seccompProfile": {"type": "RuntimeDefault"},
                "fsGroup": 2000
            }))
            .unwrap(),
        );
        let ns = namespace_options(&p);
        assert_eq!(ns.pid, v1::NamespaceMode::Node as i32);
        assert_eq!(ns.ipc, v1::NamespaceMode::Node as i32);
        let cfg = sandbox_config(&p, 0, None, String::new());
        assert_eq!(
            cfg.linux.unwrap().sysctls["net.ipv4.ip_local_port_range"],
            "1024 65000"
        );
        let sc = security_context(&p, &p.spec.as_ref().unwrap().containers[0]);
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            v1::security_profile::ProfileType::RuntimeDefault as i32
        );
        assert_eq!(sc.supplemental_groups, [2000]);
        assert!(unsupported_fields(&p).is_empty());
        let unconfined = security_context(&pod(), &pod().spec.unwrap().containers[0]);
        assert_eq!(
            unconfined.seccomp.unwrap().profile_type,
            v1::security_profile::ProfileType::Unconfined as i32
        );
        p.spec.as_mut().unwrap().host_users = Some(false);
        p.spec.as_mut().unwrap().containers[0].volume_devices = Some(vec![
            serde_json::from_value(serde_json::json!({"name": "d", "devicePath": "/dev/x"}))
                .unwrap(),
        ]);
        assert_eq!(
            unsupported_fields(&p),
            [
                "spec.hostUsers: false (user namespaces)",
                "spec.containers[c].volumeDevices"
            ]
        );
    }

    #[test]
    fn service_ip_and_expansion() {
        assert_eq!(
            first_service_ip("10.96.0.0/16").unwrap().to_string(),
            "10.96.0.1"
        );
        assert_eq!(
            first_service_ip("fd00:10:96::/112").unwrap().to_string(),
            "fd00:10:96::1"
        );
        assert_eq!(first_service_ip("nonsense"), None);
        let vars = HashMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)-$$-$-$(", &vars), "x-$-$-$(");
        let env = kubernetes_service_env("fd00::/108");
        assert!(env.contains(&(
            "KUBERNETES_PORT".to_string(),
            "tcp://[fd00::1]:443".to_string()
        )));
    }

    #[test]
    fn limits_become_cgroup_settings() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}
        }))
        .unwrap();
        let res = linux_resources(&container);
        assert_eq!((res.cpu_period, res.cpu_quota), (100_000, 50_000));
        // No request: the limit stands in for it, as the API server defaults it.
        assert_eq!(res.cpu_shares, 512);
        let requested: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"requests": {"cpu": "250m"}}
        }))
        .unwrap();
        assert_eq!(linux_resources(&requested).cpu_shares, 256);
        assert_eq!(linux_resources(&Container::default()).cpu_shares, 2);
        assert_eq!(res.memory_limit_in_bytes, 134_217_728);
        let big: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"memory": "1P"}}
        }))
        .unwrap();
        assert_eq!(
            linux_resources(&big).memory_limit_in_bytes,
            1_000_000_000_000_000
        );
    }
}
