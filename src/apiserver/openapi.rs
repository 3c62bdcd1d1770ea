//! A minimal OpenAPI v3 surface: enough for kubectl to see that the server validates
//! fields itself (each object path has a `patch` operation with the
//! `x-kubernetes-group-version-kind` extension and a `fieldValidation` parameter), so
//! `create|apply|replace -f` send `fieldValidation=Strict` instead of failing with
//! "failed to download openapi". Schemas are empty for now (`kubectl explain` needs
//! them).

use crate::api::registry::Registry;
use crate::api::status::ApiError;
use serde_json::{Map, Value, json};

/// `api/v1` or `apis/G/V`, as the OpenAPI v3 root names group-versions.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn group_versions(registry: &Registry) -> Vec<(&'static str, &'static str)> {
    let mut gvs = vec![("", "v1")];
    for (group, versions) in registry.groups() {
        gvs.extend(versions.into_iter().map(|v| (group, v)));
    }
    gvs
}

/// A content hash stand-in: the documents only change with the binary.
const DOC_HASH: &str = env!("CARGO_PKG_VERSION");

pub fn root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, version) in group_versions(registry) {
        let path = gv_path(group, version);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={DOC_HASH}")}),
        );
    }
    json!({ "paths": paths })
}

pub fn group_version(registry: &Registry, path: &str) -> Result<Value, ApiError> {
    let (group, version) = group_versions(registry)
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path)
        .ok_or_else(ApiError::path_not_found)?;
    let mut paths = Map::new();
    for r in registry.resources_of(group, version) {
        let base = format!("/{}", gv_path(group, version));
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": r.kind});
        let parameter = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let operation = |id: &str| {
            json!({
                "operationId": id,
                "x-kubernetes-action": id,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [parameter("dryRun"), parameter("fieldManager"), parameter("fieldValidation")],
                "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(
            item,
            json!({
                "get": {"x-kubernetes-group-version-kind": gvk, "responses": {"200": {"description": "OK"}}},
                "put": operation("put"),
                "patch": operation("patch"),
            }),
        );
    }
    Ok(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_advertise_field_validation() {
        let reg = Registry::default();
        let root = root(&reg);
        assert!(
            root["paths"]["apis/coordination.k8s.io/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/coordination.k8s.io/v1?hash=")
        );
        let core = group_version(&reg, "api/v1").unwrap();
        let patch = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(core["paths"]["/api/v1/namespaces/{name}"].is_object());
        assert!(group_version(&reg, "apis/nothing.example/v1").is_err());
    }
}
