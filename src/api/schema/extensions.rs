//! The list and patch semantics upstream publishes as `x-kubernetes-*` extensions
//! (from its Go struct tags `patchStrategy`, `patchMergeKey`, `listType`,
//! `listMapKey`). k8s-openapi keeps them only as code (its `DeepMerge` impls), so the
//! fields clients merge on are listed here as data. kubectl's client-side apply reads
//! `x-kubernetes-patch-merge-key` to merge lists element by element.

use serde_json::{Map, Value, json};

/// One field's list/patch semantics.
struct FieldMeta {
    schema: &'static str,
    field: &'static str,
    merge_key: Option<&'static str>,
    strategy: Option<&'static str>,
    list_type: &'static str,
    map_keys: &'static [&'static str],
}

/// A list merged by key: `patchStrategy=merge`, `patchMergeKey=key`, `listType=map`.
const fn keyed(
    schema: &'static str,
    field: &'static str,
    key: &'static str,
    map_keys: &'static [&'static str],
) -> FieldMeta {
    FieldMeta {
        schema,
        field,
        merge_key: Some(key),
        strategy: Some("merge"),
        list_type: "map",
        map_keys,
    }
}

const FIELDS: &[FieldMeta] = &[
    keyed(
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "name",
        &["name"],
    ),
    keyed(
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "name",
        &["name"],
    ),
    keyed(
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "name",
        &["name"],
    ),
    keyed(
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "name",
        &["name"],
    ),
    keyed("io.k8s.api.core.v1.PodSpec", "hostAliases", "ip", &["ip"]),
    keyed(
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "name",
        &["name"],
    ),
    keyed(
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "topologyKey",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    FieldMeta {
        strategy: Some("merge,retainKeys"),
        ..keyed("io.k8s.api.core.v1.PodSpec", "volumes", "name", &["name"])
    },
    FieldMeta {
        strategy: Some("merge,retainKeys"),
        ..keyed(
            "io.k8s.api.core.v1.PodSpec",
            "resourceClaims",
            "name",
            &["name"],
        )
    },
    keyed(
        "io.k8s.api.core.v1.Container",
        "ports",
        "containerPort",
        &["containerPort", "protocol"],
    ),
    keyed("io.k8s.api.core.v1.Container", "env", "name", &["name"]),
    keyed(
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "mountPath",
        &["mountPath"],
    ),
    keyed(
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "devicePath",
        &["devicePath"],
    ),
    keyed(
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "name",
        &["name"],
    ),
    keyed(
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "mountPath",
        &["mountPath"],
    ),
    keyed(
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "devicePath",
        &["devicePath"],
    ),
    keyed("io.k8s.api.core.v1.PodStatus", "podIPs", "ip", &["ip"]),
    keyed(
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "port",
        &["port", "protocol"],
    ),
    keyed(
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "type",
        &["type"],
    ),
    keyed(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "uid",
        &["uid"],
    ),
    FieldMeta {
        schema: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        field: "finalizers",
        merge_key: None,
        strategy: Some("merge"),
        list_type: "set",
        map_keys: &[],
    },
    FieldMeta {
        schema: "io.k8s.api.core.v1.NodeSpec",
        field: "podCIDRs",
        merge_key: None,
        strategy: Some("merge"),
        list_type: "set",
        map_keys: &[],
    },
];

/// Fields replaced as a whole except for the keys a patch names (`patchStrategy=retainKeys`).
const RETAIN_KEYS: &[(&str, &str)] = &[
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy"),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy"),
];

/// Adds the extensions to `components`, which holds every schema by name.
pub(super) fn add(components: &mut Map<String, Value>) {
    for meta in FIELDS {
        let Some(property) = property_mut(components, meta.schema, meta.field) else {
            continue;
        };
        if let Some(key) = meta.merge_key {
            property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
        if let Some(strategy) = meta.strategy {
            property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
        property.insert("x-kubernetes-list-type".into(), json!(meta.list_type));
        if !meta.map_keys.is_empty() {
            property.insert("x-kubernetes-list-map-keys".into(), json!(meta.map_keys));
        }
    }
    for (schema, field) in RETAIN_KEYS {
        if let Some(property) = property_mut(components, schema, field) {
            property.insert("x-kubernetes-patch-strategy".into(), json!("retainKeys"));
        }
    }
    mark_conditions(components);
}

/// Status conditions merge by `type` in every kind that has them (upstream tags each
/// one so; listing them all would only repeat the rule).
fn mark_conditions(components: &mut Map<String, Value>) {
    let names: Vec<String> = components
        .keys()
        .filter(|name| name.ends_with("Status") && name.starts_with("io.k8s.api."))
        .cloned()
        .collect();
    for name in names {
        let Some(property) = property_mut(components, &name, "conditions") else {
            continue;
        };
        if property.get("type").and_then(Value::as_str) != Some("array")
            || property.contains_key("x-kubernetes-list-type")
        {
            continue;
        }
        property.insert("x-kubernetes-patch-merge-key".into(), json!("type"));
        property.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
        property.insert("x-kubernetes-list-type".into(), json!("map"));
        property.insert("x-kubernetes-list-map-keys".into(), json!(["type"]));
    }
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
        let dspec = s
            .components
            .get("io.k8s.api.apps.v1.DeploymentSpec")
            .unwrap();
        assert_eq!(
            dspec["properties"]["strategy"]["x-kubernetes-patch-strategy"],
            "retainKeys"
        );
    }
}
