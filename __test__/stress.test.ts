// Randomized stress of the Node binding's ownership rules: workers and processes mix lock()
// with timeouts and aborts, lockSync, tryLock, withLock and close/reopen on one mutex file while
// the test terminates workers and SIGKILLs processes at random. Invariants: never two holders
// (each critical section checks a shared file), every operation settles, a fresh process locks
// at once at the end, and this process's descriptors, threads and memory stay flat.
import { spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex } from '../index'
import { spawnChild, tempDir, within } from './helpers'

const DURATION_MS = Number(process.env.ROBUST_MUTEX_STRESS_MS ?? 30_000)
const ACTOR = path.join(__dirname, 'fixtures', 'stress-actor.cjs')
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Counts { ops: number; settled: number; violations: number; deaths: number; timeouts: number; aborts: number }
const zero = (): Counts => ({ ops: 0, settled: 0, violations: 0, deaths: 0, timeouts: 0, aborts: 0 })

// ava runs the test files as worker threads of one process, so process-wide counts move with the
// other files' tests: count only what is this test's (descriptors on files in its directory) or
// the addon's (its watcher threads, which exit when idle).
const fdsInto = (dir: string) =>
  fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir + path.sep)
    } catch {
      return false // closed meanwhile (readdir's own descriptor, among others)
    }
  }).length
const watcherThreads = () =>
  fs.readdirSync('/proc/self/task').filter((tid) => {
    try {
      return fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'robust-mutex-watch'
    } catch {
      return false
    }
  }).length

test.serial(`${DURATION_MS / 1000} s of random lock/abort/timeout/close/terminate/kill across workers and processes`, async (t) => {
  t.timeout(DURATION_MS + 60_000)
  const dir = tempDir()
  const lockPath = path.join(dir, 'stress.lock')
  const dataPath = path.join(dir, 'stress.data')
  fs.writeFileSync(dataPath, 'free')
  SharedMutex.open(lockPath).close()

  const finished: Counts[] = [] // last report of every actor that ended
  let seed = 1
  const latest = new Map<object, Counts>()

  const startWorker = () => {
    const worker = new Worker(ACTOR, { workerData: { lockPath, dataPath, seed: seed++ } })
    latest.set(worker, zero())
    worker.on('message', (line: string) => latest.set(worker, JSON.parse(line) as Counts))
    worker.on('error', (err) => t.fail(`worker error: ${String(err)}`))
    return worker
  }
  const startProcess = () => {
    const child: ChildProcess = spawn(process.execPath, [ACTOR, lockPath, dataPath, String(seed++)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    latest.set(child, zero())
    let buffered = ''
    child.stdout!.setEncoding('utf8')
    child.stdout!.on('data', (chunk: string) => {
      buffered += chunk
      const lines = buffered.split('\n')
      buffered = lines.pop()!
      for (const line of lines) latest.set(child, JSON.parse(line) as Counts)
    })
    return child
  }

  // Warm up once so that the baselines include the addon and a worker's first-use costs.
  const warm = startWorker()
  await sleep(300)
  await warm.terminate()
  finished.push(latest.get(warm)!)
  await sleep(200)
  const before = { fds: fdsInto(dir), threads: watcherThreads(), rss: process.memoryUsage().rss }

  let workers = [startWorker(), startWorker()]
  let children = [startProcess(), startProcess()]
  const end = Date.now() + DURATION_MS
  let terminations = 0
  let kills = 0
  while (Date.now() < end) {
    await sleep(150 + Math.floor(Math.random() * 250))
    if (Math.random() < 0.5) {
      const i = Math.floor(Math.random() * workers.length)
      const victim = workers[i]
      await within(5_000, victim.terminate(), 'terminating a worker')
      finished.push(latest.get(victim)!)
      latest.delete(victim)
      workers[i] = startWorker()
      terminations++
    } else {
      const i = Math.floor(Math.random() * children.length)
      const victim = children[i]
      const exited = new Promise((r) => victim.once('exit', r))
      victim.kill('SIGKILL')
      await within(5_000, exited, 'a killed actor exiting')
      finished.push(latest.get(victim)!)
      latest.delete(victim)
      children[i] = startProcess()
      kills++
    }
  }
  // Every operation settles: each live actor keeps completing operations (a wait that never
  // settles would stall its loop).
  // (Polled for up to 10 s: on a loaded 2-core machine an actor can be starved for a second.)
  const progress = new Map([...workers, ...children].map((a) => [a as object, latest.get(a)!.settled]))
  const stuck = () => [...progress].filter(([actor, settled]) => latest.get(actor)!.settled <= settled)
  for (let waited = 0; stuck().length > 0 && waited < 10_000; waited += 200) await sleep(200)
  t.is(stuck().length, 0, 'an actor settled no operation for 10 s')
  for (const w of workers) {
    await w.terminate()
    finished.push(latest.get(w)!)
  }
  for (const c of children) {
    const exited = new Promise((r) => c.once('exit', r))
    c.kill('SIGKILL')
    await exited
    finished.push(latest.get(c)!)
  }
  workers = []
  children = []

  const total = finished.reduce((a, c) => {
    for (const k of Object.keys(a) as Array<keyof Counts>) a[k] += c[k]
    return a
  }, zero())
  t.log(`${terminations} workers terminated, ${kills} processes killed; ${JSON.stringify(total)}`)
  t.is(total.violations, 0, 'two holders at once, or an unexpected error')
  t.true(total.settled > 1_000, `only ${total.settled} operations settled`)
  t.true(total.deaths > 0, 'the kills and terminations produced owner deaths')

  // A fresh process locks at once.
  const fresh = spawnChild(['wait-lock', lockPath, '2000'])
  const line = await within(10_000, fresh.nextLine(), 'a fresh process locking')
  t.regex(line, /^acquired/)
  await fresh.exited

  await sleep(500)
  const after = { fds: fdsInto(dir), threads: watcherThreads(), rss: process.memoryUsage().rss }
  t.log(`descriptors on its files ${before.fds} -> ${after.fds}, watcher threads ${before.threads} -> ${after.threads}, RSS ${(before.rss / 2 ** 20).toFixed(0)} -> ${(after.rss / 2 ** 20).toFixed(0)} MiB`)
  t.true(after.fds <= before.fds, 'descriptors on the test\'s lock files leaked')
  t.true(after.threads <= before.threads + 4, 'watcher threads leaked')
  t.true(after.rss < before.rss + 150 * 2 ** 20, 'memory grew by more than 150 MiB')
})
