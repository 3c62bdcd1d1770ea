//! The scheduling queue: which pending pods are due for an attempt. A pod that found
//! no node waits 1 s, doubling up to 10 s, like the real scheduler's pod back-off.

use std::collections::HashMap;
use std::time::{Duration, Instant};

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Queue {
    /// Per pod uid: failed attempts and when the next attempt is due.
    backoff: HashMap<String, (u32, Instant)>,
}

impl Queue {
    pub fn due(&self, uid: &str, now: Instant) -> bool {
        self.backoff.get(uid).is_none_or(|(_, at)| now >= *at)
    }

    /// Records a failed attempt and returns the delay before the next one.
    pub fn failed(&mut self, uid: &str, now: Instant) -> Duration {
        let attempts = self.backoff.get(uid).map(|(n, _)| n + 1).unwrap_or(1);
        let delay = INITIAL_BACKOFF
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(8)))
            .min(MAX_BACKOFF);
        self.backoff
            .insert(uid.to_string(), (attempts, now + delay));
        delay
    }

    /// Forgets pods that are no longer pending.
    pub fn retain(&mut self, pending: &std::collections::HashSet<String>) {
        self.backoff.retain(|uid, _| pending.contains(uid));
    }

    /// Every pod becomes due at once, e.g. when the set of nodes changed.
    pub fn flush(&mut self) {
        let now = Instant::now();
        for (_, at) in self.backoff.values_mut() {
            *at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut q = Queue::default();
        let now = Instant::now();
        assert!(q.due("p", now));
        assert_eq!(q.failed("p", now), Duration::from_secs(1));
        assert!(!q.due("p", now));
        assert!(q.due("p", now + Duration::from_secs(1)));
        assert_eq!(q.failed("p", now), Duration::from_secs(2));
        for _ in 0..10 {
            q.failed("p", now);
        }
        assert_eq!(q.failed("p", now), Duration::from_secs(10));
        q.flush();
        assert!(q.due("p", Instant::now()));
        q.retain(&Default::default());
        assert!(q.backoff.is_empty());
    }
}
