// Handoff latency between two processes: this process holds the lock, a child waits in
// `await lock()` (parked on the native watcher), this process releases; the figure is the time
// from just before release() here to the child's promise resolving there. Both read
// CLOCK_MONOTONIC (process.hrtime), which is one clock for the whole machine.
//
// The child runs with ROBUST_MUTEX_TRACE_HANDOFF=1, so the addon also records when its watcher
// thread woke, when it queued the settlement, and when that ran on the JS thread
// (crates/robust-mutex-node/src/trace.rs): each handoff is split into stages.
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const readline = require('node:readline')
const { SharedMutex } = require('../../index.js')
const binding = require('../../binding.js')

/** The stages of a handoff, between consecutive timestamps. */
const STAGES = [
  'release() -> watcher thread awake', // unlock, futex wake, scheduling, the pass-on wake
  'watcher awake -> settlement queued', // the threadsafe-function call
  'queued -> running on the JS thread', // the event loop waking up
  'on the JS thread -> await resumed', // promise jobs, the trylock
]

async function child(lockPath) {
  const mutex = SharedMutex.open(lockPath)
  const lines = readline.createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line === 'end') break
    const pending = mutex.lock()
    fs.writeSync(1, 'waiting\n')
    const guard = await pending
    const at = process.hrtime.bigint()
    const [woke, queued, onJsThread] = binding.handoffTrace()
    guard.release()
    fs.writeSync(1, `${woke} ${queued} ${onJsThread} ${at}\n`)
  }
  process.exit(0)
}

/** `rounds` handoffs; returns the latencies, each one's stages and the holder's release() calls (µs). */
async function handoffLatency(lockPath, rounds) {
  const mutex = SharedMutex.open(lockPath)
  const proc = spawn(process.execPath, [__filename, lockPath], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ROBUST_MUTEX_TRACE_HANDOFF: '1' },
  })
  const lines = readline.createInterface({ input: proc.stdout })[Symbol.asyncIterator]()
  const next = async () => (await lines.next()).value
  const samples = []
  const stages = STAGES.map(() => [])
  const releaseCalls = []
  for (let i = 0; i < rounds; i++) {
    const guard = mutex.lockSync()
    proc.stdin.write('go\n')
    await next() // "waiting"
    await new Promise((r) => setTimeout(r, 3)) // let it park in the kernel
    const releasedAt = process.hrtime.bigint()
    guard.release()
    const returnedAt = process.hrtime.bigint()
    const [woke, queued, onJsThread, resolvedAt] = (await next()).split(' ').map(BigInt)
    samples.push(Number(resolvedAt - releasedAt) / 1000)
    // The holder's own release() call: on 2 cores its futex wake often switches to the woken
    // thread at once, so it can return after the whole handoff.
    releaseCalls.push(Number(returnedAt - releasedAt) / 1000)
    const points = [releasedAt, woke, queued, onJsThread, resolvedAt]
    // Settling can run before the watcher's "queued" mark is stored: clamp to keep stages >= 0.
    for (let s = 0; s < STAGES.length; s++) stages[s].push(Math.max(0, Number(points[s + 1] - points[s]) / 1000))
  }
  proc.stdin.write('end\n')
  mutex.close()
  return { samples, releaseCalls, stages: STAGES.map((name, i) => ({ name, samples: stages[i] })) }
}

module.exports = { handoffLatency }

if (require.main === module) child(process.argv[2])
