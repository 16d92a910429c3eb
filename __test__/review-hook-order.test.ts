// Review of the handoff branch: a queued lock() whose async onOwnerDied hook rejects must settle
// before the lock() calls queued after it (pending calls settle in the order they were made).
// On main they did; on the branch the failed hook's release serves (and rejects) the next call
// while the first call's promise is still adopting the hook's rejected promise. Real processes.
import { spawn } from 'node:child_process'
import * as path from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { SharedMutex } from '../index'
import { tempDir, within } from './helpers'

const INDEX = JSON.stringify(path.join(__dirname, '..', 'index.js'))

/** Two lock() calls queue behind a holder in another process that is SIGKILLed; `hook` fails. */
async function settleOrder(t: ExecutionContext, name: string, hook: () => unknown): Promise<void> {
  const file = path.join(tempDir(), name)
  const mutex = SharedMutex.open(file, { onOwnerDied: hook })
  // A holder in another process that is killed while holding.
  const holder = spawn(process.execPath, ['-e', `const { SharedMutex } = require(${INDEX}); SharedMutex.open(process.argv[1]).lockSync(); console.log('held'); setInterval(() => {}, 1000)`, file], { stdio: ['ignore', 'pipe', 'inherit'] })
  await within(20_000, new Promise((resolve) => holder.stdout.once('data', resolve)), 'holder')
  const settled: string[] = []
  const first = mutex.lock().then(() => settled.push('first granted'), (e: unknown) => settled.push(`first ${(e as Error).name}`))
  const second = mutex.lock().then(() => settled.push('second granted'), (e: unknown) => settled.push(`second ${(e as Error).name}`))
  holder.kill('SIGKILL')
  await within(20_000, Promise.all([first, second]), 'both lock() calls')
  t.deepEqual(settled, ['first NotRecoverableError', 'second NotRecoverableError'])
  t.true(mutex.state().poisoned)
  mutex.resetPoison()
  mutex.close()
}

test('when an async onOwnerDied hook rejects, the first queued lock() settles before the second', (t) =>
  settleOrder(t, 'order.lock', async () => { throw new Error('repair failed') }))

test('when a synchronous onOwnerDied hook throws, the first queued lock() settles before the second (fails on main too)', (t) =>
  settleOrder(t, 'order-sync.lock', () => { throw new Error('repair failed') }))
