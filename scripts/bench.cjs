// npm run bench: what a lock costs from Node, next to baselines measured in the same run.
//
//   1. uncontended tryLock() + release() (sync, on the JS thread) vs an in-process JS flag
//   2. uncontended await lock() + release() vs an in-process promise-based async mutex
//   3. proper-lockfile lock + unlock on the same machine (the popular cross-process choice)
//   4. async handoff between two processes: holder releases -> the waiter's promise resolves
//   5. robust-mutex/pg vs the advisory-lock package on an embedded PostgreSQL (bench-pg.cjs)
//
// Figures are medians of several trials; the machine is shared, so compare ratios, not absolutes.
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { SharedMutex } = require('../index.js')

const now = () => performance.timeOrigin + performance.now()
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]

async function perOp(iterations, trials, op) {
  const results = []
  for (let t = 0; t < trials; t++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) await op()
    results.push(Number(process.hrtime.bigint() - start) / iterations)
  }
  return median(results)
}

function perOpSync(iterations, trials, op) {
  const results = []
  for (let t = 0; t < trials; t++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) op()
    results.push(Number(process.hrtime.bigint() - start) / iterations)
  }
  return median(results)
}

/** The simplest in-process async mutex: a promise chain. */
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

async function handoffChild(lockPath) {
  const mutex = SharedMutex.open(lockPath)
  const lines = require('node:readline').createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line === 'end') break
    // Parked in lock() (watched by the native watcher thread) before the parent releases.
    const pending = mutex.lock()
    fs.writeSync(1, 'waiting\n')
    const guard = await pending
    const at = now()
    guard.release()
    fs.writeSync(1, `${at}\n`)
  }
  process.exit(0)
}

async function handoffLatency(lockPath, rounds) {
  const mutex = SharedMutex.open(lockPath)
  const child = spawn(process.execPath, [__filename, 'handoff-child', lockPath], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = require('node:readline').createInterface({ input: child.stdout })
  const iterator = lines[Symbol.asyncIterator]()
  const next = async () => (await iterator.next()).value
  const samples = []
  for (let i = 0; i < rounds; i++) {
    const guard = mutex.lockSync()
    child.stdin.write('go\n')
    await next() // "waiting"
    await new Promise((r) => setTimeout(r, 3)) // let it park in the kernel
    const releasedAt = now()
    guard.release()
    samples.push((Number(await next()) - releasedAt) * 1000)
  }
  child.stdin.write('end\n')
  mutex.close()
  return samples
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-bench-'))
  const mutex = SharedMutex.open(path.join(dir, 'bench.lock'))
  console.log(`robust-mutex bench on ${os.cpus().length} x ${os.cpus()[0].model.trim()}, Node ${process.version}\n`)

  let flag = false
  const flagPair = perOpSync(2_000_000, 5, () => {
    if (flag) throw new Error('held')
    flag = true
    flag = false
  })
  const binding = require('../binding.js')
  const napiPair = perOpSync(2_000_000, 5, () => {
    binding.noopFast()
    binding.noopFast()
  })
  const syncPair = perOpSync(1_000_000, 5, () => mutex.tryLock().release())
  const lockSyncPair = perOpSync(1_000_000, 5, () => mutex.lockSync().release())
  console.log('uncontended, sync (same thread):')
  console.log(`  JS boolean flag (in-process baseline)      ${flagPair.toFixed(1).padStart(9)} ns/op`)
  console.log(`  two empty Node-API calls (baseline)        ${napiPair.toFixed(1).padStart(9)} ns/op`)
  console.log(`  tryLock() + release()                      ${syncPair.toFixed(1).padStart(9)} ns/op   ${(syncPair / napiPair).toFixed(1)}x two Node-API calls, ${(syncPair / flagPair).toFixed(1)}x flag`)
  console.log(`  lockSync() + release()                     ${lockSyncPair.toFixed(1).padStart(9)} ns/op   ${(lockSyncPair / syncPair).toFixed(2)}x tryLock()+release()`)

  const promiseMutex = new PromiseMutex()
  const promisePair = await perOp(300_000, 5, async () => (await promiseMutex.lock())())
  const asyncPair = await perOp(300_000, 5, async () => (await mutex.lock()).release())
  const withLockPair = await perOp(300_000, 5, () => mutex.withLock(() => undefined))
  console.log('uncontended, async:')
  console.log(`  in-process promise mutex (baseline)        ${promisePair.toFixed(1).padStart(9)} ns/op`)
  console.log(`  await lock() + release()                   ${asyncPair.toFixed(1).padStart(9)} ns/op   ${(asyncPair / promisePair).toFixed(1)}x baseline`)
  console.log(`  await withLock(fn)                         ${withLockPair.toFixed(1).padStart(9)} ns/op   ${(withLockPair / asyncPair).toFixed(2)}x await lock()+release()`)

  const lockfile = require('proper-lockfile')
  const target = path.join(dir, 'proper-lockfile-target')
  fs.writeFileSync(target, '')
  const properPair = await perOp(200, 3, async () => (await lockfile.lock(target, { realpath: false }))())
  console.log('cross-process alternative:')
  console.log(`  proper-lockfile lock() + unlock()          ${properPair.toFixed(1).padStart(9)} ns/op   ${(properPair / asyncPair).toFixed(0)}x await lock()+release(), ${(properPair / syncPair).toFixed(0)}x tryLock()+release()`)

  const samples = await handoffLatency(path.join(dir, 'handoff.lock'), 200)
  console.log('contended handoff between two processes (release -> waiter promise resolved):')
  console.log(`  p50 ${median(samples).toFixed(1)} us   p90 ${pct(samples, 0.9).toFixed(1)} us   p99 ${pct(samples, 0.99).toFixed(1)} us   (${samples.length} rounds)`)

  mutex.close()
  fs.rmSync(dir, { recursive: true, force: true })

  // 5. robust-mutex/pg against advisory-lock on an embedded PostgreSQL (scripts/bench-pg.cjs).
  const pg = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'bench-pg.cjs')], { stdio: 'inherit' })
  const code = await new Promise((resolve) => pg.on('exit', resolve))
  if (code !== 0) process.exitCode = 1
}

if (process.argv[2] === 'handoff-child') handoffChild(process.argv[3])
else main()
