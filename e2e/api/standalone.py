"""A real etcd and our API server alone on loopback (`rind node standalone-apiserver`),
no Docker, for the API client suites. Test modules import the fixtures they use from
here (a conftest.py in this folder would shadow e2e/conftest.py, which the Docker
suites import helpers from). Both processes are started per module and killed by
their PIDs at the end, even when a test fails."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

DEADLINE = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, condition, timeout=DEADLINE, interval=0.1):
    """Polls `condition` until it returns a truthy value, failing after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
            last = value
        except Exception as err:  # the condition may fail until the thing is up
            last = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def rind_binary():
    path = Path(os.environ.get("RIND", ROOT / "target" / "release" / "rind"))
    if not path.is_file():
        pytest.fail(f"rind binary not found at {path}: run `cargo build --release` or set RIND")
    return str(path)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    binary = shutil.which("etcd")
    if not binary:
        pytest.fail("the API client tests need etcd (Debian etcd-server)")
    home = tmp_path_factory.mktemp("etcd")
    client = f"http://127.0.0.1:{free_port()}"
    peer = f"http://127.0.0.1:{free_port()}"
    with open(home / "etcd.log", "w") as log:
        process = subprocess.Popen(
            [binary, "--name", "api-test", "--data-dir", str(home / "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"api-test={peer}"],
            stdout=subprocess.DEVNULL, stderr=log)
    try:
        host, port = client.removeprefix("http://").split(":")
        wait_for("etcd to listen", lambda: socket.create_connection((host, int(port)), timeout=1).close() or True)
        yield client
    finally:
        stop(process)


@pytest.fixture(scope="module")
def api_kubeconfig(rind_binary, etcd, tmp_path_factory):
    """The admin kubeconfig of a running API server on `etcd`."""
    home = tmp_path_factory.mktemp("apiserver")
    with open(home / "apiserver.log", "w") as log:
        process = subprocess.Popen(
            [rind_binary, "node", "standalone-apiserver", "--etcd", etcd, "--dir", str(home)],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        path = home / "kubeconfig"

        def up():
            assert process.poll() is None, (home / "apiserver.log").read_text()
            return path.is_file()

        wait_for("the API server's kubeconfig", up)
        yield path
    finally:
        stop(process)
