// What `npm run bench` plans in each mode: the goal run must hold every run
// the goal table judges and nothing it does not, or its verdicts would be
// "not measured" (or the run an hour longer than it needs to be). And what the
// report makes of the runs: the side-by-side ratios and issue 21's verdicts.
import { describe, expect, it } from 'vitest'
import { allWorkloads, buildPlan, defaultLinks, repeatPlan, SUBJECTS, timingFor, type SubjectName, type Workload } from '../../scripts/bench/plan.js'
import { renderReport, type ReportMeta } from '../../scripts/bench/report.js'
import { ratioChartSpec } from '../../scripts/bench/charts.js'
import type { Measurement } from '../../scripts/bench/subjects.js'

const plan = (mode: 'quick' | 'full' | 'goals') => buildPlan({ mode, subjects: [...SUBJECTS], links: defaultLinks() })

describe('bench plan', () => {
  it('goals mode runs every workload at unlimited for fcfs, fcfs-user, both ceilings and the peer, and fcfs-pc on the buffered reads only', () => {
    const ids = new Set(plan('goals').map((r) => r.id))
    for (const w of allWorkloads()) {
      for (const s of ['fcfs', 'fcfs-user', 'c', 'ceiling', 'peer'] as const) expect(ids.has(`${s}@unlimited/${w.id}`), `${s} ${w.id}`).toBe(true)
      expect(ids.has(`fcfs-pc@unlimited/${w.id}`), w.id).toBe(!w.direct && (w.rw === 'read' || w.rw === 'randread'))
    }
  })

  it('goals mode runs at 2G/4G/8G/16G only the 48-job 640 KiB rows, and the single buffered streams at 2G/4G/8G', () => {
    const linked = plan('goals').filter((r) => r.link !== 'unlimited' && r.subject === 'fcfs')
    const at = (link: string): string[] => linked.filter((r) => r.link === link).map((r) => r.workload.id).sort()
    const j48 = ['seq-read-640k-direct-j48', 'seq-read-640k-direct-j48-q', 'seq-write-640k-direct-j48', 'seq-write-640k-direct-j48-q']
    const single = ['seq-read-1m-buffered-j1', 'seq-read-640k-buffered-j1', 'seq-write-1m-buffered-j1', 'seq-write-640k-buffered-j1']
    for (const link of ['2G', '4G', '8G']) expect(at(link)).toEqual([...j48, ...single].sort())
    expect(at('16G')).toEqual(j48)
    // The direct path beside the O_DIRECT rows over shared files, nothing else.
    const direct = plan('goals').filter((r) => r.link !== 'unlimited' && r.subject === 'direct').map((r) => r.workload.id)
    expect([...new Set(direct)].sort()).toEqual(['seq-read-640k-direct-j48', 'seq-write-640k-direct-j48'])
  })

  it('runs fcfs-user and the C ceiling at unlimited only, in full mode too (they are compared with fcfs there)', () => {
    for (const mode of ['quick', 'full', 'goals'] as const) {
      const runs = plan(mode).filter((r) => r.subject === 'fcfs-user' || r.subject === 'c')
      expect(runs.length, mode).toBeGreaterThan(0)
      expect(runs.filter((r) => r.link !== 'unlimited').map((r) => r.id)).toEqual([])
    }
  })

  it('puts fcfs-user beside fcfs and the C ceiling beside the fuse-native one in each side-by-side group', () => {
    const runs = buildPlan({ mode: 'quick', subjects: [...SUBJECTS], links: [], only: /@unlimited\/seq-read-640k-direct-j8$/ })
    expect(runs.map((r) => r.subject)).toEqual(['fcfs', 'fcfs-user', 'c', 'ceiling', 'peer', 'direct'])
  })

  it('goals mode is shorter per run than full mode and longer than quick mode', () => {
    expect(timingFor('goals')).toEqual({ runtime: 5, ramp: 1 })
    expect(timingFor('full').runtime).toBeGreaterThan(timingFor('goals').runtime)
    expect(timingFor('quick').runtime).toBeLessThan(timingFor('goals').runtime)
  })

  it('full mode plans every workload at every link for fcfs', () => {
    const ids = new Set(plan('full').map((r) => r.id))
    for (const link of defaultLinks()) for (const w of allWorkloads()) expect(ids.has(`fcfs@${link}/${w.id}`), `${link} ${w.id}`).toBe(true)
  })

  it('repeatPlan runs each side-by-side group back to back n times', () => {
    const runs = buildPlan({ mode: 'quick', subjects: ['fcfs', 'ceiling'], links: [], only: /seq-read-640k-direct-j(1|8)$/ })
    expect(repeatPlan(runs, 2).map((r) => r.id)).toEqual([
      'fcfs@unlimited/seq-read-640k-direct-j1',
      'ceiling@unlimited/seq-read-640k-direct-j1',
      'fcfs@unlimited/seq-read-640k-direct-j1',
      'ceiling@unlimited/seq-read-640k-direct-j1',
      'fcfs@unlimited/seq-read-640k-direct-j8',
      'ceiling@unlimited/seq-read-640k-direct-j8',
      'fcfs@unlimited/seq-read-640k-direct-j8',
      'ceiling@unlimited/seq-read-640k-direct-j8',
    ])
  })
})

describe('bench report', () => {
  const w640 = allWorkloads().find((w) => w.id === 'seq-read-640k-direct-j8')!
  const w4k = allWorkloads().find((w) => w.id === 'rand-write-4k-direct-j1')!
  const m = (subject: SubjectName, w: Workload, mbps: number): Measurement => ({
    run: { subject, link: 'unlimited', workload: w, id: `${subject}@unlimited/${w.id}` },
    status: 'ok',
    bw: mbps * 1e6,
    iops: (mbps * 1e6) / w.bs,
    cpu: 50,
  })
  const wPc = allWorkloads().find((w) => w.id === 'seq-read-640k-buffered-j1')!
  // fcfs-pc's buffered read: a row none of the judged pairs ran, which must not make their verdicts "not measured".
  const results = [m('fcfs', w640, 900), m('fcfs-user', w640, 450), m('c', w640, 1000), m('fcfs', w4k, 40), m('fcfs-user', w4k, 40), m('c', w4k, 80), m('fcfs-pc', wPc, 300)]
  const meta: ReportMeta = {
    mode: 'quick',
    timing: { runtime: 1, ramp: 0 },
    started: new Date(0),
    finished: new Date(1000),
    interrupted: false,
    machine: [],
    unavailable: { ceiling: 'not selected (--subjects)', peer: 'not selected (--subjects)', direct: 'not selected (--subjects)' },
    notes: [],
    charts: [],
    argv: ['npm run bench --'],
  }
  const md = renderReport(results, meta)
  const cells = (prefix: string): Record<string, string> => {
    const head = md.split('\n').find((l) => l.startsWith('| workload |'))!.split('|').map((c) => c.trim())
    const row = md.split('\n').find((l) => l.startsWith(prefix))!.split('|').map((c) => c.trim())
    return Object.fromEntries(head.map((h, i) => [h, row[i]]))
  }

  it('gives fcfs/c and fcfs-user/fcfs per workload, and no column for a subject that did not run', () => {
    expect(cells('| seq-read-640k-direct-j8 |')).toMatchObject({ 'fcfs MB/s': '900', 'fcfs-user MB/s': '450', 'c MB/s': '1000', 'fcfs/c': '0.90', 'fcfs-user/fcfs': '0.50' })
    expect(cells('| rand-write-4k-direct-j1 |')).toMatchObject({ 'fcfs/c': '0.50', 'fcfs-user/fcfs': '1.00' })
    const head = md.split('\n').find((l) => l.startsWith('| workload |'))!
    for (const gone of ['ceiling MB/s', 'peer MB/s', 'fcfs/ceiling', 'direct MB/s']) expect(head).not.toContain(`| ${gone} |`)
  })

  it('judges issue 21\'s goals: fcfs ≥ 0.8 of c at 640 KiB and 4 KiB, fcfs-user ≥ 0.95 of fcfs, naming the workloads below', () => {
    const goal = (prefix: string): string[] => md.split('\n').find((l) => l.startsWith(`| ${prefix}`))!.split('|').map((c) => c.trim())
    const c = goal('issue 21 — unlimited: fcfs ≥ 80% of the C libfuse 3 server')
    expect(c[2]).toBe('FAIL')
    expect(c[3]).toBe('1 of 2 below 0.8: seq-read-640k-direct-j8 0.90; rand-write-4k-direct-j1 0.50')
    const user = goal('issue 21 — unlimited: fcfs-user (an ordinary user) ≥ 95% of fcfs')
    expect(user[2]).toBe('FAIL')
    expect(user[3]).toBe('1 of 2 below 0.95: seq-read-640k-direct-j8 0.50; rand-write-4k-direct-j1 1.00')
  })

  it('draws fcfs/c and fcfs-user/fcfs per workload in the ratio chart', () => {
    const spec = ratioChartSpec(results) as unknown as { layer: Array<{ data: { values: Array<{ workload: string; ratio: string; value: number }> } }> }
    expect(spec.layer[0].data.values).toEqual([
      { workload: 'seq-read-640k-direct-j8', ratio: 'fcfs/c', value: 0.9 },
      { workload: 'seq-read-640k-direct-j8', ratio: 'fcfs-user/fcfs', value: 0.5 },
      { workload: 'rand-write-4k-direct-j1', ratio: 'fcfs/c', value: 0.5 },
      { workload: 'rand-write-4k-direct-j1', ratio: 'fcfs-user/fcfs', value: 1 },
    ])
  })
})
