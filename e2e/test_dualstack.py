"""Issue 19, `networking.ipFamily: dual`: a cluster of one control plane and two
workers whose nodes have an IPv4 and an IPv6 InternalIP and podCIDR, whose pods get an
address of each family (reaching pods on other nodes over IPv6 with their own
addresses), and whose Services get one ClusterIP per family when they ask for it
(`ipFamilyPolicy`), each answering, with AAAA records in the cluster DNS and node
ports on the nodes' IPv6 addresses."""

import ipaddress
import json
import os

import pytest

from conftest import RUN_ID, Cluster, run, wait_for

BUSYBOX = "docker.io/rind/busybox:v1"


NETWORK = f"rind-e2e-{RUN_ID}-dual"


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def dual(request, rind, kubectl, kubeconfig, tmp_path_factory):
    """A dual-stack cluster per proxy mode (the IPv6 plane is ip6tables or `ip6`
    nftables tables)."""
    mode = request.param
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-dual-{mode[:3]}", kubeconfig)
    if mode == "iptables":
        # A network of this run's own (kind's KIND_EXPERIMENTAL_DOCKER_NETWORK, ours
        # RIND_EXPERIMENTAL_DOCKER_NETWORK), which rind makes with an IPv6 subnet as it
        # makes `rind-dual`, since a dual-stack cluster is the first on it.
        c.env["RIND_EXPERIMENTAL_DOCKER_NETWORK"] = NETWORK
        c.network = NETWORK
    else:
        # rind's own network for dual-stack clusters.
        c.network = "rind-dual"
    config = tmp_path_factory.mktemp("config") / "dual.yaml"
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
        f"networking:\n  ipFamily: dual\n  kubeProxyMode: {mode}\n"
        "nodes:\n- role: control-plane\n- role: worker\n- role: worker\n"
    )
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", str(config), "--wait", "3m")
        yield c
    finally:
        if os.environ.get("RIND_E2E_KEEP_LOGS"):
            c.rind_cmd("export", "logs", "--name", c.name, os.environ["RIND_E2E_KEEP_LOGS"], check=False)
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)
        if c.network == NETWORK:
            # rind keeps a network while any rind node is on it (other runs' too).
            run(["docker", "network", "rm", NETWORK], check=False)


def get_json(c, *args):
    return json.loads(c.kubectl("get", *args, "-o", "json").stdout)


def family(ip):
    return ipaddress.ip_address(ip.split("/")[0]).version


def internal_ips(node):
    return [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]


def ready(node):
    return any(
        cond["type"] == "Ready" and cond["status"] == "True"
        for cond in node.get("status", {}).get("conditions", [])
    )


def url_host(ip):
    return f"[{ip}]" if family(ip) == 6 else ip


def http_get(c, pod, ip, port):
    """The body `pod` gets from http://ip:port/ (busybox nc), or None when the
    connection fails within 3 s."""
    result = c.kubectl(
        "exec", pod, "--", "sh", "-c",
        f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}",
        check=False,
    )
    if result.returncode != 0 or " 200 " not in result.stdout:
        return None
    return result.stdout.replace("\r", "").split("\n\n", 1)[1].strip()


def apply(c, manifest):
    run(
        [c.kubectl_bin, "--context", f"rind-{c.name}", "apply", "-f", "-"],
        input=json.dumps(manifest),
        env=c.env,
    )


def test_nodes_have_a_podcidr_and_an_internal_ip_of_each_family(dual):
    c = dual
    network = json.loads(run(["docker", "network", "inspect", c.network]).stdout)[0]
    assert network["EnableIPv6"], network
    subnets = [cfg["Subnet"] for cfg in network["IPAM"]["Config"]]
    assert sorted(family(s) for s in subnets) == [4, 6], subnets
    nodes = wait_for(
        "three Ready nodes with two podCIDRs each",
        lambda: (items := get_json(c, "nodes")["items"])
        and len(items) == 3
        and all(ready(n) and len(n["spec"].get("podCIDRs", [])) == 2 for n in items)
        and items,
        timeout=180,
    )
    by_name = {n["metadata"]["name"]: n for n in nodes}
    for name, node in by_name.items():
        cidrs = node["spec"]["podCIDRs"]
        # IPv4 first (the primary family), a /24 and a /64 of kind's default ranges.
        assert [family(x) for x in cidrs] == [4, 6], cidrs
        assert node["spec"]["podCIDR"] == cidrs[0]
        assert cidrs[0].startswith("10.244.") and cidrs[0].endswith("/24"), cidrs
        assert ipaddress.ip_network(cidrs[1]).subnet_of(ipaddress.ip_network("fd00:10:244::/56")), cidrs
        assert ipaddress.ip_network(cidrs[1]).prefixlen == 64, cidrs
        ips = internal_ips(node)
        assert [family(x) for x in ips] == [4, 6], ips
        # The node's own addresses on the rind network are what it reports.
        addresses = run(["docker", "exec", name, "ip", "-o", "addr", "show", "dev", "eth0"]).stdout
        for ip in ips:
            assert f" {ip}/" in addresses, (ip, addresses)
        # Its pods' CNI config hands out an address of each family.
        conf = json.loads(run(["docker", "exec", name, "cat", "/etc/cni/net.d/10-rind.conflist"]).stdout)
        ranges = conf["plugins"][0]["ipam"]["ranges"]
        assert [r[0]["subnet"] for r in ranges] == cidrs
    # Every node routes every other node's IPv6 podCIDR via that node's IPv6 address.
    for name in by_name:
        routes = run(["docker", "exec", name, "ip", "-6", "route", "show"]).stdout
        for other, node in by_name.items():
            if other != name:
                assert f"{node['spec']['podCIDRs'][1]} via {internal_ips(node)[1]}" in routes, (name, routes)


@pytest.fixture(scope="module")
def pods(dual):
    """Two busybox httpd pods on the second worker (serving their pod name, logging
    each caller's address) and a client pod on the first."""
    c = dual
    worker, worker2 = f"{c.name}-worker", f"{c.name}-worker2"
    apply(c, {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": worker2},
                    "containers": [{
                        "name": "httpd",
                        "image": BUSYBOX,
                        "command": ["sh", "-c",
                                    "mkdir -p /www && hostname > /www/index.html && exec httpd -f -vv -p 8080 -h /www"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                    }],
                },
            },
        },
    })
    apply(c, {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client"},
        "spec": {
            "nodeName": worker,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}],
        },
    })
    c.kubectl("rollout", "status", "deployment/web", "--timeout=180s", timeout=200)
    c.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=120s")
    yield c
    c.kubectl("delete", "deployment", "web", "--wait=false", check=False)
    c.kubectl("delete", "pod", "client", "--wait=false", check=False)


def web_pods(c):
    return [p for p in get_json(c, "pods", "-l", "app=web")["items"] if len(p["status"].get("podIPs", [])) == 2]


def test_pods_get_an_address_of_each_family(pods):
    c = pods
    client = get_json(c, "pod", "client")
    for pod in [client, *web_pods(c)]:
        ips = [p["ip"] for p in pod["status"]["podIPs"]]
        assert [family(ip) for ip in ips] == [4, 6], ips
        assert pod["status"]["podIP"] == ips[0]
        node = get_json(c, "node", pod["spec"]["nodeName"])
        for ip, cidr in zip(ips, node["spec"]["podCIDRs"]):
            assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr), (ip, cidr)
        # The pod's own interface holds both.
        shown = c.kubectl("exec", pod["metadata"]["name"], "--", "ip", "addr", "show", "eth0").stdout
        for ip in ips:
            assert ip in shown, (ip, shown)


def test_pod_to_pod_across_nodes_over_ipv6_keeps_pod_addresses(pods):
    c = pods
    client = get_json(c, "pod", "client")
    server = web_pods(c)[0]
    client_v6 = client["status"]["podIPs"][1]["ip"]
    server_v6 = server["status"]["podIPs"][1]["ip"]
    assert server["spec"]["nodeName"] != client["spec"]["nodeName"]
    out = wait_for("an answer over IPv6", lambda: http_get(c, "client", server_v6, 8080), timeout=30)
    assert out == server["metadata"]["name"]
    # The server saw the client's own IPv6 pod address: pod-to-pod is not masqueraded.
    wait_for(
        "the server's log of the client's IPv6 pod address",
        lambda: client_v6 in c.kubectl("logs", server["metadata"]["name"]).stdout,
        timeout=20,
    )


@pytest.fixture(scope="module")
def dual_service(pods):
    c = pods
    apply(c, {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "type": "NodePort",
            "ipFamilyPolicy": "RequireDualStack",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    })
    yield c
    c.kubectl("delete", "service", "web", "--wait=false", check=False)


def test_require_dual_stack_service_gets_and_serves_both_families(dual_service):
    c = dual_service
    svc = get_json(c, "service", "web")
    spec = svc["spec"]
    assert spec["ipFamilies"] == ["IPv4", "IPv6"], spec
    ips = spec["clusterIPs"]
    assert [family(ip) for ip in ips] == [4, 6], ips
    assert spec["clusterIP"] == ips[0]
    assert ipaddress.ip_address(ips[0]) in ipaddress.ip_network("10.96.0.0/16")
    assert ipaddress.ip_address(ips[1]) in ipaddress.ip_network("fd00:10:96::/112")
    # The EndpointSlice controller publishes a slice per family.
    slices = wait_for(
        "an IPv4 and an IPv6 EndpointSlice with both pods",
        lambda: (items := get_json(c, "endpointslices", "-l", "kubernetes.io/service-name=web")["items"])
        and sorted(s["addressType"] for s in items) == ["IPv4", "IPv6"]
        and all(len(s.get("endpoints") or []) == 2 for s in items)
        and items,
        timeout=30,
    )
    for s in slices:
        want = 4 if s["addressType"] == "IPv4" else 6
        assert all(family(e["addresses"][0]) == want for e in s["endpoints"]), s
    names = {p["metadata"]["name"] for p in web_pods(c)}
    # Both ClusterIPs answer, from the client on the other worker, with the pods.
    for ip in ips:
        out = wait_for(f"an answer on {ip}", lambda ip=ip: http_get(c, "client", ip, 80), timeout=30)
        assert out in names, (ip, out)
    # DNS: A and AAAA for the Service's name, and a PTR for its IPv6 address.
    fqdn = "web.default.svc.cluster.local"
    aaaa = c.kubectl("exec", "client", "--", "nslookup", "-type=AAAA", fqdn).stdout
    assert str(ipaddress.ip_address(ips[1])) in aaaa, aaaa
    a = c.kubectl("exec", "client", "--", "nslookup", "-type=A", fqdn).stdout
    assert ips[0] in a, a
    ptr = c.kubectl("exec", "client", "--", "nslookup", ips[1]).stdout
    assert fqdn in ptr, ptr


def test_node_port_answers_on_the_nodes_ipv6_address(dual_service):
    c = dual_service
    node_port = get_json(c, "service", "web")["spec"]["ports"][0]["nodePort"]
    worker = get_json(c, "node", f"{c.name}-worker")
    worker_v6 = internal_ips(worker)[1]
    names = {p["metadata"]["name"] for p in web_pods(c)}

    # From the control-plane node (outside the pod network) to the first worker's
    # IPv6 address, whose pods are not the Service's: the proxy there sends it on to
    # the second worker.
    def fetch():
        result = run(
            ["docker", "exec", c.control_plane, "sh", "-c",
             f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {worker_v6} {node_port}"],
            check=False,
        )
        if result.returncode != 0 or " 200 " not in result.stdout:
            return None
        return result.stdout.replace("\r", "").split("\n\n", 1)[1].strip()

    assert wait_for("an answer on the worker's IPv6 node port", fetch, timeout=30) in names


def test_services_default_to_single_stack_of_the_primary_family(pods):
    c = pods
    apply(c, {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "plain"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })
    apply(c, {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "v6only"},
        "spec": {"ipFamilies": ["IPv6"], "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })
    try:
        plain = get_json(c, "service", "plain")["spec"]
        assert plain["ipFamilyPolicy"] == "SingleStack" and plain["ipFamilies"] == ["IPv4"], plain
        assert [family(ip) for ip in plain["clusterIPs"]] == [4]
        v6only = get_json(c, "service", "v6only")["spec"]
        assert v6only["ipFamilies"] == ["IPv6"], v6only
        assert [family(ip) for ip in v6only["clusterIPs"]] == [6]
        out = wait_for(
            "an answer on the IPv6-only Service",
            lambda: http_get(c, "client", v6only["clusterIP"], 80),
            timeout=30,
        )
        assert out in {p["metadata"]["name"] for p in web_pods(c)}
        # The API server's own Service stays single-stack IPv4, as upstream's.
        kubernetes = get_json(c, "service", "kubernetes")["spec"]
        assert kubernetes["ipFamilyPolicy"] == "SingleStack" and kubernetes["ipFamilies"] == ["IPv4"]
        assert kubernetes["clusterIPs"] == ["10.96.0.1"]
    finally:
        c.kubectl("delete", "service", "plain", "v6only", "--wait=false", check=False)


def test_a_requested_address_outside_its_range_is_refused(dual):
    """A Service asking for an IPv6 ClusterIP outside the IPv6 service range is refused
    with upstream's message, and the IPv4 one it was given first is given back. (A
    single-stack cluster's refusal of RequireDualStack is in the allocator's unit
    tests.)"""
    c = dual
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "outside"},
        "spec": {
            "ipFamilyPolicy": "RequireDualStack",
            "clusterIPs": ["10.96.0.200", "fd00:99::1"],
            "selector": {"app": "web"},
            "ports": [{"port": 80}],
        },
    }
    result = run(
        [c.kubectl_bin, "--context", f"rind-{c.name}", "apply", "-f", "-"],
        input=json.dumps(manifest),
        env=c.env,
        check=False,
    )
    assert result.returncode != 0
    assert "fd00:99::1" in result.stderr and "does not match the current range" in result.stderr, result.stderr
    # The IPv4 address it took first was given back.
    assert c.kubectl("get", "ipaddress", "10.96.0.200", check=False).returncode != 0
