// The robust-mutex/pg part of `npm run bench`: what a lock over PostgreSQL costs, beside the
// `advisory-lock` package on the same server, the two-round-trip floor (bare
// pg_advisory_lock + pg_advisory_unlock on a kept connection), and the local SharedMutex.
//
//   1. uncontended lock() + release(), one process
//   2. two processes contending: lock, release, again, for a fixed time; handoffs per second
//
// Starts its own embedded PostgreSQL (the test harness; needs tsx: run as
// `node --import tsx scripts/bench-pg.cjs`, which bench.cjs does). Figures are medians of a few
// trials on a shared machine: compare ratios, not absolutes.
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const NAME = 'bench'
const PEERS = path.join(__dirname, 'bench', 'peers')
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** lock+release pairs for each implementation, as async functions over one handle. */
function implementation(kind, url, lockPath) {
  if (kind === 'robust-mutex/pg') {
    const { PgMutex } = require('../pg.js')
    const mutex = PgMutex.open(NAME, { connectionString: url })
    return { pair: async () => (await mutex.lock()).release(), close: () => mutex.close() }
  }
  if (kind === 'advisory-lock') {
    // A bench peer: installed into scripts/bench/peers by scripts/bench/run.sh.
    const mutex = require(require.resolve('advisory-lock', { paths: [PEERS] })).default(url)(NAME)
    return { pair: async () => (await mutex.lock())(), close: async () => {} }
  }
  if (kind === 'floor') {
    // Not a usable lock (no owner death, no waiting on a dedicated connection): the least any
    // advisory-lock mutex pays, two round trips on a connection kept open.
    const { Client } = require('pg')
    const key = require('../pg.js').lockKey(NAME)
    const client = new Client({ connectionString: url })
    const ready = client.connect()
    return {
      pair: async () => {
        await ready
        await client.query('SELECT pg_advisory_lock($1)', [key])
        await client.query('SELECT pg_advisory_unlock($1)', [key])
      },
      close: () => client.end(),
    }
  }
  if (kind === 'SharedMutex') {
    const { SharedMutex } = require('../index.js')
    const mutex = SharedMutex.open(lockPath)
    return { pair: async () => (await mutex.lock()).release(), close: async () => mutex.close() }
  }
  throw new Error(`unknown implementation ${kind}`)
}

async function perOp(pair, iterations, trials) {
  const results = []
  for (let t = 0; t < trials; t++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < iterations; i++) await pair()
    results.push(Number(process.hrtime.bigint() - start) / iterations / 1000)
  }
  return median(results) // µs per lock+release
}

/** Child: on "go", lock+release until the deadline, print the count. */
async function contendChild(kind, url, lockPath, ms) {
  const impl = implementation(kind, url, lockPath)
  await impl.pair() // connect and warm up before the start line
  process.stdout.write('ready\n')
  await new Promise((resolve) => process.stdin.once('data', resolve))
  const end = performance.now() + Number(ms)
  let n = 0
  while (performance.now() < end) {
    await impl.pair()
    n++
  }
  await impl.close()
  process.stdout.write(`${n}\n`)
  process.exit(0)
}

async function contended(kind, url, lockPath, ms) {
  const children = [0, 1].map(() => {
    const child = spawn(process.execPath, [__filename, 'child', kind, url, lockPath, String(ms)], { stdio: ['pipe', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    return { child, lines: () => out.split('\n').filter(Boolean) }
  })
  const until = async (pred) => {
    while (!pred()) await new Promise((r) => setTimeout(r, 10))
  }
  await until(() => children.every((c) => c.lines()[0] === 'ready'))
  for (const c of children) c.child.stdin.write('go\n')
  await until(() => children.every((c) => c.lines().length === 2))
  const total = children.reduce((n, c) => n + Number(c.lines()[1]), 0)
  return total / (ms / 1000)
}

async function main() {
  const { startPg } = require('../__test__/pg-server.ts')
  // Default durability (fsync, synchronous commit), as a production server runs, unless
  // ROBUST_MUTEX_BENCH_PG_FAST=1 (no flushes: shows the protocol's cost without the disk's).
  const durable = process.env.ROBUST_MUTEX_BENCH_PG_FAST !== '1'
  const server = await startPg({ durable })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-bench-pg-'))
  const lockPath = path.join(dir, 'bench.lock')
  try {
    console.log(`\nrobust-mutex/pg bench: PostgreSQL (embedded, ${durable ? 'default fsync/synchronous_commit' : 'fsync=off, synchronous_commit=off'}) on 127.0.0.1, same machine\n`)
    let haveAdvisoryLock = true
    try {
      require.resolve('advisory-lock', { paths: [PEERS] })
    } catch {
      haveAdvisoryLock = false
      console.log('  skipped: advisory-lock (not installed in scripts/bench/peers; npm run bench installs it)')
    }
    const kinds = ['robust-mutex/pg', 'advisory-lock', 'floor', 'SharedMutex'].filter((k) => haveAdvisoryLock || k !== 'advisory-lock')
    const label = {
      'robust-mutex/pg': 'robust-mutex/pg lock() + release()',
      'advisory-lock': 'advisory-lock lock() + unlock()',
      floor: 'floor: pg_advisory_lock + _unlock, kept conn',
      SharedMutex: 'local SharedMutex lock() + release()',
    }
    const iterations = { 'robust-mutex/pg': 500, 'advisory-lock': 100, floor: 500, SharedMutex: 50_000 }
    // Trials interleaved across implementations, so that a noisy moment hits all of them.
    const impls = Object.fromEntries(kinds.map((kind) => [kind, implementation(kind, server.url, lockPath)]))
    for (const kind of kinds) await impls[kind].pair() // schema, connections, warm-up
    const trials = Object.fromEntries(kinds.map((kind) => [kind, []]))
    for (let t = 0; t < 5; t++) {
      for (const kind of kinds) trials[kind].push(await perOp(impls[kind].pair, iterations[kind], 1))
    }
    const uncontended = Object.fromEntries(kinds.map((kind) => [kind, median(trials[kind])]))
    for (const kind of kinds) await impls[kind].close()
    const ours = uncontended['robust-mutex/pg']
    console.log('uncontended, one process (median of 5 trials):')
    for (const kind of kinds) {
      const us = uncontended[kind]
      const ratio = kind === 'robust-mutex/pg' ? '' : `   robust-mutex/pg is ${(ours / us).toFixed(2)}x this`
      console.log(`  ${label[kind].padEnd(46)} ${us.toFixed(1).padStart(9)} us/op${ratio}`)
    }

    const ms = Number(process.env.ROBUST_MUTEX_BENCH_PG_MS ?? 3000)
    console.log(`two processes contending for ${ms} ms (lock, release, repeat; acquisitions per second, both together):`)
    const rates = {}
    const contenders = ['robust-mutex/pg', 'advisory-lock', 'SharedMutex'].filter((k) => kinds.includes(k))
    for (const kind of contenders) {
      rates[kind] = await contended(kind, server.url, lockPath, ms)
    }
    for (const kind of contenders) {
      const r = rates[kind]
      const ratio = kind === 'robust-mutex/pg' ? '' : `   robust-mutex/pg does ${(rates['robust-mutex/pg'] / r).toFixed(2)}x this`
      console.log(`  ${label[kind].padEnd(46)} ${r.toFixed(0).padStart(9)} /s${ratio}`)
    }
  } finally {
    await server.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[2] === 'child') contendChild(...process.argv.slice(3))
else main().catch((err) => {
  console.error(err)
  process.exit(1)
})
