//! Crash-loop back-off as upstream's kubelet keeps it: the first restart is
//! immediate, then 10 s doubling up to 5 min; a container that ran 10 min before it
//! ended starts the count over.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before it ended is restarted as if it never failed.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The delay after `failures` back-offs: 10 s doubling up to 5 min, as the kubelet
/// spaces out crash loops and image pulls.
pub fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(10));
    BACKOFF_START.saturating_mul(factor).min(BACKOFF_MAX)
}

/// A duration as Go's `time.Duration` prints it (`10s`, `1m20s`, `5m0s`), which is
/// how upstream's back-off messages show it.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[derive(Debug)]
struct Entry {
    /// Crashes counted since the last reset.
    failures: u32,
    /// The exited instance counted last, so a relist never counts one exit twice.
    last_exit: String,
}

/// Restart back-off per pod container (`uid/name`).
#[derive(Default)]
pub struct RestartBackoff {
    entries: Mutex<HashMap<String, Entry>>,
}

impl RestartBackoff {
    /// How long after its exit the instance `exit_id` (which ran for `ran`) must
    /// wait before the container restarts. `restart_count` seeds a kubelet that
    /// restarted and lost its memory of the container.
    pub fn delay(&self, key: &str, exit_id: &str, ran: Duration, restart_count: i32) -> Duration {
        let Ok(mut entries) = self.entries.lock() else {
            return backoff(restart_count.max(0) as u32);
        };
        let entry = entries.entry(key.to_string()).or_insert_with(|| Entry {
            failures: restart_count.max(0) as u32,
            last_exit: String::new(),
        });
        if entry.last_exit != exit_id {
            entry.failures = if ran >= BACKOFF_RESET {
                1
            } else {
                entry.failures + 1
            };
            entry.last_exit = exit_id.to_string();
        }
        if entry.failures <= 1 {
            Duration::ZERO
        } else {
            backoff(entry.failures - 1)
        }
    }

    /// Forgets the containers of pods (by uid) that are gone.
    pub fn retain_pods(&self, uids: &HashSet<String>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|key, _| {
                key.split_once('/')
                    .is_some_and(|(uid, _)| uids.contains(uid))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(6), Duration::from_secs(300));
        assert_eq!(backoff(60), Duration::from_secs(300));
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }

    #[test]
    fn first_restart_is_immediate_then_doubles_and_resets_after_ten_minutes() {
        let b = RestartBackoff::default();
        let quick = Duration::from_secs(1);
        assert_eq!(b.delay("u/c", "a", quick, 0), Duration::ZERO);
        // The same exit seen again on the next relist counts once.
        assert_eq!(b.delay("u/c", "a", quick, 0), Duration::ZERO);
        assert_eq!(b.delay("u/c", "b", quick, 1), Duration::from_secs(10));
        assert_eq!(b.delay("u/c", "c", quick, 2), Duration::from_secs(20));
        assert_eq!(b.delay("u/c", "d", quick, 3), Duration::from_secs(40));
        assert_eq!(
            b.delay("u/c", "e", Duration::from_secs(601), 4),
            Duration::ZERO
        );
        assert_eq!(b.delay("u/c", "f", quick, 5), Duration::from_secs(10));
        // A kubelet that restarted picks up from the restart count.
        let fresh = RestartBackoff::default();
        assert_eq!(fresh.delay("u/c", "x", quick, 3), Duration::from_secs(40));
        fresh.retain_pods(&HashSet::new());
        assert_eq!(fresh.delay("u/c", "x", quick, 0), Duration::ZERO);
    }
}
