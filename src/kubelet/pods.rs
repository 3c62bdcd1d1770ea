//! Pod workers: drive the runtime towards the pods bound to this node, like the real
//! kubelet's sync loop. A relist of the runtime every two seconds (the kubelet's PLEG)
//! plus every watch event triggers a sync; each pod syncs in its own task so a slow
//! graceful stop never holds up the others. Everything is derived from the runtime's
//! state and labels, so a restarted kubelet adopts what is already running.

use super::cri::{self, Cri, CriError, v1};
use super::spec::{self, FieldValues, PodKey};
use super::status::{self, ContainerView, Exit, Instance, SandboxView, Waiting};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const RELIST_PERIOD: Duration = Duration::from_secs(2);
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const DEFAULT_GRACE_SECONDS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Cri(#[from] CriError),
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

/// The back-off delay before the next try after `failures` failures: 10 s doubling up
/// to 5 min, as the kubelet does for crash loops and image pulls.
pub fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(10));
    BACKOFF_START.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Image pulls that failed, per pod container, to space out retries.
#[derive(Default)]
struct PullFailures {
    by_container: HashMap<(String, String), (u32, Instant)>,
}

pub struct PodWorkers {
    pub client: kube::Client,
    pub cri: Cri,
    pub node_ip: String,
    pub store: Store<Pod>,
    in_flight: Mutex<HashSet<String>>,
    pulls: Mutex<PullFailures>,
}

/// Removes a pod's uid from the in-flight set when its sync task ends, however it ends.
struct InFlight {
    workers: Arc<PodWorkers>,
    uid: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.workers.in_flight.lock() {
            set.remove(&self.uid);
        }
    }
}

/// The runtime's objects of one pod.
#[derive(Default, Clone)]
struct PodRuntime {
    sandboxes: Vec<v1::PodSandbox>,
    containers: Vec<v1::Container>,
}

fn label<'a>(labels: &'a HashMap<String, String>, key: &str) -> &'a str {
    labels.get(key).map(String::as_str).unwrap_or("")
}

fn from_nanos(nanos: i64) -> Option<Timestamp> {
    (nanos > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok())
        .flatten()
}

impl PodWorkers {
    pub fn new(client: kube::Client, cri: Cri, node_ip: String, store: Store<Pod>) -> Self {
        Self {
            client,
            cri,
            node_ip,
            store,
            in_flight: Mutex::new(HashSet::new()),
            pulls: Mutex::new(PullFailures::default()),
        }
    }

    /// Runs the sync loop forever; `wake` is notified on every watch event.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>) {
        loop {
            if let Err(err) = self.relist().await {
                tracing::warn!("relist failed: {err}");
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(RELIST_PERIOD) => {}
            }
        }
    }

    async fn relist(self: &Arc<Self>) -> Result<(), CriError> {
        let sandboxes = self.cri.list_sandboxes().await?;
        let containers = self.cri.list_containers().await?;
        let mut runtime: HashMap<String, PodRuntime> = HashMap::new();
        for sandbox in sandboxes {
            let uid = label(&sandbox.labels, cri::LABEL_POD_UID).to_string();
            runtime.entry(uid).or_default().sandboxes.push(sandbox);
        }
        for container in containers {
            let uid = label(&container.labels, cri::LABEL_POD_UID).to_string();
            runtime.entry(uid).or_default().containers.push(container);
        }
        let pods = self.store.state();
        let known: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for pod in pods {
            let Some(uid) = pod.metadata.uid.clone() else {
                continue;
            };
            let objects = runtime.get(&uid).cloned().unwrap_or_default();
            self.spawn(uid, move |w| async move {
                let key = PodKey::of(&pod);
                if let Err(err) = w.sync_pod(&pod, objects).await {
                    tracing::warn!(pod = %format!("{}/{}", key.namespace, key.name), "sync failed: {err}");
                }
            });
        }
        // Sandboxes of pods the API no longer has: the pod was deleted outright.
        for (uid, objects) in runtime {
            if known.contains(&uid) {
                continue;
            }
            self.spawn(uid.clone(), move |w| async move {
                tracing::info!(%uid, "removing the sandboxes of a pod that no longer exists");
                if let Err(err) = w.teardown(&objects, 0).await {
                    tracing::warn!(%uid, "teardown failed: {err}");
                }
                if let Some(sandbox) = objects.sandboxes.first()
                    && let Some(meta) = &sandbox.metadata
                {
                    let key = PodKey {
                        namespace: meta.namespace.clone(),
                        name: meta.name.clone(),
                        uid: meta.uid.clone(),
                    };
                    // The logs go with the pod, as with the real kubelet's cleanup.
                    let _ = tokio::fs::remove_dir_all(key.log_dir()).await;
                }
            });
        }
        Ok(())
    }

    /// Starts `work` for a pod unless a sync of the same pod is still running.
    fn spawn<F, Fut>(self: &Arc<Self>, uid: String, work: F)
    where
        F: FnOnce(Arc<Self>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        {
            let Ok(mut set) = self.in_flight.lock() else {
                return;
            };
            if !set.insert(uid.clone()) {
                return;
            }
        }
        let guard = InFlight {
            workers: self.clone(),
            uid,
        };
        let fut = work(self.clone());
        tokio::spawn(async move {
            fut.await;
            drop(guard);
        });
    }

    /// Stops every container and sandbox of a pod and removes the sandboxes.
    async fn teardown(&self, objects: &PodRuntime, grace_seconds: i64) -> Result<(), CriError> {
        let running = objects
            .containers
            .iter()
            .filter(|c| c.state == v1::ContainerState::ContainerRunning as i32);
        let stops = running.map(|c| self.cri.stop_container(&c.id, grace_seconds));
        for result in futures::future::join_all(stops).await {
            result?;
        }
        for sandbox in &objects.sandboxes {
            self.cri.stop_sandbox(&sandbox.id).await?;
            self.cri.remove_sandbox(&sandbox.id).await?;
        }
        Ok(())
    }

    async fn sync_pod(&self, pod: &Pod, objects: PodRuntime) -> Result<(), SyncError> {
        let key = PodKey::of(pod);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        if pod.metadata.deletion_timestamp.is_some() {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| {
                    pod.spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
                .unwrap_or(DEFAULT_GRACE_SECONDS);
            tracing::info!(pod = %key.name, namespace = %key.namespace, grace, "stopping the pod for deletion");
            self.teardown(&objects, grace).await?;
            // Grace 0 finishes the deletion the API server started; the uid
            // precondition keeps a new pod of the same name safe.
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(key.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&key.name, &params).await {
                Ok(_) => tracing::info!(pod = %key.name, namespace = %key.namespace, "pod deleted"),
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(err) => return Err(err.into()),
            }
            return Ok(());
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // A finished pod keeps its containers, so its logs stay readable.
            return Ok(());
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .as_deref()
            .unwrap_or("Always")
            .to_string();

        let ready = objects
            .sandboxes
            .iter()
            .filter(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
            .max_by_key(|s| s.created_at);
        let sandbox_id = match ready {
            Some(sandbox) => sandbox.id.clone(),
            None => {
                let attempt = objects
                    .sandboxes
                    .iter()
                    .filter_map(|s| s.metadata.as_ref().map(|m| m.attempt + 1))
                    .max()
                    .unwrap_or(0);
                // A dead sandbox takes its containers with it: clear it out first.
                self.teardown(&objects, 0).await?;
                tracing::info!(pod = %key.name, namespace = %key.namespace, attempt, "creating the pod sandbox");
                tokio::fs::create_dir_all(key.log_dir()).await.ok();
                self.cri
                    .run_sandbox(spec::sandbox_config(pod, attempt))
                    .await?
            }
        };
        let sandbox_status = self.cri.sandbox_status(&sandbox_id).await?;
        let sandbox_attempt = sandbox_status
            .metadata
            .as_ref()
            .map(|m| m.attempt)
            .unwrap_or(0);
        let sandbox_view = SandboxView {
            ready: sandbox_status.state == v1::PodSandboxState::SandboxReady as i32,
            ip: sandbox_status
                .network
                .as_ref()
                .map(|n| n.ip.clone())
                .filter(|ip| !ip.is_empty()),
        };
        let pod_ip = sandbox_view.ip.clone().unwrap_or_default();
        let sandbox_config = spec::sandbox_config(pod, sandbox_attempt);
        let fields = FieldValues {
            pod,
            pod_ip: &pod_ip,
            node_ip: &self.node_ip,
        };

        let mut views = Vec::new();
        for container in &spec.containers {
            let mut instances: Vec<&v1::Container> = objects
                .containers
                .iter()
                .filter(|c| {
                    c.pod_sandbox_id == sandbox_id
                        && label(&c.labels, cri::LABEL_CONTAINER_NAME) == container.name
                })
                .collect();
            instances.sort_by_key(|c| std::cmp::Reverse(c.metadata.as_ref().map(|m| m.attempt)));
            let ctx = ContainerCtx {
                pod,
                key: &key,
                container,
                policy: &policy,
                sandbox_id: &sandbox_id,
                sandbox_config: &sandbox_config,
                fields: &fields,
            };
            views.push(self.sync_container(&ctx, &instances).await?);
        }

        let new_status = status::compute(
            pod,
            &self.node_ip,
            Some(&sandbox_view),
            &views,
            Timestamp::now(),
        );
        let changed = serde_json::to_value(&new_status).ok()
            != pod
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok());
        if changed {
            tracing::debug!(pod = %key.name, phase = ?new_status.phase, "updating pod status");
            let patch = serde_json::json!({ "status": new_status });
            api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(())
    }

    /// Makes one container match the spec and reports what it looks like.
    async fn sync_container(
        &self,
        ctx: &ContainerCtx<'_>,
        instances: &[&v1::Container],
    ) -> Result<ContainerView, SyncError> {
        let name = ctx.container.name.clone();
        let image = ctx.container.image.clone().unwrap_or_default();
        let newest = instances.first().copied();
        let restart_count = newest
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.attempt as i32)
            .unwrap_or(0);
        let mut view = ContainerView {
            name: name.clone(),
            image: image.clone(),
            restart_count,
            current: None,
            previous: None,
            waiting: None,
        };
        if let Some(prev) = instances.get(1) {
            view.previous = Some(self.instance(&prev.id).await?);
        }
        let Some(newest) = newest else {
            match self.start_new(ctx, 0).await? {
                Ok(id) => view.current = Some(self.instance(&id).await?),
                Err(waiting) => view.waiting = Some(waiting),
            }
            return Ok(view);
        };
        if newest.state == v1::ContainerState::ContainerCreated as i32 {
            self.cri.start_container(&newest.id).await?;
        }
        let current = self.instance(&newest.id).await?;
        let Some(exit) = current.exit.clone() else {
            view.current = Some(current);
            return Ok(view);
        };
        let restart = match ctx.policy {
            "Never" => false,
            "OnFailure" => exit.code != 0,
            _ => true,
        };
        if !restart {
            view.current = Some(current);
            return Ok(view);
        }
        let delay = backoff(restart_count as u32 + 1);
        let finished = exit.finished_at.unwrap_or_else(Timestamp::now);
        let elapsed = Timestamp::now().duration_since(finished);
        if elapsed.as_secs() < delay.as_secs() as i64 {
            view.previous = Some(current.clone());
            view.current = Some(current);
            view.waiting = Some(Waiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    delay.as_secs(),
                    name,
                    ctx.key.name,
                    ctx.key.namespace,
                    ctx.key.uid
                ),
            });
            return Ok(view);
        }
        // Keep the instance that just exited for `logs --previous`; older ones go.
        for old in instances.iter().skip(1) {
            self.cri.remove_container(&old.id).await?;
        }
        tracing::info!(pod = %ctx.key.name, container = %name, attempt = restart_count + 1, "restarting container");
        view.previous = Some(current);
        view.restart_count = restart_count + 1;
        match self.start_new(ctx, restart_count as u32 + 1).await? {
            Ok(id) => view.current = Some(self.instance(&id).await?),
            Err(waiting) => view.waiting = Some(waiting),
        }
        Ok(view)
    }

    /// Creates and starts a container instance. An unusable image or a runtime
    /// refusal is a state of the container (`Ok(Err(waiting))`), not a sync failure.
    async fn start_new(
        &self,
        ctx: &ContainerCtx<'_>,
        attempt: u32,
    ) -> Result<Result<String, Waiting>, SyncError> {
        let image = ctx.container.image.clone().unwrap_or_default();
        if let Err(waiting) = self
            .ensure_image(ctx.key, &ctx.container.name, &image)
            .await?
        {
            return Ok(Err(waiting));
        }
        let config = spec::container_config(ctx.pod, ctx.container, attempt, ctx.fields);
        let id = match self
            .cri
            .create_container(ctx.sandbox_id, config, ctx.sandbox_config.clone())
            .await
        {
            Ok(id) => id,
            Err(err) => {
                tracing::warn!(pod = %ctx.key.name, container = %ctx.container.name, "create failed: {err}");
                return Ok(Err(Waiting {
                    reason: "CreateContainerError".into(),
                    message: err.to_string(),
                }));
            }
        };
        if let Err(err) = self.cri.start_container(&id).await {
            tracing::warn!(pod = %ctx.key.name, container = %ctx.container.name, "start failed: {err}");
            return Ok(Err(Waiting {
                reason: "RunContainerError".into(),
                message: err.to_string(),
            }));
        }
        tracing::info!(pod = %ctx.key.name, namespace = %ctx.key.namespace, container = %ctx.container.name, id = %id, "container started");
        Ok(Ok(id))
    }

    /// Makes sure the runtime holds the image. No registry is reachable from a rind
    /// node: images arrive with `rind load docker-image`. So an image that is present
    /// is used as it is even with `imagePullPolicy: Always`, and a pull is tried only
    /// for an absent image (it can succeed only where a registry is reachable).
    async fn ensure_image(
        &self,
        key: &PodKey,
        container: &str,
        image: &str,
    ) -> Result<Result<(), Waiting>, CriError> {
        if self.cri.image_status(image).await?.is_some() {
            return Ok(Ok(()));
        }
        let failure_key = (key.uid.clone(), container.to_string());
        let previous = self
            .pulls
            .lock()
            .ok()
            .and_then(|p| p.by_container.get(&failure_key).copied());
        if let Some((count, retry_at)) = previous
            && Instant::now() < retry_at
        {
            return Ok(Err(Waiting {
                reason: "ImagePullBackOff".into(),
                message: format!("Back-off pulling image \"{image}\" ({count} failed attempts)"),
            }));
        }
        match self.cri.pull_image(image).await {
            Ok(_) => {
                if let Ok(mut p) = self.pulls.lock() {
                    p.by_container.remove(&failure_key);
                }
                Ok(Ok(()))
            }
            Err(err) => {
                let count = previous.map(|(c, _)| c + 1).unwrap_or(1);
                if let Ok(mut p) = self.pulls.lock() {
                    p.by_container
                        .insert(failure_key, (count, Instant::now() + backoff(count)));
                }
                tracing::warn!(%image, "image pull failed: {err}");
                Ok(Err(Waiting {
                    reason: "ErrImagePull".into(),
                    message: format!(
                        "failed to pull image \"{image}\": {err} (load it with `rind load docker-image`)"
                    ),
                }))
            }
        }
    }

    async fn instance(&self, id: &str) -> Result<Instance, CriError> {
        let status = self.cri.container_status(id).await?;
        let image_id = [&status.image_id, &status.image_ref]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .or_else(|| status.image.as_ref().map(|i| i.image.clone()))
            .unwrap_or_default();
        let exit = (status.state == v1::ContainerState::ContainerExited as i32).then(|| Exit {
            code: status.exit_code,
            finished_at: from_nanos(status.finished_at),
            reason: match status.reason.as_str() {
                // containerd says "Completed"/"Error" itself; we derive those from the code.
                "Completed" | "Error" => String::new(),
                other => other.to_string(),
            },
            message: status.message.clone(),
        });
        Ok(Instance {
            id: status.id,
            image_id,
            started_at: from_nanos(status.started_at),
            exit,
        })
    }
}

/// Everything a container sync needs to know about its pod.
struct ContainerCtx<'a> {
    pod: &'a Pod,
    key: &'a PodKey,
    container: &'a Container,
    policy: &'a str,
    sandbox_id: &'a str,
    sandbox_config: &'a v1::PodSandboxConfig,
    fields: &'a FieldValues<'a>,
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
}
