#!/usr/bin/env bash
# Fuzzes cairn's decoders of untrusted bytes (RESP, peer messages, log
# records, snapshot files, the config file) with libFuzzer (cargo-fuzz) on
# stable Rust.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default 60 s, every target
#
# Runs every target in fuzz/fuzz_targets/ (or only the TARGETs named, e.g.
# `scripts/fuzz.sh 20 config`) in parallel, each for SECONDS
# (so wall time is about SECONDS plus the build), and exits non-zero if any
# target crashes, panics, times out or runs out of memory. The reproducer is
# left in fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# (from fuzz/). New interesting inputs accumulate in fuzz/corpus/<target>/
# (git-ignored); the committed seeds are in fuzz/seeds/<target>/.
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); no nightly
# toolchain can be installed here, so RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept them. cargo-fuzz itself is installed from crates.io if it
# is missing (about 1 minute on 2 cores; the first build of the targets,
# which compiles libFuzzer, takes about 2 more).
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac
shift $(($# > 0 ? 1 : 0))
[ "$seconds" -ge 1 ] || seconds=1

CARGO_FUZZ_VERSION=0.13.2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    # A debug build of the tool: it only drives cargo and libFuzzer, and
    # builds in half the time of a release one.
    cargo install cargo-fuzz --locked --debug --version "$CARGO_FUZZ_VERSION"
fi

targets=()
if [ $# -gt 0 ]; then
    for t in "$@"; do
        if [ ! -f "fuzz_targets/$t.rs" ]; then
            echo "fuzz.sh: no target '$t' (fuzz/fuzz_targets/$t.rs)" >&2
            exit 2
        fi
        targets+=("$t")
    done
else
    for f in fuzz_targets/*.rs; do
        t="$(basename "$f" .rs)"
        targets+=("$t")
    done
fi

echo "== building ${targets[*]}"
build_start=$SECONDS
if [ $# -gt 0 ]; then
    for t in "${targets[@]}"; do
        cargo fuzz build --release "$t"
    done
else
    cargo fuzz build --release
fi
echo "== built in $((SECONDS - build_start)) s"

# libFuzzer options: bounded time; inputs up to 4 KiB; any single input
# slower than 10 s or allocating over 256 MiB at once (or 1 GiB in all)
# counts as a failure, which is what the decoders' length limits promise.
run_args=(
    -max_total_time="$seconds"
    -max_len=4096
    -timeout=10
    -rss_limit_mb=1024
    -malloc_limit_mb=256
    -print_final_stats=1
)

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
pids=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    # git does not keep empty folders: a target without committed seeds
    # would make libFuzzer exit at once ("No such file or directory").
    if ! compgen -G "seeds/$t/*" >/dev/null; then
        echo "fuzz.sh: no committed seeds in fuzz/seeds/$t (add at least one file)" >&2
        exit 2
    fi
    # The first corpus directory receives new inputs; seeds stay read-only.
    cargo fuzz run --release "$t" "corpus/$t" "seeds/$t" -- "${run_args[@]}" \
        >"$logs/$t.log" 2>&1 &
    pids+=($!)
done

failed=0
for i in "${!targets[@]}"; do
    t="${targets[$i]}"
    if wait "${pids[$i]}"; then
        status=ok
    else
        status=FAILED
        failed=1
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' || true)"
    cov="$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -n 1 || true)"
    echo "== $t: $status (${execs:-?} executions, ${cov:-cov: ?})"
    if [ "$status" = FAILED ]; then
        # The panic message, the reproducer's path and its bytes.
        grep -E -A4 'panicked at' "$logs/$t.log" | grep -v -E '^ +[0-9]+: |^stack backtrace' | head -n 20 || true
        grep -E 'SUMMARY:|Test unit written|Base64:' "$logs/$t.log" || tail -n 30 "$logs/$t.log"
    fi
done
exit "$failed"
