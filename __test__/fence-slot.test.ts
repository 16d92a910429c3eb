// The per-thread slot through which every acquisition hands its fencing token to JavaScript
// (crates/robust-mutex-node/src/fence.rs): it survives being detached by code that reached the
// raw binding, on Node's path (the memory is the addon's, behind an external ArrayBuffer) and
// on Electron's (external buffers refused: an ordinary buffer, written only while attached,
// run here on Node through ROBUST_MUTEX_TEST_REFUSE_EXTERNAL_BUFFERS); and worker threads that
// come and go each report their own tokens (slot-reuse.test.ts: an ended worker's block is
// never given to a later thread).
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex } from '../index'
import { MOVE_OUT_SOURCE, tempDir, within } from './helpers'

const root = path.join(__dirname, '..')

interface Seen {
  /** [guard.fencingToken, state().fencingToken] of every acquisition through index.js */
  pairs: Array<[string, string]>
  /** the token of an acquisition through the raw binding after the detach, before any refresh */
  raw: string
  /** what the buffer the slot was transferred to holds at the end */
  moved: string
  /** the transfer detached the slot (Node 20 copies an external buffer instead) */
  detached: boolean
}

function detachInChild(lockPath: string, refuseExternal: boolean): Seen {
  const script = `${MOVE_OUT_SOURCE}
    const { SharedMutex } = require(${JSON.stringify(path.join(root, 'index.js'))})
    const binding = require(${JSON.stringify(path.join(root, 'binding.js'))})
    const mutex = SharedMutex.open(${JSON.stringify(lockPath)})
    const pairs = []
    const take = (guard) => {
      pairs.push([String(guard.fencingToken), String(mutex.state().fencingToken)])
      guard.release()
    }
    ;(async () => {
      take(mutex.tryLock())
      take(mutex.lockSync())
      const slot = binding.fenceSlot()
      const moved = moveOut(slot)
      const detached = slot.byteLength === 0
      // Through the raw binding, which does not take a fresh slot first.
      const handle = binding.open(${JSON.stringify(lockPath)})
      binding.releaseFast(handle, binding.tryLockFast(handle))
      const raw = String(binding.state(handle).fencingToken)
      binding.close(handle)
      take(mutex.lockSync())
      take(mutex.tryLock())
      take(await mutex.lock())
      const held = mutex.lockSync()
      const queued = mutex.lock() // served by the queue after release
      take(held)
      take(await queued)
      mutex.close()
      console.log(JSON.stringify({ pairs, raw, moved: String(new BigUint64Array(moved)[0]), detached }))
    })()
  `
  const env = { ...process.env, ROBUST_MUTEX_TEST_REFUSE_EXTERNAL_BUFFERS: refuseExternal ? '1' : '0' }
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env })
  if (child.status !== 0) throw new Error(`child failed (${child.status}): ${child.stderr}`)
  return JSON.parse(child.stdout.trim()) as Seen
}

function assertIncreasingAndTrue(t: import('ava').ExecutionContext, seen: Seen): void {
  t.is(seen.pairs.length, 7)
  for (const [guard, state] of seen.pairs) t.is(guard, state, 'each guard reports the token its acquisition got')
  // In acquisition order: two before the detach, the raw one, then the rest.
  const tokens = seen.pairs.map(([guard]) => BigInt(guard))
  tokens.splice(2, 0, BigInt(seen.raw))
  for (let i = 1; i < tokens.length; i++) t.true(tokens[i] > tokens[i - 1], `${tokens[i]} after ${tokens[i - 1]}`)
}

test('Node path: after the slot is detached every guard still reports its token, and the moved memory is the addon\'s', (t) => {
  const seen = detachInChild(path.join(tempDir(), 'external.lock'), false)
  assertIncreasingAndTrue(t, seen)
  // Node 20 does not detach an external buffer: the transfer copies it (the token of the last
  // acquisition before it). Where it does detach, the moved buffer views the addon's block,
  // which the raw acquisition wrote (valid memory, never freed), and no acquisition through
  // index.js wrote it again (each took a fresh slot first).
  t.is(seen.moved, seen.detached ? seen.raw : seen.pairs[1][0])
})

test('Electron path (external buffers refused): a detached slot is never written, and guards still report their tokens', (t) => {
  const seen = detachInChild(path.join(tempDir(), 'refused.lock'), true)
  t.true(seen.detached, 'an ordinary ArrayBuffer is detached by the transfer')
  assertIncreasingAndTrue(t, seen)
  // Its memory went with it, holding the token of the last acquisition before the transfer:
  // the addon wrote nothing there since, not even for the raw acquisition that came before
  // any fresh slot.
  t.is(seen.moved, seen.pairs[1][0])
})

test('worker threads that come and go, one after another, each report their own tokens', async (t) => {
  const lockPath = path.join(tempDir(), 'workers.lock')
  const mutex = SharedMutex.open(lockPath)
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    const { SharedMutex } = require(${JSON.stringify(path.join(root, 'index.js'))})
    const mutex = SharedMutex.open(workerData)
    const out = []
    for (let i = 0; i < 3; i++) {
      const guard = mutex.lockSync()
      out.push([String(guard.fencingToken), String(mutex.state().fencingToken)])
      guard.release()
    }
    mutex.close()
    parentPort.postMessage(out)
  `
  const tokens: bigint[] = []
  for (let round = 0; round < 6; round++) {
    const worker = new Worker(code, { eval: true, workerData: lockPath })
    const pairs = await within(60_000, new Promise<Array<[string, string]>>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    }), 'a worker')
    await worker.terminate()
    for (const [guard, state] of pairs) {
      t.is(guard, state, 'the worker\'s guard reports its own token')
      tokens.push(BigInt(guard))
    }
    // The main thread's slot is its own, between the workers'.
    const guard = mutex.lockSync()
    t.is(guard.fencingToken, mutex.state().fencingToken)
    tokens.push(guard.fencingToken)
    guard.release()
  }
  for (let i = 1; i < tokens.length; i++) t.true(tokens[i] > tokens[i - 1])
  t.is(tokens.length, 6 * 4)
  mutex.close()
})
