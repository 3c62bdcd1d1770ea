//! Conversion between a resource's served form and the form it is stored in, for
//! resources that share storage with another API (events.k8s.io/v1 Events are stored
//! as core/v1 Events, as upstream does, so both APIs see the same objects; autoscaling/v1
//! HorizontalPodAutoscalers are stored as autoscaling/v2).

use super::registry::{Resource, Storage};
use serde_json::{Map, Value};

/// events.k8s.io/v1 field ⇄ core/v1 field; the rest (metadata, reason, type, action,
/// related, eventTime, series, reportingInstance) have the same names.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(
    object: Value,
    api_version: &str,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
) -> Value {
    let Value::Object(mut map) = object else {
        return object;
    };
    let mut out = Map::new();
    for (from, to) in pairs {
        if let Some(v) = map.remove(from) {
            out.insert(to.to_string(), v);
        }
    }
    out.extend(map);
    out.insert("apiVersion".into(), Value::from(api_version));
    Value::Object(out)
}

/// The stored form of an object served by `resource`.
pub fn to_storage(resource: &Resource, object: Value) -> Value {
    match resource.storage {
        // Custom objects have no conversion (strategy None): only the version differs.
        Storage::Native if let Some(custom) = resource.custom => {
            let stored = format!("{}/{}", resource.group, custom.storage_version);
            rename(object, &stored, std::iter::empty())
        }
        Storage::Native | Storage::NotStored | Storage::Observed => object,
        Storage::CoreEvent => rename(object, "v1", EVENT_FIELDS.iter().copied()),
        Storage::AutoscalingV2 => super::autoscaling::v1_to_v2(object),
    }
}

/// The served form of a stored object.
pub fn from_storage(resource: &Resource, object: Value) -> Value {
    match resource.storage {
        Storage::Native if let Some(custom) = resource.custom => {
            let mut object = object;
            super::crd::read_stored(custom, resource.version, &mut object);
            rename(object, &resource.api_version(), std::iter::empty())
        }
        Storage::Native | Storage::NotStored | Storage::Observed => object,
        Storage::CoreEvent => rename(
            object,
            &resource.api_version(),
            EVENT_FIELDS
                .iter()
                .map(|(served, stored)| (*stored, *served)),
        ),
        Storage::AutoscalingV2 => super::autoscaling::v2_to_v1(object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn events_round_trip_through_core_form() {
        let reg = Registry::default();
        let events = reg.lookup("events.k8s.io", "v1", "events").unwrap();
        let served = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
                            "regarding": {"kind": "Pod", "name": "p"}, "note": "hi", "reason": "Started",
                            "reportingController": "kubelet", "deprecatedCount": 2});
        let stored = to_storage(events, served.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "hi");
        assert_eq!(stored["reportingComponent"], "kubelet");
        assert_eq!(stored["count"], 2);
        assert_eq!(from_storage(events, stored), served);
        let core = reg.lookup("", "v1", "events").unwrap();
        assert_eq!(from_storage(core, served.clone()), served);
    }
}
