//! The ServiceAccount admission plugin: a new pod runs as a service account that
//! exists (`default` when it names none), and, unless it or its account opts out with
//! `automountServiceAccountToken: false`, gets the projected `kube-api-access-<5>`
//! volume (a bound token, the cluster CA from `kube-root-ca.crt`, its namespace) at
//! `/var/run/secrets/kubernetes.io/serviceaccount` in every container, as upstream's
//! plugin adds it. In-cluster clients (client-go's and Python's `load_incluster_config`)
//! read exactly those three files.

use super::super::Server;
use super::limitranger::refused_name;
use k8s_openapi::api::core::v1::ServiceAccount;
use rand::Rng;
use rind_api::meta;
use rind_api::status::ApiError;
use serde_json::{Value, json};

/// The account a pod that names none runs as.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where the token, CA and namespace are mounted in every container.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the projected volume's name.
const VOLUME_PREFIX: &str = "kube-api-access-";
/// The token's lifetime: an hour and a few seconds, so a kubelet that refreshes at 80%
/// of it is recognisable (upstream's choice).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The ConfigMap every namespace holds with the cluster CA (`rootcacertpublisher`).
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// Pods the kubelet mirrors from static manifests carry this and are left alone.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// How often the `default` account is looked for before a pod is refused.
const DEFAULT_ACCOUNT_ATTEMPTS: u32 = 10;
/// The letters upstream's name generator draws from (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// What the plugin decided for a new pod, applied after the field manager ran.
pub struct Admitted {
    account: String,
    automount: bool,
    image_pull_secrets: Vec<String>,
    volume_suffix: String,
}

/// Looks up the pod's service account; a missing one refuses the pod (403).
pub async fn admit(server: &Server, namespace: &str, pod: &Value) -> Result<Admitted, ApiError> {
    let account = meta::str_at(pod, &["spec", "serviceAccountName"])
        .filter(|name| !name.is_empty())
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
        .to_string();
    let found = match server.auth.service_account(namespace, &account) {
        Some(found) => Some(found),
        None => live_lookup(server, namespace, &account).await?,
    };
    let Some(found) = found else {
        return Err(ApiError::forbidden(
            "pods",
            "",
            &refused_name(pod),
            &format!(
                "error looking up service account {namespace}/{account}: serviceaccount {account:?} not found"
            ),
        ));
    };
    let automount = pod
        .get("spec")
        .and_then(|s| s.get("automountServiceAccountToken"))
        .and_then(Value::as_bool)
        .or(found.automount_service_account_token)
        .unwrap_or(true);
    let mut rng = rand::rng();
    let volume_suffix = (0..5)
        .map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char)
        .collect();
    Ok(Admitted {
        account,
        automount,
        image_pull_secrets: found
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|s| s.name.clone())
            .collect(),
        volume_suffix,
    })
}

/// An account the mirror has not seen: asked of the store, and for `default`, which the
/// ServiceAccount controller creates in every new namespace a moment after it, asked
/// again for a while (upstream's plugin tries 10 times, 100–200 ms apart).
async fn live_lookup(
    server: &Server,
    namespace: &str,
    name: &str,
) -> Result<Option<std::sync::Arc<ServiceAccount>>, ApiError> {
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ACCOUNT_ATTEMPTS
    } else {
        1
    };
    let interval = std::time::Duration::from_millis(rand::rng().random_range(100..200));
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(interval).await;
        }
        if let Some(found) = server.auth.service_account(namespace, name) {
            return Ok(Some(found));
        }
        if let Some(found) = read_account(server, namespace, name).await? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

async fn read_account(
    server: &Server,
    namespace: &str,
    name: &str,
) -> Result<Option<std::sync::Arc<ServiceAccount>>, ApiError> {
    let key = format!("/registry/serviceaccounts/{namespace}/{name}");
    let found = server
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::internal(format!("reading ServiceAccount {name}: {e}")))?;
    let Some(kv) = found else {
        return Ok(None);
    };
    serde_json::from_slice(&kv.value)
        .map(|sa| Some(std::sync::Arc::new(sa)))
        .map_err(|e| ApiError::internal(format!("ServiceAccount {name} does not decode: {e}")))
}

impl Admitted {
    /// Writes the plugin's fields into the pod.
    pub fn apply(&self, pod: &mut Value) {
        let mirror = pod
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(MIRROR_POD_ANNOTATION))
            .is_some();
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if mirror {
            return;
        }
        spec.insert("serviceAccountName".into(), json!(self.account));
        // The deprecated alias upstream's v1 conversion keeps equal to the name.
        spec.insert("serviceAccount".into(), json!(self.account));
        let no_pull_secrets = spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if no_pull_secrets && !self.image_pull_secrets.is_empty() {
            let secrets: Vec<Value> = self
                .image_pull_secrets
                .iter()
                .map(|name| json!({"name": name}))
                .collect();
            spec.insert("imagePullSecrets".into(), Value::Array(secrets));
        }
        if self.automount {
            mount_token(spec, &format!("{VOLUME_PREFIX}{}", self.volume_suffix));
        }
    }
}

/// Adds the token volume (unless the pod has one already) and its mount to every init
/// and app container without something of its own at the mount path.
fn mount_token(spec: &mut serde_json::Map<String, Value>, fresh_name: &str) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|name| name.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let name = existing.clone().unwrap_or_else(|| fresh_name.to_string());
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = container
                .entry("volumeMounts")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !mounts.is_array() {
                *mounts = Value::Array(Vec::new());
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let taken = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !taken {
                mounts.push(mount.clone());
                mounted = true;
            }
        }
    }
    if existing.is_none() && mounted {
        let volumes = spec
            .entry("volumes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(token_volume(&name));
        }
    }
}

/// The projected volume with the token, the CA and the namespace, as upstream writes
/// it (defaultMode 0644 spelled out).
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(automount: bool) -> Admitted {
        Admitted {
            account: "default".into(),
            automount,
            image_pull_secrets: vec!["regcred".into()],
            volume_suffix: "b2c4d".into(),
        }
    }

    #[test]
    fn mounts_the_token_in_every_container() {
        let mut pod = json!({"spec": {
            "initContainers": [{"name": "i", "image": "x"}],
            "containers": [
                {"name": "a", "image": "x"},
                {"name": "b", "image": "x", "volumeMounts": [{"name": "own", "mountPath": TOKEN_MOUNT_PATH}]},
            ],
            "volumes": [{"name": "own", "emptyDir": {}}],
        }});
        admitted(true).apply(&mut pod);
        let spec = &pod["spec"];
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert_eq!(spec["imagePullSecrets"], json!([{"name": "regcred"}]));
        let mount = json!({"name": "kube-api-access-b2c4d", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let volumes = spec["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[1], token_volume("kube-api-access-b2c4d"));
        assert_eq!(
            volumes[1]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
    }

    #[test]
    fn opting_out_mounts_nothing() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
        admitted(false).apply(&mut pod);
        assert!(pod["spec"].get("volumes").is_none());
        assert!(pod["spec"]["containers"][0].get("volumeMounts").is_none());
    }

    #[test]
    fn mirror_pods_are_left_alone() {
        let mut pod = json!({"metadata": {"annotations": {MIRROR_POD_ANNOTATION: "x"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}});
        let before = pod.clone();
        admitted(true).apply(&mut pod);
        assert_eq!(pod, before);
    }
}
