//! kind's `containerdConfigPatches`: TOML fragments merged into the node's containerd
//! configuration as kind merges them (a merge patch: tables merge key by key, any
//! other value, arrays included, replaces what was there).

/// A patch that is not TOML, or a base configuration that is not.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("containerdConfigPatches[{index}] is not valid TOML: {message}")]
    Patch { index: usize, message: String },
    #[error("containerd's base configuration is not valid TOML: {0}")]
    Base(String),
    #[error("cannot write the patched containerd configuration: {0}")]
    Write(String),
}

/// Parses every patch, so a cluster config with a broken one is refused at `create`
/// naming it.
pub fn check(patches: &[String]) -> Result<(), PatchError> {
    parse_patches(patches).map(|_| ())
}

fn parse_patches(patches: &[String]) -> Result<Vec<toml::Table>, PatchError> {
    patches
        .iter()
        .enumerate()
        .map(|(index, text)| {
            text.parse::<toml::Table>().map_err(|e| PatchError::Patch {
                index,
                message: e.to_string().trim().to_string(),
            })
        })
        .collect()
}

fn merge(into: &mut toml::Table, patch: toml::Table) {
    for (key, value) in patch {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(more)) => merge(existing, more),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// `base` with every patch merged in, in order; `base` unchanged when there are none
/// (its comments explain the settings, and a re-written TOML loses them).
pub fn apply(base: &str, patches: &[String]) -> Result<String, PatchError> {
    if patches.is_empty() {
        return Ok(base.to_string());
    }
    let mut config: toml::Table = base
        .parse()
        .map_err(|e: toml::de::Error| PatchError::Base(e.to_string()))?;
    for patch in parse_patches(patches)? {
        merge(&mut config, patch);
    }
    let text = toml::to_string(&config).map_err(|e| PatchError::Write(e.to_string()))?;
    Ok(format!(
        "# Written by rind node init at every boot with the cluster's containerdConfigPatches\n# merged in; edits are lost.\n{text}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "pause"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
"#;

    #[test]
    fn kinds_local_registry_patch_merges_into_the_cri_table() {
        let patch = "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
        let out = apply(BASE, &[patch.to_string()]).unwrap();
        let table: toml::Table = out.parse().unwrap();
        let cri = &table["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(
            cri["registry"]["config_path"].as_str(),
            Some("/etc/containerd/certs.d")
        );
        // What the patch does not name stays.
        assert_eq!(cri["sandbox_image"].as_str(), Some("pause"));
        assert_eq!(cri["cni"]["bin_dir"].as_str(), Some("/usr/lib/cni"));
        assert_eq!(table["version"].as_integer(), Some(2));
    }

    #[test]
    fn later_patches_replace_values_and_no_patch_keeps_the_text() {
        let a = "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"a\"\n".to_string();
        let b = "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"b\"\n".to_string();
        let out: toml::Table = apply(BASE, &[a, b]).unwrap().parse().unwrap();
        assert_eq!(
            out["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"].as_str(),
            Some("b")
        );
        assert_eq!(apply(BASE, &[]).unwrap(), BASE);
    }

    #[test]
    fn a_broken_patch_is_named() {
        let err = check(&["version = 2".into(), "[plugins".into()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("containerdConfigPatches[1] is not valid TOML"),
            "{err}"
        );
    }
}
