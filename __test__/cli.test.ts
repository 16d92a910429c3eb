// The `robust-mutex` command as users run it: the package's bin (compiled cli.js) started by node
// as a real process, real shell commands, real signals, real files.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import test from 'ava'

import { SharedMutex } from '../index'

import { tempDir, within } from './helpers'

const ROOT = path.join(__dirname, '..')
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string
  bin: Record<string, string>
  files: string[]
}
const BIN = path.join(ROOT, pkg.bin['robust-mutex'])

const dir = tempDir()
let counter = 0
const fresh = (name = 'lock') => path.join(dir, `${name}${counter++}`)

interface Result {
  status: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

interface Running {
  pid: number
  stdin: NodeJS.WritableStream
  /** The next line COMMAND (or the CLI) prints on stdout. */
  nextLine(): Promise<string>
  done: Promise<Result>
  kill(signal: NodeJS.Signals): void
}

/** Start the bin; stdout/stderr are collected, stdin is a pipe. */
function start(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Running {
  const started = performance.now()
  const proc = spawn(process.execPath, [BIN, ...args], { env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] })
  if (options.input !== undefined) proc.stdin.end(options.input)
  let stdout = ''
  let stderr = ''
  let unread = ''
  const lines: string[] = []
  const waiting: Array<(line: string) => void> = []
  proc.stdout.setEncoding('utf8')
  proc.stderr.setEncoding('utf8')
  proc.stdout.on('data', (chunk: string) => {
    stdout += chunk
    unread += chunk
    let nl: number
    while ((nl = unread.indexOf('\n')) >= 0) {
      const line = unread.slice(0, nl)
      unread = unread.slice(nl + 1)
      const waiter = waiting.shift()
      if (waiter) waiter(line)
      else lines.push(line)
    }
  })
  proc.stderr.on('data', (chunk: string) => (stderr += chunk))
  const done = new Promise<Result>((resolve) =>
    proc.on('close', (status, signal) => resolve({ status, signal, stdout, stderr, ms: performance.now() - started })),
  )
  return {
    pid: proc.pid!,
    stdin: proc.stdin,
    done,
    kill: (signal) => proc.kill(signal),
    nextLine: () =>
      within(
        30_000,
        new Promise<string>((resolve, reject) => {
          const line = lines.shift()
          if (line !== undefined) return resolve(line)
          waiting.push(resolve)
          void done.then((r) => reject(new Error(`exited (${r.status ?? r.signal}) before printing; stderr: ${r.stderr}`)))
        }),
        'a line from the command',
      ),
  }
}

/** Run the bin to completion. */
function cli(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Result> {
  return within(30_000, start(args, { input: '', ...options }).done, `robust-mutex ${args.join(' ')}`)
}

/** A `run` holding `lock` until its stdin is closed (then COMMAND exits 0 and the lock is released). */
async function hold(lock: string): Promise<Running & { release(): Promise<Result> }> {
  const holder = start(['run', lock, '--', 'sh', '-c', 'echo held; read line || true'])
  const line = await holder.nextLine()
  if (line !== 'held') throw new Error(`unexpected holder output ${line}`)
  return {
    ...holder,
    release: () => {
      holder.stdin.end()
      return within(10_000, holder.done, 'the holder to finish')
    },
  }
}

// Prints what a COMMAND learns from its environment.
const REPORT = ['sh', '-c', 'echo "died=${ROBUST_MUTEX_OWNER_DIED-} pid=${ROBUST_MUTEX_DEAD_PID-}"']
const ERROR_LINE = /^robust-mutex: [A-Z][A-Z0-9_]+: [^\n]+\n$/

test('the package declares the bin: cli.js, a node script, published', (t) => {
  t.is(pkg.bin['robust-mutex'], 'cli.js')
  t.true(fs.readFileSync(BIN, 'utf8').startsWith('#!/usr/bin/env node\n'))
  for (const file of ['cli.js', 'index.js', 'errors.js', 'binding.js']) t.true(pkg.files.includes(file), `${file} is published`)
})

test.serial('8 concurrent runs of a non-atomic read-increment-write give the exact total', async (t) => {
  const lock = fresh()
  const count = fresh('count')
  fs.writeFileSync(count, '0\n')
  // Read, dawdle, write back: any overlap between two of them loses an increment.
  const increment = ['sh', '-c', 'n=$(cat "$1"); sleep 0.2; echo $((n + 1)) > "$1"', 'sh', count]
  const runs = await Promise.all(Array.from({ length: 8 }, () => cli(['run', lock, '--', ...increment])))
  for (const r of runs) t.deepEqual([r.status, r.stderr], [0, ''])
  t.is(fs.readFileSync(count, 'utf8'), '8\n')

  // The same 8 commands without the lock do overlap (so the assertion above can fail).
  fs.writeFileSync(count, '0\n')
  await Promise.all(
    Array.from({ length: 8 }, () => new Promise((resolve) => spawn(increment[0], increment.slice(1)).on('close', resolve))),
  )
  t.true(Number(fs.readFileSync(count, 'utf8')) < 8, 'unlocked increments are lost')
})

test.serial('COMMAND SIGKILLed mid-update: the runner exits 137 holding the lock and the next run is told', async (t) => {
  const lock = fresh()
  const runner = start(['run', lock, '--', 'sh', '-c', 'echo $$; exec sleep 30'])
  const commandPid = Number(await runner.nextLine())
  process.kill(commandPid, 'SIGKILL')
  const killed = await within(10_000, runner.done, 'the runner')
  t.deepEqual([killed.status, killed.signal, killed.stderr], [137, null, ''])

  const next = await cli(['run', '-n', lock, '--', ...REPORT])
  t.is(next.status, 0)
  t.is(next.stdout, `died=1 pid=${runner.pid}\n`)
  // That run exited cleanly: the lock is healthy again.
  t.is((await cli(['run', '-n', lock, '--', ...REPORT])).stdout, 'died= pid=\n')
})

test.serial('the runner itself SIGKILLed while COMMAND runs: the next run is told', async (t) => {
  const lock = fresh()
  const runner = start(['run', lock, '--', 'sh', '-c', 'echo $$; exec sleep 30'])
  const commandPid = Number(await runner.nextLine())
  runner.kill('SIGKILL')
  await new Promise((r) => setTimeout(r, 100))
  process.kill(commandPid, 'SIGKILL') // the orphaned COMMAND (see the README's limits); it holds stdout
  t.is((await within(10_000, runner.done, 'the runner')).signal, 'SIGKILL')

  const next = await cli(['run', '-n', lock, '--', ...REPORT])
  t.is(next.status, 0)
  t.is(next.stdout, `died=1 pid=${runner.pid}\n`)
})

test.serial('a clean exit of COMMAND, even non-zero, releases: the next run is not told, nor misled by its own environment', async (t) => {
  const lock = fresh()
  t.is((await cli(['run', lock, '--', 'sh', '-c', 'exit 5'])).status, 5)
  const env = { ...process.env, ROBUST_MUTEX_OWNER_DIED: '1', ROBUST_MUTEX_DEAD_PID: '12345' }
  const next = await cli(['run', '-n', lock, '--', ...REPORT], { env })
  t.deepEqual([next.status, next.stdout], [0, 'died= pid=\n'])
})

test.serial('-n against a held lock exits 75 at once without running COMMAND; -E sets that status', async (t) => {
  const lock = fresh()
  const marker = fresh('marker')
  const holder = await hold(lock)
  const r = await cli(['run', '-n', lock, '--', 'touch', marker])
  t.deepEqual([r.status, r.stdout, r.stderr], [75, '', ''], 'silent, as flock -n')
  t.true(r.ms < 5_000, `took ${r.ms} ms`)
  t.false(fs.existsSync(marker), 'COMMAND did not run')

  t.is((await cli(['run', '-n', '-E', '3', lock, '--', 'touch', marker])).status, 3)
  t.is((await cli(['run', '-nE3', lock, 'touch', marker])).status, 3, 'clustered flags, no --')
  t.is((await cli(['run', '--wait=0.1', '--conflict-exit-code=9', lock, 'touch', marker])).status, 9, '-E applies to -w')
  const verbose = await cli(['run', '-n', '-v', lock, '--', 'touch', marker])
  t.is(verbose.status, 75)
  t.regex(verbose.stderr, /^robust-mutex: EWOULDBLOCK: the lock is held: .*\n$/)
  t.false(fs.existsSync(marker))

  t.is((await holder.release()).status, 0)
  t.is((await cli(['run', '-n', lock, '--', 'touch', marker])).status, 0, 'free again once the holder exited')
  t.true(fs.existsSync(marker))
})

test.serial('-w 0.2 waits at least 200 ms and -w 1.2 at least 1.2 s, then each exits 75', async (t) => {
  const lock = fresh()
  const holder = await hold(lock)
  // Only lower bounds (a wait never ends early) and the order of the two: startup and exit vary by
  // seconds on a loaded shared machine, so an upper bound would be a timing test. Reading SECONDS
  // as milliseconds, or as an integer (0 and 1), breaks the lower bounds.
  const fastest = async (args: string[]) => {
    let best = Infinity
    for (let i = 0; i < 3; i++) {
      const r = await cli(args)
      t.is(r.status, 75)
      best = Math.min(best, r.ms)
    }
    return best
  }
  const short = await fastest(['run', '-w', '0.2', lock, '--', 'true'])
  const long = await fastest(['run', '-w', '1.2', lock, '--', 'true'])
  t.log(`-w 0.2: ${short.toFixed(0)} ms, -w 1.2: ${long.toFixed(0)} ms (whole processes)`)
  t.true(short >= 200, `${short} ms`)
  t.true(long >= 1_200, `${long} ms`)
  t.true(short < long, `-w 0.2 (${short.toFixed(0)} ms) did not end before -w 1.2 (${long.toFixed(0)} ms)`)
  await holder.release()
})

test.serial('a waiting run does not spin, and runs COMMAND once the holder is done', async (t) => {
  const lock = fresh()
  const holder = await hold(lock)
  const waiter = start(['run', lock, '--', 'echo', 'got it'])
  const clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }))
  const cpuSeconds = () => {
    const fields = fs.readFileSync(`/proc/${waiter.pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) / clockTicks // utime + stime
  }
  await new Promise((r) => setTimeout(r, 1_000)) // started and waiting
  const before = cpuSeconds()
  await new Promise((r) => setTimeout(r, 1_000))
  const used = cpuSeconds() - before
  t.log(`CPU used by a waiting run in 1 s: ${(used * 1000).toFixed(0)} ms`)
  t.true(used <= 0.1, `${used} s of CPU in 1 s of waiting`)

  await holder.release()
  const r = await within(10_000, waiter.done, 'the waiter')
  t.deepEqual([r.status, r.stdout], [0, 'got it\n'])
})

test.serial('exit status, signals, stdio and arguments pass through', async (t) => {
  const lock = fresh()
  t.is((await cli(['run', lock, '--', 'sh', '-c', 'exit 42'])).status, 42)
  t.is((await cli(['run', lock, '--', 'sh', '-c', 'kill -TERM $$'])).status, 128 + 15)
  t.is((await cli(['run', lock, '--', 'sh', '-c', 'kill -KILL $$'])).status, 128 + 9)

  const io = await cli(['run', lock, '--', 'sh', '-c', 'cat; echo oops >&2'], { input: 'hello\n' })
  t.deepEqual([io.status, io.stdout, io.stderr], [0, 'hello\n', 'oops\n'])
  // No shell in between: spaces, $ and * arrive as they were given.
  const args = await cli(['run', lock, '--', 'printf', '%s|', 'a b', '$HOME', '*', '-n'])
  t.is(args.stdout, 'a b|$HOME|*|-n|')

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const trapping = 'trap "echo got; exit 7" INT TERM HUP; echo ready; while :; do sleep 0.05; done'
    const runner = start(['run', lock, '--', 'sh', '-c', trapping])
    t.is(await runner.nextLine(), 'ready')
    runner.kill(signal)
    const r = await within(10_000, runner.done, `the runner after ${signal}`).catch((err: Error) => {
      // Which of the runner and COMMAND is still there (ps exits 1 when neither is).
      t.log(`after ${signal}:`, spawnSync('ps', ['-o', 'pid,ppid,stat,args', '--ppid', String(runner.pid), '-p', String(runner.pid)], { encoding: 'utf8' }).stdout)
      throw err
    })
    t.deepEqual([r.status, r.signal, r.stdout], [7, null, 'ready\ngot\n'], `${signal} was forwarded to COMMAND`)
  }
})

test.serial('a COMMAND that does not exist exits 127 with one clear line, and leaves the lock free (abandoned after an owner death)', async (t) => {
  const lock = fresh()
  const r = await cli(['run', lock, '--', 'robust-mutex-no-such-command', 'arg'])
  t.is(r.status, 127)
  t.is(r.stderr, 'robust-mutex: ENOENT: robust-mutex-no-such-command: command not found\n')
  const next = await cli(['run', '-n', lock, '--', ...REPORT])
  t.deepEqual([next.status, next.stdout], [0, 'died= pid=\n'])

  // After an owner death, a COMMAND that never ran leaves the repair owed to the next run.
  const crashed = start(['run', lock, '--', 'sh', '-c', 'kill -KILL $$'])
  t.is((await within(10_000, crashed.done, 'the crashed run')).status, 137)
  t.is((await cli(['run', lock, '--', 'robust-mutex-no-such-command'])).status, 127)
  const told = await cli(['run', '-n', lock, '--', ...REPORT])
  t.deepEqual([told.status, told.stdout.startsWith('died=1 pid=')], [0, true], told.stdout)

  const notExecutable = fresh('script')
  fs.writeFileSync(notExecutable, 'echo hi\n', { mode: 0o644 })
  const denied = await cli(['run', lock, '--', notExecutable])
  t.is(denied.status, 126)
  t.regex(denied.stderr, /^robust-mutex: EACCES: .*script\d+: permission denied\n$/)
})

test.serial('inspect shows the holder pid without taking the lock or changing the file; --json parses', async (t) => {
  const lock = fresh()
  t.is((await cli(['run', lock, '--', 'true'])).status, 0)
  const free = fs.readFileSync(lock)
  t.is((await cli(['inspect', lock])).status, 0)
  t.deepEqual(fs.readFileSync(lock), free, 'a free lock file is unchanged')

  const holder = await hold(lock)
  const before = fs.readFileSync(lock)
  const table = await cli(['inspect', lock])
  t.is(table.status, 0)
  t.regex(table.stdout, new RegExp(`^holder pid +${holder.pid}$`, 'm'))
  t.regex(table.stdout, /^locked +yes$/m)
  const after = fs.readFileSync(lock)
  // state() stamps "held since" (bytes 88..96) when it is the first to see the lock held;
  // nothing else may change.
  t.deepEqual(Buffer.concat([after.subarray(0, 88), after.subarray(96)]), Buffer.concat([before.subarray(0, 88), before.subarray(96)]))

  const json = await cli(['inspect', lock, '--json'])
  t.is(json.status, 0)
  const state = JSON.parse(json.stdout)
  t.like(state, { path: lock, locked: true, abandoned: false, poisoned: false, owner: { pid: holder.pid } })
  t.is(typeof state.owner.since, 'string')
  t.deepEqual(fs.readFileSync(lock), after, 'a second inspect changes nothing at all')
  t.is((await cli(['run', '-n', lock, '--', 'true'])).status, 75, 'the holder still holds it')
  await holder.release()
})

test.serial('inspect of a file that is not ours gives its error code; of a missing file, ENOENT without creating it', async (t) => {
  const foreign = fresh('foreign')
  fs.writeFileSync(foreign, 'not a lock\n')
  const r = await cli(['inspect', foreign])
  t.is(r.status, 65)
  t.regex(r.stderr, ERROR_LINE)
  t.true(r.stderr.startsWith('robust-mutex: EBADMUTEX: '))
  t.is(fs.readFileSync(foreign, 'utf8'), 'not a lock\n')

  const missing = fresh('missing')
  const m = await cli(['inspect', missing, '--json'])
  t.is(m.status, 66)
  t.true(m.stderr.startsWith('robust-mutex: ENOENT: '), m.stderr)
  t.regex(m.stderr, ERROR_LINE)
  t.false(fs.existsSync(missing), 'inspect never creates the file')
})

test.serial('a poisoned lock: run exits 69 until reset; destroy refuses while in use (75), then removes', async (t) => {
  const lock = fresh()
  const mutex = SharedMutex.open(lock)
  const guard = mutex.lockSync()
  guard.markUnrecoverable()
  guard.release()
  mutex.close()

  const refused = await cli(['run', lock, '--', 'true'])
  t.is(refused.status, 69)
  t.true(refused.stderr.startsWith('robust-mutex: ENOTRECOVERABLE: '), refused.stderr)
  t.true(JSON.parse((await cli(['inspect', '--json', lock])).stdout).poisoned)
  t.is((await cli(['reset', lock])).status, 0)
  t.is((await cli(['run', lock, '--', 'true'])).status, 0)

  const holder = await hold(lock)
  const busy = await cli(['destroy', lock])
  t.is(busy.status, 75)
  t.true(busy.stderr.startsWith('robust-mutex: EBUSY: '), busy.stderr)
  t.true(fs.existsSync(lock))
  await holder.release()
  t.is((await cli(['destroy', lock])).status, 0)
  t.false(fs.existsSync(lock))

  const foreign = fresh('foreign')
  fs.writeFileSync(foreign, 'x'.repeat(4096))
  const bad = await cli(['destroy', foreign])
  t.is(bad.status, 65)
  t.true(fs.existsSync(foreign), 'a file that is not ours is left in place')
})

test('usage errors exit 64 with one line and the usage, before touching anything', async (t) => {
  const lock = fresh()
  const marker = fresh('marker')
  const cases: string[][] = [
    [],
    ['frobnicate'],
    ['--frobnicate'],
    ['run'],
    ['run', lock],
    ['run', lock, '--'],
    ['run', '-x', lock, '--', 'touch', marker],
    ['run', '-n', '-w', '1', lock, '--', 'touch', marker],
    ['run', '-w', 'abc', lock, '--', 'touch', marker],
    ['run', '-w', '-1', lock, '--', 'touch', marker],
    ['run', '-w'],
    ['run', '-E', '256', lock, '--', 'touch', marker],
    ['run', '-s', lock, '--', 'touch', marker],
    ['run', '-c', 'touch x', lock],
    ['run', lock, '-n', 'touch', marker],
    ['run', '--nonblock=yes', lock, '--', 'touch', marker],
    ['inspect'],
    ['inspect', lock, 'extra'],
    ['inspect', '--jsn', lock],
    ['reset'],
    ['reset', '-w', 'soon', lock],
    ['destroy'],
    ['help', 'frobnicate'],
  ]
  for (const args of cases) {
    const r = await cli(args)
    t.is(r.status, 64, `robust-mutex ${args.join(' ')}`)
    t.regex(r.stderr, /^robust-mutex: EUSAGE: [^\n]+; usage: robust-mutex [^\n]+\n$/, `robust-mutex ${args.join(' ')}`)
    t.is(r.stdout, '')
  }
  t.false(fs.existsSync(lock), 'no lock file was created')
  t.false(fs.existsSync(marker), 'no COMMAND ran')
})

test('--help for each verb lists the exit codes; --version prints the package version', async (t) => {
  for (const args of [['--help'], ['help'], ['run', '--help'], ['inspect', '-h'], ['help', 'reset'], ['destroy', '--help']]) {
    const r = await cli(args)
    t.is(r.status, 0)
    t.regex(r.stdout, /^Usage: robust-mutex /)
    for (const code of ['64', '75', '127', '128+N']) t.regex(r.stdout, new RegExp(`^ +${code.replace('+', '\\+')} `, 'm'))
  }
  t.regex((await cli(['run', '--help'])).stdout, /ROBUST_MUTEX_OWNER_DIED=1/)
  const v = await cli(['--version'])
  t.deepEqual([v.status, v.stdout], [0, `robust-mutex ${pkg.version}\n`])
})
