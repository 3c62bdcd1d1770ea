"""Issue 19, kind's config whole and `type: LoadBalancer` Services: on one control plane
and two workers built from a config using most of kind's v1alpha4 fields, node labels
and kubeadm-patch labels and taints land on the right nodes, an `extraPortMappings`
NodePort and a LoadBalancer Service answer from the host, an `extraMounts` folder is
visible in a pod through hostPath, and `certSANs` reach the API server's certificate.
kind's own documentation configs (src/cluster/testdata/kind-docs) either create the
cluster they describe or are refused naming the field."""

import base64
import json
import os
import socket
import ssl
import tempfile
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, RUN_ID, Cluster, run, wait_for

KIND_DOCS = ROOT / "src" / "cluster" / "testdata" / "kind-docs"
NODE_PORT = 30950
SAN = "rind-e2e.example.com"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kc(rind, kubectl, kubeconfig, busybox_image, tmp_path_factory):
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-kindcfg", kubeconfig)
    c.host_port = free_port()
    c.api_port = free_port()
    c.shared = tmp_path_factory.mktemp("shared")
    (c.shared / "greeting.txt").write_text(f"hello from the host {RUN_ID}\n")
    config = tmp_path_factory.mktemp("config") / "cluster.yaml"
    config.write_text(f"""kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
featureGates:
  SidecarContainers: true
runtimeConfig:
  "api/alpha": "false"
networking:
  apiServerAddress: 127.0.0.1
  apiServerPort: {c.api_port}
  podSubnet: 10.240.0.0/16
  serviceSubnet: 10.100.0.0/16
  dnsSearch: [rind.test]
kubeadmConfigPatches:
- |
  kind: ClusterConfiguration
  apiServer:
    certSANs: [{SAN}]
- |
  apiVersion: kubelet.config.k8s.io/v1beta1
  kind: KubeletConfiguration
  evictionHard:
    nodefs.available: "0%"
  maxPods: 50
nodes:
- role: control-plane
  extraPortMappings:
  - containerPort: {NODE_PORT}
    hostPort: {c.host_port}
    listenAddress: 127.0.0.1
    protocol: tcp
- role: worker
  labels:
    tier: frontend
  extraMounts:
  - hostPath: {c.shared}
    containerPath: /shared
    readOnly: true
- role: worker
  kubeadmConfigPatches:
  - |
    kind: JoinConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        node-labels: "my-label2=true"
        register-with-taints: "my-taint=presence:NoSchedule"
""")
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", str(config), "--wait", "3m")
        c.rind_cmd("load", "docker-image", busybox_image, "--name", c.name)
        c.image = busybox_image
        yield c
    finally:
        if os.environ.get("RIND_E2E_KEEP_LOGS"):
            c.rind_cmd("export", "logs", "--name", c.name, os.environ["RIND_E2E_KEEP_LOGS"], check=False)
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)


def get_json(c, *args):
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def apply(c, text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        c.kubectl("apply", "-f", f.name)


def web(name, image, port, service_type, extra=""):
    """A Deployment serving its pod name over HTTP on 8080, and a Service for it."""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: httpd
        image: {image}
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: {service_type}
  selector: {{app: {name}}}
  ports: [{{port: {port}, targetPort: 8080{extra}}}]
"""


def http_get(url):
    with urllib.request.urlopen(url, timeout=3) as r:
        return r.read().decode().strip()


def test_labels_and_taints_land_on_their_nodes(kc):
    nodes = {n["metadata"]["name"]: n for n in get_json(kc, "nodes")["items"]}
    worker, worker2 = nodes[f"{kc.name}-worker"], nodes[f"{kc.name}-worker2"]
    assert worker["metadata"]["labels"]["tier"] == "frontend"
    assert worker2["metadata"]["labels"]["my-label2"] == "true"
    assert "my-label2" not in worker["metadata"]["labels"]
    assert {"key": "my-taint", "value": "presence", "effect": "NoSchedule"} in worker2["spec"]["taints"]
    assert not worker["spec"].get("taints")
    # KubeletConfiguration maxPods: every node's pod capacity.
    assert {n["status"]["capacity"]["pods"] for n in nodes.values()} == {"50"}


def test_networking_fields(kc):
    config = json.loads(kc.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    assert config["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{kc.api_port}"
    nodes = get_json(kc, "nodes")["items"]
    assert all(n["spec"]["podCIDR"].startswith("10.240.") for n in nodes), [n["spec"].get("podCIDR") for n in nodes]
    assert get_json(kc, "service", "kubernetes")["spec"]["clusterIP"] == "10.100.0.1"
    dns = json.loads(kc.kubectl("get", "service", "kube-dns", "-n", "kube-system", "-o", "json").stdout)
    assert dns["spec"]["clusterIP"] == "10.100.0.10"
    for node in nodes:
        resolv = run(["docker", "exec", node["metadata"]["name"], "cat", "/etc/resolv.conf"]).stdout
        search = [line.split()[1:] for line in resolv.splitlines() if line.startswith("search")]
        assert search == [["rind.test"]], resolv


def test_extra_port_mapping_node_port_answers_from_the_host(kc):
    apply(kc, web("np", kc.image, 80, "NodePort", f", nodePort: {NODE_PORT}"))
    kc.kubectl("rollout", "status", "deployment/np", "--timeout=120s", timeout=150)
    pod_ip = get_json(kc, "pods", "-l", "app=np")["items"][0]["status"]["podIP"]
    assert pod_ip.startswith("10.240."), pod_ip
    body = wait_for(
        "the NodePort through the extraPortMappings host port",
        lambda: http_get(f"http://127.0.0.1:{kc.host_port}/"),
        timeout=30,
    )
    assert body.startswith("np-")


def test_extra_mount_is_visible_in_a_pod_through_host_path(kc):
    apply(kc, f"""apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  nodeSelector: {{tier: frontend}}
  restartPolicy: Never
  containers:
  - name: cat
    image: {kc.image}
    command: [cat, /data/greeting.txt]
    volumeMounts: [{{name: shared, mountPath: /data}}]
  volumes:
  - name: shared
    hostPath: {{path: /shared, type: Directory}}
""")
    wait_for(
        "the reader pod to finish",
        lambda: get_json(kc, "pod", "reader")["status"].get("phase") == "Succeeded",
        timeout=90,
    )
    assert kc.kubectl("logs", "reader").stdout == f"hello from the host {RUN_ID}\n"


def lb_ingress(c, name):
    ingress = get_json(c, "service", name)["status"].get("loadBalancer", {}).get("ingress")
    return ingress[0] if ingress else None


def test_load_balancer_services_answer_from_the_host(kc):
    apply(kc, web("lb-a", kc.image, 80, "LoadBalancer"))
    apply(kc, web("lb-b", kc.image, 80, "LoadBalancer"))
    kc.kubectl("rollout", "status", "deployment/lb-a", "deployment/lb-b", "--timeout=120s", timeout=150)
    a = wait_for("lb-a's ingress", lambda: lb_ingress(kc, "lb-a"), timeout=30)
    b = wait_for("lb-b's ingress", lambda: lb_ingress(kc, "lb-b"), timeout=30)
    # Both on loopback, on the Service's own port 80: each on an address of its own.
    assert a["ip"].startswith("127.") and b["ip"].startswith("127.")
    assert a["ip"] != b["ip"]
    assert a["ipMode"] == "Proxy"
    assert a["ports"] == [{"port": 80, "protocol": "TCP"}]
    # kubectl shows the address as the EXTERNAL-IP.
    row = kc.kubectl("get", "service", "lb-a", "--no-headers").stdout.split()
    assert row[3] == a["ip"], row
    assert wait_for("lb-a from the host", lambda: http_get(f"http://{a['ip']}:80/"), timeout=30).startswith("lb-a-")
    assert wait_for("lb-b from the host", lambda: http_get(f"http://{b['ip']}:80/"), timeout=30).startswith("lb-b-")
    # Deleted: the host port closes.
    kc.kubectl("delete", "service", "lb-b")

    def closed():
        with socket.socket() as s:
            s.settimeout(2)
            return s.connect_ex((b["ip"], 80)) != 0

    wait_for("lb-b's listener to close", closed, timeout=30)
    # Type changed away from LoadBalancer: the ingress is cleared.
    kc.kubectl("patch", "service", "lb-a", "-p", '{"spec": {"type": "ClusterIP"}}')
    wait_for("lb-a's ingress to be cleared", lambda: lb_ingress(kc, "lb-a") is None, timeout=30)


def test_cert_sans_reach_the_api_server_certificate(kc):
    config = json.loads(kc.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = config["clusters"][0]["cluster"]
    host, port = cluster["server"].removeprefix("https://").rsplit(":", 1)
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    context = ssl.create_default_context(cadata=ca)
    # The handshake checks the name against the certificate's SANs.
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=SAN) as tls:
            assert tls.version()
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(raw, server_hostname="not-a-san.example.com")


# kind documentation configs that rind refuses, with the field the error must name.
REFUSED = {
    "auditing-L47.yaml": "nodes[0].kubeadmConfigPatches[0]",
    "configuration-L76.yaml": 'featureGates."CSIMigration"',
    "configuration-L92.yaml": 'runtimeConfig."apps/v1beta2"',
    # IPv6 single-stack (configuration-L147.yaml, dual-stack, loads: e2e/test_dualstack.py
    # creates such a cluster).
    "configuration-L137.yaml": "networking.ipFamily",
    "configuration-L434.yaml": "nodes[0].kubeadmConfigPatches[0]",
    "quick-start-L450.yaml": 'featureGates."FeatureGateName"',
}


@pytest.mark.parametrize("fixture", sorted(REFUSED))
def test_kind_doc_config_refused_by_name(rind, kubeconfig, fixture):
    name = f"e2e-{RUN_ID}-refused"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    result = run(
        [rind, "create", "cluster", "--name", name, "--config", str(KIND_DOCS / fixture)],
        check=False,
        env=env,
    )
    if result.returncode == 0:
        # Wrongly accepted: remove it so the other cases are not judged by its leftovers.
        run([rind, "delete", "cluster", "--name", name], check=False, env=env)
    assert result.returncode != 0
    assert f"{fixture}:" in result.stderr and f": {REFUSED[fixture]}: " in result.stderr, result.stderr
    # Nothing was created.
    assert name not in run([rind, "get", "clusters"]).stdout


@pytest.mark.parametrize("fixture", ["configuration-L419.yaml", "configuration-L452.yaml"])
def test_kind_doc_config_creates_its_cluster(rind, kubectl, kubeconfig, fixture):
    """A node label through InitConfiguration (one node), and a worker tainted through
    JoinConfiguration (the doc's `name: test` overridden by --name, as kind allows)."""
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-doc{fixture[-8:-5]}", kubeconfig)
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", str(KIND_DOCS / fixture), "--wait", "3m")
        nodes = {n["metadata"]["name"]: n for n in get_json(c, "nodes")["items"]}
        if fixture == "configuration-L419.yaml":
            assert list(nodes) == [f"{c.name}-control-plane"]
            assert nodes[f"{c.name}-control-plane"]["metadata"]["labels"]["my-label"] == "true"
        else:
            assert sorted(nodes) == [f"{c.name}-control-plane", f"{c.name}-worker"]
            taints = nodes[f"{c.name}-worker"]["spec"]["taints"]
            assert {"key": "my-taint", "value": "presence", "effect": "NoSchedule"} in taints
    finally:
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)
    # The service load balancer container went with the cluster.
    left = run(["docker", "ps", "-a", "-q", "--filter", f"label=io.rind.service-lb={c.name}"]).stdout
    assert left.strip() == ""
