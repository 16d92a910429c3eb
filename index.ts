// robust-mutex: a cross-process mutex for Node.js that survives crashes.
//
// The public TypeScript API over the native binding (./binding). One owner per hold: every lock
// is taken and released by the JS thread whose guard it is. A contended lock() queues here
// (FIFO per handle), asks the binding to *watch* the lock (a native thread waits until nobody
// holds it, without taking it), then takes it on this thread with a trylock; if another locker
// barged in, it watches again. Aborts, timeouts, close, worker termination and garbage
// collection only stop waiting: there is never a grant to give back.

import { fileURLToPath } from 'node:url'

// `import x = require()`, not `import * as`: the latter compiles to an object of getters (one
// megamorphic keyed load per call, ~5% of a tryLock()+release() pair); this is the binding itself.
import binding = require('./native')
import type { NativeCancel, NativeOwner } from './binding'
import {
  AbortError,
  BusyError,
  ClosedError,
  DeadlockError,
  NotRecoverableError,
  ReleasedError,
  TimeoutError,
  translate,
} from './errors'

export {
  AbiMismatchError,
  AbortError,
  BadMutexError,
  BusyError,
  ClosedError,
  ConnectionError,
  DeadlockError,
  InsecureError,
  KeyCollisionError,
  NotOwnerError,
  NotRecoverableError,
  PidNamespaceError,
  ReleasedError,
  RobustMutexError,
  SchemaError,
  StaleError,
  TimeoutError,
  UnsupportedError,
} from './errors'

// Raw Node-API twins of `tryLock` / `release` registered by the addon's module init (see
// crates/robust-mutex-node/src/fast.rs); the generated typings cannot see them. Copied into an
// object of their own: the binding's exports object has too many properties to stay a fast
// object, and a load from it is a generic IC lookup (~5% of a tryLock()+release() pair).
const rawFast = binding as unknown as {
  tryLockFast(handle: number): number
  tryLockAfterWaitFast(handle: number): number
  releaseFast(handle: number, token: number): void // never poisons: binding.release does
  tryLockSlot(): void // tryLockFast with its handle and token in the call slot (see below)
  releaseSlot(): void // releaseFast with its handle and token in the call slot
  fenceSlot(): ArrayBuffer
  stateInto(handle: number, slots: Float64Array): void
}

// `state()` as numbers, written by `stateInto` (crates/robust-mutex-node/src/state_slots.rs)
// and read right after that call: a flags word, the ids, the counters, and in the last slot the
// fencing token's 64 bits, read as a bigint through a second view of the same buffer. Building
// the object here in one literal costs a fraction of what napi-rs paid to set 12 properties by
// name. Private to this module: nothing else can detach the buffer.
const stateSlots = new Float64Array(10)
const stateToken = new BigUint64Array(stateSlots.buffer)
const STATE_LOCKED = 1
const STATE_ABANDONED = 2
const STATE_POISONED = 4
const STATE_HAS_HOLDER_TID = 8
const STATE_HAS_OWNER = 16
const STATE_HAS_SINCE = 32

// The fencing token of this thread's last acquisition, as two 32-bit words (low, high) that the
// binding writes next to every lock token it returns (crates/robust-mutex-node/src/fence.rs):
// read right after that call, it costs no extra call and no allocation; the bigint is built
// only when `guard.fencingToken` is read.
let lastFence = new Int32Array(rawFast.fenceSlot())

// Any code holding the slot's buffer can detach it (transfer it away; the raw binding is
// reachable), and a detached view reads undefined. Called before every acquisition: the binding
// then gives a fresh buffer, writes this acquisition's token there, and never writes the
// detached one again. (A length check: no call, no allocation while attached.)
function fenceReady(): void {
  if (lastFence.length === 0) lastFence = new Int32Array(rawFast.fenceSlot())
}
const fast = {
  tryLockFast: rawFast.tryLockFast,
  releaseFast: rawFast.releaseFast,
  tryLockSlot: rawFast.tryLockSlot,
  releaseSlot: rawFast.releaseSlot,
}

// The call slot: the same buffer's words after the fencing token's, through which the
// uncontended tryLock and release take their handle and token and return the token, so that no
// number crosses as a Node-API value (crates/robust-mutex-node/src/call_slot.rs). Where external
// buffers are refused (Electron) the buffer is the token's two words only, and the
// argument-passing twins are used. The length is checked before every call through the slot:
// a detached view reads nothing and writes nothing, and nothing can detach it between that
// check, the writes, the call and the reads (no other code runs in between).
const SLOT_WORDS = 6
const SLOT_HANDLE = 2
const SLOT_TOKEN_LO = 3
const SLOT_TOKEN_HI = 4
const TWO_POW_32 = 4294967296

/** One trylock of `handle` on this thread: a lock token, 0 when held elsewhere (throws as tryLockFast). */
function tryLockNow(handle: number): number {
  let slot = lastFence
  if (slot.length !== SLOT_WORDS) {
    fenceReady()
    slot = lastFence
    if (slot.length !== SLOT_WORDS) return fast.tryLockFast(handle)
  }
  slot[SLOT_HANDLE] = handle
  fast.tryLockSlot()
  const lo = slot[SLOT_TOKEN_LO]
  const hi = slot[SLOT_TOKEN_HI]
  // Below 2^31 (the first 2^30 acquisitions of a handle at least) the low word is the token.
  return hi === 0 && lo >= 0 ? lo : (lo >>> 0) + hi * TWO_POW_32
}

/** Unlocks the hold of `token` (never poisons; throws as releaseFast). */
function releaseNow(handle: number, token: number): void {
  const slot = lastFence
  if (slot.length !== SLOT_WORDS) return fast.releaseFast(handle, token)
  slot[SLOT_HANDLE] = handle
  slot[SLOT_TOKEN_LO] = token // the low 32 bits (an Int32Array store wraps modulo 2^32)
  slot[SLOT_TOKEN_HI] = token > 0x7fffffff ? (token / TWO_POW_32) | 0 : 0
  fast.releaseSlot()
}

function native<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw translate(err)
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
  /** The last fencing token issued (the holder's, while locked); see `LockGuard.fencingToken`. */
  fencingToken: bigint
  /**
   * What `JSON.stringify(state)` writes: these fields, with `fencingToken` as a decimal string (a
   * bigint has no JSON form, and a token exceeds 2^53). Present, not enumerable, on every object
   * `state()` returns; a copy made by spreading it has none (and does not stringify).
   */
  toJSON?(): MutexStateJSON
}

/** A `MutexState` as JSON carries it: the fencing token as a decimal string. */
export type MutexStateJSON = Omit<MutexState, 'fencingToken' | 'toJSON'> & { fencingToken: string }

// Shared by every state() result, not enumerable there: spreading a state or listing its keys
// shows only its fields.
function stateToJSON(this: MutexState): MutexStateJSON {
  return { ...this, fencingToken: String(this.fencingToken) }
}
const STATE_TO_JSON: PropertyDescriptor = { value: stateToJSON, enumerable: false, writable: true, configurable: true }

/** Runs under the lock when the previous holder died; see `OpenOptions.onOwnerDied`. */
/** A returned promise (an async hook) is awaited by `lock()`. */
export type OwnerDiedHook = (info: OwnerInfo | null) => unknown

/** A path as `fs` takes it: a string, a Buffer (any Uint8Array), or a `file:` URL. */
export type PathLike = string | Uint8Array | URL

export interface OpenOptions {
  /** Permission bits of a created file: an integer in 0..0o777 without bits for others to write. Default 0o600. */
  mode?: number
  /** Create the file if it does not exist. Default true. */
  create?: boolean
  /**
   * Runs under the lock, before the acquire resolves, when the previous holder died: repair the
   * protected state here. Returning (or resolving) marks the mutex healthy; throwing (or
   * rejecting) poisons it and rejects that acquire with a NotRecoverableError whose `cause` is
   * the error. `lock()` awaits an async hook; `lockSync()` and `tryLock()` accept only a
   * synchronous one (TypeError otherwise).
   */
  onOwnerDied?: OwnerDiedHook
  /**
   * Accept a file created in another PID namespace (a container), and opening from a process
   * that cannot read its own namespace (no `/proc`); otherwise both are `PidNamespaceError`.
   * Still true across namespaces: mutual exclusion, and owner death when a holder dies or its
   * thread ends. Lost: a holder in another namespace that `exec`s from a non-main thread (which
   * the kernel does not report) keeps the lock until `reset` once nobody has the file open;
   * `state()` shows that holder's ids as its own namespace numbers them.
   */
  allowForeignPidNamespace?: boolean
  /** Accept network and FUSE filesystems (only safe when every user runs on this machine). */
  allowNetworkFilesystem?: boolean
  /** Accept a file owned by another user (whoever can write it can corrupt every holder). */
  allowOtherOwner?: boolean
}

export interface LockOptions {
  /** Give up after this many milliseconds (TimeoutError). `Infinity` or absent: no limit. */
  timeout?: number
  /** Give up when aborted (AbortError with `cause = signal.reason`, at once). */
  signal?: AbortSignal
}

export interface ResetOptions {
  /** Wait at most this many milliseconds for the lock (TimeoutError). Default 5000. */
  timeout?: number
}

// ---------------------------------------------------------------------------------------------
// Argument checks: bad input is a TypeError or RangeError before anything reaches the binding.

function checkTimeout(timeout: unknown): number | undefined {
  if (timeout === undefined) return undefined
  if (typeof timeout !== 'number') throw new TypeError(`timeout must be a number of milliseconds, got ${typeof timeout}`)
  if (!(timeout >= 0)) throw new RangeError(`timeout must be a non-negative number of milliseconds, got ${timeout}`)
  return timeout
}

function checkObject(options: unknown, what: string): Record<string, unknown> | undefined {
  if (options === undefined) return undefined
  if (options === null || typeof options !== 'object') throw new TypeError(`${what} must be an object`)
  return options as Record<string, unknown>
}

function checkBoolean(value: unknown, name: string): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean`)
  return value
}

function checkHook(value: unknown): OwnerDiedHook | undefined {
  if (value !== undefined && typeof value !== 'function') throw new TypeError('onOwnerDied must be a function')
  return value as OwnerDiedHook | undefined
}

function checkPath(path: unknown): string | Buffer {
  if (typeof path === 'string') {
    if (path.length === 0) throw new TypeError('path must be a non-empty string')
    if (path.includes('\0')) throw new TypeError('path must not contain NUL characters')
    return path
  }
  if (path instanceof URL) {
    if (path.protocol !== 'file:') throw new TypeError(`path must be a file: URL, got ${path.protocol}`)
    return checkPath(fileURLToPath(path))
  }
  if (path instanceof Uint8Array) {
    if (path.length === 0) throw new TypeError('path must not be empty')
    if (path.includes(0)) throw new TypeError('path must not contain NUL bytes')
    return Buffer.from(path)
  }
  throw new TypeError('path must be a string, a Buffer or a file: URL')
}

function lockOptions(options: unknown): { timeout: number | undefined; signal: AbortSignal | undefined } {
  const o = checkObject(options, 'lock options')
  if (!o) return { timeout: undefined, signal: undefined }
  const signal = o.signal
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal')
  return { timeout: checkTimeout(o.timeout), signal }
}

function abortError(signal: AbortSignal): AbortError {
  return new AbortError('The lock wait was aborted', { cause: signal.reason })
}

function ownerInfo(owner: NativeOwner | null | undefined): OwnerInfo | null {
  if (!owner) return null
  return { pid: owner.pid, tid: owner.tid, since: owner.sinceMs == null ? null : new Date(owner.sinceMs) }
}

const isAsyncFunction = (fn: unknown): boolean =>
  typeof fn === 'function' && fn.constructor?.name === 'AsyncFunction'

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  value !== null && (typeof value === 'object' || typeof value === 'function') &&
  typeof (value as { then?: unknown }).then === 'function'

// ---------------------------------------------------------------------------------------------
// Waiting: timers longer than setTimeout allows, and one abort listener per signal.

/** setTimeout caps delays at 2^31-1 ms (then fires at once); longer ones are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1

class Deadline {
  #timer: ReturnType<typeof setTimeout> | undefined
  constructor(ms: number, onExpiry: () => void) {
    const end = performance.now() + ms
    const arm = (delay: number) => {
      this.#timer = setTimeout(() => {
        const left = end - performance.now()
        if (left > 0.5) arm(Math.min(left, MAX_TIMER_MS))
        else onExpiry()
      }, delay)
    }
    arm(Math.min(ms, MAX_TIMER_MS))
  }
  clear(): void {
    clearTimeout(this.#timer)
  }
}

// Many waits may share one AbortSignal: each signal gets one listener from us, however many
// waits use it (an EventTarget warns past 10 listeners).
const abortSubscribers = new WeakMap<AbortSignal, Set<() => void>>()

function onAbort(signal: AbortSignal, fn: () => void): void {
  let subscribers = abortSubscribers.get(signal)
  if (!subscribers) {
    const fresh = new Set<() => void>()
    subscribers = fresh
    abortSubscribers.set(signal, fresh)
    signal.addEventListener('abort', () => {
      abortSubscribers.delete(signal)
      for (const fn of fresh) fn()
    }, { once: true })
  }
  subscribers.add(fn)
}

function offAbort(signal: AbortSignal, fn: () => void): void {
  abortSubscribers.get(signal)?.delete(fn)
}

/**
 * The pending lock() calls of a handle, first in first out. Not a plain array: `Array#shift`
 * copies every remaining entry once V8 cannot trim the array in place (a backing store over
 * 128 KiB, ~16k entries, or while the GC marks), which made draining 10,000-20,000 pending calls
 * quadratic (17-22 µs per grant at 20,000).
 */
class Fifo<T> {
  #items: Array<T | undefined> = []
  #head = 0

  get length(): number {
    return this.#items.length - this.#head
  }

  push(item: T): void {
    this.#items.push(item)
  }

  shift(): T | undefined {
    if (this.#head === this.#items.length) return undefined
    const item = this.#items[this.#head]
    this.#items[this.#head++] = undefined
    if (this.#head === this.#items.length) {
      this.#items.length = 0
      this.#head = 0
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      // Drop the consumed half now and then (amortised O(1) per entry).
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  /** Removes `item` (a timeout, an abort); false if it is not queued. */
  remove(item: T): boolean {
    const index = this.#items.indexOf(item, this.#head)
    if (index < 0) return false
    this.#items.splice(index, 1)
    return true
  }

  /** Empties the queue, returning what it held in order. */
  takeAll(): T[] {
    const all = this.#items.slice(this.#head) as T[]
    this.#items = []
    this.#head = 0
    return all
  }
}

/** A pending lock() call. */
interface Waiter {
  /** Settles the caller's lock() promise itself. */
  resolve(guard: LockGuard): void
  reject(err: unknown): void
  deadline: Deadline | undefined
  signal: AbortSignal | undefined
  abort: (() => void) | undefined
}

// ---------------------------------------------------------------------------------------------
// LockGuard

// Only this module constructs handles and guards: a forged one could alias another's lock.
const INTERNAL: unique symbol = Symbol('robust-mutex internal')
/** Lets a guard tell its mutex that the lock is free again (to serve queued lock() calls). @internal */
const RELEASED: unique symbol = Symbol('robust-mutex released')
/** Asks a guard to register for the collected-while-held warning if it is still held. @internal */
const TRACK: unique symbol = Symbol('robust-mutex track')

// A guard collected while still held keeps its lock held (the critical section never
// finished; the thread's exit reports the owner death): say so. Registering costs ~0.9 µs, more
// than a whole lock/unlock, so only guards still held a moment after their acquisition are
// registered: new guards wait in a list (an array push), swept by an unref'd timer or when the
// list is long (a tight synchronous loop).
const unreleasedGuards = new FinalizationRegistry<string>((where) => {
  process.emitWarning(
    `robust-mutex: a LockGuard of ${where} was garbage-collected while holding its lock; the lock stays held until this thread exits`,
  )
})
const SWEEP_MS = 250
const SWEEP_LENGTH = 1024
// An array of the final length and a count, replaced at each sweep: emptying it with
// `length = 0` dropped its storage, which then grew again from 4 elements every sweep (~2% of a
// tryLock()+release() pair); a single long-lived array is promoted to the old generation, and
// every store of a new guard into it then pays the write barrier's remembered-set insertion
// (~3%). A fresh one per 1024 guards stays young.
let recentGuards: LockGuard[] = new Array<LockGuard>(SWEEP_LENGTH)
let recentCount = 0
let sweepTimer: ReturnType<typeof setTimeout> | undefined

function trackGuard(guard: LockGuard): void {
  recentGuards[recentCount++] = guard
  if (recentCount >= SWEEP_LENGTH) sweepGuards()
  else if (sweepTimer === undefined) sweepTimer = setTimeout(sweepGuards, SWEEP_MS).unref()
}

function sweepGuards(): void {
  if (sweepTimer !== undefined) clearTimeout(sweepTimer)
  sweepTimer = undefined
  const guards = recentGuards
  const count = recentCount
  // Replaced before the calls: the list must not keep a guard alive (its collection is what the
  // registry watches for).
  recentGuards = new Array<LockGuard>(SWEEP_LENGTH)
  recentCount = 0
  for (let i = 0; i < count; i++) guards[i][TRACK]()
}

/** Proof of holding the lock. Release it exactly once (or let `using` do it). */
export class LockGuard implements Disposable {
  readonly #mutex: SharedMutex
  readonly #handle: number
  readonly #token: number
  readonly #fenceLo: number
  readonly #fenceHi: number
  #released = false
  #poison = false
  #registered = false

  private constructor(key: symbol, mutex: SharedMutex, handle: number, token: number, fenceLo: number, fenceHi: number) {
    if (key !== INTERNAL) throw new TypeError('LockGuard objects are made by SharedMutex lock methods')
    this.#mutex = mutex
    this.#handle = handle
    this.#token = token
    this.#fenceLo = fenceLo
    this.#fenceHi = fenceHi
    trackGuard(this)
  }

  /** Still held a moment after acquisition: watch for collection. @internal */
  [TRACK](): void {
    if (this.#released) return
    this.#registered = true
    unreleasedGuards.register(this, this.#mutex.path ?? 'an anonymous mutex', this)
  }

  /** The previous holder died holding the lock: the protected state may be half-updated. */
  get ownerDied(): boolean {
    return (this.#token & 1) === 1
  }

  /**
   * This acquisition's fencing token: greater than every token issued before it for this mutex
   * file, by any process, across owner deaths, resets and re-initialisations (never issued
   * twice). Send it with every write to what the lock protects, and have that store refuse a
   * token lower than the highest it has seen: a holder that lost the lock without knowing it
   * (paused, presumed dead) is then turned away. Still readable after `release()`.
   */
  get fencingToken(): bigint {
    return BigInt.asUintN(64, (BigInt(this.#fenceHi) << 32n) | BigInt(this.#fenceLo >>> 0))
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
   * @throws {ReleasedError} if already released
   */
  markUnrecoverable(): void {
    if (this.#released) throw new ReleasedError('the lock guard was already released')
    this.#poison = true
  }

  /**
   * Unlock (marking the mutex healthy after an owner death, or poisoned after
   * `markUnrecoverable()`).
   * @throws {ReleasedError} if already released
   * @throws {NotOwnerError} if called on a thread that does not hold the lock
   */
  release(): void {
    if (this.#released) throw new ReleasedError('the lock guard was already released')
    try {
      // A poisoning release is rare: the generated call takes the flag, the raw one reads none.
      if (this.#poison) binding.release(this.#handle, this.#token, true)
      else releaseNow(this.#handle, this.#token)
    } catch (err) {
      // Whatever failed, the binding's record of this hold is gone (an unlock is never retried:
      // only a thread that does not hold the lock can fail one), so the guard is released for
      // good: a retry must not reach a later hold.
      this.#done()
      this.#mutex[RELEASED]()
      throw translate(err)
    }
    this.#done()
    this.#mutex[RELEASED]()
  }

  #done(): void {
    this.#released = true
    if (this.#registered) unreleasedGuards.unregister(this)
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

/** Runs `fn` holding `guard`, releasing when it returns, throws or its promise settles. */
function runHolding<T>(guard: LockGuard, fn: (guard: LockGuard) => T | Promise<T>): Promise<T> {
  const release = () => {
    if (!guard.released) guard.release()
  }
  let result: T | Promise<T>
  try {
    result = fn(guard)
  } catch (err) {
    release()
    return Promise.reject(err)
  }
  if (result === null || (typeof result !== 'object' && typeof result !== 'function')) {
    release()
    return Promise.resolve(result)
  }
  // An object may be a thenable; reading its `then` runs user code (a getter, a Proxy) that may
  // throw: resolve() turns that into a rejection, and the lock is released either way.
  return new Promise<T>((resolve) => resolve(result)).finally(release)
}

type GuardConstructor = new (
  key: symbol,
  mutex: SharedMutex,
  handle: number,
  token: number,
  fenceLo: number,
  fenceHi: number,
) => LockGuard
const Guard = LockGuard as unknown as GuardConstructor

// ---------------------------------------------------------------------------------------------
// SharedMutex

// A SharedMutex collected without close() closes its native handle (unless one of its locks is
// still held: then the handle stays, as the lock does).
const closeUnreachable = new FinalizationRegistry<number>((handle) => {
  try {
    binding.close(handle)
  } catch {
    // Still holding: keep it.
  }
})

const DEFAULT_RESET_TIMEOUT_MS = 5_000

/** A cross-process mutex whose holder can die without leaving it locked. */
export class SharedMutex implements Disposable {
  readonly #handle: number
  readonly #path: string | null
  readonly #fd: number
  readonly #onOwnerDied: OwnerDiedHook | undefined
  readonly #hookIsAsync: boolean
  #closed = false
  /** Pending lock() calls, served in arrival order. */
  readonly #queue = new Fifo<Waiter>()
  /** The native watch in flight, if any. */
  #watch: NativeCancel | null = null
  /** Guards of this handle currently held (their release serves the queue). */
  #holding = 0
  /** A microtask will serve the queue. */
  #serveScheduled = false

  private constructor(key: symbol, handle: number, onOwnerDied: OwnerDiedHook | undefined) {
    if (key !== INTERNAL) throw new TypeError('use SharedMutex.open(), anonymous() or fromFd()')
    this.#handle = handle
    this.#path = binding.pathOf(handle) ?? null
    this.#fd = binding.fdOf(handle)
    this.#onOwnerDied = onOwnerDied
    this.#hookIsAsync = isAsyncFunction(onOwnerDied)
    closeUnreachable.register(this, handle, this)
  }

  /**
   * Open the mutex file at `path`, creating it (mode 0600) if missing.
   * @throws {TypeError | RangeError} for bad arguments
   * @throws {BadMutexError | AbiMismatchError | PidNamespaceError | InsecureError | UnsupportedError}
   *   for a file that is not a usable mutex file (left unchanged), and OS errors (`ENOENT`, `EACCES`, ...)
   */
  static open(path: PathLike, options?: OpenOptions): SharedMutex {
    const checkedPath = checkPath(path)
    const o = checkObject(options, 'options') ?? {}
    const mode = o.mode
    if (mode !== undefined) {
      if (typeof mode !== 'number') throw new TypeError('mode must be a number')
      if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
        throw new RangeError(`mode must be an integer in 0..0o777, got ${mode}`)
      }
    }
    const nativeOptions = {
      mode,
      create: checkBoolean(o.create, 'create'),
      allowForeignPidNamespace: checkBoolean(o.allowForeignPidNamespace, 'allowForeignPidNamespace'),
      allowNetworkFilesystem: checkBoolean(o.allowNetworkFilesystem, 'allowNetworkFilesystem'),
      allowOtherOwner: checkBoolean(o.allowOtherOwner, 'allowOtherOwner'),
    }
    const hook = checkHook(o.onOwnerDied)
    return new SharedMutex(INTERNAL, native(() => binding.open(checkedPath, nativeOptions)), hook)
  }

  /** A nameless mutex; give `mutex.fd` to child processes and open it there with `fromFd`. */
  static anonymous(options?: Pick<OpenOptions, 'onOwnerDied'>): SharedMutex {
    const hook = checkHook(checkObject(options, 'options')?.onOwnerDied)
    return new SharedMutex(INTERNAL, native(() => binding.anonymous()), hook)
  }

  /** Open the mutex behind an inherited descriptor (e.g. 3 in a child given `stdio[3]`). Unix only (`UnsupportedError` on Windows). */
  static fromFd(fd: number, options?: Pick<OpenOptions, 'onOwnerDied'>): SharedMutex {
    if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) throw new TypeError('fd must be a non-negative integer')
    if (fd > 0x7fff_ffff) throw new RangeError(`fd must be a file descriptor (0..2^31-1), got ${fd}`)
    const hook = checkHook(checkObject(options, 'options')?.onOwnerDied)
    return new SharedMutex(INTERNAL, native(() => binding.fromFd(fd)), hook)
  }

  /**
   * Retire and remove a mutex file.
   * @throws {BusyError} while any handle, in any process, has it open
   * @throws {BadMutexError} for a file that is not a mutex file (left in place)
   */
  static destroy(path: PathLike): void {
    const checked = checkPath(path)
    native(() => binding.destroy(checked))
  }

  /**
   * Clear the poisoned state of a mutex file (after repairing what it protects) and bump its
   * generation. Blocks this thread until the lock is free, at most `timeout` ms (default 5000).
   * @throws {TimeoutError} when the lock stayed held
   * @throws {DeadlockError} when this thread holds it
   */
  static reset(path: PathLike, options?: ResetOptions): void {
    const checked = checkPath(path)
    const timeout = checkTimeout(checkObject(options, 'options')?.timeout) ?? DEFAULT_RESET_TIMEOUT_MS
    native(() => binding.reset(checked, timeout))
  }

  /** The file's path; null for anonymous and inherited mutexes. */
  get path(): string | null {
    return this.#path
  }

  /** The descriptor to pass to child processes (-1 once closed, and on Windows). */
  get fd(): number {
    return this.#closed ? -1 : this.#fd
  }

  /**
   * Acquire without blocking the event loop. Pending calls on one handle are granted in the order
   * they were made (a `tryLock()` does not overtake them). Awaits an async `onOwnerDied` hook.
   * @throws {TimeoutError | AbortError} when the wait ends without the lock
   * @throws {NotRecoverableError} when the mutex is (or becomes) poisoned
   * @throws {StaleError} when its file was retired or replaced
   */
  lock(options?: LockOptions): Promise<LockGuard> {
    // Not an async function: a queued call's promise is the one #serve resolves with the guard,
    // one promise hop after the grant instead of three. Every error still rejects.
    try {
      return this.#lock(options)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  #lock(options: LockOptions | undefined): Promise<LockGuard> {
    const { timeout, signal } = lockOptions(options)
    if (signal?.aborted) throw abortError(signal)
    const handle = this.#open()
    if (this.#queue.length === 0) {
      let token = 0
      try {
        token = tryLockNow(handle)
      } catch (err) {
        const translated = translate(err)
        // Held by this very thread: queue behind it instead of failing.
        if (!(translated instanceof DeadlockError)) throw translated
      }
      if (token !== 0) return this.#admitted(token)
    }
    return this.#enqueue(timeout, signal)
  }

  /**
   * Acquire, blocking this thread (for CLIs, tests and workers; never in an Electron main
   * process). A worker being terminated stops waiting.
   * @throws {TimeoutError} after `timeout` ms
   * @throws {DeadlockError} when this thread already holds it (through any handle)
   * @throws {NotRecoverableError | StaleError} as `lock()`
   * @throws {TypeError} when `onOwnerDied` is an async function (use `lock()`)
   */
  lockSync(options?: { timeout?: number }): LockGuard {
    const timeout = checkTimeout(checkObject(options, 'lockSync options')?.timeout)
    this.#syncHookOnly()
    const handle = this.#open()
    // Uncontended, this costs what tryLock() costs: the raw trylock first, the generated
    // (slower) blocking call only when someone holds it.
    let token: number
    try {
      token = tryLockNow(handle)
    } catch (err) {
      throw translate(err)
    }
    if (token === 0) token = native(() => binding.lockSync(handle, timeout))
    return this.#admitSync(token)
  }

  /**
   * Acquire if free; null if held elsewhere or if `lock()` calls of this handle are waiting.
   * @throws {DeadlockError} when this thread holds it
   * @throws {TypeError} when `onOwnerDied` is an async function (use `lock()`)
   */
  tryLock(): LockGuard | null {
    const handle = this.#open()
    if (this.#queue.length !== 0) return null
    this.#syncHookOnly()
    let token: number
    try {
      token = tryLockNow(handle)
    } catch (err) {
      throw translate(err)
    }
    return token !== 0 ? this.#admitSync(token) : null
  }

  /**
   * Run `fn` under the lock; the lock is released when it returns or throws (or its promise
   * settles). Acquires like `lock()` and rejects like it, or with `fn`'s error.
   */
  withLock<T>(fn: (guard: LockGuard) => T | Promise<T>, options?: LockOptions): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(new TypeError('withLock needs a function'))
    // Uncontended and without options: no promise until fn's own.
    if (options === undefined && this.#queue.length === 0 && !this.#closed) {
      let token = 0
      try {
        token = tryLockNow(this.#handle)
      } catch {
        // DeadlockError queues, anything else is reported: lock() below does both.
      }
      if (token !== 0) {
        // (Odd token: the previous owner died.)
        if ((token & 1) === 0 || !this.#onOwnerDied) return runHolding(this.#guard(token), fn)
        return this.#admitted(token).then((guard) => runHolding(guard, fn))
      }
    }
    return this.lock(options).then((guard) => runHolding(guard, fn))
  }

  /** A snapshot of the lock and its counters. */
  state(): MutexState {
    const handle = this.#open()
    native(() => rawFast.stateInto(handle, stateSlots))
    const s = stateSlots
    const flags = s[0]
    const state: MutexState = {
      locked: (flags & STATE_LOCKED) !== 0,
      holderTid: (flags & STATE_HAS_HOLDER_TID) !== 0 ? s[1] : null,
      abandoned: (flags & STATE_ABANDONED) !== 0,
      owner: (flags & STATE_HAS_OWNER) !== 0
        ? { pid: s[2], tid: s[3], since: (flags & STATE_HAS_SINCE) !== 0 ? new Date(s[4]) : null }
        : null,
      poisoned: (flags & STATE_POISONED) !== 0,
      generation: s[5],
      acquisitions: s[6],
      contended: s[7],
      ownerDeaths: s[8],
      fencingToken: stateToken[9],
    }
    // Logging a state as JSON worked before it had a bigint field: keep it working.
    Object.defineProperty(state, 'toJSON', STATE_TO_JSON)
    return state
  }

  /** The file was deleted or replaced at its path: other processes now use another lock. */
  isStale(): boolean {
    return native(() => binding.isStale(this.#open()))
  }

  /**
   * `SharedMutex.reset` through this handle (the only way for anonymous mutexes).
   * @throws {TimeoutError | DeadlockError} as `SharedMutex.reset`
   */
  resetPoison(options?: ResetOptions): void {
    const timeout = checkTimeout(checkObject(options, 'options')?.timeout) ?? DEFAULT_RESET_TIMEOUT_MS
    const handle = this.#open()
    native(() => binding.resetPoison(handle, timeout))
  }

  /**
   * Close this handle.
   * @throws {BusyError} while one of its guards is held or a lock() is pending
   */
  close(): void {
    if (this.#closed) return
    if (this.#queue.length !== 0) throw new BusyError('a lock() of this handle is still pending')
    this.#stopWatching()
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

  /**
   * A guard of this handle was released: serve the queue, in a microtask. Taking
   * the lock for the next waiter inside release() would make this thread hold it before that
   * waiter's guard exists: `release(); process.exit()` would then end this thread holding a lock
   * nobody used, and the next locker would be told of a death in a critical section.
   * @internal
   */
  [RELEASED](): void {
    this.#holding--
    if (this.#queue.length !== 0 && !this.#serveScheduled) {
      this.#serveScheduled = true
      queueMicrotask(() => {
        this.#serveScheduled = false
        if (!this.#closed) this.#serve()
      })
    }
  }

  /** The native handle; slots are reused after close, so a closed handle must never be used. */
  #open(): number {
    if (this.#closed) throw new ClosedError('the mutex handle was closed')
    return this.#handle
  }

  #syncHookOnly(): void {
    if (this.#hookIsAsync) {
      throw new TypeError('onOwnerDied is an async function: lockSync() and tryLock() cannot await it; use lock()')
    }
  }

  /** The fencing token is read from `lastFence` unless given: call right after the acquisition. */
  #guard(token: number, fenceLo = lastFence[0], fenceHi = lastFence[1]): LockGuard {
    this.#holding++
    return new Guard(INTERNAL, this, this.#handle, token, fenceLo, fenceHi)
  }

  /** Wrap a fresh lock token, running a synchronous onOwnerDied hook first. */
  #admitSync(token: number): LockGuard {
    const guard = this.#guard(token)
    if (!guard.ownerDied || !this.#onOwnerDied) return guard
    let repair: Promise<unknown> | undefined
    try {
      const result = this.#onOwnerDied(guard.deadOwner)
      // Inside the try: reading `then` runs user code that may throw (a getter, a Proxy).
      if (isThenable(result)) repair = Promise.resolve(result)
    } catch (err) {
      throw this.#poisoned(guard, err)
    }
    if (repair) {
      // The caller cannot await it, but the repair has started: it keeps the lock until it
      // settles, then the mutex is healthy (resolved) or poisoned (rejected), as with lock().
      const done = () => {
        if (!guard.released) guard.release()
      }
      repair.then(done, () => {
        if (!guard.released) guard.markUnrecoverable()
        done()
      }).catch((err: unknown) => process.emitWarning(`robust-mutex: releasing after onOwnerDied failed: ${String(err)}`))
      throw new TypeError(
        'onOwnerDied returned a promise: lockSync() and tryLock() cannot await it (the lock is released when it settles); use lock()',
      )
    }
    return guard
  }

  #admitted(token: number): Promise<LockGuard> {
    return new Promise((resolve, reject) => this.#admitAsync(token, resolve, reject))
  }

  /**
   * Wrap a fresh lock token for lock() and settle its caller: with the guard, after awaiting an
   * onOwnerDied hook (sync or async) when the previous owner died.
   */
  #admitAsync(token: number, resolve: (guard: LockGuard) => void, reject: (err: unknown) => void): void {
    const guard = this.#guard(token)
    const hook = this.#onOwnerDied
    if (!guard.ownerDied || !hook) return resolve(guard)
    let repair: Promise<unknown>
    try {
      // Inside the try: the hook may throw, and adopting its result runs user code (`then`).
      repair = Promise.resolve(hook(guard.deadOwner))
    } catch (err) {
      return this.#repairFailed(guard, err, reject)
    }
    repair.then(
      () => resolve(guard),
      (err: unknown) => this.#repairFailed(guard, err, reject),
    )
  }

  #poisoned(guard: LockGuard, cause: unknown): NotRecoverableError {
    guard.markUnrecoverable()
    guard.release()
    return new NotRecoverableError('the onOwnerDied hook failed; the mutex is now poisoned', { cause })
  }

  /**
   * The hook failed: poison, tell the caller, then release. In this order because the release
   * lets the queue serve (and reject) the calls made after it, which must settle after this one.
   */
  #repairFailed(guard: LockGuard, cause: unknown, reject: (err: unknown) => void): void {
    guard.markUnrecoverable()
    reject(new NotRecoverableError('the onOwnerDied hook failed; the mutex is now poisoned', { cause }))
    try {
      guard.release()
    } catch (err) {
      process.emitWarning(`robust-mutex: releasing after onOwnerDied failed: ${String(err)}`)
    }
  }

  /** Queue a lock() call; resolves with the guard of a lock taken by this thread. */
  #enqueue(timeout: number | undefined, signal: AbortSignal | undefined): Promise<LockGuard> {
    return new Promise<LockGuard>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, deadline: undefined, signal, abort: undefined }
      this.#queue.push(waiter)
      if (timeout !== undefined && timeout !== Infinity) {
        waiter.deadline = new Deadline(timeout, () => this.#giveUp(waiter, new TimeoutError('timed out waiting for the lock')))
      }
      if (signal) {
        waiter.abort = () => this.#giveUp(waiter, abortError(signal))
        onAbort(signal, waiter.abort)
      }
      this.#serve()
    })
  }

  /** A waiter stops waiting (timeout, abort). */
  #giveUp(waiter: Waiter, err: unknown): void {
    if (!this.#queue.remove(waiter)) return
    this.#forget(waiter)
    waiter.reject(err)
    if (this.#queue.length === 0) this.#stopWatching()
  }

  #forget(waiter: Waiter): void {
    waiter.deadline?.clear()
    if (waiter.signal && waiter.abort) offAbort(waiter.signal, waiter.abort)
  }

  /** Try to take the lock for the first waiter; otherwise watch until it may be free. */
  #serve(): void {
    while (this.#queue.length !== 0) {
      let token: number
      try {
        fenceReady()
        token = rawFast.tryLockAfterWaitFast(this.#handle)
      } catch (err) {
        const translated = translate(err)
        if (translated instanceof DeadlockError) {
          // Held by this thread: a guard of this handle serves the queue when released; one of
          // another handle needs the watch.
          if (this.#holding === 0) this.#startWatching()
          return
        }
        const waiter = this.#queue.shift()!
        this.#forget(waiter)
        waiter.reject(translated)
        continue
      }
      if (token === 0) {
        this.#startWatching()
        return
      }
      const waiter = this.#queue.shift()!
      this.#forget(waiter)
      this.#stopWatching()
      // The guard now, while `lastFence` holds this acquisition's fencing token (an async
      // onOwnerDied hook starts here, before the caller's lock() resolves, as it always did).
      this.#admitAsync(token, waiter.resolve, waiter.reject)
      return
    }
    this.#stopWatching()
  }

  #startWatching(): void {
    if (this.#watch) return
    const cancel = new binding.NativeCancel()
    let watching: Promise<void>
    try {
      watching = binding.watch(this.#handle, cancel)
    } catch (err) {
      // No watcher thread (EAGAIN): nobody could ever wake these waiters.
      this.#failAll(translate(err))
      return
    }
    this.#watch = cancel
    watching.then(
      () => {
        // (The watch already passed on the wake that ended it.)
        if (this.#watch !== cancel) return // stopped meanwhile
        this.#watch = null
        if (this.#queue.length !== 0 && !this.#closed) this.#serve()
      },
      (err: unknown) => {
        if (this.#watch !== cancel) return // cancelled by us
        this.#watch = null
        // Poisoned, retired or replaced: the first waiter learns why; the rest try again.
        const waiter = this.#queue.shift()
        if (waiter) {
          this.#forget(waiter)
          waiter.reject(translate(err))
        }
        this.#serve()
      },
    )
  }

  /** Rejects every queued waiter with `err`. */
  #failAll(err: unknown): void {
    for (const waiter of this.#queue.takeAll()) {
      this.#forget(waiter)
      waiter.reject(err)
    }
    this.#stopWatching()
  }

  #stopWatching(): void {
    if (!this.#watch) return
    this.#watch.cancel()
    this.#watch = null
  }
}

/** The version of the loaded native addon, e.g. `"0.1.0"`. */
export function bindingVersion(): string {
  return binding.bindingVersion()
}
