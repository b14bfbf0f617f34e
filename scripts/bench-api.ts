/**
 * Benchmark of the request/reply API (`npm run bench:api`), from another
 * process than the mount, next to the FUSE path in the same run:
 *
 *   transactions/s, batched (a window of requests kept in flight):
 *     NOP                 answered by the server without the HBA (the seed's "faked completion")
 *     TEST UNIT READY     a raw CDB through driver → ring → firmware → SCSI (zero-latency target)
 *     READ 1 block        inline data, same path
 *     FUSE READ 512 B     fio, O_DIRECT psync jobs on rwbuf (for comparison)
 *   MB/s with 640 KiB transfers, 48 in flight:
 *     API READ/WRITE inline and through a /dev/shm region, FUSE READ (fio O_DIRECT jobs)
 *     and FUSE WRITE (fio buffered jobs, write-back, end_fsync; and O_DIRECT jobs).
 * Each repetition runs every measurement once, in that order (API and FUSE side by side
 * under the same machine load); the report gives the median over repetitions.
 *
 * Options: --seconds N (per measurement, default 3), --repeat N (each
 * measurement N times back to back, the median reported with the range;
 * default 3 — the machine is shared and noisy), --targets N (default 4),
 * --fuse-jobs N (default 16), --json <file> (also write the numbers as JSON),
 * --no-fuse. The mount uses the default tuning (link unlimited).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { FcfsClient, ShmRegion, type IoResult, type Target } from '../src/api/client.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI = path.join(ROOT, 'dist', 'src', 'cli.js')
const KiB = 1024

interface Args {
  seconds: number
  repeat: number
  targets: number
  fuseJobs: number
  json?: string
  fuse: boolean
}

function parseArgs(argv: string[]): Args {
  const a: Args = { seconds: 3, repeat: 3, targets: 4, fuseJobs: 16, fuse: true }
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]
    const v = argv[i + 1]
    if (k === '--seconds') (a.seconds = Number(v)), i++
    else if (k === '--targets') (a.targets = Number(v)), i++
    else if (k === '--repeat') (a.repeat = Math.max(1, Number(v))), i++
    else if (k === '--fuse-jobs') (a.fuseJobs = Number(v)), i++
    else if (k === '--json') (a.json = v), i++
    else if (k === '--no-fuse') a.fuse = false
    else throw new Error(`unknown option ${k}`)
  }
  return a
}

interface Row {
  name: string
  /** the median of `runs` */
  value: number
  runs: number[]
  /** the median of the same figure per CPU second of the fcfs server (holds better on a shared machine) */
  perServerCpu: number
  unit: string
  note: string
}

async function mount(tmp: string, targets: number): Promise<{ mnt: string; sock: string; proc: ChildProcess; stop: () => Promise<void> }> {
  const mnt = path.join(tmp, 'mnt')
  const sock = path.join(tmp, 'api.sock')
  await mkdir(mnt)
  const proc = spawn(process.execPath, [CLI, 'mount', mnt, '--targets', String(targets), '--size', '4GiB', '--log-level', 'warn', '--api-socket', sock], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  proc.stdout!.on('data', (b: Buffer) => (out += b.toString()))
  proc.stderr!.on('data', (b: Buffer) => (out += b.toString()))
  const t0 = Date.now()
  while (!out.includes(`fcfs mounted at ${mnt}`)) {
    if (proc.exitCode !== null || Date.now() - t0 > 20_000) throw new Error(`mount failed:\n${out}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  const stop = async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGTERM')
      await new Promise((r) => {
        const t = setTimeout(r, 10_000)
        proc.once('exit', () => (clearTimeout(t), r(undefined)))
      })
    }
    spawnSync('fusermount', ['-uz', mnt], { stdio: 'ignore' })
  }
  return { mnt, sock, proc, stop }
}

/** Keeps `window` requests in flight for `seconds`; `issue(i, done)` sends one. Returns completions/s and failures. */
function windowed(seconds: number, window: number, issue: (i: number, done: (r: IoResult) => void) => void): Promise<{ rate: number; n: number; failed: number }> {
  return new Promise((resolve) => {
    let n = 0
    let failed = 0
    let sent = 0
    let inflight = 0
    let stopping = false
    const t0 = performance.now()
    const end = t0 + seconds * 1000
    const done = (r: IoResult) => {
      inflight--
      n++
      if (!r.ok) failed++
      if (!stopping && (n & 255) === 0 && performance.now() >= end) stopping = true
      if (!stopping) {
        inflight++
        issue(sent++, done)
      } else if (inflight === 0) {
        resolve({ rate: n / ((performance.now() - t0) / 1000), n, failed })
      }
    }
    for (let i = 0; i < window; i++) {
      inflight++
      issue(sent++, done)
    }
  })
}

function fio(args: string[]): { bw: number; iops: number } | null {
  const r = spawnSync('fio', ['--output-format=json', ...args], { encoding: 'utf8', maxBuffer: 64 << 20 })
  if (r.status !== 0) {
    process.stderr.write(`fio failed: ${r.stderr}\n`)
    return null
  }
  const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')))
  const job = j.jobs[0]
  return { bw: (job.read.bw_bytes ?? 0) + (job.write.bw_bytes ?? 0), iops: (job.read.iops ?? 0) + (job.write.iops ?? 0) }
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2))
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'fcfs-bench-api-'))
  const m = await mount(tmp, a.targets)
  const rows: Row[] = []
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]
  const add = (name: string, [runs, note]: [number[], string], unit: string, perCpu: number[]) => {
    const sorted = [...runs].sort((x, y) => x - y)
    const value = median(runs)
    const perServerCpu = median(perCpu)
    rows.push({ name, value, runs, perServerCpu, unit, note })
    const range = runs.length > 1 ? `(${fmt(sorted[0])}–${fmt(sorted[sorted.length - 1])})` : ''
    process.stdout.write(`${name.padEnd(46)} ${fmt(value).padStart(10)} ${unit.padEnd(5)} ${range.padEnd(22)} ${fmt(perServerCpu).padStart(10)}  ${note}\n`)
  }
  let region: ShmRegion | null = null
  try {
    const c = await FcfsClient.connect(m.sock)
    const wwpns = Array.from({ length: a.targets }, (_, i) => `21000024ff${(i + 1).toString(16).padStart(6, '0')}`)
    const targets: Target[] = []
    for (const w of wwpns) targets.push(await c.open(w, 0))
    const T = targets.length
    process.stdout.write(
      `fcfs API benchmark: ${T} target(s), ${a.seconds} s per measurement × ${a.repeat} (median, range), client pid ${process.pid}, server pid ${c.hello.serverPid}\n\n`,
    )

    // Prefill the 640 KiB working set so reads move real data.
    const big = 640 * KiB
    const blocks640 = big / targets[0].blockSize
    const depth = 48
    const fill = Buffer.alloc(big, 0x5a)
    for (let i = 0; i < depth; i++) await c.write(targets[i % T], Math.floor(i / T) * blocks640, fill)

    const tur = Buffer.from([0, 0, 0, 0, 0, 0])
    type Sample = { value: number; failed: number; n: number }
    const rate = (w: { rate: number; failed: number; n: number }): Sample => ({ value: w.rate, failed: w.failed, n: w.n })
    const mb = (w: { rate: number; failed: number; n: number }): Sample => ({ value: (w.rate * big) / 1e6, failed: w.failed, n: w.n })
    const perLun = 64 // the targets' default queue depth: more would be TASK SET FULL
    const W = perLun * T
    const lba640 = (i: number) => (Math.floor(i / T) % depth) * blocks640
    region = ShmRegion.create(depth * big)
    for (let i = 0; i < depth; i++) region.write(i * big, fill)
    const id = await c.registerShm(region.path, region.size)

    const haveFio = a.fuse && spawnSync('fio', ['--version']).status === 0
    if (a.fuse && !haveFio) process.stdout.write('fio not found: FUSE path skipped\n')
    const files = wwpns.map((w) => path.join(m.mnt, 'wwn', w, 'rwbuf')).join(':')
    const common = [`--filename=${files}`, '--ioengine=psync', `--runtime=${a.seconds}`, '--time_based=1', '--group_reporting=1', '--size=1g', '--name=fuse']
    const jobs = String(a.fuseJobs)
    const viaFio = (args: string[], pick: (f: { bw: number; iops: number }) => number) => async (): Promise<Sample> => {
      const f = fio([...common, ...args])
      return { value: f ? pick(f) : NaN, failed: f ? 0 : 1, n: 1 }
    }

    // Every measurement once per repetition, in this order, so API and FUSE numbers of one
    // repetition were taken under the same machine load.
    const plan: { name: string; unit: string; run: () => Promise<Sample> }[] = [
      { name: 'API NOP (faked completion), window 1024', unit: 'tx/s', run: async () => rate(await windowed(a.seconds, 1024, (_i, done) => c.nop(done))) },
      { name: `API TEST UNIT READY, window ${W}`, unit: 'tx/s', run: async () => rate(await windowed(a.seconds, W, (i, done) => c.submitCdb(targets[i % T], tur, {}, done))) },
      {
        name: `API READ 1 block inline, window ${W}`,
        unit: 'tx/s',
        run: async () => rate(await windowed(a.seconds, W, (i, done) => c.submit({ target: targets[i % T], read: true, lba: (i * 8) % 1_000_000, blocks: 1 }, done))),
      },
      ...(haveFio ? [{ name: `FUSE READ 512 B, ${jobs} O_DIRECT jobs`, unit: 'tx/s', run: viaFio(['--rw=randread', '--bs=512', '--direct=1', `--numjobs=${jobs}`], (f) => f.iops) }] : []),
      {
        name: 'API READ 640 KiB inline, 48 in flight',
        unit: 'MB/s',
        run: async () => mb(await windowed(a.seconds, depth, (i, done) => c.submit({ target: targets[i % T], read: true, lba: lba640(i), blocks: blocks640 }, done))),
      },
      {
        name: 'API READ 640 KiB via /dev/shm, 48 in flight',
        unit: 'MB/s',
        run: async () =>
          mb(await windowed(a.seconds, depth, (i, done) => c.submit({ target: targets[i % T], read: true, lba: lba640(i), blocks: blocks640, region: id, offset: (i % depth) * big }, done))),
      },
      ...(haveFio
        ? [{ name: `FUSE READ 640 KiB, ${jobs} O_DIRECT jobs`, unit: 'MB/s', run: viaFio(['--rw=read', '--bs=640k', '--direct=1', `--numjobs=${jobs}`, '--offset_increment=64m'], (f) => f.bw / 1e6) }]
        : []),
      {
        name: 'API WRITE 640 KiB inline, 48 in flight',
        unit: 'MB/s',
        run: async () => mb(await windowed(a.seconds, depth, (i, done) => c.submit({ target: targets[i % T], write: true, lba: lba640(i), blocks: blocks640, data: fill }, done))),
      },
      {
        name: 'API WRITE 640 KiB via /dev/shm, 48 in flight',
        unit: 'MB/s',
        run: async () =>
          mb(await windowed(a.seconds, depth, (i, done) => c.submit({ target: targets[i % T], write: true, lba: lba640(i), blocks: blocks640, region: id, offset: (i % depth) * big }, done))),
      },
      ...(haveFio
        ? [
            {
              name: `FUSE WRITE 640 KiB, ${jobs} buffered jobs`,
              unit: 'MB/s',
              run: viaFio(['--rw=write', '--bs=640k', '--direct=0', `--numjobs=${jobs}`, '--offset_increment=64m', '--end_fsync=1'], (f) => f.bw / 1e6),
            },
            {
              name: `FUSE WRITE 640 KiB, ${jobs} O_DIRECT jobs`,
              unit: 'MB/s',
              run: viaFio(['--rw=write', '--bs=640k', '--direct=1', `--numjobs=${jobs}`, '--offset_increment=64m'], (f) => f.bw / 1e6),
            },
          ]
        : []),
    ]
    const samples = plan.map(() => [] as Sample[])
    const perCpu = plan.map(() => [] as number[])
    for (let r = 0; r < a.repeat; r++) {
      process.stderr.write(`repetition ${r + 1}/${a.repeat}…\n`)
      for (let k = 0; k < plan.length; k++) {
        const cpu0 = cpuSeconds(m.proc.pid!)
        const t0 = performance.now()
        const sample = await plan[k].run()
        const wall = (performance.now() - t0) / 1000
        const cpu = cpuSeconds(m.proc.pid!) - cpu0
        samples[k].push(sample)
        perCpu[k].push(cpu > 0 ? (sample.value * wall) / cpu : NaN)
      }
    }
    process.stdout.write(`${'measurement'.padEnd(46)} ${'median'.padStart(10)} ${''.padEnd(5)} ${'(range)'.padEnd(22)} ${'per server CPU-second'}\n`)
    await c.close()
    plan.forEach((p, k) => {
      const failed = samples[k].reduce((x, y) => x + y.failed, 0)
      const n = samples[k].reduce((x, y) => x + y.n, 0)
      add(p.name, [samples[k].map((x) => x.value), failed ? `${failed} of ${n} not GOOD` : ''], p.unit, perCpu[k])
    })
    if (a.json) {
      await writeFile(a.json, JSON.stringify({ date: new Date().toISOString(), host: os.hostname(), cpus: os.cpus().length, loadavg: os.loadavg(), seconds: a.seconds, repeat: a.repeat, targets: a.targets, rows }, null, 2) + '\n')
    }
    process.stdout.write(`\nload average: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} on ${os.cpus().length} CPUs\n`)
  } finally {
    region?.destroy()
    await m.stop()
    await rm(tmp, { recursive: true, force: true })
  }
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

/** user + system CPU seconds of process `pid` so far (from /proc/<pid>/stat). */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLK_TCK
  } catch {
    return NaN
  }
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return '–'
  return v >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1)
}

main().catch((err) => {
  process.stderr.write(`bench-api: ${(err as Error).stack ?? err}\n`)
  process.exit(1)
})
