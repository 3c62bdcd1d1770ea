//! kind's `kubeadmConfigPatches` and `kubeadmConfigPatchesJSON6902`, for what kind users
//! use them for. rind has no kubeadm: each patch is read for the few settings it can
//! carry that rind implements, and any other field is refused by the patch's kind and
//! field path, so nothing a user patches is silently dropped.
//!
//! Honoured:
//! - `InitConfiguration` / `JoinConfiguration` `nodeRegistration.kubeletExtraArgs`
//!   `node-labels` and `register-with-taints` (kind's ingress and labels guides), in
//!   kubeadm v1beta3's map form and v1beta4's `[{name, value}]` list form;
//! - `ClusterConfiguration` `apiServer.certSANs`: extra names in the API server's
//!   serving certificate;
//! - `KubeletConfiguration` `evictionHard` with every threshold at zero (`"0%"`, `"0"`),
//!   which is what rind's kubelet does (it never evicts) and what kind sets itself;
//!   `maxPods`, the node's pod capacity (which the scheduler keeps to).
//!
//! As with kubeadm under kind, an `InitConfiguration` patch applies to the first
//! control-plane node and a `JoinConfiguration` patch to every other node.

use super::config_source::{Located, steps};
use serde_json::Value;
use std::collections::BTreeMap;

const KUBEADM_GROUP: &str = "kubeadm.k8s.io";
const KUBEADM_VERSIONS: [&str; 3] = ["v1beta2", "v1beta3", "v1beta4"];
const KUBELET_GROUP: &str = "kubelet.config.k8s.io";
const KUBELET_VERSIONS: [&str; 1] = ["v1beta1"];

/// Which kubeadm document a node's patches meet: the first control plane is
/// initialised, every other node joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeBoot {
    Init,
    Join,
}

/// A taint as `--register-with-taints` gives it: `key[=value]:Effect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterTaint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

/// What a node's patches ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<RegisterTaint>,
    pub cert_sans: Vec<String>,
    /// KubeletConfiguration `maxPods`.
    pub max_pods: Option<u32>,
}

/// A refused or broken patch: the field path inside the patch (for the line) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// The field inside the patch document, as `a.b[0].c`, when one is to blame.
    pub field: Option<String>,
    pub message: String,
}

fn refuse(field: &str, message: String) -> PatchError {
    PatchError {
        field: Some(field.to_string()),
        message,
    }
}

fn unsupported(kind: &str, field: &str) -> PatchError {
    refuse(
        field,
        format!(
            "{kind} field {field} is not supported by rind (it has no kubeadm); supported: {}",
            supported_fields(kind)
        ),
    )
}

fn supported_fields(kind: &str) -> &'static str {
    match kind {
        "InitConfiguration" | "JoinConfiguration" => {
            "nodeRegistration.kubeletExtraArgs node-labels and register-with-taints"
        }
        "ClusterConfiguration" => "apiServer.certSANs",
        "KubeletConfiguration" => {
            "maxPods, and evictionHard with every threshold \"0%\" (rind never evicts)"
        }
        _ => "nothing",
    }
}

/// The line of `field` inside a patch's text (1-based, within the patch).
pub fn line_in_patch(text: &str, field: &str) -> Option<u64> {
    Located::read(text)?.line(&steps(field))
}

/// Applies one `kubeadmConfigPatches` entry (a strategic-merge-style document) to a
/// node that boots as `boot`. Returns whether the patch matched the node's documents
/// (an `InitConfiguration` patch does not match a joining node).
pub fn apply_merge(text: &str, boot: NodeBoot, out: &mut Applied) -> Result<bool, PatchError> {
    let doc: Value = rind_runtime::yaml::from_str(text).map_err(|err| PatchError {
        field: None,
        message: format!("not a YAML document: {err}"),
    })?;
    let Value::Object(map) = &doc else {
        return Err(PatchError {
            field: None,
            message: "must be a YAML mapping with a kind".to_string(),
        });
    };
    let kind = match map.get("kind") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => {
            return Err(refuse(
                "kind",
                "a patch must name the kind it patches (InitConfiguration, JoinConfiguration, ClusterConfiguration or KubeletConfiguration)".to_string(),
            ));
        }
    };
    if let Some(api_version) = map.get("apiVersion") {
        check_api_version(kind, api_version.as_str().unwrap_or_default())
            .map_err(|m| refuse("apiVersion", m))?;
    }
    apply_document(kind, &doc, boot, out)
}

fn check_api_version(kind: &str, api_version: &str) -> Result<(), String> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let known = match kind {
        "KubeletConfiguration" => group == KUBELET_GROUP && KUBELET_VERSIONS.contains(&version),
        _ => group == KUBEADM_GROUP && KUBEADM_VERSIONS.contains(&version),
    };
    if known {
        Ok(())
    } else {
        Err(format!(
            "{api_version:?} is not an API version of {kind} that kind generates"
        ))
    }
}

/// Reads a whole (patched) document of `kind` into `out`, refusing every field rind
/// cannot honour.
fn apply_document(
    kind: &str,
    doc: &Value,
    boot: NodeBoot,
    out: &mut Applied,
) -> Result<bool, PatchError> {
    let Value::Object(map) = doc else {
        return Err(PatchError {
            field: None,
            message: format!("{kind} must be a mapping"),
        });
    };
    let fields = map
        .iter()
        .filter(|(k, _)| k.as_str() != "kind" && k.as_str() != "apiVersion");
    match kind {
        "InitConfiguration" | "JoinConfiguration" => {
            let matches = (kind == "InitConfiguration") == (boot == NodeBoot::Init);
            for (key, value) in fields {
                if key != "nodeRegistration" {
                    return Err(unsupported(kind, key));
                }
                node_registration(kind, value, matches.then_some(&mut *out))?;
            }
            Ok(matches)
        }
        "ClusterConfiguration" => {
            for (key, value) in fields {
                let Some(api_server) = value.as_object().filter(|_| key == "apiServer") else {
                    return Err(unsupported(kind, key));
                };
                for (field, value) in api_server {
                    let path = format!("apiServer.{field}");
                    if field != "certSANs" {
                        return Err(unsupported(kind, &path));
                    }
                    let sans = value
                        .as_array()
                        .ok_or_else(|| refuse(&path, "must be a list of names".to_string()))?;
                    for (i, san) in sans.iter().enumerate() {
                        let san = san.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
                            refuse(
                                &format!("{path}[{i}]"),
                                "must be a name or an IP address".to_string(),
                            )
                        })?;
                        if !out.cert_sans.iter().any(|s| s == san) {
                            out.cert_sans.push(san.to_string());
                        }
                    }
                }
            }
            Ok(true)
        }
        "KubeletConfiguration" => {
            for (key, value) in fields {
                if key == "maxPods" {
                    let max = value
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .filter(|v| *v > 0)
                        .ok_or_else(|| {
                            refuse(key, format!("maxPods: {value} is not a positive number"))
                        })?;
                    out.max_pods = Some(max);
                    continue;
                }
                if key != "evictionHard" {
                    return Err(unsupported(kind, key));
                }
                let thresholds = value.as_object().ok_or_else(|| {
                    refuse(key, "must be a map of signal to threshold".to_string())
                })?;
                for (signal, threshold) in thresholds {
                    let zero = matches!(threshold.as_str(), Some("0%" | "0"));
                    if !zero {
                        return Err(refuse(
                            &format!("evictionHard.\"{signal}\""),
                            format!(
                                "KubeletConfiguration evictionHard {signal}: {threshold} is not supported: rind's kubelet never evicts, so only \"0%\" (eviction off, kind's own setting) can be honoured"
                            ),
                        ));
                    }
                }
            }
            Ok(true)
        }
        other => Err(refuse(
            "kind",
            format!(
                "{other:?} is not a document rind can apply (InitConfiguration, JoinConfiguration, ClusterConfiguration, KubeletConfiguration)"
            ),
        )),
    }
}

/// `nodeRegistration`: only `kubeletExtraArgs` with node-labels and register-with-taints.
fn node_registration(
    kind: &str,
    value: &Value,
    mut out: Option<&mut Applied>,
) -> Result<(), PatchError> {
    let registration = value
        .as_object()
        .ok_or_else(|| refuse("nodeRegistration", "must be a mapping".to_string()))?;
    for (key, value) in registration {
        let path = format!("nodeRegistration.{key}");
        if key != "kubeletExtraArgs" {
            return Err(unsupported(kind, &path));
        }
        // v1beta3: a map of flag to value; v1beta4: a list of {name, value}.
        let args: Vec<(String, String, String)> = match value {
            Value::Object(map) => map
                .iter()
                .map(|(name, v)| {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (name.clone(), text, format!("{path}.{name}"))
                })
                .collect(),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let field = format!("{path}[{i}]");
                    let name = item["name"]
                        .as_str()
                        .ok_or_else(|| refuse(&field, "each argument needs a name".to_string()))?;
                    let text = item["value"].as_str().unwrap_or_default().to_string();
                    Ok((name.to_string(), text, field))
                })
                .collect::<Result<_, PatchError>>()?,
            _ => return Err(refuse(&path, "must be a map of flag to value".to_string())),
        };
        for (name, text, field) in args {
            match name.as_str() {
                "node-labels" => {
                    let labels = parse_node_labels(&text).map_err(|m| refuse(&field, m))?;
                    if let Some(out) = out.as_deref_mut() {
                        out.labels.extend(labels);
                    }
                }
                "register-with-taints" => {
                    let taints = parse_taints(&text).map_err(|m| refuse(&field, m))?;
                    if let Some(out) = out.as_deref_mut() {
                        out.taints.extend(taints);
                    }
                }
                other => {
                    return Err(refuse(
                        &field,
                        format!(
                            "{kind} kubelet flag --{other} is not supported by rind's kubelet; supported: node-labels, register-with-taints"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The label prefixes the kubelet lets a node set on itself (`--node-labels`), as
/// upstream's kubelet checks them at start: in the `kubernetes.io` / `k8s.io`
/// namespaces only these keys or the `kubelet.` / `node.` sub-namespaces.
const ALLOWED_KUBERNETES_LABELS: [&str; 11] = [
    "kubernetes.io/hostname",
    "kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
];

/// Refuses a node label the kubelet would refuse to register, as upstream's kubelet
/// does at start (it exits with "unknown 'kubernetes.io' or 'k8s.io' labels").
pub fn check_node_label(key: &str) -> Result<(), String> {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(format!("{key:?} is not a valid label key"));
    }
    let kube_namespace = ["kubernetes.io", "k8s.io"]
        .iter()
        .any(|ns| prefix == *ns || prefix.ends_with(&format!(".{ns}")));
    let allowed = ALLOWED_KUBERNETES_LABELS.contains(&key)
        || prefix.ends_with("kubelet.kubernetes.io")
        || prefix.ends_with("node.kubernetes.io");
    if kube_namespace && !allowed {
        return Err(format!(
            "{key:?} is in the kubernetes.io/k8s.io namespace, which a kubelet may not set on its node (upstream's kubelet refuses to start); use another prefix, or node-role via a label like node-role.example.com"
        ));
    }
    Ok(())
}

/// `--node-labels`: `k=v,k2=v2`.
fn parse_node_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("node-labels: {pair:?} is not key=value"))?;
        check_node_label(key).map_err(|m| format!("node-labels: {m}"))?;
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}

/// `--register-with-taints`: `key[=value]:Effect,…`.
fn parse_taints(text: &str) -> Result<Vec<RegisterTaint>, String> {
    let mut taints = Vec::new();
    for item in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key_value, effect) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("register-with-taints: {item:?} is not key[=value]:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!(
                "register-with-taints: {effect:?} is not a taint effect (NoSchedule, PreferNoSchedule, NoExecute)"
            ));
        }
        let (key, value) = match key_value.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (key_value, None),
        };
        if key.is_empty() {
            return Err(format!("register-with-taints: {item:?} has no key"));
        }
        taints.push(RegisterTaint {
            key: key.to_string(),
            value,
            effect: effect.to_string(),
        });
    }
    Ok(taints)
}

/// The document kind's JSON 6902 patches meet, with only the fields rind can honour:
/// operations on anything else fail to find their path and are refused.
fn base_document(kind: &str) -> Option<Value> {
    Some(match kind {
        "InitConfiguration" | "JoinConfiguration" => {
            serde_json::json!({"nodeRegistration": {"kubeletExtraArgs": {}}})
        }
        "ClusterConfiguration" => serde_json::json!({"apiServer": {"certSANs": []}}),
        "KubeletConfiguration" => serde_json::json!({"evictionHard": {}, "maxPods": 110}),
        _ => return None,
    })
}

/// Applies one `kubeadmConfigPatchesJSON6902` entry (`{group, version, kind, patch}`).
pub fn apply_json6902(
    entry: &Value,
    boot: NodeBoot,
    out: &mut Applied,
) -> Result<bool, PatchError> {
    let Value::Object(map) = entry else {
        return Err(PatchError {
            field: None,
            message: "must be a mapping with group, version, kind and patch".to_string(),
        });
    };
    for key in map.keys() {
        if !matches!(key.as_str(), "group" | "version" | "kind" | "patch") {
            return Err(refuse(
                key,
                format!("unknown field {key:?} (expected group, version, kind, patch)"),
            ));
        }
    }
    let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
    let kind = text("kind");
    let mut doc = base_document(kind).ok_or_else(|| {
        refuse(
            "kind",
            format!(
                "{kind:?} is not a document rind can patch (InitConfiguration, JoinConfiguration, ClusterConfiguration, KubeletConfiguration)"
            ),
        )
    })?;
    let api_version = format!("{}/{}", text("group"), text("version"));
    check_api_version(kind, &api_version).map_err(|m| refuse("group", m))?;
    let ops_text = text("patch");
    let ops: Vec<Value> = rind_runtime::yaml::from_str(ops_text).map_err(|err| {
        refuse(
            "patch",
            format!("not a list of JSON patch operations: {err}"),
        )
    })?;
    for (i, op) in ops.iter().enumerate() {
        let parsed: json_patch::PatchOperation =
            serde_json::from_value(op.clone()).map_err(|err| {
                refuse(
                    "patch",
                    format!("operation {i} is not a JSON patch operation: {err}"),
                )
            })?;
        let path = op["path"].as_str().unwrap_or_default();
        let name = op["op"].as_str().unwrap_or_default();
        json_patch::patch(&mut doc, &[parsed]).map_err(|err| {
            refuse(
                "patch",
                format!(
                    "{kind} operation {i} ({name} {path}): {err}; rind supports only {}",
                    supported_fields(kind)
                ),
            )
        })?;
    }
    // The patched document is read as a merge patch would be: anything the operations
    // added outside the supported fields is refused there.
    apply_document(kind, &doc, boot, out).map_err(|err| PatchError {
        field: Some("patch".to_string()),
        message: err.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_taints_through_kubelet_extra_args() {
        let mut out = Applied::default();
        let matched = apply_merge(
            "kind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    node-labels: \"a=1,b.example.com/c=2\"\n    register-with-taints: \"my-taint=presence:NoSchedule,other:NoExecute\"\n",
            NodeBoot::Join,
            &mut out,
        )
        .unwrap();
        assert!(matched);
        assert_eq!(out.labels["a"], "1");
        assert_eq!(out.labels["b.example.com/c"], "2");
        assert_eq!(
            out.taints,
            [
                RegisterTaint {
                    key: "my-taint".into(),
                    value: Some("presence".into()),
                    effect: "NoSchedule".into()
                },
                RegisterTaint {
                    key: "other".into(),
                    value: None,
                    effect: "NoExecute".into()
                }
            ]
        );
        // An InitConfiguration patch does not touch a joining node (kubeadm's documents).
        let mut join = Applied::default();
        let matched = apply_merge(
            "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    node-labels: x=y\n",
            NodeBoot::Join,
            &mut join,
        )
        .unwrap();
        assert!(!matched);
        assert!(join.labels.is_empty());
    }

    #[test]
    fn v1beta4_argument_list() {
        let mut out = Applied::default();
        apply_merge(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n  - name: node-labels\n    value: ingress-ready=true\n",
            NodeBoot::Init,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.labels["ingress-ready"], "true");
    }

    #[test]
    fn unsupported_fields_are_named() {
        let text = "kind: ClusterConfiguration\napiServer:\n  extraArgs:\n    enable-admission-plugins: NodeRestriction\n";
        let err = apply_merge(text, NodeBoot::Init, &mut Applied::default()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("apiServer.extraArgs"));
        assert!(
            err.message
                .contains("ClusterConfiguration field apiServer.extraArgs"),
            "{}",
            err.message
        );
        assert_eq!(line_in_patch(text, "apiServer.extraArgs"), Some(3));
        let err = apply_merge(
            "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    max-pods: \"5\"\n",
            NodeBoot::Init,
            &mut Applied::default(),
        )
        .unwrap_err();
        assert!(err.message.contains("--max-pods"), "{}", err.message);
        let err = apply_merge(
            "kind: KubeletConfiguration\nevictionHard:\n  memory.available: 100Mi\n",
            NodeBoot::Init,
            &mut Applied::default(),
        )
        .unwrap_err();
        assert!(err.message.contains("memory.available"), "{}", err.message);
        let err = apply_merge(
            "kind: KubeProxyConfiguration\nmode: ipvs\n",
            NodeBoot::Init,
            &mut Applied::default(),
        )
        .unwrap_err();
        assert!(
            err.message.contains("KubeProxyConfiguration"),
            "{}",
            err.message
        );
        let err = apply_merge(
            "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    node-labels: node-role.kubernetes.io/ingress=true\n",
            NodeBoot::Init,
            &mut Applied::default(),
        )
        .unwrap_err();
        assert!(
            err.message.contains("node-role.kubernetes.io/ingress"),
            "{}",
            err.message
        );
    }

    #[test]
    fn kind_eviction_setting_and_cert_sans() {
        let mut out = Applied::default();
        apply_merge(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionHard:\n  nodefs.available: \"0%\"\n",
            NodeBoot::Join,
            &mut out,
        )
        .unwrap();
        apply_merge(
            "kind: ClusterConfiguration\napiServer:\n  certSANs: [my-host, 10.1.2.3]\n",
            NodeBoot::Init,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.cert_sans, ["my-host", "10.1.2.3"]);
        apply_merge(
            "kind: KubeletConfiguration\nmaxPods: 20\n",
            NodeBoot::Join,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.max_pods, Some(20));
        let err = apply_merge(
            "kind: KubeletConfiguration\nmaxPods: -1\n",
            NodeBoot::Join,
            &mut out,
        )
        .unwrap_err();
        assert!(err.message.contains("maxPods"), "{}", err.message);
    }

    #[test]
    fn json6902_on_supported_and_unsupported_paths() {
        let entry: Value = serde_json::json!({
            "group": "kubeadm.k8s.io", "version": "v1beta3", "kind": "ClusterConfiguration",
            "patch": "- op: add\n  path: /apiServer/certSANs/-\n  value: my-hostname\n"
        });
        let mut out = Applied::default();
        apply_json6902(&entry, NodeBoot::Init, &mut out).unwrap();
        assert_eq!(out.cert_sans, ["my-hostname"]);
        let entry: Value = serde_json::json!({
            "group": "kubeadm.k8s.io", "version": "v1beta3", "kind": "ClusterConfiguration",
            "patch": "- op: add\n  path: /apiServer/extraArgs/v\n  value: \"4\"\n"
        });
        let err = apply_json6902(&entry, NodeBoot::Init, &mut Applied::default()).unwrap_err();
        assert!(
            err.message.contains("add /apiServer/extraArgs/v"),
            "{}",
            err.message
        );
        let entry: Value = serde_json::json!({
            "group": "kubeadm.k8s.io", "version": "v1beta3", "kind": "ClusterConfiguration",
            "patch": "- op: add\n  path: /apiServer/extraArgs\n  value: {v: \"4\"}\n"
        });
        let err = apply_json6902(&entry, NodeBoot::Init, &mut Applied::default()).unwrap_err();
        assert!(
            err.message.contains("apiServer.extraArgs"),
            "{}",
            err.message
        );
    }
}
