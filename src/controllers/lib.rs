//! The controller-manager: control loops that converge the cluster to what its objects
//! declare. Each controller is a reconcile function over kube-runtime reflector stores
//! (one file each); they talk to our API server over HTTPS like any client, and only
//! the holder of the `kube-controller-manager` Lease runs them (`rind_runtime::leader`).

mod certificates;
mod clusterrole_aggregation;
mod cron;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
pub(crate) mod gc;
mod job;
mod nodeipam;
mod nodelifecycle;
mod owners;
mod podgc;
mod replicaset;
mod resourcequota;
mod rootca;
mod serviceaccount;
mod servicecidr;
mod statefulset;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cascade;
#[cfg(test)]
mod tests_certificates;
#[cfg(test)]
mod tests_cronjob;
#[cfg(test)]
mod tests_disruption;
#[cfg(test)]
mod tests_quota;
#[cfg(test)]
mod tests_servicecidr;
#[cfg(test)]
mod tests_statefulset;
mod volume;

pub use certificates::SigningCa;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use rind_runtime::reflect::{reflect, reflected};
use rind_runtime::{NodeConfig, leader, paths};
use std::sync::Arc;
use std::time::Duration;

/// How long a controller waits before retrying an object whose reconcile failed.
/// Aborts a background task (a reflector's watch) when its owner goes away.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

const ERROR_REQUEUE: Duration = Duration::from_secs(2);
/// Even without any change, every object is looked at again this often (what client-go
/// calls the resync period), so nothing stays wrong because an event was missed.
const RESYNC: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Whether a reconcile error is a write conflict (retry soon, nothing is wrong).
fn is_conflict(err: &ControllerError) -> bool {
    matches!(err, ControllerError::Api(kube::Error::Api(s)) if s.code == 409)
}

/// What every controller does with a failed reconcile: log it and retry soon. A write
/// conflict only means another writer got there first (the retry reads the new
/// version), so it is not logged.
fn error_policy<K, C>(object: Arc<K>, err: &ControllerError, _ctx: Arc<C>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    if !is_conflict(err) {
        let key = match object.namespace() {
            Some(ns) => format!("{ns}/{}", object.name_any()),
            None => object.name_any(),
        };
        tracing::warn!(kind = %K::kind(&()), object = %key, "sync failed: {err}");
    }
    Action::requeue(ERROR_REQUEUE)
}

/// Records an Event about `object` from a controller's recorder, with the reason as
/// its action. A failure is logged, not returned: a sync must not fail (and retry its
/// writes) because its Event could not be written.
async fn publish_event<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    object: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &object.object_ref(&())).await {
        tracing::debug!("cannot record event: {e}");
    }
}

/// An event recorder for one controller, named as upstream's controllers report.
fn recorder(client: &Client, controller: &str) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: controller.to_string(),
            instance: None,
        },
    )
}

/// Runs every controller until one of them fails for good (they do not end otherwise).
pub async fn run_controllers(client: Client, cfg: Settings) -> Result<(), ControllerError> {
    let mut tasks = tokio::task::JoinSet::new();
    // What a new node waits on first: its podCIDR (the network agent writes the CNI
    // config from it, and the node is NotReady until then), then the removal of its
    // not-ready taint. Started before the others, whose first lists compete with them
    // for the API server while a cluster boots.
    if !cfg.pod_subnet.is_empty() {
        tasks.spawn(nodeipam::run(client.clone(), cfg.pod_subnet.clone()));
    }
    tasks.spawn(nodelifecycle::run(
        client.clone(),
        cfg.node_grace.unwrap_or(nodelifecycle::DEFAULT_GRACE),
    ));
    tasks.spawn(replicaset::run(client.clone()));
    tasks.spawn(deployment::run(client.clone()));
    tasks.spawn(gc::run(client.clone()));
    tasks.spawn(endpoints::run(client.clone()));
    tasks.spawn(serviceaccount::run(client.clone()));
    if let Some(ca_pem) = &cfg.root_ca {
        tasks.spawn(rootca::run(client.clone(), ca_pem.clone()));
    }
    tasks.spawn(job::run(client.clone()));
    tasks.spawn(daemonset::run(client.clone()));
    tasks.spawn(statefulset::run(client.clone()));
    tasks.spawn(cronjob::run(
        client.clone(),
        cfg.clock.unwrap_or(jiff::Timestamp::now),
    ));
    tasks.spawn(podgc::run(
        client.clone(),
        cfg.pod_gc_quarantine.unwrap_or(podgc::QUARANTINE),
    ));
    tasks.spawn(volume::run(client.clone()));
    tasks.spawn(clusterrole_aggregation::run(client.clone()));
    tasks.spawn(resourcequota::run(client.clone()));
    tasks.spawn(disruption::run(client.clone()));
    tasks.spawn(servicecidr::run(client.clone()));
    tasks.spawn(certificates::run(client.clone(), cfg.signing_ca.clone()));
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) if e.is_panic() => {
                return Err(ControllerError::Invalid(format!(
                    "a controller panicked: {e}"
                )));
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// What the controllers need to know about the cluster.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The pod network node podCIDRs are carved from (empty: no node IPAM).
    pub pod_subnet: String,
    /// Where the CronJob controller reads the time (None: the system clock).
    pub clock: Option<cronjob::Clock>,
    /// How stale a node's heartbeat may get before it counts as unreachable (None:
    /// upstream's 40 s; tests use a few seconds).
    pub node_grace: Option<Duration>,
    /// How long a node must be gone before the pods bound to it are deleted (None:
    /// upstream's 40 s; tests use a second).
    pub pod_gc_quarantine: Option<Duration>,
    /// The CA the built-in CertificateSigningRequest signers sign with (None: requests
    /// are approved but not signed, as on a controller-manager without the CA key).
    pub signing_ca: Option<certificates::SigningCa>,
    /// The cluster CA (PEM) published to every namespace as `kube-root-ca.crt` (None:
    /// nothing is published).
    pub root_ca: Option<String>,
}

/// Runs the controller-manager inside a node: campaigns for the lease and runs the
/// controllers while it holds it; on SIGTERM gives the lease up so a peer takes over.
pub async fn run_node(cfg: &NodeConfig) -> anyhow::Result<()> {
    rind_runtime::logging::init("info");
    let client = rind_runtime::client::from_kubeconfig_when_ready(
        paths::CONTROLLER_MANAGER_CONF,
        "controller-manager",
    )
    .await?;
    // The cluster CA signs CSRs, as kubeadm points --cluster-signing-cert-file and
    // --cluster-signing-key-file at it; only control-plane nodes hold its key.
    let signing_ca = match (
        std::fs::read_to_string(paths::CA_CRT),
        std::fs::read_to_string(paths::CA_KEY),
    ) {
        (Ok(cert_pem), Ok(key_pem)) => Some(certificates::SigningCa { cert_pem, key_pem }),
        _ => {
            tracing::warn!(
                "no cluster CA key at {}: CertificateSigningRequests will not be signed",
                paths::CA_KEY
            );
            None
        }
    };
    let settings = Settings {
        pod_subnet: cfg.pod_subnet.clone(),
        clock: None,
        node_grace: None,
        pod_gc_quarantine: None,
        // kubeadm's --root-ca-file: the cluster CA every node trusts.
        root_ca: std::fs::read_to_string(paths::CA_CRT).ok(),
        signing_ca,
    };
    let mut elector = leader::Elector::new(
        client.clone(),
        leader::LeaseConfig::controller_manager(leader::identity()),
    );
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        result = elector.run(|| run_controllers(client.clone(), settings.clone())) => result,
        _ = sigterm.recv() => Ok(()),
    };
    if let Err(e) = elector.release().await {
        tracing::warn!("releasing the lease: {e}");
    }
    Ok(result?)
}
