//! core/v1 Events about pods, as `kubectl describe pod` and `kubectl get events` show
//! them. Used by the kubelet and the scheduler.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};

/// Which pod an event is about.
pub struct Involved<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub resource_version: Option<&'a str>,
}

/// Who reports an event: a component, and the node it runs on when it has one.
pub struct Reporter<'a> {
    pub component: &'a str,
    pub host: Option<&'a str>,
}

pub fn pod_event(
    pod: &Involved<'_>,
    reporter: &Reporter<'_>,
    type_: &str,
    reason: &str,
    message: &str,
) -> Event {
    let now = Timestamp::now();
    Event {
        metadata: ObjectMeta {
            // The object's name plus a unique suffix, as client-go names events.
            name: Some(format!(
                "{}.{:016x}",
                pod.name,
                (now.as_nanosecond() as u64) ^ u64::from(rand::random::<u32>())
            )),
            namespace: Some(pod.namespace.to_string()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.to_string()),
            namespace: Some(pod.namespace.to_string()),
            uid: Some(pod.uid.to_string()),
            resource_version: pod.resource_version.map(str::to_string),
            ..ObjectReference::default()
        },
        type_: Some(type_.to_string()),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        source: Some(EventSource {
            component: Some(reporter.component.to_string()),
            host: reporter.host.map(str::to_string),
        }),
        reporting_component: Some(reporter.component.to_string()),
        reporting_instance: Some(reporter.host.unwrap_or(reporter.component).to_string()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_the_pod_and_reporter() {
        let e = pod_event(
            &Involved {
                namespace: "default",
                name: "hello",
                uid: "u1",
                resource_version: Some("7"),
            },
            &Reporter {
                component: "kubelet",
                host: Some("rind-control-plane"),
            },
            "Normal",
            "Started",
            "Started container hello",
        );
        assert!(e.metadata.name.unwrap().starts_with("hello."));
        assert_eq!(e.involved_object.uid.as_deref(), Some("u1"));
        assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(
            e.source.unwrap().host.as_deref(),
            Some("rind-control-plane")
        );
        assert_eq!(e.count, Some(1));
    }
}
