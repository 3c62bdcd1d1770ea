#!/usr/bin/env python3
"""Benchmark: `rind create cluster` of one control plane and two workers (until every
node is Ready) against a single-node cluster in the same run, and the network agent's
memory (RSS) on each node after 60 s idle.

Usage: e2e/bench/multinode.py [--rind target/release/rind] [--image TAG] [--runs 1]"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MULTI = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: worker\n- role: worker\n"
IDLE_SECONDS = 60


def all_ready(name, env, count):
    out = subprocess.run(
        ["kubectl", "--context", f"rind-{name}", "get", "nodes", "-o", "json"],
        capture_output=True, text=True, env=env,
    )
    if out.returncode != 0:
        return False
    items = json.loads(out.stdout)["items"]
    return len(items) == count and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
        for n in items
    )


def create(args, env, config, count):
    """Seconds from `create cluster` to every node Ready; returns (seconds, name)."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    cmd = [args.rind, "create", "cluster", "--name", name, "--wait", "5m"]
    if args.image:
        cmd += ["--image", args.image]
    if config:
        path = Path(tempfile.mkdtemp()) / "cluster.yaml"
        path.write_text(config)
        cmd += ["--config", str(path)]
    started = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=900)
    deadline = time.monotonic() + 300
    while not all_ready(name, env, count):
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: not every node became Ready")
        time.sleep(0.2)
    return time.monotonic() - started, name


def agent_memory_kib(node):
    """The agent's Rss, Pss and Pss_Anon (kB) from smaps_rollup: Rss counts every page of
    the rind binary it touched, which the node's other rind processes share; Pss splits
    shared pages between them, and Pss_Anon is the agent's own heap and stacks."""
    out = subprocess.run(["docker", "exec", node, "ps", "-eo", "pid=,args="],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, _, cmd = line.strip().partition(" ")
        if cmd.strip().endswith("node net"):
            rollup = subprocess.run(["docker", "exec", node, "cat", f"/proc/{pid}/smaps_rollup"],
                                    check=True, capture_output=True, text=True).stdout
            fields = dict(l.split(":", 1) for l in rollup.splitlines() if ":" in l and "-" not in l.split(":")[0])
            return {k: int(fields[k].split()[0]) for k in ("Rss", "Pss", "Pss_Anon")}
    raise SystemExit(f"no network agent found on {node}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rind", default=str(ROOT / "target" / "release" / "rind"))
    parser.add_argument("--image")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    env = {**os.environ, "KUBECONFIG": str(Path(tempfile.mkdtemp()) / "config")}
    single, multi, rss = [], [], {}
    for _ in range(args.runs):
        seconds, name = create(args, env, None, 1)
        subprocess.run([args.rind, "delete", "cluster", "--name", name], capture_output=True, env=env)
        single.append(seconds)
        seconds, name = create(args, env, MULTI, 3)
        multi.append(seconds)
        try:
            time.sleep(IDLE_SECONDS)
            for node in (f"{name}-control-plane", f"{name}-worker", f"{name}-worker2"):
                rss[node] = agent_memory_kib(node)
        finally:
            subprocess.run([args.rind, "delete", "cluster", "--name", name], capture_output=True, env=env)
    s, m = statistics.median(single), statistics.median(multi)
    print(f"create → Ready, 1 node:            {s:.2f} s (median of {args.runs})")
    print(f"create → all Ready, 1 cp + 2 workers: {m:.2f} s (median of {args.runs})")
    print(f"ratio 3 nodes / 1 node: {m / s:.2f}")
    for node, kib in rss.items():
        print(f"network agent after {IDLE_SECONDS} s idle on {node}: RSS {kib['Rss'] / 1024:.1f} MiB, "
              f"PSS {kib['Pss'] / 1024:.1f} MiB, of it anonymous {kib['Pss_Anon'] / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
