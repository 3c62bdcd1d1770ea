//! What real clients see, byte for byte: error `Status` bodies and objects as GET
//! returns them, against upstream's own bytes (each expected body cites where it comes
//! from). Values that differ by nature — uid, resourceVersion, timestamps — are taken
//! from the answer and put into upstream's layout, which must then match exactly.

use rind_testing::{TestServer, client, start};
use serde_json::Value;

/// One request as the wire carries it: status code and body, unparsed.
async fn raw(
    server: &TestServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let client = client(server).await;
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Go's indented JSON (as upstream's tests and docs show it) without the indentation.
fn compact(indented: &str) -> String {
    let mut out = String::with_capacity(indented.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in indented.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

fn at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut v = value;
    for key in path {
        v = match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[*key],
        };
    }
    v.as_str().unwrap_or_else(|| panic!("{path:?} in {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_are_upstreams_bytes() {
    let server = start().await;

    // kubernetes/community contributors/devel/sig-architecture/api-conventions.md,
    // "Response Status Kind": the 404 body of GET .../namespaces/default/pods/grafana.
    let (code, body) = raw(
        &server,
        "GET",
        "/api/v1/namespaces/default/pods/grafana",
        "",
        "",
    )
    .await;
    assert_eq!(code, 404);
    let upstream = r#"{
      "kind": "Status",
      "apiVersion": "v1",
      "metadata": {},
      "status": "Failure",
      "message": "pods \"grafana\" not found",
      "reason": "NotFound",
      "details": {
        "name": "grafana",
        "kind": "pods"
      },
      "code": 404
    }"#;
    assert_eq!(body, compact(upstream) + "\n");

    // kubernetes-client/python kubernetes/e2e_test/test_utils.py,
    // test_create_from_multi_resource_yaml_with_conflict and
    // ..._with_multi_conflicts: the 409 bodies a real API server sent for a service and
    // a deployment created twice (the client prints them after "(Conflict): ").
    let service = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"mock-2"},"spec":{"ports":[{"port":99}],"selector":{"app":"mock-2"}}}"#;
    let path = "/api/v1/namespaces/default/services";
    assert_eq!(
        raw(&server, "POST", path, "application/json", service)
            .await
            .0,
        201
    );
    let (code, body) = raw(&server, "POST", path, "application/json", service).await;
    assert_eq!(code, 409);
    assert_eq!(
        body,
        concat!(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
            r#""message":"services \"mock-2\" already exists","reason":"AlreadyExists","#,
            r#""details":{"name":"mock-2","kind":"services"},"code":409}"#,
            "\n"
        )
    );
    let deployment = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"triple-nginx"},
        "spec":{"selector":{"matchLabels":{"app":"nginx"}},"template":{"metadata":{"labels":{"app":"nginx"}},
        "spec":{"containers":[{"name":"nginx","image":"nginx:1.15.4"}]}}}}"#;
    let path = "/apis/apps/v1/namespaces/default/deployments";
    assert_eq!(
        raw(&server, "POST", path, "application/json", deployment)
            .await
            .0,
        201
    );
    let (code, body) = raw(&server, "POST", path, "application/json", deployment).await;
    assert_eq!(code, 409);
    assert_eq!(
        body,
        concat!(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
            r#""message":"deployments.apps \"triple-nginx\" already exists","reason":"AlreadyExists","#,
            r#""details":{"name":"triple-nginx","group":"apps","kind":"deployments"},"code":409}"#,
            "\n"
        )
    );

    // A 422 with causes. Upstream's NewInvalid (k8s.io/apimachinery pkg/api/errors)
    // names the kind (not the resource) in details and the message, joins several
    // causes in brackets, and its StatusCause writes reason, message, field.
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"},{"name":"d","image":"i","imagePullPolicy":"Sometimes"}]}}"#;
    let (code, body) = raw(
        &server,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        pod,
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        body,
        concat!(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
            r#""message":"Pod \"p\" is invalid: [spec.containers[0].image: Required value, "#,
            r#"spec.containers[1].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"]","#,
            r#""reason":"Invalid","details":{"name":"p","kind":"Pod","causes":["#,
            r#"{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers[0].image"},"#,
            r#"{"reason":"FieldValueNotSupported","message":"Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"","field":"spec.containers[1].imagePullPolicy"}]},"#,
            r#""code":422}"#,
            "\n"
        )
    );
}

// kubernetes/kubernetes test/integration/apiserver/apply/apply_test.go,
// TestApplyManagedFields: a ConfigMap created by server-side apply (manager
// apply_test), then merge-patched twice by `updater`, read back with GET. Upstream's
// test decodes the answer into the typed ConfigMap, which drops `kind` and
// `apiVersion`, and indents it; on the wire TypeMeta's two fields come first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_read_back_is_upstreams_bytes() {
    let server = start().await;
    let path = "/api/v1/namespaces/default/configmaps/test-cm";
    let apply = r#"{
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "test-cm",
            "namespace": "default",
            "labels": {
                "test-label": "test"
            }
        },
        "data": {
            "key": "value"
        }
    }"#;
    let applied = raw(
        &server,
        "PATCH",
        &format!("{path}?fieldManager=apply_test"),
        "application/apply-patch+yaml",
        apply,
    )
    .await;
    assert_eq!(applied.0, 201, "{}", applied.1);
    for patch in [
        r#"{"data":{"new-key": "value"}}"#,
        r#"{"data":{"key": "new value"}}"#,
    ] {
        let patched = raw(
            &server,
            "PATCH",
            &format!("{path}?fieldManager=updater"),
            "application/merge-patch+json",
            patch,
        )
        .await;
        assert_eq!(patched.0, 200, "{}", patched.1);
    }
    let (code, body) = raw(&server, "GET", path, "", "").await;
    assert_eq!(code, 200);
    let got: Value = serde_json::from_str(&body).unwrap();
    let expected = format!(
        r#"{{
		"metadata": {{
			"name": "test-cm",
			"namespace": "default",
			"uid": "{uid}",
			"resourceVersion": "{rv}",
			"creationTimestamp": "{created}",
			"labels": {{
				"test-label": "test"
			}},
			"managedFields": [
				{{
					"manager": "apply_test",
					"operation": "Apply",
					"apiVersion": "v1",
					"time": "{applied}",
					"fieldsType": "FieldsV1",
					"fieldsV1": {{
						"f:metadata": {{
							"f:labels": {{
								"f:test-label": {{}}
							}}
						}}
					}}
				}},
				{{
					"manager": "updater",
					"operation": "Update",
					"apiVersion": "v1",
					"time": "{updated}",
					"fieldsType": "FieldsV1",
					"fieldsV1": {{
						"f:data": {{
							"f:key": {{}},
							"f:new-key": {{}}
						}}
					}}
				}}
			]
		}},
		"data": {{
			"key": "new value",
			"new-key": "value"
		}}
	}}"#,
        uid = at(&got, &["metadata", "uid"]),
        rv = at(&got, &["metadata", "resourceVersion"]),
        created = at(&got, &["metadata", "creationTimestamp"]),
        applied = at(&got, &["metadata", "managedFields", "0", "time"]),
        updated = at(&got, &["metadata", "managedFields", "1", "time"]),
    );
    let wire = format!(
        "{{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",{}\n",
        &compact(&expected)[1..]
    );
    assert_eq!(body, wire);

    // The same object everywhere it leaves the server, in the same layout: stored
    // (less its resourceVersion, which is the key's revision), as a list item (typed
    // lists carry no kind/apiVersion per item), as a watch event (`type` first).
    let object = body.trim_end();
    let kv = server
        .store
        .get("/registry/configmaps/default/test-cm")
        .await
        .unwrap()
        .unwrap();
    let rv = at(&got, &["metadata", "resourceVersion"]);
    assert_eq!(
        String::from_utf8(kv.value).unwrap(),
        object.replace(&format!("\"resourceVersion\":\"{rv}\","), "")
    );
    let (code, list) = raw(
        &server,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        "",
        "",
    )
    .await;
    assert_eq!(code, 200);
    let item = object.replacen(r#""kind":"ConfigMap","apiVersion":"v1","#, "", 1);
    let listed: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        list,
        format!(
            "{{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":{{\"resourceVersion\":\"{}\"}},\"items\":[{item}]}}\n",
            at(&listed, &["metadata", "resourceVersion"])
        )
    );
    let line = first_watch_line(&server, "/api/v1/namespaces/default/configmaps?watch=true").await;
    assert_eq!(
        line,
        format!("{{\"type\":\"ADDED\",\"object\":{object}}}\n")
    );
    // Upstream compares the bytes it would store: a PUT that differs from the stored
    // object only in what Go's encoding drops (an empty map under `omitempty`) writes
    // nothing and keeps the resourceVersion.
    let mut same = got.clone();
    same["binaryData"] = serde_json::json!({});
    let (code, answer) = raw(
        &server,
        "PUT",
        &format!("{path}?fieldManager=updater"),
        "application/json",
        &same.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer, body);
}

/// The first event line of a watch stream.
async fn first_watch_line(server: &TestServer, path: &str) -> String {
    use http_body_util::BodyExt;
    let client = client(server).await;
    let request = http::Request::builder()
        .uri(path)
        .body(kube::client::Body::empty())
        .unwrap();
    let mut body = client.send(request).await.unwrap().into_body();
    let mut seen = Vec::new();
    while !seen.contains(&b'\n') {
        let frame = body.frame().await.expect("the stream ended").unwrap();
        if let Ok(data) = frame.into_data() {
            seen.extend_from_slice(&data);
        }
    }
    let end = seen.iter().position(|&b| b == b'\n').unwrap();
    String::from_utf8(seen[..=end].to_vec()).unwrap()
}

// A pod as `kubectl create` makes it, read back with GET, in the layout and with the
// defaults upstream's API server gives it (what kubectl 1.37 and kube-apiserver 1.37
// send and store): `generation` 1 (the pod strategy's PrepareForCreate, k8s.io/kubernetes
// pkg/registry/core/pod/strategy.go), container and pod defaults (k8s.io/kubernetes pkg/apis/core/v1
// defaults.go: resources, terminationMessagePath/Policy, imagePullPolicy,
// restartPolicy, terminationGracePeriodSeconds, dnsPolicy, securityContext,
// schedulerName, enableServiceLinks), the Priority admission plugin (priority,
// preemptionPolicy), DefaultTolerationSeconds (the two NoExecute tolerations) and the
// managedFields upstream records for the creating manager. The ServiceAccount
// admission plugin is left out, as upstream's own integration-test servers run
// without it (kubernetes/kubernetes test/integration/framework:
// DefaultTestServerFlags disables it): rind mounts no service account tokens yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_read_back_is_upstreams_bytes() {
    let server = start().await;
    let pod = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web","namespace":"default"},"spec":{"containers":[{"name":"web","image":"busybox:1.36"}]}}"#;
    let created = raw(
        &server,
        "POST",
        "/api/v1/namespaces/default/pods?fieldManager=kubectl-create",
        "application/json",
        pod,
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let (code, body) = raw(
        &server,
        "GET",
        "/api/v1/namespaces/default/pods/web",
        "",
        "",
    )
    .await;
    assert_eq!(code, 200);
    let got: Value = serde_json::from_str(&body).unwrap();
    let expected = format!(
        concat!(
            r#"{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"web","namespace":"default","#,
            r#""uid":"{uid}","resourceVersion":"{rv}","generation":1,"creationTimestamp":"{created}","#,
            r#""managedFields":[{{"manager":"kubectl-create","operation":"Update","apiVersion":"v1","#,
            r#""time":"{time}","fieldsType":"FieldsV1","fieldsV1":{{"f:spec":{{"f:containers":{{"#,
            r#""k:{{\"name\":\"web\"}}":{{".":{{}},"f:image":{{}},"f:imagePullPolicy":{{}},"f:name":{{}},"#,
            r#""f:resources":{{}},"f:terminationMessagePath":{{}},"f:terminationMessagePolicy":{{}}}}}},"#,
            r#""f:dnsPolicy":{{}},"f:enableServiceLinks":{{}},"f:restartPolicy":{{}},"f:schedulerName":{{}},"#,
            r#""f:securityContext":{{}},"f:terminationGracePeriodSeconds":{{}}}}}}}}]}},"#,
            r#""spec":{{"containers":[{{"name":"web","image":"busybox:1.36","resources":{{}},"#,
            r#""terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","#,
            r#""imagePullPolicy":"IfNotPresent"}}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"#,
            r#""dnsPolicy":"ClusterFirst","securityContext":{{}},"schedulerName":"default-scheduler","#,
            r#""tolerations":[{{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}},"#,
            r#"{{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}}],"#,
            r#""priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority"}},"#,
            r#""status":{{"phase":"Pending","qosClass":"BestEffort"}}}}"#,
            "\n"
        ),
        uid = at(&got, &["metadata", "uid"]),
        rv = at(&got, &["metadata", "resourceVersion"]),
        created = at(&got, &["metadata", "creationTimestamp"]),
        time = at(&got, &["metadata", "managedFields", "0", "time"]),
    );
    assert_eq!(body, expected);

    // A PUT of the object as read writes nothing: same resourceVersion, same bytes. So
    // does one adding only what Go cannot tell from unset (empty maps and lists under
    // `omitempty`, false): upstream decodes both into the same struct.
    let rv = at(&got, &["metadata", "resourceVersion"]).to_string();
    let mut same = got.clone();
    same["spec"]["nodeSelector"] = serde_json::json!({});
    same["spec"]["hostNetwork"] = serde_json::json!(false);
    same["spec"]["containers"][0]["args"] = serde_json::json!([]);
    same["metadata"]["labels"] = serde_json::json!({});
    for object in [got.clone(), same] {
        let (code, answer) = raw(
            &server,
            "PUT",
            "/api/v1/namespaces/default/pods/web?fieldManager=kubectl-create",
            "application/json",
            &object.to_string(),
        )
        .await;
        assert_eq!(code, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            at(&answer, &["metadata", "resourceVersion"]),
            rv,
            "{answer}"
        );
    }
    let (_, again) = raw(
        &server,
        "GET",
        "/api/v1/namespaces/default/pods/web",
        "",
        "",
    )
    .await;
    assert_eq!(again, body);
}
