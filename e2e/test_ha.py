"""Issue 19, HA: three control planes and two workers. The control planes' etcd members
form one cluster from a fixed member list; the `<name>-external-load-balancer`
container (our binary, `rind node lb`) publishes the API port on the host and forwards
each connection to an API server whose /readyz passes; every client goes through it.
While a client writes 20 objects a second through it, `docker stop` of a control plane
loses no acknowledged write and leaves the API unavailable for at most 3 s; a
Deployment scaled meanwhile converges; `docker start` brings the node back into etcd
and the load balancer; stopping the scheduler's leader moves its Lease at once."""

import json
import os
import re
import threading
import time
import uuid

import pytest

from conftest import RUN_ID, Cluster, run, wait_for

BUSYBOX = "docker.io/rind/busybox:v1"
NAMESPACE = "ha-writes"
# The longest the API may be unavailable while a control plane stops (issue 19).
MAX_GAP = 3.0
# Four writers of five objects a second each: 20 a second, as issue 19 asks.
WRITERS = 4
WRITER_RATE = 5.0
# The scheduler's lease duration (upstream's default, ours).
LEASE_DURATION = 15.0
# The load balancer's idle memory target (issue 19).
MAX_LB_RSS_KIB = 10 * 1024


@pytest.fixture(scope="module")
def ha(rind, kubectl, kubeconfig, tmp_path_factory):
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-ha", kubeconfig)
    config = tmp_path_factory.mktemp("config") / "ha.yaml"
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n"
        "- role: control-plane\n- role: control-plane\n- role: control-plane\n"
        "- role: worker\n- role: worker\n"
    )
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", str(config), "--wait", "4m")
        yield c
    finally:
        if os.environ.get("RIND_E2E_KEEP_LOGS"):
            c.rind_cmd("export", "logs", "--name", c.name, os.environ["RIND_E2E_KEEP_LOGS"], check=False)
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)
        leftovers = run(
            ["docker", "ps", "-a", "--filter", f"label=io.rind.cluster={c.name}", "-q"]
        ).stdout.split()
        assert not leftovers, f"containers left behind: {leftovers}"


def control_planes(c):
    return [f"{c.name}-control-plane", f"{c.name}-control-plane2", f"{c.name}-control-plane3"]


def lb_name(c):
    return f"{c.name}-external-load-balancer"


def get_json(c, *args):
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def node_ip(name):
    return run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name]
    ).stdout.strip()


def etcdctl(node, *args, check=True):
    return run(
        ["docker", "exec", node, "etcdctl", "--endpoints=https://127.0.0.1:2379",
         "--cacert", "/etc/kubernetes/pki/etcd/ca.crt",
         "--cert", "/etc/kubernetes/pki/etcd/server.crt",
         "--key", "/etc/kubernetes/pki/etcd/server.key", *args],
        check=check,
    )


def started_members(node):
    """Names of the etcd members `member list` shows as started."""
    out = etcdctl(node, "member", "list").stdout
    return sorted(line.split(", ")[2] for line in out.splitlines() if ", started, " in line)


def healthy_endpoints(node):
    """Every member's client URL that `endpoint health --cluster` finds healthy."""
    out = etcdctl(node, "endpoint", "health", "--cluster", check=False)
    return sorted(re.findall(r"(https://\S+) is healthy", out.stdout + out.stderr))


def kubernetes_endpoints(c):
    ep = get_json(c, "endpoints", "kubernetes", "-n", "default")
    return sorted(a["ip"] for s in ep.get("subsets", []) for a in s.get("addresses", []))


def lb_state(c, backend):
    """The load balancer's last word on `backend` (IP): "ready", "not ready", "gone" or
    "removed" (no longer in its configuration)."""
    logs = run(["docker", "logs", lb_name(c)]).stderr
    states = re.findall(rf"backend {re.escape(backend)}:6443 (ready|not ready|gone|removed)", logs)
    return states[-1] if states else None


def api_client(c):
    from kubernetes import client, config

    api = config.new_client_from_config(str(c.kubeconfig), context=f"rind-{c.name}")
    return client.CoreV1Api(api)


def test_control_planes_share_etcd_behind_the_load_balancer(ha):
    c = ha
    cps = control_planes(c)
    workers = [f"{c.name}-worker", f"{c.name}-worker2"]
    # kind's `get nodes` lists the load balancer container too; Kubernetes does not.
    listed = c.rind_cmd("get", "nodes", "--name", c.name).stdout.split()
    assert sorted(listed) == sorted([*cps, *workers, lb_name(c)])
    nodes = wait_for(
        "five Ready nodes",
        lambda: (items := get_json(c, "nodes")["items"])
        and len(items) == 5
        and all(any(x["type"] == "Ready" and x["status"] == "True" for x in n["status"]["conditions"])
                for n in items)
        and items,
        timeout=180,
    )
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted([*cps, *workers])
    # The host kubeconfig points at the port the load balancer publishes.
    port = run(["docker", "port", lb_name(c), "6443/tcp"]).stdout.split()[0]
    server = c.kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
    assert server == f"https://{port}", (server, port)
    for cp in cps:
        assert run(["docker", "port", cp]).stdout.strip() == "", f"{cp} publishes a port"
    # Every node's components reach the API through the load balancer.
    lb_ip = node_ip(lb_name(c))
    for node in [*cps, *workers]:
        conf = run(["docker", "exec", node, "cat", "/etc/kubernetes/kubelet.conf"]).stdout
        assert f"server: https://{lb_ip}:6443" in conf, (node, conf)
    # One etcd of three started members, every one healthy.
    assert started_members(cps[0]) == sorted(cps)
    cp_ips = sorted(node_ip(cp) for cp in cps)
    wait_for("three healthy etcd members",
             lambda: healthy_endpoints(cps[1]) == sorted(f"https://{ip}:2379" for ip in cp_ips))
    # `default/kubernetes` lists every API server.
    wait_for("every API server in default/kubernetes", lambda: kubernetes_endpoints(c) == cp_ips,
             timeout=60)
    slice_ = get_json(c, "endpointslice", "kubernetes", "-n", "default")
    assert sorted(e["addresses"][0] for e in slice_["endpoints"]) == cp_ips
    for ip in cp_ips:
        wait_for(f"the load balancer to find {ip} ready", lambda: lb_state(c, ip) == "ready", timeout=30)
    # One leader each for the scheduler and the controller-manager.
    for lease in ["kube-scheduler", "kube-controller-manager"]:
        holder = get_json(c, "lease", lease, "-n", "kube-system")["spec"]["holderIdentity"]
        assert holder.split("_")[0] in cps, (lease, holder)


def test_each_api_server_sees_every_write_of_the_others(ha):
    """Watches opened on fresh connections, which the load balancer deals out to the
    API servers in turn, all see a write made through yet another connection at once:
    every API server's watch cache is fed by the shared etcd."""
    c = ha
    from kubernetes import client

    name = f"seen-{uuid.uuid4().hex[:6]}"
    rv = api_client(c).list_namespaced_config_map("default").metadata.resource_version
    seen = {}

    def follow(index, response):
        for line in response:
            event = json.loads(line)
            if event["type"] == "ADDED" and event["object"]["metadata"]["name"] == name:
                seen[index] = time.monotonic()
                break
        response.release_conn()

    threads = []
    # Two rounds of the three API servers (other clients' connections may interleave).
    for index in range(6):
        # Returns once the API server has answered the watch request's headers.
        response = api_client(c).list_namespaced_config_map(
            "default", watch=True, resource_version=rv,
            field_selector=f"metadata.name={name}", timeout_seconds=30,
            _preload_content=False, _request_timeout=40,
        )
        thread = threading.Thread(target=follow, args=(index, response), daemon=True)
        thread.start()
        threads.append(thread)
    api_client(c).create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name)))
    written = time.monotonic()
    for thread in threads:
        thread.join(timeout=10)
    delays = {i: round(t - written, 3) for i, t in seen.items()}
    print(f"\nwatch delays after the write (s): {delays}")
    assert len(seen) == 6, f"only watches {sorted(seen)} saw the write"
    assert max(delays.values()) <= 1.0, delays


def test_failover_loses_no_acknowledged_write(ha):
    c = ha
    cps = control_planes(c)
    victim = cps[1]
    victim_ip = node_ip(victim)
    c.kubectl("create", "namespace", NAMESPACE)
    c.kubectl("create", "deployment", "sleeper", f"--image={BUSYBOX}", "--replicas=2",
              "--", "sleep", "3600")
    wait_for("two sleepers ready",
             lambda: get_json(c, "deployment", "sleeper").get("status", {}).get("readyReplicas") == 2,
             timeout=120)

    from kubernetes import client

    acked = []
    ack_times = []
    failures = []
    stop = threading.Event()
    lock = threading.Lock()

    def writer(index):
        """Creates ConfigMaps at WRITERS_RATE per second, each on its own connections."""
        api = api_client(c)
        n = 0
        next_at = time.monotonic()
        while not stop.is_set():
            name = f"w{index}-{n:05d}"
            body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"n": str(n)})
            try:
                api.create_namespaced_config_map(NAMESPACE, body, _request_timeout=(1, 2))
                with lock:
                    acked.append(name)
                    ack_times.append(time.monotonic())
                n += 1
            except client.exceptions.ApiException as err:
                if err.status == 409:  # an earlier attempt landed before its reply was lost
                    n += 1
                with lock:
                    failures.append((time.monotonic(), f"{err.status}"))
            except Exception as err:  # connection reset or timeout: try again
                with lock:
                    failures.append((time.monotonic(), type(err).__name__))
            next_at += 1 / WRITER_RATE
            time.sleep(max(0.0, next_at - time.monotonic()))
            # A slow spell is not made up with a burst.
            next_at = max(next_at, time.monotonic() - 1 / WRITER_RATE)

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(WRITERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(3)
        stopped_at = time.monotonic()
        run(["docker", "stop", victim], timeout=60)
        stop_took = time.monotonic() - stopped_at
        # Scaled while the node is down; the API answers through the survivors.
        wait_for("the scale to be accepted",
                 lambda: c.kubectl("scale", "deployment", "sleeper", "--replicas=4", check=False).returncode == 0,
                 timeout=30)
        time.sleep(5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    ended = time.monotonic()
    assert not any(thread.is_alive() for thread in threads)
    rate = len(acked) / (ended - started)
    points = [started, *sorted(ack_times), ended]
    gaps = [(b - a, a - started) for a, b in zip(points, points[1:])]
    longest, at = max(gaps)
    print(f"\nHA failover: {len(acked)} writes acknowledged at {rate:.1f}/s, "
          f"{len(failures)} failed attempts, docker stop took {stop_took:.1f}s; "
          f"longest API gap {longest:.2f}s (at +{at:.1f}s, stop issued at +{stopped_at - started:.1f}s)")
    assert rate >= 15, f"the writer managed only {rate:.1f} writes/s"
    assert longest <= MAX_GAP, f"the API was unavailable for {longest:.2f}s: {failures}"
    # Every acknowledged write is there.
    stored = {item.metadata.name for item in api_client(c).list_namespaced_config_map(NAMESPACE).items}
    lost = [name for name in acked if name not in stored]
    assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:10]}"
    # The Deployment scaled during the outage converges.
    wait_for("four sleepers ready",
             lambda: get_json(c, "deployment", "sleeper").get("status", {}).get("readyReplicas") == 4,
             timeout=180)
    # The stopped API server drops out of the load balancer and, once its lease
    # expires, out of default/kubernetes.
    assert lb_state(c, victim_ip) in ("not ready", "gone")
    wait_for("the stopped API server to leave default/kubernetes",
             lambda: victim_ip not in kubernetes_endpoints(c), timeout=60)

    # Back: etcd member started and healthy, API server ready in the load balancer.
    run(["docker", "start", victim])
    cp_ips = sorted(node_ip(cp) for cp in cps)
    wait_for("the restarted member healthy in etcd",
             lambda: healthy_endpoints(cps[0]) == sorted(f"https://{ip}:2379" for ip in cp_ips),
             timeout=120)
    assert started_members(victim) == sorted(cps)
    wait_for("the load balancer to take the restarted API server back",
             lambda: lb_state(c, victim_ip) == "ready", timeout=120)
    wait_for("the restarted API server back in default/kubernetes",
             lambda: kubernetes_endpoints(c) == cp_ips, timeout=60)
    # Its etcd member holds the objects written while it was away.
    def local_count():
        out = etcdctl(victim, "get", "--prefix", "--keys-only", "--consistency=s",
                      f"/registry/configmaps/{NAMESPACE}/w").stdout
        return len([line for line in out.splitlines() if line.strip()])

    wait_for("the restarted member to hold every acknowledged write",
             lambda: local_count() >= len(acked), timeout=60)


def test_stopping_the_scheduler_leader_moves_its_lease(ha):
    c = ha
    cps = control_planes(c)

    def holder():
        return get_json(c, "lease", "kube-scheduler", "-n", "kube-system")["spec"].get("holderIdentity") or ""

    leader = wait_for("a scheduler leader", lambda: holder().split("_")[0] in cps and holder())
    node = leader.split("_")[0]
    stopped_at = time.monotonic()
    run(["docker", "stop", node], timeout=60)
    new = wait_for("another scheduler leader",
                   lambda: (h := holder()).split("_")[0] in cps and h.split("_")[0] != node and h,
                   timeout=LEASE_DURATION + 30, interval=0.2)
    moved = time.monotonic() - stopped_at
    print(f"\nscheduler lease moved from {node} to {new.split('_')[0]} {moved:.1f}s after docker stop")
    assert moved <= LEASE_DURATION, f"the scheduler lease took {moved:.1f}s to move"
    # The new leader schedules.
    c.kubectl("run", "after-failover", f"--image={BUSYBOX}", "--restart=Never", "--", "sleep", "3600")
    wait_for("the pod scheduled by the new leader",
             lambda: get_json(c, "pod", "after-failover")["spec"].get("nodeName"), timeout=60)
    run(["docker", "start", node])


def test_load_balancer_idle_memory(ha):
    """The balancer's own memory is its anonymous resident set: the file-backed part is
    the rind binary's pages, the same file (one image layer) whose page cache the
    nodes' components share."""
    c = ha
    status = run(["docker", "exec", lb_name(c), "cat", "/proc/1/status"]).stdout
    fields = dict(
        (k, int(v.split()[0])) for k, v in
        (line.split(":", 1) for line in status.splitlines() if line.startswith(("VmRSS", "RssAnon", "RssFile")))
    )
    print(f"\nload balancer memory: VmRSS {fields['VmRSS']} KiB "
          f"(anonymous {fields['RssAnon']} KiB, file-backed {fields['RssFile']} KiB)")
    assert fields["RssAnon"] <= MAX_LB_RSS_KIB, fields


def test_a_control_plane_added_joins_etcd_and_leaves_nothing_when_deleted(ha):
    c = ha
    cps = control_planes(c)
    new = f"{c.name}-control-plane4"
    # etcd refuses a new member while one of the others is down (quorum with it would
    # need a member that is not there): the node stopped above must be back first.
    wait_for("three healthy etcd members", lambda: len(healthy_endpoints(cps[0])) == 3, timeout=120)
    out = c.rind_cmd("add", "node", "--name", c.name, "--role", "control-plane", "--wait", "3m")
    assert new in out.stdout + out.stderr
    # A started etcd member, healthy like the others, and a Ready Node with the
    # control-plane taint.
    wait_for("the new member started in etcd",
             lambda: started_members(cps[0]) == sorted([*cps, new]), timeout=60)
    wait_for("four healthy etcd members", lambda: len(healthy_endpoints(cps[0])) == 4, timeout=60)
    node = get_json(c, "node", new)
    assert any(t["key"] == "node-role.kubernetes.io/control-plane" for t in node["spec"].get("taints", []))
    # The load balancer sends clients to its API server too.
    ip = node_ip(new)
    wait_for("the new API server ready in the load balancer", lambda: lb_state(c, ip) == "ready", timeout=30)
    wait_for("the new API server in default/kubernetes", lambda: ip in kubernetes_endpoints(c), timeout=30)
    c.rind_cmd("delete", "node", new, "--name", c.name)
    # No container, no etcd member, no Node object.
    assert not run(["docker", "ps", "-a", "-q", "--filter", f"name=^{new}$"]).stdout.strip()
    members = etcdctl(cps[0], "member", "list").stdout
    assert new not in members and ip not in members, members
    assert new not in c.kubectl("get", "nodes", "-o", "name").stdout
    wait_for("the load balancer to drop it", lambda: lb_state(c, ip) == "removed", timeout=30)
    # The cluster still writes.
    c.kubectl("create", "configmap", f"after-{uuid.uuid4().hex[:6]}")
