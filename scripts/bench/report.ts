/**
 * bench-report/report.md: the side-by-side tables, the ratios issue 6 asks
 * for, a goal check, and every run's raw figures. Also results.json.
 */
import { isSingleStream, linkRate, pageCacheChanges, SINGLE_LINKS, sharedFilesId, SUBJECT_TITLES, SUBJECTS, type Link, type Mode, type SubjectName, type Timing, type Workload } from './plan.js'
import type { Measurement } from './subjects.js'
import type { ProfileSummary } from './profile.js'
import { RATE_GOAL, RATE_STEP_ID, type RateFigures, type RateStep } from './rate.js'
import {
  IDLE_LIMIT,
  idleVerdict,
  MEMORY_IDS,
  STEADY_FRACTION,
  STEADY_SLACK,
  steadyLimit,
  steadyPair,
  steadyVerdict,
  WRITTEN_FACTOR,
  WRITTEN_SLACK,
  writtenLimit,
  writtenVerdict,
  type MemoryResults,
} from './memory.js'

const MB = 1e6
const MiB = 1024 * 1024

export interface ReportMeta {
  mode: Mode
  timing: Timing
  started: Date
  finished: Date
  interrupted: boolean
  machine: string[]
  /** subject → why it did not run (absent: it ran) */
  unavailable: Partial<Record<SubjectName, string>>
  notes: string[]
  /** why the memory probes did not run, when none did (--no-memory-probe, --only, fcfs unavailable) */
  memoryNotRun?: string
  charts: string[]
  argv: string[]
  /** --profile: CPU profile summaries of the fcfs server per run */
  profiles?: Array<{ id: string; file: string; summary: ProfileSummary }>
}

// ---------------------------------------------------------------------------
// Formatting

const mbps = (b?: number): string => (b === undefined ? '—' : (b / MB).toFixed(b / MB >= 100 ? 0 : 1))
const pct = (x?: number | null): string => (x === undefined || x === null || !Number.isFinite(x) ? '—' : `${x.toFixed(0)}%`)
const ratio = (a?: number, b?: number): string => (a === undefined || b === undefined || !b ? '—' : `${(a / b).toFixed(2)}`)
const mib = (b?: number | null): string => (b === undefined || b === null || !Number.isFinite(b) ? '—' : (b / MiB).toFixed(0))
const num = (x?: number | null, digits = 0): string => (x === undefined || x === null || !Number.isFinite(x) ? '—' : x.toFixed(digits))

/** A Markdown table; columns whose cells are all figures are right-aligned. Cells are one line, at most `maxCell` characters. */
function table(head: string[], rows: string[][], maxCell = 220): string {
  const clean = (c: string): string => {
    const one = c.replace(/\s*\n\s*/g, ' / ').replace(/\|/g, '\\|')
    return one.length > maxCell ? one.slice(0, maxCell - 3) + '…' : one
  }
  const figure = /^(—|-?[\d.,]+%?|skipped|error)$/
  const right = head.map((_, i) => i > 0 && rows.length > 0 && rows.every((r) => figure.test((r[i] ?? '').trim() || '—')))
  return [
    `| ${head.join(' | ')} |`,
    `| ${right.map((r) => (r ? '---:' : '---')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(clean).join(' | ')} |`),
  ].join('\n')
}

// ---------------------------------------------------------------------------
// Lookup

class Results {
  private readonly map = new Map<string, Measurement>()
  constructor(readonly all: Measurement[]) {
    for (const m of all) this.map.set(m.run.id, m)
  }
  get(subject: SubjectName, link: Link, w: Workload): Measurement | undefined {
    return this.map.get(`${subject}@${link}/${w.id}`)
  }
  /** The direct path has no page cache and no files: its O_DIRECT figure over the shared files stands for the buffered and queue-file workloads too. */
  direct(link: Link, w: Workload): Measurement | undefined {
    return this.map.get(`direct@${link}/${sharedFilesId(w.id).replace(/-buffered-/, '-direct-')}`)
  }
  /** whether the subject has any run (measured, skipped or failed) */
  has(subject: SubjectName): boolean {
    return this.all.some((m) => m.run.subject === subject)
  }
  ok(m?: Measurement): number | undefined {
    return m && m.status === 'ok' ? m.bw : undefined
  }
  workloads(link: Link): Workload[] {
    const seen = new Map<string, Workload>()
    for (const m of this.all) if (m.run.link === link && !seen.has(m.run.workload.id)) seen.set(m.run.workload.id, m.run.workload)
    return [...seen.values()]
  }
  links(): Link[] {
    return [...new Set(this.all.filter((m) => m.run.link !== 'unlimited').map((m) => m.run.link))]
  }
}

function cell(m: Measurement | undefined): string {
  if (!m) return '—'
  if (m.status === 'skipped') return 'skipped'
  if (m.status === 'error') return 'error'
  return mbps(m.bw)
}

// ---------------------------------------------------------------------------
// Sections

/** A column of the side-by-side table: shown when every subject it names has a run. */
interface Column {
  head: string
  needs: SubjectName[]
  cell: (w: Workload) => string
}

function overheadTable(r: Results): string {
  const at = (s: SubjectName, w: Workload): Measurement | undefined => r.get(s, 'unlimited', w)
  const mb = (s: SubjectName): Column => ({ head: `${s} MB/s`, needs: [s], cell: (w) => cell(at(s, w)) })
  const over = (a: SubjectName, b: SubjectName): Column => ({ head: `${a}/${b}`, needs: [a, b], cell: (w) => ratio(r.ok(at(a, w)), r.ok(at(b, w))) })
  const all: Column[] = [
    mb('fcfs'),
    mb('fcfs-user'),
    mb('c'),
    mb('ceiling'),
    mb('peer'),
    { head: 'direct MB/s', needs: ['direct'], cell: (w) => cell(r.direct('unlimited', w)) },
    over('fcfs', 'c'),
    over('fcfs', 'ceiling'),
    over('fcfs-user', 'fcfs'),
    over('fcfs', 'peer'),
    over('fcfs-user', 'peer'),
    { head: 'file/direct', needs: ['direct'], cell: (w) => ratio(r.ok(at('fcfs', w)), r.ok(r.direct('unlimited', w))) },
    mb('fcfs-pc'),
    over('fcfs-pc', 'peer'),
    { head: 'fcfs IOPS', needs: [], cell: (w) => num(at('fcfs', w)?.status === 'ok' ? at('fcfs', w)!.iops : undefined) },
    { head: 'fcfs peak outstanding', needs: [], cell: (w) => num(at('fcfs', w)?.peakOutstanding) },
    { head: 'fcfs CPU', needs: [], cell: (w) => pct(at('fcfs', w)?.cpu) },
    { head: 'fcfs-user CPU', needs: ['fcfs-user'], cell: (w) => pct(at('fcfs-user', w)?.cpu) },
    { head: 'c CPU', needs: ['c'], cell: (w) => pct(at('c', w)?.cpu) },
    { head: 'ceiling CPU', needs: ['ceiling'], cell: (w) => pct(at('ceiling', w)?.cpu) },
    { head: 'fcfs peak RSS MiB', needs: [], cell: (w) => mib(at('fcfs', w)?.hwm) },
  ]
  const columns = all.filter((c) => c.needs.every((s) => r.has(s)))
  const rows = r.workloads('unlimited').map((w) => [w.id, ...columns.map((c) => c.cell(w))])
  return table(['workload', ...columns.map((c) => c.head)], rows)
}

function linkTable(r: Results): string {
  const rows: string[][] = []
  for (const link of r.links()) {
    for (const w of r.workloads(link)) {
      const f = r.get('fcfs', link, w)
      const d = r.direct(link, w)
      const rate = linkRate(link)!
      rows.push([
        w.id,
        link,
        mbps(rate),
        cell(f),
        ratio(r.ok(f), rate),
        num(f?.peakOutstanding),
        pct(f?.cpu),
        mib(f?.hwm),
        cell(d),
        ratio(r.ok(d), rate),
        ratio(r.ok(f), r.ok(d)),
        f?.status === 'skipped' ? (f.note ?? '') : '',
      ])
    }
  }
  return table(['workload', 'link', 'modelled MB/s', 'fcfs MB/s', 'fcfs/link', 'fcfs peak outstanding', 'fcfs CPU', 'fcfs peak RSS MiB', 'direct MB/s', 'direct/link', 'file/direct', 'note'], rows)
}

type Verdict = 'pass' | 'FAIL' | 'not measured'

/**
 * Link-bound goal, 640 KiB with 48 O_DIRECT jobs: reads are judged on the
 * shared rwbuf files; writes on the queue-file (-q) runs, because the kernel
 * lets one write per FUSE file through at a time (48 writers on 4 rwbuf
 * files are 4 commands in flight whatever fcfs does). The rwbuf write rows
 * are listed but not judged, unless there is no -q run to judge instead.
 */
function linkGoal(r: Results, links: readonly Link[], need: number): [Verdict, string] {
  const judged: Array<boolean | undefined> = []
  const parts: string[] = []
  const meets = (m: Measurement): boolean | undefined => (m.status === 'ok' ? m.bw! / linkRate(m.run.link)! >= need && (m.peakOutstanding ?? 0) >= 48 : undefined)
  const figure = (m: Measurement | undefined, label: string, note = ''): void => {
    if (!m) return
    const what = m.status === 'ok' ? `${ratio(m.bw, linkRate(m.run.link)!)} (peak ${num(m.peakOutstanding)}${note ? `; ${note}` : ''})` : `${m.status}${note ? ` (${note})` : ''}`
    parts.push(`${m.run.link} ${label} ${what}`)
  }
  for (const link of links) {
    const get = (id: string): Measurement | undefined => r.all.find((m) => m.run.subject === 'fcfs' && m.run.link === link && m.run.workload.id === id)
    const read = get('seq-read-640k-direct-j48')
    const readQ = get('seq-read-640k-direct-j48-q')
    const write = get('seq-write-640k-direct-j48')
    const writeQ = get('seq-write-640k-direct-j48-q')
    const qJudged = writeQ !== undefined && writeQ.status !== 'skipped'
    if (read) judged.push(meets(read))
    if (qJudged) judged.push(meets(writeQ))
    else if (write) judged.push(meets(write))
    figure(read, 'read')
    figure(readQ, 'read -q', 'not judged')
    figure(write, 'write', qJudged ? 'rwbuf, not judged' : writeQ ? `judged: -q ${writeQ.status}` : '')
    figure(writeQ, 'write -q', qJudged ? 'judged' : '')
  }
  const anyQ = r.all.some((m) => m.run.subject === 'fcfs' && m.run.workload.queueFiles && m.status !== 'skipped')
  const how = anyQ ? 'writes judged on -q (each job its own queue file lun/0/q/<k>; the kernel lets one write per file through, so the rwbuf write row is 4 in flight): ' : ''
  return [verdictOf(judged), parts.length ? how + parts.join('; ') : 'link runs skipped']
}

function verdictOf(xs: Array<boolean | undefined>): Verdict {
  return xs.some((x) => x === undefined) || !xs.length ? 'not measured' : xs.every(Boolean) ? 'pass' : 'FAIL'
}

const count = (x: number): string => Math.round(x).toLocaleString('en-US')

/** The command-rate goal: judged on TEST UNIT READY per CPU second of the rate process (one core). */
function rateGoal(rate: RateStep | undefined): [Verdict, string] {
  if (!rate) return ['not measured', `the rate step did not run (--subjects / --only leave out ${RATE_STEP_ID})`]
  if (rate.status !== 'ok') return ['not measured', `rate step ${rate.status}${rate.note ? `: ${rate.note.split('\n')[0].slice(0, 160)}` : ''}`]
  const { testUnitReady: t, read4k: rd, depth, seconds, backend } = rate.report!
  const mark = (f: RateFigures): string => (f.perCpuSecond >= RATE_GOAL ? '≥' : '<')
  return [
    t.perCpuSecond >= RATE_GOAL ? 'pass' : 'FAIL',
    `verdict from TEST UNIT READY per CPU-second of the rate process (the one-core figure): ${count(t.perCpuSecond)}/CPU-s, ${count(t.wall)}/s by the wall clock (CPU load ${t.cpuLoad.toFixed(2)}); ` +
      `4 KiB READ ${count(rd.perCpuSecond)}/CPU-s (${mark(rd)} ${count(RATE_GOAL)}), ${count(rd.wall)}/s wall; ${backend} LUN, depth ${depth}, ${seconds} s each`,
  ]
}

function rateTable(rate: RateStep): string {
  if (rate.status !== 'ok') return `_${rate.status}${rate.note ? `: ${rate.note.split('\n')[0]}` : ''}_`
  const rows = (
    [
      ['TEST UNIT READY', rate.report!.testUnitReady],
      ['READ(10) 4 KiB', rate.report!.read4k],
    ] as const
  ).map(([name, f]) => [name, count(f.wall), count(f.perCpuSecond), f.cpuLoad.toFixed(2), String(f.commands), f.seconds.toFixed(1), f.completionsPerInterrupt.toFixed(1)])
  return table(['command', 'commands/s (wall)', 'commands per CPU second', 'CPU load (cores)', 'commands', 'seconds', 'completions per interrupt'], rows)
}

function goals(r: Results, meta: ReportMeta, rate: RateStep | undefined, memory: MemoryResults | undefined): string {
  const out: Array<[string, Verdict, string]> = []
  const verdict = verdictOf
  const find = (link: Link, pred: (w: Workload) => boolean): Measurement[] =>
    r.all.filter((m) => m.run.subject === 'fcfs' && m.run.link === link && pred(m.run.workload))

  // Link-bound, 48 jobs at 640 KiB.
  for (const [links, need] of [[['2G', '4G', '8G'], 0.97], [['16G'], 0.9]] as const) {
    out.push([`640 KiB, 48 jobs over the targets ≥ ${need * 100}% of the link with ≥ 48 outstanding at ${links.join('/')}`, ...linkGoal(r, links, need)])
  }
  {
    const ms = SINGLE_LINKS.flatMap((l) => find(l, isSingleStream))
    const ok = ms.map((m) => (m.status === 'ok' ? m.bw! / linkRate(m.run.link)! >= 0.95 : undefined))
    out.push(['single buffered reader / writer ≥ 95% of the link at 2G/4G/8G', verdict(ok), ms.filter((m) => m.status === 'ok').map((m) => `${m.run.link} ${m.run.workload.id} ${ratio(m.bw, linkRate(m.run.link)!)}`).join('; ') || 'link runs skipped'])
  }
  // Overhead-bound.
  const ws = r.workloads('unlimited')
  /** a/b ≥ need on every workload that `pred` picks; a verdict only where both have a figure. */
  const versus = (a: SubjectName, b: SubjectName, pred: (w: Workload) => boolean, need: number): [Verdict, string] => {
    if (meta.unavailable[b] || meta.unavailable[a]) return ['not measured', `${meta.unavailable[a] ? a : b}: ${meta.unavailable[a] ?? meta.unavailable[b]}`]
    // Workloads neither side was planned on (fcfs-pc's own rows, say) are not theirs to judge.
    const pairs = ws
      .filter((w) => pred(w) && (r.get(a, 'unlimited', w) || r.get(b, 'unlimited', w)))
      .map((w) => [w, r.ok(r.get(a, 'unlimited', w)), r.ok(r.get(b, 'unlimited', w))] as const)
    const ok = pairs.map(([, f, c]) => (f === undefined || c === undefined ? undefined : f / c >= need))
    const below = pairs.filter(([, f, c]) => f !== undefined && c !== undefined && f / c < need).length
    const head = pairs.length && below ? `${below} of ${pairs.length} below ${need}: ` : ''
    return [verdict(ok), head + pairs.map(([w, f, c]) => `${w.id} ${ratio(f, c)}`).join('; ')]
  }
  out.push(['unlimited: fcfs ≥ 90% of the ceiling, 640 KiB sequential', ...versus('fcfs', 'ceiling', (w) => w.bs === 640 * 1024 && !w.rw.startsWith('rand'), 0.9)])
  out.push(['unlimited: fcfs ≥ 85% of the ceiling, 4 KiB random', ...versus('fcfs', 'ceiling', (w) => w.rw.startsWith('rand'), 0.85)])
  if (r.has('c')) {
    out.push([
      'issue 21 — unlimited: fcfs ≥ 80% of the C libfuse 3 server (c), every 640 KiB and 4 KiB workload at 1 and 8 jobs',
      ...versus('fcfs', 'c', (w) => (w.bs === 640 * 1024 || w.bs === 4 * 1024) && (w.jobs === 1 || w.jobs === 8), 0.8),
    ])
  }
  if (r.has('fcfs-user')) out.push(['issue 21 — unlimited: fcfs-user (an ordinary user) ≥ 95% of fcfs (root) on every workload', ...versus('fcfs-user', 'fcfs', () => true, 0.95)])
  // nbdfuse cannot serve queue files (-q): those workloads have no peer figure and are left out here.
  const vsPeer = (subjectOf: (w: Workload) => SubjectName, goal: string, how: string): void => {
    const pairs = ws.filter((w) => !w.queueFiles).map((w) => [w, r.ok(r.get(subjectOf(w), 'unlimited', w)), r.ok(r.get('peer', 'unlimited', w))] as const)
    const ok = pairs.map(([, f, p]) => (f === undefined || p === undefined ? undefined : f > p))
    const losers = pairs.filter(([, f, p]) => f !== undefined && p !== undefined && f <= p).map(([w, f, p]) => `${w.id} ${ratio(f, p)}`)
    const missing = pairs.filter(([, f, p]) => f === undefined && p !== undefined).map(([w]) => w.id)
    const skippedQ = ws.some((w) => w.queueFiles) ? ' (queue-file workloads -q left out: the peer has none)' : ''
    const figures = [losers.length ? `slower on: ${losers.join('; ')}` : pairs.length ? 'faster on all' : '', missing.length ? `no figure for: ${missing.join('; ')}` : '', how].filter(Boolean).join('; ')
    out.push([goal, meta.unavailable.peer ? 'not measured' : verdict(ok), figures + skippedQ])
  }
  vsPeer(() => 'fcfs', 'unlimited: fcfs faster than nbdkit+nbdfuse on every workload (default mount: no page cache)', '')
  if (r.has('fcfs-user')) vsPeer(() => 'fcfs-user', 'issue 21 — unlimited: fcfs-user (mounted by an ordinary user) faster than nbdkit+nbdfuse on every workload', 'the peer ran as root')
  if (!meta.unavailable['fcfs-pc'] && ws.some((w) => pageCacheChanges(w))) {
    vsPeer(
      (w) => (pageCacheChanges(w) ? 'fcfs-pc' : 'fcfs'),
      'unlimited: fcfs --page-cache faster than nbdkit+nbdfuse on every workload (buffered reads page-cached, as the peer\'s are)',
      'buffered reads from fcfs-pc; every other workload opens the same way on both mounts (O_DIRECT, or for writing), so its fcfs figure stands',
    )
  }
  out.push([`direct API ≥ ${count(RATE_GOAL)} commands/s on one core (null target)`, ...rateGoal(rate)])
  out.push(...memoryGoals(memory, meta.memoryNotRun))
  return table(['goal (issue 6, or as marked)', 'verdict', 'figures'], out.map(([g, v, d]) => [g, v, d]), 1000)
}

const signedMiB = (b: number): string => `${b >= 0 ? '+' : '−'}${mib(Math.abs(b))} MiB`
const probeFailed = (p: { status: string; note?: string }): string => `${p.status}${p.note ? `: ${p.note.split('\n')[0].slice(0, 160)}` : ''}`

function memoryTable(m: MemoryResults): string {
  const rows: string[][] = []
  if (m.idle) {
    const p = m.idle
    rows.push(['idle', p.what, 'mounted, 1 s idle', p.status === 'ok' ? mib(p.rss) : p.status, p.status === 'ok' ? `${(p.rss! / MB).toFixed(0)} MB (limit ${(IDLE_LIMIT / MB).toFixed(0)} MB)` : probeFailed(p), idleVerdict(p)])
  }
  if (m.written) {
    const p = m.written
    rows.push([
      'written',
      p.what,
      `${mib(p.written)} MiB written (${p.placement})${p.bw ? `, ${mbps(p.bw)} MB/s` : ''}`,
      p.status === 'ok' ? `${mib(p.rssBefore)} → ${mib(p.rssAfter)}` : p.status,
      p.status === 'ok'
        ? `growth ${signedMiB(p.growth!)} = ${(p.growth! / p.written).toFixed(2)} MiB per MiB written (limit ${WRITTEN_FACTOR} × ${mib(p.written)} + ${mib(WRITTEN_SLACK)} = ${mib(writtenLimit(p.written))} MiB)`
        : probeFailed(p),
      writtenVerdict(p),
    ])
  }
  if (m.steady) {
    const p = m.steady
    const pair = steadyPair(p)
    const samples = p.samples.map((x) => `${x.round === 0 ? 'written once' : `r${x.round}`} ${mib(x.rss)}`).join(', ')
    const growth = pair
      ? `round ${pair.last.round} vs round 2: ${signedMiB(pair.last.rss - pair.base.rss)} (${(((pair.last.rss - pair.base.rss) / pair.base.rss) * 100).toFixed(1)}%; limit +${STEADY_FRACTION * 100}% + ${mib(STEADY_SLACK)} MiB = ${mib(steadyLimit(pair.base.rss))} MiB); peak ${mib(pair.last.hwm)} MiB`
      : 'fewer than 2 rounds: no baseline'
    rows.push([
      'steady',
      p.what,
      `${p.rounds} rounds × ${p.roundSeconds} s of one mix (${p.mix})${p.samples.length > 1 ? `; MB/s per round ${p.samples.filter((x) => x.bw !== undefined).map((x) => mbps(x.bw)).join(' / ')}` : ''}`,
      samples ? `mounted ${mib(p.rssMounted)}; ${samples}` : mib(p.rssMounted),
      p.status === 'ok' ? growth : probeFailed(p),
      steadyVerdict(p),
    ])
  }
  return table(['probe', 'mount', 'what it did', 'RSS MiB', 'figures', 'verdict'], rows, 1000)
}

/** The three goal rows of the memory goal; each says why it was not measured when it was not. */
function memoryGoals(m: MemoryResults | undefined, notRun: string | undefined): Array<[string, Verdict, string]> {
  const missing = (id: string): string => notRun ?? `the probe ${id} did not run (--only)`
  const { idle, written, steady } = m ?? {}
  const pair = steadyPair(steady)
  return [
    [
      'RSS < 150 MB with 4 × 1 TiB sparse LUNs',
      idleVerdict(idle),
      !idle ? missing(MEMORY_IDS.idle) : idle.status !== 'ok' ? probeFailed(idle) : `${(idle.rss! / MB).toFixed(0)} MB idle after mount`,
    ],
    [
      'RSS grows with data written, not capacity',
      writtenVerdict(written),
      !written
        ? missing(MEMORY_IDS.written)
        : written.status !== 'ok'
          ? probeFailed(written)
          : `${signedMiB(written.growth!)} after writing ${mib(written.written)} MiB over ${written.what}: ${(written.growth! / written.written).toFixed(2)} MiB per MiB written (limit ${WRITTEN_FACTOR} × written + ${mib(WRITTEN_SLACK)} MiB = ${mib(writtenLimit(written.written))} MiB)`,
    ],
    [
      'no RSS growth across a long run',
      steadyVerdict(steady),
      !steady
        ? missing(MEMORY_IDS.steady)
        : steady.status !== 'ok'
          ? probeFailed(steady)
          : !pair
            ? `${steady.rounds} round(s): no round-2 baseline`
            : `RSS after round ${pair.last.round} ${mib(pair.last.rss)} MiB vs ${mib(pair.base.rss)} MiB after round 2 (${signedMiB(pair.last.rss - pair.base.rss)}; limit +${STEADY_FRACTION * 100}% + ${mib(STEADY_SLACK)} MiB); ${steady.rounds} rounds × ${steady.roundSeconds} s; every round: ${steady.samples.filter((x) => x.round > 0).map((x) => mib(x.rss)).join(' ')} MiB`,
    ],
  ]
}

function allRuns(r: Results): string {
  const rows = r.all.map((m) => [
    m.run.id,
    m.status === 'ok' ? mbps(m.bw) : m.status,
    num(m.iops),
    num(m.p50),
    num(m.p99),
    pct(m.cpu),
    pct(m.clientCpu),
    mib(m.rss),
    mib(m.hwm),
    num(m.peakOutstanding),
    m.note ?? '',
  ])
  return table(['run', 'MB/s', 'IOPS', 'p50 µs', 'p99 µs', 'server CPU', 'fio CPU', 'RSS MiB', 'peak RSS MiB', 'peak outstanding', 'note'], rows)
}

export function renderReport(ms: Measurement[], meta: ReportMeta, rate?: RateStep, memory?: MemoryResults): string {
  const r = new Results(ms)
  const secs = ((meta.finished.getTime() - meta.started.getTime()) / 1000).toFixed(0)
  const lines: string[] = []
  lines.push(`# fcfs benchmark — ${meta.mode} run${meta.interrupted ? ' (INTERRUPTED: partial)' : ''}`)
  lines.push('')
  lines.push(`${meta.started.toISOString()}, ${secs} s, \`${meta.argv.join(' ')}\``)
  lines.push('')
  for (const m of meta.machine) lines.push(`- ${m}`)
  lines.push(
    `- every run: fio psync, ${meta.timing.runtime} s measured${meta.timing.ramp ? ` after ${meta.timing.ramp} s ramp` : ''}, jobs dealt round-robin over 4 files (targets), each job in its own 20 MiB region; buffered writes end with fsync; a fresh mount per run`,
  )
  lines.push('- MB/s = 10^6 bytes/s; link model ≈ 100 MB/s per 1GFC per direction; CPU = % of one core over the run (2 cores = 200%); RSS from /proc/<pid>/status')
  lines.push('')
  lines.push('Subjects:')
  lines.push('')
  for (const s of SUBJECTS) {
    const why = meta.unavailable[s]
    lines.push(`- **${s}**: ${SUBJECT_TITLES[s]}${why ? ` — _skipped: ${why}_` : ''}`)
  }
  for (const n of meta.notes) lines.push(`- ${n}`)
  lines.push('')
  lines.push('## Overhead-bound: `--link unlimited`')
  lines.push('')
  lines.push(
    'file/direct compares fcfs through FUSE with the direct API on the same workload (the direct path has no page cache and no files: its O_DIRECT figure stands for the buffered row and the -q row too). fcfs-pc: the same fcfs mounted with --page-cache, on buffered reads only. ' +
      '-q rows: every job on a file of its own that is the same LUN (fcfs `lun/0/q/<k>`, the ceilings\' `f<i>.q<k>` aliases), same regions; the kernel lets one write per FUSE file through at a time, so only these keep 48 O_DIRECT writes in flight. ' +
      'fcfs/c: fcfs against the C libfuse 3 RAM disk, the most a user-space server reaches on this kernel (1 MiB requests, a thread per core and more, parallel direct writes): below 1 is what fcfs costs on top of FUSE itself. ' +
      'fcfs/ceiling: against the minimal fuse-native (libfuse 2) server, the stack fcfs started from. fcfs-user/fcfs: the same mount made by an ordinary user against root\'s.',
  )
  lines.push('')
  lines.push(overheadTable(r))
  lines.push('')
  if (r.links().length) {
    lines.push('## Link-bound: fcfs at modelled link speeds')
    lines.push('')
    lines.push(linkTable(r))
    lines.push('')
  }
  if (rate) {
    lines.push('## Direct API command rate (null target)')
    lines.push('')
    lines.push(
      `\`scripts/direct-rate.ts --json --backend null\` in a process of its own: ${rate.report ? `${rate.report.depth} commands` : 'commands'} kept in flight from one async loop, ` +
        'through the HBA ring to a null LUN (reads are a zero fill, writes discarded) at `--link unlimited`. ' +
        'Per CPU second = commands / (user + system CPU seconds of that process): the "one core" figure of the goal, steadier than the wall clock on a shared machine.' +
        (rate.spread ? ` Median of ${rate.spread.length} repetitions by TEST UNIT READY per CPU second: ${rate.spread.map(count).join(' / ')}.` : ''),
    )
    lines.push('')
    lines.push(rateTable(rate))
    lines.push('')
  }
  if (memory && Object.keys(memory).length) {
    lines.push('## Memory')
    lines.push('')
    lines.push(
      'VmRSS of the fcfs server (`/proc/<pid>/status`), RAM backend, `--link unlimited`. ' +
        'idle: 4 × 1 TiB sparse LUNs, 1 s after mounting. written: on that same mount, data written with O_DIRECT, then 1 s idle; growth = RSS after − RSS before. ' +
        'steady: 4 × 1 GiB LUNs, the regions written once (round 0), then the same fio mix round after round; round 2 is the baseline (pools, page-cache traffic and JIT have settled by then).',
    )
    lines.push('')
    lines.push(memoryTable(memory))
    lines.push('')
  }
  lines.push('## Goals')
  lines.push('')
  lines.push(goals(r, meta, rate, memory))
  lines.push('')
  if (meta.charts.length) {
    lines.push('## Charts')
    lines.push('')
    for (const c of meta.charts) lines.push(`![${c}](${c})`, '')
  }
  if (meta.profiles?.length) {
    lines.push('## Where the fcfs process spends its time (--profile)')
    lines.push('')
    lines.push('Self time per function over the whole server process (start-up and scan included); open the .cpuprofile in Chrome DevTools or speedscope for the full picture.')
    lines.push('')
    for (const p of meta.profiles) {
      lines.push(`### ${p.id}`)
      lines.push('')
      lines.push(`[${p.file}](${p.file}): ${(p.summary.duration / 1e6).toFixed(1)} s, ${(p.summary.busy * 100).toFixed(0)}% of samples busy`)
      lines.push('')
      lines.push(table(['function', 'where', 'self'], p.summary.top.map((l) => [l.fn, l.where, `${(l.self * 100).toFixed(1)}%`])))
      lines.push('')
    }
  }
  lines.push('## Every run')
  lines.push('')
  lines.push(allRuns(r))
  lines.push('')
  return lines.join('\n')
}
