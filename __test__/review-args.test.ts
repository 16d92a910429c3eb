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
