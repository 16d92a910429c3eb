// A/B of the two-process handoff latency of two builds in one run (scripts/bench/handoff.cjs),
// alternating trials (A B, B A, ...) with the floor (futex wake -> native thread -> JS callback,
// no lock logic; the bench-only addon of crates/bench-floor, built by `npm run bench`) measured
// between them.
//
//   node scripts/bench-ab-scale.cjs snapshot <dir>                 (in each built checkout)
//   node scripts/bench-ab-handoff.cjs <dirA> <dirB> [trials=6] [rounds=100]
//
// Prints, per build, p50/p90/p99 over all samples, the median of the per-trial p50s, the
// fastest trial's p50, and each stage's p50.
'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { handoffLatency, floorLatency } = require('./bench/handoff.cjs')
const { median, percentile } = require('./bench/stats.cjs')

async function main() {
  const [a, b, trialsArg, roundsArg] = process.argv.slice(2)
  if (!a || !b) throw new Error('usage: bench-ab-handoff.cjs <dirA> <dirB> [trials] [rounds]')
  const trials = Number(trialsArg ?? 6)
  const rounds = Number(roundsArg ?? 100)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ab-handoff-'))
  const builds = [a, b].map((d) => ({ dir: path.resolve(d), samples: [], p50s: [], stages: null, unsplit: 0 }))
  const floorAddon = require('./bench/floor.cjs').load()
  if (floorAddon.skipped) console.log(`floor skipped: ${floorAddon.skipped}`)
  const floorRoot = floorAddon.skipped ? undefined : builds[0].dir
  const floor = { samples: [], p50s: [] }
  const loadAtStart = os.loadavg()[0].toFixed(1)
  for (let t = 0; t < trials; t++) {
    const order = t % 2 === 0 ? builds : [...builds].reverse()
    for (const build of order) {
      const r = await handoffLatency(path.join(dir, `h-${path.basename(build.dir)}.lock`), rounds, build.dir)
      build.samples.push(...r.samples)
      build.p50s.push(median(r.samples))
      build.unsplit += r.unsplit
      build.stages ??= r.stages.map((s) => ({ name: s.name, samples: [] }))
      r.stages.forEach((s, i) => build.stages[i].samples.push(...s.samples))
    }
    if (floorRoot) {
      const f = await floorLatency(path.join(dir, 'floor'), rounds, floorRoot)
      floor.samples.push(...f.samples)
      floor.p50s.push(median(f.samples))
    }
  }
  const f1 = (x) => x.toFixed(1)
  const line = (name, xs, p50s) =>
    `${name.padEnd(44)} p50 ${f1(percentile(xs, 0.5))}  p90 ${f1(percentile(xs, 0.9))}  p99 ${f1(percentile(xs, 0.99))} µs` +
    `  (per-trial p50: median ${f1(median(p50s))}, fastest ${f1(Math.min(...p50s))})`
  console.log(`${trials} alternating trials x ${rounds} handoffs, load ${loadAtStart} -> ${os.loadavg()[0].toFixed(1)}`)
  for (const [i, build] of builds.entries()) {
    console.log(line(`${'AB'[i]} ${build.dir}`, build.samples, build.p50s))
    console.log(`    (${build.unsplit} rounds not split at the watcher's "queued" mark: out of stages 2 and 3)`)
    for (const s of build.stages) console.log(`    ${s.name.padEnd(40)} p50 ${f1(percentile(s.samples, 0.5))}  p90 ${f1(percentile(s.samples, 0.9))} µs`)
  }
  if (floorRoot) {
    console.log(line('floor (futex wake -> thread -> JS callback)', floor.samples, floor.p50s))
    for (const [i, build] of builds.entries()) {
      console.log(`  ${'AB'[i]} / floor: p50 ${(percentile(build.samples, 0.5) / percentile(floor.samples, 0.5)).toFixed(2)}x, p99 ${(percentile(build.samples, 0.99) / percentile(floor.samples, 0.99)).toFixed(2)}x`)
    }
  }
  fs.rmSync(dir, { recursive: true, force: true })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
