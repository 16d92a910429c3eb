// The smoke scenario, shared by the CommonJS and ESM entry points (each passes the SharedMutex
// class it imported its own way): lock, contend, see a SIGKILLed holder's ownerDied, recover.
const { spawn } = require('node:child_process')
const { mkdtempSync, readFileSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')

function check(condition, what) {
  if (!condition) throw new Error(`smoke: ${what}`)
}

/** Starts holder.cjs on `path` and resolves once it holds the lock. */
function startHolder(path) {
  const child = spawn(process.execPath, [join(__dirname, 'holder.cjs'), path], { stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      if (out.includes('locked\n')) resolve(child)
    })
    child.on('exit', (code, signal) => reject(new Error(`holder exited early (${code ?? signal})`)))
  })
}

/** The addon file this process loaded (which platform package), with `/` separators. */
function loadedAddon() {
  if (process.platform === 'linux') {
    const line = readFileSync('/proc/self/maps', 'utf8').split('\n').find((l) => /robust-mutex\.[\w-]+\.node$/.test(l))
    return line ? line.split(/\s+/).pop() : null
  }
  // No /proc elsewhere: Node's module cache holds the addon it loaded (Bun runs on Linux only here).
  const file = Object.keys(require.cache).find((k) => /robust-mutex\.[\w-]+\.node$/.test(k))
  return file ? file.replace(/\\/g, '/') : null
}

async function run(SharedMutex, UnsupportedError, label) {
  check(typeof SharedMutex === 'function', `${label}: SharedMutex is not a class`)
  check(typeof UnsupportedError === 'function', `${label}: UnsupportedError is not exported`)
  const dir = mkdtempSync(join(tmpdir(), 'rm-smoke-'))
  const path = join(dir, 'smoke.lock')
  try {
    const mutex = SharedMutex.open(path)
    const first = mutex.lockSync()
    check(first.ownerDied === false, `${label}: fresh mutex reported ownerDied`)
    first.release()

    const holder = await startHolder(path)
    check(mutex.tryLock() === null, `${label}: tryLock succeeded while another process held the lock`)
    const exited = new Promise((resolve) => holder.on('exit', (_code, signal) => resolve(signal)))
    holder.kill('SIGKILL')
    check((await exited) === 'SIGKILL', `${label}: holder was not killed by SIGKILL`)

    const started = process.hrtime.bigint()
    const guard = await mutex.lock({ timeout: 10_000 })
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    check(guard.ownerDied === true, `${label}: lock after the holder's SIGKILL did not report ownerDied`)
    guard.release()

    const again = mutex.tryLock()
    check(again !== null && again.ownerDied === false, `${label}: mutex not healthy after the recovery`)
    again.release()
    mutex.close()
    SharedMutex.destroy(path)
    const addon = loadedAddon()
    const expected = process.env.SMOKE_EXPECT_ADDON
    check(!expected || (addon && addon.endsWith(`/${expected}`)), `${label}: loaded ${addon}, expected ${expected}`)
    const runtime = process.versions.bun ? `bun ${process.versions.bun}` : `node ${process.version}`
    console.log(`smoke ${label}: ok (${runtime}, ${process.arch}, ${addon?.split('/').pop()}; ownerDied ${ms.toFixed(1)} ms after SIGKILL)`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

module.exports = { run, check }
