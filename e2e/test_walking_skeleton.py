"""Issue 2: `rind create cluster` gives a one-node cluster that the real kubectl uses
and that runs a pod; `rind delete cluster` leaves nothing behind."""

import json
import os
import subprocess
import time

import pytest

from conftest import run, wait_for

NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}


def pod_phase(cluster, name):
    return cluster.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}", check=False).stdout.strip()


def test_node_is_ready_with_control_plane_role(cluster):
    out = cluster.kubectl("get", "nodes", "--no-headers").stdout
    fields = out.split()
    assert fields[0] == cluster.control_plane, out
    assert fields[1] == "Ready", out
    assert fields[2] == "control-plane", out


def test_system_namespaces_exist(cluster):
    out = cluster.kubectl("get", "ns", "-o", "name").stdout.split()
    assert {n.removeprefix("namespace/") for n in out} >= NAMESPACES, out


def test_kubectl_version_prints_server_version(cluster):
    out = cluster.kubectl("version", "-o", "json").stdout
    server = json.loads(out)["serverVersion"]
    assert server["gitVersion"].startswith("v1."), out


def test_kubeconfig_context_merged_and_others_kept(cluster):
    contexts = run([cluster.kubectl_bin, "config", "get-contexts", "-o", "name"], env=cluster.env).stdout.split()
    assert f"rind-{cluster.name}" in contexts and "elsewhere" in contexts, contexts
    current = run([cluster.kubectl_bin, "config", "current-context"], env=cluster.env).stdout.strip()
    assert current == f"rind-{cluster.name}"
    assert "keep-me" in cluster.kubeconfig.read_text()


def test_pod_runs_to_completion_and_logs(cluster, busybox_image):
    cluster.rind_cmd("load", "docker-image", busybox_image, "--name", cluster.name)
    cluster.kubectl(
        "run", "hello", f"--image={busybox_image}", "--restart=Never", "--", "sh", "-c", "echo hello from rind"
    )
    wait_for("pod hello to succeed", lambda: pod_phase(cluster, "hello") == "Succeeded", timeout=120)
    logs = cluster.kubectl("logs", "hello").stdout
    assert logs.strip() == "hello from rind", logs


def test_long_running_pod_gets_ip_and_is_listed(cluster, busybox_image):
    # The image is loaded by the test above: loading it again skips the node.
    again = cluster.rind_cmd("load", "docker-image", busybox_image, "--name", cluster.name)
    assert "already present on all nodes" in again.stderr, again.stderr
    watcher = subprocess.Popen(
        [cluster.kubectl_bin, "--context", f"rind-{cluster.name}", "get", "pods", "-w", "--no-headers"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env,
    )
    try:
        cluster.kubectl("run", "sleeper", f"--image={busybox_image}", "--", "sleep", "3600")
        wait_for("pod sleeper to run", lambda: pod_phase(cluster, "sleeper") == "Running", timeout=120)
        pod = json.loads(cluster.kubectl("get", "pod", "sleeper", "-o", "json").stdout)
        ip = pod["status"]["podIP"]
        assert ip.startswith("10.244."), pod["status"]
        assert pod["spec"]["nodeName"] == cluster.control_plane
        statuses = pod["status"]["containerStatuses"]
        assert statuses[0]["ready"] is True and statuses[0]["imageID"], statuses

        yaml_out = cluster.kubectl("get", "pods", "-o", "yaml").stdout
        assert "name: sleeper" in yaml_out and f"podIP: {ip}" in yaml_out
        wide = cluster.kubectl("get", "pods", "-o", "wide").stdout
        row = next(line for line in wide.splitlines() if line.startswith("sleeper"))
        assert "Running" in row and ip in row and cluster.control_plane in row, wide
    finally:
        watcher.terminate()
        watched, errors = watcher.communicate(timeout=10)
    lines = [line for line in watched.splitlines() if line.startswith("sleeper")]
    assert lines, f"kubectl get pods -w printed no sleeper line: {watched!r} {errors!r}"
    assert any("Running" in line for line in lines), watched


def test_delete_pod_removes_its_containers(cluster):
    pod = json.loads(cluster.kubectl("get", "pod", "sleeper", "-o", "json").stdout)
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    listed = cluster.node_exec("ctr", "-n", "k8s.io", "containers", "ls", "-q").stdout
    assert container_id in listed
    cluster.kubectl("delete", "pod", "sleeper", "--timeout=90s", timeout=120)
    assert cluster.kubectl("get", "pod", "sleeper", check=False).returncode != 0
    wait_for(
        "the pod's container to be removed from containerd",
        lambda: container_id not in cluster.node_exec("ctr", "-n", "k8s.io", "containers", "ls", "-q").stdout,
        timeout=60,
    )


def test_objects_are_in_etcd_under_registry_keys(cluster):
    out = cluster.node_exec(
        "etcdctl",
        "--endpoints",
        "https://localhost:2379",
        "--cert",
        "/etc/kubernetes/pki/etcd/server.crt",
        "--key",
        "/etc/kubernetes/pki/etcd/server.key",
        "--cacert",
        "/etc/kubernetes/pki/etcd/ca.crt",
        "get",
        "--keys-only",
        "--prefix",
        "/registry",
    ).stdout
    keys = set(out.split())
    assert "/registry/pods/default/hello" in keys, out
    assert f"/registry/minions/{cluster.control_plane}" in keys, out
    for ns in NAMESPACES:
        assert f"/registry/namespaces/{ns}" in keys, out


def node_containers(name):
    out = run(["docker", "ps", "-a", "--filter", f"label=io.rind.cluster={name}", "--format", "{{.ID}}"]).stdout
    return sorted(out.split())


def test_creating_an_existing_cluster_fails_and_changes_nothing(cluster):
    before_containers = node_containers(cluster.name)
    before_config = cluster.kubeconfig.read_text()
    result = cluster.rind_cmd("create", "cluster", "--name", cluster.name, check=False)
    assert result.returncode != 0
    assert f'already exist for a cluster with the name "{cluster.name}"' in result.stderr, result.stderr
    assert node_containers(cluster.name) == before_containers
    assert cluster.kubeconfig.read_text() == before_config
    assert cluster.kubectl("get", "nodes").returncode == 0


@pytest.mark.parametrize(
    "body,field,line",
    [
        ("nodes:\n- role: control-plane\n  extraPortMapings: []\n", "extraPortMapings", 5),
        ("nodes:\n- role: master\n", "master", 4),
    ],
)
def test_bad_config_is_rejected_naming_file_line_and_field(cluster, tmp_path, body, field, line):
    path = tmp_path / "cluster.yaml"
    path.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n" + body)
    name = f"{cluster.name}-bad"
    result = cluster.rind_cmd("create", "cluster", "--name", name, "--config", str(path), check=False)
    assert result.returncode != 0
    assert str(path) in result.stderr, result.stderr
    assert field in result.stderr, result.stderr
    assert f"line {line}" in result.stderr, result.stderr
    assert node_containers(name) == []


def test_an_ipv4_cluster_is_on_the_rind_network_without_ipv6(cluster):
    # Docker sets IPv6 up in each container on a network with an IPv6 subnet, which an
    # IPv4 cluster would pay at every node's creation for nothing.
    if os.environ.get("RIND_EXPERIMENTAL_DOCKER_NETWORK"):
        pytest.skip("the nodes are on the network RIND_EXPERIMENTAL_DOCKER_NETWORK names")
    networks = json.loads(run(["docker", "inspect", cluster.control_plane,
                               "--format", "{{json .NetworkSettings.Networks}}"]).stdout)
    assert list(networks) == ["rind"], networks
    assert networks["rind"]["GlobalIPv6Address"] == "", networks
    network = json.loads(run(["docker", "network", "inspect", "rind"]).stdout)[0]
    assert not network["EnableIPv6"], network
    assert len(network["IPAM"]["Config"]) == 1, network["IPAM"]


def test_delete_cluster_leaves_nothing(rind, kubectl, kubeconfig, cluster):
    inspect = json.loads(run(["docker", "inspect", cluster.control_plane]).stdout)[0]
    volumes = [m["Name"] for m in inspect["Mounts"] if m["Type"] == "volume"]
    assert volumes, inspect["Mounts"]
    started = time.monotonic()
    cluster.rind_cmd("delete", "cluster", "--name", cluster.name)
    took = time.monotonic() - started
    assert node_containers(cluster.name) == []
    for volume in volumes:
        assert run(["docker", "volume", "inspect", volume], check=False).returncode != 0, volume
    others = run(["docker", "ps", "-aq", "--filter", "label=io.rind.cluster"]).stdout.split()
    if not others:
        assert run(["docker", "network", "inspect", "rind"], check=False).returncode != 0
    text = kubeconfig.read_text()
    assert f"rind-{cluster.name}" not in text
    assert "keep-me" in text and "elsewhere" in text
    print(f"create cluster: {cluster.create_seconds:.1f}s, delete cluster: {took:.1f}s")
