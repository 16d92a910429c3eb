// `state()` is built in index.ts from numbers the raw `stateInto` callback writes into a
// Float64Array (crates/robust-mutex-node/src/state_slots.rs). These tests hold it to the
// generated `binding.state()` it replaced, field by field, in every state that sets a flag, and
// check that a bad target array is refused instead of written.
import { spawnSync } from 'node:child_process'
import * as path from 'node:path'

import test from 'ava'

import { SharedMutex, type MutexState } from '../index'
import { tempDir } from './helpers'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const binding = require('../binding.js') as {
  open(path: string): number
  close(handle: number): void
  state(handle: number): {
    locked: boolean
    holderTid?: number | null
    abandoned: boolean
    owner?: { pid: number; tid: number; sinceMs?: number | null } | null
    poisoned: boolean
    generation: number
    acquisitions: number
    contended: number
    ownerDeaths: number
    fencingToken: bigint
  }
  stateInto(handle: number, slots: unknown): void
}

const root = path.join(__dirname, '..')

/** What index.ts's old state() made of the generated binding's snapshot. */
function fromGenerated(handle: number): Omit<MutexState, 'toJSON'> {
  const s = binding.state(handle)
  return {
    locked: s.locked,
    holderTid: s.holderTid ?? null,
    abandoned: s.abandoned,
    owner: s.owner ? { pid: s.owner.pid, tid: s.owner.tid, since: s.owner.sinceMs == null ? null : new Date(s.owner.sinceMs) } : null,
    poisoned: s.poisoned,
    generation: s.generation,
    acquisitions: s.acquisitions,
    contended: s.contended,
    ownerDeaths: s.ownerDeaths,
    fencingToken: s.fencingToken,
  }
}

function agree(t: import('ava').ExecutionContext, mutex: SharedMutex, handle: number, what: string): MutexState {
  const state = mutex.state()
  t.deepEqual({ ...state }, fromGenerated(handle), what)
  t.deepEqual(Object.keys(state), Object.keys(fromGenerated(handle)), `${what}: the same fields in the same order`)
  t.is(typeof state.toJSON, 'function', `${what}: toJSON is there`)
  t.false(Object.keys(state).includes('toJSON'), `${what}: and not enumerable`)
  return state
}

test('state() reports what the generated binding reports: free, held, poisoned, abandoned', (t) => {
  const file = path.join(tempDir(), 'state.lock')
  const mutex = SharedMutex.open(file)
  const handle = binding.open(file)
  try {
    const free = agree(t, mutex, handle, 'free')
    t.false(free.locked)
    t.is(free.owner, null)

    const guard = mutex.lockSync()
    const held = agree(t, mutex, handle, 'held')
    t.true(held.locked)
    t.is(held.holderTid, held.owner?.tid ?? null)
    t.is(held.owner?.pid, process.pid)
    t.true(held.owner?.since instanceof Date)
    t.is(held.fencingToken, guard.fencingToken)
    guard.markUnrecoverable()
    guard.release()
    t.true(agree(t, mutex, handle, 'poisoned').poisoned)
    SharedMutex.reset(file)

    // A holder that exits holding the lock leaves it abandoned, with its record.
    const child = spawnSync(process.execPath, [
      '-e',
      `const { SharedMutex } = require(${JSON.stringify(path.join(root, 'index.js'))})
       SharedMutex.open(${JSON.stringify(file)}).lockSync()
       console.log(process.pid)
       process.exit(0)`,
    ], { encoding: 'utf8' })
    t.is(child.status, 0, child.stderr)
    const abandoned = agree(t, mutex, handle, 'abandoned')
    t.true(abandoned.abandoned)
    t.false(abandoned.locked)
    t.is(abandoned.owner?.pid, Number(child.stdout.trim()))

    const successor = mutex.lockSync()
    t.true(successor.ownerDied)
    successor.release()
    t.true(agree(t, mutex, handle, "after the owner death").ownerDeaths > 0)
  } finally {
    mutex.close()
    binding.close(handle)
  }
})

test('stateInto refuses a target that is not a Float64Array of 10 elements, and a closed handle', (t) => {
  const file = path.join(tempDir(), 'args.lock')
  const handle = binding.open(file)
  try {
    const detached = new Float64Array(10)
    structuredClone(detached.buffer, { transfer: [detached.buffer] })
    for (const [what, target] of [
      ['too short', new Float64Array(9)],
      ['another element type', new BigUint64Array(10)],
      ['a plain array', new Array(10).fill(0)],
      ['no array', undefined],
      ['a detached array', detached],
    ] as const) {
      const err = t.throws(() => binding.stateInto(handle, target), undefined, what) as Error & { code?: string }
      t.is(err?.code, 'EINVAL', what)
    }
    const slots = new Float64Array(10)
    binding.stateInto(handle, slots)
    t.not(new BigUint64Array(slots.buffer)[9], 0n, 'a valid target is written: the fencing token')
  } finally {
    binding.close(handle)
  }
  const closed = t.throws(() => binding.stateInto(handle, new Float64Array(10))) as Error & { code?: string }
  const generated = t.throws(() => binding.state(handle)) as Error & { code?: string }
  t.is(closed?.message, generated?.message, 'a closed handle fails as the generated state() does')
})
