/**
 * `npm run bench` — issue 6's benchmark, in one go, side by side:
 *   fcfs through FUSE (fio), the same mount made by an ordinary user
 *   (fcfs-user), the two ceilings (c: a C libfuse 3 RAM disk; ceiling: a
 *   minimal fuse-native file), the peer (nbdkit memory + nbdfuse) and the
 *   direct API through the same ring,
 *   at --link unlimited and at modelled link speeds; then the direct API's
 *   command rate against a null LUN (scripts/direct-rate.ts, one step); then
 *   the memory probes of fcfs (scripts/bench/memory.ts: idle, written, steady).
 * Writes bench-report/report.md, results.json and SVG charts.
 *
 *   npm run bench                      quick mode (default): a subset, 0.5 s warm-up + 2 s per run
 *   npm run bench -- --full            the whole matrix, 10 s per run
 *   npm run bench -- --goals           the runs the goals are judged on, 3 rounds of 5 s: the verdict run
 *   npm run bench -- --only 'seq-read' runs whose id (subject@link/workload) matches
 *   npm run bench -- --only memory     just the three memory probes
 *   npm run bench -- --help            every option
 */
import { createRequire } from 'node:module'
import { hideBin } from 'yargs/helpers'
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { buildPlan, repeatPlan, defaultLinks, LINKS, SUBJECTS, timingFor, type Link, type Mode, type Run, type SubjectName } from './bench/plan.js'
import { fioVersion } from './bench/fio.js'
import { cleanupAll, installSignalHandlers, onPath, run } from './bench/proc.js'
import {
  ceilingSubject,
  C_BUILD_PACKAGES,
  C_CEILING_THREADS,
  cSubject,
  directRateScript,
  directSubject,
  ensureCBuildTools,
  ensurePeerInstalled,
  fcfsSubject,
  useDist,
  peerSubject,
  probeFcfs,
  REPO_ROOT,
  type Measurement,
  type Subject,
} from './bench/subjects.js'
import type { DirectVia } from './bench/direct.js'
import { BENCH_USER, type BenchUser } from './bench/user.js'
import { createProgress } from './bench/progress.js'
import { renderReport, type ReportMeta } from './bench/report.js'
import { jobsChartSpec, linkChartSpec, ratioChartSpec, renderSvg } from './bench/charts.js'
import { summarizeProfile } from './bench/profile.js'
import { medianRate, RATE_STEP_ID, rateStepSeconds, rateSummary, runRateStep, type RateStep } from './bench/rate.js'
import {
  MEMORY_IDS,
  MEMORY_PROBES,
  memoryProbeSeconds,
  memorySettingsFor,
  memorySummary,
  sparseProbes,
  steadyProbe,
  STEADY_MIX,
  type MemoryProbeName,
  type MemoryResults,
  type MemorySettings,
} from './bench/memory.js'

// yargs's CommonJS build: its ES module build wraps help in the middle of words (as src/cli.ts says).
const yargs = createRequire(import.meta.url)('yargs') as typeof import('yargs').default

interface Args {
  quick: boolean
  full: boolean
  goals: boolean
  only?: string
  subjects: string
  links?: string
  runtime?: number
  ramp?: number
  'rate-seconds'?: number
  out: string
  'direct-via': DirectVia
  'fuse-engine'?: 'native' | 'raw'
  'page-cache': boolean
  'write-cache'?: 'volatile' | 'off'
  backend: 'ram' | 'file'
  'medium-latency'?: string
  'medium-bandwidth'?: string
  profile: boolean
  progress: boolean
  install: boolean
  'memory-probe': boolean
  'memory-write'?: number
  'memory-rounds'?: number
  'memory-round-seconds'?: number
  prefill: boolean
  'prefill-writes': boolean
  repeat?: number
  rounds?: number
  'dry-run': boolean
  snapshot: boolean
}

function parseArgs(argv: string[]): Args {
  return yargs(argv)
    .scriptName('npm run bench --')
    .usage(
      '$0 [options]\n\nMeasures fcfs side by side with the same mount made by an ordinary user, a C libfuse 3 ceiling, a minimal fuse-native ceiling, nbdkit+nbdfuse and the direct API; writes a Markdown report and SVG charts.',
    )
    .option('quick', { type: 'boolean', default: false, describe: 'quick mode (the default): a subset of the matrix, 0.5 s warm-up + 2 s measured per run, ~5 min' })
    .option('full', { type: 'boolean', default: false, describe: 'the full matrix of issue 6, 10 s per run (+2 s ramp)' })
    .option('goals', {
      type: 'boolean',
      default: false,
      describe: 'every run the goal table judges (all workloads at unlimited; 48 jobs of 640 KiB and the single buffered streams at the links), 5 s per run (+1 s ramp), 3 rounds (--rounds), ~65 min: the verdicts on medians',
    })
    .option('only', { type: 'string', describe: 'regex on run ids like fcfs@unlimited/seq-read-640k-direct-j48' })
    .option('subjects', { type: 'string', default: SUBJECTS.join(','), describe: 'comma list of subjects' })
    .option('links', { type: 'string', describe: `comma list of link speeds besides unlimited (${LINKS.join('|')})`, defaultDescription: defaultLinks().join(',') })
    .option('runtime', { type: 'number', describe: 'seconds per run (overrides the mode)' })
    .option('ramp', { type: 'number', describe: 'seconds of warm-up per run (overrides the mode)' })
    .option('rate-seconds', { type: 'number', describe: `seconds per command kind of the command-rate step (${RATE_STEP_ID})`, defaultDescription: 'the run time' })
    .option('out', { type: 'string', default: path.join(REPO_ROOT, 'bench-report'), describe: 'report directory' })
    .option('direct-via', { choices: ['module', 'blockdev'] as const, default: 'module' as DirectVia, describe: 'direct path: src/direct.ts openFabric (module), or the fs layer\'s BlockDevice without FUSE (blockdev: separates the cost of FUSE from that of fs/)' })
    .option('page-cache', { type: 'boolean', default: false, describe: 'fcfs mount --page-cache: buffered opens use the kernel page cache (as the peer\'s do); O_DIRECT runs are unchanged' })
    .option('write-cache', { choices: ['volatile', 'off'] as const, describe: 'fcfs mount --write-cache: every LUN behind a volatile write cache (WRITE is GOOD once cached) or none (the default)' })
    .option('backend', { choices: ['ram', 'file'] as const, default: 'ram' as const, describe: "fcfs's LUNs: sparse RAM, or files in the run's temp directory (fcfs mount --backing-dir: a persistent backend, written through the host's page cache)" })
    .option('medium-latency', { type: 'string', describe: "every fcfs LUN's store answers each call this much later (config \"medium\": a slow medium UNDER the write cache, as a disk's platters), e.g. 200us, 1ms" })
    .option('medium-bandwidth', { type: 'string', describe: "every fcfs LUN's store moves data at this rate, one wire per LUN (config \"medium\"), e.g. 300MB/s" })
    .option('fuse-engine', { choices: ['native', 'raw'] as const, describe: 'fcfs mount --fuse-engine: fuse-native/libfuse 2 (native) or the kernel protocol on /dev/fuse (raw, root only)', defaultDescription: 'fcfs\'s default' })
    .option('profile', { type: 'boolean', default: false, describe: 'node --cpu-prof every fcfs server into <out>/profiles' })
    .option('progress', { type: 'boolean', default: true, describe: 'progress display on stderr (--no-progress: silent)' })
    .option('install', {
      type: 'boolean',
      default: true,
      describe: `apt-get install fio, nbdkit and nbdfuse (the peer), ${C_BUILD_PACKAGES.join(', ')} (the C ceiling) when missing and root (--no-install: never)`,
    })
    .option('prefill-writes', {
      type: 'boolean',
      default: true,
      describe:
        'write the regions once, untimed, before each write run too (--no-prefill-writes: never): the run measures overwrites, not the server taking new memory from the OS — on a fresh VM those page faults cost fcfs 4× on 48 writers, and the subjects that run after it find the memory already backed',
    })
    .option('prefill', {
      type: 'boolean',
      default: true,
      describe:
        'write the regions once, untimed, before each read workload, so reads move data, not sparse zeros (--no-prefill: unwritten regions, which fcfs answers without a copy from the backend: 640 KiB O_DIRECT reads at 8 jobs looked 1.5× the ceiling that way and are 0.7–0.9 of it with data)',
    })
    .option('repeat', { type: 'number', default: 1, describe: 'run every side-by-side group N times (A B C A B C) and report the median run: steadier figures on a busy machine' })
    .option('rounds', {
      type: 'number',
      defaultDescription: '3 with --goals, else 1',
      describe:
        'run the whole plan N times over and report the median run of each id: the repetitions of a group lie a whole round apart, so a slow phase of the host (minutes long on these VMs) spoils one of them, not all (--repeat\'s back-to-back ones share it)',
    })
    .option('memory-probe', {
      type: 'boolean',
      default: true,
      describe: `the memory probes of fcfs (--no-memory-probe: none): RSS with 4 × 1 TiB sparse LUNs idle (${MEMORY_IDS.idle}), its growth per MiB written (${MEMORY_IDS.written}), and across rounds of one fio mix (${MEMORY_IDS.steady})`,
    })
    .option('memory-write', { type: 'number', describe: 'MiB the written probe writes (rounded down to a multiple of 8: 1/8 at each place)', defaultDescription: '256 quick, 1024 full' })
    .option('memory-rounds', { type: 'number', describe: 'rounds of the steady probe (the verdict compares the last with round 2)', defaultDescription: '6 quick, 10 full' })
    .option('memory-round-seconds', { type: 'number', describe: 'seconds per round of the steady probe', defaultDescription: '2 quick, 10 full' })
    .option('snapshot', { type: 'boolean', default: true, describe: 'run the servers from a copy of dist/ taken at the start (others may rebuild dist/ meanwhile)' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'print the plan and exit' })
    .check((a) => {
      if ([a.quick, a.full, a.goals].filter(Boolean).length > 1) throw new Error('--quick, --full and --goals exclude each other')
      for (const s of String(a.subjects).split(',')) if (!(SUBJECTS as readonly string[]).includes(s)) throw new Error(`--subjects: unknown subject ${s}`)
      for (const l of String(a.links ?? '').split(',').filter(Boolean)) if (!(LINKS as readonly string[]).includes(l)) throw new Error(`--links: unknown link ${l}`)
      if (a.only) new RegExp(a.only)
      if (a['rate-seconds'] !== undefined && !(a['rate-seconds'] > 0)) throw new Error('--rate-seconds: must be a positive number of seconds')
      if (a['memory-write'] !== undefined && !(a['memory-write'] >= 8)) throw new Error('--memory-write: at least 8 (MiB)')
      if (a['memory-rounds'] !== undefined && !(Number.isInteger(a['memory-rounds']) && a['memory-rounds'] >= 1)) throw new Error('--memory-rounds: a whole number ≥ 1')
      if (a.rounds !== undefined && !(Number.isInteger(a.rounds) && (a.rounds as number) >= 1)) throw new Error(`--rounds: a whole number ≥ 1, got ${a.rounds}`)
      if (!(Number.isInteger(a.repeat) && (a.repeat as number) >= 1)) throw new Error(`--repeat: a whole number ≥ 1, got ${a.repeat}`)
      if (a['memory-round-seconds'] !== undefined && !(a['memory-round-seconds'] > 0)) throw new Error('--memory-round-seconds: must be a positive number of seconds')
      return true
    })
    .strict()
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 110))
    .help()
    .parseSync() as unknown as Args
}

const MB = 1e6

function machineInfo(fio: string | null): string[] {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.arch()
  let commit = 'unknown'
  try {
    commit = readFileSync(path.join(REPO_ROOT, '.git', 'HEAD'), 'utf8').trim()
    if (commit.startsWith('ref: ')) commit = `${commit.slice(5)} @ ${readFileSync(path.join(REPO_ROOT, '.git', commit.slice(5)), 'utf8').trim().slice(0, 10)}`
  } catch { /* not a checkout */ }
  return [
    `machine: ${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${os.release()}, load average at start ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    `software: node ${process.version}, ${fio ?? 'fio missing'}, commit ${commit}`,
  ]
}

async function ensureFio(install: boolean, log: (s: string) => void): Promise<string | null> {
  let v = await fioVersion()
  if (!v && install && process.getuid?.() === 0 && onPath('apt-get')) {
    log('installing fio with apt-get …')
    await run('env', ['DEBIAN_FRONTEND=noninteractive', 'apt-get', 'install', '-y', '-q', 'fio'], { timeoutMs: 300_000 }).catch(() => null)
    v = await fioVersion()
  }
  return v
}

/** One measurement per run id: the one with the median throughput, noting the spread. */
function medianOf(ms: Measurement[]): Measurement[] {
  const byId = new Map<string, Measurement[]>()
  for (const m of ms) byId.set(m.run.id, [...(byId.get(m.run.id) ?? []), m])
  const out: Measurement[] = []
  for (const group of byId.values()) {
    if (group.length === 1) { out.push(group[0]); continue }
    const ok = group.filter((m) => m.status === 'ok').sort((a, b) => a.bw! - b.bw!)
    if (!ok.length) { out.push(group[0]); continue }
    const mid = ok[Math.floor((ok.length - 1) / 2)]
    const spread = `median of ${ok.length}: ${ok.map((m) => (m.bw! / MB).toFixed(0)).join(' / ')} MB/s`
    out.push({ ...mid, note: [mid.note, spread, ok.length < group.length ? `${group.length - ok.length} failed` : ''].filter(Boolean).join('; ') })
  }
  return out
}

function summary(m: Measurement): string {
  if (m.status !== 'ok') return `${m.run.id}: ${m.status}${m.note ? ` (${m.note.split('\n')[0].slice(0, 160)})` : ''}`
  const parts = [`${(m.bw! / MB).toFixed(0)} MB/s`, `${m.iops!.toFixed(0)} IOPS`]
  if (m.cpu !== undefined && m.cpu !== null) parts.push(`cpu ${m.cpu.toFixed(0)}%`)
  if (m.peakOutstanding !== undefined && m.peakOutstanding !== null) parts.push(`peak ${m.peakOutstanding}`)
  if (m.hwm) parts.push(`rss ${(m.hwm / 2 ** 20).toFixed(0)} MiB`)
  return `${m.run.id}: ${parts.join(', ')}`
}

async function main(): Promise<number> {
  const args = parseArgs(hideBin(process.argv))
  const mode: Mode = args.full ? 'full' : args.goals ? 'goals' : 'quick'
  const base = timingFor(mode)
  const timing = { runtime: args.runtime ?? base.runtime, ramp: args.ramp ?? base.ramp }
  const subjectsWanted = args.subjects.split(',') as SubjectName[]
  const links = (args.links ? args.links.split(',').filter(Boolean) : defaultLinks()) as Link[]
  const only = args.only ? new RegExp(args.only) : undefined
  const prefill = args.prefill
  const repeat = args.repeat ?? 1
  const rounds = args.rounds ?? (mode === 'goals' ? 3 : 1)
  const plan = repeatPlan(buildPlan({ mode, subjects: subjectsWanted, links, only }), repeat)
  // The command-rate step: the direct API against a null LUN, as long per command kind as a run.
  const rateWanted = subjectsWanted.includes('direct') && (!only || only.test(RATE_STEP_ID))
  const rateSeconds = args['rate-seconds'] ?? timing.runtime
  // The memory probes: fcfs alone, once each (not repeated), after everything else.
  const memBase = memorySettingsFor(mode)
  const memSettings: MemorySettings = {
    writeMiB: args['memory-write'] ?? memBase.writeMiB,
    rounds: args['memory-rounds'] ?? memBase.rounds,
    roundSeconds: args['memory-round-seconds'] ?? memBase.roundSeconds,
  }
  const memWanted = new Set<MemoryProbeName>(
    args['memory-probe'] && subjectsWanted.includes('fcfs') ? MEMORY_PROBES.filter((n) => !only || only.test(MEMORY_IDS[n])) : [],
  )
  if (args['dry-run']) {
    for (let round = 1; round <= rounds; round++) {
      if (rounds > 1) process.stdout.write(`# round ${round} of ${rounds}\n`)
      for (const r of plan) process.stdout.write(`${r.id}\n`)
      if (rateWanted) process.stdout.write(`${RATE_STEP_ID} (direct-rate --json --backend null --seconds ${rateSeconds}${repeat > 1 ? `, ${repeat} times` : ''})\n`)
    }
    const memText: Record<MemoryProbeName, string> = {
      idle: '4 × 1 TiB sparse LUNs, RSS 1 s after mounting',
      written: `the same mount: ${Math.max(1, Math.floor(memSettings.writeMiB / 8)) * 8} MiB O_DIRECT near 0 and near 900 GiB of each LUN, RSS growth`,
      steady: `4 × 1 GiB, ${memSettings.rounds} rounds × ${memSettings.roundSeconds} s of ${STEADY_MIX}; RSS after each round`,
    }
    for (const n of memWanted) process.stdout.write(`${MEMORY_IDS[n]} (${memText[n]})\n`)
    const extras = [rateWanted ? 'the rate step' : '', memWanted.size ? `${memWanted.size} memory probe${memWanted.size > 1 ? 's' : ''}` : ''].filter(Boolean)
    const times = rounds > 1 ? ` (${rounds} rounds of ${plan.length})` : ''
    process.stdout.write(`${plan.length * rounds} runs${times}${extras.map((e) => ` + ${e}`).join('')}\n`)
    return 0
  }

  const progress = createProgress(args.progress)
  const started = new Date()
  let interrupted = false
  let child: ChildProcess | null = null
  installSignalHandlers((sig) => {
    interrupted = true
    progress.log(`bench: ${sig}: stopping the current run and unmounting everything …`)
    try { child?.kill('SIGKILL') } catch { /* gone */ }
  })

  const notes: string[] = []
  // Under the repo (bench-report/ is gitignored) so that node_modules and package.json resolve as from dist/.
  const snapshot = args.snapshot ? path.join(REPO_ROOT, 'bench-report', `.dist-${process.pid}`) : null
  if (snapshot) {
    await cp(path.join(REPO_ROOT, 'dist'), snapshot, { recursive: true, filter: (src) => !src.endsWith('.map') })
    useDist(snapshot)
  }
  const fio = await ensureFio(args.install, progress.log)
  if (!fio) throw new Error('fio is not installed (apt-get install -y fio)')
  if (args.install && subjectsWanted.includes('peer')) await ensurePeerInstalled(progress.log)
  if (args.install && subjectsWanted.includes('c')) await ensureCBuildTools(progress.log)
  const probe = await probeFcfs()
  /** What each fcfs mount said it runs on (`fuse_engine:` in <mnt>/server): auto may fall back. */
  const enginesSeen = new Set<string>()
  const enginesSeenUser = new Set<string>()
  let benchUser: BenchUser | undefined
  /** What each fcfs (and fcfs-pc) mount said of its page cache (`page_cache:` in <mnt>/server). */
  const pageCacheSeen = new Set<string>()
  const pageCacheSeenPc = new Set<string>()
  const engine = args['fuse-engine']
  const medium = args['medium-latency'] !== undefined || args['medium-bandwidth'] !== undefined ? { ...(args['medium-latency'] !== undefined ? { latency: args['medium-latency'] } : {}), ...(args['medium-bandwidth'] !== undefined ? { bandwidth: args['medium-bandwidth'] } : {}) } : undefined
  const subjects: Record<SubjectName, Subject> = {
    fcfs: fcfsSubject(probe, { engine, enginesSeen, pageCache: args['page-cache'], pageCacheSeen, writeCache: args['write-cache'], backend: args.backend, medium }),
    'fcfs-user': fcfsSubject(probe, {
      name: 'fcfs-user',
      engine,
      enginesSeen: enginesSeenUser,
      pageCache: args['page-cache'],
      writeCache: args['write-cache'],
      backend: args.backend,
      medium,
      user: BENCH_USER,
      onUser: (u) => (benchUser = u),
    }),
    'fcfs-pc': fcfsSubject(probe, { name: 'fcfs-pc', engine, enginesSeen, pageCache: true, pageCacheSeen: pageCacheSeenPc }),
    c: cSubject(),
    ceiling: ceilingSubject(),
    peer: peerSubject(),
    direct: directSubject(args['direct-via']),
  }
  const unavailable: Partial<Record<SubjectName, string>> = {}
  for (const s of SUBJECTS) {
    if (!subjectsWanted.includes(s)) { unavailable[s] = 'not selected (--subjects)'; continue }
    const why = await subjects[s].unavailable()
    if (why) unavailable[s] = why
  }
  if (benchUser) {
    notes.push(
      `fcfs-user: fcfs mounted by ${benchUser.as.user} (uid ${benchUser.as.uid}), no allow_other, fio run as ${benchUser.as.user} too; the bench reaches the mount's own files (server, stats, control) through children run as that user${benchUser.changed.length ? `; the bench ${benchUser.changed.join(' and ')}` : ''}`,
    )
  }
  // Filled in after the runs, from what the mounts said (enginesSeen).
  const engineNoteAt = notes.length
  if (!probe.link) notes.push('`fcfs mount --link` is not available yet: only `--link unlimited` ran; link rows are marked skipped')
  if (args['direct-via'] === 'blockdev') notes.push('direct = the fs layer BlockDevice over startFabric() with the CLI tuning, same HBA ring, no FUSE (--direct-via blockdev)')
  else notes.push('direct: src/direct.ts openFabric() in a worker process, one async loop per job issuing DirectLun.read/write, same tuning as the mount')
  notes.push(
    prefill
      ? 'reads: every region was written once (1 MiB O_DIRECT, untimed) before each read run, so reads move data'
      : 'reads: regions not prefilled (--no-prefill): fcfs, peer and direct read sparse zeros (a fill), the ceiling copies from its zeroed Buffer',
    args['prefill-writes']
      ? 'writes: every region was written once (1 MiB O_DIRECT, untimed) before each write run, so writes overwrite memory the server holds (a fresh mount otherwise pays the OS for new pages inside the run: 620 MB/s against 2.7 GB/s once held, 48 writers on a fresh VM)'
      : 'writes: regions not prefilled (--no-prefill-writes): each run includes the server taking new memory from the OS',
  )
  notes.push('peer: one `nbdkit memory` + `nbdfuse` pair per target over a Unix socket, nbdfuse defaults (fuse3; it accepts no direct_io option, so its buffered I/O goes through the page cache, where fcfs and the ceiling mount with direct_io: buffered re-reads of a 20 MiB region are cache hits for the peer and for fcfs-pc only)')
  notes.push('ceiling: scripts/bench/ceiling-server.ts, fuse-native with the same option string as fcfs (src/fs/mount.ts MOUNT_OPTIONS), files over Buffers')
  if (!unavailable.c) {
    notes.push(
      `c: scripts/bench/c-ceiling.c built with gcc -O2 against libfuse 3 (pkg-config fuse3) when the bench started; the same tree as the ceiling (f<i>, f<i>.q<k>) over anonymous memory, ${C_CEILING_THREADS} worker threads on cloned /dev/fuse descriptors, max_write and max_read 1 MiB, every open direct_io with FOPEN_PARALLEL_DIRECT_WRITES (libfuse 3.14 has no field for it: the open reply is the kernel's fuse_open_out sent with fuse_reply_buf); each run's note says the largest READ and WRITE it got and the most WRITEs it ran at once on one file`,
    )
  }
  if (plan.some((r) => r.workload.queueFiles)) {
    notes.push(
      '-q workloads: job j on target j mod 4 through a name of its own, fcfs `lun/0/q/<floor(j/4)>` (queue files) or the ceiling\'s alias `f<i>.q<k>` (same Buffer), in the same 20 MiB region as without -q: ' +
        'the kernel lets one write per FUSE file through at a time, so this is 48 writes in flight where 48 writers on 4 rwbuf files are 4; the peer has no aliases (skipped), the direct path has no files (its run without -q stands for both)',
    )
  }

  const out = path.resolve(args.out)
  await mkdir(out, { recursive: true })
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'fcfs-bench-work-'))
  const profileDir = args.profile ? path.join(out, 'profiles') : undefined
  if (profileDir) await mkdir(profileDir, { recursive: true })

  const results: Measurement[] = []
  const skip = (r: Run, note: string): Measurement => ({ run: r, status: 'skipped', note })
  const unsupported = (r: Run): string | null | undefined =>
    unavailable[r.subject] ?? subjects[r.subject].linkUnsupported(r.link) ?? subjects[r.subject].workloadUnsupported(r.workload)
  const runnable = plan.filter((r) => !unsupported(r))
  const perRun = timing.runtime + timing.ramp + 2
  const rateRuns = rateWanted && !unavailable.direct ? repeat : 0
  if (unavailable.fcfs) memWanted.clear()
  const memSeconds = [...memWanted].reduce((t, n) => t + memoryProbeSeconds(n, memSettings), 0)
  progress.start(rounds * (runnable.length + rateRuns) + memWanted.size, rounds * (runnable.length * perRun + rateRuns * rateStepSeconds(rateSeconds)) + memSeconds)
  let memory: MemoryResults | undefined
  let rate: RateStep | undefined
  try {
    const steps: RateStep[] = []
    for (let round = 0; round < rounds && !interrupted; round++) {
      for (const r of plan) {
        if (interrupted) break
        const why = unsupported(r)
        if (why) {
          if (round === 0) results.push(skip(r, why))
          continue
        }
        progress.runStart(r.id, timing.runtime + timing.ramp)
        let m: Measurement
        try {
          m = await subjects[r.subject].run(r, { timing, workDir, profileDir, prefill, prefillWrites: args['prefill-writes'], onChild: (p) => (child = p) })
        } catch (e) {
          m = { run: r, status: 'error', note: interrupted ? 'interrupted' : (e as Error).message }
        }
        child = null
        results.push(m)
        progress.runEnd(summary(m))
      }
      // The rate step closes each round, so its repetitions lie a round apart too.
      if (rateWanted && !unavailable.direct) {
        for (let i = 0; i < repeat && !interrupted; i++) {
          progress.runStart(RATE_STEP_ID, rateStepSeconds(rateSeconds))
          const s = await runRateStep(directRateScript(), rateSeconds, (p) => (child = p)).catch((e: Error) => ({ id: RATE_STEP_ID, status: 'error' as const, note: e.message }))
          child = null
          steps.push(interrupted ? { ...s, status: 'error', note: 'interrupted' } : s)
          progress.runEnd(rateSummary(s))
        }
      }
    }
    if (rateWanted && unavailable.direct) rate = { id: RATE_STEP_ID, status: 'skipped', note: unavailable.direct }
    else if (steps.length) rate = medianRate(steps)
    if (memWanted.size && !interrupted) {
      memory = {}
      const ctx = { settings: memSettings, workDir, onChild: (p: ChildProcess) => (child = p), interrupted: () => interrupted }
      const idle = memWanted.has('idle')
      const written = memWanted.has('written')
      if (idle || written) {
        const label = written ? MEMORY_IDS.written : MEMORY_IDS.idle
        progress.runStart(label, (idle ? memoryProbeSeconds('idle', memSettings) : 0) + (written ? memoryProbeSeconds('written', memSettings) : 0))
        Object.assign(memory, await sparseProbes({ idle, written }, ctx))
        child = null
        if (idle) progress.runEnd(memorySummary('idle', memory))
        if (written) progress.runEnd(memorySummary('written', memory))
      }
      if (memWanted.has('steady') && !interrupted) {
        progress.runStart(MEMORY_IDS.steady, memoryProbeSeconds('steady', memSettings))
        memory.steady = await steadyProbe(ctx)
        child = null
        progress.runEnd(memorySummary('steady', memory))
      }
    }
  } finally {
    progress.stop()
    await cleanupAll()
    await rm(workDir, { recursive: true, force: true }).catch(() => undefined)
    if (snapshot) await rm(snapshot, { recursive: true, force: true }).catch(() => undefined)
  }

  results.splice(0, results.length, ...medianOf(results))
  notes.splice(
    engineNoteAt,
    0,
    engineNote('fcfs', args['fuse-engine'] ?? process.env.FCFS_FUSE_ENGINE ?? 'auto', enginesSeen),
    ...(subjectsWanted.includes('fcfs-user') && !unavailable['fcfs-user'] ? [engineNote('fcfs-user', args['fuse-engine'] ?? process.env.FCFS_FUSE_ENGINE ?? 'auto', enginesSeenUser)] : []),
    pageCacheNote(args['page-cache'], pageCacheSeen),
    ...(pageCacheSeenPc.size ? [pcNote(pageCacheSeenPc)] : []),
    ...(args.backend === 'file' ? [`fcfs backend: files (--backend file: every LUN a sparse file in the run's temp directory, fcfs mount --backing-dir; writes go through the host's page cache, SYNCHRONIZE CACHE is fdatasync)`] : []),
    ...(medium ? [`fcfs medium: every LUN's store ${[medium.latency ? `answers ${medium.latency} later` : '', medium.bandwidth ? `moves ${medium.bandwidth} (one wire per LUN)` : ''].filter(Boolean).join(' and ')}, under the write cache (--medium-latency/--medium-bandwidth: config "medium", a slow medium as a disk's platters are)`] : []),
    ...(args['write-cache'] ? [`fcfs write cache: ${args['write-cache']} (--write-cache${args['write-cache'] === 'volatile' ? ': a WRITE is GOOD once it is in the LUN\'s volatile cache; fsync sends SYNCHRONIZE CACHE' : ''})`] : []),
  )
  if (repeat > 1 || rounds > 1) {
    const how = [rounds > 1 ? `${rounds} rounds of the whole plan` : '', repeat > 1 ? `${repeat} back-to-back repetitions of each side-by-side group${rounds > 1 ? ' in each' : ''}` : ''].filter(Boolean).join(', ')
    notes.push(`every figure is the run with the median MB/s (the lower middle one of an even count) of ${repeat * rounds} runs: ${how}; the note column gives the spread`)
  }

  // Report, charts, raw results.
  const charts: string[] = []
  for (const [name, spec] of [
    ['throughput-vs-jobs.svg', jobsChartSpec(results)],
    ['throughput-vs-link.svg', linkChartSpec(results)],
    ['ratios.svg', ratioChartSpec(results)],
  ] as const) {
    if (!spec) continue
    try {
      await writeFile(path.join(out, name), await renderSvg(spec))
      charts.push(name)
    } catch (e) {
      notes.push(`chart ${name} failed: ${(e as Error).message}`)
    }
  }
  const profiles: ReportMeta['profiles'] = []
  if (profileDir) {
    for (const m of results.filter((x) => x.run.subject === 'fcfs' && x.status === 'ok')) {
      const file = path.join(profileDir, `${m.run.id.replace(/[^\w.-]+/g, '_')}.cpuprofile`)
      try {
        profiles.push({ id: m.run.id, file: path.relative(out, file), summary: await summarizeProfile(file, 10) })
      } catch (e) {
        notes.push(`profile of ${m.run.id}: ${(e as Error).message.split('\n')[0]}`)
      }
    }
  }
  const meta: ReportMeta = {
    profiles,
    mode,
    timing,
    started,
    finished: new Date(),
    interrupted,
    machine: machineInfo(fio),
    unavailable,
    notes,
    memoryNotRun: memory
      ? undefined
      : !args['memory-probe']
        ? '--no-memory-probe'
        : unavailable.fcfs
          ? `fcfs: ${unavailable.fcfs}`
          : interrupted
            ? 'interrupted before the memory probes'
            : 'the memory probes did not run (--only)',
    charts,
    argv: ['npm run bench --', ...hideBin(process.argv)],
  }
  await writeFile(path.join(out, 'report.md'), renderReport(results, meta, rate, memory))
  await writeFile(path.join(out, 'results.json'), JSON.stringify({ meta, results, rate: rate ?? null, memory: memory ?? null }, null, 2) + '\n')
  process.stderr.write(`bench: report in ${path.relative(process.cwd(), path.join(out, 'report.md')) || out}\n`)
  if (interrupted) return 130
  const memoryError = Object.values(memory ?? {}).some((p) => p.status === 'error')
  return results.some((m) => m.status === 'error') || rate?.status === 'error' || memoryError ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  async (err: Error) => {
    await cleanupAll()
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`)
    process.exit(1)
  },
)

const ENGINE_WHAT: Record<string, string> = {
  raw: 'the kernel protocol on /dev/fuse, 1 MiB requests, parallel direct writes',
  native: 'fuse-native, libfuse 2.9.9, protocol 7.19, 128 KiB requests',
}

/** The report's note on fcfs's page cache: as every mount said it (`page_cache:` in <mnt>/server). */
function pageCacheNote(asked: boolean, seen: ReadonlySet<string>): string {
  const said = [...seen].sort().join(' and ') || 'not said (no fcfs run)'
  return asked
    ? `fcfs page cache: ${said} (--page-cache: buffered read-only opens use the kernel page cache, as the peer's do; O_DIRECT opens and opens for writing stay direct), as each mount's <mnt>/server said`
    : `fcfs page cache: ${said} (the default: every buffered read and write is a SCSI command; the peer answers repeated buffered reads from the kernel page cache)`
}

/** The report's note on fcfs-pc, which should say `page_cache: on` (not on the native engine). */
function pcNote(seen: ReadonlySet<string>): string {
  const said = [...seen].sort().join(' and ')
  const off = seen.has('off') ? ' — off means the native engine served it (no page cache there): its figures are the default mount\'s' : ''
  return `fcfs-pc: fcfs mounted with --page-cache, run on the buffered reads only (fio opens them O_RDONLY; its O_DIRECT and write opens are the default mount's, so the fcfs figures stand for those); page cache ${said}, as each mount's <mnt>/server said${off}`
}

/** The report's note on which FUSE engine served an fcfs subject: as every mount said it, or as asked when none ran. */
function engineNote(subject: 'fcfs' | 'fcfs-user', asked: string, seen: ReadonlySet<string>): string {
  const said = [...seen].sort()
  const engines = said.length ? said.map((e) => `${e} (${ENGINE_WHAT[e] ?? 'unknown engine'})`).join(' and ') : `${asked}, as asked (no ${subject} run said)`
  const auto = asked === 'auto' && said.length ? ', chosen by auto' : ''
  const tail = subject === 'fcfs' ? '; the ceiling is fuse-native and c is libfuse 3 either way' : ` (an ordinary user: ${asked === 'auto' ? 'auto picks what such a user can mount' : 'as asked'})`
  return `${subject} FUSE engine: ${engines}${auto}, as each mount's <mnt>/server said${tail}`
}
