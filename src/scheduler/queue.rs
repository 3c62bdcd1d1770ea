//! The scheduling queue, modelled on upstream's three queues. Pending pods wait in the
//! active queue (FIFO) for an attempt. A pod no node fits is parked as unschedulable
//! until a cluster event could change that (a node added or changed, a pod removed, or
//! for pods held back by inter-pod rules a pod placed); it then gets its next attempt
//! once its back-off (1 s doubling to 10 s per failed attempt) has passed. Parked pods
//! are retried anyway after `MAX_UNSCHEDULABLE`, in case an event was missed. A pod whose
//! binding failed goes straight to back-off. When no pod is active, the pod an event
//! moved to back-off that is due first is tried at once (upstream's
//! SchedulerPopFromBackoffQ, on by default since 1.34: back-off exists to keep failing
//! pods from starving others, and an idle scheduler starves no one); pods backing off
//! after an error are not.

use k8s_openapi::api::core::v1::Pod;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's podMaxInUnschedulablePodsDuration.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// A cluster change that may make parked pods schedulable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node appeared or changed in a way the filters see.
    Node,
    /// A placed pod went away, freeing its resources, ports and anti-affinity.
    PodRemoved,
    /// A claim, volume or storage class changed (a claim got bound or provisioned).
    Volume,
    /// A pod was placed: only matters to pods waiting on pod affinity or spreading.
    PodPlaced,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Active,
    /// Being scheduled or bound: not in any queue until the outcome is known.
    InFlight,
    Backoff {
        at: Instant,
        /// Backing off after an error (a refused binding), not for lack of a node: never
        /// tried before `at`.
        after_error: bool,
    },
    Unschedulable {
        since: Instant,
        /// Whether a newly placed pod could help (inter-pod affinity, spreading).
        wants_pod_events: bool,
    },
}

struct Entry {
    pod: Arc<Pod>,
    attempts: u32,
    last_failure: Instant,
    state: State,
}

#[derive(Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: VecDeque<String>,
    /// Uids in back-off or parked as unschedulable, so events and ticks only walk
    /// those, not every pending pod.
    waiting: HashSet<String>,
}

fn backoff(attempts: u32) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(8)))
        .min(MAX_BACKOFF)
}

impl Queue {
    /// A pending pod from the watch: queued if new, else only its object refreshed
    /// (our own status updates must not restart its attempts).
    pub fn add_or_update(&mut self, uid: &str, pod: Arc<Pod>) {
        if let Some(entry) = self.entries.get_mut(uid) {
            entry.pod = pod;
            return;
        }
        self.entries.insert(
            uid.to_string(),
            Entry {
                pod,
                attempts: 0,
                last_failure: Instant::now(),
                state: State::Active,
            },
        );
        self.active.push_back(uid.to_string());
    }

    pub fn remove(&mut self, uid: &str) {
        // A stale uid left in `active` is skipped by `pop`.
        self.entries.remove(uid);
        self.waiting.remove(uid);
    }

    /// The next pod to attempt; it stays in flight until `failed`, `bind_failed` or
    /// `remove`.
    pub fn pop(&mut self) -> Option<(String, Arc<Pod>)> {
        while let Some(uid) = self.active.pop_front() {
            if let Some(entry) = self.entries.get_mut(&uid)
                && entry.state == State::Active
            {
                entry.state = State::InFlight;
                return Some((uid, entry.pod.clone()));
            }
        }
        self.pop_from_backoff()
    }

    /// Nothing is active: the pod an event moved to back-off that is due first.
    fn pop_from_backoff(&mut self) -> Option<(String, Arc<Pod>)> {
        let uid = self
            .waiting
            .iter()
            .filter_map(|uid| match self.entries.get(uid)?.state {
                State::Backoff {
                    at,
                    after_error: false,
                } => Some((at, uid)),
                _ => None,
            })
            .min()?
            .1
            .clone();
        self.waiting.remove(&uid);
        let entry = self.entries.get_mut(&uid)?;
        entry.state = State::InFlight;
        Some((uid, entry.pod.clone()))
    }

    /// No node fits: park the pod. Returns the back-off its next attempt waits at least.
    pub fn failed(&mut self, uid: &str, now: Instant, wants_pod_events: bool) -> Duration {
        let Some(entry) = self.entries.get_mut(uid) else {
            return Duration::ZERO;
        };
        entry.attempts += 1;
        entry.last_failure = now;
        entry.state = State::Unschedulable {
            since: now,
            wants_pod_events,
        };
        self.waiting.insert(uid.to_string());
        backoff(entry.attempts)
    }

    /// The API refused the binding: retry after the back-off, without waiting for an
    /// event.
    pub fn bind_failed(&mut self, uid: &str, now: Instant) -> Duration {
        let Some(entry) = self.entries.get_mut(uid) else {
            return Duration::ZERO;
        };
        entry.attempts += 1;
        entry.last_failure = now;
        let delay = backoff(entry.attempts);
        entry.state = State::Backoff {
            at: now + delay,
            after_error: true,
        };
        self.waiting.insert(uid.to_string());
        delay
    }

    /// A cluster event: parked pods it may help move on (to back-off if theirs has not
    /// passed yet).
    pub fn on_event(&mut self, event: ClusterEvent, now: Instant) {
        let mut activated = Vec::new();
        for uid in &self.waiting {
            let Some(entry) = self.entries.get_mut(uid) else {
                continue;
            };
            let State::Unschedulable {
                wants_pod_events, ..
            } = entry.state
            else {
                continue;
            };
            if event == ClusterEvent::PodPlaced && !wants_pod_events {
                continue;
            }
            let due = entry.last_failure + backoff(entry.attempts);
            if due <= now {
                entry.state = State::Active;
                activated.push(uid.clone());
            } else {
                entry.state = State::Backoff {
                    at: due,
                    after_error: false,
                };
            }
        }
        self.activate(activated);
    }

    fn activate(&mut self, uids: Vec<String>) {
        for uid in uids {
            self.waiting.remove(&uid);
            self.active.push_back(uid);
        }
    }

    /// Moves pods whose back-off has passed, and pods parked too long, to active.
    pub fn tick(&mut self, now: Instant) {
        let mut activated = Vec::new();
        for uid in &self.waiting {
            let Some(entry) = self.entries.get_mut(uid) else {
                continue;
            };
            let ready = match entry.state {
                State::Backoff { at, .. } => at <= now,
                State::Unschedulable { since, .. } => {
                    now.duration_since(since) >= MAX_UNSCHEDULABLE
                }
                _ => false,
            };
            if ready {
                entry.state = State::Active;
                activated.push(uid.clone());
            }
        }
        self.activate(activated);
    }

    /// Keeps only the pods `keep` accepts (after a relist).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|uid, _| keep(uid));
        self.waiting.retain(|uid| keep(uid));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Arc<Pod> {
        Arc::new(Pod::default())
    }

    #[test]
    fn fifo_and_in_flight() {
        let mut q = Queue::default();
        q.add_or_update("a", pod());
        q.add_or_update("b", pod());
        q.add_or_update("a", pod());
        assert_eq!(q.pop().map(|(u, _)| u).as_deref(), Some("a"));
        assert_eq!(q.pop().map(|(u, _)| u).as_deref(), Some("b"));
        assert!(q.pop().is_none());
        q.remove("a");
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(5), Duration::from_secs(10));
        assert_eq!(backoff(100), Duration::from_secs(10));
    }

    #[test]
    fn parked_pods_wait_for_an_event_then_their_backoff() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add_or_update("p", pod());
        q.pop();
        assert_eq!(q.failed("p", t0, false), Duration::from_secs(1));
        // Back-off alone does not bring it back: it waits for an event.
        q.tick(t0 + Duration::from_secs(5));
        assert!(q.pop().is_none());
        // A placed pod does not help a pod that only lacks resources.
        q.on_event(ClusterEvent::PodPlaced, t0 + Duration::from_secs(5));
        assert!(q.pop().is_none());
        // A node event within the back-off: due once the back-off passes, unless
        // nothing else is waiting (PopFromBackoffQ): then tried at once.
        q.add_or_update("busy", pod());
        q.on_event(ClusterEvent::Node, t0 + Duration::from_millis(500));
        q.tick(t0 + Duration::from_millis(600));
        assert_eq!(q.pop().map(|(u, _)| u).as_deref(), Some("busy"));
        assert_eq!(q.pop().map(|(u, _)| u).as_deref(), Some("p"));
        assert!(q.pop().is_none());
        // Parked too long: retried even without an event.
        q.failed("p", t0, true);
        q.tick(t0 + MAX_UNSCHEDULABLE);
        assert!(q.pop().is_some());
    }

    #[test]
    fn an_idle_queue_pops_the_pod_due_first_from_backoff() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        for uid in ["late", "early"] {
            q.add_or_update(uid, pod());
            q.pop();
        }
        q.failed("late", t0, false);
        q.failed("late", t0, false); // a second failure: 2 s back-off
        q.failed("early", t0, false);
        q.on_event(ClusterEvent::Node, t0);
        assert_eq!(q.pop().map(|(u, _)| u).as_deref(), Some("early"));
        assert_eq!(q.pop().map(|(u, _)| u).as_deref(), Some("late"));
        assert!(q.pop().is_none());
        // Parked pods no event has moved stay parked.
        q.failed("early", t0, false);
        assert!(q.pop().is_none());
    }

    #[test]
    fn bind_failures_retry_after_backoff() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add_or_update("p", pod());
        q.pop();
        assert_eq!(q.bind_failed("p", t0), Duration::from_secs(1));
        q.tick(t0);
        assert!(q.pop().is_none());
        q.tick(t0 + Duration::from_secs(1));
        assert!(q.pop().is_some());
    }
}
