// Single-process semantics of the public API: acquire flavours, relock, release rules, poison,
// timeouts and aborts, state and the typed errors.
import * as path from 'node:path'

import test from 'ava'

import {
  AbortError,
  BusyError,
  DeadlockError,
  LockGuard,
  NotRecoverableError,
  ReleasedError,
  SharedMutex,
  TimeoutError,
} from '../index'
import { tempDir } from './helpers'

const dir = tempDir()
let counter = 0
const freshPath = () => path.join(dir, `m${counter++}.lock`)

test('tryLock, lockSync and lock acquire a free mutex and release it', async (t) => {
  const mutex = SharedMutex.open(freshPath())
  const a = mutex.tryLock()
  t.true(a instanceof LockGuard)
  t.false(a!.ownerDied)
  t.true(mutex.state().locked)
  a!.release()
  t.false(mutex.state().locked)
  mutex.lockSync().release()
  const b = await mutex.lock()
  t.true(mutex.state().locked)
  b.release()
  t.is(mutex.state().acquisitions, 3)
  mutex.close()
})

test('relocking from the holding thread is EDEADLK, not a self-deadlock', (t) => {
  const mutex = SharedMutex.open(freshPath())
  const guard = mutex.lockSync()
  const sync = t.throws(() => mutex.lockSync({ timeout: 50 }), { instanceOf: DeadlockError })
  t.is(sync?.code, 'EDEADLK')
  t.throws(() => mutex.tryLock(), { instanceOf: DeadlockError, code: 'EDEADLK' })
  guard.release()
  mutex.close()
})

test('an async lock by the holding thread queues behind it instead of failing', async (t) => {
  const mutex = SharedMutex.open(freshPath())
  const first = mutex.lockSync()
  let second: LockGuard | undefined
  const waiting = mutex.lock().then((g) => (second = g))
  await new Promise((r) => setTimeout(r, 50))
  t.is(second, undefined, 'still waiting while the first guard is held')
  first.release()
  await waiting
  t.true(second instanceof LockGuard)
  second!.release()
  mutex.close()
})

test('releasing a released guard throws ReleasedError; dispose is idempotent', (t) => {
  const mutex = SharedMutex.open(freshPath())
  const guard = mutex.lockSync()
  guard.release()
  t.true(guard.released)
  t.throws(() => guard.release(), { instanceOf: ReleasedError, code: 'ERELEASED' })
  t.notThrows(() => guard[Symbol.dispose]())
  t.throws(() => guard.markUnrecoverable(), { code: 'ERELEASED' })
  mutex.close()
})

test('`using` releases the guard at the end of the block', (t) => {
  const mutex = SharedMutex.open(freshPath())
  {
    using guard = mutex.lockSync()
    t.false(guard.released)
    t.true(mutex.state().locked)
  }
  t.false(mutex.state().locked)
  mutex.close()
})

test('withLock releases on return and on throw', async (t) => {
  const mutex = SharedMutex.open(freshPath())
  t.is(await mutex.withLock(() => 42), 42)
  t.false(mutex.state().locked)
  await t.throwsAsync(mutex.withLock(async () => Promise.reject(new Error('boom'))), { message: 'boom' })
  t.false(mutex.state().locked)
  mutex.close()
})

test('poison makes every acquire fail with ENOTRECOVERABLE until reset', async (t) => {
  const file = freshPath()
  const mutex = SharedMutex.open(file)
  const guard = mutex.lockSync()
  guard.markUnrecoverable()
  guard.release()
  t.true(mutex.state().poisoned)
  t.throws(() => mutex.tryLock(), { instanceOf: NotRecoverableError, code: 'ENOTRECOVERABLE' })
  t.throws(() => mutex.lockSync(), { instanceOf: NotRecoverableError })
  await t.throwsAsync(mutex.lock(), { instanceOf: NotRecoverableError })
  const generation = mutex.state().generation
  SharedMutex.reset(file)
  t.false(mutex.state().poisoned)
  t.is(mutex.state().generation, generation + 1)
  mutex.lockSync().release()
  mutex.close()
})

test('a timeout rejects with TimeoutError after at least the timeout', async (t) => {
  const mutex = SharedMutex.open(freshPath())
  const held = mutex.lockSync()
  const other = SharedMutex.anonymous() // unrelated, to prove the error is about this mutex
  other.close()
  // The JS thread holds it; an async lock waits on the waiter thread and times out.
  const start = Date.now()
  await t.throwsAsync(mutex.lock({ timeout: 150 }), { instanceOf: TimeoutError, code: 'ETIMEDOUT' })
  t.true(Date.now() - start >= 140)
  held.release()
  mutex.close()
})

test('an AbortSignal rejects with AbortError carrying signal.reason, and leaks nothing', async (t) => {
  const mutex = SharedMutex.open(freshPath())
  const held = mutex.lockSync()
  const already = AbortSignal.abort('too late')
  const early = await t.throwsAsync(mutex.lock({ signal: already }), { instanceOf: AbortError })
  t.is(early?.code, 'ABORT_ERR')
  t.is(early?.cause, 'too late')
  const controller = new AbortController()
  const pending = mutex.lock({ signal: controller.signal })
  setTimeout(() => controller.abort(new Error('stop')), 30)
  const aborted = await t.throwsAsync(pending, { instanceOf: AbortError })
  t.is((aborted?.cause as Error).message, 'stop')
  held.release()
  // The aborted request must not be holding the lock now (within one wait slice).
  await new Promise((r) => setTimeout(r, 250))
  const again = mutex.tryLock()
  t.truthy(again, 'the lock is free after the abort')
  again?.release()
  mutex.close()
})

test('close is refused while a guard is held', (t) => {
  const mutex = SharedMutex.open(freshPath())
  const guard = mutex.lockSync()
  t.throws(() => mutex.close(), { instanceOf: BusyError, code: 'EBUSY' })
  guard.release()
  t.notThrows(() => mutex.close())
  t.throws(() => mutex.tryLock(), { code: 'ECLOSED' })
  // The native slot is reused by the next open; the closed handle must not reach it.
  const other = SharedMutex.open(freshPath())
  t.throws(() => mutex.lockSync(), { code: 'ECLOSED' })
  t.is(mutex.fd, -1)
  other.close()
})

test('destroy is EBUSY while open, then removes the file', (t) => {
  const file = freshPath()
  const mutex = SharedMutex.open(file)
  t.throws(() => SharedMutex.destroy(file), { instanceOf: BusyError })
  mutex.close()
  SharedMutex.destroy(file)
  t.throws(() => SharedMutex.open(file, { create: false }), { code: 'ENOENT' })
})

test('a deleted file makes the handle stale', (t) => {
  const file = freshPath()
  const mutex = SharedMutex.open(file)
  t.false(mutex.isStale())
  require('node:fs').rmSync(file)
  t.true(mutex.isStale())
  mutex.close()
})

test('bad arguments are TypeErrors and RangeErrors', async (t) => {
  t.throws(() => SharedMutex.open(''), { instanceOf: TypeError })
  t.throws(() => SharedMutex.fromFd(-1), { instanceOf: TypeError })
  const mutex = SharedMutex.open(freshPath())
  t.throws(() => mutex.lockSync({ timeout: -1 }), { instanceOf: RangeError })
  await t.throwsAsync(mutex.lock({ timeout: Number.NaN }), { instanceOf: RangeError })
  mutex.close()
})
