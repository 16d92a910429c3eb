// worker_threads: each worker is its own owner, and a worker terminated while holding is an
// owner death for the next locker.
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex } from '../index'
import { tempDir, within } from './helpers'

const dir = tempDir()

test('a worker terminated while holding is seen as ownerDied', async (t) => {
  const lockPath = path.join(dir, 'worker.lock')
  const worker = new Worker(path.join(__dirname, 'fixtures', 'worker-holder.cjs'), { workerData: { path: lockPath } })
  const message = await within(
    10_000,
    new Promise<{ locked: boolean }>((resolve) => worker.once('message', resolve)),
    'the worker locking',
  )
  t.true(message.locked)
  const mutex = SharedMutex.open(lockPath)
  t.is(mutex.tryLock(), null, 'the worker thread owns it, not this thread')
  await worker.terminate()
  const guard = await within(5_000, mutex.lock(), 'lock after the worker ended')
  t.true(guard.ownerDied)
  guard.release()
  mutex.close()
})
