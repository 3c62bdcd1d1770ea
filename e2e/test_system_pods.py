"""Issue 17, static pods: the node's own components (run by the node's supervisor, not
as CRI containers) appear in kube-system as upstream's mirror pods do, named and
labelled as kubeadm's, with a status read from the real processes and their health
endpoints; `kubectl logs` of a mirror pod prints the component's log; a deleted or
evicted mirror pod is published again and the process is never touched. On 1 control
plane + 2 workers: every node shows its network agent and service proxy."""

import json
import os
import select
import subprocess
import time

import pytest

from conftest import RUN_ID, Cluster, run, wait_for

CONTROL_PLANE = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
PER_NODE = ["rind-net", "kube-proxy"]
# The supervisor's name of each component (its log and status file).
SUPERVISED = {
    "etcd": "etcd",
    "kube-apiserver": "apiserver",
    "kube-controller-manager": "controller-manager",
    "kube-scheduler": "scheduler",
    "rind-net": "net",
    "kube-proxy": "proxy",
}


@pytest.fixture(scope="module")
def cluster3(rind, kubectl, kubeconfig, tmp_path_factory):
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-sysp", kubeconfig)
    config = tmp_path_factory.mktemp("config") / "cluster.yaml"
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n"
        "- role: control-plane\n- role: worker\n- role: worker\n"
    )
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", str(config), "--wait", "3m")
        yield c
    finally:
        if os.environ.get("RIND_E2E_KEEP_LOGS"):
            c.rind_cmd("export", "logs", "--name", c.name, os.environ["RIND_E2E_KEEP_LOGS"], check=False)
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)


def pod(c, name):
    return json.loads(c.kubectl("get", "pod", "-n", "kube-system", name, "-o", "json").stdout)


def is_ready(p):
    return any(
        cond["type"] == "Ready" and cond["status"] == "True"
        for cond in p.get("status", {}).get("conditions", [])
    )


def running_and_ready(c, name):
    p = pod(c, name)
    return p if p["status"].get("phase") == "Running" and is_ready(p) else None


def component_status(node, component):
    text = run(["docker", "exec", node, "cat", f"/run/rind/components/{SUPERVISED[component]}.json"]).stdout
    return json.loads(text)


def nodes(c):
    return run(
        ["docker", "ps", "--filter", f"label=io.rind.cluster={c.name}", "--format", "{{.Names}}"]
    ).stdout.split()


def test_fresh_cluster_lists_every_component_running(cluster3):
    c = cluster3
    workers = [n for n in nodes(c) if n != c.control_plane]
    assert len(workers) == 2, nodes(c)
    expected = [f"{x}-{c.control_plane}" for x in CONTROL_PLANE + PER_NODE]
    expected += [f"{x}-{w}" for w in workers for x in PER_NODE]
    for name in expected:
        wait_for(f"{name} Running and Ready", lambda name=name: running_and_ready(c, name), timeout=90)
    table = c.kubectl("get", "pods", "-n", "kube-system").stdout
    for name in expected:
        line = next(line for line in table.splitlines() if line.startswith(name + " "))
        assert "1/1" in line and "Running" in line, table
    # Nothing of the control plane runs on a worker.
    names = json.loads(c.kubectl("get", "pods", "-n", "kube-system", "-o", "json").stdout)["items"]
    for w in workers:
        assert not any(
            p["metadata"]["name"] == f"kube-apiserver-{w}" for p in names
        ), "a worker must not publish control-plane pods"


def test_mirror_pod_is_upstreams(cluster3):
    c = cluster3
    cp = c.control_plane
    p = wait_for("the API server's mirror pod", lambda: running_and_ready(c, f"kube-apiserver-{cp}"))
    meta = p["metadata"]
    notes = meta["annotations"]
    assert notes["kubernetes.io/config.source"] == "file"
    assert notes["kubernetes.io/config.mirror"] == notes["kubernetes.io/config.hash"]
    assert meta["labels"] == {"component": "kube-apiserver", "tier": "control-plane"}
    node = json.loads(c.kubectl("get", "node", cp, "-o", "json").stdout)
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Node", cp, node["metadata"]["uid"], True,
    )
    spec = p["spec"]
    assert spec["nodeName"] == cp and spec["hostNetwork"] is True
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["priority"] == 2000001000
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert p["status"]["podIP"] == node_ip and p["status"]["hostIP"] == node_ip
    # The status is the supervisor's record of the real process.
    record = component_status(cp, "kube-apiserver")
    container = p["status"]["containerStatuses"][0]
    assert container["name"] == "kube-apiserver"
    assert container["restartCount"] == record["restarts"]
    assert "running" in container["state"]
    pid = record["pid"]
    cmdline = run(["docker", "exec", cp, "cat", f"/proc/{pid}/cmdline"]).stdout.split("\0")
    assert cmdline[1:3] == ["node", "apiserver"], cmdline
    assert spec["containers"][0]["command"] == record["command"]
    probe = spec["containers"][0]["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["port"], probe["scheme"]) == ("/readyz", 6443, "HTTPS")


def test_killed_component_shows_its_restart(cluster3):
    c = cluster3
    cp = c.control_plane
    name = f"kube-scheduler-{cp}"
    wait_for(f"{name} ready", lambda: running_and_ready(c, name))
    before = component_status(cp, "kube-scheduler")
    run(["docker", "exec", cp, "kill", "-9", str(before["pid"])])

    def restarted():
        p = pod(c, name)
        status = p["status"]["containerStatuses"][0]
        if status["restartCount"] != before["restarts"] + 1 or "running" not in status["state"]:
            return None
        return status

    status = wait_for("the scheduler's restart in its mirror pod", restarted, timeout=60)
    last = status["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["reason"] == "Error", last
    assert component_status(cp, "kube-scheduler")["pid"] != before["pid"]
    # --previous prints the run that was killed, the plain log the run since.
    current = c.kubectl("logs", "-n", "kube-system", name).stdout.splitlines()
    previous = c.kubectl("logs", "-n", "kube-system", name, "--previous").stdout.splitlines()
    assert current[0].startswith("==== rind init ") and previous[0].startswith("==== rind init ")
    assert current[0] != previous[0]


def test_logs_of_the_api_server(cluster3):
    c = cluster3
    cp = c.control_plane
    name = f"kube-apiserver-{cp}"
    wait_for(f"{name} ready", lambda: running_and_ready(c, name))
    out = c.kubectl("logs", "-n", "kube-system", name).stdout
    lines = out.splitlines()
    assert lines, "kubectl logs printed nothing"
    log = run(["docker", "exec", cp, "cat", "/var/log/rind/apiserver.log"]).stdout
    # Every line printed is one of the component's own log lines (the current run).
    assert all(line in log for line in lines[:50])
    assert lines[0].startswith("==== rind init "), lines[0]
    tail = c.kubectl("logs", "-n", "kube-system", name, "--tail=3").stdout.splitlines()
    # Three lines, or all of them when the log is shorter still (it only grows).
    assert len(tail) in (min(3, len(lines)), 3), tail
    assert all(line in log for line in tail)
    marker = f"mirror-log-marker-{RUN_ID}"
    follow = subprocess.Popen(
        [c.kubectl_bin, "--context", f"rind-{c.name}", "logs", "-f", "--tail=1", "-n", "kube-system", name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=c.env,
    )

    def next_line(deadline):
        ready, _, _ = select.select([follow.stdout], [], [], max(0.0, deadline - time.monotonic()))
        return follow.stdout.readline() if ready else None

    try:
        # The last line arrives first: the follow is connected before the new line is
        # written, as the component would write it (its own timestamp first).
        assert next_line(time.monotonic() + 20) is not None, "kubectl logs -f --tail=1 printed nothing"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        run(["docker", "exec", cp, "sh", "-c", f"echo '{stamp}  INFO {marker}' >> /var/log/rind/apiserver.log"])
        deadline = time.monotonic() + 20
        while True:
            line = next_line(deadline)
            assert line, "the appended line did not arrive through kubectl logs -f"
            if marker in line:
                break
        assert follow.poll() is None, "the follow must keep going while the component runs"
    finally:
        follow.kill()
        follow.wait()
    recent = c.kubectl("logs", "-n", "kube-system", name, "--since=20s", "--timestamps").stdout
    assert marker in recent
    marked = next(line for line in recent.splitlines() if marker in line)
    assert marked.startswith(stamp.removesuffix("Z")), marked
    wrong = c.kubectl("logs", "-n", "kube-system", name, "-c", "etcd", check=False)
    assert wrong.returncode != 0
    assert f"container etcd is not valid for pod {name}" in wrong.stderr


def test_deleted_or_evicted_mirror_pod_comes_back_and_the_process_lives(cluster3):
    c = cluster3
    cp = c.control_plane
    name = f"kube-apiserver-{cp}"
    old = wait_for(f"{name} ready", lambda: running_and_ready(c, name))
    before = component_status(cp, "kube-apiserver")
    c.kubectl("delete", "pod", "-n", "kube-system", name, "--wait=true", timeout=60)
    new = wait_for(
        "the mirror pod published again",
        lambda: (p := running_and_ready(c, name)) and p["metadata"]["uid"] != old["metadata"]["uid"] and p,
        timeout=60,
    )
    assert new["status"]["containerStatuses"][0]["restartCount"] == before["restarts"]
    after = component_status(cp, "kube-apiserver")
    assert (after["pid"], after["restarts"]) == (before["pid"], before["restarts"])

    proxy = f"kube-proxy-{cp}"
    old = wait_for(f"{proxy} ready", lambda: running_and_ready(c, proxy))
    before = component_status(cp, "kube-proxy")
    eviction = json.dumps({
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": proxy, "namespace": "kube-system"},
    })
    run(
        [c.kubectl_bin, "--context", f"rind-{c.name}", "create", "--raw",
         f"/api/v1/namespaces/kube-system/pods/{proxy}/eviction", "-f", "-"],
        input=eviction, env=c.env,
    )
    wait_for(
        "the evicted mirror pod published again",
        lambda: (p := running_and_ready(c, proxy)) and p["metadata"]["uid"] != old["metadata"]["uid"],
        timeout=60,
    )
    after = component_status(cp, "kube-proxy")
    assert (after["pid"], after["restarts"]) == (before["pid"], before["restarts"])


def test_etcd_readiness_is_its_health_endpoint(cluster3):
    c = cluster3
    cp = c.control_plane
    name = f"etcd-{cp}"
    p = wait_for(f"{name} ready", lambda: running_and_ready(c, name))
    probe = p["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert (probe["host"], probe["port"], probe["path"]) == ("127.0.0.1", 2381, "/health")
