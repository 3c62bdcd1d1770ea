//! Turning an HTTP request into what the API server should do: which endpoint the
//! path names, query parameters, request bodies in their content types, and how the
//! client wants the answer (plain JSON or a Table).

use axum::body::Bytes;
use http::HeaderMap;
use rind_api::protobuf;
use rind_api::registry::{Registry, Resource};
use rind_api::status::ApiError;
use serde_json::Value;

/// The endpoint a path names.
#[derive(Debug)]
pub enum Target {
    Version,
    /// `/healthz`, `/livez`: the process serves.
    Health,
    /// `/readyz`: the process serves and its store answers.
    Ready,
    /// `/api`: the legacy core group's versions.
    Api,
    /// `/apis`: every named group.
    Apis,
    /// `/apis/G`.
    Group(String),
    /// `/api/v1`, `/apis/G/V`: the resources of a group-version.
    GroupVersion {
        group: String,
        version: String,
    },
    Resource(ResourceRequest),
    /// `/openapi/v2`: the whole API as one Swagger 2.0 document.
    OpenApiV2,
    /// `/openapi/v3`.
    OpenApiRoot,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/G/V`.
    OpenApi(String),
}

/// A request for a resource collection, one object, or a subresource.
#[derive(Debug)]
pub struct ResourceRequest {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/...` path prefix (same as `?watch=true`).
    pub watch_path: bool,
    /// For a `proxy` subresource, the path after `/proxy` (`/a/b/` of
    /// `…/pods/p/proxy/a/b/`), as it came: empty when nothing follows `proxy`.
    pub proxy_path: String,
}

/// Subresources of a namespace itself, which share the `/namespaces/X/Y` shape with
/// namespaced collections.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

pub fn parse_path(registry: &Registry, path: &str) -> Result<Target, ApiError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["version"] => Ok(Target::Version),
        ["readyz", ..] => Ok(Target::Ready),
        ["healthz" | "livez", ..] => Ok(Target::Health),
        ["openapi", "v2"] => Ok(Target::OpenApiV2),
        ["openapi", "v3"] => Ok(Target::OpenApiRoot),
        ["openapi", "v3", rest @ ..] => Ok(Target::OpenApi(rest.join("/"))),
        ["api"] => Ok(Target::Api),
        ["apis"] => Ok(Target::Apis),
        ["apis", group] => Ok(Target::Group(group.to_string())),
        ["api", version] => Ok(Target::GroupVersion {
            group: String::new(),
            version: version.to_string(),
        }),
        ["apis", group, version] => Ok(Target::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        }),
        ["api", version, rest @ ..] => resource_path(registry, "", version, rest, path),
        ["apis", group, version, rest @ ..] => resource_path(registry, group, version, rest, path),
        _ => Err(ApiError::path_not_found()),
    }
}

fn resource_path(
    registry: &Registry,
    group: &str,
    version: &str,
    rest: &[&str],
    path: &str,
) -> Result<Target, ApiError> {
    let (watch_path, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        _ => (false, rest),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(tail.is_empty() && NAMESPACE_SUBRESOURCES.contains(plural)) =>
        {
            (Some(ns.to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, subresource, proxy_path) = match rest {
        [plural] => (*plural, None, None, String::new()),
        [plural, name] => (*plural, Some(name.to_string()), None, String::new()),
        [plural, name, sub] => {
            // `…/proxy/` keeps its slash: the backend is asked for `/`.
            let proxy_path = if *sub == "proxy" && path.ends_with('/') {
                "/".to_string()
            } else {
                String::new()
            };
            let subresource = Some(sub.to_string());
            (*plural, Some(name.to_string()), subresource, proxy_path)
        }
        // Everything after `proxy` is the path to ask the backend for.
        [plural, name, "proxy", tail @ ..] if !watch_path => {
            let mut proxy_path = format!("/{}", tail.join("/"));
            if path.ends_with('/') {
                proxy_path.push('/');
            }
            let subresource = Some("proxy".to_string());
            (*plural, Some(name.to_string()), subresource, proxy_path)
        }
        _ => return Err(ApiError::path_not_found()),
    };
    let resource = registry
        .lookup(group, version, plural)
        .ok_or_else(ApiError::path_not_found)?;
    if namespace.is_some() && !resource.namespaced {
        return Err(ApiError::path_not_found());
    }
    if let Some(sub) = &subresource
        && !resource.has_subresource(sub)
    {
        return Err(ApiError::path_not_found());
    }
    Ok(Target::Resource(ResourceRequest {
        resource,
        namespace,
        name,
        subresource,
        watch_path,
        proxy_path,
    }))
}

/// The longest a request may take (upstream's `--request-timeout` default).
pub const MAX_REQUEST_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a request may take: its `?timeout=` (Go's duration syntax; kubectl sends
/// `32s`) when that is shorter than the server's maximum and more than zero, else the
/// maximum. A timeout that does not parse is 400, as upstream's request-deadline filter.
pub fn deadline(uri: &http::Uri) -> Result<std::time::Duration, ApiError> {
    let query = Query::parse(uri)?;
    let Some(text) = query.get("timeout") else {
        return Ok(MAX_REQUEST_TIME);
    };
    let nanos = rind_api::query::parse_duration(text).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid timeout specified in the request URL - {e}"
        ))
    })?;
    let asked = std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    Ok(if asked.is_zero() || asked >= MAX_REQUEST_TIME {
        MAX_REQUEST_TIME
    } else {
        asked
    })
}

/// Query parameters, decoded, every value in the order sent. Upstream's parameter codec
/// (`Convert_Slice_string_To_*`) reads the first value of a repeated key
/// (`?limit=1&limit=2` lists one) and only the list-valued `dryRun` reads them all; the
/// accessors here do the same. The second field is the field manager derived from the
/// User-Agent, for writes that name none.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>, Option<String>);

impl Query {
    pub fn parse(uri: &http::Uri) -> Result<Self, ApiError> {
        match uri.query() {
            None => Ok(Query::default()),
            Some(q) => serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .map(|pairs| Query(pairs, None))
                .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}"))),
        }
    }

    /// The first value of `key` when it is not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw(key).filter(|v| !v.is_empty())
    }

    /// The first value of `key`, even when present but empty (`fieldSelector=`).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order (`?dryRun=All&dryRun=All`).
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Remembers the default field manager upstream derives from the User-Agent: its
    /// product token (`kubectl` of `kubectl/v1.37.1 (linux/amd64) …`), at most 128 chars.
    pub fn with_user_agent(mut self, headers: &HeaderMap) -> Self {
        let agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let product: String = agent
            .split('/')
            .next()
            .unwrap_or_default()
            .chars()
            .take(128)
            .collect();
        self.1 = Some(if product.is_empty() {
            "unknown".into()
        } else {
            product
        });
        self
    }

    /// The manager a write records: `fieldManager`, else the User-Agent's default.
    pub fn field_manager(&self) -> &str {
        self.get("fieldManager")
            .or(self.1.as_deref())
            .unwrap_or("unknown")
    }

    /// A boolean parameter: absent is false, a present one (even empty) is decoded as
    /// upstream's parameter codec does, so `?watch=True` watches.
    pub fn flag(&self, key: &str) -> bool {
        self.raw(key).is_some_and(rind_api::query::parse_bool)
    }

    /// An integer parameter: absent is `None`; a present one, even empty, must be what
    /// Go's `ParseInt` reads, else 400 with its words (`?limit=abc`).
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.raw(key)
            .map(|v| {
                rind_api::query::parse_int64(v).map_err(|e| ApiError::bad_request(e.to_string()))
            })
            .transpose()
    }
}

/// `dryRun` as upstream's `ValidateDryRun` admits it: every value `All`. Anything else
/// is 422 Invalid on the write's options (`CreateOptions`, `UpdateOptions`,
/// `PatchOptions`, `DeleteOptions`) rather than a write done for real.
pub fn check_dry_run(sent: &[&str], options_kind: &str) -> Result<(), ApiError> {
    if sent.iter().all(|v| *v == "All") {
        return Ok(());
    }
    let cause = rind_api::status::Cause {
        reason: "FieldValueNotSupported",
        message: format!(
            "Unsupported value: {}: supported values: \"All\"",
            serde_json::to_string(&sent).unwrap_or_default()
        ),
        field: "dryRun".to_string(),
    };
    Err(ApiError::invalid(options_kind, "meta.k8s.io", "", &[cause]))
}

/// Upstream's `ValidateListOptions` over a list's or a watch's query, as 422 Invalid
/// `ListOptions.meta.k8s.io` (how `resourceVersionMatch`, `continue` and
/// `sendInitialEvents` may combine).
pub fn check_list_options(query: &Query, watch: bool) -> Result<(), ApiError> {
    use rind_api::status::Cause;
    let path = "resourceVersionMatch";
    let matching = query.get(path);
    let continuing = query.get("continue").is_some();
    let send_initial = query.raw("sendInitialEvents").is_some();
    let mut causes = Vec::new();
    if watch {
        if send_initial && matching != Some("NotOlderThan") {
            causes.push(Cause::forbidden(
                path,
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if let Some(matching) = matching {
            if !send_initial {
                causes.push(Cause::forbidden(
                    path,
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if matching != "NotOlderThan" {
                causes.push(Cause::unsupported(path, matching, &["NotOlderThan"]));
            }
            if continuing {
                causes.push(Cause::forbidden(
                    path,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
    } else {
        if let Some(matching) = matching {
            let version = query.get("resourceVersion");
            if version.is_none() {
                causes.push(Cause::forbidden(
                    path,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            if continuing {
                causes.push(Cause::forbidden(
                    path,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
            if matching != "Exact" && matching != "NotOlderThan" {
                causes.push(Cause::unsupported(
                    path,
                    matching,
                    &["Exact", "NotOlderThan", ""],
                ));
            }
            if matching == "Exact" && version == Some("0") {
                causes.push(Cause::forbidden(
                    path,
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
        }
        if send_initial {
            causes.push(Cause::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("ListOptions", "meta.k8s.io", "", &causes))
    }
}

/// Upstream's `ValidateTableOptions` for an answer rendered as a Table: `includeObject`
/// is `Metadata`, `Object`, `None` or empty, else 400.
pub fn check_table_options(query: &Query, rendering: Rendering) -> Result<(), ApiError> {
    match query.raw("includeObject") {
        Some(value) if rendering == Rendering::Table => match value {
            "" | "Metadata" | "Object" | "None" => Ok(()),
            other => Err(ApiError::bad_request(format!(
                "Unable to convert to Table as requested: includeObject: Invalid value: {}: must be 'Metadata', 'Object', 'None', or empty",
                rind_api::query::go_quote(other)
            ))),
        },
        _ => Ok(()),
    }
}

/// How a request body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
    /// `application/vnd.kubernetes.protobuf`: kubectl's typed clients (create, can-i, drain).
    Protobuf,
}

/// The body's type from `Content-Type`; a missing one means JSON, as upstream.
pub fn body_type(headers: &HeaderMap) -> Result<BodyType, ApiError> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(BodyType::Json);
    };
    let text = value.to_str().unwrap_or_default();
    let media = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "" | "application/json" | "*/*" => Ok(BodyType::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(BodyType::Yaml),
        "application/json-patch+json" => Ok(BodyType::JsonPatch),
        "application/merge-patch+json" => Ok(BodyType::MergePatch),
        "application/strategic-merge-patch+json" => Ok(BodyType::StrategicMergePatch),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(BodyType::ApplyPatch),
        "application/vnd.kubernetes.protobuf" => Ok(BodyType::Protobuf),
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other:?})"
        ))),
    }
}

/// Decodes a JSON, YAML or protobuf body (patch bodies are JSON; YAML is accepted for
/// them too) into the JSON the handlers take.
pub fn decode_body(body: &Bytes, kind: BodyType) -> Result<Value, ApiError> {
    decode_body_noting_duplicates(body, kind).map(|(value, _)| value)
}

/// `decode_body`, and whether the body is JSON that sets some field twice.
pub fn decode_body_noting_duplicates(
    body: &Bytes,
    kind: BodyType,
) -> Result<(Value, bool), ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    // The envelope's magic contains a NUL, which JSON and YAML never do: bodies that
    // come without a Content-Type (DeleteOptions) are recognised too.
    if kind == BodyType::Protobuf || protobuf::is_envelope(body) {
        return Ok((protobuf::decode(body)?, false));
    }
    let parsed = rind_api::schema::fields::decode_noting_duplicates(body);
    match (parsed, kind) {
        (Ok(decoded), _) => Ok(decoded),
        (Err(_), BodyType::Yaml | BodyType::ApplyPatch) => {
            let text = std::str::from_utf8(body).map_err(|e| {
                ApiError::bad_request(format!("the request body is not UTF-8: {e}"))
            })?;
            let value = rind_runtime::yaml::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))?;
            Ok((value, false))
        }
        (Err(e), _) => Err(ApiError::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))),
    }
}

/// How a client wants objects rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    Object,
    Table,
    /// `PartialObjectMetadata(List)`: metadata only (kube-rs metadata watchers, GC-like clients).
    Metadata,
}

/// The first media range of `Accept` this endpoint can produce decides: kubectl lists
/// `as=Table;v=v1;g=meta.k8s.io` first when it wants a Table, then plain JSON as the
/// fallback. `tables` says whether the endpoint renders Tables at all; when every range
/// asks for a rendering it cannot produce, upstream's negotiation answers 406 before the
/// request does anything (no review is made, no token minted).
pub fn rendering(headers: &HeaderMap, tables: bool) -> Result<Rendering, ApiError> {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut refused = false;
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let meta_group = params
            .iter()
            .all(|p| !p.starts_with("g=") || *p == "g=meta.k8s.io");
        let meta_version = params.iter().all(|p| !p.starts_with("v=") || *p == "v=v1");
        if params.contains(&"as=Table") && meta_group && meta_version {
            if tables {
                return Ok(Rendering::Table);
            }
            refused = true;
            continue;
        }
        if (params.contains(&"as=PartialObjectMetadataList")
            || params.contains(&"as=PartialObjectMetadata"))
            && meta_group
            && meta_version
        {
            return Ok(Rendering::Metadata);
        }
        if !params.iter().any(|p| p.starts_with("as=")) {
            return Ok(Rendering::Object);
        }
    }
    if refused {
        return Err(ApiError::not_acceptable());
    }
    Ok(Rendering::Object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn res(path: &str) -> ResourceRequest {
        match parse_path(&Registry::default(), path).unwrap() {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        let r = res("/api/v1/namespaces/default/pods/p/log");
        assert_eq!(
            (
                r.resource.plural,
                r.namespace.as_deref(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("pods", Some("default"), Some("p"), Some("log"))
        );
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.resource.plural, r.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let r = res("/api/v1/namespaces/ns1/status");
        assert_eq!(
            (
                r.resource.plural,
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("namespaces", Some("ns1"), Some("status"))
        );
        let r = res("/api/v1/namespaces/ns1/pods/");
        assert_eq!(
            (r.resource.plural, r.namespace.as_deref(), r.name),
            ("pods", Some("ns1"), None)
        );
        let r = res("/api/v1/watch/namespaces/ns1/pods");
        assert!(r.watch_path);
        let r = res("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1");
        assert_eq!(r.resource.kind, "Lease");
        assert!(matches!(
            parse_path(&Registry::default(), "/version/").unwrap(),
            Target::Version
        ));
        assert!(parse_path(&Registry::default(), "/api/v1/nodes/n/log").is_err());
        assert!(parse_path(&Registry::default(), "/api/v1/namespaces/x/nodes").is_err());
        assert!(parse_path(&Registry::default(), "/api/v1/widgets").is_err());
    }

    #[test]
    fn bodies() {
        let yaml = Bytes::from_static(b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n");
        assert_eq!(
            decode_body(&yaml, BodyType::Yaml).unwrap()["metadata"]["name"],
            "p"
        );
        assert!(decode_body(&yaml, BodyType::Json).is_err());
        let mut h = HeaderMap::new();
        assert_eq!(body_type(&h).unwrap(), BodyType::Json);
        h.insert(
            http::header::CONTENT_TYPE,
            "application/vnd.kubernetes.protobuf".parse().unwrap(),
        );
        assert_eq!(body_type(&h).unwrap(), BodyType::Protobuf);
        let configmap = Bytes::from_static(include_bytes!("../api/protobuf/testdata/configmap.pb"));
        assert_eq!(
            decode_body(&configmap, BodyType::Protobuf).unwrap()["data"]["a"],
            "b"
        );
        assert_eq!(
            decode_body(&configmap, BodyType::Yaml).unwrap()["kind"],
            "ConfigMap"
        );
        let truncated = configmap.slice(..20);
        assert_eq!(
            decode_body(&truncated, BodyType::Protobuf)
                .unwrap_err()
                .code,
            400
        );
        h.insert(
            http::header::CONTENT_TYPE,
            "application/strategic-merge-patch+json; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert_eq!(body_type(&h).unwrap(), BodyType::StrategicMergePatch);
    }

    #[test]
    fn tables_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json".parse().unwrap());
        assert_eq!(rendering(&h, true).unwrap(), Rendering::Table);
        h.insert(http::header::ACCEPT, "application/json".parse().unwrap());
        assert_eq!(rendering(&h, true).unwrap(), Rendering::Object);
        h.insert(
            http::header::ACCEPT,
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
                .parse()
                .unwrap(),
        );
        assert_eq!(rendering(&h, true).unwrap(), Rendering::Metadata);
        h.insert(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(rendering(&h, true).unwrap(), Rendering::Object);
    }

    #[test]
    fn tables_refused_where_the_endpoint_has_none() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io"
                .parse()
                .unwrap(),
        );
        assert_eq!(rendering(&h, false).unwrap_err().code, 406);
        // A plain range after the Table is the fallback upstream serves.
        h.insert(
            http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(rendering(&h, false).unwrap(), Rendering::Object);
        h.insert(
            http::header::ACCEPT,
            "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
                .parse()
                .unwrap(),
        );
        assert_eq!(rendering(&h, false).unwrap(), Rendering::Metadata);
        h.remove(http::header::ACCEPT);
        assert_eq!(rendering(&h, false).unwrap(), Rendering::Object);
    }

    #[test]
    fn flags_decode_as_upstream() {
        let flag = |uri: &str| Query::parse(&uri.parse().unwrap()).unwrap().flag("watch");
        assert!(flag("/x?watch=True"));
        assert!(flag("/x?watch=t"));
        assert!(flag("/x?watch="));
        assert!(!flag("/x?watch=FALSE"));
        assert!(!flag("/x?watch=0"));
        assert!(!flag("/x"));
    }

    #[test]
    fn repeated_keys_take_the_first_value() {
        let query = Query::parse(&"/x?limit=1&limit=2&watch=0&watch=1".parse().unwrap()).unwrap();
        assert_eq!(query.int("limit").unwrap(), Some(1));
        assert!(!query.flag("watch"));
        let query = Query::parse(&"/x?dryRun=All&dryRun=x".parse().unwrap()).unwrap();
        assert_eq!(query.values("dryRun"), ["All", "x"]);
    }

    #[test]
    fn dry_run_admits_only_all() {
        assert!(check_dry_run(&["All", "All"], "CreateOptions").is_ok());
        assert!(check_dry_run(&[], "CreateOptions").is_ok());
        let err = check_dry_run(&["All", "x"], "PatchOptions").unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            r#"PatchOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ["All","x"]: supported values: "All""#
        );
    }

    #[test]
    fn list_options_validate_as_upstream() {
        let check = |uri: &str, watch: bool| {
            check_list_options(&Query::parse(&uri.parse().unwrap()).unwrap(), watch)
        };
        assert!(check("/x?resourceVersion=5&resourceVersionMatch=Exact", false).is_ok());
        assert!(
            check(
                "/x?sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
                true
            )
            .is_ok()
        );
        let err = check("/x?resourceVersionMatch=Exact", false).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            r#"ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"#
        );
        let err = check("/x?sendInitialEvents=true", false).unwrap_err();
        assert!(
            err.message
                .ends_with("sendInitialEvents is forbidden for list")
        );
        let err = check("/x?sendInitialEvents=true", true).unwrap_err();
        assert!(
            err.message.ends_with(
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
            )
        );
        let err = check("/x?resourceVersionMatch=Exact", true).unwrap_err();
        assert_eq!(err.details.unwrap().causes.len(), 2);
    }

    #[test]
    fn table_options_validate_as_upstream() {
        let check = |uri: &str, rendering| {
            check_table_options(&Query::parse(&uri.parse().unwrap()).unwrap(), rendering)
        };
        assert!(check("/x?includeObject=Object", Rendering::Table).is_ok());
        assert!(check("/x?includeObject=bogus", Rendering::Object).is_ok());
        assert_eq!(
            check("/x?includeObject=bogus", Rendering::Table)
                .unwrap_err()
                .message,
            "Unable to convert to Table as requested: includeObject: Invalid value: \"bogus\": must be 'Metadata', 'Object', 'None', or empty"
        );
    }

    #[test]
    fn deadlines_follow_the_timeout_parameter() {
        let deadline = |uri: &str| deadline(&uri.parse().unwrap());
        assert_eq!(deadline("/x?timeout=32s").unwrap(), Duration::from_secs(32));
        assert_eq!(deadline("/x").unwrap(), MAX_REQUEST_TIME);
        assert_eq!(deadline("/x?timeout=0").unwrap(), MAX_REQUEST_TIME);
        assert_eq!(deadline("/x?timeout=2h").unwrap(), MAX_REQUEST_TIME);
        assert_eq!(deadline("/x?timeout=-5s").unwrap(), MAX_REQUEST_TIME);
        assert_eq!(
            deadline("/x?timeout=soon").unwrap_err().message,
            r#"invalid timeout specified in the request URL - time: invalid duration "soon""#
        );
    }

    #[test]
    fn integers_decode_as_upstream() {
        let int = |uri: &str| Query::parse(&uri.parse().unwrap()).unwrap().int("limit");
        assert_eq!(int("/x").unwrap(), None);
        assert_eq!(int("/x?limit=%2B5").unwrap(), Some(5));
        // `+` is a space in a query string, for Go's url.ParseQuery too.
        assert!(int("/x?limit=+5").is_err());
        for (uri, message) in [
            (
                "/x?limit=",
                r#"strconv.ParseInt: parsing "": invalid syntax"#,
            ),
            (
                "/x?limit",
                r#"strconv.ParseInt: parsing "": invalid syntax"#,
            ),
            (
                "/x?limit=ten",
                r#"strconv.ParseInt: parsing "ten": invalid syntax"#,
            ),
            (
                "/x?limit=%201",
                r#"strconv.ParseInt: parsing " 1": invalid syntax"#,
            ),
        ] {
            let err = int(uri).unwrap_err();
            assert_eq!((err.code, err.message.as_str()), (400, message), "{uri}");
        }
    }
}
