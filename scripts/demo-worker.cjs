// One demo worker: adds to a shared record under the mutex until its share is done.
//
// The record (a small binary file) holds a total, one "done" count per worker, and an intent slot.
// An update is three separate writes (intent, total, done[w]) so that a worker killed in the middle
// leaves a detectable half-written update: total != sum(done). Usage:
//   node demo-worker.cjs <lockPath> <recordPath> <worker> <workers> <perWorker> <locked|unlocked>
'use strict'
const fs = require('node:fs')
const { SharedMutex } = require('../index.js')
const record = require('./demo-record.cjs')

const [lockPath, recordPath, workerArg, workersArg, perWorkerArg, mode] = process.argv.slice(2)
const worker = Number(workerArg)
const workers = Number(workersArg)
const perWorker = Number(perWorkerArg)
const fd = fs.openSync(recordPath, 'r+')

function now() {
  return performance.timeOrigin + performance.now()
}

/** The previous holder died mid-update: finish its update (roll forward) from the intent slot. */
function repair() {
  const r = record.read(fd, workers)
  const sumDone = r.done.reduce((a, b) => a + b, 0)
  if (r.intent >= 0 && r.total !== sumDone) {
    // The total was written, the writer's done count was not: complete it.
    record.writeDone(fd, r.intent, r.done[r.intent] + (r.total - sumDone))
    fs.writeSync(1, `repaired worker=${r.intent} total=${r.total}\n`)
  }
  record.writeIntent(fd, -1)
}

function update() {
  const r = record.read(fd, workers)
  if (r.done[worker] >= perWorker) return false
  record.writeIntent(fd, worker)
  record.writeTotal(fd, r.total + 1)
  const until = now() + 0.2 // 200 µs "mid-update", where a kill does damage
  while (now() < until);
  record.writeDone(fd, worker, r.done[worker] + 1)
  record.writeIntent(fd, -1)
  return true
}

if (mode === 'unlocked') {
  while (update());
  process.exit(0)
}

const mutex = SharedMutex.open(lockPath)
for (;;) {
  const guard = mutex.lockSync()
  if (guard.ownerDied) {
    // Synchronous: this process may be killed right after (the demo kills holders).
    fs.writeSync(1, `recovered at=${now()} dead=${guard.deadOwner?.pid ?? 0}\n`)
    repair()
  }
  const more = update()
  guard.release()
  if (!more) break
}
process.exit(0)
