/**
 * `fcfs top <mnt>`: a live per-target view, like iostat. It reads the
 * mount's hba/0/stats.json every interval and prints rates computed from the
 * difference between two snapshots — it needs nothing but the mount.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'

interface IoJson {
  commands: number
  reads: number
  writes: number
  bytesRead: number
  bytesWritten: number
  errors: number
  outstanding: number
  peakOutstanding: number
  latency: { mean_us: number; p50_us: number; p99_us: number; max_us: number }
}

export interface StatsSnapshot {
  time: string
  commands: number
  completions: number
  responseInterrupts: number
  outstanding: number
  peakOutstanding: number
  link: { rate: number; inBytesPerSec: number; outBytesPerSec: number; inUtilisation: number; outUtilisation: number } | null
  targets: Record<string, IoJson & { loopId: number }>
}

export interface TopRow {
  name: string
  readIops: number
  writeIops: number
  readMBps: number
  writeMBps: number
  outstanding: number
  peak: number
  p50us: number
  p99us: number
  errors: number
}

/** Rates between two snapshots, one row per target plus a total. */
export function topRows(prev: StatsSnapshot, cur: StatsSnapshot): { rows: TopRow[]; total: TopRow; seconds: number } {
  const seconds = Math.max(1e-3, (Date.parse(cur.time) - Date.parse(prev.time)) / 1000)
  const rows: TopRow[] = []
  const total: TopRow = { name: 'total', readIops: 0, writeIops: 0, readMBps: 0, writeMBps: 0, outstanding: 0, peak: cur.peakOutstanding, p50us: 0, p99us: 0, errors: 0 }
  for (const [wwpn, t] of Object.entries(cur.targets)) {
    const p = prev.targets[wwpn]
    // A reset between the snapshots makes counters go down: start from zero then.
    const d = (k: keyof IoJson): number => {
      const a = t[k] as number
      const b = p ? (p[k] as number) : 0
      return a >= b ? a - b : a
    }
    const row: TopRow = {
      name: wwpn,
      readIops: d('reads') / seconds,
      writeIops: d('writes') / seconds,
      readMBps: d('bytesRead') / seconds / 1e6,
      writeMBps: d('bytesWritten') / seconds / 1e6,
      outstanding: t.outstanding,
      peak: t.peakOutstanding,
      p50us: t.latency.p50_us,
      p99us: t.latency.p99_us,
      errors: d('errors'),
    }
    rows.push(row)
    total.readIops += row.readIops
    total.writeIops += row.writeIops
    total.readMBps += row.readMBps
    total.writeMBps += row.writeMBps
    total.outstanding += row.outstanding
    total.errors += row.errors
  }
  return { rows, total, seconds }
}

export function renderTop(prev: StatsSnapshot, cur: StatsSnapshot, mountpoint: string): string {
  const { rows, total } = topRows(prev, cur)
  const dc = cur.completions - prev.completions
  const di = cur.responseInterrupts - prev.responseInterrupts
  const link = cur.link
  const head = [
    `fcfs top — ${mountpoint} — ${new Date(cur.time).toLocaleTimeString()}`,
    link
      ? `link ${link.rate ? `${(link.rate / 1e6).toFixed(0)} MB/s` : 'unlimited'}: in ${(link.inBytesPerSec / 1e6).toFixed(1)} MB/s` +
        (link.rate ? ` (${(link.inUtilisation * 100).toFixed(0)}%)` : '') +
        `, out ${(link.outBytesPerSec / 1e6).toFixed(1)} MB/s` +
        (link.rate ? ` (${(link.outUtilisation * 100).toFixed(0)}%)` : '') +
        `; completions/interrupt ${di > 0 ? (dc / di).toFixed(1) : '-'}`
      : '',
    '',
    pad(['target', 'r/s', 'w/s', 'rMB/s', 'wMB/s', 'outst', 'peak', 'p50 ms', 'p99 ms', 'errors']),
  ]
  const line = (r: TopRow): string =>
    pad([
      r.name,
      r.readIops.toFixed(0),
      r.writeIops.toFixed(0),
      r.readMBps.toFixed(1),
      r.writeMBps.toFixed(1),
      String(r.outstanding),
      String(r.peak),
      r.name === 'total' ? '' : (r.p50us / 1000).toFixed(2),
      r.name === 'total' ? '' : (r.p99us / 1000).toFixed(2),
      String(r.errors),
    ])
  return [...head, ...rows.map(line), line(total)].join('\n') + '\n'
}

const WIDTHS = [18, 8, 8, 8, 8, 6, 6, 8, 8, 7]

function pad(cols: string[]): string {
  return cols.map((c, i) => (i === 0 ? c.padEnd(WIDTHS[i]) : c.padStart(WIDTHS[i]))).join(' ')
}

export async function readSnapshot(mnt: string): Promise<StatsSnapshot> {
  return JSON.parse(await readFile(join(mnt, 'hba', '0', 'stats.json'), 'utf8')) as StatsSnapshot
}

/** Prints a view every `intervalMs`; `count` views then returns (0 = until interrupted). */
export async function runTop(mnt: string, intervalMs: number, count: number, out: NodeJS.WriteStream = process.stdout): Promise<void> {
  let prev = await readSnapshot(mnt)
  const clear = out.isTTY ? '\x1b[H\x1b[2J' : ''
  for (let i = 0; count === 0 || i < count; i++) {
    await new Promise((r) => setTimeout(r, intervalMs))
    const cur = await readSnapshot(mnt)
    out.write(clear + renderTop(prev, cur, mnt) + (clear ? '' : '\n'))
    prev = cur
  }
}
