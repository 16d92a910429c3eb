// robust-mutex: a cross-process mutex for Node.js that survives crashes.
//
// The public TypeScript API over the native binding (./binding). The binding does the locking;
// this file turns its errors into typed Error subclasses, wires AbortSignal and timeouts, runs the
// onOwnerDied hook and makes guards disposable (`using guard = mutex.lockSync()`).

import * as binding from './native'
import { NativeCancel } from './native'
import type { NativeOwner, NativeState } from './binding'

// Raw Node-API twins of `tryLock` / `release` registered by the addon's module init (see
// crates/robust-mutex-node/src/fast.rs); the generated typings cannot see them.
const fast = binding as unknown as {
  tryLockFast(handle: number): number
  releaseFast(handle: number, token: number, poison: boolean): void
}

// ---------------------------------------------------------------------------------------------
// Errors

/** Base class of every error this library throws; `code` is stable across releases. */
export class RobustMutexError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}
RobustMutexError.prototype.name = 'RobustMutexError'

function errorClass(name: string, code: string) {
  const cls = class extends RobustMutexError {
    constructor(message: string, options?: { cause?: unknown }) {
      super(code, message, options)
    }
  }
  Object.defineProperty(cls, 'name', { value: name })
  cls.prototype.name = name
  return cls
}

/** The timeout passed before the lock was acquired. Code `ETIMEDOUT`. */
export const TimeoutError = errorClass('TimeoutError', 'ETIMEDOUT')
export type TimeoutError = InstanceType<typeof TimeoutError>
/** The calling thread already holds the lock (`lockSync`, `tryLock`). Code `EDEADLK`. */
export const DeadlockError = errorClass('DeadlockError', 'EDEADLK')
export type DeadlockError = InstanceType<typeof DeadlockError>
/** The lock is not held by the calling thread. Code `EPERM`. */
export const NotOwnerError = errorClass('NotOwnerError', 'EPERM')
export type NotOwnerError = InstanceType<typeof NotOwnerError>
/** The mutex is poisoned until `SharedMutex.reset`. Code `ENOTRECOVERABLE`. */
export const NotRecoverableError = errorClass('NotRecoverableError', 'ENOTRECOVERABLE')
export type NotRecoverableError = InstanceType<typeof NotRecoverableError>
/** Not a mutex file (empty, truncated, foreign magic or version). Left unchanged. Code `EBADMUTEX`. */
export const BadMutexError = errorClass('BadMutexError', 'EBADMUTEX')
export type BadMutexError = InstanceType<typeof BadMutexError>
/** Created by another binary layout (glibc vs musl, 32 vs 64 bit, ...). Code `EABIMISMATCH`. */
export const AbiMismatchError = errorClass('AbiMismatchError', 'EABIMISMATCH')
export type AbiMismatchError = InstanceType<typeof AbiMismatchError>
/** Created in another PID namespace (container). Code `EPIDNS`. */
export const PidNamespaceError = errorClass('PidNamespaceError', 'EPIDNS')
export type PidNamespaceError = InstanceType<typeof PidNamespaceError>
/** This platform, sandbox or filesystem cannot provide robust locking. Code `EUNSUPPORTED`. */
export const UnsupportedError = errorClass('UnsupportedError', 'EUNSUPPORTED')
export type UnsupportedError = InstanceType<typeof UnsupportedError>
/** A symlink, a file of another user, or a file others may write. Code `EINSECURE`. */
export const InsecureError = errorClass('InsecureError', 'EINSECURE')
export type InsecureError = InstanceType<typeof InsecureError>
/** In use: `destroy` of an open file, `close` with a held guard. Code `EBUSY`. */
export const BusyError = errorClass('BusyError', 'EBUSY')
export type BusyError = InstanceType<typeof BusyError>
/** The file was deleted or replaced under this handle; reopen it. Code `ESTALE`. */
export const StaleError = errorClass('StaleError', 'ESTALE')
export type StaleError = InstanceType<typeof StaleError>
/** The handle was closed. Code `ECLOSED`. */
export const ClosedError = errorClass('ClosedError', 'ECLOSED')
export type ClosedError = InstanceType<typeof ClosedError>
/** The guard was already released. Code `ERELEASED`. */
export const ReleasedError = errorClass('ReleasedError', 'ERELEASED')
export type ReleasedError = InstanceType<typeof ReleasedError>

/** The wait was aborted through its AbortSignal. Code `ABORT_ERR`; `cause` is `signal.reason`. */
export class AbortError extends RobustMutexError {
  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super('ABORT_ERR', message, options)
  }
}
AbortError.prototype.name = 'AbortError'

const byCode: Record<string, new (message: string, options?: { cause?: unknown }) => RobustMutexError> = {
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
}

/** Native errors arrive as `"CODE: message"`; give them their class and `code`. */
function translate(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof RobustMutexError) return err
  const match = /^([A-Z][A-Z0-9_]*): ([\s\S]*)$/.exec(err.message)
  if (!match) return err
  const [, code, message] = match
  const Class = byCode[code]
  return Class ? new Class(message) : new RobustMutexError(code, message)
}

function native<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw translate(err)
  }
}

function abortError(signal: AbortSignal): AbortError {
  return new AbortError('The lock wait was aborted', { cause: signal.reason })
}

function checkTimeout(timeout: number | undefined): void {
  if (timeout !== undefined && !(typeof timeout === 'number' && timeout >= 0)) {
    throw new RangeError(`timeout must be a non-negative number of milliseconds, got ${String(timeout)}`)
  }
}

// ---------------------------------------------------------------------------------------------
// Types

/** Who holds (or held) a mutex, as the holder recorded itself. */
export interface OwnerInfo {
  pid: number
  tid: number
  /** Held at least since then (recorded by the first process that saw it held); null if unobserved. */
  since: Date | null
}

/** A snapshot of a mutex, for diagnostics: it may change as soon as it is read. */
export interface MutexState {
  /** A live thread holds the lock. */
  locked: boolean
  /** The kernel thread id in the lock word, when locked. */
  holderTid: number | null
  /** The last holder died holding it; the next locker will see `ownerDied`. */
  abandoned: boolean
  /** The current holder, or the dead one while abandoned. */
  owner: OwnerInfo | null
  /** Acquires fail with ENOTRECOVERABLE until `SharedMutex.reset`. */
  poisoned: boolean
  /** Bumped by every reset and every re-initialisation after a reboot. */
  generation: number
  acquisitions: number
  contended: number
  ownerDeaths: number
}

export interface OpenOptions {
  /** Permission bits of a created file. Default 0o600. */
  mode?: number
  /** Create the file if it does not exist. Default true. */
  create?: boolean
  /**
   * Runs under the lock, before the acquire resolves, when the previous holder died: repair the
   * protected state here. Returning marks the mutex healthy; throwing poisons it and rejects that
   * acquire with a NotRecoverableError whose `cause` is what was thrown.
   */
  onOwnerDied?: (info: OwnerInfo | null) => void
  /** Accept a file created in another PID namespace (only safe with a shared PID namespace). */
  allowForeignPidNamespace?: boolean
  /** Accept network and FUSE filesystems (only safe when every user runs on this machine). */
  allowNetworkFilesystem?: boolean
  /** Accept a file owned by another user (whoever can write it can corrupt every holder). */
  allowOtherOwner?: boolean
}

export interface LockOptions {
  /** Give up after this many milliseconds (TimeoutError). */
  timeout?: number
  /** Give up when aborted (AbortError, noticed at once; the wait itself ends within 100 ms). */
  signal?: AbortSignal
}

function ownerInfo(owner: NativeOwner | null | undefined): OwnerInfo | null {
  if (!owner) return null
  return { pid: owner.pid, tid: owner.tid, since: owner.sinceMs == null ? null : new Date(owner.sinceMs) }
}

// ---------------------------------------------------------------------------------------------
// LockGuard

// A lock held by the native waiter thread whose guard is collected unreleased is abandoned (the
// next locker sees ownerDied): the critical section never finished. JS-thread locks need no
// registration: they simply stay held until the thread exits.
const abandonUnreleased = new FinalizationRegistry<{ handle: number; token: number }>(({ handle, token }) => {
  process.emitWarning('robust-mutex: a LockGuard was garbage-collected while holding its lock; the lock was abandoned')
  try {
    binding.giveBack(handle, token, true)
  } catch {
    // The handle is gone too; the environment's cleanup abandons the lock.
  }
})

const REMOTE_BIT = 2

// A SharedMutex collected without close() closes its native handle (unless one of its locks is
// still held: then the handle stays, as the lock does).
const closeUnreachable = new FinalizationRegistry<number>((handle) => {
  try {
    binding.close(handle)
  } catch {
    // Still holding: keep it.
  }
})

/** Proof of holding the lock. Release it exactly once (or let `using` do it). */
export class LockGuard implements Disposable {
  readonly #handle: number
  readonly #token: number
  // Keeps the SharedMutex (and so its native handle) alive while this guard exists.
  readonly #mutex: SharedMutex
  #released = false
  #poison = false

  /** @internal */
  constructor(mutex: SharedMutex, handle: number, token: number) {
    this.#mutex = mutex
    this.#handle = handle
    this.#token = token
    if (token & REMOTE_BIT) abandonUnreleased.register(this, { handle, token }, this)
  }

  /** The previous holder died holding the lock: the protected state may be half-updated. */
  get ownerDied(): boolean {
    return (this.#token & 1) === 1
  }

  /** When `ownerDied`: who died, if it recorded itself. */
  get deadOwner(): OwnerInfo | null {
    if (this.#released || !this.ownerDied) return null
    return ownerInfo(native(() => binding.deadOwner(this.#handle, this.#token)))
  }

  /** Whether this guard was released. */
  get released(): boolean {
    return this.#released
  }

  /**
   * Declare the protected state unrecoverable: on release the mutex is poisoned and every later
   * acquire, in every process, fails with NotRecoverableError until `SharedMutex.reset`.
   */
  markUnrecoverable(): void {
    if (this.#released) throw new ReleasedError('the lock guard was already released')
    this.#poison = true
  }

  /** Unlock. Throws ReleasedError if already released. */
  release(): void {
    if (this.#released) throw new ReleasedError('the lock guard was already released')
    this.#released = true
    if (this.#token & REMOTE_BIT) abandonUnreleased.unregister(this)
    try {
      fast.releaseFast(this.#handle, this.#token, this.#poison)
    } catch (err) {
      throw translate(err)
    }
  }

  /** Release if still held; never throws. */
  [Symbol.dispose](): void {
    if (this.#released) return
    try {
      this.release()
    } catch (err) {
      process.emitWarning(`robust-mutex: releasing a guard failed: ${String(err)}`)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SharedMutex

/** A cross-process mutex whose holder can die without leaving it locked. */
export class SharedMutex implements Disposable {
  readonly #handle: number
  readonly #path: string | null
  readonly #fd: number
  readonly #onOwnerDied: ((info: OwnerInfo | null) => void) | undefined
  #closed = false

  private constructor(handle: number, options: OpenOptions | undefined) {
    this.#handle = handle
    this.#path = binding.pathOf(handle) ?? null
    this.#fd = binding.fdOf(handle)
    this.#onOwnerDied = options?.onOwnerDied
    closeUnreachable.register(this, handle, this)
  }

  /** Open the mutex file at `path`, creating it if missing. */
  static open(path: string, options?: OpenOptions): SharedMutex {
    if (typeof path !== 'string' || path.length === 0) throw new TypeError('path must be a non-empty string')
    const nativeOptions = {
      mode: options?.mode,
      create: options?.create,
      allowForeignPidNamespace: options?.allowForeignPidNamespace,
      allowNetworkFilesystem: options?.allowNetworkFilesystem,
      allowOtherOwner: options?.allowOtherOwner,
    }
    return new SharedMutex(native(() => binding.open(path, nativeOptions)), options)
  }

  /** A nameless mutex; give `mutex.fd` to child processes and open it there with `fromFd`. */
  static anonymous(options?: Pick<OpenOptions, 'onOwnerDied'>): SharedMutex {
    return new SharedMutex(native(() => binding.anonymous()), options)
  }

  /** Open the mutex behind an inherited descriptor (e.g. 3 in a child given `stdio[3]`). */
  static fromFd(fd: number, options?: Pick<OpenOptions, 'onOwnerDied'>): SharedMutex {
    if (!Number.isInteger(fd) || fd < 0) throw new TypeError('fd must be a non-negative integer')
    return new SharedMutex(native(() => binding.fromFd(fd)), options)
  }

  /** Retire and remove a mutex file. BusyError while any handle has it open. */
  static destroy(path: string): void {
    native(() => binding.destroy(path))
  }

  /** Clear the poisoned state of a mutex file (after repairing what it protects). */
  static reset(path: string): void {
    native(() => binding.reset(path))
  }

  /** The file's path; null for anonymous and inherited mutexes. */
  get path(): string | null {
    return this.#path
  }

  /** The descriptor to pass to child processes (-1 once closed). */
  get fd(): number {
    return this.#closed ? -1 : this.#fd
  }

  /** Acquire without blocking the event loop. */
  async lock(options: LockOptions = {}): Promise<LockGuard> {
    const { timeout, signal } = options
    checkTimeout(timeout)
    if (signal?.aborted) throw abortError(signal)
    let quick = 0
    try {
      quick = fast.tryLockFast(this.#open())
    } catch (err) {
      const translated = translate(err)
      // Held by this very thread: queue behind it (on the waiter thread) instead of failing.
      if (!(translated instanceof DeadlockError)) throw translated
    }
    if (quick !== 0) return this.#admit(quick)
    const cancel = new NativeCancel()
    const pending = native(() => binding.lockAsync(this.#open(), cancel, timeout))
    if (!signal) {
      let granted: number
      try {
        granted = await pending
      } catch (err) {
        throw translate(err)
      }
      return this.#admit(granted)
    }
    return new Promise<LockGuard>((resolve, reject) => {
      let settled = false
      const onAbort = () => {
        if (settled) return
        settled = true
        cancel.cancel()
        reject(abortError(signal))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      pending.then(
        (granted) => {
          signal.removeEventListener('abort', onAbort)
          if (settled) {
            // Aborted while the grant was on its way: give it back, never leak it.
            binding.giveBack(this.#handle, granted, false)
            return
          }
          settled = true
          try {
            resolve(this.#admit(granted))
          } catch (err) {
            reject(err)
          }
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort)
          if (settled) return
          settled = true
          reject(translate(err))
        },
      )
    })
  }

  /** Acquire, blocking this thread (for CLIs, tests and workers; never in an Electron main process). */
  lockSync(options: { timeout?: number } = {}): LockGuard {
    checkTimeout(options.timeout)
    return this.#admit(native(() => binding.lockSync(this.#open(), options.timeout)))
  }

  /** Acquire if free; null if held elsewhere. DeadlockError if this thread holds it. */
  tryLock(): LockGuard | null {
    let granted: number
    try {
      granted = fast.tryLockFast(this.#open())
    } catch (err) {
      throw translate(err)
    }
    return granted !== 0 ? this.#admit(granted) : null
  }

  /** Run `fn` under the lock; the lock is released when it returns or throws. */
  async withLock<T>(fn: (guard: LockGuard) => T | Promise<T>, options?: LockOptions): Promise<T> {
    const guard = await this.lock(options)
    try {
      return await fn(guard)
    } finally {
      if (!guard.released) guard.release()
    }
  }

  /** A snapshot of the lock and its counters. */
  state(): MutexState {
    const s: NativeState = native(() => binding.state(this.#open()))
    return {
      locked: s.locked,
      holderTid: s.holderTid ?? null,
      abandoned: s.abandoned,
      owner: ownerInfo(s.owner),
      poisoned: s.poisoned,
      generation: s.generation,
      acquisitions: s.acquisitions,
      contended: s.contended,
      ownerDeaths: s.ownerDeaths,
    }
  }

  /** The file was deleted or replaced at its path: other processes now use another lock. */
  isStale(): boolean {
    return native(() => binding.isStale(this.#open()))
  }

  /** Close this handle. BusyError while one of its guards is held or a lock() is pending. */
  close(): void {
    if (this.#closed) return
    native(() => binding.close(this.#handle))
    this.#closed = true
    closeUnreachable.unregister(this)
  }

  /** Close if possible; never throws (a handle with a held guard stays open). */
  [Symbol.dispose](): void {
    try {
      this.close()
    } catch (err) {
      process.emitWarning(`robust-mutex: closing a mutex failed: ${String(translate(err))}`)
    }
  }

  /** The native handle; slots are reused after close, so a closed handle must never be used. */
  #open(): number {
    if (this.#closed) throw new ClosedError('the mutex handle was closed')
    return this.#handle
  }

  /** Wrap a fresh lock token, running the onOwnerDied hook first. */
  #admit(token: number): LockGuard {
    const guard = new LockGuard(this, this.#handle, token)
    if (this.#onOwnerDied && guard.ownerDied) {
      try {
        this.#onOwnerDied(guard.deadOwner)
      } catch (err) {
        guard.markUnrecoverable()
        guard.release()
        throw new NotRecoverableError('the onOwnerDied hook threw; the mutex is now poisoned', { cause: err })
      }
    }
    return guard
  }
}

/** The version of the loaded native addon. */
export { bindingVersion } from './binding'
