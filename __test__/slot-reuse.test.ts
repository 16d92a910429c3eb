// The block behind a thread's fence buffer (fence.rs) holds the call slot's words: the handle a
// tryLock or release acts on, and the token. A buffer moved out of a worker (`transfer()`, which
// moves an external buffer's memory on Node 22, and on Node 20 with
// --harmony-rab-gsab-transfer) keeps viewing that block after the worker ends. Were the block
// given to a later thread, the moved buffer could write that thread's handle word between its
// write and its call, so that its tryLock or release acted on another of its mutexes: a lock
// taken through the wrong handle, a release of one it still believes held. So a block that
// JavaScript has seen is never given to another thread.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import test from 'ava'

import { tempDir } from './helpers'

const root = path.join(__dirname, '..')

test('a block whose buffer was moved out of an ended worker is never written by a later thread', (t) => {
  const lockPath = path.join(tempDir(), 'moved.lock')
  const script = `
    const { Worker } = require('node:worker_threads')
    const once = (worker) => new Promise((resolve, reject) => worker.once('message', resolve).once('error', reject))
    ;(async () => {
      // A worker moves its block's buffer out and hands the new buffer to this thread.
      const mover = new Worker(\`
        const { parentPort } = require('node:worker_threads')
        const binding = require(${JSON.stringify(path.join(root, 'binding.js'))})
        const slot = binding.fenceSlot()
        const moved = slot.transfer()
        parentPort.postMessage({ moved, detached: slot.byteLength === 0 }, [moved])
      \`, { eval: true })
      const { moved, detached } = await once(mover)
      await mover.terminate()
      const view = new Int32Array(moved)
      const before = Array.from(view)
      // Later workers lock through index.js, which uses its thread's block.
      for (let round = 0; round < 3; round++) {
        const locker = new Worker(\`
          const { parentPort, workerData } = require('node:worker_threads')
          const { SharedMutex } = require(${JSON.stringify(path.join(root, 'index.js'))})
          const mutex = SharedMutex.open(workerData)
          for (let i = 0; i < 5; i++) mutex.tryLock().release()
          mutex.lockSync().release()
          mutex.close()
          parentPort.postMessage('done')
        \`, { eval: true, workerData: ${JSON.stringify(lockPath)} })
        await once(locker)
        await locker.terminate()
      }
      console.log(JSON.stringify({ detached, length: view.length, before, after: Array.from(view) }))
    })().catch((err) => { console.error(err); process.exitCode = 1 })
  `
  // transfer() is standard from Node 22, whose V8 no longer knows the flag ("bad option", exit 9):
  // only Node 20 needs it (ava's worker runs the same Node as the child).
  const flags = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function' ? [] : ['--harmony-rab-gsab-transfer']
  const run = spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8', timeout: 60_000 })
  t.is(run.status, 0, run.stderr)
  const seen = JSON.parse(run.stdout) as { detached: boolean; length: number; before: number[]; after: number[] }
  // The move must really have taken the block's memory, or this test shows nothing.
  t.true(seen.detached, 'transfer() detached the slot')
  t.is(seen.length, 6, 'the moved buffer views the whole block')
  t.deepEqual(seen.after, seen.before, 'no later thread wrote the moved block')
})
