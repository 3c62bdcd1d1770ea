//! Keeping a small long-running process's resident memory to what it uses.
//!
//! Every rind process maps the whole rind binary (tens of MB of code for every
//! component), and one that serves a single purpose (the cluster DNS, the HA load
//! balancer) runs a small part of it. Most of such a process's resident memory is pages
//! of that binary, and start-up (argument parsing, TLS set-up, the first lists of the
//! API) runs code that serving never runs again: measured in a DNS pod, 23 of its
//! 26.5 MB were the binary's pages. `drop_unused_code` unmaps the binary's clean pages
//! once start-up is done, so only what serving touches again comes back (17.6 MB then,
//! on an idle cluster). It only changes which pages of the file are mapped into this
//! process: the file's page cache, and every other process's mapping of it, are
//! untouched; a page needed again is mapped again from the page cache on its next use.
//! (A fault maps the whole page-cache folio it falls in, up to 128 KiB here, so
//! `MADV_RANDOM` would not narrow what comes back, and is not used.)

use std::io;

/// A mapping of the executable: its address range, permissions and whether it holds
/// pages written by the process (relocated data: never dropped).
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    anonymous_kib: u64,
    rss_kib: u64,
}

/// The executable's mappings, from /proc/self/smaps.
fn executable_mappings() -> io::Result<Vec<Mapping>> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut out: Vec<Mapping> = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            // A new mapping: `start-end perms offset dev inode path`.
            out.extend(current.take());
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            if path == exe {
                current = Some(Mapping {
                    start,
                    end,
                    writable: perms.contains('w'),
                    anonymous_kib: 0,
                    rss_kib: 0,
                });
            }
        } else if let Some(mapping) = current.as_mut() {
            // Unreadable counts are taken as pages present: never dropped.
            let mut kib = || fields.next().and_then(|v| v.parse().ok()).unwrap_or(1);
            match first {
                "Anonymous:" => mapping.anonymous_kib = kib(),
                "Rss:" => mapping.rss_kib = kib(),
                _ => {}
            }
        }
    }
    out.extend(current);
    Ok(out)
}

fn advise(mapping: &Mapping, advice: libc::c_int) -> io::Result<()> {
    // SAFETY: the range is one of this process's own mappings of its executable, as
    // the kernel listed it, and MADV_DONTNEED is only applied to read-only mappings
    // without written pages, whose contents are the file's and come back from it
    // unchanged.
    let rc = unsafe {
        libc::madvise(
            mapping.start as *mut libc::c_void,
            mapping.end - mapping.start,
            advice,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unmaps the executable's clean, read-only pages (code and constants), so that
/// only what runs from now on is mapped again.
pub fn drop_unused_code() {
    let result = executable_mappings().and_then(|mappings| {
        mappings
            .iter()
            .filter(|m| !m.writable && m.anonymous_kib == 0)
            .try_for_each(|m| advise(m, libc::MADV_DONTNEED))
    });
    if let Err(err) = result {
        tracing::debug!("MADV_DONTNEED on the executable: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_kib() -> u64 {
        executable_mappings()
            .unwrap()
            .iter()
            .map(|m| m.rss_kib)
            .sum()
    }

    #[test]
    fn dropping_unused_code_lowers_the_executables_resident_pages() {
        let mappings = executable_mappings().unwrap();
        assert!(
            mappings.iter().any(|m| !m.writable && m.anonymous_kib == 0),
            "no clean read-only mapping of the executable"
        );
        let before = resident_kib();
        drop_unused_code();
        // The process goes on running (code comes back from the file) with fewer
        // pages of its executable mapped.
        let after = resident_kib();
        assert!(
            after < before,
            "{after} KiB resident after, {before} KiB before"
        );
    }
}
