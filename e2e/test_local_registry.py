"""Issue 17, kind's "Local Registry" recipe unchanged: a cluster whose
`containerdConfigPatches` set containerd's registry `config_path`, a registry container
on the `rind` network (built here from Debian's `docker-registry` package with
mmdebstrap: no registry image can be pulled), a `hosts.toml` in every node sending
`localhost:PORT` to it, an image pushed from the host with `docker push`, and a pod that
pulls and runs it. The host port is a free one rather than kind's 5001, so runs of the
suite never collide; everything else is the guide's."""

import json
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from conftest import RUN_ID, Cluster, run, wait_for

# The registry's own config: Debian's default turns on htpasswd auth; the recipe's
# registry (registry:2) has none.
REGISTRY_CONFIG = """version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
http:
  addr: :5000
"""
LABEL = f"io.rind.e2e={RUN_ID}"
AUTH_CONFIG = REGISTRY_CONFIG + """auth:
  htpasswd:
    realm: rind-e2e
    path: /etc/docker/registry/htpasswd
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry_image(docker_engine):
    """Debian's docker-registry in a minimal root filesystem, imported into Docker
    (with apache2-utils for `htpasswd`: the registry's basic auth takes bcrypt only)."""
    if not shutil.which("mmdebstrap"):
        pytest.fail("mmdebstrap is needed to build the registry image (apt-get install mmdebstrap)")
    tag = f"rind-e2e-registry:{RUN_ID}"
    build = subprocess.Popen(
        ["mmdebstrap", "--variant=minbase", "--include=docker-registry,apache2-utils", "bookworm", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    imported = subprocess.run(
        ["docker", "import",
         "-c", 'ENTRYPOINT ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]',
         "-", tag],
        stdin=build.stdout, capture_output=True, text=True, timeout=1200,
    )
    build.stdout.close()
    err = build.stderr.read().decode(errors="replace")
    assert build.wait() == 0, f"mmdebstrap failed:\n{err[-3000:]}"
    assert imported.returncode == 0, imported.stderr
    yield tag
    run(["docker", "rmi", "-f", tag], check=False)


@pytest.fixture(scope="module")
def patched_cluster(rind, kubectl, kubeconfig, tmp_path_factory):
    c = Cluster(rind, kubectl, f"e2e-{RUN_ID}-registry", kubeconfig)
    config = tmp_path_factory.mktemp("config") / "cluster.yaml"
    # The guide's patch, verbatim.
    config.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
        "containerdConfigPatches:\n"
        "- |-\n"
        '  [plugins."io.containerd.grpc.v1.cri".registry]\n'
        '    config_path = "/etc/containerd/certs.d"\n'
    )
    try:
        c.rind_cmd("create", "cluster", "--name", c.name, "--config", str(config), "--wait", "2m")
        yield c
    finally:
        if os.environ.get("RIND_E2E_KEEP_LOGS"):
            c.rind_cmd("export", "logs", "--name", c.name, os.environ["RIND_E2E_KEEP_LOGS"], check=False)
        c.rind_cmd("delete", "cluster", "--name", c.name, check=False)


def start_registry(c, image, name, config, htpasswd=None):
    """A registry container on the cluster's Docker network, published on a loopback
    port, and each node's hosts.toml pointing `localhost:PORT` at it; its port."""
    port = free_port()
    tmp = tempfile.mkdtemp()
    os.chmod(tmp, 0o755)
    mounts = []
    for file, text in (("config.yml", config), ("htpasswd", htpasswd)):
        if text is None:
            continue
        path = os.path.join(tmp, file)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        mounts += ["-v", f"{path}:/etc/docker/registry/{file}:ro"]
    run(["docker", "run", "-d", "--restart=always", "--name", name, "--label", LABEL,
         "-p", f"127.0.0.1:{port}:5000", *mounts, image])
    # As the guide: connect the registry to the cluster's network.
    run(["docker", "network", "connect", "rind", name])
    nodes = run(["docker", "ps", "--filter", f"label=io.rind.cluster={c.name}",
                 "--format", "{{.Names}}"]).stdout.split()
    hosts = f'[host."http://{name}:5000"]\n'
    for node in nodes:
        directory = f"/etc/containerd/certs.d/localhost:{port}"
        run(["docker", "exec", node, "mkdir", "-p", directory])
        run(["docker", "exec", "-i", node, "cp", "/dev/stdin", f"{directory}/hosts.toml"], input=hosts)
    wait_for(
        "the registry to answer",
        lambda: run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/v2/"],
                    check=False).stdout in ("200", "401"),
        timeout=30,
    )
    return port, tmp


@pytest.fixture(scope="module")
def registry(patched_cluster, registry_image):
    name = f"rind-e2e-registry-{RUN_ID}"
    tmp = None
    try:
        port, tmp = start_registry(patched_cluster, registry_image, name, REGISTRY_CONFIG)
        yield port
    finally:
        run(["docker", "rm", "-f", name], check=False)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def auth_registry(patched_cluster, registry_image):
    """A second registry requiring basic auth (user `rind`)."""
    name = f"rind-e2e-authreg-{RUN_ID}"
    password = f"pw-{RUN_ID}"
    htpasswd = run(["docker", "run", "--rm", "--entrypoint", "htpasswd", registry_image,
                    "-Bbn", "rind", password]).stdout
    tmp = None
    try:
        port, tmp = start_registry(patched_cluster, registry_image, name, AUTH_CONFIG, htpasswd)
        yield port, "rind", password
    finally:
        run(["docker", "rm", "-f", name], check=False)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def test_containerd_config_carries_the_patch(patched_cluster):
    text = run(["docker", "exec", patched_cluster.control_plane, "cat", "/etc/containerd/config.toml"]).stdout
    assert 'config_path = "/etc/containerd/certs.d"' in text
    # The rest of rind's configuration survives the merge.
    assert "sandbox_image" in text and "restrict_oom_score_adj = true" in text


def test_pod_pulls_an_image_pushed_to_the_local_registry(patched_cluster, registry, busybox_image):
    c = patched_cluster
    image = f"localhost:{registry}/rind-e2e-hello:{RUN_ID}"
    run(["docker", "tag", busybox_image, image])
    try:
        run(["docker", "push", image], timeout=120)
    finally:
        run(["docker", "rmi", image], check=False)
    # The node does not hold the image: the pod's pull has to go to the registry.
    held = run(["docker", "exec", c.control_plane, "rind", "node", "image-id", image]).stdout.strip()
    assert held == "", f"the node already holds {image}"
    c.kubectl("run", "hello", f"--image={image}", "--restart=Never", "--", "echo", "hello from the local registry")
    try:
        wait_for(
            "the pod from the local registry to succeed",
            lambda: json.loads(c.kubectl("get", "pod", "hello", "-o", "json").stdout)["status"].get("phase") == "Succeeded",
            timeout=120,
        )
        assert c.kubectl("logs", "hello").stdout == "hello from the local registry\n"
        events = c.kubectl("get", "events", "--field-selector", "involvedObject.name=hello", "-o", "json").stdout
        reasons = [e["reason"] for e in json.loads(events)["items"]]
        assert "Pulled" in reasons, reasons
        pulled = next(e for e in json.loads(events)["items"] if e["reason"] == "Pulled")
        assert pulled["message"].startswith(f'Successfully pulled image "{image}"'), pulled["message"]
    finally:
        c.kubectl("delete", "pod", "hello", "--wait=false", check=False)


def pod_phase_or_reason(c, name):
    status = json.loads(c.kubectl("get", "pod", name, "-o", "json").stdout)["status"]
    waiting = [
        cs["state"]["waiting"].get("reason")
        for cs in status.get("containerStatuses", [])
        if "waiting" in cs.get("state", {})
    ]
    return status.get("phase"), waiting


def test_image_pull_secrets_with_a_registry_that_requires_auth(patched_cluster, auth_registry, busybox_image):
    c = patched_cluster
    port, user, password = auth_registry
    image = f"localhost:{port}/rind-e2e-private:{RUN_ID}"
    # A Docker client config of its own, so the host's ~/.docker is left alone.
    docker_config = tempfile.mkdtemp()
    env = {**os.environ, "DOCKER_CONFIG": docker_config}
    try:
        run(["docker", "login", f"localhost:{port}", "-u", user, "--password-stdin"], input=password, env=env)
        run(["docker", "tag", busybox_image, image])
        run(["docker", "push", image], timeout=120, env=env)
    finally:
        run(["docker", "rmi", image], check=False)
        shutil.rmtree(docker_config, ignore_errors=True)
    # Without credentials the pull is refused.
    c.kubectl("run", "private-no-secret", f"--image={image}", "--restart=Never", "--", "true")
    # With the pod's imagePullSecrets it succeeds.
    c.kubectl("create", "secret", "docker-registry", "regcred", f"--docker-server=localhost:{port}",
              f"--docker-username={user}", f"--docker-password={password}")
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "private"},
        "spec": {
            "restartPolicy": "Never", "imagePullSecrets": [{"name": "regcred"}],
            "containers": [{"name": "app", "image": image, "command": ["echo", "pulled with a secret"]}],
        },
    }
    try:
        wait_for(
            "the pull without credentials to fail",
            lambda: any(r in ("ErrImagePull", "ImagePullBackOff") for r in pod_phase_or_reason(c, "private-no-secret")[1]),
            timeout=90,
        )
        run([c.kubectl_bin, "--context", f"rind-{c.name}", "apply", "-f", "-"], input=json.dumps(pod), env=c.env)
        seen = []

        def succeeded():
            seen.append(pod_phase_or_reason(c, "private"))
            return seen[-1][0] == "Succeeded"

        try:
            wait_for("the pod with imagePullSecrets to succeed", succeeded, timeout=120)
        except AssertionError:
            events = c.kubectl("get", "events", "--field-selector", "involvedObject.name=private").stdout
            raise AssertionError(f"pod never succeeded: {seen[-1:]}\n{events}") from None
        assert c.kubectl("logs", "private").stdout == "pulled with a secret\n"
    finally:
        c.kubectl("delete", "pod", "private", "private-no-secret", "--wait=false", check=False)
        c.kubectl("delete", "secret", "regcred", check=False)
