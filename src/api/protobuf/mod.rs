//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), as
//! kubectl's typed clients send them for `create configmap|secret|deployment|…`,
//! `auth can-i`, `drain` and `create token`: the magic `k8s\0`, then a
//! `runtime.Unknown` whose `raw` is the object's own protobuf.
//!
//! The body is turned into the JSON (`serde_json::Value`) the handlers already take, so
//! nothing downstream knows the difference. The schema is upstream's `generated.proto`
//! files, vendored whole under `proto/`, compiled into a descriptor set by build.rs and
//! read at run time with prost-reflect: protobuf field names are the JSON names but for
//! a few (`RENAMED`), and the few types whose JSON is not their message shape (times,
//! quantities, int-or-strings, raw extensions, inlined embedded structs) are converted
//! by hand.

use crate::status::ApiError;
use base64::Engine;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage, Value as Field,
};
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// Every protobuf body starts with these four bytes; JSON and YAML never contain NUL.
pub const MAGIC: &[u8] = b"k8s\0";

/// The descriptor set build.rs compiled from `proto/`.
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes_descriptors.bin"));

static POOL: LazyLock<Result<DescriptorPool, String>> =
    LazyLock::new(|| DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string()));

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const OBJECT_META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const DELETE_OPTIONS: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions";

/// Envelopes nested in `RawExtension`s are decoded recursively; a crafted body must not
/// be able to exhaust the stack that way.
const MAX_NESTING: usize = 8;

/// Go structs embedded into their parent (`json:",inline"`) are a nested message on the
/// wire; their fields belong to the parent's JSON object. Keyed by field name and type.
const INLINED: &[(&str, &str)] = &[
    (
        "localObjectReference",
        "k8s.io.api.core.v1.LocalObjectReference",
    ),
    (
        "ephemeralContainerCommon",
        "k8s.io.api.core.v1.EphemeralContainerCommon",
    ),
    ("volumeSource", "k8s.io.api.core.v1.VolumeSource"),
    (
        "persistentVolumeSource",
        "k8s.io.api.core.v1.PersistentVolumeSource",
    ),
    ("handler", "k8s.io.api.core.v1.ProbeHandler"),
    (
        "ingressRuleValue",
        "k8s.io.api.networking.v1.IngressRuleValue",
    ),
];

/// go-to-protobuf names a field after its Go name with the first letter lowered, which is
/// the JSON name everywhere but here (Go `APIGroup`, `UID`). Keyed by message and field;
/// checked against upstream's types.go json tags for every vendored group.
const RENAMED: &[(&str, &str, &str)] = &[
    (
        "k8s.io.api.networking.v1.IngressClassParametersReference",
        "aPIGroup",
        "apiGroup",
    ),
    (
        "k8s.io.api.authentication.v1.BoundObjectReference",
        "uID",
        "uid",
    ),
];

/// Go writes every non-pointer field, so "", 0 and false on the wire usually are an
/// unset `omitempty` field and are left out, as Go's JSON would. These fields are
/// pointers (or lack `omitempty`) and their zero differs from leaving them out
/// (`replicas: 0`, `gracePeriodSeconds: 0`, `runAsUser: 0`, `enableServiceLinks: false`).
/// A `Message.field` entry is needed where the name is a plain int elsewhere (statuses).
const KEEP_ZERO: &[&str] = &[
    "DeploymentSpec.replicas",
    "ReplicationControllerSpec.replicas",
    "ScaleSpec.replicas",
    "activeDeadlineSeconds",
    "allocateLoadBalancerNodePorts",
    "allowPrivilegeEscalation",
    "automountServiceAccountToken",
    "backoffLimit",
    "backoffLimitPerIndex",
    "completions",
    "containerPort",
    "defaultMode",
    "deletionGracePeriodSeconds",
    "enableServiceLinks",
    "exitCode",
    "expirationSeconds",
    "failedJobsHistoryLimit",
    "fsGroup",
    "gid",
    "gracePeriodSeconds",
    "hostUsers",
    "maxFailedIndexes",
    "maxReplicas",
    "maxSkew",
    "minReplicas",
    "mode",
    "orphanDependents",
    "parallelism",
    "port",
    "priority",
    "revisionHistoryLimit",
    "runAsGroup",
    "runAsUser",
    "seconds",
    "startingDeadlineSeconds",
    "succeededCount",
    "successfulJobsHistoryLimit",
    "terminationGracePeriodSeconds",
    "tolerationSeconds",
    "ttlSecondsAfterFinished",
    "uid",
    "value",
];

#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with the Kubernetes magic \"k8s\\x00\"")]
    NoMagic,
    #[error("the protobuf envelope (runtime.Unknown) is malformed: {0}")]
    Envelope(prost::DecodeError),
    #[error("the protobuf body names no apiVersion and kind")]
    NoType,
    #[error("the protobuf body's contentEncoding {0:?} is not supported")]
    Encoding(String),
    #[error("the protobuf body's contentType {0:?} is not supported")]
    ContentType(String),
    #[error("protobuf request bodies of kind {kind} ({api_version}) are not supported; send JSON")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("the {kind} in the protobuf body is malformed: {source}")]
    Object {
        kind: String,
        source: prost::DecodeError,
    },
    #[error("the {kind} in the protobuf body has an invalid {field}: {reason}")]
    Value {
        kind: String,
        field: String,
        reason: String,
    },
    #[error("protobuf objects are nested more than {MAX_NESTING} deep")]
    TooDeep,
    #[error("the server's protobuf schema is unusable: {0}")]
    Schema(String),
}

impl From<ProtobufError> for ApiError {
    fn from(e: ProtobufError) -> Self {
        match e {
            ProtobufError::UnsupportedKind { .. }
            | ProtobufError::Encoding(_)
            | ProtobufError::ContentType(_) => ApiError::unsupported_media_type(e.to_string()),
            ProtobufError::Schema(_) => ApiError::internal(e.to_string()),
            _ => ApiError::bad_request(e.to_string()),
        }
    }
}

/// Whether a body is a protobuf envelope, whatever its Content-Type claims.
pub fn is_envelope(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// The JSON object a protobuf request body carries, with `apiVersion` and `kind`.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_nested(body, 0)
}

fn decode_nested(body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    if depth > MAX_NESTING {
        return Err(ProtobufError::TooDeep);
    }
    let raw = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let pool = POOL
        .as_ref()
        .map_err(|e| ProtobufError::Schema(e.clone()))?;
    let unknown = pool
        .get_message_by_name(UNKNOWN)
        .ok_or_else(|| ProtobufError::Schema(format!("{UNKNOWN} is missing")))?;
    let envelope = DynamicMessage::decode(unknown, raw).map_err(ProtobufError::Envelope)?;
    let text = |path: &[&str]| string_at(&envelope, path);
    let (api_version, kind) = (
        text(&["typeMeta", "apiVersion"]),
        text(&["typeMeta", "kind"]),
    );
    if kind.is_empty() || api_version.is_empty() {
        return Err(ProtobufError::NoType);
    }
    let encoding = text(&["contentEncoding"]);
    if !encoding.is_empty() {
        return Err(ProtobufError::Encoding(encoding));
    }
    let object = match envelope.get_field_by_name("raw").as_deref() {
        Some(Field::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    let content_type = text(&["contentType"]);
    let mut json = match content_type.as_str() {
        "" | "application/vnd.kubernetes.protobuf" => {
            let desc = object_message(pool, &api_version, &kind).ok_or_else(|| {
                ProtobufError::UnsupportedKind {
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                }
            })?;
            let message = DynamicMessage::decode(desc, object.as_ref()).map_err(|source| {
                ProtobufError::Object {
                    kind: kind.clone(),
                    source,
                }
            })?;
            Converter { kind: &kind, depth }.message(&message)?
        }
        // An envelope may carry JSON; it is what the handlers take anyway.
        "application/json" => {
            serde_json::from_slice(&object).map_err(|e| ProtobufError::Value {
                kind: kind.clone(),
                field: "raw".into(),
                reason: e.to_string(),
            })?
        }
        other => return Err(ProtobufError::ContentType(other.to_string())),
    };
    if let Value::Object(fields) = &mut json {
        fields.insert("apiVersion".into(), json!(api_version));
        fields.insert("kind".into(), json!(kind));
    }
    Ok(json)
}

/// A string field reached through singular message fields, or "" when unset.
fn string_at(message: &DynamicMessage, path: &[&str]) -> String {
    let Some((last, parents)) = path.split_last() else {
        return String::new();
    };
    let mut current = message.clone();
    for name in parents {
        match current.get_field_by_name(name).as_deref() {
            Some(Field::Message(m)) => current = m.clone(),
            _ => return String::new(),
        }
    }
    match current.get_field_by_name(last).as_deref() {
        Some(Field::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// The message of a top-level kind: `v1`/`ConfigMap` is `k8s.io.api.core.v1.ConfigMap`,
/// `apps/v1`/`Deployment` is `k8s.io.api.apps.v1.Deployment` (a group's package is its
/// first label). Only messages that are objects (field 1 is `metadata`) qualify, so a
/// body cannot claim to be a fragment like `PodSpec`; DeleteOptions is the exception,
/// sent under whatever group version the client used.
fn object_message(
    pool: &DescriptorPool,
    api_version: &str,
    kind: &str,
) -> Option<MessageDescriptor> {
    let simple = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    if !simple(kind) {
        return None;
    }
    if kind == "DeleteOptions" {
        return pool.get_message_by_name(DELETE_OPTIONS);
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    if !simple(version) || (group.contains('.') && !group.ends_with(".k8s.io")) {
        return None;
    }
    let package = match group.split('.').next() {
        None | Some("") => "core",
        Some(first) => first,
    };
    // The aggregator's own group lives in its repository's package, not k8s.io/api.
    let name = if group == "apiregistration.k8s.io" {
        format!("k8s.io.kube_aggregator.pkg.apis.apiregistration.{version}.{kind}")
    } else {
        format!("k8s.io.api.{package}.{version}.{kind}")
    };
    let desc = pool.get_message_by_name(&name)?;
    let metadata = desc.get_field(1)?;
    let is_object = metadata.name() == "metadata"
        && matches!(metadata.kind(), Kind::Message(m) if m.full_name() == OBJECT_META);
    is_object.then_some(desc)
}

/// Protobuf → Kubernetes JSON for one decoded object.
struct Converter<'a> {
    /// The object's kind, for error messages.
    kind: &'a str,
    /// How many envelopes enclose this object.
    depth: usize,
}

impl Converter<'_> {
    fn invalid(&self, field: &FieldDescriptor, reason: impl ToString) -> ProtobufError {
        ProtobufError::Value {
            kind: self.kind.to_string(),
            field: field.name().to_string(),
            reason: reason.to_string(),
        }
    }

    /// A message as JSON: special types by name, everything else field by field.
    fn message(&self, message: &DynamicMessage) -> Result<Value, ProtobufError> {
        let desc = message.descriptor();
        if let Some(special) = self.special(desc.full_name(), message)? {
            return Ok(special);
        }
        if message.unknown_fields().next().is_some() {
            // Fields newer than the vendored schema are lost.
            tracing::debug!(
                kind = self.kind,
                message = desc.full_name(),
                "protobuf body has fields the vendored schema does not know; they are skipped"
            );
        }
        let mut out = Map::new();
        for (field, value) in message.fields() {
            if let Some(Value::Object(inner)) = self.inlined(&field, value)? {
                out.extend(inner);
                continue;
            }
            if omitted_zero(&field, value) {
                continue;
            }
            out.insert(json_name(&field).to_string(), self.field(&field, value)?);
        }
        Ok(Value::Object(out))
    }

    /// The JSON of an embedded Go struct whose fields are inlined into the parent.
    fn inlined(
        &self,
        field: &FieldDescriptor,
        value: &Field,
    ) -> Result<Option<Value>, ProtobufError> {
        let Field::Message(inner) = value else {
            return Ok(None);
        };
        let embedded = INLINED
            .iter()
            .any(|(name, ty)| *name == field.name() && *ty == inner.descriptor().full_name());
        if embedded {
            self.message(inner).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Types whose JSON is not their message shape.
    fn special(
        &self,
        name: &str,
        message: &DynamicMessage,
    ) -> Result<Option<Value>, ProtobufError> {
        let int = |field: &str| match message.get_field_by_name(field).as_deref() {
            Some(Field::I64(v)) => *v,
            Some(Field::I32(v)) => i64::from(*v),
            _ => 0,
        };
        let bytes = |field: &str| match message.get_field_by_name(field).as_deref() {
            Some(Field::Bytes(b)) => b.clone(),
            _ => Default::default(),
        };
        let text = |field: &str| string_at(message, &[field]);
        let present = message.fields().next().is_some();
        let value = match name {
            // Go's zero time is written as an empty message and is null in JSON.
            "k8s.io.apimachinery.pkg.apis.meta.v1.Time" if !present => Value::Null,
            "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" if !present => Value::Null,
            "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => json!(self.time(int("seconds"), None)?),
            "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => {
                json!(self.time(int("seconds"), Some(int("nanos")))?)
            }
            "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => json!(go_duration(int("duration"))),
            "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
                let quantity = text("string");
                json!(if quantity.is_empty() {
                    "0".to_string()
                } else {
                    quantity
                })
            }
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => match int("type") {
                1 => json!(text("strVal")),
                _ => json!(int("intVal")),
            },
            // Raw JSON (managed-field sets, embedded objects), or a nested envelope.
            "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1"
            | "k8s.io.apimachinery.pkg.runtime.RawExtension" => {
                let raw = bytes(if name.ends_with("FieldsV1") {
                    "Raw"
                } else {
                    "raw"
                });
                self.raw_json(&raw)?
            }
            // `map[string]ExtraValue` is `map[string][]string` in JSON.
            "k8s.io.api.authorization.v1.ExtraValue" | "k8s.io.api.certificates.v1.ExtraValue" => {
                match message.get_field_by_name("items").as_deref() {
                    Some(Field::List(items)) => Value::Array(
                        items
                            .iter()
                            .filter_map(|i| i.as_str().map(|s| json!(s)))
                            .collect(),
                    ),
                    _ => json!([]),
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(value))
    }

    /// RFC 3339 in UTC: seconds for Time, exactly six fraction digits for MicroTime.
    fn time(&self, seconds: i64, nanos: Option<i64>) -> Result<String, ProtobufError> {
        let ts = jiff::Timestamp::new(seconds, 0).map_err(|e| ProtobufError::Value {
            kind: self.kind.to_string(),
            field: "time".into(),
            reason: e.to_string(),
        })?;
        let whole = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
        Ok(match nanos {
            None => format!("{whole}Z"),
            Some(n) => format!("{whole}.{:06}Z", n.clamp(0, 999_999_999) / 1000),
        })
    }

    fn raw_json(&self, raw: &[u8]) -> Result<Value, ProtobufError> {
        if raw.is_empty() {
            return Ok(Value::Null);
        }
        if is_envelope(raw) {
            return decode_nested(raw, self.depth + 1);
        }
        serde_json::from_slice(raw).map_err(|e| ProtobufError::Value {
            kind: self.kind.to_string(),
            field: "raw".into(),
            reason: format!("not JSON: {e}"),
        })
    }

    fn field(&self, field: &FieldDescriptor, value: &Field) -> Result<Value, ProtobufError> {
        match value {
            Field::List(items) => items
                .iter()
                .map(|item| self.scalar(field, item))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Field::Map(entries) => {
                let mut out = Map::new();
                for (key, item) in entries {
                    let key = match key {
                        MapKey::String(s) => s.clone(),
                        MapKey::Bool(b) => b.to_string(),
                        MapKey::I32(n) => n.to_string(),
                        MapKey::I64(n) => n.to_string(),
                        MapKey::U32(n) => n.to_string(),
                        MapKey::U64(n) => n.to_string(),
                    };
                    out.insert(key, self.scalar(field, item)?);
                }
                Ok(Value::Object(out))
            }
            single => self.scalar(field, single),
        }
    }

    /// One value: a scalar, a message, or (inside lists and maps) an element.
    fn scalar(&self, field: &FieldDescriptor, value: &Field) -> Result<Value, ProtobufError> {
        Ok(match value {
            Field::Bool(b) => json!(b),
            Field::I32(n) => json!(n),
            Field::I64(n) => json!(n),
            Field::U32(n) => json!(n),
            Field::U64(n) => json!(n),
            Field::EnumNumber(n) => json!(n),
            Field::F32(f) => number(f64::from(*f)),
            Field::F64(f) => number(*f),
            Field::String(s) => json!(s),
            // `[]byte` is base64 in JSON (Secret data, ConfigMap binaryData).
            Field::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
            Field::Message(m) => self.message(m)?,
            Field::List(_) | Field::Map(_) => {
                return Err(self.invalid(field, "a list or map nested in a list or map"));
            }
        })
    }
}

/// The JSON name of a field: its protobuf name unless `RENAMED` says otherwise.
fn json_name(field: &FieldDescriptor) -> &str {
    let message = field.parent_message().full_name();
    RENAMED
        .iter()
        .find(|(m, proto, _)| *m == message && *proto == field.name())
        .map_or(field.name(), |(_, _, json)| json)
}

/// JSON has no NaN or infinity; Go's encoder refuses them too, so they become null.
fn number(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Whether a present singular field holds the zero Go writes for an unset `omitempty`
/// field (an empty string is never kept: no field tells "" from unset).
fn omitted_zero(field: &FieldDescriptor, value: &Field) -> bool {
    match value {
        Field::String(s) => s.is_empty(),
        Field::Bool(false) | Field::I32(0) | Field::I64(0) | Field::U32(0) | Field::U64(0) => {
            let qualified = format!("{}.{}", field.parent_message().name(), field.name());
            !KEEP_ZERO.contains(&field.name()) && !KEEP_ZERO.contains(&qualified.as_str())
        }
        _ => false,
    }
}

/// A Go `time.Duration` string: "0s", "1.5s", "1h30m0s", "250ms", "1µs".
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    // A quotient with its remainder as a decimal fraction, trailing zeros dropped.
    let decimal = |value: u64, unit: u64, digits: usize| {
        let (whole, rest) = (value / unit, value % unit);
        if rest == 0 {
            whole.to_string()
        } else {
            let fraction = format!("{rest:0digits$}");
            format!("{whole}.{}", fraction.trim_end_matches('0'))
        }
    };
    let text = match n {
        0..1_000 => format!("{n}ns"),
        1_000..1_000_000 => format!("{}µs", decimal(n, 1_000, 3)),
        1_000_000..1_000_000_000 => format!("{}ms", decimal(n, 1_000_000, 6)),
        _ => {
            let seconds = n / 1_000_000_000;
            let (hours, minutes) = (seconds / 3600, seconds / 60 % 60);
            let secs = decimal(n % 60_000_000_000, 1_000_000_000, 9);
            match (hours, minutes) {
                (0, 0) => format!("{secs}s"),
                (0, m) => format!("{m}m{secs}s"),
                (h, m) => format!("{h}h{m}m{secs}s"),
            }
        }
    };
    format!("{sign}{text}")
}

#[cfg(test)]
mod tests;
