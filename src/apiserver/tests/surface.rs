//! The parts of the 1.37 API that are stored and validated but not acted on by rind's
//! components, and the observed ones, through the real kubectl: `api-resources` as
//! upstream's, create and `get` with upstream's columns, invalid objects refused with
//! upstream's words, the Warning on admission configuration, ComponentStatuses,
//! APIServices, upstream's flowcontrol objects and ephemeral containers.

use rind_testing::{TestServer, fails, kubectl, ok, start, stderr, write};
use serde_json::Value;

/// The header and first row of `kubectl get` for one object.
async fn table(server: &TestServer, args: &[&str]) -> (Vec<String>, String) {
    let out = ok(server, args).await;
    let mut lines = out.lines();
    let header = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (header, lines.next().unwrap_or_default().to_string())
}

async fn create(server: &TestServer, name: &str, yaml: &str) -> String {
    let file = write(server.dir.path(), name, yaml);
    let out = kubectl(server, &["create", "-f", &file]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

async fn refused(server: &TestServer, name: &str, yaml: &str) -> String {
    let file = write(server.dir.path(), name, yaml);
    fails(server, &["create", "-f", &file, "--validate=false"]).await
}

/// `kubectl api-resources` lists exactly what the 1.37 fixture says is served (minus
/// what rind does not serve yet, checked against the same fixture by a unit test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn api_resources_are_upstreams() {
    let server = start().await;
    let out = ok(&server, &["api-resources", "--no-headers"]).await;
    let mut listed: Vec<(String, String, String, String)> = out
        .lines()
        .map(|line| {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            // NAME [SHORTNAMES] APIVERSION NAMESPACED KIND
            let n = tokens.len();
            (
                tokens[0].to_string(),
                tokens[n - 3].to_string(),
                tokens[n - 2].to_string(),
                tokens[n - 1].to_string(),
            )
        })
        .collect();
    let fixture = include_str!("../../api/testdata/discovery-v1.37.yaml");
    let mut expected: Vec<(String, String, String, String)> = fixture
        .lines()
        .filter(|l| l.starts_with("- {gv: "))
        .filter_map(|line| {
            let field = |key: &str| {
                let start = line.find(&format!("{key}: "))? + key.len() + 2;
                let rest = &line[start..];
                Some(rest[..rest.find([',', '}'])?].to_string())
            };
            Some((
                field("resource")?,
                field("gv")?,
                (field("scope")? == "Namespaced").to_string(),
                field("kind")?,
            ))
        })
        .filter(|(resource, gv, _, _)| !NOT_SERVED.contains(&(gv.as_str(), resource.as_str())))
        // kubectl lists each group's preferred version only: autoscaling's is v2.
        .filter(|(_, gv, _, _)| gv != "autoscaling/v1")
        .collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    // Short names and categories reach kubectl.
    ok(&server, &["get", "vac"]).await;
    ok(&server, &["get", "api-extensions"]).await;
}

/// Top-level resources of the fixture that rind does not serve yet (the unit test
/// `discovery_fixture` keeps this in line with its own list).
const NOT_SERVED: &[(&str, &str)] = &[
    ("v1", "bindings"),
    ("certificates.k8s.io/v1", "clustertrustbundles"),
    ("certificates.k8s.io/v1", "podcertificaterequests"),
    ("storagemigration.k8s.io/v1", "storageversionmigrations"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn admission_configuration_is_stored_validated_and_flagged() {
    let server = start().await;
    let warned = create(
        &server,
        "vwc.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: pods\nwebhooks:\n- name: pods.example.com\n  clientConfig:\n    url: https://hooks.example.com/pods\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  rules:\n  - operations: [CREATE]\n    apiGroups: ['']\n    apiVersions: [v1]\n    resources: [pods]\n",
    )
    .await;
    assert!(
        warned.contains("Warning: rind does not call admission webhooks yet: this ValidatingWebhookConfiguration is stored but not enforced"),
        "{warned}"
    );
    let (header, row) = table(&server, &["get", "validatingwebhookconfigurations"]).await;
    assert_eq!(header, ["NAME", "WEBHOOKS", "AGE"]);
    assert!(row.starts_with("pods") && row.contains(" 1 "), "{row}");
    let stored: Value = serde_json::from_str(
        &ok(
            &server,
            &[
                "get",
                "validatingwebhookconfiguration",
                "pods",
                "-o",
                "json",
            ],
        )
        .await,
    )
    .unwrap();
    assert_eq!(stored["webhooks"][0]["failurePolicy"], "Fail");
    assert_eq!(stored["webhooks"][0]["timeoutSeconds"], 10);
    let err = refused(
        &server,
        "bad-mwc.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: bad\nwebhooks:\n- name: bad.example.com\n  clientConfig: {}\n  admissionReviewVersions: [v1]\n",
    )
    .await;
    assert!(
        err.contains("The MutatingWebhookConfiguration \"bad\" is invalid")
            && err.contains("webhooks[0].clientConfig: Required value: exactly one of url or service is required")
            && err.contains("webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"),
        "{err}"
    );

    let warned = create(
        &server,
        "vap.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata:\n  name: replicas\nspec:\n  matchConstraints:\n    resourceRules:\n    - apiGroups: [apps]\n      apiVersions: [v1]\n      operations: [CREATE, UPDATE]\n      resources: [deployments]\n  validations:\n  - expression: object.spec.replicas <= 5\n",
    )
    .await;
    assert!(
        warned.contains("rind does not evaluate admission policies yet"),
        "{warned}"
    );
    let (header, row) = table(&server, &["get", "validatingadmissionpolicies"]).await;
    assert_eq!(header, ["NAME", "VALIDATIONS", "PARAMKIND", "AGE"]);
    assert!(row.contains("<unset>"), "{row}");
    create(
        &server,
        "vapb.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata:\n  name: replicas\nspec:\n  policyName: replicas\n  validationActions: [Deny]\n",
    )
    .await;
    let (header, row) = table(&server, &["get", "validatingadmissionpolicybindings"]).await;
    assert_eq!(header, ["NAME", "POLICYNAME", "PARAMREF", "AGE"]);
    assert!(row.contains("replicas"), "{row}");
    let err = refused(
        &server,
        "bad-vapb.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata:\n  name: bad\nspec:\n  validationActions: [Deny]\n",
    )
    .await;
    assert!(err.contains("spec.policyName: Required value"), "{err}");
    let err = refused(
        &server,
        "bad-map.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingAdmissionPolicy\nmetadata:\n  name: bad\nspec:\n  matchConstraints: {}\n",
    )
    .await;
    assert!(
        err.contains("spec.mutations: Required value: mutations must contain at least one item"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn dra_and_volume_attributes_classes() {
    let server = start().await;
    create(
        &server,
        "class.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata:\n  name: gpu.example.com\nspec:\n  selectors:\n  - cel:\n      expression: device.driver == \"gpu.example.com\"\n",
    )
    .await;
    create(
        &server,
        "claim.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata:\n  name: gpu\nspec:\n  devices:\n    requests:\n    - name: gpu\n      exactly:\n        deviceClassName: gpu.example.com\n",
    )
    .await;
    let (header, row) = table(&server, &["get", "resourceclaims"]).await;
    assert_eq!(header, ["NAME", "STATE", "AGE"]);
    assert!(row.contains("pending"), "{row}");
    let count = ok(
        &server,
        &[
            "get",
            "resourceclaim",
            "gpu",
            "-o",
            "jsonpath={.spec.devices.requests[0].exactly.count}",
        ],
    )
    .await;
    assert_eq!(count, "1");
    let err = fails(
        &server,
        &["patch", "resourceclaim", "gpu", "--type=merge", "-p", r#"{"spec":{"devices":{"requests":[{"name":"gpu","exactly":{"deviceClassName":"other"}}]}}}"#],
    )
    .await;
    assert!(
        err.contains("spec: Invalid value") && err.contains("field is immutable"),
        "{err}"
    );
    let err = refused(
        &server,
        "bad-claim.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata:\n  name: bad\nspec:\n  devices:\n    requests:\n    - name: gpu\n",
    )
    .await;
    assert!(
        err.contains("spec.devices.requests[0]: Required value: exactly one of `exactly` or `firstAvailable` is required"),
        "{err}"
    );
    create(
        &server,
        "slice.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: ResourceSlice\nmetadata:\n  name: n1-gpu\nspec:\n  driver: gpu.example.com\n  nodeName: n1\n  pool:\n    name: n1\n    generation: 1\n    resourceSliceCount: 1\n  devices:\n  - name: gpu-0\n",
    )
    .await;
    let (header, row) = table(&server, &["get", "resourceslices"]).await;
    assert_eq!(header, ["NAME", "NODE", "DRIVER", "POOL", "AGE"]);
    assert!(
        row.contains("n1") && row.contains("gpu.example.com"),
        "{row}"
    );
    let err = refused(
        &server,
        "bad-slice.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: ResourceSlice\nmetadata:\n  name: bad\nspec:\n  driver: gpu.example.com\n  pool:\n    name: p\n    resourceSliceCount: 1\n",
    )
    .await;
    assert!(err.contains("exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required"), "{err}");
    create(
        &server,
        "template.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: ResourceClaimTemplate\nmetadata:\n  name: gpu\nspec:\n  spec:\n    devices:\n      requests:\n      - name: gpu\n        exactly:\n          deviceClassName: gpu.example.com\n",
    )
    .await;
    ok(&server, &["get", "resourceclaimtemplate", "gpu"]).await;

    create(
        &server,
        "vac.yaml",
        "apiVersion: storage.k8s.io/v1\nkind: VolumeAttributesClass\nmetadata:\n  name: gold\ndriverName: csi.example.com\nparameters:\n  iops: \"3000\"\n",
    )
    .await;
    let (header, row) = table(&server, &["get", "vac"]).await;
    assert_eq!(header, ["NAME", "DRIVERNAME", "AGE"]);
    assert!(row.contains("csi.example.com"), "{row}");
    let err = fails(
        &server,
        &[
            "patch",
            "vac",
            "gold",
            "--type=merge",
            "-p",
            r#"{"parameters":{"iops":"4000"}}"#,
        ],
    )
    .await;
    assert!(
        err.contains("parameters: Forbidden: updates to parameters are forbidden."),
        "{err}"
    );
    let err = refused(
        &server,
        "bad-vac.yaml",
        "apiVersion: storage.k8s.io/v1\nkind: VolumeAttributesClass\nmetadata:\n  name: bad\n",
    )
    .await;
    assert!(err.contains("driverName: Required value"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn flowcontrol_api_services_and_component_statuses() {
    let server = start().await;
    let levels = ok(
        &server,
        &["get", "prioritylevelconfigurations", "-o", "name"],
    )
    .await;
    for name in [
        "catch-all",
        "exempt",
        "system",
        "node-high",
        "leader-election",
        "workload-high",
        "workload-low",
        "global-default",
    ] {
        assert!(levels.contains(&format!("/{name}\n")), "{name}: {levels}");
    }
    let (header, row) = table(
        &server,
        &["get", "prioritylevelconfiguration", "workload-low"],
    )
    .await;
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "NOMINALCONCURRENCYSHARES",
            "QUEUES",
            "HANDSIZE",
            "QUEUELENGTHLIMIT",
            "AGE"
        ]
    );
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..6],
        ["workload-low", "Limited", "100", "128", "6", "50"]
    );
    let (header, row) = table(&server, &["get", "flowschema", "global-default"]).await;
    assert_eq!(
        header,
        [
            "NAME",
            "PRIORITYLEVEL",
            "MATCHINGPRECEDENCE",
            "DISTINGUISHERMETHOD",
            "AGE",
            "MISSINGPL"
        ]
    );
    assert!(
        row.contains("global-default") && row.contains("9900") && row.contains("ByUser"),
        "{row}"
    );
    assert_eq!(
        ok(&server, &["get", "flowschemas", "-o", "name"])
            .await
            .lines()
            .count(),
        11
    );
    let err = refused(
        &server,
        "bad-fs.yaml",
        "apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata:\n  name: bad\nspec:\n  matchingPrecedence: 20000\n  priorityLevelConfiguration:\n    name: global-default\n",
    )
    .await;
    assert!(
        err.contains(
            "spec.matchingPrecedence: Invalid value: 20000: must not be greater than 10000"
        ),
        "{err}"
    );

    let (header, row) = table(&server, &["get", "apiservice", "v1.apps"]).await;
    assert_eq!(header, ["NAME", "SERVICE", "AVAILABLE", "AGE"]);
    assert!(row.contains("Local") && row.contains("True"), "{row}");
    let services = ok(&server, &["get", "apiservices", "-o", "name"]).await;
    for name in [
        "v1.",
        "v1.resource.k8s.io",
        "v2.autoscaling",
        "v1.apiregistration.k8s.io",
    ] {
        assert!(
            services.contains(&format!("apiservice.apiregistration.k8s.io/{name}\n")),
            "{name}: {services}"
        );
    }
    let err = refused(
        &server,
        "bad-apiservice.yaml",
        "apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: wrong\nspec:\n  group: example.com\n  version: v1\n  groupPriorityMinimum: 100\n  versionPriority: 10\n",
    )
    .await;
    assert!(
        err.contains("metadata.name: Invalid value: \"wrong\": must be v1.example.com"),
        "{err}"
    );

    // No scheduler or controller-manager holds its lease here; etcd (the store) answers.
    let out = kubectl(&server, &["get", "componentstatuses"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("Warning: v1 ComponentStatus is deprecated in v1.19+"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "MESSAGE", "ERROR"]);
    assert!(
        text.contains("etcd-0") && text.contains("Healthy"),
        "{text}"
    );
    assert!(
        text.contains("scheduler") && text.contains("Unhealthy"),
        "{text}"
    );
    // A renewed lease makes the component healthy.
    let lease = write(
        server.dir.path(),
        "lease.json",
        &serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 3600,
                     "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.000000Z").to_string()}
        })
        .to_string(),
    );
    ok(&server, &["create", "-f", &lease]).await;
    let condition = ok(
        &server,
        &[
            "get",
            "cs",
            "scheduler",
            "-o",
            "jsonpath={.conditions[0].status} {.conditions[0].message}",
        ],
    )
    .await;
    assert_eq!(condition, "True ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn ephemeral_containers_are_added_through_their_subresource() {
    let server = start().await;
    ok(
        &server,
        &["run", "web", "--image=busybox:1.36", "--", "sleep", "3600"],
    )
    .await;
    // kubectl debug patches pods/ephemeralcontainers.
    ok(
        &server,
        &[
            "debug",
            "web",
            "--image=busybox:1.36",
            "-c",
            "debugger",
            "--target=web",
        ],
    )
    .await;
    let added = ok(
        &server,
        &["get", "pod", "web", "-o", "jsonpath={.spec.ephemeralContainers[0].name} {.spec.ephemeralContainers[0].targetContainerName} {.spec.ephemeralContainers[0].terminationMessagePolicy}"],
    )
    .await;
    assert_eq!(added, "debugger web File");
    // Through the pod itself, the ephemeral containers cannot change.
    let err = fails(
        &server,
        &[
            "patch",
            "pod",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/ephemeralContainers"}]"#,
        ],
    )
    .await;
    assert!(
        err.contains("Forbidden: pod updates may not change fields"),
        "{err}"
    );
    let raw = |body: &str| {
        vec![
            "patch".to_string(),
            "pod".into(),
            "web".into(),
            "--subresource=ephemeralcontainers".into(),
            "--type=json".into(),
            "-p".into(),
            body.to_string(),
        ]
    };
    let removal = raw(r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#);
    let args: Vec<&str> = removal.iter().map(String::as_str).collect();
    let err = fails(&server, &args).await;
    assert!(
        err.contains("spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debugger\" may not be removed"),
        "{err}"
    );
    let ports = raw(
        r#"[{"op":"add","path":"/spec/ephemeralContainers/-","value":{"name":"second","image":"busybox","ports":[{"containerPort":80}],"targetContainerName":"nope"}}]"#,
    );
    let args: Vec<&str> = ports.iter().map(String::as_str).collect();
    let err = fails(&server, &args).await;
    assert!(
        err.contains(
            "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container"
        ) && err.contains("spec.ephemeralContainers[1].targetContainerName: Not found: \"nope\""),
        "{err}"
    );
}
