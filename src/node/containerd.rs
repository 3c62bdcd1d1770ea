//! containerd inside a node: its config file and the image archives imported at boot.

use rind_runtime::paths;

pub const CONFIG_PATH: &str = "/etc/containerd/config.toml";

/// The snapshotter for pods' root filesystems. The node's `/var` (and with it
/// `/var/lib/containerd`) is a Docker volume: a bind mount of the host's own filesystem
/// (ext4 here), not the node's fuse-overlayfs root, so the kernel's overlay filesystem
/// mounts there. Measured in a node on a fuse-overlayfs Docker: `ctr run` works with
/// both `overlayfs` and `native`, but `native` copies every image layer into each new
/// container's snapshot (twice the disk for busybox, and a full copy per container
/// for real images), while overlayfs shares the layers.
pub const SNAPSHOTTER: &str = "overlayfs";

/// containerd's `config.toml` (version 2) for a node. Every setting below is one the CRI
/// path in a Docker-hosted node needs; everything else keeps containerd's defaults.
pub fn config_toml() -> String {
    format!(
        r#"# Written by rind node init at every boot; edits are lost.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "{sock}"

[plugins."io.containerd.grpc.v1.cri"]
  # No registry is reachable: the sandbox image is the busybox sleep image imported
  # from {images} at boot.
  sandbox_image = "{pause}"
  # The node lacks CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj below the
  # node's own; without this every sandbox fails with "can't get final child's PID
  # from pipe: EOF".
  restrict_oom_score_adj = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # No systemd runs in a node: runc manages cgroups through cgroupfs.
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    # Debian's containernetworking-plugins install here, not in /opt/cni/bin.
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
"#,
        sock = paths::CONTAINERD_SOCK,
        images = paths::IMAGES_DIR,
        pause = paths::PAUSE_IMAGE,
        snapshotter = SNAPSHOTTER,
        cni_conf = paths::CNI_CONF_DIR,
    )
}

/// `ctr` arguments that import one image archive into the namespace the CRI plugin
/// reads (`k8s.io`), unpacked for the snapshotter pods use.
pub fn import_args(archive: &str) -> Vec<String> {
    [
        "--address",
        paths::CONTAINERD_SOCK,
        "--namespace",
        "k8s.io",
        "images",
        "import",
        "--all-platforms",
        "--snapshotter",
        SNAPSHOTTER,
        archive,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_golden() {
        let expected = r#"# Written by rind node init at every boot; edits are lost.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  # No registry is reachable: the sandbox image is the busybox sleep image imported
  # from /opt/rind/images at boot.
  sandbox_image = "docker.io/rind/pause:v1"
  # The node lacks CAP_SYS_RESOURCE, so runc cannot lower oom_score_adj below the
  # node's own; without this every sandbox fails with "can't get final child's PID
  # from pipe: EOF".
  restrict_oom_score_adj = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # No systemd runs in a node: runc manages cgroups through cgroupfs.
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    # Debian's containernetworking-plugins install here, not in /opt/cni/bin.
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
"#;
        assert_eq!(config_toml(), expected);
    }

    #[test]
    fn import_uses_k8s_namespace() {
        let args = import_args("/opt/rind/images/system.tar");
        assert_eq!(
            args.join(" "),
            "--address /run/containerd/containerd.sock --namespace k8s.io images import \
             --all-platforms --snapshotter overlayfs /opt/rind/images/system.tar"
        );
    }
}
