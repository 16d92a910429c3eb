// What a user sees when no native addon loads (the platform package is missing, or this is not
// a supported platform): one UnsupportedError naming the platform, the libc and the package,
// never the napi loader's generic message about npm bugs or wasi.
//
// The child process points the napi loader at a binary that does not exist
// (NAPI_RS_NATIVE_LIBRARY_PATH, the loader's override), which is what a missing platform package
// looks like from index.js. The consumer-project test (scripts/dist/test-dist.sh) shows the same
// error after installing the main tarball without its optional dependencies.

import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

import test from 'ava'

const root = join(__dirname, '..')

test('a missing native addon throws UnsupportedError naming platform, libc and package', (t) => {
  const probe = `
    try { require(${JSON.stringify(join(root, 'index.js'))}); console.log(JSON.stringify({ loaded: true })) }
    catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message, cause: e.cause != null, isError: e instanceof Error })) }`
  const child = spawnSync(process.execPath, ['-e', probe], {
    env: { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: join(root, 'no-such-dir', 'robust-mutex.node') },
    encoding: 'utf8',
  })
  t.is(child.status, 0, child.stderr)
  const seen = JSON.parse(child.stdout.trim()) as Record<string, unknown>
  const glibc = Boolean((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime)
  const pkg = `robust-mutex-linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`
  t.like(seen, { name: 'UnsupportedError', code: 'EUNSUPPORTED', cause: true, isError: true })
  const message = String(seen.message)
  t.true(message.includes(pkg), message)
  t.true(message.includes(`linux-${process.arch} (${glibc ? 'glibc' : 'musl'})`), message)
  t.false(/wasi|npm has a bug/i.test(message), message)
})

// The same error on the other platforms, seen from this machine: the child claims another
// process.platform/arch before loading, so the napi loader looks for that platform's addon (which
// is not installed here) and the error must name that platform's package.
const elsewhere: Array<[platform: string, arch: string, expected: string]> = [
  ['darwin', 'arm64', 'robust-mutex-darwin-arm64'],
  ['darwin', 'x64', 'robust-mutex-darwin-x64'],
  ['win32', 'x64', 'robust-mutex-win32-x64-msvc'],
  ['freebsd', 'x64', 'has no prebuilt addon'],
]
for (const [platform, arch, expected] of elsewhere) {
  test(`on ${platform}-${arch} a missing addon names ${expected}`, (t) => {
    const probe = `
      Object.defineProperty(process, 'platform', { value: ${JSON.stringify(platform)} })
      Object.defineProperty(process, 'arch', { value: ${JSON.stringify(arch)} })
      try { require(${JSON.stringify(join(root, 'index.js'))}); console.log(JSON.stringify({ loaded: true })) }
      catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })) }`
    const env = { ...process.env }
    delete env.NAPI_RS_NATIVE_LIBRARY_PATH
    const child = spawnSync(process.execPath, ['-e', probe], { env, encoding: 'utf8' })
    t.is(child.status, 0, child.stderr)
    const seen = JSON.parse(child.stdout.trim()) as Record<string, unknown>
    t.like(seen, { name: 'UnsupportedError', code: 'EUNSUPPORTED' })
    const message = String(seen.message)
    t.true(message.includes(expected), message)
    t.true(message.includes(`${platform}-${arch}`), message)
    t.false(/wasi|npm has a bug/i.test(message), message)
  })
}
