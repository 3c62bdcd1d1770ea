//! Kubeconfig files: the ones written into nodes, and the user's, into which a cluster's
//! context `rind-<name>` is merged (and later removed) leaving every other entry as is.

use super::pki::KeyCert;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid kubeconfig: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is locked by another process (remove {path}.lock if none is running)")]
    Locked { path: PathBuf },
    #[error("no home directory to put .kube/config in (set KUBECONFIG or --kubeconfig)")]
    NoHome,
}

/// A kubeconfig with one cluster, user and context, as JSON (serialised as YAML).
#[derive(Clone)]
pub struct Kubeconfig(pub Value);

impl Kubeconfig {
    pub fn single(
        context: &str,
        server: &str,
        ca_pem: &str,
        user: &str,
        pair: &KeyCert,
    ) -> Kubeconfig {
        Kubeconfig(json!({
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": context, "cluster": {
                "server": server,
                "certificate-authority-data": BASE64.encode(ca_pem),
            }}],
            "users": [{"name": user, "user": {
                "client-certificate-data": BASE64.encode(&pair.cert_pem),
                "client-key-data": BASE64.encode(&pair.key_pem),
            }}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
            "current-context": context,
        }))
    }

    pub fn parse(text: &str, path: &Path) -> Result<Kubeconfig, KubeconfigError> {
        let value: Value = if text.trim().is_empty() {
            json!({})
        } else {
            rind_runtime::yaml::from_str(text).map_err(|e| KubeconfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        if !value.is_object() {
            return Err(KubeconfigError::Parse {
                path: path.to_path_buf(),
                message: "not a mapping".to_string(),
            });
        }
        Ok(Kubeconfig(value))
    }

    pub fn to_yaml(&self) -> String {
        // Serialising a JSON value cannot fail: it has only strings, numbers, maps, lists.
        rind_runtime::yaml::to_string(&self.0).unwrap_or_default()
    }

    /// Replaces the server URL of every cluster (e.g. the node-internal address by the
    /// host's published port).
    pub fn set_server(&mut self, server: &str) {
        if let Some(clusters) = self.0.get_mut("clusters").and_then(Value::as_array_mut) {
            for cluster in clusters {
                if let Some(c) = cluster.get_mut("cluster").and_then(Value::as_object_mut) {
                    c.insert("server".to_string(), Value::String(server.to_string()));
                }
            }
        }
    }

    /// Renames the (single) cluster, user and context to `name`, as kind names them
    /// `kind-<cluster>` in the user's kubeconfig.
    pub fn rename(&mut self, name: &str) {
        for (list, inner) in [("clusters", None), ("users", None), ("contexts", Some(()))] {
            if let Some(items) = self.0.get_mut(list).and_then(Value::as_array_mut) {
                for item in items {
                    item["name"] = Value::String(name.to_string());
                    if inner.is_some() {
                        item["context"]["cluster"] = Value::String(name.to_string());
                        item["context"]["user"] = Value::String(name.to_string());
                    }
                }
            }
        }
        self.0["current-context"] = Value::String(name.to_string());
    }

    /// Merges the entries of `other` (replacing same-named ones) and makes its current
    /// context current.
    pub fn merge(&mut self, other: &Kubeconfig) {
        for list in ["clusters", "users", "contexts"] {
            for item in other
                .0
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = item.get("name").cloned().unwrap_or(Value::Null);
                let entries = self.list_mut(list);
                entries.retain(|e| e.get("name") != Some(&name));
                entries.push(item.clone());
            }
        }
        if let Some(current) = other.0.get("current-context") {
            self.0["current-context"] = current.clone();
        }
        self.fill_header();
    }

    /// Removes the cluster, user and context called `name`; true if any was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let mut removed = false;
        for list in ["clusters", "users", "contexts"] {
            let entries = self.list_mut(list);
            let before = entries.len();
            entries.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
            removed |= entries.len() != before;
        }
        if self.0.get("current-context").and_then(Value::as_str) == Some(name) {
            self.0["current-context"] = Value::String(String::new());
        }
        removed
    }

    fn list_mut(&mut self, list: &str) -> &mut Vec<Value> {
        let slot = &mut self.0[list];
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        match slot {
            Value::Array(items) => items,
            _ => unreachable!("replaced by an array just above"),
        }
    }

    fn fill_header(&mut self) {
        for (key, value) in [
            ("apiVersion", json!("v1")),
            ("kind", json!("Config")),
            ("preferences", json!({})),
        ] {
            if self.0.get(key).is_none() {
                self.0[key] = value;
            }
        }
    }
}

/// The user's kubeconfig: `--kubeconfig`, else the first existing file of `$KUBECONFIG`
/// (or its first entry), else `~/.kube/config`.
pub fn user_kubeconfig_path(explicit: Option<&Path>) -> Result<PathBuf, KubeconfigError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if let Some(existing) = paths.iter().find(|p| p.exists()) {
            return Ok(existing.clone());
        }
        if let Some(first) = paths.into_iter().next() {
            return Ok(first);
        }
    }
    let home = std::env::var_os("HOME").ok_or(KubeconfigError::NoHome)?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

/// Reads, changes and rewrites the user's kubeconfig under a lock file (the convention
/// client-go uses too), replacing it atomically so a crash never leaves half a file.
pub fn update_user_kubeconfig(
    path: &Path,
    change: impl FnOnce(&mut Kubeconfig),
) -> Result<(), KubeconfigError> {
    let _lock = LockFile::acquire(path)?;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(KubeconfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut config = Kubeconfig::parse(&text, path)?;
    change(&mut config);
    let write_err = |source| KubeconfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
    std::fs::write(tmp.path(), config.to_yaml()).map_err(write_err)?;
    // Credentials inside: readable by the owner only, as kubectl writes it.
    set_mode(tmp.path(), 0o600).map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

struct LockFile(PathBuf);

impl LockFile {
    fn acquire(path: &Path) -> Result<LockFile, KubeconfigError> {
        let mut lock = path.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KubeconfigError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => return Ok(LockFile(lock)),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(KubeconfigError::Locked {
                        path: path.to_path_buf(),
                    });
                }
                Err(source) => return Err(KubeconfigError::Write { path: lock, source }),
            }
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> KeyCert {
        KeyCert {
            cert_pem: "CERT".to_string(),
            key_pem: "KEY".to_string(),
        }
    }

    #[test]
    fn merge_and_remove_keep_other_contexts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let existing = "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://10.0.0.1\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: other\nusers:\n- name: other\n  user:\n    token: abc\ncurrent-context: other\nextra: kept\n";
        std::fs::write(&path, existing).unwrap();
        let mut ours = Kubeconfig::single(
            "kubernetes",
            "https://127.0.0.1:1234",
            "CA",
            "admin",
            &pair(),
        );
        ours.rename("rind-dev");
        update_user_kubeconfig(&path, |c| c.merge(&ours)).unwrap();
        let merged = Kubeconfig::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(merged.0["current-context"], "rind-dev");
        assert_eq!(merged.0["clusters"].as_array().unwrap().len(), 2);
        assert_eq!(merged.0["extra"], "kept");
        assert_eq!(merged.0["contexts"][1]["context"]["user"], "rind-dev");

        update_user_kubeconfig(&path, |c| {
            assert!(c.remove("rind-dev"));
        })
        .unwrap();
        let after = Kubeconfig::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(after.0["clusters"].as_array().unwrap().len(), 1);
        assert_eq!(after.0["users"][0]["user"]["token"], "abc");
        assert_eq!(after.0["current-context"], "");
        assert!(!dir.path().join("config.lock").exists());
    }

    #[test]
    fn missing_file_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config");
        let ours = Kubeconfig::single("rind-x", "https://127.0.0.1:1", "CA", "rind-x", &pair());
        update_user_kubeconfig(&path, |c| c.merge(&ours)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("rind-x"));
    }

    #[test]
    fn garbage_is_reported_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "- just\n- a list\n").unwrap();
        let err = update_user_kubeconfig(&path, |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("config"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "- just\n- a list\n"
        );
    }
}
