// npm run demo [-- --workers 8 --per-worker 1000 --kills 25]
//
// N processes add to one shared record under a robust-mutex while this script SIGKILLs whoever
// holds the lock, mid-update. The next locker is told the owner died, repairs the half-written
// update, and carries on; killed workers are restarted and resume their share. Then the same work
// runs without the lock, to show what the mutex prevents.
'use strict'
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { SharedMutex } = require('../index.js')
const record = require('./demo-record.cjs')

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const workers = option('workers', 8)
const perWorker = option('per-worker', 1000)
const targetKills = option('kills', 25)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-demo-'))
const now = () => performance.timeOrigin + performance.now()

function runWorkers(mode, killer) {
  const lockPath = path.join(dir, `${mode}.lock`)
  const recordPath = path.join(dir, `${mode}.record`)
  record.create(recordPath, workers)
  const stats = { kills: 0, ownerDeaths: 0, recoveries: [], repairs: 0, restarts: 0 }
  const killTimes = new Map() // pid -> when it was killed
  const live = new Map() // pid -> worker index
  let finished = 0
  return new Promise((resolve) => {
    const start = (w) => {
      const child = spawn(process.execPath, [path.join(__dirname, 'demo-worker.cjs'), lockPath, recordPath, w, workers, perWorker, mode], { stdio: ['ignore', 'pipe', 'inherit'] })
      live.set(child.pid, w)
      child.stdout.setEncoding('utf8')
      child.stdout.on('data', (text) => {
        for (const line of text.split('\n')) {
          const at = /^recovered at=([\d.]+) dead=(\d+)/.exec(line)
          if (at) stats.ownerDeaths++
          if (at && killTimes.has(Number(at[2]))) stats.recoveries.push(Number(at[1]) - killTimes.get(Number(at[2])))
          if (line.startsWith('repaired')) stats.repairs++
        }
      })
      child.on('exit', (code, signal) => {
        live.delete(child.pid)
        if (signal === 'SIGKILL') {
          stats.restarts++
          start(w) // the replacement resumes this worker's share from the record
        } else if (++finished === workers) {
          clearInterval(timer)
          const state = SharedMutex.open(lockPath).state()
          stats.ownerDeathsCounted = state.ownerDeaths
          resolve({ stats, result: record.read(fs.openSync(recordPath, 'r'), workers) })
        }
      })
    }
    for (let w = 0; w < workers; w++) start(w)
    let timer
    if (killer) {
      const watcher = SharedMutex.open(lockPath)
      timer = setInterval(() => {
        if (stats.kills >= targetKills) return
        const owner = watcher.state().owner
        if (owner && live.has(owner.pid)) {
          if (process.env.DEMO_DEBUG) console.error('kill', JSON.stringify(watcher.state()))
          process.kill(owner.pid, 'SIGKILL')
          killTimes.set(owner.pid, now())
          stats.kills++
        }
      }, 40)
    }
  })
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? s[Math.floor(s.length / 2)] : NaN
}

async function main() {
  const expected = workers * perWorker
  console.log(`robust-mutex demo: ${workers} processes x ${perWorker} updates, SIGKILLing lock holders mid-update\n`)
  const locked = await runWorkers('locked', true)
  const sumDone = locked.result.done.reduce((a, b) => a + b, 0)
  console.log('with the mutex:')
  console.log(`  expected total      ${expected}`)
  console.log(`  actual total        ${locked.result.total} (sum of per-worker counts ${sumDone})`)
  console.log(`  holders killed      ${locked.stats.kills}`)
  console.log(`  owner deaths seen   ${locked.stats.ownerDeathsCounted} by the mutex, ${locked.stats.ownerDeaths} reported by survivors`)
  console.log(`  half-written updates detected and repaired: ${locked.stats.repairs}`)
  if (locked.stats.recoveries.length) {
    const ms = locked.stats.recoveries
    console.log(`  recovery latency    median ${median(ms).toFixed(2)} ms, max ${Math.max(...ms).toFixed(2)} ms (kill -> next locker told)`)
  }
  const unlocked = await runWorkers('unlocked', false)
  const lost = expected - unlocked.result.total
  console.log('\nthe same work without the mutex (no kills):')
  console.log(`  expected total      ${expected}`)
  console.log(`  actual total        ${unlocked.result.total} (${lost} updates lost to races)`)
  fs.rmSync(dir, { recursive: true, force: true })
  const ok = locked.result.total === expected && sumDone === expected && locked.stats.kills > 0
  console.log(ok ? '\nOK: every update accounted for despite the kills.' : '\nFAILED: the totals do not match.')
  process.exitCode = ok ? 0 : 1
}

main()
