//! `featureGates` and `runtimeConfig`: kind passes them to every component's
//! `--feature-gates` and the API server's `--runtime-config`. rind's components are not
//! upstream's, so a gate or API is honoured only where rind's behaviour already is what
//! the setting asks for; anything else is refused by name rather than passed to nobody.

use rind_api::registry::Registry;

/// Gates whose feature rind's components implement, always on. Setting one `true` asks
/// for what rind does; `false` would ask rind to turn the behaviour off, which it
/// cannot.
pub const IMPLEMENTED_GATES: [(&str, &str); 3] = [
    (
        "SidecarContainers",
        "init containers with restartPolicy: Always run beside the app containers",
    ),
    (
        "PodReadyToStartContainersCondition",
        "pods carry the PodReadyToStartContainers condition",
    ),
    (
        "PodIndexLabel",
        "StatefulSet pods carry the apps.kubernetes.io/pod-index label",
    ),
];

/// Checks one feature gate; the message names it.
pub fn check_feature_gate(name: &str, enabled: bool) -> Result<(), String> {
    match IMPLEMENTED_GATES.iter().find(|(gate, _)| *gate == name) {
        Some(_) if enabled => Ok(()),
        Some((gate, what)) => Err(format!(
            "{gate}: false is not supported: rind always has this feature ({what}) and cannot turn it off"
        )),
        None => Err(format!(
            "{name:?} is not a feature gate rind implements (known: {})",
            IMPLEMENTED_GATES
                .iter()
                .map(|(g, _)| *g)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn stability(version: &str) -> &'static str {
    if version.contains("alpha") {
        "alpha"
    } else if version.contains("beta") {
        "beta"
    } else {
        "ga"
    }
}

/// The group-versions the API server serves: `v1` for the core group, `group/version`
/// for the others.
fn served() -> Vec<String> {
    let registry = Registry::default();
    let mut out = vec!["v1".to_string()];
    for (group, versions) in registry.builtin_groups() {
        out.extend(versions.iter().map(|v| format!("{group}/{v}")));
    }
    out
}

/// Checks one `runtimeConfig` entry (the API server's `--runtime-config` key=value).
/// Honoured: turning on what is served (`api/ga`, a served group-version) and turning
/// off a class of which nothing is served (`api/alpha: false` when rind serves no
/// alpha API). Turning off a served API, turning on unserved ones, or naming an API
/// rind does not have is refused.
pub fn check_runtime_config(key: &str, value: &str) -> Result<(), String> {
    let enabled = match value {
        "" | "true" => true,
        "false" => false,
        other => {
            return Err(format!("{key}: {other:?} must be \"true\" or \"false\""));
        }
    };
    let served = served();
    match key {
        "api/all" | "api/ga" | "api/beta" | "api/alpha" => {
            let class = key.trim_start_matches("api/");
            let matching: Vec<&String> = served
                .iter()
                .filter(|gv| class == "all" || stability(gv) == class)
                .collect();
            match (enabled, class) {
                (true, "ga") => Ok(()),
                (true, _) => Err(format!(
                    "{key}: true asks for every {class} API of upstream Kubernetes; rind serves only its own set"
                )),
                (false, _) if matching.is_empty() => Ok(()),
                (false, _) => Err(format!(
                    "{key}: false would switch off APIs rind serves ({}); rind cannot disable served APIs",
                    matching
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        _ => {
            let gv = key.strip_prefix("api/").unwrap_or(key);
            // `group/version/resource` keys address single resources.
            if gv.matches('/').count() > 1 {
                return Err(format!(
                    "{key}: per-resource runtime config is not supported by rind"
                ));
            }
            if !served.iter().any(|s| s == gv) {
                return Err(format!(
                    "{key} is not an API rind serves (its APIs: {})",
                    served.join(", ")
                ));
            }
            if enabled {
                Ok(())
            } else {
                Err(format!(
                    "{key}: false is not supported: rind cannot disable an API it serves"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates() {
        assert!(check_feature_gate("SidecarContainers", true).is_ok());
        let err = check_feature_gate("SidecarContainers", false).unwrap_err();
        assert!(err.contains("cannot turn it off"), "{err}");
        let err = check_feature_gate("FeatureGateName", true).unwrap_err();
        assert!(err.contains("FeatureGateName"), "{err}");
    }

    #[test]
    fn runtime_config() {
        assert!(check_runtime_config("apps/v1", "true").is_ok());
        assert!(check_runtime_config("api/ga", "true").is_ok());
        assert!(check_runtime_config("api/alpha", "false").is_ok());
        let err = check_runtime_config("apps/v1beta2", "true").unwrap_err();
        assert!(err.starts_with("apps/v1beta2 is not an API"), "{err}");
        assert!(check_runtime_config("apps/v1", "false").is_err());
        assert!(check_runtime_config("api/all", "true").is_err());
        assert!(check_runtime_config("apps/v1", "maybe").is_err());
    }
}
