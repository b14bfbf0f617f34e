// Start a real fcfs server on a temporary mountpoint and tear it down again.
//
// Every test file does:
//
//   let fab: Fcfs
//   beforeAll(async () => { requireFuse(); fab = await startFcfs({ args: ['--targets', '3'] }) })
//   afterAll(async () => { await fab?.stop() })
//
// and importing this module also registers an afterAll safety net that stops (and
// `fusermount -uz`s) every fabric a test forgot or failed to stop, plus a process
// exit hook that does the same synchronously if the worker dies.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, accessSync, constants as fsConstants } from 'node:fs'
import { chown, mkdtemp, readdir, readFile, realpath, rm, rmdir, writeFile, mkdir } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll } from 'vitest'

export { run, runOk, sh, python, q, type RunResult, type RunOptions } from './run.js'
import { runOk } from './run.js'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
/** The CLI under test; FCFS_CLI overrides it (e.g. to try the tests against a stand-in). */
export const CLI = process.env.FCFS_CLI ? path.resolve(process.env.FCFS_CLI) : path.join(REPO_ROOT, 'dist', 'src', 'cli.js')

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

/** The default fabric's target ports, as documented. */
export const DEFAULT_WWPNS = ['21000024ff000001', '21000024ff000002'] as const

const BANNER_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 15_000

export interface StartOptions {
  /** Extra arguments after `mount <mnt>`. */
  args?: string[]
  /** A fabric config: an object is written to `<tmp>/fabric.json`; a string is used as the path. */
  config?: object | string
  /** Extra environment for the server. */
  env?: NodeJS.ProcessEnv
  /** Create `<tmp>/mnt` before starting (default true); false tests that the CLI creates it. */
  createMountpoint?: boolean
  /** Give up waiting for the banner after this many ms (default 20 s). */
  bannerTimeoutMs?: number
  /** Run the server as this ordinary user (the temp dir and mountpoint become theirs): an unprivileged mount. */
  user?: { uid: number; gid: number }
}

export interface Fcfs {
  /** Absolute, realpath'd mountpoint. */
  mnt: string
  /** The temporary directory holding mnt (and fabric.json); free for scratch files. */
  tmp: string
  proc: ChildProcess
  /** The target directories under `<mnt>/wwn`, sorted. */
  wwpns: string[]
  /** `<mnt>/wwn/<wwpns[i]>/rwbuf` */
  rwbuf(i: number): string
  /** Everything the server printed to stdout so far. */
  stdout(): string
  stderr(): string
  /** Parsed pino records (stdout lines that start with `{`). */
  logs(): Record<string, unknown>[]
  /** Resolves with the exit code once the server has exited (128+n for signal n). */
  exited: Promise<number>
  /** SIGTERM, wait for exit, force-unmount if still mounted, remove the temp dir. */
  stop(signal?: NodeJS.Signals): Promise<number>
}

// ---------------------------------------------------------------------------
// Registry and safety net

interface Live {
  mnt: string
  tmp: string
  proc: ChildProcess
}
const live = new Set<Live>()

afterAll(async () => {
  await cleanupAll()
})

process.on('exit', () => {
  // Last resort if the worker is torn down without running hooks: synchronous is
  // fine here, the server is another process.
  for (const l of live) {
    try { l.proc.kill('SIGKILL') } catch { /* gone */ }
    spawnSync('fusermount', ['-uz', l.mnt], { stdio: 'ignore' })
  }
})

/** Stop everything still registered; returns the mountpoints that had to be cleaned. */
export async function cleanupAll(): Promise<string[]> {
  const cleaned: string[] = []
  for (const l of [...live]) {
    cleaned.push(l.mnt)
    try { l.proc.kill('SIGTERM') } catch { /* gone */ }
    await waitExit(l.proc, 5_000)
    if (l.proc.exitCode === null && l.proc.signalCode === null) {
      try { l.proc.kill('SIGKILL') } catch { /* gone */ }
      await waitExit(l.proc, 5_000)
    }
    await forceUnmount(l.mnt)
    await removeTmp(l.tmp, l.mnt)
    live.delete(l)
  }
  return cleaned
}

// ---------------------------------------------------------------------------
// Preconditions

/**
 * Throw (not skip) when the machine cannot run end-to-end tests: a skipped e2e suite
 * reads as green in CI, which is exactly the lie these tests exist to prevent.
 */
export function requireFuse(): void {
  const problems: string[] = []
  if (!existsSync('/dev/fuse')) problems.push('/dev/fuse does not exist (modprobe fuse, or run the container with --device /dev/fuse --cap-add SYS_ADMIN)')
  else {
    try { accessSync('/dev/fuse', fsConstants.R_OK | fsConstants.W_OK) } catch { problems.push('/dev/fuse is not readable and writable by this user') }
  }
  if (!onPath('fusermount')) problems.push('fusermount is not on PATH (apt-get install fuse)')
  if (!existsSync(CLI)) problems.push(`${path.relative(REPO_ROOT, CLI)} is not built (run: npm run build)`)
  if (!onPath('python3')) problems.push('python3 is not on PATH (apt-get install python3)')
  if (problems.length) throw new Error(`fcfs end-to-end tests cannot run:\n  - ${problems.join('\n  - ')}`)
}

function onPath(bin: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(path.join(dir, bin))) return true
  }
  return false
}

// ---------------------------------------------------------------------------
// Mount table

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
}

/** Mountpoints from /proc/mounts (fuse ones only when fuseOnly). */
export async function mountPoints(fuseOnly = false): Promise<string[]> {
  const text = await readFile('/proc/mounts', 'utf8')
  const out: string[] = []
  for (const line of text.split('\n')) {
    const f = line.split(' ')
    if (f.length < 3) continue
    if (fuseOnly && !f[2].startsWith('fuse')) continue
    out.push(unescapeMount(f[1]))
  }
  return out
}

export async function isMounted(mnt: string): Promise<boolean> {
  return (await mountPoints()).includes(mnt)
}

export async function forceUnmount(mnt: string): Promise<void> {
  if (!(await isMounted(mnt))) return
  await new Promise<void>((resolve) => {
    const c = spawn('fusermount', ['-uz', mnt], { stdio: 'ignore' })
    c.on('error', () => resolve())
    c.on('close', () => resolve())
  })
}

async function removeTmp(tmp: string, mnt: string): Promise<void> {
  // Never rm -rf through a live mount: that would recurse into the device files.
  if (await isMounted(mnt)) return
  try { await rmdir(mnt) } catch { /* absent or not empty */ }
  await rm(tmp, { recursive: true, force: true })
}

function waitExit(proc: ChildProcess, ms: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const t = setTimeout(done, ms)
    proc.once('exit', done)
    function done() {
      clearTimeout(t)
      proc.off('exit', done)
      resolve()
    }
  })
}

function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code
  const n = signal ? os.constants.signals[signal] : undefined
  return n ? 128 + n : 128
}

// ---------------------------------------------------------------------------
// Start

/** Make a temp dir (under os.tmpdir()) for scratch files; removed by the caller. */
export async function makeTmp(prefix = 'fcfs-e2e-'): Promise<string> {
  return realpath(await mkdtemp(path.join(os.tmpdir(), prefix)))
}

export async function startFcfs(opts: StartOptions = {}): Promise<Fcfs> {
  const tmp = await makeTmp()
  const mnt = path.join(tmp, 'mnt')
  if (opts.createMountpoint !== false) await mkdir(mnt)
  if (opts.user) {
    await chown(tmp, opts.user.uid, opts.user.gid)
    if (opts.createMountpoint !== false) await chown(mnt, opts.user.uid, opts.user.gid)
  }

  const args = [CLI, 'mount', mnt, ...(opts.args ?? [])]
  if (opts.config !== undefined) {
    let cfgPath: string
    if (typeof opts.config === 'string') cfgPath = opts.config
    else {
      cfgPath = path.join(tmp, 'fabric.json')
      await writeFile(cfgPath, JSON.stringify(opts.config, null, 2))
    }
    args.push('--config', cfgPath)
  }

  const proc = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.user ? { uid: opts.user.uid, gid: opts.user.gid } : {}),
  })
  const entry: Live = { mnt, tmp, proc }
  live.add(entry)

  let out = ''
  let err = ''
  proc.stdout!.setEncoding('utf8')
  proc.stderr!.setEncoding('utf8')
  proc.stdout!.on('data', (s: string) => { out += s })
  proc.stderr!.on('data', (s: string) => { err += s })

  const exited = new Promise<number>((resolve) => {
    proc.on('exit', (code, signal) => resolve(exitCodeOf(code, signal)))
    proc.on('error', () => resolve(127))
  })

  const bannerLine = `fcfs mounted at ${mnt}`
  const timeoutMs = opts.bannerTimeoutMs ?? BANNER_TIMEOUT_MS
  const outcome = await new Promise<'ready' | 'exited' | 'timeout'>((resolve) => {
    const check = () => {
      if (out.split('\n').some((l) => l.trimEnd() === bannerLine)) finish('ready')
    }
    const timer = setTimeout(() => finish('timeout'), timeoutMs)
    const onExit = () => setImmediate(() => { check(); finish('exited') })
    proc.stdout!.on('data', check)
    proc.once('exit', onExit)
    check()
    function finish(o: 'ready' | 'exited' | 'timeout') {
      clearTimeout(timer)
      proc.stdout!.off('data', check)
      proc.off('exit', onExit)
      resolve(o)
    }
  })

  const fail = async (why: string): Promise<never> => {
    try { proc.kill('SIGKILL') } catch { /* gone */ }
    await waitExit(proc, 5_000)
    await forceUnmount(mnt)
    await removeTmp(tmp, mnt)
    live.delete(entry)
    throw new Error(
      `fcfs did not mount (${why}): node ${args.join(' ')}\n` +
      `expected a stdout line: ${bannerLine}\n--- stdout ---\n${out.slice(-4000)}\n--- stderr ---\n${err.slice(-4000)}`,
    )
  }
  if (outcome === 'timeout') return fail(`no banner within ${timeoutMs} ms`)
  if (outcome === 'exited') return fail(`server exited with ${exitCodeOf(proc.exitCode, proc.signalCode)} before the banner`)

  let wwpns: string[]
  try {
    // Another user's mount (without allow_other) is closed even to root: list it as its user.
    const names = opts.user
      ? (await runOk('setpriv', [`--reuid=${opts.user.uid}`, `--regid=${opts.user.gid}`, '--clear-groups', 'ls', path.join(mnt, 'wwn')])).stdout.split('\n')
      : await readdir(path.join(mnt, 'wwn'))
    wwpns = names.filter((n) => /^[0-9a-f]{16}$/.test(n)).sort()
  } catch (e) {
    return fail(`cannot list ${mnt}/wwn: ${(e as Error).message}`)
  }

  let stopping: Promise<number> | undefined
  const fab: Fcfs = {
    mnt,
    tmp,
    proc,
    wwpns,
    exited,
    rwbuf: (i: number) => {
      if (!wwpns[i]) throw new Error(`no target #${i}; targets are ${wwpns.join(', ')}`)
      return path.join(mnt, 'wwn', wwpns[i], 'rwbuf')
    },
    stdout: () => out,
    stderr: () => err,
    logs: () => parseLogs(out),
    stop: (signal: NodeJS.Signals = 'SIGTERM') => {
      stopping ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill(signal)
          await waitExit(proc, STOP_TIMEOUT_MS)
        }
        if (proc.exitCode === null && proc.signalCode === null) {
          proc.kill('SIGKILL')
          await waitExit(proc, 5_000)
        }
        const code = await exited
        await forceUnmount(mnt)
        await removeTmp(tmp, mnt)
        live.delete(entry)
        return code
      })()
      return stopping
    },
  }
  return fab
}

export function parseLogs(stdout: string): Record<string, unknown>[] {
  const recs: Record<string, unknown>[] = []
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    try { recs.push(JSON.parse(line)) } catch { /* a torn line; the test that cares asserts on it */ }
  }
  return recs
}
