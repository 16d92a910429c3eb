// node scripts/bench-ab.cjs <dirA> [<dirB>]: the uncontended rows of `npm run bench` for two
// builds of this package (B defaults to this checkout), for changes to the fast path, where a
// few nanoseconds matter and separate runs on a shared machine differ by more.
//
// Each build runs in its own child process (one JIT state each: in one process the two builds'
// closures would share call-site feedback, and the one measured second was 1.3x slower than an
// identical copy of itself). The parent asks them for one trial at a time, in the order
// A B B A A B ..., so both see the same machine noise and neither always goes first.
//
// A build directory needs the compiled package: index.js, native.js, errors.js, binding.js, the
// .node addon and package.json (copy them from a checkout of the baseline after `npm run build`).
// Prints the median (and the fastest) trial of each. BENCH_AB_ROWS=3,4 runs only those rows
// (0-based, in the order of ROWS; row 5 is the empty-call baseline of issue 11's target 2);
// BENCH_AB_TRIALS=30 takes more trials (default 10).
'use strict'
const { fork } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const TRIALS = Number(process.env.BENCH_AB_TRIALS ?? 10)
const ROWS = [
  ['tryLock() + release()', 500_000],
  ['lockSync() + release()', 500_000],
  ['await lock() + release()', 200_000],
  ['state()', 100_000],
  ['state() while held', 100_000],
  ['two empty Node-API calls', 500_000],
]

function child(dir) {
  const { SharedMutex } = require(path.resolve(dir, 'index.js'))
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-bench-ab-'))
  const m = SharedMutex.open(path.join(tmp, 'bench.lock'))
  // The baseline of target 2: the addon's empty raw callback, twice (what a tryLock()+release()
  // pair would cost if the lock itself were free).
  const { noopFast } = require(path.resolve(dir, 'binding.js'))
  const ops = [
    () => m.tryLock().release(),
    () => m.lockSync().release(),
    async () => (await m.lock()).release(),
    () => m.state(),
    () => m.state(), // with the lock held: the owner object and its Date too
    () => {
      noopFast()
      noopFast()
    },
  ]
  process.on('message', async ({ row }) => {
    if (row < 0) {
      m.close()
      fs.rmSync(tmp, { recursive: true, force: true })
      return process.disconnect()
    }
    const [, iterations] = ROWS[row]
    const op = ops[row]
    const held = row === 4 ? m.lockSync() : null
    const start = process.hrtime.bigint()
    if (row === 2) for (let i = 0; i < iterations; i++) await op()
    else for (let i = 0; i < iterations; i++) op()
    const elapsed = process.hrtime.bigint() - start
    held?.release()
    process.send(Number(elapsed) / iterations)
  })
  process.send('ready')
}

async function parent(dirA, dirB) {
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
  const builds = [dirA, dirB].map((dir) => {
    const proc = fork(__filename, ['--child', dir])
    let pending
    proc.on('message', (m) => pending?.(m))
    const next = () => new Promise((resolve) => (pending = resolve))
    return { proc, ready: next(), trial: (row) => { const p = next(); proc.send({ row }); return p } }
  })
  await Promise.all(builds.map((b) => b.ready))
  console.log(`A = ${path.resolve(dirA)}\nB = ${path.resolve(dirB)}\n(${os.cpus().length} x ${os.cpus()[0].model.trim()}, Node ${process.version}, ${TRIALS} trials each, alternated)`)
  const only = process.env.BENCH_AB_ROWS?.split(',').map(Number)
  for (const [row, [name]] of ROWS.entries()) {
    if (only && !only.includes(row)) continue
    const times = [[], []]
    for (let t = 0; t < TRIALS; t++) {
      for (const i of t % 2 === 0 ? [0, 1] : [1, 0]) times[i].push(await builds[i].trial(row))
    }
    const [a, b] = times.map(median)
    const fastest = times.map((xs) => Math.min(...xs).toFixed(1))
    console.log(`  ${name.padEnd(26)} A ${a.toFixed(1).padStart(7)} ns   B ${b.toFixed(1).padStart(7)} ns   B/A ${(b / a).toFixed(2)}   (fastest ${fastest[0]} / ${fastest[1]})`)
  }
  for (const b of builds) b.proc.send({ row: -1 })
}

if (process.argv[2] === '--child') child(process.argv[3])
else if (!process.argv[2]) {
  console.error('usage: node scripts/bench-ab.cjs <dirA> [<dirB>]')
  process.exit(2)
} else parent(process.argv[2], process.argv[3] ?? path.join(__dirname, '..'))
