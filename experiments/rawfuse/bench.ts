/**
 * A/B bench: rawfuse variants vs the fuse-native ceiling (scripts/bench/ceiling-server.ts).
 *
 *   node dist/bench.js [rounds=3] [seconds=5]      (root; builds nothing: run `npm run build` in /work/main first)
 *   node dist/bench.js 2 5 sweep                  rawfuse only, RAWFUSE_READS = 1, 2, 4, 8, 16 on three workloads
 *
 * All servers are mounted at once; every round runs each workload on each server
 * (server order rotates per round). Per run: fio JSON (or dd), the server's
 * utime+stime delta from /proc/<pid>/stat, and the kernel's count of this
 * connection's outstanding requests (fusectl `waiting`, sampled every ms).
 * Writes results.json and prints a markdown table (medians, min–max).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = dirname(dirname(fileURLToPath(import.meta.url))) // experiments/rawfuse
const ROOT = join(HERE, '..', '..')
const rounds = Number(process.argv[2] ?? 3)
const secs = Number(process.argv[3] ?? 5)
const GiB = 1 << 30
const TICK_US = 1e6 / 100 // CLK_TCK = 100

interface Server { name: string; cmd: string[]; env: Record<string, string>; mnt: string; proc?: ChildProcess; conn?: string }
const sweep = process.argv[4] === 'sweep'
const allServers: Server[] = [
  { name: 'ceiling (fuse-native)', cmd: ['node', join(ROOT, 'dist/scripts/bench/ceiling-server.js')], env: {}, mnt: '/tmp/rawfuse-b-ceiling' },
  { name: 'raw dio+par 1M', cmd: ['node', join(HERE, 'dist/rawfuse.js')], env: { RAWFUSE_DIRECT_IO: '1', RAWFUSE_PARALLEL_WRITES: '1' }, mnt: '/tmp/rawfuse-b-dio' },
  { name: 'raw nodio 1M', cmd: ['node', join(HERE, 'dist/rawfuse.js')], env: { RAWFUSE_DIRECT_IO: '0', RAWFUSE_PARALLEL_WRITES: '0' }, mnt: '/tmp/rawfuse-b-nodio' },
  { name: 'raw dio 128K (libfuse-like)', cmd: ['node', join(HERE, 'dist/rawfuse.js')], env: { RAWFUSE_DIRECT_IO: '1', RAWFUSE_PARALLEL_WRITES: '0', RAWFUSE_MAX_PAGES: '32' }, mnt: '/tmp/rawfuse-b-128k' },
]
const servers: Server[] = sweep
  ? [1, 2, 4, 8, 16].map((k) => ({ name: `raw dio+par 1M, ${k} reads`, cmd: allServers[1].cmd, env: { ...allServers[1].env, RAWFUSE_READS: String(k) }, mnt: `/tmp/rawfuse-b-k${k}` }))
  : allServers

interface Workload { name: string; fio?: { rw: string; bs: string; jobs: number; files: number; region: string }; dd?: 'write' | 'read' }
const allWorkloads: Workload[] = [
  { name: 'write 640K O_DIRECT 1 job', fio: { rw: 'write', bs: '640k', jobs: 1, files: 1, region: '256m' } },
  { name: 'write 640K O_DIRECT 8 jobs (1 file)', fio: { rw: 'write', bs: '640k', jobs: 8, files: 1, region: '120m' } },
  { name: 'write 640K O_DIRECT 48 jobs (4 files)', fio: { rw: 'write', bs: '640k', jobs: 48, files: 4, region: '20m' } },
  { name: 'read 640K O_DIRECT 1 job', fio: { rw: 'read', bs: '640k', jobs: 1, files: 1, region: '256m' } },
  { name: 'read 640K O_DIRECT 8 jobs (1 file)', fio: { rw: 'read', bs: '640k', jobs: 8, files: 1, region: '120m' } },
  { name: 'randread 4K O_DIRECT 1 job', fio: { rw: 'randread', bs: '4k', jobs: 1, files: 1, region: '256m' } },
  { name: 'randread 4K O_DIRECT 8 jobs (1 file)', fio: { rw: 'randread', bs: '4k', jobs: 8, files: 1, region: '120m' } },
  { name: 'dd bs=1M write 1 GiB (buffered)', dd: 'write' },
  { name: 'dd bs=1M read 1 GiB (buffered)', dd: 'read' },
]

const workloads = sweep ? allWorkloads.filter((w) => /48 jobs|randread/.test(w.name)) : allWorkloads

const FUSECTL = '/tmp/rawfuse-fusectl'

function cpuTicks(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return Number(f[11]) + Number(f[12]) // utime, stime (fields 14, 15)
}

/** fusectl names a connection by the kernel dev_t of the superblock: (major << 20) | minor. */
function connOf(mnt: string): string {
  const d = statSync(mnt).dev
  const major = (d >> 8) & 0xfff, minor = (d & 0xff) | ((d >> 12) & 0xfff00)
  return String(major * 2 ** 20 + minor)
}

function startServer(s: Server): Promise<void> {
  mkdirSync(s.mnt, { recursive: true })
  const p = spawn(s.cmd[0], [...s.cmd.slice(1), s.mnt, '4', String(GiB)], { env: { ...process.env, ...s.env }, stdio: ['ignore', 'pipe', 'inherit'] })
  s.proc = p
  return new Promise((res, rej) => {
    let out = ''
    p.stdout!.on('data', (c) => {
      out += c
      if (out.includes('mounted at')) { process.stderr.write(`  ${s.name}: ${out.trim()}\n`); res() }
    })
    p.on('exit', (c) => rej(new Error(`${s.name} exited ${c}`)))
  })
}

function stopServer(s: Server): Promise<void> {
  const p = s.proc
  if (!p || p.exitCode !== null) return Promise.resolve()
  return new Promise((res) => {
    p.once('exit', () => res())
    p.kill('SIGTERM')
    const t = setTimeout(() => { p.kill('SIGKILL'); spawnSync('umount', ['-l', s.mnt]) }, 8000)
    p.once('exit', () => clearTimeout(t))
  })
}

function fioArgs(w: NonNullable<Workload['fio']>, mnt: string): string[] {
  const a = ['--output-format=json', '--ioengine=psync', '--direct=1', `--rw=${w.rw}`, `--bs=${w.bs}`, `--size=${w.region}`,
    `--offset_increment=${w.region}`, '--time_based', `--runtime=${secs}`, '--group_reporting', '--fallocate=none',
    '--create_on_open=0', '--allow_file_create=0', '--randrepeat=0', '--norandommap', '--thread=0']
  for (let i = 0; i < w.files; i++) a.push(`--name=j${i}`, `--filename=${mnt}/f${i}`, `--numjobs=${Math.floor(w.jobs / w.files)}`)
  return a
}

interface Sample { server: string; workload: string; round: number; mbps: number; iops: number; ios: number; cpuUsPerIo: number; maxWaiting: number; meanWaiting: number; p50Waiting: number; p90Waiting: number }

async function runOne(s: Server, w: Workload, round: number): Promise<Sample> {
  const waitingFile = `${FUSECTL}/${s.conn}/waiting`
  let maxW = 0, sumW = 0, nW = 0
  const hist: number[] = []
  const timer = setInterval(() => {
    const v = Number(readFileSync(waitingFile, 'utf8'))
    maxW = Math.max(maxW, v); sumW += v; nW++; hist[v] = (hist[v] ?? 0) + 1
  }, 1)
  const c0 = cpuTicks(s.proc!.pid!)
  let bytes = 0, ios = 0, seconds = 0
  const t0 = process.hrtime.bigint()
  const child = w.fio
    ? spawn('fio', fioArgs(w.fio, s.mnt), { stdio: ['ignore', 'pipe', 'pipe'] })
    : w.dd === 'write'
      ? spawn('dd', ['if=/dev/zero', `of=${s.mnt}/f0`, 'bs=1M', 'count=1024', 'conv=notrunc,fsync'], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('dd', [`if=${s.mnt}/f0`, 'of=/dev/null', 'bs=1M', 'count=1024'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = '', err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  const code: number = await new Promise((r) => child.on('exit', r))
  const t1 = process.hrtime.bigint()
  clearInterval(timer)
  const c1 = cpuTicks(s.proc!.pid!)
  if (code !== 0) throw new Error(`${s.name} / ${w.name}: exit ${code}: ${err}`)
  if (w.fio) {
    const j = JSON.parse(out.slice(out.indexOf('{'))).jobs[0]
    bytes = j.read.io_bytes + j.write.io_bytes
    ios = j.read.total_ios + j.write.total_ios
    seconds = Math.max(j.read.runtime, j.write.runtime) / 1000
  } else {
    bytes = GiB; ios = 1024; seconds = Number(t1 - t0) / 1e9
  }
  return { server: s.name, workload: w.name, round, mbps: bytes / seconds / 1e6, iops: ios / seconds, ios,
    cpuUsPerIo: ((c1 - c0) * TICK_US) / ios, maxWaiting: maxW, meanWaiting: nW ? sumW / nW : 0, p50Waiting: pct(hist, nW, 0.5), p90Waiting: pct(hist, nW, 0.9) }
}

function pct(hist: number[], n: number, q: number): number {
  let acc = 0
  for (let v = 0; v < hist.length; v++) { acc += hist[v] ?? 0; if (acc >= q * n) return v }
  return hist.length - 1
}
const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2 }
const fmt = (x: number, d = 0): string => x.toFixed(d)

function table(samples: Sample[]): string {
  const lines = ['| workload | server | MB/s median (min–max) | IOPS median | kernel in-flight p50 / p90 / max | server CPU µs / I/O median (min–max) | MB/s vs ceiling |', '|---|---|---|---|---|---|---|']
  for (const w of workloads) {
    const ceil = median(samples.filter((x) => x.workload === w.name && x.server === servers[0].name).map((x) => x.mbps))
    for (const s of servers) {
      const xs = samples.filter((x) => x.workload === w.name && x.server === s.name)
      if (!xs.length) continue
      const mb = xs.map((x) => x.mbps), cpu = xs.map((x) => x.cpuUsPerIo)
      lines.push(`| ${w.name} | ${s.name} | ${fmt(median(mb))} (${fmt(Math.min(...mb))}–${fmt(Math.max(...mb))}) | ${fmt(median(xs.map((x) => x.iops)))} | ` +
        `${median(xs.map((x) => x.p50Waiting))} / ${median(xs.map((x) => x.p90Waiting))} / ${Math.max(...xs.map((x) => x.maxWaiting))} | ${fmt(median(cpu), 1)} (${fmt(Math.min(...cpu), 1)}–${fmt(Math.max(...cpu), 1)}) | ${(median(mb) / ceil).toFixed(2)}× |`)
    }
  }
  return lines.join('\n')
}

async function main(): Promise<void> {
  if (process.argv[2] === 'table') {
    // node dist/bench.js table a.json b.json ...: one table over the samples of several runs
    const all: Sample[] = process.argv.slice(3).flatMap((f) => JSON.parse(readFileSync(f, 'utf8')).samples)
    process.stdout.write(table(all) + '\n')
    return
  }
  mkdirSync(FUSECTL, { recursive: true })
  if (spawnSync('mount', ['-t', 'fusectl', 'none', FUSECTL]).status !== 0) throw new Error('cannot mount fusectl')
  const samples: Sample[] = []
  const cleanup = async (): Promise<void> => {
    for (const s of servers) await stopServer(s)
    spawnSync('umount', [FUSECTL])
  }
  process.on('SIGINT', () => void cleanup().then(() => process.exit(130)))
  process.on('SIGTERM', () => void cleanup().then(() => process.exit(143)))
  try {
    for (const s of servers) { await startServer(s); s.conn = connOf(s.mnt) }
    for (let r = 0; r < rounds; r++) {
      for (const w of workloads) {
        const order = servers.map((_, i) => servers[(i + r) % servers.length])
        for (const s of order) {
          const x = await runOne(s, w, r)
          samples.push(x)
          process.stderr.write(`r${r} ${w.name} | ${s.name}: ${fmt(x.mbps)} MB/s ${fmt(x.iops)} IOPS cpu ${fmt(x.cpuUsPerIo, 1)} µs/IO waiting p50/p90/max ${x.p50Waiting}/${x.p90Waiting}/${x.maxWaiting}\n`)
        }
      }
      writeFileSync(join(HERE, sweep ? 'sweep.json' : 'results.json'), JSON.stringify({ rounds, secs, date: new Date().toISOString(), samples }, null, 1))
    }
  } finally {
    await cleanup()
  }
  const t = table(samples)
  writeFileSync(join(HERE, sweep ? 'sweep.md' : 'results.md'), t + '\n')
  process.stdout.write(t + '\n')
}

main().catch((e) => { process.stderr.write(`${e.stack}\n`); process.exit(1) })
