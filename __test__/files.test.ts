// Files that are not ours get a typed error and keep every byte.
import { createHash, randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'

import test from 'ava'

import { AbiMismatchError, BadMutexError, InsecureError, SharedMutex } from '../index'
import { tempDir } from './helpers'

const dir = tempDir()
const digest = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex')

/** A valid mutex file's bytes, edited by `edit`. */
function validBytes(edit: (bytes: Buffer) => void): Buffer {
  const file = path.join(dir, `template-${process.hrtime.bigint()}`)
  SharedMutex.open(file).close()
  const bytes = fs.readFileSync(file)
  fs.rmSync(file)
  edit(bytes)
  return bytes
}

const cases: Array<[string, () => Buffer, new (...args: never[]) => Error, string]> = [
  ['an empty file', () => Buffer.alloc(0), BadMutexError, 'EBADMUTEX'],
  ['a truncated file', () => validBytes(() => {}).subarray(0, 1000), BadMutexError, 'EBADMUTEX'],
  ['4096 random bytes', () => randomBytes(4096), BadMutexError, 'EBADMUTEX'],
  ['another format version', () => validBytes((b) => b.writeUInt32LE(99, 8)), BadMutexError, 'EBADMUTEX'],
  ['another ABI tag (32-bit)', () => validBytes((b) => b.writeUInt8(32, 26)), AbiMismatchError, 'EABIMISMATCH'],
  ['an unknown state', () => validBytes((b) => b.writeUInt32LE(77, 16)), BadMutexError, 'EBADMUTEX'],
]

for (const [what, bytes, ErrorClass, code] of cases) {
  test(`${what} is refused with ${code} and left unchanged`, (t) => {
    const file = path.join(dir, what.replace(/\W+/g, '-'))
    fs.writeFileSync(file, bytes(), { mode: 0o600 })
    const before = digest(file)
    const err = t.throws(() => SharedMutex.open(file), { instanceOf: ErrorClass })
    t.is((err as Error & { code: string }).code, code)
    t.throws(() => SharedMutex.destroy(file), { instanceOf: ErrorClass })
    t.is(digest(file), before)
  })
}

test('a symlink planted at the path is refused and its target untouched', (t) => {
  const victim = path.join(dir, 'victim')
  fs.writeFileSync(victim, 'precious')
  const link = path.join(dir, 'planted')
  fs.symlinkSync(victim, link)
  t.throws(() => SharedMutex.open(link), { instanceOf: InsecureError, code: 'EINSECURE' })
  t.is(fs.readFileSync(victim, 'utf8'), 'precious')
})

test('a world-writable file is refused', (t) => {
  const file = path.join(dir, 'world-writable')
  SharedMutex.open(file).close()
  fs.chmodSync(file, 0o666)
  const before = digest(file)
  t.throws(() => SharedMutex.open(file), { instanceOf: InsecureError })
  t.is(digest(file), before)
})

test('a directory and a FIFO are refused with typed errors', (t) => {
  const sub = path.join(dir, 'a-directory')
  fs.mkdirSync(sub)
  t.throws(() => SharedMutex.open(sub), { code: 'EISDIR' })
  const fifo = path.join(dir, 'a-fifo')
  require('node:child_process').execFileSync('mkfifo', [fifo])
  t.throws(() => SharedMutex.open(fifo), { instanceOf: BadMutexError })
})

test('a missing file with create: false is ENOENT and nothing is created', (t) => {
  const file = path.join(dir, 'absent')
  t.throws(() => SharedMutex.open(file, { create: false }), { code: 'ENOENT' })
  t.false(fs.existsSync(file))
})
