"""Upstream's API-machinery, apps, node, network and instrumentation conformance
behaviours that need no container image, checked with the official Python client
against our API server alone (`rind node standalone-apiserver` on a real etcd). Each
test names the conformance tests (test/conformance/testdata/conformance.yaml in
kubernetes/kubernetes) whose API steps it performs; what those tests do with running
pods, controllers or other images is left to the Docker suites."""

import json

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from standalone import (
    DEADLINE,
    api_kubeconfig,
    etcd,
    rind_binary,
    wait_for,
)  # noqa: F401 (fixtures)

NS = "conformance"


@pytest.fixture(scope="module")
def api(api_kubeconfig):
    api_client = config.new_client_from_config(config_file=str(api_kubeconfig))
    core = client.CoreV1Api(api_client)
    wait_for("the bootstrap namespaces", lambda: core.read_namespace("kube-node-lease"))
    core.create_namespace({"metadata": {"name": NS}})
    yield api_client
    api_client.close()


def test_watch_label_changed_sends_deleted(api):
    """[sig-api-machinery] Watchers should observe an object deletion if it stops meeting
    the requirements of the selector: leaving the selector is a DELETED, coming back an
    ADDED, replayed from a resourceVersion."""
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "lc", "labels": {"w": "a"}}})
    rv = core.read_namespaced_config_map("lc", NS).metadata.resource_version
    core.patch_namespaced_config_map("lc", NS, {"metadata": {"labels": {"w": "b"}}})
    core.patch_namespaced_config_map("lc", NS, {"data": {"x": "1"}})
    core.patch_namespaced_config_map("lc", NS, {"metadata": {"labels": {"w": "a"}}})
    core.delete_namespaced_config_map("lc", NS)
    seen = []
    stream = watch.Watch()
    for ev in stream.stream(
        core.list_namespaced_config_map,
        NS,
        label_selector="w=a",
        resource_version=rv,
        timeout_seconds=DEADLINE,
    ):
        seen.append(ev["type"])
        if len(seen) == 3:
            stream.stop()
    assert seen == ["DELETED", "ADDED", "DELETED"], seen


def test_chunking(api):
    """[sig-api-machinery] Servers with support for API chunking should return chunks of
    results for list calls: pages of `limit` at one resourceVersion, then the rest;
    deletecollection by label. With a selector upstream leaves remainingItemCount out
    (it would count objects the selector drops)."""
    core = client.CoreV1Api(api)
    for i in range(20):
        core.create_namespaced_pod_template(
            NS,
            {
                "metadata": {"name": f"pt-{i:02}", "labels": {"chunk": "y"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}},
            },
        )
    l = core.list_namespaced_pod_template(NS, limit=7, label_selector="chunk=y")
    assert len(l.items) == 7
    assert l.metadata._continue
    assert l.metadata.remaining_item_count is None, l.metadata
    rv = l.metadata.resource_version
    l2 = core.list_namespaced_pod_template(
        NS, limit=7, _continue=l.metadata._continue, label_selector="chunk=y"
    )
    assert len(l2.items) == 7 and l2.metadata.resource_version == rv
    assert l2.metadata.remaining_item_count is None, l2.metadata
    l3 = core.list_namespaced_pod_template(
        NS, limit=7, _continue=l2.metadata._continue, label_selector="chunk=y"
    )
    assert (
        len(l3.items) == 6
        and not l3.metadata._continue
        and l3.metadata.remaining_item_count is None
    )
    core.delete_collection_namespaced_pod_template(NS, label_selector="chunk=y")
    assert core.list_namespaced_pod_template(NS, label_selector="chunk=y").items == []


def test_chunking_no_selector_remaining(api):
    """The same, without a selector: remainingItemCount says how many objects follow."""
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "rem"}})
    for i in range(5):
        core.create_namespaced_pod_template(
            "rem",
            {
                "metadata": {"name": f"r-{i}"},
                "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}},
            },
        )
    l = core.list_namespaced_pod_template("rem", limit=2)
    assert l.metadata.remaining_item_count == 3, l.metadata


def test_namespace_finalize_and_status(api):
    """[sig-api-machinery] Namespaces should apply a finalizer to a Namespace (through
    `namespaces/finalize`), should apply changes to a namespace status, should patch a
    Namespace."""
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "fin"}})
    ns = core.read_namespace("fin")
    ns.spec.finalizers = (ns.spec.finalizers or []) + ["e2e.example.com/fakeFinalizer"]
    out = core.replace_namespace_finalize("fin", ns)
    assert "e2e.example.com/fakeFinalizer" in out.spec.finalizers
    ns = core.read_namespace("fin")
    ns.spec.finalizers = [f for f in ns.spec.finalizers if f != "e2e.example.com/fakeFinalizer"]
    out = core.replace_namespace_finalize("fin", ns)
    assert "e2e.example.com/fakeFinalizer" not in (out.spec.finalizers or [])
    st = core.read_namespace_status("fin")
    assert st.status.phase == "Active"
    p = core.patch_namespace_status(
        "fin",
        {
            "status": {
                "conditions": [
                    {"type": "StatusPatch", "status": "True", "reason": "E2E", "message": "Patched"}
                ]
            }
        },
    )
    assert any(c.type == "StatusPatch" for c in p.status.conditions)
    st = core.read_namespace_status("fin")
    st.status.conditions.append(
        client.V1NamespaceCondition(
            type="StatusUpdate", status="True", reason="E2E", message="Updated"
        )
    )
    u = core.replace_namespace_status("fin", st)
    assert any(c.type == "StatusUpdate" for c in u.status.conditions)
    core.patch_namespace("fin", {"metadata": {"labels": {"testLabel": "testValue"}}})
    assert core.read_namespace("fin").metadata.labels["testLabel"] == "testValue"


def test_lease_api(api):
    """[sig-node] Lease lease API should be available."""
    co = client.CoordinationV1Api(api)
    l = co.create_namespaced_lease(
        NS,
        {"metadata": {"name": "l1"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 30}},
    )
    g = co.read_namespaced_lease("l1", NS)
    assert g.spec.holder_identity == "a"
    g.spec.holder_identity = "b"
    co.replace_namespaced_lease("l1", NS, g)
    co.patch_namespaced_lease("l1", NS, {"spec": {"holderIdentity": "c"}})
    assert co.read_namespaced_lease("l1", NS).spec.holder_identity == "c"
    co.create_namespaced_lease(
        NS, {"metadata": {"name": "l2", "labels": {"deletecollection": "true"}}, "spec": {}}
    )
    assert len(co.list_namespaced_lease(NS).items) == 2
    co.delete_collection_namespaced_lease(NS, label_selector="deletecollection=true")
    assert [x.metadata.name for x in co.list_namespaced_lease(NS).items] == ["l1"]
    co.delete_namespaced_lease("l1", NS)
    with pytest.raises(ApiException) as e:
        co.read_namespaced_lease("l1", NS)
    assert e.value.status == 404


def test_empty_keys_refused(api):
    """[sig-node] ConfigMap should fail to create ConfigMap with empty key; Secrets should
    fail to create secret due to empty secret key."""
    core = client.CoreV1Api(api)
    for fn, body in [
        (core.create_namespaced_config_map, {"metadata": {"name": "ek"}, "data": {"": "v"}}),
        (core.create_namespaced_secret, {"metadata": {"name": "ek"}, "data": {"": "dg=="}}),
    ]:
        with pytest.raises(ApiException) as e:
            fn(NS, body)
        assert e.value.status == 422, e.value.body


def test_events_api_lifecycle(api):
    """[sig-instrumentation] Events API should ensure that an event can be fetched,
    patched, deleted, and listed; Events API should delete a collection of events."""
    ev = client.EventsV1Api(api)
    now = "2026-01-01T00:00:00.000000Z"
    body = {
        "metadata": {"name": "e1", "labels": {"t": "e"}},
        "eventTime": now,
        "reportingController": "test.example.com/c",
        "reportingInstance": "i",
        "action": "Do",
        "reason": "Why",
        "type": "Normal",
        "note": "n1",
        "regarding": {"kind": "Pod", "name": "p", "namespace": NS},
    }
    ev.create_namespaced_event(NS, body)
    ev.patch_namespaced_event("e1", NS, {"note": "n2"})
    got = ev.read_namespaced_event("e1", NS)
    assert got.note == "n2"
    got.series = client.EventsV1EventSeries(count=2, last_observed_time=now)
    upd = ev.replace_namespaced_event("e1", NS, got)
    assert upd.series.count == 2
    ev.delete_namespaced_event("e1", NS)
    for i in range(3):
        ev.create_namespaced_event(NS, dict(body, metadata={"name": f"c{i}", "labels": {"t": "e"}}))
    ev.delete_collection_namespaced_event(NS, label_selector="t=e")
    assert ev.list_namespaced_event(NS, label_selector="t=e").items == []


def test_core_events_lifecycle(api):
    """[sig-instrumentation] Events should manage the lifecycle of an event; Events should
    delete a collection of events."""
    core = client.CoreV1Api(api)
    core.create_namespaced_event(
        NS,
        {
            "metadata": {"name": "ce", "labels": {"t": "c"}},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": NS},
            "reason": "R",
            "message": "m",
            "type": "Normal",
            "count": 1,
            "source": {"component": "x"},
        },
    )
    assert len(core.list_event_for_all_namespaces(label_selector="t=c").items) == 1
    core.patch_namespaced_event("ce", NS, {"message": "m2"})
    e = core.read_namespaced_event("ce", NS)
    assert e.message == "m2"
    e.series = client.CoreV1EventSeries(count=100, last_observed_time="2026-01-01T00:00:00.000000Z")
    u = core.replace_namespaced_event("ce", NS, e)
    assert u.series.count == 100
    core.delete_collection_namespaced_event(NS, label_selector="t=c")
    assert core.list_namespaced_event(NS, label_selector="t=c").items == []


def test_runtimeclass_api_and_admission(api):
    """[sig-node] RuntimeClass should support RuntimeClasses API operations, should reject a
    Pod requesting a non-existent RuntimeClass, should schedule a Pod requesting a
    RuntimeClass and initialize its Overhead."""
    n = client.NodeV1Api(api)
    n.create_runtime_class({"metadata": {"name": "rc1", "labels": {"t": "rc"}}, "handler": "runc"})
    n.patch_runtime_class("rc1", {"metadata": {"annotations": {"p": "1"}}})
    assert len(n.list_runtime_class(label_selector="t=rc").items) == 1
    n.delete_collection_runtime_class(label_selector="t=rc")
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod(
            NS,
            {
                "metadata": {"name": "rcp"},
                "spec": {"runtimeClassName": "nope", "containers": [{"name": "c", "image": "x"}]},
            },
        )
    assert e.value.status == 403, e.value.body
    assert (
        json.loads(e.value.body)["message"]
        == 'pods "rcp" is forbidden: pod rejected: RuntimeClass "nope" not found'
    )
    n.create_runtime_class(
        {
            "metadata": {"name": "costly"},
            "handler": "runc",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}},
        }
    )
    pod = core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "with-overhead"},
            "spec": {"runtimeClassName": "costly", "containers": [{"name": "c", "image": "x"}]},
        },
    )
    assert pod.spec.overhead == {"cpu": "250m", "memory": "120Mi"}


def test_node_lifecycle(api):
    """[sig-node] Node Lifecycle should run through the lifecycle of a node."""
    core = client.CoreV1Api(api)
    core.create_node({"metadata": {"name": "e2e-fake-node", "labels": {"n": "x"}}})
    core.patch_node("e2e-fake-node", {"metadata": {"labels": {"patched": "true"}}})
    assert len(core.list_node(label_selector="patched=true").items) == 1
    n = core.read_node("e2e-fake-node")
    n.metadata.labels["updated"] = "true"
    core.replace_node("e2e-fake-node", n)
    core.delete_node("e2e-fake-node")
    wait_for("node gone", lambda: not core.list_node(label_selector="n=x").items)


def test_services_delete_collection(api):
    """[sig-network] Services should delete a collection of services."""
    core = client.CoreV1Api(api)
    for i in range(3):
        core.create_namespaced_service(
            NS,
            {
                "metadata": {"name": f"s{i}", "labels": {"s": "c"}},
                "spec": {"ports": [{"port": 80}]},
            },
        )
    core.delete_collection_namespaced_service(NS, label_selector="s=c")
    assert core.list_namespaced_service(NS, label_selector="s=c").items == []


def test_service_status_lifecycle(api):
    """[sig-network] Services should complete a service status lifecycle (its API steps)."""
    core = client.CoreV1Api(api)
    core.create_namespaced_service(
        NS, {"metadata": {"name": "st"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    )
    s = core.read_namespaced_service_status("st", NS)
    p = core.patch_namespaced_service_status(
        "st", NS, {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}}
    )
    assert p.status.load_balancer.ingress[0].ip == "203.0.113.1"
    s = core.read_namespaced_service_status("st", NS)
    s.status.conditions = [
        client.V1Condition(
            type="StatusUpdate",
            status="True",
            reason="E2E",
            message="Set from e2e test",
            last_transition_time="2026-01-01T00:00:00Z",
        )
    ]
    u = core.replace_namespaced_service_status("st", NS, s)
    assert u.status.conditions[0].type == "StatusUpdate"


def test_endpointslice_ingress_ingressclass_api(api):
    """[sig-network] EndpointSlice should support creating EndpointSlice API operations;
    Ingress API should support creating Ingress API operations; IngressClass API should
    support creating IngressClass API operations."""
    d = client.DiscoveryV1Api(api)
    d.create_namespaced_endpoint_slice(
        NS,
        {
            "metadata": {"name": "es", "labels": {"t": "es"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}],
            "ports": [{"port": 80, "protocol": "TCP"}],
        },
    )
    d.patch_namespaced_endpoint_slice("es", NS, {"metadata": {"annotations": {"p": "1"}}})
    d.delete_collection_namespaced_endpoint_slice(NS, label_selector="t=es")
    net = client.NetworkingV1Api(api)
    net.create_ingress_class(
        {"metadata": {"name": "ic", "labels": {"t": "ic"}}, "spec": {"controller": "example.com/c"}}
    )
    net.delete_collection_ingress_class(label_selector="t=ic")
    net.create_namespaced_ingress(
        NS,
        {
            "metadata": {"name": "ing", "labels": {"t": "ing"}},
            "spec": {"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}},
        },
    )
    p = net.patch_namespaced_ingress_status(
        "ing", NS, {"status": {"loadBalancer": {"ingress": [{"ip": "169.1.1.1"}]}}}
    )
    assert p.status.load_balancer.ingress[0].ip == "169.1.1.1"
    net.delete_collection_namespaced_ingress(NS, label_selector="t=ing")


def test_pdb_api_and_status(api):
    """[sig-apps] DisruptionController should create a PodDisruptionBudget, should
    update/patch PodDisruptionBudget status, should list and delete a collection."""
    pol = client.PolicyV1Api(api)
    pol.create_namespaced_pod_disruption_budget(
        NS,
        {
            "metadata": {"name": "pdb", "labels": {"t": "pdb"}},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "b"}}},
        },
    )
    s = pol.read_namespaced_pod_disruption_budget_status("pdb", NS)
    pol.patch_namespaced_pod_disruption_budget_status(
        "pdb",
        NS,
        {
            "status": {
                "conditions": [
                    {
                        "type": "PatchCondition",
                        "status": "False",
                        "reason": "E2E",
                        "message": "m",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            }
        },
    )
    assert any(
        c.type == "PatchCondition"
        for c in pol.read_namespaced_pod_disruption_budget_status("pdb", NS).status.conditions
    )
    pol.delete_collection_namespaced_pod_disruption_budget(NS, label_selector="t=pdb")


def test_cronjob_api(api):
    """[sig-apps] CronJob should support CronJob API operations."""
    b = client.BatchV1Api(api)
    cj = {
        "metadata": {"name": "cj", "labels": {"t": "cj"}},
        "spec": {
            "schedule": "*/1 * * * ?",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": "c", "image": "x"}],
                        }
                    }
                }
            },
        },
    }
    b.create_namespaced_cron_job(NS, cj)
    b.patch_namespaced_cron_job_status(
        "cj", NS, {"status": {"lastScheduleTime": "2026-01-01T00:00:00Z"}}
    )
    st = b.read_namespaced_cron_job_status("cj", NS)
    assert st.status.last_schedule_time is not None
    b.delete_collection_namespaced_cron_job(NS, label_selector="t=cj")


def test_status_endpoints(api):
    """[sig-apps] should validate Deployment / Replicaset / Statefulset Status endpoints,
    Daemon set should verify changes to a daemon set status; ReplicaSet should have a
    working scale subresource (its API steps)."""
    apps = client.AppsV1Api(api)
    tmpl = {
        "metadata": {"labels": {"app": "s"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    for kind, body in [
        (
            "deployment",
            {
                "metadata": {"name": "d"},
                "spec": {"selector": {"matchLabels": {"app": "s"}}, "template": tmpl},
            },
        ),
        (
            "replica_set",
            {
                "metadata": {"name": "r"},
                "spec": {"selector": {"matchLabels": {"app": "s"}}, "template": tmpl},
            },
        ),
        (
            "stateful_set",
            {
                "metadata": {"name": "ss"},
                "spec": {
                    "serviceName": "x",
                    "selector": {"matchLabels": {"app": "s"}},
                    "template": tmpl,
                },
            },
        ),
        (
            "daemon_set",
            {
                "metadata": {"name": "ds"},
                "spec": {"selector": {"matchLabels": {"app": "s"}}, "template": tmpl},
            },
        ),
    ]:
        getattr(apps, f"create_namespaced_{kind}")(NS, body)
        name = body["metadata"]["name"]
        getattr(apps, f"read_namespaced_{kind}_status")(name, NS)
        p = getattr(apps, f"patch_namespaced_{kind}_status")(
            name,
            NS,
            {
                "status": {
                    "conditions": [{"type": "StatusPatched", "status": "True", "reason": "E2E"}]
                }
            },
        )
        assert any(c.type == "StatusPatched" for c in p.status.conditions), kind
    sc = apps.read_namespaced_replica_set_scale("r", NS)
    apps.patch_namespaced_replica_set_scale("r", NS, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_replica_set("r", NS).spec.replicas == 4


def test_rc_lifecycle_and_scale(api):
    """[sig-apps] ReplicationController should get and update a ReplicationController
    scale; should test the lifecycle of a ReplicationController (its API steps)."""
    core = client.CoreV1Api(api)
    core.create_namespaced_replication_controller(
        NS,
        {
            "metadata": {"name": "rc", "labels": {"t": "rc"}},
            "spec": {
                "replicas": 1,
                "selector": {"app": "rc"},
                "template": {
                    "metadata": {"labels": {"app": "rc"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                },
            },
        },
    )
    s = core.read_namespaced_replication_controller_scale("rc", NS)
    s.spec.replicas = 2
    core.replace_namespaced_replication_controller_scale("rc", NS, s)
    assert core.read_namespaced_replication_controller("rc", NS).spec.replicas == 2
    core.patch_namespaced_replication_controller_status(
        "rc", NS, {"status": {"readyReplicas": 1, "availableReplicas": 1}}
    )
    core.delete_collection_namespaced_replication_controller(NS, label_selector="t=rc")


def test_controller_revision_api(api):
    """[sig-apps] ControllerRevision should manage the lifecycle of a ControllerRevision
    (its API steps; the revisions a DaemonSet makes need its controller)."""
    apps = client.AppsV1Api(api)
    apps.create_namespaced_controller_revision(
        NS, {"metadata": {"name": "cr", "labels": {"t": "cr"}}, "revision": 1, "data": {"x": 1}}
    )
    apps.patch_namespaced_controller_revision("cr", NS, {"metadata": {"labels": {"p": "1"}}})
    apps.delete_collection_namespaced_controller_revision(NS, label_selector="t=cr")


def test_discovery_preferred_and_version(api):
    """[sig-api-machinery] Discovery should validate PreferredVersion for each APIGroup;
    server version should find the server version."""
    apis = client.ApisApi(api).get_api_versions()
    for g in apis.groups:
        assert g.preferred_version.group_version in [v.group_version for v in g.versions]
    v = client.VersionApi(api).get_code()
    assert v.major.isdigit() and v.minor.isdigit(), v


def test_crd_lifecycle(api):
    """[sig-api-machinery] CustomResourceDefinition resources: creating/deleting,
    getting/updating/patching the status sub-resource (a condition of the client's own
    is kept), listing and deleting by label."""
    ext = client.ApiextensionsV1Api(api)
    crd = {
        "metadata": {"name": "foos.conf.example.com", "labels": {"t": "crd"}},
        "spec": {
            "group": "conf.example.com",
            "scope": "Namespaced",
            "names": {"plural": "foos", "singular": "foo", "kind": "Foo", "listKind": "FooList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    st = ext.read_custom_resource_definition_status("foos.conf.example.com")
    ext.patch_custom_resource_definition_status(
        "foos.conf.example.com",
        {
            "status": {
                "conditions": [
                    {
                        "type": "Sample",
                        "status": "True",
                        "reason": "E2E",
                        "message": "m",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            }
        },
    )
    assert any(
        c.type == "Sample"
        for c in ext.read_custom_resource_definition("foos.conf.example.com").status.conditions
    )
    ext.delete_collection_custom_resource_definition(label_selector="t=crd")
    wait_for(
        "crd gone", lambda: not ext.list_custom_resource_definition(label_selector="t=crd").items
    )


def test_namespace_deletion_removes_pods_and_services(api):
    """[sig-api-machinery] Namespaces should ensure that all pods / all services are removed
    when a namespace is deleted."""
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "gone"}})
    core.create_namespaced_pod(
        "gone", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    )
    core.create_namespaced_service(
        "gone", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    )
    core.delete_namespace("gone")

    def gone():
        try:
            core.read_namespace("gone")
            return False
        except ApiException as e:
            return e.status == 404

    wait_for("ns gone", gone)
    core.create_namespace({"metadata": {"name": "gone"}})
    assert core.list_namespaced_pod("gone").items == []
    assert core.list_namespaced_service("gone").items == []


def test_secret_patch(api):
    """[sig-node] Secrets should patch a secret."""
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        NS,
        {
            "metadata": {"name": "sp", "labels": {"testsecret-constant": "true"}},
            "data": {"key": "dmFsdWU="},
            "type": "Opaque",
        },
    )
    assert any(
        s.metadata.name == "sp"
        for s in core.list_secret_for_all_namespaces(
            label_selector="testsecret-constant=true"
        ).items
    )
    core.patch_namespaced_secret(
        "sp", NS, {"metadata": {"labels": {"testsecret": "true"}}, "data": {"key": "dmFsdWUy"}}
    )
    s = core.read_namespaced_secret("sp", NS)
    assert s.data["key"] == "dmFsdWUy" and s.metadata.labels["testsecret"] == "true"
    core.delete_collection_namespaced_secret(NS, label_selector="testsecret-constant=true")
    assert (
        core.list_secret_for_all_namespaces(label_selector="testsecret-constant=true").items == []
    )


def test_endpoint_lifecycle(api):
    """[sig-network] Services should test the lifecycle of an Endpoint."""
    core = client.CoreV1Api(api)
    core.create_namespaced_endpoints(
        NS,
        {
            "metadata": {"name": "ep1", "labels": {"test-endpoint-static": "true"}},
            "subsets": [
                {
                    "addresses": [{"ip": "10.0.0.24"}],
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                }
            ],
        },
    )
    rv = core.list_namespaced_endpoints(
        NS, label_selector="test-endpoint-static=true"
    ).metadata.resource_version
    core.patch_namespaced_endpoints(
        "ep1",
        NS,
        {
            "metadata": {"labels": {"test-service": "updated"}},
            "subsets": [
                {
                    "addresses": [{"ip": "10.0.0.25"}],
                    "ports": [{"name": "http-test", "port": 8080, "protocol": "TCP"}],
                }
            ],
        },
    )
    e = core.read_namespaced_endpoints("ep1", NS)
    assert e.subsets[0].addresses[0].ip == "10.0.0.25"
    core.delete_collection_namespaced_endpoints(NS, label_selector="test-endpoint-static=true")
    seen = []
    stream = watch.Watch()
    for ev in stream.stream(
        core.list_namespaced_endpoints,
        NS,
        label_selector="test-endpoint-static=true",
        resource_version=rv,
        timeout_seconds=DEADLINE,
    ):
        seen.append(ev["type"])
        if ev["type"] == "DELETED":
            stream.stop()
    assert seen == ["MODIFIED", "DELETED"], seen


def test_crd_watch(api):
    """[sig-api-machinery] CustomResourceDefinition Watch watch on custom resource
    definition objects."""
    ext = client.ApiextensionsV1Api(api)
    rv = ext.list_custom_resource_definition().metadata.resource_version
    crd = {
        "metadata": {"name": "bars.conf.example.com"},
        "spec": {
            "group": "conf.example.com",
            "scope": "Cluster",
            "names": {"plural": "bars", "singular": "bar", "kind": "Bar"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    ext.patch_custom_resource_definition(
        "bars.conf.example.com", {"metadata": {"labels": {"x": "y"}}}
    )
    ext.delete_custom_resource_definition("bars.conf.example.com")
    seen = []
    for ev in watch.Watch().stream(
        ext.list_custom_resource_definition,
        resource_version=rv,
        field_selector="metadata.name=bars.conf.example.com",
        timeout_seconds=DEADLINE,
    ):
        seen.append(ev["type"])
        if ev["type"] == "DELETED":
            break
    assert seen[0] == "ADDED" and "MODIFIED" in seen and seen[-1] == "DELETED", seen


def test_crd_defaulting_from_storage(api):
    """[sig-api-machinery] CustomResourceDefinition resources custom resource defaulting
    for requests and from storage works: a default added to the schema shows on an
    object stored before it."""
    ext = client.ApiextensionsV1Api(api)
    co = client.CustomObjectsApi(api)
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            }
        },
    }
    crd = {
        "metadata": {"name": "dflts.conf.example.com"},
        "spec": {
            "group": "conf.example.com",
            "scope": "Cluster",
            "names": {"plural": "dflts", "singular": "dflt", "kind": "Dflt"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
    ext.create_custom_resource_definition(crd)
    wait_for(
        "crd served",
        lambda: co.list_cluster_custom_object("conf.example.com", "v1", "dflts") is not None,
    )
    co.create_cluster_custom_object(
        "conf.example.com",
        "v1",
        "dflts",
        {
            "apiVersion": "conf.example.com/v1",
            "kind": "Dflt",
            "metadata": {"name": "one"},
            "spec": {},
        },
    )
    schema["properties"]["spec"]["properties"]["a"]["default"] = "A"
    ext.patch_custom_resource_definition(
        "dflts.conf.example.com",
        {
            "spec": {
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": schema},
                    }
                ]
            }
        },
    )
    wait_for(
        "default from storage",
        lambda: co.get_cluster_custom_object("conf.example.com", "v1", "dflts", "one")["spec"].get(
            "a"
        )
        == "A",
        timeout=10,
    )


def send(api, method, path, body, content_type):
    """A request with a body sent byte for byte (the client's own methods re-encode
    bodies, which would drop duplicate keys); returns (status, body text)."""
    response = api.rest_client.pool_manager.request(
        method,
        api.configuration.host + path,
        body=body.encode(),
        headers={"Content-Type": content_type, "Accept": "application/json"},
    )
    return response.status, response.data.decode()


PORTS_SCHEMA = {
    "type": "array",
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
    "items": {
        "type": "object",
        "required": ["containerPort", "protocol"],
        "properties": {
            "containerPort": {"type": "integer", "format": "int32"},
            "name": {"type": "string"},
            "protocol": {"type": "string"},
        },
    },
}


def field_validation_crd(api, plural, spec_schema):
    ext = client.ApiextensionsV1Api(api)
    name = f"{plural}.fv.example.com"
    ext.create_custom_resource_definition(
        {
            "metadata": {"name": name},
            "spec": {
                "group": "fv.example.com",
                "scope": "Cluster",
                "names": {"plural": plural, "singular": plural[:-1], "kind": plural.title()[:-1]},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {"spec": spec_schema},
                            }
                        },
                    }
                ],
            },
        }
    )
    co = client.CustomObjectsApi(api)
    wait_for(
        f"{name} served", lambda: co.list_cluster_custom_object("fv.example.com", "v1", plural)
    )
    return f"/apis/fv.example.com/v1/{plural}/mytest?fieldManager=field_validation_mgr&fieldValidation=Strict"


APPLY = "application/apply-patch+yaml"


def test_field_validation_typed_objects(api):
    """[sig-api-machinery] FieldValidation should detect unknown and duplicate fields of a
    typed object; should detect unknown metadata fields of a typed object."""
    path = f"/apis/apps/v1/namespaces/{NS}/deployments?fieldManager=m&fieldValidation=Strict"
    template = (
        '"template": {"metadata": {"labels": {"app": "nginx"}}, '
        '"spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}}'
    )
    duplicated = (
        '{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "my-dep"}, '
        '"spec": {"unknownField": "foo", "replicas": 2, "replicas": 3, '
        '"selector": {"matchLabels": {"app": "nginx"}}, ' + template + "}}"
    )
    status, body = send(api, "POST", path, duplicated, "application/json")
    assert status == 400, body
    message = json.loads(body)["message"]
    assert message.endswith(
        'strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas"'
    ), message
    unknown_meta = (
        '{"apiVersion": "apps/v1", "kind": "Deployment", '
        '"metadata": {"name": "my-dep", "unknownMeta": "foo"}, '
        '"spec": {"selector": {"matchLabels": {"app": "nginx"}}, ' + template + "}}"
    )
    status, body = send(api, "POST", path, unknown_meta, "application/json")
    assert status == 400, body
    message = json.loads(body)["message"]
    assert message.endswith('strict decoding error: unknown field "metadata.unknownMeta"'), message


def test_field_validation_custom_resources(api):
    """[sig-api-machinery] FieldValidation should create/apply a valid CR for CRD with
    validation schema; should create/apply a CR with unknown fields for CRD with no
    validation schema (a schema preserving unknown fields). The refusals of
    should create/apply an invalid CR with extra properties / should detect unknown
    metadata fields in both the root and embedded object of a CR are checked for their
    status only: upstream words them as its structured-merge type converter does
    (`.unknownField: field not declared in schema`), which rind does not."""
    spec = {
        "type": "object",
        "properties": {
            "foo": {"type": "string"},
            "cronSpec": {"type": "string"},
            "ports": PORTS_SCHEMA,
        },
    }
    path = field_validation_crd(api, "valids", spec)
    head = "apiVersion: fv.example.com/v1\nkind: Valid\nmetadata:\n  name: mytest\n"
    ports = "  ports:\n  - name: x\n    containerPort: 80\n    protocol: TCP\n"
    status, body = send(api, "PATCH", path, head + "spec:\n  foo: foo1\n" + ports, APPLY)
    assert status == 201, body
    status, body = send(
        api, "PATCH", path, head + "unknownField: unknown\nspec:\n  foo: foo1\n" + ports, APPLY
    )
    assert status >= 400, body
    assert "unknownField" in json.loads(body)["message"]

    preserving = dict(spec, **{"x-kubernetes-preserve-unknown-fields": True})
    path = field_validation_crd(api, "keeps", preserving)
    head = "apiVersion: fv.example.com/v1\nkind: Keep\nmetadata:\n  name: mytest\n"
    status, body = send(api, "PATCH", path, head + "spec:\n  unknown: uk1\n" + ports, APPLY)
    assert status == 201, body
    assert json.loads(body)["spec"]["unknown"] == "uk1"
