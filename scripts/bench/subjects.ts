/**
 * The subjects of issues 6 and 21 behind one interface. A FUSE subject mounts
 * afresh for every run (fcfs's HBA counters have no reset yet, so a fresh
 * mount is what makes "peak outstanding" and RSS belong to one workload),
 * runs the fio job over its files, reads the counters and unmounts in a
 * finally. The direct subject runs its worker process instead of fio.
 */
import { existsSync } from 'node:fs'
import { chown, mkdtemp, rm, rmdir, mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ChildProcess } from 'node:child_process'
import { CEILING_FILE_SIZE, isRead, LUN_SIZE, QUEUE_FILES, queueFileJob, REGION, regionOf, TARGETS, type Link, type Run, type SubjectName, type Timing, type Workload } from './plan.js'
import { fioJobFile, fioPerJobFile, prefillJobFile, runFio } from './fio.js'
import { cpuMeter, forceUnmount, isMounted, memoryOf, onPath, register, run, spawnServer, stopChild, waitFor, type RunAs } from './proc.js'
import { ensureBenchUser, rootAccess, userAccess, type BenchUser, type MountAccess } from './user.js'
import { directSupportsLink, directUnavailable, type DirectVia, type WorkerInput, type WorkerOutput } from './direct.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
export const REPO_ROOT = path.resolve(HERE, '..', '..', '..')

/**
 * The compiled tree the children run from. Others may rebuild dist/ while a
 * long run goes on, so the bench can point this at a snapshot it took first.
 */
let distRoot = path.join(REPO_ROOT, 'dist')
export function useDist(dir: string): void {
  distRoot = dir
}
export const fcfsCli = (): string => path.join(distRoot, 'src', 'cli.js')
const ceilingServer = (): string => path.join(distRoot, 'scripts', 'bench', 'ceiling-server.js')
const directWorker = (): string => path.join(distRoot, 'scripts', 'bench', 'direct.js')
/** scripts/direct-rate.ts, the command-rate step. */
export const directRateScript = (): string => path.join(distRoot, 'scripts', 'direct-rate.js')

export interface Measurement {
  run: Run
  status: 'ok' | 'skipped' | 'error'
  note?: string
  /** bytes/s */
  bw?: number
  iops?: number
  /** completion latency, µs */
  p50?: number
  p99?: number
  /** CPU of the serving process(es), percent of one core */
  cpu?: number | null
  /** bytes, at the end of the run */
  rss?: number | null
  /** peak RSS (VmHWM), bytes */
  hwm?: number | null
  /** fcfs/direct: the HBA's peak commands outstanding during the run */
  peakOutstanding?: number | null
  /** fio's own CPU (the client), percent of one core */
  clientCpu?: number
  seconds?: number
}

export interface RunContext {
  timing: Timing
  /** directory for fio job files and CPU profiles */
  workDir: string
  /** write the regions once before a read workload (reads then move data, not sparse zeros) */
  prefill: boolean
  /**
   * write the regions once before a write workload too: the run then measures overwrites,
   * not a fresh mount's RAM backend taking new memory from the OS (page faults on the
   * server's main thread), which the subjects after it would find already backed
   */
  prefillWrites: boolean
  /** node --cpu-prof the fcfs process into this directory */
  profileDir?: string
  /** called with each child (fio, worker) so SIGINT can kill it */
  onChild?: (p: ChildProcess) => void
}

export interface Subject {
  name: SubjectName
  /** null when the subject can run, else why not (the report shows it) */
  unavailable(): Promise<string | null>
  /** null when the subject can run at this link, else why not */
  linkUnsupported(link: Link): string | null
  /** null when the subject can run this workload, else why not (queue files need more names per LUN) */
  workloadUnsupported(w: Workload): string | null
  run(r: Run, ctx: RunContext): Promise<Measurement>
}

// ---------------------------------------------------------------------------
// Mounted FUSE subjects

interface Mounted {
  /** one per target */
  files: string[]
  /** queue-file workloads: the k-th extra name of target t's LUN (its own inode) */
  queueFile?: (target: number, k: number) => string
  pids: number[]
  /** fcfs: zero the HBA counters before the run */
  reset?: () => Promise<void>
  /** fcfs: the HBA counters after the run */
  hbaStats?: () => Promise<Record<string, unknown> | null>
  /** the mount belongs to this ordinary user: fio runs as it, files are reached through `access` */
  as?: RunAs
  access?: MountAccess
  /** where fio's job files go (the user's run directory; default: the bench's work directory) */
  jobDir?: string
  stop(): Promise<void>
  /** after stop: what the server said of the run, for the run's note */
  note?: () => string | undefined
}

export async function tmpDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix))
}

/** Removes a run's temporary directory, unless one of its mountpoints is still mounted. */
export async function removeDir(dir: string, mnts: string[]): Promise<void> {
  for (const m of mnts) {
    if (await isMounted(m)) return // never rm -r through a live mount
    await rmdir(m).catch(() => undefined)
  }
  await rm(dir, { recursive: true, force: true })
}

/** Queue-file workloads: job j on its own name of target j mod TARGETS's LUN, in the region it has without. */
function queuePlacement(w: Workload, m: Mounted): Array<{ file: string; offset: number }> {
  if (!m.queueFile) throw new Error(`${w.id}: this subject has no queue files`)
  return Array.from({ length: w.jobs }, (_, j) => {
    const q = queueFileJob(j, m.files.length)
    return { file: m.queueFile!(q.target, q.k), offset: q.region * REGION }
  })
}

/** Whether the regions of `w` are written once (untimed) before it runs. */
function prefillFor(w: Workload, ctx: RunContext): boolean {
  return isRead(w) ? ctx.prefill : ctx.prefillWrites
}

async function measureFio(r: Run, ctx: RunContext, m: Mounted, jobName: string): Promise<Measurement> {
  const perJob = r.workload.queueFiles ? queuePlacement(r.workload, m) : null
  // A file that is not on a mount would be written on the local disk: refuse.
  const missing = await (m.access ?? rootAccess).missing([...m.files, ...(perJob ?? []).map((j) => j.file)])
  if (missing) throw new Error(`${missing} does not exist${m.as ? ` (for ${m.as.user})` : ''}`)
  const text = perJob ? fioPerJobFile(r.workload, perJob, ctx.timing) : fioJobFile(r.workload, m.files, ctx.timing, regionOf(r.workload))
  const jobDir = m.jobDir ?? ctx.workDir
  if (prefillFor(r.workload, ctx)) {
    await runFio(path.join(jobDir, `${jobName}.prefill.fio`), prefillJobFile(r.workload, m.files, regionOf(r.workload)), { runtime: 60, ramp: 0 }, ctx.onChild, m.as)
  }
  await m.reset?.()
  const cpu = cpuMeter(m.pids)
  const t0 = Date.now()
  const fio = await runFio(path.join(jobDir, `${jobName}.fio`), text, ctx.timing, ctx.onChild, m.as)
  const cpuPct = cpu.stop()
  const mem = memoryOf(m.pids)
  const stats = (await m.hbaStats?.()) ?? null
  return {
    run: r,
    status: 'ok',
    bw: fio.bw,
    iops: fio.iops,
    p50: fio.p50,
    p99: fio.p99,
    cpu: cpuPct,
    rss: mem?.rss ?? null,
    hwm: mem?.hwm ?? null,
    peakOutstanding: typeof stats?.peakOutstanding === 'number' ? stats.peakOutstanding : stats ? null : undefined,
    clientCpu: fio.clientCpu,
    seconds: (Date.now() - t0) / 1000,
  }
}

async function runMounted(r: Run, ctx: RunContext, mount: () => Promise<Mounted>): Promise<Measurement> {
  const m = await mount()
  let res: Measurement
  try {
    res = await measureFio(r, ctx, m, r.id.replace(/[^\w.-]+/g, '_'))
  } finally {
    await m.stop()
  }
  const said = m.note?.()
  return said ? { ...res, note: [res.note, said].filter(Boolean).join('; ') } : res
}

// ---------------------------------------------------------------------------
// fcfs

export interface FcfsProbe {
  built: boolean
  /** `fcfs mount --link` exists */
  link: boolean
  /** `fcfs mount --queue-files` exists (lun/<n>/q/<k>) */
  queueFiles: boolean
}

export async function probeFcfs(): Promise<FcfsProbe> {
  if (!existsSync(fcfsCli())) return { built: false, link: false, queueFiles: false }
  const help = await run(process.execPath, [fcfsCli(), 'mount', '--help']).catch(() => null)
  const text = help ? help.stdout + help.stderr : ''
  return { built: true, link: /--link\b/.test(text), queueFiles: /--queue-files\b/.test(text) }
}

export interface FcfsSubjectOptions {
  /** 'fcfs-pc': the same server mounted with --page-cache; 'fcfs-user': mounted by an ordinary user */
  name?: 'fcfs' | 'fcfs-pc' | 'fcfs-user'
  /** fcfs's --fuse-engine (undefined: fcfs's default, or FCFS_FUSE_ENGINE from the environment) */
  engine?: 'native' | 'raw'
  /** mount with --page-cache */
  pageCache?: boolean
  /** mount with --write-cache (undefined: fcfs's default, off) */
  writeCache?: 'volatile' | 'off'
  /** 'file': every LUN in a sparse file in the run's temp directory (--backing-dir); default sparse RAM */
  backend?: 'ram' | 'file'
  /**
   * Every LUN's store made slow under its write cache (config "medium", src/targets/medium.ts):
   * the mount gets a config file of the same fabric (TARGETS LUNs of LUN_SIZE) instead of --targets.
   */
  medium?: { latency?: string; bandwidth?: string }
  /** gets each mount's `fuse_engine:` (<mnt>/server) */
  enginesSeen?: Set<string>
  /** gets each mount's `page_cache:` (on|off) */
  pageCacheSeen?: Set<string>
  /**
   * Mount as this ordinary user (created when missing; the bench must be root) and run
   * fio as it. The mount is closed to root then (no allow_other): the bench reads its
   * files through children run as the user.
   */
  user?: string
  /** gets the user once it is ready, and what the bench changed for it */
  onUser?: (u: BenchUser) => void
}

export function fcfsSubject(probe: FcfsProbe, opts: FcfsSubjectOptions = {}): Subject {
  const { engine, enginesSeen, pageCache = false, pageCacheSeen, writeCache, backend = 'ram', medium } = opts
  let user: BenchUser | undefined
  const unavailable = async (): Promise<string | null> => {
    if (!probe.built) return `${path.relative(REPO_ROOT, fcfsCli())} is not built (npm run build)`
    if (!opts.user) return null
    const u = await ensureBenchUser(opts.user)
    if (typeof u === 'string') return u
    // The user must reach node, the compiled tree and node_modules.
    const r = await run(process.execPath, [fcfsCli(), 'mount', '--help'], { as: u.as, timeoutMs: 60_000 }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }))
    if (r.code !== 0) return `${u.as.user} cannot run ${fcfsCli()}: ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`
    user = u
    opts.onUser?.(u)
    return null
  }
  return {
    name: opts.name ?? 'fcfs',
    unavailable,
    linkUnsupported: (link) => (link === 'unlimited' || probe.link ? null : '`fcfs mount --link` does not exist yet'),
    workloadUnsupported: (w) => (!w.queueFiles || probe.queueFiles ? null : '`fcfs mount --queue-files` (lun/<n>/q/<k>) does not exist yet'),
    run: (r, ctx) =>
      runMounted(r, ctx, async () => {
        if (opts.user && !user) throw new Error(`${opts.user}: the user is not ready (unavailable() was not asked)`)
        const as = user?.as
        const access = as ? userAccess(as) : rootAccess
        const dir = await tmpDir('fcfs-bench-')
        const mnt = path.join(dir, 'mnt')
        await mkdir(mnt)
        // An ordinary user mounts only on a directory it owns; fio's job files go there too.
        if (as) for (const d of [dir, mnt]) await chown(d, as.uid, as.gid)
        const node: string[] = []
        // Profiles are summarised for the fcfs subject only (and the user could not write them).
        if (ctx.profileDir && !as) node.push('--cpu-prof', '--cpu-prof-dir', ctx.profileDir, '--cpu-prof-name', `${r.id.replace(/[^\w.-]+/g, '_')}.cpuprofile`)
        const args = [...node, fcfsCli(), 'mount', mnt, '--log-level', 'warn']
        if (medium) {
          // --config excludes --targets, --size and --backing-dir: the same fabric, in the file.
          const config = {
            defaults: { size: `${LUN_SIZE / 1024 ** 3}GiB`, ...(backend === 'file' ? { backingDir: path.join(dir, 'backing') } : {}) },
            targets: Array.from({ length: TARGETS }, () => ({ luns: [{ medium }] })),
          }
          const file = path.join(dir, 'fabric.json')
          await writeFile(file, JSON.stringify(config))
          if (as) await chown(file, as.uid, as.gid)
          args.push('--config', file)
        } else {
          args.push('--targets', String(TARGETS), '--size', `${LUN_SIZE / 1024 ** 3}GiB`)
          // Inside `dir`, so the files go when the run's directory does.
          if (backend === 'file') args.push('--backing-dir', path.join(dir, 'backing'))
        }
        if (probe.link) args.push('--link', r.link)
        if (probe.queueFiles && r.workload.queueFiles) args.push('--queue-files', String(QUEUE_FILES))
        if (engine) args.push('--fuse-engine', engine)
        if (pageCache) args.push('--page-cache')
        if (writeCache) args.push('--write-cache', writeCache)
        let proc: ChildProcess | undefined
        const stop = async (): Promise<void> => {
          if (proc) await stopChild(proc, 15_000)
          await forceUnmount(mnt)
          await removeDir(dir, [mnt])
        }
        const entry = { mnt, proc: undefined as ChildProcess | undefined, stop }
        const unregister = register(entry)
        try {
          const s = await spawnServer(process.execPath, args, (out) => out.split('\n').some((l) => l.trimEnd() === `fcfs mounted at ${mnt}`), 20_000, as)
          proc = entry.proc = s.proc
          const wwpns = (await access.list(path.join(mnt, 'wwn'))).filter((n) => /^[0-9a-f]{16}$/.test(n)).sort()
          const server = await access.read(path.join(mnt, 'server')).catch(() => '')
          const said = /^fuse_engine:\s*(\S+)/m.exec(server)
          if (said) enginesSeen?.add(said[1])
          pageCacheSeen?.add(/^page_cache:\s*(\S+)/m.exec(server)?.[1] ?? 'off')
          return {
            files: wwpns.map((w) => path.join(mnt, 'wwn', w, 'rwbuf')),
            queueFile: (t, k) => path.join(mnt, 'wwn', wwpns[t], 'lun', '0', 'q', String(k)),
            pids: [proc.pid!],
            as,
            access,
            jobDir: as ? dir : undefined,
            // Counters start at the workload, not at the SCSI scan (hba/0/control `reset`, when present).
            reset: async () => {
              await access.write(path.join(mnt, 'hba', '0', 'control'), 'reset\n').catch(() => undefined)
            },
            hbaStats: async () => {
              try {
                return JSON.parse(await access.read(path.join(mnt, 'hba', '0', 'stats.json'))) as Record<string, unknown>
              } catch {
                return null
              }
            },
            stop: async () => {
              await stop()
              unregister()
            },
          }
        } catch (e) {
          await stop()
          unregister()
          throw e
        }
      }),
  }
}

// ---------------------------------------------------------------------------
// The two ceilings: one server process over the tree <mnt>/f<i> and its aliases <mnt>/f<i>.q<k>

interface TreeServer {
  cmd: string
  args: (mnt: string) => string[]
  /** stdout says this when it serves */
  ready: (mnt: string) => string
  /** what the server said on its way out, for the run's note */
  note?: (output: string) => string | undefined
}

function treeServerSubject(name: 'ceiling' | 'c', unavailable: () => Promise<string | null>, server: () => TreeServer): Subject {
  return {
    name,
    unavailable,
    linkUnsupported: (link) => (link === 'unlimited' ? null : 'no link model'),
    workloadUnsupported: () => null,
    run: (r, ctx) =>
      runMounted(r, ctx, async () => {
        const srv = server()
        const dir = await tmpDir(`fcfs-bench-${name}-`)
        const mnt = path.join(dir, 'mnt')
        await mkdir(mnt)
        let proc: ChildProcess | undefined
        let output = (): string => ''
        const stop = async (): Promise<void> => {
          if (proc) await stopChild(proc, 10_000)
          await forceUnmount(mnt)
          await removeDir(dir, [mnt])
        }
        const entry = { mnt, proc: undefined as ChildProcess | undefined, stop }
        const unregister = register(entry)
        try {
          const s = await spawnServer(srv.cmd, srv.args(mnt), (out) => out.includes(srv.ready(mnt)))
          proc = entry.proc = s.proc
          output = s.output
          return {
            files: Array.from({ length: TARGETS }, (_, i) => path.join(mnt, `f${i}`)),
            // f<i>.q<k>: the same memory under a name (an inode) of its own.
            queueFile: (t, k) => path.join(mnt, `f${t}.q${k}`),
            pids: [proc.pid!],
            stop: async () => {
              await stop()
              unregister()
            },
            note: () => srv.note?.(output()),
          }
        } catch (e) {
          await stop()
          unregister()
          throw e
        }
      }),
  }
}

/** The fuse-native ceiling (scripts/bench/ceiling-server.ts), mounted with fcfs's option string. */
export function ceilingSubject(): Subject {
  return treeServerSubject(
    'ceiling',
    async () => (existsSync(ceilingServer()) ? null : `${ceilingServer()} is not built`),
    () => ({
      cmd: process.execPath,
      args: (mnt) => [ceilingServer(), mnt, String(TARGETS), String(CEILING_FILE_SIZE)],
      ready: (mnt) => `ceiling mounted at ${mnt}`,
    }),
  )
}

/** scripts/bench/c-ceiling.c, compiled by the bench when it starts (read from the checkout, not dist/). */
export const C_CEILING_SOURCE = path.join(REPO_ROOT, 'scripts', 'bench', 'c-ceiling.c')
/** The C ceiling's worker threads (libfuse's max_threads): more than two cores can keep busy. */
export const C_CEILING_THREADS = 16
/** The packages the C ceiling needs to build, as Debian names them. */
export const C_BUILD_PACKAGES = ['gcc', 'libfuse3-dev', 'pkg-config'] as const

/** Why the C ceiling cannot be built here (gcc, pkg-config, libfuse3's fuse3.pc), or null. */
export async function cBuildToolsMissing(): Promise<string | null> {
  const missing: string[] = []
  if (!onPath('gcc')) missing.push('gcc')
  if (!onPath('pkg-config')) missing.push('pkg-config')
  else if ((await run('pkg-config', ['--exists', 'fuse3']).catch(() => ({ code: 1 }))).code !== 0) missing.push('libfuse3-dev (pkg-config fuse3)')
  return missing.length ? `${missing.join(', ')} not installed (apt-get install ${C_BUILD_PACKAGES.join(' ')}; the bench installs them itself when run as root)` : null
}

/** Compiles the C ceiling into a temporary directory the bench removes at its end: the binary, or why not. */
export async function buildCCeiling(): Promise<{ binary: string } | { why: string }> {
  const missing = await cBuildToolsMissing()
  if (missing) return { why: missing }
  if (!existsSync(C_CEILING_SOURCE)) return { why: `${C_CEILING_SOURCE} is missing` }
  const flags = await run('pkg-config', ['--cflags', '--libs', 'fuse3'])
  const dir = await tmpDir('fcfs-bench-c-')
  register({ stop: () => rm(dir, { recursive: true, force: true }) })
  const binary = path.join(dir, 'c-ceiling')
  const r = await run('gcc', ['-O2', '-Wall', '-o', binary, C_CEILING_SOURCE, ...flags.stdout.trim().split(/\s+/).filter(Boolean)], { timeoutMs: 120_000 })
  if (r.code !== 0) return { why: `gcc failed on ${path.relative(REPO_ROOT, C_CEILING_SOURCE)}: ${r.stderr.trim().split('\n').slice(-4).join(' / ')}` }
  return { binary }
}

/** The C libfuse 3 ceiling (scripts/bench/c-ceiling.c), built when the bench starts. */
export function cSubject(): Subject {
  let built: { binary: string } | { why: string } | undefined
  return treeServerSubject(
    'c',
    async () => {
      built ??= await buildCCeiling()
      return 'why' in built ? built.why : null
    },
    () => {
      if (!built || 'why' in built) throw new Error('the C ceiling is not built (unavailable() was not asked)')
      const binary = built.binary
      return {
        cmd: binary,
        args: (mnt) => [mnt, String(TARGETS), String(CEILING_FILE_SIZE), String(C_CEILING_THREADS), '1'],
        ready: (mnt) => `c-ceiling mounted at ${mnt}`,
        // Shows that 1 MiB requests and parallel writes to one file took effect.
        note: (out) => /^c-ceiling: (largest READ .*)$/m.exec(out)?.[1],
      }
    },
  )
}

/** apt-get install gcc, libfuse3-dev and pkg-config when one is missing and we are root (with gcc's recommended libc6-dev). */
export async function ensureCBuildTools(log: (s: string) => void): Promise<void> {
  if (!(await cBuildToolsMissing())) return
  if (process.getuid?.() !== 0 || !onPath('apt-get')) return
  await aptInstall([...C_BUILD_PACKAGES], log)
}

/** apt-get install, once more after an apt-get update when the lists are stale. */
async function aptInstall(pkgs: string[], log: (s: string) => void): Promise<void> {
  log(`installing ${pkgs.join(', ')} with apt-get …`)
  const env = ['DEBIAN_FRONTEND=noninteractive']
  const install = (): Promise<{ code: number; stderr: string } | null> =>
    run('env', [...env, 'apt-get', 'install', '-y', '-q', ...pkgs], { timeoutMs: 300_000 }).catch(() => null)
  let r = await install()
  if (!r || r.code !== 0) {
    await run('env', [...env, 'apt-get', 'update', '-q'], { timeoutMs: 300_000 }).catch(() => null)
    r = await install()
  }
  if (!r || r.code !== 0) log(`apt-get install failed: ${(r?.stderr ?? '').trim().slice(-300)}`)
}

// ---------------------------------------------------------------------------
// peer: nbdkit memory plugin + nbdfuse, one pair per target

export function peerSubject(): Subject {
  return {
    name: 'peer',
    unavailable: async () => {
      const missing = ['nbdkit', 'nbdfuse'].filter((b) => !onPath(b))
      if (!missing.length) return null
      return `${missing.join(' and ')} not installed (apt-get install nbdkit libnbd-bin; the bench installs them itself when run as root)`
    },
    linkUnsupported: (link) => (link === 'unlimited' ? null : 'no link model'),
    workloadUnsupported: (w) => (w.queueFiles ? 'nbdfuse serves one file per export and has no aliases: no queue files' : null),
    run: (r, ctx) =>
      runMounted(r, ctx, async () => {
        const dir = await tmpDir('fcfs-bench-peer-')
        const procs: ChildProcess[] = []
        const mnts: string[] = []
        const stop = async (): Promise<void> => {
          // Unmounting makes nbdfuse exit; nbdkit goes when asked (or with its parent).
          for (const m of mnts) await forceUnmount(m)
          for (const p of procs.reverse()) await stopChild(p, 5_000)
          await removeDir(dir, mnts)
        }
        const unregister = register({ mnt: undefined, stop })
        try {
          const files: string[] = []
          for (let i = 0; i < TARGETS; i++) {
            const sock = path.join(dir, `t${i}.sock`)
            const mnt = path.join(dir, `t${i}`)
            const pidfile = path.join(dir, `t${i}.pid`)
            await mkdir(mnt)
            const kit = await spawnServer('nbdkit', ['-U', sock, '-f', '--exit-with-parent', 'memory', String(LUN_SIZE)], () => true)
            procs.push(kit.proc)
            await waitFor(async () => existsSync(sock), 10_000, `nbdkit socket ${sock}`)
            const fuse = await spawnServer('nbdfuse', ['-P', pidfile, `${mnt}/nbd`, `nbd+unix:///?socket=${sock}`], () => true)
            procs.push(fuse.proc)
            mnts.push(mnt)
            await waitFor(async () => existsSync(pidfile) && (await isMounted(mnt)), 10_000, `nbdfuse on ${mnt}`)
            files.push(path.join(mnt, 'nbd'))
          }
          return {
            files,
            pids: procs.map((p) => p.pid!),
            stop: async () => {
              await stop()
              unregister()
            },
          }
        } catch (e) {
          await stop()
          unregister()
          throw e
        }
      }),
  }
}

/** apt-get install nbdkit + libnbd-bin (nbdfuse) when missing and we are root. */
export async function ensurePeerInstalled(log: (s: string) => void): Promise<void> {
  if (onPath('nbdkit') && onPath('nbdfuse')) return
  if (process.getuid?.() !== 0 || !onPath('apt-get')) return
  await aptInstall(['nbdkit', 'libnbd-bin'], log)
}

// ---------------------------------------------------------------------------
// direct

export function directSubject(via: DirectVia): Subject {
  return {
    name: 'direct',
    unavailable: () => directUnavailable(via),
    linkUnsupported: (link) => (directSupportsLink(via, link) ? null : `--direct-via ${via} has no link model`),
    // The plan gives it none: with no files there is nothing to alias (its shared-file figure stands for -q).
    workloadUnsupported: (w) => (w.queueFiles ? 'no files: the run without -q is the same workload' : null),
    run: async (r, ctx) => {
      const input: WorkerInput = {
        via,
        open: { targets: TARGETS, size: LUN_SIZE, link: r.link },
        workload: r.workload,
        runtime: ctx.timing.runtime,
        ramp: ctx.timing.ramp,
        prefill: prefillFor(r.workload, ctx),
      }
      const t0 = Date.now()
      const res = await run(process.execPath, [directWorker(), JSON.stringify(input)], {
        timeoutMs: (ctx.timing.runtime + ctx.timing.ramp + 120) * 1000,
        onSpawn: ctx.onChild,
      })
      if (res.code !== 0) throw new Error(`direct worker exited ${res.code}: ${res.stderr.trim().slice(-800)}`)
      const out = JSON.parse(res.stdout.trim().split('\n').pop()!) as WorkerOutput
      return {
        run: r,
        status: 'ok',
        bw: out.bw,
        iops: out.iops,
        p50: out.p50,
        p99: out.p99,
        cpu: out.cpu,
        rss: out.rss,
        hwm: out.hwm,
        peakOutstanding: out.peakOutstanding,
        seconds: (Date.now() - t0) / 1000,
      }
    },
  }
}
