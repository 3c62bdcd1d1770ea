//! Writing decisions back: the `pods/binding` subresource, Events, and the pod's
//! PodScheduled condition when no node fits.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod, PodCondition};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rind_runtime::events;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

pub const SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

fn namespace(pod: &Pod) -> String {
    pod.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Binds the pod to the node with `POST pods/{name}/binding`.
pub async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> Result<(), BindError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace(pod));
    let binding = Binding {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: Some(namespace(pod)),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        },
    };
    let _: serde_json::Value = api
        .create_subresource("binding", &name(pod), &PostParams::default(), &binding)
        .await?;
    Ok(())
}

/// Records an Event about the pod as upstream's scheduler does, through the
/// events.k8s.io/v1 API (core/v1 clients see it too: both share the storage).
pub async fn record_event(
    client: &kube::Client,
    pod: &Pod,
    type_: &str,
    reason: &str,
    action: &str,
    message: &str,
) -> Result<(), BindError> {
    let event = events::new_event(
        events::pod_reference(pod),
        SCHEDULER_NAME,
        action,
        type_,
        reason,
        message,
    );
    let ns = event.metadata.namespace.clone().unwrap_or_default();
    let api: Api<EventV1> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &event).await?;
    Ok(())
}

/// Events waiting to be written; beyond this they are dropped, as upstream's event
/// broadcaster drops events when its queue is full, so events never slow scheduling.
const EVENT_QUEUE: usize = 1000;
/// Event writes in flight at once.
const EVENT_WRITERS: usize = 64;

struct PendingEvent {
    pod: Arc<Pod>,
    type_: &'static str,
    reason: &'static str,
    action: &'static str,
    message: String,
}

/// Writes Events in the background.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<PendingEvent>,
}

impl EventSink {
    /// Starts the writers; they end when every sink clone is dropped.
    pub fn start(client: kube::Client) -> Self {
        let (tx, mut rx) = mpsc::channel::<PendingEvent>(EVENT_QUEUE);
        tokio::spawn(async move {
            let writers = Arc::new(tokio::sync::Semaphore::new(EVENT_WRITERS));
            while let Some(event) = rx.recv().await {
                let Ok(permit) = writers.clone().acquire_owned().await else {
                    return;
                };
                let client = client.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(err) = record_event(
                        &client,
                        &event.pod,
                        event.type_,
                        event.reason,
                        event.action,
                        &event.message,
                    )
                    .await
                    {
                        tracing::warn!("cannot record a {} event: {err}", event.reason);
                    }
                });
            }
        });
        EventSink { tx }
    }

    /// Queues an event about `pod`; `action` is what the scheduler was doing
    /// (upstream's `Binding` for Scheduled, `Scheduling` for FailedScheduling).
    pub fn send(
        &self,
        pod: &Arc<Pod>,
        type_: &'static str,
        reason: &'static str,
        action: &'static str,
        message: String,
        stats: &super::Stats,
    ) {
        let event = PendingEvent {
            pod: pod.clone(),
            type_,
            reason,
            action,
            message,
        };
        if self.tx.try_send(event).is_err() {
            stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sets `PodScheduled=False` with reason Unschedulable, keeping the other conditions.
pub async fn mark_unschedulable(
    client: &kube::Client,
    pod: &Pod,
    message: &str,
) -> Result<(), BindError> {
    let mut conditions: Vec<PodCondition> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let unchanged = conditions.iter().any(|c| {
        c.type_ == "PodScheduled" && c.status == "False" && c.message.as_deref() == Some(message)
    });
    if unchanged {
        return Ok(());
    }
    conditions.retain(|c| c.type_ != "PodScheduled");
    conditions.push(PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(message.to_string()),
        last_transition_time: Some(Time(Timestamp::now())),
        ..PodCondition::default()
    });
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace(pod));
    let patch = serde_json::json!({ "status": { "phase": "Pending", "conditions": conditions } });
    api.patch_status(&name(pod), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
