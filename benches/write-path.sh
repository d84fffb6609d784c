#!/usr/bin/env bash
# The write path, side by side in one run: one cairn node (standalone) vs
# one node of a local 3-node cluster (`cairn dev`, default settings: 64
# groups, durable unless --volatile), through a plain client.
#
#   benches/write-path.sh [--requests N] [--no-build] [--idle SECONDS]
#                         [--dev-args "ARGS"] [--durabilities durable,volatile]
#
# For each of -P16 and -P1 (redis-benchmark -c 50 -r 100000 -t set,get):
# requests/s of the single node (measured again right before each
# cluster) and of the cluster, their ratio, and the
# cluster's CPU time per request (all three node processes, from
# /proc/PID/stat) — for durable and volatile clusters. Then the idle CPU of
# a durable cluster with no load (% of one core per node). Everything talks
# to 127.0.0.1 only; every process started here is killed on exit.
# See docs/BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN=${CAIRN:-"$ROOT/target/release/cairn"}
N=1000000
BUILD=1
IDLE=10
DEV_ARGS=""
DURABILITIES="durable volatile"
while (($#)); do
    case "$1" in
    --requests) N="${2:?}"; shift ;;
    --no-build) BUILD=0 ;;
    --idle) IDLE="${2:?}"; shift ;;
    --dev-args) DEV_ARGS="${2?}"; shift ;;
    --durabilities) DURABILITIES="${2//,/ }"; shift ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
command -v redis-benchmark >/dev/null || { echo "needs redis-benchmark (redis-tools)" >&2; exit 1; }
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p cairn-cli --manifest-path "$ROOT/Cargo.toml"
fi

PIDS=()
WORK=$(mktemp -d)
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    pkill -f "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ping() {
    for _ in $(seq 1 200); do
        redis-cli -p "$1" PING 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    echo "no PONG from port $1" >&2; return 1
}
wait_cluster() {
    for _ in $(seq 1 300); do
        redis-cli -p "$1" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok' && return 0
        sleep 0.1
    done
    echo "cluster on port $1 never became ok" >&2; return 1
}
# Waits (at most 20 s) until each of the 3 nodes leads about a third of
# the groups: a start can race elections, and the automatic rebalancer
# then moves leaders for a few seconds (measured: not what is measured).
wait_balanced() {
    local n p led ok
    for _ in $(seq 1 200); do
        ok=1
        for p in "$1" $(($1 + 1)) $(($1 + 2)); do
            led=$(redis-cli -p "$p" CLUSTER INFO 2>/dev/null | tr -d '\r' | awk -F: '$1=="cairn_groups_led_here" {print $2}')
            n=$(redis-cli -p "$p" CLUSTER INFO 2>/dev/null | tr -d '\r' | awk -F: '$1=="cairn_groups" {print $2}')
            if [ -z "$led" ] || [ -z "$n" ] || [ $((led * 3 + 3)) -lt "$n" ]; then ok=0; fi
        done
        [ "$ok" = 1 ] && { sleep 1; return 0; }
        sleep 0.1
    done
    echo "leaders still unbalanced after 20 s; measuring anyway" >&2
}
# CPU seconds (user+system) of the given pids.
cpu_of() {
    local t=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$(awk -v t="$t" '{ print t + $14 + $15 }' "/proc/$p/stat")
    done
    echo "scale=3; $t / $(getconf CLK_TCK)" | bc
}
rps() { # port pipeline test [requests] -> requests/s
    redis-benchmark -p "$1" -c 50 -P "$2" -r 100000 -n "${4:-$N}" -t "$3" --csv -q 2>/dev/null |
        awk -F, -v t="\"$(echo "$3" | tr a-z A-Z)\"" '$1==t {gsub(/"/,"",$2); print $2}'
}

# The single node.
SP=$(free_port)
"$CAIRN" server --port "$SP" --dir "$WORK/single" >"$WORK/single.log" 2>&1 &
PIDS+=($!)
wait_ping "$SP"

declare -A SINGLE
# Measured again right before each cluster: this kind of machine gives
# the single node rates 20% apart from one minute to the next, and the
# ratio should compare the two under the same conditions.
measure_single() {
    for P in 16 1; do
        for T in set get; do
            # 5x the requests: at over a million per second, N alone would
            # be over in a fraction of a second and mostly noise.
            SINGLE[$P$T]=$(rps "$SP" $P $T $((N * 5)))
        done
    done
}

run_cluster() { # durability
    local d=$1 base
    measure_single
    base=$(( ($(free_port) % 20000) + 20000 ))
    # shellcheck disable=SC2086
    "$CAIRN" dev --nodes 3 --port "$base" --durability "$d" --dir "$WORK/dev-$d" $DEV_ARGS >"$WORK/dev-$d.log" 2>&1 &
    local dev=$!
    PIDS+=($dev)
    wait_cluster "$base"
    wait_cluster $((base + 1))
    wait_cluster $((base + 2))
    wait_balanced "$base"
    local nodes
    nodes=$(pgrep -f "$WORK/dev-$d/node" | tr '\n' ' ')
    echo "== cluster $d (node pids: $nodes; load through port $base)"
    printf '%-8s %-4s %12s %12s %8s %16s\n' pipeline test single/s cluster/s ratio 'cpu_us/request'
    for P in 16 1; do
        for T in set get; do
            local c0 c1 r
            # shellcheck disable=SC2086
            c0=$(cpu_of $nodes)
            r=$(rps "$base" $P $T)
            # shellcheck disable=SC2086
            c1=$(cpu_of $nodes)
            printf '%-8s %-4s %12s %12s %8s %16s\n' "-P$P" "$T" "${SINGLE[$P$T]}" "$r" \
                "$(echo "scale=3; $r / ${SINGLE[$P$T]}" | bc)" \
                "$(echo "scale=1; ($c1 - $c0) * 1000000 / $N" | bc)"
        done
    done
    if [ "$d" = durable ] && [ "$IDLE" -gt 0 ]; then
        sleep 2
        local i0 i1
        # shellcheck disable=SC2086
        i0=$(cpu_of $nodes)
        sleep "$IDLE"
        # shellcheck disable=SC2086
        i1=$(cpu_of $nodes)
        echo "idle: $(echo "scale=2; ($i1 - $i0) * 100 / $IDLE / 3" | bc)% of one core per node (${IDLE}s, no load)"
    fi
    kill "$dev" 2>/dev/null || true
    wait "$dev" 2>/dev/null || true
}

echo "single node: $(redis-cli -p "$SP" INFO server | grep -E '^(redis_version|cairn_version)' | tr -d '\r' | tr '\n' ' ')"
echo "requests per test: $N (single node: $((N * 5))), redis-benchmark -c 50 -r 100000; nproc $(nproc)"
echo "cairn dev extra arguments: ${DEV_ARGS:-none}"
for d in $DURABILITIES; do
    run_cluster "$d"
done
