// robust-mutex/pg: the same crash-reporting mutex across machines, with PostgreSQL as the arbiter.
//
// Exclusion is a session-level advisory lock held on a connection dedicated to the hold: the
// server drops it when that session ends (process killed, host gone, connection cut or
// terminated). Owner death and poison live in a row of our own schema, written under that lock:
// a row still `held` when the next session gets the lock means its holder's session ended inside
// the critical section. Acquiring (lock + row update) is one round trip, releasing another: both
// are plpgsql functions installed with the schema. Waits block in the server (lock_timeout for
// timeouts, a protocol cancel request for aborts); a hold watches its connection (events and a
// heartbeat) and aborts `guard.signal` when it is lost.
//
// Loads `pg` (an optional peer dependency) only when a mutex is first used.

import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import * as net from 'node:net'
import type * as PgTypes from 'pg'

import {
  AbortError,
  BusyError,
  ClosedError,
  ConnectionError,
  KeyCollisionError,
  NotRecoverableError,
  ReleasedError,
  SchemaError,
  TimeoutError,
  UnsupportedError,
} from './errors'

export {
  AbortError,
  BusyError,
  ClosedError,
  ConnectionError,
  KeyCollisionError,
  NotRecoverableError,
  ReleasedError,
  RobustMutexError,
  SchemaError,
  TimeoutError,
  UnsupportedError,
} from './errors'

// ---------------------------------------------------------------------------------------------
// Types

/** The part of a `pg.Pool` this backend uses (so that these typings do not need `@types/pg`). */
export interface PgPoolLike {
  connect(): Promise<unknown>
}

export interface PgOpenOptions {
  /** A libpq connection string; the mutex opens (and pools) its own connections. */
  connectionString?: string
  /** A `pg.Pool`: each hold (and each wait) takes one client from it and returns it after unlocking. */
  pool?: PgPoolLike
  /**
   * While a lock is held, ask the server every this many milliseconds whether the holding
   * connection still answers (`SELECT 1`); no answer within the same time aborts `guard.signal`
   * and closes the connection. Catches a silent network failure (no reset, no FIN) that TCP
   * would take minutes to report. Default 10000; 0 turns it off.
   */
  heartbeat?: number
}

export interface PgLockOptions {
  /**
   * Give up after this many milliseconds (TimeoutError). `Infinity` or absent: no limit. Finite
   * timeouts are capped at 2^31-1 ms (~24.8 days: the server's lock_timeout is an int). 0 does
   * not wait at all, not even for a free pooled client.
   */
  timeout?: number
  /** Give up when aborted (AbortError with `cause = signal.reason`). */
  signal?: AbortSignal
}

export interface PgResetOptions extends PgOpenOptions {
  /** Wait at most this many milliseconds for the lock (TimeoutError). Default 5000. */
  timeout?: number
}

export interface PgHolder {
  host: string
  pid: number
  since: Date
}

/** A snapshot of a mutex, for diagnostics: it may change as soon as it is read. */
export interface PgMutexState {
  /** A live session holds the advisory lock. */
  locked: boolean
  /** The last holder's session ended while it held the lock; the next locker sees `ownerDied`. */
  abandoned: boolean
  /** Acquires fail with NotRecoverableError until `PgMutex.reset`. */
  poisoned: boolean
  /** The token of the latest acquisition (0n if never acquired). */
  fencingToken: bigint
  /** The current holder, or the dead one while abandoned. */
  holder: PgHolder | null
}

// ---------------------------------------------------------------------------------------------
// Loading `pg`

type PgModule = typeof PgTypes
let pgModule: PgModule | undefined

function loadPg(): PgModule {
  if (pgModule) return pgModule
  try {
    pgModule = require('pg') as PgModule
  } catch (err) {
    if ((err as { code?: unknown }).code === 'MODULE_NOT_FOUND') {
      throw new UnsupportedError('robust-mutex/pg needs the `pg` package: npm install pg', { cause: err })
    }
    throw err
  }
  return pgModule
}

// ---------------------------------------------------------------------------------------------
// Schema: created once per database, idempotently, under a transaction-level advisory lock so
// that any number of processes may open at once.

/** The schema version this code reads and writes; a newer one is refused untouched. */
export const SCHEMA_VERSION = 1

// Any fixed key distinct from mutex keys in practice (those are hashes with a prefix).
const SCHEMA_LOCK_KEY = '-3739402856245061633'

const CREATE_SCHEMA = `
CREATE SCHEMA IF NOT EXISTS robust_mutex;
CREATE TABLE IF NOT EXISTS robust_mutex.meta (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS robust_mutex.mutexes (
  name text PRIMARY KEY,
  lock_key bigint NOT NULL UNIQUE,
  state text NOT NULL CHECK (state IN ('released', 'held', 'poisoned')),
  fencing_token bigint NOT NULL,
  holder_host text,
  holder_pid integer,
  since timestamptz
);
-- Takes the advisory lock (waiting at most p_timeout_ms, 0 = no limit; or only trying), then
-- marks the row held with the next token. Returns the previous state, 'busy' when a try found
-- the lock taken, 'poisoned' (lock given back) when the mutex is poisoned, and the previous
-- holder (so that an acquire given up after its grant can put the row back as it was).
-- search_path is fixed: nothing a caller puts before pg_catalog can stand in for what it calls.
CREATE OR REPLACE FUNCTION robust_mutex.acquire_v1(
  p_key bigint, p_name text, p_wait boolean, p_timeout_ms integer, p_host text, p_pid integer,
  OUT outcome text, OUT token bigint, OUT prev_host text, OUT prev_pid integer, OUT prev_since timestamptz)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_state text;
BEGIN
  -- A token must never be issued twice: this commit waits for its WAL flush whatever the
  -- database's or role's synchronous_commit says.
  PERFORM set_config('synchronous_commit', 'on', true);
  IF p_wait THEN
    PERFORM set_config('lock_timeout', p_timeout_ms::text, true);
    PERFORM pg_advisory_lock(p_key);
  ELSIF NOT pg_try_advisory_lock(p_key) THEN
    outcome := 'busy';
    RETURN;
  END IF;
  -- Held from here on. Session locks ignore rollback: any error below (a lock_timeout on the row
  -- behind a VACUUM FULL or a DBA's lock, ...) gives the lock back before it propagates, so that
  -- a failed acquire never leaves its connection holding. (A cancel is not caught by OTHERS: the
  -- client closes the connection then.)
  BEGIN
    -- FOR UPDATE: also waits for a concurrent writer of the row (reset, a repair by hand).
    SELECT m.state, m.holder_host, m.holder_pid, m.since INTO v_state, prev_host, prev_pid, prev_since
      FROM robust_mutex.mutexes m WHERE m.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
      INSERT INTO robust_mutex.mutexes (name, lock_key, state, fencing_token, holder_host, holder_pid, since)
        VALUES (p_name, p_key, 'held', 1, p_host, p_pid, now());
      outcome := 'released';
      token := 1;
      RETURN;
    END IF;
    IF v_state = 'poisoned' THEN
      PERFORM pg_advisory_unlock(p_key);
      outcome := 'poisoned';
      RETURN;
    END IF;
    UPDATE robust_mutex.mutexes
      SET state = 'held', fencing_token = fencing_token + 1, holder_host = p_host, holder_pid = p_pid, since = now()
      WHERE name = p_name
      RETURNING fencing_token INTO token;
    outcome := v_state;
  EXCEPTION WHEN OTHERS THEN
    PERFORM pg_advisory_unlock(p_key);
    RAISE;
  END;
END $$;
-- Writes the final state of a hold ('released', 'poisoned', or 'held' to leave it abandoned).
-- The client runs it in its own transaction and unlocks after the COMMIT (see finishAndUnlock).
CREATE OR REPLACE FUNCTION robust_mutex.finish_v1(p_name text, p_token bigint, p_state text)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- A plain release need not wait for its WAL flush: a server crash that loses it leaves the row
  -- 'held', which the next holder reads as an owner death (true enough: the crash ended every
  -- session). Poisoning must survive a crash, whatever the database's default says.
  PERFORM set_config('synchronous_commit', CASE WHEN p_state = 'released' THEN 'off' ELSE 'on' END, true);
  UPDATE robust_mutex.mutexes
    SET state = p_state,
        holder_host = CASE WHEN p_state = 'released' THEN NULL ELSE holder_host END,
        holder_pid = CASE WHEN p_state = 'released' THEN NULL ELSE holder_pid END,
        since = CASE WHEN p_state = 'released' THEN NULL ELSE since END
    WHERE name = p_name AND fencing_token = p_token;
END $$;
-- Puts back the row of an abandoned mutex as it was (dead holder and all) after an acquire that
-- won the grant was given up: the mutex stays abandoned, naming the holder that died.
CREATE OR REPLACE FUNCTION robust_mutex.restore_v1(p_name text, p_token bigint, p_host text, p_pid integer, p_since timestamptz)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM set_config('synchronous_commit', 'on', true);
  UPDATE robust_mutex.mutexes
    SET state = 'held', holder_host = p_host, holder_pid = p_pid, since = p_since
    WHERE name = p_name AND fencing_token = p_token;
END $$;
INSERT INTO robust_mutex.meta (version) VALUES (${SCHEMA_VERSION}) ON CONFLICT DO NOTHING;
`

type Queryable = { query(text: string, values?: unknown[]): Promise<PgTypes.QueryResult> }

/** Reads the schema version: null when there is no schema, a SchemaError when it is not ours. */
async function schemaVersion(client: Queryable): Promise<number | null> {
  const { rows } = await client.query(
    `SELECT to_regnamespace('robust_mutex') IS NOT NULL AS schema, to_regclass('robust_mutex.meta') IS NOT NULL AS meta`,
  )
  if (!rows[0].schema) return null
  if (!rows[0].meta) throw new SchemaError('the database has a robust_mutex schema without robust-mutex\'s meta table: not ours, left unchanged')
  let version: PgTypes.QueryResult
  try {
    version = await client.query('SELECT version FROM robust_mutex.meta')
  } catch (err) {
    // The server refused the read (no such column, no privilege): a table that is not ours.
    if (isSqlState(sqlState(err))) {
      throw new SchemaError(`robust_mutex.meta cannot be read as robust-mutex's (${(err as Error).message}): not ours, left unchanged`, { cause: err })
    }
    throw err
  }
  if (version.rows.length !== 1) throw new SchemaError('robust_mutex.meta has no version row: left unchanged')
  const seen = Number(version.rows[0].version)
  if (!Number.isInteger(seen)) throw new SchemaError(`robust_mutex.meta has a version that is not a number (${String(version.rows[0].version)}): not ours, left unchanged`)
  return seen
}

function checkVersion(version: number): void {
  if (version > SCHEMA_VERSION) {
    throw new SchemaError(
      `the robust_mutex schema is version ${version}, newer than this robust-mutex supports (${SCHEMA_VERSION}): upgrade robust-mutex; nothing was changed`,
    )
  }
  if (version < SCHEMA_VERSION) throw new SchemaError(`the robust_mutex schema is version ${version}, older than supported (${SCHEMA_VERSION})`)
}

async function ensureSchema(client: Queryable): Promise<void> {
  const seen = await schemaVersion(client)
  if (seen !== null) return checkVersion(seen)
  // READ COMMITTED whatever the database's default: under REPEATABLE READ the snapshot would
  // predate the wait below, and the other creator's meta row would stay invisible.
  await client.query('BEGIN ISOLATION LEVEL READ COMMITTED')
  try {
    // Another process creating the schema is waited for, however long a role's lock_timeout,
    // statement_timeout or transaction_timeout (PostgreSQL 17+, hence through pg_settings) says:
    // giving up would read as a permanent SchemaError.
    await client.query(
      `SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0; ` +
        `SELECT set_config(name, '0', true) FROM pg_settings WHERE name = 'transaction_timeout'`,
    )
    await client.query(`SELECT pg_advisory_xact_lock(${SCHEMA_LOCK_KEY})`)
    const again = await schemaVersion(client)
    if (again === null) await client.query(CREATE_SCHEMA)
    else checkVersion(again)
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    if (err instanceof SchemaError) throw err
    if (!isSqlState(sqlState(err))) throw connectionError('the connection failed while creating the robust_mutex schema', err)
    throw new SchemaError(`cannot create the robust_mutex schema: ${(err as Error).message}`, { cause: err })
  }
}

// ---------------------------------------------------------------------------------------------
// Names and keys

/** Longest name, in UTF-8 bytes (a btree key must stay well under a page). */
export const MAX_NAME_BYTES = 1024

function checkName(name: unknown): string {
  if (typeof name !== 'string') throw new TypeError(`the mutex name must be a string, got ${typeof name}`)
  if (name.length === 0) throw new TypeError('the mutex name must not be empty')
  if (name.includes('\0')) throw new TypeError('the mutex name must not contain NUL characters')
  // UTF-8 encoding turns every lone surrogate into U+FFFD: two such names would share one lock.
  if (/\p{Cs}/u.test(name)) throw new TypeError('the mutex name must be well-formed UTF-16 (it contains a lone surrogate)')
  const bytes = Buffer.byteLength(name, 'utf8')
  if (bytes > MAX_NAME_BYTES) throw new RangeError(`the mutex name is ${bytes} bytes long; at most ${MAX_NAME_BYTES} are allowed`)
  return name
}

/**
 * The advisory lock key of a name: the first 8 bytes of SHA-256 over a namespaced name, as a
 * signed 64-bit decimal string. Two names with one key would share a lock: the row stores the
 * key under a UNIQUE constraint, so the second name is refused (KeyCollisionError) instead.
 */
export function lockKey(name: string): string {
  return createHash('sha256').update(`robust-mutex:${name}`).digest().readBigInt64BE(0).toString()
}

// ---------------------------------------------------------------------------------------------
// Argument checks

function checkObject(options: unknown, what: string): Record<string, unknown> {
  if (options === undefined) return {}
  if (options === null || typeof options !== 'object') throw new TypeError(`${what} must be an object`)
  return options as Record<string, unknown>
}

function checkTimeout(timeout: unknown): number | undefined {
  if (timeout === undefined) return undefined
  if (typeof timeout !== 'number') throw new TypeError(`timeout must be a number of milliseconds, got ${typeof timeout}`)
  if (!(timeout >= 0)) throw new RangeError(`timeout must be a non-negative number of milliseconds, got ${timeout}`)
  return timeout
}

function lockOptions(options: unknown): { timeout: number | undefined; signal: AbortSignal | undefined } {
  const o = checkObject(options, 'lock options')
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal')
  return { timeout: checkTimeout(o.timeout), signal: o.signal as AbortSignal | undefined }
}

/** Default heartbeat interval while holding (ms). */
const DEFAULT_HEARTBEAT_MS = 10_000
/** The least time the cleanup of a given-up wait gets before its connection is destroyed (ms). */
const MIN_ABANDON_MS = 5_000
/** How often a given-up wait's cancel request is sent again until the acquire answers (ms). */
const CANCEL_RESEND_MS = 75
/** The most time the cleanup spends ending a still-waiting backend from another connection (ms). */
const TERMINATE_WITHIN_MS = 2_000

function checkOpenOptions(options: unknown): { connectionString?: string; pool?: PgPoolLike; heartbeat: number } {
  const o = checkObject(options, 'options')
  const heartbeat = o.heartbeat === undefined ? DEFAULT_HEARTBEAT_MS : o.heartbeat
  if (typeof heartbeat !== 'number') throw new TypeError(`heartbeat must be a number of milliseconds, got ${typeof heartbeat}`)
  if (!Number.isInteger(heartbeat) || heartbeat < 0 || heartbeat > MAX_LOCK_TIMEOUT_MS) {
    throw new RangeError(`heartbeat must be a whole number of milliseconds in 0..${MAX_LOCK_TIMEOUT_MS}, got ${String(heartbeat)}`)
  }
  if (o.pool !== undefined && o.connectionString !== undefined) throw new TypeError('pass either pool or connectionString, not both')
  if (o.pool !== undefined) {
    if (o.pool === null || typeof (o.pool as PgPoolLike).connect !== 'function') throw new TypeError('pool must be a pg.Pool')
    return { pool: o.pool as PgPoolLike, heartbeat }
  }
  if (typeof o.connectionString !== 'string' || o.connectionString.length === 0) {
    throw new TypeError('pass a connectionString (a non-empty string) or a pool')
  }
  return { connectionString: o.connectionString, heartbeat }
}

// PostgreSQL error codes (SQLSTATE) this module tells apart.
const LOCK_NOT_AVAILABLE = '55P03' // lock_timeout expired
const QUERY_CANCELED = '57014'
const UNIQUE_VIOLATION = '23505'
/** lock_timeout takes an int; longer waits are capped at ~24.8 days. */
const MAX_LOCK_TIMEOUT_MS = 2 ** 31 - 1

/** A server-reported SQLSTATE (five characters), as opposed to a socket error's code. */
const isSqlState = (code: string | undefined): boolean => code !== undefined && /^[0-9A-Z]{5}$/.test(code)

const sqlState = (err: unknown): string | undefined => {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

function connectionError(what: string, err: unknown): ConnectionError {
  return new ConnectionError(`${what}: ${(err as Error)?.message ?? String(err)}`, { cause: err })
}

// ---------------------------------------------------------------------------------------------
// Connections: a dedicated client per wait+hold, from the user's pool or our own.

type Client = PgTypes.PoolClient

// pg-pool drops its own 'error' listener while a client is checked out, and a pg Client emits
// 'error' synchronously when its socket fails: with no listener that is an uncaught exception.
// Every client this module checks out carries this one from checkout to release (the failure
// itself reaches the pending query as a rejection).
const ignoreError = (): void => {}

/** Returns a client to its pool; a broken one keeps the listener (its socket may still fail). */
function releaseClient(client: Client, broken: boolean): void {
  if (!broken) client.off('error', ignoreError)
  client.release(broken)
}

/** Sends a protocol cancel request for `client`'s running query; resolves once the server has taken it. */
function sendCancel(client: Client, within: number): Promise<void> {
  const c = client as unknown as { processID: number | null; secretKey: number | null; host: string; port: number }
  if (c.processID == null || c.secretKey == null) return Promise.resolve()
  return new Promise((resolve) => {
    const socket = c.host.startsWith('/') ? net.connect(`${c.host}/.s.PGSQL.${c.port}`) : net.connect(c.port, c.host)
    // Over a silently dead network neither the connect nor the close ever comes.
    socket.setTimeout(within, () => socket.destroy())
    socket.on('connect', () => {
      const packet = Buffer.alloc(16)
      packet.writeInt32BE(16, 0)
      packet.writeInt32BE(80877102, 4) // CancelRequest code
      packet.writeInt32BE(c.processID!, 8)
      packet.writeInt32BE(c.secretKey!, 12)
      socket.end(packet)
    })
    // The server closes the socket after signalling the backend.
    socket.on('close', () => resolve())
    socket.on('error', () => resolve())
  })
}

/**
 * The release, in one round trip: the final state is committed *before* the advisory lock is
 * given back, so that the next holder (and `state()`) never sees the lock free with the row still
 * `held`. Several statements in one simple-protocol message, hence literals (the key and token
 * are integers, the state one of ours, the name escaped by the driver). READ COMMITTED whatever
 * the database's default isolation. A failed statement skips the rest: the lock then stays held
 * and the caller closes the connection. Result: whether the lock was held.
 */
async function finishAndUnlock(client: Client, key: string, name: string, token: bigint, state: 'released' | 'poisoned' | 'held'): Promise<boolean> {
  return writeAndUnlock(client, key, `robust_mutex.finish_v1(${client.escapeLiteral(name)}, ${token.toString()}, '${state}')`)
}

/** Like finishAndUnlock, but puts back the previous (dead) holder of an abandoned mutex. */
async function restoreAndUnlock(client: Client, key: string, name: string, token: bigint, prev: { host: unknown; pid: unknown; since: unknown }): Promise<boolean> {
  const lit = (v: unknown) => (v == null ? 'NULL' : client.escapeLiteral(String(v)))
  return writeAndUnlock(
    client,
    key,
    `robust_mutex.restore_v1(${client.escapeLiteral(name)}, ${token.toString()}, ${lit(prev.host)}, ${lit(prev.pid)}::integer, ${lit(prev.since)}::timestamptz)`,
  )
}

async function writeAndUnlock(client: Client, key: string, call: string): Promise<boolean> {
  const sql = `BEGIN ISOLATION LEVEL READ COMMITTED; SELECT ${call}; COMMIT; SELECT pg_advisory_unlock(${BigInt(key).toString()}) AS held`
  const results = (await client.query(sql)) as unknown as PgTypes.QueryResult[]
  return Boolean(results[results.length - 1].rows[0].held)
}

/**
 * After an acquire failed with a lock_timeout: ends the failed transaction and checks that this
 * session does not hold the advisory lock (acquire_v1 gives it back on any error after its
 * grant). Whether the client is clean enough to go back to the pool.
 */
async function cleanAfterTimeout(client: Client, key: string): Promise<boolean> {
  try {
    const k = BigInt(key).toString()
    const results = (await client.query(
      `ROLLBACK; SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid() AND l.locktype = 'advisory' AND l.objsubid = 1
         AND l.classid = ((${k}::bigint >> 32) & 4294967295)::bigint::oid AND l.objid = (${k}::bigint & 4294967295)::bigint::oid) AS held`,
    )) as unknown as PgTypes.QueryResult[]
    return !results[results.length - 1].rows[0].held
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------------
// PgLockGuard

const INTERNAL: unique symbol = Symbol('robust-mutex/pg internal')

interface Hold {
  client: Client
  give: (broken: boolean) => void
  key: string
  name: string
  token: bigint
  heartbeat: number
}

/** Destroys a pg client's socket: the session then ends as soon as the server hears of it. */
function destroySocket(client: Client): void {
  ;(client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
}

/** Proof of holding a PgMutex. Release it exactly once (or let `await using` do it). */
export class PgLockGuard implements AsyncDisposable {
  /** The previous holder's session ended while it held the lock: repair what it protected. */
  readonly ownerDied: boolean
  /** Strictly increasing per name across hosts and resets: pass it to what you write. */
  readonly fencingToken: bigint
  readonly #hold: Hold
  readonly #lost = new AbortController()
  readonly #onError: (err: Error) => void
  readonly #onEnd: () => void
  #heartbeat: ReturnType<typeof setInterval> | undefined
  #probing = false
  #poison = false
  #released = false

  /** @internal */
  constructor(internal: typeof INTERNAL, hold: Hold, ownerDied: boolean) {
    if (internal !== INTERNAL) throw new TypeError('PgLockGuard is not constructible; use PgMutex.lock()')
    this.#hold = hold
    this.fencingToken = hold.token
    this.ownerDied = ownerDied
    this.#onError = (err) => this.#lose(connectionError(`the connection holding "${hold.name}" failed; the lock is lost`, err))
    this.#onEnd = () => this.#lose(new ConnectionError(`the connection holding "${hold.name}" ended; the lock is lost`))
    // A checked-out pg client with no 'error' listener would crash the process on a socket error.
    hold.client.on('error', this.#onError)
    hold.client.on('end', this.#onEnd)
    if (hold.heartbeat > 0) {
      this.#heartbeat = setInterval(() => this.#probe(), hold.heartbeat)
      this.#heartbeat.unref() // a held lock alone does not keep the process alive
    }
  }

  /** One heartbeat: the holding connection must answer within one interval. */
  #probe(): void {
    if (this.#probing || this.#released || this.#lost.signal.aborted) return
    this.#probing = true
    const { client, heartbeat, name } = this.#hold
    const silence = setTimeout(() => {
      this.#lose(new ConnectionError(`the connection holding "${name}" did not answer a heartbeat within ${heartbeat} ms; the lock may be lost`))
      destroySocket(client)
    }, heartbeat)
    silence.unref() // like the interval: a held lock alone does not keep the process alive
    client.query('SELECT 1').then(
      () => clearTimeout(silence),
      () => clearTimeout(silence), // a failure also reaches the 'error'/'end' listeners
    ).finally(() => (this.#probing = false))
  }

  /** Aborts (reason: a ConnectionError) when this hold is lost: the connection failed or was terminated. */
  get signal(): AbortSignal {
    return this.#lost.signal
  }

  #lose(reason: ConnectionError): void {
    if (!this.#lost.signal.aborted) this.#lost.abort(reason)
  }

  /** Poison the mutex at release: acquires fail with NotRecoverableError until `PgMutex.reset`. */
  markUnrecoverable(): void {
    if (this.#released) throw new ReleasedError()
    this.#poison = true
  }

  /**
   * Writes the final state and unlocks. Rejects ReleasedError when called twice, and
   * ConnectionError when the hold was already lost (another holder may have run meanwhile).
   */
  async release(): Promise<void> {
    if (this.#released) throw new ReleasedError()
    this.#released = true
    const { client, give, key, name, token } = this.#hold
    clearInterval(this.#heartbeat)
    const detach = () => {
      client.off('error', this.#onError)
      client.off('end', this.#onEnd)
    }
    if (this.#lost.signal.aborted) {
      detach()
      give(true)
      throw this.#lost.signal.reason
    }
    try {
      const held = await finishAndUnlock(client, key, name, token, this.#poison ? 'poisoned' : 'released')
      detach()
      if (!held) {
        give(true)
        throw new ConnectionError(`the advisory lock of "${name}" was no longer held at release`)
      }
      give(false)
    } catch (err) {
      if (err instanceof ConnectionError) throw err
      detach()
      give(true)
      const reason = this.#lost.signal.reason
      throw reason instanceof ConnectionError ? reason : connectionError(`releasing "${name}" failed; the lock is lost`, err)
    }
  }

  /** `await using`: releases if not yet released. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#released) await this.release()
  }
}

// ---------------------------------------------------------------------------------------------
// PgMutex

/**
 * A pg.Pool with no client free for a new checkout and no room for another (false if it does not
 * say). An idle client already promised to a queued checkout (pg-pool hands them out on the next
 * tick, first come first served) is not free.
 */
function poolExhausted(pool: unknown): boolean {
  const p = pool as { totalCount?: unknown; idleCount?: unknown; waitingCount?: unknown; options?: { max?: unknown } }
  const max = p.options?.max
  const waiting = typeof p.waitingCount === 'number' ? p.waitingCount : 0
  return typeof p.totalCount === 'number' && typeof p.idleCount === 'number' && typeof max === 'number' && max > 0 &&
    p.idleCount <= waiting && p.totalCount >= max
}

export class PgMutex {
  readonly name: string
  readonly #key: string
  readonly #pool: PgTypes.Pool | PgPoolLike
  readonly #ownsPool: boolean
  readonly #heartbeat: number
  #schema: Promise<void> | undefined
  #closed = false
  /** Pending acquires plus live holds of this handle. */
  #busy = 0
  /** Waits given up whose connection is still being cancelled and closed. */
  readonly #cleanups = new Set<Promise<void>>()

  private constructor(name: string, pool: PgPoolLike, ownsPool: boolean, heartbeat: number) {
    this.name = name
    this.#key = lockKey(name)
    this.#pool = pool
    this.#ownsPool = ownsPool
    this.#heartbeat = heartbeat
  }

  /**
   * A handle on the mutex `name` in the database of `options`. Connects lazily: the first
   * lock/tryLock/state creates the schema if needed and reports connection errors.
   */
  static open(name: string, options: PgOpenOptions): PgMutex {
    checkName(name)
    const o = checkOpenOptions(options)
    if (o.pool) return new PgMutex(name, o.pool, false, o.heartbeat)
    const pg = loadPg()
    // keepAlive: a dead peer (host gone, cable cut) is noticed by TCP instead of never.
    const pool = new pg.Pool({ connectionString: o.connectionString, keepAlive: true, keepAliveInitialDelayMillis: 10_000, max: 64 })
    // An idle pooled client whose server went away must not crash the process.
    pool.on('error', () => {})
    return new PgMutex(name, pool, true, o.heartbeat)
  }

  /**
   * Clears poison and abandonment: waits (at most `timeout`, default 5000 ms) for the lock,
   * then marks the mutex released. The fencing token keeps counting up.
   */
  static async reset(name: string, options: PgResetOptions): Promise<void> {
    const o = checkObject(options, 'options')
    const timeout = checkTimeout(o.timeout) ?? 5000
    const mutex = PgMutex.open(name, options)
    try {
      const client = await mutex.#connect()
      let broken = true
      try {
        await client.query('SELECT set_config(\'lock_timeout\', $1, false)', [String(Math.max(1, Math.min(Math.ceil(timeout), MAX_LOCK_TIMEOUT_MS)))])
        try {
          await client.query('SELECT pg_advisory_lock($1)', [mutex.#key])
        } catch (err) {
          if (sqlState(err) === LOCK_NOT_AVAILABLE) throw new TimeoutError(`timed out after ${timeout} ms waiting to reset "${name}"`)
          throw err
        }
        await client.query(
          `UPDATE robust_mutex.mutexes SET state = 'released', holder_host = NULL, holder_pid = NULL, since = NULL WHERE name = $1`,
          [name],
        )
        await client.query('SELECT pg_advisory_unlock($1)', [mutex.#key])
        await client.query('RESET lock_timeout')
        broken = false
      } catch (err) {
        // The client is closed either way (broken stays true): it carries this session's
        // lock_timeout, which must not reach a pool's next user.
        throw err instanceof TimeoutError ? err : connectionError(`resetting "${name}" failed`, err)
      } finally {
        releaseClient(client, broken)
      }
    } finally {
      await mutex.close()
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError(`the PgMutex "${this.name}" was closed`)
  }

  /** A dedicated client, with the schema checked (once per handle). */
  async #connect(): Promise<Client> {
    let client: Client
    try {
      client = (await this.#pool.connect()) as Client
    } catch (err) {
      throw connectionError('cannot connect to PostgreSQL', err)
    }
    if (client === null || typeof client !== 'object' || typeof client.release !== 'function') {
      throw new TypeError('pool.connect() gave no pooled client (with release()): pass a pg.Pool, not a pg.Client')
    }
    client.on('error', ignoreError)
    if (!this.#schema) {
      this.#schema = ensureSchema(client)
      this.#schema.catch(() => (this.#schema = undefined))
    }
    try {
      await this.#schema
    } catch (err) {
      releaseClient(client, true)
      throw err instanceof SchemaError ? err : connectionError('cannot read the robust_mutex schema', err)
    }
    return client
  }

  /** Takes the lock, waiting at most `timeout` ms and until `signal` aborts. */
  async lock(options?: PgLockOptions): Promise<PgLockGuard> {
    const { timeout, signal } = lockOptions(options)
    this.#checkOpen()
    if (signal?.aborted) throw new AbortError('The lock wait was aborted', { cause: signal.reason })
    const guard = await this.#acquire(timeout === 0 ? 'try' : 'wait', timeout, signal)
    if (!guard) throw new TimeoutError(`the lock "${this.name}" could not be taken without waiting (timeout 0)`)
    return guard
  }

  /**
   * Takes the lock if that needs no waiting; null otherwise: someone holds it, the pg.Pool has no
   * free client, or a lock_timeout of the role expired on the row (a VACUUM FULL, a DBA's lock).
   */
  async tryLock(): Promise<PgLockGuard | null> {
    this.#checkOpen()
    return this.#acquire('try', undefined, undefined)
  }

  /** Runs `fn` holding the lock and releases it after (also when `fn` throws). */
  async withLock<T>(fn: (guard: PgLockGuard) => T | Promise<T>, options?: PgLockOptions): Promise<T> {
    if (typeof fn !== 'function') throw new TypeError('withLock needs a function')
    const guard = await this.lock(options)
    let result: T
    try {
      result = await fn(guard)
    } catch (err) {
      await guard.release().catch(() => {})
      throw err
    }
    await guard.release()
    return result
  }

  async #acquire(mode: 'try' | 'wait', timeout: number | undefined, signal: AbortSignal | undefined): Promise<PgLockGuard | null> {
    this.#busy++
    try {
      // A try does not wait, not even for a pooled client: none idle and no room for a new one
      // means "not now" (pools other than pg.Pool, which do not tell, are asked anyway).
      if (mode === 'try' && poolExhausted(this.#pool)) return null
      const started = performance.now()
      const client = await this.#connectWithin(mode === 'wait' ? timeout : undefined, signal)
      const left = timeout === undefined || timeout === Infinity ? 0 : Math.max(1, Math.ceil(timeout - (performance.now() - started)))
      return await this.#acquireOn(client, mode, Math.min(left, MAX_LOCK_TIMEOUT_MS), timeout, signal)
    } finally {
      this.#busy--
    }
  }

  /**
   * A client for this wait, within the wait's own limits: a pool may have none free, and the
   * timeout and signal apply to that wait too.
   */
  async #connectWithin(timeout: number | undefined, signal: AbortSignal | undefined): Promise<Client> {
    const connecting = this.#connect()
    const limited = timeout !== undefined && timeout !== Infinity
    if (!signal && !limited) return connecting
    let onAbort: (() => void) | undefined
    let timer: ReturnType<typeof setTimeout> | undefined
    const given = new Promise<never>((_, reject) => {
      if (signal) {
        onAbort = () => reject(new AbortError('The lock wait was aborted', { cause: signal.reason }))
        signal.addEventListener('abort', onAbort, { once: true })
      }
      if (limited) {
        timer = setTimeout(() => reject(new TimeoutError(`timed out after ${timeout} ms waiting for a connection to lock "${this.name}"`)), Math.min(timeout, MAX_LOCK_TIMEOUT_MS))
      }
    })
    try {
      return await Promise.race([connecting, given])
    } catch (err) {
      // A client that arrives after the wait gave up goes straight back.
      if (err instanceof AbortError || err instanceof TimeoutError) connecting.then((c) => releaseClient(c, false), () => {})
      throw err
    } finally {
      if (onAbort) signal!.removeEventListener('abort', onAbort)
      clearTimeout(timer)
    }
  }

  async #acquireOn(client: Client, mode: 'try' | 'wait', lockTimeoutMs: number, timeout: number | undefined, signal: AbortSignal | undefined): Promise<PgLockGuard | null> {
    let given = false
    let counted = true
    this.#busy++ // a pending acquire or a hold keeps the handle busy
    const uncount = () => {
      if (counted) this.#busy--
      counted = false
    }
    const give = (broken: boolean) => {
      if (given) return
      given = true
      uncount()
      releaseClient(client, broken)
    }
    if (signal?.aborted) {
      give(false)
      throw new AbortError('The lock wait was aborted', { cause: signal.reason })
    }
    // While the query runs, pg routes socket errors to it; this listener keeps a stray one from
    // crashing the process.
    const swallow = () => {}
    client.on('error', swallow)
    // One simple-protocol message (hence literals: integers, and text escaped by the driver), in a
    // READ COMMITTED transaction whatever the database's default: under REPEATABLE READ the
    // snapshot would predate the wait, and the row the previous holder just wrote would be a
    // serialization failure.
    const acquiring = client
      .query(
        `BEGIN ISOLATION LEVEL READ COMMITTED; ` +
          `SELECT outcome, token, prev_host, prev_pid, prev_since::text AS prev_since FROM robust_mutex.acquire_v1(${BigInt(this.#key).toString()}, ` +
          `${client.escapeLiteral(this.name)}, ${mode === 'wait'}, ${lockTimeoutMs | 0}, ${client.escapeLiteral(hostname())}, ${process.pid | 0}); COMMIT`,
      )
      .then((results) => (results as unknown as PgTypes.QueryResult[])[1])

    // Giving up (abort, or the timeout before the server's lock_timeout answers): the caller is
    // answered at once; the wait is cancelled and cleaned up in the background (#cleanups).
    let gaveUp: Error | undefined
    let answer!: (err: Error) => void
    const givenUp = new Promise<never>((_, reject) => (answer = reject))
    const giveUp = (err: Error) => {
      if (gaveUp) return
      gaveUp = err
      uncount()
      this.#track(this.#abandon(client, acquiring, give))
      answer(err)
    }
    const onAbort = () => giveUp(new AbortError('The lock wait was aborted', { cause: signal!.reason }))
    signal?.addEventListener('abort', onAbort, { once: true })
    // The server's lock_timeout normally answers first; this catches a slow answer.
    const timer = mode === 'wait' && lockTimeoutMs > 0
      ? setTimeout(() => giveUp(new TimeoutError(`timed out after ${timeout} ms waiting for the lock "${this.name}"`)), Math.min(lockTimeoutMs + 20, MAX_LOCK_TIMEOUT_MS))
      : undefined
    let outcome: string
    let token: bigint | null
    let failed: unknown
    try {
      const { rows } = await Promise.race([acquiring, givenUp])
      outcome = rows[0].outcome
      token = rows[0].token == null ? null : BigInt(rows[0].token)
    } catch (err) {
      if (err === gaveUp) throw err
      failed = err
    } finally {
      signal?.removeEventListener('abort', onAbort)
      clearTimeout(timer)
    }
    if (failed !== undefined) {
      const err = failed
      const state = sqlState(err)
      if (state === LOCK_NOT_AVAILABLE) {
        // A lock_timeout: waiting for the advisory lock (nothing taken), or on the row after the
        // grant (acquire_v1 gave the lock back). The client goes back to the pool only once it
        // is known not to hold the lock.
        // Bounded like #abandon: over a silently dead network the answer never comes.
        const bound = setTimeout(() => destroySocket(client), Math.max(this.#heartbeat || DEFAULT_HEARTBEAT_MS, MIN_ABANDON_MS))
        const clean = await cleanAfterTimeout(client, this.#key).finally(() => clearTimeout(bound))
        client.off('error', swallow)
        give(!clean)
        // A try does not wait: a lock_timeout (the role's, on the row) means "not now".
        if (mode === 'try') return null
        throw new TimeoutError(`timed out after ${timeout} ms waiting for the lock "${this.name}"`)
      }
      client.off('error', swallow)
      // Anything else may have struck after the session lock was granted: close the session,
      // which drops that lock with it.
      give(true)
      if (state === UNIQUE_VIOLATION) {
        throw new KeyCollisionError(`the name "${this.name}" hashes to the advisory lock key of another mutex name in robust_mutex.mutexes; choose another name`, { cause: err })
      }
      if (state === QUERY_CANCELED) throw connectionError(`waiting for "${this.name}" was canceled by the server (statement_timeout, or pg_cancel_backend)`, err)
      throw connectionError(`the connection waiting for "${this.name}" failed`, err)
    }
    client.off('error', swallow)
    if (outcome! === 'busy') {
      give(false)
      return null
    }
    if (outcome! === 'poisoned') {
      give(false)
      throw new NotRecoverableError(`the mutex "${this.name}" is poisoned until PgMutex.reset`)
    }
    const hold: Hold = { client, give, key: this.#key, name: this.name, token: token!, heartbeat: this.#heartbeat }
    return new PgLockGuard(INTERNAL, hold, outcome! === 'held')
  }

  /** Keeps a background cleanup visible to close(). */
  #track(cleanup: Promise<void>): void {
    this.#cleanups.add(cleanup)
    void cleanup.finally(() => this.#cleanups.delete(cleanup))
  }

  /**
   * After a wait was given up: cancel it, and if the grant won the race, put the row back as it
   * was (an abandoned mutex stays abandoned) and unlock; then close the connection either way (a
   * cancel may have struck after the session lock was granted, which a rollback does not undo).
   */
  async #abandon(client: Client, acquiring: Promise<PgTypes.QueryResult>, give: (broken: boolean) => void): Promise<void> {
    // Bounded: over a silently dead network no answer ever comes, and close() waits for this.
    const within = Math.max(this.#heartbeat || DEFAULT_HEARTBEAT_MS, MIN_ABANDON_MS)
    const deadline = Date.now() + within
    let settled = false
    const answered = acquiring.then(
      () => void (settled = true),
      () => void (settled = true),
    )
    // PostgreSQL discards a cancel that reaches an idle backend: one that beats the acquire's own
    // bytes to the server is lost, and the acquire would then wait with no limit. So the cancel
    // is sent again until the acquire answers, one request at a time (each resolves once the
    // server has signalled the backend): after the answer at most one is still on its way, which
    // the throwaway statement below absorbs.
    const canceling = (async () => {
      while (!settled && Date.now() < deadline) {
        await sendCancel(client, deadline - Date.now())
        if (settled) return
        let pause: ReturnType<typeof setTimeout> | undefined
        await Promise.race([answered, new Promise<void>((resolve) => (pause = setTimeout(resolve, CANCEL_RESEND_MS)))])
        clearTimeout(pause)
      }
    })()
    // When the time is up: a backend still inside the acquire and blocked on a lock has written
    // nothing, but it would not notice its client's socket closing (the server does not look
    // while a backend waits on a lock); left alone it would later take the lock, mark the row
    // held and die with its session: a false owner death for the next holder. So it is ended
    // from another connection first; then the socket is destroyed, which fails whatever is
    // pending (the server drops the session, and any lock it got, when it notices).
    let ended: Promise<void> = Promise.resolve()
    const bound = setTimeout(() => {
      const pid = (client as unknown as { processID: number | null }).processID
      const ending = !settled && pid != null ? this.#terminateIfWaiting(pid) : Promise.resolve()
      ended = ending.finally(() => destroySocket(client))
    }, within)
    try {
      const { rows } = await acquiring
      await canceling
      const outcome: string = rows[0].outcome
      if (outcome === 'busy' || outcome === 'poisoned') return
      // The server has signalled the backend by now, but the signal may still strike the next
      // statement: a throwaway one first, and the release retried once (one cancel request
      // cancels at most one statement, and at most one was still on its way).
      const once = async <T>(run: () => Promise<T>): Promise<T> => {
        try {
          return await run()
        } catch (err) {
          if (sqlState(err) !== QUERY_CANCELED) throw err
          return run()
        }
      }
      await once(() => client.query('SELECT 1'))
      const token = BigInt(rows[0].token)
      await once(() =>
        outcome === 'held'
          ? restoreAndUnlock(client, this.#key, this.name, token, { host: rows[0].prev_host, pid: rows[0].prev_pid, since: rows[0].prev_since })
          : finishAndUnlock(client, this.#key, this.name, token, 'released'),
      )
    } catch {
      // Cancelled or broken: closing the connection below drops any lock it had.
    } finally {
      await canceling
      clearTimeout(bound)
      await ended
      give(true)
    }
  }

  /**
   * Ends the backend `pid` (the session of a given-up acquire) only if it is blocked on a lock:
   * then it is still inside the acquire and has committed nothing, so ending it (which rolls its
   * transaction back and drops any lock of its session) cannot leave the row marked held. Check
   * and signal are one statement. Bounded; any failure (no privilege, no connection) is ignored:
   * the caller destroys the socket anyway.
   */
  async #terminateIfWaiting(pid: number): Promise<void> {
    let client: Client | undefined
    let late = false
    let expire!: () => void
    const expired = new Promise<void>((resolve) => (expire = resolve))
    const timer = setTimeout(() => {
      late = true
      if (client) destroySocket(client)
      expire()
    }, TERMINATE_WITHIN_MS)
    const work = (async () => {
      const c = await this.#connect()
      if (late) return releaseClient(c, false)
      client = c
      let broken = true
      try {
        await c.query(
          'SELECT pg_terminate_backend(w.pid) FROM (SELECT DISTINCT l.pid FROM pg_locks l WHERE l.pid = $1 AND NOT l.granted) w',
          [pid],
        )
        broken = false
      } finally {
        releaseClient(c, broken)
      }
    })().catch(() => {})
    await Promise.race([work, expired])
    clearTimeout(timer)
  }

  /** A snapshot of the mutex (takes no lock). */
  async state(): Promise<PgMutexState> {
    this.#checkOpen()
    const client = await this.#connect()
    try {
      const { rows } = await client.query(
        `SELECT m.state, m.fencing_token, m.holder_host, m.holder_pid, m.since,
                EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                          AND l.classid = (($1::bigint >> 32) & 4294967295)::bigint::oid
                          AND l.objid = ($1::bigint & 4294967295)::bigint::oid) AS locked
           FROM (SELECT 1) one LEFT JOIN robust_mutex.mutexes m ON m.name = $2`,
        [this.#key, this.name],
      )
      releaseClient(client, false)
      const row = rows[0]
      const locked = Boolean(row.locked)
      const held = row.state === 'held'
      return {
        locked,
        abandoned: held && !locked,
        poisoned: row.state === 'poisoned',
        fencingToken: row.fencing_token == null ? 0n : BigInt(row.fencing_token),
        holder: row.holder_host != null && row.state !== 'released'
          ? { host: row.holder_host, pid: row.holder_pid, since: new Date(row.since) }
          : null,
      }
    } catch (err) {
      releaseClient(client, true)
      throw connectionError(`reading the state of "${this.name}" failed`, err)
    }
  }

  /** Closes this handle and the connections it opened itself. BusyError while it holds or waits. */
  async close(): Promise<void> {
    if (this.#closed) return
    if (this.#busy > 0) throw new BusyError(`the PgMutex "${this.name}" has a held guard or a pending lock(); release it first`)
    this.#closed = true
    await Promise.all(this.#cleanups)
    if (this.#ownsPool) await (this.#pool as PgTypes.Pool).end()
  }
}
