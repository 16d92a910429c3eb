#!/usr/bin/env bash
# `npm run bench`: installs the peers the bench compares with into their own package
# (scripts/bench/peers; fs-ext and os-lock compile with node-gyp, which npm 11 runs only when
# asked to, hence the explicit rebuild), raises the descriptor limit for the 10,000-open-mutexes
# row, and runs the bench. A peer that still cannot load is reported as skipped by the bench.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
peers=scripts/bench/peers
if [[ ! -d $peers/node_modules/proper-lockfile || ! -d $peers/node_modules/advisory-lock ]]; then
  npm install --prefix "$peers" --no-audit --no-fund --loglevel=error
  npm rebuild --prefix "$peers" fs-ext os-lock --foreground-scripts --loglevel=error >/dev/null ||
    echo "bench: fs-ext/os-lock did not build; their rows are skipped" >&2
fi
# The handoff floor's addon (crates/bench-floor), bench-only: never part of the library's addon.
if [[ $(uname -s) == Linux ]]; then
  cargo build --release --locked --quiet -p robust-mutex-bench-floor
  target_dir=${CARGO_TARGET_DIR:-target}
  cp "$target_dir/release/librobust_mutex_bench_floor.so" "$target_dir/bench-floor.node"
fi
ulimit -n "$(ulimit -Hn)"
exec node --expose-gc scripts/bench.cjs "$@"
