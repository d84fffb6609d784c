#!/usr/bin/env bash
# TLS side by side: cairn and redis-server, each with a plain and a TLS port
# (client certificates required on both), redis-benchmark -c 50 -r 100000
# SET and GET at -P 16 and -P 1, plain and --tls, REPS rounds alternating
# the servers. Prints requests/s and the cairn/redis ratio, and TLS/plain
# for each server. 127.0.0.1 only; servers started here are killed on exit.
#
#   benches/tls.sh [REPS]      (default 3; needs target/release/cairn)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN="$ROOT/target/release/cairn"
REPS=${1:-3}
N=200000
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$CAIRN" cert dev --dir "$work/certs" >/dev/null
C="$work/certs"
cp=$(free_port); ct=$(free_port); rp=$(free_port); rt=$(free_port)
"$CAIRN" server --port "$cp" --threads 1 --tls-port "$ct" --tls-cert-file "$C/node.crt" \
    --tls-key-file "$C/node.key" --tls-ca-cert-file "$C/ca.crt" >"$work/cairn.log" 2>&1 &
pids+=($!)
redis-server --port "$rp" --tls-port "$rt" --tls-cert-file "$C/node.crt" --tls-key-file "$C/node.key" \
    --tls-ca-cert-file "$C/ca.crt" --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
for p in "$cp" "$rp"; do
    for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

bench() { # port tls(0/1) test pipeline -> rps
    local tls=()
    [ "$2" = 1 ] && tls=(--tls --cacert "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key")
    redis-benchmark -p "$1" "${tls[@]}" -c 50 -r 100000 -n "$N" -P "$4" -t "$3" --csv 2>/dev/null |
        awk -F, 'NR==2 {gsub(/"/,"",$2); print $2}'
}

printf '%-4s %-4s %-5s %12s %12s %8s\n' test P mode cairn redis ratio
for P in 16 1; do
    for t in set get; do
        for mode in plain tls; do
            tl=0; [ "$mode" = tls ] && tl=1
            cs=(); rs=()
            for _ in $(seq "$REPS"); do
                if [ "$tl" = 1 ]; then cport=$ct; rport=$rt; else cport=$cp; rport=$rp; fi
                cs+=("$(bench "$cport" "$tl" "$t" "$P")")
                rs+=("$(bench "$rport" "$tl" "$t" "$P")")
            done
            c=$(printf '%s\n' "${cs[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
            r=$(printf '%s\n' "${rs[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
            printf '%-4s %-4s %-5s %12.0f %12.0f %8.2f\n' "$t" "$P" "$mode" "$c" "$r" "$(echo "$c / $r" | bc -l)"
        done
    done
done
