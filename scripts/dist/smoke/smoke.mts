// TypeScript consumer (NodeNext, strict): the published typings, `using` for guard and mutex.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { LockGuard, SharedMutex, UnsupportedError } from 'robust-mutex'

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`smoke ts: ${what}`)
}

const dir = mkdtempSync(join(tmpdir(), 'rm-smoke-ts-'))
const path = join(dir, 'smoke.lock')
const holder = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, 'holder.cjs')
try {
  {
    using mutex = SharedMutex.open(path)
    {
      using guard: LockGuard = mutex.lockSync()
      check(!guard.ownerDied, 'fresh mutex reported ownerDied')
    } // released here

    // A holder that is SIGKILLed (timeout) while holding: `timeout` kills it with SIGKILL after
    // it has printed "locked"; spawnSync returns once it is dead.
    const child = spawnSync(process.execPath, [holder, path], { timeout: 2000, killSignal: 'SIGKILL', encoding: 'utf8' })
    check(child.signal === 'SIGKILL' && child.stdout.includes('locked'), `holder: ${child.signal} ${child.stdout} ${child.stderr}`)

    using recovered = mutex.lockSync({ timeout: 10_000 })
    const died: boolean = recovered.ownerDied
    check(died, 'lock after the holder was SIGKILLed did not report ownerDied')
  } // guard released, then mutex closed
  SharedMutex.destroy(path)
  const unsupported: typeof UnsupportedError = UnsupportedError
  check(typeof unsupported === 'function', 'UnsupportedError is not exported')
  console.log(`smoke ts: ok (${process.versions.bun ? `bun ${process.versions.bun}` : `node ${process.version}`}, ${process.arch})`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
