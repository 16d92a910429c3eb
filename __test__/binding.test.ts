import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import test from 'ava'

import { bindingVersion } from '../index'

const root = join(__dirname, '..')

/** `version` under `[workspace.package]` in the root Cargo.toml (the crate inherits it). */
function workspaceVersion(): string {
  const toml = readFileSync(join(root, 'Cargo.toml'), 'utf8')
  const section = /^\[workspace\.package\]\s*$([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(toml)
  const version = section && /^version\s*=\s*"([^"]+)"/m.exec(section[1])
  if (!version) throw new Error('no [workspace.package] version in Cargo.toml')
  return version[1]
}

test('the loaded native binding reports the workspace and npm package version', (t) => {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }
  t.is(workspaceVersion(), version, 'Cargo workspace and package.json versions must match')
  t.is(bindingVersion(), version)
})
