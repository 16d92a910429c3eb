// Loads the native addon (./binding, the napi-rs loader) and turns "no usable binary" into one
// clear error instead of the loader's generic one (which blames npm and mentions wasi).
//
// The addon ships in per-platform packages (npm/<platform>/, optionalDependencies of this one):
// npm installs the one matching the machine's os, cpu and libc. When none loads, this throws an
// `UnsupportedError` (code `EUNSUPPORTED`) naming the platform, the libc and the package that was
// expected, with the loader's errors as `cause`.

import type * as Binding from './binding'
import { UnsupportedError } from './errors'

/**
 * The npm package that carries the prebuilt addon for `process.platform`-`process.arch` (Linux:
 * also by libc). Windows: the `-msvc` package, the one napi's loader picks in the official
 * (MSVC-built) Node.js; it would look for `-gnu` only in a mingw-built Node.
 */
const PREBUILT: Record<string, (libc: Libc | null) => string> = {
  'linux-x64': (libc) => `robust-mutex-linux-x64-${libc === 'musl' ? 'musl' : 'gnu'}`,
  'linux-arm64': (libc) => `robust-mutex-linux-arm64-${libc === 'musl' ? 'musl' : 'gnu'}`,
  'darwin-x64': () => 'robust-mutex-darwin-x64',
  'darwin-arm64': () => 'robust-mutex-darwin-arm64',
  'win32-x64': () => 'robust-mutex-win32-x64-msvc',
}

type Libc = 'glibc' | 'musl'

function detectLibc(): Libc | null {
  if (process.platform !== 'linux') return null
  try {
    // A glibc process reports its C library's version; a musl one reports none.
    const header = (process.report?.getReport?.() as { header?: { glibcVersionRuntime?: string } } | undefined)
      ?.header
    if (header) return header.glibcVersionRuntime ? 'glibc' : 'musl'
  } catch {
    // a runtime without process.report: ask the system, as the loader does
  }
  try {
    return require('node:fs').readFileSync('/usr/bin/ldd', 'utf8').includes('musl') ? 'musl' : 'glibc'
  } catch {
    return null
  }
}

/** The error thrown when no addon loads here. */
function unsupportedPlatformError(cause: unknown): Error {
  const platform = `${process.platform}-${process.arch}`
  const libc = detectLibc()
  const where = libc ? `${platform} (${libc})` : platform
  let message: string
  const prebuilt = Object.hasOwn(PREBUILT, platform) ? PREBUILT[platform] : undefined
  if (prebuilt) {
    const pkg = prebuilt(libc)
    message =
      `robust-mutex: no native addon could be loaded for ${where}: the package ${pkg} is missing ` +
      `or does not load. It is an optional dependency of robust-mutex that npm installs on ${where}; ` +
      `reinstall without --omit=optional / --no-optional (and without --ignore-platform settings ` +
      `that picked another platform), or build from source (a git install needs Rust).`
  } else {
    message =
      `robust-mutex: ${where} has no prebuilt addon: there are packages for Linux x64 and arm64 ` +
      `(glibc >= 2.17 and musl), macOS x64 and arm64, and Windows x64 (robust-mutex-<platform>; ` +
      `see the README's Platforms). Elsewhere, build from source (a git install needs Rust).`
  }
  return new UnsupportedError(message, { cause })
}

function load(): typeof Binding {
  try {
    return require('./binding')
  } catch (error) {
    throw unsupportedPlatformError(error)
  }
}

const native: typeof Binding = load()
export = native
