#!/usr/bin/env python3
"""Benchmark: pods bound per second by rind's scheduler with 5,000 nodes and 10,000
pods (first create to last bound), against the raw API pod create rate measured in the
same run (the baseline: pods no scheduler picks up).

`rind node bench-scheduler` (hidden) runs etcd and the API server on loopback, and the
scheduler in the same process on a runtime of its own (on a node it is its own
process), and prints raw figures; this script writes scheduler.json and
scheduler.svg (bound pods over time) under --out and prints the summary.
Usage: e2e/bench/scheduler.py [--rind target/release/rind] [--nodes 5000] [--pods 10000]
                              [--out DIR]"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def svg_timeline(title, times, total, baseline_rate):
    """Bound pods over time, with the baseline create rate as a dashed reference."""
    width, height, left, bottom, top_pad = 720, 400, 70, 50, 40
    end = max(times) if times else 1.0
    plot_w, plot_h = width - left - 20, height - bottom - top_pad

    def x(t):
        return left + plot_w * t / end

    def y(n):
        return top_pad + plot_h * (1 - n / total)

    step = max(1, len(times) // 400)
    points = [(0.0, 0)] + [(t, i + 1) for i, t in enumerate(times)][::step] + [(times[-1], len(times))]
    path = " ".join(f"{x(t):.1f},{y(n):.1f}" for t, n in points)
    ref_end = min(end, total / baseline_rate) if baseline_rate > 0 else end
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<text x="10" y="22" font-size="15">{title}</text>',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}" stroke="black"/>',
        f'<text x="{left + plot_w / 2 - 40}" y="{height - 12}">seconds since first create</text>',
        f'<text x="8" y="{top_pad + 10}">{total}</text>',
        f'<text x="8" y="{top_pad + plot_h}">0</text>',
        f'<text x="{left + plot_w - 30}" y="{top_pad + plot_h + 16}">{end:.1f}</text>',
        f'<polyline fill="none" stroke="#3b7dd8" stroke-width="2" points="{path}"/>',
        f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(ref_end):.1f}" y2="{y(min(total, baseline_rate * ref_end)):.1f}" stroke="#999" stroke-dasharray="5,4"/>',
        f'<text x="{left + 10}" y="{top_pad + 16}" fill="#3b7dd8">pods bound</text>',
        f'<text x="{left + 10}" y="{top_pad + 32}" fill="#999">raw API create rate (baseline)</text>',
        "</svg>",
    ]
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rind", default=str(ROOT / "target" / "release" / "rind"))
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--baseline-pods", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "target" / "bench"))
    args = parser.parse_args()
    if shutil.which("etcd") is None:
        sys.exit("etcd is not installed (Debian: apt-get install etcd-server)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        [args.rind, "node", "bench-scheduler", "--nodes", str(args.nodes), "--pods", str(args.pods),
         "--baseline-pods", str(args.baseline_pods)],
        capture_output=True, text=True, timeout=1800,
    )
    if run.returncode != 0:
        sys.exit(f"bench-scheduler failed:\n{run.stderr[-4000:]}")
    raw = json.loads(run.stdout.strip().splitlines()[-1])
    times = sorted(raw.pop("bound_seconds"))
    raw["ratio_bound_to_baseline_create"] = raw["bound_per_second"] / raw["baseline_create_per_second"]
    # Bound pods per second in each whole second, to show the steady rate.
    per_second = [0] * (int(times[-1]) + 1)
    for t in times:
        per_second[int(t)] += 1
    raw["bound_per_each_second"] = per_second
    (out / "scheduler.json").write_text(json.dumps(raw, indent=2))
    (out / "scheduler.svg").write_text(
        svg_timeline(
            f"rind scheduler: {args.pods} pods on {args.nodes} nodes",
            times, args.pods, raw["baseline_create_per_second"],
        )
    )
    s = raw["scheduler"]
    print(f"{args.nodes} nodes, {args.pods} pods")
    print(f"raw API create rate (baseline, no scheduling): {raw['baseline_create_per_second']:.0f} pods/s")
    print(f"create rate while scheduling:                  {raw['create_per_second_while_scheduling']:.0f} pods/s")
    print(f"bound (first create -> last bound):            {raw['bound_per_second']:.0f} pods/s "
          f"in {raw['first_create_to_last_bound_seconds']:.1f} s")
    print(f"ratio bound / baseline create: {raw['ratio_bound_to_baseline_create']:.2f}")
    print(f"scheduler: {s['decide_micros_per_pod']:.0f} us deciding per pod "
          f"({s['nodes_filtered_per_pod']:.0f} nodes filtered), binding request "
          f"{s['bind_request_millis_mean']:.1f} ms mean, {s['waiting_for_bind_slots_seconds']:.1f} s "
          f"waiting for bind slots, {s['events_dropped']:.0f} events dropped")
    print(f"(written to {out}/scheduler.json, scheduler.svg)")


if __name__ == "__main__":
    main()
