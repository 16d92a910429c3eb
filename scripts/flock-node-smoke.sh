#!/usr/bin/env bash
# The Node addon on the file-lock backend with flock — the code macOS runs (and FreeBSD would) —
# built and run on Linux: the `file-lock-backend` feature with `--cfg robust_mutex_flock`, loaded
# through the package's entry point. Runs scripts/node-smoke/smoke.cjs (lock, timeouts, a
# terminated and an exiting holder process -> ownerDied) and test:dist's smoke test, after
# checking that the lock file is the file-lock backend's (magic RMFLOCK). Needs
# `npm run build:ts` (index.js).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target_dir="$PWD/target/flock" # shared with the flock Rust suite in .ci/run (same flags)
stage="$target_dir/consumer/node_modules/robust-mutex"

RUSTFLAGS="--cfg robust_mutex_flock" cargo build --locked -p robust-mutex-node \
  --features robust-mutex/file-lock-backend --target-dir "$target_dir"

rm -rf "$target_dir/consumer" && mkdir -p "$stage"
for f in index.js native.js errors.js binding.js package.json; do
  [ -f "$f" ] || { echo "flock-node-smoke: $f missing (npm run build:ts)" >&2; exit 1; }
  cp "$f" "$stage/"
done
# The name binding.js looks for on this machine (checked: the addon it loads must be this one).
addon_name="$(node -p "'robust-mutex.linux-' + process.arch + '-' + (process.report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl') + '.node'")"
cp "$target_dir/debug/librobust_mutex_node.so" "$stage/$addon_name"

# The backend is the file-lock one: a file it creates starts with its magic.
node -e "
  const { SharedMutex } = require(process.argv[1])
  const path = require('node:path').join(require('node:os').tmpdir(), 'flock-node-smoke-' + process.pid)
  SharedMutex.open(path).close()
  const magic = require('node:fs').readFileSync(path).subarray(0, 7).toString('latin1')
  SharedMutex.destroy(path)
  if (magic !== 'RMFLOCK') { console.error('flock-node-smoke: the addon is not on the file-lock backend (magic ' + JSON.stringify(magic) + ')'); process.exit(1) }
" "$stage"

node scripts/node-smoke/smoke.cjs "$stage"
cp scripts/dist/smoke/{holder.cjs,scenario.cjs,smoke.cjs,smoke.mjs} "$target_dir/consumer/"
# A package.json of its own: without one the consumer lies in this repository's package scope and
# require('robust-mutex') resolves to the repository itself (self-reference through "exports"
# comes before node_modules): the normal addon, not the staged flock one.
echo '{ "name": "robust-mutex-flock-consumer", "private": true }' > "$target_dir/consumer/package.json"
for entry in smoke.cjs smoke.mjs; do
  (cd "$target_dir/consumer" && SMOKE_EXPECT_ADDON="$addon_name" node "$entry")
done
