#!/usr/bin/env bash
# Runs cairn's whole test suite on a fresh Debian machine, installing what
# it needs first. CI (.ci/run) calls exactly this.
#
#   scripts/test.sh            # everything CI runs (about 20 minutes on 2 cores)
#   FUZZ_SECONDS=600 scripts/test.sh   # longer fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's header says how long the run has taken so far (CI has 30
# minutes on 2 cores; this shows where they go).
step() { printf '\n=== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

need_apt=()
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# raft-rs' protobuf messages are generated at build time (prost-build runs protoc).
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# The binary's allocator, jemalloc, is C built by its crate's build script.
command -v make >/dev/null 2>&1 || need_apt+=(make)
# The fault lab (crates/cairn-lab) builds network namespaces and cuts links.
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# Latency faults: iptables' NFQUEUE target (nft's queue expression is not
# built into these kernels) feeding the lab's own delayer.
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
# Clock and disk faults: libfaketime (wall-clock jumps) and libfiu (failing
# fsync); time namespaces and private tmpfs mounts come with util-linux.
command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)
command -v fiu-run >/dev/null 2>&1 || need_apt+=(fiu-utils)
# A cairn-lab unit test makes a process whose main thread exits first (ctypes).
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# openssl: the TLS tests check `cairn cert dev` files and a TLS 1.2 client.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# redis-py for the TLS test (run with Debian's /usr/bin/python3).
/usr/bin/python3 -c "import redis" >/dev/null 2>&1 || need_apt+=(python3-redis)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust 1.85 or newer (https://rustup.rs) and re-run" >&2
  exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
# --all-features: also the deterministic simulation (cairn-cluster's `sim`).
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# As root the fault-lab tests must really run; elsewhere they skip and say why.
if [ "$(id -u)" -eq 0 ]; then export CAIRN_LAB_REQUIRED=1; fi

step "release build of cairn (the cluster and fault-lab tests run real processes of it)"
cargo build --release --locked -p cairn-cli
export CAIRN_BIN="$PWD/target/release/cairn"

# The deterministic simulation of the Raft engine (cairn-cluster's
# tests/sim.rs, feature `sim`: fixed seeds plus one random seed per run;
# CAIRN_SIM_SEED=N replays one) runs inside this step: building the whole
# workspace with the feature once costs less than a second build.
step "cargo test (unit, property, integration with real clients and clusters, fault lab, Raft simulation)"
cargo test --workspace --locked --features cairn-cluster/sim 2>&1 | tee -a "$log"

step "redis-cli and redis-benchmark against a real cairn process"
bash tests/redis-cli.sh 2>&1 | tee -a "$log"

if [ -f scripts/fuzz.sh ]; then
  step "fuzzing every decoder of untrusted bytes (RESP, peer frames and bodies, log records, snapshots) for ${FUZZ_SECONDS:-30}s"
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi

passed=$(grep -Eo '(ok\. |redis-cli: )[0-9]+ passed' "$log" | grep -Eo '[0-9]+' | awk '{s += $1} END {print s + 0}')
step "all tests passed"
echo "summary: ${passed} passed, 0 failed"
