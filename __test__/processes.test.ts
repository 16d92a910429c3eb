// Several real processes, real files, real SIGKILL: mutual exclusion, owner death, the event
// loop while waiting, and anonymous mutexes handed to children.
import * as fs from 'node:fs'
import * as path from 'node:path'

import test from 'ava'

import { NotRecoverableError, SharedMutex } from '../index'
import { spawn } from 'node:child_process'

import { spawnChild, tempDir, within } from './helpers'

const dir = tempDir()
let counter = 0
const freshPath = (name = 'm') => path.join(dir, `${name}${counter++}`)

// Children load the compiled package; run one at a time per test where timing matters.
test.serial('4 processes x 10,000 locked increments give the exact total; unlocked ones lose updates', async (t) => {
  const lockPath = freshPath('counter-lock')
  const locked = freshPath('locked-counter')
  const unlocked = freshPath('unlocked-counter')
  fs.writeFileSync(locked, '0')
  fs.writeFileSync(unlocked, '0')
  SharedMutex.open(lockPath).close()

  const run = async (args: string[]) => {
    const children = Array.from({ length: 4 }, () => spawnChild(args))
    const results = await within(120_000, Promise.all(children.map((c) => c.exited)), 'counter children')
    for (const r of results) t.deepEqual(r, { code: 0, signal: null })
  }
  await run(['counter', lockPath, locked, '10000'])
  t.is(Number(fs.readFileSync(locked, 'utf8')), 40_000)

  await run(['counter-unlocked', unlocked, '10000'])
  const lost = Number(fs.readFileSync(unlocked, 'utf8'))
  t.log(`without the lock: ${lost} of 40000 increments survived`)
  t.true(lost < 40_000, 'racing read-modify-write without the lock loses updates')
})

test.serial('a SIGKILLed holder is reported as ownerDied to the next locker, promptly', async (t) => {
  const lockPath = freshPath()
  const holder = spawnChild(['hold', lockPath])
  t.regex(await holder.nextLine(), /^locked \d+ ownerDied=false$/)
  const mutex = SharedMutex.open(lockPath)
  t.is(mutex.tryLock(), null, 'held by the child')
  t.is(mutex.state().owner?.pid, holder.proc.pid)

  const waiting = mutex.lock()
  const killedAt = process.hrtime.bigint()
  holder.proc.kill('SIGKILL')
  const guard = await within(5_000, waiting, 'lock after the holder was killed')
  const latencyMs = Number(process.hrtime.bigint() - killedAt) / 1e6
  t.log(`kill -> ownerDied in ${latencyMs.toFixed(2)} ms`)
  t.true(guard.ownerDied)
  t.is(guard.deadOwner?.pid, holder.proc.pid)
  t.is(mutex.state().ownerDeaths, 1)
  guard.release()

  const next = mutex.lockSync()
  t.false(next.ownerDied, 'a released recovery marks the mutex healthy again')
  next.release()
  mutex.close()
})

test.serial('onOwnerDied runs under the lock; a throw poisons and rejects with the cause', async (t) => {
  const lockPath = freshPath()
  const calls: Array<number | undefined> = []
  const holder = spawnChild(['hold', lockPath])
  await holder.nextLine()
  holder.proc.kill('SIGKILL')
  await holder.exited
  const repairing = SharedMutex.open(lockPath, { onOwnerDied: (info) => calls.push(info?.pid) })
  const guard = await repairing.lock()
  t.deepEqual(calls, [holder.proc.pid])
  t.true(guard.ownerDied)
  guard.release()
  repairing.close()

  const second = spawnChild(['hold', lockPath])
  await second.nextLine()
  second.proc.kill('SIGKILL')
  await second.exited
  const failing = SharedMutex.open(lockPath, {
    onOwnerDied: () => {
      throw new Error('cannot repair')
    },
  })
  const err = await t.throwsAsync(failing.lock(), { instanceOf: NotRecoverableError })
  t.is((err?.cause as Error).message, 'cannot repair')
  t.true(failing.state().poisoned)
  t.false(failing.state().locked, 'the poisoning acquire released the lock')
  await t.throwsAsync(failing.lock(), { code: 'ENOTRECOVERABLE' })
  SharedMutex.reset(lockPath)
  failing.lockSync().release()
  failing.close()
})

test.serial('the event loop keeps ticking while 8 lock() calls wait on another process', async (t) => {
  const lockPath = freshPath()
  const holder = spawnChild(['hold', lockPath])
  await holder.nextLine()
  const mutex = SharedMutex.open(lockPath)
  let ticks = 0
  const interval = setInterval(() => ticks++, 1)
  const waiters = Array.from({ length: 8 }, () => mutex.lock())
  await new Promise((r) => setTimeout(r, 300))
  const ticksWhileWaiting = ticks
  t.log(`${ticksWhileWaiting} ticks of a 1 ms interval in 300 ms of waiting`)
  t.true(ticksWhileWaiting >= 30, 'timers kept firing while 8 waiters waited')
  holder.proc.stdin?.end() // the holder releases and exits
  for (const waiting of waiters) {
    const guard = await within(10_000, waiting, 'a queued waiter')
    guard.release()
  }
  clearInterval(interval)
  t.is(mutex.state().acquisitions >= 9, true)
  mutex.close()
})

test.serial('an anonymous mutex handed to a child through stdio is shared, and its death is seen', async (t) => {
  const mutex = SharedMutex.anonymous()
  t.is(mutex.path, null)
  const child = spawnChild(['hold-fd'], ['pipe', 'pipe', 'inherit', mutex.fd])
  t.regex(await child.nextLine(), /^locked \d+/)
  t.is(mutex.tryLock(), null, 'the child holds our anonymous mutex')
  child.proc.kill('SIGKILL')
  const guard = await within(5_000, mutex.lock(), 'lock after the child died')
  t.true(guard.ownerDied)
  guard.release()
  mutex.close()
})

test.serial('a waiter blocked in another process fails fast when the mutex is poisoned', async (t) => {
  const lockPath = freshPath()
  const mutex = SharedMutex.open(lockPath)
  const guard = mutex.lockSync()
  const waiters = Array.from({ length: 3 }, () => spawnChild(['wait-lock', lockPath, '30000']))
  await new Promise((r) => setTimeout(r, 300)) // let them block
  guard.markUnrecoverable()
  guard.release()
  for (const w of waiters) {
    t.is(await within(10_000, w.nextLine(), 'a poisoned waiter'), 'error ENOTRECOVERABLE')
  }
  mutex.close()
})

test.serial('a guard collected unreleased warns and stays held; its process ending reports ownerDied', async (t) => {
  const lockPath = freshPath()
  const mutex = SharedMutex.open(lockPath)
  const held = mutex.lockSync() // so that the child's lock() waits
  const child = spawn(process.execPath, ['--expose-gc', path.join(__dirname, 'fixtures', 'gc-guard.cjs'), lockPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.teardown(() => child.kill('SIGKILL')) // it idles for good: never leave it behind a failure
  let output = ''
  child.stdout.setEncoding('utf8')
  const saw = (word: string) =>
    new Promise<void>((resolve) => {
      const check = () => (output.includes(word) ? resolve() : undefined)
      child.stdout.on('data', (chunk: string) => {
        output += chunk
        check()
      })
      check()
    })
  await new Promise((r) => setTimeout(r, 300)) // let it queue behind us
  held.release()
  await within(10_000, saw('granted'), 'the child being granted the lock')
  await within(10_000, saw('collected'), 'the lost guard being collected (a warning)')
  t.is(mutex.tryLock(), null, 'a collected guard is not silently unlocked')
  t.true(mutex.state().locked)
  child.kill('SIGKILL')
  const guard = await within(5_000, mutex.lock(), 'lock after the child ended')
  t.true(guard.ownerDied, 'the critical section never finished, so the next locker is told')
  guard.release()
  mutex.close()
})
