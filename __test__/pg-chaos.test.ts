// Chaos for robust-mutex/pg: six processes (standing in for hosts) increment a counter stored in a
// table outside the lock's protection, with a non-atomic read-modify-write fenced by their
// tokens, while the test SIGKILLs holders and terminates holder sessions at random. The store's
// log must show every update either completed or, after an interruption, repaired by a holder
// told ownerDied; tokens never going back; the counter exact; no waiter hung.
// ROBUST_MUTEX_PG_CHAOS_MS sets the duration (default 20 s).
import { spawn, type ChildProcess } from 'node:child_process'
import * as path from 'node:path'

import test from 'ava'

import { PgMutex } from '../pg'
import { within } from './helpers'
import { advisoryLockers } from './pg-helpers'
import { startPg, type PgServer } from './pg-server'

const DURATION_MS = Number(process.env.ROBUST_MUTEX_PG_CHAOS_MS ?? 20_000)
const WORKERS = 6
const WORKER = path.join(__dirname, 'fixtures', 'pg-chaos-worker.cjs')
const NAME = 'chaos'

let server: PgServer
test.before(async () => {
  server = await startPg()
})
test.after.always(async () => {
  await server?.stop()
})

interface Worker {
  proc: ChildProcess
  output: string
  exited: Promise<number | null>
}

function startWorker(id: number): Worker {
  const proc = spawn(process.execPath, [WORKER, server.url, NAME, String(id)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const worker: Worker = { proc, output: '', exited: new Promise((resolve) => proc.on('exit', (code) => resolve(code))) }
  proc.stdout!.setEncoding('utf8')
  proc.stdout!.on('data', (chunk: string) => (worker.output += chunk))
  return worker
}

test('chaos: SIGKILLed holders and terminated sessions never lose or double an update', async (t) => {
  const admin = await server.admin(server.url)
  await admin.query(`
    CREATE TABLE chaos_store (id int PRIMARY KEY, counter int NOT NULL, pending_before int, token bigint NOT NULL);
    INSERT INTO chaos_store VALUES (1, 0, NULL, 0);
    CREATE TABLE chaos_log (seq bigserial PRIMARY KEY, kind text NOT NULL, token bigint NOT NULL, worker int NOT NULL);
  `)
  // Create the schema once up front (the 16-process race has its own test).
  const mutex = PgMutex.open(NAME, { connectionString: server.url })
  await (await mutex.lock()).release()

  const all: Worker[] = []
  const live: Worker[] = []
  for (let i = 0; i < WORKERS; i++) {
    const w = startWorker(i)
    all.push(w)
    live.push(w)
  }
  let kills = 0
  let terminations = 0
  const end = Date.now() + DURATION_MS
  // At least one blow lands even when a short duration passes while the workers start.
  while (Date.now() < end || kills + terminations === 0) {
    await new Promise((r) => setTimeout(r, 100 + Math.random() * 300))
    const { holders } = await advisoryLockers(admin, NAME)
    if (holders.length === 0) continue
    if (Math.random() < 0.5) {
      // The holder process: the row names it while it holds.
      const { rows } = await admin.query(`SELECT holder_pid FROM robust_mutex.mutexes WHERE name = $1 AND state = 'held'`, [NAME])
      const victim = live.findIndex((w) => w.proc.pid === rows[0]?.holder_pid)
      if (victim < 0) continue
      const [w] = live.splice(victim, 1)
      w.proc.kill('SIGKILL')
      kills++
      const fresh = startWorker(all.length)
      all.push(fresh)
      live.push(fresh)
    } else {
      const { rows } = await admin.query('SELECT pg_terminate_backend($1) AS done', [holders[0]])
      if (rows[0].done) terminations++
    }
  }
  for (const w of live) w.proc.stdin!.end('stop\n')
  const codes = await within(90_000, Promise.all(live.map((w) => w.exited)), 'workers finish after stop (no waiter hangs)')
  t.deepEqual(codes, live.map(() => 0))
  await Promise.all(all.map((w) => w.exited))

  const output = all.map((w) => w.output).join('')
  const violation = /^violation .*\(token (\d+)\)/m.exec(output)
  if (violation) {
    const near = await admin.query(`SELECT * FROM chaos_log WHERE token BETWEEN $1::bigint - 4 AND $1::bigint ORDER BY seq`, [violation[1]])
    t.log(near.rows)
  }
  t.notRegex(output, /^(violation|hang)/m)
  const summaries = live.map((w) => /^summary (\d+) (\d+) (\d+) (\d+)$/m.exec(w.output)!.slice(1).map(Number))
  const reportedDone = summaries.reduce((n, s) => n + s[0], 0)

  // A last holder repairs whatever the chaos left half-done, as any holder would.
  const guard = await mutex.lock()
  const store = (await admin.query('SELECT counter, pending_before FROM chaos_store')).rows[0]
  if (store.pending_before !== null) {
    t.true(guard.ownerDied, 'a pending update is only ever left by a holder that died')
    await admin.query(
      `WITH u AS (UPDATE chaos_store SET counter = pending_before, pending_before = NULL, token = $1 WHERE token <= $1 RETURNING 1)
       INSERT INTO chaos_log (kind, token, worker) SELECT 'repair', $1, -1 FROM u`,
      [guard.fencingToken.toString()],
    )
  }
  await guard.release()
  await mutex.close()

  // Replay the store's log: what each accepted write did, in the order the store accepted them.
  const log = (await admin.query('SELECT kind, token::text AS token FROM chaos_log ORDER BY seq')).rows as Array<{ kind: string; token: string }>
  let counter = 0
  let open: bigint | null = null // token of an update begun and not yet completed or repaired
  let last = 0n
  let repairs = 0
  for (const [i, { kind, token: raw }] of log.entries()) {
    const token = BigInt(raw)
    if (token < last) t.fail(`log ${i}: token ${token} after ${last}`)
    last = token
    if (kind === 'begin') {
      if (open !== null) t.fail(`log ${i}: begin by ${token} over an update open by ${open}`)
      open = token
    } else if (kind === 'done') {
      if (open !== token) t.fail(`log ${i}: done by ${token} of an update begun by ${open}`)
      open = null
      counter++
    } else if (kind === 'claim') {
      // a holder raised the fence; it changes nothing else
    } else if (kind === 'repair') {
      if (open === null || open >= token) t.fail(`log ${i}: repair by ${token} of ${open}`)
      open = null
      repairs++
    }
  }
  t.is(open, null, 'no update left open')
  const final = (await admin.query('SELECT counter, pending_before FROM chaos_store')).rows[0]
  t.deepEqual(final, { counter, pending_before: null }, 'the counter counts exactly the completed updates')
  t.true(reportedDone <= counter, 'every update a surviving worker saw complete is counted')
  t.true(kills + terminations > 0, 'the chaos happened')
  t.log(`${DURATION_MS} ms: ${counter} updates, ${repairs} repaired, ${kills} holders SIGKILLed, ${terminations} holder sessions terminated, ${all.length} workers`)
  await admin.end()
})
