//! The list and patch semantics upstream publishes as `x-kubernetes-*` extensions
//! (from its Go struct tags `patchStrategy`, `patchMergeKey`, `listType`,
//! `listMapKey`, `mapType`). k8s-openapi's schemas leave them out; the server's own
//! patch machinery already knows every built-in field's shape
//! (`crate::patch::schema`), so the extensions are read from there and the
//! documents say exactly what the server does. kubectl's client-side apply reads
//! `x-kubernetes-patch-merge-key` to merge lists element by element.

use crate::patch::schema::{Node, Shape};
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// Fields replaced as a whole except for the keys a patch names
/// (`patchStrategy=retainKeys`), which the shape table does not record.
const RETAIN_KEYS: &[(&str, &str)] = &[
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy"),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy"),
    ("io.k8s.api.core.v1.PodSpec", "volumes"),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims"),
];

/// Adds the extensions to `components` (every schema by name), starting from each
/// kind's schema and following references; `kinds` pairs apiVersion and kind with
/// the kind's schema name.
pub(super) fn add(components: &mut Map<String, Value>, kinds: &[(String, &str, String)]) {
    let mut done = HashSet::new();
    for (api_version, kind, name) in kinds {
        annotate(
            components,
            name,
            Node::for_kind(api_version, kind),
            &mut done,
        );
    }
    for (schema, field) in RETAIN_KEYS {
        if let Some(property) = property_mut(components, schema, field) {
            let strategy = match property.get("x-kubernetes-patch-strategy") {
                Some(Value::String(s)) => format!("{s},retainKeys"),
                _ => "retainKeys".to_string(),
            };
            property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
    }
}

fn annotate(
    components: &mut Map<String, Value>,
    name: &str,
    node: Node,
    done: &mut HashSet<String>,
) {
    if !done.insert(name.to_string()) {
        return;
    }
    let fields: Vec<(String, Option<String>)> = components
        .get(name)
        .and_then(|schema| schema.get("properties"))
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .map(|(field, schema)| (field.clone(), referenced(schema)))
                .collect()
        })
        .unwrap_or_default();
    for (field, target) in fields {
        let child = node.child(&field);
        if let Some(property) = property_mut(components, name, &field) {
            mark(property, child.shape, child.node);
        }
        // What a reference names is the field's type, or its items' or values' type.
        let inner = if child.node.is_map() {
            child.node.child("").node
        } else {
            child.node
        };
        if let Some(target) = target {
            annotate(components, &target, inner, done);
        }
    }
}

fn mark(property: &mut Map<String, Value>, shape: Shape, node: Node) {
    match shape {
        Shape::MapList(merge_keys) => {
            let keys: Vec<&str> = node
                .apply_keys(merge_keys)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            if let Some(first) = merge_keys.first() {
                property.insert("x-kubernetes-patch-merge-key".into(), json!(first));
            }
            property.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
            property.insert("x-kubernetes-list-type".into(), json!("map"));
            property.insert("x-kubernetes-list-map-keys".into(), json!(keys));
        }
        Shape::SetList => {
            property.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
            property.insert("x-kubernetes-list-type".into(), json!("set"));
        }
        Shape::AtomicList => {
            property.insert("x-kubernetes-list-type".into(), json!("atomic"));
        }
        Shape::AtomicMap => {
            property.insert("x-kubernetes-map-type".into(), json!("atomic"));
        }
        Shape::Object | Shape::Map => {}
    }
}

/// The component a property's schema refers to, directly or through `allOf`, `items`
/// or `additionalProperties`.
fn referenced(schema: &Value) -> Option<String> {
    let reference = schema
        .get("$ref")
        .or_else(|| schema.get("allOf")?.get(0)?.get("$ref"))
        .or_else(|| schema.get("items")?.get("$ref"))
        .or_else(|| schema.get("additionalProperties")?.get("$ref"))?;
    super::ref_name(reference.as_str()?).map(str::to_string)
}

fn property_mut<'a>(
    components: &'a mut Map<String, Value>,
    schema: &str,
    field: &str,
) -> Option<&'a mut Map<String, Value>> {
    components
        .get_mut(schema)?
        .get_mut("properties")?
        .get_mut(field)?
        .as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::super::schemas;
    use serde_json::json;

    #[test]
    fn merge_keys_are_published() {
        let s = schemas();
        let spec = s.components.get("io.k8s.api.core.v1.PodSpec").unwrap();
        let containers = &spec["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(
            spec["properties"]["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        let status = s
            .components
            .get("io.k8s.api.apps.v1.DeploymentStatus")
            .unwrap();
        assert_eq!(
            status["properties"]["conditions"]["x-kubernetes-patch-merge-key"],
            "type"
        );
        let container = s.components.get("io.k8s.api.core.v1.Container").unwrap();
        let ports = &container["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        let meta = s
            .components
            .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            .unwrap();
        assert_eq!(
            meta["properties"]["finalizers"]["x-kubernetes-list-type"],
            "set"
        );
        assert_eq!(
            meta["properties"]["ownerReferences"]["x-kubernetes-patch-merge-key"],
            "uid"
        );
        assert_eq!(
            spec["properties"]["tolerations"]["x-kubernetes-list-type"],
            "atomic"
        );
        let dspec = s
            .components
            .get("io.k8s.api.apps.v1.DeploymentSpec")
            .unwrap();
        assert_eq!(
            dspec["properties"]["selector"]["x-kubernetes-map-type"],
            "atomic"
        );
        assert_eq!(
            dspec["properties"]["strategy"]["x-kubernetes-patch-strategy"],
            "retainKeys"
        );
    }
}
