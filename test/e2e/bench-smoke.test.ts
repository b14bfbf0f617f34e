// The benchmark harness end to end, tiny: one 1-second fio job against fcfs and
// against the fuse-native ceiling, then the report and results must carry real
// numbers and nothing may stay mounted. (The benchmark itself is `npm run bench`,
// not part of `npm test`.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existsSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { REPO_ROOT, makeTmp, mountPoints, requireFuse, run } from '../helpers/mount.js'

const BENCH = path.join(REPO_ROOT, 'dist', 'scripts', 'bench.js')
const ONLY = '^(fcfs|ceiling)@unlimited/seq-read-640k-direct-j8$'

interface Result {
  run: { id: string; subject: string }
  status: string
  note?: string
  bw?: number
  iops?: number
  cpu?: number | null
  peakOutstanding?: number | null
}

describe('npm run bench (smoke)', () => {
  let out: string
  let code: number
  let stderr: string
  let before: string[]

  beforeAll(async () => {
    requireFuse()
    if (!existsSync(BENCH)) throw new Error(`${BENCH} is not built (npm run build)`)
    out = await makeTmp('fcfs-bench-smoke-')
    before = await mountPoints(true)
    const r = await run(
      process.execPath,
      [BENCH, '--only', ONLY, '--runtime', '1', '--ramp', '0', '--no-memory-probe', '--no-progress', '--no-install', '--out', out],
      { timeoutMs: 60_000 },
    )
    code = r.code
    stderr = r.stderr
  }, 70_000)

  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true })
  })

  it('exits 0 and measures fcfs and the ceiling with numbers above zero', async () => {
    expect(code, stderr).toBe(0)
    const { results } = JSON.parse(await readFile(path.join(out, 'results.json'), 'utf8')) as { results: Result[] }
    expect(results.map((r) => r.run.id).sort()).toEqual(['ceiling@unlimited/seq-read-640k-direct-j8', 'fcfs@unlimited/seq-read-640k-direct-j8'])
    for (const r of results) {
      expect(r.status, `${r.run.id}: ${r.note ?? ''}`).toBe('ok')
      expect(r.bw, r.run.id).toBeGreaterThan(0)
      expect(r.iops, r.run.id).toBeGreaterThan(0)
      expect(r.cpu, r.run.id).toBeGreaterThan(0)
    }
    const fcfs = results.find((r) => r.run.subject === 'fcfs')!
    expect(fcfs.peakOutstanding).toBeGreaterThanOrEqual(1)
  })

  it('writes a Markdown report with the side-by-side row and an SVG chart', async () => {
    const md = await readFile(path.join(out, 'report.md'), 'utf8')
    const row = md.split('\n').find((l) => l.startsWith('| seq-read-640k-direct-j8 |'))
    expect(row, md).toBeDefined()
    const cells = row!.split('|').map((c) => c.trim())
    // workload | fcfs MB/s | ceiling MB/s | peer | direct | fcfs/ceiling ...
    expect(Number(cells[2])).toBeGreaterThan(0)
    expect(Number(cells[3])).toBeGreaterThan(0)
    expect(Number(cells[6])).toBeGreaterThan(0)
    const svg = await readFile(path.join(out, 'throughput-vs-jobs.svg'), 'utf8')
    expect(svg.startsWith('<svg')).toBe(true)
  })

  it('leaves no mount behind', async () => {
    const after = await mountPoints(true)
    expect(after.filter((m) => !before.includes(m) && m.includes('fcfs-bench'))).toEqual([])
  })
})
