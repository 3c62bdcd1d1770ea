"""In-cluster API access on a real cluster: an unmodified in-cluster client (Debian's
`python3-kubernetes`, in an image built locally with mmdebstrap and loaded with
`rind load docker-image`) reads the token, CA and namespace the ServiceAccount
admission plugin mounts, reaches the API through the `kubernetes` Service and lists
pods; the pod's token is bound to the pod, so it is refused once the pod is deleted."""

import base64
import json
import shutil
import subprocess
import uuid

import pytest

from conftest import RUN_ID, run, wait_for

NS = f"incluster-{uuid.uuid4().hex[:5]}"
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
CLIENT_SCRIPT = """
import time
from kubernetes import client, config
config.load_incluster_config()
namespace = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read()
pods = client.CoreV1Api().list_namespaced_pod(namespace)
print('PODS', ' '.join(sorted(p.metadata.name for p in pods.items)), flush=True)
time.sleep(3600)
"""


@pytest.fixture(scope="module")
def python_client_image(docker_engine):
    """Debian's python3-kubernetes on a minimal Debian root, from Debian's packages."""
    if not shutil.which("mmdebstrap"):
        pytest.fail("mmdebstrap is needed to build the python client image (apt-get install mmdebstrap)")
    tag = f"rind-e2e-pyk8s:{RUN_ID}"
    build = subprocess.Popen(
        ["mmdebstrap", "--quiet", "--variant=essential", "--include=python3-kubernetes", "bookworm", "-"],
        stdout=subprocess.PIPE,
    )
    run(["docker", "import", "-", tag], stdin=build.stdout, timeout=900)
    assert build.wait(timeout=60) == 0, "mmdebstrap failed"
    yield tag
    run(["docker", "rmi", "-f", tag], check=False)


@pytest.fixture(scope="module")
def api_pod(cluster, python_client_image):
    c = cluster
    c.rind_cmd("load", "docker-image", python_client_image, "--name", c.name)
    c.kubectl("create", "namespace", NS)
    # The default account may do nothing by default (upstream's RBAC): let it list pods.
    c.kubectl("-n", NS, "create", "role", "pod-reader", "--verb=list", "--resource=pods")
    c.kubectl("-n", NS, "create", "rolebinding", "pod-reader", "--role=pod-reader", f"--serviceaccount={NS}:default")
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": NS},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "py", "image": python_client_image, "command": ["python3", "-c", CLIENT_SCRIPT]}],
        },
    }
    run([c.kubectl_bin, "--context", f"rind-{c.name}", "apply", "-f", "-"], input=json.dumps(manifest), env=c.env)
    c.kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/client", "--timeout=180s")
    yield c
    c.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def token_kubeconfig(c, token, path):
    """A kubeconfig with only `token` as credentials, for the cluster's API on the host."""
    raw = json.loads(c.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = raw["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": NS}}],
        "current-context": "c",
    }
    path.write_text(json.dumps(config))
    return path


def test_the_pod_gets_the_projected_token_volume(api_pod):
    c = api_pod
    pod = json.loads(c.kubectl("-n", NS, "get", "pod", "client", "-o", "json").stdout)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "default"
    volume = next(v for v in spec["volumes"] if v["name"].startswith("kube-api-access-"))
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3607
    assert {"name": volume["name"], "readOnly": True, "mountPath": MOUNT} in spec["containers"][0]["volumeMounts"]
    files = c.kubectl("-n", NS, "exec", "client", "--", "ls", MOUNT).stdout.split()
    assert {"token", "ca.crt", "namespace"} <= set(files), files
    namespace = c.kubectl("-n", NS, "exec", "client", "--", "cat", f"{MOUNT}/namespace").stdout
    assert namespace == NS
    ca = c.kubectl("-n", NS, "get", "configmap", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}").stdout
    mounted_ca = c.kubectl("-n", NS, "exec", "client", "--", "cat", f"{MOUNT}/ca.crt").stdout
    assert mounted_ca == ca and "BEGIN CERTIFICATE" in ca


def test_an_unmodified_in_cluster_client_lists_pods(api_pod):
    c = api_pod
    logs = wait_for(
        "the client's pod list",
        lambda: (out := c.kubectl("-n", NS, "logs", "client", check=False).stdout) and "PODS" in out and out,
        timeout=60,
    )
    assert "PODS client" in logs, logs


def test_the_token_is_refused_once_its_pod_is_gone(api_pod, tmp_path):
    c = api_pod
    token = c.kubectl("-n", NS, "exec", "client", "--", "cat", f"{MOUNT}/token").stdout.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["kubernetes.io"]["pod"]["name"] == "client"
    config = token_kubeconfig(c, token, tmp_path / "token.kubeconfig")
    # HOME: kubectl keeps its discovery cache there, not in the current directory.
    env = {"KUBECONFIG": str(config), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    listed = run([c.kubectl_bin, "get", "pods", "-o", "name"], env=env)
    assert "pod/client" in listed.stdout
    c.kubectl("-n", NS, "delete", "pod", "client", "--wait=true", "--timeout=60s")
    refused = wait_for(
        "the token to be refused",
        lambda: (r := run([c.kubectl_bin, "get", "pods"], env=env, check=False)).returncode != 0 and r,
        timeout=10,
    )
    assert "Unauthorized" in refused.stderr, refused.stderr
