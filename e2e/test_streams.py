"""Issue 17, streaming: `kubectl exec`, `attach`, `port-forward`, `cp` and the proxy
subresources on a real cluster, with the real kubectl 1.37 (WebSocket, and SPDY as
older clients speak it) and the Python client, through the API server and the
kubelet to containerd's streaming server. Also: the kubelet serves nobody but the
API server, and a session whose client goes away leaves no descriptor behind."""

import concurrent.futures
import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
import urllib.request

import pytest

from conftest import run, wait_for

WEB_PAGE = "hello from the web pod\n"
# 8 MiB served by the web pod for the throughput figure.
BIG_MIB = 8


@pytest.fixture(scope="module")
def pods(cluster, busybox_image):
    """A shell pod, a web pod (busybox httpd on 8080) behind Service `web` (80), and
    a pod whose only process reads one line from its attachable stdin."""
    cluster.rind_cmd("load", "docker-image", busybox_image, "--name", cluster.name)
    web_command = (
        f"mkdir -p /www && printf '{WEB_PAGE.strip()}\\n' > /www/index.html"
        f" && dd if=/dev/urandom of=/www/big bs=1048576 count={BIG_MIB} 2>/dev/null"
        " && exec httpd -f -p 8080 -h /www"
    )
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            # The image is busybox alone: no /tmp until the pod makes one.
            pod_manifest("shell", busybox_image, ["sh", "-c", "mkdir -p /tmp && exec sleep 3600"]),
            pod_manifest(
                "web",
                busybox_image,
                ["sh", "-c", web_command],
                labels={"app": "web"},
                ports=[{"name": "http", "containerPort": 8080}],
            ),
            pod_manifest("reader", busybox_image, ["sh", "-c", "read line; echo got:$line"], stdin=True),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        ],
    }
    run(
        [cluster.kubectl_bin, "--context", f"rind-{cluster.name}", "apply", "-f", "-"],
        input=json.dumps(manifest),
        env=cluster.env,
    )
    for name in ("shell", "web", "reader"):
        wait_for(f"pod {name} to run", lambda n=name: phase(cluster, n) == "Running", timeout=120)
    wait_for("the web pod to serve", lambda: web_serves(cluster), timeout=60)
    wait_for("the web Service to have an endpoint", lambda: endpoint_ready(cluster), timeout=60)
    return cluster


def pod_manifest(name, image, command, labels=None, ports=None, stdin=False):
    container = {"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}
    if ports:
        container["ports"] = ports
    if stdin:
        container["stdin"] = True
        container["stdinOnce"] = True
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [container], "restartPolicy": "Never", "terminationGracePeriodSeconds": 1},
    }


def phase(cluster, name):
    return cluster.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}", check=False).stdout.strip()


def web_serves(cluster):
    out = cluster.kubectl("exec", "web", "--", "wget", "-qO-", "http://127.0.0.1:8080/", check=False)
    return out.stdout == WEB_PAGE


def endpoint_ready(cluster):
    out = cluster.kubectl("get", "endpoints", "web", "-o", "jsonpath={.subsets[0].addresses[0].ip}", check=False)
    return out.stdout.strip()


def kubectl_popen(cluster, *args, env=None, **kwargs):
    return subprocess.Popen(
        [cluster.kubectl_bin, "--context", f"rind-{cluster.name}", *args],
        env={**cluster.env, **(env or {})},
        **kwargs,
    )


def test_exec_stdout_stderr_and_exit_code(pods):
    out = pods.kubectl("exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert out.returncode == 3, out
    assert out.stdout == "out\n", out
    assert out.stderr == "err\ncommand terminated with exit code 3\n", out
    ok = pods.kubectl("exec", "shell", "--", "echo", "fine")
    assert ok.stdout == "fine\n"


def test_exec_over_spdy_as_older_clients(pods):
    """kubectl without WebSockets speaks SPDY/3.1, which the kubelet hands to the runtime."""
    out = run(
        [pods.kubectl_bin, "--context", f"rind-{pods.name}", "exec", "shell", "--", "sh", "-c", "echo spdy; exit 4"],
        check=False,
        env={**pods.env, "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"},
    )
    assert out.returncode == 4, out
    assert out.stdout == "spdy\n", out
    assert "command terminated with exit code 4" in out.stderr, out


def test_exec_stdin_reaches_the_command_and_its_end_too(pods):
    payload = os.urandom(1024 * 1024)
    started = time.monotonic()
    out = subprocess.run(
        [pods.kubectl_bin, "--context", f"rind-{pods.name}", "exec", "-i", "shell", "--", "md5sum"],
        input=payload,
        capture_output=True,
        env=pods.env,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out
    assert out.stdout.split()[0].decode() == hashlib.md5(payload).hexdigest()
    print(f"\nexec -i: 1 MiB of stdin through md5sum in {elapsed:.2f} s")


def test_exec_round_trip_latency_beside_docker_exec(pods):
    """Figures, not targets: `kubectl exec -- true` against `docker exec` of the node."""

    def timed(cmd, env=None):
        samples = []
        for _ in range(10):
            started = time.monotonic()
            run(cmd, env=env)
            samples.append(time.monotonic() - started)
        samples.sort()
        return samples[len(samples) // 2]

    kubectl = timed([pods.kubectl_bin, "--context", f"rind-{pods.name}", "exec", "shell", "--", "true"], pods.env)
    docker = timed(["docker", "exec", pods.control_plane, "true"])
    print(f"\nexec round trip p50: kubectl exec {kubectl * 1000:.0f} ms, docker exec {docker * 1000:.0f} ms")


def read_until(fd, wanted, timeout=30):
    """Reads a pty until `wanted` (a regex) matches what came so far."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            match = re.search(wanted, seen)
            if match:
                return match
    raise AssertionError(f"never saw {wanted!r}; got {seen!r}")


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_exec_tty_gets_a_shell_a_resize_and_an_exit(pods):
    primary, secondary = pty.openpty()
    set_size(secondary, 31, 97)
    proc = kubectl_popen(
        pods,
        "exec",
        "-it",
        "shell",
        "--",
        "sh",
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    try:
        os.write(primary, b"stty size\n")
        read_until(primary, rb"31 97")
        # The terminal changes size: kubectl sends it on the resize channel.
        set_size(primary, 42, 120)
        proc.send_signal(signal.SIGWINCH)
        os.write(primary, b"stty size\n")
        read_until(primary, rb"42 120")
        os.write(primary, b"tty; exit 7\n")
        read_until(primary, rb"/dev/pts/\d+")
        assert proc.wait(timeout=30) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)


def test_attach_to_a_pod_started_with_stdin(pods):
    out = subprocess.run(
        [pods.kubectl_bin, "--context", f"rind-{pods.name}", "attach", "-i", "reader"],
        input="ping\n",
        capture_output=True,
        text=True,
        env=pods.env,
        timeout=60,
    )
    assert "got:ping" in out.stdout, out
    wait_for("the reader to finish", lambda: phase(pods, "reader") == "Succeeded", timeout=60)


def start_port_forward(cluster, target, remote, env=None):
    proc = kubectl_popen(
        cluster, "port-forward", target, f":{remote}", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    line = proc.stdout.readline()
    match = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> \d+", line)
    if not match:
        proc.kill()
        raise AssertionError(f"unexpected port-forward output {line!r}: {proc.stderr.read()}")
    return proc, int(match.group(1))


def fetch(port, path="/"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return response.read()


@pytest.mark.parametrize("websockets", ["true", "false"], ids=["websocket-tunnel", "spdy"])
def test_port_forward_serves_http_from_the_host(pods, websockets):
    env = {"KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets}
    proc, port = start_port_forward(pods, "pod/web", 8080, env)
    try:
        for _ in range(100):
            assert fetch(port) == WEB_PAGE.encode()
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            pages = list(pool.map(lambda _: fetch(port), range(10)))
        assert pages == [WEB_PAGE.encode()] * 10
        started = time.monotonic()
        big = fetch(port, "/big")
        elapsed = time.monotonic() - started
        assert len(big) == BIG_MIB * 1024 * 1024
        served = pods.kubectl("exec", "web", "--", "md5sum", "/www/big").stdout.split()[0]
        assert hashlib.md5(big).hexdigest() == served
        print(f"\nport-forward ({'WebSocket' if websockets == 'true' else 'SPDY'}): {BIG_MIB / elapsed:.1f} MiB/s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_port_forward_to_a_service_port(pods):
    proc, port = start_port_forward(pods, "service/web", 80)
    try:
        assert fetch(port) == WEB_PAGE.encode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cp_both_ways_byte_identical(pods, tmp_path):
    original = os.urandom(1024 * 1024)
    source = tmp_path / "random.bin"
    source.write_bytes(original)
    pods.kubectl("cp", str(source), "shell:/tmp/random.bin", timeout=120)
    inside = pods.kubectl("exec", "shell", "--", "md5sum", "/tmp/random.bin").stdout.split()[0]
    assert inside == hashlib.md5(original).hexdigest()
    back = tmp_path / "back.bin"
    pods.kubectl("cp", "shell:/tmp/random.bin", str(back), timeout=120)
    assert back.read_bytes() == original


def python_api(cluster):
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(cluster.kubeconfig), context=f"rind-{cluster.name}", client_configuration=configuration
    )
    return client.CoreV1Api(client.ApiClient(configuration))


def test_python_client_exec(pods):
    from kubernetes.stream import stream

    api = python_api(pods)
    resp = stream(
        api.connect_get_namespaced_pod_exec,
        "shell",
        "default",
        command=["sh", "-c", "echo py-out; echo py-err >&2; exit 2"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=30)
    assert resp.read_stdout() == "py-out\n"
    assert resp.read_stderr() == "py-err\n"
    assert resp.returncode == 2
    # With stdin, and its end signalled on the v5 close channel.
    resp = stream(
        api.connect_get_namespaced_pod_exec,
        "shell",
        "default",
        command=["cat"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.write_stdin("through stdin\n")
    resp.close_channel(0)
    resp.run_forever(timeout=30)
    assert resp.read_stdout() == "through stdin\n"
    assert resp.returncode == 0
    # A client that speaks only v4 is served by the runtime's own WebSocket server.
    resp = stream(
        api.connect_get_namespaced_pod_exec,
        "shell",
        "default",
        command=["sh", "-c", "echo v4; exit 5"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
        _headers={"sec-websocket-protocol": "v4.channel.k8s.io"},
    )
    resp.run_forever(timeout=30)
    assert resp.subprotocol == "v4.channel.k8s.io"
    assert resp.read_stdout() == "v4\n"
    assert resp.returncode == 5


def test_python_client_port_forward(pods):
    from kubernetes.stream import portforward

    api = python_api(pods)
    forward = portforward(api.connect_get_namespaced_pod_portforward, "web", "default", ports="8080")
    sock = forward.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
    reply = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert reply.endswith(WEB_PAGE.encode()), reply
    assert forward.error(8080) is None


def test_proxy_subresources(pods):
    ns = "/api/v1/namespaces/default"
    assert pods.kubectl("get", "--raw", f"{ns}/pods/web:8080/proxy/").stdout == WEB_PAGE
    assert pods.kubectl("get", "--raw", f"{ns}/pods/web:http/proxy/index.html").stdout == WEB_PAGE
    assert pods.kubectl("get", "--raw", f"{ns}/services/web:80/proxy/").stdout == WEB_PAGE
    node = f"/api/v1/nodes/{pods.control_plane}/proxy"
    assert pods.kubectl("get", "--raw", f"{node}/healthz").stdout == "ok"
    listed = json.loads(pods.kubectl("get", "--raw", f"{node}/pods").stdout)
    assert listed["kind"] == "PodList"
    assert "shell" in {p["metadata"]["name"] for p in listed["items"]}
    missing = pods.kubectl("get", "--raw", f"{ns}/services/web:81/proxy/", check=False)
    assert 'no service port 81 found for service "web"' in missing.stderr, missing


def test_kubectl_proxy(pods):
    proc = kubectl_popen(pods, "proxy", "--port=0", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"Starting to serve on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        port = int(match.group(1))
        page = fetch(port, "/api/v1/namespaces/default/services/web:80/proxy/")
        assert page == WEB_PAGE.encode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def kubelet_request(cluster, *client_args, path="/healthz"):
    """An HTTPS request to the node's kubelet from inside the node (openssl s_client)."""
    request = f"GET {path} HTTP/1.1\r\nHost: kubelet\r\nConnection: close\r\n\r\n"
    out = subprocess.run(
        ["docker", "exec", "-i", cluster.control_plane, "openssl", "s_client", "-quiet", "-connect", "127.0.0.1:10250",
         *client_args],
        input=request,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout


def test_kubelet_serves_only_the_api_server(pods):
    anonymous = kubelet_request(pods)
    assert anonymous.startswith("HTTP/1.1 401"), anonymous
    assert anonymous.endswith("Unauthorized"), anonymous
    pki = "/etc/kubernetes/pki"
    api_server = kubelet_request(
        pods, "-cert", f"{pki}/apiserver-kubelet-client.crt", "-key", f"{pki}/apiserver-kubelet-client.key"
    )
    assert api_server.startswith("HTTP/1.1 200"), api_server
    assert api_server.endswith("ok"), api_server


def kubelet_fds(cluster):
    pid = cluster.node_exec("pgrep", "-f", "rind node kubelet").stdout.split()[0]
    return len(cluster.node_exec("ls", f"/proc/{pid}/fd").stdout.split())


def test_a_vanished_client_leaves_no_descriptor_behind(pods):
    # Settle: earlier tests' connections close on their own.
    wait_for("the kubelet to be idle", lambda: kubelet_fds(pods) == kubelet_fds(pods), timeout=30)
    baseline = kubelet_fds(pods)
    proc = kubectl_popen(pods, "exec", "-i", "shell", "--", "cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.stdin.write(b"alive\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"alive\n"
    assert kubelet_fds(pods) > baseline
    proc.kill()
    proc.wait(timeout=30)
    wait_for(
        f"the kubelet's descriptors to return to {baseline}",
        lambda: kubelet_fds(pods) <= baseline,
        timeout=60,
    )
    # The session is gone on the runtime's side too: its `cat` got its end of input.
    wait_for(
        "the exec'd cat to end",
        lambda: "cat" not in pods.kubectl("exec", "shell", "--", "ps", "-o", "comm").stdout.split(),
        timeout=60,
    )
