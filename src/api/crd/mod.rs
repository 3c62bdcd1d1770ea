//! CustomResourceDefinitions: what a CRD makes the server serve (one registry entry per
//! served version), and what happens to the custom objects themselves — pruning,
//! defaulting and validation against the version's structural schema, Table columns,
//! and the `scale` subresource at the CRD's paths.
//!
//! Registry entries are `&'static Resource`, which every handler borrows freely. A
//! CRD's entries are therefore leaked, but interned: the same definition (names,
//! scope, version) always maps to the same leaked entry, so re-creating, re-applying
//! or updating a CRD back and forth never leaks again. What stays allocated is one
//! entry (a few KB with its schema) per distinct definition the process has ever
//! served, which is bounded by what users write, not by how often.

pub mod columns;
pub mod definition;
pub mod structural;
pub mod validate;

use super::registry::{NameRule, Resource, Storage, Subresource};
use super::status::Cause;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};

/// The finalizer that holds a deleted CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// One `additionalPrinterColumns` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    /// integer, number, string, boolean or date.
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// The `scale` subresource's paths (`.spec.replicas` and the like).
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// What the CRD says about one served version of its resource.
#[derive(Debug)]
pub struct CustomResource {
    /// `plural.group`, the CRD's name.
    pub crd_name: String,
    pub list_kind: String,
    /// The version's `openAPIV3Schema`.
    pub schema: Value,
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// Whether this version is the one stored (others are served by rewriting `apiVersion`).
    pub storage_version: String,
    /// Every version's `openAPIV3Schema` by version name: an object read from storage
    /// is pruned and defaulted with the schema of the version it was stored as.
    pub version_schemas: BTreeMap<String, Value>,
}

/// Interned entries by the definition they were made from.
static INTERNED: LazyLock<Mutex<HashMap<String, &'static Resource>>> =
    LazyLock::new(Mutex::default);

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_string().into_boxed_str())
}

fn leak_list(items: &[String]) -> &'static [&'static str] {
    let leaked: Vec<&'static str> = items.iter().map(|s| leak(s)).collect();
    Box::leak(leaked.into_boxed_slice())
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    super::meta::str_at(value, path).unwrap_or_default()
}

/// Upstream's version priority: GA before beta before alpha, higher numbers first,
/// versions that do not look like Kubernetes versions last by name.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(v: &str) -> (u8, i64, i64, String) {
        let Some(rest) = v.strip_prefix('v') else {
            return (3, 0, 0, v.to_string());
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(major) = digits.parse::<i64>() else {
            return (3, 0, 0, v.to_string());
        };
        let tail = &rest[digits.len()..];
        let (level, minor) = if tail.is_empty() {
            (0, 0)
        } else if let Some(n) = tail.strip_prefix("beta") {
            (1, n.parse().unwrap_or(-1))
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (2, n.parse().unwrap_or(-1))
        } else {
            return (3, 0, 0, v.to_string());
        };
        (level, -major, -minor, String::new())
    }
    key(a).cmp(&key(b))
}

/// The columns of a version: its `additionalPrinterColumns`, or AGE when it has none.
fn printer_columns(version: &Value) -> Vec<PrinterColumn> {
    let Some(defined) = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
    else {
        return vec![PrinterColumn {
            name: "Age".into(),
            kind: "date".into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }];
    };
    defined
        .iter()
        .map(|c| PrinterColumn {
            name: text(c, &["name"]).to_string(),
            kind: text(c, &["type"]).to_string(),
            format: text(c, &["format"]).to_string(),
            description: text(c, &["description"]).to_string(),
            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
            json_path: text(c, &["jsonPath"]).to_string(),
        })
        .collect()
}

/// The registry entries a CRD serves, highest-priority version first. Call only for
/// CRDs that passed `definition::validate` and whose names were accepted.
pub fn served_resources(crd: &Value) -> Vec<&'static Resource> {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let mut versions: Vec<&Value> = spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .collect();
    versions.sort_by(|a, b| version_order(text(a, &["name"]), text(b, &["name"])));
    let storage_version = spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| text(v, &["name"]).to_string())
        .unwrap_or_default();
    let crd_name = super::meta::name(crd).to_string();
    let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
    versions
        .into_iter()
        .map(|version| {
            // Every version's schema is part of the identity: objects stored as
            // another version are read with that version's schema.
            let identity = json!({
                "name": crd_name,
                "group": spec.get("group"),
                "names": definition::accepted_names(&spec),
                "scope": spec.get("scope"),
                "version": version,
                "storage": storage_version,
                "schemas": version_schemas(&spec),
            })
            .to_string();
            *interned
                .entry(identity)
                .or_insert_with(|| build(&crd_name, &spec, version, &storage_version))
        })
        .collect()
}

/// The schema of each version the CRD defines, served or not (objects may be stored as
/// a version that is no longer served).
fn version_schemas(spec: &Value) -> BTreeMap<String, Value> {
    spec.get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let schema = v.get("schema")?.get("openAPIV3Schema")?;
            Some((text(v, &["name"]).to_string(), schema.clone()))
        })
        .collect()
}

/// Leaks one registry entry; see the module comment for why that is bounded.
fn build(
    crd_name: &str,
    spec: &Value,
    version: &Value,
    storage_version: &str,
) -> &'static Resource {
    let names = definition::accepted_names(spec);
    let group = text(spec, &["group"]);
    let kind = text(&names, &["kind"]);
    let plural = text(&names, &["plural"]);
    let subresources_spec = version.get("subresources");
    let mut subresources = Vec::new();
    if subresources_spec.and_then(|s| s.get("status")).is_some() {
        subresources.push(Subresource {
            name: "status",
            kind: leak(kind),
            group_version: None,
            verbs: &["get", "patch", "update"],
        });
    }
    let scale = subresources_spec
        .and_then(|s| s.get("scale"))
        .map(|s| ScalePaths {
            spec_replicas: text(s, &["specReplicasPath"]).to_string(),
            status_replicas: text(s, &["statusReplicasPath"]).to_string(),
            label_selector: s
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    if scale.is_some() {
        subresources.push(Subresource {
            name: "scale",
            kind: "Scale",
            group_version: Some(("autoscaling", "v1")),
            verbs: &["get", "patch", "update"],
        });
    }
    let selectable: Vec<String> = version
        .get("selectableFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    let custom = CustomResource {
        crd_name: crd_name.to_string(),
        list_kind: text(&names, &["listKind"]).to_string(),
        schema: version
            .get("schema")
            .and_then(|s| s.get("openAPIV3Schema"))
            .cloned()
            .unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            ),
        columns: printer_columns(version),
        scale,
        storage_version: storage_version.to_string(),
        version_schemas: version_schemas(spec),
    };
    let resource = Resource {
        group: leak(group),
        version: leak(text(version, &["name"])),
        kind: leak(kind),
        plural: leak(plural),
        singular: leak(text(&names, &["singular"])),
        short_names: leak_list(&super::meta::strings(names.get("shortNames"))),
        categories: leak_list(&super::meta::strings(names.get("categories"))),
        namespaced: text(spec, &["scope"]) == "Namespaced",
        verbs: &[
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "create",
            "update",
            "watch",
        ],
        subresources: Box::leak(subresources.into_boxed_slice()),
        // Upstream's layout: /registry/<group>/<plural>/[<namespace>/]<name>, shared by
        // every version.
        key_prefix: leak(&format!("/registry/{group}/{plural}/")),
        selectable_fields: leak_list(&selectable),
        selectable_zero_values: &[],
        selectable_reads: &[],
        name_rule: NameRule::Subdomain,
        allow_create_on_update: false,
        return_deleted_object: false,
        storage: Storage::Native,
        custom: Some(Box::leak(Box::new(custom))),
    };
    Box::leak(Box::new(resource))
}

/// Prunes, defaults and validates a custom object (the main resource or its status).
pub fn admit(custom: &CustomResource, object: &mut Value) -> Vec<Cause> {
    structural::prune_object(&custom.schema, object);
    structural::default_object(&custom.schema, object);
    validate::validate_object(&custom.schema, object)
}

/// What reading a custom object from storage does to it, as upstream's storage codec:
/// pruned and defaulted with the schema of the version it was stored as, so an object
/// stored before a default was added to the CRD shows the default on every read (GET,
/// LIST, WATCH) without being rewritten; then, when it is served as another version,
/// pruned with that version's schema. Nothing is written back.
pub fn read_stored(custom: &CustomResource, served_version: &str, object: &mut Value) {
    let stored_version = super::meta::str_at(object, &["apiVersion"])
        .and_then(|v| v.rsplit_once('/'))
        .map_or_else(|| custom.storage_version.clone(), |(_, v)| v.to_string());
    if let Some(schema) = custom.version_schemas.get(&stored_version) {
        structural::prune_object(schema, object);
        structural::default_object(schema, object);
    }
    if served_version != stored_version
        && let Some(schema) = custom.version_schemas.get(served_version)
    {
        structural::prune_object(schema, object);
    }
}

/// Whether an update changes more than metadata (and status, when that has its own
/// endpoint): what bumps a custom object's generation.
pub fn changes_generation(current: &Value, next: &Value, has_status: bool) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("metadata");
            if has_status {
                map.remove("status");
            }
        }
        v
    };
    strip(current) != strip(next)
}

/// A dotted JSONPath (`.spec.replicas`) as its parts.
fn path_parts(path: &str) -> Vec<&str> {
    path.trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
        .collect()
}

/// The `autoscaling/v1 Scale` of a custom object.
pub fn to_scale(paths: &ScalePaths, object: &Value) -> Value {
    let mut metadata = serde_json::Map::new();
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = object.get("metadata").and_then(|m| m.get(key)) {
            metadata.insert(key.into(), v.clone());
        }
    }
    let at = |path: &str| super::fields::at(object, &path_parts(path)).cloned();
    let mut status =
        json!({"replicas": at(&paths.status_replicas).and_then(|v| v.as_i64()).unwrap_or(0)});
    if let Some(selector) = paths
        .label_selector
        .as_deref()
        .and_then(at)
        .and_then(|v| v.as_str().map(str::to_string))
    {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": at(&paths.spec_replicas).and_then(|v| v.as_i64()).unwrap_or(0)},
        "status": status,
    })
}

/// Writes a Scale's `spec.replicas` into the custom object at the CRD's path.
pub fn apply_scale(
    paths: &ScalePaths,
    object: &mut Value,
    scale: &Value,
) -> Result<(), Vec<Cause>> {
    let replicas = scale.get("spec").and_then(|s| s.get("replicas"));
    let Some(replicas) = replicas.and_then(Value::as_i64) else {
        let shown = replicas.cloned().unwrap_or(Value::Null);
        return Err(vec![super::fields::invalid_value(
            "spec.replicas",
            &shown,
            "must be an integer",
        )]);
    };
    if replicas < 0 {
        return Err(vec![super::fields::invalid_value(
            "spec.replicas",
            &json!(replicas),
            "must be greater than or equal to 0",
        )]);
    }
    let parts = path_parts(&paths.spec_replicas);
    let Some((last, parents)) = parts.split_last() else {
        return Err(vec![Cause::invalid(
            "spec.replicas",
            &paths.spec_replicas,
            "the CRD's specReplicasPath is empty",
        )]);
    };
    let mut cur = object;
    for part in parents {
        if !cur.get(*part).is_some_and(Value::is_object) {
            cur[*part] = json!({});
        }
        cur = &mut cur[*part];
    }
    cur[*last] = json!(replicas);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}},
                    {"name": "v2alpha1", "served": false, "storage": false}
                ]
            }
        })
    }

    #[test]
    fn served_versions_become_interned_entries() {
        let first = served_resources(&crd());
        assert_eq!(
            first.iter().map(|r| r.version).collect::<Vec<_>>(),
            vec!["v1", "v1beta1"]
        );
        let v1 = first[0];
        assert_eq!(
            (v1.kind, v1.plural, v1.singular, v1.short_names),
            ("CronTab", "crontabs", "crontab", &["ct"][..])
        );
        assert_eq!(
            v1.key(Some("ns"), "a"),
            "/registry/stable.example.com/crontabs/ns/a"
        );
        assert!(v1.has_status() && v1.has_subresource("scale"));
        let again = served_resources(&crd());
        assert!(std::ptr::eq(first[0], again[0]) && std::ptr::eq(first[1], again[1]));
    }

    #[test]
    fn reads_prune_and_default_with_the_stored_versions_schema() {
        let mut def = crd();
        def["spec"]["versions"][1]["schema"]["openAPIV3Schema"] = json!({"type": "object",
            "properties": {"spec": {"type": "object", "properties": {
                "mode": {"type": "string", "default": "fast"}, "size": {"type": "integer"}}}}});
        def["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({"type": "object",
            "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}});
        let served = served_resources(&def);
        let (v1, v1beta1) = (served[0].custom.unwrap(), served[1].custom.unwrap());
        let stored = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "a"}, "spec": {"size": 2, "gone": true}});
        let mut as_v1 = stored.clone();
        read_stored(v1, "v1", &mut as_v1);
        assert_eq!(as_v1["spec"], json!({"size": 2, "mode": "fast"}));
        // Served as v1beta1: defaulted as stored (v1), then pruned to v1beta1's schema.
        let mut as_beta = stored;
        read_stored(v1beta1, "v1beta1", &mut as_beta);
        assert_eq!(as_beta["spec"], json!({"size": 2}));
    }

    #[test]
    fn version_priority_follows_upstream() {
        let mut versions = vec![
            "v1alpha1",
            "foo",
            "v2",
            "v1beta2",
            "v1",
            "v11alpha2",
            "v1beta1",
        ];
        versions.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            versions,
            vec![
                "v2",
                "v1",
                "v1beta2",
                "v1beta1",
                "v11alpha2",
                "v1alpha1",
                "foo"
            ]
        );
    }

    #[test]
    fn scale_reads_and_writes_the_crd_paths() {
        let paths = ScalePaths {
            spec_replicas: ".spec.size".into(),
            status_replicas: ".status.size".into(),
            label_selector: Some(".status.selector".into()),
        };
        let mut object = json!({"metadata": {"name": "a"}, "spec": {"size": 2}, "status": {"size": 1, "selector": "app=a"}});
        let scale = to_scale(&paths, &object);
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["status"], json!({"replicas": 1, "selector": "app=a"}));
        apply_scale(&paths, &mut object, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(object["spec"]["size"], 5);
        assert!(apply_scale(&paths, &mut object, &json!({"spec": {"replicas": -1}})).is_err());
    }
}
