//! Server-side printing: objects as `meta.k8s.io/v1` Tables with the columns kubectl
//! shows for each kind (priority 1 = only with `-o wide`). kubectl prints exactly
//! these cells, so the wording of each one follows upstream's printers.

use super::convert::to_storage;
use super::crd::{CustomResource, columns};
use super::meta::{age, str_at};
use super::registry::Resource;
use serde_json::{Value, json};

mod kinds;

struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

const fn col(name: &'static str, priority: u8, description: &'static str) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        priority,
        description,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace.",
};
const AGE: Column = col(
    "Age",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

const POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        0,
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        0,
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        0,
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    col(
        "IP",
        1,
        "IP address allocated to the pod. Routable at least within the cluster.",
    ),
    col("Node", 1, "Name of the Node this pod is scheduled onto."),
    col(
        "Nominated Node",
        1,
        "Name of the Node where this pod is nominated to run.",
    ),
    col("Readiness Gates", 1, "Readiness gates of this pod."),
];
const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", 0, "The status of the node"),
    col("Roles", 0, "The roles of the node"),
    AGE,
    col("Version", 0, "Kubelet Version reported by the node."),
    col("Internal-IP", 1, "List of internal IPs of the node."),
    col("External-IP", 1, "List of external IPs of the node."),
    col(
        "OS-Image",
        1,
        "OS Image reported by the node from /etc/os-release.",
    ),
    col("Kernel-Version", 1, "Kernel Version reported by the node."),
    col(
        "Container-Runtime",
        1,
        "Container Runtime Version reported by the node.",
    ),
];
const NAMESPACE_COLUMNS: &[Column] = &[NAME, col("Status", 0, "The status of the namespace"), AGE];
const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col("Type", 0, "The type of the service."),
    col("Cluster-IP", 0, "The cluster IP of the service."),
    col("External-IP", 0, "The external IPs of the service."),
    col("Port(s)", 0, "The ports of the service."),
    AGE,
    col(
        "Selector",
        1,
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];
const CONFIGMAP_COLUMNS: &[Column] = &[
    NAME,
    Column {
        kind: "integer",
        ..col(
            "Data",
            0,
            "The number of entries in the data and binaryData fields.",
        )
    },
    AGE,
];
const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", 0, "Time when this Event was last observed."),
    col("Type", 0, "Type of this event (Normal, Warning)."),
    col("Reason", 0, "Why the action was taken."),
    col("Object", 0, "The object that this event is about."),
    col(
        "Message",
        0,
        "A human-readable description of the status of this operation.",
    ),
];
const LEASE_COLUMNS: &[Column] = &[NAME, col("Holder", 0, "The holder of the lease."), AGE];
const SERVICE_CIDR_COLUMNS: &[Column] = &[
    NAME,
    col(
        "CIDRs",
        0,
        "CIDRs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs.",
    ),
    AGE,
];
const IP_ADDRESS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "ParentRef",
        0,
        "ParentRef references the resource that an IPAddress is attached to.",
    ),
];
const CSR_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col(
        "SignerName",
        0,
        "Requested signer for the request. It is a qualified name in the form: `scope-hostname.io/name`.",
    ),
    col("Requestor", 0, "Base64-encoded PKCS#10 CSR data"),
    col(
        "RequestedDuration",
        0,
        "expirationSeconds is the requested duration of validity of the issued certificate.",
    ),
    col(
        "Condition",
        0,
        "Conditions applied to the request, such as approval or denial.",
    ),
];
const fn int_col(name: &'static str, priority: u8, description: &'static str) -> Column {
    Column {
        name,
        kind: "integer",
        format: "",
        priority,
        description,
    }
}

const CONTAINERS: Column = col("Containers", 1, "Names of each container in the template.");
const IMAGES: Column = col(
    "Images",
    1,
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = col("Selector", 1, "Label selector for pods.");
const CREATED_AT: Column = Column {
    format: "date",
    ..col(
        "Created At",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    )
};

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", 0, "Number of the pod with ready state"),
    int_col(
        "Up-to-date",
        0,
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    int_col(
        "Available",
        0,
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    int_col("Desired", 0, "Number of desired pods."),
    int_col("Current", 0, "Number of actual replicas."),
    int_col(
        "Ready",
        0,
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", 0, "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];
const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    int_col(
        "Desired",
        0,
        "The total number of nodes that should be running the daemon pod.",
    ),
    int_col(
        "Current",
        0,
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    int_col(
        "Ready",
        0,
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
    ),
    int_col(
        "Up-to-date",
        0,
        "The total number of nodes that are running updated daemon pod.",
    ),
    int_col(
        "Available",
        0,
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
    ),
    col(
        "Node Selector",
        0,
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", 0, "Status of the job."),
    col("Completions", 0, "The completion status of the job."),
    col("Duration", 0, "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", 0, "The schedule in Cron format."),
    col("Timezone", 0, "The time zone name for the given schedule."),
    Column {
        kind: "boolean",
        ..col(
            "Suspend",
            0,
            "This flag tells the controller to suspend subsequent executions.",
        )
    },
    int_col("Active", 0, "A list of pointers to currently running jobs."),
    col(
        "Last Schedule",
        0,
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col("Type", 0, "The type of the secret"),
    int_col("Data", 0, "The number of entries in the data field."),
    AGE,
];
const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    int_col(
        "Secrets",
        0,
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];
const CLAIM_COLUMNS: &[Column] = &[
    NAME,
    col("Status", 0, "The phase of the claim."),
    col(
        "Volume",
        0,
        "VolumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        0,
        "The actual resources of the underlying volume.",
    ),
    col("Access Modes", 0, "The access modes of the volume."),
    col("StorageClass", 0, "The storage class of the claim."),
    col(
        "VolumeAttributesClass",
        0,
        "The volume attributes class of the claim.",
    ),
    AGE,
    col(
        "VolumeMode",
        1,
        "Whether the volume is formatted or a raw block device.",
    ),
];
const VOLUME_COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", 0, "The capacity of the volume."),
    col("Access Modes", 0, "The access modes of the volume."),
    col(
        "Reclaim Policy",
        0,
        "What happens to the volume when released from its claim.",
    ),
    col("Status", 0, "The phase of the volume."),
    col("Claim", 0, "The claim bound to the volume."),
    col("StorageClass", 0, "The storage class of the volume."),
    col(
        "VolumeAttributesClass",
        0,
        "The volume attributes class of the volume.",
    ),
    col("Reason", 0, "Why the volume is in this phase."),
    AGE,
    col(
        "VolumeMode",
        1,
        "Whether the volume is formatted or a raw block device.",
    ),
];
const ENDPOINTS_COLUMNS: &[Column] = &[NAME, col("Endpoints", 0, "Endpoints of the service."), AGE];
const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        0,
        "The type of address carried by this EndpointSlice.",
    ),
    col("Ports", 0, "The ports exposed by the endpoints."),
    col("Endpoints", 0, "The addresses of the endpoints."),
    AGE,
];
const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    col("Class", 0, "The name of the IngressClass resource."),
    col(
        "Hosts",
        0,
        "Hosts that incoming requests are matched against.",
    ),
    col(
        "Address",
        0,
        "Address is a list containing ingress points for the load-balancer.",
    ),
    col("Ports", 0, "Ports of TLS configurations that open."),
    AGE,
];
const INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Controller",
        0,
        "Controller that is responsible for handling this class.",
    ),
    col(
        "Parameters",
        0,
        "A reference to a resource with additional parameters.",
    ),
    AGE,
];
const NETWORK_POLICY_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        0,
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];
const ROLE_COLUMNS: &[Column] = &[NAME, CREATED_AT];
const BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        0,
        "RoleRef is the reference to the role the binding grants.",
    ),
    AGE,
    col("Users", 1, "Users in the binding."),
    col("Groups", 1, "Groups in the binding."),
    col("ServiceAccounts", 1, "ServiceAccounts in the binding."),
];
const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col("Provisioner", 0, "Indicates the type of the provisioner."),
    col(
        "ReclaimPolicy",
        0,
        "Indicates the type of the reclaim policy.",
    ),
    col(
        "VolumeBindingMode",
        0,
        "Indicates how PersistentVolumeClaims should be provisioned and bound.",
    ),
    Column {
        kind: "boolean",
        ..col(
            "AllowVolumeExpansion",
            0,
            "Indicates whether the storage class allows volume expand.",
        )
    },
    AGE,
];
const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    int_col("Value", 0, "The value of this priority class."),
    Column {
        kind: "boolean",
        ..col(
            "Global-Default",
            0,
            "Whether this priority class is the default one.",
        )
    },
    AGE,
    col(
        "PreemptionPolicy",
        0,
        "The policy for preempting pods with lower priority.",
    ),
];
const HPA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Reference",
        0,
        "The identifier for the target of the scale.",
    ),
    col(
        "Targets",
        0,
        "The current and target metrics of the autoscaler.",
    ),
    int_col("MinPods", 0, "The lower limit for the number of pods."),
    int_col("MaxPods", 0, "The upper limit for the number of pods."),
    int_col(
        "Replicas",
        0,
        "Current number of replicas of pods managed by this autoscaler.",
    ),
    AGE,
];
const PDB_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Min Available",
        0,
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        0,
        "The maximum number of pods that may be unavailable.",
    ),
    int_col(
        "Allowed Disruptions",
        0,
        "Number of pod disruptions that are currently allowed.",
    ),
    AGE,
];
const POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    col("Containers", 0, "Names of each container in the template."),
    col(
        "Images",
        0,
        "Images referenced by each container in the template.",
    ),
    col("Pod Labels", 0, "The labels of the pod template."),
];
const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", 0, "Controller of the object."),
    int_col(
        "Revision",
        0,
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];
const RUNTIME_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Handler",
        0,
        "The CRI handler the runtime class runs pods with.",
    ),
    AGE,
];
const VOLUME_ATTACHMENT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Attacher",
        0,
        "Attacher indicates the name of the volume driver that must handle this request.",
    ),
    col("PV", 0, "Name of the persistent volume to attach."),
    col("Node", 0, "The node that the volume should be attached to."),
    Column {
        kind: "boolean",
        ..col(
            "Attached",
            0,
            "Indicates the volume is successfully attached.",
        )
    },
    AGE,
];
const CSI_NODE_COLUMNS: &[Column] = &[
    NAME,
    int_col(
        "Drivers",
        0,
        "Drivers indicates the number of CSI drivers registered on the node.",
    ),
    AGE,
];
const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col(
        "Request",
        0,
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        0,
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
];
const COMPONENT_STATUS_COLUMNS: &[Column] = &[
    NAME,
    col("Status", 0, "Status of the component conditions"),
    col("Message", 0, "Message of the component conditions"),
    col("Error", 0, "Error of the component conditions"),
];
const API_SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Service",
        0,
        "The reference to the service that hosts this API endpoint.",
    ),
    col("Available", 0, "Whether this service is available."),
    AGE,
];
const FLOW_SCHEMA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "PriorityLevel",
        0,
        "The priority level configuration this flow schema directs requests to.",
    ),
    int_col(
        "MatchingPrecedence",
        0,
        "Matching precedence: the lowest value is considered first.",
    ),
    col(
        "DistinguisherMethod",
        0,
        "How flows are told apart: by user or by namespace.",
    ),
    AGE,
    col(
        "MissingPL",
        0,
        "Whether the referenced priority level configuration is missing.",
    ),
];
const PRIORITY_LEVEL_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        0,
        "Whether the priority level is exempt from limits or limited.",
    ),
    col(
        "NominalConcurrencyShares",
        0,
        "The share of the server's concurrency this level is entitled to.",
    ),
    col("Queues", 0, "The number of queues for this priority level."),
    col(
        "HandSize",
        0,
        "The number of queues a flow is shuffle-sharded onto.",
    ),
    col(
        "QueueLengthLimit",
        0,
        "The largest number of requests one queue may hold.",
    ),
    AGE,
];
const WEBHOOK_CONFIGURATION_COLUMNS: &[Column] = &[
    NAME,
    int_col(
        "Webhooks",
        0,
        "The number of webhooks in this configuration.",
    ),
    AGE,
];
const VALIDATING_POLICY_COLUMNS: &[Column] = &[
    NAME,
    int_col(
        "Validations",
        0,
        "The number of validations in this policy.",
    ),
    col(
        "ParamKind",
        0,
        "The kind of the policy's parameter resource.",
    ),
    AGE,
];
const MUTATING_POLICY_COLUMNS: &[Column] = &[
    NAME,
    int_col("Mutations", 0, "The number of mutations in this policy."),
    col(
        "ParamKind",
        0,
        "The kind of the policy's parameter resource.",
    ),
    AGE,
];
const POLICY_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col("PolicyName", 0, "The policy this binding binds."),
    col("ParamRef", 0, "The parameter resource this binding uses."),
    AGE,
];
const RESOURCE_CLAIM_COLUMNS: &[Column] = &[
    NAME,
    col(
        "State",
        0,
        "A summary of the current state (allocated, pending, reserved, etc.).",
    ),
    AGE,
];
const RESOURCE_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Node",
        0,
        "The node the devices of this slice are local to, if any.",
    ),
    col("Driver", 0, "The DRA driver that publishes this slice."),
    col("Pool", 0, "The pool of devices this slice belongs to."),
    AGE,
];
const VOLUME_ATTRIBUTES_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "DriverName",
        0,
        "The CSI driver that handles volumes of this class.",
    ),
    AGE,
];
const LIMIT_RANGE_COLUMNS: &[Column] = &[NAME, CREATED_AT];
const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

fn columns(resource: &Resource) -> &'static [Column] {
    match (resource.group, resource.kind) {
        ("", "Pod") => POD_COLUMNS,
        ("", "Node") => NODE_COLUMNS,
        ("", "Namespace") => NAMESPACE_COLUMNS,
        ("", "Service") => SERVICE_COLUMNS,
        ("", "ConfigMap") => CONFIGMAP_COLUMNS,
        ("" | "events.k8s.io", "Event") => EVENT_COLUMNS,
        ("coordination.k8s.io", "Lease") => LEASE_COLUMNS,
        ("certificates.k8s.io", "CertificateSigningRequest") => CSR_COLUMNS,
        ("networking.k8s.io", "ServiceCIDR") => SERVICE_CIDR_COLUMNS,
        ("networking.k8s.io", "IPAddress") => IP_ADDRESS_COLUMNS,
        ("apps", "Deployment") => DEPLOYMENT_COLUMNS,
        ("apps", "ReplicaSet") | ("", "ReplicationController") => REPLICA_SET_COLUMNS,
        ("apps", "StatefulSet") => STATEFUL_SET_COLUMNS,
        ("apps", "DaemonSet") => DAEMON_SET_COLUMNS,
        ("apps", "ControllerRevision") => CONTROLLER_REVISION_COLUMNS,
        ("batch", "Job") => JOB_COLUMNS,
        ("batch", "CronJob") => CRON_JOB_COLUMNS,
        ("", "Secret") => SECRET_COLUMNS,
        ("", "ServiceAccount") => SERVICE_ACCOUNT_COLUMNS,
        ("", "PersistentVolumeClaim") => CLAIM_COLUMNS,
        ("", "PersistentVolume") => VOLUME_COLUMNS,
        ("", "Endpoints") => ENDPOINTS_COLUMNS,
        ("", "PodTemplate") => POD_TEMPLATE_COLUMNS,
        ("", "ResourceQuota") => RESOURCE_QUOTA_COLUMNS,
        ("", "LimitRange") => LIMIT_RANGE_COLUMNS,
        ("discovery.k8s.io", "EndpointSlice") => ENDPOINT_SLICE_COLUMNS,
        ("networking.k8s.io", "Ingress") => INGRESS_COLUMNS,
        ("networking.k8s.io", "IngressClass") => INGRESS_CLASS_COLUMNS,
        ("networking.k8s.io", "NetworkPolicy") => NETWORK_POLICY_COLUMNS,
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => ROLE_COLUMNS,
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => BINDING_COLUMNS,
        ("storage.k8s.io", "StorageClass") => STORAGE_CLASS_COLUMNS,
        ("storage.k8s.io", "VolumeAttachment") => VOLUME_ATTACHMENT_COLUMNS,
        ("storage.k8s.io", "CSINode") => CSI_NODE_COLUMNS,
        ("scheduling.k8s.io", "PriorityClass") => PRIORITY_CLASS_COLUMNS,
        ("autoscaling", "HorizontalPodAutoscaler") => HPA_COLUMNS,
        ("policy", "PodDisruptionBudget") => PDB_COLUMNS,
        ("node.k8s.io", "RuntimeClass") => RUNTIME_CLASS_COLUMNS,
        ("", "ComponentStatus") => COMPONENT_STATUS_COLUMNS,
        ("apiregistration.k8s.io", "APIService") => API_SERVICE_COLUMNS,
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => FLOW_SCHEMA_COLUMNS,
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => PRIORITY_LEVEL_COLUMNS,
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
        ) => WEBHOOK_CONFIGURATION_COLUMNS,
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => VALIDATING_POLICY_COLUMNS,
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy") => MUTATING_POLICY_COLUMNS,
        (
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicyBinding" | "MutatingAdmissionPolicyBinding",
        ) => POLICY_BINDING_COLUMNS,
        ("resource.k8s.io", "ResourceClaim") => RESOURCE_CLAIM_COLUMNS,
        ("resource.k8s.io", "ResourceSlice") => RESOURCE_SLICE_COLUMNS,
        ("storage.k8s.io", "VolumeAttributesClass") => VOLUME_ATTRIBUTES_CLASS_COLUMNS,
        _ => DEFAULT_COLUMNS,
    }
}

fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

fn or_none(text: Option<&str>) -> Value {
    match text {
        Some(t) if !t.is_empty() => s(t),
        _ => s("<none>"),
    }
}

fn created(object: &Value) -> String {
    age(str_at(object, &["metadata", "creationTimestamp"]))
}

fn name_of(object: &Value) -> Value {
    s(str_at(object, &["metadata", "name"]).unwrap_or_default())
}

fn array<'a>(object: &'a Value, path: &[&str]) -> &'a [Value] {
    let mut cur = object;
    for part in path {
        match cur.get(part) {
            Some(next) => cur = next,
            None => return &[],
        }
    }
    cur.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// The STATUS column of a pod, following upstream's `printPod`.
fn pod_status(pod: &Value) -> String {
    let mut reason = str_at(pod, &["status", "reason"])
        .or_else(|| str_at(pod, &["status", "phase"]))
        .unwrap_or_default()
        .to_string();
    let init_specs = array(pod, &["spec", "initContainers"]).len();
    let mut initializing = false;
    for (i, status) in array(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let state = status.get("state");
        if let Some(term) = state.and_then(|s| s.get("terminated")) {
            let code = term
                .get("exitCode")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            if code == 0 {
                continue;
            }
            reason = match term.get("reason").and_then(Value::as_str) {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => format!("Init:ExitCode:{code}"),
            };
        } else if let Some(r) = state
            .and_then(|s| s.get("waiting"))
            .and_then(|w| w.get("reason"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{init_specs}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for status in array(pod, &["status", "containerStatuses"]).iter().rev() {
            let state = status.get("state");
            if let Some(r) = state
                .and_then(|s| s.get("waiting"))
                .and_then(|w| w.get("reason"))
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            } else if let Some(term) = state.and_then(|s| s.get("terminated")) {
                reason = match term.get("reason").and_then(Value::as_str) {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ => match term.get("signal").and_then(Value::as_i64) {
                        Some(sig) if sig != 0 => format!("Signal:{sig}"),
                        _ => format!(
                            "ExitCode:{}",
                            term.get("exitCode")
                                .and_then(Value::as_i64)
                                .unwrap_or_default()
                        ),
                    },
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && state.and_then(|s| s.get("running")).is_some()
            {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = array(pod, &["status", "conditions"]).iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            });
            reason = if ready { "Running" } else { "NotReady" }.to_string();
        }
    }
    if str_at(pod, &["metadata", "deletionTimestamp"]).is_some() {
        reason = if str_at(pod, &["status", "reason"]) == Some("NodeLost") {
            "Unknown".to_string()
        } else {
            "Terminating".to_string()
        };
    }
    reason
}

fn pod_cells(pod: &Value) -> Vec<Value> {
    let statuses = array(pod, &["status", "containerStatuses"]);
    let total = array(pod, &["spec", "containers"]).len();
    let ready = statuses
        .iter()
        .filter(|c| {
            c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.get("state").and_then(|s| s.get("running")).is_some()
        })
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum();
    let last_restart = statuses
        .iter()
        .filter_map(|c| str_at(c, &["lastState", "terminated", "finishedAt"]))
        .max();
    let restarts = match last_restart {
        Some(at) if restarts > 0 => format!("{restarts} ({} ago)", age(Some(at))),
        _ => restarts.to_string(),
    };
    let gates = array(pod, &["spec", "readinessGates"]);
    let gates = if gates.is_empty() {
        s("<none>")
    } else {
        let conditions = array(pod, &["status", "conditions"]);
        let passed = gates
            .iter()
            .filter(|g| {
                conditions.iter().any(|c| {
                    c.get("type") == g.get("conditionType")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
            .count();
        s(format!("{passed}/{}", gates.len()))
    };
    vec![
        name_of(pod),
        s(format!("{ready}/{total}")),
        s(pod_status(pod)),
        s(restarts),
        s(created(pod)),
        or_none(str_at(pod, &["status", "podIP"])),
        or_none(str_at(pod, &["spec", "nodeName"])),
        or_none(str_at(pod, &["status", "nominatedNodeName"])),
        gates,
    ]
}

fn node_cells(node: &Value) -> Vec<Value> {
    let conditions = array(node, &["status", "conditions"]);
    let ready = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut status = match ready {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .to_string();
    if node
        .get("spec")
        .and_then(|s| s.get("unschedulable"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<&str> = node
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort_unstable();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |kind: &str| {
        array(node, &["status", "addresses"])
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
            .and_then(|a| a.get("address").and_then(Value::as_str))
    };
    let info = |field: &str| or_none(str_at(node, &["status", "nodeInfo", field]));
    vec![
        name_of(node),
        s(status),
        s(roles),
        s(created(node)),
        s(str_at(node, &["status", "nodeInfo", "kubeletVersion"]).unwrap_or_default()),
        or_none(address("InternalIP")),
        or_none(address("ExternalIP")),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

fn service_cells(svc: &Value) -> Vec<Value> {
    let kind = str_at(svc, &["spec", "type"]).unwrap_or("ClusterIP");
    let external: Vec<String> = array(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .chain(
            array(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                }),
        )
        .collect();
    let external = match (external.is_empty(), kind) {
        (false, _) => external.join(","),
        (true, "LoadBalancer") => "<pending>".to_string(),
        (true, "ExternalName") => str_at(svc, &["spec", "externalName"])
            .unwrap_or("<none>")
            .to_string(),
        (true, _) => "<none>".to_string(),
    };
    let ports: Vec<String> = array(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or_default();
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) => format!("{port}:{node_port}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    let selector: Vec<String> = svc
        .get("spec")
        .and_then(|s| s.get("selector"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    vec![
        name_of(svc),
        s(kind),
        or_none(str_at(svc, &["spec", "clusterIP"])),
        s(external),
        s(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        s(created(svc)),
        s(if selector.is_empty() {
            "<none>".to_string()
        } else {
            selector.join(",")
        }),
    ]
}

fn configmap_cells(cm: &Value) -> Vec<Value> {
    let count = |key: &str| {
        cm.get(key)
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
    };
    vec![
        name_of(cm),
        json!(count("data") + count("binaryData")),
        s(created(cm)),
    ]
}

fn event_cells(event: &Value) -> Vec<Value> {
    let last_seen = str_at(event, &["lastTimestamp"])
        .or_else(|| str_at(event, &["eventTime"]))
        .or_else(|| str_at(event, &["metadata", "creationTimestamp"]));
    let object = format!(
        "{}/{}",
        str_at(event, &["involvedObject", "kind"])
            .unwrap_or_default()
            .to_lowercase(),
        str_at(event, &["involvedObject", "name"]).unwrap_or_default()
    );
    vec![
        s(age(last_seen)),
        s(str_at(event, &["type"]).unwrap_or_default()),
        s(str_at(event, &["reason"]).unwrap_or_default()),
        s(object),
        s(str_at(event, &["message"]).unwrap_or_default()),
    ]
}

/// NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION, as upstream prints a
/// CertificateSigningRequest.
fn csr_cells(csr: &Value) -> Vec<Value> {
    let duration = csr
        .get("spec")
        .and_then(|s| s.get("expirationSeconds"))
        .and_then(Value::as_i64)
        .map_or_else(|| "<none>".to_string(), crate::meta::human_duration);
    vec![
        name_of(csr),
        s(created(csr)),
        s(str_at(csr, &["spec", "signerName"]).unwrap_or_default()),
        s(str_at(csr, &["spec", "username"]).unwrap_or_default()),
        s(duration),
        s(crate::certificates::condition_summary(csr)),
    ]
}

fn lease_cells(lease: &Value) -> Vec<Value> {
    vec![
        name_of(lease),
        s(str_at(lease, &["spec", "holderIdentity"]).unwrap_or_default()),
        s(created(lease)),
    ]
}

pub fn cells(resource: &Resource, object: &Value) -> Vec<Value> {
    match (resource.group, resource.kind) {
        ("", "Pod") => pod_cells(object),
        ("", "Node") => node_cells(object),
        ("", "Namespace") => vec![
            name_of(object),
            s(str_at(object, &["status", "phase"]).unwrap_or_default()),
            s(created(object)),
        ],
        ("", "Service") => service_cells(object),
        ("", "ConfigMap") => configmap_cells(object),
        ("", "Event") => event_cells(object),
        ("events.k8s.io", "Event") => event_cells(&to_storage(resource, object.clone())),
        ("coordination.k8s.io", "Lease") => lease_cells(object),
        ("certificates.k8s.io", "CertificateSigningRequest") => csr_cells(object),
        ("networking.k8s.io", "ServiceCIDR") => vec![
            name_of(object),
            s(crate::servicecidr::cidrs(object).join(",")),
            s(created(object)),
        ],
        ("networking.k8s.io", "IPAddress") => vec![
            name_of(object),
            s(crate::servicecidr::parent_ref_cell(object)),
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => {
            kinds::hpa(&to_storage(resource, object.clone()))
        }
        (group, kind) => kinds::cells(group, kind, object)
            .unwrap_or_else(|| vec![name_of(object), s(created(object))]),
    }
}

/// A custom resource's columns: NAME, then the CRD's printer columns (AGE by default).
fn custom_column_definitions(custom: &CustomResource) -> Vec<Value> {
    let name = json!({
        "name": NAME.name, "type": NAME.kind, "format": NAME.format,
        "description": NAME.description, "priority": 0,
    });
    std::iter::once(name)
        .chain(custom.columns.iter().map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        }))
        .collect()
}

fn custom_cells(custom: &CustomResource, object: &Value) -> Vec<Value> {
    std::iter::once(name_of(object))
        .chain(custom.columns.iter().map(|c| columns::cell(c, object)))
        .collect()
}

/// What each row carries besides its cells (`?includeObject=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(text: Option<&str>) -> Self {
        match text {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// An object reduced to its metadata, as `PartialObjectMetadata`.
pub fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A Table of `objects`; `list_meta` becomes its `metadata` (resourceVersion, continue).
pub fn table(
    resource: &Resource,
    objects: &[Value],
    list_meta: Value,
    include: IncludeObject,
) -> Value {
    let column_definitions: Vec<Value> = match resource.custom {
        Some(custom) => custom_column_definitions(custom),
        None => columns(resource)
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.kind,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells = match resource.custom {
                Some(custom) => custom_cells(custom, object),
                None => cells(resource, object),
            };
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(object),
                IncludeObject::Object => row["object"] = object.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn cells_of(plural: &str, group: &str, object: Value) -> Vec<Value> {
        let reg = Registry::default();
        let res = reg.lookup(group, "v1", plural).unwrap();
        let t = table(res, &[object], json!({}), IncludeObject::Metadata);
        assert_eq!(
            t["columnDefinitions"].as_array().unwrap().len(),
            t["rows"][0]["cells"].as_array().unwrap().len()
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        t["rows"][0]["cells"].as_array().unwrap().clone()
    }

    #[test]
    fn pod_rows() {
        let pending = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}});
        let c = cells_of("pods", "", pending);
        assert_eq!(c[0], "p");
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "Pending");
        assert_eq!(c[3], "0");
        assert_eq!(c[5], "<none>");
        let running = json!({
            "metadata": {"name": "r", "deletionTimestamp": null},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.5", "containerStatuses": [
                {"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}
            ]}
        });
        let c = cells_of("pods", "", running);
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[5].as_str(), c[6].as_str()),
            (Some("1/1"), Some("Running"), Some("10.244.0.5"), Some("n1"))
        );
        let crashing = json!({
            "metadata": {"name": "x", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        assert_eq!(cells_of("pods", "", crashing)[2], "Terminating");
        let completed = json!({
            "metadata": {"name": "d"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
        });
        assert_eq!(cells_of("pods", "", completed)[2], "Completed");
    }

    #[test]
    fn node_rows() {
        let node = json!({
            "metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.37.0"},
                       "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}
        });
        let c = cells_of("nodes", "", node);
        assert_eq!(c[1], "Ready");
        assert_eq!(c[2], "control-plane");
        assert_eq!(c[4], "v1.37.0");
        assert_eq!(c[5], "172.18.0.2");
        assert_eq!(c[6], "<none>");
    }

    #[test]
    fn service_and_configmap_rows() {
        let svc = json!({"metadata": {"name": "kubernetes"}, "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "ports": [{"port": 443, "protocol": "TCP"}]}});
        let c = cells_of("services", "", svc);
        assert_eq!(
            (c[1].as_str(), c[2].as_str(), c[3].as_str(), c[4].as_str()),
            (
                Some("ClusterIP"),
                Some("10.96.0.1"),
                Some("<none>"),
                Some("443/TCP")
            )
        );
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        assert_eq!(cells_of("configmaps", "", cm)[1], 2);
    }
}
