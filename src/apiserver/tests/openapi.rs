//! `/openapi/v3`, `fieldValidation` and body limits, driven by the real kubectl 1.37:
//! `explain` reads the schemas, `apply|create -f` leave validation to the server.

use rind_testing::{TestServer, fails, kubectl, ok, start, stderr, write};

const POD_WITH_UNKNOWN_FIELD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: odd\n  namespace: default\nspec:\n  foo: bar\n  containers:\n  - name: c\n    image: busybox\n    imagee: typo\n";

/// The stored JSON of a pod, straight from the store.
async fn stored_pod(server: &TestServer, name: &str) -> serde_json::Value {
    let kv = server
        .store
        .get(&format!("/registry/pods/default/{name}"))
        .await
        .unwrap()
        .expect("pod is stored");
    serde_json::from_slice(&kv.value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn unknown_fields_follow_field_validation() {
    let server = start().await;
    let file = write(server.dir.path(), "odd.yaml", POD_WITH_UNKNOWN_FIELD);

    // kubectl's default validation is Strict, left to the server.
    let err = fails(&server, &["apply", "-f", &file]).await;
    assert!(
        err.contains("Error from server (BadRequest): error when creating")
            && err.contains(
                "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagee\", unknown field \"spec.foo\""
            ),
        "{err}"
    );
    let err = fails(&server, &["create", "-f", &file]).await;
    assert!(err.contains("strict decoding error"), "{err}");

    // --validate=false sends Ignore: created, the unknown fields dropped.
    ok(&server, &["create", "-f", &file, "--validate=false"]).await;
    let pod = stored_pod(&server, "odd").await;
    assert!(pod["spec"].get("foo").is_none(), "{pod}");
    assert!(
        pod["spec"]["containers"][0].get("imagee").is_none(),
        "{pod}"
    );
    assert_eq!(pod["spec"]["containers"][0]["image"], "busybox");

    // --validate=warn: the server's Warning headers are printed, the write succeeds.
    let out = kubectl(&server, &["replace", "-f", &file, "--validate=warn"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: unknown field \"spec.foo\""),
        "{}",
        stderr(&out)
    );

    // Applying onto the existing pod patches it; a patch adding unknown fields is
    // an invalid patch under Strict.
    let err = fails(&server, &["apply", "-f", &file]).await;
    assert!(
        err.contains("strict decoding error: unknown field \"spec.containers[0].imagee\", unknown field \"spec.foo\""),
        "{err}"
    );
    let pod = stored_pod(&server, "odd").await;
    assert!(pod["spec"].get("foo").is_none(), "{pod}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn explain_prints_upstream_descriptions() {
    let server = start().await;
    let out = ok(&server, &["explain", "pods.spec.containers.image"]).await;
    assert!(out.contains("KIND:       Pod"), "{out}");
    assert!(out.contains("FIELD: image <string>"), "{out}");
    assert!(out.contains("Container image name."), "{out}");

    let out = ok(&server, &["explain", "pods.spec.containers"]).await;
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    assert!(out.contains("name\t<string> -required-"), "{out}");
    assert!(out.contains("resources\t<ResourceRequirements>"), "{out}");

    let out = ok(
        &server,
        &["explain", "deployment.spec.strategy", "--recursive"],
    )
    .await;
    assert!(out.contains("GROUP:      apps"), "{out}");
    assert!(
        out.contains("FIELD: strategy <DeploymentStrategy>"),
        "{out}"
    );
    assert!(
        out.contains("DeploymentStrategy describes how to replace existing pods with new ones."),
        "{out}"
    );
    assert!(out.contains("    maxSurge\t<IntOrString>"), "{out}");

    let out = ok(&server, &["explain", "configmap", "--recursive"]).await;
    assert!(out.contains("binaryData\t<map[string]string>"), "{out}");
    assert!(out.contains("ownerReferences\t<[]OwnerReference>"), "{out}");
}

/// `kubectl create --raw` of the body in `file` as a ConfigMap in `default`: the bytes
/// reach the server as they are (kubectl decodes a `-f` file itself otherwise); returns
/// kubectl's error output.
async fn post_config_map_raw(server: &TestServer, file: &str) -> String {
    let path = "/api/v1/namespaces/default/configmaps";
    fails(server, &["create", "--raw", path, "-f", file]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn oversized_and_malformed_bodies_are_client_errors() {
    let server = start().await;
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\n  namespace: default\ndata:\n  blob: {}\n",
        "x".repeat(4 * 1024 * 1024)
    );
    let file = write(server.dir.path(), "big.yaml", &big);
    let err = fails(&server, &["create", "-f", &file]).await;
    assert!(
        err.contains("Error from server (RequestEntityTooLarge)")
            && err.contains("Request entity too large: limit is 3145728"),
        "{err}"
    );

    let bad = write(server.dir.path(), "bad.json", "{\"kind\": \"ConfigMap\", ");
    let err = post_config_map_raw(&server, &bad).await;
    assert!(err.contains("Error from server (BadRequest)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn every_served_resource_can_be_explained() {
    let server = start().await;
    for r in rind_api::registry::Registry::default().all() {
        let out = ok(
            &server,
            &["explain", r.plural, "--api-version", &r.api_version()],
        )
        .await;
        assert!(out.contains(&format!("KIND:       {}", r.kind)), "{out}");
        assert!(out.contains("metadata\t<ObjectMeta>"), "{out}");
    }
}

/// Kinds without a `patch` operation (the reviews) are validated by kubectl itself
/// against `/openapi/v2`: a well-formed review is sent, a misspelt field is refused
/// before anything reaches the server, naming the field and its definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn create_only_kinds_are_validated_against_openapi_v2() {
    let server = start().await;
    let review = |spec: &str| {
        format!("apiVersion: authorization.k8s.io/v1\nkind: SelfSubjectAccessReview\nspec:\n{spec}")
    };
    let good = write(
        server.dir.path(),
        "review.yaml",
        &review("  resourceAttributes:\n    verb: list\n    resource: pods\n"),
    );
    let out = ok(&server, &["create", "-f", &good, "-o", "json"]).await;
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["status"]["allowed"], true, "{answer}");

    let bad = write(
        server.dir.path(),
        "bad-review.yaml",
        &review("  resourceAttributes:\n    verb: list\n    resourse: pods\n"),
    );
    let err = fails(&server, &["create", "-f", &bad]).await;
    assert!(
        err.contains("unknown field \"resourse\"")
            && err.contains("io.k8s.api.authorization.v1.ResourceAttributes")
            && err.contains("--validate=false"),
        "{err}"
    );

    // The same document in JSON for clients that ask for it.
    let raw = ok(&server, &["get", "--raw", "/openapi/v2"]).await;
    let doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(doc["swagger"], "2.0");
    assert!(doc["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
}

/// An apply that would create an object from a body that is not one (a YAML scalar)
/// is a bad request, and the server goes on answering: it used to panic there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn apply_creating_from_a_scalar_is_a_bad_request() {
    let server = start().await;
    let client = rind_testing::client(&server).await;
    for path in [
        "/api/v1/namespaces/default/configmaps/absent?fieldManager=m",
        "/api/v1/persistentvolumes/absent?fieldManager=m&force=true",
    ] {
        let request = http::Request::patch(path)
            .header("content-type", "application/apply-patch+yaml")
            .body(b"apiV".to_vec())
            .unwrap();
        let err = client.request_text(request).await.unwrap_err();
        match err {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 400, "{status:?}");
                assert!(
                    status.message.contains("must be a JSON object"),
                    "{status:?}"
                );
            }
            other => panic!("{path}: {other}"),
        }
    }
    ok(&server, &["get", "configmaps", "-n", "default"]).await;
}

/// A value its field's type cannot take is refused with the decoder's words, in a body
/// (400, whatever fieldValidation says) and in a patch (422 on `patch`); what was
/// stored stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kubectl 1.37: e2e/test-all.sh runs it"]
async fn values_of_the_wrong_type_are_refused() {
    let server = start().await;
    let dir = server.dir.path();
    let file = write(
        dir,
        "cm.json",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typed", "labels": {"a": 1}}}"#,
    );
    let err = post_config_map_raw(&server, &file).await;
    assert!(
        err.contains("Error from server (BadRequest)")
            && err.contains("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
        "{err}"
    );
    ok(
        &server,
        &["create", "configmap", "typed", "--from-literal=k=v"],
    )
    .await;
    for (kind, patch) in [
        ("merge", r#"{"metadata":{"labels":"1"}}"#),
        ("strategic", r#"{"data":{"k":["v"]}}"#),
        ("json", r#"[{"op":"replace","path":"/data","value":"v"}]"#),
    ] {
        let err = fails(
            &server,
            &["patch", "configmap", "typed", "--type", kind, "-p", patch],
        )
        .await;
        assert!(
            err.contains("The ConfigMap \"typed\" is invalid: patch: Invalid value")
                && err.contains("json: cannot unmarshal"),
            "{kind}: {err}"
        );
    }
    // A JSON patch that copies a value of another type into a field is refused too.
    let err = fails(
        &server,
        &[
            "patch",
            "configmap",
            "typed",
            "--type",
            "json",
            "-p",
            r#"[{"op":"copy","from":"/metadata/name","path":"/data"}]"#,
        ],
    )
    .await;
    assert!(
        err.contains("Error from server (BadRequest)")
            && err.contains("cannot unmarshal string into Go struct field ConfigMap.data of type map[string]string"),
        "{err}"
    );
    let out = ok(&server, &["get", "configmap", "typed", "-o", "json"]).await;
    let stored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stored["data"], serde_json::json!({"k": "v"}));
    assert!(stored["metadata"].get("labels").is_none(), "{stored}");
}
