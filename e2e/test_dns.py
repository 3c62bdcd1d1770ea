"""Cluster DNS on a real cluster, driven by the real kubectl: the `coredns`
Deployment's pods (`k8s-app=kube-dns`) behind the `kube-dns` Service, each pod's
resolv.conf per dnsPolicy, cluster names (Services, headless Services, SRV, StatefulSet
pod names, pod records), NXDOMAIN at once for unknown cluster names, names outside the
cluster forwarded to the node's resolver (Docker's DNS knows the node containers), and
queries that keep answering while a DNS pod is deleted. The cluster has one control
plane and two workers, so queries and answers cross nodes as users' do.

Client pods run Debian's static busybox: `nslookup` for fully qualified names and
record types, `ping` (glibc's resolver: search list and ndots) for short names."""

import json
import os
import re
import subprocess
import time
import uuid

import pytest

from conftest import RUN_ID, Cluster, run, wait_for

DNS_IP = "10.96.0.10"
CLIENT = f"dns-client-{uuid.uuid4().hex[:5]}"


@pytest.fixture(scope="module")
def cluster(rind, kubectl, kubeconfig, tmp_path_factory):
    # Overrides conftest's single-node cluster: 1 control plane + 2 workers.
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-dns", kubeconfig)
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


@pytest.fixture(scope="module")
def dns(cluster, busybox_image):
    cluster.rind_cmd("load", "docker-image", busybox_image, "--name", cluster.name)
    wait_for("two ready DNS pods", lambda: len(ready_dns_pods(cluster)) == 2, timeout=180)
    pod(cluster, CLIENT, busybox_image)
    yield cluster


def ready_dns_pods(c):
    pods = json.loads(c.kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "json").stdout)
    return [
        p
        for p in pods["items"]
        if p["status"].get("phase") == "Running"
        and p["metadata"].get("deletionTimestamp") is None
        and any(cond["type"] == "Ready" and cond["status"] == "True" for cond in p["status"].get("conditions", []))
    ]


def pod(c, name, image, spec_extra=None, namespace="default"):
    spec = {
        "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}],
        "terminationGracePeriodSeconds": 0,
    }
    spec.update(spec_extra or {})
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    run(
        [c.kubectl_bin, "--context", f"rind-{c.name}", "apply", "-f", "-"],
        input=json.dumps(manifest),
        env=c.env,
    )
    c.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s")


def sh(c, name, command, check=True, namespace="default"):
    return c.kubectl("-n", namespace, "exec", name, "--", "sh", "-c", command, check=check)


def resolved_ip(c, name):
    """The address glibc's resolver (search list, ndots) gives `name`, via ping's banner."""
    out = sh(c, CLIENT, f"ping -c 1 -W 1 {name} 2>&1 || true").stdout
    found = re.search(r"PING \S+ \(([0-9a-f.:]+)\)", out)
    return found.group(1) if found else out


def nslookup(c, args, check=True):
    return sh(c, CLIENT, f"nslookup {args}", check=check)


def test_dns_pods_and_service_as_upstream(dns):
    c = dns
    deploy = json.loads(c.kubectl("-n", "kube-system", "get", "deployment", "coredns", "-o", "json").stdout)
    assert deploy["spec"]["replicas"] == 2
    svc = json.loads(c.kubectl("-n", "kube-system", "get", "service", "kube-dns", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"] == DNS_IP
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("dns", 53, "UDP"),
        ("dns-tcp", 53, "TCP"),
        ("metrics", 9153, "TCP"),
    ]
    assert svc["spec"]["selector"] == {"k8s-app": "kube-dns"}
    listed = c.kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns").stdout
    assert listed.count("Running") == 2, listed


def test_resolv_conf_follows_the_dns_policy(dns, busybox_image):
    c = dns
    node_conf = c.node_exec("cat", "/etc/resolv.conf").stdout
    node_search = next((line.split()[1:] for line in node_conf.splitlines() if line.startswith("search")), [])
    cluster_first = sh(c, CLIENT, "cat /etc/resolv.conf").stdout
    assert f"nameserver {DNS_IP}" in cluster_first, cluster_first
    assert (
        "search " + " ".join(["default.svc.cluster.local", "svc.cluster.local", "cluster.local", *node_search])
        in cluster_first
    ), cluster_first
    assert "options ndots:5" in cluster_first, cluster_first

    name = f"dns-default-{uuid.uuid4().hex[:5]}"
    pod(c, name, busybox_image, {"dnsPolicy": "Default"})
    default = sh(c, name, "cat /etc/resolv.conf").stdout
    # Docker's DNS (127.0.0.11) is the node's own; pods reach it through the relay of the
    # node they run on.
    spec = json.loads(c.kubectl("get", "pod", name, "-o", "json").stdout)
    node_ip = spec["status"]["hostIP"]
    assert f"nameserver {node_ip}" in default, default
    assert DNS_IP not in default, default

    name = f"dns-none-{uuid.uuid4().hex[:5]}"
    pod(
        c,
        name,
        busybox_image,
        {
            "dnsPolicy": "None",
            "dnsConfig": {
                "nameservers": ["192.0.2.53"],
                "searches": ["example.test"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            },
        },
    )
    none = sh(c, name, "cat /etc/resolv.conf").stdout
    assert "nameserver 192.0.2.53" in none and "search example.test" in none, none
    assert re.search(r"options .*ndots:2", none) and "edns0" in none, none

    name = f"dns-merge-{uuid.uuid4().hex[:5]}"
    pod(c, name, busybox_image, {"dnsConfig": {"searches": ["extra.test"], "options": [{"name": "ndots", "value": "3"}]}})
    merged = sh(c, name, "cat /etc/resolv.conf").stdout
    assert re.search(r"search default\.svc\.cluster\.local .*extra\.test", merged), merged
    assert "ndots:3" in merged and "ndots:5" not in merged, merged


def test_service_names_resolve(dns):
    c = dns
    kubernetes_ip = json.loads(c.kubectl("get", "service", "kubernetes", "-o", "json").stdout)["spec"]["clusterIP"]
    for name in ["kubernetes", "kubernetes.default", "kubernetes.default.svc.cluster.local"]:
        assert resolved_ip(c, name) == kubernetes_ip, name
    out = nslookup(c, "kubernetes.default.svc.cluster.local").stdout
    assert kubernetes_ip in out, out


def test_headless_srv_statefulset_and_pod_names(dns, busybox_image):
    c = dns
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web-hl"},
                "spec": {
                    "clusterIP": "None",
                    "selector": {"app": "web-hl"},
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                },
            },
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "web"},
                "spec": {
                    "serviceName": "web-hl",
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web-hl"}},
                    "template": {
                        "metadata": {"labels": {"app": "web-hl"}},
                        "spec": {
                            "terminationGracePeriodSeconds": 0,
                            "containers": [
                                {"name": "c", "image": busybox_image, "command": ["sleep", "3600"], "ports": [{"name": "http", "containerPort": 80}]}
                            ],
                        },
                    },
                },
            },
        ],
    }
    run([c.kubectl_bin, "--context", f"rind-{c.name}", "apply", "-f", "-"], input=json.dumps(manifest), env=c.env)
    try:
        c.kubectl("rollout", "status", "statefulset/web", "--timeout=120s")
        ips = {
            p["metadata"]["name"]: p["status"]["podIP"]
            for p in json.loads(c.kubectl("get", "pods", "-l", "app=web-hl", "-o", "json").stdout)["items"]
        }
        assert len(ips) == 2
        out = wait_for(
            "the headless Service to list both pods",
            lambda: (o := nslookup(c, "web-hl.default.svc.cluster.local", check=False).stdout)
            and all(ip in o for ip in ips.values())
            and o,
            timeout=10,
        )
        assert all(ip in out for ip in ips.values()), out
        stable = nslookup(c, "web-0.web-hl.default.svc.cluster.local").stdout
        assert ips["web-0"] in stable and ips["web-1"] not in stable, stable
        srv = nslookup(c, "-type=srv _http._tcp.web-hl.default.svc.cluster.local").stdout
        assert re.search(r"\b80\b", srv) and "web-hl.default.svc.cluster.local" in srv, srv
        dashed = ips["web-1"].replace(".", "-")
        record = nslookup(c, f"{dashed}.default.pod.cluster.local").stdout
        assert ips["web-1"] in record, record
    finally:
        c.kubectl("delete", "statefulset", "web", "--wait=false", check=False)
        c.kubectl("delete", "service", "web-hl", "--wait=false", check=False)


def test_unknown_cluster_names_fail_at_once(dns):
    c = dns
    started = time.monotonic()
    out = nslookup(c, "no-such-service.default.svc.cluster.local", check=False)
    elapsed = time.monotonic() - started
    assert out.returncode != 0
    assert "NXDOMAIN" in out.stdout + out.stderr, out
    # kubectl exec itself takes a few hundred ms; a timeout would take seconds.
    assert elapsed < 3, elapsed


def test_node_names_are_forwarded_to_the_nodes_resolver(dns):
    c = dns
    inspect = run(["docker", "inspect", c.control_plane, "--format", "{{json .NetworkSettings.Networks}}"]).stdout
    network = os.environ.get("RIND_EXPERIMENTAL_DOCKER_NETWORK") or "rind"
    node_ip = json.loads(inspect)[network]["IPAddress"]
    assert resolved_ip(c, c.control_plane) == node_ip


def test_scale_and_a_deleted_dns_pod_never_fail_a_query(dns):
    c = dns
    c.kubectl("-n", "kube-system", "scale", "deployment", "coredns", "--replicas=3")
    wait_for("three ready DNS pods", lambda: len(ready_dns_pods(c)) == 3, timeout=120)
    c.kubectl("-n", "kube-system", "scale", "deployment", "coredns", "--replicas=2")
    wait_for("two DNS pods again", lambda: len(ready_dns_pods(c)) == 2 and len(all_dns_pods(c)) == 2, timeout=120)

    # Queries through the Service in a loop inside the client pod while one DNS pod
    # is deleted and replaced: every one must answer.
    loop = subprocess.Popen(
        [
            c.kubectl_bin, "--context", f"rind-{c.name}", "exec", CLIENT, "--", "sh", "-c",
            "fails=0; for i in $(seq 1 150); do "
            "nslookup kubernetes.default.svc.cluster.local > /dev/null 2>&1 || fails=$((fails+1)); "
            "sleep 0.1; done; echo fails=$fails",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=c.env,
    )
    time.sleep(2)
    victim = ready_dns_pods(c)[0]["metadata"]["name"]
    c.kubectl("-n", "kube-system", "delete", "pod", victim, "--wait=false")
    out, err = loop.communicate(timeout=120)
    assert "fails=0" in out, out + err
    wait_for("two ready DNS pods after the deletion", lambda: len(ready_dns_pods(c)) == 2, timeout=120)


def all_dns_pods(c):
    pods = json.loads(c.kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "json").stdout)
    return pods["items"]
