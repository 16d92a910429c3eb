// Helpers for the review tests (issue 13 review): line-oriented child processes of any command.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

export const ROOT = path.join(__dirname, '..')
export const INDEX = path.join(ROOT, 'index.js')
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6 // CLOCK_MONOTONIC, like the C fixture

export interface Proc {
  proc: ChildProcess
  line(what: string, ms?: number): Promise<string>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  output(): string
}

export function run(cmd: string, args: string[]): Proc {
  const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
  const lines: string[] = []
  const waiting: Array<(l: string) => void> = []
  let buf = ''
  let all = ''
  const onData = (chunk: string) => {
    all += chunk
    buf += chunk
    let i: number
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i)
      buf = buf.slice(i + 1)
      const w = waiting.shift()
      if (w) w(l)
      else lines.push(l)
    }
  }
  proc.stdout!.setEncoding('utf8').on('data', onData)
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => { all += c })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  )
  return {
    proc,
    exited,
    output: () => all,
    line: (what, ms = 15_000) =>
      new Promise<string>((resolve, reject) => {
        const l = lines.shift()
        if (l !== undefined) return resolve(l)
        const timer = setTimeout(() => reject(new Error(`${what}: no line within ${ms} ms; output so far:\n${all}`)), ms)
        waiting.push((x) => {
          clearTimeout(timer)
          resolve(x)
        })
      }),
  }
}

/** A Node child running `source` with `SharedMutex` (and the whole module as `rm`) in scope. */
export function node(source: string, flags: string[] = []): Proc {
  const script = `const rm = require(${JSON.stringify(INDEX)}); const { SharedMutex } = rm;\n${source}`
  return run(process.execPath, [...flags, '-e', script])
}

/** Runs a Node script to completion (for defects that hang or abort the process). */
export function nodeSync(source: string, timeoutMs = 20_000, flags: string[] = ['--expose-gc']) {
  const script = `const rm = require(${JSON.stringify(INDEX)}); const { SharedMutex } = rm;\n${source}`
  return spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8', timeout: timeoutMs })
}

/** Builds the C fixture (a plain pthread_mutex_lock user); null without a C compiler. */
export function cLocker(): string | null {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rm-review-c-')), 'c-locker')
  const r = spawnSync('cc', ['-O2', '-pthread', '-o', out, path.join(__dirname, 'fixtures', 'c-locker.c')], { encoding: 'utf8' })
  return r.status === 0 ? out : null
}

export { tempDir } from './helpers'
