//! API objects as upstream's API server writes them in JSON, byte for byte.
//!
//! Upstream encodes its Go structs with encoding/json: keys come in the order of the
//! struct's fields (`kind`, `apiVersion`, `metadata` first, embedded `json:",inline"`
//! structs flattened in place), a field tagged `omitempty` is left out when false, 0,
//! "", nil or empty (a struct never is), every other field is written even when unset
//! (as `null`, `""`, `0`, `false` or the struct's own zero), types with their own
//! marshaler write themselves (a zero `metav1.Time` is `null`), strings are
//! HTML-escaped, and a response ends with a newline. rind keeps objects as
//! `serde_json::Value`s, whose maps sort their keys, so this module walks a value of a
//! known kind through the table of upstream's structs (`table`, generated from the Go
//! sources) straight into bytes. Anything the table does not know — custom resources,
//! which upstream itself writes from Go maps, and unknown fields — is written with
//! sorted keys, as Go writes a map.
//!
//! Lists follow upstream's registry: the items of a built-in `…List` carry no
//! `kind`/`apiVersion` (upstream decodes them into typed objects whose type metadata
//! is empty), and stored objects leave out `metadata.resourceVersion`, which is the
//! store's revision rather than data.
//!
//! The same table answers what the Go structs imply beyond the bytes: which present
//! fields Go cannot tell from absent ones (`drop_omitted`, applied to every write so
//! that validation, the field manager and no-op detection see what upstream sees) and
//! a kind's zero value (`zero_of`, what upstream's field manager compares a created
//! object with). `splice` writes a stored object as served without decoding it.

mod go_types;
mod splice;
pub mod table;

pub use splice::{served, write_metadata};

use serde_json::{Map, Value};
use std::sync::LazyLock;
use table::{Field, Omit, Special, Ty};

/// `value` as upstream writes it inside a larger document (a watch event, a list).
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write(&mut out, value);
    out
}

/// `value` as an HTTP response body: upstream's encoder ends it with a newline.
pub fn to_body(value: &Value) -> Vec<u8> {
    let mut out = to_vec(value);
    out.push(b'\n');
    out
}

/// Appends `value` to `out` (see `to_vec`).
pub fn write(out: &mut Vec<u8>, value: &Value) {
    Writer::new(out).embedded(value, false);
}

/// The bytes stored for a built-in object: as served, less `metadata.resourceVersion`.
pub fn to_stored(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    Writer::new(&mut out).embedded(value, true);
    out
}

/// `value` with every object's keys sorted, as Go writes a map: upstream's encoding of
/// custom resources, which it keeps as unstructured maps.
pub fn to_vec_sorted(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    Writer::new(&mut out).generic(value);
    out
}

/// Drops from a built-in object the fields Go's encoding would leave out: those under
/// `omitempty` holding false, 0, "", null or an empty list or map. Upstream decodes
/// every request into its Go structs, where such a field and an absent one are the same
/// thing, so neither its validation, its field manager nor its storage tells them
/// apart; a `Value` does, until this makes them the same. Objects of unknown kinds
/// (custom resources, which upstream keeps as maps) are left as they are.
pub fn drop_omitted(object: &mut Value) {
    if let Some(id) = kind_of(object)
        && let Value::Object(map) = object
    {
        drop_in_struct(id, map);
    }
}

fn drop_in_struct(id: u16, map: &mut Map<String, Value>) {
    let s = table::get(id);
    map.retain(|name, value| {
        s.position(name)
            .is_none_or(|index| !omitted(s.field(index), value))
    });
    for (name, value) in map.iter_mut() {
        if let Some(index) = s.position(name) {
            drop_in_value(s.field(index).2, value);
        }
    }
}

fn drop_in_value(ty: Ty, value: &mut Value) {
    match (ty, value) {
        (Ty::Ptr(inner), value) => drop_in_value(*inner, value),
        (Ty::Struct(id), Value::Object(map)) => drop_in_struct(id, map),
        (Ty::Slice(item), Value::Array(items)) => {
            for element in items {
                drop_in_value(*item, element);
            }
        }
        (Ty::Map(item), Value::Object(map)) => {
            for element in map.values_mut() {
                drop_in_value(*item, element);
            }
        }
        (
            Ty::Special(
                Special::SchemaOrArray(id)
                | Special::SchemaOrBool(id)
                | Special::SchemaOrStringArray(id),
            ),
            Value::Object(map),
        ) => drop_in_struct(id, map),
        (Ty::Special(Special::SchemaOrArray(id)), Value::Array(items)) => {
            for element in items {
                drop_in_value(Ty::Struct(id), element);
            }
        }
        // Scalars; and raw extensions, which upstream keeps byte for byte.
        _ => {}
    }
}

/// The zero value of the built-in kind `kind` at `api_version`, as Go's encoder writes
/// an empty struct of that type (`{"metadata":{},"spec":{"containers":null},"status":{}}`
/// for a Pod): what upstream's field manager compares a created object with, so fields
/// present in the zero value are not counted as added themselves.
pub fn zero_of(api_version: &str, kind: &str) -> Option<Value> {
    Some(zero_value(Ty::Struct(table::kind(api_version, kind)?)))
}

fn zero_value(ty: Ty) -> Value {
    match ty {
        Ty::Str => Value::String(String::new()),
        Ty::Int | Ty::Float => Value::from(0),
        Ty::Bool => Value::Bool(false),
        Ty::Bytes | Ty::Ptr(_) | Ty::Slice(_) | Ty::Map(_) => Value::Null,
        Ty::Special(special) => serde_json::from_slice(special.zero()).unwrap_or(Value::Null),
        Ty::Struct(id) => {
            let s = table::get(id);
            Value::Object(
                s.always
                    .iter()
                    .map(|&i| (s.field(i).0.to_string(), zero_value(s.field(i).2)))
                    .collect(),
            )
        }
    }
}

/// `row` as upstream's `metav1.TableRow` (a Table's rows written one by one).
pub fn write_table_row(out: &mut Vec<u8>, row: &Value) {
    static TABLE_ROW: LazyLock<Option<u16>> = LazyLock::new(|| {
        let table = table::get(table::kind("meta.k8s.io/v1", "Table")?);
        match table.field(table.position("rows")?).2 {
            Ty::Slice(Ty::Struct(id)) => Some(*id),
            _ => None,
        }
    });
    let mut writer = Writer::new(out);
    match (*TABLE_ROW, row) {
        (Some(id), Value::Object(map)) => writer.object(id, map, Role::Nested),
        _ => writer.generic(row),
    }
}

/// `object` as an item of its kind's list (see the module's note on lists).
pub fn write_list_item(out: &mut Vec<u8>, object: &Value) {
    let mut writer = Writer::new(out);
    match (object, kind_of(object)) {
        (Value::Object(map), Some(id)) if typed_item(id) => writer.object(id, map, Role::ListItem),
        _ => writer.embedded(object, false),
    }
}

/// One line of a watch stream: upstream's `metav1.WatchEvent` (`type` before
/// `object`) and the newline its encoder ends each event with.
pub fn watch_event(kind: &str, object: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    event_head(&mut out, kind);
    write(&mut out, object);
    out.extend_from_slice(b"}\n");
    out
}

/// `watch_event` for an object serialized already.
pub fn watch_event_raw(kind: &str, object: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(object.len() + 32);
    event_head(&mut out, kind);
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    out
}

fn event_head(out: &mut Vec<u8>, kind: &str) {
    out.extend_from_slice(b"{\"type\":");
    Writer::new(out).string(kind);
    out.extend_from_slice(b",\"object\":");
}

/// What a struct being written is, for the few rules that depend on where it sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Nested,
    /// A whole object of a known kind; `stored`: written for the store.
    Root {
        stored: bool,
    },
    /// An item of a built-in list: no `kind`/`apiVersion`.
    ListItem,
    /// A stored object's `metadata`: no `resourceVersion`.
    StoredMetadata,
}

struct Writer<'a, 'o> {
    out: &'o mut Vec<u8>,
    /// The present fields of the structs being written, as (Go index, value); each
    /// struct sorts the tail it pushed, so nested structs share one allocation.
    present: Vec<(u16, &'a Value)>,
}

impl<'a, 'o> Writer<'a, 'o> {
    fn new(out: &'o mut Vec<u8>) -> Self {
        Writer {
            out,
            present: Vec::with_capacity(64),
        }
    }

    /// A value that may be an object of a known kind (`runtime.RawExtension`, a watch
    /// event's object, a response body).
    fn embedded(&mut self, value: &'a Value, stored: bool) {
        match (value, kind_of(value)) {
            (Value::Object(map), Some(id)) => self.object(id, map, Role::Root { stored }),
            (Value::Object(map), None) if stored => self.sorted_without_version(map),
            _ => self.generic(value),
        }
    }

    /// An object of a kind the table does not know, for the store: sorted keys, and
    /// no `metadata.resourceVersion`.
    fn sorted_without_version(&mut self, map: &'a Map<String, Value>) {
        let mut first = true;
        self.out.push(b'{');
        for (key, value) in map {
            self.separator(&mut first);
            self.string(key);
            self.out.push(b':');
            match value {
                Value::Object(metadata) if key == "metadata" => {
                    let mut first = true;
                    self.out.push(b'{');
                    for (k, v) in metadata.iter().filter(|(k, _)| *k != "resourceVersion") {
                        self.separator(&mut first);
                        self.string(k);
                        self.out.push(b':');
                        self.generic(v);
                    }
                    self.out.push(b'}');
                }
                _ => self.generic(value),
            }
        }
        self.out.push(b'}');
    }

    /// Writes `map` as the struct `id`: present fields and the fields Go writes even
    /// when unset, merged in Go's order; then fields the struct does not have, sorted.
    fn object(&mut self, id: u16, map: &'a Map<String, Value>, role: Role) {
        let s = table::get(id);
        let base = self.present.len();
        let mut unknown = false;
        for (name, value) in map {
            match s.position(name) {
                Some(index) => self.present.push((index, value)),
                None => unknown = true,
            }
        }
        self.present[base..].sort_unstable_by_key(|&(index, _)| index);
        let end = self.present.len();
        let (mut next, mut always) = (base, s.always.iter().copied().peekable());
        let mut first = true;
        self.out.push(b'{');
        loop {
            let present = (next < end).then(|| self.present[next]);
            let (index, value) = match (present, always.peek().copied()) {
                (None, None) => break,
                (None, Some(j)) => {
                    always.next();
                    (j, None)
                }
                (Some((i, _)), Some(j)) if j < i => {
                    always.next();
                    (j, None)
                }
                (Some((i, value)), unset) => {
                    if unset == Some(i) {
                        always.next();
                    }
                    next += 1;
                    (i, Some(value))
                }
            };
            let field = s.field(index);
            if role != Role::Nested && skipped(role, field.0) {
                continue;
            }
            match value {
                Some(value) if omitted(field, value) => {}
                Some(value) => {
                    self.key(field.0, &mut first);
                    self.field(field, value, role);
                }
                None => {
                    self.key(field.0, &mut first);
                    self.zero(field.2);
                }
            }
        }
        if unknown {
            for (name, value) in map {
                if s.position(name).is_none() {
                    self.separator(&mut first);
                    self.string(name);
                    self.out.push(b':');
                    self.generic(value);
                }
            }
        }
        self.present.truncate(base);
        self.out.push(b'}');
    }

    /// A present field's value; a root's `metadata` and `items` follow the root's rules.
    fn field(&mut self, field: &Field, value: &'a Value, role: Role) {
        match (role, field.0, field.2, value) {
            (Role::Root { stored: true }, "metadata", Ty::Struct(id), Value::Object(map)) => {
                self.object(id, map, Role::StoredMetadata);
            }
            (Role::Root { .. }, "items", Ty::Slice(Ty::Struct(id)), Value::Array(items))
                if typed_item(*id) =>
            {
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    match item {
                        Value::Object(map) => self.object(*id, map, Role::ListItem),
                        other => self.value(Ty::Struct(*id), other),
                    }
                }
                self.out.push(b']');
            }
            _ => self.value(field.2, value),
        }
    }

    fn value(&mut self, ty: Ty, value: &'a Value) {
        match (ty, value) {
            (Ty::Ptr(_), Value::Null) => self.out.extend_from_slice(b"null"),
            (Ty::Ptr(inner), _) => self.value(*inner, value),
            // Go decodes null into a value type as its zero.
            (_, Value::Null) => self.zero(ty),
            (Ty::Struct(id), Value::Object(map)) => self.object(id, map, Role::Nested),
            (Ty::Slice(item), Value::Array(items)) => {
                self.out.push(b'[');
                for (i, element) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(*item, element);
                }
                self.out.push(b']');
            }
            (Ty::Map(item), Value::Object(map)) => {
                // Go sorts map keys bytewise, as the map already is.
                let mut first = true;
                self.out.push(b'{');
                for (key, element) in map {
                    self.separator(&mut first);
                    self.string(key);
                    self.out.push(b':');
                    self.value(*item, element);
                }
                self.out.push(b'}');
            }
            (Ty::Special(special), _) => self.special(special, value),
            // Scalars, and values whose shape does not match the type (written as they are).
            _ => self.generic(value),
        }
    }

    fn special(&mut self, special: Special, value: &'a Value) {
        match (special, value) {
            (Special::RawExtension | Special::Json | Special::Any, _) => {
                self.embedded(value, false)
            }
            (
                Special::SchemaOrArray(id)
                | Special::SchemaOrBool(id)
                | Special::SchemaOrStringArray(id),
                Value::Object(map),
            ) => self.object(id, map, Role::Nested),
            (Special::SchemaOrArray(id), Value::Array(items)) => {
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(Ty::Struct(id), item);
                }
                self.out.push(b']');
            }
            _ => self.generic(value),
        }
    }

    /// What Go writes for an unset field of type `ty`.
    fn zero(&mut self, ty: Ty) {
        match ty {
            Ty::Str => self.out.extend_from_slice(b"\"\""),
            Ty::Int | Ty::Float => self.out.push(b'0'),
            Ty::Bool => self.out.extend_from_slice(b"false"),
            Ty::Bytes | Ty::Ptr(_) | Ty::Slice(_) | Ty::Map(_) => {
                self.out.extend_from_slice(b"null")
            }
            Ty::Special(special) => self.out.extend_from_slice(special.zero()),
            Ty::Struct(id) => {
                let s = table::get(id);
                let mut first = true;
                self.out.push(b'{');
                for &index in s.always {
                    let field = s.field(index);
                    self.key(field.0, &mut first);
                    self.zero(field.2);
                }
                self.out.push(b'}');
            }
        }
    }

    fn separator(&mut self, first: &mut bool) {
        if !std::mem::take(first) {
            self.out.push(b',');
        }
    }

    /// A field name from the table: plain ASCII, written without escaping.
    fn key(&mut self, name: &str, first: &mut bool) {
        self.separator(first);
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, text: &str) {
        write_str(self.out, text);
    }

    /// Anything without a struct to follow, as Go writes its maps and values: sorted
    /// keys (a `Map` iterates in key order), Go's escapes and numbers.
    fn generic(&mut self, value: &Value) {
        match value {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Bool(true) => self.out.extend_from_slice(b"true"),
            Value::Bool(false) => self.out.extend_from_slice(b"false"),
            Value::Number(n) => write_number(self.out, n),
            Value::String(text) => write_str(self.out, text),
            Value::Array(items) => {
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.generic(item);
                }
                self.out.push(b']');
            }
            Value::Object(map) => {
                let mut first = true;
                self.out.push(b'{');
                for (key, item) in map {
                    self.separator(&mut first);
                    write_str(self.out, key);
                    self.out.push(b':');
                    self.generic(item);
                }
                self.out.push(b'}');
            }
        }
    }
}

/// The struct of `value`'s kind, when it is an object of a built-in kind.
fn kind_of(value: &Value) -> Option<u16> {
    match (value.get("apiVersion")?, value.get("kind")?) {
        (Value::String(api_version), Value::String(kind)) => table::kind(api_version, kind),
        _ => None,
    }
}

/// Whether the registry serves items of struct `id` in lists without type metadata:
/// typed objects (their first field is TypeMeta's `kind`), but not
/// `PartialObjectMetadata`, which upstream labels in each item.
fn typed_item(id: u16) -> bool {
    table::get(id).fields.first().is_some_and(|f| f.0 == "kind")
        && table::kind("meta.k8s.io/v1", "PartialObjectMetadata") != Some(id)
}

/// Fields a struct in `role` leaves out whatever their value.
fn skipped(role: Role, name: &str) -> bool {
    match role {
        Role::ListItem => name == "kind" || name == "apiVersion",
        Role::StoredMetadata => name == "resourceVersion",
        Role::Nested | Role::Root { .. } => false,
    }
}

/// Whether a present field is left out under its omit rule.
fn omitted(field: &Field, value: &Value) -> bool {
    match field.1 {
        Omit::Never => false,
        Omit::Empty => empty(field.2, value),
        Omit::Zero => is_zero(field.2, value),
    }
}

/// Go's `omitempty` test: false, 0, "", a nil pointer or interface, an empty slice or
/// map. Structs (the special types too, but `Any`) are never empty.
fn empty(ty: Ty, value: &Value) -> bool {
    match (ty, value) {
        (Ty::Struct(_), _) => false,
        (Ty::Special(special), _) => special == Special::Any && value.is_null(),
        (_, Value::Null) => true,
        (Ty::Str | Ty::Bytes, Value::String(s)) => s.is_empty(),
        (Ty::Int | Ty::Float, Value::Number(n)) => n.as_f64() == Some(0.0),
        (Ty::Bool, Value::Bool(b)) => !b,
        (Ty::Slice(_), Value::Array(items)) => items.is_empty(),
        (Ty::Map(_), Value::Object(map)) => map.is_empty(),
        _ => false,
    }
}

/// Go's `omitzero` test: the type's zero value, or what its `IsZero` says (a
/// `metav1.Time` is zero at Go's zero time).
fn is_zero(ty: Ty, value: &Value) -> bool {
    match (ty, value) {
        (Ty::Special(Special::Time), Value::String(s)) => s == "0001-01-01T00:00:00Z",
        (Ty::Struct(_) | Ty::Special(_), _) => value.is_null(),
        _ => empty(ty, value),
    }
}

/// How each byte of a string is written, as Go's encoding/json writes it: 0 as is,
/// `u` as a `\u00XX` escape, another letter as that backslash escape, `E` for the lead
/// byte of U+2028 and U+2029, which Go escapes too. Go's default `SetEscapeHTML(true)`
/// escapes `<`, `>` and `&`; the rest (quote, backslash, control characters, with `\b`
/// and `\f` since Go 1.22) is what every JSON encoder escapes.
static ESCAPES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'<' as usize] = b'u';
    table[b'>' as usize] = b'u';
    table[b'&' as usize] = b'u';
    table[0xe2] = b'E';
    table
};

/// Appends `text` as a JSON string, escaped as Go escapes it, in one pass.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        let escape = ESCAPES[usize::from(byte)];
        if escape == 0 {
            at += 1;
            continue;
        }
        if escape == b'E' {
            // U+2028 and U+2029 are E2 80 A8 and E2 80 A9; other E2 sequences pass.
            match (bytes.get(at + 1), bytes.get(at + 2)) {
                (Some(0x80), Some(&last @ (0xa8 | 0xa9))) => {
                    out.extend_from_slice(&bytes[start..at]);
                    out.extend_from_slice(if last == 0xa8 { b"\\u2028" } else { b"\\u2029" });
                    at += 3;
                    start = at;
                }
                _ => at += 1,
            }
            continue;
        }
        out.extend_from_slice(&bytes[start..at]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        at += 1;
        start = at;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a number as Go writes it: integers as they are; floats in Go's shortest
/// form, strconv's 'f' format (`1` for 1.0) but below 1e-6 and from 1e21 on, where
/// it is 'e' with a signed exponent (`1e+21`, `1.5e-7`).
fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = match (n.as_i64(), n.as_u64(), n.as_f64()) {
        (Some(i), _, _) => write!(out, "{i}"),
        (None, Some(u), _) => write!(out, "{u}"),
        (None, None, Some(f)) => {
            let abs = f.abs();
            if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
                let text = format!("{f:e}");
                match text.split_once('e') {
                    Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                        write!(out, "{mantissa}e+{exponent}")
                    }
                    _ => out.write_all(text.as_bytes()),
                }
            } else {
                write!(out, "{f}")
            }
        }
        (None, None, None) => out.write_all(n.to_string().as_bytes()),
    };
}

#[cfg(test)]
mod tests;
