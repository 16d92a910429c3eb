// Review of issue 13: "numbers are range-checked before they reach Rust". fromFd() checks only
// Number.isInteger(fd) && fd >= 0; napi's int32 conversion then keeps the low 32 bits, so
// 2**32 + fd silently opens descriptor fd (and 2**32 opens descriptor 0, stdin).
import test from 'ava'

import { SharedMutex } from '../index'

test('fromFd() rejects descriptors beyond the int range instead of truncating them', (t) => {
  const m = SharedMutex.anonymous()
  let opened: SharedMutex | null = null
  const err = t.throws(() => {
    opened = SharedMutex.fromFd(2 ** 32 + m.fd)
  })
  if (opened) {
    t.log(`fromFd(2**32 + ${m.fd}) opened the mutex of descriptor ${m.fd}`)
    ;(opened as SharedMutex).close()
  }
  t.true(err instanceof RangeError || err instanceof TypeError, `got ${err?.constructor.name}`)
  m.close()
})

// Issue 13 asked for unforgeable handles; the public constructors are guarded, but the raw binding
// (binding.js: shipped in "files"; the "exports" map does not list it, so
// require('robust-mutex/binding') fails, but any code can still load it by its file path) takes plain numbers:
// handle = slot | generation << 20, token = id * 2 — small, sequential, guessable.
test('code without the guard cannot release its lock through the raw binding', (t) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const binding = require('../binding.js') as { release(h: number, token: number, poison: boolean): void }
  const m = SharedMutex.anonymous()
  const g = m.lockSync()
  let forged = 0
  for (let slot = 0; slot < 8; slot++) {
    for (let gen = 1; gen < 4; gen++) {
      for (let id = 1; id < 4; id++) {
        try {
          binding.release(slot | (gen << 20), id * 2, false)
          forged++
        } catch {
          // not a live handle/token
        }
      }
    }
  }
  t.is(forged, 0, 'a guessed (handle, token) pair released a lock held by another component')
  t.true(m.state().locked)
  if (!g.released) {
    try {
      g.release()
    } catch {
      // ReleasedError: the owner can no longer release (and #holding stays 1)
    }
  }
  m.close()
})
