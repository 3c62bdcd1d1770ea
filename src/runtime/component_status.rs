//! The node supervisor's record of one component's process, written as JSON to
//! `/run/rind/components/<name>.json` on every start and exit. The kubelet reads it to
//! report the component as a mirror pod, as upstream's kubelet reports a static pod
//! from its container's state.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the process is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessState {
    /// Started and not exited.
    Running,
    /// Exited; the supervisor starts it again after `backoffSeconds`.
    Restarting,
}

/// How the previous run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastExit {
    /// The exit code, or 128 + the signal number for a process a signal ended (as a
    /// shell and upstream's container statuses count it).
    pub exit_code: i32,
    /// `exit code N` or `signal SIGKILL`.
    pub description: String,
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub name: String,
    /// The command line the supervisor runs.
    pub command: Vec<String>,
    pub state: ProcessState,
    /// The process while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Starts after the first.
    pub restarts: u32,
    /// When the supervisor first started the component (RFC 3339).
    pub first_started_at: String,
    /// When the current (or, while restarting, the last) run started.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<LastExit>,
    /// While restarting: the wait before the next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_seconds: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusFileError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a component status: {source}")]
    Decode {
        path: String,
        source: serde_json::Error,
    },
}

pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

impl ComponentStatus {
    /// Writes the status to `dir/<name>.json` through a rename, so a reader never sees
    /// half a file.
    pub fn write(&self, dir: &Path) -> Result<(), StatusFileError> {
        let path = path_in(dir, &self.name);
        let err = |source| StatusFileError::Write {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let tmp = dir.join(format!(".{}.json.tmp", self.name));
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other);
        std::fs::write(&tmp, text.map_err(err)?).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// The status of `name` in `dir`; None when the supervisor runs no such component.
    pub fn read(dir: &Path, name: &str) -> Result<Option<Self>, StatusFileError> {
        let path = path_in(dir, name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StatusFileError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StatusFileError::Decode {
                path: path.display().to_string(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_status_reads_back_and_absent_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let status = ComponentStatus {
            name: "apiserver".into(),
            command: vec!["/usr/local/bin/rind".into(), "node".into()],
            state: ProcessState::Restarting,
            pid: None,
            restarts: 2,
            first_started_at: "2026-01-01T00:00:00Z".into(),
            started_at: "2026-01-01T00:01:00Z".into(),
            last_exit: Some(LastExit {
                exit_code: 137,
                description: "signal SIGKILL".into(),
                started_at: "2026-01-01T00:01:00Z".into(),
                finished_at: "2026-01-01T00:02:00Z".into(),
            }),
            backoff_seconds: Some(4),
        };
        status.write(dir.path()).unwrap();
        assert_eq!(
            ComponentStatus::read(dir.path(), "apiserver").unwrap(),
            Some(status)
        );
        assert_eq!(ComponentStatus::read(dir.path(), "etcd").unwrap(), None);
        std::fs::write(path_in(dir.path(), "bad"), "{").unwrap();
        let err = ComponentStatus::read(dir.path(), "bad").unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
    }
}
