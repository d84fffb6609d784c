#!/usr/bin/env bash
# Multi-core scaling, cairn vs Redis, on a many-core machine (16 cores
# assumed): the server gets cores 0-7, redis-benchmark --threads 8 gets
# cores 8-15. Runs from the bundle made by benches/make-bundle.sh:
#   bash .bench/bundle/multicore.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lib=$here/lib
ld="$lib/ld-linux-x86-64.so.2"
N=${N:-3000000}
bench() { # port pipeline
  taskset -c 8-15 "$ld" --library-path "$lib" "$here/bin/redis-benchmark" \
    -p "$1" --threads 8 -c 256 -n "$N" -P "$2" -r 1000000 -t set,get --csv 2>/dev/null | tail -n +2
}
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
measure() { # name port pid
  for p in 16 1; do
    local t0 t1 res
    t0=$(cpu "$3")
    res=$(bench "$2" "$p")
    t1=$(cpu "$3")
    echo "$res" | while IFS=, read -r test rps _ _ p50 _ p99 _; do
      echo "$1 P$p $test rps=$rps p50=$p50 p99=$p99"
    done
    echo "$1 P$p cpu_ticks=$((t1 - t0)) requests=$((2 * N))"
  done
}
echo "cores: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
taskset -c 0-7 "$ld" --library-path "$lib" "$here/bin/cairn" server --port 7001 --threads 8 --log warn &
cpid=$!
taskset -c 0-7 "$ld" --library-path "$lib" "$here/bin/redis-server" --port 7002 --save "" --appendonly no >/dev/null &
rpid=$!
taskset -c 0-7 "$ld" --library-path "$lib" "$here/bin/redis-server" --port 7003 --save "" --appendonly no \
  --io-threads 8 --io-threads-do-reads yes >/dev/null &
r8pid=$!
trap 'kill $cpid $rpid $r8pid 2>/dev/null || true' EXIT
sleep 1
measure cairn-8threads 7001 "$cpid"
measure redis 7002 "$rpid"
measure redis-io8 7003 "$r8pid"
