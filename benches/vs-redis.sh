#!/usr/bin/env bash
# Side-by-side benchmark: cairn vs redis-server on this machine.
#
#   benches/vs-redis.sh [--quick] [--only SECTIONS] [--reps N] [--cairn-threads N]
#                       [--results-dir DIR] [--no-build]
#
# Sections (comma-separated for --only; default: all of them):
#   throughput  redis-benchmark -c 50 -r 100000 -t set,get,incr, at -P 16 and -P 1:
#               requests/s, server CPU time per request, p99 latency
#   memory      RSS and INFO used_memory after loading 1,000,000 keys with 16-byte values
#   hitratio    read-through Zipf(0.99) workload (cairn-bench zipf) under maxmemory 64mb,
#               allkeys-lru and allkeys-lfu: hit ratio
#   pinned      throughput with redis-benchmark on CPU 0 and the server on CPU 1 (taskset)
#
# Every figure is measured for both servers in the same run, and printed with the
# cairn/redis ratio. Everything talks to 127.0.0.1 only; servers started here are
# killed on exit. See docs/BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CAIRN="$ROOT/target/release/cairn"
BENCH="$ROOT/target/release/cairn-bench"

QUICK=0
ONLY="throughput,memory,hitratio,pinned"
REPS=""
CAIRN_THREADS=0
BUILD=1
RESULTS_DIR=""

usage() {
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while (($#)); do
    case "$1" in
    --quick) QUICK=1 ;;
    --only)
        ONLY="${2:?--only needs a value}"
        shift
        ;;
    --only=*) ONLY="${1#--only=}" ;;
    --reps)
        REPS="${2:?--reps needs a value}"
        shift
        ;;
    --cairn-threads)
        CAIRN_THREADS="${2:?--cairn-threads needs a value}"
        shift
        ;;
    --results-dir)
        RESULTS_DIR="${2:?--results-dir needs a value}"
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
    throughput | memory | hitratio | pinned) ;;
    *)
        echo "unknown section '$s' (throughput, memory, hitratio, pinned)" >&2
        exit 2
        ;;
    esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

# ---------------------------------------------------------------- parameters
CLIENTS=50
RANDOM_KEYS=100000
TESTS=(set get incr)
MEM_KEYS=1000000
MEM_VALUE=16
HR_VALUE=100
HR_THETA=0.99
HR_SEED=42
HR_CLIENTS=4
HR_PIPELINE=32
HR_MAXMEMORY=64mb
HR_FILL=1500000 # keys loaded to measure how many fit in $HR_MAXMEMORY
if ((QUICK)); then
    N_P16=400000
    N_P1=100000
    : "${REPS:=1}"
    HR_WARMUP=800000
    HR_OPS=800000
else
    N_P16=2000000
    N_P1=250000
    : "${REPS:=3}"
    HR_WARMUP=3000000
    HR_OPS=3000000
fi
[[ "$REPS" =~ ^[1-9][0-9]?$ ]] || {
    echo "--reps must be 1..99" >&2
    exit 2
}
STEP_TIMEOUT=600 # seconds; bounds every single benchmark step

# ---------------------------------------------------------------- tools
need_redis() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null
}
if ! need_redis; then
    echo "# installing redis-server and redis-tools" >&2
    SUDO=""
    ((EUID == 0)) || SUDO=sudo
    $SUDO apt-get update
    $SUDO apt-get install -y redis-server redis-tools
    need_redis || {
        echo "redis-server/redis-cli/redis-benchmark still missing" >&2
        exit 1
    }
fi
if want pinned && ! command -v taskset >/dev/null; then
    echo "taskset (util-linux) is missing; skipping the pinned section" >&2
    ONLY="${ONLY//pinned/}"
fi

if ((BUILD)); then
    echo "# building release binaries (cairn, cairn-bench)" >&2
    (cd "$ROOT" && cargo build --release --quiet -p cairn-cli -p cairn-bench)
fi
[[ -x "$CAIRN" && -x "$BENCH" ]] || {
    echo "missing $CAIRN or $BENCH (run without --no-build)" >&2
    exit 1
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cairn-vs-redis.XXXXXX")
[[ -n "$RESULTS_DIR" ]] || RESULTS_DIR="$ROOT/target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS_DIR"
RAW="$RESULTS_DIR/raw.tsv"
: >"$RAW"

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
log() { echo "# $*" >&2; }

USED_PORTS=" "
# Ports below the kernel's ephemeral range, so redis-benchmark's client sockets
# (and their TIME_WAIT leftovers) never collide with a listener we start.
PORT_LO=20000
PORT_HI=$(awk '{print $1 - 1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32767)
((PORT_HI > PORT_LO + 1000)) || PORT_HI=$((PORT_LO + 10000))
free_port() {
    local i p
    for ((i = 0; i < 500; i++)); do
        p=$((PORT_LO + RANDOM % (PORT_HI - PORT_LO)))
        [[ "$USED_PORTS" == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

CLK_TCK=$(getconf CLK_TCK)

# utime + stime (fields 14 and 15 of /proc/PID/stat, all threads), in clock ticks.
cpu_ticks() {
    local s
    s=$(<"/proc/$1/stat")
    s=${s##*) } # drop "pid (comm) " - comm may contain spaces
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13}))
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

rcli() {
    local port=$1
    shift
    timeout 60 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

info_field() { # port field
    rcli "$1" info memory | tr -d '\r' | awk -F: -v f="$2" '$1 == f {print $2}'
}

wait_ready() { # pid port
    local i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$1" 2>/dev/null || {
            echo "server (pid $1, port $2) died on startup" >&2
            return 1
        }
        [[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$2" ping 2>/dev/null)" == PONG ]] && return 0
        sleep 0.1
    done
    echo "server on port $2 did not answer PING within 20s" >&2
    return 1
}

# start_server KIND PORT CPU(or "") [extra server args...]; sets SERVER_PID.
SERVER_PID=""
start_server() {
    local kind=$1 port=$2 cpu=$3
    shift 3
    local pre=()
    [[ -n "$cpu" ]] && pre=(taskset -c "$cpu")
    mkdir -p "$TMP/data"
    case "$kind" in
    redis)
        "${pre[@]}" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --daemonize no --dir "$TMP/data" --logfile "$TMP/redis-$port.log" "$@" &
        ;;
    cairn)
        local threads=$CAIRN_THREADS
        [[ -n "$cpu" ]] && threads=1
        "${pre[@]}" "$CAIRN" server --bind 127.0.0.1 --port "$port" --threads "$threads" --log warn "$@" \
            >"$TMP/cairn-$port.log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    if ! wait_ready "$SERVER_PID" "$port"; then
        tail -n 20 "$TMP/$kind-$port.log" >&2 2>/dev/null || true
        return 1
    fi
}

stop_server() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b}'; }

# get_med SECTION KEY SERVER COLUMN: median of a column of the raw rows matching.
get_med() {
    awk -F'\t' -v s="$1" -v k="$2" -v srv="$3" -v c="$4" '$1 == s && $2 == k && $3 == srv {print $c}' "$RAW" | median
}

# run_rb PORT PID SECTION P TEST REP [taskset prefix...]: one redis-benchmark test, one raw row.
run_rb() {
    local port=$1 pid=$2 section=$3 p=$4 test=$5 srv=$6
    shift 6
    local n=$N_P16
    ((p == 1)) && n=$N_P1
    local t0 t1 out row
    t0=$(cpu_ticks "$pid")
    out=$(timeout "$STEP_TIMEOUT" "$@" redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$n" \
        -r "$RANDOM_KEYS" -P "$p" -t "$test" --csv 2>/dev/null)
    t1=$(cpu_ticks "$pid")
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    row=$(printf '%s\n' "$out" | tr -d '"\r' | awk -F, 'NR > 1 && $2 + 0 > 0 {print $2, $5, $7; exit}')
    [[ -n "$row" ]] || {
        echo "redis-benchmark gave no result for $srv $test -P $p: $out" >&2
        return 1
    }
    local rps p50 p99 cpu_us
    read -r rps p50 p99 <<<"$row"
    cpu_us=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" 'BEGIN {printf "%.3f", d / hz / n * 1e6}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "P$p-$test" "$srv" "$rps" "$cpu_us" "$p99" "$p50" >>"$RAW"
    log "$section -P $p $test $srv: rps=$rps cpu=${cpu_us}us/req p50=${p50}ms p99=${p99}ms"
}

# ---------------------------------------------------------------- sections
throughput() { # SECTION PINNED(0/1)
    local section=$1 pinned=$2
    local rport cport rpid cpid scpu="" ccpu=()
    if ((pinned)); then
        scpu=1
        ccpu=(taskset -c 0)
    fi
    rport=$(free_port)
    cport=$(free_port)
    start_server redis "$rport" "$scpu"
    rpid=$SERVER_PID
    start_server cairn "$cport" "$scpu"
    cpid=$SERVER_PID
    local rep p test
    for ((rep = 1; rep <= REPS; rep++)); do
        for p in 16 1; do
            for test in "${TESTS[@]}"; do
                # Alternate which server goes first, so drift in machine load
                # does not always favour the same one.
                if (((rep + p) % 2)); then
                    run_rb "$rport" "$rpid" "$section" "$p" "$test" redis "${ccpu[@]}"
                    run_rb "$cport" "$cpid" "$section" "$p" "$test" cairn "${ccpu[@]}"
                else
                    run_rb "$cport" "$cpid" "$section" "$p" "$test" cairn "${ccpu[@]}"
                    run_rb "$rport" "$rpid" "$section" "$p" "$test" redis "${ccpu[@]}"
                fi
            done
        done
    done
    stop_server "$rpid"
    stop_server "$cpid"
}

print_throughput() { # SECTION TITLE
    local section=$1
    echo
    echo "### $2"
    echo
    echo "| test | redis rps | cairn rps | rps ratio | redis CPU µs/req | cairn CPU µs/req | CPU ratio | redis p99 ms | cairn p99 ms | p99 ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local p test k r c rc cc rl cl
    for p in 16 1; do
        for test in "${TESTS[@]}"; do
            k="P$p-$test"
            r=$(get_med "$section" "$k" redis 4)
            c=$(get_med "$section" "$k" cairn 4)
            rc=$(get_med "$section" "$k" redis 5)
            cc=$(get_med "$section" "$k" cairn 5)
            rl=$(get_med "$section" "$k" redis 6)
            cl=$(get_med "$section" "$k" cairn 6)
            printf '| -P %s %s | %.0f | %.0f | %s | %.2f | %.2f | %s | %.3f | %.3f | %s |\n' \
                "$p" "${test^^}" "$r" "$c" "$(ratio "$c" "$r")" "$rc" "$cc" "$(ratio "$cc" "$rc")" \
                "$rl" "$cl" "$(ratio "$cl" "$rl")"
        done
    done
}

memory() {
    local file="$TMP/sets$MEM_VALUE.resp"
    log "generating $MEM_KEYS SET commands with $MEM_VALUE-byte values"
    "$BENCH" gen-sets --count "$MEM_KEYS" --value-size "$MEM_VALUE" >"$file"
    local srv port pid rss0 rss1 out dbsize used
    for srv in redis cairn; do
        port=$(free_port)
        start_server "$srv" "$port" ""
        pid=$SERVER_PID
        sleep 0.5
        rss0=$(rss_kb "$pid")
        out=$(timeout "$STEP_TIMEOUT" redis-cli -h 127.0.0.1 -p "$port" --pipe <"$file" 2>&1 | tr -d '\r')
        [[ "$out" == *"errors: 0,"* ]] || {
            echo "redis-cli --pipe into $srv failed: $out" >&2
            return 1
        }
        sleep 1
        rss1=$(rss_kb "$pid")
        dbsize=$(rcli "$port" dbsize)
        used=$(info_field "$port" used_memory)
        printf 'memory\tload\t%s\t%s\t%s\t%s\t%s\n' "$srv" "$rss1" "$rss0" "$used" "$dbsize" >>"$RAW"
        log "memory $srv: keys=$dbsize rss_empty=${rss0}kB rss_loaded=${rss1}kB used_memory=$used"
        stop_server "$pid"
    done
    rm -f "$file"
}

print_memory() {
    echo
    echo "### Memory: $MEM_KEYS keys (\`key:%010d\`, $MEM_VALUE-byte values) loaded with \`redis-cli --pipe\`"
    echo
    echo "| metric | redis | cairn | cairn/redis |"
    echo "|---|---:|---:|---:|"
    local r c
    r=$(get_med memory load redis 7)
    c=$(get_med memory load cairn 7)
    printf '| keys (DBSIZE) | %d | %d | |\n' "$r" "$c"
    r=$(get_med memory load redis 4)
    c=$(get_med memory load cairn 4)
    printf '| RSS after load (MiB) | %.1f | %.1f | %s |\n' "$(awk -v x="$r" 'BEGIN{print x/1024}')" \
        "$(awk -v x="$c" 'BEGIN{print x/1024}')" "$(ratio "$c" "$r")"
    local r0 c0
    r0=$(get_med memory load redis 5)
    c0=$(get_med memory load cairn 5)
    printf '| RSS empty (MiB) | %.1f | %.1f | %s |\n' "$(awk -v x="$r0" 'BEGIN{print x/1024}')" \
        "$(awk -v x="$c0" 'BEGIN{print x/1024}')" "$(ratio "$c0" "$r0")"
    printf '| RSS growth per key (bytes) | %.1f | %.1f | %s |\n' \
        "$(awk -v a="$r" -v b="$r0" -v n="$MEM_KEYS" 'BEGIN{print (a-b)*1024/n}')" \
        "$(awk -v a="$c" -v b="$c0" -v n="$MEM_KEYS" 'BEGIN{print (a-b)*1024/n}')" \
        "$(ratio "$((c - c0))" "$((r - r0))")"
    r=$(get_med memory load redis 6)
    c=$(get_med memory load cairn 6)
    printf '| INFO used_memory (MiB) | %.1f | %.1f | %s |\n' "$(awk -v x="$r" 'BEGIN{print x/1048576}')" \
        "$(awk -v x="$c" 'BEGIN{print x/1048576}')" "$(ratio "$c" "$r")"
}

hitratio() {
    local srv port pid out fit_redis="" fit keys policy
    # How many keys with $HR_VALUE-byte values fit in $HR_MAXMEMORY?
    for srv in redis cairn; do
        port=$(free_port)
        start_server "$srv" "$port" "" --maxmemory "$HR_MAXMEMORY" --maxmemory-policy allkeys-lru
        pid=$SERVER_PID
        out=$(set -o pipefail
            "$BENCH" gen-sets --count "$HR_FILL" --value-size "$HR_VALUE" |
                timeout "$STEP_TIMEOUT" redis-cli -h 127.0.0.1 -p "$port" --pipe 2>&1 | tr -d '\r') || true
        [[ "$out" == *"errors: 0,"* ]] || log "fill of $srv reported: $(tail -n1 <<<"$out")"
        fit=$(rcli "$port" dbsize)
        printf 'hitratio\tfit\t%s\t%s\t%s\t%s\n' "$srv" "$fit" "$(info_field "$port" used_memory)" "$(rss_kb "$pid")" >>"$RAW"
        log "fit $srv: $fit keys of $HR_VALUE bytes in $HR_MAXMEMORY (loaded $HR_FILL)"
        ((fit < HR_FILL)) || log "WARNING: $srv did not evict while loading $HR_FILL keys"
        [[ "$srv" == redis ]] && fit_redis=$fit
        stop_server "$pid"
    done
    keys=$((fit_redis * 10))
    printf 'hitratio\tkeyspace\tboth\t%s\n' "$keys" >>"$RAW"
    for policy in allkeys-lru allkeys-lfu; do
        for srv in redis cairn; do
            port=$(free_port)
            start_server "$srv" "$port" "" --maxmemory "$HR_MAXMEMORY" --maxmemory-policy "$policy"
            pid=$SERVER_PID
            log "zipf $policy $srv: keys=$keys warmup=$HR_WARMUP ops=$HR_OPS"
            out=$(timeout "$STEP_TIMEOUT" "$BENCH" zipf --port "$port" --keys "$keys" --ops "$HR_OPS" \
                --warmup "$HR_WARMUP" --value-size "$HR_VALUE" --theta "$HR_THETA" --seed "$HR_SEED" \
                --clients "$HR_CLIENTS" --pipeline "$HR_PIPELINE")
            local hr ops_s
            hr=$(sed -n 's/.*hit_ratio=\([0-9.]*\).*/\1/p' <<<"$out")
            ops_s=$(sed -n 's/.*ops_per_sec=\([0-9.]*\).*/\1/p' <<<"$out")
            [[ -n "$hr" ]] || {
                echo "cairn-bench zipf against $srv gave no result: $out" >&2
                return 1
            }
            printf 'hitratio\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$policy" "$srv" "$hr" "$ops_s" \
                "$(rcli "$port" dbsize)" "$(info_field "$port" used_memory)" "$(rss_kb "$pid")" >>"$RAW"
            log "zipf $policy $srv: hit_ratio=$hr ops/s=$ops_s"
            stop_server "$pid"
        done
    done
}

print_hitratio() {
    local keys
    keys=$(get_med hitratio keyspace both 4)
    echo
    echo "### Hit ratio: read-through Zipf($HR_THETA), $keys keys (10x what fits in redis), $HR_VALUE-byte values, maxmemory $HR_MAXMEMORY"
    echo
    echo "Warm-up $HR_WARMUP GETs, then $HR_OPS measured GETs; seed $HR_SEED, $HR_CLIENTS connections, pipeline $HR_PIPELINE."
    echo
    echo "| policy | redis hit ratio | cairn hit ratio | cairn/redis | redis keys at end | cairn keys at end | redis used_memory MiB | cairn used_memory MiB | redis RSS MiB | cairn RSS MiB |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local policy r c
    r=$(get_med hitratio fit redis 4)
    c=$(get_med hitratio fit cairn 4)
    printf '| (fill, lru) keys that fit | %d | %d | %s | | | %.1f | %.1f | %.1f | %.1f |\n' "$r" "$c" "$(ratio "$c" "$r")" \
        "$(get_med hitratio fit redis 5 | awk '{print $1/1048576}')" "$(get_med hitratio fit cairn 5 | awk '{print $1/1048576}')" \
        "$(get_med hitratio fit redis 6 | awk '{print $1/1024}')" "$(get_med hitratio fit cairn 6 | awk '{print $1/1024}')"
    for policy in allkeys-lru allkeys-lfu; do
        r=$(get_med hitratio "$policy" redis 4)
        c=$(get_med hitratio "$policy" cairn 4)
        printf '| %s | %.4f | %.4f | %s | %d | %d | %.1f | %.1f | %.1f | %.1f |\n' "$policy" "$r" "$c" "$(ratio "$c" "$r")" \
            "$(get_med hitratio "$policy" redis 6)" "$(get_med hitratio "$policy" cairn 6)" \
            "$(get_med hitratio "$policy" redis 7 | awk '{print $1/1048576}')" "$(get_med hitratio "$policy" cairn 7 | awk '{print $1/1048576}')" \
            "$(get_med hitratio "$policy" redis 8 | awk '{print $1/1024}')" "$(get_med hitratio "$policy" cairn 8 | awk '{print $1/1024}')"
    done
}

# ---------------------------------------------------------------- main
START=$(date +%s)
echo "## cairn vs redis-server ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "- machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
echo "- $(redis-server --version | awk '{print $1, $2, $3}'); cairn $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty'), --threads $CAIRN_THREADS (0 = one per CPU) unpinned, 1 pinned"
echo "- mode: $( ((QUICK)) && echo quick || echo full), $REPS repetition(s), medians reported; -n $N_P16 at -P 16, -n $N_P1 at -P 1"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

if want throughput; then
    log "section: throughput"
    throughput throughput 0
fi
if want memory; then
    log "section: memory"
    memory
fi
if want hitratio; then
    log "section: hitratio"
    hitratio
fi
if want pinned; then
    log "section: pinned"
    throughput pinned 1
fi

want throughput && print_throughput throughput "Throughput: redis-benchmark -c $CLIENTS -r $RANDOM_KEYS (unpinned; median of $REPS)"
want memory && print_memory
want hitratio && print_hitratio
want pinned && print_throughput pinned "Pinned: taskset -c 0 redis-benchmark, server on taskset -c 1 (median of $REPS)"
echo
echo "- load average at end: $(cut -d' ' -f1-3 /proc/loadavg); took $(($(date +%s) - START)) s; raw rows: $RAW"
