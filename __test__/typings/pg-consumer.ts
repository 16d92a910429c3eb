// Compiled, never run: the robust-mutex/pg typings as a strict consumer without @types/node or
// @types/pg sees them (tsconfig here has "types": []).
import { ConnectionError, PgMutex, TimeoutError, type PgLockGuard, type PgMutexState } from 'robust-mutex/pg'

export async function use(mutex: PgMutex): Promise<PgMutexState> {
  {
    await using guard: PgLockGuard = await mutex.lock({ timeout: 100 })
    const token: bigint = guard.fencingToken
    if (guard.ownerDied || token < 0n) guard.markUnrecoverable()
    guard.signal.throwIfAborted()
  }
  const tried = await mutex.tryLock()
  // @ts-expect-error tryLock may give null
  await tried.release()
  const n: number = await mutex.withLock(async (g) => (g.ownerDied ? 1 : 2), { signal: AbortSignal.timeout(10) })
  void n
  return mutex.state()
}

export function classify(err: unknown): string {
  if (err instanceof ConnectionError) {
    const c: 'ECONNECTION' = err.code
    return c
  }
  return err instanceof TimeoutError ? err.code : 'other'
}

export const opened = PgMutex.open('job', { connectionString: 'postgresql://localhost/db' })
// @ts-expect-error a name is required
PgMutex.open()
