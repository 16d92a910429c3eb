// Review of issue 13: when a handle's watcher thread cannot be started (EAGAIN: a pids/threads
// limit, easily reached with a thread per handle), #enqueue's executor throws after queueing the
// waiter. The lock() rejects, with an untyped error (code "GenericFailure"), but its waiter stays
// queued: close() is EBUSY for good, and the next lock() on the handle grants the lock to that dead
// waiter (leaked, held by this thread with no guard) while the live caller times out.
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import test from 'ava'

test('a lock() that cannot start its watcher thread rejects cleanly and leaves nothing queued or held', (t) => {
  if (process.getuid?.() !== 0 || spawnSync('runuser', ['--help']).status !== 0) return t.pass('needs root and runuser (to run as nobody under ulimit -u)')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rm-review-spawn-'))
  fs.chmodSync(dir, 0o777)
  const fixture = path.join(__dirname, 'fixtures', 'review-spawn-fail.cjs')
  const r = spawnSync('runuser', ['-u', 'nobody', '--', 'bash', '-c', `ulimit -u 60; cd ${dir} && exec ${process.execPath} ${fixture} ${dir}/m.lock`], { encoding: 'utf8', timeout: 60_000 })
  fs.rmSync(dir, { recursive: true, force: true })
  const out = r.stdout + r.stderr
  t.log(out)
  t.regex(out, /lock\(\) rejected/, 'the thread limit was reached')
  t.notRegex(out, /code=GenericFailure/, 'the rejection is not a typed error')
  t.regex(out, /close ok/, 'close() is EBUSY: the rejected waiter is still queued')
  t.regex(out, /a later lock\(\) on that handle: granted/, 'the next lock() on the handle is not served')
  t.regex(out, /then: locked = false/, 'the lock is held by this thread with no guard')
})
