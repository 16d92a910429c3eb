// robust-mutex/pg against a real PostgreSQL (embedded, started for this file): owner death by
// SIGKILL, backend termination and a cut connection; timeouts and aborts that leave nothing
// behind; schema creation races and versions; bad input; poison and reset; fencing tokens.
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import test from 'ava'
import { Pool } from 'pg'

import {
  AbortError,
  ConnectionError,
  KeyCollisionError,
  lockKey,
  NotRecoverableError,
  PgMutex,
  ReleasedError,
  SchemaError,
  TimeoutError,
} from '../pg'
import * as main from '../index'
import { lineChild, within } from './helpers'
import { advisoryLockers, eventually, sessions, tcpProxy } from './pg-helpers'
import { startPg, type PgServer } from './pg-server'

const PG_CHILD = path.join(__dirname, 'fixtures', 'pg-child.cjs')

let server: PgServer
test.before(async () => {
  server = await startPg()
})
test.after.always(async () => {
  await server?.stop()
})

function pgChild(role: string, url: string, name: string) {
  const proc = spawn(process.execPath, [PG_CHILD, role, url, name], { stdio: ['pipe', 'pipe', 'inherit'] })
  return lineChild(proc, 60_000)
}

test('the errors robust-mutex/pg throws are the main entry\'s classes too (instanceof works from either)', (t) => {
  t.is(main.ConnectionError, ConnectionError)
  t.is(main.SchemaError, SchemaError)
  t.is(main.KeyCollisionError, KeyCollisionError)
  t.is(main.TimeoutError, TimeoutError)
})

test('a SIGKILLed holder: the next holder gets the lock and ownerDied', async (t) => {
  const name = 'sigkill'
  const child = pgChild('hold', server.url, name)
  const [, token] = /^locked (\d+) ownerDied=false$/.exec(await child.nextLine())!
  const mutex = PgMutex.open(name, { connectionString: server.url })
  t.is(await mutex.tryLock(), null, 'held by the child')
  child.proc.kill('SIGKILL')
  await child.exited
  const guard = await within(30_000, mutex.lock(), 'lock after the holder died')
  t.true(guard.ownerDied)
  t.true(guard.fencingToken > BigInt(token))
  await guard.release()
  const after = await mutex.lock()
  t.false(after.ownerDied, 'a clean release clears the abandonment')
  await after.release()
  await mutex.close()
})

test('a holder whose backend is terminated: its signal aborts, the next holder gets ownerDied', async (t) => {
  const name = 'terminated'
  const admin = await server.admin(server.url)
  const holderMutex = PgMutex.open(name, { connectionString: server.url })
  const next = PgMutex.open(name, { connectionString: server.url })
  const held = await holderMutex.lock()
  t.false(held.signal.aborted)
  const waiting = next.lock()
  await eventually(async () => (await advisoryLockers(admin, name)).waiters.length === 1, 'the waiter queues')
  const { holders } = await advisoryLockers(admin, name)
  t.is(holders.length, 1)
  const lost = new Promise<unknown>((resolve) => held.signal.addEventListener('abort', () => resolve(held.signal.reason)))
  await admin.query('SELECT pg_terminate_backend($1)', [holders[0]])
  const reason = await within(30_000, lost, 'the old holder learns it lost the lock')
  t.true(reason instanceof ConnectionError)
  const guard = await within(30_000, waiting, 'the waiter gets the lock')
  t.true(guard.ownerDied)
  t.true(guard.fencingToken > held.fencingToken)
  await t.throwsAsync(held.release(), { instanceOf: ConnectionError }, 'releasing a lost hold says so')
  await guard.release()
  await holderMutex.close()
  await next.close()
  await admin.end()
})

test('a holder whose connection is cut by a proxy: its signal aborts, the next holder gets ownerDied', async (t) => {
  const name = 'cut'
  const proxy = await tcpProxy(server.port)
  const viaProxy = server.url.replace(`:${server.port}/`, `:${proxy.port}/`)
  const holderMutex = PgMutex.open(name, { connectionString: viaProxy })
  const next = PgMutex.open(name, { connectionString: server.url })
  const held = await holderMutex.lock()
  t.is(await next.tryLock(), null)
  const lost = new Promise<unknown>((resolve) => held.signal.addEventListener('abort', () => resolve(held.signal.reason)))
  proxy.cut()
  t.true((await within(30_000, lost, 'the holder notices the cut')) instanceof ConnectionError)
  const guard = await within(30_000, next.lock(), 'the next holder gets the lock once the server drops the session')
  t.true(guard.ownerDied)
  t.true(guard.fencingToken > held.fencingToken)
  await guard.release()
  await t.throwsAsync(held.release(), { instanceOf: ConnectionError })
  await holderMutex.close()
  await next.close()
  await proxy.close()
})

test('a silent network failure: the heartbeat aborts the holder\'s signal', async (t) => {
  const name = 'frozen'
  const proxy = await tcpProxy(server.port)
  const viaProxy = server.url.replace(`:${server.port}/`, `:${proxy.port}/`)
  const holderMutex = PgMutex.open(name, { connectionString: viaProxy, heartbeat: 200 })
  const held = await holderMutex.lock()
  const lost = new Promise<unknown>((resolve) => held.signal.addEventListener('abort', () => resolve(held.signal.reason)))
  proxy.freeze()
  const reason = await within(30_000, lost, 'the heartbeat notices the silence')
  t.true(reason instanceof ConnectionError)
  t.regex((reason as Error).message, /did not answer a heartbeat/)
  // The server still sees an idle session holding the lock until the network tells it otherwise
  // (TCP keepalives, idle_session_timeout); here the proxy finally drops it.
  proxy.cut()
  const next = PgMutex.open(name, { connectionString: server.url })
  const guard = await within(30_000, next.lock(), 'the next holder gets the lock')
  t.true(guard.ownerDied)
  await guard.release()
  await t.throwsAsync(held.release(), { instanceOf: ConnectionError })
  t.throws(() => PgMutex.open(name, { connectionString: server.url, heartbeat: -1 }), { instanceOf: RangeError })
  t.throws(() => PgMutex.open(name, { connectionString: server.url, heartbeat: '5' as never }), { instanceOf: TypeError })
  await holderMutex.close()
  await next.close()
  await proxy.close()
})

test('a timed-out wait leaves no lock, no session and no checked-out pooled client', async (t) => {
  const name = 'timeout'
  const admin = await server.admin(server.url)
  const holder = PgMutex.open(name, { connectionString: server.url })
  const held = await holder.lock()
  const pool = new Pool({ connectionString: server.url, application_name: 'rm-timeout-waiter' })
  const waiter = PgMutex.open(name, { pool })
  const started = performance.now()
  const err = await t.throwsAsync(waiter.lock({ timeout: 300 }), { instanceOf: TimeoutError })
  t.log(`timeout 300 ms rejected after ${(performance.now() - started).toFixed(0)} ms`) // informational: no timed assertion on a shared machine
  t.is(err!.code, 'ETIMEDOUT')
  const lockers = await advisoryLockers(admin, name)
  t.deepEqual(lockers.waiters, [], 'no wait left server-side')
  t.is(lockers.holders.length, 1, 'only the holder holds it')
  // Under load the timeout may strike while the pool is still connecting: that client goes
  // back when it arrives.
  await eventually(() => pool.totalCount === pool.idleCount && pool.waitingCount === 0, 'no client of the pool is checked out')
  // Nothing left waiting server-side: the pool's idle sessions (if any) are idle, not in a query.
  const { rows } = await admin.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'rm-timeout-waiter' AND state <> 'idle'`)
  t.is(rows[0].n, 0)
  await t.throwsAsync(waiter.lock({ timeout: 0 }), { instanceOf: TimeoutError }, 'timeout 0 tries once')
  await held.release()
  const guard = await waiter.lock({ timeout: 5000 })
  t.false(guard.ownerDied, 'the timed-out waits left no abandonment behind')
  await guard.release()
  await waiter.close()
  await pool.end()
  await holder.close()
  await eventually(async () => (await sessions(admin, 'rm-timeout-waiter')) === 0, 'the pool sessions end')
  await admin.end()
})

test('an aborted wait leaves no lock, no session and no checked-out pooled client', async (t) => {
  const name = 'abort'
  const admin = await server.admin(server.url)
  const holder = PgMutex.open(name, { connectionString: server.url })
  const held = await holder.lock()
  const pool = new Pool({ connectionString: server.url, application_name: 'rm-abort-waiter' })
  const waiter = PgMutex.open(name, { pool })
  const controller = new AbortController()
  const waiting = waiter.lock({ signal: controller.signal })
  await eventually(async () => (await advisoryLockers(admin, name)).waiters.length === 1, 'the waiter queues server-side')
  // Waiting is one statement blocked in the server's lock manager, not a polling loop: the same
  // statement (same query_start) is still waiting on the advisory lock a while later.
  const [waiterPid] = (await advisoryLockers(admin, name)).waiters
  const activity = async () =>
    (await admin.query('SELECT wait_event_type, wait_event, query_start FROM pg_stat_activity WHERE pid = $1', [waiterPid])).rows[0]
  const before = await activity()
  await new Promise((r) => setTimeout(r, 300))
  const after = await activity()
  t.like(before, { wait_event_type: 'Lock', wait_event: 'advisory' })
  t.deepEqual(after, before)
  const reason = new Error('stop waiting')
  const started = performance.now()
  controller.abort(reason)
  const err = await t.throwsAsync(waiting, { instanceOf: AbortError })
  t.log(`abort rejected after ${(performance.now() - started).toFixed(1)} ms`) // informational
  t.is(err!.cause, reason)
  await eventually(async () => (await advisoryLockers(admin, name)).waiters.length === 0, 'the server-side wait ends')
  await eventually(async () => (await sessions(admin, 'rm-abort-waiter')) === 0, 'the waiting session ends')
  t.is((await advisoryLockers(admin, name)).holders.length, 1, 'only the holder holds it')
  t.is(pool.totalCount, pool.idleCount)
  t.is(pool.waitingCount, 0)
  await t.throwsAsync(waiter.lock({ signal: AbortSignal.abort() }), { instanceOf: AbortError }, 'an aborted signal rejects at once')
  await held.release()
  t.deepEqual(await advisoryLockers(admin, name), { holders: [], waiters: [] })
  const state = await waiter.state()
  t.false(state.locked)
  t.false(state.abandoned)
  await waiter.close()
  await pool.end()
  await holder.close()
  await admin.end()
})

test('an abort racing the grant never leaves the lock taken or a clean mutex abandoned', async (t) => {
  const name = 'abort-race'
  const admin = await server.admin(server.url)
  const holder = PgMutex.open(name, { connectionString: server.url })
  // The waiter's own pool, named: what its aborted waits leave behind can be counted.
  const pool = new Pool({ connectionString: server.url, application_name: 'abort-race-waiter' })
  pool.on('error', () => {})
  const waiter = PgMutex.open(name, { pool })
  let granted = 0
  let aborted = 0
  for (let i = 0; i < 20; i++) {
    const held = await holder.lock()
    const controller = new AbortController()
    const waiting = waiter.lock({ signal: controller.signal }).then(
      async (guard) => {
        granted++
        t.false(guard.ownerDied, `round ${i}: the previous holder released cleanly`)
        await guard.release()
      },
      (err) => {
        t.true(err instanceof AbortError, String(err))
        aborted++
      },
    )
    await eventually(async () => (await advisoryLockers(admin, name)).waiters.length === 1, 'the waiter queues')
    // Release and abort together: the grant and the cancel race.
    const releasing = held.release()
    setTimeout(() => controller.abort(), i % 4)
    await releasing
    await waiting
    await eventually(async () => (await advisoryLockers(admin, name)).holders.length === 0, 'nobody holds it')
    const state = await waiter.state()
    t.false(state.abandoned, `round ${i}: a clean mutex is not reported abandoned`)
  }
  // Which side won each round is up to the scheduler: logged, not asserted.
  t.log(`${granted} rounds granted, ${aborted} aborted`)
  // Every cleanup finished (close() waits for them); no client is left checked out.
  await waiter.close()
  t.is(pool.totalCount, pool.idleCount, 'a pooled client is still checked out after the cleanups')
  t.is(pool.waitingCount, 0)
  // The mutex is exactly as a clean release leaves it, and another handle takes it at once.
  t.like(await holder.state(), { locked: false, abandoned: false, poisoned: false, holder: null })
  const last = await holder.tryLock()
  t.truthy(last, 'nobody holds the mutex after the races, yet it is busy')
  t.false(last!.ownerDied)
  await last!.release()
  await pool.end()
  await eventually(async () => (await sessions(admin, 'abort-race-waiter')) === 0, 'no session of the waiter is left')
  await holder.close()
  await admin.end()
})

test('timeout and abort also bound the wait for a free pooled client', async (t) => {
  const pool = new Pool({ connectionString: server.url, max: 1 })
  const mutex = PgMutex.open('pool-exhausted', { pool })
  const held = await mutex.lock() // takes the pool's only client
  await t.throwsAsync(PgMutex.open('pool-other', { pool }).lock({ timeout: 200 }), { instanceOf: TimeoutError })
  const controller = new AbortController()
  const waiting = PgMutex.open('pool-other', { pool }).lock({ signal: controller.signal })
  controller.abort()
  await t.throwsAsync(waiting, { instanceOf: AbortError })
  await held.release()
  await eventually(() => pool.waitingCount === 0 && pool.totalCount === pool.idleCount, 'the late clients go back to the pool')
  const again = await PgMutex.open('pool-other', { pool }).lock({ timeout: 5000 })
  await again.release()
  await mutex.close()
  await pool.end()
})

test('a waiter whose own connection dies rejects with ConnectionError', async (t) => {
  const name = 'waiter-dies'
  const admin = await server.admin(server.url)
  const holder = PgMutex.open(name, { connectionString: server.url })
  const held = await holder.lock()
  const waiter = PgMutex.open(name, { connectionString: server.url })
  const waiting = waiter.lock()
  await eventually(async () => (await advisoryLockers(admin, name)).waiters.length === 1, 'the waiter queues')
  const [waiterPid] = (await advisoryLockers(admin, name)).waiters
  await admin.query('SELECT pg_terminate_backend($1)', [waiterPid])
  const err = await t.throwsAsync(within(30_000, waiting, 'the waiter rejects'), { instanceOf: ConnectionError })
  t.is(err!.code, 'ECONNECTION')
  t.regex(err!.message, /waiting for "waiter-dies"/)
  t.false(held.signal.aborted, 'the holder is unaffected')
  await held.release()
  const guard = await waiter.lock({ timeout: 10_000 })
  t.false(guard.ownerDied)
  await guard.release()
  await holder.close()
  await waiter.close()
  await admin.end()
})

test('16 processes opening at once on a fresh database create the schema once', async (t) => {
  const url = await server.database('race16')
  const children = Array.from({ length: 16 }, () => pgChild('open', url, 'race'))
  const lines = await Promise.all(children.map((c) => c.nextLine()))
  t.deepEqual(lines, Array(16).fill('ok'))
  await Promise.all(children.map((c) => c.exited))
  const admin = await server.admin(url)
  t.deepEqual((await admin.query('SELECT version FROM robust_mutex.meta')).rows, [{ version: 1 }])
  const row = (await admin.query(`SELECT state, fencing_token FROM robust_mutex.mutexes WHERE name = 'race'`)).rows[0]
  t.deepEqual(row, { state: 'released', fencing_token: '16' }, 'each process held it once, in turn')
  await admin.end()
})

test('a schema of a newer version is refused untouched; so is a foreign robust_mutex schema', async (t) => {
  const url = await server.database('newer')
  const first = PgMutex.open('x', { connectionString: url })
  await (await first.lock()).release()
  await first.close()
  const admin = await server.admin(url)
  await admin.query('UPDATE robust_mutex.meta SET version = 2')
  const dump = async () => JSON.stringify((await admin.query('SELECT * FROM robust_mutex.mutexes ORDER BY name')).rows)
  const before = await dump()
  const mutex = PgMutex.open('x', { connectionString: url })
  const err = await t.throwsAsync(mutex.lock(), { instanceOf: SchemaError })
  t.is(err!.code, 'ESCHEMA')
  t.regex(err!.message, /version 2, newer/)
  await t.throwsAsync(mutex.state(), { instanceOf: SchemaError })
  t.is(await dump(), before)
  t.deepEqual((await admin.query('SELECT version FROM robust_mutex.meta')).rows, [{ version: 2 }])
  await mutex.close()
  await admin.end()

  const foreignUrl = await server.database('foreign')
  const foreign = await server.admin(foreignUrl)
  await foreign.query('CREATE SCHEMA robust_mutex; CREATE TABLE robust_mutex.other (x int)')
  const m = PgMutex.open('x', { connectionString: foreignUrl })
  await t.throwsAsync(m.lock(), { instanceOf: SchemaError, message: /not ours/ })
  const { rows } = await foreign.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'robust_mutex'`)
  t.deepEqual(rows, [{ table_name: 'other' }], 'nothing was added to a schema that is not ours')
  await m.close()
  await foreign.end()
})

test('a role that may not create the schema gets SchemaError and nothing half-created', async (t) => {
  const url = await server.database('no_create')
  const admin = await server.admin(url)
  await admin.query(`CREATE ROLE rm_limited LOGIN PASSWORD 'limited'`)
  const limitedUrl = url.replace('postgres:robust-mutex-test@', 'rm_limited:limited@')
  const mutex = PgMutex.open('x', { connectionString: limitedUrl })
  const err = await t.throwsAsync(mutex.lock(), { instanceOf: SchemaError })
  t.regex(err!.message, /cannot create the robust_mutex schema: permission denied/)
  const { rows } = await admin.query(`SELECT to_regnamespace('robust_mutex') IS NULL AS absent`)
  t.true(rows[0].absent, 'the failed creation rolled back whole')
  await mutex.close()
  await admin.end()
})

test('bad names, wrong connection strings and a server that is down are typed errors', async (t) => {
  t.throws(() => PgMutex.open('', { connectionString: server.url }), { instanceOf: TypeError })
  t.throws(() => PgMutex.open('a\0b', { connectionString: server.url }), { instanceOf: TypeError })
  t.throws(() => PgMutex.open('x'.repeat(1025), { connectionString: server.url }), { instanceOf: RangeError })
  t.throws(() => PgMutex.open(42 as unknown as string, { connectionString: server.url }), { instanceOf: TypeError })
  t.throws(() => PgMutex.open('ok', {}), { instanceOf: TypeError })
  t.throws(() => PgMutex.open('ok', { pool: {} as never }), { instanceOf: TypeError })

  const badPassword = server.url.replace('robust-mutex-test', 'wrong')
  const noDatabase = server.url.replace(/\/[^/]+$/, '/no_such_database')
  const down = `postgresql://postgres:x@127.0.0.1:1/postgres`
  for (const url of [badPassword, noDatabase, down]) {
    const mutex = PgMutex.open('ok', { connectionString: url })
    const err = await t.throwsAsync(mutex.lock(), { instanceOf: ConnectionError }, url)
    t.is(err!.code, 'ECONNECTION')
    await t.throwsAsync(mutex.state(), { instanceOf: ConnectionError })
    await mutex.close()
  }
  const m = PgMutex.open('ok', { connectionString: server.url })
  await t.throwsAsync(m.lock({ timeout: -1 }), { instanceOf: RangeError })
  await t.throwsAsync(m.lock({ signal: 'no' as never }), { instanceOf: TypeError })
  await m.close()
})

test('without the pg package, robust-mutex/pg says to install it', async (t) => {
  // A copy of the compiled modules where `pg` cannot be resolved.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-nopg-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  for (const file of ['pg.js', 'errors.js']) fs.copyFileSync(path.join(__dirname, '..', file), path.join(dir, file))
  const script = `const { PgMutex } = require('./pg.js'); try { PgMutex.open('x', { connectionString: 'postgresql://x' }) } catch (e) { console.log(e.name, e.code, e.message) }`
  const proc = spawn(process.execPath, ['-e', script], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  proc.stdout.on('data', (d) => (out += d))
  await new Promise((resolve) => proc.on('exit', resolve))
  t.regex(out, /^UnsupportedError EUNSUPPORTED .*npm install pg/)
})

test('import "robust-mutex" does not load pg', async (t) => {
  const script = `require('robust-mutex'); console.log(Object.keys(require.cache).some((k) => /[\\\\/]node_modules[\\\\/]pg[\\\\/]/.test(k)))`
  const proc = spawn(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..'), stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  proc.stdout.on('data', (d) => (out += d))
  await new Promise((resolve) => proc.on('exit', resolve))
  t.is(out.trim(), 'false')
})

test('poison: acquires fail until reset, and the reset mutex works again', async (t) => {
  const name = 'poison'
  const mutex = PgMutex.open(name, { connectionString: server.url })
  const guard = await mutex.lock()
  guard.markUnrecoverable()
  await guard.release()
  const state = await mutex.state()
  t.true(state.poisoned)
  t.false(state.locked)
  await t.throwsAsync(mutex.lock(), { instanceOf: NotRecoverableError })
  await t.throwsAsync(mutex.tryLock(), { instanceOf: NotRecoverableError })
  await t.throwsAsync(mutex.withLock(() => t.fail('must not run')), { instanceOf: NotRecoverableError })
  t.false((await mutex.state()).locked, 'a refused acquire gives the advisory lock back')
  await PgMutex.reset(name, { connectionString: server.url })
  t.false((await mutex.state()).poisoned)
  const again = await mutex.lock()
  t.false(again.ownerDied)
  t.true(again.fencingToken > guard.fencingToken)
  await again.release()
  await t.throwsAsync(again.release(), { instanceOf: ReleasedError })
  await mutex.close()
})

test('reset waits for the lock at most its timeout and clears an abandoned mutex', async (t) => {
  const name = 'reset-abandoned'
  const child = pgChild('hold', server.url, name)
  await child.nextLine()
  await t.throwsAsync(PgMutex.reset(name, { connectionString: server.url, timeout: 200 }), { instanceOf: TimeoutError })
  child.proc.kill('SIGKILL')
  await child.exited
  const mutex = PgMutex.open(name, { connectionString: server.url })
  await eventually(async () => (await mutex.state()).abandoned, 'the dead holder\'s session ends')
  t.deepEqual((await mutex.state()).holder?.pid, child.proc.pid)
  await PgMutex.reset(name, { connectionString: server.url })
  const state = await mutex.state()
  t.false(state.abandoned)
  t.is(state.holder, null)
  const guard = await mutex.lock()
  t.false(guard.ownerDied, 'reset cleared the abandonment')
  await guard.release()
  await mutex.close()
})

test('fencing tokens strictly increase across processes, handles and resets', async (t) => {
  const name = 'tokens'
  const a = PgMutex.open(name, { connectionString: server.url })
  const b = PgMutex.open(name, { connectionString: server.url })
  const tokens: bigint[] = []
  for (let round = 0; round < 3; round++) {
    for (const m of [a, b]) {
      const g = await m.lock()
      tokens.push(g.fencingToken)
      await g.release()
    }
    const child = pgChild('hold', server.url, name)
    tokens.push(BigInt(/^locked (\d+)/.exec(await child.nextLine())![1]))
    child.proc.stdin!.end()
    await child.exited
    await PgMutex.reset(name, { connectionString: server.url })
    t.is((await a.state()).fencingToken, tokens[tokens.length - 1], 'reset keeps the counter')
  }
  for (let i = 1; i < tokens.length; i++) t.true(tokens[i] > tokens[i - 1], `token ${i}: ${tokens[i]} > ${tokens[i - 1]}`)
  await a.close()
  await b.close()
})

test('two names with one advisory key are refused, not merged', async (t) => {
  const admin = await server.admin(server.url)
  const mutex = PgMutex.open('collides', { connectionString: server.url })
  await (await mutex.lock()).release() // schema in place
  // Stand in for a real 64-bit hash collision: another name already owns this name's key.
  await admin.query(`INSERT INTO robust_mutex.mutexes (name, lock_key, state, fencing_token) VALUES ('someone-else', $1, 'released', 1)`, [lockKey('collides-too')])
  const other = PgMutex.open('collides-too', { connectionString: server.url })
  const err = await t.throwsAsync(other.lock(), { instanceOf: KeyCollisionError })
  t.is(err!.code, 'EKEYCOLLISION')
  // The refused acquire closed its session (which had taken the lock before the insert failed);
  // the server ends it a moment later.
  await eventually(async () => (await advisoryLockers(admin, 'collides-too')).holders.length === 0, 'the refused acquire holds nothing')
  t.deepEqual(await advisoryLockers(admin, 'collides-too'), { holders: [], waiters: [] })
  await other.close()
  await mutex.close()
  await admin.end()
})

test('withLock, await using, tryLock and close', async (t) => {
  const name = 'shapes'
  const mutex = PgMutex.open(name, { connectionString: server.url })
  t.is(await mutex.withLock(async (g) => {
    t.is(await mutex.tryLock(), null)
    return g.fencingToken > 0n ? 'ran' : 'no'
  }), 'ran')
  await t.throwsAsync(mutex.withLock(() => { throw new Error('boom') }), { message: 'boom' })
  t.false((await mutex.state()).locked, 'released after a throw')
  {
    await using guard = await mutex.lock()
    t.true((await mutex.state()).locked)
    await t.throwsAsync(mutex.close(), { code: 'EBUSY' })
    void guard
  }
  t.false((await mutex.state()).locked, 'await using released it')
  await mutex.close()
  await t.throwsAsync(mutex.lock(), { code: 'ECLOSED' })
})
