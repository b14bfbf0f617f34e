// What `npm run bench` plans in each mode: the goal run must hold every run
// the goal table judges and nothing it does not, or its verdicts would be
// "not measured" (or the run an hour longer than it needs to be).
import { describe, expect, it } from 'vitest'
import { allWorkloads, buildPlan, defaultLinks, repeatPlan, SUBJECTS, timingFor } from '../../scripts/bench/plan.js'

const plan = (mode: 'quick' | 'full' | 'goals') => buildPlan({ mode, subjects: [...SUBJECTS], links: defaultLinks() })

describe('bench plan', () => {
  it('goals mode runs every workload at unlimited for fcfs, the ceiling and the peer, and fcfs-pc on the buffered reads only', () => {
    const ids = new Set(plan('goals').map((r) => r.id))
    for (const w of allWorkloads()) {
      for (const s of ['fcfs', 'ceiling', 'peer'] as const) expect(ids.has(`${s}@unlimited/${w.id}`), `${s} ${w.id}`).toBe(true)
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
