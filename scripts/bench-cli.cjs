// npm run bench:cli: what the `robust-mutex` command costs a cron job, next to util-linux flock(1).
//
// Wall time of whole processes, run one after another (uncontended lock, fresh process each time):
//
//   flock LOCK true                         the baseline people use today
//   node -e 0                               Node's own startup, the floor for any Node CLI
//   robust-mutex --version                  our CLI without the native addon
//   robust-mutex run LOCK -- true           the real thing: addon, open, lock, spawn, release
//
// Wall time: medians (and p90) of several rounds, interleaved so that load changes hit every
// command alike. CPU time (user + sys, from the shell's `times` after N runs in a row) is what the
// command costs the machine, and moves much less with load than wall time on a shared machine.
// Compare ratios, not absolutes. Usage: node scripts/bench-cli.cjs [N]
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const cli = path.join(__dirname, '..', 'cli.js')
if (!fs.existsSync(cli)) {
  console.error('cli.js is missing: run `npm run build` first')
  process.exit(1)
}
const flock = ['/usr/bin/flock', '/bin/flock'].find((p) => fs.existsSync(p))
const rounds = Number(process.argv[2] ?? 30)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-bench-cli-'))
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))

const commands = [
  flock && { name: 'flock LOCK true', argv: [flock, path.join(dir, 'flock.lock'), 'true'] },
  { name: 'node -e 0', argv: [process.execPath, '-e', '0'] },
  { name: 'robust-mutex --version', argv: [process.execPath, cli, '--version'] },
  { name: 'robust-mutex run LOCK -- true', argv: [process.execPath, cli, 'run', path.join(dir, 'rm.lock'), '--', 'true'] },
].filter(Boolean)
if (!flock) console.log('flock(1) not found (util-linux): the flock baseline is skipped')

const times = new Map(commands.map((c) => [c.name, []]))
const once = ({ argv, name }) => {
  const start = process.hrtime.bigint()
  const r = spawnSync(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] })
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  if (r.status !== 0) throw new Error(`${name} exited ${r.status ?? r.signal}`)
  return ms
}
for (const c of commands) once(c) // warm the page cache, create the lock files
for (let i = 0; i < rounds; i++) for (const c of commands) times.get(c.name).push(once(c))

const sorted = (xs) => [...xs].sort((a, b) => a - b)
const median = (xs) => sorted(xs)[Math.floor(xs.length / 2)]
const p90 = (xs) => sorted(xs)[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))]
const base = flock ? median(times.get('flock LOCK true')) : undefined
const node = median(times.get('node -e 0'))
console.log(`${rounds} rounds, ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}, Node ${process.version}`)
console.log(`${'command'.padEnd(32)}${'median'.padStart(10)}${'p90'.padStart(10)}${'vs flock'.padStart(10)}${'over node'.padStart(11)}`)
for (const c of commands) {
  const xs = times.get(c.name)
  const m = median(xs)
  const vsFlock = base ? `${(m / base).toFixed(1)}x` : '-'
  const overNode = c.argv[0] === process.execPath ? `${m - node >= 0 ? '+' : ''}${(m - node).toFixed(1)} ms` : '-'
  console.log(`${c.name.padEnd(32)}${`${m.toFixed(1)} ms`.padStart(10)}${`${p90(xs).toFixed(1)} ms`.padStart(10)}${vsFlock.padStart(10)}${overNode.padStart(11)}`)
}

// CPU time per invocation: one shell runs the command N times, then `times` reports its
// children's cumulative user and system time.
const quote = (arg) => `'${String(arg).replace(/'/g, "'\\''")}'`
const cpu = new Map()
for (const c of commands) {
  const script = `i=0; while [ $i -lt ${rounds} ]; do ${c.argv.map(quote).join(' ')} >/dev/null || exit 1; i=$((i+1)); done; times`
  const r = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${c.name} failed: ${r.stderr}`)
  const lines = r.stdout.trim().split('\n')
  const seconds = (s) => {
    const m = /(\d+)m([\d.]+)s/.exec(s)
    return m ? Number(m[1]) * 60 + Number(m[2]) : NaN
  }
  const [user, sys] = lines[lines.length - 1].trim().split(/\s+/).map(seconds)
  cpu.set(c.name, ((user + sys) * 1000) / rounds)
}
const cpuBase = flock ? cpu.get('flock LOCK true') : undefined
const cpuNode = cpu.get('node -e 0')
console.log(`\n${'CPU time per run (user+sys)'.padEnd(32)}${'mean'.padStart(10)}${''.padStart(10)}${'vs flock'.padStart(10)}${'over node'.padStart(11)}`)
for (const c of commands) {
  const m = cpu.get(c.name)
  const vsFlock = cpuBase ? `${(m / cpuBase).toFixed(1)}x` : '-'
  const overNode = c.argv[0] === process.execPath ? `${m - cpuNode >= 0 ? '+' : ''}${(m - cpuNode).toFixed(1)} ms` : '-'
  console.log(`${c.name.padEnd(32)}${`${m.toFixed(1)} ms`.padStart(10)}${''.padStart(10)}${vsFlock.padStart(10)}${overNode.padStart(11)}`)
}
