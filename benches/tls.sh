#!/usr/bin/env bash
# TLS side by side: cairn and redis-server, each with a plain and a TLS port
# (client certificates required on both), redis-benchmark -c 50 -r 100000
# SET and GET at -P 16 and -P 1, plain and --tls, REPS rounds alternating
# the servers. Prints requests/s, the cairn/redis ratio and each server's
# CPU time per request (user+system from /proc/PID/stat).
#
# Then the cluster write path: two local 3-node clusters (`cairn dev`, 64
# durable groups) at once, one plain (peers authenticated by the cluster
# secret) and one with `--tls` (mutual TLS between the nodes, the client
# on a TLS port), loaded through node 1 alternately: requests/s, TLS/plain
# and the CPU time per request of all three nodes together.
# 127.0.0.1 only; every process started here is killed on exit.
#
#   benches/tls.sh [REPS] [--no-cluster]   (default 3; needs target/release/cairn)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN="$ROOT/target/release/cairn"
REPS=3
CLUSTER=1
for a in "$@"; do
    case "$a" in
    --no-cluster) CLUSTER=0 ;;
    *[!0-9]* | "") echo "unknown argument $a" >&2; exit 2 ;;
    *) REPS=$a ;;
    esac
done
N=200000
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    pkill -f "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$CAIRN" cert dev --dir "$work/certs" >/dev/null
C="$work/certs"
cp=$(free_port); ct=$(free_port); rp=$(free_port); rt=$(free_port)
"$CAIRN" server --port "$cp" --threads 1 --tls-port "$ct" --tls-cert-file "$C/node.crt" \
    --tls-key-file "$C/node.key" --tls-ca-cert-file "$C/ca.crt" >"$work/cairn.log" 2>&1 &
cpid=$!
pids+=($cpid)
redis-server --port "$rp" --tls-port "$rt" --tls-cert-file "$C/node.crt" --tls-key-file "$C/node.key" \
    --tls-ca-cert-file "$C/ca.crt" --save "" --appendonly no >"$work/redis.log" 2>&1 &
rpid=$!
pids+=($rpid)
for p in "$cp" "$rp"; do
    for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

# CPU seconds (user+system) of the given pids.
cpu_of() {
    local t=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$(awk -v t="$t" '{ print t + $14 + $15 }' "/proc/$p/stat")
    done
    echo "scale=3; $t / $(getconf CLK_TCK)" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# port tls(0/1) test pipeline certdir pids... -> "rps cpu_us_per_request"
bench() {
    local port=$1 tl=$2 t=$3 P=$4 certs=$5
    shift 5
    local tls=() c0 c1 r
    [ "$tl" = 1 ] && tls=(--tls --cacert "$certs/ca.crt" --cert "$certs/client.crt" --key "$certs/client.key")
    c0=$(cpu_of "$@")
    r=$(redis-benchmark -p "$port" "${tls[@]}" -c 50 -r 100000 -n "$N" -P "$P" -t "$t" --csv 2>/dev/null |
        awk -F, 'NR==2 {gsub(/"/,"",$2); print $2}')
    c1=$(cpu_of "$@")
    echo "$r $(echo "scale=2; ($c1 - $c0) * 1000000 / $N" | bc)"
}

echo "== single node: cairn --threads 1 vs redis-server $(redis-server --version | awk '{print $3}'), $N requests, -c 50 -r 100000, median of $REPS"
printf '%-4s %-4s %-5s %12s %12s %8s %14s %14s\n' test P mode cairn redis ratio cairn_cpu_us redis_cpu_us
for P in 16 1; do
    for t in set get; do
        for mode in plain tls; do
            tl=0; [ "$mode" = tls ] && tl=1
            cs=(); rs=(); cc=(); rc=()
            for _ in $(seq "$REPS"); do
                if [ "$tl" = 1 ]; then cport=$ct; rport=$rt; else cport=$cp; rport=$rp; fi
                read -r x y <<<"$(bench "$cport" "$tl" "$t" "$P" "$C" "$cpid")"; cs+=("$x"); cc+=("$y")
                read -r x y <<<"$(bench "$rport" "$tl" "$t" "$P" "$C" "$rpid")"; rs+=("$x"); rc+=("$y")
            done
            c=$(printf '%s\n' "${cs[@]}" | median)
            r=$(printf '%s\n' "${rs[@]}" | median)
            printf '%-4s %-4s %-5s %12.0f %12.0f %8.2f %14s %14s\n' "$t" "$P" "$mode" "$c" "$r" \
                "$(echo "$c / $r" | bc -l)" "$(printf '%s\n' "${cc[@]}" | median)" "$(printf '%s\n' "${rc[@]}" | median)"
        done
    done
done
kill "$cpid" "$rpid" 2>/dev/null || true

[ "$CLUSTER" = 1 ] || exit 0
wait_cluster() {
    for _ in $(seq 1 300); do
        redis-cli -p "$1" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok' && return 0
        sleep 0.1
    done
    echo "cluster on port $1 never became ok" >&2; return 1
}
start_dev() { # name base [--tls]
    local name=$1 base=$2
    shift 2
    "$CAIRN" dev --nodes 3 --port "$base" --dir "$work/$name" "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
}
pb=$(( ($(free_port) % 10000) + 20000 )); tb=$((pb + 300))
start_dev plain "$pb"
start_dev tls "$tb" --tls
for p in "$pb" $((pb + 1)) $((pb + 2)) "$tb" $((tb + 1)) $((tb + 2)); do wait_cluster "$p"; done
# The automatic rebalancer moves leaders for a few seconds after a start.
sleep 8
ppids=$(pgrep -f "$work/plain/node" | tr '\n' ' ')
tpids=$(pgrep -f "$work/tls/node" | tr '\n' ' ')
echo "== 3-node clusters (cairn dev, 64 durable groups), load through node 1, median of $REPS (100000 requests at -P16, 30000 at -P1)"
printf '%-4s %-4s %12s %12s %10s %16s %16s\n' test P plain/s tls/s tls/plain plain_cpu_us tls_cpu_us
for P in 16 1; do
    # The cluster is slower, -P1 most: fewer requests keep a round short.
    if [ "$P" = 1 ]; then N=30000; else N=100000; fi
    for t in set get; do
        ps=(); ts=(); pc=(); tc=()
        for _ in $(seq "$REPS"); do
            # shellcheck disable=SC2086
            read -r x y <<<"$(bench "$pb" 0 "$t" "$P" "$work/tls/certs" $ppids)"; ps+=("$x"); pc+=("$y")
            # shellcheck disable=SC2086
            read -r x y <<<"$(bench $((tb + 100)) 1 "$t" "$P" "$work/tls/certs" $tpids)"; ts+=("$x"); tc+=("$y")
        done
        a=$(printf '%s\n' "${ps[@]}" | median)
        b=$(printf '%s\n' "${ts[@]}" | median)
        printf '%-4s %-4s %12.0f %12.0f %10.2f %16s %16s\n' "$t" "$P" "$a" "$b" "$(echo "$b / $a" | bc -l)" \
            "$(printf '%s\n' "${pc[@]}" | median)" "$(printf '%s\n' "${tc[@]}" | median)"
    done
done
