// Scale rows of `npm run bench`: many pending lock() calls on one handle, many open mutexes.
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const readline = require('node:readline')
const { SharedMutex } = require('../../index.js')
const { heapUsed } = require('./stats.cjs')

const openFds = () => fs.readdirSync('/proc/self/fd').length

/** Resident memory in bytes: anonymous and file-backed (a mutex's mapped page is the latter). */
function resident() {
  const status = fs.readFileSync('/proc/self/status', 'utf8')
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem') }
}

/** A child process holding the lock at `lockPath` until `release()` (its stdin closes). */
async function holdInChild(lockPath) {
  const script = `
    const guard = require(${JSON.stringify(require.resolve('../../index.js'))}).SharedMutex.open(process.argv[1]).lockSync()
    process.stdout.write('locked\\n')
    process.stdin.on('end', () => { guard.release(); process.exit(0) }).resume()`
  const proc = spawn(process.execPath, ['-e', script, lockPath], { stdio: ['pipe', 'pipe', 'inherit'] })
  const line = await readline.createInterface({ input: proc.stdout })[Symbol.asyncIterator]().next()
  if (line.value !== 'locked') throw new Error(`the holder said ${line.value}`)
  const exited = new Promise((resolve) => proc.on('exit', resolve))
  return { release: () => proc.stdin.end(), exited }
}

/**
 * `n` lock() calls pending on one handle while another process holds the lock; then it
 * releases and they drain. Returns heap bytes per pending call, µs per grant, and whether they
 * were granted in call order (checked here, on every run).
 */
async function pendingWaiters(lockPath, n) {
  const holder = await holdInChild(lockPath)
  const mutex = SharedMutex.open(lockPath)
  const order = []
  const pending = new Array(n)
  const before = heapUsed()
  for (let i = 0; i < n; i++) pending[i] = mutex.lock()
  const bytesPerWaiter = (heapUsed() - before) / n
  const all = pending.map((p, i) => p.then((guard) => {
    order.push(i)
    guard.release()
  }))
  const start = process.hrtime.bigint()
  holder.release()
  await Promise.all(all)
  const nsPerGrant = Number(process.hrtime.bigint() - start) / n
  const fifo = order.length === n && order.every((v, i) => v === i)
  await holder.exited
  mutex.close()
  return { bytesPerWaiter, nsPerGrant, fifo }
}

/** Mean of `times[from..to)`. */
function mean(times, from, to) {
  let sum = 0
  for (let i = from; i < to; i++) sum += times[i]
  return sum / (to - from)
}

/** Opens `paths` in order, keeping them open: the handles and each open's ns. */
function openAll(paths) {
  const handles = []
  const times = new Float64Array(paths.length)
  for (let i = 0; i < paths.length; i++) {
    const start = process.hrtime.bigint()
    handles.push(SharedMutex.open(paths[i]))
    times[i] = Number(process.hrtime.bigint() - start)
  }
  return { handles, times }
}

/** Mean ns per open of opens #1-10, #901-1000 and #9001-10000 (scaled down for smaller n). */
function perOpenAt(times) {
  const n = times.length
  const k = Math.min(1000, n)
  return [
    [Math.min(10, n), mean(times, 0, Math.min(10, n))],
    [k, mean(times, Math.floor(k * 0.9), k)],
    [n, mean(times, Math.floor(n * 0.9), n)],
  ]
}

/**
 * Opens `n` mutexes, one file each, and keeps them open: first creating the files, then (all
 * closed) opening the existing files again. Reports the mean time per open around 10, 1,000
 * and 10,000 already open, and the descriptors and memory each open mutex costs.
 */
function manyOpen(dir, n) {
  fs.mkdirSync(dir, { recursive: true })
  const paths = Array.from({ length: n }, (_, i) => path.join(dir, `m${i}.lock`))
  const created = openAll(paths)
  for (const h of created.handles) h.close()
  created.handles.length = 0

  const fdsBefore = openFds()
  const heapBefore = heapUsed()
  const rssBefore = resident()
  const opened = openAll(paths)
  const heapAfter = heapUsed()
  const rssAfter = resident()
  const result = {
    createPerOpen: perOpenAt(created.times),
    perOpen: perOpenAt(opened.times),
    fdsPerMutex: (openFds() - fdsBefore) / n,
    heapPerMutex: (heapAfter - heapBefore) / n,
    anonPerMutex: (rssAfter.anon - rssBefore.anon) / n,
    filePerMutex: (rssAfter.file - rssBefore.file) / n,
  }
  const closeStart = process.hrtime.bigint()
  for (const h of opened.handles) h.close()
  result.perClose = Number(process.hrtime.bigint() - closeStart) / n
  fs.rmSync(dir, { recursive: true, force: true })
  return result
}

module.exports = { pendingWaiters, manyOpen }
