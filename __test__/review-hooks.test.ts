// Review of issue 13: callbacks whose results are inspected outside the try that guards them.
// `isThenable()` reads `.then`, which is user code (a getter, a Proxy trap, a revoked Proxy):
// when it throws, the lock just taken is never released and the guard is lost.
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex } from '../index'
import { tempDir } from './review-helpers'

const dir = tempDir()
let n = 0
const fresh = () => path.join(dir, `h${n++}.lock`)

/** A value whose `.then` throws when read (a revoked Proxy, as e.g. a finished immer draft is). */
function revoked(): object {
  const { proxy, revoke } = Proxy.revocable({}, {})
  revoke()
  return proxy
}

/** Leaves `p` abandoned: a worker locks it and is terminated. */
async function abandon(p: string): Promise<void> {
  const w = new Worker(path.join(__dirname, 'fixtures', 'worker-holder.cjs'), { workerData: { path: p } })
  await new Promise((resolve) => w.once('message', resolve))
  await w.terminate()
}

test('withLock (uncontended): fn returning a revoked Proxy rejects and the lock is released', async (t) => {
  const m = SharedMutex.open(fresh())
  let outcome: string
  try {
    await m.withLock(() => revoked())
    outcome = 'resolved'
  } catch (err) {
    outcome = `rejected: ${(err as Error).message}`
  }
  t.log(outcome)
  const state = m.state()
  t.false(state.locked, 'the lock stays held by nobody that will release it')
  const g = m.tryLock()
  t.not(g, null)
  g?.release()
  m.close()
})

test('withLock (queued): fn returning a revoked Proxy rejects and the lock is released', async (t) => {
  const m = SharedMutex.open(fresh())
  const first = m.lockSync()
  const pending = m.withLock(() => revoked(), { timeout: 5000 })
  first.release()
  await t.throwsAsync(pending)
  t.false(m.state().locked, 'the lock stays held by nobody that will release it')
  t.notThrows(() => m.close(), 'close() is refused (EBUSY): the lost guard still holds')
})

test('lockSync: a synchronous onOwnerDied returning a value whose .then throws leaves the lock held', async (t) => {
  const p = fresh()
  await abandon(p)
  const m = SharedMutex.open(p, { onOwnerDied: () => revoked() })
  t.throws(() => m.lockSync())
  t.false(m.state().locked, 'the lock stays held by nobody that will release it')
  t.notThrows(() => m.close(), 'close() is refused (EBUSY): the lost guard still holds')
})

test('a promise-returning (not async) hook in tryLock(): TypeError, the repair runs under the lock, one death counted once', async (t) => {
  const p = fresh()
  await abandon(p)
  const observer = SharedMutex.open(p)
  let lockedDuringRepair: boolean | undefined
  // Not an `async function`, so tryLock() only learns it is asynchronous from its result.
  const m = SharedMutex.open(p, {
    onOwnerDied: () =>
      new Promise<void>((resolve) => setTimeout(() => {
        lockedDuringRepair = observer.state().locked
        resolve()
      }, 50)),
  })
  t.throws(() => m.tryLock(), { instanceOf: TypeError })
  const g = await m.lock({ timeout: 5000 }) // waits for the repair to release
  t.true(lockedDuringRepair, 'the repair ran holding the lock')
  t.false(g.ownerDied, 'the repair finished: the mutex is healthy')
  g.release()
  t.is(m.state().ownerDeaths, 1, 'one holder died once')
  m.close()
  observer.close()
})

test('a repair that lockSync() cannot await does not go on running without the lock', async (t) => {
  const p = fresh()
  await abandon(p)
  const observer = SharedMutex.open(p)
  let lockedDuringRepair: boolean | undefined
  // A hook that returns a promise without being an `AsyncFunction` (an arrow, a transpiled async
  // function): lockSync() calls it, sees the promise and throws TypeError; the repair it started
  // must still run holding the lock.
  const repair = async () => {
    await new Promise((resolve) => setTimeout(resolve, 50))
    lockedDuringRepair = observer.state().locked // the repair's second half
  }
  // An arrow returning the promise: lockSync() learns it is asynchronous only from its result.
  const m = SharedMutex.open(p, { onOwnerDied: () => repair() })
  t.throws(() => m.lockSync(), { instanceOf: TypeError })
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.true(lockedDuringRepair, 'the started repair ran on without the lock (another process may be repairing too)')
})
