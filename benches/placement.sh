#!/usr/bin/env bash
# Placement balance on a running cluster (issue 12's "Balance" figures).
#
#   benches/placement.sh [NODES] [NGROUPS]     (default 5 nodes, 64 groups;
#                                              needs target/release/cairn)
#
# Starts `cairn dev --nodes NODES --groups NGROUPS --replication-factor 3`
# on 127.0.0.1, waits until every node shows the same CLUSTER SLOTS with
# three replicas per range and the leaders have stopped moving, and
# prints replicas and leaders per node with max/mean. Then gives the last
# two nodes weight 2 (CLUSTER WEIGHT) and prints each node's share of
# replicas and leaders against its share of the total weight. Everything
# started here is stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN=${CAIRN:-"$ROOT/target/release/cairn"}
NODES=${1:-5}
NGROUPS=${2:-64}
work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Keep clear of the peer ports (+10000) and of 65535.
if [ "$port" -gt 50000 ]; then port=$((port - 20000)); fi
"$CAIRN" dev --nodes "$NODES" --groups "$NGROUPS" --replication-factor 3 \
    --port "$port" --dir "$work/dev" >"$work/dev.log" 2>&1 &
pid=$!
sleep 3
if ! kill -0 "$pid" 2>/dev/null; then cat "$work/dev.log" >&2; echo "cairn dev did not start" >&2; exit 1; fi

# state PORT: one line per slot range, "leader-port port port".
state() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n")
f = s.makefile("rb")
def read():
    line = f.readline().rstrip(b"\r\n")
    t, rest = line[:1], line[1:]
    if t == b"*":
        return [read() for _ in range(int(rest))]
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:n]
        return data
    if t == b"-":
        raise SystemExit(rest.decode())
    return rest
for r in read():
    print(" ".join(str(n[1]) for n in r[2:]))
PY
}

settled() { # waits until NODES nodes agree, 3 replicas a range, leaders unchanged for 8 s (past the rebalancer's 5 s settle period)
    local last="" same=0
    for _ in $(seq 600); do
        local cur ok=1
        cur=$(state "$port" 2>/dev/null || true)
        for i in $(seq 1 $((NODES - 1))); do
            [ "$(state $((port + i)) 2>/dev/null || true)" = "$cur" ] || ok=0
        done
        if [ "$ok" = 1 ] && [ "$(echo "$cur" | wc -l)" = "$NGROUPS" ] &&
            ! echo "$cur" | awk 'NF != 3 {bad=1} END {exit !bad}'; then
            if [ "$cur" = "$last" ]; then same=$((same + 1)); else same=0; fi
            last=$cur
            [ "$same" -ge 16 ] && { echo "$cur"; return 0; }
        fi
        sleep 0.5
    done
    echo "never settled" >&2
    return 1
}

report() { # stdin: the slot map; $1: weights "port:w ..." (empty = equal)
    python3 -c '
import sys
weights = dict((int(p), int(w)) for p, w in (x.split(":") for x in sys.argv[1].split())) if sys.argv[1] else {}
rows = [list(map(int, l.split())) for l in sys.stdin if l.strip()]
nodes = sorted({p for r in rows for p in r})
rep = {n: sum(n in r for r in rows) for n in nodes}
lead = {n: sum(r[0] == n for r in rows) for n in nodes}
tw = sum(weights.get(n, 1) for n in nodes)
mr, ml = sum(rep.values()) / len(nodes), sum(lead.values()) / len(nodes)
print("%-8s %6s %8s %8s %10s %10s" % ("node", "weight", "replicas", "leaders", "rep share", "weight share"))
for n in nodes:
    w = weights.get(n, 1)
    print("%-8d %6d %8d %8d %9.1f%% %9.1f%%" % (n, w, rep[n], lead[n], 100 * rep[n] / sum(rep.values()), 100 * w / tw))
print("max/mean replicas %.3f, max/mean leaders %.3f" % (max(rep.values()) / mr, max(lead.values()) / ml))
if weights:
    worst = max(abs(rep[n] / sum(rep.values()) / (weights.get(n, 1) / tw) - 1) for n in nodes)
    worst_l = max(abs(lead[n] / sum(lead.values()) / (weights.get(n, 1) / tw) - 1) for n in nodes)
    print("largest relative deviation from the weight share: replicas %.1f%%, leaders %.1f%%" % (100 * worst, 100 * worst_l))
' "$1"
}

echo "== $NODES nodes, $NGROUPS groups x 3 replicas, equal weights"
map=$(settled)
echo "$map" | report ""
echo
w1=$((port + NODES - 2)); w2=$((port + NODES - 1))
for id in $((NODES - 1)) "$NODES"; do
    redis-cli -p "$port" CLUSTER WEIGHT "$id" 2 >/dev/null
done
echo "== nodes $((NODES - 1)) and $NODES at weight 2 (CLUSTER WEIGHT)"
map=$(settled)
echo "$map" | report "$w1:2 $w2:2"
