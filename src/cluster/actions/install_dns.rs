//! The cluster DNS addon, created once the API answers, as kubeadm's CoreDNS addon
//! phase creates it in a kind cluster: ServiceAccount `coredns`, ClusterRole and
//! ClusterRoleBinding `system:coredns`, Service `kube-dns` at the tenth address of the
//! service network, and Deployment `coredns` (two replicas, pods labelled
//! `k8s-app=kube-dns`) running `rind dns`: the DNS image every node loads at boot holds
//! its libraries, and the pods mount the node's own rind binary.
//! Objects that exist already are left as they are (a user's edits survive restarts).
//! Created as soon as the API answers, before workers join (as kubeadm's init installs
//! CoreDNS before any `kubeadm join`), so the DNS pods start while workers register;
//! `wait_for_default_account` runs at the end of `create`.

use super::CreateContext;
use crate::client;
use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::Api;
use rind_runtime::paths;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const NAMESPACE: &str = "kube-system";
/// Bounds a controller-manager that never comes up.
const DEFAULT_ACCOUNT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Also grants the service load balancer its roles, beside the DNS objects' writes.
pub async fn execute(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    ctx.ui
        .step(
            "Installing cluster DNS and the service load balancer's roles 🔌",
            async {
                futures::future::try_join(install(ctx), super::start_service_lb::grant(ctx))
                    .await
                    .map(drop)
            },
        )
        .await
}

async fn install(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    let cp = ctx.plan.control_plane();
    let subnet = &cp.config.service_subnet;
    let dns_ip = rind_runtime::config::service_ip(subnet, 10).with_context(|| {
        format!("the service network {subnet} has no tenth address for the cluster DNS")
    })?;
    let config = ctx.admin_config().await?;
    let client = client::client_for(&config).await?;
    // Side by side, but the Deployment after its pods' ServiceAccount: a pod naming an
    // account that does not exist yet is refused, and the ReplicaSet would back off.
    let account_then_deployment = async {
        create(
            Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE),
            service_account(),
        )
        .await?;
        create(
            Api::<Deployment>::namespaced(client.clone(), NAMESPACE),
            deployment(),
        )
        .await
    };
    futures::future::try_join4(
        account_then_deployment,
        create(Api::<ClusterRole>::all(client.clone()), cluster_role()),
        create(
            Api::<ClusterRoleBinding>::all(client.clone()),
            cluster_role_binding(),
        ),
        create(
            Api::<Service>::namespaced(client.clone(), NAMESPACE),
            service(&dns_ip.to_string()),
        ),
    )
    .await?;
    Ok(())
}

/// Waits for the `default` ServiceAccount (see `wait_for_default_account`), as the
/// last thing `create` does, shown at `-v 1`.
pub async fn wait_for_default_account_of(ctx: &CreateContext<'_>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let config = ctx.admin_config().await?;
    wait_for_default_account(client::client_for(&config).await?).await?;
    ctx.ui.detail(&format!(
        "ServiceAccount default/default there after {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A pod needs its namespace's `default` ServiceAccount, which the controller-manager
/// creates a moment after it starts; a kind cluster has it long before `create`
/// returns, so `kubectl run` right after `rind create cluster` must find it too.
async fn wait_for_default_account(client: kube::Client) -> anyhow::Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client, "default");
    let until = std::time::Instant::now() + DEFAULT_ACCOUNT_DEADLINE;
    loop {
        let last = match accounts.get_opt("default").await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => "not created yet".to_string(),
            Err(err) => err.to_string(),
        };
        if std::time::Instant::now() >= until {
            anyhow::bail!(
                "the controller-manager did not create ServiceAccount default/default within {DEFAULT_ACCOUNT_DEADLINE:?} ({last})"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Creates `object` unless it exists (see `client::create_unless_exists`).
async fn create<K>(api: Api<K>, object: Value) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + DeserializeOwned + serde::Serialize,
{
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let typed: K = serde_json::from_value(object)
        .with_context(|| format!("the cluster DNS object {name} is malformed"))?;
    client::create_unless_exists(&api, &typed)
        .await
        .with_context(|| format!("creating the cluster DNS object {name}"))
}

fn labels() -> Value {
    json!({"k8s-app": "kube-dns"})
}

fn service_account() -> Value {
    json!({"metadata": {"name": "coredns", "namespace": NAMESPACE}})
}

/// What the DNS server reads, as upstream's `system:coredns` grants it.
fn cluster_role() -> Value {
    json!({
        "metadata": {
            "name": "system:coredns",
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        },
        "rules": [
            {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    })
}

fn cluster_role_binding() -> Value {
    json!({
        "metadata": {
            "name": "system:coredns",
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
        "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE}],
    })
}

/// `kube-dns`, with upstream's port names (`dns`, `dns-tcp`, `metrics`).
fn service(cluster_ip: &str) -> Value {
    json!({
        "metadata": {
            "name": "kube-dns",
            "namespace": NAMESPACE,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "selector": labels(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    })
}

/// The DNS pods' volume holding the node's rind binary.
const RIND_BINARY_VOLUME: &str = "rind-binary";

/// Where the rind binary is, in a node and in a DNS pod.
fn rind_binary() -> String {
    format!("/{}", crate::image::node::RIND_IN_NODE)
}

/// `coredns`, shaped as kubeadm's: two replicas spread over nodes, tolerating the
/// control plane, the node's resolver for names outside the cluster (dnsPolicy
/// Default), probes on CoreDNS's health (8080) and readiness (8181) ports.
fn deployment() -> Value {
    json!({
        "metadata": {"name": "coredns", "namespace": NAMESPACE, "labels": labels()},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels()},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "coredns",
                    "dnsPolicy": "Default",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }]}},
                    "containers": [{
                        "name": "coredns",
                        "image": paths::DNS_IMAGE.trim_start_matches("docker.io/"),
                        // Loaded into every node at boot; there is no registry to pull from.
                        "imagePullPolicy": "IfNotPresent",
                        "resources": {
                            "limits": {"memory": "170Mi"},
                            "requests": {"cpu": "100m", "memory": "70Mi"},
                        },
                        "ports": [
                            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                        ],
                        "livenessProbe": {
                            "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                            "initialDelaySeconds": 60,
                            "timeoutSeconds": 5,
                            "successThreshold": 1,
                            "failureThreshold": 5,
                        },
                        // kubeadm's probe, probed every second instead of every ten: the
                        // first probe comes as the container starts, before the server
                        // has read the Services, and fails; at the default period the
                        // cluster then has no DNS for ten more seconds.
                        "readinessProbe": {
                            "httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                            "periodSeconds": 1,
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                            "readOnlyRootFilesystem": true,
                        },
                        "volumeMounts": [{
                            "name": RIND_BINARY_VOLUME,
                            "mountPath": rind_binary(),
                            "readOnly": true,
                        }],
                    }],
                    // The DNS image holds only the libraries; the program is the node's
                    // own rind binary (see `image::node::dns_image`), the same build
                    // as every other component of the node.
                    "volumes": [{
                        "name": RIND_BINARY_VOLUME,
                        "hostPath": {"path": rind_binary(), "type": "File"},
                    }],
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_decode_as_their_kinds() {
        let _: ServiceAccount = serde_json::from_value(service_account()).unwrap();
        let _: ClusterRole = serde_json::from_value(cluster_role()).unwrap();
        let _: ClusterRoleBinding = serde_json::from_value(cluster_role_binding()).unwrap();
        let svc: Service = serde_json::from_value(service("10.96.0.10")).unwrap();
        let ports: Vec<_> = svc
            .spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap()))
            .collect();
        assert_eq!(
            ports,
            [
                ("dns".to_string(), 53, "UDP".to_string()),
                ("dns-tcp".to_string(), 53, "TCP".to_string()),
                ("metrics".to_string(), 9153, "TCP".to_string())
            ]
        );
        let deploy: Deployment = serde_json::from_value(deployment()).unwrap();
        let spec = deploy.spec;
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.clone().unwrap_or_default();
        assert_eq!(pod.containers[0].image.as_deref(), Some("rind/dns:v1"));
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
        let volume = &pod.volumes.as_ref().unwrap()[0];
        let host = volume.host_path.as_ref().unwrap();
        assert_eq!(
            (host.path.as_str(), host.type_.as_deref()),
            ("/usr/local/bin/rind", Some("File"))
        );
        let mount = &pod.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (
                mount.name.as_str(),
                mount.mount_path.as_str(),
                mount.read_only
            ),
            ("rind-binary", "/usr/local/bin/rind", Some(true))
        );
    }
}
