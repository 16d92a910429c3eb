// Review of issue 13: lockSync's "is my environment stopping?" probe (env_state.rs) sets a
// property named "probe" on a fresh object, which runs any accessor on Object.prototype: user
// code runs inside lockSync (re-entering the binding panics: "RefCell already borrowed"), and a
// throwing accessor makes lockSync on the main thread give up as if its worker were terminated.
import * as path from 'node:path'

import test from 'ava'

import { nodeSync, tempDir } from './review-helpers'

const dir = tempDir()

function scenario(mode: 'count' | 'throw' | 'reenter'): string {
  const p = path.join(dir, `probe-${mode}.lock`)
  const r = nodeSync(`
    const { spawn } = require('node:child_process')
    const p = ${JSON.stringify(p)}
    const m = SharedMutex.open(p)
    const holder = spawn(process.execPath, ['-e', \`const { SharedMutex } = require(\${JSON.stringify(require.resolve(${JSON.stringify(path.join(__dirname, '..', 'index.js'))}))});
      const g = SharedMutex.open(\${JSON.stringify(p)}).lockSync(); console.log('locked'); setTimeout(() => { g.release(); process.exit(0) }, 400)\`], { stdio: ['ignore', 'pipe', 'inherit'] })
    holder.stdout.once('data', () => {
      let calls = 0
      Object.defineProperty(Object.prototype, 'probe', { configurable: true, set(v) {
        calls++
        if (${JSON.stringify(mode)} === 'throw') throw new Error('accessor')
        if (${JSON.stringify(mode)} === 'reenter') m.state()
      } })
      try { const g = m.lockSync({ timeout: 5000 }); g.release(); console.log('acquired calls=' + calls) }
      catch (e) { console.log('threw ' + e.code + ' ' + e.message + ' calls=' + calls) }
    })`)
  return (r.stdout + r.stderr.split('\n')[0]).trim()
}

test('lockSync runs no user code while it waits', (t) => {
  const out = scenario('count')
  t.log(out)
  t.is(out, 'acquired calls=0')
})

test('an Object.prototype accessor does not make lockSync on the main thread give up', (t) => {
  const out = scenario('throw')
  t.log(out)
  t.regex(out, /^acquired/)
})

test('an Object.prototype accessor that calls the binding does not panic inside lockSync', (t) => {
  const out = scenario('reenter')
  t.log(out)
  t.regex(out, /^acquired/)
})
