#!/usr/bin/env bash
# Two cairn builds side by side on the hash and set tests of types.sh
# (issue 13): where a change's effect is smaller than redis-benchmark's
# run-to-run scatter on a shared machine.
#
#   benches/types-ab.sh A B [ROUNDS]   (two cairn binaries; default 5)
#
# TESTS picks the tests (default: the large and small hash and set
# writes and reads, as types.sh names them). Each round runs a test on A
# then on B (flushed, filled first where types.sh fills); per test, the
# median requests/s of each, A/B, and the median server CPU time (every
# thread's, from /proc/PID/task/*/schedstat) in ms per 100,000 requests,
# which a busy machine disturbs much less than throughput.
set -euo pipefail
A=$1
B=$2
ROUNDS=${3:-5}
TESTS=${TESTS:-"hset hget sadd sismember hset_small hget_small sadd_small sismember_small"}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pa=$(free_port)
pb=$(free_port)
"$A" server --port "$pa" --threads 1 >"$work/a.log" 2>&1 &
ia=$!
pids+=("$ia")
"$B" server --port "$pb" --threads 1 >"$work/b.log" 2>&1 &
ib=$!
pids+=("$ib")
for p in "$pa" "$pb"; do
    for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
# shellcheck source=benches/types-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/types-lib.sh"
cpu_ms() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%d", s / 1000000}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-16s %10s %10s %6s %12s %12s\n' test A_rps B_rps A/B A_cpu_ms B_cpu_ms
for t in $TESTS; do
    ar=()
    br=()
    ac=()
    bc=()
    for _ in $(seq "$ROUNDS"); do
        for side in a b; do
            if [ "$side" = a ]; then p=$pa pid=$ia; else p=$pb pid=$ib; fi
            redis-cli -p "$p" flushall >/dev/null
            read -r pt pn pr _ <<<"$(prep "$t") x x x"
            if [ "$pt" != x ]; then
                # shellcheck disable=SC2046 # what's words are the arguments
                redis-benchmark -p "$p" -c 50 -P 16 -n "$pn" -r "$pr" $(what "$pt") >/dev/null 2>&1
            fi
            c0=$(cpu_ms "$pid")
            # shellcheck disable=SC2046
            v=$(redis-benchmark -p "$p" -c 50 -P 16 -n 300000 -r "$(range "$t")" --csv $(what "$t") 2>/dev/null |
                awk -F, 'NR==2 {gsub(/"/,"",$2); print $2}')
            c1=$(cpu_ms "$pid")
            ms=$(((c1 - c0) / 3))
            if [ "$side" = a ]; then ar+=("$v") ac+=("$ms"); else br+=("$v") bc+=("$ms"); fi
        done
    done
    a=$(printf '%s\n' "${ar[@]}" | median)
    b=$(printf '%s\n' "${br[@]}" | median)
    printf '%-16s %10.0f %10.0f %6.2f %12s %12s\n' "$t" "$a" "$b" "$(echo "$a / $b" | bc -l)" \
        "$(printf '%s\n' "${ac[@]}" | median)" "$(printf '%s\n' "${bc[@]}" | median)"
done
