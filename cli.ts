#!/usr/bin/env node
// The `robust-mutex` command: a crash-aware flock(1). Argument parsing, the verbs, exit codes.
//
// Startup time is a tax on every cron job, so this file loads only what a verb needs: help,
// version and usage errors never load the native addon (./index), and node:child_process is
// required by `run` alone.

import type * as Api from './index'

const PROGRAM = 'robust-mutex'

// BSD sysexits (sysexits.h), plus the shell's conventions for COMMAND.
const EX_USAGE = 64
const EX_DATAERR = 65
const EX_NOINPUT = 66
const EX_UNAVAILABLE = 69
const EX_SOFTWARE = 70
const EX_OSERR = 71
const EX_TEMPFAIL = 75
const EX_NOPERM = 77
const EX_CANNOT_EXECUTE = 126
const EX_NOT_FOUND = 127

const EXIT_CODES = `Exit status:
  0-255  run: COMMAND's own exit status
  128+N  run: COMMAND was killed by signal N (the lock is left abandoned)
  64     usage error (EX_USAGE)
  65     LOCKFILE is not a usable lock file: EBADMUTEX, EABIMISMATCH, EPIDNS (EX_DATAERR)
  66     LOCKFILE or its directory does not exist: ENOENT (EX_NOINPUT)
  69     the lock is poisoned until 'robust-mutex reset' (ENOTRECOVERABLE), or robust
         locking is unsupported here (EUNSUPPORTED) (EX_UNAVAILABLE)
  70     internal error (EX_SOFTWARE)
  71     other system error (EX_OSERR)
  75     the lock was not had: run -n/-w (see -E), reset timed out (ETIMEDOUT),
         destroy while in use (EBUSY), file replaced while waiting (ESTALE) (EX_TEMPFAIL)
  77     permission denied or LOCKFILE not private enough: EACCES, EPERM, EINSECURE (EX_NOPERM)
  126    run: COMMAND could not be executed
  127    run: COMMAND not found
Errors are one line on stderr: "robust-mutex: CODE: message".`

const USAGE = {
  run: 'robust-mutex run [-w SECONDS | -n] [-E CODE] [-v] LOCKFILE [--] COMMAND [ARGS...]',
  inspect: 'robust-mutex inspect [--json] LOCKFILE',
  reset: 'robust-mutex reset [-w SECONDS] LOCKFILE',
  destroy: 'robust-mutex destroy LOCKFILE',
} as const
type Verb = keyof typeof USAGE

const HELP: Record<Verb | 'main', string> = {
  main: `Usage: robust-mutex VERB [OPTIONS] LOCKFILE ...

A crash-aware flock(1): a cross-process lock that tells the next holder when the previous one
died holding it.

Verbs:
  ${USAGE.run}
  ${USAGE.inspect}
  ${USAGE.reset}
  ${USAGE.destroy}

  robust-mutex VERB --help   help for a verb
  robust-mutex --version     print the version

${EXIT_CODES}`,

  run: `Usage: ${USAGE.run}

Run COMMAND holding the lock LOCKFILE (created with mode 0600 if missing) and exit with
COMMAND's status. COMMAND is executed without a shell (quoting is yours: use sh -c '...' for
shell syntax); stdin, stdout and stderr pass through untouched.

Options (before LOCKFILE):
  -n, --nonblock, --nb            fail at once if the lock is held
  -w, --wait, --timeout SECONDS   wait at most SECONDS (fractions allowed) for the lock
  -E, --conflict-exit-code CODE   exit with CODE (0-255, default 75) when -n or -w did not
                                  get the lock
  -v, --verbose                   say on stderr when the lock was not had or its previous
                                  holder had died
  -h, --help                      show this help

When the previous holder died holding the lock, COMMAND runs with, in its environment:
  ROBUST_MUTEX_OWNER_DIED=1       what the lock protects may be half-updated: check it
  ROBUST_MUTEX_DEAD_PID=PID       the process that died
Otherwise both are removed from COMMAND's environment. COMMAND always gets
  ROBUST_MUTEX_FENCING_TOKEN=N    this hold's fencing token, greater than every earlier one
                                  of LOCKFILE: pass it to what the lock protects, which
                                  should refuse writes with a lower token than it has seen

SIGINT, SIGTERM and SIGHUP are forwarded to COMMAND. When COMMAND exits (with any status) the
lock is released. When COMMAND is killed by a signal, the lock is left abandoned, so the next
run is told (ROBUST_MUTEX_OWNER_DIED=1). The same happens if the runner itself is killed.

${EXIT_CODES}`,

  inspect: `Usage: ${USAGE.inspect}

Show the state of the lock LOCKFILE: holder pid/tid and since when, abandoned (its holder
died holding it), poisoned, generation, the last fencing token issued, and counters. Never
takes the lock and never creates the file; works while another process holds it.

Options:
  --json       print one JSON object instead of a table
  -h, --help   show this help

${EXIT_CODES}`,

  reset: `Usage: ${USAGE.reset}

Clear the poisoned state of LOCKFILE (after repairing what it protects) and bump its
generation. Waits for the lock to be free, at most SECONDS (default 5).

Options:
  -w, --wait, --timeout SECONDS   wait at most SECONDS for the lock (default 5)
  -h, --help                      show this help

${EXIT_CODES}`,

  destroy: `Usage: ${USAGE.destroy}

Retire and remove LOCKFILE. Refused (EBUSY, exit 75) while any process has it open, and for a
file that is not a lock file (left in place).

Options:
  -h, --help   show this help

${EXIT_CODES}`,
}

// ---------------------------------------------------------------------------------------------
// Errors and exit

/** A command-line mistake: exit 64 with the verb's usage. */
class UsageError extends Error {
  constructor(message: string, readonly verb: Verb | undefined) {
    super(message)
  }
}

/** A failure with its exit status, already worded. */
class Exit extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

function errorLine(code: string, message: string): void {
  process.stderr.write(`${PROGRAM}: ${code}: ${message.replace(/\s*\n\s*/g, ' ')}\n`)
}

/** The exit status for an error code of the library (or an errno name). */
function statusOf(code: string): number {
  switch (code) {
    case 'EBADMUTEX':
    case 'EABIMISMATCH':
    case 'EPIDNS':
      return EX_DATAERR
    case 'ENOENT':
    case 'ENOTDIR':
      return EX_NOINPUT
    case 'ENOTRECOVERABLE':
    case 'EUNSUPPORTED':
      return EX_UNAVAILABLE
    case 'ETIMEDOUT':
    case 'EBUSY':
    case 'ESTALE':
      return EX_TEMPFAIL
    case 'EACCES':
    case 'EPERM':
    case 'EINSECURE':
      return EX_NOPERM
    default:
      return EX_OSERR
  }
}

/** Turn a thrown library error into an exit. */
function failure(err: unknown): Exit {
  if (err instanceof Exit) return err
  const code = (err as { code?: unknown } | null)?.code
  if (err instanceof Error && typeof code === 'string' && /^E[A-Z0-9_]+$/.test(code)) {
    return new Exit(statusOf(code), code, err.message)
  }
  return new Exit(EX_SOFTWARE, 'EINTERNAL', err instanceof Error ? err.message : String(err))
}

// ---------------------------------------------------------------------------------------------
// Argument parsing: getopt-like short options (clustered, "-w0.2" or "-w 0.2"), GNU long
// options ("--wait=0.2" or "--wait 0.2"), "--" ends the options.

interface OptionSpec {
  key: string
  short?: string
  long: string[]
  takesValue: boolean
}

interface Parsed {
  options: Map<string, string | true>
  /** Arguments left: every positional (permuting verbs) or everything from LOCKFILE on (run). */
  rest: string[]
}

const HELP_OPTION: OptionSpec = { key: 'help', short: 'h', long: ['help'], takesValue: false }

/**
 * Options up to the first positional argument when `stopAtPositional` (as flock's "+" getopt:
 * what follows LOCKFILE belongs to COMMAND), else options anywhere among the positionals.
 */
function parseOptions(args: string[], specs: OptionSpec[], verb: Verb, stopAtPositional: boolean): Parsed {
  const options = new Map<string, string | true>()
  const rest: string[] = []
  const set = (spec: OptionSpec, value: string | true, spelled: string) => {
    if (options.has(spec.key) && spec.key !== 'help') throw new UsageError(`option ${spelled} given twice`, verb)
    options.set(spec.key, value)
  }
  let i = 0
  for (; i < args.length; i++) {
    const arg = args[i]
    if (arg === '--') {
      i++
      break
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=')
      const name = arg.slice(2, eq < 0 ? undefined : eq)
      const spec = specs.find((s) => s.long.includes(name))
      if (!spec) throw new UsageError(`unknown option --${name}`, verb)
      if (!spec.takesValue) {
        if (eq >= 0) throw new UsageError(`option --${name} takes no value`, verb)
        set(spec, true, `--${name}`)
      } else if (eq >= 0) {
        set(spec, arg.slice(eq + 1), `--${name}`)
      } else {
        if (i + 1 >= args.length) throw new UsageError(`option --${name} needs a value`, verb)
        set(spec, args[++i], `--${name}`)
      }
      continue
    }
    if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j]
        const spec = specs.find((s) => s.short === letter)
        if (!spec) throw new UsageError(unknownShort(letter), verb)
        if (!spec.takesValue) {
          set(spec, true, `-${letter}`)
          continue
        }
        if (j + 1 < arg.length) set(spec, arg.slice(j + 1), `-${letter}`)
        else if (i + 1 < args.length) set(spec, args[++i], `-${letter}`)
        else throw new UsageError(`option -${letter} needs a value`, verb)
        break
      }
      continue
    }
    if (stopAtPositional) break
    rest.push(arg)
  }
  rest.push(...args.slice(i))
  return { options, rest }
}

function unknownShort(letter: string): string {
  switch (letter) {
    case 's':
      return 'unknown option -s: there is no shared mode (the lock is exclusive)'
    case 'c':
      return "unknown option -c: COMMAND runs without a shell; use: -- sh -c 'COMMAND'"
    default:
      return `unknown option -${letter}`
  }
}

/** SECONDS as flock(1) takes them: a non-negative decimal number, fractions allowed. */
function seconds(value: string, option: string, verb: Verb): number {
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value)) {
    throw new UsageError(`${option} needs a number of seconds (fractions allowed), got '${value}'`, verb)
  }
  return Number(value) * 1000
}

function exitCode(value: string, verb: Verb): number {
  if (!/^\d{1,3}$/.test(value) || Number(value) > 255) {
    throw new UsageError(`-E needs an exit code in 0..255, got '${value}'`, verb)
  }
  return Number(value)
}

/** Exactly one LOCKFILE among the positionals. */
function oneLockfile(rest: string[], verb: Verb): string {
  if (rest.length === 0) throw new UsageError('missing LOCKFILE', verb)
  if (rest.length > 1) throw new UsageError(`unexpected argument '${rest[1]}'`, verb)
  if (rest[0] === '') throw new UsageError('LOCKFILE must not be empty', verb)
  return rest[0]
}

function loadApi(): typeof Api {
  return require('./index') as typeof Api
}

// ---------------------------------------------------------------------------------------------
// run

const RUN_OPTIONS: OptionSpec[] = [
  HELP_OPTION,
  { key: 'nonblock', short: 'n', long: ['nonblock', 'nb'], takesValue: false },
  { key: 'wait', short: 'w', long: ['wait', 'timeout'], takesValue: true },
  { key: 'conflict', short: 'E', long: ['conflict-exit-code'], takesValue: true },
  { key: 'verbose', short: 'v', long: ['verbose'], takesValue: false },
]

const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

async function run(args: string[]): Promise<number> {
  const { options, rest } = parseOptions(args, RUN_OPTIONS, 'run', true)
  if (options.has('help')) return help('run')
  const nonblock = options.has('nonblock')
  const wait = options.get('wait')
  if (nonblock && wait !== undefined) throw new UsageError('-n and -w exclude each other', 'run')
  const timeout = typeof wait === 'string' ? seconds(wait, '-w', 'run') : undefined
  const conflict = options.get('conflict')
  const conflictStatus = typeof conflict === 'string' ? exitCode(conflict, 'run') : EX_TEMPFAIL
  const verbose = options.has('verbose')

  const lockfile = rest[0]
  if (lockfile === undefined) throw new UsageError('missing LOCKFILE', 'run')
  if (lockfile === '') throw new UsageError('LOCKFILE must not be empty', 'run')
  let command = rest.slice(1)
  if (command[0] === '--') command = command.slice(1)
  else if (command[0]?.startsWith('-')) {
    throw new UsageError(`options go before LOCKFILE (got '${command[0]}'); a COMMAND starting with '-' follows '--'`, 'run')
  }
  if (command.length === 0) throw new UsageError('missing COMMAND', 'run')

  const { SharedMutex } = loadApi()
  let mutex: Api.SharedMutex
  let guard: Api.LockGuard | null
  try {
    mutex = SharedMutex.open(lockfile)
    if (nonblock) {
      guard = mutex.tryLock()
    } else {
      // Waits natively (no polling); the event loop stays free for signals.
      guard = await mutex.lock(timeout === undefined ? undefined : { timeout }).catch((err: unknown) => {
        if ((err as { code?: unknown }).code === 'ETIMEDOUT') return null
        throw err
      })
    }
  } catch (err) {
    throw failure(err)
  }
  if (guard === null) {
    if (verbose) {
      const why = nonblock ? 'EWOULDBLOCK: the lock is held' : `ETIMEDOUT: the lock stayed held for ${wait} s`
      process.stderr.write(`${PROGRAM}: ${why}: ${lockfile}\n`)
    }
    return conflictStatus
  }
  return runHolding(mutex, guard, command, lockfile, verbose)
}

/** Resolves with the runner's exit status; exits without releasing when COMMAND was killed. */
function runHolding(
  mutex: Api.SharedMutex,
  guard: Api.LockGuard,
  command: string[],
  lockfile: string,
  verbose: boolean,
): Promise<number> {
  const { spawn } = require('node:child_process') as typeof import('node:child_process')
  const env = { ...process.env }
  // An outer run's verdict must not leak into this one.
  delete env.ROBUST_MUTEX_OWNER_DIED
  delete env.ROBUST_MUTEX_DEAD_PID
  env.ROBUST_MUTEX_FENCING_TOKEN = String(guard.fencingToken)
  const ownerDied = guard.ownerDied
  if (ownerDied) {
    env.ROBUST_MUTEX_OWNER_DIED = '1'
    const dead = guard.deadOwner
    if (dead) env.ROBUST_MUTEX_DEAD_PID = String(dead.pid)
    if (verbose) {
      const who = dead ? ` (pid ${dead.pid})` : ''
      process.stderr.write(`${PROGRAM}: EOWNERDEAD: the previous holder${who} died holding ${lockfile}\n`)
    }
  }

  const release = () => {
    guard.release()
    mutex.close()
  }

  return new Promise((resolve) => {
    // Listen before spawning: COMMAND may be up (and its caller signalling us) before the next
    // statement runs. A signal is handled on a later tick, once `child` is set.
    let child: import('node:child_process').ChildProcess | undefined
    const forward = (signal: NodeJS.Signals) => {
      child?.kill(signal)
    }
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward)
    child = spawn(command[0], command.slice(1), { stdio: 'inherit', env })
    const spawned = child

    spawned.on('error', (err: NodeJS.ErrnoException) => {
      if (spawned.pid !== undefined) return // a failed kill(); 'exit' still comes
      // COMMAND never ran. After an owner death, leave the lock abandoned (exit holding it) so
      // that the recovery is still owed to the next run; otherwise give it back.
      if (!ownerDied) release()
      const notFound = err.code === 'ENOENT'
      const code = err.code ?? 'EINTERNAL'
      const what = notFound ? 'command not found' : err.code === 'EACCES' ? 'permission denied' : err.message
      errorLine(code, `${command[0]}: ${what}`)
      process.exit(notFound ? EX_NOT_FOUND : code === 'EACCES' || code === 'ENOEXEC' ? EX_CANNOT_EXECUTE : EX_OSERR)
    })

    spawned.on('exit', (status, signal) => {
      for (const s of FORWARDED_SIGNALS) process.off(s, forward)
      if (signal !== null) {
        // COMMAND was killed in the middle of its work: exit holding the lock. The kernel marks it
        // owner-died when this thread ends, so the next run is told. Never release here.
        const { signals } = require('node:os').constants as typeof import('node:os').constants
        process.exit(128 + (signals[signal] ?? 0))
      }
      release()
      resolve(status ?? EX_SOFTWARE)
    })
  })
}

// ---------------------------------------------------------------------------------------------
// inspect, reset, destroy

const INSPECT_OPTIONS: OptionSpec[] = [HELP_OPTION, { key: 'json', long: ['json'], takesValue: false }]
const RESET_OPTIONS: OptionSpec[] = [HELP_OPTION, { key: 'wait', short: 'w', long: ['wait', 'timeout'], takesValue: true }]
const DESTROY_OPTIONS: OptionSpec[] = [HELP_OPTION]

function inspect(args: string[]): number {
  const { options, rest } = parseOptions(args, INSPECT_OPTIONS, 'inspect', false)
  if (options.has('help')) return help('inspect')
  const lockfile = oneLockfile(rest, 'inspect')
  const { SharedMutex } = loadApi()
  let state: Api.MutexState
  try {
    // create: false: inspecting never creates a file; state() never takes the lock.
    const mutex = SharedMutex.open(lockfile, { create: false })
    try {
      state = mutex.state()
    } finally {
      mutex.close()
    }
  } catch (err) {
    throw failure(err)
  }
  const owner = state.owner && {
    pid: state.owner.pid,
    tid: state.owner.tid,
    since: state.owner.since?.toISOString() ?? null,
  }
  if (options.has('json')) {
    // A bigint has no JSON form: the token goes as a decimal string (it can exceed 2^53).
    const json = { path: lockfile, ...state, owner, fencingToken: String(state.fencingToken) }
    process.stdout.write(`${JSON.stringify(json)}\n`)
    return 0
  }
  const yesNo = (b: boolean) => (b ? 'yes' : 'no')
  const rows: Array<[string, string]> = [['lock file', lockfile]]
  rows.push(['locked', yesNo(state.locked)])
  const whose = state.abandoned ? 'dead holder' : 'holder'
  if (owner) {
    rows.push([`${whose} pid`, String(owner.pid)], [`${whose} tid`, String(owner.tid)])
    rows.push(['held since', owner.since ?? 'unknown'])
  } else if (state.holderTid !== null) {
    rows.push([`${whose} tid`, `${state.holderTid} (pid not recorded)`])
  }
  rows.push(
    ['abandoned', state.abandoned ? 'yes: its holder died holding it; the next locker is told' : 'no'],
    ['poisoned', state.poisoned ? "yes: acquires fail until 'robust-mutex reset'" : 'no'],
    ['generation', String(state.generation)],
  )
  rows.push(['fencing token', String(state.fencingToken)])
  rows.push(
    ['acquisitions', String(state.acquisitions)],
    ['contended', String(state.contended)],
    ['owner deaths', String(state.ownerDeaths)],
  )
  const width = Math.max(...rows.map(([label]) => label.length)) + 2
  process.stdout.write(rows.map(([label, value]) => `${label.padEnd(width)}${value}\n`).join(''))
  return 0
}

function reset(args: string[]): number {
  const { options, rest } = parseOptions(args, RESET_OPTIONS, 'reset', false)
  if (options.has('help')) return help('reset')
  const wait = options.get('wait')
  const timeout = typeof wait === 'string' ? seconds(wait, '-w', 'reset') : undefined
  const lockfile = oneLockfile(rest, 'reset')
  const { SharedMutex } = loadApi()
  try {
    SharedMutex.reset(lockfile, timeout === undefined ? undefined : { timeout })
  } catch (err) {
    throw failure(err)
  }
  return 0
}

function destroy(args: string[]): number {
  const { options, rest } = parseOptions(args, DESTROY_OPTIONS, 'destroy', false)
  if (options.has('help')) return help('destroy')
  const lockfile = oneLockfile(rest, 'destroy')
  const { SharedMutex } = loadApi()
  try {
    SharedMutex.destroy(lockfile)
  } catch (err) {
    throw failure(err)
  }
  return 0
}

// ---------------------------------------------------------------------------------------------
// main

function help(verb: Verb | 'main'): number {
  process.stdout.write(`${HELP[verb]}\n`)
  return 0
}

function version(): number {
  const { version } = require('./package.json') as { version: string }
  process.stdout.write(`${PROGRAM} ${version}\n`)
  return 0
}

const VERBS: Record<Verb, (args: string[]) => number | Promise<number>> = { run, inspect, reset, destroy }

function dispatch(argv: string[]): number | Promise<number> {
  const [first, ...args] = argv
  switch (first) {
    case undefined:
      throw new UsageError('missing VERB (run, inspect, reset, destroy)', undefined)
    case '-h':
    case '--help':
      return help('main')
    case 'help':
      if (args[0] === undefined) return help('main')
      if (!Object.hasOwn(VERBS, args[0])) throw new UsageError(`unknown verb '${args[0]}'`, undefined)
      return help(args[0] as Verb)
    case '-V':
    case '--version':
      return version()
  }
  if (!Object.hasOwn(VERBS, first)) {
    throw new UsageError(first.startsWith('-') ? `unknown option ${first}` : `unknown verb '${first}'`, undefined)
  }
  return VERBS[first as Verb](args)
}

async function main(): Promise<void> {
  let status: number
  try {
    status = await dispatch(process.argv.slice(2))
  } catch (err) {
    if (err instanceof UsageError) {
      const usage = err.verb ? USAGE[err.verb] : `${PROGRAM} run|inspect|reset|destroy ... (see ${PROGRAM} --help)`
      errorLine('EUSAGE', `${err.message}; usage: ${usage}`)
      status = EX_USAGE
    } else {
      const exit = failure(err)
      errorLine(exit.code, exit.message)
      status = exit.status
    }
  }
  process.exitCode = status
}

void main()
