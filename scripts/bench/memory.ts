/**
 * The memory probes, one per part of issue 6's memory goal. Each reads the
 * fcfs server's VmRSS from /proc/<pid>/status (the server is a process of
 * its own, so its V8 heap is not at hand and is not reported):
 *
 *   idle     4 × 1 TiB sparse LUNs (RAM), mounted, 1 s idle       → RSS < 150 MB
 *   written  on that same mount: N MiB of O_DIRECT 1 MiB writes,   → RSS growth per MiB written
 *            1/8 each near 0 and near 900 GiB of every LUN            ≤ 1.25 × written + 32 MiB
 *   steady   4 × 1 GiB: the 8 regions written once, then one fio   → RSS after the last round
 *            mix K times over them, RSS after every round             < RSS after round 2 × 1.05 + 8 MiB
 *
 * Round 2, not round 1, is the steady probe's baseline: the first rounds
 * fill buffer pools, the page-cache side of the buffered jobs and the JIT.
 * Every verdict is on bytes, never on time, so a busy machine only slows
 * the probes down. Every mount is registered with proc.ts's cleanup (Ctrl-C
 * unmounts) and unmounted in a finally.
 */
import { mkdir, readdir } from 'node:fs/promises'
import path from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { REGION, TARGETS, type Mode } from './plan.js'
import { runFio } from './fio.js'
import { forceUnmount, memory, register, spawnServer, stopChild } from './proc.js'
import { fcfsCli, removeDir, tmpDir } from './subjects.js'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

/** What --only matches; `--only memory` selects all three. */
export const MEMORY_IDS = {
  idle: 'fcfs@unlimited/memory-idle',
  written: 'fcfs@unlimited/memory-written',
  steady: 'fcfs@unlimited/memory-steady',
} as const
export type MemoryProbeName = keyof typeof MEMORY_IDS
export const MEMORY_PROBES = Object.keys(MEMORY_IDS) as MemoryProbeName[]

/** Goal limits (issue 6). */
export const IDLE_LIMIT = 150e6
export const WRITTEN_FACTOR = 1.25
export const WRITTEN_SLACK = 32 * MiB
export const STEADY_FRACTION = 0.05
export const STEADY_SLACK = 8 * MiB

/** The written probe's far place on each 1 TiB LUN. */
const FAR_OFFSET = 900 * GiB
/** The steady probe's mount: the bench's usual 4 × 1 GiB. */
const STEADY_SIZE = GiB
/** Steady mix: 8 jobs, job j on target j mod 4, region floor(j / 4); region 0 O_DIRECT, region 1 buffered. */
const STEADY_JOBS = 8
const STEADY_BSSPLIT = '4k/40:64k/20:128k/20:640k/20'
/** Idle time before the idle and written samples (the idle probe has always waited 1 s). */
const IDLE_SETTLE_MS = 1000
/** Pause before each steady sample: long enough for the last replies to go, the same every round. */
const ROUND_SETTLE_MS = 250

export interface MemorySettings {
  /** written probe: MiB to write, a multiple of 8 (1/8 at each of the 8 places) */
  writeMiB: number
  /** steady probe: rounds of the mix */
  rounds: number
  /** steady probe: seconds per round */
  roundSeconds: number
}

export function memorySettingsFor(mode: Mode): MemorySettings {
  return mode !== 'quick' ? { writeMiB: 1024, rounds: 10, roundSeconds: 10 } : { writeMiB: 256, rounds: 6, roundSeconds: 2 }
}

/** Rough seconds a probe takes (for the progress display). */
export function memoryProbeSeconds(name: MemoryProbeName, s: MemorySettings): number {
  if (name === 'idle') return 3
  if (name === 'written') return 2 + s.writeMiB / 200
  return 3 + s.rounds * (s.roundSeconds + 0.6)
}

// ---------------------------------------------------------------------------
// Results

interface ProbeBase {
  id: string
  status: 'ok' | 'skipped' | 'error'
  note?: string
  /** what was mounted, e.g. "4 × 1 TiB sparse LUNs" */
  what: string
}

export interface IdleProbe extends ProbeBase {
  /** VmRSS, bytes, 1 s after the mount answered */
  rss?: number
}

export interface WrittenProbe extends ProbeBase {
  /** bytes written */
  written: number
  /** where, e.g. "8 × 32 MiB: near 0 and near 900 GiB of each LUN" */
  placement: string
  /** VmRSS before and after the writes, bytes */
  rssBefore?: number
  rssAfter?: number
  /** rssAfter − rssBefore, bytes */
  growth?: number
  /** fio's MB/s for the writes (10^6 bytes/s) */
  bw?: number
}

export interface SteadySample {
  /** 0: after the regions were written once; 1..K after round k */
  round: number
  /** VmRSS and VmHWM, bytes */
  rss: number
  hwm: number
  /** the round's fio MB/s, reads + writes (10^6 bytes/s) */
  bw?: number
}

export interface SteadyProbe extends ProbeBase {
  rounds: number
  roundSeconds: number
  /** the fio mix, one line */
  mix: string
  /** VmRSS right after the mount answered */
  rssMounted?: number
  samples: SteadySample[]
}

export interface MemoryResults {
  idle?: IdleProbe
  written?: WrittenProbe
  steady?: SteadyProbe
}

export type Verdict = 'pass' | 'FAIL' | 'not measured'

export function idleVerdict(p?: IdleProbe): Verdict {
  return p?.status !== 'ok' || p.rss === undefined ? 'not measured' : p.rss < IDLE_LIMIT ? 'pass' : 'FAIL'
}

/** The most RSS may grow by for `written` bytes. */
export function writtenLimit(written: number): number {
  return WRITTEN_FACTOR * written + WRITTEN_SLACK
}

export function writtenVerdict(p?: WrittenProbe): Verdict {
  return p?.status !== 'ok' || p.growth === undefined ? 'not measured' : p.growth <= writtenLimit(p.written) ? 'pass' : 'FAIL'
}

/** Round 2's sample and the last one; undefined with fewer than 2 rounds. */
export function steadyPair(p?: SteadyProbe): { base: SteadySample; last: SteadySample } | undefined {
  const base = p?.samples.find((s) => s.round === 2)
  const last = p?.samples.at(-1)
  return base && last && last.round >= 2 ? { base, last } : undefined
}

export function steadyLimit(base: number): number {
  return base * (1 + STEADY_FRACTION) + STEADY_SLACK
}

export function steadyVerdict(p?: SteadyProbe): Verdict {
  const pair = steadyPair(p)
  if (p?.status !== 'ok' || !pair) return 'not measured'
  return pair.last.rss < steadyLimit(pair.base.rss) ? 'pass' : 'FAIL'
}

const mib = (b: number): string => (b / MiB).toFixed(0)

export function memorySummary(name: MemoryProbeName, r: MemoryResults): string {
  const p = r[name]
  if (!p) return `${MEMORY_IDS[name]}: not run`
  if (p.status !== 'ok') return `${p.id}: ${p.status}${p.note ? ` (${p.note.split('\n')[0].slice(0, 160)})` : ''}`
  if (name === 'idle') return `${p.id}: ${((r.idle!.rss ?? 0) / 1e6).toFixed(0)} MB RSS idle`
  if (name === 'written') {
    const w = r.written!
    return `${w.id}: RSS ${mib(w.rssBefore!)} → ${mib(w.rssAfter!)} MiB after ${mib(w.written)} MiB written (${(w.growth! / w.written).toFixed(2)} MiB per MiB)`
  }
  const s = r.steady!
  return `${s.id}: RSS after each round ${s.samples.filter((x) => x.round > 0).map((x) => mib(x.rss)).join(' ')} MiB`
}

// ---------------------------------------------------------------------------
// A mount of fcfs for a probe

interface ProbeMount {
  mnt: string
  pid: number
  /** `<mnt>/wwn/<wwpn>/rwbuf`, one per target, sorted by wwpn */
  files: string[]
  stop(): Promise<void>
}

async function mountFcfs(size: string): Promise<ProbeMount> {
  const dir = await tmpDir('fcfs-bench-mem-')
  const mnt = path.join(dir, 'mnt')
  await mkdir(mnt)
  let proc: ChildProcess | undefined
  const stop = async (): Promise<void> => {
    if (proc) await stopChild(proc, 10_000)
    await forceUnmount(mnt)
    await removeDir(dir, [mnt]).catch(() => undefined)
  }
  const entry = { mnt, proc: undefined as ChildProcess | undefined, stop }
  const unregister = register(entry)
  const stopAndForget = async (): Promise<void> => {
    await stop()
    unregister()
  }
  try {
    const s = await spawnServer(process.execPath, [fcfsCli(), 'mount', mnt, '--targets', String(TARGETS), '--size', size, '--log-level', 'warn'], (o) =>
      o.includes(`fcfs mounted at ${mnt}`),
    )
    proc = entry.proc = s.proc
    const wwpns = (await readdir(path.join(mnt, 'wwn'))).filter((n) => /^[0-9a-f]{16}$/.test(n)).sort()
    if (wwpns.length !== TARGETS) throw new Error(`expected ${TARGETS} targets under ${mnt}/wwn, found ${wwpns.length}`)
    return { mnt, pid: proc.pid!, files: wwpns.map((w) => path.join(mnt, 'wwn', w, 'rwbuf')), stop: stopAndForget }
  } catch (e) {
    await stopAndForget()
    throw e
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function rssOf(pid: number): { rss: number; hwm: number } {
  const m = memory(pid)
  if (!m || !Number.isFinite(m.rss)) throw new Error('the fcfs server is gone')
  return m
}

// ---------------------------------------------------------------------------
// fio job files

/** The devices have a fixed size: never lay out, extend or fallocate them. */
const FIXED_FILES = ['fallocate=none', 'create_on_open=0', 'allow_file_create=0', 'group_reporting=1', 'thread=0', 'ioengine=psync']

interface Section {
  name: string
  file: string
  offset: number
  extra?: string[]
}

function jobFile(global: string[], sections: Section[]): string {
  const out = ['[global]', ...FIXED_FILES, ...global, '']
  for (const s of sections) out.push(`[${s.name}]`, `filename=${s.file}`, `offset=${s.offset}`, ...(s.extra ?? []), '')
  return out.join('\n')
}

/** The written probe: `per` bytes at 0 and at 900 GiB of every file, 1 MiB O_DIRECT writes of fio's (non-zero) buffers. */
export function writtenJobFile(files: string[], per: number): string {
  const sections = files.flatMap((file, i) => [
    { name: `t${i}-near-0`, file, offset: 0 },
    { name: `t${i}-near-900g`, file, offset: FAR_OFFSET },
  ])
  return jobFile(['rw=write', 'bs=1m', 'direct=1', `size=${per}`], sections)
}

function steadySections(files: string[]): Section[] {
  return Array.from({ length: STEADY_JOBS }, (_, j) => {
    const region = Math.floor(j / files.length)
    const direct = region % 2 === 0
    return {
      name: `j${j}-${direct ? 'direct' : 'buffered'}`,
      file: files[j % files.length],
      offset: region * REGION,
      // Buffered writes count once they reached the device.
      extra: direct ? ['direct=1'] : ['direct=0', 'end_fsync=1'],
    }
  })
}

/** The steady mix, one round: 8 psync jobs of randrw, 4 KiB–640 KiB, O_DIRECT and buffered on every file. */
export function steadyJobFile(files: string[], seconds: number): string {
  return jobFile(
    ['rw=randrw', 'rwmixread=50', `bssplit=${STEADY_BSSPLIT}`, `size=${REGION}`, `runtime=${Math.round(seconds * 1000)}ms`, 'time_based=1', 'norandommap=1', 'randrepeat=0'],
    steadySections(files),
  )
}

/** Every region of the steady mix written once, so that the data held is the same from round 1 on. */
export function steadyPrefillJobFile(files: string[]): string {
  return jobFile(['rw=write', 'bs=1m', 'direct=1', `size=${REGION}`], steadySections(files).map((s) => ({ ...s, extra: [] })))
}

export const STEADY_MIX = `fio psync, ${STEADY_JOBS} jobs randrw 50/50, bssplit ${STEADY_BSSPLIT}, job j on LUN j mod 4 in 20 MiB region floor(j/4): region 0 O_DIRECT, region 1 buffered (end_fsync)`

// ---------------------------------------------------------------------------
// The probes

export interface ProbeContext {
  settings: MemorySettings
  /** directory for fio job files */
  workDir: string
  /** called with each fio child so SIGINT can kill it */
  onChild?: (p: ChildProcess) => void
  /** true once the bench was interrupted: stop between rounds */
  interrupted?: () => boolean
}

const errorNote = (e: unknown): string => (e as Error).message.split('\n')[0]

/**
 * The idle and written probes on one mount of 4 × 1 TiB: the idle sample
 * (what the idle probe has always measured), then the writes and a second
 * sample. `want` says which of the two to report; the idle sample is the
 * written probe's baseline either way.
 */
export async function sparseProbes(want: { idle: boolean; written: boolean }, ctx: ProbeContext): Promise<Pick<MemoryResults, 'idle' | 'written'>> {
  const what = `${TARGETS} × 1 TiB sparse LUNs`
  const per = Math.max(1, Math.floor(ctx.settings.writeMiB / (2 * TARGETS))) * MiB
  const written = per * 2 * TARGETS
  const placement = `${2 * TARGETS} × ${mib(per)} MiB, 1 MiB O_DIRECT writes: near 0 and near 900 GiB of each LUN`
  const out: Pick<MemoryResults, 'idle' | 'written'> = {}
  const idle = (x: Partial<IdleProbe>): void => {
    if (want.idle) out.idle = { id: MEMORY_IDS.idle, status: 'ok', what, ...x }
  }
  const wrote = (x: Partial<WrittenProbe>): void => {
    if (want.written) out.written = { id: MEMORY_IDS.written, status: 'ok', what, written, placement, ...x }
  }
  let m: ProbeMount | undefined
  try {
    m = await mountFcfs('1TiB')
    await sleep(IDLE_SETTLE_MS)
    const before = rssOf(m.pid).rss
    idle({ rss: before })
    if (!want.written) return out
    if (ctx.interrupted?.()) {
      wrote({ status: 'error', note: 'interrupted' })
      return out
    }
    const fio = await runFio(path.join(ctx.workDir, 'memory-written.fio'), writtenJobFile(m.files, per), { runtime: 0, ramp: 0 }, ctx.onChild)
    await sleep(IDLE_SETTLE_MS)
    const after = rssOf(m.pid).rss
    wrote({ rssBefore: before, rssAfter: after, growth: after - before, bw: fio.bw })
  } catch (e) {
    const note = ctx.interrupted?.() ? 'interrupted' : errorNote(e)
    if (want.idle && !out.idle) idle({ status: 'error', note })
    if (want.written && !out.written) wrote({ status: 'error', note })
  } finally {
    await m?.stop()
  }
  return out
}

/** The steady probe: one 4 × 1 GiB mount, the regions written once, then the same mix K times, RSS after each. */
export async function steadyProbe(ctx: ProbeContext): Promise<SteadyProbe> {
  const { rounds, roundSeconds } = ctx.settings
  const p: SteadyProbe = { id: MEMORY_IDS.steady, status: 'ok', what: `${TARGETS} × 1 GiB LUNs`, rounds, roundSeconds, mix: STEADY_MIX, samples: [] }
  let m: ProbeMount | undefined
  try {
    m = await mountFcfs(`${STEADY_SIZE / GiB}GiB`)
    p.rssMounted = rssOf(m.pid).rss
    await runFio(path.join(ctx.workDir, 'memory-steady-prefill.fio'), steadyPrefillJobFile(m.files), { runtime: 0, ramp: 0 }, ctx.onChild)
    await sleep(ROUND_SETTLE_MS)
    p.samples.push({ round: 0, ...rssOf(m.pid) })
    const text = steadyJobFile(m.files, roundSeconds)
    for (let k = 1; k <= rounds; k++) {
      if (ctx.interrupted?.()) throw new Error('interrupted')
      const fio = await runFio(path.join(ctx.workDir, 'memory-steady.fio'), text, { runtime: roundSeconds, ramp: 0 }, ctx.onChild)
      await sleep(ROUND_SETTLE_MS)
      p.samples.push({ round: k, ...rssOf(m.pid), bw: fio.bw })
    }
  } catch (e) {
    p.status = 'error'
    p.note = ctx.interrupted?.() ? 'interrupted' : errorNote(e)
  } finally {
    await m?.stop()
  }
  return p
}
