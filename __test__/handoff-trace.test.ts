// The bench-only handoff timestamps (crates/robust-mutex-node/src/trace.rs): recorded along a
// contended lock()'s wake path only when ROBUST_MUTEX_TRACE_HANDOFF=1, and in path order.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import test from 'ava'

const ROOT = path.join(__dirname, '..')

// Another handle of this thread holds the lock, so lock() waits on the native watcher; the
// script prints the trace and the CLOCK_MONOTONIC times around the wait.
const SCRIPT = `
const { SharedMutex } = require(${JSON.stringify(path.join(ROOT, 'index.js'))})
const binding = require(${JSON.stringify(path.join(ROOT, 'binding.js'))})
const holder = SharedMutex.anonymous()
const waiter = SharedMutex.fromFd(holder.fd)
const held = holder.lockSync()
const pending = waiter.lock()
setTimeout(async () => {
  const releasedAt = process.hrtime.bigint()
  held.release()
  const guard = await pending
  const resumedAt = process.hrtime.bigint()
  guard.release()
  console.log(JSON.stringify({ trace: binding.handoffTrace(), releasedAt: String(releasedAt), resumedAt: String(resumedAt) }))
}, 50)
`

function run(trace: boolean) {
  const env = { ...process.env, ROBUST_MUTEX_TRACE_HANDOFF: trace ? '1' : '' }
  const result = spawnSync(process.execPath, ['-e', SCRIPT], { encoding: 'utf8', timeout: 20_000, env })
  if (result.status !== 0) throw new Error(`script failed: ${result.stderr}`)
  return JSON.parse(result.stdout) as { trace: string[]; releasedAt: string; resumedAt: string }
}

test('handoffTrace() records the wake path in order when ROBUST_MUTEX_TRACE_HANDOFF=1', (t) => {
  const { trace, releasedAt, resumedAt } = run(true)
  const [woke, queued, onJsThread] = trace.map(BigInt)
  t.true(woke >= BigInt(releasedAt), 'the watcher woke after the release')
  t.true(queued >= woke, 'queued after waking')
  t.true(onJsThread >= woke, 'settled on the JS thread after the watcher woke')
  t.true(BigInt(resumedAt) >= onJsThread, 'the await resumed after the settlement ran')
})

test('handoffTrace() records nothing without ROBUST_MUTEX_TRACE_HANDOFF=1', (t) => {
  t.deepEqual(run(false).trace, ['0', '0', '0'])
})
