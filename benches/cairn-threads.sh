#!/usr/bin/env bash
# Durable SET throughput of a 3-node `cairn dev` cluster for several thread
# settings, one after the other in the same run (compare ratios only):
#
#   benches/cairn-threads.sh [--cairn-bin PATH] [--clients N] [--duration SECS]
#                            [--groups N] RESP:RAFT...
#
# RESP:RAFT = `--threads RESP --raft-threads RAFT` per node (0 = the server's
# default), e.g. `benches/cairn-threads.sh 1:2 1:4 2:8`. Load: benches/etcd-load
# (build it with benches/vs-etcd.sh first), cluster-aware, 10,000 keys, 64-byte
# values, 2 s warm-up. Prints one etcd-load line per setting. 127.0.0.1 only;
# RESP ports 7001-7003 and peer ports 17001-17003 must be free.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN="$ROOT/target/release/cairn"
LOAD="$ROOT/benches/etcd-load/target/release/etcd-load"
CLIENTS=64
DURATION=8
GROUPS_N=64
CONFIGS=()
while (($#)); do
    case "$1" in
    --cairn-bin) CAIRN=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --groups) GROUPS_N=$2; shift ;;
    [0-9]*:[0-9]*) CONFIGS+=("$1") ;;
    *)
        sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
    esac
    shift
done
((${#CONFIGS[@]})) || CONFIGS=(1:0)
[[ -x "$CAIRN" && -x "$LOAD" ]] || {
    echo "missing $CAIRN or $LOAD" >&2
    exit 1
}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cairn-threads.XXXXXX")
DEV=""
cleanup() {
    [[ -n "$DEV" ]] && { kill -TERM "$DEV" 2>/dev/null || true; wait "$DEV" 2>/dev/null || true; }
    rm -rf "$TMP"
}
trap cleanup EXIT
echo "# $(nproc) CPUs; $CLIENTS clients; ${DURATION}s measured; $GROUPS_N groups; durable"
for cfg in "${CONFIGS[@]}"; do
    resp=${cfg%%:*} raft=${cfg##*:}
    mkdir -p "$TMP/d"
    "$CAIRN" dev --nodes 3 --port 7001 --dir "$TMP/d" --durability durable --groups "$GROUPS_N" \
        --threads "$resp" --raft-threads "$raft" >"$TMP/dev.log" 2>&1 &
    DEV=$!
    ready=0
    for ((i = 0; i < 300; i++)); do
        ok=0
        for p in 7001 7002 7003; do
            [[ "$(timeout 3 redis-cli -p $p SET cairn-threads-ready v 2>/dev/null)" == OK ]] && ok=$((ok + 1))
        done
        ((ok == 3)) && { ready=1; break; }
        sleep 0.2
    done
    ((ready)) || { echo "cluster not ready for $cfg" >&2; cat "$TMP/dev.log" >&2; exit 1; }
    sleep 1
    pids=$(pgrep -P "$DEV" | paste -sd,)
    out=$(timeout $((DURATION + 120)) "$LOAD" --target resp --cluster \
        --endpoints 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --op put --clients "$CLIENTS" \
        --duration "${DURATION}s" --warmup 2s --keys 10000 --value-size 64 --cpu-pids "$pids" 2>/dev/null)
    echo "threads=$resp raft_threads=$raft $out"
    kill -TERM "$DEV"
    wait "$DEV" || true
    DEV=""
    rm -rf "$TMP/d"
done
