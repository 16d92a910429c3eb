#!/usr/bin/env node
// Checks the prebuilt addons in npm/<platform>/ (npm run build:all) as shipped. Linux (the four
// are required): the ELF machine of the platform, stripped (no .symtab), glibc builds needing no
// GLIBC_ symbol version above 2.17, musl builds needing musl's libc and no glibc symbol. macOS
// and Windows, checked when built (here: macOS through cargo zigbuild; Windows only on Windows):
// a Mach-O library for the CPU with a minimum macOS set (arm64: code-signed, which macOS
// requires), or a PE DLL for x86_64. Prints one line per binary. `--expect-too-new FILE` instead
// asserts that FILE needs glibc > 2.17: the same check run on a host build, to show it can fail.
// `--only RUST_TARGET` checks that target's binary alone (a release build job has only its own).
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { inspectMachO, inspectPE } from './foreign-binaries.mjs'
import { TARGET_PLATFORMS } from './platforms.mjs'

const FLOOR = [2, 17]
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const readelf = (args, file) => execFileSync('readelf', [...args, '--wide', file], { encoding: 'utf8' })
const cmp = (a, b) => a[0] - b[0] || a[1] - b[1]

function inspect(file) {
  const header = readelf(['-h'], file)
  const machine = /Machine:\s+(.*)/.exec(header)[1].trim()
  const sections = readelf(['-S'], file)
  const glibc = [...new Set(readelf(['-V'], file).match(/GLIBC_\d+\.\d+(\.\d+)?/g) ?? [])]
    .map((v) => v.slice(6).split('.').map(Number))
    .sort(cmp)
  const needed = [...readelf(['-d'], file).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1])
  return {
    machine,
    stripped: !/\s\.symtab\s/.test(sections) && !/\s\.debug_info\s/.test(sections),
    maxGlibc: glibc.at(-1) ?? null,
    needed,
    size: statSync(file).size,
  }
}

const failures = []

/** A macOS or Windows addon: checked when present (required with --only). */
function checkForeign(platform, required) {
  const file = join(root, 'npm', platform, `robust-mutex.${platform}.node`)
  const bad = (what) => failures.push(`npm/${platform}: ${what}`)
  if (!existsSync(file)) {
    if (required) bad('not built')
    else console.log(`check-binaries: npm/${platform}: not built on this machine, not checked`)
    return
  }
  const [, os, arch] = /^(darwin|win32)-(x64|arm64)/.exec(platform) ?? []
  const cpu = arch === 'x64' ? 'x86_64' : 'arm64'
  if (os === 'darwin') {
    const info = inspectMachO(file)
    if (info.error) return bad(info.error)
    if (info.cpu !== cpu) bad(`cpu ${info.cpu}, expected ${cpu}`)
    if (info.filetype !== 'dylib' && info.filetype !== 'bundle') bad(`${info.filetype}, expected a dylib or bundle`)
    if (!info.minMacOS) bad('no minimum macOS version (LC_BUILD_VERSION)')
    if (cpu === 'arm64' && !info.signed) bad('not code-signed (arm64 macOS refuses unsigned code)')
    console.log(`check-binaries: npm/${platform}: ${info.size} bytes, Mach-O ${info.cpu} ${info.filetype}, macOS >= ${info.minMacOS}, signed=${info.signed}, ${info.symbols} symbols`)
  } else if (os === 'win32') {
    const info = inspectPE(file)
    if (info.error) return bad(info.error)
    if (info.machine !== cpu) bad(`machine ${info.machine}, expected ${cpu}`)
    if (!info.dll) bad('not a DLL')
    console.log(`check-binaries: npm/${platform}: ${info.size} bytes, PE ${info.machine} DLL`)
  } else {
    bad('not a known platform')
  }
}
if (process.argv[2] === '--expect-too-new') {
  const file = process.argv[3]
  const { maxGlibc } = inspect(file)
  if (!maxGlibc || cmp(maxGlibc, FLOOR) <= 0) failures.push(`${file}: expected a GLIBC_ version above 2.17, found ${maxGlibc?.join('.')}`)
  else console.log(`check-binaries: the check flags ${file} (needs GLIBC_${maxGlibc.join('.')})`)
} else {
  const machines = { x64: 'Advanced Micro Devices X86-64', arm64: 'AArch64' }
  let platforms = readdirSync(join(root, 'npm')).sort()
  const only = process.argv[2] === '--only' ? TARGET_PLATFORMS[process.argv[3]] : undefined
  if (process.argv[2] === '--only') {
    if (!only) failures.push(`--only: not a known target: ${process.argv[3]}`)
    platforms = only ? [only] : []
  }
  for (const platform of platforms) {
    if (!platform.startsWith('linux-')) {
      checkForeign(platform, Boolean(only))
      continue
    }
    const [, arch, abi] = /^linux-(x64|arm64)-(gnu|musl)$/.exec(platform) ?? []
    if (!arch) {
      failures.push(`npm/${platform}: not a known platform`)
      continue
    }
    const file = join(root, 'npm', platform, `robust-mutex.${platform}.node`)
    const info = inspect(file)
    const bad = (what) => failures.push(`npm/${platform}: ${what}`)
    if (info.machine !== machines[arch]) bad(`machine ${info.machine}, expected ${machines[arch]}`)
    if (!info.stripped) bad('not stripped')
    if (abi === 'gnu') {
      if (!info.maxGlibc) bad('no GLIBC_ symbol versions (not a glibc build?)')
      else if (cmp(info.maxGlibc, FLOOR) > 0) bad(`needs GLIBC_${info.maxGlibc.join('.')}, above the 2.17 floor`)
    } else {
      if (info.maxGlibc) bad(`a musl build needing GLIBC_${info.maxGlibc.join('.')}`)
      if (!info.needed.some((n) => /^libc\.(so|musl-)/.test(n))) bad(`does not link musl libc (NEEDED ${info.needed.join(', ')})`)
    }
    const floor = abi === 'gnu' ? `glibc >= ${info.maxGlibc?.join('.')}` : 'musl'
    console.log(`check-binaries: npm/${platform}: ${info.size} bytes, ${info.machine}, stripped=${info.stripped}, ${floor}, NEEDED ${info.needed.join(' ')}`)
  }
}
for (const f of failures) console.error(`check-binaries: FAIL ${f}`)
process.exit(failures.length ? 1 : 0)
