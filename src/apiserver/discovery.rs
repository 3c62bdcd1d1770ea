//! Discovery: `/version`, `/api`, `/apis`, `/apis/G` and the resource lists of each
//! group-version, built from the registry. `/api` and `/apis` answer with aggregated
//! discovery (`apidiscovery.k8s.io/v2`, every resource in one document) when the
//! client asks for it, as kubectl does, and with plain `APIVersions`/`APIGroupList`
//! otherwise.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use rind_api::registry::{Registry, Resource};
use rind_api::status::ApiError;
use serde_json::{Value, json};

/// The media type of aggregated discovery; the reply must carry exactly this, or
/// kubectl treats the body as a legacy document.
const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the `Accept` header asks for aggregated discovery v2.
fn wants_aggregated(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    accept.split(',').any(|range| {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

/// One resource as aggregated discovery describes it, subresources included.
fn aggregated_resource(r: &Resource) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|sub| {
            let (group, version) = sub.group_version.unwrap_or((r.group, r.version));
            json!({
                "subresource": sub.name,
                "responseKind": {"group": group, "version": version, "kind": sub.kind},
                "verbs": sub.verbs,
            })
        })
        .collect();
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = json!(subresources);
    }
    entry
}

/// An `APIGroupDiscovery` for `group` with `versions` (preferred first).
fn aggregated_group(registry: &Registry, group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            let resources: Vec<Value> = registry
                .resources_of(group, version)
                .map(aggregated_resource)
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// The `APIGroupDiscoveryList` of the core group (`core`) or of every named group.
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group(registry, "", &["v1"])]
    } else {
        registry
            .groups()
            .iter()
            .map(|(group, versions)| aggregated_group(registry, group, versions))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// `/api` (`core`) or `/apis`: aggregated when asked for, legacy otherwise.
pub fn root(registry: &Registry, headers: &HeaderMap, core: bool) -> Response {
    let (body, content_type) = if wants_aggregated(headers) {
        (aggregated(registry, core), AGGREGATED_CONTENT_TYPE)
    } else if core {
        (api_versions(), "application/json")
    } else {
        (group_list(registry), "application/json")
    };
    // Discovery documents are meta/v1 and apidiscovery/v2 objects: upstream's layout.
    let bytes = rind_api::json::to_body(&body);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        bytes,
    )
        .into_response()
}

/// The Kubernetes version this server speaks (matches kubectl 1.37 and k8s-openapi's pin).
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "emulationMajor": "1",
        "emulationMinor": "37",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "36",
        "gitVersion": "v1.37.0",
        "gitCommit": "rind",
        "gitTreeState": "clean",
        "buildDate": "2026-11-01T00:00:00Z",
        "goVersion": format!("rust (rind {})", env!("CARGO_PKG_VERSION")),
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// Architecture names as Go spells them, which clients print and compare.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

fn group_entry(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .iter()
        .map(|(name, versions)| group_entry(name, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(registry: &Registry, name: &str) -> Result<Value, ApiError> {
    let groups = registry.groups();
    let (name, versions) = groups
        .iter()
        .find(|(g, _)| *g == name)
        .ok_or_else(ApiError::path_not_found)?;
    let mut entry = group_entry(name, versions);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Ok(entry)
}

pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Result<Value, ApiError> {
    if !registry.has_group_version(group, version) {
        return Err(ApiError::path_not_found());
    }
    let mut resources = Vec::new();
    for r in registry.resources_of(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if let Some((group, version)) = sub.group_version {
                // Binding and Scale live in their own groups whatever the parent is.
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_lists_every_group() {
        let reg = Registry::default();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
                .parse()
                .unwrap(),
        );
        assert!(wants_aggregated(&headers));
        assert!(!wants_aggregated(&HeaderMap::new()));
        let apis = aggregated(&reg, false);
        let items = apis["items"].as_array().unwrap();
        let apps = items
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .unwrap();
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(deploy["scope"], "Namespaced");
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        let scale = deploy["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .unwrap();
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        let autoscaling = items
            .iter()
            .find(|g| g["metadata"]["name"] == "autoscaling")
            .unwrap();
        assert_eq!(autoscaling["versions"][0]["version"], "v2");
        let core = aggregated(&reg, true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert!(core["items"][0]["metadata"].get("name").is_none());
    }

    #[test]
    fn core_resources_have_discovery_fields() {
        let list = resource_list(&Registry::default(), "", "v1").unwrap();
        let pods = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["singularName"], "pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(
            list["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/log")
        );
        assert!(resource_list(&Registry::default(), "apps", "v0").is_err());
        let groups = group_list(&Registry::default());
        let coordination = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "coordination.k8s.io")
            .unwrap();
        assert_eq!(
            coordination["preferredVersion"]["groupVersion"],
            "coordination.k8s.io/v1"
        );
    }
}
