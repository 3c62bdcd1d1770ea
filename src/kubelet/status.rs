//! Computes a pod's API status from what the runtime shows, the way the kubelet's
//! status manager does: phase from the containers' states and the restart policy,
//! the standard conditions, IPs and one status per container.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The sandbox as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxView {
    pub ready: bool,
    pub ip: Option<String>,
    /// The sandbox's addresses of its other family in a dual-stack cluster (CRI's
    /// `additional_ips`), which follow `ip` in `status.podIPs`.
    pub additional_ips: Vec<String>,
}

/// A container instance the runtime ran (or runs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub image_id: String,
    pub started_at: Option<Timestamp>,
    /// Set once the instance has exited.
    pub exit: Option<Exit>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub finished_at: Option<Timestamp>,
    /// The runtime's reason (e.g. `OOMKilled`); empty means derive from the code.
    pub reason: String,
    pub message: String,
}

/// What the kubelet knows about one container of the pod spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub restart_count: i32,
    /// The newest instance, if any was created.
    pub current: Option<Instance>,
    /// The instance before it, for `lastState`.
    pub previous: Option<Instance>,
    /// Why the container is not running now although it should (image problem,
    /// restart back-off); overrides a terminated `current` in the reported state.
    pub waiting: Option<Waiting>,
    /// What the readiness probe says of the running instance (true without one).
    pub ready: bool,
    /// Whether the startup probe passed (true without one).
    pub started: bool,
    /// An init container with `restartPolicy: Always`: a sidecar.
    pub sidecar: bool,
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

impl ContainerView {
    /// Running and started (its startup probe, if any, passed).
    fn running_and_started(&self) -> bool {
        self.waiting.is_none()
            && self.started
            && self.current.as_ref().is_some_and(|i| i.exit.is_none())
    }

    /// What lets the next init container start: success for an ordinary one, having
    /// started for a sidecar.
    pub fn initialized(&self) -> bool {
        if self.sidecar {
            self.running_and_started()
        } else {
            self.succeeded()
        }
    }

    /// Ran to a successful end (what an init container must do).
    pub fn succeeded(&self) -> bool {
        self.waiting.is_none()
            && self
                .current
                .as_ref()
                .and_then(|i| i.exit.as_ref())
                .is_some_and(|e| e.code == 0)
    }

    /// Ended in failure and will not be retried.
    fn failed_for_good(&self) -> bool {
        !self.sidecar
            && self.waiting.is_none()
            && self
                .current
                .as_ref()
                .and_then(|i| i.exit.as_ref())
                .is_some_and(|e| e.code != 0)
    }
}

/// A container that waits for something before it may start (e.g. the init
/// containers before it: `PodInitializing`).
pub fn not_started(container: &Container, reason: &str) -> ContainerView {
    ContainerView {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        restart_count: 0,
        current: None,
        previous: None,
        waiting: Some(Waiting {
            reason: reason.to_string(),
            message: String::new(),
        }),
        ready: false,
        started: false,
        sidecar: false,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

fn ts(t: Option<Timestamp>) -> Option<Time> {
    t.map(Time)
}

fn terminated(inst: &Instance, exit: &Exit) -> ContainerState {
    let reason = if !exit.reason.is_empty() {
        exit.reason.clone()
    } else if exit.code == 0 {
        "Completed".to_string()
    } else {
        "Error".to_string()
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("containerd://{}", inst.id)),
            exit_code: exit.code,
            reason: Some(reason),
            message: (!exit.message.is_empty()).then(|| exit.message.clone()),
            started_at: ts(inst.started_at),
            finished_at: ts(exit.finished_at),
            signal: None,
        }),
        ..ContainerState::default()
    }
}

fn container_status(view: &ContainerView) -> ContainerStatus {
    let state = match (&view.waiting, &view.current) {
        (Some(w), _) => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(w.reason.clone()),
                message: (!w.message.is_empty()).then(|| w.message.clone()),
            }),
            ..ContainerState::default()
        },
        (None, Some(inst)) => match &inst.exit {
            Some(exit) => terminated(inst, exit),
            None => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: ts(inst.started_at),
                }),
                ..ContainerState::default()
            },
        },
        (None, None) => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..ContainerState::default()
        },
    };
    // While waiting to restart, the instance that just exited is the last state.
    let last = if view.waiting.is_some() {
        view.current.as_ref().or(view.previous.as_ref())
    } else {
        view.previous.as_ref()
    };
    let last_state = last.and_then(|inst| inst.exit.as_ref().map(|exit| terminated(inst, exit)));
    let running = state.running.is_some();
    let shown = if view.waiting.is_some() {
        None
    } else {
        view.current.as_ref()
    };
    ContainerStatus {
        name: view.name.clone(),
        image: view.image.clone(),
        // Python's client requires imageID; it stays empty only before any instance ran.
        image_id: view
            .current
            .as_ref()
            .map(|i| i.image_id.clone())
            .unwrap_or_default(),
        container_id: shown
            .or(last)
            .map(|inst| format!("containerd://{}", inst.id)),
        ready: running && view.ready && view.started,
        started: Some(running && view.started),
        restart_count: view.restart_count,
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..ContainerStatus::default()
    }
}

/// The statuses of containers that report as app containers do (ephemeral ones).
pub fn statuses(views: &[ContainerView]) -> Vec<ContainerStatus> {
    views.iter().map(container_status).collect()
}

/// An init container is ready once it has run to success; a sidecar as an app
/// container is, by its readiness.
fn init_container_status(view: &ContainerView) -> ContainerStatus {
    if view.sidecar {
        return container_status(view);
    }
    ContainerStatus {
        ready: view.succeeded(),
        ..container_status(view)
    }
}

/// The phase the kubelet derives (kubelet `getPhase`): waiting containers keep the
/// pod Pending; anything running makes it Running; when all have stopped, the
/// restart policy decides whether it is finished.
pub fn phase(restart_policy: &str, views: &[ContainerView]) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut failed) = (0, 0, 0, 0);
    for view in views {
        let current_exit = view.current.as_ref().and_then(|i| i.exit.as_ref());
        match (&view.waiting, &view.current, current_exit) {
            (Some(_), _, _) if view.current.is_some() || view.previous.is_some() => {
                // Waiting to restart after a termination counts as stopped.
                stopped += 1;
                let exit = current_exit.or(view.previous.as_ref().and_then(|p| p.exit.as_ref()));
                if exit.is_some_and(|e| e.code != 0) {
                    failed += 1;
                }
            }
            (Some(_), _, _) | (None, None, _) => waiting += 1,
            (None, Some(_), None) => running += 1,
            (None, Some(_), Some(exit)) => {
                stopped += 1;
                if exit.code != 0 {
                    failed += 1;
                }
            }
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == 0 {
        return "Pending";
    }
    match restart_policy {
        "Never" if failed > 0 => "Failed",
        "Never" => "Succeeded",
        "OnFailure" if failed > 0 => "Running",
        "OnFailure" => "Succeeded",
        _ => "Running",
    }
}

/// The pod's QoS class, as the API server computes it at creation (one computation
/// for both, so the kubelet's never disagrees with `status.qosClass`): Guaranteed
/// when every container, init containers included, limits cpu and memory with
/// requests equal to the limits, BestEffort when nothing is requested or limited,
/// Burstable otherwise.
pub fn qos_class(pod: &Pod) -> &'static str {
    match serde_json::to_value(&pod.spec) {
        Ok(serde_json::Value::Object(spec)) => rind_api::pods::qos_class(&spec),
        _ => "BestEffort",
    }
}

fn condition(
    old: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    now: Timestamp,
) -> PodCondition {
    condition_with(old, type_, ok, reason, None, now)
}

fn condition_with(
    old: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the status flips.
    let since = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(since),
        ..PodCondition::default()
    }
}

/// Upstream's message for containers that are not ready: their names as Go prints
/// a string slice.
fn unready_message(statuses: &[ContainerStatus]) -> Option<String> {
    let names: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    (!names.is_empty()).then(|| format!("containers with unready status: [{}]", names.join(" ")))
}

/// Why the pod's readiness gates hold it back (upstream's words), if they do: each
/// gate's condition, set by some controller, must be True.
fn gates_problem(pod: &Pod, conditions: &[PodCondition]) -> Option<String> {
    let gates = pod.spec.as_ref()?.readiness_gates.as_ref()?;
    let mut problems = Vec::new();
    for gate in gates {
        let found = conditions.iter().find(|c| c.type_ == gate.condition_type);
        match found {
            None => problems.push(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => problems.push(format!(
                "the status of pod readiness gate {:?} is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    (!problems.is_empty()).then(|| problems.join(", "))
}

/// Replaces the Ready and ContainersReady conditions in `conditions` with false ones.
fn set_not_ready(
    conditions: &mut Vec<PodCondition>,
    reason: &str,
    message: Option<String>,
    now: Timestamp,
) {
    let old = conditions.clone();
    for type_ in ["Ready", "ContainersReady"] {
        let new = condition_with(&old, type_, false, Some(reason), message.clone(), now);
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => *c = new,
            None => conditions.push(new),
        }
    }
}

/// The status of a pod whose deletion began: no container counts as ready any more,
/// so the pod leaves its Services' endpoints before its containers get the signal.
pub fn terminating(pod: &Pod, now: Timestamp) -> PodStatus {
    let mut status = pod.status.clone().unwrap_or_default();
    let mut statuses = status.container_statuses.clone().unwrap_or_default();
    for s in &mut statuses {
        s.ready = false;
    }
    let mut conditions = status.conditions.clone().unwrap_or_default();
    set_not_ready(
        &mut conditions,
        "ContainersNotReady",
        unready_message(&statuses),
        now,
    );
    status.container_statuses = Some(statuses);
    status.conditions = Some(conditions);
    status
}

/// The final status of a deleted pod once its containers stopped: each container's
/// terminated state, and a terminal phase (Failed when any ended in error).
pub fn terminated_pod(pod: &Pod, views: &[ContainerView], now: Timestamp) -> PodStatus {
    let mut status = pod.status.clone().unwrap_or_default();
    let failed = views.iter().any(|v| {
        v.current
            .as_ref()
            .and_then(|i| i.exit.as_ref())
            .is_none_or(|e| e.code != 0)
    });
    let statuses: Vec<ContainerStatus> = views.iter().map(container_status).collect();
    let mut conditions = status.conditions.clone().unwrap_or_default();
    set_not_ready(&mut conditions, "PodCompleted", None, now);
    status.phase = Some(if failed { "Failed" } else { "Succeeded" }.to_string());
    status.container_statuses = Some(statuses);
    status.conditions = Some(conditions);
    status
}

/// The whole status the kubelet reports for a pod.
pub fn compute(
    pod: &Pod,
    node_ip: &str,
    sandbox: Option<&SandboxView>,
    init_views: &[ContainerView],
    views: &[ContainerView],
    now: Timestamp,
) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    // Once an app container has run, the pod stays initialized.
    let initialized = init_views.iter().all(ContainerView::initialized)
        || views
            .iter()
            .any(|v| v.current.is_some() || v.previous.is_some());
    let phase = if init_views.iter().any(ContainerView::failed_for_good) {
        "Failed"
    } else if initialized {
        phase(restart_policy, views)
    } else {
        "Pending"
    };
    let finished = phase == "Succeeded" || phase == "Failed";
    let statuses: Vec<ContainerStatus> = views.iter().map(container_status).collect();
    // Sidecars count towards readiness as app containers do.
    let sidecar_statuses: Vec<ContainerStatus> = init_views
        .iter()
        .filter(|v| v.sidecar)
        .map(container_status)
        .collect();
    let all_ready =
        !statuses.is_empty() && statuses.iter().chain(&sidecar_statuses).all(|s| s.ready);
    let not_ready_reason = if finished {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let sandbox_ready = sandbox.is_some_and(|s| s.ready);
    let mut conditions = vec![
        condition(
            &old_conditions,
            "PodReadyToStartContainers",
            sandbox_ready,
            None,
            now,
        ),
        condition(
            &old_conditions,
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
            now,
        ),
        match (all_ready, gates_problem(pod, &old_conditions)) {
            (true, Some(problem)) => condition_with(
                &old_conditions,
                "Ready",
                false,
                Some("ReadinessGatesNotReady"),
                Some(problem),
                now,
            ),
            _ => condition_with(
                &old_conditions,
                "Ready",
                all_ready,
                (!all_ready).then_some(not_ready_reason),
                (!finished).then(|| unready_message(&statuses)).flatten(),
                now,
            ),
        },
        condition_with(
            &old_conditions,
            "ContainersReady",
            all_ready,
            (!all_ready).then_some(not_ready_reason),
            (!finished).then(|| unready_message(&statuses)).flatten(),
            now,
        ),
    ];
    // Conditions set by others (readiness gates' and such) stay as they are.
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    conditions.extend(
        old_conditions
            .iter()
            .filter(|c| !ours.contains(&c.type_.as_str()))
            .cloned(),
    );
    // PodScheduled belongs to the scheduler; keep its condition as it is.
    conditions.push(
        old_conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .cloned()
            .unwrap_or_else(|| condition(&old_conditions, "PodScheduled", true, None, now)),
    );
    let pod_ip = sandbox.and_then(|s| s.ip.clone());
    let pod_ips = pod_ip.clone().map(|ip| {
        std::iter::once(ip)
            .chain(sandbox.into_iter().flat_map(|s| s.additional_ips.clone()))
            .map(|ip| PodIP { ip })
            .collect()
    });
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(node_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: node_ip.to_string(),
        }]),
        pod_ip: pod_ip.clone().or(old.pod_ip.clone()),
        pod_ips: pod_ips.or(old.pod_ips.clone()),
        start_time: old.start_time.clone().or(Some(Time(now))),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_views.is_empty())
            .then(|| init_views.iter().map(init_container_status).collect()),
        qos_class: old
            .qos_class
            .clone()
            .or_else(|| Some(qos_class(pod).to_string())),
        ..old
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status;
    use k8s_openapi::api::core::v1::PodSpec;

    fn now() -> Timestamp {
        "2026-11-22T00:00:10Z".parse().unwrap()
    }

    fn pod(policy: &str) -> Pod {
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn inst(id: &str, exit: Option<i32>) -> Instance {
        Instance {
            id: id.into(),
            image_id: "sha256:abc".into(),
            started_at: Some("2026-11-22T00:00:01Z".parse().unwrap()),
            exit: exit.map(|code| Exit {
                code,
                finished_at: Some("2026-11-22T00:00:02Z".parse().unwrap()),
                reason: String::new(),
                message: String::new(),
            }),
        }
    }

    fn view(current: Option<Instance>) -> ContainerView {
        ContainerView {
            name: "c".into(),
            image: "busybox".into(),
            restart_count: 0,
            current,
            previous: None,
            waiting: None,
            ready: true,
            started: true,
            sidecar: false,
        }
    }

    fn sandbox() -> SandboxView {
        SandboxView {
            ready: true,
            ip: Some("10.244.0.5".into()),
            additional_ips: Vec::new(),
        }
    }

    #[test]
    fn phases_follow_restart_policy() {
        let ok = [view(Some(inst("a", Some(0))))];
        let bad = [view(Some(inst("a", Some(1))))];
        assert_eq!(phase("Never", &ok), "Succeeded");
        assert_eq!(phase("Never", &bad), "Failed");
        assert_eq!(phase("OnFailure", &ok), "Succeeded");
        assert_eq!(phase("OnFailure", &bad), "Running");
        assert_eq!(phase("Always", &ok), "Running");
        assert_eq!(phase("Always", &[view(None)]), "Pending");
        assert_eq!(phase("Always", &[view(Some(inst("a", None)))]), "Running");
        let mut backoff = view(Some(inst("a", Some(1))));
        backoff.waiting = Some(Waiting {
            reason: "CrashLoopBackOff".into(),
            message: String::new(),
        });
        assert_eq!(phase("Always", &[backoff]), "Running");
        let mut pulling = view(None);
        pulling.waiting = Some(Waiting {
            reason: "ErrImagePull".into(),
            message: "no registry".into(),
        });
        assert_eq!(phase("Always", &[pulling]), "Pending");
    }

    #[test]
    fn running_pod_status() {
        let status = compute(
            &pod("Always"),
            "172.18.0.2",
            Some(&sandbox()),
            &[],
            &[view(Some(inst("abc", None)))],
            now(),
        );
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.5"));
        assert_eq!(status.host_ip.as_deref(), Some("172.18.0.2"));
        let cs = &status.container_statuses.unwrap()[0];
        assert!(cs.ready);
        assert_eq!(cs.container_id.as_deref(), Some("containerd://abc"));
        assert_eq!(cs.image_id, "sha256:abc");
        assert!(cs.state.as_ref().unwrap().running.is_some());
        let conds = status.conditions.unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert!(conds.iter().any(|c| c.type_ == "PodScheduled"));
    }

    #[test]
    fn completed_pod_status() {
        let status = compute(
            &pod("Never"),
            "172.18.0.2",
            Some(&sandbox()),
            &[],
            &[view(Some(inst("abc", Some(0))))],
            now(),
        );
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        let cs = &status.container_statuses.unwrap()[0];
        let term = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(term.reason.as_deref(), Some("Completed"));
        assert_eq!(term.exit_code, 0);
        assert!(!cs.ready);
        let conds = status.conditions.unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
    }

    #[test]
    fn crash_loop_shows_last_state() {
        let mut v = view(Some(inst("second", Some(2))));
        v.restart_count = 1;
        v.waiting = Some(Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 20s".into(),
        });
        let cs = container_status(&v);
        let last = cs.last_state.unwrap().terminated.unwrap();
        assert_eq!(last.exit_code, 2);
        assert_eq!(last.reason.as_deref(), Some("Error"));
        assert_eq!(
            cs.state.unwrap().waiting.unwrap().reason.as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(cs.restart_count, 1);
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let mut init = view(Some(inst("i", None)));
        init.name = "init".into();
        let waiting = status::not_started(&Container::default(), "PodInitializing");
        let running_init = compute(
            &pod("Always"),
            "n",
            Some(&sandbox()),
            &[init.clone()],
            std::slice::from_ref(&waiting),
            now(),
        );
        assert_eq!(running_init.phase.as_deref(), Some("Pending"));
        let cond = |st: &PodStatus, t: &str| {
            st.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == t)
                .cloned()
                .unwrap()
        };
        let initialized = cond(&running_init, "Initialized");
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.reason.as_deref(),
            Some("ContainersNotInitialized")
        );
        let app = &running_init.container_statuses.as_ref().unwrap()[0];
        let reason = app
            .state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .clone();
        assert_eq!(reason.as_deref(), Some("PodInitializing"));

        init.current = Some(inst("i", Some(0)));
        let done = compute(
            &pod("Always"),
            "n",
            Some(&sandbox()),
            &[init.clone()],
            &[view(Some(inst("a", None)))],
            now(),
        );
        assert_eq!(done.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&done, "Initialized").status, "True");
        assert!(done.init_container_statuses.unwrap()[0].ready);

        init.current = Some(inst("i", Some(1)));
        let failed = compute(
            &pod("Never"),
            "n",
            Some(&sandbox()),
            &[init],
            &[waiting],
            now(),
        );
        assert_eq!(failed.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn qos_classes() {
        use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        use std::collections::BTreeMap;
        let with = |limits: &[(&str, &str)], requests: &[(&str, &str)]| {
            let map = |kv: &[(&str, &str)]| {
                let m: BTreeMap<String, Quantity> = kv
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect();
                (!m.is_empty()).then_some(m)
            };
            let mut p = pod("Always");
            p.spec.as_mut().unwrap().containers = vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    limits: map(limits),
                    requests: map(requests),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }];
            qos_class(&p)
        };
        assert_eq!(with(&[], &[]), "BestEffort");
        assert_eq!(with(&[("cpu", "1"), ("memory", "1Gi")], &[]), "Guaranteed");
        assert_eq!(with(&[], &[("cpu", "100m")]), "Burstable");
        assert_eq!(
            with(&[("cpu", "1"), ("memory", "1Gi")], &[("cpu", "500m")]),
            "Burstable"
        );
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let mut p = pod("Always");
        let first = compute(&p, "n", Some(&sandbox()), &[], &[view(None)], now());
        p.status = Some(first);
        let later: Timestamp = "2026-11-22T00:01:00Z".parse().unwrap();
        let second = compute(&p, "n", Some(&sandbox()), &[], &[view(None)], later);
        let init = second
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Initialized")
            .unwrap();
        assert_eq!(init.last_transition_time, Some(Time(now())));
    }
}
