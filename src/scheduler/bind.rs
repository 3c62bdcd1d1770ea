//! Writing decisions back: the `pods/binding` subresource, Events, and the pod's
//! PodScheduled condition when no node fits.

use crate::kubelet::events;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Binding, Event, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

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

/// Records a core/v1 Event about the pod, as `kubectl describe pod` shows them.
pub async fn record_event(
    client: &kube::Client,
    pod: &Pod,
    type_: &str,
    reason: &str,
    message: &str,
) -> Result<(), BindError> {
    let ns = namespace(pod);
    let name = name(pod);
    let event = events::pod_event(
        &events::Involved {
            namespace: &ns,
            name: &name,
            uid: pod.metadata.uid.as_deref().unwrap_or(""),
            resource_version: pod.metadata.resource_version.as_deref(),
        },
        &events::Reporter {
            component: SCHEDULER_NAME,
            host: None,
        },
        type_,
        reason,
        message,
    );
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &event).await?;
    Ok(())
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
