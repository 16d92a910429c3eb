// npm run bench: what a lock costs from Node, next to baselines and the other Node locking
// libraries measured in the same run (medians of several trials; the machine may be shared, so
// compare the ratios, and read the load averages printed at the start and the end).
//
//   uncontended sync and async pairs, with the peers (scripts/bench/peers.cjs), and the cost of
//   reading a guard's fencingToken (the bigint is built only when read)
//   state() and isStale()
//   two processes contending, sync and async (scripts/bench/contended.cjs)
//   handoff latency between two processes (scripts/bench/handoff.cjs)
//   scale: 10,000 pending lock() calls, 10,000 open mutexes (scripts/bench/scale.cjs)
//   the Rust guard vs raw pthread calls (scripts/bench/rust.cjs)
//   robust-mutex/pg vs advisory-lock on an embedded PostgreSQL (scripts/bench-pg.cjs)
//
// `node scripts/bench.cjs quick` runs fewer iterations (a smoke run; figures are rougher).
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { SharedMutex } = require('../index.js')
const { median, percentile, perOp, perOpSync, duration, row, times } = require('./bench/stats.cjs')
const { loadPeers } = require('./bench/peers.cjs')
const { contended, IMPLS } = require('./bench/contended.cjs')
const { handoffLatency, floorLatency } = require('./bench/handoff.cjs')
const { pendingWaiters, manyOpen } = require('./bench/scale.cjs')
const { rustGuardVsPthread } = require('./bench/rust.cjs')

const QUICK = process.argv[2] === 'quick'
const scaled = (n) => (QUICK ? Math.max(1, Math.floor(n / 10)) : n)
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ')

/** The in-process baseline for async locking: a promise chain. */
class PromiseMutex {
  #tail = Promise.resolve()
  lock() {
    let release
    const next = new Promise((r) => (release = r))
    const ready = this.#tail.then(() => release)
    this.#tail = next
    return ready
  }
}

function uncontendedSync(mutex, peers, peerFile) {
  console.log('uncontended, sync (same thread), ns per acquire+release:')
  let flag = false
  const flagPair = perOpSync(scaled(400_000), 15, () => {
    if (flag) throw new Error('held')
    flag = true
    flag = false
  })
  const binding = require('../binding.js')
  const napiPair = perOpSync(scaled(400_000), 15, () => {
    binding.noopFast()
    binding.noopFast()
  })
  const tryPair = perOpSync(scaled(200_000), 15, () => mutex.tryLock().release())
  const lockSyncPair = perOpSync(scaled(200_000), 15, () => mutex.lockSync().release())
  row('JS boolean flag (in-process baseline)', duration(flagPair))
  row('two empty Node-API calls (baseline)', duration(napiPair))
  row('robust-mutex tryLock() + release()', duration(tryPair), `${(tryPair / napiPair).toFixed(1)}x two Node-API calls`)
  row('robust-mutex lockSync() + release()', duration(lockSyncPair), `${(lockSyncPair / tryPair).toFixed(2)}x tryLock()+release()`)
  let lastFence = 0n
  const fencedPair = perOpSync(scaled(200_000), 15, () => {
    const guard = mutex.tryLock()
    lastFence = guard.fencingToken
    guard.release()
  })
  if (lastFence !== mutex.state().fencingToken) throw new Error('the last fencing token read is not the last issued')
  row('robust-mutex tryLock() + read fencingToken + release()', duration(fencedPair), `${(fencedPair / tryPair).toFixed(2)}x tryLock()+release()`)
  const fd = fs.openSync(peerFile, 'r+')
  for (const peer of peers) {
    if (peer.skipped) continue
    if (peer.tryLock) {
      const ns = perOpSync(scaled(20_000), 9, () => {
        if (!peer.tryLock(fd)) throw new Error(`${peer.name}: held`)
        peer.unlock(fd)
      })
      row(`${peer.name} ${peer.names.tryLock}`, duration(ns), `${times(ns, tryPair)} tryLock()+release()`)
    }
    if (peer.lockPathSync) {
      const ns = perOpSync(scaled(300), 3, () => peer.lockPathSync(peerFile)())
      row(`${peer.name} ${peer.names.tryLock}`, duration(ns), `${times(ns, tryPair)} tryLock()+release()`)
    }
    if (peer.lockSync) {
      const ns = perOpSync(scaled(20_000), 9, () => {
        peer.lockSync(fd)
        peer.unlock(fd)
      })
      row(`${peer.name} ${peer.names.lockSync}`, duration(ns), `${times(ns, lockSyncPair)} lockSync()+release()`)
    }
  }
  fs.closeSync(fd)
  return { napiPair, tryPair, lockSyncPair }
}

async function uncontendedAsync(mutex, peers, peerFile) {
  console.log('uncontended, async, per acquire+release:')
  const promiseMutex = new PromiseMutex()
  const promisePair = await perOp(scaled(100_000), 9, async () => (await promiseMutex.lock())())
  const asyncPair = await perOp(scaled(100_000), 9, async () => (await mutex.lock()).release())
  const withLockPair = await perOp(scaled(100_000), 9, () => mutex.withLock(() => undefined))
  row('in-process promise mutex (baseline)', duration(promisePair))
  row('robust-mutex await lock() + release()', duration(asyncPair), `${(asyncPair / promisePair).toFixed(1)}x promise mutex`)
  row('robust-mutex await withLock(fn)', duration(withLockPair), `${(withLockPair / asyncPair).toFixed(2)}x await lock()+release()`)
  const fd = fs.openSync(peerFile, 'r+')
  for (const peer of peers) {
    if (peer.skipped) continue
    if (peer.lockAsync) {
      const ns = await perOp(scaled(2_000), 5, async () => {
        await peer.lockAsync(fd)
        await peer.unlockAsync(fd)
      })
      row(`${peer.name} ${peer.names.lockAsync}`, duration(ns), `${times(ns, asyncPair)} await lock()+release()`)
    }
    if (peer.lockPathAsync) {
      const ns = await perOp(scaled(200), 3, async () => (await peer.lockPathAsync(peerFile))())
      row(`${peer.name} ${peer.names.lockAsync}`, duration(ns), `${times(ns, withLockPair)} await withLock(fn), ${times(ns, asyncPair)} await lock()+release()`)
    }
  }
  fs.closeSync(fd)
  return { asyncPair, withLockPair }
}

function inspection(mutex, tryPair) {
  console.log('inspection, per call:')
  const state = perOpSync(scaled(50_000), 9, () => mutex.state())
  const stale = perOpSync(scaled(50_000), 9, () => mutex.isStale())
  row('state()', duration(state), `${(state / tryPair).toFixed(1)}x tryLock()+release()`)
  row('isStale()', duration(stale), `${(stale / tryPair).toFixed(1)}x tryLock()+release() (a stat of the path)`)
}

async function contention(dir, peers) {
  const windowMs = QUICK ? 150 : 500
  const rounds = QUICK ? 1 : 3
  console.log(`two processes contending, critical section pread+pwrite, acquisitions/s (median of ${rounds} x ${windowMs} ms):`)
  const results = {}
  for (const impl of IMPLS) {
    const runs = []
    for (let r = 0; r < rounds; r++) runs.push(await contended(impl, dir, windowMs))
    const lost = runs.reduce((sum, run) => sum + run.lost, 0)
    const waited = runs[0].waited === undefined ? undefined : median(runs.map((run) => run.waited))
    results[impl] = { perSecond: median(runs.map((run) => run.perSecond)), lost, waited }
  }
  for (const mode of ['sync', 'async']) {
    const ours = results[`robust-mutex ${mode}`].perSecond
    for (const [impl, { perSecond, lost, waited }] of Object.entries(results)) {
      if (!impl.endsWith(` ${mode}`)) continue
      const versus = impl.startsWith('robust-mutex')
        ? `${(waited * 100).toFixed(1)}% of acquisitions waited for the other process`
        : `robust-mutex ${mode} does ${(ours / perSecond).toFixed(1)}x`
      row(impl, `${(perSecond / 1000).toFixed(1)}k/s`, lost ? `LOST UPDATES: ${lost}` : versus)
    }
  }
  for (const peer of peers) {
    if (peer.skipped) continue
    if (peer.lockPathAsync) row(peer.name, 'not run', 'fails instead of waiting when held (retries are timed back-offs)')
  }
  return results
}

async function scale(dir) {
  const n = scaled(10_000)
  console.log(`scale (${n.toLocaleString('en')}):`)
  const waiters = await pendingWaiters(path.join(dir, 'waiters.lock'), n)
  row(`${n} pending lock() on one handle: heap per call`, `${waiters.bytesPerWaiter.toFixed(0)} B`,
    `holder in another process; granted ${waiters.fifo ? 'in FIFO order (checked)' : 'OUT OF ORDER'}, ${duration(waiters.nsPerGrant)} per grant draining`)
  const open = manyOpen(path.join(dir, 'many'), n)
  const at = (pairs) => pairs.map(([k, ns]) => `${duration(ns)} at ${k.toLocaleString('en')}`).join(', ')
  row(`${n} open mutexes: open (existing file)`, duration(open.perOpen.at(-1)[1]), at(open.perOpen))
  row(`${n} open mutexes: open creating the file`, duration(open.createPerOpen.at(-1)[1]), at(open.createPerOpen))
  row('  per open mutex: descriptors', open.fdsPerMutex.toFixed(2))
  row('  per open mutex: JS heap', `${open.heapPerMutex.toFixed(0)} B`, `anonymous resident ${open.anonPerMutex.toFixed(0)} B (native table, mapping bookkeeping); the mapping itself: one 4 KiB page of the file`)
  row('  close()', duration(open.perClose))
  return { waiters, open }
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-bench-'))
  const mutex = SharedMutex.open(path.join(dir, 'bench.lock'))
  const peerFile = path.join(dir, 'peer-target')
  fs.writeFileSync(peerFile, '')
  console.log(`robust-mutex bench${QUICK ? ' (quick)' : ''} on ${os.cpus().length} x ${os.cpus()[0].model.trim()}, Node ${process.version}, load average ${load()}\n`)
  const peers = loadPeers()
  for (const peer of peers) if (peer.skipped) console.log(`  skipped: ${peer.skipped}`)

  const { tryPair } = uncontendedSync(mutex, peers, peerFile)
  await uncontendedAsync(mutex, peers, peerFile)
  inspection(mutex, tryPair)
  await contention(dir, peers)

  const { samples, stages, releaseCalls, unsplit } = await handoffLatency(path.join(dir, 'handoff.lock'), scaled(300))
  console.log('handoff between two processes (release() there -> await lock() resolved here), stages as medians:')
  row(`p50 of ${samples.length}`, `${median(samples).toFixed(1)} µs`,
    `p90 ${percentile(samples, 0.9).toFixed(1)} µs, p99 ${percentile(samples, 0.99).toFixed(1)} µs`)
  for (const stage of stages) {
    row(`  ${stage.name}`, `${median(stage.samples).toFixed(1)} µs`, `p90 ${percentile(stage.samples, 0.9).toFixed(1)} µs`)
  }
  if (unsplit) row('  (rounds not split at "queued")', `${unsplit}`, 'the watcher was preempted before its mark: not in stages 2-3')
  row('  (the holder\'s own release() call took)', `${median(releaseCalls).toFixed(1)} µs`, 'its futex wake may switch to the woken thread first')
  // The floor: the same two wake-ups (futex wake -> a native thread -> a threadsafe function's
  // JS callback) with no lock logic; the ratio is what the library adds.
  const floor = await floorLatency(path.join(dir, 'handoff.floor'), scaled(300))
  if (floor.skipped) row('floor: futex wake -> native thread -> JS callback', `skipped: ${floor.skipped}`, '')
  else {
    row(`floor: futex wake -> thread -> JS callback, p50`, `${median(floor.samples).toFixed(1)} µs`,
      `p90 ${percentile(floor.samples, 0.9).toFixed(1)} µs, p99 ${percentile(floor.samples, 0.99).toFixed(1)} µs`)
    row('  handoff / floor', `p50 ${(median(samples) / median(floor.samples)).toFixed(2)}x`,
      `p99 ${(percentile(samples, 0.99) / percentile(floor.samples, 0.99)).toFixed(2)}x`)
  }

  await scale(dir)
  mutex.close()
  fs.rmSync(dir, { recursive: true, force: true })

  console.log('Rust guard vs raw pthread calls on the same mapping (cargo run --release --example bench):')
  const rust = rustGuardVsPthread(QUICK ? 200_000 : 2_000_000)
  if (rust.skipped) console.log(`  skipped: ${rust.skipped}`)
  else for (const line of rust.lines) console.log(`  ${line.trim()}`)

  // robust-mutex/pg against advisory-lock on an embedded PostgreSQL (a process of its own: it
  // starts the server through the test harness, which needs tsx).
  const pg = require('node:child_process').spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'bench-pg.cjs')], { stdio: 'inherit' })
  if ((await new Promise((resolve) => pg.on('exit', resolve))) !== 0) process.exitCode = 1
  console.log(`\nload average at the end: ${load()}`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
