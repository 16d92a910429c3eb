// Crash chaos from Node: 8 processes hammer one mutex while the test SIGKILLs whoever holds it,
// at least 200 times, some of them inside the recovery path. Workers check on every acquire that
// nobody else holds it and that every half-done update was announced by ownerDied. They make
// at least PER_WORKER updates each, and go on until the test has its kills (or gives up on
// them after KILLING_MS): under a full test run, or on a faster Node, the updates alone could
// be done before the 200th kill.
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import test from 'ava'

import { SharedMutex } from '../index'
import { tempDir, within } from './helpers'

const WORKERS = 8
const PER_WORKER = 400
const KILLS = 200
const KILLING_MS = 60_000

test('8 processes survive 200 SIGKILLs of lock holders with nothing lost', async (t) => {
  const dir = tempDir()
  const lockPath = path.join(dir, 'chaos.lock')
  const recordPath = path.join(dir, 'chaos.record')
  const stopPath = path.join(dir, 'chaos.stop')
  const record = Buffer.alloc(4 * (4 + WORKERS))
  record.writeInt32LE(-1, 4)
  fs.writeFileSync(recordPath, record)
  const watcher = SharedMutex.open(lockPath)
  const worker = path.join(__dirname, 'fixtures', 'chaos-worker.cjs')

  let kills = 0
  let killsInRecovery = 0
  let repairs = 0
  const violations: string[] = []
  const live = new Set<number>()
  const killed = new Set<number>()
  let finished = 0
  const done = new Promise<void>((resolve) => {
    const start = (w: number) => {
      const args = [worker, lockPath, recordPath, String(w), String(WORKERS), String(PER_WORKER), stopPath]
      const child = spawn(process.execPath, args, {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      live.add(child.pid!)
      child.stdout.on('data', (d: Buffer) => (repairs += String(d).split('repaired').length - 1))
      child.on('exit', (code, signal) => {
        live.delete(child.pid!)
        if (signal === 'SIGKILL') return start(w)
        if (code !== 0) violations.push(`worker ${w} exited with ${code}`)
        if (++finished === WORKERS) resolve()
      })
    }
    for (let w = 0; w < WORKERS; w++) start(w)
  })
  const killingUntil = Date.now() + KILLING_MS
  const killer = setInterval(() => {
    if (kills >= KILLS || Date.now() > killingUntil) {
      clearInterval(killer)
      fs.writeFileSync(stopPath, '')
      return
    }
    const state = watcher.state()
    const owner = state.owner
    // Only a live holder: the lock word names a thread, and we have not killed it already.
    if (!state.locked || !owner || !live.has(owner.pid) || killed.has(owner.pid)) return
    killed.add(owner.pid)
    const rec = fs.readFileSync(recordPath)
    if (rec.readInt32LE(12) === owner.pid) killsInRecovery++
    process.kill(owner.pid, 'SIGKILL')
    kills++
  }, 4)
  await within(180_000, done, 'the chaos run (a waiter hung?)')
  clearInterval(killer)

  const rec = fs.readFileSync(recordPath)
  let sum = 0
  for (let w = 0; w < WORKERS; w++) sum += rec.readInt32LE(4 * (4 + w))
  const state = watcher.state()
  t.log(`${kills} holders killed (${killsInRecovery} while repairing), ${state.ownerDeaths} owner deaths, ${repairs} recoveries reported, ${sum} updates`)
  t.deepEqual(violations, [])
  t.true(kills >= KILLS, `only ${kills} kills`)
  t.true(killsInRecovery > 0, 'some kills landed in the recovery path')
  t.true(sum >= WORKERS * PER_WORKER, `${sum} completed updates`)
  t.is(rec.readInt32LE(0), sum, 'the total counts every completed update, no more, no less')
  t.is(rec.readInt32LE(4), -1, 'no update left half-done')
  // A kill can land just after a release; most land on a holder.
  t.true(state.ownerDeaths >= kills / 2, `${state.ownerDeaths} owner deaths for ${kills} kills`)
  watcher.close()
})
