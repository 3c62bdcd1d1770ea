//! Field sets: which fields of an object a manager owns, in upstream's `FieldsV1`
//! encoding. Each path element is `f:<field>` (a struct field or map key),
//! `k:<json of the item's keys>` (an item of a keyed list), or `v:<json value>` (an item
//! of a set list); `.` marks a node that is owned itself and also has owned children.

use super::schema::{Node, Shape};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A set of field paths, as a tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    pub fn insert(&mut self, path: &[String]) {
        self.at(path).member = true;
    }

    /// The node for `path`, made (empty) where missing.
    fn at(&mut self, path: &[String]) -> &mut FieldSet {
        path.iter().fold(self, |node, element| {
            node.children.entry(element.clone()).or_default()
        })
    }

    /// Whether `path` or anything below it is in the set.
    pub fn touches(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => !self.is_empty(),
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.touches(rest)),
        }
    }

    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, v) in &other.children {
            self.children.entry(k.clone()).or_default().union(v);
        }
    }

    /// Removes every path that is in `other`.
    pub fn subtract(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        for (k, v) in &other.children {
            if let Some(mine) = self.children.get_mut(k) {
                mine.subtract(v);
                if mine.is_empty() {
                    self.children.remove(k);
                }
            }
        }
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, v) in &self.children {
            if let Some(o) = other.children.get(k) {
                let both = v.intersection(o);
                if !both.is_empty() {
                    out.children.insert(k.clone(), both);
                }
            }
        }
        out
    }

    /// Keeps only the children whose element satisfies `keep`.
    pub fn retain_children(&mut self, keep: impl Fn(&str) -> bool) {
        self.children.retain(|k, _| keep(k));
    }

    /// The subtree under `element`, if any.
    pub fn child_mut(&mut self, element: &str) -> Option<&mut FieldSet> {
        self.children.get_mut(element)
    }

    /// Drops the subtree under `element` when nothing is left in it.
    pub fn drop_if_empty(&mut self, element: &str) {
        if self
            .children
            .get(element)
            .is_some_and(|c| c.children.is_empty())
        {
            self.children.remove(element);
        }
    }

    /// Every path in the set, parents before children.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, v) in &self.children {
            prefix.push(k.clone());
            v.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Removes the set's paths from `doc`, a stored `fieldsV1` document, where it
    /// stands: only the nodes on the set's paths are visited, where reading the document
    /// into a set and writing it back would rebuild all of it. Says whether the
    /// document is left empty. (The document's root is not a field; below it, a field
    /// with nothing under it is `{}`, and one with fields under it holds `"."`.)
    pub fn subtract_from_json(&self, doc: &mut Map<String, Value>) -> bool {
        self.subtract_json(doc, false)
    }

    fn subtract_json(&self, node: &mut Map<String, Value>, field: bool) -> bool {
        let member = !self.member && field && (node.is_empty() || node.contains_key("."));
        for (k, below) in &self.children {
            if let Some(Value::Object(child)) = node.get_mut(k)
                && below.subtract_json(child, true)
            {
                node.remove(k);
            }
        }
        node.remove(".");
        let has_children = !node.is_empty();
        if member && has_children {
            node.insert(".".into(), Value::Object(Map::new()));
        }
        !member && !has_children
    }

    /// Adds the set's paths to `doc`, a stored `fieldsV1` document, where it stands.
    pub fn union_into_json(&self, doc: &mut Map<String, Value>) {
        self.union_json(doc, false)
    }

    fn union_json(&self, node: &mut Map<String, Value>, field: bool) {
        let member = self.member || (field && (node.is_empty() || node.contains_key(".")));
        for (k, below) in &self.children {
            match node.get_mut(k) {
                Some(Value::Object(child)) => below.union_json(child, true),
                _ => {
                    let mut child = Map::new();
                    below.union_json(&mut child, false);
                    node.insert(k.clone(), Value::Object(child));
                }
            }
        }
        node.remove(".");
        if member && !node.is_empty() {
            node.insert(".".into(), Value::Object(Map::new()));
        }
    }

    /// The `fieldsV1` JSON of the set.
    #[cfg(test)]
    pub fn to_json(&self) -> Value {
        self.clone().into_json()
    }

    /// `to_json`, moving the set's elements into the document.
    pub fn into_json(self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, v) in self.children {
            map.insert(k, v.into_json());
        }
        Value::Object(map)
    }

    /// Reads a `fieldsV1` JSON; anything malformed is skipped. An empty document is
    /// the empty set (the object's root is never a field).
    pub fn from_json(value: &Value) -> FieldSet {
        let mut set = Self::node_from_json(value);
        set.member = false;
        set
    }

    fn node_from_json(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        let Some(map) = value.as_object() else {
            return set;
        };
        if map.is_empty() {
            set.member = true;
        }
        for (k, v) in map {
            if k == "." {
                set.member = true;
            } else {
                set.children.insert(k.clone(), FieldSet::node_from_json(v));
            }
        }
        set
    }
}

/// The `f:` element of a field.
pub fn field_element(name: &str) -> String {
    format!("f:{name}")
}

/// The `k:` element of a keyed-list item; keys with upstream defaults are filled in.
fn key_element(item: &Value, keys: &[(&str, Option<&str>)]) -> Option<String> {
    let mut id = BTreeMap::new();
    for (key, default) in keys {
        match (item.get(*key), default) {
            (Some(v), _) if !v.is_null() => {
                id.insert(*key, v.clone());
            }
            (_, Some(d)) => {
                id.insert(*key, Value::String((*d).to_string()));
            }
            _ => {}
        }
    }
    if id.is_empty() {
        return None;
    }
    serde_json::to_string(&id).ok().map(|s| format!("k:{s}"))
}

fn value_element(item: &Value) -> String {
    format!("v:{item}")
}

/// The path element naming `item` in a list of `shape` (items of atomic lists have none).
pub fn item_element(item: &Value, shape: Shape, item_node: Node) -> Option<String> {
    match shape {
        Shape::MapList(keys) => key_element(item, &item_node.apply_keys(keys)),
        Shape::SetList => Some(value_element(item)),
        _ => None,
    }
}

/// The fields a configuration sets, as upstream counts them for an applier: every
/// scalar, atomic list and atomic map, every map entry, every item of a keyed or set
/// list, and empty objects.
pub fn of_object(value: &Value, node: Node) -> FieldSet {
    let mut set = FieldSet::default();
    walk_object(value, Shape::Object, node, &mut Vec::new(), &mut set);
    set
}

fn walk_object(
    value: &Value,
    shape: Shape,
    node: Node,
    path: &mut Vec<String>,
    set: &mut FieldSet,
) {
    match (value, shape) {
        (Value::Object(map), Shape::Object | Shape::Map) if !map.is_empty() => {
            for (k, v) in map {
                let child = node.child(k);
                path.push(field_element(k));
                walk_object(v, child.shape, child.node, path, set);
                if node.is_map() {
                    set.insert(path);
                }
                path.pop();
            }
        }
        (Value::Array(items), Shape::MapList(_) | Shape::SetList) => {
            for item in items {
                let Some(element) = item_element(item, shape, node) else {
                    continue;
                };
                path.push(element);
                if shape == Shape::SetList {
                    set.insert(path);
                } else {
                    walk_object(item, Shape::Object, node, path, set);
                    set.insert(path);
                }
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}

/// The fields an update sets: what `new` adds (every node of a new subtree) or changes
/// relative to `old`. Removed fields are not in it.
pub fn changed(old: Option<&Value>, new: &Value, node: Node) -> FieldSet {
    let mut set = FieldSet::default();
    // A created object counts as an update of an empty one: its root is not a field.
    let empty = Value::Object(Map::new());
    walk_changed(
        Some(old.unwrap_or(&empty)),
        new,
        Shape::Object,
        node,
        &mut Vec::new(),
        &mut set,
    );
    set
}

fn walk_changed(
    old: Option<&Value>,
    new: &Value,
    shape: Shape,
    node: Node,
    path: &mut Vec<String>,
    set: &mut FieldSet,
) {
    let Some(old) = old else {
        // A new subtree: it and everything inside it.
        added(new, shape, node, path, set);
        return;
    };
    match (old, new, shape) {
        // A null list or map (an unset field Go writes anyway, as in the zero object a
        // created one is compared with) is an empty one: what it gains is its items.
        (Value::Null, Value::Array(_), Shape::MapList(_) | Shape::SetList) => {
            walk_changed(Some(&Value::Array(Vec::new())), new, shape, node, path, set)
        }
        (Value::Null, Value::Object(_), Shape::Object | Shape::Map) => walk_changed(
            Some(&Value::Object(Map::new())),
            new,
            shape,
            node,
            path,
            set,
        ),
        (Value::Object(o), Value::Object(n), Shape::Object | Shape::Map) => {
            for (k, v) in n {
                let before = o.get(k);
                // An equal subtree holds no change: skip it without walking (most of
                // an update's object is untouched).
                if before == Some(v) {
                    continue;
                }
                let child = node.child(k);
                path.push(field_element(k));
                walk_changed(before, v, child.shape, child.node, path, set);
                path.pop();
            }
        }
        (Value::Array(o), Value::Array(n), Shape::MapList(_) | Shape::SetList) => {
            for item in n {
                let Some(element) = item_element(item, shape, node) else {
                    continue;
                };
                let before = o
                    .iter()
                    .find(|i| item_element(i, shape, node).as_ref() == Some(&element));
                path.push(element);
                match before {
                    Some(_) if shape == Shape::SetList => {}
                    Some(b) if b == item => {}
                    Some(b) => walk_changed(Some(b), item, Shape::Object, node, path, set),
                    None if shape == Shape::SetList => set.insert(path),
                    None => added(item, Shape::Object, node, path, set),
                }
                path.pop();
            }
        }
        _ if old != new => set.insert(path),
        _ => {}
    }
}

/// Whether `new` lacks any field `old` has (a map entry, struct field or list item):
/// without that, fields owned in `old` all still exist in `new`.
pub fn removes_any(old: &Value, new: &Value, node: Node) -> bool {
    removes_in(old, new, Shape::Object, node)
}

fn removes_in(old: &Value, new: &Value, shape: Shape, node: Node) -> bool {
    if old == new {
        return false;
    }
    match (old, new, shape) {
        (Value::Object(o), Value::Object(n), Shape::Object | Shape::Map) => {
            o.iter().any(|(k, before)| match n.get(k) {
                None => true,
                Some(after) => {
                    let child = node.child(k);
                    removes_in(before, after, child.shape, child.node)
                }
            })
        }
        (Value::Array(o), Value::Array(n), Shape::MapList(_) | Shape::SetList) => {
            o.iter().any(|before| {
                let Some(element) = item_element(before, shape, node) else {
                    return false;
                };
                match n
                    .iter()
                    .find(|i| item_element(i, shape, node).as_ref() == Some(&element))
                {
                    None => true,
                    Some(_) if shape == Shape::SetList => false,
                    Some(after) => removes_in(before, after, Shape::Object, node),
                }
            })
        }
        // An object or list turned into something else loses whatever it held.
        (Value::Object(o), _, _) => !o.is_empty(),
        (Value::Array(o), _, Shape::MapList(_) | Shape::SetList) => !o.is_empty(),
        _ => false,
    }
}

fn added(value: &Value, shape: Shape, node: Node, path: &[String], set: &mut FieldSet) {
    added_at(value, shape, node, set.at(path));
}

/// Marks `value` and everything inside it as members of `at`, the set's node for
/// `value`'s own path (reached once, not from the root for every field: a created
/// object adds all its fields).
fn added_at(value: &Value, shape: Shape, node: Node, at: &mut FieldSet) {
    at.member = true;
    match (value, shape) {
        (Value::Object(map), Shape::Object | Shape::Map) => {
            for (k, v) in map {
                let child = node.child(k);
                let below = at.children.entry(field_element(k)).or_default();
                added_at(v, child.shape, child.node, below);
            }
        }
        (Value::Array(items), Shape::MapList(_) | Shape::SetList) => {
            for item in items {
                let Some(element) = item_element(item, shape, node) else {
                    continue;
                };
                let below = at.children.entry(element).or_default();
                if shape == Shape::SetList {
                    below.member = true;
                } else {
                    added_at(item, Shape::Object, node, below);
                }
            }
        }
        _ => {}
    }
}

/// The `fieldsV1` document of a node that `value` adds whole: what `added_at` marks,
/// written straight as JSON rather than as a set turned into JSON afterwards (a created
/// object adds every field it has, and that set was the larger part of a create's
/// field bookkeeping). `None` when two items of a keyed list share their keys: the
/// set merges such items, which a document built item by item would not.
pub fn added_doc(value: &Value, shape: Shape, node: Node) -> Option<Value> {
    let mut doc = Map::new();
    match (value, shape) {
        (Value::Object(map), Shape::Object | Shape::Map) => {
            for (k, v) in map {
                let child = node.child(k);
                doc.insert(field_element(k), added_doc(v, child.shape, child.node)?);
            }
        }
        (Value::Array(items), Shape::MapList(_) | Shape::SetList) => {
            for item in items {
                let Some(element) = item_element(item, shape, node) else {
                    continue;
                };
                let below = if shape == Shape::SetList {
                    // A set item is a member with nothing below it (a repeat is the same).
                    Value::Object(Map::new())
                } else {
                    added_doc(item, Shape::Object, node)?
                };
                if doc.insert(element, below).is_some() && shape != Shape::SetList {
                    return None;
                }
            }
        }
        _ => {}
    }
    // The node is a member itself: with fields below it, that is said by ".".
    if !doc.is_empty() {
        doc.insert(".".into(), Value::Object(Map::new()));
    }
    Some(Value::Object(doc))
}

/// A path as upstream prints it in conflicts: `.spec.replicas`,
/// `.spec.containers[name="web"].image`, `.metadata.finalizers[="x"]`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(keys) = element.strip_prefix("k:") {
            let parsed: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
            let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        }
    }
    out
}

/// Removes the field at `path` from `object` (a no-op when it is not there).
pub fn remove_path(object: &mut Value, path: &[String], node: Node) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = object;
    let mut cur_node = node;
    let mut cur_shape = Shape::Object;
    for element in parents {
        let Some((next, shape, next_node)) = step(cur, element, cur_shape, cur_node) else {
            return;
        };
        cur = next;
        cur_shape = shape;
        cur_node = next_node;
    }
    match (cur, last.strip_prefix("f:")) {
        (Value::Object(map), Some(field)) => {
            map.remove(field);
        }
        (Value::Array(items), None) => {
            items
                .retain(|i| item_element(i, cur_shape, cur_node).as_deref() != Some(last.as_str()));
        }
        _ => {}
    }
}

/// Drops from `set` every field not present in `object`, and nodes left empty: what
/// checking each path with `exists` and removing the missing ones does, in one walk.
pub fn retain_present(set: &mut FieldSet, object: &Value, node: Node) {
    retain_in(set, object, Shape::Object, node);
}

fn retain_in(set: &mut FieldSet, value: &Value, shape: Shape, node: Node) {
    set.children.retain(|element, child| {
        if let Some(field) = element.strip_prefix("f:") {
            let Some(next) = value.as_object().and_then(|m| m.get(field)) else {
                return false;
            };
            let c = node.child(field);
            retain_in(child, next, c.shape, c.node);
        } else {
            let Some(item) = value.as_array().and_then(|items| {
                items
                    .iter()
                    .find(|i| item_element(i, shape, node).as_deref() == Some(element.as_str()))
            }) else {
                return false;
            };
            retain_in(child, item, Shape::Object, node);
        }
        !child.is_empty()
    });
}

/// Whether the field at `path` is present in `object`.
#[cfg(test)]
pub fn exists(object: &Value, path: &[String], node: Node) -> bool {
    let mut cur = object;
    let mut cur_node = node;
    let mut cur_shape = Shape::Object;
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            let Some(next) = cur.as_object().and_then(|m| m.get(field)) else {
                return false;
            };
            let child = cur_node.child(field);
            cur = next;
            cur_shape = child.shape;
            cur_node = child.node;
        } else {
            let Some(item) = cur.as_array().and_then(|items| {
                items.iter().find(|i| {
                    item_element(i, cur_shape, cur_node).as_deref() == Some(element.as_str())
                })
            }) else {
                return false;
            };
            cur = item;
            cur_shape = Shape::Object;
        }
    }
    true
}

/// Descends one path element: the value there, its shape and its type.
fn step<'a>(
    value: &'a mut Value,
    element: &str,
    shape: Shape,
    node: Node,
) -> Option<(&'a mut Value, Shape, Node)> {
    if let Some(field) = element.strip_prefix("f:") {
        let child = node.child(field);
        let next = value.as_object_mut()?.get_mut(field)?;
        return Some((next, child.shape, child.node));
    }
    let items = value.as_array_mut()?;
    let item = items
        .iter_mut()
        .find(|i| item_element(i, shape, node).as_deref() == Some(element))?;
    Some((item, Shape::Object, node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Node {
        Node::for_kind("v1", "Pod")
    }

    #[test]
    fn applied_fields_in_upstream_encoding() {
        let applied = json!({"metadata": {"labels": {"app": "web"}, "finalizers": ["x"]},
            "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                     "resources": {}}],
                     "nodeSelector": {"disk": "ssd"}}});
        let set = of_object(&applied, pod());
        assert_eq!(
            set.to_json(),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"x\"": {}}, "f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
                        "f:resources": {}
                    }},
                    "f:nodeSelector": {}
                }
            })
        );
        assert_eq!(FieldSet::from_json(&set.to_json()), set);
    }

    #[test]
    fn updates_own_what_they_add_or_change() {
        let old = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let new =
            json!({"data": {"a": "1", "b": "3"}, "metadata": {"name": "c", "labels": {"x": "y"}}});
        let node = Node::for_kind("v1", "ConfigMap");
        assert_eq!(
            changed(Some(&old), &new, node).to_json(),
            json!({"f:data": {"f:b": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}})
        );
        assert_eq!(
            changed(None, &json!({"data": {"a": "1"}}), node).to_json(),
            json!({"f:data": {".": {}, "f:a": {}}})
        );
    }

    #[test]
    fn set_operations_and_display() {
        let a = FieldSet::from_json(&json!({"f:spec": {"f:replicas": {}, "f:paused": {}}}));
        let b = FieldSet::from_json(&json!({"f:spec": {"f:replicas": {}}}));
        let both = a.intersection(&b);
        assert_eq!(both, b);
        let mut rest = a.clone();
        rest.subtract(&b);
        assert_eq!(rest.to_json(), json!({"f:spec": {"f:paused": {}}}));
        assert!(a.touches(&["f:spec".to_string()]));
        assert!(!a.touches(&["f:status".to_string()]));
        assert_eq!(
            display(&[
                "f:spec".into(),
                "f:containers".into(),
                "k:{\"name\":\"web\"}".into(),
                "f:image".into()
            ]),
            ".spec.containers[name=\"web\"].image"
        );
    }

    #[test]
    fn removes_paths_through_keyed_lists() {
        let mut obj = json!({"spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}, {"containerPort": 81}]}]}});
        remove_path(
            &mut obj,
            &[
                "f:spec".into(),
                "f:containers".into(),
                "k:{\"name\":\"a\"}".into(),
                "f:ports".into(),
                "k:{\"containerPort\":81,\"protocol\":\"TCP\"}".into(),
            ],
            pod(),
        );
        assert_eq!(
            obj["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80}])
        );
        remove_path(
            &mut obj,
            &[
                "f:spec".into(),
                "f:containers".into(),
                "k:{\"name\":\"a\"}".into(),
                "f:image".into(),
            ],
            pod(),
        );
        assert!(obj["spec"]["containers"][0].get("image").is_none());
    }

    #[test]
    fn retaining_present_fields_matches_checking_each_path() {
        let owned = json!({"metadata": {"labels": {"app": "web", "tier": "db"}, "finalizers": ["x", "y"]},
            "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
                                    {"name": "side", "image": "busybox"}],
                     "nodeSelector": {"disk": "ssd"}}});
        let now = json!({"metadata": {"labels": {"app": "web"}, "finalizers": ["y"]},
            "spec": {"containers": [{"name": "web", "ports": [{"containerPort": 80}]}]}});
        let set = of_object(&owned, pod());
        let mut one_by_one = set.clone();
        for path in set.paths() {
            if !exists(&now, &path, pod()) {
                let mut gone = FieldSet::default();
                gone.insert(&path);
                one_by_one.subtract(&gone);
            }
        }
        let mut walked = set.clone();
        retain_present(&mut walked, &now, pod());
        assert_eq!(walked, one_by_one);
        assert_eq!(
            walked.to_json(),
            json!({"f:metadata": {"f:finalizers": {"v:\"y\"": {}}, "f:labels": {"f:app": {}}},
                   "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {},
                       "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}})
        );
    }

    #[test]
    fn removals_are_told_from_additions_and_changes() {
        let old = json!({"metadata": {"labels": {"app": "web"}, "finalizers": ["x"]},
            "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}});
        let removes = |new: Value| removes_any(&old, &new, pod());
        assert!(!removes(old.clone()));
        // Added and changed fields remove nothing.
        let mut more = old.clone();
        more["metadata"]["labels"]["tier"] = json!("db");
        more["spec"]["containers"][0]["image"] = json!("nginx:2");
        more["spec"]["containers"][0]["ports"][0]["name"] = json!("http");
        assert!(!removes(more));
        // A map entry, a set item, a keyed item, a field inside a keyed item.
        let mut fewer = old.clone();
        fewer["metadata"]["labels"] = json!({});
        assert!(removes(fewer));
        let mut fewer = old.clone();
        fewer["metadata"]["finalizers"] = json!(["y"]);
        assert!(removes(fewer));
        let mut fewer = old.clone();
        fewer["spec"]["containers"][0]["name"] = json!("other");
        assert!(removes(fewer));
        let mut fewer = old.clone();
        fewer["spec"]["containers"][0]["ports"] = json!([{"containerPort": 81}]);
        assert!(removes(fewer));
    }
}
