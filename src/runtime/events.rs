//! Events about pods, made as upstream's two event recorders make them, so clients
//! find them where they look (`kubectl describe pod`, `kubectl get events
//! --field-selector involvedObject.name=POD`, `reason=Scheduled`, `source=kubelet`):
//!
//! - the kubelet's, core/v1 Events from client-go's legacy recorder
//!   (`tools/record`): `source` is the component and its node, `reportingComponent`
//!   and `reportingInstance` the same two, first and last timestamps and a count of 1,
//!   no `eventTime`;
//! - the scheduler's, events.k8s.io/v1 Events from client-go's events recorder
//!   (`tools/events`): `reportingController` and `reportingInstance`
//!   (`<controller>-<hostname>`), an `action` and an `eventTime`, no source and no
//!   count.
//!
//! Both name an event `<object name>.<nanoseconds in hex>` and point at the pod as
//! `reference.GetReference` does (kind, namespace, name, uid, apiVersion,
//! resourceVersion); an event about one container adds the `fieldPath` the kubelet's
//! `GenerateContainerRef` gives it (`spec.containers{NAME}`).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};

/// The reference to `pod` that upstream's recorders put in an event.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        api_version: Some("v1".into()),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The reference to one container of `pod`: the pod's, with the field path of the
/// container among the pod's containers, init containers or ephemeral containers.
pub fn container_reference(pod: &Pod, container: &str) -> ObjectReference {
    let spec = pod.spec.as_ref();
    let find = |list: Option<Vec<&str>>, field: &str| {
        let names = list?;
        let index = names.iter().position(|name| *name == container)?;
        Some(if container.is_empty() {
            format!("spec.{field}[{index}]")
        } else {
            format!("spec.{field}{{{container}}}")
        })
    };
    let containers = spec.map(|s| s.containers.iter().map(|c| c.name.as_str()).collect());
    let init = spec.and_then(|s| {
        s.init_containers
            .as_ref()
            .map(|cs| cs.iter().map(|c| c.name.as_str()).collect())
    });
    let ephemeral = spec.and_then(|s| {
        s.ephemeral_containers
            .as_ref()
            .map(|cs| cs.iter().map(|c| c.name.as_str()).collect())
    });
    let field_path = find(containers, "containers")
        .or_else(|| find(init, "initContainers"))
        .or_else(|| find(ephemeral, "ephemeralContainers"))
        // Upstream's words for a container the pod does not list.
        .unwrap_or_else(|| format!("implicitly required container {container}"));
    ObjectReference {
        field_path: Some(field_path),
        ..pod_reference(pod)
    }
}

/// `<object name>.<nanoseconds since the epoch in hex>`, as both recorders name events.
fn event_name(regarding: &ObjectReference, now: Timestamp) -> String {
    let name = regarding.name.as_deref().unwrap_or_default();
    format!("{name}.{:x}", now.as_nanosecond())
}

/// The namespace an event about `regarding` lives in: the object's, or `default` for a
/// cluster-scoped one.
fn event_namespace(regarding: &ObjectReference) -> String {
    regarding
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// A core/v1 Event as the legacy recorder makes it, reported by `component` on `host`
/// (the kubelet: `kubelet` on its node).
pub fn legacy_event(
    regarding: ObjectReference,
    component: &str,
    host: &str,
    type_: &str,
    reason: &str,
    message: &str,
) -> Event {
    let now = Timestamp::now();
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(&regarding, now)),
            namespace: Some(event_namespace(&regarding)),
            ..ObjectMeta::default()
        },
        involved_object: regarding,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: Some(host.to_string()),
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        type_: Some(type_.to_string()),
        reporting_component: Some(component.to_string()),
        reporting_instance: Some(host.to_string()),
        ..Event::default()
    }
}

/// An events.k8s.io/v1 Event as the events recorder of `controller` makes it (the
/// scheduler: `default-scheduler`, action `Binding` or `Scheduling`).
pub fn new_event(
    regarding: ObjectReference,
    controller: &str,
    action: &str,
    type_: &str,
    reason: &str,
    note: &str,
) -> EventV1 {
    let now = Timestamp::now();
    EventV1 {
        metadata: ObjectMeta {
            name: Some(event_name(&regarding, now)),
            namespace: Some(event_namespace(&regarding)),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        reporting_controller: Some(controller.to_string()),
        reporting_instance: Some(reporting_instance(controller)),
        action: Some(action.to_string()),
        reason: Some(reason.to_string()),
        regarding: Some(regarding),
        note: Some(note.to_string()),
        type_: Some(type_.to_string()),
        ..EventV1::default()
    }
}

/// `<controller>-<hostname>`: how the events recorder names the instance reporting.
pub fn reporting_instance(controller: &str) -> String {
    format!("{controller}-{}", hostname())
}

/// This machine's host name (a node's is its container's name), from `/etc/hostname`;
/// `rind` when that says nothing.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rind".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "hello", "namespace": "team", "uid": "u1", "resourceVersion": "7"},
            "spec": {
                "initContainers": [{"name": "setup"}],
                "containers": [{"name": "main"}, {"name": "side"}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn references_point_at_the_pod_and_its_containers() {
        let pod = pod();
        let reference = pod_reference(&pod);
        assert_eq!(
            serde_json::to_value(&reference).unwrap(),
            json!({"kind": "Pod", "namespace": "team", "name": "hello", "uid": "u1",
                   "apiVersion": "v1", "resourceVersion": "7"})
        );
        let field = |name: &str| container_reference(&pod, name).field_path.unwrap();
        assert_eq!(field("side"), "spec.containers{side}");
        assert_eq!(field("setup"), "spec.initContainers{setup}");
        assert_eq!(field("gone"), "implicitly required container gone");
    }

    #[test]
    fn kubelet_events_are_the_legacy_recorders() {
        let pod = pod();
        let event = legacy_event(
            container_reference(&pod, "main"),
            "kubelet",
            "node-1",
            "Normal",
            "Started",
            "Started container main",
        );
        let name = event.metadata.name.clone().unwrap();
        let (prefix, nanos) = name.split_once('.').unwrap();
        assert_eq!(prefix, "hello");
        assert!(i128::from_str_radix(nanos, 16).is_ok(), "{name}");
        let mut value = serde_json::to_value(&event).unwrap();
        for volatile in ["firstTimestamp", "lastTimestamp"] {
            assert!(value[volatile].is_string());
            value.as_object_mut().unwrap().remove(volatile);
        }
        value["metadata"].as_object_mut().unwrap().remove("name");
        assert_eq!(
            value,
            json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"namespace": "team"},
                "involvedObject": {"kind": "Pod", "namespace": "team", "name": "hello",
                    "uid": "u1", "apiVersion": "v1", "resourceVersion": "7",
                    "fieldPath": "spec.containers{main}"},
                "reason": "Started",
                "message": "Started container main",
                "source": {"component": "kubelet", "host": "node-1"},
                "count": 1,
                "type": "Normal",
                "reportingComponent": "kubelet",
                "reportingInstance": "node-1"
            })
        );
    }

    #[test]
    fn scheduler_events_are_the_events_recorders() {
        let event = new_event(
            pod_reference(&pod()),
            "default-scheduler",
            "Binding",
            "Normal",
            "Scheduled",
            "Successfully assigned team/hello to node-1",
        );
        let mut value = serde_json::to_value(&event).unwrap();
        assert!(value["eventTime"].is_string());
        value.as_object_mut().unwrap().remove("eventTime");
        value["metadata"].as_object_mut().unwrap().remove("name");
        assert_eq!(
            value,
            json!({
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"namespace": "team"},
                "reportingController": "default-scheduler",
                "reportingInstance": format!("default-scheduler-{}", hostname()),
                "action": "Binding",
                "reason": "Scheduled",
                "regarding": {"kind": "Pod", "namespace": "team", "name": "hello",
                    "uid": "u1", "apiVersion": "v1", "resourceVersion": "7"},
                "note": "Successfully assigned team/hello to node-1",
                "type": "Normal"
            })
        );
    }
}
