//! A container's environment as upstream's kubelet builds it: `envFrom` sources in
//! order (with their prefixes), then `env` entries, each value expanded against the
//! variables before it; `valueFrom` reads the pod's fields, the container's
//! resources, and ConfigMap and Secret keys. A required reference that cannot be
//! resolved is an error worded as upstream's, reported as
//! `CreateContainerConfigError`.

use super::spec::{FieldValues, expand};
use k8s_openapi::api::core::v1::{ConfigMap, Container, ResourceFieldSelector, Secret};
use kube::Api;
use rind_api::quantity::Quantity;
use std::collections::{BTreeMap, HashMap};

/// Where ConfigMaps and Secrets come from (the API server, or a test's map).
#[async_trait::async_trait]
pub trait Sources: Send + Sync {
    /// The ConfigMap's data, None when it does not exist.
    async fn config_map(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String>;
    /// The Secret's data as text, None when it does not exist.
    async fn secret(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String>;
}

/// [`Sources`] over the API server.
pub struct ApiSources(pub kube::Client);

#[async_trait::async_trait]
impl Sources for ApiSources {
    async fn config_map(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.0.clone(), ns);
        let found = api.get_opt(name).await.map_err(|e| e.to_string())?;
        Ok(found.map(|cm| cm.data.unwrap_or_default()))
    }

    async fn secret(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        let api: Api<Secret> = Api::namespaced(self.0.clone(), ns);
        let found = api.get_opt(name).await.map_err(|e| e.to_string())?;
        Ok(found.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect()
        }))
    }
}

/// What the node offers, standing in for limits a container leaves out when a
/// `resourceFieldRef` asks for them (upstream uses the node's allocatable).
#[derive(Clone, Copy, Debug)]
pub struct NodeAllocatable {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

/// Reads ConfigMaps and Secrets once per container start.
struct Cache<'a> {
    sources: &'a dyn Sources,
    ns: &'a str,
    config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    secrets: HashMap<String, Option<BTreeMap<String, String>>>,
}

impl Cache<'_> {
    /// The object's data; `Ok(None)` when it is missing and optional, upstream's
    /// NotFound message when it is missing and required.
    async fn get(
        &mut self,
        secret: bool,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        let map = if secret {
            &mut self.secrets
        } else {
            &mut self.config_maps
        };
        if !map.contains_key(name) {
            let found = if secret {
                self.sources.secret(self.ns, name).await?
            } else {
                self.sources.config_map(self.ns, name).await?
            };
            map.insert(name.to_string(), found);
        }
        match map.get(name).cloned().flatten() {
            Some(data) => Ok(Some(data)),
            None if optional => Ok(None),
            // The kubelet's object managers name the resource in the singular.
            None => Err(format!(
                "{} \"{name}\" not found",
                if secret { "secret" } else { "configmap" }
            )),
        }
    }
}

/// A container resource as `resourceFieldRef` reports it: divided by the divisor
/// and rounded up, limits defaulting to the node's allocatable.
pub fn resource_value(
    selector: &ResourceFieldSelector,
    container: &Container,
    node: NodeAllocatable,
) -> Result<String, String> {
    let res = container.resources.clone().unwrap_or_default();
    let (kind, name) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", selector.resource))?;
    let list = match kind {
        "limits" => res.limits.unwrap_or_default(),
        "requests" => res.requests.unwrap_or_default(),
        _ => {
            return Err(format!(
                "unsupported container resource : {}",
                selector.resource
            ));
        }
    };
    let given = list.get(name).and_then(|q| Quantity::parse(&q.0));
    let divisor = selector
        .divisor
        .as_ref()
        .and_then(|d| Quantity::parse(&d.0))
        .filter(|d| !d.is_zero());
    let ceil_div = |value: i64, by: i64| -> i64 {
        if by == 0 {
            value
        } else {
            (value + by - 1).div_euclid(by)
        }
    };
    match name {
        "cpu" => {
            let millis = match (&given, kind) {
                (Some(q), _) => q.milli_value(),
                (None, "limits") => node.cpu_millis,
                (None, _) => 0,
            };
            let by = divisor.map(|d| d.milli_value()).unwrap_or(1000);
            Ok(ceil_div(millis, by).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match (&given, kind, name) {
                (Some(q), _, _) => q.value(),
                (None, "limits", "memory") => node.memory_bytes,
                (None, _, _) => 0,
            };
            let by = divisor.map(|d| d.value()).unwrap_or(1);
            Ok(ceil_div(bytes, by).to_string())
        }
        _ => match given {
            Some(q) => Ok(q.value().to_string()),
            None => Err(format!(
                "unsupported container resource : {}",
                selector.resource
            )),
        },
    }
}

/// The container's variables in order, `KUBERNETES_SERVICE_*` first; the error is
/// the message of the container's `CreateContainerConfigError`.
pub async fn resolve(
    sources: &dyn Sources,
    container: &Container,
    fields: &FieldValues<'_>,
    node: NodeAllocatable,
) -> Result<Vec<(String, String)>, String> {
    let ns = fields.pod.metadata.namespace.clone().unwrap_or_default();
    let mut cache = Cache {
        sources,
        ns: &ns,
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut vars: HashMap<String, String> = fields.service_env.iter().cloned().collect();
    let mut order: Vec<String> = fields.service_env.iter().map(|(k, _)| k.clone()).collect();
    let mut set = |vars: &mut HashMap<String, String>, name: String, value: String| {
        if vars.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(cm) = &from.config_map_ref {
            cache
                .get(false, &cm.name, cm.optional.unwrap_or(false))
                .await?
        } else if let Some(s) = &from.secret_ref {
            cache
                .get(true, &s.name, s.optional.unwrap_or(false))
                .await?
        } else {
            None
        };
        for (key, value) in data.unwrap_or_default() {
            set(&mut vars, format!("{prefix}{key}"), value);
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) if !v.is_empty() => expand(v, &vars),
            (_, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    fields
                        .get(&field.field_path)
                        .ok_or_else(|| format!("unsupported fieldPath: {}", field.field_path))?
                } else if let Some(resource) = &from.resource_field_ref {
                    resource_value(resource, container, node)?
                } else if let Some(key_ref) = &from.config_map_key_ref {
                    let optional = key_ref.optional.unwrap_or(false);
                    let Some(data) = cache.get(false, &key_ref.name, optional).await? else {
                        continue;
                    };
                    match data.get(&key_ref.key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                key_ref.key, key_ref.name
                            ));
                        }
                    }
                } else if let Some(key_ref) = &from.secret_key_ref {
                    let optional = key_ref.optional.unwrap_or(false);
                    let Some(data) = cache.get(true, &key_ref.name, optional).await? else {
                        continue;
                    };
                    match data.get(&key_ref.key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                key_ref.key, key_ref.name
                            ));
                        }
                    }
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        set(&mut vars, var.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    struct Fake;

    #[async_trait::async_trait]
    impl Sources for Fake {
        async fn config_map(
            &self,
            _: &str,
            name: &str,
        ) -> Result<Option<BTreeMap<String, String>>, String> {
            Ok((name == "cm").then(|| {
                BTreeMap::from([
                    ("color".to_string(), "blue".to_string()),
                    ("size".to_string(), "L".to_string()),
                ])
            }))
        }
        async fn secret(
            &self,
            _: &str,
            name: &str,
        ) -> Result<Option<BTreeMap<String, String>>, String> {
            Ok((name == "s")
                .then(|| BTreeMap::from([("password".to_string(), "hunter2".to_string())])))
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u",
                         "labels": {"app": "web"}, "annotations": {"note": "hi"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": []}
        }))
        .unwrap()
    }

    const NODE: NodeAllocatable = NodeAllocatable {
        cpu_millis: 2000,
        memory_bytes: 4 << 30,
    };

    async fn env_of(container: serde_json::Value) -> Result<HashMap<String, String>, String> {
        let p = pod();
        let fields = FieldValues {
            pod: &p,
            pod_ip: "10.244.0.9",
            node_ip: "172.18.0.2",
            service_env: &[],
        };
        let c: Container = serde_json::from_value(container).unwrap();
        resolve(&Fake, &c, &fields, NODE)
            .await
            .map(|v| v.into_iter().collect())
    }

    #[tokio::test]
    async fn sources_prefixes_and_fields() {
        let env = env_of(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "250m"}},
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                        {"secretRef": {"name": "gone", "optional": true}}],
            "env": [
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}}},
                {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "color"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope", "optional": true}}},
                {"name": "MSG", "value": "$(CM_size)-$(COLOR)"},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
                {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
                {"name": "HOSTS", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIPs"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                {"name": "CPULIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}
            ]
        }))
        .await
        .unwrap();
        assert_eq!(env["CM_color"], "blue");
        assert_eq!(env["PW"], "hunter2");
        assert_eq!(env["COLOR"], "blue");
        assert!(!env.contains_key("OPT"));
        assert_eq!(env["MSG"], "L-blue");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["NOTE"], "hi");
        assert_eq!(env["IPS"], "10.244.0.9");
        assert_eq!(env["HOSTS"], "172.18.0.2");
        assert_eq!(env["SA"], "sa");
        assert_eq!(env["MEM"], "128");
        assert_eq!(env["CPU"], "250");
        assert_eq!(env["CPULIM"], "2");
    }

    #[tokio::test]
    async fn missing_references_are_upstreams_errors() {
        let missing_key = env_of(serde_json::json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope"}}}]}))
        .await;
        assert_eq!(
            missing_key.unwrap_err(),
            "couldn't find key nope in ConfigMap ns/cm"
        );
        let missing_secret_key = env_of(serde_json::json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}}]}))
        .await;
        assert_eq!(
            missing_secret_key.unwrap_err(),
            "couldn't find key nope in Secret ns/s"
        );
        let missing_map = env_of(serde_json::json!({"name": "c", "envFrom": [
            {"configMapRef": {"name": "gone"}}]}))
        .await;
        assert_eq!(missing_map.unwrap_err(), "configmap \"gone\" not found");
        let missing_secret = env_of(serde_json::json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]}))
        .await;
        assert_eq!(missing_secret.unwrap_err(), "secret \"gone\" not found");
    }
}
