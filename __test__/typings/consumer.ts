// Compiled, never run: the published typings as a strict consumer sees them, without
// @types/node (tsconfig here has "types": []), resolved to the emitted index.d.ts. Each @ts-expect-error must be an error.
import {
  DeadlockError,
  NotRecoverableError,
  RobustMutexError,
  SharedMutex,
  TimeoutError,
  type LockGuard,
  type MutexState,
} from 'robust-mutex'

// Error classes are distinct named types with literal codes.
// @ts-expect-error a DeadlockError is not a TimeoutError
export const wrong: TimeoutError = new DeadlockError()
export const code: 'ETIMEDOUT' = new TimeoutError().code
export function narrow(err: unknown): string {
  if (err instanceof TimeoutError) {
    const c: 'ETIMEDOUT' = err.code
    return c
  }
  if (err instanceof NotRecoverableError) return err.code
  return err instanceof RobustMutexError ? err.code : 'unknown'
}

export async function use(mutex: SharedMutex): Promise<MutexState> {
  {
    using guard = mutex.lockSync({ timeout: 100 })
    if (guard.ownerDied) guard.markUnrecoverable()
  }
  const guard: LockGuard = await mutex.lock({ timeout: 100, signal: AbortSignal.timeout(1000) })
  const fence: bigint = guard.fencingToken
  // @ts-expect-error the fencing token is readonly
  guard.fencingToken = fence + 1n
  const last: bigint = mutex.state().fencingToken
  const logged: string | undefined = mutex.state().toJSON?.().fencingToken
  void logged
  guard.release()
  const value: number = await mutex.withLock(async (g) => (g.ownerDied ? 1 : 2))
  // @ts-expect-error the constructor is private
  new SharedMutex()
  return { ...mutex.state(), acquisitions: value, fencingToken: last }
}

export const opened = SharedMutex.open(new URL('file:///tmp/x.lock'), { mode: 0o600, onOwnerDied: async () => {} })
