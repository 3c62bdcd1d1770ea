#!/usr/bin/env python3
"""Benchmark (issue 19): create-to-Ready of three cluster shapes with the node image
cached, beside a bare `docker run` of that image in the same run.

Create-to-Ready is the time from starting `rind create cluster --wait` until every node
is Ready, the kube-system pods are Running (what `--wait` waits for) and the cluster DNS
answers: `kubernetes.default.svc.cluster.local` resolved through the `kube-dns` Service
(10.96.0.10) with busybox's nslookup from the control-plane node, a new query every 100 ms.
Shapes: 1 node; 1 control plane + 3 workers; 3 control planes + 3 workers (HA: skipped,
with the reason printed, when rind refuses the config). Targets: 1 node ≤ 12× the bare
run, 1+3 ≤ 5 s, 3+3 ≤ 10 s. For the HA shape, the load balancer's memory after it has
idled 20 s (target ≤ 10 MB, on the figure `docker stats` shows; VmRSS and its anonymous
part from /proc/1/status are printed beside it). Each create's step times (`rind create cluster`'s ✓ lines)
are kept to show where the time goes.

Prints the figures and writes cluster.json and cluster.svg into --out.
Usage: e2e/bench/cluster.py [--rind target/release/rind] [--image TAG] [--runs 1] [--out DIR]"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADER = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n"
SHAPES = [
    # (label, control planes, workers)
    ("1 node", 1, 0),
    ("1+3", 1, 3),
    ("3+3 (HA)", 3, 3),
]
TARGET_SECONDS = {"1+3": 5.0, "3+3 (HA)": 10.0}
TARGET_RATIO_1 = 12.0
# The HA load balancer's idle memory target (issue 19), and how long it idles first.
TARGET_LB_MIB = 10.0
LB_IDLE_SECONDS = 20
DNS_IP = "10.96.0.10"
DNS_NAME = "kubernetes.default.svc.cluster.local"
KUBERNETES_IP = "10.96.0.1"
STEP = re.compile(r"^ [✓✗] (.+?) \(([\d.]+)s\)$")


def config(control_planes, workers):
    return HEADER + "- role: control-plane\n" * control_planes + "- role: worker\n" * workers


def node_image(args, env):
    """The node image to create with (built when missing, so creates exclude builds)."""
    if args.image:
        subprocess.run(["docker", "image", "inspect", args.image], check=True, capture_output=True)
        return args.image
    built = subprocess.run([args.rind, "build", "node-image"], check=True, capture_output=True,
                           text=True, env=env).stderr
    tag = next((line.split('"')[1] for line in built.splitlines() if line.startswith("Image ")), None)
    if tag is None:
        sys.exit(f"could not read the node image tag from: {built}")
    return tag


def bare_run(image):
    started = time.monotonic()
    subprocess.run(["docker", "run", "--rm", "--entrypoint", "/bin/true", image],
                   check=True, capture_output=True, timeout=300)
    return time.monotonic() - started


def wait_for_dns(node, deadline_seconds=300):
    """Returns once the cluster DNS answers from `node`, or exits after the deadline.

    A query sent before the Service's rules exist is lost, and busybox's nslookup then
    waits whole seconds for an answer; so a new query starts every 100 ms inside the
    node (one `docker exec` for the whole wait), each with its own timeout, and the
    first full answer ends the wait: the time is then within about 0.1 s of the moment
    the cluster DNS first answered."""
    script = (
        f"end=$(( $(date +%s) + {deadline_seconds} )); rm -f /tmp/dns-ok; "
        "while [ ! -e /tmp/dns-ok ]; do "
        f"(busybox nslookup -timeout=2 {DNS_NAME} {DNS_IP} 2>/dev/null "
        f"| grep -q 'Address: {KUBERNETES_IP}$' && touch /tmp/dns-ok) & "
        'sleep 0.1; [ "$(date +%s)" -gt "$end" ] && exit 1; '
        "done; exit 0"
    )
    done = subprocess.run(["docker", "exec", node, "sh", "-c", script],
                          capture_output=True, text=True, timeout=deadline_seconds + 60)
    if done.returncode != 0:
        raise SystemExit(f"{node}: the cluster DNS never answered: {done.stderr}")


def create_to_ready(args, env, image, control_planes, workers):
    """{seconds, create_seconds, steps} for one create, or {refused: reason} when rind
    refuses the config before creating any node."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    path = Path(tempfile.mkdtemp()) / "cluster.yaml"
    path.write_text(config(control_planes, workers))
    cmd = [args.rind, "create", "cluster", "--name", name, "--config", str(path),
           "--image", image, "--wait", "5m"]
    try:
        started = time.monotonic()
        created = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        create_seconds = time.monotonic() - started
        if created.returncode != 0:
            if "Preparing nodes" not in created.stderr:
                reason = created.stderr.strip().splitlines()[-1] if created.stderr.strip() else "no output"
                return {"refused": reason}
            raise SystemExit(f"{name}: create failed:\n{created.stderr}")
        if "WARNING: Timed out waiting for Ready" in created.stderr:
            raise SystemExit(f"{name}: --wait timed out:\n{created.stderr}")
        node = f"{name}-control-plane"
        wait_for_dns(node)
        seconds = time.monotonic() - started
        steps = {m.group(1): float(m.group(2))
                 for m in (STEP.match(line) for line in created.stderr.splitlines()) if m}
        result = {"seconds": seconds, "create_seconds": create_seconds, "steps": steps}
        if control_planes > 1:
            result["lb_memory_kib"] = lb_idle_memory(f"{name}-external-load-balancer")
        return result
    finally:
        subprocess.run([args.rind, "delete", "cluster", "--name", name], capture_output=True, env=env)


def lb_idle_memory(container):
    """The HA load balancer's VmRSS, RssAnon and RssFile (KiB) once it has idled
    LB_IDLE_SECONDS: by then its start-up is long over (it gives back the code pages
    start-up used after 5 s) and only health checks run."""
    started = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container],
                             capture_output=True, text=True, check=True).stdout.strip()
    up = subprocess.run(["date", "-d", started, "+%s.%N"], capture_output=True, text=True,
                        check=True).stdout.strip()
    idle_until = float(up) + LB_IDLE_SECONDS
    while time.time() < idle_until:
        time.sleep(min(1.0, idle_until - time.time()))
    status = subprocess.run(["docker", "exec", container, "cat", "/proc/1/status"],
                            capture_output=True, text=True, check=True).stdout
    figures = {k: int(v.split()[0]) for k, v in
               (line.split(":", 1) for line in status.splitlines())
               if k in ("VmRSS", "RssAnon", "RssFile")}
    # What `docker stats` shows: the container's memory cgroup usage less its inactive
    # page cache. The binary's page-cache pages the nodes' components share count
    # towards whichever container read them first, not towards every one mapping them.
    usage = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}",
                            container], capture_output=True, text=True, check=True).stdout
    figures["docker_stats"] = parse_size_kib(usage.split("/")[0].strip())
    return figures


def parse_size_kib(text):
    """`6.637MiB` (docker's units) in KiB."""
    match = re.fullmatch(r"([\d.]+)\s*([KMG]i?B|B)", text)
    if not match:
        raise SystemExit(f"cannot read docker's memory figure {text!r}")
    scale = {"B": 1 / 1024, "KiB": 1, "KB": 1000 / 1024, "MiB": 1024, "MB": 1e6 / 1024,
             "GiB": 1024 ** 2, "GB": 1e9 / 1024}[match.group(2)]
    return float(match.group(1)) * scale


def svg_bars(title, bars, note):
    """A horizontal bar chart: [(label, seconds or None, target text)]."""
    width, row = 720, 34
    top = max((v for _, v, _ in bars if v is not None), default=1) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{80 + row * len(bars)}" font-family="sans-serif" font-size="13">',
        f'<text x="10" y="22" font-size="15">{title}</text>',
    ]
    for i, (label, value, target) in enumerate(bars):
        y = 40 + i * row
        parts.append(f'<text x="10" y="{y + 17}">{label}</text>')
        if value is None:
            parts.append(f'<text x="200" y="{y + 17}" fill="#888">skipped: {target}</text>')
            continue
        w = int((width - 360) * value / top)
        parts.append(f'<rect x="200" y="{y + 4}" width="{w}" height="18" fill="#3b7dd8"/>')
        parts.append(f'<text x="{205 + w}" y="{y + 17}">{value:.2f} s {target}</text>')
    parts.append(f'<text x="10" y="{60 + row * len(bars)}" fill="#555">{note}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rind", default=str(ROOT / "target" / "release" / "rind"))
    parser.add_argument("--image", help="node image (default: the one this rind builds)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "target" / "bench"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KUBECONFIG": str(Path(tempfile.mkdtemp()) / "config")}
    env.pop("RIND_CLUSTER_NAME", None)
    profile = "debug" if "/debug/" in str(Path(args.rind).resolve()) else "release"

    image = node_image(args, env)
    bare_run(image)  # the first run after a build pays for the image's layers once
    bare = [bare_run(image) for _ in range(max(args.runs, 3))]
    bare_median = statistics.median(bare)
    result = {
        "rind_build": profile,
        "node_image": image,
        "runs": args.runs,
        "bare_docker_run_seconds": bare_median,
        "samples": {"bare_docker_run": bare},
        "shapes": {},
    }
    print(f"rind build: {profile}; node image {image}")
    print(f"bare docker run of the node image: {bare_median:.2f} s (median of {len(bare)})")
    bars = [("docker run (bare)", bare_median, "")]
    for label, control_planes, workers in SHAPES:
        runs = []
        refused = None
        for _ in range(args.runs):
            one = create_to_ready(args, env, image, control_planes, workers)
            if "refused" in one:
                refused = one["refused"]
                break
            runs.append(one)
        if refused is not None:
            print(f"{label}: skipped, rind refuses the config: {refused}")
            result["shapes"][label] = {"skipped": refused}
            bars.append((label, None, refused[:70]))
            continue
        seconds = statistics.median(r["seconds"] for r in runs)
        entry = {
            "control_planes": control_planes,
            "workers": workers,
            "create_to_ready_seconds": seconds,
            "create_command_seconds": statistics.median(r["create_seconds"] for r in runs),
            "samples": runs,
        }
        if label in TARGET_SECONDS:
            entry["target_seconds"] = TARGET_SECONDS[label]
            verdict = "met" if seconds <= TARGET_SECONDS[label] else "MISSED"
            target = f"(target ≤ {TARGET_SECONDS[label]:.0f} s: {verdict})"
        else:
            ratio = seconds / bare_median
            entry["ratio_to_bare_run"] = ratio
            entry["target_ratio"] = TARGET_RATIO_1
            verdict = "met" if ratio <= TARGET_RATIO_1 else "MISSED"
            target = f"= {ratio:.1f}× bare (target ≤ {TARGET_RATIO_1:.0f}×: {verdict})"
        result["shapes"][label] = entry
        bars.append((label, seconds, target))
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in runs[len(runs) // 2]["steps"].items())
        print(f"{label}: create to Ready + DNS {seconds:.2f} s {target}")
        print(f"    create command {entry['create_command_seconds']:.2f} s; steps: {steps}")
        memories = [r["lb_memory_kib"] for r in runs if "lb_memory_kib" in r]
        if memories:
            container = statistics.median(m["docker_stats"] for m in memories) / 1024
            rss = statistics.median(m["VmRSS"] for m in memories) / 1024
            anon = statistics.median(m["RssAnon"] for m in memories) / 1024
            verdict = "met" if container <= TARGET_LB_MIB else "MISSED"
            entry["lb_idle_docker_stats_mib"] = container
            entry["lb_idle_rss_mib"] = rss
            entry["lb_idle_anon_mib"] = anon
            print(f"    load balancer after {LB_IDLE_SECONDS} s: {container:.1f} MiB as docker stats "
                  f"shows it (target ≤ {TARGET_LB_MIB:.0f} MB: {verdict}); VmRSS {rss:.1f} MiB, "
                  f"of which anonymous {anon:.1f} MiB and the rest pages of the rind binary")
    (out / "cluster.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    (out / "cluster.svg").write_text(svg_bars(
        f"rind create cluster → every node Ready and DNS answering ({profile} build, median of {args.runs})",
        bars,
        "images cached; DNS: kubernetes.default resolved through the kube-dns Service from a node",
    ))
    print(f"written to {out}/cluster.json, cluster.svg")


if __name__ == "__main__":
    main()
