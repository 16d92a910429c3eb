// The error classes of robust-mutex, shared by every backend. Each is a real named class whose
// `code` has a literal type, so a TimeoutError is not assignable to a DeadlockError and
// `err.code === 'ETIMEDOUT'` narrows. Codes are stable across releases.

/** Base class of every error this library throws; `code` is stable across releases. */
export class RobustMutexError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}
RobustMutexError.prototype.name = 'RobustMutexError'

/** The timeout passed before the lock was acquired. */
export class TimeoutError extends RobustMutexError {
  declare readonly code: 'ETIMEDOUT'
  constructor(message = 'timed out waiting for the lock', options?: { cause?: unknown }) {
    super('ETIMEDOUT', message, options)
  }
}
TimeoutError.prototype.name = 'TimeoutError'

/** The calling thread already holds the lock (`lockSync`, `tryLock`, `reset`). */
export class DeadlockError extends RobustMutexError {
  declare readonly code: 'EDEADLK'
  constructor(message = 'the calling thread already holds this lock', options?: { cause?: unknown }) {
    super('EDEADLK', message, options)
  }
}
DeadlockError.prototype.name = 'DeadlockError'

/** The lock is not held by the calling thread. */
export class NotOwnerError extends RobustMutexError {
  declare readonly code: 'EPERM'
  constructor(message = 'the calling thread does not hold this lock', options?: { cause?: unknown }) {
    super('EPERM', message, options)
  }
}
NotOwnerError.prototype.name = 'NotOwnerError'

/** The mutex is poisoned until `SharedMutex.reset`. */
export class NotRecoverableError extends RobustMutexError {
  declare readonly code: 'ENOTRECOVERABLE'
  constructor(message = 'the mutex is poisoned until it is reset', options?: { cause?: unknown }) {
    super('ENOTRECOVERABLE', message, options)
  }
}
NotRecoverableError.prototype.name = 'NotRecoverableError'

/** Not a mutex file (empty, truncated, foreign magic or version). Left unchanged. */
export class BadMutexError extends RobustMutexError {
  declare readonly code: 'EBADMUTEX'
  constructor(message = 'not a mutex file', options?: { cause?: unknown }) {
    super('EBADMUTEX', message, options)
  }
}
BadMutexError.prototype.name = 'BadMutexError'

/** Created by another binary layout (glibc vs musl, 32 vs 64 bit, ...). */
export class AbiMismatchError extends RobustMutexError {
  declare readonly code: 'EABIMISMATCH'
  constructor(message = 'the mutex file was created by another binary layout', options?: { cause?: unknown }) {
    super('EABIMISMATCH', message, options)
  }
}
AbiMismatchError.prototype.name = 'AbiMismatchError'

/** Created in another PID namespace (container). */
export class PidNamespaceError extends RobustMutexError {
  declare readonly code: 'EPIDNS'
  constructor(message = 'the mutex file belongs to another PID namespace', options?: { cause?: unknown }) {
    super('EPIDNS', message, options)
  }
}
PidNamespaceError.prototype.name = 'PidNamespaceError'

/** This platform, sandbox or filesystem cannot provide robust locking. */
export class UnsupportedError extends RobustMutexError {
  declare readonly code: 'EUNSUPPORTED'
  constructor(message = 'robust locking is not supported here', options?: { cause?: unknown }) {
    super('EUNSUPPORTED', message, options)
  }
}
UnsupportedError.prototype.name = 'UnsupportedError'

/** A symlink, a file of another user, or a file (or mode) others may write. */
export class InsecureError extends RobustMutexError {
  declare readonly code: 'EINSECURE'
  constructor(message = 'the mutex file is not private enough', options?: { cause?: unknown }) {
    super('EINSECURE', message, options)
  }
}
InsecureError.prototype.name = 'InsecureError'

/** In use: `destroy` of an open file, `close` with a held guard or a pending `lock()`. */
export class BusyError extends RobustMutexError {
  declare readonly code: 'EBUSY'
  constructor(message = 'the mutex is in use', options?: { cause?: unknown }) {
    super('EBUSY', message, options)
  }
}
BusyError.prototype.name = 'BusyError'

/** The file was deleted or replaced under this handle; reopen it. */
export class StaleError extends RobustMutexError {
  declare readonly code: 'ESTALE'
  constructor(message = 'the mutex file was deleted or replaced', options?: { cause?: unknown }) {
    super('ESTALE', message, options)
  }
}
StaleError.prototype.name = 'StaleError'

/** The handle was closed. */
export class ClosedError extends RobustMutexError {
  declare readonly code: 'ECLOSED'
  constructor(message = 'the mutex handle was closed', options?: { cause?: unknown }) {
    super('ECLOSED', message, options)
  }
}
ClosedError.prototype.name = 'ClosedError'

/** The guard was already released. */
export class ReleasedError extends RobustMutexError {
  declare readonly code: 'ERELEASED'
  constructor(message = 'the lock guard was already released', options?: { cause?: unknown }) {
    super('ERELEASED', message, options)
  }
}
ReleasedError.prototype.name = 'ReleasedError'

/** The wait was aborted through its AbortSignal; `cause` is `signal.reason`. */
export class AbortError extends RobustMutexError {
  declare readonly code: 'ABORT_ERR'
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super('ABORT_ERR', message, options)
  }
}
AbortError.prototype.name = 'AbortError'

/** The database could not be reached, refused the login, or dropped the connection (`robust-mutex/pg`); `cause` is the driver's error. */
export class ConnectionError extends RobustMutexError {
  declare readonly code: 'ECONNECTION'
  constructor(message = 'the database connection failed', options?: { cause?: unknown }) {
    super('ECONNECTION', message, options)
  }
}
ConnectionError.prototype.name = 'ConnectionError'

/** The database holds a `robust_mutex` schema this version cannot use (a newer one, or not ours). Left unchanged. */
export class SchemaError extends RobustMutexError {
  declare readonly code: 'ESCHEMA'
  constructor(message = 'the robust_mutex schema is of an unsupported version', options?: { cause?: unknown }) {
    super('ESCHEMA', message, options)
  }
}
SchemaError.prototype.name = 'SchemaError'

/** Two mutex names hash to the same advisory lock key; rename one of them. */
export class KeyCollisionError extends RobustMutexError {
  declare readonly code: 'EKEYCOLLISION'
  constructor(message = 'another mutex name uses the same advisory lock key', options?: { cause?: unknown }) {
    super('EKEYCOLLISION', message, options)
  }
}
KeyCollisionError.prototype.name = 'KeyCollisionError'

const byCode: Record<string, new (message: string) => RobustMutexError> = {
  ETIMEDOUT: TimeoutError,
  EDEADLK: DeadlockError,
  EPERM: NotOwnerError,
  ENOTRECOVERABLE: NotRecoverableError,
  EBADMUTEX: BadMutexError,
  EABIMISMATCH: AbiMismatchError,
  EPIDNS: PidNamespaceError,
  EUNSUPPORTED: UnsupportedError,
  EINSECURE: InsecureError,
  EBUSY: BusyError,
  ESTALE: StaleError,
  ECLOSED: ClosedError,
  ERELEASED: ReleasedError,
  ECONNECTION: ConnectionError,
  ESCHEMA: SchemaError,
  EKEYCOLLISION: KeyCollisionError,
}

// Argument conversions napi-rs reports with its status as `code`: bad types from JavaScript.
const typeStatuses = new Set([
  'InvalidArg',
  'ObjectExpected',
  'StringExpected',
  'NameExpected',
  'FunctionExpected',
  'NumberExpected',
  'BooleanExpected',
  'ArrayExpected',
  'BigintExpected',
])

/**
 * The native binding reports errors as `"CODE: message"`; give them their class and `code`.
 * @internal
 */
export function translate(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof RobustMutexError) return err
  const match = /^([A-Z][A-Z0-9_]*): ([\s\S]*)$/.exec(err.message)
  if (!match) {
    const status = (err as { code?: unknown }).code
    return typeof status === 'string' && typeStatuses.has(status) ? new TypeError(err.message) : err
  }
  const [, code, message] = match
  const Class = byCode[code]
  return Class ? new Class(message) : new RobustMutexError(code, message)
}
