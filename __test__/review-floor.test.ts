// Review of the handoff branch's bench-only floor (crates/robust-mutex-node/src/floor.rs): its
// functions ship in the addon every user loads, so they must not crash a process or modify a
// file that is not theirs. Real processes, workers and files; no timing assertions.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

import test from 'ava'

import { tempDir } from './helpers'

const NATIVE = JSON.stringify(path.join(__dirname, '..', 'native.js'))

test('floorListen in a worker that is then terminated does not crash the process on a later floorWake/floorStop', (t) => {
  const file = JSON.stringify(path.join(tempDir(), 'floor.word'))
  // The worker's threadsafe function has no finalizer: its environment's teardown frees it while
  // the native listener thread keeps the pointer and calls it on the next change of the word.
  const script = `
const { Worker } = require('node:worker_threads')
const w = new Worker('const b = require(${NATIVE}); b.floorOpen(${file}); b.floorListen(() => {}); require("node:worker_threads").parentPort.postMessage("listening")', { eval: true })
w.once('message', async () => {
  await w.terminate()
  const b = require(${NATIVE})
  b.floorOpen(${file})
  for (let i = 0; i < 50; i++) b.floorWake()
  await new Promise((r) => setImmediate(r))
  try { b.floorStop() } catch (e) { console.log('stop threw ' + e.message) }
  console.log('survived')
})
`
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
  t.is(r.signal, null, `the process died of ${r.signal}; stderr:\n${r.stderr}`)
  t.is(r.status, 0, r.stderr)
  t.true(r.stdout.includes('survived'), r.stdout + r.stderr)
})

test('floorOpen/floorWake do not truncate or modify a file that is not a floor file', (t) => {
  const file = path.join(tempDir(), 'precious.txt')
  const content = Buffer.from('precious data\n'.repeat(1000))
  fs.writeFileSync(file, content)
  const script = `const b = require(${NATIVE}); try { b.floorOpen(${JSON.stringify(file)}); b.floorWake() } catch (e) { console.log('refused: ' + e.message) }`
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
  t.is(r.status, 0, r.stderr)
  const after = fs.readFileSync(file)
  t.is(after.length, content.length, 'the file was truncated')
  t.true(after.subarray(0, 64).equals(content.subarray(0, 64)), `its first bytes changed: ${JSON.stringify(after.subarray(0, 16).toString())}`)
})

test('floorOpen/floorWake on a mutex file leave it a usable mutex file', (t) => {
  const file = path.join(tempDir(), 'mutex.lock')
  const INDEX = JSON.stringify(path.join(__dirname, '..', 'index.js'))
  const script = `
const { SharedMutex } = require(${INDEX})
const b = require(${NATIVE})
SharedMutex.open(${JSON.stringify(file)}).close()
try { b.floorOpen(${JSON.stringify(file)}); b.floorWake() } catch (e) { console.log('refused: ' + e.message) }
const m = SharedMutex.open(${JSON.stringify(file)})
m.lockSync().release()
m.close()
console.log('usable')
`
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
  t.true(r.stdout.includes('usable'), `the mutex file was corrupted:\n${r.stdout}${r.stderr}`)
})
