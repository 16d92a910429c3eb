// Type-checked (not run) by `npm run typecheck`: the README's usage compiles against index.d.ts,
// including `using`, and misuse is a type error.
import { LockGuard, MutexState, NotRecoverableError, SharedMutex, TimeoutError } from '../index'

export async function example(path: string): Promise<number> {
  const mutex = SharedMutex.open(path, {
    mode: 0o600,
    onOwnerDied: (info) => {
      console.warn(`process ${info?.pid ?? 'unknown'} died holding the lock; repairing`)
    },
  })
  {
    using guard = mutex.lockSync({ timeout: 1000 })
    const died: boolean = guard.ownerDied
    if (died) guard.markUnrecoverable()
  }
  const guard: LockGuard | null = mutex.tryLock()
  guard?.release()
  const controller = new AbortController()
  try {
    const g = await mutex.lock({ timeout: 500, signal: controller.signal })
    g.release()
  } catch (err) {
    if (err instanceof TimeoutError || err instanceof NotRecoverableError) console.error(err.code)
  }
  const fenced: bigint = await mutex.withLock((g) => g.fencingToken)
  const state: MutexState = mutex.state()
  const lastToken: bigint = state.fencingToken
  if (lastToken < fenced) throw new Error('unreachable: state() reports the last token issued')
  const total = await mutex.withLock(async (g) => (g.ownerDied ? 0 : state.acquisitions))
  // @ts-expect-error the timeout is a number of milliseconds
  mutex.lockSync({ timeout: '1s' })
  // @ts-expect-error guards have no unlock(), only release()
  guard?.unlock()
  mutex.close()
  return total
}
