/**
 * fio job files for a workload spread over a subject's files, and the one
 * number-set we keep from fio's JSON.
 *
 * Spreading: `jobs` psync jobs are dealt round-robin over the files (one job
 * section per file, `numjobs` clones each), and every clone works in its own
 * REGION of the file (`offset_increment`), so 48 jobs over 4 targets are 12
 * per target on disjoint ranges. (fio's `filename=a:b` would instead make
 * every job visit every file, which is not how the seed's readers worked.)
 * One reporting group: fio sums all sections (`group_reporting`).
 *
 * Queue-file workloads (`w.queueFiles`) get one section per job instead, each
 * on its own file at its own region's offset (fioPerJobFile): same regions,
 * but no two jobs share a file.
 */
import { writeFile } from 'node:fs/promises'
import type { ChildProcess } from 'node:child_process'
import { fmtBs, isRead, REGION, type Timing, type Workload } from './plan.js'
import { run, type RunAs } from './proc.js'

export function jobsPerFile(jobs: number, files: number): number[] {
  const out: number[] = []
  for (let i = 0; i < Math.min(jobs, files); i++) out.push(Math.floor(jobs / files) + (i < jobs % files ? 1 : 0))
  return out
}

function globalSection(w: Workload, t: Timing, region: number): string[] {
  return [
    '[global]',
    'ioengine=psync',
    `rw=${w.rw}`,
    `bs=${w.bs}`,
    `direct=${w.direct ? 1 : 0}`,
    `size=${region}`,
    `offset_increment=${region}`,
    t.runtime > 0 ? `runtime=${Math.round(t.runtime * 1000)}ms` : '',
    t.runtime > 0 ? 'time_based=1' : '',
    t.ramp > 0 ? `ramp_time=${Math.round(t.ramp * 1000)}ms` : '',
    'group_reporting=1',
    // The files are devices of a fixed size: never lay out, extend or fallocate them.
    'fallocate=none',
    'create_on_open=0',
    'allow_file_create=0',
    'randrepeat=0',
    w.rw.startsWith('rand') ? 'norandommap=1' : '',
    // Buffered writes count only once they reached the device.
    !isRead(w) && !w.direct ? 'end_fsync=1' : '',
    'thread=0',
  ].filter(Boolean)
}

export function fioJobFile(w: Workload, files: string[], t: Timing, region = REGION): string {
  const g = globalSection(w, t, region)
  const sections: string[] = []
  jobsPerFile(w.jobs, files.length).forEach((n, i) => {
    sections.push(`[${w.rw}-${fmtBs(w.bs)}-f${i}]`, `filename=${files[i]}`, `numjobs=${n}`)
  })
  return [...g, '', ...sections, ''].join('\n')
}

/** A job of its own: its file and the byte offset of its region. */
export interface JobPlacement {
  file: string
  offset: number
}

/** One section per job (numjobs=1), each on its own file at its own offset. */
export function fioPerJobFile(w: Workload, jobs: JobPlacement[], t: Timing, region = REGION): string {
  const g = globalSection(w, t, region)
  const sections: string[] = []
  jobs.forEach((j, i) => {
    sections.push(`[${w.rw}-${fmtBs(w.bs)}-j${i}]`, `filename=${j.file}`, `offset=${j.offset}`, 'numjobs=1')
  })
  return [...g, '', ...sections, ''].join('\n')
}

export interface FioResult {
  /** bytes/s, reads + writes */
  bw: number
  iops: number
  /** completion latency percentiles, µs */
  p50: number
  p99: number
  /** fio's own CPU (usr + sys), percent of one core summed over jobs */
  clientCpu: number
  ioBytes: number
  errors: number
}

interface FioDir {
  io_bytes: number
  bw_bytes: number
  iops: number
  clat_ns?: { percentile?: Record<string, number>; mean?: number }
}

export function parseFio(stdout: string): FioResult {
  const start = stdout.indexOf('{')
  if (start < 0) throw new Error(`fio printed no JSON: ${stdout.slice(0, 500)}`)
  const json = JSON.parse(stdout.slice(start)) as { jobs: Array<{ read: FioDir; write: FioDir; usr_cpu: number; sys_cpu: number; error: number; job_runtime?: number }> }
  let bw = 0
  let iops = 0
  let ioBytes = 0
  let clientCpu = 0
  let errors = 0
  let p50 = 0
  let p99 = 0
  let weight = 0
  for (const j of json.jobs) {
    for (const d of [j.read, j.write]) {
      if (!d || !d.io_bytes) continue
      bw += d.bw_bytes
      iops += d.iops
      ioBytes += d.io_bytes
      const pc = d.clat_ns?.percentile ?? {}
      p50 += ((pc['50.000000'] ?? 0) / 1000) * d.io_bytes
      p99 += ((pc['99.000000'] ?? 0) / 1000) * d.io_bytes
      weight += d.io_bytes
    }
    clientCpu += (j.usr_cpu ?? 0) + (j.sys_cpu ?? 0)
    errors += j.error ?? 0
  }
  return { bw, iops, p50: weight ? p50 / weight : 0, p99: weight ? p99 / weight : 0, clientCpu, ioBytes, errors }
}

/** Runs fio on a job file (as `as` when given: that user must be able to read `jobFile`). */
export async function runFio(jobFile: string, text: string, t: Timing, onSpawn?: (p: ChildProcess) => void, as?: RunAs): Promise<FioResult> {
  await writeFile(jobFile, text, { mode: 0o644 })
  const r = await run('fio', ['--output-format=json', jobFile], { timeoutMs: (t.runtime + t.ramp + 90) * 1000, onSpawn, as })
  if (r.code !== 0) throw new Error(`fio exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-800)}`)
  const res = parseFio(r.stdout)
  if (res.errors) throw new Error(`fio reported errors (${res.errors}): ${r.stderr.trim().slice(-800)}`)
  return res
}

/**
 * One untimed O_DIRECT pass of 1 MiB writes over every region a read workload
 * will touch, so that reads move data rather than a sparse backend's zeros.
 */
export function prefillJobFile(w: Workload, files: string[], region = REGION): string {
  return fioJobFile({ ...w, id: `${w.id}-prefill`, rw: 'write', bs: 1024 * 1024, direct: true }, files, { runtime: 0, ramp: 0 }, region)
}

export async function fioVersion(): Promise<string | null> {
  try {
    const r = await run('fio', ['--version'])
    return r.code === 0 ? r.stdout.trim() : null
  } catch {
    return null
  }
}
