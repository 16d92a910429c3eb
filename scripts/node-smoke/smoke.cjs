// A smoke test of the Node addon on a backend other than Linux's robust pthread mutex, through the
// package's own entry point (index.js -> native.js -> binding.js -> the .node file): lock and
// release; a second process (spawned by the same node) holds the lock: tryLock refuses, a lock
// with a timeout rejects with TimeoutError; the holder is terminated while this process waits in
// lock() -> that wait resolves with ownerDied; a holder that exits without releasing -> the next
// tryLock() gets ownerDied too; the mutex is healthy afterwards; the fencing tokens of these
// acquisitions (bigints) increase across the holders' deaths. Run by scripts/wine/node-smoke.sh
// (the Windows addon in the official node.exe under Wine) and scripts/flock-node-smoke.sh (the
// file-lock backend with flock, macOS's code path, on Linux).
// Usage: node smoke.cjs PACKAGE_DIR
const { spawn } = require('node:child_process')
const { mkdtempSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')

const pkgDir = process.argv[2]
const { SharedMutex, TimeoutError } = require(pkgDir)

function check(condition, what) {
  if (!condition) throw new Error(`node smoke: ${what}`)
}

/** Starts holder.cjs on `path`; resolves with the child once it holds the lock. */
function startHolder(path, mode) {
  const args = [join(__dirname, 'holder.cjs'), pkgDir, path, ...(mode ? [mode] : [])]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      if (out.includes('locked\n')) resolve({ child, exited })
    })
    child.on('error', reject)
    if (mode !== 'exit') exited.then(({ code, signal }) => reject(new Error(`holder exited early (${code ?? signal})`)))
  })
}

async function main() {
  const addons = () => Object.keys(require.cache).filter((k) => k.endsWith('.node'))
  check(addons().length === 1, `expected one addon loaded, got ${JSON.stringify(addons())}`)
  const dir = mkdtempSync(join(tmpdir(), 'rm-node-smoke-'))
  const path = join(dir, 'smoke.lock')
  let mutex
  try {
    mutex = SharedMutex.open(path)
    const first = mutex.lockSync()
    check(first.ownerDied === false, 'a fresh mutex reported ownerDied')
    first.release()
    const tokens = [first.fencingToken]
    check(typeof tokens[0] === 'bigint', `fencingToken is a ${typeof tokens[0]}, not a bigint`)

    // Terminated holder, seen by a lock() already waiting.
    const killed = await startHolder(path)
    check(mutex.tryLock() === null, 'tryLock succeeded while another process held the lock')
    const timedOut = await mutex.lock({ timeout: 200 }).then(
      (g) => { g.release(); return 'acquired' },
      (e) => e)
    check(timedOut instanceof TimeoutError, `lock({ timeout: 200 }) while held: expected TimeoutError, got ${timedOut}`)
    let syncTimeout
    try { mutex.lockSync({ timeout: 100 }).release() } catch (e) { syncTimeout = e }
    check(syncTimeout instanceof TimeoutError, `lockSync({ timeout: 100 }) while held: expected TimeoutError, got ${syncTimeout}`)
    const waiting = mutex.lock({ timeout: 30_000 })
    check(killed.child.kill(), 'could not terminate the holder')
    const { signal } = await killed.exited
    check(signal === 'SIGTERM', `holder ended by ${signal}, expected SIGTERM (on Windows: TerminateProcess)`)
    const afterKill = await waiting
    check(afterKill.ownerDied === true, 'the waiting lock() did not report ownerDied after the holder was terminated')
    afterKill.release()
    tokens.push(afterKill.fencingToken)

    // A holder that exits without releasing.
    const exiting = await startHolder(path, 'exit')
    const { code } = await exiting.exited
    check(code === 0, `exiting holder: exit code ${code}`)
    // tryLock(), as the README's Electron single-instance example does at startup.
    const afterExit = mutex.tryLock()
    check(afterExit !== null && afterExit.ownerDied === true, 'tryLock after the holder exited holding did not report ownerDied')
    afterExit.release()
    tokens.push(afterExit.fencingToken)

    const again = mutex.tryLock()
    check(again !== null && again.ownerDied === false, 'the mutex is not healthy after the recoveries')
    again.release()
    tokens.push(again.fencingToken)
    // Each holder process took a token in between: strictly greater, not necessarily by one.
    check(tokens.every((t, i) => i === 0 || t > tokens[i - 1]), `fencing tokens did not increase: ${tokens.join(' ')}`)
    check(mutex.state().fencingToken === tokens[3], 'state().fencingToken is not the last token issued')
    mutex.close()
    SharedMutex.destroy(path)
    console.log(`node smoke: ok (node ${process.version} ${process.platform}-${process.arch}, ${addons()[0].split(/[\\/]/).pop()})`)
  } finally {
    // Windows cannot delete a file still open: close first, and never hide the failure above.
    try { mutex?.close() } catch {}
    try { rmSync(dir, { recursive: true, force: true }) } catch (e) { console.error(`cleanup: ${e.message}`) }
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
