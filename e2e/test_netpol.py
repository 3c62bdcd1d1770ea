"""Issue 18, NetworkPolicy enforced by the network agent on one control plane and two
workers: a default-deny policy blocks traffic, a policy admitting a labelled client
admits it and still blocks the others, and an egress policy blocks a destination.
Servers and clients sit on different workers, so every check crosses nodes."""

import json
import os

import pytest

from conftest import RUN_ID, Cluster, wait_for

BUSYBOX = "docker.io/rind/busybox:v1"


@pytest.fixture(scope="module")
def netpol(rind, kubectl, kubeconfig, tmp_path_factory):
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-netpol", kubeconfig)
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


def pod_yaml(name, labels, node, server):
    command = (
        '[sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]'
        if server
        else "[sleep, '3600']"
    )
    label_text = ", ".join(f"{k}: {v}" for k, v in labels.items())
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{{label_text}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: {BUSYBOX}
    command: {command}
    ports:
    - {{name: http, containerPort: 8080}}
"""


@pytest.fixture
def namespace(netpol, tmp_path):
    """A fresh namespace with servers `a` and `b` on one worker, clients `client`
    (role=client) and `other` on the other worker."""
    c = netpol
    ns = f"np-{os.urandom(3).hex()}"
    c.kubectl("create", "namespace", ns)
    w1, w2 = f"{c.name}-worker", f"{c.name}-worker2"
    docs = [
        pod_yaml("a", {"app": "a"}, w1, True),
        pod_yaml("b", {"app": "b"}, w1, True),
        pod_yaml("client", {"role": "client"}, w2, False),
        pod_yaml("other", {"role": "other"}, w2, False),
    ]
    path = tmp_path / "pods.yaml"
    path.write_text("---\n".join(docs))
    c.kubectl("-n", ns, "apply", "-f", str(path))
    c.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=120s", timeout=150)
    yield ns
    c.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def ip_of(c, ns, pod):
    return json.loads(c.kubectl("-n", ns, "get", "pod", pod, "-o", "json").stdout)["status"]["podIP"]


def reaches(c, ns, client, server, address=None):
    """Whether `client` gets the server pod's page within 2 s, from the pod's IP or from
    `address` ("IP PORT"; busybox nc, as the image's static wget crashes in pods)."""
    address = address or f"{ip_of(c, ns, server)} 8080"
    result = c.kubectl(
        "-n", ns, "exec", client, "--", "sh", "-c",
        f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {address}",
        check=False,
    )
    body = result.stdout.replace("\r", "").split("\n\n", 1)
    return result.returncode == 0 and len(body) == 2 and body[1].strip() == server


def apply(c, ns, tmp_path, text):
    path = tmp_path / f"policy-{os.urandom(2).hex()}.yaml"
    path.write_text(text)
    c.kubectl("-n", ns, "apply", "-f", str(path))


def test_default_deny_blocks_then_a_labelled_client_is_admitted(netpol, namespace, tmp_path):
    c, ns = netpol, namespace
    wait_for("client reaches a without policies", lambda: reaches(c, ns, "client", "a"), timeout=30)
    assert reaches(c, ns, "other", "a")
    apply(c, ns, tmp_path, """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny}
spec:
  podSelector: {}
  policyTypes: [Ingress]
""")
    wait_for("default deny to block client", lambda: not reaches(c, ns, "client", "a"), timeout=30)
    assert not reaches(c, ns, "other", "a")
    apply(c, ns, tmp_path, """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-clients}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
    ports:
    - port: http
""")
    wait_for("the labelled client to be admitted", lambda: reaches(c, ns, "client", "a"), timeout=30)
    assert not reaches(c, ns, "other", "a")
    # Through a Service the same holds: the service proxy translates the ClusterIP
    # before the policy sees the packet, with the client's own address kept.
    c.kubectl("-n", ns, "expose", "pod", "a", "--port", "80", "--target-port", "8080")
    cluster_ip = json.loads(c.kubectl("-n", ns, "get", "service", "a", "-o", "json").stdout)["spec"]["clusterIP"]
    wait_for("the client to reach a through its Service",
             lambda: reaches(c, ns, "client", "a", address=f"{cluster_ip} 80"), timeout=30)
    assert not reaches(c, ns, "other", "a", address=f"{cluster_ip} 80")
    # b is still under default deny only.
    assert not reaches(c, ns, "client", "b")
    c.kubectl("-n", ns, "delete", "networkpolicy", "default-deny", "allow-clients")
    wait_for("traffic to flow again", lambda: reaches(c, ns, "other", "a"), timeout=30)


def test_egress_policy_blocks_a_destination(netpol, namespace, tmp_path):
    c, ns = netpol, namespace
    wait_for("client reaches b", lambda: reaches(c, ns, "client", "b"), timeout=30)
    apply(c, ns, tmp_path, f"""apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: client-egress}}
spec:
  podSelector: {{matchLabels: {{role: client}}}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 10.244.0.0/16
        except: [{ip_of(c, ns, "b")}/32]
""")
    wait_for("egress to b to be blocked", lambda: not reaches(c, ns, "client", "b"), timeout=30)
    assert reaches(c, ns, "client", "a")
    # Other pods are not selected by the policy.
    assert reaches(c, ns, "other", "b")
