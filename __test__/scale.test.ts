// Scale: 10,000 pending lock() calls on one handle, waiting on a holder in another process, are
// all granted, one at a time, in the order they were made (the bench measures their cost).
import * as path from 'node:path'

import test from 'ava'

import { SharedMutex } from '../index'
import { spawnChild, tempDir, within } from './helpers'

const WAITERS = 10_000

test('10,000 pending lock() calls on one handle are granted in FIFO order, one holder at a time', async (t) => {
  const lockPath = path.join(tempDir(), 'scale.lock')
  const holder = spawnChild(['hold', lockPath])
  t.regex(await within(10_000, holder.nextLine(), 'the holder locking'), /^locked/)
  const mutex = SharedMutex.open(lockPath)
  const order: number[] = []
  let holding = 0
  let overlapped = false
  const all = Array.from({ length: WAITERS }, (_, i) =>
    mutex.lock().then(async (guard) => {
      if (++holding !== 1) overlapped = true
      order.push(i)
      await null // hold across a turn: a second grant meanwhile would be seen
      holding--
      guard.release()
    }),
  )
  t.is(order.length, 0, 'nothing is granted while the other process holds the lock')
  holder.proc.stdin!.end() // the holder releases and exits
  await within(60_000, Promise.all(all), 'the 10,000 waiters draining')
  await within(10_000, holder.exited, 'the holder exiting')
  t.false(overlapped, 'two waiters held the lock at once')
  t.is(order.length, WAITERS)
  const outOfOrder = order.findIndex((n, i) => n !== i)
  t.is(outOfOrder, -1, `waiter ${order[outOfOrder]} was granted in place ${outOfOrder}`)
  t.false(mutex.state().locked)
  mutex.close()
})
