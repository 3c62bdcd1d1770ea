//! Registry credentials from a pod's `imagePullSecrets`, as upstream's kubelet finds
//! them: Secrets of type `kubernetes.io/dockerconfigjson` (`{"auths": {host: …}}`)
//! or `kubernetes.io/dockercfg` (`{host: …}`), matched against the image's registry.

use super::cri::v1;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;

/// The registry an image reference names (Docker Hub when it names none).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// A config key as a bare host: scheme and path dropped; Docker Hub's old index URL
/// is `docker.io`.
fn key_host(key: &str) -> &str {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// The credentials in one Secret's docker config that apply to `registry`.
pub fn credentials_for(secret: &Secret, registry: &str) -> Vec<v1::AuthConfig> {
    let data = secret.data.clone().unwrap_or_default();
    let entries = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => data
            .get(".dockerconfigjson")
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v.0).ok())
            .and_then(|v| v.get("auths").cloned()),
        Some("kubernetes.io/dockercfg") => data
            .get(".dockercfg")
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v.0).ok()),
        _ => None,
    };
    let Some(serde_json::Value::Object(entries)) = entries else {
        return Vec::new();
    };
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    entries
        .iter()
        .filter(|(key, _)| key_host(key) == registry)
        .map(|(_, entry)| v1::AuthConfig {
            username: text(entry, "username"),
            password: text(entry, "password"),
            auth: text(entry, "auth"),
            // Upstream's keyring sends no server address: containerd uses a credential
            // only for the host it names, and with a `hosts.toml` mirror (kind's
            // local-registry recipe) the host contacted is the mirror, not the key.
            server_address: String::new(),
            identity_token: text(entry, "identitytoken"),
            registry_token: text(entry, "registrytoken"),
        })
        .collect()
}

/// Every credential the pod's pull secrets hold for the image's registry, in the
/// order the pod lists them; a secret that cannot be read is skipped, as upstream's.
pub async fn credentials(client: &kube::Client, pod: &Pod, image: &str) -> Vec<v1::AuthConfig> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let registry = registry_of(image);
    let mut out = Vec::new();
    let names = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default();
    for reference in names {
        match api.get_opt(&reference.name).await {
            Ok(Some(secret)) => out.extend(credentials_for(&secret, registry)),
            Ok(None) => tracing::info!(secret = %reference.name, "image pull secret not found"),
            Err(err) => {
                tracing::warn!(secret = %reference.name, "reading an image pull secret: {err}")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_of_references() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("localhost:5001/app"), "localhost:5001");
        assert_eq!(registry_of("ghcr.io/o/app@sha256:00"), "ghcr.io");
        assert_eq!(registry_of("localhost/app"), "localhost");
    }

    #[test]
    fn docker_configs_match_the_registry() {
        let config = serde_json::json!({"auths": {
            "localhost:5001": {"username": "u", "password": "p", "auth": "dTpw"},
            "https://index.docker.io/v1/": {"auth": "aHViOmh1Yg=="}
        }});
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64_of(&config.to_string())}
        }))
        .unwrap();
        let local = credentials_for(&secret, "localhost:5001");
        assert_eq!(local.len(), 1);
        assert_eq!(
            (local[0].username.as_str(), local[0].password.as_str()),
            ("u", "p")
        );
        assert_eq!(
            credentials_for(&secret, "docker.io")[0].auth,
            "aHViOmh1Yg=="
        );
        assert!(credentials_for(&secret, "ghcr.io").is_empty());
    }

    fn base64_of(text: &str) -> String {
        // ByteString's JSON form is base64; encode through it.
        serde_json::to_value(k8s_openapi::ByteString(text.as_bytes().to_vec()))
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }
}
