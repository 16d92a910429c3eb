// Review of the fencing tokens' Node transport (issue 9, local half). These failed on branch
// `fence` (review D2, D3); fixed since: the slot is addon-owned memory, and state() has toJSON().
//
// Every acquisition's token reaches JavaScript through one 8-byte ArrayBuffer per thread, which
// the addon writes through a raw pointer it took when it created the buffer. That buffer is an
// ordinary, detachable ArrayBuffer, handed out by `fenceSlot()` of the raw binding, which any
// code can reach (`require('robust-mutex/binding.js')`: the package has no "exports" map). Once
// it is transferred (structuredClone / postMessage with a transfer list), its memory belongs to
// another ArrayBuffer: the addon keeps writing every token into it (into freed memory once that
// one is collected), and every guard's `fencingToken` of the thread throws.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import test from 'ava'

import { SharedMutex } from '../index'
import { MOVE_OUT_SOURCE, tempDir } from './helpers'

const root = path.join(__dirname, '..')

test('transferring the binding\'s fencing slot neither breaks fencingToken nor leaves the addon writing into memory it no longer owns', (t) => {
  const lockPath = path.join(tempDir(), 'detached.lock')
  const script = `${MOVE_OUT_SOURCE}
    const { SharedMutex } = require(${JSON.stringify(path.join(root, 'index.js'))})
    const binding = require(${JSON.stringify(path.join(root, 'binding.js'))})
    const slot = binding.fenceSlot()
    // Detach it: its memory now belongs to 'moved', which this code owns and may let go.
    const moved = moveOut(slot)
    const mutex = SharedMutex.open(${JSON.stringify(lockPath)})
    const guard = mutex.lockSync()
    let token
    try { token = String(guard.fencingToken) } catch (e) { token = 'threw ' + e.name + ': ' + e.message }
    guard.release()
    const state = String(mutex.state().fencingToken)
    console.log(JSON.stringify({ token, state, writtenIntoMoved: String(new BigUint64Array(moved)[0]) }))
  `
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
  t.is(child.status, 0, child.stderr)
  const seen = JSON.parse(child.stdout.trim()) as { token: string; state: string; writtenIntoMoved: string }
  // Expected: the guard reports its own token (the last issued), and the transferred buffer,
  // which is no longer the addon's slot, was not written to.
  t.deepEqual(seen, { token: seen.state, state: seen.state, writtenIntoMoved: '0' })
})

// `state()` gained a bigint field, and JSON.stringify throws on a bigint: code that logs a state
// as JSON (common; this repository's own scripts/demo.cjs does it under DEMO_DEBUG, and now
// crashes there with "Do not know how to serialize a BigInt") broke with the upgrade.
test('a state() snapshot can still be logged as JSON, its fencing token as a decimal string', (t) => {
  const mutex = SharedMutex.open(path.join(tempDir(), 'json.lock'))
  const guard = mutex.lockSync()
  let json: string | undefined
  t.notThrows(() => {
    json = JSON.stringify(mutex.state())
  })
  t.is(JSON.parse(json ?? '{}').fencingToken, String(guard.fencingToken))
  guard.release()
  mutex.close()
})
