#!/usr/bin/env python3
"""Benchmark: our API server against raw etcd, in the same run, on the same etcd.

Starts a throwaway etcd (Debian etcd-server) on loopback, then `rind bench api`, which
serves our API server in-process over it and measures create, get, update (32 concurrent
clients), LIST of every pod (JSON, resourceVersion=0, protobuf, Table) and one event
reaching 100 watchers, each through the API and straight against etcd. Creates run in
rounds where the two sides take turns, so both meet the same machine speed.

Prints a table with the issue's targets, writes api.json and api.svg under --out.
Usage: e2e/bench/api.py [--rind target/release/rind] [--out DIR] [driver flags...]"""

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_etcd(workdir):
    client = f"http://127.0.0.1:{free_port()}"
    peer = f"http://127.0.0.1:{free_port()}"
    log = open(workdir / "etcd.log", "w")
    proc = subprocess.Popen(
        ["etcd", "--name", "bench", "--data-dir", str(workdir / "data"),
         "--listen-client-urls", client, "--advertise-client-urls", client,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"bench={peer}",
         # Bookmarks for idle watches; the API server relies on progress events.
         "--experimental-watch-progress-notify-interval", "5s"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"etcd exited: see {workdir / 'etcd.log'}")
        try:
            with socket.create_connection(("127.0.0.1", int(client.rsplit(":", 1)[1])), timeout=1):
                return proc, client
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("etcd did not start listening in time")


# (name, api key, etcd key, metric, target, how the target is judged)
TARGETS = [
    ("create p99 <= 25 ms", "api_create", "p99_ms", lambda r: r["api_create"]["p99_ms"] <= 25),
    ("update p99 <= 25 ms", "api_update", "p99_ms", lambda r: r["api_update"]["p99_ms"] <= 25),
    ("create throughput >= 50% of etcd put", "api_create", "throughput",
     lambda r: r["api_create"]["throughput"] >= 0.5 * r["etcd_create"]["throughput"]),
    ("LIST 10k pods (JSON) <= 300 ms", "api_list_json", "p50_ms",
     lambda r: r["api_list_json"]["p50_ms"] <= 300),
    ("LIST 10k pods (JSON, rv=0) <= 300 ms", "api_list_json_rv0", "p50_ms",
     lambda r: r["api_list_json_rv0"]["p50_ms"] <= 300),
    ("LIST 10k pods (protobuf) <= 300 ms", "api_list_protobuf", "p50_ms",
     lambda r: r["api_list_protobuf"]["p50_ms"] <= 300),
    ("LIST 10k pods (Table) <= 300 ms", "api_list_table", "p50_ms",
     lambda r: r["api_list_table"]["p50_ms"] <= 300),
    ("1 event -> 100 watchers p99 <= 50 ms", "api_watch", "p99_ms",
     lambda r: r["api_watch"]["p99_ms"] <= 50),
]

ROWS = [
    ("create", "api_create", "etcd_create"),
    ("get", "api_get", "etcd_get"),
    ("update", "api_update", "etcd_update"),
    ("list (JSON)", "api_list_json", "etcd_list"),
    ("list (JSON, rv=0)", "api_list_json_rv0", "etcd_list"),
    ("list (protobuf)", "api_list_protobuf", "etcd_list"),
    ("list (Table)", "api_list_table", "etcd_list"),
    ("watch fan-out", "api_watch", "etcd_watch"),
]


def svg(result):
    """p99 latency bars, API next to etcd, per operation (log-free: values labelled)."""
    width, row = 760, 26
    values = [(label, result[a]["p99_ms"], result[e]["p99_ms"]) for label, a, e in ROWS]
    top = max(max(a, e) for _, a, e in values) or 1
    height = 70 + row * 2 * len(values)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<text x="10" y="22" font-size="15">p99 latency (ms): rind API server (blue) vs raw etcd (grey)</text>',
    ]
    for i, (label, api, etcd) in enumerate(values):
        y = 40 + i * row * 2
        parts.append(f'<text x="10" y="{y + 20}">{label}</text>')
        for j, (value, colour) in enumerate([(api, "#3b7dd8"), (etcd, "#999999")]):
            w = int((width - 300) * value / top)
            yy = y + j * (row - 4)
            parts.append(f'<rect x="180" y="{yy + 4}" width="{max(w, 1)}" height="16" fill="{colour}"/>')
            parts.append(f'<text x="{185 + w}" y="{yy + 17}">{value:.1f}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rind", default=str(ROOT / "target" / "release" / "rind"))
    parser.add_argument("--out", default=str(ROOT / "target" / "bench"))
    args, driver_flags = parser.parse_known_args()
    if shutil.which("etcd") is None:
        sys.exit("this benchmark needs etcd on PATH (Debian: apt-get install etcd-server)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="rind-bench-api-"))
    etcd, endpoint = start_etcd(workdir)
    try:
        driver = subprocess.run([args.rind, "bench", "api", "--etcd", endpoint, *driver_flags],
                                capture_output=True, text=True, timeout=1800)
        if driver.returncode != 0:
            sys.exit(f"the driver failed:\n{driver.stderr}")
        result = json.loads(driver.stdout)
    finally:
        etcd.kill()
        etcd.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    with open("/proc/loadavg") as f:
        result["loadavg_during"] = f.read().split()[:3]
    result["targets"] = {name: bool(check(result)) for name, _, _, check in TARGETS}
    (out / "api.json").write_text(json.dumps(result, indent=2))
    (out / "api.svg").write_text(svg(result))

    p = result["parameters"]
    print(f"{p['clients']} clients, {p['objects']} pods of {p['pod_json_bytes']} B, "
          f"{p['watchers']} watchers x {p['events']} events; load average {' '.join(result['loadavg_during'])}")
    print(f"{'operation':<20}{'API ops/s':>11}{'p50 ms':>9}{'p99 ms':>9}   "
          f"{'etcd ops/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'API/etcd tput':>15}")
    for label, a, e in ROWS:
        ra, re = result[a], result[e]
        ratio = ra["throughput"] / re["throughput"] if re["throughput"] else 0
        print(f"{label:<20}{ra['throughput']:>11.0f}{ra['p50_ms']:>9.1f}{ra['p99_ms']:>9.1f}   "
              f"{re['throughput']:>11.0f}{re['p50_ms']:>9.1f}{re['p99_ms']:>9.1f}{ratio:>15.2f}")
    rounds = result.get("create_round_ratios", [])
    if rounds:
        print("create API/etcd per round (the sides take turns): "
              + " ".join(f"{r:.2f}" for r in rounds))
    print()
    for name, key, metric, check in TARGETS:
        print(f"{'PASS' if check(result) else 'FAIL'}  {name}  ({key} {metric} = {result[key][metric]:.1f})")
    print(f"(written to {out}/api.json, api.svg)")


if __name__ == "__main__":
    main()
