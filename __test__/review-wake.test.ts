// Review of issue 13: a wake consumed by the native watcher is handed on only when the JS thread
// next runs. A plain C `pthread_mutex_lock` sleeper (no slices) then sleeps although the lock is
// free, for as long as the watching process's event loop is busy.
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex } from '../index'
import { cLocker, INDEX, node, nowMs, run, sleep, tempDir } from './review-helpers'

const dir = tempDir()
const C = cLocker()

test.serial('a C pthread_mutex_lock sleeper is woken promptly when the lock is freed while a busy Node process watches it', async (t) => {
  if (!C) return t.pass('no C compiler')
  const latencies: number[] = []
  for (let round = 0; round < 5; round++) {
    const p = path.join(dir, `wake${round}.lock`)
    // H holds the lock (another Node process).
    const h = node(`const m = SharedMutex.open(${JSON.stringify(p)}); const g = m.lockSync(); console.log('locked');
      process.stdin.on('end', () => { g.release(); process.exit(0) }); process.stdin.resume()`)
    await h.line('holder')
    // N waits with lock() (its watcher thread sleeps on the lock word), then its JS thread gets busy for 3 s.
    const n = node(`const m = SharedMutex.open(${JSON.stringify(p)});
      m.lock().then((g) => { console.log('acquired'); g.release(); m.close(); process.exit(0) });
      console.log('pending');
      process.stdin.setEncoding('utf8').on('data', (d) => { if (d.includes('block')) { console.log('blocking');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000) } })`)
    await n.line('N pending')
    await sleep(300)
    // C sleeps in pthread_mutex_lock (one unbounded futex wait).
    const c = run(C, [p])
    await c.line('C start')
    await sleep(3)
    n.proc.stdin!.write('block\n')
    await n.line('N blocking')
    const t0 = nowMs()
    h.proc.stdin!.end() // H releases: the lock is free
    const acquired = await c.line('C acquired', 20_000)
    const latency = Number(acquired.split(' ')[2]) - t0
    latencies.push(Math.round(latency))
    c.proc.stdin!.end()
    await n.line('N acquired')
    await Promise.all([h.exited, n.exited, c.exited])
  }
  t.log(`C acquired ${latencies.join(', ')} ms after the lock was freed`)
  t.true(latencies.every((ms) => ms < 1000), `C slept on a free lock: ${latencies.join(', ')} ms`)
})

test.serial('a Node waiter that exits after its watcher consumed the wake does not leave a C sleeper asleep on a free lock', async (t) => {
  if (!C) return t.pass('no C compiler')
  const outcomes: string[] = []
  for (let round = 0; round < 4; round++) {
    const p = path.join(dir, `exit${round}.lock`)
    const h = node(`const m = SharedMutex.open(${JSON.stringify(p)}); const g = m.lockSync(); console.log('locked');
      process.stdin.on('end', () => { g.release(); process.exit(0) }); process.stdin.resume()`)
    await h.line('holder')
    // N waits with lock(); told to, it is busy for 500 ms and then exits (it no longer wants the lock).
    const n = node(`const m = SharedMutex.open(${JSON.stringify(p)});
      m.lock().then((g) => { g.release() });
      console.log('pending');
      process.stdin.setEncoding('utf8').on('data', (d) => { if (d.includes('block')) { console.log('blocking');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500); process.exit(0) } })`)
    await n.line('N pending')
    await sleep(300)
    const c = run(C, [p])
    await c.line('C start')
    await sleep(3)
    n.proc.stdin!.write('block\n')
    await n.line('N blocking')
    const t0 = nowMs()
    h.proc.stdin!.end() // H releases: the lock is free
    await n.exited
    let outcome: string
    try {
      const acquired = await c.line('C acquired', 3_000)
      outcome = `${Math.round(Number(acquired.split(' ')[2]) - t0)} ms`
    } catch {
      outcome = 'never'
    }
    outcomes.push(outcome)
    c.proc.kill('SIGKILL')
    await Promise.all([h.exited, c.exited])
  }
  t.log(`C acquired after: ${outcomes.join(', ')} (the lock was free all along)`)
  t.false(outcomes.includes('never'), `C slept on a free lock: ${outcomes.join(', ')}`)
})

test.serial('a worker terminated after its watcher consumed the wake does not leave a C sleeper asleep on a free lock', async (t) => {
  if (!C) return t.pass('no C compiler')
  const outcomes: string[] = []
  for (let round = 0; round < 4; round++) {
    const p = path.join(dir, `term${round}.lock`)
    const holder = SharedMutex.open(p)
    const held = holder.lockSync()
    const blocker = new Int32Array(new SharedArrayBuffer(4))
    const w = new Worker(`const { SharedMutex } = require(${JSON.stringify(INDEX)}); const { parentPort, workerData } = require('node:worker_threads')
      const m = SharedMutex.open(${JSON.stringify(p)}); m.lock().then((g) => g.release()); parentPort.postMessage('pending')
      parentPort.on('message', () => { parentPort.postMessage('blocking'); Atomics.wait(workerData, 0, 0, 100000) })`, { eval: true, workerData: blocker })
    w.on('error', () => {})
    const next = () => new Promise((resolve) => w.once('message', resolve))
    await next()
    await sleep(300)
    const c = run(C, [p])
    await c.line('C start')
    await sleep(3)
    w.postMessage('block')
    await next()
    held.release() // the lock is free
    await sleep(20)
    await w.terminate() // the worker no longer wants it
    let outcome: string
    try {
      await c.line('C acquired', 3_000)
      outcome = 'acquired'
    } catch {
      outcome = 'never'
    }
    outcomes.push(outcome)
    c.proc.kill('SIGKILL')
    await c.exited
    holder.close()
  }
  t.log(`C after worker.terminate(): ${outcomes.join(', ')}`)
  t.false(outcomes.includes('never'), `C slept on a free lock: ${outcomes.join(', ')}`)
})
