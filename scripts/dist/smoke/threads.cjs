// Smoke scenario without child processes, for emulators that cannot start another guest
// process (qemu-user without binfmt_misc): a worker thread locks and ends while holding, which
// is an owner death for the main thread (the kernel walks the dead thread's robust list).
// Prints one JSON line: {"outcome":"ok",...} or {"outcome":"error","code":...,"message":...}.
// Exits 0 either way; the caller decides which outcome is acceptable on that platform.
const { Worker } = require('node:worker_threads')
const { mkdtempSync, readFileSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')

function loadedAddon() {
  const maps = readFileSync('/proc/self/maps', 'utf8').split('\n')
  const line = maps.find((l) => /robust-mutex\.[\w-]+\.node$/.test(l))
  return line ? line.split(/\s+/).pop() : null
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'rm-smoke-threads-'))
  const path = join(dir, 'smoke.lock')
  const report = { arch: process.arch, runtime: process.versions.bun ? `bun ${process.versions.bun}` : `node ${process.version}` }
  try {
    const { SharedMutex } = require('robust-mutex')
    report.addon = loadedAddon()
    const mutex = SharedMutex.open(path)
    const first = mutex.lockSync()
    if (first.ownerDied) throw new Error('fresh mutex reported ownerDied')
    first.release()
    const worker = new Worker(
      `const { SharedMutex } = require('robust-mutex')
       const m = SharedMutex.open(${JSON.stringify(path)})
       m.lockSync()
       require('node:worker_threads').parentPort.postMessage('locked')
       setInterval(() => {}, 1 << 30)`,
      { eval: true },
    )
    await new Promise((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    })
    if (mutex.tryLock() !== null) throw new Error('tryLock succeeded while the worker held the lock')
    await worker.terminate()
    const guard = await mutex.lock({ timeout: 10_000 })
    if (!guard.ownerDied) throw new Error('lock after the worker ended while holding did not report ownerDied')
    guard.release()
    mutex.close()
    SharedMutex.destroy(path)
    console.log(JSON.stringify({ outcome: 'ok', ...report }))
  } catch (error) {
    report.addon ??= loadedAddon()
    console.log(JSON.stringify({ outcome: 'error', name: error.name, code: error.code, message: error.message, ...report }))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

main()
