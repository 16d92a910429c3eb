// Review of issue 13: defect 11 was that worker.terminate() could not interrupt lockSync(); the
// fix checks the environment between slices there, but reset() / resetPoison() block the worker's
// thread in the same sliced wait (up to `timeout`, default 5 s; Infinity waits "a century")
// without that check: terminate() does not end the worker until the lock is free.
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex } from '../index'
import { sleep, tempDir } from './review-helpers'

const dir = tempDir()

for (const how of ['SharedMutex.reset(p, { timeout: 60_000 })', 'SharedMutex.open(p).resetPoison({ timeout: 60_000 })']) {
  test.serial(`worker.terminate() interrupts ${how} within a second`, async (t) => {
    const p = path.join(dir, `${how.length}.lock`)
    const m = SharedMutex.open(p)
    const held = m.lockSync() // reset waits for the lock
    const w = new Worker(`
      const { SharedMutex } = require(${JSON.stringify(path.join(__dirname, '..', 'index.js'))})
      const { parentPort } = require('node:worker_threads')
      const p = ${JSON.stringify(p)}
      parentPort.postMessage('resetting')
      try { ${how} } catch (e) { parentPort.postMessage(String(e.code)) }`, { eval: true })
    w.on('error', () => {})
    await new Promise((resolve) => w.once('message', resolve))
    await sleep(200)
    const exited = new Promise((resolve) => w.once('exit', resolve))
    const started = performance.now()
    const stopped = await Promise.race([w.terminate().then(() => true), sleep(3000).then(() => false)])
    const waited = Math.round(performance.now() - started)
    held.release() // lets the reset finish, and the worker end
    await exited
    m.close()
    t.true(stopped, `terminate() had not finished after ${waited} ms`)
  })
}
