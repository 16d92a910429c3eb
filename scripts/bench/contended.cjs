// Two processes contending for one lock, each looping acquire -> critical section -> release
// for the same wall-clock window. The critical section is a pread + pwrite of a shared counter
// file, so the final counter also checks that no two holders ever overlapped (a lost update
// shows as a counter below the sum of acquisitions).
//
// Parent: `contended(impl, dir, windowMs)` -> { perSecond, lost }.
// Child:  `node contended.cjs <impl> <lockPath> <counterPath>`, prints "ready", waits for
//         "go <endNs>", runs until CLOCK_MONOTONIC passes endNs, prints its acquisition count.
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const readline = require('node:readline')

/** The contended loops, by name: each returns how many acquisitions it made before `endNs`. */
const LOOPS = {
  'robust-mutex sync': (lockPath, cs) => {
    const mutex = require('../../index.js').SharedMutex.open(lockPath)
    return (endNs) => {
      let n = 0
      while (process.hrtime.bigint() < endNs) {
        const guard = mutex.lockSync()
        cs()
        guard.release()
        n++
      }
      return n
    }
  },
  'robust-mutex async': (lockPath, cs) => {
    const mutex = require('../../index.js').SharedMutex.open(lockPath)
    return async (endNs) => {
      let n = 0
      while (process.hrtime.bigint() < endNs) {
        const guard = await mutex.lock()
        cs()
        guard.release()
        n++
      }
      return n
    }
  },
  ...peerLoops(),
}

function peerLoops() {
  const loops = {}
  for (const peer of require('./peers.cjs').loadPeers()) {
    if (peer.skipped) continue
    if (peer.lockSync) {
      loops[`${peer.name} sync`] = (lockPath, cs) => {
        const fd = fs.openSync(lockPath, 'r+')
        return (endNs) => {
          let n = 0
          while (process.hrtime.bigint() < endNs) {
            peer.lockSync(fd)
            cs()
            peer.unlock(fd)
            n++
          }
          return n
        }
      }
    }
    if (peer.lockAsync) {
      loops[`${peer.name} async`] = (lockPath, cs) => {
        const fd = fs.openSync(lockPath, 'r+')
        return async (endNs) => {
          let n = 0
          while (process.hrtime.bigint() < endNs) {
            await peer.lockAsync(fd)
            cs()
            await peer.unlockAsync(fd)
            n++
          }
          return n
        }
      }
    }
  }
  return loops
}

/** pread + increment + pwrite of the 8-byte counter at offset 0. */
function criticalSection(counterPath) {
  const fd = fs.openSync(counterPath, 'r+')
  const buf = Buffer.alloc(8)
  return () => {
    fs.readSync(fd, buf, 0, 8, 0)
    buf.writeBigUInt64LE(buf.readBigUInt64LE(0) + 1n, 0)
    fs.writeSync(fd, buf, 0, 8, 0)
  }
}

async function child(impl, lockPath, counterPath) {
  const run = LOOPS[impl](lockPath, criticalSection(counterPath))
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  process.stdout.write('ready\n')
  const go = (await lines.next()).value
  const count = await run(BigInt(go.split(' ')[1]))
  process.stdout.write(`${count}\n`)
  process.exit(0)
}

function spawnChild(impl, lockPath, counterPath) {
  const proc = spawn(process.execPath, [__filename, impl, lockPath, counterPath], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = readline.createInterface({ input: proc.stdout })[Symbol.asyncIterator]()
  return { proc, next: async () => (await lines.next()).value }
}

/** One window of two processes running `impl`; acquisitions per second and lost updates. */
async function contended(impl, dir, windowMs) {
  const lockPath = path.join(dir, `contended-${impl.replace(/\W+/g, '-')}.lock`)
  const counterPath = path.join(dir, 'contended-counter')
  if (!impl.startsWith('robust-mutex')) fs.writeFileSync(lockPath, '')
  fs.writeFileSync(counterPath, Buffer.alloc(8))
  const children = [0, 1].map(() => spawnChild(impl, lockPath, counterPath))
  for (const c of children) {
    const line = await c.next()
    if (line !== 'ready') throw new Error(`${impl} child said ${line}`)
  }
  const startNs = process.hrtime.bigint() + 2_000_000n // both start together, 2 ms from now
  const endNs = startNs + BigInt(windowMs) * 1_000_000n
  for (const c of children) c.proc.stdin.write(`go ${endNs}\n`)
  const counts = await Promise.all(children.map(async (c) => Number(await c.next())))
  const total = counts[0] + counts[1]
  const counter = Number(fs.readFileSync(counterPath).readBigUInt64LE(0))
  // How many acquisitions actually waited (robust-mutex counts them in its header): on a loaded
  // machine two processes mostly take turns on the CPU, and few acquisitions meet a holder.
  let waited
  if (impl.startsWith('robust-mutex')) {
    const mutex = require('../../index.js').SharedMutex.open(lockPath)
    const state = mutex.state()
    waited = state.contended / state.acquisitions
    mutex.close()
    require('../../index.js').SharedMutex.destroy(lockPath)
  }
  return { perSecond: total / (Number(endNs - startNs) / 1e9), lost: total - counter, counts, waited }
}

const IMPLS = Object.keys(LOOPS)

module.exports = { contended, IMPLS }

if (require.main === module) child(process.argv[2], process.argv[3], process.argv[4])
