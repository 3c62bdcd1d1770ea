//! An object's stored bytes: as served less the resourceVersion (which is the key's
//! revision, not data), in upstream's field order (`rind_api::json`), or converted for
//! kinds stored in another form. Custom objects are stored with sorted keys, as
//! upstream stores its unstructured maps. A write answers with the stored bytes plus
//! the new resourceVersion (spliced in where ObjectMeta has it) instead of serializing
//! the object a second time.

use rind_api::convert;
use rind_api::json;
use rind_api::meta::metadata_mut;
use rind_api::registry::{Resource, Storage};
use rind_api::status::ApiError;
use serde_json::Value;

/// The bytes stored for an object.
pub(super) fn encode(resource: &Resource, object: &Value) -> Result<Vec<u8>, ApiError> {
    encode_stored(resource, object).map(|e| e.bytes)
}

/// An object's stored bytes, and whether they are its served form less the
/// resourceVersion (see `Encoded::served`).
pub(super) struct Encoded {
    pub(super) bytes: Vec<u8>,
    served_form: bool,
}

impl Encoded {
    /// The response body of the object at `revision`, without serializing it again.
    pub(super) fn served(&self, revision: i64) -> Option<Vec<u8>> {
        if !self.served_form {
            return None;
        }
        json::served(&self.bytes, revision, true)
    }
}

pub(super) fn encode_stored(resource: &Resource, object: &Value) -> Result<Encoded, ApiError> {
    if resource.custom.is_some() {
        // The storage version's name, which may differ from the served one.
        let mut stored = convert::to_storage(resource, object.clone());
        metadata_mut(&mut stored).remove("resourceVersion");
        return Ok(Encoded {
            bytes: json::to_vec_sorted(&stored),
            served_form: false,
        });
    }
    if resource.storage != Storage::Native {
        let stored = convert::to_storage(resource, object.clone());
        return Ok(Encoded {
            bytes: json::to_stored(&stored),
            served_form: false,
        });
    }
    Ok(Encoded {
        bytes: json::to_stored(object),
        served_form: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_api::registry::Registry;
    use serde_json::json;

    #[test]
    fn stored_bytes_are_upstreams_less_the_resource_version() {
        let reg = Registry::default();
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "resourceVersion": "12", "labels": {"resourceVersion": "kept"}},
            "data": {"resourceVersion": "kept too"}});
        let configmaps = reg.lookup("", "v1", "configmaps").unwrap();
        assert_eq!(
            String::from_utf8(encode(configmaps, &object).unwrap()).unwrap(),
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","labels":{"resourceVersion":"kept"}},"data":{"resourceVersion":"kept too"}}"#
        );
        // Kinds stored in another form still go through their conversion.
        let events = reg.lookup("events.k8s.io", "v1", "events").unwrap();
        let event = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "resourceVersion": "3"}, "note": "hi"});
        let stored: Value = serde_json::from_slice(&encode(events, &event).unwrap()).unwrap();
        assert!(stored["metadata"].get("resourceVersion").is_none());
        assert_eq!(stored["message"], "hi");
        assert!(encode_stored(events, &event).unwrap().served(4).is_none());
    }

    #[test]
    fn served_json_is_the_stored_bytes_with_the_new_resource_version() {
        let reg = Registry::default();
        let configmaps = reg.lookup("", "v1", "configmaps").unwrap();
        for (object, want) in [
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "resourceVersion": "12", "uid": "u", "generation": 1},
                   "data": {"a": "\"}\""}}),
                r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","uid":"u","resourceVersion":"42","generation":1},"data":{"a":"\"}\""}}"#,
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"resourceVersion": "1"}}),
                r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"42"}}"#,
            ),
        ] {
            let encoded = encode_stored(configmaps, &object).unwrap();
            let served = String::from_utf8(encoded.served(42).unwrap()).unwrap();
            assert_eq!(served, format!("{want}\n"));
        }
    }
}
