#!/usr/bin/env bash
# Packs what benches/vs-etcd.sh needs into .devbench/ so that it runs on a
# machine that reaches no package registry (the lent 16-core machine of
# ../shared/STACK.md): the release cairn (stripped), benches/etcd-load,
# Debian's etcd, and three small bash stand-ins for the tools the script only
# uses to wait and to read counters (redis-cli SET/pipe, etcdctl endpoint
# health, curl GET). The stand-ins talk RESP / HTTP/1.0 over bash's
# /dev/tcp to 127.0.0.1 only.
#
#   benches/device-bundle.sh            # builds nothing; run vs-etcd.sh once first
#   # there: PATH=$PWD/.devbench/bin:$PATH benches/device-vs-etcd.sh ...
#
# Binaries need glibc >= 2.34 on the target. .devbench/ is ignored by git
# (listed in .git/info/exclude by this script).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/.devbench"
CAIRN="$ROOT/target/release/cairn"
LOAD="$ROOT/benches/etcd-load/target/release/etcd-load"
for f in "$CAIRN" "$LOAD" "$(command -v etcd)"; do
    [[ -x "$f" ]] || {
        echo "missing $f: build with benches/vs-etcd.sh --quick first" >&2
        exit 1
    }
done
grep -qx '/.devbench/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.devbench/' >>"$ROOT/.git/info/exclude"
rm -rf "$OUT"
mkdir -p "$OUT/bin"
strip -o "$OUT/cairn" "$CAIRN"
cp "$LOAD" "$OUT/etcd-load"
cp "$(command -v etcd)" "$OUT/bin/etcd"

cat >"$OUT/bin/redis-cli" <<'EOF'
#!/usr/bin/env bash
# Stand-in for redis-cli: `redis-cli -h H -p P CMD ARG...` (one command) or
# commands one per line on stdin; prints OK / (error) ... / values per reply.
host=127.0.0.1 port=6379
while (($#)); do
    case "$1" in
    -h) host=$2; shift 2 ;;
    -p) port=$2; shift 2 ;;
    *) break ;;
    esac
done
[[ "$host" == 127.* ]] || { echo "stand-in redis-cli talks to 127.0.0.0/8 only" >&2; exit 2; }
exec 3<>"/dev/tcp/$host/$port" || exit 1
send() { # words...
    local w out="*$#"$'\r\n'
    for w in "$@"; do out+="\$${#w}"$'\r\n'"$w"$'\r\n'; done
    printf '%s' "$out" >&3
}
reply() {
    local line
    IFS= read -r -t 5 line <&3 || return 1
    line=${line%$'\r'}
    case "$line" in
    +*) echo "${line:1}" ;;
    -*) echo "(error) ${line:1}" ;;
    :*) echo "(integer) ${line:1}" ;;
    \$-1) echo "(nil)" ;;
    \$*) IFS= read -r -t 5 line <&3 || return 1; echo "${line%$'\r'}" ;;
    *) echo "$line" ;;
    esac
}
if (($#)); then
    send "$@"
    reply
else
    n=0
    while read -r -a words; do
        ((${#words[@]})) || continue
        send "${words[@]}"
        n=$((n + 1))
    done
    for ((i = 0; i < n; i++)); do reply || exit 1; done
fi
EOF

cat >"$OUT/bin/curl" <<'EOF'
#!/usr/bin/env bash
# Stand-in for `curl -s http://127.0.0.1:PORT/PATH`: HTTP/1.0 GET, body to stdout.
url=${!#}
hp=${url#http://}
path=/${hp#*/}
hp=${hp%%/*}
[[ "$hp" == 127.* ]] || exit 2
exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}" || exit 7
printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hp" >&3
body=0
while IFS= read -r -t 5 line <&3 || [[ -n "$line" ]]; do
    if ((body)); then echo "$line"; elif [[ "${line%$'\r'}" == "" ]]; then body=1; fi
    line=""
done
EOF

cat >"$OUT/bin/etcdctl" <<'EOF'
#!/usr/bin/env bash
# Stand-in for `etcdctl --endpoints=URLS endpoint health`: every member's
# /health says true. Anything else (endpoint status): not available.
eps=""
for a in "$@"; do [[ "$a" == --endpoints=* ]] && eps=${a#--endpoints=}; done
[[ " $* " == *" endpoint health "* ]] || { echo "stand-in etcdctl: only 'endpoint health'" >&2; exit 1; }
IFS=, read -r -a list <<<"$eps"
for e in "${list[@]}"; do
    curl -s "$e/health" | grep -q '"health":"true"' || exit 1
done
EOF
chmod +x "$OUT/bin/"*
du -sh "$OUT"
