#!/usr/bin/env node
// npm run pack:all [-- --all]: every publishable tarball, written to dist/:
//   robust-mutex-<version>.tgz              the JavaScript package (index, loader, typings)
//   robust-mutex-<platform>-<version>.tgz   one per prebuilt addon in npm/<platform>/ (build:all)
//
// The four Linux addons are required (build:all makes them on any Linux machine); the others
// (macOS, Windows) are packed when their addon is there and listed as skipped otherwise, and then
// the main package's optionalDependencies leave them out too (napi's prepublish refuses a
// package without its addon): such a set is for testing, not publishing. With `--all` (the
// release workflow, which gathers every addon) a missing one is an error.
//
// The main package gets its optionalDependencies from `napi prepublish -t npm
// --skip-optional-publish`, the napi-rs release step the publish workflow runs too, applied to a
// staged copy so that the committed package.json keeps none (a development `npm install` must
// not look for unpublished platform packages). Checks what it wrote: every platform tarball
// carries its addon and licenses, the main one carries no addon and no install-time script.

import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { TARGET_PLATFORMS } from './dist/platforms.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const stage = join(root, 'target', 'pack-stage')
const dist = join(root, 'dist')
const npmCli = process.env.npm_execpath // set when run through `npm run`
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' })
const npm = (args, cwd) => (npmCli ? run(process.execPath, [npmCli, ...args], cwd) : run('npm', args, cwd))

function fail(message) {
  console.error(`pack:all: ${message}`)
  process.exit(1)
}

// The JavaScript output is rebuilt here so that a tarball never carries a stale index.js.
run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], root)

rmSync(stage, { recursive: true, force: true })
mkdirSync(stage, { recursive: true })
rmSync(dist, { recursive: true, force: true })
mkdirSync(dist, { recursive: true })

// Stage the main package: package.json, README and the files it lists except built addons (a
// development build in the repository root must not be published; a git install builds its own).
// The published manifest drops `prepare`: it builds from source, which a git install needs and a
// registry install must never attempt (npm 11 lists it among the scripts a user may approve).
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
delete manifest.scripts.prepare
cpSync(join(root, 'README.md'), join(stage, 'README.md'))
for (const file of pkg.files) {
  if (file.includes('*')) continue
  if (!existsSync(join(root, file))) fail(`${file} is missing (listed in package.json "files")`)
  cpSync(join(root, file), join(stage, file))
}
const requireAll = process.argv.includes('--all')
const dirs = readdirSync(join(root, 'npm')).sort()
for (const target of pkg.napi.targets) {
  if (!dirs.includes(TARGET_PLATFORMS[target])) fail(`napi target ${target} has no npm/${TARGET_PLATFORMS[target]}`)
}
const platforms = [] // the ones packed
const skipped = []
for (const platform of dirs) {
  const src = join(root, 'npm', platform)
  const addon = `robust-mutex.${platform}.node`
  if (existsSync(join(src, addon))) {
    platforms.push(platform)
    cpSync(src, join(stage, 'npm', platform), { recursive: true })
  } else if (requireAll || platform.startsWith('linux-')) {
    fail(`npm/${platform}/${addon} is missing: run npm run build:all`)
  } else {
    skipped.push(platform)
  }
}
manifest.napi.targets = manifest.napi.targets.filter((t) => platforms.includes(TARGET_PLATFORMS[t]))
writeFileSync(join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)

// The napi-rs release step: adds optionalDependencies (every napi.targets package at this
// version) to the staged package.json.
run(process.execPath, [join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js'), 'prepublish', '-t', 'npm', '--skip-optional-publish'], stage)
const staged = JSON.parse(readFileSync(join(stage, 'package.json'), 'utf8'))
const expected = Object.fromEntries(platforms.map((p) => [`robust-mutex-${p}`, pkg.version]))
const sorted = (o) => JSON.stringify(Object.fromEntries(Object.entries(o ?? {}).sort()))
if (sorted(staged.optionalDependencies) !== sorted(expected)) {
  fail(`optionalDependencies ${JSON.stringify(staged.optionalDependencies)}, expected ${JSON.stringify(expected)}`)
}

function pack(dir) {
  const [info] = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dist], dir))
  return info
}

const written = []
for (const platform of platforms) {
  const info = pack(join(stage, 'npm', platform))
  const files = info.files.map((f) => f.path).sort()
  for (const want of [`robust-mutex.${platform}.node`, 'LICENSE-MIT', 'LICENSE-APACHE', 'README.md', 'package.json']) {
    if (!files.includes(want)) fail(`${info.filename} lacks ${want}`)
  }
  written.push(info)
}
const main = pack(stage)
const mainFiles = main.files.map((f) => f.path)
if (mainFiles.some((f) => f.endsWith('.node'))) fail(`${main.filename} carries a native addon`)
for (const want of ['index.js', 'index.d.ts', 'native.js', 'errors.js', 'cli.js', 'pg.js', 'pg.d.ts', 'binding.js', 'LICENSE-MIT', 'LICENSE-APACHE', 'README.md']) {
  if (!mainFiles.includes(want)) fail(`${main.filename} lacks ${want}`)
}
for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) {
  if (staged.scripts?.[hook]) fail(`the published main package has the install-time script "${hook}"`)
}
written.unshift(main)

for (const info of written) {
  console.log(`dist/${info.filename}  ${info.size} bytes packed, ${info.unpackedSize} unpacked, ${info.files.length} files`)
}
for (const platform of skipped) {
  console.log(`skipped robust-mutex-${platform}: no npm/${platform}/robust-mutex.${platform}.node (build:all builds it on its own OS; see scripts/build-all.sh), so the main package here does not name it`)
}
