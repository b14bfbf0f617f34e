/**
 * The direct path: the same HBA ring without FUSE, driven in-process by
 * `jobs` concurrent loops (each one command at a time, like a psync fio job),
 * spread over the LUNs exactly as fio spreads its jobs over the files.
 *
 * How a fabric is opened is one function per source, behind `DirectFabric`:
 *   - `module`   src/direct.ts `openFabric(opts)`: the documented direct API
 *                (issue 3), the default.
 *   - `blockdev` the fs layer's BlockDevice over startFabric() with the same
 *                tuning (link model) as the CLI, no FUSE (--direct-via blockdev):
 *                separates what FUSE costs from what fs/ costs.
 *
 * The worker runs in its own process so its CPU and RSS are its own:
 *   node dist/scripts/bench/direct.js '<json WorkerInput>'   → prints one JSON line
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { isRead, regionOf, type Link, type Workload } from './plan.js'
import { memory } from './proc.js'

export type DirectVia = 'module' | 'blockdev'

export interface DirectLun {
  read(buf: Buffer, pos: number): Promise<void>
  write(buf: Buffer, pos: number): Promise<void>
}

export interface DirectFabric {
  luns: DirectLun[]
  /** HBA counters (peakOutstanding etc.) when the source exposes them */
  hbaStats?(): Record<string, unknown>
  resetStats?(): void
  close(): Promise<void>
}

export interface OpenOptions {
  targets: number
  size: number
  link: Link
}

const HERE = path.dirname(fileURLToPath(import.meta.url))
/** dist/src/direct.js, next to the compiled bench. */
export const DIRECT_MODULE = path.resolve(HERE, '..', '..', 'src', 'direct.js')

/** Why the direct subject cannot run with this source, or null when it can. */
export async function directUnavailable(via: DirectVia): Promise<string | null> {
  if (via === 'blockdev') return null
  if (!existsSync(DIRECT_MODULE)) return `${DIRECT_MODULE} is not built (npm run build)`
  return null
}

/** Links the source can model. */
export function directSupportsLink(_via: DirectVia, _link: Link): boolean {
  return true
}

// ---------------------------------------------------------------------------
// Sources

/** src/direct.ts: openFabric() with the same tuning flags as `fcfs mount`, LUN read/write by LBA. */
async function openViaModule(o: OpenOptions): Promise<DirectFabric> {
  const { openFabric } = await import('../../src/direct.js')
  const fab = await openFabric({ targets: o.targets, size: o.size, tuning: { link: o.link } })
  fab.driver.resetStats() // count the workload, not the scan
  return {
    luns: fab.luns.map((l) => ({
      read: async (buf: Buffer, pos: number) => { await l.read(pos / l.blockSize, buf.length / l.blockSize, buf) },
      write: (buf: Buffer, pos: number) => l.write(pos / l.blockSize, buf),
    })),
    hbaStats: () => ({ ...fab.stats() }),
    resetStats: () => fab.driver.resetStats(),
    close: () => fab.close(),
  }
}

async function openViaBlockdev(o: OpenOptions): Promise<DirectFabric> {
  const { startFabric } = await import('../../src/server.js')
  const { defaultConfig, closeFabric } = await import('../../src/targets/config.js')
  const { tuningFromArgs } = await import('../../src/tuning.js')
  const { createLogger } = await import('../../src/log.js')
  const log = createLogger('warn' as never)
  const { fabric, driver, devices } = await startFabric(defaultConfig({ targets: o.targets, size: o.size, blockSize: 512 }), log, tuningFromArgs({ link: o.link }))
  driver.resetStats()
  const wrap = (op: 'read' | 'write', d: (typeof devices)[number]) => (buf: Buffer, pos: number) =>
    new Promise<void>((resolve, reject) => d[op](buf, buf.length, pos, (r: number) => (r < 0 ? reject(new Error(`${op} failed: ${r}`)) : resolve())))
  return {
    luns: devices.map((d) => ({ read: wrap('read', d), write: wrap('write', d) })),
    hbaStats: () => ({ ...driver.stats }),
    resetStats: () => driver.resetStats(),
    close: async () => {
      await driver.shutdown()
      await closeFabric(fabric, log)
    },
  }
}

const SOURCES: Record<DirectVia, (o: OpenOptions) => Promise<DirectFabric>> = {
  module: openViaModule,
  blockdev: openViaBlockdev,
}

// ---------------------------------------------------------------------------
// Worker

export interface WorkerInput {
  via: DirectVia
  open: OpenOptions
  workload: Workload
  runtime: number
  ramp: number
  /** write every job's region once before a read workload */
  prefill?: boolean
}

export interface WorkerOutput {
  bw: number
  iops: number
  p50: number
  p99: number
  cpu: number
  rss: number
  hwm: number
  peakOutstanding: number | null
  commandsPerSecond: number
}

function percentile(sorted: Float64Array, q: number): number {
  if (!sorted.length) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

export async function runWorker(input: WorkerInput): Promise<WorkerOutput> {
  const { workload: w } = input
  const fab = await SOURCES[input.via](input.open)
  try {
    const T = fab.luns.length
    const REGION = regionOf(w)
    const slots = Math.max(1, Math.floor(REGION / w.bs))
    const read = isRead(w)
    const rand = w.rw.startsWith('rand')
    const MAX_SAMPLES = 1 << 20
    const lat = new Float64Array(MAX_SAMPLES)
    let samples = 0
    let ios = 0
    let bytes = 0
    let measuring = input.ramp === 0
    let stop = false
    const startAt = performance.now()
    let measureFrom = startAt

    const job = async (j: number): Promise<void> => {
      const lun = fab.luns[j % T]
      const base = Math.floor(j / T) * REGION
      const buf = Buffer.alloc(w.bs, read ? 0 : 0x5a)
      let k = 0
      while (!stop) {
        const slot = rand ? Math.floor(Math.random() * slots) : k++ % slots
        const t0 = performance.now()
        await (read ? lun.read(buf, base + slot * w.bs) : lun.write(buf, base + slot * w.bs))
        if (measuring) {
          lat[samples++ & (MAX_SAMPLES - 1)] = (performance.now() - t0) * 1000
          ios++
          bytes += w.bs
        }
      }
    }
    if (input.prefill) {
      const fill = Buffer.alloc(1024 * 1024, 0xa5)
      await Promise.all(
        Array.from({ length: w.jobs }, async (_, j) => {
          const lun = fab.luns[j % T]
          const base = Math.floor(j / T) * REGION
          for (let off = 0; off < REGION; off += fill.length) await lun.write(fill.subarray(0, Math.min(fill.length, REGION - off)), base + off)
        }),
      )
      fab.resetStats?.()
    }
    const jobs = Array.from({ length: w.jobs }, (_, j) => job(j))
    let cpu0 = process.cpuUsage()
    if (input.ramp > 0) {
      await new Promise((r) => setTimeout(r, input.ramp * 1000))
      measuring = true
      measureFrom = performance.now()
      cpu0 = process.cpuUsage()
    }
    await new Promise((r) => setTimeout(r, input.runtime * 1000))
    stop = true
    measuring = false // what completes after the window is not counted
    const elapsed = (performance.now() - measureFrom) / 1000
    const cpu = process.cpuUsage(cpu0)
    const done = { bytes, ios }
    await Promise.all(jobs)
    const sorted = lat.slice(0, Math.min(samples, MAX_SAMPLES)).sort()
    const stats = fab.hbaStats?.()
    const mem = memory(process.pid)
    return {
      bw: done.bytes / elapsed,
      iops: done.ios / elapsed,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      cpu: ((cpu.user + cpu.system) / 1e6 / elapsed) * 100,
      rss: mem?.rss ?? process.memoryUsage().rss,
      hwm: mem?.hwm ?? process.memoryUsage().rss,
      peakOutstanding: typeof stats?.peakOutstanding === 'number' ? stats.peakOutstanding : null,
      commandsPerSecond: done.ios / elapsed,
    }
  } finally {
    await fab.close()
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const input = JSON.parse(process.argv[2] ?? '{}') as WorkerInput
  runWorker(input).then(
    (out) => {
      process.stdout.write(JSON.stringify(out) + '\n')
      process.exit(0)
    },
    (err: Error) => {
      process.stderr.write(`direct worker: ${err.stack ?? err.message}\n`)
      process.exit(1)
    },
  )
}
