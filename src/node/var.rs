//! The node's `/var`: a Docker volume (containerd's images and snapshots, etcd's data,
//! logs), created empty (`volume-nocopy`, see `rind_cluster::provider::create_node`).
//! Docker copying the image's `/var` into each new volume took 0.2–0.3 s per node and
//! runs one node after another (1.35 s for six nodes here); instead each node's init
//! merges the image's `/var` (Debian's dpkg and apt state, `/var/tmp`, the `/var/run`
//! link) into its volume itself, in the background while the components start: none
//! of them reads what Debian put there, and each creates its own directories.
//!
//! The image's `/var` is hidden under the volume; a non-recursive bind mount of `/`
//! shows the image's root without the mounts on top of it, so `<bind>/var` is the
//! image's own directory.

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{Gid, Uid};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where init binds the image's root while it merges `/var`.
pub const IMAGE_ROOT: &str = "/run/rind/image-root";

#[derive(Debug, thiserror::Error)]
pub enum VarError {
    #[error("cannot {action} {path}: {source}")]
    Mount {
        action: &'static str,
        path: String,
        source: nix::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VarError {
    let path = path.display().to_string();
    move |source| VarError::Io {
        action,
        path,
        source,
    }
}

/// Binds the image's root at `IMAGE_ROOT` (not recursively: without the volumes and
/// tmpfs mounted over it) and makes that mount private, so nothing mounted later
/// propagates into or out of it. Returns the image's `/var` as seen there.
pub fn bind_image_root() -> Result<PathBuf, VarError> {
    let root = Path::new(IMAGE_ROOT);
    std::fs::create_dir_all(root).map_err(io("create", root))?;
    let err = |action| {
        move |source| VarError::Mount {
            action,
            path: IMAGE_ROOT.to_string(),
            source,
        }
    };
    mount(
        Some("/"),
        root,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(err("bind the image's root at"))?;
    mount(
        None::<&str>,
        root,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(err("make private"))?;
    Ok(root.join("var"))
}

/// Undoes `bind_image_root` (lazily: a walk that failed half-way may hold files open).
pub fn unbind_image_root() -> Result<(), VarError> {
    umount2(IMAGE_ROOT, MntFlags::MNT_DETACH).map_err(|source| VarError::Mount {
        action: "unmount",
        path: IMAGE_ROOT.to_string(),
        source,
    })?;
    // An empty directory in /run; leaving it is harmless.
    let _ = std::fs::remove_dir(IMAGE_ROOT);
    Ok(())
}

/// Puts the calling thread in the idle scheduling class for CPU (`SCHED_IDLE`) and for
/// disk (`IOPRIO_CLASS_IDLE`): it runs only when nothing else of the machine wants to.
/// Returns what could not be changed; the merge works either way, only sooner.
pub fn idle_priority() -> Vec<String> {
    let mut problems = Vec::new();
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread, and `param` outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        problems.push(format!(
            "cannot lower the /var merge's CPU priority: {}",
            std::io::Error::last_os_error()
        ));
    }
    // ioprio_set(IOPRIO_WHO_PROCESS, this thread, IOPRIO_CLASS_IDLE): libc has no
    // wrapper; the class sits above bit 13 of the priority value.
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    // SAFETY: a plain syscall with integer arguments.
    if unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            IOPRIO_CLASS_IDLE << 13,
        )
    } != 0
    {
        problems.push(format!(
            "cannot lower the /var merge's disk priority: {}",
            std::io::Error::last_os_error()
        ));
    }
    problems
}

/// What a merge did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Entries created in the destination.
    pub created: usize,
    /// Entries left alone because the destination had them already.
    pub kept: usize,
}

/// Copies every entry of `from` that `to` lacks into `to`: directories (then their
/// contents, recursively), regular files and symbolic links, with their mode and owner.
/// Nothing in `to` is overwritten or removed, so a second run, or a run after a
/// component created some of the directories, changes nothing that exists.
pub fn merge_tree(from: &Path, to: &Path) -> Result<Merged, VarError> {
    let mut merged = Merged::default();
    merge_dir(from, to, &mut merged)?;
    Ok(merged)
}

fn merge_dir(from: &Path, to: &Path, merged: &mut Merged) -> Result<(), VarError> {
    let entries = std::fs::read_dir(from).map_err(io("read", from))?;
    for entry in entries {
        let entry = entry.map_err(io("read", from))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&source).map_err(io("inspect", &source))?;
        let exists = std::fs::symlink_metadata(&target).is_ok();
        let kind = meta.file_type();
        if kind.is_dir() {
            if exists {
                merged.kept += 1;
            } else {
                std::fs::create_dir(&target).map_err(io("create", &target))?;
                copy_attributes(&meta, &target)?;
                merged.created += 1;
            }
            // A directory that exists may still lack some of the image's entries.
            if std::fs::metadata(&target).is_ok_and(|m| m.is_dir()) {
                merge_dir(&source, &target, merged)?;
            }
        } else if exists {
            merged.kept += 1;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&source).map_err(io("read link", &source))?;
            std::os::unix::fs::symlink(&link, &target).map_err(io("link", &target))?;
            std::os::unix::fs::lchown(&target, Some(meta.uid()), Some(meta.gid()))
                .map_err(io("chown", &target))?;
            merged.created += 1;
        } else if kind.is_file() {
            std::fs::copy(&source, &target).map_err(io("copy to", &target))?;
            copy_attributes(&meta, &target)?;
            merged.created += 1;
        }
        // Sockets, fifos and devices have no place in an image's /var: skipped.
    }
    Ok(())
}

/// Owner first, then mode: changing the owner clears set-uid/set-gid bits, which the
/// image's directories (`/var/local`, `/var/mail`: set-gid) must keep.
fn copy_attributes(meta: &std::fs::Metadata, target: &Path) -> Result<(), VarError> {
    let (uid, gid) = (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid()));
    if (uid, gid) != (Uid::current(), Gid::current()) {
        nix::unistd::chown(target, Some(uid), Some(gid)).map_err(|e| VarError::Io {
            action: "chown",
            path: target.display().to_string(),
            source: e.into(),
        })?;
    }
    std::fs::set_permissions(
        target,
        std::fs::Permissions::from_mode(meta.mode() & 0o7777),
    )
    .map_err(io("set the mode of", target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_copies_what_is_missing_and_keeps_what_is_there() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let f = from.path();
        std::fs::create_dir_all(f.join("lib/dpkg")).unwrap();
        std::fs::write(f.join("lib/dpkg/status"), b"Package: base-files\n").unwrap();
        std::fs::create_dir(f.join("tmp")).unwrap();
        std::fs::set_permissions(f.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::create_dir(f.join("local")).unwrap();
        std::fs::set_permissions(f.join("local"), std::fs::Permissions::from_mode(0o2775)).unwrap();
        std::os::unix::fs::symlink("/run", f.join("run")).unwrap();
        std::fs::create_dir_all(f.join("log")).unwrap();
        std::fs::write(f.join("log/dpkg.log"), b"from the image").unwrap();
        // What a component (or the CLI's upload) already put in the volume.
        let t = to.path();
        std::fs::create_dir_all(t.join("log/rind")).unwrap();
        std::fs::write(t.join("log/dpkg.log"), b"the node's own").unwrap();

        let merged = merge_tree(f, t).unwrap();
        assert_eq!(
            std::fs::read(t.join("lib/dpkg/status")).unwrap(),
            b"Package: base-files\n"
        );
        let mode = |p: &str| std::fs::metadata(t.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("local"), 0o2775);
        assert_eq!(
            std::fs::read_link(t.join("run")).unwrap(),
            Path::new("/run")
        );
        assert_eq!(
            std::fs::read(t.join("log/dpkg.log")).unwrap(),
            b"the node's own"
        );
        assert!(t.join("log/rind").is_dir());
        // lib, lib/dpkg, lib/dpkg/status, tmp, local, run; log and log/dpkg.log kept.
        assert_eq!(
            merged,
            Merged {
                created: 6,
                kept: 2
            }
        );

        // Idempotent: a second boot creates nothing.
        let again = merge_tree(f, t).unwrap();
        assert_eq!(again.created, 0);
    }

    #[test]
    fn idle_priority_puts_only_the_calling_thread_in_the_idle_class() {
        let problems = std::thread::spawn(|| {
            let problems = idle_priority();
            // SAFETY: pid 0 is the calling thread.
            (problems, unsafe { libc::sched_getscheduler(0) })
        })
        .join()
        .unwrap();
        assert_eq!(problems, (Vec::<String>::new(), libc::SCHED_IDLE));
        // SAFETY: as above; this thread was not changed.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }

    #[test]
    fn a_missing_source_is_an_error_naming_it() {
        let to = tempfile::tempdir().unwrap();
        let err = merge_tree(Path::new("/nonexistent/var"), to.path()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/var"), "{err}");
    }
}
