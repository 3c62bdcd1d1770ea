//! The shape of API objects as patching needs it: for each field of a built-in type,
//! whether it is a struct, a map, or a list, and how lists merge (atomic, set, or map
//! keyed by its merge key). The table is generated from k8s-openapi's type definitions
//! (see `gen_schema.py`); objects of unknown types (custom resources) are "untyped":
//! their maps merge key by key and their lists are atomic, as upstream deduces them.

use super::schema_table::{FieldRow, KINDS, TYPES};

/// How a field's value merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A struct: merged field by field.
    Object,
    /// A map with arbitrary keys (labels, data): merged key by key.
    Map,
    /// A map replaced as a whole.
    AtomicMap,
    /// A list replaced as a whole.
    AtomicList,
    /// A list of scalars merged as a set.
    SetList,
    /// A list of objects merged item by item, identified by these (merge) keys.
    MapList(&'static [&'static str]),
}

/// Where in the type tree a value sits.
#[derive(Clone, Copy, Debug)]
pub enum Node {
    /// Nothing known: maps merge key by key, lists are atomic.
    Untyped,
    /// A built-in struct.
    Struct(Type),
    /// The entries of a map whose values have the given type (path "" = scalar).
    MapOf(Type),
}

/// A built-in type: its path, and where its fields are in the table (none for types
/// with only scalar fields). Found once, so walking an object never searches by name.
#[derive(Clone, Copy, Debug)]
pub struct Type {
    path: &'static str,
    rows: Option<usize>,
}

impl Type {
    fn of(path: &'static str) -> Type {
        let rows = TYPES.binary_search_by(|(name, _)| (*name).cmp(path)).ok();
        Type { path, rows }
    }

    fn node(self) -> Node {
        if self.path.is_empty() {
            Node::Untyped
        } else {
            Node::Struct(self)
        }
    }
}

/// For each type of the table, the child each of its rows leads to (same order).
static CHILDREN: std::sync::LazyLock<Vec<Vec<Child>>> = std::sync::LazyLock::new(|| {
    TYPES
        .iter()
        .map(|(_, rows)| rows.iter().map(row_child).collect())
        .collect()
});

fn row_child((_, shape, elem): &FieldRow) -> Child {
    let element = Type::of(elem);
    let node = match shape {
        Shape::Map | Shape::AtomicMap => Node::MapOf(element),
        _ => element.node(),
    };
    let shape = match shape {
        Shape::Object if ATOMIC_STRUCTS.contains(elem) => Shape::AtomicMap,
        other => *other,
    };
    Child { shape, node }
}

/// A child of a node: how it merges and what is inside it.
#[derive(Clone, Copy, Debug)]
pub struct Child {
    pub shape: Shape,
    /// The type of the child itself, or of its items for lists and maps.
    pub node: Node,
}

/// Structs upstream marks `x-kubernetes-map-type: atomic`: owned and replaced whole.
const ATOMIC_STRUCTS: &[&str] = &[
    "apimachinery::pkg::apis::meta::v1::LabelSelector",
    "api::core::v1::NodeSelector",
    "api::core::v1::LocalObjectReference",
    "api::core::v1::ObjectReference",
    "api::core::v1::TypedLocalObjectReference",
    "api::core::v1::ConfigMapKeySelector",
    "api::core::v1::SecretKeySelector",
    "api::core::v1::ObjectFieldSelector",
    "api::core::v1::ResourceFieldSelector",
];

/// A key of a keyed list's items and the default it takes when an item leaves it out.
pub type ApplyKey = (&'static str, Option<&'static str>);

/// Lists whose server-side-apply identity (`x-kubernetes-list-map-keys`) has more keys
/// than their strategic merge key, with the defaults upstream fills into missing keys.
const APPLY_KEYS: &[(&str, &[ApplyKey])] = &[
    (
        "api::core::v1::ContainerPort",
        &[("containerPort", None), ("protocol", Some("TCP"))],
    ),
    (
        "api::core::v1::ServicePort",
        &[("port", None), ("protocol", Some("TCP"))],
    ),
    (
        "api::core::v1::TopologySpreadConstraint",
        &[("topologyKey", None), ("whenUnsatisfiable", None)],
    ),
];

impl Node {
    /// The root of objects of `kind` in `api_version`; untyped for kinds not built in.
    pub fn for_kind(api_version: &str, kind: &str) -> Node {
        KINDS
            .binary_search_by(|(v, k, _)| (*v, *k).cmp(&(api_version, kind)))
            .ok()
            .map(|i| Type::of(KINDS[i].2).node())
            .unwrap_or(Node::Untyped)
    }

    /// The root node for an object, from its own `apiVersion` and `kind`.
    pub fn for_object(object: &serde_json::Value) -> Node {
        let field = |k: &str| object.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        Node::for_kind(field("apiVersion"), field("kind"))
    }

    /// The field or map entry `name` inside this node.
    pub fn child(&self, name: &str) -> Child {
        match self {
            Node::Untyped => Child {
                shape: Shape::Object,
                node: Node::Untyped,
            },
            Node::MapOf(element) => Child {
                shape: Shape::Object,
                node: element.node(),
            },
            Node::Struct(Type { rows, .. }) => {
                let untyped = Child {
                    shape: Shape::Object,
                    node: Node::Untyped,
                };
                // Types with only scalar fields have no rows.
                let Some(index) = *rows else {
                    return untyped;
                };
                // Scalars are not in the table; a scalar never looks inside itself.
                TYPES[index]
                    .1
                    .iter()
                    .position(|(n, _, _)| *n == name)
                    .map_or(untyped, |row| CHILDREN[index][row])
            }
        }
    }

    /// Whether this node holds arbitrary keys (a map) rather than declared fields.
    pub fn is_map(&self) -> bool {
        matches!(self, Node::MapOf(_))
    }

    /// The keys identifying an item of a map list under server-side apply, with the
    /// default each key takes when the item leaves it out.
    pub fn apply_keys(
        &self,
        merge_keys: &'static [&'static str],
    ) -> Vec<(&'static str, Option<&'static str>)> {
        if let Node::Struct(Type { path, .. }) = self
            && let Some((_, keys)) = APPLY_KEYS.iter().find(|(p, _)| p == path)
        {
            return keys.to_vec();
        }
        merge_keys.iter().map(|k| (*k, None)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(TYPES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            KINDS
                .windows(2)
                .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1))
        );
    }

    #[test]
    fn pod_fields_have_upstream_strategies() {
        let pod = Node::for_kind("v1", "Pod");
        let spec = pod.child("spec").node;
        let containers = spec.child("containers");
        assert_eq!(containers.shape, Shape::MapList(&["name"]));
        let container = containers.node;
        assert_eq!(
            container.child("ports").shape,
            Shape::MapList(&["containerPort"])
        );
        assert_eq!(
            container.child("ports").node.apply_keys(&["containerPort"]),
            vec![("containerPort", None), ("protocol", Some("TCP"))]
        );
        assert_eq!(container.child("args").shape, Shape::AtomicList);
        assert_eq!(spec.child("tolerations").shape, Shape::AtomicList);
        let meta = pod.child("metadata").node;
        assert_eq!(meta.child("finalizers").shape, Shape::SetList);
        assert_eq!(meta.child("labels").shape, Shape::Map);
        assert!(meta.child("labels").node.is_map());
        let deploy = Node::for_kind("apps/v1", "Deployment").child("spec").node;
        assert_eq!(deploy.child("selector").shape, Shape::AtomicMap);
        let svc = Node::for_kind("v1", "Service").child("spec").node;
        assert_eq!(svc.child("ports").shape, Shape::MapList(&["port"]));
        assert!(matches!(
            Node::for_kind("example.com/v1", "Thing"),
            Node::Untyped
        ));
    }
}
