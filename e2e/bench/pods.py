#!/usr/bin/env python3
"""Benchmark: pods on one node against their Docker baselines, in the same run.

- N pods (default 50, image present) created with the Python client, creation to
  `Running` as a watch sees it, p50 and p99, beside a bare `docker run -d` of the same
  image (targets: p50 <= 300 ms, p99 <= 1 s): one at a time (each created once the
  one before runs), then all N back to back (a burst the node works through at once).
- `kubectl exec POD -- true` round trip, p50, beside `docker exec NODE true` (target
  <= 2x).
- `kubectl port-forward` download throughput of a 64 MiB file beside the same bytes
  fetched straight over the published API port (`pods/proxy`, the API server talking to
  the pod without the kubelet's tunnel; target >= 0.5x).

Prints the figures and ratios and writes pods.json under --out.
Usage: e2e/bench/pods.py [--rind target/release/rind] [--node-image TAG] [--pods 50] [--out DIR]"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIG_MIB = 64


def run(cmd, env=None, timeout=600, **kwargs):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=timeout, **kwargs)


def timed(cmd, env=None):
    started = time.monotonic()
    run(cmd, env=env)
    return time.monotonic() - started


def percentile(values, p):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def build_busybox(tag):
    source = Path("/bin/busybox")
    if not source.is_file():
        sys.exit("Debian's busybox-static is needed to build the workload image")
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(ROOT / "e2e" / "images" / "busybox" / "Dockerfile", context)
        shutil.copy(source, Path(context) / "busybox")
        run(["docker", "build", "-q", "-t", tag, context], env={**os.environ, "DOCKER_BUILDKIT": "0"})


def pod_manifest(name, image, command, labels):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": command}
            ],
        },
    }


def pods_to_running(api, image, count, one_at_a_time):
    """Creates `count` pods (back to back, or each once the one before runs); returns
    each one's creation→Running seconds."""
    from kubernetes import watch

    selector = f"bench={uuid.uuid4().hex[:6]}"
    created, running = {}, {}
    listed = api.list_namespaced_pod("default", label_selector=selector)
    done = threading.Event()

    def observe():
        w = watch.Watch()
        for event in w.stream(
            api.list_namespaced_pod,
            "default",
            label_selector=selector,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=600,
        ):
            pod = event["object"]
            if pod.status and pod.status.phase == "Running" and pod.metadata.name not in running:
                running[pod.metadata.name] = time.monotonic()
                if len(running) == count:
                    w.stop()
        done.set()

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    key, value = selector.split("=")
    for i in range(count):
        name = f"bench-{value}-{i}"
        created[name] = time.monotonic()
        api.create_namespaced_pod("default", pod_manifest(name, image, ["sleep", "3600"], {key: value}))
        deadline = time.monotonic() + 120
        while one_at_a_time and name not in running and time.monotonic() < deadline:
            time.sleep(0.005)
    if not done.wait(600) or len(running) < count:
        sys.exit(f"only {len(running)} of {count} pods reached Running")
    return [running[n] - created[n] for n in created]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rind", default=str(ROOT / "target" / "release" / "rind"))
    parser.add_argument("--node-image", help="node image to create the cluster with (default: rind's own)")
    parser.add_argument("--kubectl", default=os.environ.get("KUBECTL", str(ROOT / ".venv" / "bin" / "kubectl")))
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--execs", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "target" / "bench"))
    args = parser.parse_args()
    from kubernetes import client, config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kubeconfig = Path(tempfile.mkdtemp()) / "config"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    run_id = uuid.uuid4().hex[:6]
    image = f"rind-bench-busybox:{run_id}"
    name = f"bench-pods-{run_id}"
    node = f"{name}-control-plane"
    build_busybox(image)
    bare_ids = []
    try:
        create = [args.rind, "create", "cluster", "--name", name, "--wait", "3m"]
        if args.node_image:
            create += ["--image", args.node_image]
        run(create, env=env, timeout=900)
        run([args.rind, "load", "docker-image", image, "--name", name], env=env)
        kubectl = [args.kubectl, "--context", f"rind-{name}"]

        # The baseline: the same image started by Docker itself, as many times.
        bare = []
        for _ in range(args.pods):
            started = time.monotonic()
            bare_ids.append(run(["docker", "run", "-d", "--rm", image, "sleep", "3600"]).stdout.strip())
            bare.append(time.monotonic() - started)

        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), context=f"rind-{name}", client_configuration=configuration)
        api = client.CoreV1Api(client.ApiClient(configuration))
        sequential = pods_to_running(api, image, args.pods, one_at_a_time=True)
        latencies = pods_to_running(api, image, args.pods, one_at_a_time=False)

        target = api.list_namespaced_pod("default").items[0].metadata.name
        execs = [timed(kubectl + ["exec", target, "--", "true"], env=env) for _ in range(args.execs)]
        docker_execs = [timed(["docker", "exec", node, "true"]) for _ in range(args.execs)]

        web = f"web-{run_id}"
        serve = (
            f"mkdir -p /www && dd if=/dev/zero of=/www/big bs=1048576 count={BIG_MIB} 2>/dev/null"
            " && exec httpd -f -p 8080 -h /www"
        )
        api.create_namespaced_pod("default", pod_manifest(web, image, ["sh", "-c", serve], {"app": web}))
        deadline = time.monotonic() + 120
        while api.read_namespaced_pod(web, "default").status.phase != "Running":
            if time.monotonic() > deadline:
                sys.exit("the web pod never ran")
            time.sleep(0.2)
        forward = subprocess.Popen(kubectl + ["port-forward", web, ":8080"], stdout=subprocess.PIPE, text=True, env=env)
        try:
            line = forward.stdout.readline()
            port = int(line.split("127.0.0.1:")[1].split()[0])
            fetch = f"http://127.0.0.1:{port}/big"
            # The first fetch waits for httpd and warms the path; the second is measured.
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(fetch, timeout=60).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            started = time.monotonic()
            size = len(urllib.request.urlopen(fetch, timeout=120).read())
            forward_seconds = time.monotonic() - started
        finally:
            forward.terminate()
            forward.wait()
        raw = kubectl + ["get", "--raw", f"/api/v1/namespaces/default/pods/{web}:8080/proxy/big"]
        started = time.monotonic()
        direct = subprocess.run(raw, check=True, capture_output=True, env=env, timeout=300).stdout
        direct_seconds = time.monotonic() - started
        if len(direct) != size:
            sys.exit(f"the proxied download returned {len(direct)} bytes, not {size}")
    finally:
        for container in bare_ids:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        subprocess.run([args.rind, "delete", "cluster", "--name", name], capture_output=True, env=env)
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)

    mib = size / 1048576
    result = {
        "pods": args.pods,
        "pod_running_one_at_a_time_p50_seconds": statistics.median(sequential),
        "pod_running_one_at_a_time_p99_seconds": percentile(sequential, 99),
        "pod_running_p50_seconds": statistics.median(latencies),
        "pod_running_p99_seconds": percentile(latencies, 99),
        "docker_run_p50_seconds": statistics.median(bare),
        "docker_run_p99_seconds": percentile(bare, 99),
        "kubectl_exec_p50_seconds": statistics.median(execs),
        "docker_exec_p50_seconds": statistics.median(docker_execs),
        "port_forward_mib_per_second": mib / forward_seconds,
        "api_port_mib_per_second": mib / direct_seconds,
        "samples": {"pod_running_one_at_a_time": sequential, "pod_running": latencies, "docker_run": bare, "kubectl_exec": execs, "docker_exec": docker_execs},
    }
    result["exec_ratio"] = result["kubectl_exec_p50_seconds"] / result["docker_exec_p50_seconds"]
    result["port_forward_ratio"] = result["port_forward_mib_per_second"] / result["api_port_mib_per_second"]
    (out / "pods.json").write_text(json.dumps(result, indent=2))
    print(f"{args.pods} pods one at a time, creation -> Running (watch):"
          f" p50 {result['pod_running_one_at_a_time_p50_seconds'] * 1000:.0f} ms,"
          f" p99 {result['pod_running_one_at_a_time_p99_seconds'] * 1000:.0f} ms  (targets 300 ms / 1000 ms)")
    print(f"{args.pods} pods back to back, creation -> Running (watch):"
          f" p50 {result['pod_running_p50_seconds'] * 1000:.0f} ms, p99 {result['pod_running_p99_seconds'] * 1000:.0f} ms")
    print(f"bare docker run -d of the same image:      p50 {result['docker_run_p50_seconds'] * 1000:.0f} ms,"
          f" p99 {result['docker_run_p99_seconds'] * 1000:.0f} ms")
    print(f"kubectl exec -- true p50 {result['kubectl_exec_p50_seconds'] * 1000:.0f} ms vs docker exec"
          f" {result['docker_exec_p50_seconds'] * 1000:.0f} ms: {result['exec_ratio']:.2f}x (target <= 2x)")
    print(f"port-forward {result['port_forward_mib_per_second']:.1f} MiB/s vs the API port (pods/proxy)"
          f" {result['api_port_mib_per_second']:.1f} MiB/s: {result['port_forward_ratio']:.2f}x (target >= 0.5x)")
    print(f"written to {out}/pods.json")


if __name__ == "__main__":
    main()
