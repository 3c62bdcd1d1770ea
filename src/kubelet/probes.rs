//! Liveness, readiness and startup probes, one task per probe of each running
//! container, as upstream's prober workers: the first run after
//! `initialDelaySeconds`, then one every `periodSeconds`, each bounded by
//! `timeoutSeconds`; a result flips after `successThreshold` successes or
//! `failureThreshold` failures in a row. Readiness starts false, liveness true;
//! until the startup probe succeeds the other two do not run. A liveness or startup
//! verdict of failure stops the container, and the pod worker restarts it with the
//! crash-loop back-off.
//!
//! One departure in timing: until a container's readiness probe first passes, a failed
//! run is retried every `QUICK_RETRY` for the rest of the first period, without an
//! event or a count (the container is not ready either way). The first run comes right
//! as the process starts and usually finds nothing listening yet; upstream's worker
//! ticks from the pod's admission and so probes a moment later, at a random point of
//! the period. Either way a server that comes up is seen within a period; here it is
//! seen within a tenth of a second, which is when a cluster's DNS becomes usable.

use super::cri::Cri;
use super::handlers::{self, Outcome, Target};
use super::lifecycle;
use super::pods::PodApi;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use rind_runtime::events;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// The word upstream's events start with.
    fn word(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// What the probes of one container instance say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ready: bool,
    pub started: bool,
}

struct Watched {
    verdict: Arc<Mutex<Verdict>>,
    cancel: CancellationToken,
    /// When probing began: a runtime listing older than this cannot show the instance.
    since: Instant,
}

/// How soon a failed readiness run is retried before the container was first ready.
const QUICK_RETRY: Duration = Duration::from_millis(100);

/// When to run a failed probe again early (see the module's note), if at all: only a
/// readiness probe that never passed and needs one success, within its first period.
fn quick_retry(
    kind: Kind,
    timing: &Timing,
    ever_ready: bool,
    probing_for: Duration,
) -> Option<Duration> {
    (kind == Kind::Readiness
        && timing.success_threshold == 1
        && !ever_ready
        && probing_for + QUICK_RETRY < timing.period)
        .then_some(QUICK_RETRY)
}

/// The timing of a probe, with upstream's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timing {
    initial_delay: Duration,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
}

impl Timing {
    fn of(probe: &Probe) -> Self {
        let secs =
            |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        let at_least_one = |v: Option<i32>, default: i32| v.unwrap_or(default).max(1) as u32;
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: at_least_one(probe.success_threshold, 1),
            failure_threshold: at_least_one(probe.failure_threshold, 3),
        }
    }
}

/// Consecutive results of one probe and the result they add up to.
#[derive(Debug)]
struct Counter {
    timing: Timing,
    successes: u32,
    failures: u32,
}

impl Counter {
    /// Adds a run's outcome; returns the new result when the thresholds flip it.
    fn add(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            (self.successes >= self.timing.success_threshold).then_some(true)
        } else {
            self.failures += 1;
            self.successes = 0;
            (self.failures >= self.timing.failure_threshold).then_some(false)
        }
    }
}

pub struct Prober {
    cri: Cri,
    api: Arc<dyn PodApi>,
    /// Per running container instance (by runtime ID).
    watched: Mutex<HashMap<String, Watched>>,
}

impl Prober {
    pub fn new(cri: Cri, api: Arc<dyn PodApi>) -> Self {
        Self {
            cri,
            api,
            watched: Mutex::new(HashMap::new()),
        }
    }

    /// Starts probing a running container instance the first time it is seen and
    /// returns what its probes say so far.
    pub fn watch(
        self: &Arc<Self>,
        pod: &Pod,
        container: &Container,
        id: &str,
        pod_ip: &str,
    ) -> Verdict {
        let Ok(mut watched) = self.watched.lock() else {
            return Verdict {
                ready: false,
                started: false,
            };
        };
        if let Some(w) = watched.get(id) {
            return w.verdict.lock().map(|v| *v).unwrap_or(Verdict {
                ready: false,
                started: false,
            });
        }
        let initial = Verdict {
            ready: container.readiness_probe.is_none(),
            started: container.startup_probe.is_none(),
        };
        let verdict = Arc::new(Mutex::new(initial));
        let cancel = CancellationToken::new();
        for (kind, probe) in [
            (Kind::Startup, &container.startup_probe),
            (Kind::Liveness, &container.liveness_probe),
            (Kind::Readiness, &container.readiness_probe),
        ] {
            let Some(probe) = probe.clone() else { continue };
            let worker = Worker {
                prober: self.clone(),
                kind,
                timing: Timing::of(&probe),
                probe,
                pod: pod.clone(),
                container: container.clone(),
                id: id.to_string(),
                pod_ip: pod_ip.to_string(),
                verdict: verdict.clone(),
                cancel: cancel.clone(),
            };
            tokio::spawn(worker.run());
        }
        watched.insert(
            id.to_string(),
            Watched {
                verdict,
                cancel,
                since: Instant::now(),
            },
        );
        initial
    }

    /// Stops the probes of every instance not in `running`, a runtime listing taken
    /// at `listed_at`. An instance whose probing began after that listing is kept: a
    /// sync that started it may have registered it while the listing was under way.
    pub fn retain(&self, running: &HashSet<String>, listed_at: Instant) {
        if let Ok(mut watched) = self.watched.lock() {
            watched.retain(|id, w| {
                let keep = running.contains(id) || w.since >= listed_at;
                if !keep {
                    w.cancel.cancel();
                }
                keep
            });
        }
    }
}

struct Worker {
    prober: Arc<Prober>,
    kind: Kind,
    probe: Probe,
    timing: Timing,
    pod: Pod,
    container: Container,
    id: String,
    pod_ip: String,
    verdict: Arc<Mutex<Verdict>>,
    cancel: CancellationToken,
}

impl Worker {
    fn started(&self) -> bool {
        self.verdict.lock().is_ok_and(|v| v.started)
    }

    fn set(&self, change: impl FnOnce(&mut Verdict)) {
        if let Ok(mut v) = self.verdict.lock() {
            change(&mut v);
        }
    }

    /// Sleeps unless cancelled first; false when cancelled.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    async fn run(self) {
        if !self.pause(self.timing.initial_delay).await {
            return;
        }
        let mut counter = Counter {
            timing: self.timing,
            successes: 0,
            failures: 0,
        };
        let began = Instant::now();
        let mut ever_ready = false;
        loop {
            // Liveness and readiness wait for the startup probe; it stops once it passed.
            let started = self.started();
            let due = match self.kind {
                Kind::Startup => !started,
                _ => started,
            };
            if self.kind == Kind::Startup && started {
                return;
            }
            if due {
                let outcome = tokio::select! {
                    () = self.cancel.cancelled() => return,
                    outcome = self.probe_once() => outcome,
                };
                let quick = match outcome {
                    Ok(_) => None,
                    Err(_) => quick_retry(self.kind, &self.timing, ever_ready, began.elapsed()),
                };
                if let Some(pause) = quick {
                    if !self.pause(pause).await {
                        return;
                    }
                    continue;
                }
                if outcome.is_ok() && self.kind == Kind::Readiness {
                    ever_ready = true;
                }
                if let Err(message) = &outcome {
                    self.prober
                        .api
                        .record_event(
                            events::container_reference(&self.pod, &self.container.name),
                            "Warning",
                            "Unhealthy",
                            &format!("{} probe failed: {message}", self.kind.word()),
                        )
                        .await;
                }
                match (self.kind, counter.add(outcome.is_ok())) {
                    (Kind::Readiness, Some(ready)) => self.set(|v| v.ready = ready),
                    (Kind::Startup, Some(true)) => self.set(|v| v.started = true),
                    (Kind::Liveness | Kind::Startup, Some(false)) => {
                        self.restart().await;
                        return;
                    }
                    _ => {}
                }
            }
            if !self.pause(self.timing.period).await {
                return;
            }
        }
    }

    async fn probe_once(&self) -> Outcome {
        let target = Target {
            cri: &self.prober.cri,
            container_id: &self.id,
            container: &self.container,
            pod_ip: &self.pod_ip,
        };
        let timeout = self.timing.timeout;
        if let Some(exec) = &self.probe.exec {
            let command = exec.command.clone().unwrap_or_default();
            return handlers::exec(&target, &command, timeout).await;
        }
        if let Some(get) = &self.probe.http_get {
            return handlers::http_get(&target, get, timeout).await;
        }
        if let Some(tcp) = &self.probe.tcp_socket {
            let port = handlers::resolve_port(&tcp.port, &self.container)?;
            return handlers::tcp(&target, tcp.host.as_deref(), port, timeout).await;
        }
        if let Some(grpc) = &self.probe.grpc {
            let port = u16::try_from(grpc.port)
                .map_err(|_| format!("invalid port number: {}", grpc.port))?;
            let service = grpc.service.clone().unwrap_or_default();
            return handlers::grpc(&target, port, &service, timeout).await;
        }
        Err("missing probe handler".to_string())
    }

    /// A failed liveness or startup probe: the container is stopped (preStop hook
    /// first) with the probe's or the pod's grace period, to be restarted.
    async fn restart(&self) {
        let name = &self.container.name;
        let message = format!(
            "Container {name} failed {} probe, will be restarted",
            self.kind.word().to_lowercase()
        );
        tracing::info!(pod = ?self.pod.metadata.name, container = %name, "{message}");
        let grace = self
            .probe
            .termination_grace_period_seconds
            .unwrap_or_else(|| lifecycle::termination_grace(&self.pod));
        if let Err(err) = lifecycle::stop(
            &self.prober.cri,
            self.prober.api.as_ref(),
            &self.pod,
            Some(&self.container),
            &self.id,
            &self.pod_ip,
            grace,
            false,
            Some(message),
        )
        .await
        {
            tracing::warn!(container = %name, "stopping after a failed probe: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoApi;

    #[async_trait::async_trait]
    impl PodApi for NoApi {
        async fn patch_status(
            &self,
            _: &super::super::spec::PodKey,
            _: &k8s_openapi::api::core::v1::PodStatus,
        ) -> Result<(), kube::Error> {
            Ok(())
        }
        async fn delete_now(&self, _: &super::super::spec::PodKey) -> Result<(), kube::Error> {
            Ok(())
        }
        async fn record_event(
            &self,
            _: k8s_openapi::api::core::v1::ObjectReference,
            _: &str,
            _: &str,
            _: &str,
        ) {
        }
    }

    #[tokio::test]
    async fn a_container_registered_after_a_listing_survives_it() {
        // The socket is never dialled: a container without probes runs no probe task.
        let prober = Arc::new(Prober::new(Cri::new("/nonexistent.sock"), Arc::new(NoApi)));
        let container = Container {
            name: "c".into(),
            readiness_probe: None,
            ..Container::default()
        };
        let listed_before = Instant::now();
        let verdict = prober.watch(&Pod::default(), &container, "id1", "10.244.0.2");
        // No readiness or startup probe: ready and started from the first report.
        assert_eq!(
            verdict,
            Verdict {
                ready: true,
                started: true
            }
        );
        // A listing taken before the container was registered does not show it yet.
        prober.retain(&HashSet::new(), listed_before);
        assert!(prober.watched.lock().unwrap().contains_key("id1"));
        // A later listing without it means it is gone.
        prober.retain(&HashSet::new(), Instant::now());
        assert!(!prober.watched.lock().unwrap().contains_key("id1"));
    }

    #[test]
    fn timing_defaults_are_upstreams() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.initial_delay, Duration::ZERO);
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
    }

    #[test]
    fn only_a_readiness_probe_never_passed_is_retried_early_within_its_first_period() {
        let timing = Timing::of(&Probe {
            period_seconds: Some(1),
            ..Probe::default()
        });
        let ms = Duration::from_millis;
        assert_eq!(
            quick_retry(Kind::Readiness, &timing, false, ms(0)),
            Some(QUICK_RETRY)
        );
        assert_eq!(
            quick_retry(Kind::Readiness, &timing, false, ms(850)),
            Some(QUICK_RETRY)
        );
        // The period is over: the regular timing from now on.
        assert_eq!(quick_retry(Kind::Readiness, &timing, false, ms(950)), None);
        // Once ready, failures count and are reported as usual.
        assert_eq!(quick_retry(Kind::Readiness, &timing, true, ms(0)), None);
        // Liveness and startup failures always count.
        assert_eq!(quick_retry(Kind::Liveness, &timing, false, ms(0)), None);
        assert_eq!(quick_retry(Kind::Startup, &timing, false, ms(0)), None);
        // Several successes needed: each run counts.
        let twice = Timing::of(&Probe {
            period_seconds: Some(1),
            success_threshold: Some(2),
            ..Probe::default()
        });
        assert_eq!(quick_retry(Kind::Readiness, &twice, false, ms(0)), None);
    }

    #[test]
    fn results_flip_after_thresholds_in_a_row() {
        let timing = Timing::of(&Probe {
            success_threshold: Some(2),
            failure_threshold: Some(2),
            ..Probe::default()
        });
        let mut c = Counter {
            timing,
            successes: 0,
            failures: 0,
        };
        assert_eq!(c.add(false), None);
        assert_eq!(c.add(true), None);
        assert_eq!(c.add(false), None);
        assert_eq!(c.add(false), Some(false));
        assert_eq!(c.add(true), None);
        assert_eq!(c.add(true), Some(true));
    }
}
