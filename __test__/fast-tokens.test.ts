// The lock tokens of the raw fast path (crates/robust-mutex-node/src/handles.rs, fast.rs):
// small integers (V8 returns them without allocating), counting from a random start per handle;
// `releaseFast(handle, token)` never poisons (a poisoning release is the generated
// `release(handle, token, true)`), and both refuse a token already released or one from another
// handle, including one closed and reopened on the same file. Ids never repeat in a handle's life
// (a review found a wrap-around below 2^29 let a token kept after a failed release unlock a later
// hold, after 2^29 acquisitions); the ranges are covered by the crate's unit tests (handles.rs).
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import test from 'ava'

import { NotOwnerError, NotRecoverableError, ReleasedError, SharedMutex } from '../index'
import { tempDir } from './helpers'

interface Raw {
  open(path: string): number
  anonymous(): number
  close(handle: number): void
  tryLockFast(handle: number): number
  releaseFast(handle: number, token: number): void
  release(handle: number, token: number, poison: boolean): void
  state(handle: number): { locked: boolean; poisoned: boolean }
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const raw = require('../binding.js') as Raw

const dir = tempDir()
let counter = 0
const freshPath = () => path.join(dir, `fast-tokens-${process.pid}-${counter++}.lock`)

test('tokens are integers below 2^30, new for every acquisition, from a per-handle start', (t) => {
  const a = raw.anonymous()
  const b = raw.anonymous()
  const seen = new Set<number>()
  for (let i = 0; i < 10_000; i++) {
    const token = raw.tryLockFast(a)
    t.true(Number.isInteger(token) && token >= 2 && token < 2 ** 30, `token ${token}`)
    seen.add(token)
    raw.releaseFast(a, token)
  }
  t.is(seen.size, 10_000, 'no token was issued twice in a row of acquisitions')
  const first = raw.tryLockFast(b)
  // Both handles count from their own random start (equal with probability 2^-28).
  t.false(seen.has(first), 'a second handle does not continue the first one\'s sequence')
  raw.releaseFast(b, first)
  raw.close(a)
  raw.close(b)
})

test('releaseFast never poisons; the generated release(…, true) does, once', (t) => {
  const h = raw.anonymous()
  const token = raw.tryLockFast(h)
  raw.releaseFast(h, token)
  t.false(raw.state(h).poisoned)
  t.throws(() => raw.releaseFast(h, token), { message: /^ERELEASED/ }, 'a double release is refused')

  const poisoning = raw.tryLockFast(h)
  raw.release(h, poisoning, true)
  t.true(raw.state(h).poisoned)
  t.false(raw.state(h).locked)
  t.throws(() => raw.release(h, poisoning, true), { message: /^ERELEASED/ })
  t.throws(() => raw.releaseFast(h, poisoning), { message: /^ERELEASED/ })
  t.throws(() => raw.tryLockFast(h), { message: /^ENOTRECOVERABLE/ })
  raw.close(h)
})

test('a guard marked unrecoverable poisons on release and is released once', (t) => {
  const mutex = SharedMutex.anonymous()
  const guard = mutex.lockSync()
  guard.markUnrecoverable()
  guard.release()
  t.true(guard.released)
  t.true(mutex.state().poisoned)
  t.false(mutex.state().locked)
  t.throws(() => guard.release(), { instanceOf: ReleasedError })
  t.throws(() => mutex.tryLock(), { instanceOf: NotRecoverableError })
  mutex.close()
})

test('a token from a closed handle is refused by the handle reopened on the same file', (t) => {
  const file = freshPath()
  const before = raw.open(file)
  const old = raw.tryLockFast(before)
  raw.releaseFast(before, old)
  raw.close(before)

  const after = raw.open(file)
  const held = raw.tryLockFast(after)
  // The reopened handle counts from its own random start (equal with probability 2^-28).
  t.not(held, old)
  t.throws(() => raw.releaseFast(after, old), { message: /^ERELEASED/ })
  t.throws(() => raw.release(after, old, true), { message: /^ERELEASED/ })
  t.throws(() => raw.releaseFast(before, held), { message: /^ECLOSED/ }, 'the closed handle number reaches nothing')
  t.true(raw.state(after).locked, 'the lock of the reopened handle is still held')
  t.false(raw.state(after).poisoned)
  raw.releaseFast(after, held)
  t.false(raw.state(after).locked)
  raw.close(after)
})

// The pthread_mutex_t sits at offset 192 of the file (crates/robust-mutex/src/header.rs); its
// first word (glibc) holds the owner's thread id.
test('a guard whose release failed is released for good: a retry is ReleasedError and the handle closes', (t) => {
  if (process.platform !== 'linux') return t.pass('the lock word offset is glibc Linux\'s')
  const file = freshPath()
  const mutex = SharedMutex.open(file)
  const guard = mutex.tryLock()!
  // Another process clears the lock word under this holder: the unlock then fails (EPERM).
  const cleared = spawnSync(process.execPath, ['-e', `
    const fs = require('node:fs'); const fd = fs.openSync(${JSON.stringify(file)}, 'r+')
    fs.writeSync(fd, Buffer.alloc(4), 0, 4, 192); fs.closeSync(fd)`])
  t.is(cleared.status, 0, String(cleared.stderr))
  t.throws(() => guard.release(), { instanceOf: NotOwnerError })
  t.true(guard.released, 'the binding forgot the hold, so the guard is released')
  t.throws(() => guard.release(), { instanceOf: ReleasedError }, 'a retry never reaches the binding again')
  const again = mutex.tryLock()
  t.truthy(again, 'the lock can be taken again')
  again!.release()
  t.notThrows(() => mutex.close(), 'the handle counts no hold left')
})
