//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection
//! does it: the holder renews `spec.renewTime` every `renew_period`; a candidate takes
//! the lease over once it has seen the same record unchanged for `lease_duration`
//! (measured on its own clock, so clock skew between nodes does not matter); only the
//! holder runs the work, and the work stops as soon as renewing fails for longer than
//! the lease lasts. Used by the controller-manager, reusable by the scheduler.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {0}: {1}")]
    Api(String, #[source] kube::Error),
}

/// Which lease to hold and how.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Who we are in `spec.holderIdentity` (upstream: `<hostname>_<uuid>`).
    pub identity: String,
    /// How long a lease is valid after its last renewal (upstream default 15 s).
    pub lease_duration: Duration,
    /// How often the holder renews and candidates retry (upstream: retry period 2 s).
    pub renew_period: Duration,
}

impl LeaseConfig {
    /// The lease upstream's kube-controller-manager holds, with its default timings.
    pub fn controller_manager(identity: String) -> Self {
        LeaseConfig {
            namespace: "kube-system".into(),
            name: "kube-controller-manager".into(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(2),
        }
    }

    /// The lease upstream's kube-scheduler holds, with the same default timings.
    pub fn scheduler(identity: String) -> Self {
        LeaseConfig {
            name: "kube-scheduler".into(),
            ..LeaseConfig::controller_manager(identity)
        }
    }
}

/// `<hostname>_<uuid>`, as upstream components name themselves in leases: the host says
/// where the leader runs, the uuid tells two runs on the same host apart.
pub fn identity() -> String {
    format!("{}_{}", crate::events::hostname(), uuid::Uuid::new_v4())
}

/// How long `release` keeps trying; well within the grace a stopping node gives its
/// components.
const RELEASE_DEADLINE: Duration = Duration::from_secs(3);

/// The last lease record we saw and when we first saw it in this form.
struct Observed {
    record: LeaseSpec,
    at: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observed: Option<Observed>,
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

impl Elector {
    pub fn new(client: kube::Client, cfg: LeaseConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
        }
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api(format!("{}/{}", self.cfg.namespace, self.cfg.name), source)
    }

    fn our_spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = Some(MicroTime(Timestamp::now()));
        let ours = previous.is_some_and(|p| p.holder_identity.as_ref() == Some(&self.cfg.identity));
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(seconds(self.cfg.lease_duration)),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                now.clone()
            },
            renew_time: now,
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to acquire or renew; true when we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let current = match self.api.get_opt(&self.cfg.name).await {
            Ok(current) => current,
            Err(e) => return Err(self.err(e)),
        };
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.our_spec(None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created.spec.unwrap_or_default());
                    Ok(true)
                }
                // Someone else created it first: they lead.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err(e)),
            };
        };
        let record = lease.spec.clone().unwrap_or_default();
        self.observe(record.clone());
        let holder = record.holder_identity.as_deref().unwrap_or("");
        let ours = holder == self.cfg.identity;
        if !ours && !holder.is_empty() && !self.expired(&record) {
            return Ok(false);
        }
        lease.spec = Some(self.our_spec(Some(&record)));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observe(updated.spec.unwrap_or_default());
                Ok(true)
            }
            // Someone else wrote it since we read it: try again next period.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    fn observe(&mut self, record: LeaseSpec) {
        let changed = self.observed.as_ref().is_none_or(|o| o.record != record);
        if changed {
            self.observed = Some(Observed {
                record,
                at: Instant::now(),
            });
        }
    }

    /// Whether the holder has not renewed for the lease's own duration, judged by when
    /// we first saw its current record.
    fn expired(&self, record: &LeaseSpec) -> bool {
        let duration = record
            .lease_duration_seconds
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            .unwrap_or(self.cfg.lease_duration);
        self.observed
            .as_ref()
            .is_some_and(|o| o.at.elapsed() >= duration)
    }

    /// Gives the lease up (empty holder, as client-go's ReleaseOnCancel), so another
    /// candidate takes over at once instead of after the lease expires. Tried again for
    /// a moment when the API cannot be reached: when a whole control-plane node stops,
    /// the first attempt may ride a connection to the node's own API server, stopping
    /// at the same time, and the next one reaches another through the load balancer.
    pub async fn release(&mut self) -> Result<(), LeaderError> {
        let deadline = Instant::now() + RELEASE_DEADLINE;
        loop {
            match self.release_once().await {
                Err(e) if Instant::now() < deadline => {
                    tracing::info!("releasing the lease: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                done => return done,
            }
        }
    }

    async fn release_once(&mut self) -> Result<(), LeaderError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.cfg.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_ref() != Some(&self.cfg.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Waits for the lease, runs `work` while holding it, and stops it (drops the
    /// future) when the lease is lost; then campaigns again. Returns only if `work`
    /// itself returns, with its result.
    pub async fn run<F, Fut, T>(&mut self, mut work: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = T>,
    {
        loop {
            self.acquire().await;
            tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
            let mut running = std::pin::pin!(work());
            tokio::select! {
                result = &mut running => return result,
                () = self.keep() => {
                    tracing::warn!(lease = %self.cfg.name, "lost the lease; stopping");
                }
            }
        }
    }

    /// Returns once we hold the lease.
    async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!("leader election: {e}"),
            }
            tokio::time::sleep(self.cfg.renew_period).await;
        }
    }

    /// Renews until someone else holds the lease, or renewing has failed for longer
    /// than the lease lasts (by then another candidate may have taken it).
    async fn keep(&mut self) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.renew_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!("renewing the lease: {e}");
                    // Stop before the lease can expire, as client-go's renewDeadline.
                    if last_renewed.elapsed() + self.cfg.renew_period >= self.cfg.lease_duration {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_manager_lease_matches_upstream() {
        let cfg = LeaseConfig::controller_manager("me".into());
        assert_eq!(cfg.namespace, "kube-system");
        assert_eq!(cfg.name, "kube-controller-manager");
        assert_eq!(cfg.lease_duration, Duration::from_secs(15));
        assert_eq!(cfg.renew_period, Duration::from_secs(2));
    }

    #[test]
    fn identity_is_unique_per_run() {
        let a = identity();
        let b = identity();
        assert_ne!(a, b);
        assert!(a.contains('_'));
    }
}
