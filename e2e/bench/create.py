#!/usr/bin/env python3
"""Benchmark: time from `rind create cluster` to the node being Ready (images cached),
against the floor of a bare `docker run` of the same node image, in the same run.

Prints the figures and writes create.json and create.svg next to the --out prefix.
Usage: e2e/bench/create.py [--rind target/release/rind] [--runs 3] [--out DIR]"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def timed(cmd, env=None):
    started = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=900)
    return time.monotonic() - started


def svg_bars(title, bars):
    """A small horizontal bar chart: [(label, seconds)]."""
    width, row = 640, 34
    top = max(v for _, v in bars) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{60 + row * len(bars)}" font-family="sans-serif" font-size="13">',
        f'<text x="10" y="22" font-size="15">{title}</text>',
    ]
    for i, (label, value) in enumerate(bars):
        y = 40 + i * row
        w = int((width - 260) * value / top)
        parts.append(f'<text x="10" y="{y + 17}">{label}</text>')
        parts.append(f'<rect x="200" y="{y + 4}" width="{w}" height="18" fill="#3b7dd8"/>')
        parts.append(f'<text x="{205 + w}" y="{y + 17}">{value:.2f} s</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rind", default=str(ROOT / "target" / "release" / "rind"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "target" / "bench"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KUBECONFIG": str(Path(tempfile.mkdtemp()) / "config")}

    # Make sure the node image exists, so creation times exclude image builds.
    image = subprocess.run(
        [args.rind, "build", "node-image"], check=True, capture_output=True, text=True, env=env
    ).stderr
    tag = next((line.split('"')[1] for line in image.splitlines() if line.startswith("Image ")), None)
    if tag is None:
        sys.exit(f"could not read the node image tag from: {image}")
    size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], check=True,
                              capture_output=True, text=True).stdout)

    bare = []
    for _ in range(args.runs):
        bare.append(timed(["docker", "run", "--rm", "--entrypoint", "/bin/true", tag]))

    creates = []
    for _ in range(args.runs):
        name = f"bench-{uuid.uuid4().hex[:6]}"
        try:
            creates.append(timed([args.rind, "create", "cluster", "--name", name, "--wait", "5m"], env=env))
        finally:
            subprocess.run([args.rind, "delete", "cluster", "--name", name], capture_output=True, env=env)

    result = {
        "node_image": tag,
        "node_image_bytes": size,
        "bare_docker_run_seconds": statistics.median(bare),
        "create_to_ready_seconds": statistics.median(creates),
        "runs": args.runs,
        "samples": {"bare_docker_run": bare, "create_to_ready": creates},
    }
    result["ratio"] = result["create_to_ready_seconds"] / result["bare_docker_run_seconds"]
    (out / "create.json").write_text(json.dumps(result, indent=2))
    (out / "create.svg").write_text(
        svg_bars(
            f"rind create cluster → node Ready (median of {args.runs})",
            [("docker run (bare)", result["bare_docker_run_seconds"]),
             ("create cluster → Ready", result["create_to_ready_seconds"])],
        )
    )
    print(f"node image {tag}: {size / 1e6:.0f} MB")
    print(f"bare docker run of the node image: {result['bare_docker_run_seconds']:.2f} s (median)")
    print(f"create cluster to node Ready:      {result['create_to_ready_seconds']:.2f} s (median)")
    print(f"ratio: {result['ratio']:.1f}x   (written to {out}/create.json, create.svg)")


if __name__ == "__main__":
    main()
