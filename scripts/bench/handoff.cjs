// Handoff latency between two processes: this process holds the lock, a child waits in
// `await lock()` (parked on the native watcher), this process releases; the figure is the time
// from just before release() here to the child's promise resolving there. Both read
// CLOCK_MONOTONIC (process.hrtime), which is one clock for the whole machine.
//
// The child runs with ROBUST_MUTEX_TRACE_HANDOFF=1, so the addon also records when its watcher
// thread woke, when it queued the settlement, and when that ran on the JS thread
// (crates/robust-mutex-node/src/trace.rs): each handoff is split into stages.
//
// The floor (`floorLatency`): the same two cross-thread wake-ups with no lock logic, through the
// bench-only floor addon (crates/bench-floor, loaded by ./floor.cjs): this process bumps
// a word in a shared mapping and FUTEX_WAKEs it, a native thread of the child wakes and calls a
// threadsafe function whose JS callback reads the clock. Handoff / floor is what the library
// adds on top of what the scheduler costs.
//
// `root` (default: the repository) is the directory whose index.js / binding.js are measured,
// so that scripts/bench-ab-handoff.cjs can alternate two builds.
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const readline = require('node:readline')

const REPO = path.join(__dirname, '..', '..')
const { load: loadFloor } = require('./floor.cjs')

/** The stages of a handoff, between consecutive timestamps. */
const STAGES = [
  'release() -> watcher thread awake', // unlock, futex wake, scheduling
  'watcher awake -> settlement queued', // the threadsafe-function call
  'queued -> running on the JS thread', // the event loop waking up
  'on the JS thread -> await resumed', // promise jobs, the trylock
]

const load = (root) => ({
  SharedMutex: require(path.join(root, 'index.js')).SharedMutex,
  binding: require(path.join(root, 'binding.js')),
})

async function child(mode, root, filePath) {
  const { SharedMutex, binding } = load(root)
  const lines = readline.createInterface({ input: process.stdin })
  if (mode === 'floor') {
    const floor = loadFloor()
    floor.floorOpen(filePath)
    floor.floorListen(() => {
      const at = process.hrtime.bigint()
      fs.writeSync(1, `${at}\n`)
    })
    for await (const line of lines) {
      if (line === 'end') break
      fs.writeSync(1, 'waiting\n')
    }
    floor.floorStop()
    process.exit(0)
  }
  const mutex = SharedMutex.open(filePath)
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

function spawnChild(mode, root, filePath) {
  const proc = spawn(process.execPath, [__filename, mode, root, filePath], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ROBUST_MUTEX_TRACE_HANDOFF: '1' },
  })
  const lines = readline.createInterface({ input: proc.stdout })[Symbol.asyncIterator]()
  const next = async () => (await lines.next()).value
  return { proc, next }
}

/**
 * `rounds` handoffs; returns the latencies, each one's stages and the holder's release() calls
 * (µs), and how many rounds could not be split at the watcher's "queued" mark.
 */
async function handoffLatency(lockPath, rounds, root = REPO) {
  const mutex = load(root).SharedMutex.open(lockPath)
  const { proc, next } = spawnChild('handoff', root, lockPath)
  const samples = []
  const stages = STAGES.map(() => [])
  const releaseCalls = []
  let unsplit = 0
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
    // The watcher stores its "queued" mark after the call that queues the settlement; when it
    // is preempted in between, the JS thread can resume (and read the trace) first and sees the
    // previous round's mark (earlier than "woke"). Then that round's time from "woke" to "on the
    // JS thread" cannot be split: it counts in neither of those two stages (`unsplit`).
    // Earlier versions clamped the stage to 0 instead, which put a whole round's period (~3.5
    // ms) into "queued -> on the JS thread" for ~10% of rounds.
    const points = [releasedAt, woke, queued, onJsThread, resolvedAt]
    const split = queued >= woke && queued <= onJsThread
    if (!split) unsplit++
    for (let s = 0; s < STAGES.length; s++) {
      if (!split && (s === 1 || s === 2)) continue
      stages[s].push(Math.max(0, Number(points[s + 1] - points[s]) / 1000))
    }
  }
  proc.stdin.write('end\n')
  mutex.close()
  return { samples, releaseCalls, unsplit, stages: STAGES.map((name, i) => ({ name, samples: stages[i] })) }
}

/**
 * `rounds` floor wake-ups, timed like a handoff (the child parked, 3 ms, then the wake): µs from
 * just before the FUTEX_WAKE here to the JS callback there. `{ skipped }` without the floor
 * functions (an older build, or not Linux).
 */
async function floorLatency(floorPath, rounds, root = REPO) {
  const floor = loadFloor()
  if (floor.skipped) return floor
  try {
    floor.floorOpen(floorPath)
  } catch (err) {
    return { skipped: String(err.message) }
  }
  const { proc, next } = spawnChild('floor', root, floorPath)
  const samples = []
  for (let i = 0; i < rounds; i++) {
    proc.stdin.write('go\n')
    await next() // "waiting"
    await new Promise((r) => setTimeout(r, 3)) // let its thread park in the kernel
    const wokeAt = process.hrtime.bigint()
    floor.floorWake()
    const at = BigInt(await next())
    samples.push(Number(at - wokeAt) / 1000)
  }
  proc.stdin.write('end\n')
  return { samples }
}

module.exports = { handoffLatency, floorLatency }

if (require.main === module) child(process.argv[2], process.argv[3], process.argv[4])
