// The contended lock() path as the handoff work left it: the watcher settles before it passes
// the wake on, the JS thread takes the lock with the raw tryLockAfterWaitFast, and a queued
// lock() is resolved by the queue itself with its guard (lock() is no async function any more).
// Real processes; no timing assertions.
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import test from 'ava'

import { ClosedError, SharedMutex } from '../index'
import { tempDir, within } from './helpers'

const INDEX = JSON.stringify(path.join(__dirname, '..', 'index.js'))

// Waits in lock() for a holder in another process; says so, then reports the grant and ends
// with nothing else keeping its event loop alive.
const WAITER = `
const { SharedMutex } = require(${INDEX})
const mutex = SharedMutex.open(process.argv[1])
const pending = mutex.lock()
console.log('waiting')
pending.then((guard) => {
  console.log('acquired ' + guard.fencingToken)
  guard.release()
  mutex.close()
})
`

test('a process whose only work is a pending lock() stays alive until the holder in another process releases, then exits by itself', async (t) => {
  const file = path.join(tempDir(), 'alive.lock')
  const mutex = SharedMutex.open(file)
  const held = mutex.lockSync()
  const child = spawn(process.execPath, ['-e', WAITER, file], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  await within(20_000, new Promise<void>((resolve) => {
    const check = () => (out.includes('waiting') ? resolve() : setTimeout(check, 10))
    check()
  }), 'the child to wait')
  // Long enough for its watcher to park and for an event loop with nothing to keep it alive to
  // have ended; not a timing assertion: the check is that it is *still* running.
  await new Promise((r) => setTimeout(r, 300))
  t.is(child.exitCode, null, 'the pending lock() keeps the process alive')
  t.false(out.includes('acquired'), 'not granted while held here')
  const fence = held.fencingToken
  held.release()
  const code = await within(20_000, exited, 'the child to exit by itself')
  t.is(code, 0)
  const granted = /acquired (\d+)/.exec(out)
  t.truthy(granted, out)
  t.true(BigInt(granted![1]) > fence, 'its guard carries the fencing token of its own acquisition')
  mutex.close()
})

test('lock() reports every error as a rejected promise, never a synchronous throw', async (t) => {
  const mutex = SharedMutex.anonymous()
  let pending: Promise<unknown> | undefined
  t.notThrows(() => (pending = mutex.lock({ timeout: -1 })))
  await t.throwsAsync(pending!, { instanceOf: RangeError })
  t.notThrows(() => (pending = mutex.lock({ signal: 'no' as unknown as AbortSignal })))
  await t.throwsAsync(pending!, { instanceOf: TypeError })
  const aborted = AbortSignal.abort(new Error('why'))
  t.notThrows(() => (pending = mutex.lock({ signal: aborted })))
  await t.throwsAsync(pending!, { name: 'AbortError' })
  const unbound = mutex.lock as (this: unknown) => Promise<unknown>
  t.notThrows(() => (pending = unbound.call(undefined)))
  await t.throwsAsync(pending!, { instanceOf: TypeError })
  mutex.close()
  t.notThrows(() => (pending = mutex.lock()))
  await t.throwsAsync(pending!, { instanceOf: ClosedError })
})

test('queued lock() calls on one handle get their guards in call order, each with its own fencing token', async (t) => {
  const file = path.join(tempDir(), 'fifo.lock')
  const holder = SharedMutex.open(file)
  const waiter = SharedMutex.open(file)
  const held = holder.lockSync()
  const order: number[] = []
  const tokens: bigint[] = []
  const all = Array.from({ length: 50 }, (_, i) =>
    waiter.lock().then((guard) => {
      order.push(i)
      tokens.push(guard.fencingToken)
      t.is(waiter.state().fencingToken, guard.fencingToken, 'the guard has the token its acquisition was issued')
      guard.release()
    }),
  )
  // Two of them give up while queued: the rest keep their order.
  const aborter = new AbortController()
  const aborted = waiter.lock({ signal: aborter.signal })
  const timedOut = waiter.lock({ timeout: 1 })
  aborter.abort()
  await t.throwsAsync(aborted, { name: 'AbortError' })
  await t.throwsAsync(timedOut, { name: 'TimeoutError' })
  held.release()
  await within(30_000, Promise.all(all), 'every queued lock() to be granted')
  t.deepEqual(order, Array.from({ length: 50 }, (_, i) => i))
  for (let i = 1; i < tokens.length; i++) t.true(tokens[i] > tokens[i - 1])
  waiter.close()
  holder.close()
  fs.rmSync(path.dirname(file), { recursive: true, force: true })
})
