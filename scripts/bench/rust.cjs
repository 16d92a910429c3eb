// The Rust guard next to raw pthread_mutex_lock/unlock on the same mapping: builds and runs the
// crate's `bench` example (crates/robust-mutex/examples/bench.rs), which prints the ratio.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

/** The example's report lines, or a one-line reason it could not run. */
function rustGuardVsPthread(iterations) {
  const root = path.join(__dirname, '..', '..')
  const run = spawnSync(
    'cargo',
    ['run', '--quiet', '--release', '--locked', '-p', 'robust-mutex', '--example', 'bench', '--', String(iterations)],
    { cwd: root, encoding: 'utf8' },
  )
  if (run.error) return { skipped: `cargo is not available (${run.error.code ?? run.error.message})` }
  if (run.status !== 0) return { skipped: `the Rust example failed: ${(run.stderr || '').trim().split('\n').pop()}` }
  return { lines: run.stdout.trim().split('\n').filter((l) => !l.startsWith('result ')) }
}

module.exports = { rustGuardVsPthread }
