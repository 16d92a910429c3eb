// Review of issue 13: release() synchronously takes the lock for the next queued lock() of its
// handle (this thread trylocks in #serve and resolves the waiter's promise); the guard is only made
// in a later microtask. A process (or worker) that ends in between — `guard.release();
// process.exit()`, a worker's process.exit() — dies holding a lock nobody used, and the next
// locker is told ownerDied although every critical section finished.
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex } from '../index'
import { nodeSync, tempDir } from './review-helpers'

const dir = tempDir()

test('release(); process.exit() with a queued lock() is no owner death', (t) => {
  const p = path.join(dir, 'exit.lock')
  const r = nodeSync(`
    const m = SharedMutex.open(${JSON.stringify(p)})
    const g = m.lockSync()
    m.lock().then((g2) => g2.release())   // queued behind g (same handle)
    g.release()                            // the critical section is over
    process.exit(0)`)
  t.is(r.status, 0, r.stderr)
  const m = SharedMutex.open(p)
  const g = m.lockSync({ timeout: 2000 })
  t.false(g.ownerDied, 'the next locker is told its predecessor died in a critical section')
  g.release()
  m.close()
})

test('a worker that releases and exits with a queued lock() is no owner death', async (t) => {
  const p = path.join(dir, 'worker.lock')
  const w = new Worker(`
    const { SharedMutex } = require(${JSON.stringify(path.join(__dirname, '..', 'index.js'))})
    const m = SharedMutex.open(${JSON.stringify(p)})
    const g = m.lockSync()
    m.lock().then((g2) => g2.release())
    g.release()
    process.exit(0)`, { eval: true })
  await new Promise((resolve) => w.once('exit', resolve))
  const m = SharedMutex.open(p)
  const g = m.lockSync({ timeout: 2000 })
  t.false(g.ownerDied, 'the next locker is told its predecessor died in a critical section')
  g.release()
  m.close()
})

test('tryLock() right after a release that served a queued lock() returns null instead of throwing DeadlockError', async (t) => {
  const m = SharedMutex.open(path.join(dir, 'trylock.lock'))
  const g = m.lockSync()
  const queued = m.lock()
  g.release() // the queued lock() is granted (its guard comes in a later microtask)
  let outcome: unknown
  try {
    outcome = m.tryLock()
  } catch (err) {
    outcome = err
  }
  t.log(outcome instanceof Error ? `tryLock threw ${outcome.constructor.name}` : `tryLock returned ${String(outcome)}`)
  t.is(outcome, null, 'no guard is held by the caller: this thread holds it only for a pending lock()')
  ;(await queued).release()
  m.close()
})
