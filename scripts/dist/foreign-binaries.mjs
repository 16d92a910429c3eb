// Reads the headers of the macOS (Mach-O) and Windows (PE) addons, which readelf cannot: enough
// for check-binaries.mjs to tell that a file is a loadable library for the right CPU and OS.
import { readFileSync } from 'node:fs'

const MACHO_CPU = { 0x01000007: 'x86_64', 0x0100000c: 'arm64' }
const MACHO_FILETYPE = { 6: 'dylib', 8: 'bundle' }
const LC_CODE_SIGNATURE = 0x1d
const LC_BUILD_VERSION = 0x32
const LC_SYMTAB = 0x2

/** A 64-bit little-endian Mach-O: cpu, file type, minimum macOS, signed, local symbols. */
export function inspectMachO(file) {
  const b = readFileSync(file)
  if (b.length < 32 || b.readUInt32LE(0) !== 0xfeedfacf) return { error: 'not a 64-bit Mach-O file' }
  const info = {
    cpu: MACHO_CPU[b.readUInt32LE(4)] ?? `cputype 0x${b.readUInt32LE(4).toString(16)}`,
    filetype: MACHO_FILETYPE[b.readUInt32LE(12)] ?? `filetype ${b.readUInt32LE(12)}`,
    minMacOS: null,
    signed: false,
    symbols: 0,
    size: b.length,
  }
  const ncmds = b.readUInt32LE(16)
  let at = 32
  for (let i = 0; i < ncmds && at + 8 <= b.length; i++) {
    const cmd = b.readUInt32LE(at)
    const size = b.readUInt32LE(at + 4)
    if (cmd === LC_CODE_SIGNATURE) info.signed = true
    if (cmd === LC_BUILD_VERSION) {
      const v = b.readUInt32LE(at + 12) // minos, xxxx.yy.zz in nibbles
      info.minMacOS = `${v >>> 16}.${(v >>> 8) & 0xff}`
    }
    if (cmd === LC_SYMTAB) info.symbols = b.readUInt32LE(at + 12)
    if (size < 8) break
    at += size
  }
  return info
}

/** A PE image: machine and whether it is a DLL, with the DLLs it imports. */
export function inspectPE(file) {
  const b = readFileSync(file)
  if (b.length < 0x40 || b.toString('latin1', 0, 2) !== 'MZ') return { error: 'not a PE file (no MZ header)' }
  const pe = b.readUInt32LE(0x3c)
  if (pe + 24 > b.length || b.toString('latin1', pe, pe + 4) !== 'PE\0\0') return { error: 'not a PE file (no PE signature)' }
  const machine = b.readUInt16LE(pe + 4)
  const characteristics = b.readUInt16LE(pe + 22)
  return {
    machine: machine === 0x8664 ? 'x86_64' : machine === 0xaa64 ? 'arm64' : `machine 0x${machine.toString(16)}`,
    dll: (characteristics & 0x2000) !== 0,
    size: b.length,
  }
}
