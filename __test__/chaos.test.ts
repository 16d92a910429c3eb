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
import { lineChild, tempDir, within } from './helpers'

const WORKERS = 8
const PER_WORKER = 400
const KILLS = 200
const KILLING_MS = 60_000

/** A fresh record for `workers` chaos workers: counts at 0, no update in progress (-1). */
function writeRecord(recordPath: string, workers: number): void {
  const record = Buffer.alloc(4 * (4 + workers))
  record.writeInt32LE(-1, 4)
  fs.writeFileSync(recordPath, record)
}

test('8 processes survive 200 SIGKILLs of lock holders with nothing lost', async (t) => {
  const dir = tempDir()
  const lockPath = path.join(dir, 'chaos.lock')
  const recordPath = path.join(dir, 'chaos.record')
  const stopPath = path.join(dir, 'chaos.stop')
  writeRecord(recordPath, WORKERS)
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
      const args = [worker, lockPath, recordPath, String(w), String(WORKERS), String(PER_WORKER), stopPath, String(process.pid)]
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
  await within(110_000, done, 'the chaos run (a waiter hung?)') // inside ava's 2-minute timeout
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

// A worker goes on past its quota until the stop file exists; if the test process dies first
// (ava's timeout, an uncaught exception in the killer), nothing writes that file, and the
// workers, orphaned, must not go on forever: they would spin on every core and hold the
// inherited stderr open (a CI pipeline reading it never ends). Here a stand-in for the test
// process starts one worker with its quota (0) done and is killed while the test holds the lock;
// once the lock is free the worker must stop, having made no update.
test('a chaos worker past its quota stops once the process that started it is gone', async (t) => {
  const dir = tempDir()
  const lockPath = path.join(dir, 'orphan.lock')
  const recordPath = path.join(dir, 'orphan.record')
  const stopPath = path.join(dir, 'orphan.stop') // never created while the worker may run
  writeRecord(recordPath, 1)
  const worker = path.join(__dirname, 'fixtures', 'chaos-worker.cjs')
  const holder = SharedMutex.open(lockPath)
  const guard = holder.lockSync()
  // The stand-in spawns the worker as the chaos test does, its stderr inherited: the test reads
  // that pipe's end when the last of the two processes is gone.
  const parentScript = `
    const { spawn } = require('node:child_process')
    const args = ${JSON.stringify([worker, lockPath, recordPath, '0', '1', '0', stopPath])}
    const child = spawn(process.execPath, [...args, String(process.pid)], { stdio: ['ignore', 'pipe', 'inherit'] })
    child.stdout.resume()
    console.log(child.pid)
    setInterval(() => {}, 1 << 30)
  `
  const parent = lineChild(spawn(process.execPath, ['-e', parentScript], { stdio: ['ignore', 'pipe', 'pipe'] }))
  let stderr = ''
  parent.proc.stderr!.on('data', (d: Buffer) => (stderr += String(d)))
  const allGone = new Promise<void>((resolve) => parent.proc.stderr!.on('close', () => resolve()))
  const workerPid = Number(await parent.nextLine())
  let workerGone = false
  t.teardown(() => {
    fs.writeFileSync(stopPath, '')
    if (!workerGone) {
      try {
        process.kill(workerPid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  })
  parent.proc.kill('SIGKILL')
  await parent.exited
  guard.release()
  const updates = () => fs.readFileSync(recordPath).readInt32LE(4 * 4)
  // Either the worker ends, or it makes an update it should not have made.
  const updated = (async () => {
    while (!workerGone && updates() === 0) await new Promise((resolve) => setTimeout(resolve, 10))
  })()
  await within(60_000, Promise.race([allGone.then(() => (workerGone = true)), updated]), 'the orphaned worker')
  t.is(updates(), 0, 'the orphaned worker went on updating past its quota (it would never stop)')
  t.true(workerGone)
  t.is(stderr, '')
  holder.close()
})
