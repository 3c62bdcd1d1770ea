//! The 1.37 discovery fixture (`rind-api`'s `testdata/discovery-v1.37.yaml`, derived
//! from upstream's golden discovery documents) against what this server serves, and
//! against k8s-openapi's `v1_37` types, so the fixture, the crate and the registry
//! agree. What upstream serves by default and rind does not yet is listed here, each
//! entry with its reason; the test also fails when such an entry becomes served, so the
//! list stays true.

use rind_api::registry::{Registry, Resource};
use serde::Deserialize;
use serde_json::Value;

pub const FIXTURE: &str = include_str!("../api/testdata/discovery-v1.37.yaml");

/// Upstream-served resources and subresources rind does not serve yet: group-version,
/// `resource` or `resource/subresource`, and why.
pub const NOT_YET_SERVED: &[(&str, &str, &str)] = &[
    ("v1", "bindings", "pods/binding serves the same writes"),
    (
        "v1",
        "pods/resize",
        "in-place pod resize is not implemented",
    ),
    (
        "certificates.k8s.io/v1",
        "clustertrustbundles",
        "not implemented",
    ),
    (
        "certificates.k8s.io/v1",
        "podcertificaterequests",
        "not implemented",
    ),
    (
        "storagemigration.k8s.io/v1",
        "storageversionmigrations",
        "needs a storage version migrator controller",
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub gv: String,
    pub resource: String,
    pub kind: String,
    pub scope: String,
    pub singular: String,
    #[serde(default, rename = "shortNames")]
    pub short_names: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub verbs: Option<Vec<String>>,
    #[serde(default)]
    pub subresources: Vec<Sub>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sub {
    pub name: String,
    /// `Kind`, or `group/version/Kind` (`policy/v1/Eviction`, core: `v1/Binding`).
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub verbs: Option<Vec<String>>,
}

const PLAIN: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const SUB: &[&str] = &["get", "patch", "update"];

pub fn entries() -> Vec<Entry> {
    rind_runtime::yaml::from_str(FIXTURE).expect("the discovery fixture parses")
}

pub fn not_yet_served(gv: &str, name: &str) -> bool {
    NOT_YET_SERVED
        .iter()
        .any(|(g, n, _)| *g == gv && *n == name)
}

fn verbs(list: &Option<Vec<String>>, default: &[&str]) -> Vec<String> {
    list.clone()
        .unwrap_or_else(|| default.iter().map(|v| v.to_string()).collect())
}

/// `group/version/Kind` of a subresource as the registry describes it.
fn sub_kind(resource: &Resource, sub: &rind_api::registry::Subresource) -> String {
    let (group, version) = sub
        .group_version
        .unwrap_or((resource.group, resource.version));
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    format!("{gv}/{}", sub.kind)
}

/// Every difference between the fixture and the registry, in words.
pub fn differences(registry: &Registry) -> Vec<String> {
    let mut problems = Vec::new();
    let fixture = entries();
    for entry in &fixture {
        let (group, version) = entry.gv.split_once('/').unwrap_or(("", &entry.gv));
        let served = registry.lookup(group, version, &entry.resource);
        let missing = not_yet_served(&entry.gv, &entry.resource);
        let Some(r) = served else {
            if !missing {
                problems.push(format!("{} {} is not served", entry.gv, entry.resource));
            }
            continue;
        };
        if missing {
            problems.push(format!(
                "{} {} is served: drop it from NOT_YET_SERVED",
                entry.gv, entry.resource
            ));
        }
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let scope = if r.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        };
        let checks = [
            (
                "kind",
                Value::from(r.kind),
                Value::from(entry.kind.as_str()),
            ),
            (
                "scope",
                Value::from(scope),
                Value::from(entry.scope.as_str()),
            ),
            (
                "singular",
                Value::from(r.singular),
                Value::from(entry.singular.as_str()),
            ),
            (
                "shortNames",
                Value::from(strings(r.short_names)),
                Value::from(entry.short_names.clone()),
            ),
            (
                "categories",
                Value::from(strings(r.categories)),
                Value::from(entry.categories.clone()),
            ),
            (
                "verbs",
                Value::from(strings(r.verbs)),
                Value::from(verbs(&entry.verbs, PLAIN)),
            ),
        ];
        for (field, ours, upstream) in checks {
            if ours != upstream {
                problems.push(format!(
                    "{} {} {field}: ours {ours}, upstream {upstream}",
                    entry.gv, entry.resource
                ));
            }
        }
        for sub in &entry.subresources {
            let name = format!("{}/{}", entry.resource, sub.name);
            let ours = r.subresources.iter().find(|s| s.name == sub.name);
            let missing = not_yet_served(&entry.gv, &name);
            let Some(ours) = ours else {
                if !missing {
                    problems.push(format!("{} {name} is not served", entry.gv));
                }
                continue;
            };
            if missing {
                problems.push(format!(
                    "{} {name} is served: drop it from NOT_YET_SERVED",
                    entry.gv
                ));
            }
            let kind = match &sub.kind {
                Some(k) if k.contains('/') => k.clone(),
                Some(k) => format!("{}/{k}", entry.gv),
                None => format!("{}/{}", entry.gv, entry.kind),
            };
            if sub_kind(r, ours) != kind {
                problems.push(format!(
                    "{} {name} kind: ours {}, upstream {kind}",
                    entry.gv,
                    sub_kind(r, ours)
                ));
            }
            let ours_verbs: Vec<String> = ours.verbs.iter().map(|v| v.to_string()).collect();
            if ours_verbs != verbs(&sub.verbs, SUB) {
                problems.push(format!("{} {name} verbs: ours {ours_verbs:?}", entry.gv));
            }
        }
        for ours in r.subresources {
            if !entry.subresources.iter().any(|s| s.name == ours.name) {
                problems.push(format!(
                    "{} {}/{} is not upstream's",
                    entry.gv, entry.resource, ours.name
                ));
            }
        }
    }
    for r in registry.all() {
        let listed = fixture
            .iter()
            .any(|e| e.gv == r.api_version() && e.resource == r.plural);
        if !listed {
            problems.push(format!(
                "{} {} is served but not upstream's",
                r.api_version(),
                r.plural
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource as Typed};
    use std::any::TypeId;

    /// `apiVersion`, kind, plural and whether namespaced, as k8s-openapi's type says.
    fn typed<K: Typed>() -> (String, String, String, bool)
    where
        K::Scope: 'static,
    {
        let namespaced = TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>();
        assert!(namespaced || TypeId::of::<K::Scope>() == TypeId::of::<ClusterResourceScope>());
        (
            K::API_VERSION.to_string(),
            K::KIND.to_string(),
            K::URL_PATH_SEGMENT.to_string(),
            namespaced,
        )
    }

    #[test]
    fn the_registry_serves_upstreams_discovery() {
        let problems = differences(&Registry::default());
        assert!(problems.is_empty(), "{problems:#?}");
    }

    /// Every fixture entry is a `v1_37` type with the same group, version, kind, plural
    /// and scope (k8s-openapi's `Resource` impls), and the other way round for every
    /// type of a group-version the fixture covers.
    #[test]
    fn the_fixture_agrees_with_k8s_openapi() {
        use k8s_openapi::api::*;
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
        use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
        let types = vec![
            typed::<core::v1::Binding>(),
            typed::<core::v1::ComponentStatus>(),
            typed::<core::v1::ConfigMap>(),
            typed::<core::v1::Endpoints>(),
            typed::<core::v1::Event>(),
            typed::<core::v1::LimitRange>(),
            typed::<core::v1::Namespace>(),
            typed::<core::v1::Node>(),
            typed::<core::v1::PersistentVolumeClaim>(),
            typed::<core::v1::PersistentVolume>(),
            typed::<core::v1::Pod>(),
            typed::<core::v1::PodTemplate>(),
            typed::<core::v1::ReplicationController>(),
            typed::<core::v1::ResourceQuota>(),
            typed::<core::v1::Secret>(),
            typed::<core::v1::ServiceAccount>(),
            typed::<core::v1::Service>(),
            typed::<admissionregistration::v1::MutatingAdmissionPolicy>(),
            typed::<admissionregistration::v1::MutatingAdmissionPolicyBinding>(),
            typed::<admissionregistration::v1::MutatingWebhookConfiguration>(),
            typed::<admissionregistration::v1::ValidatingAdmissionPolicy>(),
            typed::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(),
            typed::<admissionregistration::v1::ValidatingWebhookConfiguration>(),
            typed::<apiextensions::CustomResourceDefinition>(),
            typed::<apiregistration::APIService>(),
            typed::<apps::v1::ControllerRevision>(),
            typed::<apps::v1::DaemonSet>(),
            typed::<apps::v1::Deployment>(),
            typed::<apps::v1::ReplicaSet>(),
            typed::<apps::v1::StatefulSet>(),
            typed::<authentication::v1::SelfSubjectReview>(),
            typed::<authentication::v1::TokenReview>(),
            typed::<authorization::v1::LocalSubjectAccessReview>(),
            typed::<authorization::v1::SelfSubjectAccessReview>(),
            typed::<authorization::v1::SelfSubjectRulesReview>(),
            typed::<authorization::v1::SubjectAccessReview>(),
            typed::<autoscaling::v1::HorizontalPodAutoscaler>(),
            typed::<autoscaling::v2::HorizontalPodAutoscaler>(),
            typed::<batch::v1::CronJob>(),
            typed::<batch::v1::Job>(),
            typed::<certificates::v1::CertificateSigningRequest>(),
            typed::<certificates::v1::ClusterTrustBundle>(),
            typed::<certificates::v1::PodCertificateRequest>(),
            typed::<coordination::v1::Lease>(),
            typed::<discovery::v1::EndpointSlice>(),
            typed::<events::v1::Event>(),
            typed::<flowcontrol::v1::FlowSchema>(),
            typed::<flowcontrol::v1::PriorityLevelConfiguration>(),
            typed::<networking::v1::IngressClass>(),
            typed::<networking::v1::Ingress>(),
            typed::<networking::v1::IPAddress>(),
            typed::<networking::v1::NetworkPolicy>(),
            typed::<networking::v1::ServiceCIDR>(),
            typed::<node::v1::RuntimeClass>(),
            typed::<policy::v1::PodDisruptionBudget>(),
            typed::<rbac::v1::ClusterRoleBinding>(),
            typed::<rbac::v1::ClusterRole>(),
            typed::<rbac::v1::RoleBinding>(),
            typed::<rbac::v1::Role>(),
            typed::<resource::v1::DeviceClass>(),
            typed::<resource::v1::DeviceTaintRule>(),
            typed::<resource::v1::ResourceClaim>(),
            typed::<resource::v1::ResourceClaimTemplate>(),
            typed::<resource::v1::ResourceSlice>(),
            typed::<scheduling::v1::PriorityClass>(),
            typed::<storage::v1::CSIDriver>(),
            typed::<storage::v1::CSINode>(),
            typed::<storage::v1::CSIStorageCapacity>(),
            typed::<storage::v1::StorageClass>(),
            typed::<storage::v1::VolumeAttachment>(),
            typed::<storage::v1::VolumeAttributesClass>(),
            typed::<storagemigration::v1::StorageVersionMigration>(),
        ];
        let fixture = entries();
        let from_fixture: Vec<(String, String, String, bool)> = fixture
            .iter()
            .map(|e| {
                (
                    e.gv.clone(),
                    e.kind.clone(),
                    e.resource.clone(),
                    e.scope == "Namespaced",
                )
            })
            .collect();
        let mut a = types.clone();
        let mut b = from_fixture.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
