// Token ids never repeat in a handle's life (handles.rs): a token kept after its release must
// never release a later acquisition. Ids stop at 2^51 (tokens must stay exact doubles), so a
// handle that has used them all refuses every acquisition with EOVERFLOW, before taking the
// lock, rather than issuing an id again. ROBUST_MUTEX_TEST_LAST_TOKEN_ID starts every handle's
// ids just below the end, so the end is reached in two acquisitions.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { tempDir } from './helpers'

const root = path.join(__dirname, '..')

/** Runs `script` in a child whose handles have two ids left; returns the JSON it printed. */
function runNearTheLastId(t: ExecutionContext, script: string): Record<string, unknown> {
  const run = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, ROBUST_MUTEX_TEST_LAST_TOKEN_ID: String(2 ** 51 - 2) },
  })
  t.is(run.status, 0, `${run.stdout}\n${run.stderr}`)
  return JSON.parse(run.stdout) as Record<string, unknown>
}

test('a handle whose token ids ran out refuses to acquire, with EOVERFLOW, and leaves the lock free', (t) => {
  const lockPath = path.join(tempDir(), 'ids.lock')
  const script = `
    const { SharedMutex } = require(${JSON.stringify(path.join(root, 'index.js'))})
    const binding = require(${JSON.stringify(path.join(root, 'binding.js'))})
    const outcome = (f) => { try { f(); return 'ok' } catch (err) { return err.code } }
    ;(async () => {
      const mutex = SharedMutex.open(${JSON.stringify(lockPath)})
      // The last two ids, each releasing its own hold.
      const first = mutex.tryLock()
      first.release()
      const second = mutex.lockSync()
      second.release()
      const acquisitions = mutex.state().acquisitions + 2 // and the raw handle's two
      const refused = {
        tryLock: outcome(() => mutex.tryLock()),
        lockSync: outcome(() => mutex.lockSync()),
      }
      // The raw binding's tryLock, on a handle of its own that used its two ids.
      const raw = binding.open(${JSON.stringify(lockPath)})
      for (let i = 0; i < 2; i++) binding.releaseFast(raw, binding.tryLockFast(raw))
      refused.raw = outcome(() => binding.tryLockFast(raw))
      binding.close(raw)
      try { await mutex.lock(); refused.lock = 'ok' } catch (err) { refused.lock = err.code }
      // Contended: another handle holds. The lock() is refused at once, not after a wait.
      const other = SharedMutex.open(${JSON.stringify(lockPath)})
      const held = other.tryLock()
      refused.contended = await mutex.lock().then(() => 'ok', (err) => err.code)
      held.release()
      const state = mutex.state()
      // Nothing was taken by the refusals, and another handle still can.
      const after = other.tryLock()
      const free = after !== null
      if (after) after.release()
      other.close()
      mutex.close()
      console.log(JSON.stringify({ refused, locked: state.locked, taken: state.acquisitions - acquisitions, free }))
    })().catch((err) => { console.error(err); process.exitCode = 1 })
  `
  const seen = runNearTheLastId(t, script)
  t.deepEqual(seen.refused, { tryLock: 'EOVERFLOW', lockSync: 'EOVERFLOW', raw: 'EOVERFLOW', lock: 'EOVERFLOW', contended: 'EOVERFLOW' })
  t.false(seen.locked, 'the refusals left the lock free')
  // The other handle's one acquisition (its held tryLock) only.
  t.is(seen.taken, 1)
  t.true(seen.free)
})

// The queued path: lock() calls waiting behind a guard of the same handle are served by
// tryLockAfterWait, which must refuse too once the ids ran out (without its check, hold() would
// issue ids past the end). Every waiter settles, the lock is left free, the handle closes.
test('lock() calls queued when the last id is taken are refused with EOVERFLOW; the lock stays free and the handle closes', (t) => {
  const lockPath = path.join(tempDir(), 'ids-queued.lock')
  const script = `
    const { SharedMutex } = require(${JSON.stringify(path.join(root, 'index.js'))})
    const binding = require(${JSON.stringify(path.join(root, 'binding.js'))})
    ;(async () => {
      const mutex = SharedMutex.open(${JSON.stringify(lockPath)})
      const first = mutex.tryLock() // id 2^51 - 1
      // Queued behind a guard of this very handle (EDEADLK queues).
      const settled = [0, 1, 2].map((i) => mutex.lock().then((g) => { g.release(); return 'ok' }, (err) => err.code))
      first.release() // the first waiter takes id 2^51, the last; the others are refused
      const queued = await Promise.all(settled)
      const withLock = await mutex.withLock(() => 'ran').then((v) => v, (err) => err.code)
      const state = mutex.state()
      mutex.close() // no pending lock(), no running watch
      // The raw handle's last two tokens are the last two ids' (2^51 - 1, 2^51), and a stale
      // token does not release the later hold.
      const raw = binding.open(${JSON.stringify(lockPath)})
      const a = binding.tryLockFast(raw)
      binding.releaseFast(raw, a)
      const b = binding.tryLockFast(raw)
      let stale
      try { binding.releaseFast(raw, a); stale = 'released' } catch (err) { stale = err.code }
      const stillHeld = binding.state(raw).locked
      binding.releaseFast(raw, b)
      // Every raw acquisition refuses now, the blocking one too (index.js never reaches it so).
      // (The generated functions throw code GenericFailure with the code leading the message.)
      const code = (f) => { try { const t = f(); binding.releaseFast(raw, t); return 'ok' } catch (err) { return /^([A-Z]+):/.exec(err.message)?.[1] ?? err.code } }
      const rawRefused = [
        code(() => binding.lockSync(raw, 1000)),
        code(() => binding.tryLockAfterWaitFast(raw)),
        code(() => binding.tryLockAfterWait(raw)),
        code(() => binding.tryLock(raw)),
      ]
      binding.close(raw)
      console.log(JSON.stringify({ queued, withLock, locked: state.locked, tokens: [a, b], stale, stillHeld, rawRefused }))
    })().catch((err) => { console.error(err); process.exitCode = 1 })
  `
  const seen = runNearTheLastId(t, script)
  t.deepEqual(seen.queued, ['ok', 'EOVERFLOW', 'EOVERFLOW'])
  t.is(seen.withLock, 'EOVERFLOW')
  t.false(seen.locked)
  t.deepEqual(seen.tokens, [2 ** 52 - 2, 2 ** 52])
  t.is(seen.stale, 'ERELEASED')
  t.true(seen.stillHeld)
  t.deepEqual(seen.rawRefused, ['EOVERFLOW', 'EOVERFLOW', 'EOVERFLOW', 'EOVERFLOW'])
})
