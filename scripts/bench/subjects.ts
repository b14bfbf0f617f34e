/**
 * The four subjects of issue 6 behind one interface. A FUSE subject mounts
 * afresh for every run (fcfs's HBA counters have no reset yet, so a fresh
 * mount is what makes "peak outstanding" and RSS belong to one workload),
 * runs the fio job over its files, reads the counters and unmounts in a
 * finally. The direct subject runs its worker process instead of fio.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, rmdir, mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ChildProcess } from 'node:child_process'
import { CEILING_FILE_SIZE, isRead, LUN_SIZE, QUEUE_FILES, queueFileJob, REGION, regionOf, TARGETS, type Link, type Run, type SubjectName, type Timing, type Workload } from './plan.js'
import { fioJobFile, fioPerJobFile, prefillJobFile, runFio } from './fio.js'
import { cpuMeter, forceUnmount, isMounted, memoryOf, onPath, register, run, spawnServer, stopChild, waitFor } from './proc.js'
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
  stop(): Promise<void>
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
  for (const f of [...m.files, ...(perJob ?? []).map((j) => j.file)]) {
    // A file that is not on a mount would be written on the local disk: refuse.
    if (!existsSync(f)) throw new Error(`${f} does not exist`)
  }
  const text = perJob ? fioPerJobFile(r.workload, perJob, ctx.timing) : fioJobFile(r.workload, m.files, ctx.timing, regionOf(r.workload))
  if (prefillFor(r.workload, ctx)) {
    await runFio(path.join(ctx.workDir, `${jobName}.prefill.fio`), prefillJobFile(r.workload, m.files, regionOf(r.workload)), { runtime: 60, ramp: 0 }, ctx.onChild)
  }
  await m.reset?.()
  const cpu = cpuMeter(m.pids)
  const t0 = Date.now()
  const fio = await runFio(path.join(ctx.workDir, `${jobName}.fio`), text, ctx.timing, ctx.onChild)
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
  try {
    return await measureFio(r, ctx, m, r.id.replace(/[^\w.-]+/g, '_'))
  } finally {
    await m.stop()
  }
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
  /** 'fcfs-pc': the same server mounted with --page-cache */
  name?: 'fcfs' | 'fcfs-pc'
  /** fcfs's --fuse-engine (undefined: fcfs's default, or FCFS_FUSE_ENGINE from the environment) */
  engine?: 'native' | 'raw'
  /** mount with --page-cache */
  pageCache?: boolean
  /** mount with --write-cache (undefined: fcfs's default, off) */
  writeCache?: 'volatile' | 'off'
  /** gets each mount's `fuse_engine:` (<mnt>/server) */
  enginesSeen?: Set<string>
  /** gets each mount's `page_cache:` (on|off) */
  pageCacheSeen?: Set<string>
}

export function fcfsSubject(probe: FcfsProbe, opts: FcfsSubjectOptions = {}): Subject {
  const { engine, enginesSeen, pageCache = false, pageCacheSeen, writeCache } = opts
  return {
    name: opts.name ?? 'fcfs',
    unavailable: async () => (probe.built ? null : `${path.relative(REPO_ROOT, fcfsCli())} is not built (npm run build)`),
    linkUnsupported: (link) => (link === 'unlimited' || probe.link ? null : '`fcfs mount --link` does not exist yet'),
    workloadUnsupported: (w) => (!w.queueFiles || probe.queueFiles ? null : '`fcfs mount --queue-files` (lun/<n>/q/<k>) does not exist yet'),
    run: (r, ctx) =>
      runMounted(r, ctx, async () => {
        const dir = await tmpDir('fcfs-bench-')
        const mnt = path.join(dir, 'mnt')
        await mkdir(mnt)
        const node: string[] = []
        if (ctx.profileDir) node.push('--cpu-prof', '--cpu-prof-dir', ctx.profileDir, '--cpu-prof-name', `${r.id.replace(/[^\w.-]+/g, '_')}.cpuprofile`)
        const args = [...node, fcfsCli(), 'mount', mnt, '--targets', String(TARGETS), '--size', `${LUN_SIZE / 1024 ** 3}GiB`, '--log-level', 'warn']
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
          const s = await spawnServer(process.execPath, args, (out) => out.split('\n').some((l) => l.trimEnd() === `fcfs mounted at ${mnt}`))
          proc = entry.proc = s.proc
          const wwpns = (await readdir(path.join(mnt, 'wwn'))).filter((n) => /^[0-9a-f]{16}$/.test(n)).sort()
          const server = await readFile(path.join(mnt, 'server'), 'utf8').catch(() => '')
          const said = /^fuse_engine:\s*(\S+)/m.exec(server)
          if (said) enginesSeen?.add(said[1])
          pageCacheSeen?.add(/^page_cache:\s*(\S+)/m.exec(server)?.[1] ?? 'off')
          return {
            files: wwpns.map((w) => path.join(mnt, 'wwn', w, 'rwbuf')),
            queueFile: (t, k) => path.join(mnt, 'wwn', wwpns[t], 'lun', '0', 'q', String(k)),
            pids: [proc.pid!],
            // Counters start at the workload, not at the SCSI scan (hba/0/control `reset`, when present).
            reset: async () => {
              const ctl = path.join(mnt, 'hba', '0', 'control')
              if (existsSync(ctl)) await writeFile(ctl, 'reset\n').catch(() => undefined)
            },
            hbaStats: async () => {
              try {
                return JSON.parse(await readFile(path.join(mnt, 'hba', '0', 'stats.json'), 'utf8')) as Record<string, unknown>
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
// ceiling

export function ceilingSubject(): Subject {
  return {
    name: 'ceiling',
    unavailable: async () => (existsSync(ceilingServer()) ? null : `${ceilingServer()} is not built`),
    linkUnsupported: (link) => (link === 'unlimited' ? null : 'no link model'),
    workloadUnsupported: () => null,
    run: (r, ctx) =>
      runMounted(r, ctx, async () => {
        const dir = await tmpDir('fcfs-bench-ceiling-')
        const mnt = path.join(dir, 'mnt')
        await mkdir(mnt)
        let proc: ChildProcess | undefined
        const stop = async (): Promise<void> => {
          if (proc) await stopChild(proc, 10_000)
          await forceUnmount(mnt)
          await removeDir(dir, [mnt])
        }
        const entry = { mnt, proc: undefined as ChildProcess | undefined, stop }
        const unregister = register(entry)
        try {
          const s = await spawnServer(process.execPath, [ceilingServer(), mnt, String(TARGETS), String(CEILING_FILE_SIZE)], (out) => out.includes(`ceiling mounted at ${mnt}`))
          proc = entry.proc = s.proc
          return {
            files: Array.from({ length: TARGETS }, (_, i) => path.join(mnt, `f${i}`)),
            // f<i>.q<k>: the same Buffer under a name (an inode) of its own.
            queueFile: (t, k) => path.join(mnt, `f${t}.q${k}`),
            pids: [proc.pid!],
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
  log('installing nbdkit and libnbd-bin (nbdfuse) with apt-get …')
  const env = ['DEBIAN_FRONTEND=noninteractive']
  let r = await run('env', [...env, 'apt-get', 'install', '-y', '-q', 'nbdkit', 'libnbd-bin'], { timeoutMs: 300_000 }).catch(() => null)
  if (!r || r.code !== 0) {
    await run('env', [...env, 'apt-get', 'update', '-q'], { timeoutMs: 300_000 }).catch(() => null)
    r = await run('env', [...env, 'apt-get', 'install', '-y', '-q', 'nbdkit', 'libnbd-bin'], { timeoutMs: 300_000 }).catch(() => null)
  }
  if (!r || r.code !== 0) log(`apt-get install failed: ${(r?.stderr ?? '').trim().slice(-300)}`)
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
