//! PID 1 of a node container: prepares the kernel-facing bits (cgroups, propagation,
//! sysctls), writes containerd's config, then runs and supervises every component
//! until Docker asks the node to stop. The CNI config is the network agent's (`net`),
//! written once node IPAM has given the node its podCIDR.

use super::supervisor::{self, Component, Reaper};
use crate::{containerd, etcd, mounts, resolv};
use rind_runtime::paths::{self, SYSTEM_ARCHIVE};
use rind_runtime::{NodeConfig, ProxyMode, Role};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How long to wait for containerd's socket before giving up on importing images
/// (the supervisor keeps restarting containerd meanwhile; the import is retried).
const CONTAINERD_WAIT: Duration = Duration::from_secs(60);
/// Attempts per image archive: containerd may restart right after first answering.
const IMPORT_ATTEMPTS: u32 = 3;
/// The node's resolver configuration, which Docker writes.
const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] rind_runtime::config::NodeConfigError),
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    #[error(transparent)]
    ContainerdPatch(#[from] rind_runtime::containerd_patch::PatchError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot find our own binary: {0}")]
    SelfExe(std::io::Error),
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
}

pub async fn run() -> Result<(), InitError> {
    let booted = Instant::now();
    let cfg = NodeConfig::load(Path::new(paths::NODE_CONFIG))?;

    // Listen for SIGCHLD before anything can exit, so no zombie is ever missed.
    let reaper = Arc::new(Reaper::default());
    let mut sigchld = signal(SignalKind::child()).map_err(InitError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(InitError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(InitError::Signals)?;
    let reaper_task = {
        let reaper = reaper.clone();
        tokio::spawn(async move {
            while sigchld.recv().await.is_some() {
                reaper.reap();
            }
        })
    };

    // Before `/` is made shared: the image root's bind mount stays private.
    let image_var = crate::var::bind_image_root();
    let cgroup_warnings = mounts::prepare_cgroups()?;
    mounts::make_root_shared()?;
    for problem in cgroup_warnings.into_iter().chain(mounts::set_sysctls()) {
        eprintln!("rind init: warning: {problem}");
    }
    std::fs::create_dir_all(paths::LOG_DIR).map_err(|source| InitError::Write {
        path: paths::LOG_DIR.to_string(),
        source,
    })?;
    let containerd_config = rind_runtime::containerd_patch::apply(
        &containerd::config_toml(),
        &cfg.containerd_config_patches,
    )?;
    write_file(containerd::CONFIG_PATH, &containerd_config)?;

    if let Some(domains) = &cfg.dns_search {
        resolv::set_search(Path::new(RESOLV_CONF), domains).map_err(|source| InitError::Write {
            path: RESOLV_CONF.to_string(),
            source,
        })?;
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for component in components(&cfg, &self_exe()?) {
        tasks.spawn(supervisor::supervise(
            component,
            reaper.clone(),
            shutdown_rx.clone(),
        ));
    }
    // The image's /var is merged after the imports, not beside them: on a machine
    // booting several nodes the disk is the bottleneck, and the pods wait on the images
    // while nothing waits on Debian's /var.
    tasks.spawn(async move {
        import_images(reaper.clone(), booted, shutdown_rx).await;
        fill_var(image_var, booted).await;
    });
    eprintln!(
        "rind init: node {} ({:?}) started its components",
        cfg.node_name, cfg.role
    );

    tokio::select! {
        _ = sigterm.recv() => eprintln!("rind init: SIGTERM, stopping components"),
        _ = sigint.recv() => eprintln!("rind init: SIGINT, stopping components"),
    }
    // Receivers only end when the sender is dropped; ignoring a send error is fine.
    let _ = shutdown_tx.send(true);
    let all_stopped = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(supervisor::STOP_GRACE + Duration::from_secs(1), all_stopped)
        .await
        .is_err()
    {
        eprintln!("rind init: some components did not stop in time");
    }
    reaper_task.abort();
    eprintln!("rind init: stopped");
    Ok(())
}

/// The running binary, re-executed for the `rind node …` components. The node image
/// puts it at /usr/local/bin/rind; /proc/self/exe also covers a binary copied elsewhere.
fn self_exe() -> Result<PathBuf, InitError> {
    std::fs::read_link("/proc/self/exe").map_err(InitError::SelfExe)
}

/// Writes a file, creating its directory first.
fn write_file(path: &str, text: &str) -> Result<(), InitError> {
    let err = |source| InitError::Write {
        path: path.to_string(),
        source,
    };
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, text).map_err(err)
}

/// What runs in a node of this role. containerd and etcd come first; the others start
/// at once too and retry until what they depend on answers.
pub fn components(cfg: &NodeConfig, rind: &Path) -> Vec<Component> {
    let ours = |sub: &str| Component {
        name: sub.to_string(),
        program: rind.to_path_buf(),
        args: vec!["node".to_string(), sub.to_string()],
        env: vec![],
    };
    let mut list = vec![Component {
        name: "containerd".to_string(),
        program: PathBuf::from("/usr/bin/containerd"),
        args: vec!["--config".to_string(), containerd::CONFIG_PATH.to_string()],
        env: vec![],
    }];
    if cfg.role == Role::ControlPlane {
        list.push(Component {
            name: "etcd".to_string(),
            program: PathBuf::from(etcd::BINARY),
            args: etcd::args(cfg),
            env: etcd::env(),
        });
        list.push(ours("apiserver"));
        list.push(ours("controller-manager"));
        list.push(ours("scheduler"));
    }
    list.push(ours("kubelet"));
    // The pod network agent, on every node as kind's kindnet DaemonSet; with
    // `disableDefaultCNI` there is none (as kind installs no kindnet then): the user's
    // CNI owns pod addresses, routes, masquerade and policies.
    if !cfg.disable_default_cni {
        list.push(ours("net"));
    }
    if cfg.kube_proxy_mode != ProxyMode::None {
        // The service proxy, on every node as kube-proxy's DaemonSet is in kind.
        list.push(ours("proxy"));
    }
    list.push(ours("dns-relay"));
    list
}

/// Merges the image's `/var` into the node's `/var` volume (see `var`), off the
/// components' way: none of them needs what Debian keeps there.
async fn fill_var(image_var: Result<PathBuf, crate::var::VarError>, booted: Instant) {
    let image_var = match image_var {
        Ok(path) => path,
        Err(err) => {
            eprintln!("rind init: warning: /var not filled from the image: {err}");
            return;
        }
    };
    // A thread of its own at idle priority: creating the files costs the kernel far
    // more than their size suggests (on a journal-less ext4 every new inode scans for
    // recently deleted ones: 0.6–0.8 s of CPU per node here), and while the nodes boot
    // every core is busy with what the cluster waits on.
    let (done, merged) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("var-merge".to_string())
        .spawn(move || {
            for problem in crate::var::idle_priority() {
                eprintln!("rind init: warning: {problem}");
            }
            let merged = crate::var::merge_tree(&image_var, Path::new("/var"));
            let _ = done.send((merged, crate::var::unbind_image_root()));
        });
    if let Err(err) = spawned {
        eprintln!("rind init: warning: /var not filled from the image: {err}");
        return;
    }
    match merged.await {
        Ok((Ok(merged), unbound)) => {
            eprintln!(
                "rind init: /var: {} entries from the image, {} there already ({:.2}s)",
                merged.created,
                merged.kept,
                booted.elapsed().as_secs_f64()
            );
            if let Err(err) = unbound {
                eprintln!("rind init: warning: {err}");
            }
        }
        Ok((Err(err), _)) => eprintln!("rind init: warning: filling /var from the image: {err}"),
        Err(_) => {
            eprintln!("rind init: warning: filling /var from the image: the merge ended early")
        }
    }
}

/// Imports every image archive baked into the node (the pause image first of all) into
/// containerd's `k8s.io` namespace, once containerd answers on its socket.
async fn import_images(reaper: Arc<Reaper>, booted: Instant, mut shutdown: watch::Receiver<bool>) {
    let ready = tokio::select! {
        ready = wait_for_socket(paths::CONTAINERD_SOCK, CONTAINERD_WAIT) => ready,
        _ = shutdown.changed() => return,
    };
    if !ready {
        eprintln!(
            "rind init: containerd did not answer within {}s; images not imported",
            CONTAINERD_WAIT.as_secs()
        );
        return;
    }
    eprintln!(
        "rind init: containerd ready after {:.2}s",
        booted.elapsed().as_secs_f64()
    );
    for archive in image_archives(Path::new(paths::IMAGES_DIR)) {
        let archive = archive.display().to_string();
        for attempt in 1..=IMPORT_ATTEMPTS {
            let args = containerd::import_args(&archive);
            match supervisor::run_once(&reaper, "images", "/usr/bin/ctr", &args).await {
                Ok(exit) if exit.success() => {
                    eprintln!(
                        "rind init: imported {archive} after {:.2}s",
                        booted.elapsed().as_secs_f64()
                    );
                    break;
                }
                Ok(exit) => eprintln!(
                    "rind init: importing {archive} failed ({exit}, attempt {attempt}); see {}",
                    supervisor::log_path("images").display()
                ),
                Err(e) => eprintln!("rind init: importing {archive}: {e}"),
            }
            if *shutdown.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The `*.tar` archives in `dir`: the system images first (the pause image every
/// sandbox needs, and the cluster DNS image `create cluster` waits for), then the rest
/// by name so the order of imports is stable.
fn image_archives(dir: &Path) -> Vec<PathBuf> {
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "tar"))
                .collect()
        })
        .unwrap_or_default();
    archives.sort_by_key(|p| (!p.ends_with(SYSTEM_ARCHIVE), p.clone()));
    archives
}

/// Polls until a Unix socket accepts a connection, or `limit` passes.
async fn wait_for_socket(path: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(role: Role) -> NodeConfig {
        NodeConfig {
            cluster_name: "rind".into(),
            node_name: "n".into(),
            role,
            node_ip: "172.30.0.2".into(),
            node_ipv6: None,
            api_server_url: "https://172.30.0.2:6443".into(),
            pod_subnet: "10.244.0.0/16".into(),
            service_subnet: "10.96.0.0/16".into(),
            labels: Default::default(),
            register_with_taints: Vec::new(),
            max_pods: None,
            etcd_initial_cluster: vec![],
            etcd_join_existing: false,
            disable_default_cni: false,
            kube_proxy_mode: Default::default(),
            dns_search: None,
            image: String::new(),
            containerd_config_patches: vec![],
        }
    }

    fn names(role: Role) -> Vec<String> {
        components(&cfg(role), Path::new("/usr/local/bin/rind"))
            .into_iter()
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn control_plane_runs_everything() {
        assert_eq!(
            names(Role::ControlPlane),
            [
                "containerd",
                "etcd",
                "apiserver",
                "controller-manager",
                "scheduler",
                "kubelet",
                "net",
                "proxy",
                "dns-relay"
            ]
        );
    }

    #[test]
    fn worker_runs_runtime_kubelet_network_agent_proxy_and_dns_relay() {
        assert_eq!(
            names(Role::Worker),
            ["containerd", "kubelet", "net", "proxy", "dns-relay"]
        );
    }

    #[test]
    fn no_network_agent_when_the_default_cni_is_disabled() {
        let mut config = cfg(Role::Worker);
        config.disable_default_cni = true;
        let list: Vec<String> = components(&config, Path::new("/usr/local/bin/rind"))
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(list, ["containerd", "kubelet", "proxy", "dns-relay"]);
    }

    #[test]
    fn archives_are_tar_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["beta.tar", "system.tar", "alpha.tar", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let found: Vec<_> = image_archives(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, ["system.tar", "alpha.tar", "beta.tar"]);
    }
}
