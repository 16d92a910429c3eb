// Fencing tokens of the local lock (issue 9): every acquisition's `fencingToken` (a bigint) is
// greater than every one issued before it for the same file, across processes, worker threads,
// a SIGKILLed holder, every acquire path, and resets. The processes and threads write to a
// "downstream store" that refuses a token not greater than the highest it has accepted.
import { execFileSync, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Worker } from 'node:worker_threads'

import test from 'ava'

import { SharedMutex } from '../index'
import { tempDir, within } from './helpers'

const ACTOR = path.join(__dirname, 'fixtures', 'fence-actor.cjs')

test('fencingToken is a readonly bigint that grows on every acquire path; state() reports the last', async (t) => {
  const mutex = SharedMutex.open(path.join(tempDir(), 'paths.lock'))
  const tokens: bigint[] = []
  const take = (guard: { fencingToken: bigint; release(): void }) => {
    t.is(typeof guard.fencingToken, 'bigint')
    t.is(mutex.state().fencingToken, guard.fencingToken, 'state() reports the holder\'s token')
    tokens.push(guard.fencingToken)
    guard.release()
  }
  take(mutex.tryLock()!)
  take(mutex.lockSync())
  take(await mutex.lock())
  await mutex.withLock((guard) => {
    tokens.push(guard.fencingToken)
  })
  // A queued lock() (taken by the serve path after the holder's release, then awaited).
  const held = mutex.lockSync()
  const queued = mutex.lock()
  tokens.push(held.fencingToken)
  held.release()
  take(await queued)
  // Another handle of this thread, and a contended lock() served through the native watch.
  const other = SharedMutex.open(mutex.path!)
  const holding = other.lockSync()
  const watched = mutex.lock()
  tokens.push(holding.fencingToken)
  setTimeout(() => holding.release(), 50)
  take(await watched)
  other.close()

  for (let i = 1; i < tokens.length; i++) t.true(tokens[i]! > tokens[i - 1]!, `${tokens[i]} after ${tokens[i - 1]}`)
  t.is(tokens[tokens.length - 1]! - tokens[0]!, BigInt(tokens.length - 1), 'one token per acquisition')
  const guard = mutex.lockSync()
  const token = guard.fencingToken
  t.false(Reflect.set(guard, 'fencingToken', 0n), 'readonly: a getter without a setter')
  t.is(guard.fencingToken, token)
  guard.release()
  t.is(guard.fencingToken, token, 'still readable after release')
  t.is(mutex.state().fencingToken, token)
  mutex.close()
})

test('a new file\'s tokens start at the wall clock in nanoseconds, above a destroyed predecessor\'s', (t) => {
  const lockPath = path.join(tempDir(), 'recreated.lock')
  const before = BigInt(Date.now() - 1) * 1_000_000n
  const mutex = SharedMutex.open(lockPath)
  const first = mutex.lockSync()
  first.release()
  t.true(first.fencingToken > before && first.fencingToken <= BigInt(Date.now() + 1) * 1_000_000n, `${first.fencingToken}`)
  let last = first.fencingToken
  for (let i = 0; i < 20_000; i++) {
    const guard = mutex.tryLock()!
    last = guard.fencingToken
    guard.release()
  }
  mutex.close()
  SharedMutex.destroy(lockPath)
  const again = SharedMutex.open(lockPath)
  const guard = again.lockSync()
  t.true(guard.fencingToken > last, `${guard.fencingToken} after the old file's ${last}`)
  guard.release()
  again.close()
})

test('tokens strictly increase across 6 processes, as a downstream store sees them', async (t) => {
  const dir = tempDir()
  const lockPath = path.join(dir, 'procs.lock')
  const storePath = path.join(dir, 'store')
  fs.writeFileSync(storePath, '0 0')
  const mutex = SharedMutex.open(lockPath)
  const before = mutex.state().fencingToken
  const PROCESSES = 6
  const ROUNDS = 120
  const exits = Array.from({ length: PROCESSES }, () => {
    const child = spawn(process.execPath, [ACTOR, 'contend', lockPath, storePath, String(ROUNDS)], { stdio: 'inherit' })
    return new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  })
  const codes = await within(120_000, Promise.all(exits), 'the contending processes')
  t.deepEqual(codes, Array(PROCESSES).fill(0), 'exit 3: a stale token was refused; 4: two holders; 5: not a bigint')
  const [highest, count] = fs.readFileSync(storePath, 'utf8').split(' ')
  t.is(Number(count), PROCESSES * ROUNDS)
  t.is(BigInt(highest!), mutex.state().fencingToken, 'the store saw the last token issued')
  t.is(BigInt(highest!) - before, BigInt(PROCESSES * ROUNDS), 'one token per acquisition')
  mutex.close()
})

test('tokens strictly increase across worker threads', async (t) => {
  const lockPath = path.join(tempDir(), 'threads.lock')
  const mutex = SharedMutex.open(lockPath)
  const store = new SharedArrayBuffer(16)
  new BigUint64Array(store)[0] = mutex.state().fencingToken
  const WORKERS = 4
  const ROUNDS = 150
  const results = Array.from({ length: WORKERS }, () => {
    const worker = new Worker(ACTOR, { workerData: { lockPath, rounds: ROUNDS, store } })
    return new Promise<string>((resolve, reject) => {
      worker.once('message', (m: string) => resolve(m))
      worker.once('error', reject)
    }).finally(() => worker.terminate())
  })
  t.deepEqual(await within(120_000, Promise.all(results), 'the worker threads'), Array(WORKERS).fill('done'))
  const words = new BigUint64Array(store)
  t.is(words[1], BigInt(WORKERS * ROUNDS))
  t.is(words[0], mutex.state().fencingToken)
  mutex.close()
})

test('the successor of a SIGKILLed holder, and of a reset, gets a greater token', async (t) => {
  const lockPath = path.join(tempDir(), 'killed.lock')
  const mutex = SharedMutex.open(lockPath)
  const child = spawn(process.execPath, [ACTOR, 'hold', lockPath], { stdio: ['ignore', 'pipe', 'inherit'] })
  const line = await within(30_000, new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(String(d)))), 'the holder')
  const dead = BigInt(/token=(\d+)/.exec(line)![1]!)
  t.is(mutex.state().fencingToken, dead)
  child.kill('SIGKILL')
  await new Promise((resolve) => child.on('exit', resolve))
  const guard = await within(30_000, mutex.lock(), 'the lock after the kill')
  t.true(guard.ownerDied)
  t.true(guard.fencingToken > dead, `${guard.fencingToken} after the dead holder's ${dead}`)
  guard.markUnrecoverable()
  guard.release()
  SharedMutex.reset(lockPath)
  const afterReset = mutex.lockSync()
  t.true(afterReset.fencingToken > guard.fencingToken, 'a reset never lowers the tokens')
  afterReset.release()
  mutex.close()
})

test('the README\'s fencing example runs as printed and refuses the stale write', (t) => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const block = /<!-- fencing-example[^\n]*-->\n```js\n([\s\S]*?)\n```/.exec(readme)
  t.truthy(block, 'the README has the marked example')
  const dir = tempDir()
  const script = path.join(dir, 'example.cjs')
  const index = JSON.stringify(path.join(__dirname, '..', 'index.js'))
  fs.writeFileSync(script, block![1]!.replace("require('robust-mutex')", `require(${index})`))
  // os.tmpdir() follows TMPDIR: the example's lock file lands in this test's directory.
  const out = execFileSync(process.execPath, [script], { env: { ...process.env, TMPDIR: dir }, encoding: 'utf8' })
  t.regex(out, /^refused: stale fencing token \d+\nfrom the second hold\n$/)
  t.true(fs.existsSync(path.join(dir, 'fencing-example.lock')))
})
