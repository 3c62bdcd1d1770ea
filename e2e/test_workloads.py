"""Issue 4 on a real cluster: the controller-manager keeps workloads in their desired
state — Deployments roll out and scale, Jobs run to completion, DaemonSets cover the
node, and deletes cascade as their propagation policy says."""

import json
import subprocess
import threading

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


def ready_since(pod):
    for cond in pod.get("status", {}).get("conditions", []):
        if cond["type"] == "Ready" and cond["status"] == "True":
            return cond["lastTransitionTime"]
    return None


def sts_pods(c):
    pods = get_json(c, "pods", "-l", "app=ordered")["items"]
    return sorted(pods, key=lambda p: p["metadata"]["name"])


def watch_events(text):
    """The objects of a `kubectl get -w --output-watch-events -o json` stream."""
    decoder, events, at = json.JSONDecoder(), [], 0
    text = text.strip()
    while at < len(text):
        try:
            event, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            break  # an object still being written
        events.append(event)
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    return events


def test_statefulset_orders_pods_and_keeps_their_names(workloads, busybox_image, tmp_path):
    c = workloads
    apply(
        c,
        tmp_path,
        "sts",
        f"""apiVersion: v1
kind: Service
metadata:
  name: ordered
spec:
  clusterIP: None
  selector: {{app: ordered}}
  ports: [{{port: 80}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: ordered
spec:
  serviceName: ordered
  replicas: 3
  selector:
    matchLabels: {{app: ordered}}
  template:
    metadata:
      labels: {{app: ordered}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {busybox_image}
        command: [sleep, "3600"]
""",
    )
    c.kubectl("rollout", "status", "statefulset/ordered", "--timeout=180s", timeout=210)
    pods = sts_pods(c)
    assert [p["metadata"]["name"] for p in pods] == ["ordered-0", "ordered-1", "ordered-2"]
    # OrderedReady: each pod was created only once its predecessor was Ready (RFC 3339
    # UTC times compare as strings).
    for before, after in zip(pods, pods[1:]):
        assert ready_since(before) is not None, before["status"]
        assert after["metadata"]["creationTimestamp"] >= ready_since(before), (before, after)
    assert pods[1]["spec"]["hostname"] == "ordered-1"
    assert pods[1]["spec"]["subdomain"] == "ordered"

    # A deleted pod comes back under the same name.
    old_uid = pods[1]["metadata"]["uid"]
    c.kubectl("delete", "pod", "ordered-1", "--timeout=120s", timeout=150)
    wait_for(
        "ordered-1 to come back",
        lambda: any(
            p["metadata"]["name"] == "ordered-1"
            and p["metadata"]["uid"] != old_uid
            and ready_since(p)
            for p in sts_pods(c)
        ),
        timeout=120,
    )

    # Scale down removes the highest ordinal first, the next only once it is gone.
    watch = subprocess.Popen(
        [c.kubectl_bin, "--context", f"rind-{c.name}", "get", "pods", "-l", "app=ordered",
         "--watch-only", "--output-watch-events", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=c.env,
        text=True,
    )
    seen = []

    def read():
        for line in watch.stdout:
            seen.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def order():
        steps = []
        for event in watch_events("".join(seen)):
            name = event["object"]["metadata"]["name"]
            going = event["type"] == "DELETED" or event["object"]["metadata"].get("deletionTimestamp")
            if going and ("going", name) not in steps:
                steps.append(("going", name))
            if event["type"] == "DELETED":
                steps.append(("gone", name))
        return steps

    try:
        c.kubectl("scale", "statefulset/ordered", "--replicas=1")
        wait_for(
            "the watch to show ordered-1 removed",
            lambda: ("gone", "ordered-1") in order(),
            timeout=120,
        )
    finally:
        watch.terminate()
        watch.wait(timeout=30)
        reader.join(timeout=30)
    assert [p["metadata"]["name"] for p in sts_pods(c)] == ["ordered-0"]
    assert order() == [
        ("going", "ordered-2"),
        ("gone", "ordered-2"),
        ("going", "ordered-1"),
        ("gone", "ordered-1"),
    ], order()
    c.kubectl("delete", "statefulset,service", "ordered", "--timeout=120s", timeout=150)


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
