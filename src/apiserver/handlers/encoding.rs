//! An object's stored bytes: as served less the resourceVersion (which is the key's
//! revision, not data), or converted for kinds stored in another form. Kinds stored
//! as served are serialized so the position of metadata's members is known, which
//! lets a write answer with the stored bytes plus the new resourceVersion instead of
//! serializing the object a second time.

use rind_api::convert;
use rind_api::meta::metadata_mut;
use rind_api::registry::{Resource, Storage};
use rind_api::status::ApiError;
use serde_json::Value;

/// The bytes stored for an object.
pub(super) fn encode(resource: &Resource, object: &Value) -> Result<Vec<u8>, ApiError> {
    encode_stored(resource, object).map(|e| e.bytes)
}

/// An object's stored bytes, and for kinds stored as served where its metadata's
/// members begin in them, so the served JSON is those bytes with the resourceVersion
/// written in (see `Encoded::served`).
pub(super) struct Encoded {
    pub(super) bytes: Vec<u8>,
    /// Offset just past `"metadata":{`.
    metadata_at: Option<usize>,
}

impl Encoded {
    /// The object as served at `revision`, without serializing it again.
    pub(super) fn served(&self, revision: i64) -> Option<Vec<u8>> {
        let at = self.metadata_at?;
        let rv = format!("\"resourceVersion\":\"{revision}\"");
        let mut out = Vec::with_capacity(self.bytes.len() + rv.len() + 1);
        out.extend_from_slice(&self.bytes[..at]);
        out.extend_from_slice(rv.as_bytes());
        if self.bytes.get(at) != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(&self.bytes[at..]);
        Some(out)
    }
}

pub(super) fn encode_stored(resource: &Resource, object: &Value) -> Result<Encoded, ApiError> {
    let failed = |e: serde_json::Error| ApiError::internal(format!("cannot encode object: {e}"));
    if resource.storage != Storage::Native || resource.custom.is_some() {
        let mut stored = convert::to_storage(resource, object.clone());
        metadata_mut(&mut stored).remove("resourceVersion");
        return Ok(Encoded {
            bytes: serde_json::to_vec(&stored).map_err(failed)?,
            metadata_at: None,
        });
    }
    // Stored as served: serialized in place (no trimmed deep copy), the top level by
    // hand so the position of metadata's members is known.
    let Value::Object(root) = object else {
        return Ok(Encoded {
            bytes: serde_json::to_vec(object).map_err(failed)?,
            metadata_at: None,
        });
    };
    let mut out = Vec::with_capacity(2048);
    let mut metadata_at = None;
    out.push(b'{');
    for (i, (key, value)) in root.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key).map_err(failed)?;
        out.push(b':');
        match value {
            Value::Object(metadata) if key == "metadata" => {
                out.push(b'{');
                metadata_at = Some(out.len());
                let members = metadata.iter().filter(|(k, _)| *k != "resourceVersion");
                for (j, (k, v)) in members.enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, k).map_err(failed)?;
                    out.push(b':');
                    serde_json::to_writer(&mut out, v).map_err(failed)?;
                }
                out.push(b'}');
            }
            _ => serde_json::to_writer(&mut out, value).map_err(failed)?,
        }
    }
    out.push(b'}');
    Ok(Encoded {
        bytes: out,
        metadata_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rind_api::registry::Registry;
    use serde_json::json;

    #[test]
    fn stored_bytes_leave_out_the_resource_version() {
        let reg = Registry::default();
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "resourceVersion": "12", "labels": {"resourceVersion": "kept"}},
            "data": {"resourceVersion": "kept too"}});
        let mut want = object.clone();
        metadata_mut(&mut want).remove("resourceVersion");
        let configmaps = reg.lookup("", "v1", "configmaps").unwrap();
        let stored: Value = serde_json::from_slice(&encode(configmaps, &object).unwrap()).unwrap();
        assert_eq!(stored, want);
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
        for object in [
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "resourceVersion": "12", "uid": "u"}, "data": {"a": "\"}\""}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"resourceVersion": "1"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        ] {
            let encoded = encode_stored(configmaps, &object).unwrap();
            let served: Value = serde_json::from_slice(&encoded.served(42).unwrap()).unwrap();
            let mut want = object.clone();
            want["metadata"]["resourceVersion"] = json!("42");
            assert_eq!(served, want);
            let stored: Value = serde_json::from_slice(&encoded.bytes).unwrap();
            assert!(stored["metadata"].get("resourceVersion").is_none());
        }
    }
}
