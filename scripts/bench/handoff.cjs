// Handoff latency between two processes: this process holds the lock, a child waits in
// `await lock()` (parked on the native watcher), this process releases; the figure is the time
// from just before release() here to the child's promise resolving there. Both read
// CLOCK_MONOTONIC (process.hrtime), which is one clock for the whole machine.
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const readline = require('node:readline')
const { SharedMutex } = require('../../index.js')

async function child(lockPath) {
  const mutex = SharedMutex.open(lockPath)
  const lines = readline.createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line === 'end') break
    const pending = mutex.lock()
    fs.writeSync(1, 'waiting\n')
    const guard = await pending
    const at = process.hrtime.bigint()
    guard.release()
    fs.writeSync(1, `${at}\n`)
  }
  process.exit(0)
}

/** `rounds` handoffs; returns the latencies in µs. */
async function handoffLatency(lockPath, rounds) {
  const mutex = SharedMutex.open(lockPath)
  const proc = spawn(process.execPath, [__filename, lockPath], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = readline.createInterface({ input: proc.stdout })[Symbol.asyncIterator]()
  const next = async () => (await lines.next()).value
  const samples = []
  for (let i = 0; i < rounds; i++) {
    const guard = mutex.lockSync()
    proc.stdin.write('go\n')
    await next() // "waiting"
    await new Promise((r) => setTimeout(r, 3)) // let it park in the kernel
    const releasedAt = process.hrtime.bigint()
    guard.release()
    const resolvedAt = BigInt(await next())
    samples.push(Number(resolvedAt - releasedAt) / 1000)
  }
  proc.stdin.write('end\n')
  mutex.close()
  return samples
}

module.exports = { handoffLatency }

if (require.main === module) child(process.argv[2])
