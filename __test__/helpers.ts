// Shared helpers for the multi-process tests: temporary directories and child processes.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

export const CHILD = path.join(__dirname, 'fixtures', 'child.cjs')

/** A fresh private directory, removed when the process exits. */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'robust-mutex-test-'))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface Child {
  proc: ChildProcess
  /** Resolves with the next line the child prints. */
  nextLine(): Promise<string>
  /** Resolves when the child exits, with its code or signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export function spawnChild(args: string[], stdio: StdioOptions = ['pipe', 'pipe', 'inherit']): Child {
  const proc = spawn(process.execPath, [CHILD, ...args], { stdio })
  const lines: string[] = []
  const waiting: Array<(line: string) => void> = []
  let buffered = ''
  proc.stdout?.setEncoding('utf8')
  proc.stdout?.on('data', (chunk: string) => {
    buffered += chunk
    let newline: number
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      const waiter = waiting.shift()
      if (waiter) waiter(line)
      else lines.push(line)
    }
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  )
  return {
    proc,
    exited,
    nextLine: () =>
      new Promise<string>((resolve, reject) => {
        const line = lines.shift()
        if (line !== undefined) return resolve(line)
        waiting.push(resolve)
        void exited.then(({ code, signal }) => reject(new Error(`child exited (${code ?? signal}) before printing`)))
      }),
  }
}

/** Fails a test that would otherwise hang. */
export function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
