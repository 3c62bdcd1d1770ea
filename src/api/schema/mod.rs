//! OpenAPI v3 schemas of the built-in kinds, as upstream publishes them under
//! `/openapi/v3` (`io.k8s.api.core.v1.Pod`, ...): kubectl validates against them and
//! `kubectl explain` prints them, and the API server walks request bodies with them to
//! find (and drop) fields the kinds do not have.
//!
//! The schemas with their descriptions come from k8s-openapi's `schemars` support,
//! which already names them as upstream does; what it lacks are the `x-kubernetes-*`
//! extensions describing kinds and list semantics, added here (see `extensions.rs`).

mod extensions;
pub mod fields;
mod kinds;

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// `(group, version, kind)` of a built-in kind.
type Gvk = (&'static str, &'static str, &'static str);

/// Every built-in kind's schema and the schemas they reference, by upstream name.
pub struct Schemas {
    components: Map<String, Value>,
    kinds: Vec<(Gvk, String)>,
    /// The components as the unknown-field walk reads them.
    fields: fields::FieldTree,
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(Schemas::build);

/// The schemas, generated on first use (a few milliseconds, once per process).
pub fn schemas() -> &'static Schemas {
    &SCHEMAS
}

/// Collects kinds while schemars collects the schemas they reference.
pub(super) struct Builder {
    generator: SchemaGenerator,
    kinds: Vec<(Gvk, String)>,
}

impl Builder {
    fn add<T: k8s_openapi::Resource + schemars::JsonSchema>(&mut self) {
        self.generator.subschema_for::<T>();
        self.kinds.push((
            (T::GROUP, T::VERSION, T::KIND),
            T::schema_name().into_owned(),
        ));
    }

    fn support<T: schemars::JsonSchema>(&mut self) {
        self.generator.subschema_for::<T>();
    }
}

impl Schemas {
    fn build() -> Schemas {
        let mut builder = Builder {
            generator: SchemaSettings::openapi3().into_generator(),
            kinds: Vec::new(),
        };
        kinds::add_all(&mut builder);
        // The openapi3 transforms turn `$ref` with a description beside it into
        // `allOf: [{$ref}]`, which is how upstream writes such fields too.
        let mut components = builder.generator.take_definitions(true);
        let mut kinds = Vec::new();
        let mut api_versions = Vec::new();
        for ((group, version, kind), name) in builder.kinds {
            let gvk = json!({"group": group, "version": version, "kind": kind});
            if let Some(Value::Object(schema)) = components.get_mut(&name) {
                mark_kind(schema, gvk.clone());
                // k8s-openapi requires `metadata` because its Rust field is not optional;
                // upstream does not (a server may fill it, e.g. from generateName).
                if let Some(Value::Array(required)) = schema.get_mut("required") {
                    required.retain(|f| f != "metadata");
                    if required.is_empty() {
                        schema.remove("required");
                    }
                }
            }
            components.insert(
                format!("{name}List"),
                list_schema(&name, group, version, kind),
            );
            let api_version = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            api_versions.push((api_version, kind, name.clone()));
            kinds.push(((group, version, kind), name));
        }
        extensions::add(&mut components, &api_versions);
        let mut schemas = Schemas {
            components,
            kinds,
            fields: fields::FieldTree::default(),
        };
        schemas.fields = fields::FieldTree::build(&schemas);
        schemas
    }

    /// The schema name of a kind (`io.k8s.api.core.v1.Pod`), if it is a built-in one.
    pub fn kind_name(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.kinds
            .iter()
            .find(|((g, v, k), _)| *g == group && *v == version && *k == kind)
            .map(|(_, name)| name.as_str())
    }

    /// Where a kind lives when the caller does not know its group: its stable version
    /// if it has one (`Scale` → autoscaling/v1, `Eviction` → policy/v1).
    pub fn stable_kind(&self, kind: &str) -> Option<(&'static str, &'static str, &str)> {
        self.kinds
            .iter()
            .filter(|((_, _, k), _)| *k == kind)
            .min_by_key(|((group, version, _), _)| {
                (
                    version.contains("alpha") || version.contains("beta"),
                    *group,
                    *version,
                )
            })
            .map(|((group, version, _), name)| (*group, *version, name.as_str()))
    }

    /// The named schemas and every schema they reference, transitively, by name.
    pub fn closure<'a>(&self, roots: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut pending: Vec<String> = roots.into_iter().map(str::to_string).collect();
        while let Some(name) = pending.pop() {
            if out.contains_key(&name) {
                continue;
            }
            let Some(schema) = self.components.get(&name) else {
                continue;
            };
            collect_refs(schema, &mut pending);
            out.insert(name, schema.clone());
        }
        out
    }

    /// Follows `$ref` and single-element `allOf` wrappers to the schema they name.
    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        // A bound keeps a malformed cycle of references from looping forever.
        for _ in 0..8 {
            if let Some(name) = schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(ref_name)
            {
                match self.components.get(name) {
                    Some(target) => schema = target,
                    None => return schema,
                }
            } else if let Some([only]) = schema
                .get("allOf")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                schema = only;
            } else {
                return schema;
            }
        }
        schema
    }
}

const REF_PREFIX: &str = "#/components/schemas/";

fn ref_name(reference: &str) -> Option<&str> {
    reference.strip_prefix(REF_PREFIX)
}

fn collect_refs(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(Value::as_str).and_then(ref_name) {
                out.push(name.to_string());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Adds a kind to a schema's `x-kubernetes-group-version-kind` (a list: upstream shares
/// some schemas, e.g. `DeleteOptions`, among kinds).
fn mark_kind(schema: &mut Map<String, Value>, gvk: Value) {
    let entry = schema
        .entry("x-kubernetes-group-version-kind")
        .or_insert_with(|| json!([]));
    if let Value::Array(list) = entry
        && !list.contains(&gvk)
    {
        list.push(gvk);
    }
}

/// The `XList` schema upstream publishes beside each kind (k8s-openapi has a generic
/// `List<T>` instead, without a schema of its own).
fn list_schema(item: &str, group: &str, version: &str, kind: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("List of {kind} objects."),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{item}")},
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "allOf": [{"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")}],
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [{"group": group, "version": version, "kind": format!("{kind}List")}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_upstream_names_and_gvks() {
        let s = schemas();
        let pod = s.kind_name("", "v1", "Pod").unwrap();
        assert_eq!(pod, "io.k8s.api.core.v1.Pod");
        let schema = s.components.get(pod).unwrap();
        assert_eq!(
            schema["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        assert!(schema.get("required").is_none());
        assert_eq!(
            s.kind_name("apps", "v1", "Deployment"),
            Some("io.k8s.api.apps.v1.Deployment")
        );
        assert!(
            s.components
                .get("io.k8s.api.apps.v1.DeploymentList")
                .is_some()
        );
        // A description survives next to a reference, wrapped in allOf as upstream.
        let spec = &schema["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        assert!(
            spec["description"]
                .as_str()
                .unwrap()
                .contains("desired behavior")
        );
    }

    #[test]
    fn closure_follows_references() {
        let all = schemas().closure(["io.k8s.api.core.v1.Pod"]);
        for name in [
            "io.k8s.api.core.v1.PodSpec",
            "io.k8s.api.core.v1.Container",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "io.k8s.apimachinery.pkg.api.resource.Quantity",
        ] {
            assert!(all.contains_key(name), "{name}");
        }
        assert!(!all.contains_key("io.k8s.api.apps.v1.Deployment"));
    }
}
