"""The official Python `kubernetes` client (pinned in e2e/requirements.txt) against our
API server on a real etcd, no Docker. Its models are strict pydantic classes: every
response is deserialized into them, so a missing required field or a wrongly typed
value in anything we serve fails here, as it would for a user's script."""

import json
import time

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from standalone import DEADLINE, api_kubeconfig, etcd, rind_binary, wait_for  # noqa: F401 (fixtures)

NS = "py-client"

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

POD_SPEC = {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
TEMPLATE = {"metadata": {"labels": {"app": "py"}}, "spec": POD_SPEC}
SELECTOR = {"matchLabels": {"app": "py"}}


@pytest.fixture(scope="module")
def api(api_kubeconfig):
    api_client = config.new_client_from_config(config_file=str(api_kubeconfig))
    core = client.CoreV1Api(api_client)
    wait_for("the bootstrap namespaces", lambda: core.read_namespace("kube-node-lease"))
    core.create_namespace({"metadata": {"name": NS}})
    yield api_client
    api_client.close()


# (API class, resource as in the client's method names, namespaced, body). Every kind
# goes through create, get, list (in its namespace and across all), three kinds of
# patch, watch and delete.
KINDS = [
    (client.CoreV1Api, "pod", True, {"metadata": {"name": "p"}, "spec": POD_SPEC}),
    (client.CoreV1Api, "config_map", True, {"metadata": {"name": "cm"}, "data": {"k": "v"}}),
    (client.CoreV1Api, "secret", True, {"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
    (client.CoreV1Api, "service", True,
     {"metadata": {"name": "svc"}, "spec": {"selector": {"app": "py"}, "ports": [{"port": 80}]}}),
    (client.CoreV1Api, "service_account", True, {"metadata": {"name": "sa"}}),
    (client.CoreV1Api, "endpoints", True,
     {"metadata": {"name": "ep"},
      "subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}]}]}),
    (client.CoreV1Api, "event", True,
     {"metadata": {"name": "ev"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": NS},
      "reason": "Tested", "message": "from python", "type": "Normal"}),
    (client.CoreV1Api, "persistent_volume_claim", True,
     {"metadata": {"name": "pvc"},
      "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    (client.CoreV1Api, "resource_quota", True,
     {"metadata": {"name": "rq"}, "spec": {"hard": {"pods": "10"}}}),
    (client.CoreV1Api, "limit_range", True,
     {"metadata": {"name": "lr"},
      "spec": {"limits": [{"type": "Container", "default": {"cpu": "100m"}}]}}),
    (client.CoreV1Api, "pod_template", True, {"metadata": {"name": "pt"}, "template": TEMPLATE}),
    (client.CoreV1Api, "replication_controller", True,
     {"metadata": {"name": "rc"},
      "spec": {"replicas": 0, "selector": {"app": "py"}, "template": TEMPLATE}}),
    (client.CoreV1Api, "namespace", False, {"metadata": {"name": "py-scratch"}}),
    (client.CoreV1Api, "node", False, {"metadata": {"name": "py-node"}}),
    (client.CoreV1Api, "persistent_volume", False,
     {"metadata": {"name": "pv"},
      "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
               "hostPath": {"path": "/tmp/pv"}}}),
    (client.AppsV1Api, "deployment", True,
     {"metadata": {"name": "deploy"},
      "spec": {"replicas": 0, "selector": SELECTOR, "template": TEMPLATE}}),
    (client.AppsV1Api, "replica_set", True,
     {"metadata": {"name": "rs"},
      "spec": {"replicas": 0, "selector": SELECTOR, "template": TEMPLATE}}),
    (client.AppsV1Api, "stateful_set", True,
     {"metadata": {"name": "sts"},
      "spec": {"replicas": 0, "serviceName": "svc", "selector": SELECTOR, "template": TEMPLATE}}),
    (client.AppsV1Api, "daemon_set", True,
     {"metadata": {"name": "ds"}, "spec": {"selector": SELECTOR, "template": TEMPLATE}}),
    (client.AppsV1Api, "controller_revision", True,
     {"metadata": {"name": "cr"}, "revision": 1, "data": {"spec": {}}}),
    (client.BatchV1Api, "job", True,
     {"metadata": {"name": "job"},
      "spec": {"suspend": True,
               "template": {"spec": {**POD_SPEC, "restartPolicy": "Never"}}}}),
    (client.BatchV1Api, "cron_job", True,
     {"metadata": {"name": "cj"},
      "spec": {"schedule": "*/5 * * * *", "suspend": True,
               "jobTemplate": {"spec": {"template": {"spec": {**POD_SPEC, "restartPolicy": "Never"}}}}}}),
    (client.CoordinationV1Api, "lease", True,
     {"metadata": {"name": "lease"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}}),
    (client.EventsV1Api, "event", True,
     {"metadata": {"name": "ev2"}, "eventTime": "2026-01-01T00:00:00.000000Z",
      "reportingController": "py", "reportingInstance": "py-1", "action": "Test",
      "reason": "Tested", "type": "Normal", "regarding": {"kind": "Pod", "name": "p"}}),
    (client.RbacAuthorizationV1Api, "cluster_role", False,
     {"metadata": {"name": "py-reader"},
      "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
    (client.RbacAuthorizationV1Api, "cluster_role_binding", False,
     {"metadata": {"name": "py-reader"},
      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "py-reader"},
      "subjects": [{"kind": "User", "name": "py", "apiGroup": "rbac.authorization.k8s.io"}]}),
    (client.RbacAuthorizationV1Api, "role", True,
     {"metadata": {"name": "role"},
      "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
    (client.RbacAuthorizationV1Api, "role_binding", True,
     {"metadata": {"name": "rb"},
      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "role"},
      "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": NS}]}),
    (client.PolicyV1Api, "pod_disruption_budget", True,
     {"metadata": {"name": "pdb"}, "spec": {"minAvailable": 1, "selector": SELECTOR}}),
    (client.AutoscalingV2Api, "horizontal_pod_autoscaler", True,
     {"metadata": {"name": "hpa"},
      "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "deploy"},
               "minReplicas": 1, "maxReplicas": 3}}),
    (client.SchedulingV1Api, "priority_class", False,
     {"metadata": {"name": "py-high"}, "value": 1000}),
    (client.NetworkingV1Api, "ingress", True,
     {"metadata": {"name": "ing"},
      "spec": {"defaultBackend": {"service": {"name": "svc", "port": {"number": 80}}}}}),
    (client.NetworkingV1Api, "network_policy", True,
     {"metadata": {"name": "np"}, "spec": {"podSelector": {}}}),
    (client.NetworkingV1Api, "ingress_class", False,
     {"metadata": {"name": "py-ing"}, "spec": {"controller": "example.com/py"}}),
    (client.DiscoveryV1Api, "endpoint_slice", True,
     {"metadata": {"name": "eps"}, "addressType": "IPv4",
      "endpoints": [{"addresses": ["10.244.0.5"]}], "ports": [{"port": 80}]}),
    (client.NodeV1Api, "runtime_class", False, {"metadata": {"name": "py-rc"}, "handler": "runc"}),
    (client.StorageV1Api, "storage_class", False,
     {"metadata": {"name": "py-sc"}, "provisioner": "example.com/py"}),
]


def method(api_client, api_class, verb, resource, namespaced):
    scope = "namespaced_" if namespaced and verb not in ("list_all",) else ""
    if verb == "list_all":
        return getattr(api_class(api_client), f"list_{resource}_for_all_namespaces")
    return getattr(api_class(api_client), f"{verb}_{scope}{resource}")


def call(api_client, api_class, verb, resource, namespaced, **kwargs):
    fn = method(api_client, api_class, verb, resource, namespaced)
    return fn(namespace=NS, **kwargs) if namespaced else fn(**kwargs)


@pytest.mark.parametrize("api_class,resource,namespaced,body", KINDS,
                         ids=[f"{k[0].__name__}.{k[1]}" for k in KINDS])
def test_lifecycle(api, api_class, resource, namespaced, body):
    name = body["metadata"]["name"]

    def do(verb, **kwargs):
        return call(api, api_class, verb, resource, namespaced, **kwargs)

    before = do("list").metadata.resource_version
    created = do("create", body=body)
    assert created.metadata.name == name
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    with pytest.raises(ApiException) as exists:
        do("create", body=body)
    assert exists.value.status == 409, exists.value.body
    assert do("read", name=name).metadata.uid == created.metadata.uid

    listed = do("list")
    assert name in [item.metadata.name for item in listed.items]
    if namespaced:
        everywhere = method(api, api_class, "list_all", resource, namespaced)()
        assert (NS, name) in [(i.metadata.namespace, i.metadata.name) for i in everywhere.items]
    selected = do("list", label_selector="via=merge")
    assert selected.items == []

    merged = do("patch", name=name, body={"metadata": {"labels": {"via": "merge"}}},
                _content_type=MERGE)
    assert merged.metadata.labels["via"] == "merge"
    strategic = do("patch", name=name, body={"metadata": {"annotations": {"via": "strategic"}}},
                   _content_type=STRATEGIC)
    assert strategic.metadata.annotations["via"] == "strategic"
    assert strategic.metadata.labels["via"] == "merge"
    patched = do("patch", name=name, body=[
                 {"op": "add", "path": "/metadata/labels/json", "value": "yes"},
                  {"op": "test", "path": "/metadata/labels/via", "value": "merge"}],
                 _content_type=JSON_PATCH)
    assert patched.metadata.labels == {**(created.metadata.labels or {}), "via": "merge", "json": "yes"}
    assert [i.metadata.name for i in do("list", label_selector="via=merge,json").items] == [name]
    # A failing JSON-patch test operation changes nothing and says why.
    with pytest.raises(ApiException) as failed:
        do("patch", name=name, body=[{"op": "test", "path": "/metadata/labels/via", "value": "nope"}],
           _content_type=JSON_PATCH)
    assert failed.value.status == 422, failed.value.body

    do("delete", name=name)
    if resource == "namespace":
        # A namespace is finalized before it goes; ours is empty, so that is quick.
        def gone():
            try:
                do("read", name=name)
                return False
            except ApiException as err:
                return err.status == 404
        wait_for(f"namespace {name} to go", gone)
    with pytest.raises(ApiException) as missing:
        do("read", name=name)
    assert missing.value.status == 404

    # Replaying the watch from before the create shows the whole life, every object
    # deserialized into the client's model.
    stream = watch.Watch()
    seen = []
    kwargs = {"resource_version": before, "timeout_seconds": DEADLINE}
    fn = method(api, api_class, "list", resource, namespaced)
    for event in (stream.stream(fn, namespace=NS, **kwargs) if namespaced else stream.stream(fn, **kwargs)):
        obj = event["object"]
        if obj.metadata.name != name:
            continue
        assert type(obj) is type(created)
        seen.append(event["type"])
        if event["type"] == "DELETED":
            stream.stop()
    assert seen[0] == "ADDED" and seen[-1] == "DELETED", seen
    assert seen.count("MODIFIED") >= 3, seen


def test_strategic_patches_merge_lists_by_key(api):
    core = client.CoreV1Api(api)
    pod = core.create_namespaced_pod(NS, {
        "metadata": {"name": "two"},
        "spec": {"containers": [
            {"name": "a", "image": "busybox:1.36", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "busybox:1.36"}]}})
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"
    # By the containers' merge key `name`: only `a` changes, `b` and `a`'s env stay.
    patched = core.patch_namespaced_pod("two", NS, {"spec": {"containers": [
        {"name": "a", "image": "busybox:1.37"}]}}, _content_type=STRATEGIC)
    assert [(c.name, c.image) for c in patched.spec.containers] == [
        ("a", "busybox:1.37"), ("b", "busybox:1.36")]
    assert patched.spec.containers[0].env[0].value == "1"
    # A merge patch replaces the list whole; the pod's containers are immutable beyond
    # their images, so the server refuses with field causes.
    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_pod("two", NS, {"spec": {"containers": [
            {"name": "a", "image": "busybox:1.37"}]}}, _content_type=MERGE)
    assert refused.value.status == 422, refused.value.body
    assert "Forbidden: pod updates may not change fields other than" in refused.value.body
    core.delete_namespaced_pod("two", NS)


def test_deployment_scale_and_status(api):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, {
        "metadata": {"name": "scaled"},
        "spec": {"replicas": 1, "selector": SELECTOR, "template": TEMPLATE}})
    scale = apps.read_namespaced_deployment_scale("scaled", NS)
    assert scale.spec.replicas == 1
    scale = apps.patch_namespaced_deployment_scale(
        "scaled", NS, {"spec": {"replicas": 3}}, _content_type=MERGE)
    assert scale.spec.replicas == 3
    assert apps.read_namespaced_deployment("scaled", NS).spec.replicas == 3
    # The status subresource carries what the controller reports; spec stays.
    status = apps.patch_namespaced_deployment_status(
        "scaled", NS, {"status": {"observedGeneration": 2, "replicas": 0}}, _content_type=MERGE)
    assert status.status.observed_generation == 2
    assert status.spec.replicas == 3
    apps.delete_namespaced_deployment("scaled", NS)


def test_paged_lists_and_stale_updates(api):
    core = client.CoreV1Api(api)
    names = [f"page-{i}" for i in range(5)]
    for name in names:
        core.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": {"paged": "yes"}}})
    seen, token = [], None
    while True:
        page = core.list_namespaced_config_map(NS, label_selector="paged", limit=2, _continue=token)
        assert len(page.items) <= 2
        seen += [item.metadata.name for item in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == names
    # An update carrying an old resourceVersion is a conflict.
    stale = core.read_namespaced_config_map("page-0", NS)
    core.patch_namespaced_config_map("page-0", NS, {"data": {"new": "1"}}, _content_type=MERGE)
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("page-0", NS, stale)
    assert conflict.value.status == 409, conflict.value.body
    assert "the object has been modified" in conflict.value.body
    core.delete_collection_namespaced_config_map(NS, label_selector="paged")
    assert core.list_namespaced_config_map(NS, label_selector="paged").items == []


def test_watch_stream_sees_a_config_maps_life(api):
    """`watch.Watch().stream(v1.list_namespaced_config_map, ns, timeout_seconds=...)`
    as its documentation shows it: no resourceVersion (the current objects come as
    ADDED), `watch=True` in the query, every event's object a V1ConfigMap. The changes
    are made once the watch has shown the map, so none can slip by before it starts."""
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(NS, {"metadata": {"name": "watched"}, "data": {"v": "1"}})
    stream = watch.Watch()
    seen = []
    for event in stream.stream(core.list_namespaced_config_map, NS, timeout_seconds=DEADLINE):
        obj = event["object"]
        if obj.metadata.name != "watched":
            continue
        assert isinstance(obj, client.V1ConfigMap)
        seen.append((event["type"], (obj.data or {}).get("v")))
        if event["type"] == "ADDED":
            core.patch_namespaced_config_map("watched", NS, {"data": {"v": "2"}})
            core.delete_namespaced_config_map("watched", NS)
        if event["type"] == "DELETED":
            stream.stop()
    assert seen == [("ADDED", "1"), ("MODIFIED", "2"), ("DELETED", "2")], seen


def test_live_watch_and_errors(api):
    core = client.CoreV1Api(api)
    start = core.list_namespaced_config_map(NS).metadata.resource_version
    core.create_namespaced_config_map(NS, {"metadata": {"name": "live"}})
    stream = watch.Watch()
    got = None
    began = time.monotonic()
    for event in stream.stream(core.list_namespaced_config_map, NS, resource_version=start,
                               field_selector="metadata.name=live", timeout_seconds=DEADLINE):
        got = event
        stream.stop()
    assert got is not None and time.monotonic() - began < DEADLINE, "watch saw nothing"
    assert got["type"] == "ADDED" and got["object"].metadata.name == "live"
    assert isinstance(got["object"], client.V1ConfigMap)
    core.delete_namespaced_config_map("live", NS)

    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_config_map(NS, {"metadata": {"name": "Bad_Name"}})
    assert invalid.value.status == 422
    status = json.loads(invalid.value.body)
    assert status["reason"] == "Invalid"
    assert status["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value')
    assert [c["field"] for c in status["details"]["causes"]] == ["metadata.name"]
    with pytest.raises(ApiException) as missing:
        core.create_namespaced_config_map("no-such-namespace", {"metadata": {"name": "x"}})
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["message"] == 'namespaces "no-such-namespace" not found'
