/**
 * Soak: a bounded-time mix of everything at once against real mounts, reporting
 * what was done, what failed and how much data was verified.
 *
 *   npm run soak -- --minutes 3 [--targets 4] [--size 64MiB] [--cycle 45] [--json out.json]
 *
 * The run is a series of mount cycles (every other one file-backed). During each
 * cycle, in parallel until the cycle ends:
 *   - fio verify=crc32c jobs on every target (O_DIRECT 4k-256k, buffered unaligned 512-64k);
 *   - python processes writing interleaved unaligned stripes of shared blocks, then a byte check;
 *   - readers of the info and stats files (stats.json must parse);
 *   - control writes: reset, trace on/off/clear;
 * then SIGTERM, and the server must exit 0 with nothing left mounted. A failure is
 * counted and described, never fatal: the soak goes on and reports at the end
 * (exit 1 if anything failed).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI = path.join(ROOT, 'dist', 'src', 'cli.js')

interface Args {
  minutes: number
  targets: number
  size: string
  cycle: number
  json?: string
}

function parseArgs(argv: string[]): Args {
  const a: Args = { minutes: 3, targets: 4, size: '64MiB', cycle: 45 }
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]
    const v = argv[i + 1]
    const need = (): string => {
      if (v === undefined) throw new Error(`${k} needs a value`)
      i++
      return v
    }
    if (k === '--minutes') a.minutes = Number(need())
    else if (k === '--targets') a.targets = Number(need())
    else if (k === '--size') a.size = need()
    else if (k === '--cycle') a.cycle = Number(need())
    else if (k === '--json') a.json = need()
    else throw new Error(`unknown argument ${k} (--minutes N --targets N --size S --cycle SECONDS --json FILE)`)
  }
  if (!(a.minutes > 0)) throw new Error('--minutes must be > 0')
  if (!Number.isInteger(a.targets) || a.targets < 1 || a.targets > 16) throw new Error('--targets must be 1..16')
  return a
}

// ---- bookkeeping --------------------------------------------------------------------

const ops: Record<string, number> = {}
const errors: string[] = []
let bytesVerified = 0
let bytesWritten = 0
const count = (k: string, n = 1): void => {
  ops[k] = (ops[k] ?? 0) + n
}
const failure = (what: string): void => {
  errors.push(`${new Date().toISOString()} ${what}`)
  process.stderr.write(`soak: FAILURE ${what}\n`)
}

interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

function runProc(cmd: string, args: string[], opts: { input?: Buffer | string; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    c.stdout.setEncoding('utf8').on('data', (s: string) => (out += s))
    c.stderr.setEncoding('utf8').on('data', (s: string) => (err += s))
    const t = setTimeout(() => {
      err += `\n[soak] ${cmd} killed after ${opts.timeoutMs} ms`
      c.kill('SIGKILL')
    }, opts.timeoutMs ?? 120_000)
    c.on('error', (e) => (err += e.message))
    c.on('close', (code) => {
      clearTimeout(t)
      resolve({ code, stdout: out, stderr: err })
    })
    c.stdin.on('error', () => {})
    c.stdin.end(opts.input)
  })
}

async function mounted(mnt: string): Promise<boolean> {
  const text = await readFile('/proc/mounts', 'utf8')
  return text.split('\n').some((l) => l.split(' ')[1] === mnt)
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// ---- one mount cycle ------------------------------------------------------------------

interface Server {
  proc: ChildProcess
  mnt: string
  wwpns: string[]
  exited: Promise<number | null>
}

async function mount(tmp: string, n: number, a: Args, backingDir?: string): Promise<Server | null> {
  const mnt = path.join(tmp, `mnt${n}`)
  await mkdir(mnt, { recursive: true })
  const args = [CLI, 'mount', mnt, '--targets', String(a.targets), '--size', a.size, '--log-level', 'warn']
  if (backingDir) args.push('--backing-dir', backingDir)
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s))
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s))
  const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)))
  const deadline = Date.now() + 30_000
  while (!out.includes(`fcfs mounted at ${mnt}`)) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      failure(`mount ${n} did not come up: ${out.slice(-500)}`)
      proc.kill('SIGKILL')
      await runProc('fusermount', ['-uz', mnt])
      return null
    }
    await sleep(50)
  }
  count('mounts')
  const wwpns: string[] = []
  for (const l of out.split('\n')) {
    const m = /wwn\/([0-9a-f]{16})\/rwbuf/.exec(l)
    if (m && !wwpns.includes(m[1])) wwpns.push(m[1])
  }
  return { proc, mnt, wwpns, exited }
}

async function unmount(s: Server): Promise<void> {
  s.proc.kill('SIGTERM')
  const code = await Promise.race([s.exited, sleep(30_000).then(() => 'timeout' as const)])
  if (code !== 0) {
    failure(`server on ${s.mnt} exited with ${code} after SIGTERM`)
    s.proc.kill('SIGKILL')
  }
  if (await mounted(s.mnt)) {
    failure(`${s.mnt} still mounted after the server stopped`)
    await runProc('fusermount', ['-uz', s.mnt])
  }
  count('unmounts')
}

const rwbuf = (s: Server, i: number) => path.join(s.mnt, 'wwn', s.wwpns[i], 'rwbuf')

/** fio verify jobs on every target, again and again until `until`. */
async function fioLoop(s: Server, tmp: string, until: number, seed: { n: number }): Promise<void> {
  while (Date.now() < until - 3000) {
    const k = seed.n++
    const lines = ['[global]', 'ioengine=psync', 'verify=crc32c', 'verify_state_save=0', 'verify_fatal=1', 'do_verify=1', `randseed=${k}`, '']
    s.wwpns.forEach((_, i) => {
      lines.push(`[d${i}]`, `filename=${rwbuf(s, i)}`, 'rw=randwrite', 'direct=1', 'bsrange=4k-256k', 'offset=0', 'size=8m', '')
      lines.push(`[b${i}]`, `filename=${rwbuf(s, i)}`, 'rw=randwrite', 'direct=0', 'bsrange=512-64k', 'bs_unaligned=1', 'offset=16m', 'size=4m', '')
    })
    const job = path.join(tmp, `soak-${k}.fio`)
    await writeFile(job, lines.join('\n'))
    const r = await runProc('fio', ['--output-format=json', job], { timeoutMs: 120_000 })
    count('fio runs')
    try {
      const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')))
      for (const job of j.jobs) {
        count('fio jobs')
        bytesWritten += job.write.io_bytes
        bytesVerified += job.read.io_bytes
        if (job.error) failure(`fio job ${job.jobname} error ${job.error}`)
      }
    } catch {
      failure(`fio run ${k} exit ${r.code}: ${r.stderr.slice(0, 400)}`)
      continue
    }
    if (r.code !== 0) failure(`fio run ${k} exit ${r.code}: ${r.stderr.slice(0, 400)}`)
  }
}

const STRIPES = String.raw`
import os, sys, random
p, k, P, stripe, base, length, flags, ps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], int(sys.argv[8])
fl = os.O_RDWR
for f in flags.split('|'):
    if f: fl |= getattr(os, f)
fd = os.open(p, fl)
mine = [s for s in range((length + stripe - 1) // stripe) if s % P == k]
random.Random(k * 7919 + ps).shuffle(mine)
for s in mine:
    off = base + s * stripe
    n = min(stripe, base + length - off)
    assert os.pwrite(fd, bytes(((o * 131 + k * 17 + ps) & 0xff) for o in range(off, off + n)), off) == n
os.fsync(fd)
os.close(fd)
print(len(mine))
`
const STRIPES_CHECK = String.raw`
import os, sys
p, P, stripe, base, length, ps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
fd = os.open(p, os.O_RDONLY)
got = os.pread(fd, length, base)
os.close(fd)
bad = [base + i for i in range(length) if got[i] != (((base + i) * 131 + ((i // stripe) % P) * 17 + ps) & 0xff)]
print(len(got), len(bad), bad[:5])
`

/** Rounds of unaligned stripe writers on target 0 (and 1), each round checked byte for byte. */
async function stripeLoop(s: Server, until: number, round: { n: number }): Promise<void> {
  const modes = ['O_DIRECT', '', 'O_SYNC', '']
  while (Date.now() < until - 3000) {
    const ps = round.n++
    const stripe = [7, 301, 513, 4097][ps % 4]
    const writers = 4
    const length = stripe < 100 ? 8 * 1024 : 64 * 1024
    const target = ps % Math.min(2, s.wwpns.length)
    const base = 40 * 1024 * 1024 + (ps % 7) * 333
    const dev = rwbuf(s, target)
    const rs = await Promise.all(
      Array.from({ length: writers }, (_, k) => runProc('python3', ['-c', STRIPES, dev, String(k), String(writers), String(stripe), String(base), String(length), modes[k], String(ps)])),
    )
    let writes = 0
    for (const r of rs) {
      if (r.code !== 0) failure(`stripe writer (stripe ${stripe}) exit ${r.code}: ${r.stderr.slice(-300)}`)
      else writes += Number(r.stdout.trim())
    }
    count('unaligned stripe writes', writes)
    const c = await runProc('python3', ['-c', STRIPES_CHECK, dev, String(writers), String(stripe), String(base), String(length), String(ps)])
    const [got, bad] = c.stdout.trim().split(' ').map(Number)
    count('stripe checks')
    if (c.code !== 0 || got !== length || bad !== 0) failure(`stripe check (stripe ${stripe}, round ${ps}): ${c.stdout.trim()} ${c.stderr.slice(-200)}`)
    else bytesVerified += length
  }
}

/** Reads every info/stats file over and over; stats.json must parse. */
async function infoLoop(s: Server, until: number): Promise<void> {
  const files = ['hba/0/info', 'hba/0/stats', 'hba/0/ring', 'hba/0/stats.json', 'server']
  for (const w of s.wwpns) files.push(`wwn/${w}/info`, `wwn/${w}/stats.json`, `wwn/${w}/lun/0/info`, `wwn/${w}/lun/0/sense`, `wwn/${w}/lun/0/stats.json`)
  let i = 0
  while (Date.now() < until - 1000) {
    const f = files[i++ % files.length]
    try {
      const text = await readFile(path.join(s.mnt, f), 'utf8')
      if (f.endsWith('.json')) JSON.parse(text)
      if (text.length === 0) failure(`${f} read empty`)
      count('info/stats reads')
    } catch (e) {
      failure(`reading ${f}: ${(e as Error).message}`)
    }
    await sleep(20)
  }
}

/** Control writes while everything runs. */
async function controlLoop(s: Server, until: number): Promise<void> {
  const cmds = ['reset', 'trace on', 'trace clear', 'trace off']
  let i = 0
  while (Date.now() < until - 1000) {
    const c = cmds[i++ % cmds.length]
    try {
      await writeFile(path.join(s.mnt, 'hba', '0', 'control'), c + '\n')
      count('control writes')
    } catch (e) {
      failure(`control "${c}": ${(e as Error).message}`)
    }
    await sleep(700)
  }
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2))
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'fcfs-soak-'))
  const t0 = Date.now()
  const end = t0 + a.minutes * 60_000
  const seed = { n: 1 }
  const round = { n: 0 }
  let cycle = 0
  process.stdout.write(`soak: ${a.minutes} min, ${a.targets} targets of ${a.size}, cycles of ${a.cycle} s, in ${tmp}\n`)
  try {
    while (Date.now() < end - 5000) {
      cycle++
      const backing = cycle % 2 === 0 ? path.join(tmp, `data${cycle}`) : undefined
      const s = await mount(tmp, cycle, a, backing)
      if (!s) continue
      const until = Math.min(end, Date.now() + a.cycle * 1000)
      await Promise.all([fioLoop(s, tmp, until, seed), stripeLoop(s, until, round), infoLoop(s, until), controlLoop(s, until)])
      await unmount(s)
      process.stdout.write(`soak: cycle ${cycle} done (${backing ? 'file-backed' : 'RAM'}), ${((Date.now() - t0) / 1000).toFixed(0)} s, errors so far ${errors.length}\n`)
    }
  } finally {
    const left = (await readFile('/proc/mounts', 'utf8')).split('\n').filter((l) => l.includes(tmp))
    if (left.length) failure(`mounts left behind: ${left.join('; ')}`)
    await rm(tmp, { recursive: true, force: true }).catch(() => {})
  }
  const report = {
    minutes: +((Date.now() - t0) / 60_000).toFixed(2),
    targets: a.targets,
    size: a.size,
    mountCycles: cycle,
    operations: ops,
    bytesWritten,
    bytesVerified,
    errors: errors.length,
    errorList: errors.slice(0, 50),
  }
  process.stdout.write('\n' + JSON.stringify(report, null, 2) + '\n')
  process.stdout.write(
    `\nsoak: ${report.minutes} min, ${cycle} mount cycles, ${Object.entries(ops).map(([k, v]) => `${v} ${k}`).join(', ')}; ` +
      `${(bytesWritten / 2 ** 20).toFixed(0)} MiB written, ${(bytesVerified / 2 ** 20).toFixed(0)} MiB verified; ${errors.length} errors\n`,
  )
  if (a.json) await writeFile(a.json, JSON.stringify(report, null, 2) + '\n')
  process.exit(errors.length ? 1 : 0)
}

main().catch((e) => {
  process.stderr.write(`soak: ${(e as Error).stack}\n`)
  process.exit(2)
})
