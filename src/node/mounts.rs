//! The mounts a node needs before containerd and runc can work in it: writable cgroups
//! (cgroup v1 or v2 host) and shared mount propagation on `/`.

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// On a cgroup v2 host, where PID 1 and every process already in the root cgroup move
/// to, so that controllers can be enabled for the children of the root ("no internal
/// processes" rule of cgroup v2).
const V2_INIT_CGROUP: &str = "/sys/fs/cgroup/init";

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Mount {
        action: &'static str,
        path: String,
        source: nix::Error,
    },
}

/// One line of `/proc/self/mountinfo`, with the fields init needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    /// Per-mount options (`ro`, `nosuid`, …).
    pub mount_options: Vec<String>,
    pub fs_type: String,
    /// Per-superblock options; for cgroup v1 these name the controllers.
    pub super_options: Vec<String>,
}

impl MountInfo {
    fn read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "ro")
    }
}

/// Parses `/proc/self/mountinfo` (proc(5)): fields up to the optional-fields separator
/// `-`, then fs type, source and super options.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let mount_point = unescape_octal(fields.get(4)?);
            let mount_options = fields.get(5)?.split(',').map(str::to_string).collect();
            let fs_type = fields.get(dash + 1)?.to_string();
            let super_options = fields
                .get(dash + 3)
                .map(|s| s.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            Some(MountInfo {
                mount_point: PathBuf::from(mount_point),
                mount_options,
                fs_type,
                super_options,
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        if let Some(v) = escaped {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `-o` data to mount a cgroup v1 hierarchy afresh with the same controllers as
/// the host's: the superblock options minus `rw`/`ro` and any release agent (which
/// only the host may set). A named hierarchy without controllers (systemd's) needs
/// `none` so the kernel does not attach every controller to it.
pub fn cgroup_v1_mount_data(super_options: &[String]) -> String {
    let kept: Vec<&str> = super_options
        .iter()
        .map(String::as_str)
        .filter(|o| *o != "rw" && *o != "ro" && !o.starts_with("release_agent="))
        .collect();
    let has_controller = kept
        .iter()
        .any(|o| !o.starts_with("name=") && *o != "xattr" && *o != "none" && *o != "noprefix");
    let mut data = Vec::new();
    if !has_controller && !kept.contains(&"none") {
        data.push("none");
    }
    data.extend(kept);
    data.join(",")
}

/// Makes the cgroup hierarchy writable for runc, on a cgroup v1 or v2 host. Returns
/// warnings about controllers that could not be enabled.
pub fn prepare_cgroups() -> Result<Vec<String>, MountError> {
    let mounts = read_mountinfo()?;
    let v2_root = mounts
        .iter()
        .any(|m| m.mount_point == Path::new(CGROUP_ROOT) && m.fs_type == "cgroup2");
    if v2_root {
        prepare_cgroup_v2(&mounts)
    } else {
        prepare_cgroup_v1(&mounts).map(|()| Vec::new())
    }
}

fn read_mountinfo() -> Result<Vec<MountInfo>, MountError> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(path).map_err(|source| MountError::Read {
        path: path.to_string(),
        source,
    })?;
    Ok(parse_mountinfo(&text))
}

/// Docker (without `--privileged`) bind-mounts each v1 hierarchy read-only into the
/// node. With `--cgroupns private`, a fresh mount of the same hierarchy is rooted at
/// the node's own cgroup and writable, which is what runc needs to create the pods'
/// cgroups. Combined hierarchies (`cpu,cpuacct`) are one mount point with symlinks
/// (`cpu` → `cpu,cpuacct`) beside it in the tmpfs; the symlinks stay valid.
fn prepare_cgroup_v1(mounts: &[MountInfo]) -> Result<(), MountError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for m in mounts
        .iter()
        .filter(|m| m.fs_type == "cgroup" && m.mount_point.starts_with(CGROUP_ROOT))
        .filter(|m| m.read_only())
    {
        let data = cgroup_v1_mount_data(&m.super_options);
        let path = m.mount_point.display().to_string();
        umount2(&m.mount_point, MntFlags::empty()).map_err(|source| MountError::Mount {
            action: "unmount",
            path: path.clone(),
            source,
        })?;
        mount(
            Some("cgroup"),
            &m.mount_point,
            Some("cgroup"),
            flags,
            Some(data.as_str()),
        )
        .map_err(|source| MountError::Mount {
            action: "mount cgroup on",
            path,
            source,
        })?;
    }
    Ok(())
}

/// A cgroup v2 host: mount the unified hierarchy afresh when Docker gave it read-only,
/// move every process out of the root cgroup (a cgroup with processes cannot hand
/// controllers to children), then enable every available controller for children.
fn prepare_cgroup_v2(mounts: &[MountInfo]) -> Result<Vec<String>, MountError> {
    let root_ro = mounts
        .iter()
        .any(|m| m.mount_point == Path::new(CGROUP_ROOT) && m.read_only());
    if root_ro {
        umount2(CGROUP_ROOT, MntFlags::empty()).map_err(|source| MountError::Mount {
            action: "unmount",
            path: CGROUP_ROOT.to_string(),
            source,
        })?;
        mount(
            Some("cgroup2"),
            CGROUP_ROOT,
            Some("cgroup2"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|source| MountError::Mount {
            action: "mount cgroup2 on",
            path: CGROUP_ROOT.to_string(),
            source,
        })?;
    }
    std::fs::create_dir_all(V2_INIT_CGROUP).map_err(|source| MountError::Write {
        path: V2_INIT_CGROUP.to_string(),
        source,
    })?;
    let procs_path = format!("{CGROUP_ROOT}/cgroup.procs");
    let procs = std::fs::read_to_string(&procs_path).map_err(|source| MountError::Read {
        path: procs_path.clone(),
        source,
    })?;
    let init_procs = format!("{V2_INIT_CGROUP}/cgroup.procs");
    for pid in procs.split_whitespace() {
        // A process may exit between the read and the move; that is fine.
        let _ = std::fs::write(&init_procs, pid);
    }
    let controllers_path = format!("{CGROUP_ROOT}/cgroup.controllers");
    let controllers =
        std::fs::read_to_string(&controllers_path).map_err(|source| MountError::Read {
            path: controllers_path,
            source,
        })?;
    // One controller at a time: one the kernel refuses (say, a threaded-only one)
    // must not keep the others from being enabled.
    let subtree = format!("{CGROUP_ROOT}/cgroup.subtree_control");
    let mut warnings = Vec::new();
    for controller in controllers.split_whitespace() {
        if let Err(e) = std::fs::write(&subtree, format!("+{controller}")) {
            warnings.push(format!("cannot enable cgroup controller {controller}: {e}"));
        }
    }
    Ok(warnings)
}

/// containerd and the kubelet mount volumes and container rootfs that must be seen
/// across mount namespaces (shim, runc, pods); Docker starts the node with private
/// propagation, so make the whole tree shared.
pub fn make_root_shared() -> Result<(), MountError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|source| MountError::Mount {
        action: "make shared",
        path: "/".to_string(),
        source,
    })
}

/// Kernel settings pods need. Network sysctls are per network namespace, so setting
/// them inside the node changes nothing on the host.
pub fn set_sysctls() -> Vec<String> {
    let settings = [
        // Pods' traffic is routed through the node (bridge → eth0 and back).
        ("/proc/sys/net/ipv4/ip_forward", true),
        // Service rules are iptables rules; bridged pod-to-pod traffic must pass them.
        ("/proc/sys/net/bridge/bridge-nf-call-iptables", false),
        ("/proc/sys/net/bridge/bridge-nf-call-ip6tables", false),
    ];
    let mut problems = Vec::new();
    for (path, required) in settings {
        if !required && !Path::new(path).exists() {
            // br_netfilter is not loaded on this host: nothing to set.
            continue;
        }
        if let Err(e) = std::fs::write(path, "1") {
            problems.push(format!("cannot set {path}: {e}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO_V1: &str = "\
600 500 0:50 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/a,upperdir=/b
610 600 0:52 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs rw
611 610 0:53 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
612 611 0:30 / /sys/fs/cgroup/systemd ro,nosuid,nodev,noexec,relatime master:11 - cgroup cgroup rw,xattr,name=systemd
613 611 0:33 / /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:16 - cgroup cgroup rw,cpu,cpuacct
614 611 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
615 600 0:60 / /with\\040space rw - ext4 /dev/vda rw
";

    #[test]
    fn parses_mountinfo() {
        let mounts = parse_mountinfo(MOUNTINFO_V1);
        assert_eq!(mounts.len(), 7);
        assert_eq!(
            mounts[4].mount_point,
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert!(mounts[4].read_only());
        assert!(!mounts[5].read_only());
        assert_eq!(mounts[4].super_options, vec!["rw", "cpu", "cpuacct"]);
        assert_eq!(mounts[6].mount_point, Path::new("/with space"));
    }

    #[test]
    fn cgroup_v1_data_keeps_controllers() {
        let opts = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(cgroup_v1_mount_data(&opts("rw,cpu,cpuacct")), "cpu,cpuacct");
        assert_eq!(
            cgroup_v1_mount_data(&opts("rw,xattr,name=systemd")),
            "none,xattr,name=systemd"
        );
        assert_eq!(
            cgroup_v1_mount_data(&opts("rw,memory,release_agent=/x")),
            "memory"
        );
    }
}
