/**
 * Processes and mounts the bench starts, and what /proc says about them.
 *
 * Every mount and child goes into one registry so that a normal end, an
 * error, SIGINT/SIGTERM and even a hard exit leave nothing mounted behind.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'

// ---------------------------------------------------------------------------
// Cleanup registry

interface Registered {
  mnt?: string
  proc?: ChildProcess
  stop: () => Promise<void>
}
const registry = new Set<Registered>()

export function register(r: Registered): () => void {
  registry.add(r)
  return () => registry.delete(r)
}

export async function cleanupAll(): Promise<void> {
  for (const r of [...registry]) {
    await r.stop().catch(() => undefined)
    registry.delete(r)
  }
}

let hooked = false
/** SIGINT/SIGTERM: stop everything, then exit 130/143; exit: last-resort sync unmount. */
export function installSignalHandlers(onSignal: (sig: NodeJS.Signals) => void): void {
  if (hooked) return
  hooked = true
  let count = 0
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (++count > 1) {
        exitSync()
        process.exit(sig === 'SIGINT' ? 130 : 143)
      }
      onSignal(sig)
    })
  }
  process.on('exit', exitSync)
}

function exitSync(): void {
  for (const r of registry) {
    try { r.proc?.kill('SIGKILL') } catch { /* gone */ }
    if (r.mnt) spawnSync('fusermount', ['-uz', r.mnt], { stdio: 'ignore' })
  }
}

// ---------------------------------------------------------------------------
// Mount table

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

export async function isMounted(mnt: string): Promise<boolean> {
  const text = await readFile('/proc/self/mounts', 'utf8').catch(() => '')
  return text.split('\n').some((l) => unescapeMount(l.split(' ')[1] ?? '') === mnt)
}

export async function forceUnmount(mnt: string): Promise<void> {
  if (!(await isMounted(mnt))) return
  await run('fusermount', ['-uz', mnt]).catch(() => undefined)
}

// ---------------------------------------------------------------------------
// Children

/**
 * An ordinary user a child runs as: spawn's uid/gid (libuv also drops root's
 * supplementary groups), that user's HOME, USER and LOGNAME, and no
 * XDG_RUNTIME_DIR (root's /run/user/0 is not theirs to write).
 */
export interface RunAs {
  user: string
  uid: number
  gid: number
  home: string
}

function spawnAs(as?: RunAs): { uid?: number; gid?: number; cwd?: string; env?: NodeJS.ProcessEnv } {
  if (!as) return {}
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: as.home, USER: as.user, LOGNAME: as.user }
  delete env.XDG_RUNTIME_DIR
  return { uid: as.uid, gid: as.gid, cwd: '/', env }
}

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Run a command to completion (no shell). Rejects only when it cannot start. */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; onSpawn?: (p: ChildProcess) => void; as?: RunAs } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnAs(opts.as) })
    opts.onSpawn?.(p)
    let stdout = ''
    let stderr = ''
    p.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    p.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    const timer = opts.timeoutMs ? setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs) : undefined
    p.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    p.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr })
    })
  })
}

export function onPath(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0
}

export function waitExit(proc: ChildProcess, ms: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const t = setTimeout(done, ms)
    proc.once('exit', done)
    function done(): void {
      clearTimeout(t)
      proc.off('exit', done)
      resolve()
    }
  })
}

/** SIGTERM, then SIGKILL if it lingers. */
export async function stopChild(proc: ChildProcess, ms = 10_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  try { proc.kill('SIGTERM') } catch { /* gone */ }
  await waitExit(proc, ms)
  if (proc.exitCode === null && proc.signalCode === null) {
    try { proc.kill('SIGKILL') } catch { /* gone */ }
    await waitExit(proc, 5_000)
  }
}

/**
 * Spawn a server and wait until `ready(stdout)` says it is up. Its output is
 * always drained (a full pipe would stall the server) and the tail is kept
 * for error messages.
 */
export async function spawnServer(
  cmd: string,
  args: string[],
  ready: (out: string) => boolean,
  timeoutMs = 20_000,
  as?: RunAs,
): Promise<{ proc: ChildProcess; output: () => string }> {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnAs(as) })
  let out = ''
  const keep = (s: string): void => {
    out += s
    if (out.length > 64 * 1024) out = out.slice(-32 * 1024)
  }
  proc.stdout!.setEncoding('utf8').on('data', keep)
  proc.stderr!.setEncoding('utf8').on('data', keep)
  const outcome = await new Promise<'ready' | 'exited' | 'timeout' | 'error'>((resolve) => {
    const timer = setTimeout(() => finish('timeout'), timeoutMs)
    const check = (): void => { if (ready(out)) finish('ready') }
    const onExit = (): void => { setImmediate(() => { check(); finish('exited') }) }
    const onError = (): void => finish('error')
    proc.stdout!.on('data', check)
    proc.stderr!.on('data', check)
    proc.once('exit', onExit)
    proc.once('error', onError)
    proc.once('spawn', check)
    function finish(o: 'ready' | 'exited' | 'timeout' | 'error'): void {
      clearTimeout(timer)
      proc.stdout!.off('data', check)
      proc.stderr!.off('data', check)
      proc.off('exit', onExit)
      proc.off('error', onError)
      proc.off('spawn', check)
      resolve(o)
    }
  })
  if (outcome !== 'ready') {
    await stopChild(proc, 2_000)
    throw new Error(`${cmd} ${args.join(' ')}: ${outcome} before ready\n${out.slice(-2000)}`)
  }
  return { proc, output: () => out }
}

export async function waitFor(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

// ---------------------------------------------------------------------------
// /proc sampling

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
  const n = Number(r.stdout?.trim())
  return Number.isFinite(n) && n > 0 ? n : 100
})()

/** utime + stime of a process in seconds, or null if it is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
    // f[0] is field 3 (state); utime is field 14, stime field 15.
    return (Number(f[11]) + Number(f[12])) / CLK_TCK
  } catch {
    return null
  }
}

/** VmRSS and VmHWM in bytes. */
export function memory(pid: number): { rss: number; hwm: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
  } catch {
    return null
  }
}

/** CPU use of a set of processes over an interval: start(), then stop() → percent of one core. */
export function cpuMeter(pids: number[]): { stop(): number | null } {
  const t0 = process.hrtime.bigint()
  const c0 = pids.map(cpuSeconds)
  return {
    stop(): number | null {
      const wall = Number(process.hrtime.bigint() - t0) / 1e9
      let used = 0
      for (let i = 0; i < pids.length; i++) {
        const a = c0[i]
        const b = cpuSeconds(pids[i])
        if (a === null || b === null) return null
        used += b - a
      }
      return wall > 0 ? (100 * used) / wall : null
    },
  }
}

/** Summed VmRSS / VmHWM over processes. */
export function memoryOf(pids: number[]): { rss: number; hwm: number } | null {
  let rss = 0
  let hwm = 0
  for (const pid of pids) {
    const m = memory(pid)
    if (!m) return null
    rss += m.rss
    hwm += m.hwm
  }
  return { rss, hwm }
}
