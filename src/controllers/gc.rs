//! The garbage collector: a graph of every object's ownerReferences, kept from metadata
//! watches of every listable resource the server serves, and three rules upstream's
//! collector follows:
//! - Background: a dependent whose owners are all gone is deleted (one whose owners are
//!   only partly gone loses the dangling references);
//! - Foreground: an owner held by the `foregroundDeletion` finalizer gets its dependents
//!   deleted, and loses the finalizer once no dependent with `blockOwnerDeletion` is left;
//! - Orphan: an owner held by the `orphan` finalizer has its reference stripped from
//!   every dependent, then loses the finalizer.

use super::ControllerError;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use kube::runtime::watcher::{self, watcher};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
/// Even without changes the graph is looked at this often (a failed write is retried).
const RESCAN: Duration = Duration::from_secs(5);

/// One object in the graph.
#[derive(Clone, Debug)]
struct Node {
    resource: usize,
    namespace: Option<String>,
    name: String,
    resource_version: Option<String>,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// Per resource: the uids a relist is collecting, and whether its first list is in.
    relisting: HashMap<usize, HashSet<String>>,
    synced: HashSet<usize>,
}

struct Collector {
    client: Client,
    resources: Vec<(ApiResource, ApiCapabilities)>,
    graph: Arc<Mutex<Graph>>,
}

/// Resources the collector follows: everything that can be listed, watched and deleted,
/// except events (never owners, never owned, and by far the most numerous).
fn followed(discovery: &Discovery) -> Vec<(ApiResource, ApiCapabilities)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let ops = [verbs::LIST, verbs::WATCH, verbs::DELETE, verbs::PATCH];
            if ar.kind == "Event"
                || !ops.iter().all(|op| caps.supports_operation(op))
                || !seen.insert((ar.group.clone(), ar.kind.clone()))
            {
                continue;
            }
            out.push((ar, caps));
        }
    }
    out
}

pub async fn run(client: Client) -> Result<(), ControllerError> {
    // The API server may still be starting (the controller-manager starts beside it).
    let discovery = loop {
        match Discovery::new(client.clone()).run().await {
            Ok(discovery) => break discovery,
            Err(e) => {
                tracing::info!("gc: waiting for API discovery: {e}");
                tokio::time::sleep(RESCAN).await;
            }
        }
    };
    let collector = Arc::new(Collector {
        resources: followed(&discovery),
        client,
        graph: Arc::default(),
    });
    let wake = Arc::new(Notify::new());
    let mut watches = Vec::new();
    for index in 0..collector.resources.len() {
        watches.push(tokio::spawn(collector.clone().follow(index, wake.clone())));
    }
    let total = collector.resources.len();
    loop {
        let synced = collector.lock().synced.len() == total;
        if synced {
            collector.scan().await;
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(RESCAN) => {}
        }
    }
}

impl Collector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn api(&self, resource: usize, namespace: Option<&str>) -> Api<DynamicObject> {
        let (ar, caps) = &self.resources[resource];
        match (namespace, &caps.scope) {
            (Some(ns), Scope::Namespaced) => Api::namespaced_with(self.client.clone(), ns, ar),
            _ => Api::all_with(self.client.clone(), ar),
        }
    }

    /// Keeps the graph's share of one resource up to date from a metadata watch.
    async fn follow(self: Arc<Self>, resource: usize, wake: Arc<Notify>) {
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &self.resources[resource].0);
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::debug!(kind = %self.resources[resource].0.kind, "gc watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            {
                let mut graph = self.lock();
                match event {
                    watcher::Event::Init => {
                        graph.relisting.insert(resource, HashSet::new());
                    }
                    watcher::Event::InitApply(meta) => {
                        if let Some(uid) = insert(&mut graph, resource, &meta)
                            && let Some(seen) = graph.relisting.get_mut(&resource)
                        {
                            seen.insert(uid);
                        }
                    }
                    watcher::Event::InitDone => {
                        let seen = graph.relisting.remove(&resource).unwrap_or_default();
                        graph
                            .nodes
                            .retain(|uid, n| n.resource != resource || seen.contains(uid));
                        graph.synced.insert(resource);
                    }
                    watcher::Event::Apply(meta) => {
                        insert(&mut graph, resource, &meta);
                    }
                    watcher::Event::Delete(meta) => {
                        if let Some(uid) = &meta.metadata.uid {
                            graph.nodes.remove(uid);
                        }
                    }
                }
            }
            wake.notify_one();
        }
    }

    /// One pass of the three rules over the whole graph.
    async fn scan(&self) {
        let nodes = self.lock().nodes.clone();
        let mut dependents: HashMap<&str, Vec<(&str, &Node)>> = HashMap::new();
        for (uid, node) in &nodes {
            for owner in &node.owners {
                dependents
                    .entry(owner.uid.as_str())
                    .or_default()
                    .push((uid, node));
            }
        }
        for (uid, node) in &nodes {
            let deps = dependents
                .get(uid.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let result = if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
                self.orphan(uid, node, deps).await
            } else if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
                self.foreground(uid, node, deps, &dependents).await
            } else {
                Ok(())
            };
            if let Err(e) = result {
                tracing::debug!(object = %node.name, "gc: {e}");
            }
        }
        for (uid, node) in &nodes {
            if node.owners.is_empty() || node.deleting {
                continue;
            }
            if let Err(e) = self.check_owners(uid, node, &nodes).await {
                tracing::debug!(object = %node.name, "gc: {e}");
            }
        }
    }

    /// Strips the owner's reference from each dependent, then lets the owner go.
    async fn orphan(
        &self,
        uid: &str,
        owner: &Node,
        deps: &[(&str, &Node)],
    ) -> Result<(), kube::Error> {
        for (_, dep) in deps {
            let kept: Vec<&OwnerReference> = dep.owners.iter().filter(|r| r.uid != uid).collect();
            self.write_owners(dep, &kept).await?;
        }
        self.drop_finalizer(owner, ORPHAN).await
    }

    /// Deletes every dependent; lets the owner go once no blocking dependent is left.
    async fn foreground(
        &self,
        uid: &str,
        owner: &Node,
        deps: &[(&str, &Node)],
        dependents: &HashMap<&str, Vec<(&str, &Node)>>,
    ) -> Result<(), kube::Error> {
        for (dep_uid, dep) in deps {
            if !dep.deleting {
                // A dependent with dependents of its own goes in the foreground too, so
                // the whole chain is gone before the owner.
                let policy = if dependents.contains_key(dep_uid) {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                };
                self.delete(dep_uid, dep, policy).await?;
            }
        }
        let blocked = deps.iter().any(|(_, dep)| {
            dep.owners
                .iter()
                .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
        });
        if blocked {
            return Ok(());
        }
        self.drop_finalizer(owner, FOREGROUND).await
    }

    /// Deletes a dependent whose owners are all gone; drops references to the gone
    /// ones when some remain.
    async fn check_owners(
        &self,
        uid: &str,
        node: &Node,
        nodes: &HashMap<String, Node>,
    ) -> Result<(), kube::Error> {
        let mut gone = Vec::new();
        for owner in &node.owners {
            if !nodes.contains_key(&owner.uid) && !self.owner_exists(node, owner).await? {
                gone.push(owner.uid.clone());
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        if gone.len() == node.owners.len() {
            return self.delete(uid, node, PropagationPolicy::Background).await;
        }
        let kept: Vec<&OwnerReference> = node
            .owners
            .iter()
            .filter(|r| !gone.contains(&r.uid))
            .collect();
        self.write_owners(node, &kept).await
    }

    /// Asks the server whether an owner the graph lacks exists: the graph may just be
    /// behind a freshly created owner. Unknown kinds count as existing (never delete on
    /// a guess).
    async fn owner_exists(&self, node: &Node, owner: &OwnerReference) -> Result<bool, kube::Error> {
        // Any served version of the owner's group and kind shows the same objects.
        let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
        let Some(index) = self
            .resources
            .iter()
            .position(|(ar, _)| ar.group == group && ar.kind == owner.kind)
        else {
            return Ok(true);
        };
        let api = self.api(index, node.namespace.as_deref());
        match api.get_metadata_opt(&owner.name).await? {
            Some(found) => Ok(found.metadata.uid.as_deref() == Some(owner.uid.as_str())),
            None => Ok(false),
        }
    }

    async fn delete(
        &self,
        uid: &str,
        node: &Node,
        policy: PropagationPolicy,
    ) -> Result<(), kube::Error> {
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self
            .api(node.resource, node.namespace.as_deref())
            .delete(&node.name, &params)
            .await
        {
            Ok(_) => Ok(()),
            // Gone already, or replaced by a new object of the same name: nothing to do.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn write_owners(&self, node: &Node, refs: &[&OwnerReference]) -> Result<(), kube::Error> {
        let patch = serde_json::json!({
            "metadata": {"ownerReferences": refs, "resourceVersion": node.resource_version}
        });
        self.patch(node, &patch).await
    }

    async fn drop_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), kube::Error> {
        let kept: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch = serde_json::json!({
            "metadata": {"finalizers": kept, "resourceVersion": node.resource_version}
        });
        self.patch(node, &patch).await
    }

    async fn patch(&self, node: &Node, patch: &serde_json::Value) -> Result<(), kube::Error> {
        match self
            .api(node.resource, node.namespace.as_deref())
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            // Stale graph (the next pass sees the current object) or already gone.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Puts an object's metadata into the graph; its uid if it has one.
fn insert(
    graph: &mut Graph,
    resource: usize,
    meta: &PartialObjectMeta<DynamicObject>,
) -> Option<String> {
    let m = &meta.metadata;
    let uid = m.uid.clone()?;
    graph.nodes.insert(
        uid.clone(),
        Node {
            resource,
            namespace: m.namespace.clone(),
            name: m.name.clone().unwrap_or_default(),
            resource_version: m.resource_version.clone(),
            owners: m.owner_references.clone().unwrap_or_default(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
        },
    );
    Some(uid)
}
