//! CustomResourceDefinitions driven by the real kubectl 1.37: a CRD is created and
//! established, its objects are served with every verb, validated, pruned and
//! defaulted against the schema, printed with the CRD's columns, scaled, explained,
//! and deleted with their CRD.

use futures::StreamExt;
use rind_testing::{
    TestServer, fails, kubectl, make_pki, ok, start, start_etcd, start_with, stderr, write,
};
use serde_json::Value;

const CRD_NAME: &str = "crontabs.stable.example.com";

/// The CronTab of the Kubernetes documentation, with the validation, defaulting,
/// printer-column, subresource and category examples of the same pages.
const CRD_YAML: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: CronTab runs an image on a schedule.
        properties:
          spec:
            type: object
            description: What the CronTab runs and when.
            required: [cronSpec]
            properties:
              cronSpec:
                type: string
                description: The schedule in cron format.
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
                default: busybox
              replicas:
                type: integer
                minimum: 1
                maximum: 10
          status:
            type: object
            properties:
              replicas:
                type: integer
              labelSelector:
                type: string
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.labelSelector
    additionalPrinterColumns:
    - name: Spec
      type: string
      description: The cron spec defining the interval a CronJob is run
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Image
      type: string
      priority: 1
      jsonPath: .spec.image
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#;

fn cron_tab(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  cronSpec: '* * * * */5'\n  replicas: 1\n{extra}"
    )
}

async fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(server, &all).await).unwrap()
}

async fn establish(server: &TestServer) {
    let file = write(server.dir.path(), "crd.yaml", CRD_YAML);
    ok(server, &["apply", "-f", &file]).await;
    ok(
        server,
        &[
            "wait",
            "--for=condition=Established",
            &format!("crd/{CRD_NAME}"),
            "--timeout=20s",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn crd_is_established_and_serves_its_objects() {
    let server = start().await;
    establish(&server).await;
    let crd = get_json(&server, &["get", "crd", CRD_NAME]).await;
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab");
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "CronTabList");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));
    assert_eq!(
        crd["metadata"]["finalizers"],
        serde_json::json!(["customresourcecleanup.apiextensions.k8s.io"])
    );

    // Discovery: the short name, the singular and the category all resolve.
    let resources = ok(
        &server,
        &["api-resources", "--api-group=stable.example.com"],
    )
    .await;
    assert!(
        resources.contains("crontabs") && resources.contains("ct"),
        "{resources}"
    );
    let cr = write(server.dir.path(), "a.yaml", &cron_tab("a", ""));
    ok(&server, &["create", "-f", &cr]).await;
    let object = get_json(&server, &["get", "crontab", "a"]).await;
    assert_eq!(object["spec"]["image"], "busybox", "defaulted: {object}");
    assert_eq!(object["metadata"]["generation"], 1);

    // The CRD's columns, with -o wide adding the priority-1 one.
    let table = ok(&server, &["get", "ct"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"]);
    assert!(table.contains("* * * * */5"), "{table}");
    let wide = ok(&server, &["get", "ct", "-o", "wide"]).await;
    assert!(wide.lines().next().unwrap().contains("IMAGE"), "{wide}");
    assert!(wide.contains("busybox"), "{wide}");
    let all = ok(&server, &["get", "all"]).await;
    assert!(all.contains("crontab.stable.example.com/a"), "{all}");

    // Schema validation, as upstream words it.
    let bad = write(
        server.dir.path(),
        "bad.yaml",
        &cron_tab("bad", "").replace("replicas: 1", "replicas: 15"),
    );
    let err = fails(&server, &["create", "-f", &bad]).await;
    assert!(
        err.contains(
            "spec.replicas: Invalid value: 15: spec.replicas in body should be less than or equal to 10"
        ),
        "{err}"
    );
    let missing = write(
        server.dir.path(),
        "missing.yaml",
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: m\nspec:\n  image: x\n",
    );
    let err = fails(&server, &["create", "-f", &missing]).await;
    assert!(err.contains("spec.cronSpec: Required value"), "{err}");

    // Unknown fields: strict validation (kubectl's default) refuses them, and without
    // validation they are pruned.
    let extra = write(
        server.dir.path(),
        "extra.yaml",
        &cron_tab("b", "  bogus: 1\nextraTop: x\n"),
    );
    let err = fails(&server, &["create", "-f", &extra]).await;
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");
    ok(&server, &["create", "--validate=false", "-f", &extra]).await;
    let pruned = get_json(&server, &["get", "ct", "b"]).await;
    assert!(pruned["spec"].get("bogus").is_none() && pruned.get("extraTop").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn status_scale_patches_and_explain() {
    let server = start().await;
    establish(&server).await;
    let cr = write(server.dir.path(), "a.yaml", &cron_tab("a", ""));
    ok(&server, &["apply", "-f", &cr]).await;

    // A status write changes only status, and does not bump the generation.
    ok(
        &server,
        &[
            "patch",
            "ct",
            "a",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":1,"labelSelector":"app=a"},"spec":{"replicas":9}}"#,
        ],
    )
    .await;
    let object = get_json(&server, &["get", "ct", "a"]).await;
    assert_eq!(object["status"]["replicas"], 1);
    assert_eq!(object["spec"]["replicas"], 1);
    assert_eq!(object["metadata"]["generation"], 1);
    // A main write ignores status and bumps the generation.
    ok(
        &server,
        &[
            "patch",
            "ct",
            "a",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":2},"status":{"replicas":7}}"#,
        ],
    )
    .await;
    let object = get_json(&server, &["get", "ct", "a"]).await;
    assert_eq!(object["spec"]["replicas"], 2);
    assert_eq!(object["status"]["replicas"], 1);
    assert_eq!(object["metadata"]["generation"], 2);

    // The scale subresource at the CRD's paths.
    ok(&server, &["scale", "ct/a", "--replicas=3"]).await;
    let object = get_json(&server, &["get", "ct", "a"]).await;
    assert_eq!(object["spec"]["replicas"], 3);
    let raw = ok(
        &server,
        &[
            "get",
            "--raw",
            "/apis/stable.example.com/v1/namespaces/default/crontabs/a/scale",
        ],
    )
    .await;
    let scale: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=a");

    // Strategic merge patches are refused for custom objects; JSON patches work.
    let err = fails(
        &server,
        &[
            "patch",
            "ct",
            "a",
            "--type=strategic",
            "-p",
            r#"{"spec":{"replicas":4}}"#,
        ],
    )
    .await;
    assert!(
        err.contains("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        "{err}"
    );
    ok(
        &server,
        &[
            "patch",
            "ct",
            "a",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
        ],
    )
    .await;
    // Server-side apply owns and changes fields.
    let applied = write(
        server.dir.path(),
        "ssa.yaml",
        &cron_tab("a", "").replace("replicas: 1", "replicas: 5"),
    );
    ok(
        &server,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &applied,
        ],
    )
    .await;
    let object = get_json(&server, &["get", "ct", "a"]).await;
    assert_eq!(object["spec"]["replicas"], 5);

    // kubectl explain finds the schema in /openapi/v3.
    let explained = ok(&server, &["explain", "crontab.spec"]).await;
    assert!(
        explained.contains("What the CronTab runs and when."),
        "{explained}"
    );
    assert!(explained.contains("cronSpec"), "{explained}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn invalid_crds_are_refused_with_upstream_causes() {
    let server = start().await;
    let bad = CRD_YAML
        .replace(
            "name: crontabs.stable.example.com",
            "name: crontab.stable.example.com",
        )
        .replace("    storage: true", "    storage: false");
    let file = write(server.dir.path(), "bad.yaml", &bad);
    let err = fails(&server, &["create", "-f", &file]).await;
    assert!(
        err.contains("metadata.name: Invalid value: \"crontab.stable.example.com\": must be spec.names.plural+\".\"+spec.group"),
        "{err}"
    );
    assert!(
        err.contains("must have exactly one version marked as storage version"),
        "{err}"
    );
    let out = kubectl(&server, &["get", "crontabs"]).await;
    assert!(!out.status.success(), "{}", stderr(&out));
}

/// Watches see custom objects come and go; deleting the CRD deletes them and stops
/// serving the resource.
async fn watch_and_delete_flow(server: &TestServer) {
    establish(server).await;
    let cr = write(server.dir.path(), "a.yaml", &cron_tab("a", ""));
    ok(server, &["create", "-f", &cr]).await;
    let raw = ok(
        server,
        &[
            "get",
            "--raw",
            "/apis/stable.example.com/v1/namespaces/default/crontabs",
        ],
    )
    .await;
    let listed: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(listed["kind"], "CronTabList");
    assert_eq!(listed["items"][0]["metadata"]["name"], "a");
    let rv = listed["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    ok(server, &["label", "ct", "a", "tier=web"]).await;
    let selected = ok(server, &["get", "ct", "-l", "tier=web", "-o", "name"]).await;
    assert_eq!(selected.trim(), "crontab.stable.example.com/a");
    let watched = ok(
        server,
        &[
            "get",
            "--raw",
            &format!(
                "/apis/stable.example.com/v1/namespaces/default/crontabs?watch=1&resourceVersion={rv}&timeoutSeconds=1"
            ),
        ],
    )
    .await;
    let first: Value = serde_json::from_str(watched.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "MODIFIED");
    assert_eq!(first["object"]["metadata"]["labels"]["tier"], "web");

    ok(server, &["delete", "crd", CRD_NAME, "--timeout=20s"]).await;
    let page = server
        .store
        .list("/registry/stable.example.com/crontabs/", None, 0, None)
        .await
        .unwrap();
    assert!(
        page.items.is_empty(),
        "objects left: {:?}",
        page.items.len()
    );
    let out = kubectl(server, &["get", "crontabs"]).await;
    assert!(!out.status.success());
    // kubectl words it by whether its discovery cache still knew the resource.
    let err = stderr(&out);
    assert!(
        err.contains("the server doesn't have a resource type")
            || err.contains("the server could not find the requested resource"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn deleting_a_crd_deletes_its_objects() {
    watch_and_delete_flow(&start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs etcd: e2e/test-all.sh runs it"]
async fn deleting_a_crd_deletes_its_objects_on_etcd() {
    let (_etcd, store) = start_etcd().await;
    let server = start_with(&make_pki(), None, store).await;
    watch_and_delete_flow(&server).await;
}

/// Upstream defaults custom objects when it reads them from storage, not only when
/// they are written: an object stored before its CRD gained a default shows the
/// default on GET, LIST and WATCH without being rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn defaults_added_later_apply_when_objects_are_read() {
    let server = start().await;
    establish(&server).await;
    let file = write(server.dir.path(), "ct.yaml", &cron_tab("early", ""));
    ok(&server, &["create", "-f", &file]).await;
    let stored = get_json(&server, &["get", "ct", "early", "-n", "default"]).await;
    assert!(stored["spec"].get("schedulePolicy").is_none(), "{stored}");
    let rv = stored["metadata"]["resourceVersion"].clone();
    // The CRD gains a defaulted field after the object was stored.
    let patch = r#"[{"op": "add", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/schedulePolicy", "value": {"type": "string", "default": "Forbid"}}]"#;
    ok(
        &server,
        &["patch", "crd", CRD_NAME, "--type=json", "-p", patch],
    )
    .await;
    let read = rind_testing::eventually("GET to show the new default", || async {
        let object = get_json(&server, &["get", "ct", "early", "-n", "default"]).await;
        (object["spec"]["schedulePolicy"] == "Forbid").then_some(object)
    })
    .await;
    // Defaulted on read: the stored object was not rewritten.
    assert_eq!(read["metadata"]["resourceVersion"], rv);
    assert_eq!(read["spec"]["image"], "busybox");
    let listed = get_json(&server, &["get", "ct", "-n", "default"]).await;
    assert_eq!(listed["items"][0]["spec"]["schedulePolicy"], "Forbid");
    // A watch from the start delivers the stored object, defaulted.
    let client = rind_testing::client(&server).await;
    let resource = kube::discovery::ApiResource {
        group: "stable.example.com".into(),
        version: "v1".into(),
        api_version: "stable.example.com/v1".into(),
        kind: "CronTab".into(),
        plural: "crontabs".into(),
    };
    let api: kube::Api<kube::core::DynamicObject> =
        kube::Api::namespaced_with(client, "default", &resource);
    let mut events = api
        .watch(&kube::api::WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    let first = events.next().await.unwrap().unwrap();
    let kube::api::WatchEvent::Added(object) = first else {
        panic!("expected ADDED, got {first:?}");
    };
    assert_eq!(object.data["spec"]["schedulePolicy"], "Forbid");
    // The bytes in the store still lack it.
    let kv = server
        .store
        .get("/registry/stable.example.com/crontabs/default/early")
        .await
        .unwrap()
        .unwrap();
    let raw: Value = serde_json::from_slice(&kv.value).unwrap();
    assert!(raw["spec"].get("schedulePolicy").is_none(), "{raw}");
}
