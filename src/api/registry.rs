//! The resource registry: every resource the API server serves, described as data.
//! Handlers, discovery, tables and selectors are generic over these entries, so adding
//! a built-in type means adding an entry here (plus its table columns and, when it
//! has any, its defaulting and validation), not new handlers.

/// Every verb a plain resource supports.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// The verbs of a `status` subresource.
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// Which name format a resource's objects must have (upstream's name validators).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain: most resources.
    Subdomain,
    /// DNS-1123 label: namespaces.
    Label,
    /// DNS-1035 label: services (the name becomes a DNS label that may not start with a digit).
    Dns1035Label,
    /// Any name without `/` or `%`, not `.` or `..`: events and the like.
    PathSegment,
}

/// How a resource's objects are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// As served.
    Native,
    /// As core/v1 Events (events.k8s.io/v1 shares their storage).
    CoreEvent,
}

/// A subresource such as `pods/status`.
#[derive(Clone, Copy, Debug)]
pub struct Subresource {
    pub name: &'static str,
    /// The kind the subresource takes or returns (`Binding` for `pods/binding`).
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

#[derive(Clone, Copy, Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Where objects live in the store, as upstream lays out etcd (nodes are still
    /// `minions` there).
    pub key_prefix: &'static str,
    /// Field selector paths beyond `metadata.name` and `metadata.namespace`.
    pub selectable_fields: &'static [&'static str],
    pub name_rule: NameRule,
    /// PUT of a missing object creates it (upstream does this for leases).
    pub allow_create_on_update: bool,
    /// An immediate delete answers with the deleted object rather than a Status.
    pub return_deleted_object: bool,
    pub storage: Storage,
}

impl Resource {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s.name == name)
    }

    /// Whether spec and status are written through separate endpoints.
    pub fn has_status(&self) -> bool {
        self.has_subresource("status")
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix),
            _ => format!("{}{name}", self.key_prefix),
        }
    }

    /// The store prefix holding a namespace's objects, or all of them.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix),
            _ => self.key_prefix.to_string(),
        }
    }
}

const CORE_CATEGORIES: &[&str] = &["all"];

const fn core(kind: &'static str, plural: &'static str, singular: &'static str) -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind,
        plural,
        singular,
        short_names: &[],
        categories: &[],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        key_prefix: "",
        selectable_fields: &[],
        name_rule: NameRule::Subdomain,
        allow_create_on_update: false,
        return_deleted_object: false,
        storage: Storage::Native,
    }
}

const BUILTIN: &[Resource] = &[
    Resource {
        short_names: &["ns"],
        namespaced: false,
        // Namespaces have no deletecollection upstream.
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        subresources: &[Subresource {
            name: "status",
            kind: "Namespace",
            verbs: STATUS_VERBS,
        }],
        key_prefix: "/registry/namespaces/",
        selectable_fields: &["status.phase"],
        name_rule: NameRule::Label,
        ..core("Namespace", "namespaces", "namespace")
    },
    Resource {
        short_names: &["no"],
        namespaced: false,
        subresources: &[Subresource {
            name: "status",
            kind: "Node",
            verbs: STATUS_VERBS,
        }],
        key_prefix: "/registry/minions/",
        selectable_fields: &["spec.unschedulable"],
        ..core("Node", "nodes", "node")
    },
    Resource {
        short_names: &["po"],
        categories: CORE_CATEGORIES,
        subresources: &[
            Subresource {
                name: "binding",
                kind: "Binding",
                verbs: &["create"],
            },
            Subresource {
                name: "log",
                kind: "Pod",
                verbs: &["get"],
            },
            Subresource {
                name: "status",
                kind: "Pod",
                verbs: STATUS_VERBS,
            },
        ],
        key_prefix: "/registry/pods/",
        selectable_fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        return_deleted_object: true,
        ..core("Pod", "pods", "pod")
    },
    Resource {
        short_names: &["svc"],
        categories: CORE_CATEGORIES,
        // Services have no deletecollection upstream.
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        subresources: &[Subresource {
            name: "status",
            kind: "Service",
            verbs: STATUS_VERBS,
        }],
        key_prefix: "/registry/services/specs/",
        selectable_fields: &["spec.clusterIP", "spec.type"],
        name_rule: NameRule::Dns1035Label,
        ..core("Service", "services", "service")
    },
    Resource {
        short_names: &["cm"],
        key_prefix: "/registry/configmaps/",
        ..core("ConfigMap", "configmaps", "configmap")
    },
    Resource {
        short_names: &["ev"],
        key_prefix: "/registry/events/",
        selectable_fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        name_rule: NameRule::PathSegment,
        ..core("Event", "events", "event")
    },
    Resource {
        group: "events.k8s.io",
        key_prefix: "/registry/events/",
        selectable_fields: &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        name_rule: NameRule::PathSegment,
        storage: Storage::CoreEvent,
        ..core("Event", "events", "event")
    },
    Resource {
        group: "coordination.k8s.io",
        key_prefix: "/registry/leases/",
        allow_create_on_update: true,
        ..core("Lease", "leases", "lease")
    },
];

/// The resources this server serves, looked up by URL parts.
#[derive(Clone, Debug)]
pub struct Registry {
    resources: &'static [Resource],
}

impl Default for Registry {
    fn default() -> Self {
        Registry { resources: BUILTIN }
    }
}

impl Registry {
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn all(&self) -> impl Iterator<Item = &'static Resource> {
        self.resources.iter()
    }

    /// Resources of one group-version, in registry order.
    pub fn resources_of<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'static Resource> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }

    /// Every named API group with its versions (the core group excluded), first-seen order.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for r in self.resources.iter().filter(|r| !r.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
                Some(_) => {}
                None => groups.push((r.group, vec![r.version])),
            }
        }
        groups
    }

    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.resources_of(group, version).next().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_upstream_layout() {
        let reg = Registry::default();
        let pods = reg.lookup("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "p"), "/registry/pods/default/p");
        assert_eq!(pods.prefix(None), "/registry/pods/");
        let nodes = reg.lookup("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/minions/n1");
        let svc = reg.lookup("", "v1", "services").unwrap();
        assert_eq!(
            svc.key(Some("default"), "kubernetes"),
            "/registry/services/specs/default/kubernetes"
        );
        let leases = reg.lookup("coordination.k8s.io", "v1", "leases").unwrap();
        assert_eq!(leases.api_version(), "coordination.k8s.io/v1");
        assert_eq!(
            reg.groups(),
            vec![
                ("events.k8s.io", vec!["v1"]),
                ("coordination.k8s.io", vec!["v1"])
            ]
        );
    }
}
