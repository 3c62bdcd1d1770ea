//! Children of PID 1: started, reaped, restarted with back-off, stopped on shutdown.
//!
//! As PID 1 we inherit every orphan in the node (containerd shims re-parent to us), so
//! one reaper collects every exit status with `waitpid(-1)` and hands those of our own
//! children to whoever waits for them. Nothing else in this process may wait for
//! children (no `tokio::process`), or the two would steal each other's exit statuses.

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use rind_runtime::component_status::{ComponentStatus, LastExit, ProcessState};
use rind_runtime::paths;
use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// First restart delay; doubled after each quick failure up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran at least this long before dying is restarted after `MIN_BACKOFF`.
const STABLE_RUN: Duration = Duration::from_secs(60);
/// How long a child gets between SIGTERM and SIGKILL; docker stop waits 10 s in total.
pub const STOP_GRACE: Duration = Duration::from_secs(8);

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot open log {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("the reaper stopped before {0} exited")]
    ReaperGone(String),
}

/// Collects every child's exit status and delivers those of registered children.
#[derive(Default)]
pub struct Reaper {
    waiters: Mutex<HashMap<i32, oneshot::Sender<Exit>>>,
}

impl Reaper {
    /// Starts `cmd` and registers it. The lock is held across the spawn so the reaper
    /// cannot collect the child's exit before it is registered.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<(Pid, oneshot::Receiver<Exit>)> {
        let mut waiters = self
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let child = cmd.spawn()?;
        let pid = i32::try_from(child.id()).map_err(std::io::Error::other)?;
        let (tx, rx) = oneshot::channel();
        waiters.insert(pid, tx);
        Ok((Pid::from_raw(pid), rx))
    }

    /// Collects every exited child (ours and adopted orphans) without blocking.
    pub fn reap(&self) {
        let mut waiters = self
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            let (pid, exit) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig)),
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return,
                Ok(_) | Err(nix::Error::EINTR) => continue,
                Err(_) => return,
            };
            if let Some(tx) = waiters.remove(&pid.as_raw()) {
                // The waiter may have given up (shutdown); nothing to deliver then.
                let _ = tx.send(exit);
            }
        }
    }
}

/// One supervised program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Also the log file's name: `/var/log/rind/<name>.log`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Component {
    fn command(&self, log: &File) -> std::io::Result<Command> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?);
        Ok(cmd)
    }
}

pub fn log_path(name: &str) -> PathBuf {
    Path::new(paths::LOG_DIR).join(format!("{name}.log"))
}

/// Opens a component's log for appending and marks the start of a new run in it.
fn open_log(name: &str, note: &str) -> Result<File, SuperviseError> {
    let path = log_path(name);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| SuperviseError::Log {
            path: path.display().to_string(),
            source,
        })?;
    let stamp = jiff::Timestamp::now();
    // A marker line only; losing it is harmless.
    let _ = writeln!(file, "==== rind init {stamp}: {note}");
    Ok(file)
}

/// Keeps `component` running until `shutdown` turns true, then stops it (SIGTERM, and
/// SIGKILL after `STOP_GRACE`).
pub async fn supervise(
    component: Component,
    reaper: Arc<Reaper>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut record = Record::new(&component);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = Instant::now();
        let what = match start(&component, &reaper) {
            Ok((pid, mut exited)) => {
                record.started(pid);
                tokio::select! {
                    exit = &mut exited => {
                        let exit_text = exit.as_ref().map_or_else(|_| "an unknown status".to_string(), |e| e.to_string());
                        record.exited(exit.ok());
                        format!("{} (pid {pid}) ended with {exit_text}", component.name)
                    }
                    _ = shutdown.changed() => {
                        stop(&component.name, pid, exited).await;
                        return;
                    }
                }
            }
            Err(e) => {
                record.exited(None);
                e.to_string()
            }
        };
        let delay = restart_delay(backoff, started.elapsed());
        record.restarting(delay);
        eprintln!("rind init: {what}; restarting in {}s", delay.as_secs());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (delay * 2).min(MAX_BACKOFF);
    }
}

/// The component's status file, kept current as it starts and exits (the kubelet
/// reports it as the component's mirror pod). Failing to write it only costs that
/// report, so a failure is logged and the component keeps running.
struct Record {
    status: ComponentStatus,
    dir: PathBuf,
    first: bool,
}

impl Record {
    fn new(component: &Component) -> Self {
        let now = jiff::Timestamp::now().to_string();
        let command = std::iter::once(component.program.display().to_string())
            .chain(component.args.iter().cloned())
            .collect();
        Record {
            status: ComponentStatus {
                name: component.name.clone(),
                command,
                state: ProcessState::Restarting,
                pid: None,
                restarts: 0,
                first_started_at: now.clone(),
                started_at: now,
                last_exit: None,
                backoff_seconds: None,
            },
            dir: PathBuf::from(paths::COMPONENT_STATUS_DIR),
            first: true,
        }
    }

    fn started(&mut self, pid: Pid) {
        let now = jiff::Timestamp::now().to_string();
        if self.first {
            self.status.first_started_at = now.clone();
            self.first = false;
        } else {
            self.status.restarts += 1;
        }
        self.status.started_at = now;
        self.status.state = ProcessState::Running;
        self.status.pid = Some(pid.as_raw());
        self.status.backoff_seconds = None;
        self.save();
    }

    /// `exit` is None when the process could not start or its status was lost.
    fn exited(&mut self, exit: Option<Exit>) {
        let exit_code = match exit {
            Some(Exit::Code(code)) => code,
            Some(Exit::Signal(sig)) => 128 + sig as i32,
            // Upstream reports a container that failed to start with 128 too.
            None => 128,
        };
        self.status.last_exit = Some(LastExit {
            exit_code,
            description: exit.map_or_else(|| "could not start".to_string(), |e| e.to_string()),
            started_at: self.status.started_at.clone(),
            finished_at: jiff::Timestamp::now().to_string(),
        });
        self.status.pid = None;
        self.status.state = ProcessState::Restarting;
    }

    fn restarting(&mut self, delay: Duration) {
        self.status.state = ProcessState::Restarting;
        self.status.backoff_seconds = Some(delay.as_secs());
        self.save();
    }

    fn save(&self) {
        if let Err(err) = self.status.write(&self.dir) {
            eprintln!("rind init: {err}");
        }
    }
}

/// The wait before the next start: the current back-off, or the shortest one again
/// when the child had run long enough to count as healthy.
fn restart_delay(backoff: Duration, ran_for: Duration) -> Duration {
    if ran_for >= STABLE_RUN {
        MIN_BACKOFF
    } else {
        backoff
    }
}

fn start(
    component: &Component,
    reaper: &Reaper,
) -> Result<(Pid, oneshot::Receiver<Exit>), SuperviseError> {
    let log = open_log(
        &component.name,
        &format!("starting {}", component.program.display()),
    )?;
    let mut cmd = component
        .command(&log)
        .map_err(|source| SuperviseError::Log {
            path: log_path(&component.name).display().to_string(),
            source,
        })?;
    reaper
        .spawn(&mut cmd)
        .map_err(|source| SuperviseError::Spawn {
            program: component.program.display().to_string(),
            source,
        })
}

/// SIGTERM, then SIGKILL if the child outlives the grace period.
async fn stop(name: &str, pid: Pid, mut exited: oneshot::Receiver<Exit>) {
    // The child may already be gone (ESRCH); the wait below settles it either way.
    let _ = kill(pid, Signal::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, &mut exited).await.is_err() {
        eprintln!("rind init: {name} (pid {pid}) ignored SIGTERM; killing it");
        let _ = kill(pid, Signal::SIGKILL);
        let _ = exited.await;
    }
}

/// Runs a one-off command to completion with its output appended to `log_name`'s log.
pub async fn run_once(
    reaper: &Reaper,
    log_name: &str,
    program: &str,
    args: &[String],
) -> Result<Exit, SuperviseError> {
    let log = open_log(log_name, &format!("{program} {}", args.join(" ")))?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    let out = log.try_clone().map_err(|source| SuperviseError::Log {
        path: log_path(log_name).display().to_string(),
        source,
    })?;
    cmd.stdout(out).stderr(log);
    let (_, exited) = reaper
        .spawn(&mut cmd)
        .map_err(|source| SuperviseError::Spawn {
            program: program.to_string(),
            source,
        })?;
    exited
        .await
        .map_err(|_| SuperviseError::ReaperGone(program.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_and_resets_after_a_stable_run() {
        let quick = Duration::from_millis(10);
        let mut backoff = MIN_BACKOFF;
        let mut delays = Vec::new();
        for _ in 0..7 {
            let delay = restart_delay(backoff, quick);
            delays.push(delay.as_secs());
            backoff = (delay * 2).min(MAX_BACKOFF);
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(restart_delay(MAX_BACKOFF, STABLE_RUN), MIN_BACKOFF);
    }

    #[test]
    fn exit_reads_like_a_shell() {
        assert_eq!(Exit::Code(1).to_string(), "exit code 1");
        assert_eq!(Exit::Signal(Signal::SIGKILL).to_string(), "signal SIGKILL");
        assert!(Exit::Code(0).success());
    }
}
