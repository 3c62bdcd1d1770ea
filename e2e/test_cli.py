"""Issue 19, kind's CLI whole, as a user runs it: `--wait` returns a cluster whose nodes
are Ready and system pods Running; `get nodes` with `--name`, `RIND_CLUSTER_NAME` and
`-A`; `get kubeconfig --internal` answering from a container on the `rind` network;
`export logs` as a folder and as a `.tar.gz`; `-q` and `-v`; deleting clusters that do
not exist; `load docker-image` / `load image-archive` with `--nodes` on a 1+1 cluster
(which `delete clusters NAME…` then removes)."""

import gzip
import json
import os
import shutil
import tarfile

import pytest

from conftest import RUN_ID, Cluster, run, wait_for

KIND_NODES = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: worker\n"


def rind_env(c, **extra):
    return {**c.env, **extra}


def rind(c, *args, check=True, env=None, timeout=600):
    return run([c.rind, *args], check=check, env=env or c.env, timeout=timeout)


def test_wait_returns_a_ready_cluster(cluster):
    """Right after `create cluster --wait` (the fixture's), with no waiting of our own:
    every node Ready, every kube-system pod Running, coredns with all its pods."""
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == [cluster.control_plane]
    for node in nodes:
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True", node["status"]["conditions"]
    pods = json.loads(cluster.kubectl("get", "pods", "-n", "kube-system", "-o", "json").stdout)["items"]
    phases = {p["metadata"]["name"]: p["status"].get("phase") for p in pods}
    assert phases and all(phase == "Running" for phase in phases.values()), phases
    coredns = [name for name in phases if name.startswith("coredns-")]
    assert len(coredns) == 2, phases
    # The node's own components are there as mirror pods.
    assert f"kube-apiserver-{cluster.control_plane}" in phases, phases


def test_get_nodes_by_flag_environment_and_all_clusters(cluster):
    by_flag = rind(cluster, "get", "nodes", "--name", cluster.name)
    assert by_flag.stdout.split() == [cluster.control_plane]
    by_env = rind(cluster, "get", "nodes", env=rind_env(cluster, RIND_CLUSTER_NAME=cluster.name))
    assert by_env.stdout.split() == [cluster.control_plane]
    # The flag wins over the environment.
    missing = f"e2e-{RUN_ID}-missing"
    flag_wins = rind(cluster, "get", "nodes", "-n", missing, env=rind_env(cluster, RIND_CLUSTER_NAME=cluster.name))
    assert flag_wins.stdout == ""
    assert f'No rind nodes found for cluster "{missing}".' in flag_wins.stderr
    everywhere = rind(cluster, "get", "nodes", "-A", "--name", missing)
    assert cluster.control_plane in everywhere.stdout.split()
    assert cluster.name in rind(cluster, "get", "clusters").stdout.split()
    # Environment for the other commands too: the kubeconfig of the cluster it names.
    kubeconfig = rind(cluster, "get", "kubeconfig", env=rind_env(cluster, RIND_CLUSTER_NAME=cluster.name))
    assert f"name: rind-{cluster.name}" in kubeconfig.stdout


def test_get_kubeconfig_internal_answers_on_the_docker_network(cluster, tmp_path):
    external = rind(cluster, "get", "kubeconfig", "--name", cluster.name).stdout
    assert "server: https://127.0.0.1:" in external
    internal = rind(cluster, "get", "kubeconfig", "--name", cluster.name, "--internal").stdout
    assert f"server: https://{cluster.control_plane}:6443" in internal
    path = tmp_path / "internal.kubeconfig"
    path.write_text(internal)
    path.chmod(0o644)
    image = run(["docker", "inspect", "-f", "{{.Config.Image}}", cluster.control_plane]).stdout.strip()
    # The real kubectl (static) in a throwaway container of the node image on the
    # `rind` network, as another container of the user's would reach the cluster.
    name = f"e2e-{RUN_ID}-internal-client"
    try:
        out = run([
            "docker", "run", "--rm", "--name", name, "--network", "rind",
            "-v", f"{cluster.kubectl_bin}:/kubectl:ro", "-v", f"{path}:/kubeconfig:ro",
            "--entrypoint", "/kubectl", image, "--kubeconfig", "/kubeconfig",
            "get", "nodes", "-o", "name",
        ], timeout=120)
    finally:
        run(["docker", "rm", "-f", name], check=False)
    assert out.stdout.split() == [f"node/{cluster.control_plane}"]


def check_logs(root, node):
    """What `export logs` must hold for `node` under `root`."""
    top = set(os.listdir(root))
    assert {"docker-info.txt", "rind-version.txt", node} <= top, top
    assert json.loads((root / "docker-info.txt").read_text())["ServerVersion"]
    d = root / node
    inspect = json.loads((d / "inspect.json").read_text())
    assert inspect["Name"] == f"/{node}"
    for log in ["kubelet.log", "containerd.log", "rind/kubelet.log", "rind/containerd.log",
                "rind/apiserver.log", "rind/etcd.log", "rind/scheduler.log",
                "rind/controller-manager.log", "serial.log"]:
        assert (d / log).is_file() and (d / log).stat().st_size > 0, log
    assert "rind init" in (d / "serial.log").read_text()
    assert "rind/dns:v1" in (d / "images.log").read_text()
    assert (d / "rind-version.txt").read_text().startswith("rind v")
    coredns = [p for p in os.listdir(d / "pods") if p.startswith("kube-system_coredns-")]
    assert len(coredns) == 2, os.listdir(d / "pods")
    container_logs = list((d / "pods" / coredns[0] / "coredns").glob("*.log"))
    assert container_logs, coredns[0]
    # The Services' load balancer container: its inspect and console output.
    lb = root / f"{node.removesuffix('-control-plane')}-service-lb"
    assert json.loads((lb / "inspect.json").read_text())["Name"] == f"/{lb.name}"
    assert (lb / "serial.log").stat().st_size > 0


def test_export_logs_as_a_folder_and_as_an_archive(cluster, tmp_path):
    folder = tmp_path / "logs"
    result = rind(cluster, "export", "logs", "--name", cluster.name, str(folder))
    # The path is the output; the sentence is on stderr.
    assert result.stdout.strip() == str(folder)
    assert f'Exporting logs for cluster "{cluster.name}" to:' in result.stderr
    check_logs(folder, cluster.control_plane)

    archive = tmp_path / "ci-logs.tar.gz"
    rind(cluster, "export", "logs", "--name", cluster.name, str(archive))
    with gzip.open(archive) as raw:
        assert raw.read(1)  # a real gzip stream
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "unpacked", filter="tar")
    check_logs(tmp_path / "unpacked" / "ci-logs", cluster.control_plane)
    # Nothing staged is left beside the archive.
    assert sorted(os.listdir(tmp_path)) == ["ci-logs.tar.gz", "logs", "unpacked"]

    # No folder of the user's is named in the temp dir: one is made and printed.
    made = rind(cluster, "export", "logs", "--name", cluster.name).stdout.strip()
    try:
        assert os.path.isfile(os.path.join(made, cluster.control_plane, "kubelet.log"))
    finally:
        shutil.rmtree(made, ignore_errors=True)

    missing = f"e2e-{RUN_ID}-missing"
    failed = rind(cluster, "export", "logs", "--name", missing, str(tmp_path / "none"), check=False)
    assert failed.returncode == 1
    assert f'ERROR: unknown cluster "{missing}"' in failed.stderr
    assert not (tmp_path / "none").exists()


def test_quiet_and_verbosity(cluster, tmp_path):
    missing = f"e2e-{RUN_ID}-missing"
    # -q: nothing on stderr, errors included; the exit status still tells.
    quiet = rind(cluster, "-q", "export", "logs", "--name", missing, check=False)
    assert (quiet.returncode, quiet.stderr) == (1, "")
    quiet = rind(cluster, "get", "nodes", "--name", missing, "-q")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    # Program output stays on stdout under -q.
    quiet = rind(cluster, "-q", "get", "nodes", "--name", cluster.name)
    assert (quiet.stdout.split(), quiet.stderr) == ([cluster.control_plane], "")
    # A usage error exits 1 (as kind), silenced by -q too.
    usage = rind(cluster, "get", "nodez", check=False)
    assert usage.returncode == 1 and "nodez" in usage.stderr
    usage = rind(cluster, "-q", "get", "nodez", check=False)
    assert (usage.returncode, usage.stderr) == (1, "")
    # -v 1 says what each step does; the default does not.
    plain = rind(cluster, "export", "logs", "--name", cluster.name, str(tmp_path / "a"))
    assert "collected the logs of" not in plain.stderr
    verbose = rind(cluster, "export", "logs", "--name", cluster.name, str(tmp_path / "b"), "-v", "1")
    assert f"collected the logs of {cluster.control_plane}" in verbose.stderr


def test_deleting_missing_clusters_succeeds(cluster):
    missing = [f"e2e-{RUN_ID}-gone1", f"e2e-{RUN_ID}-gone2"]
    one = rind(cluster, "delete", "cluster", "--name", missing[0])
    assert f'Deleting cluster "{missing[0]}" ...' in one.stderr
    many = rind(cluster, "delete", "clusters", *missing)
    assert f'Deleted clusters: ["{missing[0]}" "{missing[1]}"]' in many.stderr
    none = rind(cluster, "delete", "clusters", check=False)
    assert none.returncode == 1
    assert "ERROR: no cluster names provided" in none.stderr
    # The cluster in use was not touched by any of it.
    assert rind(cluster, "get", "nodes", "--name", cluster.name).stdout.split() == [cluster.control_plane]


def node_images(node):
    return run(["docker", "exec", node, "ctr", "--namespace", "k8s.io", "images", "list", "-q"]).stdout.split()


@pytest.fixture(scope="module")
def two_nodes(rind, kubectl, kubeconfig, tmp_path_factory):
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-cli-two", kubeconfig)
    config = tmp_path_factory.mktemp("config") / "cluster.yaml"
    config.write_text(KIND_NODES)
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", str(config), "--wait", "3m")
        yield c
    finally:
        if os.environ.get("RIND_E2E_KEEP_LOGS"):
            c.rind_cmd("export", "logs", "--name", c.name, os.environ["RIND_E2E_KEEP_LOGS"], check=False)
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)


def test_wait_covers_every_node(two_nodes):
    nodes = json.loads(two_nodes.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == [
        two_nodes.control_plane, f"{two_nodes.name}-worker"]
    for node in nodes:
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def test_load_into_chosen_nodes(two_nodes, busybox_image, tmp_path):
    c = two_nodes
    worker, cp = f"{c.name}-worker", c.control_plane
    ref = f"docker.io/library/{busybox_image}"
    assert ref not in node_images(worker) and ref not in node_images(cp)

    loaded = c.rind_cmd("load", "docker-image", busybox_image, busybox_image, "--name", c.name, "--nodes", worker)
    assert f'not yet present on node "{worker}", loading...' in loaded.stderr
    assert ref in node_images(worker)
    assert ref not in node_images(cp)
    again = c.rind_cmd("load", "docker-image", busybox_image, "--name", c.name, "--nodes", worker)
    assert "found to be already present on all nodes" in again.stderr

    unknown = c.rind_cmd("load", "docker-image", busybox_image, "--name", c.name, "--nodes", "nope", check=False)
    assert unknown.returncode == 1 and 'unknown node: "nope"' in unknown.stderr

    # The same image as a gzipped `docker save`, into the control plane only, with the
    # cluster named by the environment.
    archive = tmp_path / "busybox.tar.gz"
    tar_path = tmp_path / "busybox.tar"
    run(["docker", "save", "-o", str(tar_path), busybox_image])
    with open(tar_path, "rb") as src, gzip.open(archive, "wb") as dst:
        shutil.copyfileobj(src, dst)
    env = {**c.env, "RIND_CLUSTER_NAME": c.name}
    run([c.rind, "load", "image-archive", str(archive), "--nodes", cp], env=env, timeout=300)
    assert ref in node_images(cp)
    missing = run([c.rind, "load", "image-archive", str(tmp_path / "nope.tar")], env=env, check=False)
    assert missing.returncode == 1 and "nope.tar" in missing.stderr

    # A pod on the worker runs the loaded image without any registry.
    c.kubectl("run", "loaded", f"--image={busybox_image}", "--image-pull-policy=Never",
              "--overrides", json.dumps({"spec": {"nodeName": worker}}),
              "--command", "--", "sleep", "3600")
    wait_for("the pod from the loaded image to run",
             lambda: c.kubectl("get", "pod", "loaded", "-o", "jsonpath={.status.phase}").stdout == "Running",
             timeout=120)


def test_delete_clusters_by_name(two_nodes):
    """Last: removes the 1+1 cluster (and a missing one) in one command."""
    c = two_nodes
    missing = f"e2e-{RUN_ID}-gone3"
    out = c.rind_cmd("delete", "clusters", c.name, missing)
    assert f'Deleted clusters: ["{c.name}" "{missing}"]' in out.stderr
    assert c.name not in c.rind_cmd("get", "clusters").stdout.split()
    left = run(["docker", "ps", "-a", "--filter", f"label=io.rind.cluster={c.name}", "-q"]).stdout
    assert left.strip() == ""
    contexts = run([c.kubectl_bin, "config", "get-contexts", "-o", "name"], env=c.env).stdout.split()
    assert f"rind-{c.name}" not in contexts
