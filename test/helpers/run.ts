// Spawning real tools (dd, cat, cmp, stat, python3) against a mounted fabric.
//
// Everything here is asynchronous: the test process is not the fcfs server, so a
// synchronous call would not deadlock, but an async spawn keeps a hung tool from
// freezing the whole vitest worker (its timeout still fires and the safety net
// still unmounts).
import { spawn } from 'node:child_process'

export interface RunResult {
  code: number
  /** The signal that killed the process, if any. */
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  stdoutBuf: Buffer
}

export interface RunOptions {
  /** Written to the child's stdin, which is then closed. */
  input?: string | Buffer
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Kill the child (SIGKILL) after this many ms; default 30 s. */
  timeoutMs?: number
}

/** Run a command to completion; never rejects on a non-zero exit (assert on `code`). */
export function run(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    const timer = setTimeout(() => {
      err.push(Buffer.from(`\n[run] ${cmd} killed after ${opts.timeoutMs ?? 30_000} ms\n`))
      child.kill('SIGKILL')
    }, opts.timeoutMs ?? 30_000)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(new Error(`cannot run ${cmd}: ${e.message}`))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const stdoutBuf = Buffer.concat(out)
      resolve({
        code: code ?? 128,
        signal,
        stdout: stdoutBuf.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        stdoutBuf,
      })
    })
    // A child that exits before reading its stdin gives EPIPE; that is its business.
    child.stdin.on('error', () => {})
    if (opts.input !== undefined) child.stdin.end(opts.input)
    else child.stdin.end()
  })
}

/** `bash -c script` (for pipelines such as `cat rwbuf | head -c N`). */
export function sh(script: string, opts: RunOptions = {}): Promise<RunResult> {
  return run('bash', ['-c', script], opts)
}

/** `python3 -c code args…`; the script sees `args` as sys.argv[1:]. */
export function python(code: string, args: readonly (string | number)[] = [], opts: RunOptions = {}): Promise<RunResult> {
  return run('python3', ['-c', code, ...args.map(String)], opts)
}

/** Like run(), but throws (with the output) unless the command exits 0. */
export async function runOk(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}${r.signal ? ` (${r.signal})` : ''}\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr.slice(0, 2000)}`)
  }
  return r
}

/** Shell-quote one argument for sh(). */
export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}
