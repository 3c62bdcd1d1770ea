use super::*;
use serde_json::json;

fn text(value: &Value) -> String {
    String::from_utf8(to_vec(value)).unwrap()
}

/// Go's indented JSON with the indentation taken out: what its compact encoder wrote.
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

// kubernetes/api testdata/HEAD (v0.37.0-beta.0): upstream's round-trip fixtures, each
// kind with every field set, as Go's JSON encoder writes them (indented there). Read
// into a `Value` (keys sorted) and written back, every field must return to its place.
#[test]
fn fully_populated_fixtures_come_back_in_go_order() {
    for (name, fixture) in [
        ("core.v1.Pod", include_str!("testdata/core.v1.Pod.json")),
        (
            "core.v1.ConfigMap",
            include_str!("testdata/core.v1.ConfigMap.json"),
        ),
        (
            "core.v1.Service",
            include_str!("testdata/core.v1.Service.json"),
        ),
        (
            "apps.v1.Deployment",
            include_str!("testdata/apps.v1.Deployment.json"),
        ),
        (
            "apps.v1.StatefulSet",
            include_str!("testdata/apps.v1.StatefulSet.json"),
        ),
    ] {
        let value: Value = serde_json::from_str(fixture).unwrap();
        let want = compact(fixture);
        let got = text(&value);
        let at = want
            .bytes()
            .zip(got.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(got.len()));
        assert!(
            got == want,
            "{name} differs at byte {at}:\n want …{}\n  got …{}",
            &want[at.saturating_sub(80)..(at + 80).min(want.len())],
            &got[at.saturating_sub(80)..(at + 80).min(got.len())]
        );
    }
}

// The JSON body client-go's typed client sends for `&corev1.Pod{ObjectMeta:
// {Name: "snorlax"}}` (kubernetes/kubernetes
// staging/src/k8s.io/client-go, test TestClientContentType): unset value structs are
// written with their own non-omitempty fields (`"spec":{"containers":null}`,
// `"status":{}`). 1.37's ObjectMeta marks creationTimestamp `omitzero`, so the
// `"creationTimestamp":null` of older releases is gone.
#[test]
fn a_bare_pod_is_written_as_go_writes_the_zero_pod() {
    let pod = json!({"metadata": {"name": "snorlax"}, "apiVersion": "v1", "kind": "Pod"});
    assert_eq!(
        text(&pod),
        r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"snorlax"},"spec":{"containers":null},"status":{}}"#
    );
    let scale =
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "snorlax"}});
    assert_eq!(
        text(&scale),
        r#"{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":"snorlax"},"spec":{},"status":{"replicas":0}}"#
    );
}

#[test]
fn pod_fields_follow_omitempty() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "d", "labels": {}, "creationTimestamp": null,
                     "generation": 0, "uid": "u"},
        "spec": {
            "hostNetwork": false,
            "nodeSelector": {},
            "containers": [{"image": "busybox", "name": "c", "args": [],
                            "ports": [{"containerPort": 80}],
                            "readinessProbe": {"httpGet": {"port": "http"}, "periodSeconds": 0}}],
            "securityContext": {},
            "priority": 0,
            "enableServiceLinks": false,
            "volumes": [{"name": "v", "emptyDir": {}}]
        },
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    });
    assert_eq!(
        text(&pod),
        concat!(
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"d","uid":"u"},"#,
            r#""spec":{"volumes":[{"name":"v","emptyDir":{}}],"#,
            r#""containers":[{"name":"c","image":"busybox","ports":[{"containerPort":80}],"resources":{},"#,
            r#""readinessProbe":{"httpGet":{"port":"http"}}}],"#,
            // Pointers that are set stay, even when they point at a zero.
            r#""securityContext":{},"priority":0,"enableServiceLinks":false},"#,
            r#""status":{"phase":"Pending","conditions":[{"type":"PodScheduled","status":"True","lastProbeTime":null,"lastTransitionTime":null}]}}"#
        )
    );
}

#[test]
fn workloads_carry_their_zero_status() {
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "a"}},
                 "template": {"metadata": {"labels": {"app": "a"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    assert_eq!(
        text(&deployment),
        concat!(
            r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"d"},"#,
            r#""spec":{"replicas":1,"selector":{"matchLabels":{"app":"a"}},"#,
            r#""template":{"metadata":{"labels":{"app":"a"}},"spec":{"containers":[{"name":"c","image":"i","resources":{}}]}},"#,
            r#""strategy":{}},"status":{}}"#
        )
    );
    let statefulset = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "s"}, "spec": {"serviceName": "s"}});
    assert_eq!(
        text(&statefulset),
        concat!(
            r#"{"kind":"StatefulSet","apiVersion":"apps/v1","metadata":{"name":"s"},"#,
            r#""spec":{"selector":null,"template":{"metadata":{},"spec":{"containers":null}},"#,
            r#""serviceName":"s","updateStrategy":{}},"status":{"replicas":0,"availableReplicas":0}}"#
        )
    );
}

#[test]
fn services_and_config_maps_follow_their_structs() {
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "d"},
        "spec": {"type": "ClusterIP", "selector": {"app": "web"},
                 "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080, "name": "http"}],
                 "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "sessionAffinity": "None", "ipFamilies": ["IPv4"],
                 "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}});
    assert_eq!(
        text(&service),
        concat!(
            r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"web","namespace":"d"},"#,
            r#""spec":{"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080}],"#,
            r#""selector":{"app":"web"},"clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],"#,
            r#""type":"ClusterIP","sessionAffinity":"None","ipFamilies":["IPv4"],"#,
            r#""ipFamilyPolicy":"SingleStack","internalTrafficPolicy":"Cluster"},"#,
            r#""status":{"loadBalancer":{}}}"#
        )
    );
    // A port without targetPort: IntOrString is a struct, so its zero (0) is written.
    let bare = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}]}});
    assert_eq!(
        text(&bare),
        r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"s"},"spec":{"ports":[{"port":80,"targetPort":0}]},"status":{"loadBalancer":{}}}"#
    );
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c"}, "data": {"b": "2", "a": "<1>"}, "binaryData": {},
        "immutable": false});
    assert_eq!(
        text(&config_map),
        r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c"},"immutable":false,"data":{"a":"\u003c1\u003e","b":"2"}}"#
    );
}

#[test]
fn built_in_list_items_carry_no_type_metadata() {
    let list = json!({"apiVersion": "v1", "kind": "ConfigMapList",
        "metadata": {"resourceVersion": "9", "continue": ""},
        "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
                  {"metadata": {"name": "b"}, "data": {"k": "v"}}]});
    assert_eq!(
        text(&list),
        r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"},"data":{"k":"v"}}]}"#
    );
    // Metadata-only lists label every item, as upstream's do.
    let partial = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
        "metadata": {}, "items": [{"apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata", "metadata": {"name": "a"}}]});
    assert_eq!(
        text(&partial),
        r#"{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{},"items":[{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"a"}}]}"#
    );
    let empty =
        json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": []});
    assert_eq!(
        text(&empty),
        r#"{"kind":"DeploymentList","apiVersion":"apps/v1","metadata":{},"items":[]}"#
    );
}

#[test]
fn watch_events_put_the_type_first() {
    let pod = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "5"}});
    assert_eq!(
        String::from_utf8(watch_event("BOOKMARK", &pod)).unwrap(),
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"5\"},\"spec\":{\"containers\":null},\"status\":{}}}\n"
    );
    assert_eq!(
        String::from_utf8(watch_event_raw("ADDED", b"{\"a\":1}")).unwrap(),
        "{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n"
    );
}

#[test]
fn tables_write_rows_as_upstream() {
    let table = json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table",
        "metadata": {"resourceVersion": "3"},
        "columnDefinitions": [{"name": "Name", "type": "string", "format": "name",
                               "description": "d", "priority": 0}],
        "rows": [{"cells": ["a", 1, 0.5]},
                 {"cells": ["b"], "object": {"apiVersion": "meta.k8s.io/v1",
                     "kind": "PartialObjectMetadata", "metadata": {"name": "b"}}}]});
    assert_eq!(
        text(&table),
        concat!(
            r#"{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"3"},"#,
            r#""columnDefinitions":[{"name":"Name","type":"string","format":"name","description":"d","priority":0}],"#,
            r#""rows":[{"cells":["a",1,0.5],"object":null},"#,
            r#"{"cells":["b"],"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"b"}}}]}"#
        )
    );
}

// Upstream keeps custom resources as unstructured maps, which Go writes with sorted
// keys (apimachinery's unstructuredJSONScheme encodes the map; its list encoder sorts
// the list's keys too).
#[test]
fn custom_resources_keep_sorted_keys() {
    let object = json!({"kind": "CronTab", "apiVersion": "stable.example.com/v1",
        "metadata": {"uid": "u", "name": "c"}, "spec": {"z": 1, "a": "x&y"}});
    let sorted = r#"{"apiVersion":"stable.example.com/v1","kind":"CronTab","metadata":{"name":"c","uid":"u"},"spec":{"a":"x\u0026y","z":1}}"#;
    assert_eq!(text(&object), sorted);
    assert_eq!(String::from_utf8(to_vec_sorted(&object)).unwrap(), sorted);
    // Even one whose kind shares a built-in's name, in its own group.
    let lookalike =
        json!({"kind": "Pod", "apiVersion": "example.com/v1", "metadata": {"name": "p"}});
    assert_eq!(
        text(&lookalike),
        r#"{"apiVersion":"example.com/v1","kind":"Pod","metadata":{"name":"p"}}"#
    );
}

#[test]
fn unknown_fields_follow_the_known_ones_sorted() {
    let object = json!({"kind": "ConfigMap", "apiVersion": "v1", "zz": 1, "metadata": {"name": "c", "extra": true}, "aa": 2});
    assert_eq!(
        text(&object),
        r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","extra":true},"aa":2,"zz":1}"#
    );
}

#[test]
fn stored_bytes_leave_out_only_the_resource_version() {
    let object = json!({"kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "c", "resourceVersion": "12", "labels": {"resourceVersion": "kept"}},
        "data": {"resourceVersion": "kept too"}});
    assert_eq!(
        String::from_utf8(to_stored(&object)).unwrap(),
        r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","labels":{"resourceVersion":"kept"}},"data":{"resourceVersion":"kept too"}}"#
    );
    assert_eq!(
        text(&object),
        r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","resourceVersion":"12","labels":{"resourceVersion":"kept"}},"data":{"resourceVersion":"kept too"}}"#
    );
}

#[test]
fn strings_and_numbers_are_written_as_go_does() {
    let value = json!({"s": "a<b>&c\u{2028}\u{2029}\"\\\n\u{1f}é", "f": [1.0, 0.5, 1e21, 1.5e-7, 123456789.0, -0.0, 1e-6], "i": [-3, 18446744073709551615u64]});
    assert_eq!(
        text(&value),
        r#"{"f":[1,0.5,1e+21,1.5e-7,123456789,-0,0.000001],"i":[-3,18446744073709551615],"s":"a\u003cb\u003e\u0026c\u2028\u2029\"\\\n\u001fé"}"#
    );
}

#[test]
fn custom_resource_definitions_follow_their_schema_structs() {
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
                 "names": {"plural": "crontabs", "kind": "CronTab"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                         "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                  "properties": {"z": {"type": "integer", "default": 5},
                                                 "a": {"type": "array", "items": {"type": "string"}}}}}}}}]}});
    assert_eq!(
        text(&crd),
        concat!(
            r#"{"kind":"CustomResourceDefinition","apiVersion":"apiextensions.k8s.io/v1","#,
            r#""metadata":{"name":"crontabs.stable.example.com"},"spec":{"group":"stable.example.com","#,
            r#""names":{"plural":"crontabs","kind":"CronTab"},"scope":"Namespaced","#,
            r#""versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"#,
            r#""type":"object","properties":{"spec":{"type":"object","properties":{"#,
            r#""a":{"type":"array","items":{"type":"string"}},"z":{"type":"integer","default":5}},"#,
            r#""x-kubernetes-preserve-unknown-fields":true}}}}}]},"#,
            r#""status":{"conditions":null,"acceptedNames":{"plural":"","kind":""},"storedVersions":null}}"#
        )
    );
}

#[test]
fn what_go_would_omit_is_dropped_from_built_in_objects() {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {}, "generateName": "", "annotations": {"a": ""}},
        "spec": {"hostNetwork": false, "nodeSelector": {}, "priority": 0, "securityContext": {},
                 "containers": [{"name": "c", "args": [], "resources": {}, "stdin": false,
                                 "env": [{"name": "E", "value": ""}]}]},
        "status": {"phase": null}});
    drop_omitted(&mut pod);
    assert_eq!(
        pod,
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {"a": ""}},
            // Pointers that are set (priority, securityContext) and structs stay.
            "spec": {"priority": 0, "securityContext": {},
                     "containers": [{"name": "c", "resources": {}, "env": [{"name": "E"}]}]},
            "status": {}})
    );
    let mut custom = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"x": {}}});
    let before = custom.clone();
    drop_omitted(&mut custom);
    assert_eq!(custom, before);
}

#[test]
fn zero_objects_are_gos_zero_structs() {
    assert_eq!(
        zero_of("v1", "Pod").unwrap(),
        json!({"metadata": {}, "spec": {"containers": null}, "status": {}})
    );
    assert_eq!(zero_of("v1", "ConfigMap").unwrap(), json!({"metadata": {}}));
    assert!(zero_of("example.com/v1", "Widget").is_none());
}

// Every built-in resource rind serves is written through its Go struct (and stored
// without its resourceVersion): none falls back to sorted keys.
#[test]
fn every_served_kind_has_its_struct() {
    let registry = crate::registry::Registry::default();
    for resource in registry.all() {
        assert!(
            table::kind(&resource.api_version(), resource.kind).is_some(),
            "{} {}",
            resource.api_version(),
            resource.kind
        );
        for sub in resource.subresources {
            let api_version = match sub.group_version {
                Some(("", version)) => version.to_string(),
                Some((group, version)) => format!("{group}/{version}"),
                None => resource.api_version(),
            };
            assert!(
                table::kind(&api_version, sub.kind).is_some(),
                "{api_version} {}",
                sub.kind
            );
        }
    }
}

#[test]
fn objects_of_unknown_kinds_are_stored_without_their_resource_version() {
    let object = json!({"kind": "Widget", "apiVersion": "example.com/v1",
        "metadata": {"resourceVersion": "3", "name": "w"}, "spec": {"resourceVersion": "kept"}});
    assert_eq!(
        String::from_utf8(to_stored(&object)).unwrap(),
        r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"resourceVersion":"kept"}}"#
    );
}
