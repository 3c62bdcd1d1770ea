//! The resource registry: every resource the API server serves, described as data.
//! Handlers, discovery, tables and selectors are generic over these entries, so adding
//! a built-in type means adding an entry here (plus its table columns and, when it
//! has any, its defaulting and validation), not new handlers.

use crate::selector::{FieldLabelRules, FieldLabels};
use std::sync::{Arc, RwLock};

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
    /// As autoscaling/v2 HorizontalPodAutoscalers (autoscaling/v1 shares their storage).
    AutoscalingV2,
    /// Not at all: the only verb is `create`, which answers with the request's object,
    /// its status filled in (the access reviews).
    NotStored,
    /// Not at all: `get` and `list` answer with what the server observes when asked
    /// (ComponentStatus: the health of etcd, the scheduler and the controller-manager).
    Observed,
}

/// A subresource such as `pods/status`.
#[derive(Clone, Copy, Debug)]
pub struct Subresource {
    pub name: &'static str,
    /// The kind the subresource takes or returns (`Binding` for `pods/binding`).
    pub kind: &'static str,
    /// The group and version of `kind` when it is not the parent's own kind
    /// (`("", "v1")` for `Binding`, `("autoscaling", "v1")` for `Scale`).
    pub group_version: Option<(&'static str, &'static str)>,
    pub verbs: &'static [&'static str],
}

/// The `status` subresource of a resource whose kind is `kind`.
const fn status(kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        kind,
        group_version: None,
        verbs: STATUS_VERBS,
    }
}

/// The verbs of the subresources that stream to a pod (`exec`, `attach`,
/// `portforward`): SPDY clients POST, WebSocket clients GET.
const STREAM_VERBS: &[&str] = &["create", "get"];
/// The verbs of the `proxy` subresources: every method passes through.
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

/// A subresource that connects the client to something behind the API server (a
/// container's streams, a pod's port, a kubelet) rather than reading or writing the
/// stored object: upstream's connecters, whose kind is the options they take.
const fn connect(
    name: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        kind,
        group_version: None,
        verbs,
    }
}

/// The `scale` subresource: `autoscaling/v1 Scale` over `spec.replicas`.
const SCALE: Subresource = Subresource {
    name: "scale",
    kind: "Scale",
    group_version: Some(("autoscaling", "v1")),
    verbs: STATUS_VERBS,
};

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
    /// Whether the kind has a field-label conversion function of its own, which
    /// decides the metadata labels it takes and the words refusing others.
    pub field_labels: FieldLabels,
    /// Field selector paths beyond `metadata.name` and `metadata.namespace`.
    pub selectable_fields: &'static [&'static str],
    /// The selectable fields whose unset value is not `""`, with the value they compare
    /// as then. Upstream builds field sets from the typed object (`spec.unschedulable` is
    /// `strconv.FormatBool(node.Spec.Unschedulable)`), so an unset bool is `false` and
    /// an unset count `0`; unset strings are `""` already.
    pub selectable_zero_values: &'static [(&'static str, &'static str)],
    /// The selectable fields whose value is not at the path their label names, with
    /// the paths upstream's `ToSelectableFields` reads instead, the first set and
    /// non-empty one winning: a Job's `status.successful` is `status.succeeded`, a core
    /// Event's `source` is `source.component`, else `reportingComponent`; a label
    /// upstream accepts but never fills in reads no path and is always `""`.
    pub selectable_reads: &'static [(&'static str, &'static [&'static str])],
    pub name_rule: NameRule,
    /// PUT of a missing object creates it (upstream does this for leases).
    pub allow_create_on_update: bool,
    /// An immediate delete answers with the deleted object rather than a Status.
    pub return_deleted_object: bool,
    pub storage: Storage,
    /// What a CustomResourceDefinition says about the resource; `None` for built-ins.
    pub custom: Option<&'static crate::crd::CustomResource>,
}

impl Resource {
    /// Whether the endpoint at `subresource` (`None` for the resource itself) can answer
    /// as a `meta.k8s.io/v1 Table`. Upstream negotiates that only for storage with a
    /// `TableConvertor`: stored resources, their `status` and `approval` (the same
    /// storage) and `scale`;
    /// the reviews and the `token`, `eviction` and `binding` subresources have none, and
    /// a request accepting nothing but a Table gets 406 from them.
    pub fn renders_tables(&self, subresource: Option<&str>) -> bool {
        match subresource {
            None => self.storage != Storage::NotStored,
            Some(name) => matches!(name, "status" | "scale" | "approval"),
        }
    }

    /// What the kind's field selectors may name, and how each label reads an object.
    pub fn field_label_rules(&self) -> FieldLabelRules<'static> {
        FieldLabelRules {
            labels: self.field_labels,
            namespaced: self.namespaced,
            selectable: self.selectable_fields,
            zero_values: self.selectable_zero_values,
            reads: self.selectable_reads,
        }
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        match self.custom {
            Some(custom) if !custom.list_kind.is_empty() => custom.list_kind.clone(),
            _ => format!("{}List", self.kind),
        }
    }

    /// Whether `name` is one of this resource's connect subresources (see `connect`).
    pub fn connects(&self, name: &str) -> bool {
        self.subresources
            .iter()
            .any(|s| s.name == name && s.kind.ends_with("Options"))
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

/// kubectl's `all` category: what `kubectl get all` lists.
const ALL: &[&str] = &["all"];
/// Verbs of resources upstream serves without `deletecollection`.
const NO_COLLECTION_DELETE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// A namespaced resource of `group`/`version` with every verb and no subresources.
const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    key_prefix: &'static str,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        short_names: &[],
        categories: &[],
        namespaced: true,
        verbs: ALL_VERBS,
        subresources: &[],
        key_prefix,
        field_labels: FieldLabels::Default,
        selectable_fields: &[],
        selectable_zero_values: &[],
        selectable_reads: &[],
        name_rule: NameRule::Subdomain,
        allow_create_on_update: false,
        return_deleted_object: false,
        storage: Storage::Native,
        custom: None,
    }
}

const fn core(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    key_prefix: &'static str,
) -> Resource {
    res("", "v1", kind, plural, singular, key_prefix)
}

const fn apps(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    key_prefix: &'static str,
) -> Resource {
    res("apps", "v1", kind, plural, singular, key_prefix)
}

const fn batch(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    key_prefix: &'static str,
) -> Resource {
    res("batch", "v1", kind, plural, singular, key_prefix)
}

const fn rbac(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    key_prefix: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        namespaced,
        // RBAC objects are named by path segment, so `system:controller:x` is fine.
        name_rule: NameRule::PathSegment,
        ..res(
            "rbac.authorization.k8s.io",
            "v1",
            kind,
            plural,
            singular,
            key_prefix,
        )
    }
}

const fn storage(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    key_prefix: &'static str,
) -> Resource {
    Resource {
        namespaced: false,
        ..res("storage.k8s.io", "v1", kind, plural, singular, key_prefix)
    }
}

/// A cluster-scoped resource of `group`/`version` with every verb.
const fn cluster(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    key_prefix: &'static str,
) -> Resource {
    Resource {
        namespaced: false,
        ..res(group, version, kind, plural, singular, key_prefix)
    }
}

/// kubectl's `api-extensions` category: the kinds that extend or police the API.
const API_EXTENSIONS: &[&str] = &["api-extensions"];

/// An `admissionregistration.k8s.io/v1` kind (all cluster-scoped, all api-extensions).
const fn admission(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    key_prefix: &'static str,
) -> Resource {
    Resource {
        categories: API_EXTENSIONS,
        ..cluster(
            "admissionregistration.k8s.io",
            "v1",
            kind,
            plural,
            singular,
            key_prefix,
        )
    }
}

/// A cluster-scoped review: create-only and never stored (`kubectl auth can-i|whoami`).
const fn review(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
) -> Resource {
    Resource {
        namespaced: false,
        verbs: &["create"],
        storage: Storage::NotStored,
        ..res(group, "v1", kind, plural, singular, "")
    }
}

const HPA_V2: Resource = Resource {
    short_names: &["hpa"],
    categories: ALL,
    subresources: &[status("HorizontalPodAutoscaler")],
    ..res(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "/registry/horizontalpodautoscalers/",
    )
};

const CORE_EVENT_FIELDS: &[&str] = &[
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
];

/// Every built-in resource, grouped as upstream's discovery lists them. Within a
/// group, the first version listed is the preferred (and stored) one.
const BUILTIN: &[Resource] = &[
    // core/v1
    Resource {
        short_names: &["cs"],
        namespaced: false,
        verbs: &["get", "list"],
        storage: Storage::Observed,
        ..core(
            "ComponentStatus",
            "componentstatuses",
            "componentstatus",
            "",
        )
    },
    Resource {
        short_names: &["cm"],
        ..core(
            "ConfigMap",
            "configmaps",
            "configmap",
            "/registry/configmaps/",
        )
    },
    Resource {
        short_names: &["ep"],
        ..core(
            "Endpoints",
            "endpoints",
            "endpoints",
            "/registry/services/endpoints/",
        )
    },
    Resource {
        short_names: &["ev"],
        field_labels: FieldLabels::Converted,
        selectable_fields: CORE_EVENT_FIELDS,
        selectable_reads: &[("source", &["source.component", "reportingComponent"])],
        name_rule: NameRule::PathSegment,
        ..core("Event", "events", "event", "/registry/events/")
    },
    Resource {
        short_names: &["limits"],
        ..core(
            "LimitRange",
            "limitranges",
            "limitrange",
            "/registry/limitranges/",
        )
    },
    Resource {
        short_names: &["ns"],
        namespaced: false,
        verbs: NO_COLLECTION_DELETE,
        // `finalize` writes spec.finalizers, which a plain update keeps as stored: the
        // namespace controller (and conformance's fake finalizer) use it.
        subresources: &[
            Subresource {
                name: "finalize",
                kind: "Namespace",
                group_version: None,
                verbs: &["update"],
            },
            status("Namespace"),
        ],
        field_labels: FieldLabels::Converted,
        selectable_fields: &["status.phase"],
        name_rule: NameRule::Label,
        ..core(
            "Namespace",
            "namespaces",
            "namespace",
            "/registry/namespaces/",
        )
    },
    Resource {
        short_names: &["no"],
        namespaced: false,
        subresources: &[
            connect("proxy", "NodeProxyOptions", PROXY_VERBS),
            status("Node"),
        ],
        field_labels: FieldLabels::Converted,
        selectable_fields: &["spec.unschedulable"],
        selectable_zero_values: &[("spec.unschedulable", "false")],
        // Nodes are still `minions` in upstream's etcd layout.
        ..core("Node", "nodes", "node", "/registry/minions/")
    },
    Resource {
        short_names: &["pvc"],
        subresources: &[status("PersistentVolumeClaim")],
        // Upstream answers a delete of this kind with the object, not a Status; the
        // clients generated from its OpenAPI (Python's) insist on the object.
        return_deleted_object: true,
        ..core(
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            "/registry/persistentvolumeclaims/",
        )
    },
    Resource {
        short_names: &["pv"],
        namespaced: false,
        subresources: &[status("PersistentVolume")],
        return_deleted_object: true,
        ..core(
            "PersistentVolume",
            "persistentvolumes",
            "persistentvolume",
            "/registry/persistentvolumes/",
        )
    },
    Resource {
        short_names: &["po"],
        categories: ALL,
        subresources: &[
            connect("attach", "PodAttachOptions", STREAM_VERBS),
            Subresource {
                name: "binding",
                kind: "Binding",
                group_version: Some(("", "v1")),
                verbs: &["create"],
            },
            Subresource {
                name: "ephemeralcontainers",
                kind: "Pod",
                group_version: None,
                verbs: STATUS_VERBS,
            },
            Subresource {
                name: "eviction",
                kind: "Eviction",
                group_version: Some(("policy", "v1")),
                verbs: &["create"],
            },
            connect("exec", "PodExecOptions", STREAM_VERBS),
            Subresource {
                name: "log",
                kind: "Pod",
                group_version: None,
                verbs: &["get"],
            },
            connect("portforward", "PodPortForwardOptions", STREAM_VERBS),
            connect("proxy", "PodProxyOptions", PROXY_VERBS),
            status("Pod"),
        ],
        field_labels: FieldLabels::Converted,
        selectable_fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
            // Old v1 clients' name for spec.nodeName.
            "spec.host",
        ],
        selectable_zero_values: &[("spec.hostNetwork", "false")],
        selectable_reads: &[
            ("spec.host", &["spec.nodeName"]),
            // Upstream's field set takes the first of status.podIPs.
            ("status.podIP", &["status.podIPs.0.ip"]),
            ("status.podIPs", &[]),
        ],
        return_deleted_object: true,
        ..core("Pod", "pods", "pod", "/registry/pods/")
    },
    Resource {
        return_deleted_object: true,
        ..core(
            "PodTemplate",
            "podtemplates",
            "podtemplate",
            "/registry/podtemplates/",
        )
    },
    Resource {
        short_names: &["rc"],
        categories: ALL,
        subresources: &[SCALE, status("ReplicationController")],
        field_labels: FieldLabels::Converted,
        selectable_fields: &["status.replicas"],
        selectable_zero_values: &[("status.replicas", "0")],
        ..core(
            "ReplicationController",
            "replicationcontrollers",
            "replicationcontroller",
            "/registry/controllers/",
        )
    },
    Resource {
        short_names: &["quota"],
        subresources: &[status("ResourceQuota")],
        return_deleted_object: true,
        ..core(
            "ResourceQuota",
            "resourcequotas",
            "resourcequota",
            "/registry/resourcequotas/",
        )
    },
    Resource {
        field_labels: FieldLabels::Converted,
        selectable_fields: &["type"],
        ..core("Secret", "secrets", "secret", "/registry/secrets/")
    },
    Resource {
        short_names: &["sa"],
        subresources: &[Subresource {
            name: "token",
            kind: "TokenRequest",
            group_version: Some(("authentication.k8s.io", "v1")),
            verbs: &["create"],
        }],
        return_deleted_object: true,
        ..core(
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            "/registry/serviceaccounts/",
        )
    },
    Resource {
        short_names: &["svc"],
        categories: ALL,
        subresources: &[
            connect("proxy", "ServiceProxyOptions", PROXY_VERBS),
            status("Service"),
        ],
        field_labels: FieldLabels::Converted,
        selectable_fields: &["spec.clusterIP", "spec.type"],
        name_rule: NameRule::Dns1035Label,
        return_deleted_object: true,
        ..core(
            "Service",
            "services",
            "service",
            "/registry/services/specs/",
        )
    },
    // apps/v1
    apps(
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        "/registry/controllerrevisions/",
    ),
    Resource {
        short_names: &["ds"],
        categories: ALL,
        subresources: &[status("DaemonSet")],
        ..apps(
            "DaemonSet",
            "daemonsets",
            "daemonset",
            "/registry/daemonsets/",
        )
    },
    Resource {
        short_names: &["deploy"],
        categories: ALL,
        subresources: &[SCALE, status("Deployment")],
        ..apps(
            "Deployment",
            "deployments",
            "deployment",
            "/registry/deployments/",
        )
    },
    Resource {
        short_names: &["rs"],
        categories: ALL,
        subresources: &[SCALE, status("ReplicaSet")],
        ..apps(
            "ReplicaSet",
            "replicasets",
            "replicaset",
            "/registry/replicasets/",
        )
    },
    Resource {
        short_names: &["sts"],
        categories: ALL,
        subresources: &[SCALE, status("StatefulSet")],
        ..apps(
            "StatefulSet",
            "statefulsets",
            "statefulset",
            "/registry/statefulsets/",
        )
    },
    Resource {
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        namespaced: false,
        subresources: &[status("CustomResourceDefinition")],
        ..res(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            "/registry/apiextensions.k8s.io/customresourcedefinitions/",
        )
    },
    review(
        "authentication.k8s.io",
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
    ),
    review(
        "authentication.k8s.io",
        "TokenReview",
        "tokenreviews",
        "tokenreview",
    ),
    Resource {
        namespaced: true,
        ..review(
            "authorization.k8s.io",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            "localsubjectaccessreview",
        )
    },
    review(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
    ),
    review(
        "authorization.k8s.io",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
    ),
    review(
        "authorization.k8s.io",
        "SubjectAccessReview",
        "subjectaccessreviews",
        "subjectaccessreview",
    ),
    // autoscaling/v2 (preferred, stored) and v1 over the same objects
    HPA_V2,
    Resource {
        version: "v1",
        storage: Storage::AutoscalingV2,
        ..HPA_V2
    },
    // batch/v1
    Resource {
        short_names: &["cj"],
        categories: ALL,
        subresources: &[status("CronJob")],
        ..batch("CronJob", "cronjobs", "cronjob", "/registry/cronjobs/")
    },
    Resource {
        categories: ALL,
        subresources: &[status("Job")],
        field_labels: FieldLabels::ConvertedFor("Job"),
        selectable_fields: &["status.successful"],
        selectable_zero_values: &[("status.successful", "0")],
        selectable_reads: &[("status.successful", &["status.succeeded"])],
        ..batch("Job", "jobs", "job", "/registry/jobs/")
    },
    // certificates.k8s.io/v1
    Resource {
        short_names: &["csr"],
        namespaced: false,
        subresources: &[
            Subresource {
                name: "approval",
                kind: "CertificateSigningRequest",
                group_version: None,
                verbs: STATUS_VERBS,
            },
            status("CertificateSigningRequest"),
        ],
        field_labels: FieldLabels::Converted,
        selectable_fields: &["spec.signerName"],
        // Upstream does not restrict request names beyond what a URL can carry.
        name_rule: NameRule::PathSegment,
        ..res(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            "certificatesigningrequest",
            "/registry/certificatesigningrequests/",
        )
    },
    Resource {
        allow_create_on_update: true,
        ..res(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            "lease",
            "/registry/leases/",
        )
    },
    res(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        "/registry/endpointslices/",
    ),
    Resource {
        short_names: &["ev"],
        field_labels: FieldLabels::Converted,
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
            "source",
            "type",
        ],
        // Upstream maps `source` to the core field set's, which is the deprecated
        // source's component, else the reporting controller.
        selectable_reads: &[(
            "source",
            &["deprecatedSource.component", "reportingController"],
        )],
        name_rule: NameRule::PathSegment,
        storage: Storage::CoreEvent,
        ..res(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            "event",
            "/registry/events/",
        )
    },
    // networking.k8s.io/v1
    Resource {
        namespaced: false,
        ..res(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "ingressclasses",
            "ingressclass",
            "/registry/ingressclasses/",
        )
    },
    Resource {
        short_names: &["ing"],
        subresources: &[status("Ingress")],
        ..res(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            "ingress",
            "/registry/ingress/",
        )
    },
    Resource {
        short_names: &["ip"],
        namespaced: false,
        // Named by the address itself, which IPv6 makes no DNS name; the kind's
        // validation checks it is an IP.
        name_rule: NameRule::PathSegment,
        ..res(
            "networking.k8s.io",
            "v1",
            "IPAddress",
            "ipaddresses",
            "ipaddress",
            "/registry/ipaddresses/",
        )
    },
    Resource {
        short_names: &["netpol"],
        ..res(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            "networkpolicy",
            "/registry/networkpolicies/",
        )
    },
    Resource {
        namespaced: false,
        subresources: &[status("ServiceCIDR")],
        ..res(
            "networking.k8s.io",
            "v1",
            "ServiceCIDR",
            "servicecidrs",
            "servicecidr",
            "/registry/servicecidrs/",
        )
    },
    Resource {
        namespaced: false,
        ..res(
            "node.k8s.io",
            "v1",
            "RuntimeClass",
            "runtimeclasses",
            "runtimeclass",
            "/registry/runtimeclasses/",
        )
    },
    Resource {
        short_names: &["pdb"],
        subresources: &[status("PodDisruptionBudget")],
        ..res(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            "/registry/poddisruptionbudgets/",
        )
    },
    // rbac.authorization.k8s.io/v1
    rbac(
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        "/registry/clusterrolebindings/",
        false,
    ),
    rbac(
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        "/registry/clusterroles/",
        false,
    ),
    rbac(
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        "/registry/rolebindings/",
        true,
    ),
    rbac("Role", "roles", "role", "/registry/roles/", true),
    Resource {
        short_names: &["pc"],
        namespaced: false,
        ..res(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "priorityclasses",
            "priorityclass",
            "/registry/priorityclasses/",
        )
    },
    // storage.k8s.io/v1
    Resource {
        return_deleted_object: true,
        ..storage(
            "CSIDriver",
            "csidrivers",
            "csidriver",
            "/registry/csidrivers/",
        )
    },
    Resource {
        return_deleted_object: true,
        ..storage("CSINode", "csinodes", "csinode", "/registry/csinodes/")
    },
    Resource {
        namespaced: true,
        ..storage(
            "CSIStorageCapacity",
            "csistoragecapacities",
            "csistoragecapacity",
            "/registry/csistoragecapacities/",
        )
    },
    Resource {
        short_names: &["sc"],
        return_deleted_object: true,
        ..storage(
            "StorageClass",
            "storageclasses",
            "storageclass",
            "/registry/storageclasses/",
        )
    },
    Resource {
        subresources: &[status("VolumeAttachment")],
        return_deleted_object: true,
        ..storage(
            "VolumeAttachment",
            "volumeattachments",
            "volumeattachment",
            "/registry/volumeattachments/",
        )
    },
    Resource {
        short_names: &["vac"],
        ..storage(
            "VolumeAttributesClass",
            "volumeattributesclasses",
            "volumeattributesclass",
            "/registry/volumeattributesclasses/",
        )
    },
    // admissionregistration.k8s.io/v1: stored and validated; rind calls no webhook
    // and evaluates no policy yet (writes say so in a Warning).
    admission(
        "MutatingAdmissionPolicy",
        "mutatingadmissionpolicies",
        "mutatingadmissionpolicy",
        "/registry/mutatingadmissionpolicies/",
    ),
    admission(
        "MutatingAdmissionPolicyBinding",
        "mutatingadmissionpolicybindings",
        "mutatingadmissionpolicybinding",
        "/registry/mutatingadmissionpolicybindings/",
    ),
    admission(
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        "/registry/mutatingwebhookconfigurations/",
    ),
    Resource {
        subresources: &[status("ValidatingAdmissionPolicy")],
        ..admission(
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            "validatingadmissionpolicy",
            "/registry/validatingadmissionpolicies/",
        )
    },
    admission(
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        "validatingadmissionpolicybinding",
        "/registry/validatingadmissionpolicybindings/",
    ),
    admission(
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        "/registry/validatingwebhookconfigurations/",
    ),
    Resource {
        categories: API_EXTENSIONS,
        subresources: &[status("APIService")],
        // The core group's service is `v1.`: no DNS subdomain, as upstream allows.
        name_rule: NameRule::PathSegment,
        ..cluster(
            "apiregistration.k8s.io",
            "v1",
            "APIService",
            "apiservices",
            "apiservice",
            "/registry/apiregistration.k8s.io/apiservices/",
        )
    },
    // flowcontrol.apiserver.k8s.io/v1
    Resource {
        subresources: &[status("FlowSchema")],
        ..cluster(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "FlowSchema",
            "flowschemas",
            "flowschema",
            "/registry/flowschemas/",
        )
    },
    Resource {
        subresources: &[status("PriorityLevelConfiguration")],
        ..cluster(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            "prioritylevelconfiguration",
            "/registry/prioritylevelconfigurations/",
        )
    },
    // resource.k8s.io/v1
    cluster(
        "resource.k8s.io",
        "v1",
        "DeviceClass",
        "deviceclasses",
        "deviceclass",
        "/registry/deviceclasses/",
    ),
    Resource {
        subresources: &[status("DeviceTaintRule")],
        ..cluster(
            "resource.k8s.io",
            "v1",
            "DeviceTaintRule",
            "devicetaintrules",
            "devicetaintrule",
            "/registry/devicetaintrules/",
        )
    },
    Resource {
        subresources: &[status("ResourceClaim")],
        ..res(
            "resource.k8s.io",
            "v1",
            "ResourceClaim",
            "resourceclaims",
            "resourceclaim",
            "/registry/resourceclaims/",
        )
    },
    res(
        "resource.k8s.io",
        "v1",
        "ResourceClaimTemplate",
        "resourceclaimtemplates",
        "resourceclaimtemplate",
        "/registry/resourceclaimtemplates/",
    ),
    Resource {
        field_labels: FieldLabels::ConvertedForGvk("resource.k8s.io/v1, Kind=ResourceSlice"),
        selectable_fields: &["spec.nodeName", "spec.driver"],
        ..cluster(
            "resource.k8s.io",
            "v1",
            "ResourceSlice",
            "resourceslices",
            "resourceslice",
            "/registry/resourceslices/",
        )
    },
];

/// The resources this server serves, looked up by URL parts.
///
/// Everything that needs to know which resources exist (routing, discovery, openapi,
/// namespace cleanup) asks through these methods and nothing else, and the per-kind
/// hooks (`kinds`, `table`) fall back to generic behaviour for kinds they do not
/// know. Resources defined by CustomResourceDefinitions live in a shared,
/// lock-protected list next to `BUILTIN`, and these methods search both. Clones share
/// that list. The lock is never held across an await.
#[derive(Clone, Debug)]
pub struct Registry {
    resources: &'static [Resource],
    custom: Arc<RwLock<CustomEntries>>,
}

/// The runtime entries: per CRD name, the resources of its served versions.
#[derive(Debug, Default)]
struct CustomEntries {
    by_crd: Vec<(String, Vec<&'static Resource>)>,
    /// Bumped on every change, so derived documents (openapi) know when to rebuild.
    generation: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            resources: BUILTIN,
            custom: Arc::default(),
        }
    }
}

impl Registry {
    /// Every resource: the built-ins first, then the custom ones in CRD order.
    fn snapshot(&self) -> Vec<&'static Resource> {
        let custom = self.custom.read().unwrap_or_else(|e| e.into_inner());
        self.resources
            .iter()
            .chain(custom.by_crd.iter().flat_map(|(_, rs)| rs.iter().copied()))
            .collect()
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        self.snapshot()
            .into_iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn all(&self) -> impl Iterator<Item = &'static Resource> {
        self.snapshot().into_iter()
    }

    /// Resources of one group-version, in registry order.
    pub fn resources_of(
        &self,
        group: &str,
        version: &str,
    ) -> impl Iterator<Item = &'static Resource> + use<> {
        let mut found = self.snapshot();
        found.retain(|r| r.group == group && r.version == version);
        found.into_iter()
    }

    /// Every named API group with its versions (the core group excluded), first-seen order.
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for r in self.snapshot().into_iter().filter(|r| !r.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
                Some(_) => {}
                None => groups.push((r.group, vec![r.version])),
            }
        }
        groups
    }

    /// Whether `group` is one of the built-in API groups (not one a CRD defines).
    pub fn is_builtin_group(&self, group: &str) -> bool {
        self.resources.iter().any(|r| r.group == group)
    }

    /// The named groups this server defines itself (no CustomResourceDefinition's), with
    /// their versions, in registry order.
    pub fn builtin_groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
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

    /// Serves `resources` for the CRD `crd_name` from now on, replacing what it served
    /// before (an empty list stops serving it).
    pub fn set_custom(&self, crd_name: &str, resources: Vec<&'static Resource>) {
        let mut custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        let current = custom.by_crd.iter().position(|(name, _)| name == crd_name);
        let unchanged = match current {
            Some(i) => {
                let old = &custom.by_crd[i].1;
                old.len() == resources.len()
                    && old
                        .iter()
                        .zip(&resources)
                        .all(|(a, b)| std::ptr::eq(*a, *b))
            }
            None => resources.is_empty(),
        };
        if unchanged {
            return;
        }
        match (current, resources.is_empty()) {
            (Some(i), true) => {
                custom.by_crd.remove(i);
            }
            (Some(i), false) => custom.by_crd[i].1 = resources,
            (None, _) => custom.by_crd.push((crd_name.to_string(), resources)),
        }
        custom.generation += 1;
    }

    /// Changes whenever the set of custom resources does.
    pub fn custom_generation(&self) -> u64 {
        self.custom
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
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
        let groups = reg.groups();
        assert_eq!(groups[0], ("apps", vec!["v1"]));
        assert!(groups.contains(&("autoscaling", vec!["v2", "v1"])));
        let deploy = reg.lookup("apps", "v1", "deployments").unwrap();
        assert!(deploy.has_subresource("scale") && deploy.has_status());
        assert_eq!(
            deploy.key(Some("ns"), "web"),
            "/registry/deployments/ns/web"
        );
    }
}
