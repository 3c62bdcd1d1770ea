#!/usr/bin/env python3
"""Benchmark e2e/bench/network (issue 18), the one entry point for the data plane's
figures, each a ratio to a baseline measured in the same run:

- Pod-to-pod TCP throughput across nodes: Debian's iperf3 in a server pod on one worker
  and a client pod on the other (pinned with nodeName), against the same iperf3 binary
  run directly in the two worker node containers (node IP to node IP over the Docker
  network). Target: ratio >= 0.8.
- Memory of the network agent (`node net`) and the service proxy (`node proxy`) on
  every node after 60 s idle in a fresh cluster: PSS and private pages (smaps_rollup),
  not RSS, which counts the rind binary's file pages that every rind process in the
  node shares. Target: agent + proxy <= 20 MB per node.
- Unless skipped: the service programming benchmark (network_proxy.py) and the DNS
  benchmark (dns.py, when present), run as they are and their JSON merged.

No registry: the iperf3 image is built here, FROM scratch with the host's iperf3
(`apt-get install iperf3`), its shared libraries and the dynamic loader, then loaded
with `rind load docker-image`. The baseline runs the same files, copied into the node
containers with `docker cp`, through the copied loader (the node image need not have
the libraries).

Usage: e2e/bench/network.py [--rind target/release/rind] [--image TAG] [--seconds 10]
       [--repeats 2] [--skip-proxy] [--skip-dns]
Writes target/bench/network.json."""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = os.environ.get("KUBECTL", str(ROOT / ".venv" / "bin" / "kubectl"))
IDLE_SECONDS = 60
# Where the baseline's copy of iperf3 goes inside the node containers.
NODE_DIR = "/opt/rind-bench-iperf3"
LOADER = "/lib64/ld-linux-x86-64.so.2"


def sh(cmd, env=None, input=None, timeout=900, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, input=input, timeout=timeout)
    if check and r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def iperf3_rootfs(dest):
    """Copies the host's iperf3, every library it loads and the loader under `dest`,
    at their own paths (symlinks resolved, so the copy needs nothing else)."""
    binary = shutil.which("iperf3")
    if not binary:
        sys.exit("Debian's iperf3 is needed on the host: apt-get install iperf3")
    # (path the loader looks up, the file it resolves to)
    files = [(Path(binary), Path(binary).resolve())]
    for line in sh(["ldd", binary]).stdout.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            files.append((Path(parts[2]), Path(parts[2]).resolve()))
        elif parts and parts[0].startswith("/"):
            files.append((Path(parts[0]), Path(parts[0]).resolve()))
    for name, real in files:
        target = dest / str(name).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(real, target)
    # iperf3 makes a temporary file per stream in /tmp (the scratch image has none).
    (dest / "tmp").mkdir(exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    if not (dest / "usr" / "bin" / "iperf3").exists():
        sys.exit(f"iperf3 is at {binary}, not /usr/bin/iperf3 as Debian installs it")
    if not (dest / LOADER.lstrip("/")).exists():
        sys.exit(f"the loader {LOADER} is not among iperf3's libraries")


def build_image(tag, rootfs):
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(rootfs, Path(context) / "rootfs", symlinks=True)
        (Path(context) / "Dockerfile").write_text(
            "# iperf3 from the host's Debian package, with its libraries and loader.\n"
            "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/usr/bin/iperf3\"]\n"
        )
        sh(["docker", "build", "-q", "-t", tag, context], env={**os.environ, "DOCKER_BUILDKIT": "0"})


def kubectl(context, *args, env, input=None, check=True, timeout=120):
    return sh([KUBECTL, "--context", context, *args], env=env, input=input, check=check, timeout=timeout)


def wait(what, probe, timeout):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.5)


def pod_json(context, name, env):
    r = kubectl(context, "get", "pod", name, "-o", "json", env=env, check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def received_bps(output, what):
    """Bits/s the server received, from iperf3's JSON report; None when the server was
    not listening yet (iperf3 -J reports that in the JSON, with exit status 0)."""
    try:
        report = json.loads(output)
    except ValueError:
        sys.exit(f"{what}: iperf3 printed no JSON: {output[:500]}")
    if "Connection refused" in report.get("error", ""):
        return None
    try:
        return report["end"]["sum_received"]["bits_per_second"]
    except (KeyError, TypeError):
        sys.exit(f"{what}: no iperf3 result in {json.dumps(report)[:500]}")


def pod_run(context, env, image, server_node, client_node, seconds, n):
    """One pod-to-pod measurement: bits/s the server pod received."""
    server, client = f"iperf3-server-{n}", f"iperf3-client-{n}"
    spec = lambda name, node, args, restart: {  # noqa: E731
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "rind-bench-iperf3"}},
        "spec": {"nodeName": node, "restartPolicy": restart,
                 "containers": [{"name": "iperf3", "image": image, "args": args}]},
    }
    try:
        kubectl(context, "create", "-f", "-", env=env,
                input=json.dumps(spec(server, server_node, ["-s", "-p", "5201"], "Always")))
        ip = wait("the iperf3 server pod", lambda: (p := pod_json(context, server, env))
                  and p["status"].get("phase") == "Running" and p["status"].get("podIP"), 180)
        # The server listens once its process runs; the client retries the connect
        # until it does (iperf3 has no connect retry of its own before 3.17).
        for attempt in range(20):
            kubectl(context, "create", "-f", "-", env=env, input=json.dumps(
                spec(client, client_node, ["-c", ip, "-p", "5201", "-t", str(seconds), "-J"], "Never")))
            phase = wait("the iperf3 client pod", lambda: (p := pod_json(context, client, env))
                         and p["status"].get("phase") in ("Succeeded", "Failed") and p["status"]["phase"],
                         seconds + 120)
            logs = kubectl(context, "logs", client, env=env).stdout
            kubectl(context, "delete", "pod", client, "--wait=true", "--grace-period=0", env=env, check=False)
            bps = received_bps(logs, f"pod to pod ({phase})")
            if bps is not None:
                return bps
            time.sleep(0.5)
        sys.exit("the iperf3 server pod never accepted connections")
    finally:
        kubectl(context, "delete", "pod", server, client, "--ignore-not-found", "--wait=false",
                "--grace-period=0", env=env, check=False)


def node_iperf3(node, *args):
    return ["docker", "exec", node, f"{NODE_DIR}{LOADER}", "--library-path",
            f"{NODE_DIR}/lib/x86_64-linux-gnu:{NODE_DIR}/usr/lib/x86_64-linux-gnu",
            f"{NODE_DIR}/usr/bin/iperf3", *args]


def node_run(server_node, server_ip, client_node, seconds):
    """One node-to-node measurement with the same binary: bits/s received."""
    # -1: the server exits after one test; -D would detach from docker exec.
    server = subprocess.Popen(node_iperf3(server_node, "-s", "-1", "-p", "5301"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(40):
            r = sh(node_iperf3(client_node, "-c", server_ip, "-p", "5301", "-t", str(seconds), "-J"),
                   check=False, timeout=seconds + 60)
            bps = received_bps(r.stdout, f"node to node (exit {r.returncode}, {r.stderr.strip()})")
            if bps is not None:
                return bps
            time.sleep(0.25)
        sys.exit("the node iperf3 server never accepted connections")
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def memory_kib(node, component):
    """Rss, Pss, Pss_Anon and Private (clean + dirty) in kB of `rind node <component>`."""
    out = sh(["docker", "exec", node, "ps", "-eo", "pid=,args="]).stdout
    for line in out.splitlines():
        pid, _, cmd = line.strip().partition(" ")
        if cmd.strip().endswith(f"node {component}"):
            rollup = sh(["docker", "exec", node, "cat", f"/proc/{pid}/smaps_rollup"]).stdout
            fields = {}
            for l in rollup.splitlines():
                key, sep, value = l.partition(":")
                if sep and value.strip().endswith("kB"):
                    fields[key.strip()] = int(value.split()[0])
            return {
                "rss": fields["Rss"], "pss": fields["Pss"], "pss_anon": fields["Pss_Anon"],
                "private": fields["Private_Clean"] + fields["Private_Dirty"],
            }
    sys.exit(f"no `node {component}` process on {node}")


def sub_benchmark(script, args, env):
    """Runs another e2e/bench script as it is; returns its JSON (None when absent)."""
    path = ROOT / "e2e" / "bench" / script
    if not path.exists():
        print(f"({script} is not in this tree: skipped)")
        return None
    cmd = [sys.executable, str(path), "--rind", args.rind, "--out", args.out]
    if args.image:
        cmd += ["--image", args.image]
    r = subprocess.run(cmd, env=env, text=True)
    if r.returncode != 0:
        sys.exit(f"{script} failed")
    result = Path(args.out) / script.replace(".py", ".json")
    return json.loads(result.read_text()) if result.exists() else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rind", default=str(ROOT / "target" / "release" / "rind"))
    parser.add_argument("--image", default=os.environ.get("RIND_E2E_IMAGE"))
    parser.add_argument("--seconds", type=int, default=10, help="length of each iperf3 run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each (medians reported)")
    parser.add_argument("--skip-proxy", action="store_true", help="skip network_proxy.py")
    parser.add_argument("--skip-dns", action="store_true", help="skip dns.py")
    parser.add_argument("--out", default=str(ROOT / "target" / "bench"))
    args = parser.parse_args()
    args.rind = str(Path(args.rind).resolve())
    env = {**os.environ, "KUBECONFIG": str(Path(tempfile.mkdtemp()) / "config")}
    run_id = uuid.uuid4().hex[:6]
    name = f"bench-net-{run_id}"
    context = f"rind-{name}"
    tag = f"rind/bench-iperf3:{run_id}"
    rootfs = Path(tempfile.mkdtemp()) / "rootfs"
    iperf3_rootfs(rootfs)
    build_image(tag, rootfs)
    cfg = Path(tempfile.mkdtemp()) / "cluster.yaml"
    cfg.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n"
                   "- role: control-plane\n- role: worker\n- role: worker\n")
    create = [args.rind, "create", "cluster", "--name", name, "--config", str(cfg), "--wait", "5m"]
    if args.image:
        create += ["--image", args.image]
    result = {"build": "release" if "/release/" in args.rind else "debug"}
    try:
        sh(create, env=env)
        nodes = [f"{name}-control-plane", f"{name}-worker", f"{name}-worker2"]
        # Memory first, in the fresh cluster left alone for a minute.
        time.sleep(IDLE_SECONDS)
        memory = {n: {c: memory_kib(n, c) for c in ("net", "proxy")} for n in nodes}
        result["memory_kib"] = memory
        sh([args.rind, "load", "docker-image", tag, "--name", name], env=env)
        w1, w2 = nodes[1], nodes[2]
        for node in (w1, w2):
            sh(["docker", "exec", node, "rm", "-rf", NODE_DIR])
            sh(["docker", "cp", str(rootfs), f"{node}:{NODE_DIR}"])
        w1_ip = json.loads(kubectl(context, "get", "node", w1, "-o", "json", env=env).stdout)
        w1_ip = next(a["address"] for a in w1_ip["status"]["addresses"] if a["type"] == "InternalIP")
        image = f"docker.io/{tag}"
        pods, direct = [], []
        # Alternated, so drift in the machine's load hits both alike.
        for n in range(args.repeats):
            direct.append(node_run(w1, w1_ip, w2, args.seconds))
            pods.append(pod_run(context, env, image, w1, w2, args.seconds, n))
        result["iperf3"] = {
            "seconds": args.seconds,
            "pod_to_pod_bps": pods,
            "node_to_node_bps": direct,
            "ratio": statistics.median(pods) / statistics.median(direct),
        }
    finally:
        sh([args.rind, "delete", "cluster", "--name", name], env=env, check=False)
        sh(["docker", "rmi", "-f", tag], check=False)
        shutil.rmtree(rootfs.parent, ignore_errors=True)

    print(f"network benchmark ({result['build']} build of rind), 1 control plane + 2 workers")
    ip = result["iperf3"]
    print(f"TCP throughput across nodes, iperf3 -t {ip['seconds']}, median of {args.repeats}:")
    print(f"  pod to pod:   {statistics.median(ip['pod_to_pod_bps']) / 1e9:.2f} Gbit/s "
          f"({', '.join(f'{b / 1e9:.2f}' for b in ip['pod_to_pod_bps'])})")
    print(f"  node to node: {statistics.median(ip['node_to_node_bps']) / 1e9:.2f} Gbit/s "
          f"({', '.join(f'{b / 1e9:.2f}' for b in ip['node_to_node_bps'])}) (baseline)")
    print(f"  ratio pod/node: {ip['ratio']:.2f} (target >= 0.8)")
    print(f"memory after {IDLE_SECONDS} s idle (PSS; private pages in brackets; target agent + proxy <= 20 MB):")
    for node, parts in result["memory_kib"].items():
        net, proxy = parts["net"], parts["proxy"]
        total = net["pss"] + proxy["pss"]
        private = net["private"] + proxy["private"]
        print(f"  {node}: agent {net['pss'] / 1024:.1f} MiB [{net['private'] / 1024:.1f}], "
              f"proxy {proxy['pss'] / 1024:.1f} MiB [{proxy['private'] / 1024:.1f}], "
              f"together {total / 1024:.1f} MiB = {total * 1024 / 20e6:.2f}x of 20 MB "
              f"[private {private / 1024:.1f} MiB = {private * 1024 / 20e6:.2f}x] "
              f"(RSS {(net['rss'] + proxy['rss']) / 1024:.1f} MiB)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.skip_proxy:
        result["proxy"] = sub_benchmark("network_proxy.py", args, env)
    if not args.skip_dns:
        result["dns"] = sub_benchmark("dns.py", args, env)
    (out / "network.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
