// The call slot (crates/robust-mutex-node/src/call_slot.rs): the uncontended tryLock and release
// take their handle and token through words of the thread's fence buffer instead of Node-API
// arguments. A call acts only on the handle written for it (the word is cleared after every
// call, and no handle number is 0), garbage in the words gets the errors an argument got, tokens
// of any size cross exactly in both directions, and threads never share a slot.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex } from '../index'
import { tempDir, within } from './helpers'

interface Raw {
  open(path: string): number
  close(handle: number): void
  fenceSlot(): ArrayBuffer
  tryLockSlot(): void
  releaseSlot(): void
  releaseFast(handle: number, token: number): void
  state(handle: number): { locked: boolean; acquisitions: number }
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const raw = require('../binding.js') as Raw

const root = path.join(__dirname, '..')
const dir = tempDir()
let counter = 0
const freshPath = () => path.join(dir, `call-slot-${process.pid}-${counter++}.lock`)

const HANDLE = 2
const TOKEN_LO = 3
const TOKEN_HI = 4

/** The slot's words, the same memory index.js uses in this thread. */
function slotWords(): Int32Array {
  const words = new Int32Array(raw.fenceSlot())
  if (words.length !== 6) throw new Error(`the slot has ${words.length} words, not 6`)
  return words
}

function slotTryLock(words: Int32Array, handle: number): number {
  words[HANDLE] = handle
  raw.tryLockSlot()
  return (words[TOKEN_LO] >>> 0) + words[TOKEN_HI] * 2 ** 32
}

function slotRelease(words: Int32Array, handle: number, token: number): void {
  words[HANDLE] = handle
  words[TOKEN_LO] = token
  words[TOKEN_HI] = Math.floor(token / 2 ** 32)
  raw.releaseSlot()
}

test('a call through the slot acts on the handle written for it, and a call with none written acts on nothing', (t) => {
  const words = slotWords()
  const h = raw.open(freshPath())
  const token = slotTryLock(words, h)
  t.true(token >= 2, `acquired, token ${token}`)
  t.is(words[HANDLE], 0, 'the call cleared the handle word')
  t.true(raw.state(h).locked)

  // The same calls again with nothing written: the handle word is 0, which no handle is.
  t.throws(() => raw.tryLockSlot(), { message: /^ECLOSED/ }, 'a trylock with no handle written')
  t.throws(() => raw.releaseSlot(), { message: /^ECLOSED/ }, 'a release with no handle written')
  t.true(raw.state(h).locked, 'the earlier call\'s hold was not released by a call that wrote nothing')

  slotRelease(words, h, token)
  t.false(raw.state(h).locked)
  t.throws(() => slotRelease(words, h, token), { message: /^ERELEASED/ }, 'a second release of the token')
  raw.close(h)
})

test('garbage in the words gets the errors an argument gets, and locks nothing', (t) => {
  const words = slotWords()
  const h = raw.open(freshPath())
  const other = raw.open(freshPath())
  const generationStep = 1 << 20
  for (const bad of [0, -1, 0x7fffffff, -(2 ** 31), h ^ 1, (h + generationStep) | 0, (h - generationStep) | 0]) {
    if (bad === h || bad === other) continue
    words[HANDLE] = bad
    t.throws(() => raw.tryLockSlot(), { message: /^ECLOSED/ }, `handle word ${bad}`)
  }
  t.false(raw.state(h).locked, 'no garbage handle reached the open one')
  t.false(raw.state(other).locked)

  const token = slotTryLock(words, h)
  for (const [lo, hi, code] of [
    [0, 0, 'EINVAL'], // 0 is no token
    [1, 0, 'EINVAL'],
    [0, 1 << 21, 'EINVAL'], // 2^53: beyond every token
    [-1, -1, 'EINVAL'],
    [token + 2, 0, 'ERELEASED'], // a well-formed token this handle does not hold
    [0, 1 << 8, 'ERELEASED'], // 2^40: well-formed, two words, not held
  ] as const) {
    words[HANDLE] = h
    words[TOKEN_LO] = lo
    words[TOKEN_HI] = hi
    t.throws(() => raw.releaseSlot(), { message: new RegExp(`^${code}`) }, `token words ${lo}, ${hi}`)
    t.true(raw.state(h).locked, `still held after the refused token words ${lo}, ${hi}`)
  }
  // The token of another handle on the same thread.
  t.throws(() => slotRelease(words, other, token), { message: /^ERELEASED/ })
  t.true(raw.state(h).locked)
  slotRelease(words, h, token)
  t.false(raw.state(h).locked)
  raw.close(h)
  raw.close(other)
})

// Ids count from ROBUST_MUTEX_TEST_LAST_TOKEN_ID + 1 (handles.rs), so that a few acquisitions
// cross 2^31 (the low word's sign bit) and 2^32 (the high word) in both directions: each
// release must find the hold its tryLock/lockSync/lock returned, and the token JavaScript holds
// must be the one issued (the generated binding's poisoning release reads it as a number).
for (const lastId of [2 ** 30 - 3, 2 ** 31 - 3, 2 ** 50]) {
  test(`tokens cross the slot exactly from id ${lastId + 1} on (2^31, 2^32 and 2^51 boundaries)`, (t) => {
    const script = `
      const { SharedMutex } = require(${JSON.stringify(path.join(root, 'index.js'))})
      const mutex = SharedMutex.open(${JSON.stringify(freshPath())})
      const seen = []
      ;(async () => {
        for (let i = 0; i < 4; i++) {
          const sync = mutex.tryLock()
          sync.release()
          const blocking = mutex.lockSync()
          blocking.release()
          const queued = await mutex.lock()
          queued.release()
          await mutex.withLock(() => {})
        }
        // The generated binding gets the token too (a poisoning release): it must be the value
        // the binding issued, not only bits that round-trip through the slot.
        const last = mutex.tryLock()
        last.markUnrecoverable()
        last.release()
        const state = mutex.state()
        seen.push(state.locked, state.acquisitions, state.poisoned)
        mutex.close()
        console.log(JSON.stringify(seen))
      })().catch((err) => { console.log('failed ' + err.code + ' ' + err.message); process.exitCode = 1 })
    `
    const run = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, ROBUST_MUTEX_TEST_LAST_TOKEN_ID: String(lastId) },
      encoding: 'utf8',
      timeout: 60_000,
    })
    t.is(run.status, 0, `${run.stdout}\n${run.stderr}`)
    t.deepEqual(JSON.parse(run.stdout), [false, 17, true], 'all 17 holds released, the last one poisoning')
  })
}

test('each worker thread has a slot of its own: four threads at once, one holder at a time', async (t) => {
  const lockPath = freshPath()
  const shared = new Int32Array(new SharedArrayBuffer(8)) // [holders now, violations]
  const source = `
    const { workerData } = require('node:worker_threads')
    const { SharedMutex } = require(${JSON.stringify(path.join(root, 'index.js'))})
    const [holders, violations] = [0, 1]
    const cells = new Int32Array(workerData.shared)
    const mutex = SharedMutex.open(workerData.lockPath)
    for (let i = 0; i < 20000; i++) {
      const guard = mutex.tryLock()
      if (guard === null) continue
      if (Atomics.add(cells, holders, 1) !== 0) Atomics.add(cells, violations, 1)
      Atomics.sub(cells, holders, 1)
      guard.release()
    }
    mutex.close()
  `
  const mutex = SharedMutex.open(lockPath)
  const workers = Array.from({ length: 3 }, () => new Worker(source, { eval: true, workerData: { lockPath, shared: shared.buffer } }))
  const exits = workers.map((w) => new Promise<number>((resolve, reject) => w.on('exit', resolve).on('error', reject)))
  let mine = 0
  for (let i = 0; i < 20000; i++) {
    const guard = mutex.tryLock()
    if (guard === null) continue
    if (Atomics.add(shared, 0, 1) !== 0) Atomics.add(shared, 1, 1)
    Atomics.sub(shared, 0, 1)
    guard.release()
    mine++
    if (i % 1000 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  t.deepEqual(await within(60_000, Promise.all(exits), 'workers'), [0, 0, 0])
  t.is(shared[1], 0, 'never two holders at once')
  t.true(mine > 0, 'the main thread acquired too')
  t.false(mutex.state().locked, 'nothing left held')
  mutex.close()
})

test('where external buffers are refused (Electron) there is no slot: index.js passes arguments, the slot calls refuse', (t) => {
  const script = `
    const { SharedMutex } = require(${JSON.stringify(path.join(root, 'index.js'))})
    const binding = require(${JSON.stringify(path.join(root, 'binding.js'))})
    const words = new Int32Array(binding.fenceSlot()).length
    const mutex = SharedMutex.anonymous()
    const guard = mutex.tryLock()
    const fence = String(guard.fencingToken)
    guard.release()
    mutex.lockSync().release()
    let refused = 'no'
    try { binding.tryLockSlot() } catch (err) { refused = err.message.split(':')[0] }
    console.log(JSON.stringify({ words, fence: fence === String(mutex.state().fencingToken - 1n), refused, locked: mutex.state().locked }))
  `
  const run = spawnSync(process.execPath, ['-e', script], {
    env: { ...process.env, ROBUST_MUTEX_TEST_REFUSE_EXTERNAL_BUFFERS: '1' },
    encoding: 'utf8',
    timeout: 30_000,
  })
  t.is(run.status, 0, run.stderr)
  t.deepEqual(JSON.parse(run.stdout), { words: 2, fence: true, refused: 'EINVAL', locked: false })
})
