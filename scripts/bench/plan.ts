/**
 * What the benchmark runs: the workloads of issue 6, the link speeds, the
 * subjects, and which (subject, link, workload) triples quick, full and goals
 * mode pick. Everything else in scripts/bench/ only executes a plan.
 */

export type Rw = 'read' | 'write' | 'randread' | 'randwrite'

export interface Workload {
  /** e.g. `seq-read-640k-direct-j48`, `rand-write-4k-buffered-j8` */
  id: string
  rw: Rw
  /** block size in bytes */
  bs: number
  /** concurrent fio jobs (psync: one request in flight each) */
  jobs: number
  /** O_DIRECT (true) or buffered (false) */
  direct: boolean
  /**
   * Every job on a file of its own that is the same LUN (fcfs queue files
   * `lun/0/q/<k>`, the ceiling's `f<i>.q<k>` aliases): job j on target
   * j mod TARGETS, queue file floor(j / TARGETS), in the same region as
   * without. The kernel lets one write per FUSE file through at a time, so
   * this is how 48 O_DIRECT writers keep 48 commands in flight. Id suffix `-q`.
   */
  queueFiles?: boolean
}

export const LINKS = ['1G', '2G', '4G', '8G', '16G', '32G', '64G', 'unlimited'] as const
export type Link = (typeof LINKS)[number]

/** Modelled payload rate per direction, bytes/s (≈100 MB/s per 1GFC, MB = 10^6 bytes). */
export function linkRate(link: Link): number | null {
  if (link === 'unlimited') return null
  return Number.parseInt(link, 10) * 100e6
}

export const SUBJECTS = ['fcfs', 'fcfs-user', 'fcfs-pc', 'c', 'ceiling', 'peer', 'direct'] as const
export type SubjectName = (typeof SUBJECTS)[number]

export const SUBJECT_TITLES: Record<SubjectName, string> = {
  fcfs: 'fcfs (FUSE → HBA ring)',
  'fcfs-user': 'the same fcfs mount made by an ordinary user (fio runs as that user too): what every user who is not root gets',
  'fcfs-pc': 'fcfs mounted with --page-cache (buffered reads only: the one kind of open it changes)',
  c: 'C ceiling (scripts/bench/c-ceiling.c: libfuse 3 low-level RAM disk, multithreaded with clone_fd, 1 MiB requests, direct_io, parallel direct writes): the most a user-space server reaches here',
  ceiling: 'ceiling (minimal fuse-native over a Buffer)',
  peer: 'peer (nbdkit memory + nbdfuse)',
  direct: 'direct API (same ring, no FUSE)',
}

export interface Run {
  subject: SubjectName
  link: Link
  workload: Workload
  /** `fcfs@unlimited/seq-read-640k-direct-j48`: what --only matches */
  id: string
}

const KiB = 1024

export function fmtBs(bs: number): string {
  return bs >= 1024 * KiB && bs % (1024 * KiB) === 0 ? `${bs / (1024 * KiB)}m` : `${bs / KiB}k`
}

export function workload(rw: Rw, bs: number, direct: boolean, jobs: number, queueFiles = false): Workload {
  const kind = rw.startsWith('rand') ? 'rand' : 'seq'
  const op = rw.endsWith('read') ? 'read' : 'write'
  const id = `${kind}-${op}-${fmtBs(bs)}-${direct ? 'direct' : 'buffered'}-j${jobs}${queueFiles ? '-q' : ''}`
  return queueFiles ? { id, rw, bs, jobs, direct, queueFiles } : { id, rw, bs, jobs, direct }
}

/** The id of the same workload over the shared files (`-q` dropped). */
export function sharedFilesId(id: string): string {
  return id.replace(/-q$/, '')
}

/** Queue files per target that fcfs mounts by default (`--queue-files`), and the ceiling aliases. */
export const QUEUE_FILES = 16

/** Job j of a queue-file workload: its target, its queue file and its region (as without queue files). */
export function queueFileJob(j: number, targets: number): { target: number; k: number; region: number } {
  const k = Math.floor(j / targets)
  return { target: j % targets, k, region: k }
}

/** The single-stream goal's workloads: one buffered sequential reader or writer (judged at SINGLE_LINKS). */
export function isSingleStream(w: Workload): boolean {
  return w.jobs === 1 && !w.direct && !w.rw.startsWith('rand')
}

export function isRead(w: Workload): boolean {
  return w.rw === 'read' || w.rw === 'randread'
}

/** The workloads fcfs --page-cache runs differently from the default mount: buffered reads (fio opens them O_RDONLY). */
export function pageCacheChanges(w: Workload): boolean {
  return !w.direct && isRead(w)
}

/** The full matrix of issue 6: 24 sequential + 8 random workloads, and 48 O_DIRECT jobs of 640 KiB on queue files. */
export function allWorkloads(): Workload[] {
  const out: Workload[] = []
  for (const rw of ['read', 'write'] as const) {
    for (const bs of [640 * KiB, 1024 * KiB]) {
      for (const direct of [true, false]) for (const jobs of [1, 8, 48]) out.push(workload(rw, bs, direct, jobs))
    }
    out.push(workload(rw, 640 * KiB, true, 48, true))
  }
  for (const rw of ['randread', 'randwrite'] as const) {
    for (const direct of [true, false]) for (const jobs of [1, 8]) out.push(workload(rw, 4 * KiB, direct, jobs))
  }
  return out
}

/** Quick mode: the workloads that answer the goals, a few seconds each. */
const QUICK_UNLIMITED = [
  'seq-read-640k-direct-j1',
  'seq-read-640k-direct-j8',
  'seq-read-640k-direct-j48',
  'seq-read-640k-direct-j48-q',
  'seq-write-640k-direct-j1',
  'seq-write-640k-direct-j48',
  'seq-write-640k-direct-j48-q',
  'seq-read-640k-buffered-j1',
  'seq-write-640k-buffered-j1',
  'rand-read-4k-direct-j8',
  'rand-write-4k-direct-j8',
]
/** The writers' link goal is judged on queue files (one write per file at a time); the rwbuf row stays as the kernel's limit. */
const QUICK_LINKED = ['seq-read-640k-direct-j48', 'seq-write-640k-direct-j48', 'seq-write-640k-direct-j48-q']
/** The single-stream goal is stated for 2G, 4G and 8G only. */
const QUICK_LINKED_SINGLE = ['seq-read-640k-buffered-j1', 'seq-write-640k-buffered-j1']
export const SINGLE_LINKS: readonly Link[] = ['2G', '4G', '8G']
const LINKED: Link[] = ['2G', '4G', '8G', '16G']
/** Goals mode at a link: the rows the goal table judges (and the rwbuf write row it lists beside them). */
const GOAL_LINKED = ['seq-read-640k-direct-j48', 'seq-read-640k-direct-j48-q', 'seq-write-640k-direct-j48', 'seq-write-640k-direct-j48-q']

/**
 * quick: a subset, seconds per run; full: the whole matrix; goals: every run
 * the goal table judges — all workloads at unlimited, the 48-job and the
 * single-stream rows at the links — in shorter runs, repeated in rounds.
 */
export type Mode = 'quick' | 'full' | 'goals'

export interface PlanOptions {
  mode: Mode
  subjects: SubjectName[]
  /** link speeds to run fcfs (and direct) at besides unlimited */
  links: Link[]
  only?: RegExp
}

export function defaultLinks(): Link[] {
  return [...LINKED]
}

/**
 * Runs are ordered workload by workload with every subject side by side, so
 * that noise from other work on the machine hits all subjects alike. The
 * direct path has no page cache and no files, so it runs only the O_DIRECT
 * variant of each workload over the shared files; its figure stands for the
 * buffered and the queue-file variants too. fcfs-pc (fcfs --page-cache) runs
 * only the buffered reads at unlimited: a --page-cache mount opens everything
 * else (O_DIRECT, opens for writing) exactly as the default mount does.
 * fcfs-user, c, the ceiling and the peer run every workload at unlimited only:
 * they are compared with fcfs there, and have no link model (fcfs-user has
 * one, but its goal is stated per workload, not per link).
 */
export function buildPlan(opts: PlanOptions): Run[] {
  const all = allWorkloads()
  const byId = new Map(all.map((w) => [w.id, w]))
  const pick = (ids: string[]): Workload[] => ids.map((id) => byId.get(id)!)
  const unlimited = opts.mode === 'quick' ? pick(QUICK_UNLIMITED) : all
  const goals = opts.mode === 'goals'
  // At the links: the 48-job rows, plus the single streams where that goal is judged.
  const linked = (link: Link): Workload[] =>
    opts.mode === 'full'
      ? all
      : [
          ...pick(goals ? GOAL_LINKED : QUICK_LINKED),
          ...(!SINGLE_LINKS.includes(link) ? [] : goals ? all.filter(isSingleStream) : pick(QUICK_LINKED_SINGLE)),
        ]
  const runs: Run[] = []
  const add = (subject: SubjectName, link: Link, w: Workload): void => {
    if (!opts.subjects.includes(subject)) return
    if (subject === 'direct' && (!w.direct || w.queueFiles)) return
    if (subject === 'fcfs-pc' && !pageCacheChanges(w)) return
    const id = `${subject}@${link}/${w.id}`
    if (opts.only && !opts.only.test(id)) return
    runs.push({ subject, link, workload: w, id })
  }
  for (const w of unlimited) {
    for (const s of SUBJECTS) add(s, 'unlimited', w)
  }
  for (const link of opts.links.filter((l) => l !== 'unlimited')) {
    for (const w of linked(link)) {
      add('fcfs', link, w)
      add('direct', link, w)
    }
  }
  return runs
}

/** Timing per run. */
export interface Timing {
  /** seconds of measured I/O per run */
  runtime: number
  /** seconds of warm-up not counted (fio ramp_time) */
  ramp: number
}

export function timingFor(mode: Mode): Timing {
  // Every run mounts afresh, so the server's JIT is cold: the ramp keeps warm-up out of the figures.
  return mode === 'full' ? { runtime: 10, ramp: 2 } : mode === 'goals' ? { runtime: 5, ramp: 1 } : { runtime: 2, ramp: 0.5 }
}

/** The fabric every subject exposes: TARGETS files, each LUN_SIZE bytes. */
export const TARGETS = 4
export const LUN_SIZE = 1024 * 1024 * 1024
/** Each fio job works in its own REGION of its file (fio offset_increment). */
export const REGION = 20 * 1024 * KiB
/** The ceiling holds real Buffers: enough for 12 jobs per file × REGION. */
export const CEILING_FILE_SIZE = 256 * 1024 * KiB

/**
 * The region a job of `w` works in. A single job gets a file's first 256 MiB, as a
 * plain `dd` would read on: time-based fio wraps around at the region's end, and a
 * sequential reader's 4 MiB readahead past the end of a 20 MiB region was a sixth of
 * the link wasted at every wrap (a single buffered reader at 2G: 165 MB/s in 20 MiB,
 * 196 MB/s in 256 MiB).
 */
export function regionOf(w: Workload): number {
  return w.jobs === 1 ? CEILING_FILE_SIZE : REGION
}

/**
 * Each group of side-by-side runs (same link and workload) repeated `n` times
 * in a row: A B C A B C, so that a burst of load elsewhere hits every subject.
 */
export function repeatPlan(runs: Run[], n: number): Run[] {
  if (n <= 1) return runs
  const out: Run[] = []
  let i = 0
  while (i < runs.length) {
    let j = i
    while (j < runs.length && runs[j].link === runs[i].link && runs[j].workload.id === runs[i].workload.id) j++
    for (let k = 0; k < n; k++) out.push(...runs.slice(i, j))
    i = j
  }
  return out
}
