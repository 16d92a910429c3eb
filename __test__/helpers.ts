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

/**
 * Source text defining `moveOut(buffer)` for child scripts: detaches an ArrayBuffer and returns
 * the buffer that took its memory. Node 20 transfers with `structuredClone` (an external buffer
 * is copied there, not moved); Node 22 refuses an external buffer in a transfer list and moves
 * it with `buffer.transfer()` (Node 20 has that behind `--harmony-rab-gsab-transfer`).
 */
export const MOVE_OUT_SOURCE = `
  const moveOut = (buffer) => {
    try {
      return structuredClone(buffer, { transfer: [buffer] })
    } catch (err) {
      if (typeof buffer.transfer !== 'function') throw err
      return buffer.transfer()
    }
  }
`

export interface Child {
  proc: ChildProcess
  /** Resolves with the next line the child prints. */
  nextLine(): Promise<string>
  /** Resolves when the child exits, with its code or signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export function spawnChild(args: string[], stdio: StdioOptions = ['pipe', 'pipe', 'inherit']): Child {
  return lineChild(spawn(process.execPath, [CHILD, ...args], { stdio }))
}

/**
 * Reads a spawned process's stdout line by line. `nextLine()` fails once its stdout has ended
 * with no line left (not at its exit: the last lines may still be in the pipe then), and after
 * `lineTimeoutMs` when given.
 */
export function lineChild(proc: ChildProcess, lineTimeoutMs?: number): Child {
  const lines: string[] = []
  const waiting: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = []
  let ended = false
  let buffered = ''
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  )
  const noMoreLines = () => new Error(`child ${proc.pid} ended its output before printing a line`)
  proc.stdout?.setEncoding('utf8')
  proc.stdout?.on('data', (chunk: string) => {
    buffered += chunk
    let newline: number
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      const waiter = waiting.shift()
      if (waiter) waiter.resolve(line)
      else lines.push(line)
    }
  })
  proc.stdout?.on('end', () => {
    ended = true
    for (const waiter of waiting.splice(0)) waiter.reject(noMoreLines())
  })
  const nextLine = () => {
    const line = new Promise<string>((resolve, reject) => {
      const ready = lines.shift()
      if (ready !== undefined) resolve(ready)
      else if (ended) reject(noMoreLines())
      else waiting.push({ resolve, reject })
    })
    return lineTimeoutMs === undefined ? line : within(lineTimeoutMs, line, 'child output')
  }
  return { proc, exited, nextLine }
}

/** Fails a test that would otherwise hang. */
export function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
