// Review of the handoff branch's bench-only floor: it first shipped in the addon every user
// loads, where a worker that called floorListen and was terminated made a later floorWake abort
// the process, and floorOpen truncated any file it was pointed at (a mutex file then failed with
// "wrong magic"). It now lives in a bench-only crate (crates/bench-floor, built by
// `npm run bench`), whose unit tests check that a file that is not a floor file is refused and
// left byte for byte as it was. Here: the shipped addon has none of it.
import * as path from 'node:path'

import test from 'ava'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const binding = require(path.join(__dirname, '..', 'native.js')) as Record<string, unknown>

test('the shipped addon exports no bench-only floor function', (t) => {
  t.true(typeof binding.tryLockFast === 'function', 'precondition: this is the loaded addon')
  const floor = Object.keys(binding).filter((name) => /floor/i.test(name))
  t.deepEqual(floor, [], `bench-only functions in the shipped addon: ${floor.join(', ')}`)
})
