// Helpers shared by the robust-mutex/pg tests: lock inspection through pg_locks, a cuttable TCP
// proxy, polling for a condition the server reaches asynchronously.
import * as net from 'node:net'

import { Pool, type Client as PgClient } from 'pg'

import { PgMutex, lockKey } from '../pg'

/** pg_locks' view of a bigint advisory key: high half in classid, low half in objid. */
function keyParts(name: string): [string, string] {
  const key = BigInt.asUintN(64, BigInt(lockKey(name)))
  return [(key >> 32n).toString(), (key & 0xffffffffn).toString()]
}

/** Backend pids holding (granted) or waiting for (not granted) the advisory lock of `name`. */
export async function advisoryLockers(admin: PgClient, name: string): Promise<{ holders: number[]; waiters: number[] }> {
  const [classid, objid] = keyParts(name)
  const { rows } = await admin.query(
    `SELECT pid, granted FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND classid = $1::bigint::oid AND objid = $2::bigint::oid`,
    [classid, objid],
  )
  return {
    holders: rows.filter((r) => r.granted).map((r) => r.pid),
    waiters: rows.filter((r) => !r.granted).map((r) => r.pid),
  }
}

/** Backend sessions with this application_name (set by the pool or client under test). */
export async function sessions(admin: PgClient, applicationName: string): Promise<number> {
  const { rows } = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [applicationName])
  return rows[0].n
}

/**
 * Polls `check` until it returns true. The server ends sessions asynchronously (a terminated
 * backend exits a moment later), so the tests wait for the state rather than assume a delay;
 * the limit only turns a hang into a failure.
 */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, limitMs = 15_000): Promise<void> {
  const end = Date.now() + limitMs
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`${what}: not reached within ${limitMs} ms`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

export interface Proxy {
  port: number
  /** Drops every connection through the proxy at once (both directions, no goodbye). */
  cut(): void
  /** Stops forwarding without closing anything: a silent network failure. */
  freeze(): void
  close(): Promise<void>
}

/** A TCP proxy to 127.0.0.1:targetPort whose connections the test can cut. */
export function tcpProxy(targetPort: number): Promise<Proxy> {
  const pairs = new Set<[net.Socket, net.Socket]>()
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1')
    const pair: [net.Socket, net.Socket] = [client, upstream]
    pairs.add(pair)
    client.pipe(upstream)
    upstream.pipe(client)
    const drop = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', drop)
    upstream.on('error', drop)
    client.on('close', drop)
    upstream.on('close', drop)
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        freeze: () => {
          for (const [a, b] of pairs) {
            a.unpipe(b)
            b.unpipe(a)
            a.pause()
            b.pause()
          }
        },
        cut: () => {
          for (const [a, b] of pairs) {
            a.resetAndDestroy()
            b.resetAndDestroy()
          }
          pairs.clear()
        },
        close: () =>
          new Promise<void>((done) => {
            for (const [a, b] of pairs) {
              a.destroy()
              b.destroy()
            }
            server.close(() => done())
          }),
      })
    })
  })
}

/** pg.ts's SCHEMA_LOCK_KEY (not exported): the transaction-level lock schema creation waits on. */
export const SCHEMA_LOCK_KEY = '-3739402856245061633'

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** How many advisory locks are waited for in the admin session's database (a first lock()
 * queued behind another process's schema creation shows here). */
export async function waitingAdvisoryLocks(admin: PgClient): Promise<number> {
  const { rows } = await admin.query(
    `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  )
  return rows[0].n as number
}

/**
 * A first lock() on a fresh database `url`, through a pool whose sessions start with
 * `sessionOptions` (e.g. `-c lock_timeout=300`), while another process creates the schema for
 * `holdMs` (longer than those timeouts): returns what the lock() ended with, its guard already
 * released, or its error. It must wait for the other creator, not fail.
 */
export async function lockDuringSchemaCreation(admin: PgClient, url: string, sessionOptions: string, holdMs = 1000): Promise<unknown> {
  const pool = new Pool({ connectionString: url, options: sessionOptions })
  pool.on('error', () => {})
  const mutex = PgMutex.open('schema-race', { pool })
  try {
    await admin.query(`SELECT pg_advisory_lock(${SCHEMA_LOCK_KEY})`) // another process is creating it
    const first = outcomeOf(mutex.lock())
    await eventually(async () => first.settled() || (await waitingAdvisoryLocks(admin)) === 1, 'the first lock() waits for the other creator')
    await sleep(holdMs)
    await admin.query(`SELECT pg_advisory_unlock(${SCHEMA_LOCK_KEY})`)
    const got = await first.result
    if (!(got instanceof Error)) await got.release()
    return got
  } finally {
    await mutex.close()
    await pool.end()
  }
}

/** How a promise ended, without letting a rejection escape: the value, or the error. */
export function outcomeOf<T>(p: Promise<T>): { settled: () => boolean; result: Promise<T | Error> } {
  let done = false
  const result = p.then(
    (v) => ((done = true), v),
    (e: Error) => ((done = true), e),
  )
  return { settled: () => done, result }
}
