"""Issue 17, the pod spec as the kubelet runs it, on a one-node cluster with the real
kubectl: containers isolated in their own PID namespaces, graceful deletion (SIGTERM,
then SIGKILL after the grace period, Ready=False while terminating), lifecycle hooks,
probes of each kind with the crash-loop back-off, env from ConfigMaps, Secrets and
the downward API, imagePullPolicy, each pod in a pod cgroup of its QoS class that holds
its containers to their summed limits, and the node's Ready condition following the
container runtime's health."""

import json
import time
import uuid

import pytest

from conftest import node_sh, pod_cgroup_dirs, run, wait_for


@pytest.fixture(scope="module")
def c(cluster, busybox_image):
    cluster.rind_cmd("load", "docker-image", busybox_image, "--name", cluster.name)
    cluster.image = busybox_image
    return cluster


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def apply(c, *objects):
    manifest = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    run(
        [c.kubectl_bin, "--context", f"rind-{c.name}", "apply", "-f", "-"],
        input=json.dumps(manifest),
        env=c.env,
    )


def pod(name, image, script, grace=None, labels=None, **container_fields):
    container = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        **container_fields,
    }
    spec = {"containers": [container]}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def get_pod(c, name):
    out = c.kubectl("get", "pod", name, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def container_status(c, name):
    p = get_pod(c, name)
    statuses = ((p or {}).get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def condition(c, name, type_):
    p = get_pod(c, name) or {}
    for cond in (p.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return cond["status"]
    return None


def running(c, name):
    return (((get_pod(c, name) or {}).get("status") or {}).get("phase")) == "Running"


def events(c, name, reason):
    out = c.kubectl(
        "get", "events", "--field-selector", f"involvedObject.name={name},reason={reason}", "-o", "json"
    )
    return [e["message"] for e in json.loads(out.stdout)["items"]]


def delete_quietly(c, *names):
    c.kubectl("delete", "pod", *names, "--grace-period=0", "--force", "--wait=false", check=False)


def test_each_container_is_pid_1_unless_the_pod_shares_its_namespace(c):
    alone, shared = unique("pid"), unique("pidshare")
    shared_pod = pod(shared, c.image, "exec sleep 3600", grace=1)
    shared_pod["spec"]["shareProcessNamespace"] = True
    apply(c, pod(alone, c.image, "exec sleep 3600", grace=1), shared_pod)
    try:
        for name in (alone, shared):
            wait_for(f"{name} to run", lambda n=name: running(c, n))
        own = c.kubectl("exec", alone, "--", "cat", "/proc/1/cmdline").stdout
        assert own.split("\0")[:2] == ["sleep", "3600"], own
        ps = c.kubectl("exec", alone, "--", "ps", "-o", "pid,args").stdout
        assert [line.split()[0] for line in ps.splitlines()[1:] if "sleep" in line] == ["1"], ps
        # Sharing: PID 1 is the sandbox's (`sleep infinity`), the app one process of several.
        first = c.kubectl("exec", shared, "--", "cat", "/proc/1/cmdline").stdout
        assert first.split("\0")[1] == "infinity", first
        ps = c.kubectl("exec", shared, "--", "ps", "-o", "pid,args").stdout
        assert any("sleep 3600" in line and line.split()[0] != "1" for line in ps.splitlines()), ps
    finally:
        delete_quietly(c, alone, shared)


def timed_delete(c, name, *flags):
    started = time.monotonic()
    c.kubectl("delete", "pod", name, "--wait=true", *flags, timeout=120)
    return time.monotonic() - started


def test_sigterm_then_sigkill_after_the_grace_period(c):
    # sh as PID 1 with SIGTERM ignored: only the SIGKILL after the grace period ends it.
    stubborn = "trap '' TERM; while true; do sleep 1; done"
    slow, quick = unique("grace"), unique("grace1")
    apply(c, pod(slow, c.image, stubborn, grace=8), pod(quick, c.image, stubborn, grace=30))
    for name in (slow, quick):
        wait_for(f"{name} to run", lambda n=name: running(c, n))
    took = timed_delete(c, slow)
    assert 7 <= took < 25, f"a pod ignoring SIGTERM with an 8 s grace period took {took:.1f}s"
    took = timed_delete(c, quick, "--grace-period=1")
    assert took < 8, f"--grace-period=1 took {took:.1f}s"
    assert events(c, slow, "Killing") == ["Stopping container main"]


def test_a_handled_sigterm_ends_the_pod_at_once(c):
    name = unique("polite")
    apply(c, pod(name, c.image, "trap 'exit 0' TERM; while true; do sleep 1; done", grace=30))
    wait_for("the pod to run", lambda: running(c, name))
    took = timed_delete(c, name)
    assert took < 10, f"a pod that exits on SIGTERM took {took:.1f}s"


def test_a_terminating_pod_reports_ready_false_before_it_goes(c):
    name = unique("term")
    apply(c, pod(name, c.image, "trap '' TERM; while true; do sleep 1; done", grace=10))
    wait_for("the pod to be ready", lambda: condition(c, name, "Ready") == "True")
    c.kubectl("delete", "pod", name, "--wait=false")
    c.kubectl("wait", "pod", name, "--for=condition=Ready=false", "--timeout=30s")
    assert get_pod(c, name) is not None, "the pod was gone before it reported Ready=False"
    c.kubectl("wait", "pod", name, "--for=delete", "--timeout=60s")


def test_hooks_run_around_the_container(c):
    name = unique("hooks")
    marker = f"/tmp/{name}"
    p = pod(
        name,
        c.image,
        f"trap 'echo term >> /mark/log; exit 0' TERM; while true; do sleep 1; done",
        grace=20,
        lifecycle={
            "postStart": {"exec": {"command": ["sh", "-c", "echo poststart >> /mark/log"]}},
            "preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /mark/log; sleep 1"]}},
        },
        volumeMounts=[{"name": "mark", "mountPath": "/mark"}],
    )
    p["spec"]["volumes"] = [{"name": "mark", "hostPath": {"path": marker, "type": "DirectoryOrCreate"}}]
    apply(c, p)
    try:
        wait_for("the pod to run", lambda: running(c, name))
        log = c.node_exec("cat", f"{marker}/log").stdout
        assert log == "poststart\n", log
        timed_delete(c, name)
        # The hook ran, then the signal reached the app.
        log = c.node_exec("cat", f"{marker}/log").stdout
        assert log == "poststart\nprestop\nterm\n", log
    finally:
        delete_quietly(c, name)
        c.node_exec("rm", "-rf", marker, check=False)


def test_a_failing_prestop_hook_is_an_event_and_the_pod_still_goes(c):
    name = unique("badhook")
    apply(
        c,
        pod(
            name,
            c.image,
            "exec sleep 3600",
            grace=3,
            lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "exit 1"]}}},
        ),
    )
    wait_for("the pod to run", lambda: running(c, name))
    timed_delete(c, name)
    assert events(c, name, "FailedPreStopHook") == ["PreStopHook failed"]


def test_failing_liveness_restarts_with_growing_back_off(c):
    name = unique("live")
    apply(
        c,
        pod(
            name,
            c.image,
            "exec sleep 3600",
            grace=1,
            livenessProbe={
                "exec": {"command": ["sh", "-c", "echo not alive; exit 1"]},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
        ),
    )
    try:
        messages = set()

        def backed_off_twice():
            waiting = (container_status(c, name).get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                messages.add(waiting["message"].split(" restarting")[0])
            return {"back-off 10s", "back-off 20s"} <= messages

        wait_for("CrashLoopBackOff with delays 10s then 20s", backed_off_twice, timeout=150)
        status = container_status(c, name)
        assert status["restartCount"] >= 2, status
        assert status["lastState"]["terminated"]["reason"] in ("Error", "Completed"), status
        assert "Liveness probe failed: not alive\n" in events(c, name, "Unhealthy")
        assert "Container main failed liveness probe, will be restarted" in events(c, name, "Killing")
        backoff = events(c, name, "BackOff")
        assert backoff and backoff[0].startswith("Back-off restarting failed container main in pod"), backoff
    finally:
        delete_quietly(c, name)


def endpoint_ips(c, service):
    out = c.kubectl("get", "endpoints", service, "-o", "jsonpath={.subsets[*].addresses[*].ip}", check=False)
    return out.stdout.split()


def test_readiness_drives_ready_and_the_service_endpoints(c):
    name = unique("ready")
    web = (
        "mkdir -p /www && echo ok > /www/ready && echo hi > /www/index.html"
        " && exec httpd -f -p 8080 -h /www"
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    apply(
        c,
        pod(
            name,
            c.image,
            web,
            grace=1,
            labels={"app": name},
            ports=[{"name": "http", "containerPort": 8080}],
            readinessProbe={
                "httpGet": {"path": "/ready", "port": "http"},
                "periodSeconds": 1,
                "failureThreshold": 1,
            },
            livenessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 2},
        ),
        service,
    )
    try:
        wait_for("the pod to be ready", lambda: condition(c, name, "Ready") == "True", timeout=60)
        ip = get_pod(c, name)["status"]["podIP"]
        wait_for("the pod in the endpoints", lambda: endpoint_ips(c, name) == [ip], timeout=60)
        c.kubectl("exec", name, "--", "rm", "/www/ready")
        wait_for("the pod to be unready", lambda: condition(c, name, "Ready") == "False", timeout=30)
        wait_for("the pod out of the endpoints", lambda: endpoint_ips(c, name) == [], timeout=60)
        assert container_status(c, name)["ready"] is False
        assert container_status(c, name)["restartCount"] == 0, "the tcpSocket liveness probe failed"
        unhealthy = events(c, name, "Unhealthy")
        assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in unhealthy, unhealthy
        c.kubectl("exec", name, "--", "sh", "-c", "echo ok > /www/ready")
        wait_for("the pod ready again", lambda: condition(c, name, "Ready") == "True", timeout=30)
        wait_for("the pod back in the endpoints", lambda: endpoint_ips(c, name) == [ip], timeout=60)
    finally:
        delete_quietly(c, name)
        c.kubectl("delete", "service", name, check=False)


def test_startup_probe_holds_off_liveness(c):
    name = unique("startup")
    apply(
        c,
        pod(
            name,
            c.image,
            "mkdir -p /tmp && exec sleep 3600",
            grace=1,
            startupProbe={
                "exec": {"command": ["test", "-f", "/tmp/started"]},
                "periodSeconds": 1,
                "failureThreshold": 600,
            },
            livenessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1},
        ),
    )
    try:
        wait_for("the pod to run", lambda: running(c, name))
        # Several liveness periods pass while the startup probe has not passed yet.
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            status = container_status(c, name)
            assert status["restartCount"] == 0 and status["started"] is False, status
            time.sleep(0.5)
        assert not [m for m in events(c, name, "Unhealthy") if m.startswith("Liveness")]
        c.kubectl("exec", name, "--", "touch", "/tmp/started")
        wait_for(
            "liveness to restart the started container",
            lambda: container_status(c, name).get("restartCount", 0) >= 1,
            timeout=60,
        )
    finally:
        delete_quietly(c, name)


def test_env_from_configmaps_secrets_and_the_downward_api(c):
    name = unique("env")
    cm, secret = f"{name}-cm", f"{name}-s"
    c.kubectl("create", "configmap", cm, "--from-literal=color=blue", "--from-literal=size=L")
    c.kubectl("create", "secret", "generic", secret, "--from-literal=password=hunter2")
    service = f"{name}-svc"
    c.kubectl("create", "service", "clusterip", service, "--tcp=8080:80")
    cluster_ip = c.kubectl("get", "service", service, "-o", "jsonpath={.spec.clusterIP}").stdout
    link = service.upper().replace("-", "_")
    apply(
        c,
        pod(
            name,
            c.image,
            "env | sort; exec sleep 3600",
            grace=1,
            labels={"tier": "gold"},
            resources={"limits": {"memory": "64Mi"}},
            envFrom=[{"configMapRef": {"name": cm}, "prefix": "CM_"}],
            env=[
                {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "color"}}},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
                {
                    "name": "MAYBE",
                    "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
                },
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {
                    "name": "MEM_MI",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                },
                {"name": "BOTH", "value": "$(COLOR)-$(CM_size)"},
            ],
        ),
    )
    try:
        wait_for("the pod to run", lambda: running(c, name))
        p = get_pod(c, name)
        wait_for("the env to be printed", lambda: "POD_NAME=" in c.kubectl("logs", name).stdout)
        env = dict(
            line.split("=", 1) for line in c.kubectl("logs", name).stdout.splitlines() if "=" in line
        )
        assert env["CM_color"] == "blue" and env["CM_size"] == "L"
        assert env["COLOR"] == "blue" and env["PASSWORD"] == "hunter2"
        assert "MAYBE" not in env
        assert env["POD_NAME"] == name and env["TIER"] == "gold"
        assert env["NODE"] == p["spec"]["nodeName"] and env["POD_IP"] == p["status"]["podIP"]
        assert env["MEM_MI"] == "64" and env["BOTH"] == "blue-L"
        # Service links, as enableServiceLinks (on by default) asks.
        assert env[f"{link}_SERVICE_HOST"] == cluster_ip
        assert env[f"{link}_PORT_8080_TCP"] == f"tcp://{cluster_ip}:8080"
    finally:
        delete_quietly(c, name)
        c.kubectl("delete", "service", service, check=False)


def test_a_missing_key_is_a_create_container_config_error(c):
    name = unique("badenv")
    cm = f"{name}-cm"
    c.kubectl("create", "configmap", cm, "--from-literal=color=blue")
    apply(
        c,
        pod(
            name,
            c.image,
            "exec sleep 3600",
            grace=1,
            env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "nope"}}}],
        ),
    )
    try:
        waiting = wait_for(
            "CreateContainerConfigError",
            lambda: ((container_status(c, name).get("state") or {}).get("waiting") or {}).get("reason")
            == "CreateContainerConfigError"
            and container_status(c, name)["state"]["waiting"],
        )
        assert waiting["message"] == f"couldn't find key nope in ConfigMap default/{cm}"
        # Adding the key lets the container start.
        c.kubectl("patch", "configmap", cm, "-p", json.dumps({"data": {"nope": "now"}}))
        wait_for("the pod to run once the key exists", lambda: running(c, name), timeout=60)
    finally:
        delete_quietly(c, name)


def test_pull_policy_never_with_an_absent_image(c):
    name = unique("never")
    image = f"rind-e2e-absent:{uuid.uuid4().hex[:8]}"
    p = pod(name, image, "true", grace=1)
    p["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    apply(c, p)
    try:
        waiting = wait_for(
            "ErrImageNeverPull",
            lambda: ((container_status(c, name).get("state") or {}).get("waiting") or {}).get("reason")
            == "ErrImageNeverPull"
            and container_status(c, name)["state"]["waiting"],
        )
        message = f'Container image "{image}" is not present with pull policy of Never'
        assert waiting["message"] == message
        assert message in events(c, name, "ErrImageNeverPull")
    finally:
        delete_quietly(c, name)


def test_configmap_volume_follows_an_applied_change(c):
    name = unique("cmvol")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"greeting": "hello"}}
    p = pod(name, c.image, "exec sleep 3600", grace=1, volumeMounts=[{"name": "cfg", "mountPath": "/etc/cfg"}])
    p["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": name}}]
    apply(c, cm, p)
    try:
        wait_for("the pod to run", lambda: running(c, name))
        read = lambda: c.kubectl("exec", name, "--", "cat", "/etc/cfg/greeting", check=False).stdout
        assert read() == "hello"
        # Upstream's layout: the file is a link through ..data to a timestamped directory.
        listing = c.kubectl("exec", name, "--", "ls", "-la", "/etc/cfg").stdout
        assert "..data -> ..20" in listing and "greeting -> ..data/greeting" in listing, listing
        cm["data"] = {"greeting": "changed", "extra": "new key"}
        apply(c, cm)
        started = time.monotonic()
        wait_for("the change inside the pod", lambda: read() == "changed", timeout=90)
        print(f"configMap change visible in the pod after {time.monotonic() - started:.1f}s")
        assert c.kubectl("exec", name, "--", "cat", "/etc/cfg/extra").stdout == "new key"
    finally:
        delete_quietly(c, name)


def test_projected_and_downward_api_volumes(c):
    import base64

    name = unique("proj")
    cm, secret = f"{name}-cm", f"{name}-s"
    c.kubectl("create", "configmap", cm, "--from-literal=color=blue")
    c.kubectl("create", "secret", "generic", secret, "--from-literal=password=hunter2")
    p = pod(
        name,
        c.image,
        "exec sleep 3600",
        grace=1,
        labels={"tier": "gold", "app": name},
        resources={"limits": {"memory": "32Mi"}},
        volumeMounts=[
            {"name": "all", "mountPath": "/var/run/all"},
            {"name": "info", "mountPath": "/etc/podinfo"},
        ],
    )
    p["metadata"]["annotations"] = {"note": "hi"}
    p["spec"]["volumes"] = [
        {
            "name": "all",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                    {"configMap": {"name": cm, "items": [{"key": "color", "path": "cfg/color"}]}},
                    {"secret": {"name": secret}},
                    {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                ]
            },
        },
        {
            "name": "info",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "note", "fieldRef": {"fieldPath": "metadata.annotations['note']"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {
                        "path": "mem",
                        "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Mi"},
                    },
                ]
            },
        },
    ]
    apply(c, p)
    try:
        wait_for("the pod to run", lambda: running(c, name), timeout=90)
        cat = lambda path: c.kubectl("exec", name, "--", "cat", path).stdout
        token = cat("/var/run/all/token")
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["sub"] == "system:serviceaccount:default:default", claims
        assert claims["exp"] - claims["iat"] == 3600, claims
        assert cat("/var/run/all/cfg/color") == "blue"
        assert cat("/var/run/all/password") == "hunter2"
        assert cat("/var/run/all/ns") == "default"
        assert cat("/etc/podinfo/labels") == f'app="{name}"\ntier="gold"'
        assert cat("/etc/podinfo/note") == "hi"
        assert cat("/etc/podinfo/name") == name
        assert cat("/etc/podinfo/mem") == "32"
        # The token authenticates the pod's service account to the API server.
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        out = run(
            [c.kubectl_bin, "--context", f"rind-{c.name}", "create", "-f", "-", "-o", "json"],
            input=json.dumps(review),
            env=c.env,
        )
        assert json.loads(out.stdout)["status"]["authenticated"] is True
    finally:
        delete_quietly(c, name)


def test_subpath_expr_and_memory_backed_empty_dir(c):
    name = unique("subpath")
    p = pod(
        name,
        c.image,
        "echo written > /data/file; exec sleep 3600",
        grace=1,
        env=[{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        volumeMounts=[
            {"name": "data", "mountPath": "/data", "subPathExpr": "$(POD_NAME)"},
            {"name": "cache", "mountPath": "/cache"},
        ],
    )
    p["spec"]["volumes"] = [
        {"name": "data", "emptyDir": {}},
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    apply(c, p)
    try:
        wait_for("the pod to run", lambda: running(c, name))
        uid = get_pod(c, name)["metadata"]["uid"]
        on_node = f"/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir/data/{name}/file"
        wait_for("the file in the expanded subPath", lambda: c.node_exec("cat", on_node, check=False).stdout == "written\n")
        mounts = c.kubectl("exec", name, "--", "cat", "/proc/mounts").stdout
        cache = [line for line in mounts.splitlines() if line.split()[1] == "/cache"]
        assert cache and cache[0].split()[2] == "tmpfs", mounts
        assert "size=16384k" in cache[0], cache
    finally:
        delete_quietly(c, name)


def test_an_empty_dir_past_its_size_limit_evicts_the_pod(c):
    name = unique("evict")
    p = pod(
        name,
        c.image,
        "dd if=/dev/zero of=/data/big bs=1048576 count=4 2>/dev/null; exec sleep 3600",
        grace=1,
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
    )
    p["spec"]["volumes"] = [{"name": "data", "emptyDir": {"sizeLimit": "1Mi"}}]
    apply(c, p)
    try:
        status = wait_for(
            "the pod to be evicted",
            lambda: (s := (get_pod(c, name) or {}).get("status", {})).get("phase") == "Failed" and s,
            timeout=90,
        )
        assert status["reason"] == "Evicted", status
        assert status["message"] == 'Usage of EmptyDir volume "data" exceeds the limit "1Mi". ', status
    finally:
        delete_quietly(c, name)


def test_init_containers_and_a_sidecar_gate_the_app(c):
    name = unique("init")
    p = pod(name, c.image, "cat /work/flag; exec sleep 3600", grace=1,
            volumeMounts=[{"name": "work", "mountPath": "/work"}])
    p["spec"]["volumes"] = [{"name": "work", "emptyDir": {}}]
    p["spec"]["initContainers"] = [
        {
            "name": "setup",
            "image": c.image,
            "command": ["sh", "-c", "echo initialized > /work/flag"],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        },
        {
            "name": "sidecar",
            "image": c.image,
            "restartPolicy": "Always",
            "command": ["sh", "-c", "mkdir -p /tmp && sleep 2 && touch /tmp/up && exec sleep 3600"],
            "startupProbe": {"exec": {"command": ["test", "-f", "/tmp/up"]}, "periodSeconds": 1},
        },
    ]
    apply(c, p)
    try:
        wait_for("the pod to be ready", lambda: condition(c, name, "Ready") == "True", timeout=90)
        status = get_pod(c, name)["status"]
        setup, sidecar = status["initContainerStatuses"]
        assert setup["state"]["terminated"]["reason"] == "Completed", setup
        assert setup["state"]["terminated"]["exitCode"] == 0
        assert "running" in sidecar["state"] and sidecar["ready"] and sidecar["started"], sidecar
        main = status["containerStatuses"][0]
        # The app started only once the sidecar's startup probe passed.
        assert main["state"]["running"]["startedAt"] >= sidecar["state"]["running"]["startedAt"]
        assert condition(c, name, "Initialized") == "True"
        assert c.kubectl("logs", name, "-c", "main").stdout == "initialized\n"
    finally:
        delete_quietly(c, name)


def terminated(c, name):
    return ((container_status(c, name).get("state") or {}).get("terminated")) or None


def test_restart_policies_and_terminated_states(c):
    never, ok, retry = unique("never-fail"), unique("onfail-ok"), unique("onfail-retry")
    pods = [pod(never, c.image, "exit 3"), pod(ok, c.image, "exit 0"), pod(retry, c.image, "exit 1")]
    pods[0]["spec"]["restartPolicy"] = "Never"
    pods[1]["spec"]["restartPolicy"] = "OnFailure"
    pods[2]["spec"]["restartPolicy"] = "OnFailure"
    apply(c, *pods)
    try:
        wait_for("the Never pod to fail", lambda: (get_pod(c, never) or {}).get("status", {}).get("phase") == "Failed")
        state = terminated(c, never)
        assert (state["reason"], state["exitCode"]) == ("Error", 3), state
        assert container_status(c, never)["restartCount"] == 0
        wait_for("the OnFailure pod to succeed", lambda: (get_pod(c, ok) or {}).get("status", {}).get("phase") == "Succeeded")
        state = terminated(c, ok)
        assert (state["reason"], state["exitCode"]) == ("Completed", 0), state
        wait_for("the failing OnFailure pod to restart", lambda: container_status(c, retry).get("restartCount", 0) >= 1)
        last = container_status(c, retry)["lastState"]["terminated"]
        assert (last["reason"], last["exitCode"]) == ("Error", 1), last
    finally:
        delete_quietly(c, never, ok, retry)


def test_termination_messages_from_the_file_or_the_log(c):
    from_file, from_log = unique("msgfile"), unique("msglog")
    pods = [
        pod(from_file, c.image, "printf 'bye bye' > /dev/termination-log; exit 2"),
        pod(from_log, c.image, "echo first; echo last words; exit 3", terminationMessagePolicy="FallbackToLogsOnError"),
    ]
    for p in pods:
        p["spec"]["restartPolicy"] = "Never"
    apply(c, *pods)
    try:
        state = wait_for("the first pod to end", lambda: terminated(c, from_file))
        assert (state["exitCode"], state.get("message")) == (2, "bye bye"), state
        state = wait_for("the second pod to end", lambda: terminated(c, from_log))
        assert (state["exitCode"], state.get("message")) == (3, "first\nlast words"), state
    finally:
        delete_quietly(c, from_file, from_log)


def cgroup_value(c, pod_name, v1_file, v2_file):
    script = (
        f"if [ -f /sys/fs/cgroup/{v2_file} ]; then cat /sys/fs/cgroup/{v2_file};"
        f" else cat /sys/fs/cgroup/{v1_file}; fi"
    )
    return c.kubectl("exec", pod_name, "--", "sh", "-c", script).stdout.strip()


def test_set_resources_reach_the_container_cgroup(c):
    name = unique("res")
    c.kubectl("create", "deployment", name, f"--image={c.image}", "--", "sleep", "3600")
    try:
        c.kubectl("rollout", "status", f"deployment/{name}", "--timeout=120s", timeout=150)
        c.kubectl("set", "resources", f"deployment/{name}", "--limits=cpu=500m,memory=128Mi")
        c.kubectl("rollout", "status", f"deployment/{name}", "--timeout=150s", timeout=180)

        def new_pod():
            items = json.loads(c.kubectl("get", "pods", "-l", f"app={name}", "-o", "json").stdout)["items"]
            for p in items:
                limits = p["spec"]["containers"][0].get("resources", {}).get("limits", {})
                if limits and not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running":
                    return p
            return None

        p = wait_for("the pod with the new limits", new_pod)
        assert p["status"]["qosClass"] == "Guaranteed", p["status"]
        pod_name = p["metadata"]["name"]
        quota = cgroup_value(c, pod_name, "cpu/cpu.cfs_quota_us", "cpu.max")
        assert quota.split()[0] == "50000", quota
        memory = cgroup_value(c, pod_name, "memory/memory.limit_in_bytes", "memory.max")
        assert memory == str(128 * 1024 * 1024), memory
        shares = cgroup_value(c, pod_name, "cpu/cpu.shares", "cpu.weight")
        # 500m is 512 shares; cgroup v2 shows the runtime's conversion to a weight.
        assert shares in ("512", "20"), shares
    finally:
        c.kubectl("delete", "deployment", name, "--wait=false", check=False)
        c.kubectl("delete", "pods", "-l", f"app={name}", "--grace-period=0", "--force", check=False)


def test_allocating_past_the_memory_limit_is_oom_killed(c):
    name = unique("oom")
    p = pod(
        name,
        c.image,
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        resources={"limits": {"memory": "32Mi"}},
    )
    p["spec"]["restartPolicy"] = "Never"
    apply(c, p)
    try:
        state = wait_for("the container to be OOM-killed", lambda: terminated(c, name), timeout=90)
        assert state["reason"] == "OOMKilled", state
        assert state["exitCode"] == 137, state
        assert get_pod(c, name)["status"]["phase"] == "Failed"
    finally:
        delete_quietly(c, name)


def node_cgroup_file(node, cgroup, v1_hierarchy, v1_file, v2_file):
    """A file of `cgroup` (like /kubepods/pod<uid>) inside the node, on a cgroup v2
    node or in the v1 hierarchy of its controller."""
    return node_sh(
        node,
        f"if [ -f /sys/fs/cgroup/cgroup.controllers ]; then cat /sys/fs/cgroup{cgroup}/{v2_file};"
        f" else cat /sys/fs/cgroup/{v1_hierarchy}{cgroup}/{v1_file}; fi",
    )


def test_a_pod_cgroup_holds_its_containers_within_their_summed_limits(c):
    limited, best_effort = unique("podcg"), unique("besteffort")
    sleeper = {"image": c.image, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}
    p = pod(limited, c.image, "exec sleep 3600", grace=1)
    p["spec"]["containers"] = [
        {**sleeper, "name": "a", "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}},
        {**sleeper, "name": "b", "resources": {"limits": {"cpu": "200m", "memory": "32Mi"}}},
    ]
    apply(c, p, pod(best_effort, c.image, "exec sleep 3600", grace=1))
    try:
        wait_for("both pods to run", lambda: running(c, limited) and running(c, best_effort))
        got = get_pod(c, limited)
        assert got["status"]["qosClass"] == "Guaranteed", got["status"]
        uid, node = got["metadata"]["uid"], got["spec"]["nodeName"]
        cgroup = f"/kubepods/pod{uid}"
        memory = node_cgroup_file(node, cgroup, "memory", "memory.limit_in_bytes", "memory.max")
        assert memory == str(96 * 1024 * 1024), memory
        quota = node_cgroup_file(node, cgroup, "cpu", "cpu.cfs_quota_us", "cpu.max")
        if quota.isdigit():  # cgroup v1: the quota and the period are two files
            quota += " " + node_cgroup_file(node, cgroup, "cpu", "cpu.cfs_period_us", "cpu.max")
        assert quota == "30000 100000", quota
        # Each container's cgroup (named by its ID) is below the pod's.
        for status in got["status"]["containerStatuses"]:
            container_id = status["containerID"].removeprefix("containerd://")
            dirs = [d for d in pod_cgroup_dirs(node, uid) if node_sh(node, f"[ -d {d}/{container_id} ] && echo yes; true")]
            assert dirs, f"no cgroup of container {status['name']} under {cgroup}"

        # The besteffort cgroup weighs least (cpu.shares 2 is cpu.weight 1).
        weight = node_cgroup_file(node, "/kubepods/besteffort", "cpu", "cpu.shares", "cpu.weight")
        assert weight in ("2", "1"), weight

        other = get_pod(c, best_effort)
        assert other["status"]["qosClass"] == "BestEffort", other["status"]
        other_uid, other_node = other["metadata"]["uid"], other["spec"]["nodeName"]
        dirs = pod_cgroup_dirs(other_node, other_uid)
        assert dirs and all(d.endswith(f"/kubepods/besteffort/pod{other_uid}") for d in dirs), dirs

        c.kubectl("delete", "pod", limited, best_effort, "--wait=false")
        wait_for(
            "the pod cgroups to be removed",
            lambda: not pod_cgroup_dirs(node, uid) and not pod_cgroup_dirs(other_node, other_uid),
            timeout=60,
        )
    finally:
        delete_quietly(c, limited, best_effort)


def test_a_pod_cgroup_no_pod_owns_is_removed(c):
    # What a kubelet restart finds after a pod went while it was down: a pod cgroup
    # (with a container's below it) whose pod does not exist.
    uid = str(uuid.uuid4())
    node_sh(
        c.control_plane,
        "if [ -f /sys/fs/cgroup/cgroup.controllers ];"
        f" then mkdir -p /sys/fs/cgroup/kubepods/burstable/pod{uid}/ctr;"
        f" else mkdir -p /sys/fs/cgroup/memory/kubepods/burstable/pod{uid}/ctr; fi",
    )
    assert pod_cgroup_dirs(c.control_plane, uid)
    wait_for("the stale pod cgroup to be removed", lambda: not pod_cgroup_dirs(c.control_plane, uid), timeout=30)


def waiting_state(c, name):
    return ((container_status(c, name).get("state") or {}).get("waiting")) or {}


def test_fields_rind_does_not_implement_are_refused_by_name(c):
    name = unique("refused")
    p = pod(name, c.image, "exec sleep 3600", grace=1)
    p["spec"]["hostAliases"] = [{"ip": "10.1.2.3", "hostnames": ["foo.local"]}]
    apply(c, p)
    try:
        waiting = wait_for(
            "the pod to be refused",
            lambda: waiting_state(c, name).get("reason") == "CreateContainerConfigError" and waiting_state(c, name),
        )
        assert waiting["message"] == "rind's kubelet does not implement spec.hostAliases", waiting
        assert events(c, name, "Failed") == ["rind's kubelet does not implement spec.hostAliases"]
    finally:
        delete_quietly(c, name)


def test_run_as_non_root_and_security_settings(c):
    root, user = unique("nonroot"), unique("user")
    refused = pod(root, c.image, "exec sleep 3600", grace=1)
    refused["spec"]["securityContext"] = {"runAsNonRoot": True}
    allowed = pod(
        user,
        c.image,
        "mkdir -p /tmp; exec sleep 3600",
        grace=1,
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
        securityContext={"seccompProfile": {"type": "RuntimeDefault"}, "allowPrivilegeEscalation": False},
    )
    allowed["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "fsGroup": 2000,
        "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "2000 60000"}],
    }
    allowed["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    apply(c, refused, allowed)
    try:
        waiting = wait_for(
            "runAsNonRoot to refuse a root image",
            lambda: waiting_state(c, root).get("reason") == "CreateContainerConfigError" and waiting_state(c, root),
        )
        uid = get_pod(c, root)["metadata"]["uid"]
        assert waiting["message"] == (
            f'container has runAsNonRoot and image will run as root (pod: "{root}_default({uid})", container: main)'
        ), waiting
        wait_for("the non-root pod to run", lambda: running(c, user))
        ex = lambda *cmd: c.kubectl("exec", user, "--", *cmd).stdout
        assert ex("id", "-u").strip() == "1000"
        assert "2000" in ex("id", "-G").split()
        assert ex("stat", "-c", "%g", "/data").strip() == "2000"
        status = ex("cat", "/proc/self/status")
        assert "Seccomp:\t2" in status and "NoNewPrivs:\t1" in status, status
        assert ex("cat", "/proc/sys/net/ipv4/ip_local_port_range").split() == ["2000", "60000"]
    finally:
        delete_quietly(c, root, user)


def test_host_pid_sees_the_node(c):
    name = unique("hostpid")
    p = pod(name, c.image, "exec sleep 3600", grace=1)
    p["spec"]["hostPID"] = True
    apply(c, p)
    try:
        wait_for("the pod to run", lambda: running(c, name))
        first = c.kubectl("exec", name, "--", "cat", "/proc/1/cmdline").stdout
        assert "rind" in first.split("\0")[0], first
    finally:
        delete_quietly(c, name)


def test_active_deadline_fails_the_pod(c):
    name = unique("deadline")
    p = pod(name, c.image, "exec sleep 3600", grace=1)
    p["spec"]["activeDeadlineSeconds"] = 5
    apply(c, p)
    try:
        status = wait_for(
            "the pod to fail past its deadline",
            lambda: (s := (get_pod(c, name) or {}).get("status", {})).get("phase") == "Failed" and s,
            timeout=60,
        )
        assert status["reason"] == "DeadlineExceeded", status
        assert status["message"] == "Pod was active on the node longer than the specified deadline"
    finally:
        delete_quietly(c, name)


def test_readiness_gates_hold_ready_until_their_condition_is_true(c):
    name = unique("gate")
    p = pod(name, c.image, "exec sleep 3600", grace=1)
    p["spec"]["readinessGates"] = [{"conditionType": "example.com/lb-ready"}]
    apply(c, p)
    try:
        wait_for("the containers to be ready", lambda: condition(c, name, "ContainersReady") == "True")
        ready = next(x for x in get_pod(c, name)["status"]["conditions"] if x["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady"), ready
        assert ready["message"] == 'corresponding condition of pod readiness gate "example.com/lb-ready" does not exist.'
        patch = {"status": {"conditions": [{"type": "example.com/lb-ready", "status": "True"}]}}
        c.kubectl("patch", "pod", name, "--subresource=status", "-p", json.dumps(patch))
        wait_for("the pod to be ready", lambda: condition(c, name, "Ready") == "True")
    finally:
        delete_quietly(c, name)


def test_kubectl_debug_joins_the_target_pid_namespace(c):
    name = unique("debug")
    apply(c, pod(name, c.image, "exec sleep 3600", grace=1))
    try:
        wait_for("the pod to run", lambda: running(c, name))
        c.kubectl(
            "debug", name, f"--image={c.image}", "--image-pull-policy=IfNotPresent",
            "--target=main", "--container=dbg", "--", "ps", "-o", "pid,args",
        )

        def debug_done():
            statuses = get_pod(c, name)["status"].get("ephemeralContainerStatuses") or []
            return statuses and (statuses[0].get("state") or {}).get("terminated")

        state = wait_for("the debug container to finish", debug_done, timeout=60)
        assert state["exitCode"] == 0, state
        out = c.kubectl("logs", name, "-c", "dbg").stdout
        assert any(line.split()[0] == "1" and "sleep 3600" in line for line in out.splitlines()[1:]), out
    finally:
        delete_quietly(c, name)


def node_ready(c):
    out = c.kubectl("get", "node", c.control_plane, "-o", "json")
    for cond in json.loads(out.stdout)["status"]["conditions"]:
        if cond["type"] == "Ready":
            return cond
    return None


def containerd_pid(c):
    script = (
        'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = containerd ] && echo ${p#/proc/}; done;'
        " true"
    )
    pids = c.node_exec("sh", "-c", script).stdout.split()
    assert len(pids) == 1, f"expected one containerd in the node, found {pids}"
    return pids[0]


def test_node_ready_follows_the_container_runtime(c):
    """Last in the module: it stops the node's runtime for a while."""
    assert node_ready(c)["status"] == "True"
    pid = containerd_pid(c)
    # A stopped (not killed) containerd: the supervisor does not restart it, and the
    # runtime stops answering as a hung one would.
    c.node_exec("kill", "-STOP", pid)
    try:
        cond = wait_for("the node to turn NotReady", lambda: (r := node_ready(c))["status"] == "False" and r, timeout=60)
        assert cond["reason"] == "KubeletNotReady"
        assert cond["message"] == "container runtime is down", cond
    finally:
        c.node_exec("kill", "-CONT", pid, check=False)
    cond = wait_for("the node to turn Ready again", lambda: (r := node_ready(c))["status"] == "True" and r, timeout=60)
    assert cond["reason"] == "KubeletReady"
