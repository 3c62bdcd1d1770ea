//! Storage facts shared by the API server, the volume controller, the scheduler and the
//! kubelet: annotation names, the local-path provisioner's identity and layout, and
//! the rules for which nodes a persistent volume can be used on.

use super::object_selector::node_selector_matches;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

/// Set by the scheduler on a claim of a WaitForFirstConsumer class: provision here.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set on a claim once it waits for a provisioner (old and current spelling).
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The provisioner name kind's default class uses; we answer to it ourselves.
pub const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";
/// Where local-path volumes live on their node (inside the node container's /var volume).
pub const LOCAL_PATH_ROOT: &str = "/var/local-path-provisioner";
/// The class every cluster starts with, as in kind.
pub const STANDARD_CLASS: &str = "standard";

/// The directory of the local-path volume for a claim, named as the real provisioner names it.
pub fn local_path_dir(claim_uid: &str, namespace: &str, claim_name: &str) -> String {
    format!("{LOCAL_PATH_ROOT}/pvc-{claim_uid}_{namespace}_{claim_name}")
}

/// The claim's class name ("" when it has none).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the class delays binding until a pod using the claim is scheduled.
pub fn waits_for_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
}

/// Whether the volume can be used on `node`: no required node affinity, or one of its
/// terms holds for the node's labels (and metadata.name for matchFields).
pub fn volume_fits_node(pv: &PersistentVolume, node: &Node) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    node_selector_matches(
        required,
        node.metadata.name.as_deref().unwrap_or_default(),
        node.metadata.labels.as_ref(),
    )
}

/// The node names a volume's affinity pins it to with `kubernetes.io/hostname In`
/// (the local-path provisioner's volumes name exactly one).
pub fn pinned_hostnames(pv: &PersistentVolume) -> Vec<String> {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .into_iter()
        .flat_map(|r| r.node_selector_terms.iter())
        .flat_map(|t| t.match_expressions.iter().flatten())
        .filter(|e| e.key == HOSTNAME_LABEL && e.operator == "In")
        .flat_map(|e| e.values.clone().unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeSpec,
        VolumeNodeAffinity,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(HOSTNAME_LABEL.to_string(), name.to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }

    fn pinned(op: &str, values: &[&str]) -> PersistentVolume {
        PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: HOSTNAME_LABEL.into(),
                                operator: op.into(),
                                values: Some(values.iter().map(|v| v.to_string()).collect()),
                            }]),
                            match_fields: None,
                        }],
                    }),
                }),
                ..PersistentVolumeSpec::default()
            }),
            ..PersistentVolume::default()
        }
    }

    #[test]
    fn node_affinity_of_volumes() {
        assert!(volume_fits_node(&PersistentVolume::default(), &node("a")));
        let pv = pinned("In", &["a"]);
        assert!(volume_fits_node(&pv, &node("a")));
        assert!(!volume_fits_node(&pv, &node("b")));
        assert!(volume_fits_node(&pinned("NotIn", &["a"]), &node("b")));
        assert_eq!(pinned_hostnames(&pv), vec!["a".to_string()]);
    }

    #[test]
    fn local_path_layout() {
        assert_eq!(
            local_path_dir("u1", "default", "data"),
            "/var/local-path-provisioner/pvc-u1_default_data"
        );
    }
}
