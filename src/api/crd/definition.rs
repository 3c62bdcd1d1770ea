//! The CustomResourceDefinition object itself: its validation (names, versions,
//! structural schemas, printer columns, scale paths) with upstream's field paths, its
//! defaults, and the status the server gives it (accepted names, conditions, stored
//! versions).

use crate::fields::invalid_value;
use crate::meta::{self, format_time};
use crate::status::Cause;
use crate::validation::{is_dns1123_label, is_dns1123_subdomain};
use serde_json::{Map, Value, json};

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    meta::str_at(value, path).unwrap_or_default()
}

/// `spec.names` with upstream's defaults: singular is the lower-cased kind, listKind
/// is `<kind>List`.
pub fn accepted_names(spec: &Value) -> Value {
    let mut names = spec
        .get("names")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let kind = text(spec, &["names", "kind"]).to_string();
    let singular_missing = names
        .get("singular")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if singular_missing {
        names.insert("singular".into(), json!(kind.to_lowercase()));
    }
    let list_missing = names
        .get("listKind")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if list_missing {
        names.insert("listKind".into(), json!(format!("{kind}List")));
    }
    Value::Object(names)
}

/// Fills the defaults upstream's CRD strategy sets, so stored CRDs are complete.
pub fn default(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let names = accepted_names(&Value::Object(spec.clone()));
    spec.insert("names".into(), names);
    spec.entry("conversion")
        .or_insert_with(|| json!({"strategy": "None"}));
}

/// Every problem of a CRD, as upstream reports it.
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let group = text(&spec, &["group"]);
    let plural = text(&spec, &["names", "plural"]);
    let name = meta::name(crd);
    if name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        causes.push(Cause::required("spec.group", ""));
    } else if !is_dns1123_subdomain(group) || !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    match text(&spec, &["scope"]) {
        "Cluster" | "Namespaced" => {}
        "" => causes.push(Cause::required("spec.scope", "")),
        other => causes.push(Cause::unsupported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    validate_names(&spec, &mut causes);
    validate_versions(&spec, &mut causes);
    causes
}

fn validate_names(spec: &Value, causes: &mut Vec<Cause>) {
    let names = spec.get("names").cloned().unwrap_or(Value::Null);
    for (field, required) in [
        ("plural", true),
        ("singular", false),
        ("kind", true),
        ("listKind", false),
    ] {
        let value = text(&names, &[field]);
        let path = format!("spec.names.{field}");
        if value.is_empty() {
            if required {
                causes.push(Cause::required(path, ""));
            }
            continue;
        }
        let lower = matches!(field, "plural" | "singular");
        if lower && !is_dns1123_label(value) {
            causes.push(Cause::invalid(
                path,
                value,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ));
        } else if !lower && !is_dns1123_label(&value.to_lowercase()) {
            causes.push(Cause::invalid(
                path,
                value,
                "may have mixed case, but should otherwise match: [a-z0-9]([-a-z0-9]*[a-z0-9])?",
            ));
        }
    }
    if !text(&names, &["kind"]).is_empty() && text(&names, &["kind"]) == text(&names, &["listKind"])
    {
        causes.push(Cause::invalid(
            "spec.names.listKind",
            text(&names, &["listKind"]),
            "kind and listKind may not be the same",
        ));
    }
    for (field, items) in [
        ("shortNames", names.get("shortNames")),
        ("categories", names.get("categories")),
    ] {
        for (i, item) in items
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let value = item.as_str().unwrap_or_default();
            if !is_dns1123_label(value) {
                causes.push(Cause::invalid(
                    format!("spec.names.{field}[{i}]"),
                    value,
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                ));
            }
        }
    }
}

fn validate_versions(spec: &Value, causes: &mut Vec<Cause>) {
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
        return;
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage != 1 {
        causes.push(invalid_value(
            "spec.versions",
            &json!(
                versions
                    .iter()
                    .map(|v| text(v, &["name"]))
                    .collect::<Vec<_>>()
            ),
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions
        .iter()
        .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
    {
        causes.push(invalid_value(
            "spec.versions",
            &json!(
                versions
                    .iter()
                    .map(|v| text(v, &["name"]))
                    .collect::<Vec<_>>()
            ),
            "must have at least one version marked as served",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, version) in versions.iter().enumerate() {
        let base = format!("spec.versions[{i}]");
        let name = text(version, &["name"]);
        if name.is_empty() {
            causes.push(Cause::required(format!("{base}.name"), ""));
        } else if !is_dns1035_label(name) {
            causes.push(Cause::invalid(
                format!("{base}.name"),
                name,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            ));
        } else if seen.contains(&name) {
            causes.push(Cause::duplicate(format!("{base}.name"), name));
        }
        seen.push(name);
        match version.get("schema").and_then(|s| s.get("openAPIV3Schema")) {
            None => causes.push(Cause::required(
                format!("{base}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(schema) => {
                let path = format!("{base}.schema.openAPIV3Schema");
                if schema.get("type").and_then(Value::as_str) != Some("object") {
                    causes.push(Cause::invalid(
                        format!("{path}.type"),
                        text(schema, &["type"]),
                        "must be object at the root",
                    ));
                }
                validate_schema(schema, &path, true, causes);
            }
        }
        validate_columns(version, &base, causes);
        validate_scale(version, &base, causes);
    }
}

fn is_dns1035_label(text: &str) -> bool {
    is_dns1123_label(text) && text.starts_with(|c: char| c.is_ascii_lowercase())
}

const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// The structural rules: every specified field has a type (unless it is an
/// int-or-string or keeps unknown fields), arrays say what their items are, patterns
/// compile, and the root's metadata may only constrain name and generateName.
fn validate_schema(schema: &Value, path: &str, root: bool, causes: &mut Vec<Cause>) {
    let Some(fields) = schema.as_object() else {
        causes.push(Cause::invalid(path, "", "must be a schema object"));
        return;
    };
    let flag = |key: &str| fields.get(key).and_then(Value::as_bool).unwrap_or(false);
    let kind = fields.get("type").and_then(Value::as_str).unwrap_or("");
    let int_or_string = flag("x-kubernetes-int-or-string");
    if int_or_string && !kind.is_empty() {
        causes.push(Cause::forbidden(
            format!("{path}.type"),
            "must be empty if x-kubernetes-int-or-string is true",
        ));
    }
    if kind.is_empty() && !int_or_string && !flag("x-kubernetes-preserve-unknown-fields") && !root {
        causes.push(Cause::required(
            format!("{path}.type"),
            "must not be empty for specified object fields",
        ));
    }
    if !kind.is_empty() && !TYPES.contains(&kind) {
        causes.push(Cause::unsupported(format!("{path}.type"), kind, TYPES));
    }
    if kind == "array" && !fields.contains_key("items") {
        causes.push(Cause::required(
            format!("{path}.items"),
            "must be specified",
        ));
    }
    if let Some(pattern) = fields.get("pattern").and_then(Value::as_str)
        && let Err(e) = regex::Regex::new(pattern)
    {
        causes.push(Cause::invalid(
            format!("{path}.pattern"),
            pattern,
            &format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
    if flag("x-kubernetes-embedded-resource") && kind != "object" {
        causes.push(Cause::invalid(
            format!("{path}.type"),
            kind,
            "must be object if x-kubernetes-embedded-resource is true",
        ));
    }
    if let Some(properties) = fields.get("properties").and_then(Value::as_object) {
        if fields
            .get("additionalProperties")
            .is_some_and(Value::is_object)
        {
            causes.push(Cause::forbidden(
                format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        for (key, child) in properties {
            let child_path = format!("{path}.properties[{key}]");
            if root && key == "metadata" {
                validate_root_metadata(child, &child_path, causes);
            }
            validate_schema(child, &child_path, false, causes);
        }
    }
    if let Some(items) = fields.get("items") {
        validate_schema(items, &format!("{path}.items"), false, causes);
    }
    if let Some(additional) = fields.get("additionalProperties").filter(|a| a.is_object()) {
        validate_schema(
            additional,
            &format!("{path}.additionalProperties"),
            false,
            causes,
        );
    }
}

fn validate_root_metadata(schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let allowed: Map<String, Value> = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for key in allowed.keys() {
        if key != "name" && key != "generateName" {
            causes.push(Cause::forbidden(
                format!("{path}.properties[{key}]"),
                "must not be specified",
            ));
        }
    }
}

fn validate_columns(version: &Value, base: &str, causes: &mut Vec<Cause>) {
    const COLUMN_TYPES: &[&str] = &["integer", "number", "string", "boolean", "date"];
    for (i, column) in version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("{base}.additionalPrinterColumns[{i}]");
        if text(column, &["name"]).is_empty() {
            causes.push(Cause::required(format!("{path}.name"), ""));
        }
        match text(column, &["type"]) {
            "" => causes.push(Cause::required(format!("{path}.type"), "")),
            t if !COLUMN_TYPES.contains(&t) => {
                causes.push(Cause::unsupported(format!("{path}.type"), t, COLUMN_TYPES))
            }
            _ => {}
        }
        if text(column, &["jsonPath"]).is_empty() {
            causes.push(Cause::required(format!("{path}.jsonPath"), ""));
        }
    }
}

fn validate_scale(version: &Value, base: &str, causes: &mut Vec<Cause>) {
    let Some(scale) = version.get("subresources").and_then(|s| s.get("scale")) else {
        return;
    };
    let path = format!("{base}.subresources.scale");
    for (field, prefix, required) in [
        ("specReplicasPath", ".spec.", true),
        ("statusReplicasPath", ".status.", true),
        ("labelSelectorPath", "", false),
    ] {
        let value = text(scale, &[field]);
        if value.is_empty() {
            if required {
                causes.push(Cause::required(format!("{path}.{field}"), ""));
            }
            continue;
        }
        let prefix_ok = if prefix.is_empty() {
            value.starts_with(".spec.") || value.starts_with(".status.")
        } else {
            value.starts_with(prefix)
        };
        if !prefix_ok {
            let detail = if prefix.is_empty() {
                "should be a json path under either .spec or .status".to_string()
            } else {
                format!(
                    "should be a json path under {}",
                    prefix.trim_end_matches('.')
                )
            };
            causes.push(Cause::invalid(format!("{path}.{field}"), value, &detail));
        }
    }
}

/// The rules an update must keep on top of `validate`.
pub fn validate_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for field in ["group", "scope"] {
        let before = text(old, &["spec", field]);
        let after = text(new, &["spec", field]);
        if before != after {
            causes.push(Cause::invalid(
                format!("spec.{field}"),
                after,
                "field is immutable",
            ));
        }
    }
    causes
}

/// One condition, keeping its transition time when its status does not change.
fn condition(
    old: &[Value],
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) -> Value {
    let since = old
        .iter()
        .find(|c| text(c, &["type"]) == kind && text(c, &["status"]) == status)
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    })
}

/// The status the server gives `crd`: its names are accepted unless `conflict` says
/// what already uses them, and it is established once accepted.
pub fn status(crd: &Value, conflict: Option<&str>) -> Value {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let old = crd.get("status").cloned().unwrap_or(Value::Null);
    let old_conditions = old
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = format_time(meta::now());
    let mut stored: Vec<Value> = old
        .get("storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for version in spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = json!(text(version, &["name"]));
        if version.get("storage").and_then(Value::as_bool) == Some(true) && !stored.contains(&name)
        {
            stored.push(name);
        }
    }
    let (accepted, conditions) = match conflict {
        None => (
            accepted_names(&spec),
            vec![
                condition(
                    &old_conditions,
                    "NamesAccepted",
                    "True",
                    "NoConflicts",
                    "no conflicts found",
                    &now,
                ),
                condition(
                    &old_conditions,
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                    &now,
                ),
            ],
        ),
        Some(what) => (
            old.get("acceptedNames")
                .cloned()
                .unwrap_or_else(|| json!({"plural": "", "kind": ""})),
            vec![
                condition(
                    &old_conditions,
                    "NamesAccepted",
                    "False",
                    "AlreadyInUse",
                    what,
                    &now,
                ),
                condition(
                    &old_conditions,
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                    &now,
                ),
            ],
        ),
    };
    // As upstream's SetCRDCondition: a condition of the same type is replaced where it
    // stands, a new type appended, and conditions of other types (a client's own, or
    // another controller's) are kept.
    let mut merged = old_conditions;
    for condition in conditions {
        let kind = text(&condition, &["type"]).to_string();
        match merged.iter_mut().find(|c| text(c, &["type"]) == kind) {
            Some(existing) => *existing = condition,
            None => merged.push(condition),
        }
    }
    json!({
        "acceptedNames": accepted,
        "conditions": merged,
        "storedVersions": stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                  "spec": {"type": "object", "properties": {"cronSpec": {"type": "string"}}}}}}}]
            }
        })
    }

    fn fields(causes: Vec<Cause>) -> Vec<String> {
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn the_docs_crd_is_valid() {
        assert!(validate(&crd()).is_empty(), "{:?}", validate(&crd()));
    }

    #[test]
    fn names_versions_and_schemas_are_checked() {
        let mut bad = crd();
        bad["metadata"]["name"] = json!("crontab.stable.example.com");
        bad["spec"]["versions"][0]["storage"] = json!(false);
        bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["list"] = json!({"type": "array"});
        bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["free"] = json!({"properties": {"a": {"type": "string"}}});
        let found = fields(validate(&bad));
        assert_eq!(
            found,
            vec![
                "metadata.name: Invalid value: \"crontab.stable.example.com\": must be spec.names.plural+\".\"+spec.group",
                "spec.versions: Invalid value: [\"v1\"]: must have exactly one version marked as storage version",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[free].type: Required value: must not be empty for specified object fields",
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[list].items: Required value: must be specified",
            ]
        );
    }

    #[test]
    fn status_accepts_names_and_records_stored_versions() {
        let status = status(&crd(), None);
        assert_eq!(status["acceptedNames"]["singular"], "crontab");
        assert_eq!(status["acceptedNames"]["listKind"], "CronTabList");
        assert_eq!(status["storedVersions"], json!(["v1"]));
        assert_eq!(status["conditions"][1]["type"], "Established");
        assert_eq!(status["conditions"][1]["status"], "True");
    }

    #[test]
    fn status_keeps_conditions_of_other_types() {
        let mut crd = crd();
        crd["status"] = json!({"conditions": [
            {"type": "Sample", "status": "True", "reason": "E2E", "message": "m"},
            {"type": "Established", "status": "False", "reason": "Old", "message": "m"},
        ]});
        let conditions = status(&crd, None)["conditions"].clone();
        let kinds: Vec<&str> = conditions
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Sample", "Established", "NamesAccepted"]);
        assert_eq!(conditions[1]["status"], "True");
    }
}
