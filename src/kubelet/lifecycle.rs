//! Lifecycle hooks and the way a container is stopped: `postStart` right after the
//! container starts, `preStop` before the stop signal, then SIGTERM and SIGKILL once
//! the grace period left after the hook runs out (the runtime's `StopContainer`
//! timeout). Events are upstream's: `Killing`, `FailedPreStopHook`,
//! `FailedPostStartHook`.

use super::cri::Cri;
use super::handlers::{self, Outcome, Target};
use super::pods::PodApi;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use rind_runtime::events;
use std::time::{Duration, Instant};

/// Upstream gives a stopping container at least this long unless the deletion asked
/// for less (`--grace-period`), to avoid needless SIGKILLs.
const MINIMUM_GRACE_SECONDS: i64 = 2;
/// How long a `postStart` hook may run; upstream has no bound of its own, but a hook
/// that never returns would hold the pod's sync forever.
const POST_START_LIMIT: Duration = Duration::from_secs(120);

/// Runs one hook handler: a command, an HTTP GET or a sleep.
pub async fn run_hook(target: &Target<'_>, handler: &LifecycleHandler, limit: Duration) -> Outcome {
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        return handlers::exec(target, &command, limit).await;
    }
    if let Some(get) = &handler.http_get {
        return handlers::http_get(target, get, limit).await;
    }
    if let Some(sleep) = &handler.sleep {
        let wanted = Duration::from_secs(sleep.seconds.max(0) as u64);
        tokio::time::sleep(wanted.min(limit)).await;
        return Ok(());
    }
    // Upstream's handler runner knows exec, httpGet and sleep; tcpSocket hooks are
    // deprecated and never ran.
    Err("invalid handler: only exec, httpGet and sleep hooks can run".to_string())
}

/// Runs the container's `postStart` hook, if any. On failure the container is
/// stopped, as upstream does, and the failure returned for its waiting state.
pub async fn post_start(
    cri: &Cri,
    api: &dyn PodApi,
    pod: &Pod,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
) -> Result<(), String> {
    let Some(hook) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
    else {
        return Ok(());
    };
    let target = Target {
        cri,
        container_id,
        container,
        pod_ip,
    };
    let Err(message) = run_hook(&target, hook, POST_START_LIMIT).await else {
        return Ok(());
    };
    tracing::warn!(container = %container.name, "postStart hook failed: {message}");
    let reference = events::container_reference(pod, &container.name);
    // The message stays out of the event, as upstream's, so secrets never leak there.
    api.record_event(
        reference,
        "Warning",
        "FailedPostStartHook",
        "PostStartHook failed",
    )
    .await;
    let grace = termination_grace(pod);
    if let Err(err) = stop(
        cri,
        api,
        pod,
        Some(container),
        container_id,
        pod_ip,
        grace,
        true,
        None,
    )
    .await
    {
        tracing::warn!(container = %container.name, "stopping after a failed postStart hook: {err}");
    }
    Err(message)
}

/// The pod's `terminationGracePeriodSeconds` (30 s when left out).
pub fn termination_grace(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
}

/// Stops a running container as upstream's `killContainer` does: a `Killing` event
/// (with `message`, or "Stopping container NAME"), the `preStop` hook within the
/// grace period, then the stop signal with what is left of it. `exact_grace` is a
/// grace period the caller fixed (a deletion's); otherwise at least 2 s remain.
#[allow(clippy::too_many_arguments)]
pub async fn stop(
    cri: &Cri,
    api: &dyn PodApi,
    pod: &Pod,
    container: Option<&Container>,
    container_id: &str,
    pod_ip: &str,
    grace: i64,
    exact_grace: bool,
    message: Option<String>,
) -> Result<(), super::cri::CriError> {
    let started = Instant::now();
    if let Some(container) = container {
        let message = message.unwrap_or_else(|| format!("Stopping container {}", container.name));
        api.record_event(
            events::container_reference(pod, &container.name),
            "Normal",
            "Killing",
            &message,
        )
        .await;
        if let Some(hook) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            && grace > 0
        {
            let target = Target {
                cri,
                container_id,
                container,
                pod_ip,
            };
            let limit = Duration::from_secs(grace as u64);
            let outcome = tokio::time::timeout(limit, run_hook(&target, hook, limit)).await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(container = %container.name, "preStop hook failed: {err}");
                    api.record_event(
                        events::container_reference(pod, &container.name),
                        "Warning",
                        "FailedPreStopHook",
                        "PreStopHook failed",
                    )
                    .await;
                }
                Err(_) => {
                    tracing::info!(container = %container.name, grace, "preStop hook did not complete in the grace period");
                }
            }
        }
    }
    let spent = started.elapsed().as_secs() as i64;
    let left = if exact_grace {
        // A deletion's grace period is a deadline for the whole stop, hook included,
        // but the signal always gets a moment unless the caller asked for none.
        (grace - spent).max(grace.min(1))
    } else {
        (grace - spent).max(MINIMUM_GRACE_SECONDS)
    };
    cri.stop_container(container_id, left).await
}
