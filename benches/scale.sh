#!/usr/bin/env bash
# Issue 12's throughput figures: aggregate SET/GET of 1-, 3- and 5-node
# clusters, and what a rebalance costs foreground latency.
#
#   benches/scale.sh [--requests 200000] [--keys 500000] [--value 200]
#                    [--chunk 20000] [--throttle 0] [--only scale|rebalance]
#   (needs target/release/cairn, or CAIRN=path; redis-benchmark 7)
#
# 1. scale: for N in 1 3 5, `cairn dev --nodes N --replication-factor 3`
#    (durable, 64 groups); once every node has a leader for every group,
#    `redis-benchmark --cluster -c 50 -P 16 -r 100000 -t set,get`
#    (a cluster-aware client: each command to its group's leader; with
#    one node, without --cluster, which redis-benchmark refuses there).
# 2. rebalance: 5 nodes, KEYS keys of VALUE bytes loaded; then chunks of
#    `redis-benchmark --cluster -c 20 -P 1 -r KEYS -t set,get -n CHUNK
#    --csv` (one request at a time per client, so latency is per request):
#    3 chunks before, then `CLUSTER WEIGHT 5 0` (drain node 5: its ~38 of
#    192 replicas move elsewhere) and chunks until `cairn cluster
#    rebalance` says settled; prints each chunk's p50/p99 and the worst
#    p99 during against the median before, and how long the drain took.
#
# The load generator shares the machine's cores with every node: on a
# 2-core box more nodes means less CPU each, so the aggregate figures say
# what replication and proxying cost here, not how cairn scales on
# machines of their own.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN=${CAIRN:-"$ROOT/target/release/cairn"}
REQUESTS=200000
KEYS=500000
VALUE=200
CHUNK=20000
THROTTLE=0
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --requests) REQUESTS=$2; shift 2 ;;
        --keys) KEYS=$2; shift 2 ;;
        --value) VALUE=$2; shift 2 ;;
        --chunk) CHUNK=$2; shift 2 ;;
        --throttle) THROTTLE=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) sed -n 2,24p "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x "$CAIRN" ] || { echo "no cairn binary at $CAIRN (cargo build --release)" >&2; exit 1; }
command -v redis-benchmark >/dev/null || { echo "redis-benchmark missing (apt-get install redis-tools)" >&2; exit 1; }
work=$(mktemp -d)
pid=""
stop_dev() {
    if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    pid=""
}
cleanup() { stop_dev; rm -rf "$work"; }
trap cleanup EXIT

# free_port N: a base port P with P..P+N-1 and their peer ports (+10000)
# all free right now.
free_port() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(20000, 50000)
    socks = []
    try:
        for p in [base + i for i in range(n)] + [base + 10000 + i for i in range(n)]:
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
PY
}

# start_dev N: a fresh durable cluster of N nodes; sets $port.
start_dev() {
    port=$(free_port "$1")
    rm -rf "$work/dev"
    "$CAIRN" dev --nodes "$1" --replication-factor 3 --port "$port" --dir "$work/dev" \
        >"$work/dev.log" 2>&1 &
    pid=$!
    for i in $(seq 0 $(($1 - 1))); do
        for _ in $(seq 600); do
            if redis-cli -p $((port + i)) CLUSTER INFO 2>/dev/null | grep -q cluster_state:ok; then break; fi
            kill -0 "$pid" 2>/dev/null || { cat "$work/dev.log" >&2; exit 1; }
            sleep 0.2
        done
    done
    # Placement settled (groups shrunk to 3 replicas) and leaders placed.
    "$CAIRN" cluster status -p "$port" --watch --timeout 120 >/dev/null
    sleep 8
}

rps() { # the requests/s of one `-t X -q` run (progress lines end in \r)
    tr '\r' '\n' | awk -F'[:,]' '/requests per second/ {gsub(/ requests per second/, "", $2); gsub(/ /, "", $2); print $2; exit}'
}

if [ "$ONLY" != rebalance ]; then
    echo "== aggregate throughput, redis-benchmark --cluster -c 50 -P 16 -r 100000 -n $REQUESTS (durable, 64 groups, rf 3)"
    printf "%-6s %12s %12s\n" nodes SET/s GET/s
    for n in 1 3 5; do
        start_dev "$n"
        # redis-benchmark refuses --cluster with one node (which serves
        # every slot anyway).
        cl=--cluster
        [ "$n" = 1 ] && cl=""
        set_rps=$(redis-benchmark $cl -p "$port" -c 50 -P 16 -r 100000 -n "$REQUESTS" -t set -q 2>&1 | rps)
        get_rps=$(redis-benchmark $cl -p "$port" -c 50 -P 16 -r 100000 -n "$REQUESTS" -t get -q 2>&1 | rps)
        printf "%-6s %12s %12s\n" "$n" "$set_rps" "$get_rps"
        stop_dev
    done
fi

[ "$ONLY" = scale ] && exit 0

echo "== rebalance cost: 5 nodes, $KEYS keys x $VALUE B, drain node 5 (throttle: $THROTTLE)"
start_dev 5
redis-benchmark --cluster -p "$port" -c 50 -P 16 -r "$KEYS" -n "$KEYS" -d "$VALUE" -t set -q >/dev/null 2>&1
echo "loaded; DBSIZE over all nodes: $(for i in 0 1 2 3 4; do redis-cli -p $((port + i)) DBSIZE; done | paste -sd+ | bc)"
if [ "$THROTTLE" != 0 ]; then "$CAIRN" cluster rebalance -p "$port" --throttle "$THROTTLE" >/dev/null; fi
# chunk LABEL: one chunk of SET+GET; prints "LABEL test rps p50 p99".
chunk() {
    redis-benchmark --cluster -p "$port" -c 20 -P 1 -r "$KEYS" -d "$VALUE" -n "$CHUNK" -t set,get --csv 2>/dev/null |
        awk -F',' -v l="$1" '{ gsub(/"/, "") } $1 == "SET" || $1 == "GET" { print l, $1, $2, $5, $7 }'
}
printf "%-8s %-4s %10s %8s %8s\n" phase test rps p50_ms p99_ms
for i in 1 2 3; do chunk before; done | tee "$work/before" | awk '{printf "%-8s %-4s %10s %8s %8s\n", $1, $2, $3, $4, $5}'
t0=$(date +%s.%N)
redis-cli -p "$port" CLUSTER WEIGHT 5 0 >/dev/null
settled_at=""
: >"$work/during"
for i in $(seq 60); do
    chunk during | tee -a "$work/during" | awk '{printf "%-8s %-4s %10s %8s %8s\n", $1, $2, $3, $4, $5}'
    if "$CAIRN" cluster rebalance -p "$port" | grep -q "settled: nothing left"; then
        settled_at=$(date +%s.%N)
        break
    fi
done
"$CAIRN" cluster rebalance -p "$port"
[ -n "$settled_at" ] || { echo "the drain did not settle within 60 chunks" >&2; exit 1; }
echo "drain took $(echo "$settled_at - $t0" | bc) s (to the first settled status after a chunk)"
for t in SET GET; do
    before=$(awk -v t=$t '$2 == t {print $5}' "$work/before" | sort -n | sed -n 2p)
    worst=$(awk -v t=$t '$2 == t {print $5}' "$work/during" | sort -n | tail -1)
    echo "$t p99: median before $before ms, worst chunk during $worst ms, ratio $(echo "scale=2; $worst / $before" | bc)"
done
