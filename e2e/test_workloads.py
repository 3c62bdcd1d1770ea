"""Issue 4 on a real cluster: the controller-manager keeps workloads in their desired
state — Deployments roll out and scale, Jobs run to completion, DaemonSets cover the
node, and deletes cascade as their propagation policy says."""

import json

import pytest

from conftest import wait_for


@pytest.fixture(scope="module")
def workloads(cluster, busybox_image):
    cluster.rind_cmd("load", "docker-image", busybox_image, "--name", cluster.name)
    return cluster


def get_json(cluster, *args):
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def apply(cluster, tmp_path, name, text):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    cluster.kubectl("apply", "-f", str(path))


def deployment_yaml(image, replicas):
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: main
        image: {image}
        command: [sleep, "3600"]
"""


def test_deployment_rolls_out_scales_and_rolls_back(workloads, busybox_image, tmp_path):
    c = workloads
    apply(c, tmp_path, "web", deployment_yaml(busybox_image, 2))
    c.kubectl("rollout", "status", "deployment/web", "--timeout=120s", timeout=150)
    status = get_json(c, "deployment", "web")["status"]
    assert status["availableReplicas"] == 2, status

    c.kubectl("scale", "deployment/web", "--replicas=3")
    wait_for(
        "3 available replicas",
        lambda: get_json(c, "deployment", "web")["status"].get("availableReplicas") == 3,
    )

    c.kubectl("set", "env", "deployment/web", "ROUND=2")
    c.kubectl("rollout", "status", "deployment/web", "--timeout=120s", timeout=150)
    replicasets = get_json(c, "replicasets", "-l", "app=web")["items"]
    assert len(replicasets) == 2, [r["metadata"]["name"] for r in replicasets]

    c.kubectl("rollout", "undo", "deployment/web")
    c.kubectl("rollout", "status", "deployment/web", "--timeout=120s", timeout=150)
    template = get_json(c, "deployment", "web")["spec"]["template"]["spec"]["containers"][0]
    assert not template.get("env"), template


def test_job_runs_to_completion(workloads, busybox_image):
    c = workloads
    c.kubectl("create", "job", "once", f"--image={busybox_image}", "--", "sh", "-c", "echo done")
    c.kubectl("wait", "--for=condition=complete", "job/once", "--timeout=120s", timeout=150)
    assert get_json(c, "job", "once")["status"]["succeeded"] == 1


def test_daemonset_places_a_pod_on_the_node(workloads, busybox_image, tmp_path):
    c = workloads
    apply(
        c,
        tmp_path,
        "ds",
        f"""apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {{app: agent}}
  template:
    metadata:
      labels: {{app: agent}}
    spec:
      containers:
      - name: main
        image: {busybox_image}
        command: [sleep, "3600"]
""",
    )
    wait_for(
        "the DaemonSet's pod to be ready",
        lambda: get_json(c, "daemonset", "agent")["status"].get("numberReady") == 1,
        timeout=120,
    )
    pods = get_json(c, "pods", "-l", "app=agent")["items"]
    assert [p["spec"]["nodeName"] for p in pods] == [c.control_plane]


@pytest.mark.parametrize("cascade", ["background", "orphan", "foreground"])
def test_delete_cascades_by_policy(workloads, busybox_image, tmp_path, cascade):
    c = workloads
    name = f"gc-{cascade}"
    c.kubectl("create", "deployment", name, f"--image={busybox_image}", "--", "sleep", "3600")
    c.kubectl("rollout", "status", f"deployment/{name}", "--timeout=120s", timeout=150)
    selector = f"app={name}"
    assert get_json(c, "replicasets", "-l", selector)["items"]
    c.kubectl("delete", "deployment", name, f"--cascade={cascade}", "--timeout=120s", timeout=150)
    if cascade == "orphan":
        replicasets = get_json(c, "replicasets", "-l", selector)["items"]
        assert replicasets and not replicasets[0]["metadata"].get("ownerReferences"), replicasets
        c.kubectl("delete", "replicasets", "-l", selector, "--timeout=120s", timeout=150)
    wait_for(
        f"{cascade} delete to remove the ReplicaSet and its pods",
        lambda: not get_json(c, "replicasets", "-l", selector)["items"]
        and not get_json(c, "pods", "-l", selector)["items"],
        timeout=120,
    )
