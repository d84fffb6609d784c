#!/usr/bin/env bash
# Packs a release cairn and Debian's redis-server/redis-benchmark (with
# every library they load) into .bench/bundle, for running
# benches/multicore.sh on a machine without a package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.bench/bundle
rm -rf "$out"; mkdir -p "$out/bin" "$out/lib"
cargo build --release -p cairn-cli
cp target/release/cairn "$out/bin/"
cp -L /usr/bin/redis-server /usr/bin/redis-benchmark /usr/bin/redis-cli "$out/bin/"
for b in /usr/bin/redis-server /usr/bin/redis-benchmark /usr/bin/redis-cli; do
  ldd "$b" | awk '/=>/ {print $3} /ld-linux/ {print $1}' | while read -r l; do
    if [ -f "$l" ]; then cp -L "$l" "$out/lib/"; fi
  done
done
cp benches/multicore.sh "$out/"
du -sh "$out"
