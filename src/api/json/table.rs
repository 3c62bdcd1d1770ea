//! The shape of upstream's Go API structs as Go's encoding/json sees them: each
//! struct's JSON fields in declaration order (embedded `json:",inline"` structs
//! flattened in place), each with its omit rule and type. The data is generated
//! (`go_types.rs`, by gen_go_types.py); this module holds its types and lookups.

use super::go_types::{KINDS, STRUCTS};

/// When a field is left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Omit {
    /// No `omitempty`: always written, its zero value when unset.
    Never,
    /// `omitempty`: left out when false, 0, "", nil, or an empty slice or map. A struct
    /// is never empty to encoding/json, so a value struct is always written.
    Empty,
    /// `omitzero` (Go 1.24): left out when the value is its type's zero (for a type with
    /// an `IsZero` method, such as `metav1.Time`, when that says so).
    Zero,
}

/// Types with their own `MarshalJSON`, written as they marshal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// `metav1.Time` and `MicroTime`: an RFC 3339 string, `null` when zero.
    Time,
    /// `metav1.Duration`: a Go duration string, `"0s"` when zero.
    Duration,
    /// `metav1.FieldsV1`: its raw JSON, `null` when empty.
    FieldsV1,
    /// `resource.Quantity`: a string, `"0"` when zero.
    Quantity,
    /// `intstr.IntOrString`: a number or a string, `0` when zero.
    IntOrString,
    /// `runtime.RawExtension`: the embedded object's own JSON, `null` when empty.
    RawExtension,
    /// apiextensions' `JSON`: arbitrary raw JSON, `null` when empty.
    Json,
    /// `interface{}` and `runtime.Object`: whatever the value is, `null` when nil.
    Any,
    /// apiextensions' `JSONSchemaPropsOrArray` (a schema or a list of schemas); the
    /// index is `JSONSchemaProps`'.
    SchemaOrArray(u16),
    /// `JSONSchemaPropsOrBool`: a schema or a bool, `false` when zero.
    SchemaOrBool(u16),
    /// `JSONSchemaPropsOrStringArray`: a schema or a list of strings.
    SchemaOrStringArray(u16),
}

impl Special {
    /// What the type's `MarshalJSON` writes for its zero value.
    pub fn zero(self) -> &'static [u8] {
        match self {
            Special::Duration => b"\"0s\"",
            Special::Quantity => b"\"0\"",
            Special::IntOrString => b"0",
            Special::SchemaOrBool(_) => b"false",
            Special::Time
            | Special::FieldsV1
            | Special::RawExtension
            | Special::Json
            | Special::Any
            | Special::SchemaOrArray(_)
            | Special::SchemaOrStringArray(_) => b"null",
        }
    }
}

/// A field's Go type, as far as the encoder cares.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// `string` and named string types.
    Str,
    /// Every integer type.
    Int,
    Float,
    Bool,
    /// `[]byte`: a base64 string, `null` when nil.
    Bytes,
    /// A struct held by value: an index into the struct table.
    Struct(u16),
    Ptr(&'static Ty),
    Slice(&'static Ty),
    /// A map; Go writes its keys sorted.
    Map(&'static Ty),
    Special(Special),
}

/// One JSON field: name, omit rule, type.
#[derive(Debug)]
pub struct Field(pub &'static str, pub Omit, pub Ty);

/// One Go struct.
#[derive(Debug)]
pub struct Struct {
    /// In Go's order.
    pub fields: &'static [Field],
    /// `(name_key(name), index)` of every field, sorted: a lookup compares integers and
    /// then one name, where a search by name compared strings at every step (the
    /// encoder's hottest spot when it did).
    pub by_hash: &'static [(u32, u16)],
    /// Indices of the fields written even when unset (their zero value), ascending.
    pub always: &'static [u16],
}

impl Struct {
    /// The index of the field named `name`.
    pub fn position(&self, name: &str) -> Option<u16> {
        let hash = name_key(name);
        let mut at = self.by_hash.partition_point(|&(h, _)| h < hash);
        while let Some(&(h, index)) = self.by_hash.get(at) {
            if h != hash {
                break;
            }
            if self.field(index).0 == name {
                return Some(index);
            }
            at += 1;
        }
        None
    }

    pub fn field(&self, index: u16) -> &'static Field {
        &self.fields[usize::from(index)]
    }
}

/// The key the generator indexes field names by: length and first, middle and last
/// bytes, cheap to compute for every key of every object written.
pub fn name_key(name: &str) -> u32 {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            ((bytes.len() as u32 & 0xff) << 24)
                | (u32::from(first) << 16)
                | (u32::from(bytes[bytes.len() / 2]) << 8)
                | u32::from(last)
        }
        _ => 0,
    }
}

pub fn get(index: u16) -> &'static Struct {
    &STRUCTS[usize::from(index)]
}

/// The struct of the built-in kind `kind` at `api_version`.
pub fn kind(api_version: &str, kind: &str) -> Option<u16> {
    KINDS
        .binary_search_by(|(v, k, _)| (*v, *k).cmp(&(api_version, kind)))
        .ok()
        .map(|at| KINDS[at].2)
}

/// Whether Go writes a field of type `ty` under `omit` when it is unset: the rule
/// the generator applied to compute each struct's `always` (checked by a test).
pub fn written_when_unset(omit: Omit, ty: Ty) -> bool {
    match omit {
        Omit::Never => true,
        Omit::Zero => false,
        Omit::Empty => match ty {
            Ty::Struct(_) => true,
            Ty::Special(special) => special != Special::Any,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_consistent() {
        for (at, s) in STRUCTS.iter().enumerate() {
            assert!(
                s.by_hash.windows(2).all(|w| w[0] < w[1]),
                "struct {at}: by_hash"
            );
            assert_eq!(s.position(""), None);
            assert_eq!(s.by_hash.len(), s.fields.len(), "struct {at}");
            for (index, field) in s.fields.iter().enumerate() {
                assert_eq!(
                    s.position(field.0),
                    Some(index as u16),
                    "struct {at}: {}",
                    field.0
                );
                assert!(s.by_hash.contains(&(name_key(field.0), index as u16)));
            }
            assert_eq!(s.position("noSuchField"), None);
            let always: Vec<u16> = (0..s.fields.len() as u16)
                .filter(|&i| written_when_unset(s.field(i).1, s.field(i).2))
                .collect();
            assert_eq!(s.always, always.as_slice(), "struct {at}: always");
            for field in s.fields {
                // Names are written without escaping.
                assert!(
                    field
                        .0
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"\"\\<>&".contains(&b)),
                    "{}",
                    field.0
                );
            }
        }
        assert!(
            KINDS
                .windows(2)
                .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1))
        );
    }

    #[test]
    fn kinds_resolve_to_their_structs() {
        let pod = get(kind("v1", "Pod").expect("Pod"));
        let names: Vec<&str> = pod.fields.iter().map(|f| f.0).collect();
        assert_eq!(names, ["kind", "apiVersion", "metadata", "spec", "status"]);
        assert!(kind("apps/v1", "Deployment").is_some());
        assert!(kind("meta.k8s.io/v1", "Table").is_some());
        assert!(kind("apiextensions.k8s.io/v1", "CustomResourceDefinition").is_some());
        assert!(kind("apiregistration.k8s.io/v1", "APIService").is_some());
        assert!(kind("v1", "Status").is_some());
        assert!(kind("stable.example.com/v1", "CronTab").is_none());
    }
}
