#!/usr/bin/env python3
"""Benchmark: our cluster DNS pod against Debian's dnsmasq, in the same run, on the same
node, queried by Debian's dnsperf.

Creates a cluster (or uses --name's), makes --services ClusterIP Services, and runs in
pods of one locally built image (mmdebstrap: dnsperf + dnsmasq-base, no registry):
dnsmasq serving the same names from a hosts file (the Services' ClusterIPs), and dnsperf.
Against one of our `coredns` pods (by pod IP) and against dnsmasq, taking turns:
- throughput: dnsperf at full speed (-c 4, 100 outstanding) for --seconds;
- latency: dnsperf at a fixed --rate with per-query latencies (-v), p50/p99 from them.
Then the memory (RSS) of our DNS pods and of dnsmasq after 60 s idle.

Prints each figure with its ratio to dnsmasq and the issue's targets (throughput at
least dnsmasq's, p99 <= 5 ms, DNS pod <= 20 MB), and writes dns.json under --out.
Usage: e2e/bench/dns.py [--rind target/release/rind] [--image TAG] [--name CLUSTER]"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NS = "dns-bench"
PACKAGES = ["dnsperf", "dnsmasq-base"]


def run(cmd, check=True, timeout=600, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        sys.exit(f"{cmd} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def wait_for(what, condition, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


class Kube:
    def __init__(self, kubectl, context, env):
        self.kubectl, self.context, self.env = kubectl, context, env

    def __call__(self, *args, check=True, input=None, timeout=600):
        return run([self.kubectl, "--context", self.context, *args], check=check, input=input, env=self.env, timeout=timeout)

    def json(self, *args):
        return json.loads(self(*args, "-o", "json").stdout)


def bench_image():
    """dnsperf and dnsmasq from Debian's packages, built once per package list."""
    tag = "rind-bench-dns:" + hashlib.sha256(" ".join(PACKAGES).encode()).hexdigest()[:12]
    if run(["docker", "image", "inspect", tag], check=False).returncode == 0:
        return tag
    if not shutil.which("mmdebstrap"):
        sys.exit("mmdebstrap is needed to build the dnsperf/dnsmasq image (apt-get install mmdebstrap)")
    print(f"building {tag} with mmdebstrap ({', '.join(PACKAGES)})", flush=True)
    build = subprocess.Popen(
        ["mmdebstrap", "--quiet", "--variant=essential", "--include=" + ",".join(PACKAGES), "bookworm", "-"],
        stdout=subprocess.PIPE,
    )
    run(["docker", "import", "-", tag], stdin=build.stdout, timeout=1800)
    if build.wait() != 0:
        sys.exit("mmdebstrap failed")
    return tag


def ready_pods(kube, selector):
    pods = kube.json("get", "pods", "-A", "-l", selector)["items"]
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running"
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


def pod_manifest(name, image, command, volume=None):
    spec = {
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "containers": [{"name": "c", "image": image, "imagePullPolicy": "Never", "command": command}],
    }
    if volume:
        spec["volumes"] = [{"name": "cfg", "configMap": {"name": volume}}]
        spec["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/cfg"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"bench": name}}, "spec": spec}


def dnsperf(kube, server, args, timeout):
    out = kube("-n", NS, "exec", "perf", "--", "dnsperf", "-s", server, "-d", "/cfg/queries", *args, timeout=timeout)
    text = out.stdout
    qps = float(re.search(r"Queries per second:\s+([0-9.]+)", text).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", text).group(1))
    latencies = sorted(float(m) for m in re.findall(r"^> \S+ .* ([0-9]+\.[0-9]+)$", text, re.M))
    return qps, lost, latencies


def percentile(values, p):
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * p))]


def rss_kib(node, pattern):
    """RSS of each process in the node whose command line matches `pattern` (pods' processes are visible from the node)."""
    out = run(["docker", "exec", node, "sh", "-c",
               f"for p in $(pgrep -f '{pattern}'); do grep VmRSS /proc/$p/status; done"], check=False).stdout
    return [int(v) for v in re.findall(r"VmRSS:\s+(\d+)", out)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rind", default=str(ROOT / "target" / "release" / "rind"))
    parser.add_argument("--kubectl", default=os.environ.get("KUBECTL", str(ROOT / ".venv" / "bin" / "kubectl")))
    parser.add_argument("--image", default=os.environ.get("RIND_E2E_IMAGE"), help="node image to create the cluster with")
    parser.add_argument("--name", default="bench-dns", help="cluster name (created unless it exists; deleted if created here)")
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=2000, help="queries per second of the latency runs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "target" / "bench"))
    args = parser.parse_args()

    kubeconfig = tempfile.NamedTemporaryFile(prefix="rind-bench-dns-", suffix=".kubeconfig", delete=False).name
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    existing = run([args.rind, "get", "clusters"], env=env).stdout.split()
    created = args.name not in existing
    if created:
        cmd = [args.rind, "create", "cluster", "--name", args.name, "--wait", "2m"]
        if args.image:
            cmd += ["--image", args.image]
        run(cmd, env=env, timeout=900)
    else:
        run([args.rind, "export", "kubeconfig", "--name", args.name], env=env)
    kube = Kube(args.kubectl, f"rind-{args.name}", env)
    node = f"{args.name}-control-plane"
    try:
        image = bench_image()
        run([args.rind, "load", "docker-image", image, "--name", args.name], env=env, timeout=900)
        kube("create", "namespace", NS, check=False)

        services = [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc{i}", "namespace": NS},
             "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": f"svc{i}"}}}
            for i in range(args.services)
        ]
        kube("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": services}))
        ips = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in kube.json("-n", NS, "get", "services")["items"]}
        names = [f"{name}.{NS}.svc.cluster.local" for name in sorted(ips)]
        hosts = "".join(f"{ips[n.split('.')[0]]} {n}\n" for n in names)
        queries = "".join(f"{n} A\n" for n in names)
        kube("-n", NS, "create", "configmap", "bench", f"--from-literal=hosts={hosts}", f"--from-literal=queries={queries}",
             check=False)

        # dnsmasq answers only from the hosts file: no upstream, no /etc/hosts, a cache
        # large enough for every name.
        dnsmasq = pod_manifest("dnsmasq", image, ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                                                 "--addn-hosts=/cfg/hosts", "--cache-size=10000", "--user=root"], "bench")
        perf = pod_manifest("perf", image, ["sleep", "infinity"], "bench")
        kube("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [dnsmasq, perf]}))
        kube("-n", NS, "wait", "--for=condition=Ready", "pod/dnsmasq", "pod/perf", "--timeout=180s")
        ours = wait_for("a ready DNS pod", lambda: ready_pods(kube, "k8s-app=kube-dns"))
        targets = {
            "rind-dns": ours[0]["status"]["podIP"],
            "dnsmasq": kube.json("-n", NS, "get", "pod", "dnsmasq")["status"]["podIP"],
        }
        # Both answer every name before anything is measured.
        for label, ip in targets.items():
            qps, lost, _ = dnsperf(kube, ip, ["-n", "1"], 60)
            if lost:
                sys.exit(f"{label} at {ip} lost {lost} of the warm-up queries")

        results = {label: {"qps": [], "latencies": [], "lost": 0} for label in targets}
        for _ in range(args.rounds):
            for label, ip in targets.items():
                qps, lost, _ = dnsperf(kube, ip, ["-l", str(args.seconds), "-c", "4", "-q", "100"], args.seconds + 120)
                results[label]["qps"].append(qps)
                results[label]["lost"] += lost
                _, lost, latencies = dnsperf(kube, ip, ["-l", str(args.seconds), "-Q", str(args.rate), "-v"], args.seconds + 120)
                results[label]["latencies"].extend(latencies)
                results[label]["lost"] += lost

        print("idling 60 s before measuring memory", flush=True)
        time.sleep(60)
        memory = {"rind-dns": rss_kib(node, "rind dns"), "dnsmasq": rss_kib(node, "dnsmasq --keep-in-foreground")}

        summary = {}
        for label, r in results.items():
            lat = sorted(r["latencies"])
            summary[label] = {
                "qps": max(r["qps"]),
                "p50_ms": percentile(lat, 0.50) * 1000,
                "p99_ms": percentile(lat, 0.99) * 1000,
                "lost": r["lost"],
                "rss_mib": [round(k / 1024, 1) for k in memory[label]],
            }
        ours_s, base = summary["rind-dns"], summary["dnsmasq"]
        print(f"\n{args.services} Services; dnsperf {args.seconds} s runs, {args.rounds} rounds, latency at {args.rate} q/s")
        print(f"{'':22}{'rind dns':>12}{'dnsmasq':>12}{'ratio':>8}")
        print(f"{'queries/s (best)':22}{ours_s['qps']:12.0f}{base['qps']:12.0f}{ours_s['qps'] / base['qps']:8.2f}")
        print(f"{'p50 latency (ms)':22}{ours_s['p50_ms']:12.3f}{base['p50_ms']:12.3f}{ours_s['p50_ms'] / base['p50_ms']:8.2f}")
        print(f"{'p99 latency (ms)':22}{ours_s['p99_ms']:12.3f}{base['p99_ms']:12.3f}{ours_s['p99_ms'] / base['p99_ms']:8.2f}")
        ours_rss = max(ours_s["rss_mib"] or [float("nan")])
        base_rss = max(base["rss_mib"] or [float("nan")])
        print(f"{'RSS after 60 s (MiB)':22}{ours_rss:12.1f}{base_rss:12.1f}{ours_rss / base_rss:8.2f}")
        print(f"{'queries lost':22}{ours_s['lost']:12}{base['lost']:12}")
        checks = [
            ("throughput >= dnsmasq's", ours_s["qps"] >= base["qps"]),
            ("p99 <= 5 ms", ours_s["p99_ms"] <= 5),
            ("DNS pod RSS <= 20 MB", ours_rss * 1024 * 1024 <= 20e6),
        ]
        for what, ok in checks:
            print(f"  {'met ' if ok else 'MISSED'} {what}")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "dns.json").write_text(json.dumps(summary, indent=2))
    finally:
        kube("delete", "namespace", NS, "--wait=false", check=False)
        if created:
            run([args.rind, "delete", "cluster", "--name", args.name], env=env, check=False)
        Path(kubeconfig).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
