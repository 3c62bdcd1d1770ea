//! The Services, ReplicationControllers, ReplicaSets and StatefulSets that select a
//! pod: upstream's PodTopologySpread spreads a pod without constraints of its own over
//! the pods those same objects select (its "system default" constraints), so the
//! scheduler keeps reflectors of the four kinds.

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::runtime::reflector::Store;
use rind_api::object_selector::{Labels, label_selector_is_empty, label_selector_matches};
use rind_runtime::reflect::reflect;
use std::collections::BTreeMap;

/// The reflectors; the watches end with the tasks `start` returns.
pub struct Owners {
    services: Store<Service>,
    controllers: Store<ReplicationController>,
    replica_sets: Store<ReplicaSet>,
    stateful_sets: Store<StatefulSet>,
}

impl Owners {
    /// Starts the four reflectors and waits for their first lists.
    pub async fn start(
        client: &kube::Client,
    ) -> anyhow::Result<(Owners, [tokio::task::JoinHandle<()>; 4])> {
        let (services, t1) = reflect(Api::all(client.clone()), "service");
        let (controllers, t2) = reflect(Api::all(client.clone()), "replication controller");
        let (replica_sets, t3) = reflect(Api::all(client.clone()), "replica set");
        let (stateful_sets, t4) = reflect(Api::all(client.clone()), "stateful set");
        let tasks = [t1, t2, t3, t4];
        let owners = Owners {
            services,
            controllers,
            replica_sets,
            stateful_sets,
        };
        for (ready, what) in [
            (owners.services.wait_until_ready().await, "service"),
            (
                owners.controllers.wait_until_ready().await,
                "replication controller",
            ),
            (owners.replica_sets.wait_until_ready().await, "replica set"),
            (
                owners.stateful_sets.wait_until_ready().await,
                "stateful set",
            ),
        ] {
            if ready.is_err() {
                for task in &tasks {
                    task.abort();
                }
                anyhow::bail!("the {what} watch ended before its first list");
            }
        }
        Ok((owners, tasks))
    }

    /// The selector the system default constraints count pods with (see
    /// `default_selector`).
    pub fn default_selector(&self, pod: &Pod) -> Vec<LabelSelector> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let in_namespace = |ns: Option<&str>| ns.unwrap_or("default") == namespace;
        let services = self.services.state();
        let controllers = self.controllers.state();
        let replica_sets = self.replica_sets.state();
        let stateful_sets = self.stateful_sets.state();
        default_selector(
            pod.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
            services
                .iter()
                .filter(|s| in_namespace(s.metadata.namespace.as_deref()))
                .map(|s| s.spec.as_ref().and_then(|s| s.selector.as_ref())),
            controllers
                .iter()
                .filter(|c| in_namespace(c.metadata.namespace.as_deref()))
                .map(|c| c.spec.as_ref().and_then(|s| s.selector.as_ref())),
            replica_sets
                .iter()
                .filter(|r| in_namespace(r.metadata.namespace.as_deref()))
                .map(|r| Some(&r.spec.selector))
                .chain(
                    stateful_sets
                        .iter()
                        .filter(|s| in_namespace(s.metadata.namespace.as_deref()))
                        .map(|s| Some(&s.spec.selector)),
                ),
        )
    }
}

/// Upstream's helper.DefaultSelector, over the objects of the pod's namespace: the
/// selectors of the Services and ReplicationControllers that select the pod merged into
/// one set of labels, and the selectors of the ReplicaSets and StatefulSets that select
/// it added as further requirements. Every returned selector must match (they are
/// ANDed); an empty result is upstream's empty selector: no default spreading.
///
/// A Service without a selector selects nothing; a controller whose selector is empty
/// selects nothing rather than everything (both as upstream's listers).
pub fn default_selector<'a>(
    pod_labels: &Labels,
    services: impl Iterator<Item = Option<&'a BTreeMap<String, String>>>,
    controllers: impl Iterator<Item = Option<&'a BTreeMap<String, String>>>,
    workloads: impl Iterator<Item = Option<&'a LabelSelector>>,
) -> Vec<LabelSelector> {
    let selects = |set: &BTreeMap<String, String>| {
        set.iter()
            .all(|(k, v)| pod_labels.get(k).is_some_and(|p| p == v))
    };
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for set in services.flatten().filter(|s| selects(s)) {
        merged.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for set in controllers
        .flatten()
        .filter(|s| !s.is_empty() && selects(s))
    {
        merged.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut out = Vec::new();
    if !merged.is_empty() {
        out.push(LabelSelector {
            match_labels: Some(merged),
            ..LabelSelector::default()
        });
    }
    for selector in workloads.flatten() {
        if !label_selector_is_empty(selector) && label_selector_matches(selector, Some(pod_labels))
        {
            out.push(selector.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn services_and_controllers_merge_workloads_add_requirements() {
        let pod = set(&[
            ("app", "web"),
            ("tier", "front"),
            ("pod-template-hash", "x"),
        ]);
        let svc = set(&[("app", "web")]);
        let other_svc = set(&[("app", "db")]);
        let rc = set(&[("tier", "front")]);
        let rs = LabelSelector {
            match_labels: Some(set(&[("app", "web"), ("pod-template-hash", "x")])),
            ..LabelSelector::default()
        };
        let ss = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["back".into()]),
            }]),
            ..LabelSelector::default()
        };
        let got = default_selector(
            &pod,
            [Some(&svc), Some(&other_svc), None].into_iter(),
            [Some(&rc)].into_iter(),
            [Some(&rs), Some(&ss)].into_iter(),
        );
        // The db Service and the StatefulSet do not select the pod.
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].match_labels,
            Some(set(&[("app", "web"), ("tier", "front")]))
        );
        assert_eq!(got[1], rs);
    }

    #[test]
    fn empty_selectors_select_nothing_and_give_no_default() {
        let pod = set(&[("app", "web")]);
        let empty = BTreeMap::new();
        let empty_ls = LabelSelector::default();
        // An empty Service selector adds no labels; an empty controller or workload
        // selector is skipped: nothing to spread by.
        let got = default_selector(
            &pod,
            [Some(&empty)].into_iter(),
            [Some(&empty)].into_iter(),
            [Some(&empty_ls)].into_iter(),
        );
        assert!(got.is_empty());
    }
}
