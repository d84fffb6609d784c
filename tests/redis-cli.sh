#!/usr/bin/env bash
# Real-client checks: drives a cairn server with the stock redis-cli and
# redis-benchmark (Debian redis-tools 7.x) and compares outputs exactly.
#
#   bash tests/redis-cli.sh
#
# Environment:
#   CAIRN_BIN    cairn binary to test (default: target/debug/cairn, built
#                with `cargo build -p cairn-cli` first)
#   TARGET_PORT  test a server already listening on 127.0.0.1:PORT instead
#                of starting cairn (e.g. a real redis-server, to check the
#                expectations themselves)
#
# Prints `redis-cli: N passed, M failed` last; exits non-zero on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-redis-cli.XXXXXX")
SERVER_PID=""

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- tools

if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "redis-cli/redis-benchmark missing: installing redis-tools" >&2
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-tools
fi

# -------------------------------------------------------------- server

if [[ -n "${TARGET_PORT:-}" ]]; then
    PORT=$TARGET_PORT
else
    if [[ -z "${CAIRN_BIN:-}" ]]; then
        (cd "$ROOT" && cargo build -q -p cairn-cli)
        CAIRN_BIN=$ROOT/target/debug/cairn
    fi
    if [[ ! -x "$CAIRN_BIN" ]]; then
        echo "no cairn binary at $CAIRN_BIN" >&2
        exit 1
    fi
    # Port 0: the server picks a free port and logs it, so no race.
    "$CAIRN_BIN" server --bind 127.0.0.1 --port 0 >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    PORT=""
    for _ in $(seq 100); do
        PORT=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/server.log" |
            grep -o 'addr=127\.0\.0\.1:[0-9]*' | head -n1 | cut -d: -f2 || true)
        [[ -n "$PORT" ]] && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "cairn exited early:" >&2
            cat "$WORK/server.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [[ -z "$PORT" ]]; then
        echo "cairn did not report its port:" >&2
        cat "$WORK/server.log" >&2
        exit 1
    fi
fi
echo "testing 127.0.0.1:$PORT"

# ------------------------------------------------------------- helpers

PASS=0
FAIL=0

cli() { timeout 30 redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

ok() { PASS=$((PASS + 1)); }

bad() {
    FAIL=$((FAIL + 1))
    echo "FAIL: $1" >&2
    if [[ $# -gt 1 ]]; then
        printf '  expected: %q\n  got:      %q\n' "$2" "$3" >&2
    fi
}

# check NAME EXPECTED COMMAND... : stdout+stderr of COMMAND equal EXPECTED
# (trailing newlines aside; redis-cli prints raw replies when piped).
check() {
    local name=$1 want=$2 got rc=0
    shift 2
    got=$("$@" 2>&1) || rc=$?
    if [[ $rc -ne 0 ]]; then got="<exit $rc> $got"; fi
    if [[ "$got" == "$want" ]]; then ok; else bad "$name" "$want" "$got"; fi
}

# c NAME EXPECTED ARGS... : one redis-cli command.
c() {
    local name=$1 want=$2
    shift 2
    check "$name" "$want" cli "$@"
}

# ---------------------------------------------------------------- checks

c "flushall" "OK" FLUSHALL
c "ping" "PONG" PING
c "ping message" "hello world" PING "hello world"
c "echo binary-ish" $'a\tb' ECHO $'a\tb'

# SET / GET and SET options
c "set" "OK" SET foo bar
c "get" "bar" GET foo
c "get missing" "" GET missing
c "set nx on existing" "" SET foo x NX
c "set nx on new" "OK" SET newkey v NX
c "set xx on existing" "OK" SET foo baz XX
c "set xx on missing" "" SET nothere v XX
c "set get returns old" "baz" SET foo qux GET
c "set get on missing" "" SET fresh v GET
c "get after set get" "qux" GET foo
c "set ifeq match" "OK" SET foo matched IFEQ qux
c "set ifeq mismatch" "" SET foo other IFEQ wrong
c "get after ifeq" "matched" GET foo
c "set ex" "OK" SET exkey v EX 100
c "ttl after set ex" "100" TTL exkey
c "set px" "OK" SET pxkey v PX 100000
pttl=$(cli PTTL pxkey)
if [[ "$pttl" =~ ^[0-9]+$ ]] && ((pttl > 95000 && pttl <= 100000)); then ok; else bad "pttl after set px (got '$pttl')"; fi
c "set keepttl" "OK" SET exkey v2 KEEPTTL
c "ttl after keepttl" "100" TTL exkey
c "set clears ttl" "OK" SET exkey v3
c "ttl after plain set" "-1" TTL exkey
c "set ex 0" "ERR invalid expire time in 'set' command" SET exkey v EX 0
c "set syntax" "ERR syntax error" SET foo v NX XX

# Counters
c "incr new" "1" INCR counter
c "incrby" "11" INCRBY counter 10
c "decr" "10" DECR counter
c "decrby" "7" DECRBY counter 3
c "incrby negative" "-3" INCRBY counter -10
c "incr non-integer" "ERR value is not an integer or out of range" INCR foo
c "incrbyfloat new" "1.5" INCRBYFLOAT fl 1.5
c "incrbyfloat" "1.75" INCRBYFLOAT fl 0.25
c "incrbyfloat exp" "5001.75" INCRBYFLOAT fl 5.0e3
c "incrbyfloat on int" "-2.5" INCRBYFLOAT counter 0.5
c "incrbyfloat non-float" "ERR value is not a valid float" INCRBYFLOAT foo 1

# MSET / MGET
c "mset" "OK" MSET a 1 b 2 c 3
c "mget" $'1\n2\n\n3' MGET a b nope c
c "msetnx blocked" "0" MSETNX a 9 zz 9
c "msetnx wrote nothing" "" GET zz

# APPEND / STRLEN / GETRANGE / SETRANGE
c "append new" "5" APPEND ap Hello
c "append" "11" APPEND ap " World"
c "get appended" "Hello World" GET ap
c "strlen" "11" STRLEN ap
c "strlen missing" "0" STRLEN nope
c "getrange" "Hello" GETRANGE ap 0 4
c "getrange negative" "World" GETRANGE ap -5 -1
c "getrange out of range" "" GETRANGE ap 100 200
c "setrange" "11" SETRANGE ap 6 Redis
c "get after setrange" "Hello Redis" GET ap
c "setrange pads" "6" SETRANGE padded 5 x
c "padded value" '"\x00\x00\x00\x00\x00x"' --no-raw GET padded

# Bitmaps and LCS
c "setbit" "0" SETBIT bm 7 1
c "getbit" "1" GETBIT bm 7
c "setbit grows" "0" SETBIT bm 23 1
c "bitcount" "2" BITCOUNT bm
c "bitcount bit range" "1" BITCOUNT bm 8 -1 BIT
c "bitpos" "7" BITPOS bm 1
c "bitop" "3" BITOP NOT bmn bm
c "bitfield" $'1\n-1' BITFIELD bm GET u8 0 INCRBY i4 '#1' -2
c "bitfield_ro" "-1" BITFIELD_RO bm GET i4 4
c "bitfield bad type" "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is." BITFIELD bm GET u64 0
c "setbit bad offset" "ERR bit offset is not an integer or out of range" SETBIT bm -1 1
c "lcs set" "OK" MSET l1 ohmytext l2 mynewtext
c "lcs" "mytext" LCS l1 l2
c "lcs len" "6" LCS l1 l2 LEN

# EXPIRE / TTL / PERSIST
c "expire" "1" EXPIRE ap 100
c "ttl" "100" TTL ap
c "persist" "1" PERSIST ap
c "ttl after persist" "-1" TTL ap
c "persist without ttl" "0" PERSIST ap
c "ttl missing" "-2" TTL nope
c "expire missing" "0" EXPIRE nope 10
c "pexpire" "1" PEXPIRE b 100000
pttl=$(cli PTTL b)
if [[ "$pttl" =~ ^[0-9]+$ ]] && ((pttl > 95000 && pttl <= 100000)); then ok; else bad "pttl after pexpire (got '$pttl')"; fi
c "set short ttl" "OK" SET brief v PX 100
sleep 0.3
c "expired key is gone" "" GET brief

# DEL / EXISTS / TYPE
c "del" "2" DEL a b nope
c "exists one" "1" EXISTS a c
c "exists counts repeats" "2" EXISTS c c
c "type string" "string" TYPE c
c "type none" "none" TYPE nope

# KEYS / SCAN / RENAME / COPY / DBSIZE / FLUSHALL
c "flushall before keys" "OK" FLUSHALL
c "mset keys" "OK" MSET k:1 a k:2 b k:3 c other d
check "keys pattern" $'k:1\nk:2\nk:3' bash -c "redis-cli -h 127.0.0.1 -p $PORT KEYS 'k:*' | sort"
check "keys all" "4" bash -c "redis-cli -h 127.0.0.1 -p $PORT KEYS '*' | wc -l"
check "scan pattern" $'k:1\nk:2\nk:3' bash -c "redis-cli -h 127.0.0.1 -p $PORT --scan --pattern 'k:*' | sort"
check "scan all" $'k:1\nk:2\nk:3\nother' bash -c "redis-cli -h 127.0.0.1 -p $PORT --scan | sort"
c "rename" "OK" RENAME k:1 k:one
c "renamed value" "a" GET k:one
c "rename source gone" "0" EXISTS k:1
c "rename missing" "ERR no such key" RENAME nope x
c "copy" "1" COPY k:2 k:two
c "copy onto existing" "0" COPY k:2 k:two
c "copy replace" "1" COPY k:3 k:two REPLACE
c "copied value" "c" GET k:two
c "dbsize" "5" DBSIZE
c "flushall" "OK" FLUSHALL
c "dbsize after flushall" "0" DBSIZE

# HELLO 3 (RESP3), INFO, CONFIG, CLIENT, COMMAND
hello=$(cli -3 HELLO 3)
if grep -qx 'proto 3' <<<"$hello" && grep -qx 'server redis' <<<"$hello" &&
    grep -q '^version ' <<<"$hello"; then ok; else bad "hello 3" "server redis / version / proto 3" "$hello"; fi
c "resp3 get" "" -3 GET nope
c "resp3 incr" "1" -3 INCR r3
# (Captured first: grep -q in a pipe would SIGPIPE redis-cli under pipefail.)
info=$(cli INFO | tr -d '\r')
if grep -q '^redis_version:[0-9]' <<<"$info"; then ok; else bad "info has redis_version" "" "$info"; fi
info=$(cli INFO server | tr -d '\r')
if grep -q '^redis_version:[0-9]' <<<"$info"; then ok; else bad "info server has redis_version" "" "$info"; fi
c "config get maxmemory" $'maxmemory\n0' CONFIG GET maxmemory
c "config set maxmemory" "OK" CONFIG SET maxmemory 100mb
c "config get maxmemory set" $'maxmemory\n104857600' CONFIG GET maxmemory
c "config set maxmemory back" "OK" CONFIG SET maxmemory 0
c "config get maxmemory back" $'maxmemory\n0' CONFIG GET maxmemory
# A CONFIG SET that fails on a later pair changes nothing (hz stays 10).
c "config set fails as a whole" "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 1000000 inclusive" CONFIG SET hz 20 maxclients 0
c "config set failure undone" $'hz\n10' CONFIG GET hz
check "client setname/getname" $'OK\ntester' bash -c "printf 'CLIENT SETNAME tester\nCLIENT GETNAME\n' | redis-cli -h 127.0.0.1 -p $PORT"
c "client getname unset" "" CLIENT GETNAME
# COMMAND COUNT counts top-level commands; COMMAND LIST also names
# subcommands (config|get), as in Redis.
count=$(cli COMMAND COUNT)
listed=$(cli COMMAND LIST | grep -vc '|' || true)
if [[ "$count" =~ ^[0-9]+$ ]] && ((count >= 40)) && [[ "$count" == "$listed" ]]; then ok; else
    bad "command count" "a number >= 40 equal to COMMAND LIST's $listed top-level names" "$count"
fi

# Mass insert with --pipe (raw RESP on stdin)
c "flushall before pipe" "OK" FLUSHALL
for ((i = 0; i < 10000; i++)); do
    printf '*3\r\n$3\r\nSET\r\n$%d\r\npipe:%d\r\n$%d\r\nvalue:%d\r\n' \
        $((5 + ${#i})) "$i" $((6 + ${#i})) "$i"
done >"$WORK/pipe.resp"
pipe_out=$(timeout 60 redis-cli -h 127.0.0.1 -p "$PORT" --pipe <"$WORK/pipe.resp" 2>&1) || true
check "pipe summary" "errors: 0, replies: 10000" tail -n1 <<<"$pipe_out"
c "dbsize after pipe" "10000" DBSIZE
c "piped value" "value:9999" GET pipe:9999

# ------------------------------------------------------------ benchmarks

# bench NAME ARGS... : every test of ping,set,get,incr,mset must report a
# rate, and nothing may mention an error.
bench() {
    local name=$1 out rc=0
    shift
    out=$(timeout 300 redis-benchmark -h 127.0.0.1 -p "$PORT" -q -n 20000 \
        -t ping,set,get,incr,mset "$@" 2>&1 | tr '\r' '\n') || rc=$?
    local final
    final=$(grep 'requests per second' <<<"$out" || true)
    local missing=""
    for t in PING_INLINE PING_MBULK SET GET INCR 'MSET (10 keys)'; do
        grep -q "^$t: [0-9.]* requests per second" <<<"$final" || missing+=" '$t'"
    done
    if [[ $rc -ne 0 ]]; then
        bad "$name: redis-benchmark exited $rc"
    elif grep -qiE 'err|fail|refused|reset' <<<"$out"; then
        bad "$name: errors reported" "" "$(grep -iE 'err|fail|refused|reset' <<<"$out" | head -n5)"
    elif [[ -n "$missing" ]]; then
        bad "$name: missing results for$missing" "" "$final"
    else
        ok
        echo "$name:"
        sed 's/^/  /' <<<"$final"
    fi
}

bench "redis-benchmark"
bench "redis-benchmark -P 16" -P 16
c "alive after benchmarks" "PONG" PING

echo "redis-cli: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
