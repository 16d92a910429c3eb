// Timing helpers of `npm run bench`: per-operation medians over trials, percentiles, formatting.
'use strict'

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const percentile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]

/** Median ns per call of `op` over `trials` runs of `iterations` calls (awaited one by one). */
async function perOp(iterations, trials, op) {
  const results = []
  for (let t = 0; t < trials; t++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) await op()
    results.push(Number(process.hrtime.bigint() - start) / iterations)
  }
  return median(results)
}

/** As `perOp` for a synchronous `op`. */
function perOpSync(iterations, trials, op) {
  const results = []
  for (let t = 0; t < trials; t++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) op()
    results.push(Number(process.hrtime.bigint() - start) / iterations)
  }
  return median(results)
}

/** A duration in ns, printed in the unit that keeps it readable. */
function duration(ns) {
  if (ns < 10_000) return `${ns.toFixed(1)} ns`
  if (ns < 10_000_000) return `${(ns / 1000).toFixed(1)} µs`
  return `${(ns / 1e6).toFixed(1)} ms`
}

/** One aligned line: label, figure, comment. */
function row(label, figure, comment = '') {
  console.log(`  ${label.padEnd(52)} ${String(figure).padStart(12)}   ${comment}`)
}

/** `peer / ours` as "12.3x" (how many times our figure the peer's is). */
const times = (peer, ours) => `${(peer / ours).toFixed(peer / ours >= 100 ? 0 : 1)}x`

/** heapUsed after a full collection (the bench runs with --expose-gc; without it, as is). */
function heapUsed() {
  if (typeof global.gc === 'function') {
    global.gc()
    global.gc()
  }
  return process.memoryUsage().heapUsed
}

module.exports = { median, percentile, perOp, perOpSync, duration, row, times, heapUsed }
