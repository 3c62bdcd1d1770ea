"""Issue 18, the service proxy: on a cluster of one control plane and two workers, in
both proxy modes (one cluster per mode), a ClusterIP spreads over its ready endpoints,
ClientIP affinity pins a client, a NodePort answers on the host through
`extraPortMappings` and on the node's IP, a pod reaches itself through its own Service
(hairpin), a deleted pod stops getting traffic within 2 s, a Service without endpoints
refuses at once, `default/kubernetes` reaches the API server, every node answers on the
NodePort, and `internalTrafficPolicy` / `externalTrafficPolicy: Local` keep to the
node's own endpoints."""

import json
import socket
import time
import urllib.request

import pytest

from conftest import RUN_ID, Cluster, run, wait_for

NODE_PORT = 30080
REQUESTS = 50
# Workers besides the control plane. With workers, the control plane is tainted, the
# web pods are kept on different workers, and the traffic-policy tests have
# endpoints on some nodes and not on others.
WORKERS = 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def svc(request, rind, kubectl, kubeconfig, busybox_image, tmp_path_factory):
    """A cluster whose proxy runs in the given mode, with the NodePort published on a
    free host port, the busybox image loaded, a 2-replica web Deployment behind
    Service `web`, and a client pod."""
    mode = request.param
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-svc-{mode[:3]}", kubeconfig)
    c.mode = mode
    c.host_port = free_port()
    config = tmp_path_factory.mktemp(f"svc-{mode}") / "cluster.yaml"
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
        f"networking:\n  kubeProxyMode: {mode}\n"
        "nodes:\n- role: control-plane\n  extraPortMappings:\n"
        f"  - containerPort: {NODE_PORT}\n    hostPort: {c.host_port}\n    listenAddress: 127.0.0.1\n"
        + "- role: worker\n" * WORKERS
    )
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", str(config), "--wait", "2m")
        c.rind_cmd("load", "docker-image", busybox_image, "--name", c.name)
        apply(c, tmp_path_factory.mktemp("m"), manifests(busybox_image))
        c.kubectl("rollout", "status", "deployment/web", "--timeout=120s", timeout=150)
        c.kubectl("wait", "--for=condition=Ready", "pod/client", "pod/solo", "--timeout=120s", timeout=150)
        yield c
    finally:
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)


def apply(c, tmp, text):
    path = tmp / "objects.yaml"
    path.write_text(text)
    c.kubectl("apply", "-f", str(path))


def web_command():
    # Each server answers with its pod name, so the client can tell who served it.
    return '["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]'


def spread():
    """With workers, one web pod per node (the Local traffic-policy tests need
    endpoints on some nodes only)."""
    if not WORKERS:
        return ""
    return (
        "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n"
        "          - labelSelector: {matchLabels: {app: web}}\n            topologyKey: kubernetes.io/hostname\n"
    )


def manifests(image):
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 30
{spread()}      containers:
      - name: httpd
        image: {image}
        command: {web_command()}
        ports: [{{name: http, containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http, nodePort: {NODE_PORT}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: nothing}}
spec:
  selector: {{app: nobody}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: solo, labels: {{app: solo}}}}
spec:
  containers:
  - name: httpd
    image: {image}
    command: {web_command()}
---
apiVersion: v1
kind: Service
metadata: {{name: solo}}
spec:
  selector: {{app: solo}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  containers:
  - name: sh
    image: {image}
    command: [sleep, "3600"]
"""


def cluster_ip(c, name):
    return json.loads(c.kubectl("get", "service", name, "-o", "json").stdout)["spec"]["clusterIP"]


def web_pods(c):
    pods = json.loads(c.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    return sorted(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))


def fetch_many(c, pod, url, count):
    """`count` HTTP GETs of `url` from `pod`, each a new connection; the answers."""
    script = f"for i in $(seq {count}); do timeout 5 wget -q -O - {url} || echo FAILED; done"
    out = c.kubectl("exec", pod, "--", "sh", "-c", script, timeout=180).stdout
    return out.split()


def test_cluster_ip_spreads_over_both_endpoints(svc):
    ip = cluster_ip(svc, "web")
    answers = fetch_many(svc, "client", f"http://{ip}/", REQUESTS)
    assert len(answers) == REQUESTS, answers
    assert set(answers) == set(web_pods(svc)), answers


def test_client_ip_affinity_pins_one_endpoint(svc):
    svc.kubectl(
        "patch", "service", "web", "-p",
        '{"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}}',
    )
    try:
        ip = cluster_ip(svc, "web")
        # Affinity holds from the first connection after the rules carry it.
        wait_for(
            "affinity in the rules",
            lambda: len(set(fetch_many(svc, "client", f"http://{ip}/", 10))) == 1,
            timeout=30,
        )
        answers = fetch_many(svc, "client", f"http://{ip}/", REQUESTS)
        assert len(set(answers)) == 1 and answers[0] in web_pods(svc), answers
    finally:
        svc.kubectl("patch", "service", "web", "-p", '{"spec": {"sessionAffinity": "None"}}')
    # And spreading again without it.
    wait_for(
        "both endpoints again",
        lambda: set(fetch_many(svc, "client", f"http://{ip}/", 30)) == set(web_pods(svc)),
        timeout=30,
    )


def test_node_port_answers_on_host_and_node_ip(svc):
    def from_host():
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.host_port}/", timeout=5) as r:
            return r.read().decode().strip()

    seen = {wait_for("the node port on the host", from_host, timeout=30)}
    for _ in range(30):
        seen.add(from_host())
    assert seen == set(web_pods(svc)), seen

    node = json.loads(svc.kubectl("get", "node", svc.control_plane, "-o", "json").stdout)
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    # From a pod to the node's IP, and from the node itself (its own OUTPUT path).
    answers = fetch_many(svc, "client", f"http://{node_ip}:{NODE_PORT}/", 20)
    assert set(answers) <= set(web_pods(svc)) and "FAILED" not in answers, answers
    out = run(["docker", "exec", svc.control_plane, "busybox", "wget", "-q", "-O", "-",
               f"http://{node_ip}:{NODE_PORT}/"]).stdout.strip()
    assert out in web_pods(svc), out


def test_hairpin_pod_reaches_itself_through_its_service(svc):
    ip = cluster_ip(svc, "solo")
    answers = fetch_many(svc, "solo", f"http://{ip}/", 5)
    assert answers == ["solo"] * 5, answers


def test_service_without_endpoints_refuses_at_once(svc):
    ip = cluster_ip(svc, "nothing")
    started = time.monotonic()
    out = svc.kubectl("exec", "client", "--", "sh", "-c", f"timeout 5 wget -q -O - http://{ip}/ 2>&1; echo rc=$?", timeout=60).stdout
    took = time.monotonic() - started
    assert "refused" in out.lower(), out
    assert took < 4, f"refusal took {took:.1f}s"


def test_kubernetes_service_reaches_the_api_server(svc):
    node = json.loads(svc.kubectl("get", "node", svc.control_plane, "-o", "json").stdout)
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    ep = json.loads(svc.kubectl("get", "endpoints", "kubernetes", "-o", "json").stdout)
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == [node_ip], ep
    assert ep["subsets"][0]["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}], ep
    eps = json.loads(svc.kubectl("get", "endpointslice", "kubernetes", "-o", "json").stdout)
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes", eps
    assert [e["addresses"] for e in eps["endpoints"]] == [[node_ip]], eps
    ip = cluster_ip(svc, "kubernetes")

    def https(target):
        # busybox's TLS offers no cipher suite our API server accepts, so the
        # handshake ends in the server's alert: proof a TLS server answered. The
        # Service must give the same answer as the API server's own address.
        script = f"timeout 10 wget -q -O - --no-check-certificate https://{target}/version 2>&1; echo rc=$?"
        return svc.kubectl("exec", "client", "--", "sh", "-c", script, timeout=60).stdout

    direct = https(f"{node_ip}:6443")
    through = https(ip)
    assert "TLS error from peer" in direct or '"gitVersion"' in direct, direct
    assert through == direct, (through, direct)


def node_ips(c):
    nodes = json.loads(c.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {
        n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP")
        for n in nodes
    }


def web_pods_by_node(c):
    pods = json.loads(c.kubectl("get", "pods", "-l", "app=web", "-o", "json").stdout)["items"]
    by_node = {}
    for p in pods:
        if not p["metadata"].get("deletionTimestamp"):
            by_node.setdefault(p["spec"]["nodeName"], set()).add(p["metadata"]["name"])
    return by_node


def node_get(node, url):
    """What the node container `node` gets from `url`, or FAILED within 3 s."""
    r = run(["docker", "exec", node, "timeout", "3", "busybox", "wget", "-q", "-O", "-", url], check=False)
    return r.stdout.strip() if r.returncode == 0 else "FAILED"


def test_node_port_answers_on_every_node(svc):
    for name, ip in node_ips(svc).items():
        answers = fetch_many(svc, "client", f"http://{ip}:{NODE_PORT}/", 10)
        assert "FAILED" not in answers and set(answers) <= set(web_pods(svc)), (name, answers)


def test_internal_traffic_policy_local_keeps_to_the_clients_node(svc):
    ip = cluster_ip(svc, "web")
    client_node = json.loads(svc.kubectl("get", "pod", "client", "-o", "json").stdout)["spec"]["nodeName"]
    local = web_pods_by_node(svc).get(client_node, set())
    svc.kubectl("patch", "service", "web", "-p", '{"spec": {"internalTrafficPolicy": "Local"}}')
    try:
        if local:
            wait_for(
                "only the client node's endpoints",
                lambda: set(fetch_many(svc, "client", f"http://{ip}/", 20)) <= local,
                timeout=30,
            )
        else:
            # No endpoint on the client's node: dropped, as upstream.
            wait_for(
                "traffic dropped",
                lambda: set(fetch_many(svc, "client", f"http://{ip}/", 2)) == {"FAILED"},
                timeout=30,
            )
    finally:
        svc.kubectl("patch", "service", "web", "-p", '{"spec": {"internalTrafficPolicy": "Cluster"}}')


def test_external_traffic_policy_local_answers_from_the_nodes_own_endpoints(svc):
    ips = node_ips(svc)
    by_node = web_pods_by_node(svc)
    svc.kubectl("patch", "service", "web", "-p", '{"spec": {"externalTrafficPolicy": "Local"}}')
    try:
        for node, ip in ips.items():
            others = [n for n in ips if n != node]
            url = f"http://{ip}:{NODE_PORT}/"
            if not others:
                # From the node itself the source is local: any endpoint may answer.
                answers = {node_get(node, url) for _ in range(10)}
                assert answers <= set(web_pods(svc)), answers
                continue
            expected = by_node.get(node, set()) or {"FAILED"}
            wait_for(
                f"{node}'s node port answering from {sorted(expected)}",
                lambda: {node_get(others[0], url) for _ in range(6)} <= expected,
                timeout=30,
            )
    finally:
        svc.kubectl("patch", "service", "web", "-p", '{"spec": {"externalTrafficPolicy": "Cluster"}}')


def test_deleted_pod_stops_receiving_within_two_seconds(svc):
    ip = cluster_ip(svc, "web")
    victim, survivor = web_pods(svc)[:2]
    deleted_at = time.monotonic()
    svc.kubectl("delete", "pod", victim, "--wait=false")
    clean_at = None
    deadline = deleted_at + 20
    while time.monotonic() < deadline:
        batch_start = time.monotonic()
        answers = fetch_many(svc, "client", f"http://{ip}/", 5)
        if victim not in answers and "FAILED" not in answers:
            clean_at = batch_start
            break
    assert clean_at is not None, "the deleted pod kept receiving traffic"
    assert clean_at - deleted_at <= 2.0, f"traffic stopped only {clean_at - deleted_at:.2f}s after the delete"
    # And it stays away while the pod terminates.
    answers = fetch_many(svc, "client", f"http://{ip}/", 30)
    assert victim not in answers and "FAILED" not in answers, answers
