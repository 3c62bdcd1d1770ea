#!/usr/bin/env python3
"""Checks the workspace's layers from `cargo metadata`: every dependency between rind's
own crates must point down a layer (README "Layout"), in-node components never depend
on each other (they share `rind-runtime` instead), and the test support is only ever a
dev-dependency. Prints the graph and exits non-zero on the first wrong arrow."""

import json
import subprocess
import sys

# Layer of each crate: a crate may depend (normally) only on crates of a lower layer.
LAYERS = {
    "rind-api": 0,
    "rind-store": 0,
    "rind-runtime": 0,
    "rind-apiserver": 1,
    "rind-controllers": 1,
    "rind-scheduler": 1,
    "rind-kubelet": 1,
    "rind-net": 1,
    "rind-proxy": 1,
    "rind-node": 1,
    "rind-cluster": 2,
    "rind-bench": 3,
    "rind": 4,
}
# The test support: the API server on loopback and the system suites built on it.
TESTING = "rind-testing"
# What the test support itself may use outside its own tests.
TESTING_USES = {"rind-api", "rind-store", "rind-runtime", "rind-apiserver"}


def problems(graph):
    found = []
    for crate, deps in sorted(graph.items()):
        for dep, kind in sorted(deps):
            if dep == TESTING:
                if kind != "dev":
                    found.append(f"{crate} -> {dep}: test support only as a dev-dependency")
                continue
            if crate == TESTING:
                if kind != "dev" and dep not in TESTING_USES:
                    found.append(f"{crate} -> {dep}: test support may build only on {sorted(TESTING_USES)}")
                continue
            if kind == "dev":
                # A crate's own tests may use what it may use, plus the test support.
                if LAYERS[dep] >= LAYERS[crate]:
                    found.append(f"{crate} -> {dep} (dev): tests reach a sibling or a layer above")
                continue
            if LAYERS[dep] >= LAYERS[crate]:
                found.append(f"{crate} -> {dep}: layer {LAYERS[crate]} depends on layer {LAYERS[dep]}")
    return found


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    ours = {p["name"] for p in meta["packages"]}
    missing = ours - set(LAYERS) - {TESTING}
    if missing:
        print(f"crates without a layer in e2e/check_layers.py: {sorted(missing)}")
        return 1
    graph = {}
    for package in meta["packages"]:
        graph[package["name"]] = {
            (d["name"], d["kind"] or "normal")
            for d in package["dependencies"]
            if d["name"] in ours
        }
    for crate in sorted(graph, key=lambda c: (LAYERS.get(c, 9), c)):
        deps = ", ".join(f"{d}{' (dev)' if k == 'dev' else ''}" for d, k in sorted(graph[crate]))
        print(f"  {crate} [layer {LAYERS.get(crate, 'test')}] -> {deps or '-'}")
    found = problems(graph)
    for problem in found:
        print(f"WRONG ARROW: {problem}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
