"""Issue 18, multi-node and the pod network: a cluster of one control plane and two
workers from kind's `nodes:` list, with kind's node names and control-plane taint; the
network agent gives every node its podCIDR's CNI config and routes, so pods on
different nodes reach each other by pod IP with their own addresses, while traffic
leaving the pod network is masqueraded. `disableDefaultCNI` leaves nodes NotReady, and
`kubeProxyMode: ipvs` is refused."""

import json
import os

import pytest

from conftest import RUN_ID, Cluster, pod_cgroup_dirs, run, wait_for

BUSYBOX = "docker.io/rind/busybox:v1"
CP_TAINT = "node-role.kubernetes.io/control-plane"


def config_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("config") / "cluster.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def multinode(rind, kubectl, kubeconfig, tmp_path_factory):
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-multinode", kubeconfig)
    config = config_file(
        tmp_path_factory,
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n"
        "- role: control-plane\n- role: worker\n- role: worker\n",
    )
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", config, "--wait", "3m")
        yield c
    finally:
        if os.environ.get("RIND_E2E_KEEP_LOGS"):
            c.rind_cmd("export", "logs", "--name", c.name, os.environ["RIND_E2E_KEEP_LOGS"], check=False)
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)


def get_json(c, *args):
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def ready(node):
    return any(
        cond["type"] == "Ready" and cond["status"] == "True"
        for cond in node.get("status", {}).get("conditions", [])
    )


def http_get(c, pod, ip, port):
    """The body `pod` gets from http://ip:port/ (busybox nc; the image's static wget
    crashes in pods), or None when the connection fails within 3 s."""
    result = c.kubectl(
        "exec", pod, "--", "sh", "-c",
        f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}",
        check=False,
    )
    if result.returncode != 0 or " 200 " not in result.stdout:
        return None
    return result.stdout.replace("\r", "").split("\n\n", 1)[1].strip()


def internal_ip(node):
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def test_nodes_ready_with_kind_names_and_control_plane_taint(multinode):
    c = multinode
    names = [f"{c.name}-control-plane", f"{c.name}-worker", f"{c.name}-worker2"]
    nodes = wait_for(
        "three Ready nodes with their podCIDRs",
        lambda: (items := get_json(c, "nodes")["items"])
        and len(items) == 3
        and all(ready(n) and n["spec"].get("podCIDR") for n in items)
        and items,
        timeout=180,
    )
    assert sorted(n["metadata"]["name"] for n in nodes) == names
    by_name = {n["metadata"]["name"]: n for n in nodes}
    taints = by_name[names[0]]["spec"].get("taints", [])
    assert {"key": CP_TAINT, "effect": "NoSchedule"} in taints, taints
    for worker in names[1:]:
        assert not any(t["key"] == CP_TAINT for t in by_name[worker]["spec"].get("taints", []))
    cidrs = [n["spec"]["podCIDR"] for n in nodes]
    assert len(set(cidrs)) == 3, cidrs
    assert all(cidr.startswith("10.244.") and cidr.endswith("/24") for cidr in cidrs), cidrs
    # Each node's CNI config hands out its own podCIDR, with the node's uplink MTU.
    for name in names:
        conf = json.loads(run(["docker", "exec", name, "cat", "/etc/cni/net.d/10-rind.conflist"]).stdout)
        bridge = conf["plugins"][0]
        assert bridge["ipam"]["ranges"][0][0]["subnet"] == by_name[name]["spec"]["podCIDR"]
        mtu = run(["docker", "exec", name, "cat", "/sys/class/net/eth0/mtu"]).stdout.strip()
        assert bridge["mtu"] == int(mtu)
    # Every node routes every other node's podCIDR via that node's InternalIP.
    for name in names:
        routes = run(["docker", "exec", name, "ip", "route", "show"]).stdout
        for other in names:
            if other != name:
                o = by_name[other]
                assert f"{o['spec']['podCIDR']} via {internal_ip(o)}" in routes, (name, routes)


@pytest.fixture(scope="module")
def web(multinode, tmp_path_factory):
    """Four busybox httpd pods that serve their pod name and log each caller's address."""
    c = multinode
    path = tmp_path_factory.mktemp("web") / "web.yaml"
    path.write_text(
        f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: httpd
        image: {BUSYBOX}
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -vv -p 8080 -h /www"]
        ports:
        - {{name: http, containerPort: 8080}}
"""
    )
    c.kubectl("apply", "-f", str(path))
    c.kubectl("rollout", "status", "deployment/web", "--timeout=180s", timeout=200)
    yield c
    c.kubectl("delete", "deployment", "web", "--wait=false", check=False)


def web_pods(c):
    return [p for p in get_json(c, "pods", "-l", "app=web")["items"] if p["status"].get("podIP")]


def placement_report(c):
    """What a failed placement check needs: every pod with its node, the nodes' taints
    and conditions, and the scheduler's and kubelets' events."""
    pods = c.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
    nodes = "\n".join(
        f"{n['metadata']['name']}: taints={n['spec'].get('taints')} "
        f"conditions={[(x['type'], x['status'], x.get('reason')) for x in n['status'].get('conditions', [])]}"
        for n in get_json(c, "nodes")["items"]
    )
    events = c.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp", check=False).stdout
    return f"\n{pods}\n{nodes}\n{events}"


def test_deployment_pods_land_on_both_workers(web):
    c = web
    nodes = {p["spec"]["nodeName"] for p in web_pods(c)}
    assert nodes == {f"{c.name}-worker", f"{c.name}-worker2"}, (nodes, placement_report(c))


def test_pod_to_pod_across_nodes_keeps_pod_addresses(web):
    c = web
    pods = web_pods(c)
    by_node = {}
    for p in pods:
        by_node.setdefault(p["spec"]["nodeName"], p)
    client, server = by_node[f"{c.name}-worker"], by_node[f"{c.name}-worker2"]
    out = http_get(c, client["metadata"]["name"], server["status"]["podIP"], 8080)
    assert out == server["metadata"]["name"]
    # The server saw the client's own pod IP: pod-to-pod traffic is not masqueraded.
    wait_for(
        "the server's log of the client's pod IP",
        lambda: client["status"]["podIP"] in c.kubectl("logs", server["metadata"]["name"]).stdout,
        timeout=20,
    )


def test_traffic_leaving_the_pod_network_is_masqueraded(web):
    c = web
    client = next(p for p in web_pods(c) if p["spec"]["nodeName"] == f"{c.name}-worker")
    workers = {n["metadata"]["name"]: n for n in get_json(c, "nodes")["items"]}
    worker_ip = internal_ip(workers[f"{c.name}-worker"])
    cp_ip = internal_ip(workers[c.control_plane])
    # A listener outside the pod network: busybox httpd on the control-plane node's own
    # address, logging each caller's address.
    log = f"/tmp/masq-{RUN_ID}.log"
    pidfile = f"/tmp/masq-{RUN_ID}.pid"
    run(["docker", "exec", c.control_plane, "sh", "-c", "mkdir -p /tmp/masq && echo ok > /tmp/masq/index.html"])
    run(["docker", "exec", "-d", c.control_plane, "sh", "-c",
         f"echo $$ > {pidfile}; exec busybox httpd -f -vv -p 19999 -h /tmp/masq 2> {log}"])
    try:
        out = wait_for(
            "a reply from the control-plane node",
            lambda: http_get(c, client["metadata"]["name"], cp_ip, 19999),
            timeout=30,
        )
        assert out == "ok"
        seen = run(["docker", "exec", c.control_plane, "cat", log]).stdout
        assert worker_ip in seen, seen
        assert client["status"]["podIP"] not in seen, seen
    finally:
        run(["docker", "exec", c.control_plane, "sh", "-c", f"kill $(cat {pidfile})"], check=False)


def test_each_worker_keeps_its_pods_in_pod_cgroups(web):
    c = web
    pods = web_pods(c)
    nodes = [f"{c.name}-worker", f"{c.name}-worker2", c.control_plane]
    # Each web pod (BestEffort) has its cgroup on its own node, and only there.
    for p in pods:
        uid, home = p["metadata"]["uid"], p["spec"]["nodeName"]
        for node in nodes:
            dirs = pod_cgroup_dirs(node, uid)
            if node == home:
                assert dirs and all(d.endswith(f"/kubepods/besteffort/pod{uid}") for d in dirs), (node, dirs)
            else:
                assert not dirs, (node, dirs)
    gone = pods[0]
    c.kubectl("delete", "pod", gone["metadata"]["name"])
    wait_for(
        "the deleted pod's cgroup to be removed from its worker",
        lambda: not pod_cgroup_dirs(gone["spec"]["nodeName"], gone["metadata"]["uid"]),
        timeout=60,
    )
    wait_for("the deployment to replace the pod", lambda: len(web_pods(c)) == len(pods), timeout=120)


def routes_of(node):
    return run(["docker", "exec", node, "ip", "route", "show"]).stdout


def test_routes_follow_nodes_that_leave_and_come_back(multinode):
    c = multinode
    cp, w1, w2 = c.control_plane, f"{c.name}-worker", f"{c.name}-worker2"
    node = get_json(c, "node", w2)
    route = f"{node['spec']['podCIDR']} via {internal_ip(node)}"
    assert route in routes_of(cp) and route in routes_of(w1)
    c.kubectl("delete", "node", w2)
    wait_for("the route to the deleted node to go",
             lambda: route not in routes_of(cp) and route not in routes_of(w1), timeout=30)
    # The node's kubelet registers it again when the node restarts; it gets a podCIDR
    # (a free one, never one another node holds) and every node routes it again.
    run(["docker", "restart", w2], timeout=120)
    back = wait_for(
        "the restarted node to register with a podCIDR",
        lambda: (n := get_json(c, "node", w2)).get("spec", {}).get("podCIDR") and n,
        timeout=120,
    )
    others = {get_json(c, "node", n)["spec"]["podCIDR"] for n in (cp, w1)}
    assert back["spec"]["podCIDR"] not in others
    route = f"{back['spec']['podCIDR']} via {internal_ip(back)}"
    wait_for("the route to the returned node",
             lambda: route in routes_of(cp) and route in routes_of(w1), timeout=30)


def test_disable_default_cni_leaves_the_node_not_ready(rind, kubectl, kubeconfig, tmp_path_factory):
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-nocni", kubeconfig)
    config = config_file(
        tmp_path_factory,
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  disableDefaultCNI: true\n",
    )
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", config)
        node = wait_for(
            "the node registered with a podCIDR",
            lambda: (n := get_json(c, "node", c.control_plane)).get("spec", {}).get("podCIDR") and n,
            timeout=120,
        )
        assert not ready(node), node["status"]["conditions"]
        # As kind installs no kindnet then, no network agent runs and no CNI config is
        # written: the user's CNI owns the pod network.
        processes = run(["docker", "exec", c.control_plane, "ps", "-eo", "args="]).stdout
        assert "rind node kubelet" in processes and "rind node net" not in processes, processes
        listing = run(["docker", "exec", c.control_plane, "ls", "-A", "/etc/cni/net.d"], check=False).stdout
        assert listing.strip() == "", listing
        # Still NotReady at the kubelet's next status update.
        def heartbeat(n):
            return next(x["lastHeartbeatTime"] for x in n["status"]["conditions"] if x["type"] == "Ready")

        first = heartbeat(node)
        node = wait_for(
            "the next node status update",
            lambda: (n := get_json(c, "node", c.control_plane)) and heartbeat(n) != first and n,
            timeout=40,
        )
        assert not ready(node), node["status"]["conditions"]
    finally:
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)


@pytest.mark.parametrize(
    "text,words",
    [
        ("networking:\n  kubeProxyMode: ipvs\n", ["networking.kubeProxyMode", "ipvs", "kernel", "ip_vs"]),
    ],
)
def test_unsupported_configs_are_refused_before_anything_is_created(
    rind, kubectl, kubeconfig, tmp_path_factory, text, words
):
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-refused", kubeconfig)
    config = config_file(tmp_path_factory, "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n" + text)
    result = c.rind_cmd("create", "cluster", "--name", c.name, "--config", config, check=False)
    assert result.returncode != 0
    for word in words:
        assert word in result.stderr, result.stderr
    assert config in result.stderr, result.stderr
    listed = run(["docker", "ps", "-a", "--filter", f"label=io.rind.cluster={c.name}", "-q"]).stdout
    assert listed.strip() == ""
