"""Issue 18, the service proxy: on a real cluster, in both proxy modes (one cluster per
mode), a ClusterIP spreads over its ready endpoints, ClientIP affinity pins a client,
a NodePort answers on the host through `extraPortMappings` and on the node's IP, a pod
reaches itself through its own Service (hairpin), a deleted pod stops getting traffic
within 2 s, a Service without endpoints refuses at once, and `default/kubernetes`
reaches the API server."""

import json
import socket
import time
import urllib.request

import pytest

from conftest import RUN_ID, Cluster, run, wait_for

NODE_PORT = 30080
REQUESTS = 50


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
      containers:
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
