"""Issue 19, lifecycle beyond kind, on one control plane and two workers: per-node
`resources` become container limits the node's capacity shows; the cluster survives a
`docker restart` of every node and `rind stop cluster` + `rind start cluster` with
every object intact, every pod Running again, a Service and the cluster DNS answering
and the very same kubeconfig working; `rind add node` joins a worker that becomes Ready
and gets its DaemonSet pod; `rind delete node` drains it (respecting a
PodDisruptionBudget) and leaves no container and no Node object behind."""

import json
import os
import subprocess

import pytest

from conftest import RUN_ID, Cluster, run, wait_for

BUSYBOX = "docker.io/rind/busybox:v1"
WORKER2_CPUS = 1.5
WORKER2_MEMORY_MI = 1536


@pytest.fixture(scope="module")
def life(rind, kubectl, kubeconfig, tmp_path_factory):
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-life", kubeconfig)
    config = tmp_path_factory.mktemp("config") / "cluster.yaml"
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n"
        "- role: control-plane\n- role: worker\n"
        f"- role: worker\n  resources: {{cpus: {WORKER2_CPUS}, memory: {WORKER2_MEMORY_MI}m}}\n"
    )
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", str(config), "--wait", "3m")
        yield c
    finally:
        if os.environ.get("RIND_E2E_KEEP_LOGS"):
            c.rind_cmd("export", "logs", "--name", c.name, os.environ["RIND_E2E_KEEP_LOGS"], check=False)
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)


def get_json(c, *args):
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def apply(c, manifest):
    run([c.kubectl_bin, "--context", f"rind-{c.name}", "apply", "-f", "-"], input=manifest, env=c.env)


def ready(node):
    return any(
        cond["type"] == "Ready" and cond["status"] == "True"
        for cond in node.get("status", {}).get("conditions", [])
    )


def node_names(c):
    return [f"{c.name}-control-plane", f"{c.name}-worker", f"{c.name}-worker2"]


def quantity(text):
    """A Kubernetes quantity as a number (the suffixes node status uses)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


WORKLOAD = f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: keep-me}}
data: {{answer: "42"}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: httpd
        image: {BUSYBOX}
        command: [sh, -c, "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: everywhere}}
spec:
  selector: {{matchLabels: {{app: everywhere}}}}
  template:
    metadata: {{labels: {{app: everywhere}}}}
    spec:
      tolerations: [{{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}}]
      containers:
      - {{name: sleep, image: {BUSYBOX}, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  containers:
  - {{name: c, image: {BUSYBOX}, command: [sleep, "3600"]}}
"""


@pytest.fixture(scope="module")
def workload(life):
    c = life
    apply(c, WORKLOAD)
    wait_for("the workload Running and ready", lambda: all_pods_running(c), timeout=180)
    return c


def all_pods_running(c, since=None):
    """Every pod in every namespace Running with its containers ready (and, with
    `since`, started at or after it: a status from before a restart is stale), and the
    expected DaemonSet and Deployment counts there."""
    pods = get_json(c, "pods", "-A")["items"]
    nodes = get_json(c, "nodes")["items"]
    for pod in pods:
        status = pod.get("status", {})
        if status.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
            return False
        if not all(s.get("ready") for s in status.get("containerStatuses", [])):
            return False
        if since and not all(
            s.get("state", {}).get("running", {}).get("startedAt", "") >= since
            for s in status.get("containerStatuses", [])
        ):
            return False
    daemons = [p for p in pods if p["metadata"]["name"].startswith("everywhere-")]
    webs = [p for p in pods if p["metadata"].get("labels", {}).get("app") == "web"]
    return len(daemons) == len(nodes) and len(webs) == 2 and any(p["metadata"]["name"] == "client" for p in pods)


def service_and_dns_answer(c):
    """The client pod reaches the web Service by its DNS name (cluster DNS + proxy)."""
    lookup = c.kubectl("exec", "client", "--", "nslookup", "web.default.svc.cluster.local", check=False)
    if lookup.returncode != 0:
        return False
    body = c.kubectl(
        "exec", "client", "--", "sh", "-c",
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web.default.svc.cluster.local 80",
        check=False,
    )
    return body.returncode == 0 and "hello-from-web" in body.stdout


def snapshot(c):
    """What must survive: object identities and the kubeconfig's bytes."""
    return {
        "configmap": get_json(c, "configmap", "keep-me")["metadata"]["uid"],
        "deployment": get_json(c, "deployment", "web")["metadata"]["uid"],
        "service": get_json(c, "service", "web")["spec"]["clusterIP"],
        "client": get_json(c, "pod", "client")["metadata"]["uid"],
        "nodes": sorted(n["metadata"]["uid"] for n in get_json(c, "nodes")["items"]),
        "kubeconfig": c.kubeconfig.read_text(),
    }


def fresh_ready(c, since):
    """Every node Ready with a heartbeat posted after `since` (RFC 3339 seconds)."""
    nodes = get_json(c, "nodes")["items"]
    return len(nodes) == 3 and all(
        any(
            cond["type"] == "Ready" and cond["status"] == "True" and cond["lastHeartbeatTime"] >= since
            for cond in n["status"]["conditions"]
        )
        for n in nodes
    )


def assert_back(c, before, since):
    wait_for("every node Ready again", lambda: fresh_ready(c, since), timeout=180)
    wait_for("every pod Running again", lambda: all_pods_running(c, since), timeout=240)
    wait_for("the Service and DNS to answer", lambda: service_and_dns_answer(c), timeout=120)
    after = snapshot(c)
    assert after == before
    # The client pod is the same object, its container made anew by the kubelet.
    assert get_json(c, "configmap", "keep-me")["data"] == {"answer": "42"}


def utc_now(c):
    # Node heartbeats are stamped with the nodes' clock, which is the host's.
    return run(["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"]).stdout.strip()


def test_node_resources_are_container_limits_and_capacity(life):
    c = life
    worker2 = f"{c.name}-worker2"
    host = json.loads(run(["docker", "inspect", worker2]).stdout)[0]["HostConfig"]
    assert host["NanoCpus"] == int(WORKER2_CPUS * 1e9)
    assert host["Memory"] == WORKER2_MEMORY_MI * 2**20
    node = get_json(c, "node", worker2)
    capacity, allocatable = node["status"]["capacity"], node["status"]["allocatable"]
    assert quantity(capacity["cpu"]) == WORKER2_CPUS, capacity
    assert quantity(capacity["memory"]) == WORKER2_MEMORY_MI * 2**20, capacity
    assert 0 < quantity(allocatable["cpu"]) <= WORKER2_CPUS, allocatable
    assert 0 < quantity(allocatable["memory"]) <= WORKER2_MEMORY_MI * 2**20, allocatable
    # A node without resources sees the whole machine.
    other = get_json(c, "node", f"{c.name}-worker")["status"]["capacity"]
    assert quantity(other["memory"]) > WORKER2_MEMORY_MI * 2**20, other


def test_survives_docker_restart_of_every_node(workload):
    c = workload
    before = snapshot(c)
    assert service_and_dns_answer(c)
    since = utc_now(c)
    run(["docker", "restart", *node_names(c)], timeout=180)
    assert_back(c, before, since)


def test_survives_stop_and_start_cluster(workload):
    c = workload
    before = snapshot(c)
    c.rind_cmd("stop", "cluster", "--name", c.name)
    for node in node_names(c):
        state = json.loads(run(["docker", "inspect", node]).stdout)[0]["State"]
        assert state["Running"] is False, (node, state)
    assert c.kubectl("get", "nodes", check=False).returncode != 0
    since = utc_now(c)
    c.rind_cmd("start", "cluster", "--name", c.name, "--wait", "3m")
    # --wait returned: every node has reported Ready since the start.
    assert fresh_ready(c, since)
    assert_back(c, before, since)


def test_add_worker_joins_and_runs_daemonset_pods(workload):
    c = workload
    out = c.rind_cmd("add", "node", "--name", c.name, "--wait", "3m")
    new = f"{c.name}-worker3"
    assert new in out.stdout + out.stderr
    node = get_json(c, "node", new)
    assert ready(node)
    assert node["status"]["nodeInfo"]["kubeletVersion"]
    wait_for(
        "a Running DaemonSet pod on the new worker",
        lambda: any(
            p["spec"].get("nodeName") == new and p["status"].get("phase") == "Running"
            for p in get_json(c, "pods", "-l", "app=everywhere")["items"]
        ),
        timeout=120,
    )
    # The new kubelet authenticates as itself, not as another node.
    conf = run(["docker", "exec", new, "cat", "/etc/kubernetes/kubelet.conf"]).stdout
    assert f"system:node:{new}" in conf


def test_delete_node_drains_respecting_a_pdb_and_leaves_nothing(workload):
    c = workload
    victim = f"{c.name}-worker3"
    # Two pods on the victim, guarded by a PDB that allows one disruption at a time. A
    # bare ReplicaSet (no rollout on a template change) keeps them there once its
    # template drops the nodeSelector, so that their replacements may go anywhere.
    apply(c, f"""
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: pinned}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: pinned}}}}
  template:
    metadata: {{labels: {{app: pinned}}}}
    spec:
      containers:
      - name: sleep
        image: {BUSYBOX}
        command: [sleep, "3600"]
        readinessProbe: {{exec: {{command: ["true"]}}, periodSeconds: 1}}
      nodeSelector: {{kubernetes.io/hostname: {victim}}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: pinned}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: pinned}}}}
""")
    wait_for(
        "the pinned pods Running and ready on the victim",
        lambda: pinned_ready(c) == 2,
        timeout=120,
    )
    c.kubectl("patch", "replicaset", "pinned", "--type=json",
              "-p", '[{"op": "remove", "path": "/spec/template/spec/nodeSelector"}]')
    assert {p["spec"]["nodeName"] for p in get_json(c, "pods", "-l", "app=pinned")["items"]} == {victim}

    # Watch the budget while the drain runs: never fewer than one ready pinned pod.
    seen = []
    drain = subprocess.Popen(
        [c.rind, "delete", "node", victim, "--name", c.name],
        env=c.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        while drain.poll() is None:
            seen.append(pinned_ready(c))
        output = drain.communicate(timeout=600)[0]
    finally:
        if drain.poll() is None:
            drain.kill()
    assert drain.returncode == 0, output
    assert victim in output
    assert seen and min(seen) >= 1, seen

    containers = run(["docker", "ps", "-a", "--filter", f"name=^/{victim}$", "--format", "{{.Names}}"]).stdout
    assert containers.strip() == ""
    names = [n["metadata"]["name"] for n in get_json(c, "nodes")["items"]]
    assert victim not in names and len(names) == 3, names
    assert not [
        p["metadata"]["name"] for p in get_json(c, "pods", "-A")["items"] if p["spec"].get("nodeName") == victim
    ]
    wait_for("the pinned pods ready elsewhere", lambda: pinned_ready(c) == 2, timeout=120)
    wait_for("every pod Running", lambda: all_pods_running(c), timeout=120)


def pinned_ready(c):
    """Pinned pods that are ready and not being deleted."""
    return len([
        p for p in get_json(c, "pods", "-l", "app=pinned")["items"]
        if not p["metadata"].get("deletionTimestamp")
        and any(cond["type"] == "Ready" and cond["status"] == "True" for cond in p["status"].get("conditions", []))
    ])


def test_add_control_plane_is_refused_without_ha(life):
    c = life
    out = c.rind_cmd("add", "node", "--name", c.name, "--role", "control-plane", check=False)
    assert out.returncode != 0
    assert "control-plane" in out.stderr and "HA" in out.stderr, out.stderr
    assert len(get_json(c, "nodes")["items"]) == 3


def test_delete_only_control_plane_is_refused(life):
    c = life
    out = c.rind_cmd("delete", "node", f"{c.name}-control-plane", "--name", c.name, check=False)
    assert out.returncode != 0 and "only control-plane" in out.stderr, out.stderr
    assert run(["docker", "inspect", f"{c.name}-control-plane"], check=False).returncode == 0
