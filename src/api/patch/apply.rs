//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! Every write records which manager set which fields: an apply owns exactly the
//! fields of its configuration (operation `Apply`); any other write owns what it added
//! or changed (operation `Update`), taking those fields from their previous owners.
//! An apply that would change a field someone else owns fails with a conflict unless
//! forced (then it takes the field), and fields a manager applied before but no longer
//! applies are removed when nobody else owns them.

use super::fields::{self, FieldSet, item_element};
use super::schema::{Node, Shape};
use crate::meta::{format_time, metadata_mut, now};
use serde_json::{Map, Value, json};

/// A field another manager owns with a different value than the apply sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as upstream prints it: `"kubectl-edit" using v1` (Update) or `"x"`.
    pub manager: String,
    /// The field as upstream prints it: `.spec.replicas`.
    pub field: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    #[error("{0}")]
    Invalid(String),
}

/// Upstream's summary of conflicts, grouped by manager when there are several.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager, only.field
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        for c in conflicts.iter().filter(|c| c.manager == manager) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn display(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    fn into_json(self) -> Value {
        let mut entry = Map::new();
        entry.insert("manager".into(), Value::String(self.manager));
        entry.insert("operation".into(), Value::String(self.operation));
        entry.insert("apiVersion".into(), Value::String(self.api_version));
        if let Some(time) = self.time {
            entry.insert("time".into(), Value::String(time));
        }
        entry.insert("fieldsType".into(), json!("FieldsV1"));
        entry.insert("fieldsV1".into(), self.fields.into_json());
        if let Some(sub) = self.subresource {
            entry.insert("subresource".into(), Value::String(sub));
        }
        Value::Object(entry)
    }
}

fn read_entries(object: &Value) -> Vec<Entry> {
    let Some(list) = object
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            Some(Entry {
                manager: text("manager")?,
                operation: text("operation").unwrap_or_else(|| "Update".into()),
                api_version: text("apiVersion").unwrap_or_default(),
                time: text("time"),
                subresource: text("subresource").filter(|s| !s.is_empty()),
                fields: FieldSet::from_json(e.get("fieldsV1").unwrap_or(&Value::Null)),
            })
        })
        .collect()
}

fn write_entries(object: &mut Value, entries: Vec<Entry>) {
    let metadata = metadata_mut(object);
    let kept: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::into_json)
        .collect();
    if kept.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".into(), Value::Array(kept));
    }
}

/// Metadata the server owns: never part of anyone's field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The part of a field set a write through `subresource` may own: the status
/// subresource owns only status (and labels and annotations, which upstream lets status
/// writes carry), the main resource everything but status and server metadata.
fn ownable(mut set: FieldSet, subresource: Option<&str>, has_status: bool) -> FieldSet {
    // `approval` (CertificateSigningRequests) writes status conditions too.
    let status_write = matches!(subresource, Some("status" | "approval"));
    set.retain_children(|k| {
        if status_write {
            k == "f:status" || k == "f:metadata"
        } else {
            !(has_status && k == "f:status") && k != "f:apiVersion" && k != "f:kind"
        }
    });
    if let Some(meta) = set.child_mut("f:metadata") {
        meta.retain_children(|k| {
            let field = k.strip_prefix("f:").unwrap_or(k);
            if status_write {
                field == "labels" || field == "annotations"
            } else {
                !SERVER_METADATA.contains(&field)
            }
        });
    }
    set.drop_if_empty("f:metadata");
    set
}

/// The `fieldsV1` document of a created object's ownable fields: what `ownable` keeps
/// of `changed` from `zero_object`, built straight as JSON. `None` for an object of a
/// form that path handles otherwise (a non-object where the zero object has a struct,
/// keyed-list items sharing keys): the caller then takes the general path.
fn created_fields(new: &Value, node: Node, has_status: bool) -> Option<Map<String, Value>> {
    let Value::Object(root) = new else {
        return None;
    };
    let mut doc = Map::new();
    for (k, v) in root {
        if k == "apiVersion" || k == "kind" || (has_status && k == "status") {
            continue;
        }
        let child = node.child(k);
        if !matches!(k.as_str(), "metadata" | "spec" | "status") {
            doc.insert(
                fields::field_element(k),
                fields::added_doc(v, child.shape, child.node)?,
            );
            continue;
        }
        // The zero object has these structs, empty: they are not added themselves, only
        // what they hold.
        let (Value::Object(inner), Shape::Object | Shape::Map) = (v, child.shape) else {
            return None;
        };
        let mut below = Map::new();
        for (field, value) in inner {
            if k == "metadata" && SERVER_METADATA.contains(&field.as_str()) {
                continue;
            }
            let grandchild = child.node.child(field);
            below.insert(
                fields::field_element(field),
                fields::added_doc(value, grandchild.shape, grandchild.node)?,
            );
        }
        if !below.is_empty() {
            doc.insert(fields::field_element(k), Value::Object(below));
        }
    }
    Some(doc)
}

/// What a created object counts as changed from: upstream compares with the zero value
/// of the type, whose metadata, spec and status structs exist (empty).
fn zero_object() -> Value {
    json!({"metadata": {}, "spec": {}, "status": {}})
}

fn api_version(object: &Value) -> String {
    object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1")
        .to_string()
}

/// Drops owned fields that are no longer in `object`.
fn prune(entries: &mut [Entry], object: &Value, node: Node) {
    for entry in entries.iter_mut() {
        fields::retain_present(&mut entry.fields, object, node);
    }
}

/// Records a non-apply write (create, update, patch) by `manager` into `new`'s
/// `managedFields`: the manager owns what it added or changed relative to `old`.
/// `new` keeps the entries it carries (a client may send them); without any it
/// inherits `old`'s.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    has_status: bool,
) {
    let node = Node::for_object(new);
    let sent = new.get("metadata").and_then(|m| m.get("managedFields"));
    // A create (nothing stored, no entries sent): one entry holding every ownable
    // field, its document built directly.
    if old.is_none()
        && sent.is_none()
        && subresource.is_none()
        && let Some(doc) = created_fields(new, node, has_status)
    {
        if !doc.is_empty() {
            let entry = Entry {
                manager: manager.to_string(),
                operation: "Update".to_string(),
                api_version: api_version(new),
                time: Some(format_time(now())),
                subresource: None,
                fields: FieldSet::default(),
            };
            let mut entry = entry.into_json();
            entry["fieldsV1"] = Value::Object(doc);
            metadata_mut(new).insert("managedFields".into(), Value::Array(vec![entry]));
        }
        return;
    }
    let zero = zero_object();
    let changed = ownable(
        fields::changed(Some(old.unwrap_or(&zero)), new, node),
        subresource,
        has_status,
    );
    let stored = old
        .and_then(|o| o.get("metadata"))
        .and_then(|m| m.get("managedFields"));
    // Most writes send no entries or send the stored ones back unchanged, and remove
    // no field: then the stored entries, which name only fields the object has, are
    // edited where they stand.
    let inherited = sent.is_none() || sent == stored;
    if inherited && old.is_none_or(|old| !fields::removes_any(old, new, node)) {
        record_in_place(old, new, changed, manager, subresource);
    } else {
        record_rebuilt(old, new, changed, manager, subresource, node);
    }
}

/// `record_update` for entries that are `old`'s, still all present in `new`: only the
/// nodes `changed` touches are edited in the stored `fieldsV1` documents.
fn record_in_place(
    old: Option<&Value>,
    new: &mut Value,
    changed: FieldSet,
    manager: &str,
    subresource: Option<&str>,
) {
    let api_version = api_version(new);
    let metadata = metadata_mut(new);
    let mut entries = match metadata.remove("managedFields") {
        Some(Value::Array(sent)) => sent,
        _ => old
            .and_then(|o| o.get("metadata"))
            .and_then(|m| m.get("managedFields"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    };
    if !changed.is_empty() {
        let mut emptied = vec![false; entries.len()];
        for (entry, emptied) in entries.iter_mut().zip(emptied.iter_mut()) {
            if let Some(Value::Object(doc)) = entry.get_mut("fieldsV1") {
                *emptied = changed.subtract_from_json(doc);
            }
        }
        let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
        let mine = entries.iter().position(|e| {
            text(e, "manager").as_deref() == Some(manager)
                && text(e, "operation").as_deref().unwrap_or("Update") == "Update"
                && text(e, "subresource").filter(|s| !s.is_empty()).as_deref() == subresource
        });
        let time = format_time(now());
        match mine.and_then(|i| Some((i, entries[i].as_object_mut()?))) {
            Some((i, entry)) => {
                emptied[i] = false;
                entry.insert("time".into(), Value::String(time));
                entry.insert("apiVersion".into(), Value::String(api_version));
                let doc = entry
                    .entry("fieldsV1")
                    .or_insert_with(|| Value::Object(Map::new()));
                if !doc.is_object() {
                    *doc = Value::Object(Map::new());
                }
                if let Value::Object(doc) = doc {
                    changed.union_into_json(doc);
                }
            }
            None => {
                emptied.push(false);
                entries.push(
                    Entry {
                        manager: manager.to_string(),
                        operation: "Update".into(),
                        api_version,
                        time: Some(time),
                        subresource: subresource.map(str::to_string),
                        fields: changed,
                    }
                    .into_json(),
                );
            }
        }
        let mut emptied = emptied.into_iter();
        entries.retain(|_| !emptied.next().unwrap_or(false));
    }
    if !entries.is_empty() {
        metadata.insert("managedFields".into(), Value::Array(entries));
    }
}

/// `record_update` for a write that sent entries of its own or removed fields: the
/// entries are read into field sets, pruned of fields `new` lacks, and written back.
fn record_rebuilt(
    old: Option<&Value>,
    new: &mut Value,
    changed: FieldSet,
    manager: &str,
    subresource: Option<&str>,
    node: Node,
) {
    let carried = new
        .get("metadata")
        .is_some_and(|m| m.get("managedFields").is_some());
    let mut entries = if carried {
        read_entries(new)
    } else {
        old.map(read_entries).unwrap_or_default()
    };
    prune(&mut entries, new, node);
    if !changed.is_empty() {
        for entry in entries.iter_mut() {
            entry.fields.subtract(&changed);
        }
        let time = Some(format_time(now()));
        match entries
            .iter_mut()
            .find(|e| e.is(manager, "Update", subresource))
        {
            Some(entry) => {
                entry.fields.union(&changed);
                entry.time = time;
                entry.api_version = api_version(new);
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version(new),
                time,
                subresource: subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    write_entries(new, entries);
}

/// Server-side apply of the configuration `applied` by `manager` onto `live` (`None`
/// when the object does not exist yet). Returns the object to store, with its
/// `managedFields` updated.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    has_status: bool,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    }
    for field in ["apiVersion", "kind"] {
        if applied
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApplyError::Invalid(format!("{field} must be set")));
        }
    }
    let node = Node::for_object(applied);
    let mut config = applied.clone();
    metadata_mut(&mut config).remove("managedFields");
    let applied_set = ownable(fields::of_object(&config, node), subresource, has_status);
    let mut entries = live.map(read_entries).unwrap_or_default();

    let mut merged = match live {
        Some(live) => {
            let mut merged = live.clone();
            merge_applied(&mut merged, &config, Shape::Object, node);
            merged
        }
        None => config.clone(),
    };

    // Conflicts: fields the apply changes that another manager owns.
    let zero = zero_object();
    let changes = fields::changed(Some(live.unwrap_or(&zero)), &merged, node);
    let mut conflicts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.is(manager, "Apply", subresource) {
            continue;
        }
        let owned = entry
            .fields
            .intersection(&changes)
            .intersection(&applied_set);
        if !owned.is_empty() {
            conflicts.push((i, owned));
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(ApplyError::Conflicts(
                conflicts
                    .iter()
                    .flat_map(|(i, owned)| {
                        owned.paths().into_iter().map(|path| Conflict {
                            manager: entries[*i].display(),
                            field: fields::display(&path),
                        })
                    })
                    .collect(),
            ));
        }
        // Forced: the conflicting fields change hands; shared ones stay shared.
        for (i, owned) in &conflicts {
            entries[*i].fields.subtract(owned);
        }
    }

    // Fields this manager applied before and no longer applies go, unless shared.
    let previous = entries
        .iter()
        .find(|e| e.is(manager, "Apply", subresource))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut dropped = previous.clone();
    dropped.subtract(&applied_set);
    for path in dropped.paths() {
        // A map or list node the manager owned itself ("."), whose contents it still
        // applies, stays; so does anything another manager owns a part of.
        let kept = applied_set.touches(&path)
            || entries
                .iter()
                .any(|e| !e.is(manager, "Apply", subresource) && e.fields.touches(&path));
        if !kept {
            fields::remove_path(&mut merged, &path, node);
        }
    }

    let unchanged = live.is_some_and(|l| same_content(l, &merged)) && previous == applied_set;
    if unchanged {
        return Ok(merged);
    }
    let time = Some(format_time(now()));
    match entries
        .iter_mut()
        .find(|e| e.is(manager, "Apply", subresource))
    {
        Some(entry) => {
            entry.fields = applied_set;
            entry.time = time;
            entry.api_version = api_version(applied);
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version(applied),
            time,
            subresource: subresource.map(str::to_string),
            fields: applied_set,
        }),
    }
    prune(&mut entries, &merged, node);
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// Whether two objects hold the same data apart from their managed fields.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        metadata_mut(&mut v).remove("managedFields");
        v
    };
    strip(a) == strip(b)
}

/// Merges an applied configuration into `target`: structs and maps field by field,
/// keyed lists item by item, set lists as sets, everything else replaced.
fn merge_applied(target: &mut Value, applied: &Value, shape: Shape, node: Node) {
    match (applied, shape) {
        (Value::Object(fields), Shape::Object | Shape::Map) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Some(map) = target.as_object_mut() else {
                return;
            };
            for (key, value) in fields {
                if value.is_null() {
                    map.remove(key);
                    continue;
                }
                let child = node.child(key);
                let slot = map.entry(key.clone()).or_insert(Value::Null);
                merge_applied(slot, value, child.shape, child.node);
            }
        }
        (Value::Array(items), Shape::MapList(_) | Shape::SetList) => {
            if !target.is_array() {
                *target = Value::Array(Vec::new());
            }
            let Some(list) = target.as_array_mut() else {
                return;
            };
            for item in items {
                let id = item_element(item, shape, node);
                let existing = id.as_ref().and_then(|id| {
                    list.iter_mut()
                        .find(|i| item_element(i, shape, node).as_ref() == Some(id))
                });
                match existing {
                    Some(slot) if shape != Shape::SetList => {
                        merge_applied(slot, item, Shape::Object, node)
                    }
                    Some(_) => {}
                    None => list.push(item.clone()),
                }
            }
        }
        (other, _) => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": data})
    }

    /// Server-side apply of a ConfigMap with no subresource and no status.
    fn apply_as(live: Option<&Value>, applied: &Value, manager: &str) -> Result<Value, ApplyError> {
        server_side_apply(live, applied, manager, false, None, false)
    }

    fn apply_forced(
        live: Option<&Value>,
        applied: &Value,
        manager: &str,
    ) -> Result<Value, ApplyError> {
        server_side_apply(live, applied, manager, true, None, false)
    }

    fn managers(object: &Value) -> Vec<(String, String, Value)> {
        read_entries(object)
            .into_iter()
            .map(|e| (e.manager, e.operation, e.fields.to_json()))
            .collect()
    }

    #[test]
    fn apply_creates_and_owns_its_fields() {
        let created = apply_as(None, &cm(json!({"a": "1"})), "kubectl").unwrap();
        assert_eq!(
            managers(&created),
            vec![(
                "kubectl".into(),
                "Apply".into(),
                json!({"f:data": {"f:a": {}}})
            )]
        );
        let entry = &created["metadata"]["managedFields"][0];
        assert_eq!(entry["fieldsType"], "FieldsV1");
        assert_eq!(entry["apiVersion"], "v1");
        assert!(entry["time"].is_string());
    }

    #[test]
    fn conflicts_with_updaters_unless_forced() {
        let mut live = cm(json!({"a": "1", "b": "2"}));
        record_update(None, &mut live, "kubectl-client-side-apply", None, false);
        let mut edited = live.clone();
        edited["data"]["a"] = json!("edited");
        record_update(Some(&live), &mut edited, "kubectl-edit", None, false);
        assert_eq!(
            managers(&edited),
            vec![
                (
                    "kubectl-client-side-apply".into(),
                    "Update".into(),
                    json!({"f:data": {".": {}, "f:b": {}}})
                ),
                (
                    "kubectl-edit".into(),
                    "Update".into(),
                    json!({"f:data": {"f:a": {}}})
                ),
            ]
        );

        // Applying the same value co-owns without conflict.
        let shared = apply_as(Some(&edited), &cm(json!({"b": "2"})), "kubectl").unwrap();
        assert_eq!(shared["data"], json!({"a": "edited", "b": "2"}));

        let err = apply_as(Some(&edited), &cm(json!({"a": "mine"})), "kubectl").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.a"
        );
        let err = apply_as(
            Some(&edited),
            &cm(json!({"a": "mine", "b": "mine"})),
            "kubectl",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using v1:\n- .data.b\nconflicts with \"kubectl-edit\" using v1:\n- .data.a"
        );

        let forced = apply_forced(Some(&edited), &cm(json!({"a": "mine"})), "kubectl").unwrap();
        assert_eq!(forced["data"]["a"], "mine");
        let owners = managers(&forced);
        assert!(owners.iter().all(
            |(m, _, f)| m == "kubectl" || f.get("f:data").and_then(|d| d.get("f:a")).is_none()
        ));
        assert!(owners.contains(&(
            "kubectl".into(),
            "Apply".into(),
            json!({"f:data": {"f:a": {}}})
        )));
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_shared() {
        let first = apply_as(None, &cm(json!({"a": "1", "b": "2"})), "kubectl").unwrap();
        let second = apply_as(Some(&first), &cm(json!({"a": "1"})), "kubectl").unwrap();
        assert_eq!(second["data"], json!({"a": "1"}));

        let other = apply_as(Some(&first), &cm(json!({"b": "2"})), "other").unwrap();
        let third = apply_as(Some(&other), &cm(json!({"a": "1"})), "kubectl").unwrap();
        assert_eq!(third["data"], json!({"a": "1", "b": "2"}));

        // Owning a map itself ("." after kubectl's client-side-apply migration) and then
        // applying only its entries keeps the map.
        let mut migrated = first.clone();
        migrated["metadata"]["managedFields"][0]["fieldsV1"] =
            json!({"f:data": {".": {}, "f:a": {}, "f:b": {}}});
        let kept = apply_as(Some(&migrated), &cm(json!({"a": "1", "b": "2"})), "kubectl").unwrap();
        assert_eq!(kept["data"], json!({"a": "1", "b": "2"}));

        // Re-applying the same configuration changes nothing, not even timestamps.
        let again = apply_as(Some(&third), &cm(json!({"a": "1"})), "kubectl").unwrap();
        assert_eq!(again, third);
    }

    #[test]
    fn keyed_lists_merge_and_shrink_by_key() {
        let pod = |containers: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}});
        let first = server_side_apply(
            None,
            &pod(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}])),
            "mgr",
            false,
            None,
            true,
        )
        .unwrap();
        let mut scaled = first.clone();
        scaled["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        record_update(Some(&first), &mut scaled, "kubectl-set", None, true);
        let second = server_side_apply(
            Some(&scaled),
            &pod(json!([{"name": "a", "image": "a:2"}])),
            "mgr",
            false,
            None,
            true,
        )
        .unwrap();
        assert_eq!(
            second["spec"]["containers"],
            json!([{"name": "a", "image": "a:2", "imagePullPolicy": "Always"}])
        );
        let status = server_side_apply(
            Some(&second),
            &json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running"}}),
            "kubelet",
            false,
            Some("status"),
            true,
        )
        .unwrap();
        let entries = read_entries(&status);
        let kubelet = entries.iter().find(|e| e.manager == "kubelet").unwrap();
        assert_eq!(kubelet.subresource.as_deref(), Some("status"));
        assert_eq!(
            kubelet.fields.to_json(),
            json!({"f:status": {"f:phase": {}}})
        );
    }

    /// The object with every entry's `time` left out (the two paths stamp their own).
    fn without_times(mut object: Value) -> Value {
        if let Some(Value::Array(entries)) = metadata_mut(&mut object).get_mut("managedFields") {
            for entry in entries {
                if let Some(entry) = entry.as_object_mut() {
                    entry.remove("time");
                }
            }
        }
        object
    }

    #[test]
    fn entries_edited_in_place_match_entries_rebuilt() {
        let pod = |labels: Value, image: &str, extra: Value, phase: &str| {
            let mut spec = json!({"containers": [{"name": "app", "image": image}]});
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "p", "namespace": "default", "labels": labels},
                   "spec": spec, "status": {"phase": phase}})
        };
        let settled = pod(
            json!({"a": "8", "b": "3"}),
            "two",
            json!({"hostname": "h"}),
            "Running",
        );
        // (manager, subresource, the object the write stores): each write starts from
        // what the previous one stored.
        let writes = [
            (
                "creator",
                None,
                pod(json!({"a": "1"}), "one", json!({}), "Pending"),
            ),
            // The creator adds a field beside its own: its entry grows.
            (
                "creator",
                None,
                pod(json!({"a": "1", "b": "2"}), "one", json!({}), "Pending"),
            ),
            // Another manager changes one of the creator's fields and adds one.
            (
                "editor",
                None,
                pod(json!({"a": "9", "b": "2"}), "two", json!({}), "Pending"),
            ),
            // The status subresource: its own entry.
            (
                "kubelet",
                Some("status"),
                pod(json!({"a": "9", "b": "2"}), "two", json!({}), "Running"),
            ),
            // The editor takes every field the creator still owned under labels.
            ("editor", None, settled.clone()),
            // A write that changes nothing.
            ("third", None, settled.clone()),
        ];
        let mut stored: Option<Value> = None;
        for (manager, subresource, written) in writes {
            let node = Node::for_object(&written);
            let zero = zero_object();
            let changed = || {
                ownable(
                    fields::changed(Some(stored.as_ref().unwrap_or(&zero)), &written, node),
                    subresource,
                    true,
                )
            };
            let mut in_place = written.clone();
            record_in_place(
                stored.as_ref(),
                &mut in_place,
                changed(),
                manager,
                subresource,
            );
            let mut rebuilt = written.clone();
            record_rebuilt(
                stored.as_ref(),
                &mut rebuilt,
                changed(),
                manager,
                subresource,
                node,
            );
            assert_eq!(
                without_times(in_place.clone()),
                without_times(rebuilt),
                "write by {manager}"
            );
            // Both paths agree with the public entry point too.
            let mut public = written.clone();
            record_update(stored.as_ref(), &mut public, manager, subresource, true);
            assert_eq!(without_times(public), without_times(in_place.clone()));
            stored = Some(in_place);
        }
        // The sequence did move fields between owners: the editor took every label from
        // the creator, which keeps the labels map itself and the rest; a write that
        // changed nothing left no entry.
        let entries = stored.as_ref().map(read_entries).unwrap_or_default();
        let managers: Vec<&str> = entries.iter().map(|e| e.manager.as_str()).collect();
        assert_eq!(managers, ["creator", "editor", "kubelet"]);
        let creator = entries[0].fields.to_json();
        assert_eq!(creator["f:metadata"]["f:labels"], json!({}), "{creator}");
        assert!(creator["f:spec"]["f:containers"].is_object(), "{creator}");
        let editor = entries[1].fields.to_json();
        assert_eq!(
            editor["f:metadata"]["f:labels"],
            json!({"f:a": {}, "f:b": {}})
        );
    }

    #[test]
    fn created_documents_match_the_field_set_path() {
        let objects = [
            // A pod: keyed lists (containers by name, ports by port and protocol), maps,
            // server metadata that no one owns, a status the status subresource owns.
            (
                json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "p", "namespace": "d", "uid": "u",
                                "creationTimestamp": "t", "labels": {"a": "1"},
                                "finalizers": ["x", "y"]},
                   "spec": {"containers": [{"name": "c", "image": "i",
                                            "ports": [{"containerPort": 80}],
                                            "resources": {"limits": {"cpu": "1"}}}],
                            "tolerations": [{"key": "k", "operator": "Exists"}]},
                   "status": {"phase": "Pending"}}),
                true,
            ),
            // Top-level fields of their own, added whole; an empty spec adds nothing.
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                   "data": {"a": "1", "b": ""}, "binaryData": {}, "spec": {}}),
                false,
            ),
            // Metadata with nothing ownable: no entry at all.
            (
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}),
                true,
            ),
            // A kind without a status subresource: its status is the writer's.
            (
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                   "status": {"x": 1}, "reason": "R"}),
                false,
            ),
            // Two containers with one name: the set merges them, so the general path
            // answers (the result is still the same).
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "c", "image": "a"},
                                           {"name": "c", "args": ["b"]}]}}),
                true,
            ),
            // A spec that is not an object: the general path.
            (
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                   "spec": "odd"}),
                true,
            ),
        ];
        for (object, has_status) in objects {
            let node = Node::for_object(&object);
            let mut direct = object.clone();
            record_update(None, &mut direct, "m", None, has_status);
            let mut general = object.clone();
            let changed = ownable(
                fields::changed(Some(&zero_object()), &object, node),
                None,
                has_status,
            );
            record_in_place(None, &mut general, changed, "m", None);
            // Only the last two take the general path.
            let fallback = object["spec"].is_string()
                || object["spec"]["containers"]
                    .as_array()
                    .is_some_and(|c| c.len() == 2);
            assert_eq!(
                created_fields(&object, node, has_status).is_none(),
                fallback,
                "{object}"
            );
            assert_eq!(without_times(direct), without_times(general), "{object}");
        }
    }
}
