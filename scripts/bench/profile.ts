/**
 * Summaries of V8 CPU profiles (`node --cpu-prof`) of the fcfs server, for
 * `npm run bench -- --profile`: self time per function, heaviest first, so
 * the report says where the serving process spends its time.
 *
 *   node dist/scripts/bench/profile.js <file.cpuprofile> [top]
 */
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

interface CpuNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}
interface CpuProfile {
  nodes: CpuNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

export interface ProfileLine {
  fn: string
  where: string
  /** share of all samples, 0..1 */
  self: number
}

export interface ProfileSummary {
  /** µs covered by the profile */
  duration: number
  /** share of samples not idle (program, GC, functions) */
  busy: number
  top: ProfileLine[]
}

export async function summarizeProfile(file: string, top = 12): Promise<ProfileSummary> {
  const prof = JSON.parse(await readFile(file, 'utf8')) as CpuProfile
  const byId = new Map(prof.nodes.map((n) => [n.id, n]))
  const time = new Map<number, number>()
  let total = 0
  prof.samples.forEach((id, i) => {
    const dt = prof.timeDeltas[i] ?? 0
    time.set(id, (time.get(id) ?? 0) + dt)
    total += dt
  })
  const agg = new Map<string, ProfileLine>()
  let idle = 0
  for (const [id, t] of time) {
    const n = byId.get(id)
    if (!n) continue
    const fn = n.callFrame.functionName || '(anonymous)'
    if (fn === '(idle)') idle += t
    const url = n.callFrame.url.replace(/^file:\/\//, '')
    const where = url ? `${path.relative(process.cwd(), url) || url}:${n.callFrame.lineNumber + 1}` : ''
    const key = `${fn}@${where}`
    const line = agg.get(key) ?? { fn, where, self: 0 }
    line.self += t
    agg.set(key, line)
  }
  const lines = [...agg.values()].filter((l) => l.fn !== '(idle)').sort((a, b) => b.self - a.self)
  return {
    duration: prof.endTime - prof.startTime,
    busy: total ? (total - idle) / total : 0,
    top: lines.slice(0, top).map((l) => ({ ...l, self: total ? l.self / total : 0 })),
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [file, n] = process.argv.slice(2)
  summarizeProfile(file, Number(n ?? 25)).then((s) => {
    process.stdout.write(`${(s.duration / 1e6).toFixed(1)} s profiled, ${(s.busy * 100).toFixed(0)}% busy\n`)
    for (const l of s.top) process.stdout.write(`${(l.self * 100).toFixed(1).padStart(5)}%  ${l.fn}  ${l.where}\n`)
  })
}
