#!/usr/bin/env bash
# Uncontended lock+unlock cost of the two Unix backends, measured one after the other on this
# machine: the robust pthread mutex (the Linux default) and the file-lock backend (the default on
# macOS and FreeBSD, forced here by the `file-lock-backend` feature). Prints both figures and the
# ratio file-lock / pthread.
#
# Usage: scripts/bench-backends.sh [iterations for the pthread backend] [iterations for file-lock]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pthread_n="${1:-5000000}"
file_lock_n="${2:-200000}"
pthread="$(cargo run -q --release --locked -p robust-mutex --example bench -- "$pthread_n")"
file_lock="$(CARGO_TARGET_DIR=target/file-lock cargo run -q --release --locked -p robust-mutex \
  --features file-lock-backend --example bench -- "$file_lock_n")"
echo "$pthread"
echo "$file_lock"
field() { sed -n "s/^result .*$2=\([0-9.]*\).*/\1/p" <<<"$1"; }
for op in lock_ns try_ns; do
  awk -v a="$(field "$pthread" "$op")" -v b="$(field "$file_lock" "$op")" -v op="$op" \
    'BEGIN { printf "%s: pthread %.2f ns, file-lock %.2f ns, file-lock / pthread = %.1fx\n", op, a, b, b / a }'
done
