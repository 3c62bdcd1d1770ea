#!/usr/bin/env python3
"""Profile: where the time goes when N pods are created back to back (or, with
--one-at-a-time, each once the one before runs) on one node.

Not a benchmark with a baseline (that is pods.py): a breakdown of each pod's path from
creation to `Running` into stages, from a watch on the host and the timestamps of the
components' own log lines inside the node (the node shares the host's clock):

  created -> bound (the watch sees spec.nodeName) -> kubelet starts the sandbox
  ("creating the pod sandbox") -> sandbox ready ("sandbox created", where the kubelet
  logs it) -> container started ("container started") -> status
  patch sent ("updating pod status" with phase Running) -> the watch sees Running.

Prints p50/p90/max of each stage and of the whole, plus the spread of the stage starts
(how long the node took to get through the burst).
Usage: e2e/bench/pod_stages.py [--rind BIN] [--node-image TAG] [--pods 50] [--one-at-a-time]
       [--cluster NAME] [--keep]"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pods import build_busybox, percentile, pod_manifest, run  # noqa: E402

LINE = re.compile(r"^(\S+Z)\s+\w+\s+(\S+): (.*)$")


def log_times(node, component, message, extra=None):
    """name -> first wall-clock time of a log line of `component` with `message`."""
    text = run(["docker", "exec", node, "cat", f"/var/log/rind/{component}.log"]).stdout
    found = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or message not in m.group(3) or (extra and extra not in m.group(3)):
            continue
        pod = re.search(r"\bpod=(\S+)", m.group(3))
        if not pod:
            continue
        stamp = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
        found.setdefault(pod.group(1), stamp)
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rind", default=str(ROOT / "target" / "debug" / "rind"))
    parser.add_argument("--node-image")
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--cluster", help="use this existing cluster instead of creating one")
    parser.add_argument("--keep", action="store_true", help="keep the cluster")
    parser.add_argument("--one-at-a-time", action="store_true",
                        help="create each pod once the one before runs (pods.py's first measurement)")
    args = parser.parse_args()
    from kubernetes import client, config, watch

    kubeconfig = Path(tempfile.mkdtemp()) / "config"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    run_id = uuid.uuid4().hex[:6]
    image = f"rind-bench-busybox:{run_id}"
    name = args.cluster or f"stages-{run_id}"
    node = f"{name}-control-plane"
    build_busybox(image)
    try:
        if not args.cluster:
            create = [args.rind, "create", "cluster", "--name", name, "--wait", "3m"]
            if args.node_image:
                create += ["--image", args.node_image]
            run(create, env=env, timeout=900)
        else:
            run([args.rind, "export", "kubeconfig", "--name", name], env=env)
        run([args.rind, "load", "docker-image", image, "--name", name], env=env)
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), context=f"rind-{name}", client_configuration=configuration)
        api = client.CoreV1Api(client.ApiClient(configuration))
        # The service account the pods mount must exist before the burst.
        deadline = time.monotonic() + 60
        while not api.list_namespaced_service_account("default").items:
            if time.monotonic() > deadline:
                sys.exit("no default service account")
            time.sleep(0.2)

        label = f"stages-{run_id}"
        created, bound, running = {}, {}, {}
        listed = api.list_namespaced_pod("default", label_selector=f"bench={label}")
        done = threading.Event()

        def observe():
            w = watch.Watch()
            for event in w.stream(api.list_namespaced_pod, "default", label_selector=f"bench={label}",
                                  resource_version=listed.metadata.resource_version, timeout_seconds=600):
                pod = event["object"]
                now = time.time()
                if pod.spec.node_name and pod.metadata.name not in bound:
                    bound[pod.metadata.name] = now
                if pod.status and pod.status.phase == "Running" and pod.metadata.name not in running:
                    running[pod.metadata.name] = now
                    if len(running) == args.pods:
                        w.stop()
            done.set()

        threading.Thread(target=observe, daemon=True).start()
        for i in range(args.pods):
            pod = f"st-{run_id}-{i}"
            created[pod] = time.time()
            api.create_namespaced_pod("default", pod_manifest(pod, image, ["sleep", "3600"], {"bench": label}))
            deadline = time.monotonic() + 120
            while args.one_at_a_time and pod not in running and time.monotonic() < deadline:
                time.sleep(0.005)
        if not done.wait(600) or len(running) < args.pods:
            sys.exit(f"only {len(running)} of {args.pods} pods reached Running")
        sandbox = log_times(node, "kubelet", "creating the pod sandbox")
        sandboxed = log_times(node, "kubelet", "sandbox created")
        started = log_times(node, "kubelet", "container started")
        patched = log_times(node, "kubelet", "updating pod status", "Running")
        for pod in created:
            api.delete_namespaced_pod(pod, "default", grace_period_seconds=0)
    finally:
        if not args.keep and not args.cluster:
            subprocess.run([args.rind, "delete", "cluster", "--name", name], capture_output=True, env=env)
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)

    points = [("created", created), ("bound", bound), ("sandbox", sandbox), ("sandboxed", sandboxed),
              ("started", started),
              ("patched", patched), ("running", running)]
    how = "one at a time" if args.one_at_a_time else "back to back"
    print(f"{args.pods} pods {how}; per-stage seconds (p50 / p90 / max):")
    points = [(n, at) for n, at in points if any(p in at for p in created)]
    for (a, at), (b, bt) in zip(points, points[1:]):
        spans = [bt[p] - at[p] for p in created if p in at and p in bt]
        if spans:
            print(f"  {a:>8} -> {b:<8} {statistics.median(spans):7.3f} {percentile(spans, 90):7.3f} {max(spans):7.3f}"
                  f"  (n={len(spans)})")
    total = [running[p] - created[p] for p in created]
    print(f"  {'created':>8} -> {'running':<8} {statistics.median(total):7.3f} {percentile(total, 90):7.3f}"
          f" {max(total):7.3f}  p99 {percentile(total, 99):.3f}")
    t0 = min(created.values())
    for label_, at in points:
        ours = [at[p] for p in created if p in at]
        if ours:
            print(f"  {label_:>9}: first {min(ours) - t0:6.3f}  last {max(ours) - t0:6.3f}")


if __name__ == "__main__":
    main()
