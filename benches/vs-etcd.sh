#!/usr/bin/env bash
# Side-by-side benchmark: cairn vs etcd 3.4 (Debian etcd-server), both as 3-node
# clusters on this machine with durable writes, plus a single cairn node.
#
#   benches/vs-etcd.sh [--quick] [--duration SECS] [--warmup SECS] [--reps N]
#                      [--clients N] [--only SYSTEMS] [--cairn-dev-args "ARGS"]
#                      [--results-dir DIR] [--cairn-bin PATH] [--etcd-conns N] [--no-build]
#                      [--cairn3-groups N[,N...]] [--ops put,get,lock,lock-one,incr]
#
# Systems (comma-separated for --only; default: all of them, in this order):
#   etcd     3 etcd members (127.0.0.1, client ports 23791-23793, peer ports
#            23801-23803), default durability (WAL fsync on every commit)
#   cairn3   `cairn dev --nodes 3 --port 7001 --durability durable` (RESP ports
#            7001-7003, peer ports 17001-17003; acknowledged SETs are fsynced)
#   cairn1   `cairn server --port 7010`, a single node (no replication)
#
# For each system: put (etcd Put / RESP SET) then get (etcd linearizable Range /
# RESP GET), by benches/etcd-load: --clients connections (default 64) spread
# round-robin over the members, one request at a time each, uniform keys out of
# 10,000 (`k%06d`), 64-byte values; --warmup (default 2 s) then --duration
# (default 10 s) measured. Server CPU (utime+stime of all server processes,
# /proc/PID/stat) over the measured window is printed next to every figure.
# --quick: 3 s measured, 1 s warm-up, 1 repetition (default: 3, medians).
# --cairn-bin: use this cairn binary instead of building target/release/cairn.
# --etcd-conns N: the etcd clients share N gRPC connections (default: one each).
# --cairn3-groups 16,4: after cairn3 (default 64 Raft groups), also measure
#            SETs on `cairn dev ... --groups N` for each N (system cairn3-gN),
#            to show how the group count trades against batching.
#
# --ops LIST: what to measure (default put,get). Coordination (issue 11):
#            lock = acquire+release of each client's own lock (etcd: Lock API
#            with a lease per client; cairn: LOCK.ACQUIRE/LOCK.RELEASE),
#            lock-one = every client on one lock (etcd's Lock blocks; cairn
#            LOCK.ACQUIRE ... WAIT), with the hand-off time from a release being
#            sent to the next holder receiving its grant, incr = increments of one counter (etcd: get + CAS
#            transaction, retried; cairn: INCR). E.g.
#              benches/vs-etcd.sh --only etcd,cairn3 --ops lock,incr --clients 64
#              benches/vs-etcd.sh --only etcd,cairn3 --ops lock-one --clients 16
#
# Everything talks to 127.0.0.1 only; everything started here is stopped on exit.
# See docs/BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN="$ROOT/target/release/cairn"
LOAD_DIR="$ROOT/benches/etcd-load"
LOAD_TARGET="$LOAD_DIR/target"
LOAD="$LOAD_TARGET/release/etcd-load"

QUICK=0
DURATION=""
WARMUP=""
REPS=""
CLIENTS=64
ONLY="etcd,cairn3,cairn1"
BUILD=1
RESULTS_DIR=""
CAIRN_DEV_ARGS=""
CAIRN_GIVEN=0
ETCD_CONNS=0
CAIRN3_GROUPS=""
OPS="put,get"

usage() {
    sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while (($#)); do
    case "$1" in
    --quick) QUICK=1 ;;
    --duration)
        DURATION="${2:?--duration needs a value}"
        shift
        ;;
    --warmup)
        WARMUP="${2:?--warmup needs a value}"
        shift
        ;;
    --reps)
        REPS="${2:?--reps needs a value}"
        shift
        ;;
    --clients)
        CLIENTS="${2:?--clients needs a value}"
        shift
        ;;
    --only)
        ONLY="${2:?--only needs a value}"
        shift
        ;;
    --cairn-dev-args)
        CAIRN_DEV_ARGS="${2?--cairn-dev-args needs a value}"
        shift
        ;;
    --results-dir)
        RESULTS_DIR="${2:?--results-dir needs a value}"
        shift
        ;;
    --cairn-bin)
        CAIRN="${2:?--cairn-bin needs a value}"
        CAIRN_GIVEN=1
        shift
        ;;
    --etcd-conns)
        ETCD_CONNS="${2:?--etcd-conns needs a value}"
        shift
        ;;
    --cairn3-groups)
        CAIRN3_GROUPS="${2:?--cairn3-groups needs a value}"
        shift
        ;;
    --ops)
        OPS="${2:?--ops needs a value}"
        shift
        ;;
    --no-build) BUILD=0 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "unknown argument: $1" >&2
        usage >&2
        exit 2
        ;;
    esac
    shift
done

for s in ${ONLY//,/ }; do
    case "$s" in
    etcd | cairn3 | cairn1) ;;
    *)
        echo "unknown system '$s' (etcd, cairn3, cairn1)" >&2
        exit 2
        ;;
    esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }
for o in ${OPS//,/ }; do
    case "$o" in
    put | get | lock | lock-one | incr) ;;
    *)
        echo "unknown op '$o' (put, get, lock, lock-one, incr)" >&2
        exit 2
        ;;
    esac
done
want_op() { [[ ",$OPS," == *",$1,"* ]]; }

if ((QUICK)); then
    : "${DURATION:=3}" "${WARMUP:=1}" "${REPS:=1}"
else
    : "${DURATION:=10}" "${WARMUP:=2}" "${REPS:=3}"
fi
[[ "$DURATION" =~ ^[1-9][0-9]{0,3}$ ]] || {
    echo "--duration must be 1..9999 seconds" >&2
    exit 2
}
[[ "$WARMUP" =~ ^[0-9]{1,3}$ ]] || {
    echo "--warmup must be 0..999 seconds" >&2
    exit 2
}
[[ "$REPS" =~ ^[1-9][0-9]?$ ]] || {
    echo "--reps must be 1..99" >&2
    exit 2
}
[[ "$CLIENTS" =~ ^[1-9][0-9]{0,3}$ ]] || {
    echo "--clients must be 1..9999" >&2
    exit 2
}
[[ -z "$CAIRN3_GROUPS" || "$CAIRN3_GROUPS" =~ ^[0-9]{1,5}(,[0-9]{1,5})*$ ]] || {
    echo "--cairn3-groups must be a comma-separated list of group counts, e.g. 16,4" >&2
    exit 2
}
[[ "$ETCD_CONNS" =~ ^[0-9]{1,4}$ ]] || {
    echo "--etcd-conns must be 0..9999 (0 = one per client)" >&2
    exit 2
}

# ---------------------------------------------------------------- parameters
KEYS=10000
VALUE_SIZE=64
ETCD_CLIENT_PORTS=(23791 23792 23793)
ETCD_PEER_PORTS=(23801 23802 23803)
CAIRN3_PORTS=(7001 7002 7003)
CAIRN3_PEER_PORTS=(17001 17002 17003) # cairn dev: RESP port + 10000
CAIRN1_PORT=7010
READY_TIMEOUT=60 # seconds for a cluster to come up
# One load-generator run: connect + preload (gets) + warm-up + duration, bounded.
RUN_TIMEOUT=$((DURATION + WARMUP + 300))

# ---------------------------------------------------------------- tools
SUDO=""
((EUID == 0)) || SUDO=sudo
APT_UPDATED=0
apt_install() {
    echo "# installing $*" >&2
    if ((!APT_UPDATED)); then
        $SUDO apt-get update
        APT_UPDATED=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}
command -v redis-cli >/dev/null || apt_install redis-tools
command -v curl >/dev/null || apt_install curl
if want etcd; then
    { command -v etcd >/dev/null && command -v etcdctl >/dev/null; } || apt_install etcd-server etcd-client
fi
if ((BUILD)); then
    command -v protoc >/dev/null || apt_install protobuf-compiler
    echo "# building benches/etcd-load (its own workspace and target dir)" >&2
    CARGO_TARGET_DIR="$LOAD_TARGET" cargo build --release --quiet --manifest-path "$LOAD_DIR/Cargo.toml"
    if { want cairn3 || want cairn1; } && ((!CAIRN_GIVEN)); then
        echo "# building target/release/cairn" >&2
        (cd "$ROOT" && cargo build --release --quiet -p cairn-cli)
    fi
fi
[[ -x "$LOAD" ]] || {
    echo "missing $LOAD (run without --no-build)" >&2
    exit 1
}
if { want cairn3 || want cairn1; } && [[ ! -x "$CAIRN" ]]; then
    echo "missing $CAIRN (run without --no-build)" >&2
    exit 1
fi

# ---------------------------------------------------------------- setup
if [[ -z "$RESULTS_DIR" ]]; then
    RESULTS_DIR="$ROOT/target/bench-results/vs-etcd-$(date -u +%Y%m%dT%H%M%SZ)"
fi
mkdir -p "$RESULTS_DIR"
RAW="$RESULTS_DIR/raw.tsv"
: >"$RAW"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/vs-etcd.XXXXXX")
PIDS=() # every process started here (killed on exit)

log() { echo "# $*" >&2; }

# descendants PID...: the PIDs and all processes below them (from /proc/*/stat).
descendants() {
    local f line rest
    {
        echo "roots $*"
        for f in /proc/[0-9]*/stat; do
            line=$(<"$f") || continue
            rest=${line##*) } # after the command name: state ppid ...
            rest=${rest#* }
            echo "${line%% *} ${rest%% *}"
        done 2>/dev/null # processes that exit meanwhile
    } | awk '$1 == "roots" {for (i = 2; i <= NF; i++) {keep[$i] = 1; order[++n] = $i}; next}
             {parent[$1] = $2}
             END {
                 changed = 1
                 while (changed) {
                     changed = 0
                     for (p in parent) if (!(p in keep) && (parent[p] in keep)) {keep[p] = 1; order[++n] = p; changed = 1}
                 }
                 for (i = 1; i <= n; i++) print order[i]
             }'
}

# stop_procs PID...: SIGTERM (the processes and their children), wait up to 15 s, SIGKILL.
stop_procs() {
    local all i alive p
    all=$(descendants "$@")
    [[ -n "$all" ]] || return 0
    # shellcheck disable=SC2086
    kill -TERM $all 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        alive=0
        for p in $all; do
            kill -0 "$p" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $all 2>/dev/null || true
    for p in "$@"; do
        wait "$p" 2>/dev/null || true
    done
    forget "$@"
}

# forget PID...: drop from PIDS (once reaped), so the exit trap cannot signal a reused PID.
forget() {
    local keep=() q
    for q in "${PIDS[@]}"; do
        [[ " $* " == *" $q "* ]] || keep+=("$q")
    done
    PIDS=("${keep[@]}")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#PIDS[@]})); then
        stop_procs "${PIDS[@]}"
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports_free() {
    local p
    for p in "$@"; do
        if port_busy "$p"; then
            echo "port 127.0.0.1:$p is already in use; stop whatever listens there first" >&2
            return 1
        fi
    done
}

median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "nan" || b == "nan" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b}'; }

# Raw rows: system  op  rep  rps  p50_ms  p99_ms  server_cpu  cpu_us_per_op  gen_cpu  errors  server_cpu_each  mean_ms  p999_ms
COLS=(system op rep rps p50_ms p99_ms server_cpu server_cpu_us_per_op gen_cpu errors server_cpu_each mean_ms p999_ms handoff_p50_ms)
get_med() { # SYSTEM OP COLUMN-NAME
    local c i
    for i in "${!COLS[@]}"; do
        [[ "${COLS[$i]}" == "$3" ]] && c=$((i + 1))
    done
    awk -F'\t' -v s="$1" -v o="$2" -v c="$c" '$1 == s && $2 == o {print $c}' "$RAW" | median
}
get_sum() { # SYSTEM OP COLUMN-NAME: sum over the repetitions
    local c i
    for i in "${!COLS[@]}"; do
        [[ "${COLS[$i]}" == "$3" ]] && c=$((i + 1))
    done
    awk -F'\t' -v s="$1" -v o="$2" -v c="$c" '$1 == s && $2 == o {t += $c} END {print t + 0}' "$RAW"
}
have() { awk -F'\t' -v s="$1" '$1 == s {f = 1} END {exit !f}' "$RAW"; }

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# run_load SYSTEM OP REP TARGET ENDPOINTS PIDS: one etcd-load run, one raw row.
run_load() {
    local system=$1 op=$2 rep=$3 target=$4 endpoints=$5 pids=$6
    local out errf="$TMP/load.err" outf="$TMP/load.out" lp rc=0 extra=()
    [[ "$target" == etcd ]] && extra=(--conns "$ETCD_CONNS")
    # cairn 3-node: a cluster-aware client (slot -> leader, as Redis Cluster
    # clients do), so requests go to the group leader instead of being proxied.
    [[ "$system" == cairn3* ]] && extra=(--cluster)
    # In the background and waited for, so that a signal reaches the trap at once.
    timeout "$RUN_TIMEOUT" "$LOAD" --target "$target" --endpoints "$endpoints" --op "$op" \
        --clients "$CLIENTS" --duration "${DURATION}s" --warmup "${WARMUP}s" --keys "$KEYS" \
        --value-size "$VALUE_SIZE" --cpu-pids "$pids" "${extra[@]}" >"$outf" 2>"$errf" &
    lp=$!
    PIDS+=("$lp")
    wait "$lp" || rc=$?
    forget "$lp"
    if ((rc)); then
        echo "etcd-load failed (exit $rc) for $system $op:" >&2
        cat "$errf" >&2
        return 1
    fi
    out=$(<"$outf")
    grep -v '^etcd-load: preloaded' "$errf" >&2 || true
    echo "$out" >>"$RESULTS_DIR/etcd-load.out"
    local v c row=("$system" "$op" "$rep")
    for c in "${COLS[@]:3}"; do
        v=$(field "$c" "$out")
        row+=("${v:-nan}")
    done
    (IFS=$'\t' && echo "${row[*]}") >>"$RAW"
    log "$system $op rep $rep: rps=$(field rps "$out") p50=$(field p50_ms "$out")ms p99=$(field p99_ms "$out")ms" \
        "server_cpu=$(field server_cpu "$out") cores ($(field server_cpu_each "$out")), $(field server_cpu_us_per_op "$out") us/op;" \
        "gen_cpu=$(field gen_cpu "$out") errors=$(field errors "$out")"
}

# check_on_disk SYSTEM DIR: after the runs (the get runs preload every key), a
# cluster that persists what it acknowledges holds at least KEYS x VALUE_SIZE
# bytes in its data dir. A smaller dir means acknowledged writes were not on disk.
NOT_DURABLE=""
check_on_disk() {
    local system=$1 dir=$2 bytes min=$((KEYS * VALUE_SIZE))
    # Only the key-value runs write KEYS values.
    want_op put || want_op get || return 0
    bytes=$(du -sb "$dir" | cut -f1)
    log "$system data dir after the runs: $bytes bytes ($(du -sh "$dir" | cut -f1))"
    if ((bytes < min)); then
        log "WARNING: $system's data dir holds $bytes bytes, less than the $min bytes of the $KEYS values" \
            "it acknowledged: its writes were NOT durable, its figures are not comparable"
        NOT_DURABLE+="${NOT_DURABLE:+, }$system ($bytes bytes on disk)"
    fi
}

# fsync_probe DIR: mean latency (ms) of 4 KiB O_DSYNC writes in DIR (500 writes, at most 30 s).
fsync_probe() {
    local f="$1/fsync-probe" t0 t1 n=500
    t0=$(date +%s%N)
    timeout 30 dd if=/dev/zero of="$f" bs=4k count=$n oflag=dsync status=none 2>/dev/null || {
        rm -f "$f"
        echo nan
        return 0
    }
    t1=$(date +%s%N)
    rm -f "$f"
    awk -v d=$((t1 - t0)) -v n=$n 'BEGIN {printf "%.2f", d / n / 1e6}'
}

# etcd_fsync_totals: "count sum_seconds" of WAL fsyncs over all members (etcd's /metrics).
etcd_fsync_totals() {
    local cp
    for cp in "${ETCD_CLIENT_PORTS[@]}"; do
        timeout 5 curl -s "http://127.0.0.1:$cp/metrics" 2>/dev/null || true
    done | awk '/^etcd_disk_wal_fsync_duration_seconds_count/ {c += $2}
                /^etcd_disk_wal_fsync_duration_seconds_sum/ {s += $2}
                END {printf "%d %.6f", c, s}'
}

# ---------------------------------------------------------------- etcd
etcd_bench() {
    check_ports_free "${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}"
    local i cluster="" eps="" pids=() dir="$TMP/etcd"
    for i in 0 1 2; do
        cluster+="${cluster:+,}e$((i + 1))=http://127.0.0.1:${ETCD_PEER_PORTS[$i]}"
        eps+="${eps:+,}127.0.0.1:${ETCD_CLIENT_PORTS[$i]}"
    done
    mkdir -p "$dir"
    for i in 0 1 2; do
        local n="e$((i + 1))" cp=${ETCD_CLIENT_PORTS[$i]} pp=${ETCD_PEER_PORTS[$i]}
        # Defaults otherwise: WAL fsync on every commit, heartbeat 100 ms,
        # election 1000 ms, snapshot-count 100000, no auto-compaction.
        etcd --name "$n" --data-dir "$dir/$n" \
            --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
            --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "vs-etcd-$$" --logger zap --log-level warn \
            >"$dir/$n.log" 2>&1 &
        pids+=($!)
        PIDS+=($!)
    done
    local http_eps="${eps//127.0.0.1/http://127.0.0.1}" ok=0
    for ((i = 0; i < READY_TIMEOUT * 2; i++)); do
        if ETCDCTL_API=3 timeout 5 etcdctl --endpoints="$http_eps" --dial-timeout=2s --command-timeout=3s \
            endpoint health >/dev/null 2>&1; then
            ok=1
            break
        fi
        local p
        for p in "${pids[@]}"; do
            kill -0 "$p" 2>/dev/null || {
                echo "an etcd member died on startup:" >&2
                tail -n 20 "$dir"/*.log >&2
                return 1
            }
        done
        sleep 0.5
    done
    ((ok)) || {
        echo "etcd cluster not healthy within ${READY_TIMEOUT}s" >&2
        tail -n 20 "$dir"/*.log >&2
        return 1
    }
    ETCD_VERSION=$(etcd --version | awk '/^etcd Version/ {print $3}')
    log "etcd $ETCD_VERSION: 3 members healthy ($eps), pids ${pids[*]}"
    ETCDCTL_API=3 timeout 10 etcdctl --endpoints="$http_eps" endpoint status -w table >&2 || true
    local rep pidlist
    pidlist=$(
        IFS=,
        echo "${pids[*]}"
    )
    local f0 f1
    f0=$(etcd_fsync_totals)
    for ((rep = 1; rep <= REPS; rep++)); do
        for op in ${OPS//,/ }; do
            run_load etcd "$op" "$rep" etcd "$eps" "$pidlist"
        done
    done
    f1=$(etcd_fsync_totals)
    # shellcheck disable=SC2086
    ETCD_FSYNC=$(awk -v a="$f0" -v b="$f1" 'BEGIN {split(a, x, " "); split(b, y, " "); n = y[1] - x[1]
        if (n > 0) printf "%d WAL fsyncs over the 3 members, mean %.2f ms", n, (y[2] - x[2]) / n * 1000; else print "n/a"}')
    log "etcd: $ETCD_FSYNC (etcd_disk_wal_fsync_duration_seconds, all runs)"
    ETCDCTL_API=3 timeout 10 etcdctl --endpoints="$http_eps" endpoint status -w table >&2 || true
    check_on_disk etcd "$dir"
    stop_procs "${pids[@]}"
    rm -rf "$dir"
}

# ---------------------------------------------------------------- cairn
# wait_resp_ok PORT PID [N]: poll `SET` until it answers OK (or the process dies /
# time runs out); then until N SETs of different keys (spread over cairn's slots,
# so over its Raft groups) all answer OK in one go.
wait_resp_ok() {
    local port=$1 pid=$2 n=${3:-0} i ok=0 deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$port" SET vs-etcd-ready v 2>/dev/null)" == OK ]]; then
            ok=1
            break
        fi
        sleep 0.2
    done
    ((ok)) || return 1
    ((n > 0)) || return 0
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        ok=$(for ((i = 0; i < n; i++)); do echo "SET vs-etcd-ready-$i v"; done |
            timeout 10 redis-cli -h 127.0.0.1 -p "$port" 2>/dev/null | grep -c '^OK$' || true)
        ((ok == n)) && return 0
        sleep 0.2
    done
    return 1
}

# cairn3_bench [SYSTEM GROUPS]: the 3-node cluster; with GROUPS, `--groups
# GROUPS` and SETs only (system name SYSTEM).
cairn3_bench() {
    local system=${1:-cairn3} groups=${2:-}
    if ! "$CAIRN" dev --help >/dev/null 2>&1; then
        log "SKIPPED cairn3: this cairn binary has no 'dev' subcommand yet ($("$CAIRN" dev --help 2>&1 | head -n 1))"
        CAIRN3_SKIPPED="$CAIRN has no 'dev' subcommand"
        return 0
    fi
    check_ports_free "${CAIRN3_PORTS[@]}" "${CAIRN3_PEER_PORTS[@]}"
    local dir="$TMP/$system" pid dur=() gargs=()
    [[ -n "$groups" ]] && gargs=(--groups "$groups")
    mkdir -p "$dir"
    # Durable is cairn's default; say so explicitly where the flag exists.
    if "$CAIRN" dev --help 2>/dev/null | grep -q -- '--durability'; then
        dur=(--durability durable)
    else
        log "WARNING: 'cairn dev' has no --durability flag; relying on its default for durable SETs"
    fi
    # shellcheck disable=SC2086
    "$CAIRN" dev --nodes 3 --port "${CAIRN3_PORTS[0]}" --dir "$dir" "${dur[@]}" $CAIRN_DEV_ARGS "${gargs[@]}" \
        >"$TMP/$system.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    local port
    for port in "${CAIRN3_PORTS[@]}"; do
        wait_resp_ok "$port" "$pid" 256 || {
            echo "cairn dev: port $port did not answer 256 SETs with OK within ${READY_TIMEOUT}s" >&2
            tail -n 30 "$TMP/$system.log" >&2
            return 1
        }
    done
    local pids pidlist eps=""
    pids=$(descendants "$pid")
    pidlist=$(tr '\n' ',' <<<"$pids" | sed 's/,$//')
    for port in "${CAIRN3_PORTS[@]}"; do
        eps+="${eps:+,}127.0.0.1:$port"
    done
    log "cairn dev: 3 nodes answer SET ($eps), processes $pidlist"
    grep -v ' ERROR \| WARN ' "$TMP/$system.log" | head -n 8 | sed 's/^/#   /' >&2
    local rep
    for ((rep = 1; rep <= REPS; rep++)); do
        if [[ -n "$groups" ]]; then
            run_load "$system" put "$rep" resp "$eps" "$pidlist"
            continue
        fi
        for op in ${OPS//,/ }; do
            run_load "$system" "$op" "$rep" resp "$eps" "$pidlist"
        done
    done
    check_on_disk "$system" "$dir"
    stop_procs "$pid"
    rm -rf "$dir"
}

cairn1_bench() {
    check_ports_free "$CAIRN1_PORT"
    local pid
    "$CAIRN" server --bind 127.0.0.1 --port "$CAIRN1_PORT" --log warn >"$TMP/cairn1.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_resp_ok "$CAIRN1_PORT" "$pid" || {
        echo "cairn server on port $CAIRN1_PORT did not answer SET within ${READY_TIMEOUT}s" >&2
        tail -n 30 "$TMP/cairn1.log" >&2
        return 1
    }
    log "cairn server: single node on 127.0.0.1:$CAIRN1_PORT, pid $pid"
    local rep
    for ((rep = 1; rep <= REPS; rep++)); do
        for op in ${OPS//,/ }; do
            run_load cairn1 "$op" "$rep" resp "127.0.0.1:$CAIRN1_PORT" "$pid"
        done
    done
    stop_procs "$pid"
}

# ---------------------------------------------------------------- report
declare -A NAME=([etcd]="etcd 3-node" [cairn3]="cairn 3-node" [cairn1]="cairn 1-node")
EXTRA_SYSTEMS=()
for g in ${CAIRN3_GROUPS//,/ }; do
    EXTRA_SYSTEMS+=("cairn3-g$g")
    NAME[cairn3-g$g]="cairn 3-node, $g groups"
done
declare -A OPNAME=([etcd-put]="Put" [etcd-get]="Range (linearizable)" [resp-put]="SET" [resp-get]="GET"
    [etcd-lock]="Lock + Unlock (lease per client)" [resp-lock]="LOCK.ACQUIRE + LOCK.RELEASE"
    [etcd-lock-one]="Lock + Unlock, one lock for all" [resp-lock-one]="LOCK.ACQUIRE WAIT + RELEASE, one lock"
    [etcd-incr]="get + CAS txn increment, one key" [resp-incr]="INCR, one key")

print_results() {
    local s op proto
    echo
    echo "### Results ($CLIENTS clients, ${DURATION} s measured after ${WARMUP} s warm-up; median of $REPS)"
    echo
    echo "| system | op | ops/s | p50 ms | p99 ms | hand-off p50 ms | server CPU (cores of $(nproc)) | server CPU µs/op | load-generator CPU (cores) | errors (all reps) |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in etcd cairn3 cairn1 "${EXTRA_SYSTEMS[@]}"; do
        have "$s" || continue
        proto=resp
        [[ $s == etcd ]] && proto=etcd
        for op in ${OPS//,/ }; do
            [[ $s == cairn3-g* && $op != put ]] && continue
            printf '| %s | %s | %.0f | %.2f | %.2f | %s | %.2f | %.1f | %.2f | %s |\n' "${NAME[$s]}" "${OPNAME[$proto-$op]}" \
                "$(get_med "$s" "$op" rps)" "$(get_med "$s" "$op" p50_ms)" "$(get_med "$s" "$op" p99_ms)" \
                "$(get_med "$s" "$op" handoff_p50_ms)" \
                "$(get_med "$s" "$op" server_cpu)" "$(get_med "$s" "$op" server_cpu_us_per_op)" \
                "$(get_med "$s" "$op" gen_cpu)" "$(get_sum "$s" "$op" errors)"
        done
    done
    [[ -n "${CAIRN3_SKIPPED:-}" ]] && echo && echo "cairn 3-node: **not measured** ($CAIRN3_SKIPPED)."
    [[ -n "$ETCD_FSYNC" ]] && echo && echo "etcd: $ETCD_FSYNC (its \`etcd_disk_wal_fsync_duration_seconds\`, all runs)."
    [[ -n "$NOT_DURABLE" ]] && echo && echo "**WARNING: not durable** (data dir smaller than the values acknowledged): $NOT_DURABLE. Those figures do not count."
    echo
    echo "### Ratios"
    echo
    echo "| comparison | ops/s ratio | target | p99 ratio (≤ 1.00 = no worse) | server CPU µs/op ratio | met |"
    echo "|---|---:|---:|---:|---:|---|"
    cmp_row() { # A B OP LABEL TARGET(or "")
        local a=$1 b=$2 op=$3 label=$4 target=$5 r p c met
        if ! have "$a" || ! have "$b"; then
            printf '| %s | n/a | %s | n/a | n/a | not measured |\n' "$label" "${target:+≥ $target}"
            return
        fi
        r=$(ratio "$(get_med "$a" "$op" rps)" "$(get_med "$b" "$op" rps)")
        p=$(ratio "$(get_med "$a" "$op" p99_ms)" "$(get_med "$b" "$op" p99_ms)")
        c=$(ratio "$(get_med "$a" "$op" server_cpu_us_per_op)" "$(get_med "$b" "$op" server_cpu_us_per_op)")
        met=""
        if [[ -n "$target" ]]; then
            met=$(awk -v r="$r" -v p="$p" -v t="$target" -v needp="$6" 'BEGIN {
                ok = (r != "n/a" && r + 0 >= t); if (needp) ok = ok && (p != "n/a" && p + 0 <= 1.0)
                print (ok ? "**yes**" : "**no**")}')
            [[ " $NOT_DURABLE" == *" $a ("* ]] && met="**no** (not durable)"
        fi
        printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$r" "${target:+≥ $target}" "$p" "$c" "$met"
    }
    if want_op put; then
        cmp_row cairn3 etcd put "cairn 3-node SET / etcd Put (durable writes)" 3.0 1
        cmp_row cairn3 cairn1 put "cairn 3-node SET / cairn 1-node SET (cost of replication)" "" ""
        cmp_row cairn1 etcd put "cairn 1-node SET / etcd Put (not like for like: no replication)" "" ""
        for s in "${EXTRA_SYSTEMS[@]}"; do
            cmp_row "$s" etcd put "${NAME[$s]} (not the default 64) SET / etcd Put" "" ""
        done
    fi
    if want_op get; then
        cmp_row cairn3 etcd get "cairn 3-node GET / etcd Range (linearizable reads)" 5.0 ""
        cmp_row cairn3 cairn1 get "cairn 3-node GET / cairn 1-node GET (cost of replication)" "" ""
        cmp_row cairn1 etcd get "cairn 1-node GET / etcd Range (not like for like: no replication)" "" ""
    fi
    want_op lock && cmp_row cairn3 etcd lock "cairn 3-node lock cycles / etcd Lock+Unlock (uncontended)" 5.0 ""
    want_op lock-one && cmp_row cairn3 etcd lock-one "cairn 3-node / etcd, one contended lock (cycles)" 10.0 ""
    want_op incr && cmp_row cairn3 etcd incr "cairn 3-node INCR / etcd CAS increments (one key)" 300.0 ""
    if want_op lock-one && have cairn3 && have etcd; then
        echo
        echo "Hand-off (release sent → next holder's grant received), p50: cairn 3-node $(get_med cairn3 lock-one handoff_p50_ms) ms, etcd $(get_med etcd lock-one handoff_p50_ms) ms (target: cairn under 10 ms)."
    fi
    return 0
}

# ---------------------------------------------------------------- main
START=$(date +%s)
ETCD_VERSION=$(command -v etcd >/dev/null && etcd --version | awk '/^etcd Version/ {print $3}' || echo '?')
echo "## cairn vs etcd ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r); data dirs on $(df -P "$TMP" | awk 'NR == 2 {print $1}') ($TMP)"
echo "- etcd $ETCD_VERSION (Debian etcd-server), 3 members, default durability; cairn $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')"
echo "- load: benches/etcd-load, $CLIENTS clients (one connection each, round-robin over the members, one request at a time), $KEYS keys, $VALUE_SIZE-byte values, ${WARMUP} s warm-up + ${DURATION} s measured, $REPS repetition(s)"
((ETCD_CONNS)) && echo "- **etcd clients share $ETCD_CONNS gRPC connection(s)** (--etcd-conns; default: one per client)"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

CAIRN3_SKIPPED=""
ETCD_FSYNC=""
echo "- disk: 4 KiB O_DSYNC write in the data dir's file system, mean $(fsync_probe "$TMP") ms (500 writes, before the runs)"
if want etcd; then
    log "system: etcd (3 members)"
    etcd_bench
fi
if want cairn3; then
    log "system: cairn dev --nodes 3"
    cairn3_bench
fi
if want cairn1; then
    log "system: cairn server (single node)"
    cairn1_bench
fi
for g in ${CAIRN3_GROUPS//,/ }; do
    log "system: cairn dev --nodes 3 --groups $g (SET only)"
    cairn3_bench "cairn3-g$g" "$g"
done

print_results
echo
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg); 4 KiB O_DSYNC write at end: $(fsync_probe "$TMP") ms; took $(($(date +%s) - START)) s; raw rows: $RAW"
