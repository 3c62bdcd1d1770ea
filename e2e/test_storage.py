"""Issue 4 on a real cluster: dynamic provisioning with the default `standard` class
(local-path, as in kind). A pod writes into a claim, is deleted, and a new pod reads
the file back from the same volume; deleting the claim removes the volume and its
directory on the node."""

import json

import pytest

from conftest import RUN_ID, run, wait_for

BUSYBOX = "docker.io/rind/busybox:v1"  # loaded into every node at boot


def get_json(cluster, *args):
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def apply(cluster, tmp_path, name, text):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    cluster.kubectl("apply", "-f", str(path))


def pod_yaml(name, script):
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, {json.dumps(script)}]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: data
"""


def phase(cluster, pod):
    return get_json(cluster, "pod", pod)["status"].get("phase")


@pytest.fixture
def cleanup(cluster):
    yield
    cluster.kubectl("delete", "pod", "writer", "reader", "--ignore-not-found", "--wait=false", check=False)
    cluster.kubectl("delete", "pvc", "data", "--ignore-not-found", "--wait=false", check=False)


def test_claim_survives_its_pod(cluster, tmp_path, cleanup):
    c = cluster
    classes = get_json(c, "storageclass")["items"]
    standard = next(sc for sc in classes if sc["metadata"]["name"] == "standard")
    assert standard["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert standard["provisioner"] == "rancher.io/local-path"
    assert standard["volumeBindingMode"] == "WaitForFirstConsumer"

    apply(c, tmp_path, "pvc", """apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 100Mi
""")
    claim = get_json(c, "pvc", "data")
    assert claim["spec"]["storageClassName"] == "standard"
    assert claim["status"]["phase"] == "Pending"

    token = f"written-{RUN_ID}"
    apply(c, tmp_path, "writer", pod_yaml("writer", f"echo {token} > /data/file"))
    wait_for("the writer to finish", lambda: phase(c, "writer") == "Succeeded", timeout=120)
    claim = get_json(c, "pvc", "data")
    assert claim["status"]["phase"] == "Bound"
    node = claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
    pv_name = claim["spec"]["volumeName"]
    pv = get_json(c, "pv", pv_name)
    path = pv["spec"]["hostPath"]["path"]
    assert path == f"/var/local-path-provisioner/pvc-{claim['metadata']['uid']}_default_data"
    # The file really is in the node's directory.
    on_node = run(["docker", "exec", node, "cat", f"{path}/file"]).stdout
    assert on_node.strip() == token

    c.kubectl("delete", "pod", "writer", "--wait=true", timeout=120)
    apply(c, tmp_path, "reader", pod_yaml("reader", "cat /data/file"))
    wait_for("the reader to finish", lambda: phase(c, "reader") == "Succeeded", timeout=120)
    assert c.kubectl("logs", "reader").stdout.strip() == token

    c.kubectl("delete", "pod", "reader", "--wait=true", timeout=120)
    c.kubectl("delete", "pvc", "data", "--wait=true", timeout=120)

    def volume_gone():
        result = c.kubectl("get", "pv", pv_name, "--ignore-not-found", "-o", "name", check=False)
        return result.returncode == 0 and result.stdout.strip() == ""

    wait_for("the Delete reclaim to remove the volume", volume_gone, timeout=120)
    listing = run(["docker", "exec", node, "ls", "/var/local-path-provisioner"], check=False)
    assert f"pvc-{claim['metadata']['uid']}" not in listing.stdout
