// Review of issue 13: every handle that ever waits starts its own watcher thread (spawned
// synchronously on the JS thread) and keeps it, idle, until the handle is closed. Many handles
// (a handle per resource) mean as many OS threads, each polling the lock every 100 ms (with a
// stat() of the path) while it watches.
import * as fs from 'node:fs'
import * as path from 'node:path'

import test from 'ava'

import { SharedMutex } from '../index'
import { sleep, tempDir } from './review-helpers'

const dir = tempDir()
const threads = () => Number(/Threads:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1])

test.serial('1000 handles whose lock() timed out do not keep 1000 idle watcher threads', async (t) => {
  const p = path.join(dir, 'threads.lock')
  const holder = SharedMutex.open(p)
  const held = holder.lockSync()
  const handles = Array.from({ length: 1000 }, () => SharedMutex.open(p))
  const before = threads()
  const started = performance.now()
  const issuing = handles.map((h) => h.lock({ timeout: 200 }).then(() => 'granted', (e: { code?: string }) => e.code))
  const issueMs = performance.now() - started
  const outcomes = await Promise.all(issuing)
  const settleMs = performance.now() - started
  t.true(outcomes.every((o) => o === 'ETIMEDOUT'))
  await sleep(500)
  const idle = threads() - before
  t.log(`issuing 1000 lock() calls blocked the JS thread ${Math.round(issueMs)} ms; all settled after ${Math.round(settleMs)} ms (timeout 200 ms); ${idle} threads left running with no wait pending`)
  held.release()
  for (const h of handles) h.close()
  holder.close()
  t.true(idle < 50, `${idle} idle watcher threads for handles with nothing pending`)
})
