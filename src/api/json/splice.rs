//! Writing a stored object's bytes as served: the same bytes with
//! `metadata.resourceVersion` (the store's revision, not data) spliced in where Go's
//! `ObjectMeta` has it — after `name`, `generateName`, `namespace`, `selfLink` and
//! `uid`, before `generation` and the rest. Writes and LIST answer this way without
//! decoding the object into a tree and serializing it again.
//!
//! The scan reads only up to the splice point (object keys and the values before it),
//! so the bulk of an object (`spec`, `status`, `managedFields`) is copied, not parsed.
//! Anything unexpected (escaped keys, a `resourceVersion` already there, text that is
//! not an object) returns `None`, and the caller takes the decoding path.

use super::table::{self, Ty};
use std::sync::LazyLock;

/// ObjectMeta's field order: the rank of each field, `resourceVersion`'s own rank.
static OBJECT_META: LazyLock<Option<(&'static table::Struct, u16)>> = LazyLock::new(|| {
    let partial = table::get(table::kind("meta.k8s.io/v1", "PartialObjectMetadata")?);
    let Ty::Struct(id) = partial.field(partial.position("metadata")?).2 else {
        return None;
    };
    let meta = table::get(id);
    Some((meta, meta.position("resourceVersion")?))
});

/// `stored` (a whole object) as served at `revision`, with the newline that ends
/// upstream's response bodies when `body`.
pub fn served(stored: &[u8], revision: i64, body: bool) -> Option<Vec<u8>> {
    let (start, end) = member(stored, b"metadata")?;
    let mut out = Vec::with_capacity(stored.len() + 40);
    out.extend_from_slice(&stored[..start]);
    if !write_metadata(&mut out, &stored[start..end], revision) {
        return None;
    }
    out.extend_from_slice(&stored[end..]);
    if body {
        out.push(b'\n');
    }
    Some(out)
}

/// Appends `metadata` (the JSON text of an object's ObjectMeta, without
/// `resourceVersion`) with `resourceVersion` set to `revision`; false (having written
/// nothing) when the text is not such an object.
pub fn write_metadata(out: &mut Vec<u8>, metadata: &[u8], revision: i64) -> bool {
    let Some(slot) = slot(metadata) else {
        return false;
    };
    out.extend_from_slice(&metadata[..slot.at]);
    if slot.after_member {
        out.push(b',');
    }
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(revision.to_string().as_bytes());
    out.push(b'"');
    if slot.before_member {
        out.push(b',');
    }
    out.extend_from_slice(&metadata[slot.at..]);
    true
}

/// Where the member goes: at byte `at`, after a member (comma first) and/or before one
/// (comma after).
struct Slot {
    at: usize,
    after_member: bool,
    before_member: bool,
}

fn slot(metadata: &[u8]) -> Option<Slot> {
    let (meta, rank) = (*OBJECT_META)?;
    let mut at = ws(metadata, 0);
    if metadata.get(at) != Some(&b'{') {
        return None;
    }
    at = ws(metadata, at + 1);
    let mut after_member = false;
    loop {
        if metadata.get(at) == Some(&b'}') {
            return Some(Slot {
                at,
                after_member,
                before_member: false,
            });
        }
        let key_end = skip_string(metadata, at)?;
        let key = plain_key(&metadata[at..key_end])?;
        // Keys ObjectMeta does not have sort after all of its own.
        let key_rank = meta.position(key).unwrap_or(u16::MAX);
        if key_rank == rank {
            return None;
        }
        if key_rank > rank {
            return Some(Slot {
                at,
                after_member: false,
                before_member: true,
            });
        }
        let colon = ws(metadata, key_end);
        if metadata.get(colon) != Some(&b':') {
            return None;
        }
        let value_end = skip_value(metadata, ws(metadata, colon + 1))?;
        let next = ws(metadata, value_end);
        match metadata.get(next)? {
            b',' => {
                at = ws(metadata, next + 1);
                after_member = true;
            }
            b'}' => {
                return Some(Slot {
                    at: value_end,
                    after_member: true,
                    before_member: false,
                });
            }
            _ => return None,
        }
    }
}

/// The byte range of the value of the top-level member `name` of the object `text`.
fn member(text: &[u8], name: &[u8]) -> Option<(usize, usize)> {
    let mut at = ws(text, 0);
    if text.get(at) != Some(&b'{') {
        return None;
    }
    at = ws(text, at + 1);
    loop {
        let key_end = skip_string(text, at)?;
        let key = plain_key(&text[at..key_end])?;
        let colon = ws(text, key_end);
        if text.get(colon) != Some(&b':') {
            return None;
        }
        let value_at = ws(text, colon + 1);
        let value_end = skip_value(text, value_at)?;
        if key.as_bytes() == name {
            return (text.get(value_at) == Some(&b'{')).then_some((value_at, value_end));
        }
        let next = ws(text, value_end);
        if text.get(next) != Some(&b',') {
            return None;
        }
        at = ws(text, next + 1);
    }
}

/// A quoted key without escapes, unquoted.
fn plain_key(quoted: &[u8]) -> Option<&str> {
    let inner = quoted.get(1..quoted.len().checked_sub(1)?)?;
    if inner.contains(&b'\\') {
        return None;
    }
    std::str::from_utf8(inner).ok()
}

fn ws(text: &[u8], mut at: usize) -> usize {
    while matches!(text.get(at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        at += 1;
    }
    at
}

/// Past the string starting at `at` (its opening quote).
fn skip_string(text: &[u8], at: usize) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match text.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// Past the value starting at `at`.
fn skip_value(text: &[u8], at: usize) -> Option<usize> {
    match text.get(at)? {
        b'"' => skip_string(text, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match text.get(i)? {
                    b'"' => {
                        i = skip_string(text, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let end = text[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .map_or(text.len(), |n| at + n);
            (end > at).then_some(end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(metadata: &str) -> Option<String> {
        let mut out = Vec::new();
        write_metadata(&mut out, metadata.as_bytes(), 42).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_resource_version_goes_where_object_meta_has_it() {
        assert_eq!(
            splice(r#"{"name":"a","namespace":"d","uid":"u","generation":1,"labels":{"x":"y"}}"#)
                .unwrap(),
            r#"{"name":"a","namespace":"d","uid":"u","resourceVersion":"42","generation":1,"labels":{"x":"y"}}"#
        );
        assert_eq!(
            splice(r#"{"name":"a","uid":"u"}"#).unwrap(),
            r#"{"name":"a","uid":"u","resourceVersion":"42"}"#
        );
        assert_eq!(
            splice(r#"{"creationTimestamp":"t"}"#).unwrap(),
            r#"{"resourceVersion":"42","creationTimestamp":"t"}"#
        );
        assert_eq!(splice("{}").unwrap(), r#"{"resourceVersion":"42"}"#);
        assert_eq!(splice(" { } ").unwrap(), r#" { "resourceVersion":"42"} "#);
        // Objects stored before keys were ordered keep theirs: the version goes first.
        assert_eq!(
            splice(r#"{"annotations":{"a":"}"},"name":"a"}"#).unwrap(),
            r#"{"resourceVersion":"42","annotations":{"a":"}"},"name":"a"}"#
        );
    }

    #[test]
    fn unusual_metadata_is_refused() {
        for text in [
            r#"{"name":"a","resourceVersion":"5"}"#,
            r#"{"na\u006de":"a"}"#,
            r#"["name"]"#,
            r#"{"name":"a""#,
            r#"{"name""#,
            "",
        ] {
            assert!(splice(text).is_none(), "{text}");
        }
    }

    #[test]
    fn whole_objects_get_the_version_in_their_metadata() {
        let stored = br#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","uid":"u","creationTimestamp":"t"},"data":{"k":"v"}}"#;
        assert_eq!(
            String::from_utf8(served(stored, 7, true).unwrap()).unwrap(),
            "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"c\",\"uid\":\"u\",\"resourceVersion\":\"7\",\"creationTimestamp\":\"t\"},\"data\":{\"k\":\"v\"}}\n"
        );
        assert!(served(br#"{"kind":"ConfigMap"}"#, 7, false).is_none());
        assert!(served(br#"{"metadata":[]}"#, 7, false).is_none());
    }
}
