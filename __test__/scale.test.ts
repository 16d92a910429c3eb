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

test('aborting every 7th of 10,000 pending lock() calls, partly drained: the rest are granted in order', async (t) => {
  const lockPath = path.join(tempDir(), 'scale-abort.lock')
  const holder = spawnChild(['hold', lockPath])
  t.regex(await within(10_000, holder.nextLine(), 'the holder locking'), /^locked/)
  const mutex = SharedMutex.open(lockPath)
  const order: number[] = []
  const aborts: AbortController[] = []
  const outcomes = Array.from({ length: WAITERS }, (_, i) => {
    const controller = i % 7 === 3 ? new AbortController() : undefined
    if (controller) aborts.push(controller)
    return mutex.lock({ signal: controller?.signal }).then(
      async (guard) => {
        order.push(i)
        // Half-way through the drain, abort the rest of the marked ones (removed from the middle
        // of a queue whose head has moved on).
        if (order.length === 4_000) for (const c of aborts.splice(aborts.length / 2)) c.abort()
        await null
        guard.release()
        return 'granted'
      },
      (err: Error) => err.name,
    )
  })
  for (const c of aborts.splice(0, aborts.length / 2)) c.abort() // the first half, before any grant
  holder.proc.stdin!.end()
  const results = await within(60_000, Promise.all(outcomes), 'the waiters settling')
  await within(10_000, holder.exited, 'the holder exiting')
  const granted = results.flatMap((r, i) => (r === 'granted' ? [i] : []))
  t.deepEqual(order, granted, 'granted in call order')
  t.true(results.every((r, i) => (i % 7 === 3 ? r === 'AbortError' || r === 'granted' : r === 'granted')))
  const abortedLate = results.filter((r, i) => i % 7 === 3 && i > order[3_999] && r === 'AbortError').length
  t.true(abortedLate > 0, 'some calls were removed from the middle of a partly drained queue')
  t.false(mutex.state().locked)
  mutex.close()
})
