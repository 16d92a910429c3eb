// node scripts/bench-ab.cjs <dirA> [<dirB>]: the uncontended rows of `npm run bench` for two
// builds of this package loaded into one process (B defaults to this checkout), trials
// alternated A, B, A, B, ... so that both see the same machine noise. For changes to the fast
// path, where a few nanoseconds matter and separate runs on a shared machine differ by more.
//
// A build directory needs the compiled package: index.js, native.js, errors.js, binding.js, the
// .node addon and package.json (copy them from a checkout of the baseline after `npm run build`).
// Each build gets its own lock file. Prints the median (and the fastest) trial of each.
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const [dirA, dirB = path.join(__dirname, '..')] = process.argv.slice(2)
if (!dirA) {
  console.error('usage: node scripts/bench-ab.cjs <dirA> [<dirB>]')
  process.exit(2)
}
const builds = [dirA, dirB].map((dir) => require(path.resolve(dir, 'index.js')))
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-bench-ab-'))
const mutexes = builds.map((b, i) => b.SharedMutex.open(path.join(tmp, `${i}.lock`)))

const TRIALS = 9
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]

async function trial(op, iterations, isAsync) {
  const start = process.hrtime.bigint()
  if (isAsync) for (let i = 0; i < iterations; i++) await op()
  else for (let i = 0; i < iterations; i++) op()
  return Number(process.hrtime.bigint() - start) / iterations
}

const rows = [
  ['tryLock() + release()', (m) => () => m.tryLock().release(), 500_000, false],
  ['lockSync() + release()', (m) => () => m.lockSync().release(), 500_000, false],
  ['await lock() + release()', (m) => async () => (await m.lock()).release(), 200_000, true],
]

async function main() {
  console.log(`A = ${path.resolve(dirA)}\nB = ${path.resolve(dirB)}\n(${os.cpus().length} x ${os.cpus()[0].model.trim()}, Node ${process.version}, ${TRIALS} alternated trials)`)
  for (const [name, make, iterations, isAsync] of rows) {
    const ops = mutexes.map(make)
    const times = [[], []]
    for (let t = 0; t < TRIALS; t++) {
      for (const i of [0, 1]) times[i].push(await trial(ops[i], iterations, isAsync))
    }
    const [a, b] = times.map(median)
    const fastest = times.map((xs) => Math.min(...xs).toFixed(1))
    console.log(`  ${name.padEnd(26)} A ${a.toFixed(1).padStart(7)} ns   B ${b.toFixed(1).padStart(7)} ns   B/A ${(b / a).toFixed(2)}   (fastest ${fastest[0]} / ${fastest[1]})`)
  }
  for (const m of mutexes) m.close()
  fs.rmSync(tmp, { recursive: true, force: true })
}

main()
