// The handoff floor's addon (crates/bench-floor: bench-only, never shipped), built by
// scripts/bench/run.sh into target/bench-floor.node. `load()` gives its functions, or
// `{ skipped }` saying how to build it. Main thread only: its listener thread would outlive a
// worker's environment.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const { isMainThread } = require('node:worker_threads')

const REPO = path.join(__dirname, '..', '..')
const ADDON = path.join(process.env.CARGO_TARGET_DIR || path.join(REPO, 'target'), 'bench-floor.node')

function load() {
  if (!isMainThread) throw new Error('the handoff floor runs on the main thread only')
  if (process.platform !== 'linux') return { skipped: 'the handoff floor needs Linux futexes' }
  if (!fs.existsSync(ADDON)) {
    return { skipped: `not built: npm run bench builds it (cargo build --release -p robust-mutex-bench-floor, copied to ${path.relative(REPO, ADDON)})` }
  }
  return require(ADDON)
}

module.exports = { load, ADDON }
