#!/usr/bin/env node
// Runs ava with the TAP reporter, passes its output through, and ends with a
// plain "N passed, N failed[, N skipped]" line: CI recognises that line, not
// ava's own summary. Exits non-zero when ava fails, any test fails, or no test
// ran at all. Extra arguments are handed to ava (e.g. a file filter).

import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'

// ava's CLI (its package "bin") is not in its "exports"; find it beside the
// main entry point, which is.
const require = createRequire(import.meta.url)
const avaCli = join(dirname(require.resolve('ava')), 'cli.mjs')

const child = spawn(process.execPath, [avaCli, '--tap', ...process.argv.slice(2)], {
  stdio: ['ignore', 'pipe', 'inherit'],
})

let passed = 0
let failed = 0
let skipped = 0

// TAP test points: "ok 1 - title", "not ok 2 - title", with an optional
// "# SKIP" / "# TODO" directive (todo tests are not failures).
const testPoint = /^(not )?ok\b(?:\s+\d+)?[^#]*(?:#\s*(SKIP|TODO)\b)?/i

createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
  process.stdout.write(`${line}\n`)
  const m = testPoint.exec(line)
  if (!m) return
  if (m[2]) skipped++
  else if (m[1]) failed++
  else passed++
})

child.on('close', (code, signal) => {
  const tail = skipped > 0 ? `, ${skipped} skipped` : ''
  process.stdout.write(`\n${passed} passed, ${failed} failed${tail}\n`)
  if (signal) {
    console.error(`ava was killed by ${signal}`)
    process.exitCode = 1
  } else if (code !== 0) {
    process.exitCode = code || 1
  } else if (failed > 0) {
    process.exitCode = 1
  } else if (passed === 0) {
    console.error('ava ran no test')
    process.exitCode = 1
  }
})
