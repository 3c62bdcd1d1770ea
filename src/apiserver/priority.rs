//! The Priority admission plugin: a new pod's `priority` and `preemptionPolicy` come
//! from the PriorityClass it names, or from the global default class when it names
//! none (0 and `PreemptLowerPriority` when there is no default). A pod naming a class
//! that does not exist, or giving a priority its class does not, is refused (403), as
//! upstream refuses it; so is a second class marked `globalDefault`. Pod creates read
//! classes from a mirror, so they cost no store read; a class the mirror has not seen
//! yet is asked of the store.

use super::Server;
use super::handlers::decode;
use rind_api::meta::{self, child_mut};
use rind_api::registry::Resource;
use rind_api::status::ApiError;
use serde::Deserialize;
use serde_json::{Value, json};

/// Where PriorityClasses are stored (`Resource::key_prefix` of scheduling.k8s.io/v1).
pub const PRIORITY_CLASSES: &str = "/registry/priorityclasses/";

/// The policy of a class (and a pod) that says nothing.
const DEFAULT_PREEMPTION: &str = "PreemptLowerPriority";

/// What admission needs of a PriorityClass, as the server's mirror keeps it.
#[derive(Deserialize)]
pub struct ClassState {
    #[serde(default)]
    metadata: ClassMeta,
    #[serde(default)]
    value: i64,
    #[serde(default, rename = "globalDefault")]
    global_default: bool,
    #[serde(rename = "preemptionPolicy")]
    preemption_policy: Option<String>,
}

#[derive(Deserialize, Default)]
struct ClassMeta {
    #[serde(default)]
    name: String,
}

impl ClassState {
    fn preemption(&self) -> &str {
        self.preemption_policy
            .as_deref()
            .unwrap_or(DEFAULT_PREEMPTION)
    }
}

/// A new pod's priority as the plugin computed it.
pub struct Resolved {
    /// The default class's name, for a pod that named none.
    default_class: Option<String>,
    priority: i64,
    preemption: String,
}

impl Resolved {
    /// Writes the computed fields into the pod. Upstream's plugin runs after the field
    /// manager, so call this after `managedFields` are recorded: these are no one's.
    pub fn apply(&self, pod: &mut Value) {
        let Some(root) = pod.as_object_mut() else {
            return;
        };
        let spec = child_mut(root, "spec");
        if let Some(class) = &self.default_class {
            spec.insert("priorityClassName".into(), json!(class));
        }
        spec.insert("priority".into(), json!(self.priority));
        spec.insert("preemptionPolicy".into(), json!(self.preemption));
    }
}

/// The priority `pod` (about to be created) gets, or upstream's refusal.
pub async fn resolve(server: &Server, pod: &Value) -> Result<Resolved, ApiError> {
    let spec = pod.get("spec");
    let named = spec
        .and_then(|s| s.get("priorityClassName"))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty());
    let forbidden = |why: String| ApiError::forbidden("pods", "", meta::name(pod), &why);
    let resolved = match named {
        Some(name) => {
            let class = class(server, name)
                .await?
                .ok_or_else(|| forbidden(format!("no PriorityClass with name {name} was found")))?;
            Resolved {
                default_class: None,
                priority: class.value,
                preemption: class.preemption().to_string(),
            }
        }
        None => match default_class(server) {
            Some(class) => Resolved {
                default_class: Some(class.metadata.name.clone()),
                priority: class.value,
                preemption: class.preemption().to_string(),
            },
            None => Resolved {
                default_class: None,
                priority: 0,
                preemption: DEFAULT_PREEMPTION.to_string(),
            },
        },
    };
    if let Some(given) = spec.and_then(|s| s.get("priority")).and_then(Value::as_i64)
        && given != resolved.priority
    {
        return Err(forbidden(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
            resolved.priority
        )));
    }
    if let Some(given) = spec
        .and_then(|s| s.get("preemptionPolicy"))
        .and_then(Value::as_str)
        && given != resolved.preemption
    {
        return Err(forbidden(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
            resolved.preemption
        )));
    }
    Ok(resolved)
}

/// The class called `name`: from the mirror, or (one created a moment ago that the
/// mirror has not seen yet) from the store.
async fn class(
    server: &Server,
    name: &str,
) -> Result<Option<std::sync::Arc<ClassState>>, ApiError> {
    let key = format!("{PRIORITY_CLASSES}{name}");
    if let Some(class) = server.priority_classes.get(&key) {
        return Ok(Some(class));
    }
    let found = server
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::internal(format!("reading PriorityClass {name}: {e}")))?;
    let Some(kv) = found else {
        return Ok(None);
    };
    let class = serde_json::from_value(decode(&kv)?)
        .map_err(|e| ApiError::internal(format!("PriorityClass {name} does not decode: {e}")))?;
    Ok(Some(std::sync::Arc::new(class)))
}

/// The global default class; if a race let several be marked so, the one with the
/// lowest value (as upstream picks).
fn default_class(server: &Server) -> Option<std::sync::Arc<ClassState>> {
    server
        .priority_classes
        .all()
        .into_iter()
        .filter(|class| class.global_default)
        .min_by_key(|class| class.value)
}

/// Refuses to make `class` (being created or updated) a second global default, with
/// upstream's message. Reads the store, not the mirror: class writes are rare, and a
/// default created a moment ago must count.
pub async fn check_single_default(
    server: &Server,
    resource: &Resource,
    class: &Value,
) -> Result<(), ApiError> {
    if class.get("globalDefault").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let name = meta::name(class);
    let page = server
        .store
        .list(PRIORITY_CLASSES, None, 0, None)
        .await
        .map_err(|e| ApiError::internal(format!("listing PriorityClasses: {e}")))?;
    let mut other = None;
    for kv in &page.items {
        let stored: ClassState = serde_json::from_value(decode(kv)?)
            .map_err(|e| ApiError::internal(format!("{} does not decode: {e}", kv.key)))?;
        if stored.global_default && stored.metadata.name != name {
            other = Some(stored.metadata.name);
            break;
        }
    }
    match other {
        Some(other) => Err(ApiError::forbidden(
            resource.plural,
            resource.group,
            name,
            &format!(
                "PriorityClass {other} is already marked as default. Only one default can exist"
            ),
        )),
        None => Ok(()),
    }
}
