// A/B timing of two builds in one process, for a change to the fast path or the queue on a
// machine too loaded for separate runs to compare: trials of each build alternate, so both see
// the same load.
//
//   node scripts/bench-ab.cjs snapshot <dir>      copy this checkout's built JS + addon to <dir>
//   node scripts/bench-ab.cjs fast <dirA> <dirB>  tryLock()+release(), lockSync()+release()
//   node scripts/bench-ab.cjs drain <n> <dirA> <dirB>  per-grant time draining n pending lock()
//   node scripts/bench-ab.cjs open <n> <dirA> <dirB>   per-open time of n existing mutex files
//
// `fast` prints the minimum over 31 trials (on a shared machine, noise only adds time); `drain`
// and `open` the median of 5 and 9 rounds.
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const FILES = ['index.js', 'errors.js', 'native.js', 'binding.js']

function snapshot(dir) {
  fs.mkdirSync(dir, { recursive: true })
  const addons = fs.readdirSync(ROOT).filter((f) => f.endsWith('.node'))
  for (const f of [...FILES, ...addons]) fs.copyFileSync(path.join(ROOT, f), path.join(dir, f))
  console.log(`snapshot of ${ROOT} in ${dir}`)
}

const load = () => os.loadavg()[0].toFixed(1)
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]

function fast(dirs) {
  const builds = dirs.map((d) => ({ dir: d, api: require(path.resolve(d, 'index.js')), binding: require(path.resolve(d, 'binding.js')) }))
  const n = 200_000
  const time = (op) => {
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) op()
    return Number(process.hrtime.bigint() - start) / n
  }
  const results = builds.map((b) => ({ ...b, mutex: b.api.SharedMutex.anonymous(), napi: [], tryPair: [], lockSyncPair: [] }))
  for (let t = 0; t < 31; t++) {
    for (const r of results) {
      r.napi.push(time(() => {
        r.binding.noopFast()
        r.binding.noopFast()
      }))
      r.tryPair.push(time(() => r.mutex.tryLock().release()))
      r.lockSyncPair.push(time(() => r.mutex.lockSync().release()))
    }
  }
  console.log(`min of 31 trials x ${n}, load ${load()}:`)
  for (const r of results) {
    const napi = Math.min(...r.napi)
    const tryPair = Math.min(...r.tryPair)
    console.log(`  ${r.dir}: tryLock()+release() ${tryPair.toFixed(1)} ns (${(tryPair / napi).toFixed(2)}x two empty Node-API calls, ${napi.toFixed(1)} ns), lockSync()+release() ${Math.min(...r.lockSyncPair).toFixed(1)} ns`)
  }
}

async function drain(n, dirs) {
  const lockPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-ab-')), 'drain.lock')
  const builds = dirs.map((d) => ({ dir: d, api: require(path.resolve(d, 'index.js')), perGrant: [] }))
  for (let round = 0; round < 5; round++) {
    for (const b of builds) {
      const holder = b.api.SharedMutex.open(lockPath)
      const mutex = b.api.SharedMutex.open(lockPath)
      const held = holder.lockSync()
      const all = []
      for (let i = 0; i < n; i++) all.push(mutex.lock().then((g) => g.release()))
      const start = process.hrtime.bigint()
      held.release()
      await Promise.all(all)
      b.perGrant.push(Number(process.hrtime.bigint() - start) / n)
      mutex.close()
      holder.close()
    }
  }
  console.log(`draining ${n} pending lock() calls, median of 5 rounds, load ${load()}:`)
  for (const b of builds) console.log(`  ${b.dir}: ${(median(b.perGrant) / 1000).toFixed(2)} µs per grant`)
  fs.rmSync(path.dirname(lockPath), { recursive: true, force: true })
}

function open(n, dirs) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-ab-'))
  const paths = Array.from({ length: n }, (_, i) => path.join(dir, `m${i}.lock`))
  const builds = dirs.map((d) => ({ dir: d, api: require(path.resolve(d, 'index.js')), perOpen: [] }))
  for (const p of paths) builds[0].api.SharedMutex.open(p).close() // create them once
  for (let round = 0; round < 9; round++) {
    for (const b of builds) {
      const start = process.hrtime.bigint()
      const handles = paths.map((p) => b.api.SharedMutex.open(p))
      b.perOpen.push(Number(process.hrtime.bigint() - start) / n)
      for (const h of handles) h.close()
    }
  }
  console.log(`opening ${n} existing mutex files, median of 9 rounds, load ${load()}:`)
  for (const b of builds) console.log(`  ${b.dir}: ${(median(b.perOpen) / 1000).toFixed(1)} µs per open`)
  fs.rmSync(dir, { recursive: true, force: true })
}

const [what, ...args] = process.argv.slice(2)
if (what === 'snapshot') snapshot(args[0])
else if (what === 'fast') fast(args)
else if (what === 'drain') drain(Number(args[0]), args.slice(1))
else if (what === 'open') open(Number(args[0]), args.slice(1))
else {
  console.error('usage: bench-ab.cjs snapshot <dir> | fast <dirA> <dirB> | drain|open <n> <dirA> <dirB>')
  process.exit(2)
}
