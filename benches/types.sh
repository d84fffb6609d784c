#!/usr/bin/env bash
# Collections side by side: cairn vs redis-server (issue 13).
#
#   benches/types.sh [REPS]     (default 3; needs target/release/cairn)
#
# Environment: CAIRN (the binary, default target/release/cairn; another
# build, say a baseline, is compared the same way), TYPES_TESTS (the
# throughput tests to run, default all, e.g. "zadd zpopmin zscore
# zrange_10"), TYPES_KINDS (the memory kinds, default "hash set intset
# list zset"; "none" skips the memory part).
#
# 1. Throughput: redis-benchmark -c 50 -P 16 -r 100000 with its built-in
#    hset, lpush, rpush, lpop, rpop, sadd, spop, lrange_100, zadd and
#    zpopmin tests, and ZSCORE / ZRANGE 0 9 / HGET / SISMEMBER as custom
#    commands (pops, LRANGE and the reads on a key filled first, so never
#    empty); the *_small tests write and read 10,000 keys (-r 10000) of
#    about 30 fields or members each: listpack hashes and intsets (reads
#    of a field or member mostly absent: a whole walk or search); median
#    of REPS rounds alternating the servers; the ratio.
# 2. Memory per element: INFO used_memory before and after loading, for
#    each type at a small size (20,000 keys of 16 elements: listpack /
#    intset encodings) and a large one (one key of 200,000 elements:
#    hashtable / quicklist); bytes per element and cairn/redis.
# redis-server runs with redis.conf's hash thresholds (128 entries, 64
# bytes), as cairn's. 127.0.0.1 only; servers started here are killed
# on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN=${CAIRN:-"$ROOT/target/release/cairn"}
TESTS=${TYPES_TESTS:-"hset hget lpush rpush lpop rpop sadd sismember spop lrange_100 zadd zpopmin zscore zrange_10 hset_small hget_small sadd_small sismember_small"}
KINDS=${TYPES_KINDS:-"hash set intset list zset"}
REPS=${1:-3}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cp=$(free_port); rp=$(free_port)
"$CAIRN" server --port "$cp" --threads 1 >"$work/cairn.log" 2>&1 &
pids+=($!)
# (set-max-listpack-* exist from Redis 7.2 only: 7.0 keeps small sets of
# strings in a hashtable, which this comparison then shows.)
redis-server --port "$rp" --save "" --appendonly no \
    --hash-max-listpack-entries 128 --hash-max-listpack-value 64 >"$work/redis.log" 2>&1 &
pids+=($!)
for p in "$cp" "$rp"; do
    for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

# shellcheck source=benches/types-lib.sh
. "$ROOT/benches/types-lib.sh"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== throughput, -c 50 -P 16 (requests/s)"
printf '%-16s %12s %12s %8s\n' test cairn redis ratio
count() {
    case "$1" in
    lpop | rpop) echo 150000 ;;
    *) echo 300000 ;;
    esac
}
bench() { # port test n -> rps
    # shellcheck disable=SC2046 # what's words are the arguments
    redis-benchmark -p "$1" -c 50 -P 16 -n "$3" -r "$(range "$2")" --csv $(what "$2") 2>/dev/null |
        awk -F, 'NR==2 {gsub(/"/,"",$2); print $2}'
}
for t in $TESTS; do
    cs=(); rs=()
    read -r pt pn pr _ <<<"$(prep "$t") x x x"
    for _ in $(seq "$REPS"); do
        for side in c r; do
            if [ "$side" = c ]; then port=$cp; else port=$rp; fi
            redis-cli -p "$port" flushall >/dev/null
            if [ "$pt" != x ]; then
                # shellcheck disable=SC2046
                redis-benchmark -p "$port" -c 50 -P 16 -n "$pn" -r "$pr" $(what "$pt") >/dev/null 2>&1
            fi
            v=$(bench "$port" "$t" "$(count "$t")")
            if [ "$side" = c ]; then cs+=("$v"); else rs+=("$v"); fi
        done
    done
    c=$(printf '%s\n' "${cs[@]}" | median); r=$(printf '%s\n' "${rs[@]}" | median)
    printf '%-16s %12.0f %12.0f %8.2f\n' "$t" "$c" "$r" "$(echo "$c / $r" | bc -l)"
done

used() { redis-cli -p "$1" info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
# load PORT TYPE KEYS PER-KEY: RESP commands through redis-cli --pipe.
load() {
    python3 - "$2" "$3" "$4" <<'PY' | redis-cli -p "$1" --pipe >/dev/null
import sys
kind, keys, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout
def cmd(*a):
    out.write("*%d\r\n" % len(a))
    for x in a:
        x = str(x)
        out.write("$%d\r\n%s\r\n" % (len(x.encode()), x))
chunk = 100
for k in range(keys):
    key = "%s:%d" % (kind, k)
    for s in range(0, per, chunk):
        items = range(s, min(per, s + chunk))
        if kind == "hash":
            args = []
            for i in items:
                args += ["field:%d" % i, "value:%d" % i]
            cmd("HSET", key, *args)
        elif kind == "set":
            cmd("SADD", key, *["member:%d" % i for i in items])
        elif kind == "intset":
            cmd("SADD", key, *[i for i in items])
        elif kind == "list":
            cmd("RPUSH", key, *["element:%d" % i for i in items])
        elif kind == "zset":
            args = []
            for i in items:
                args += [i, "member:%d" % i]
            cmd("ZADD", key, *args)
PY
}

echo
echo "== memory per element (INFO used_memory delta / elements)"
printf '%-8s %-22s %12s %12s %8s\n' type shape cairn redis ratio
[ "$KINDS" = none ] && exit 0
for kind in $KINDS; do
    for shape in "20000 16" "1 200000"; do
        read -r keys per <<<"$shape"
        n=$((keys * per))
        vals=()
        for p in "$cp" "$rp"; do
            redis-cli -p "$p" flushall >/dev/null
            sleep 0.2
            before=$(used "$p")
            load "$p" "$kind" "$keys" "$per"
            sleep 0.2
            after=$(used "$p")
            vals+=("$(echo "($after - $before) / $n" | bc -l)")
        done
        printf '%-8s %-22s %12.1f %12.1f %8.2f\n' "$kind" "${keys} keys x ${per}" "${vals[0]}" "${vals[1]}" \
            "$(echo "${vals[0]} / ${vals[1]}" | bc -l)"
    done
done
