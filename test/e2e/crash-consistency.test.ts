// Crash consistency with tools nobody here wrote: the kernel's ext4 on a loop device over a LUN
// with a volatile write cache (--write-cache volatile), a Python workload that writes files and
// fsyncs each (and its directory) and prints a line only when both fsyncs returned, and a
// power-loss fault at a seeded random moment. After each cut ext4 and the loop device are torn
// down while the power is still off (every I/O fails at once, so ext4 aborts its journal and lets
// go), the power comes back, the journal is recovered by a mount, `e2fsck -fn` must find nothing,
// and every file whose fsync returned reads back byte for byte — over 6 cycles on one filesystem,
// keep=random (seeded), none and prefix.
//
// The same with ext4 mounted nobarrier (no flush ever reaches the LUN) must lose or corrupt
// something in at least one cycle: the cache really is volatile, and the barrier run passes
// because of the flushes, not by luck.
//
// The unit has a write log: replayed to its last flush mark it matches the live image byte for
// byte, across the 6 power cycles; replayed to each POWER_ON it matches the image the cut left.
//
// Needs root, /dev/loop-control, losetup, mkfs.ext4 and e2fsck: a missing one fails the test
// (never a skip). Every mount is unmounted and every loop device detached in finally.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { CLI, isMounted, requireFuse, run, runOk, startFcfs, type Fcfs } from '../helpers/mount.js'
import { mulberry32 } from '../../src/util/random.js'
import { readLogIndex, replay } from '../../src/replay.js'

const WWPN = '21000024ff0000c5'
const SIZE = 64 * 1024 * 1024
const CYCLES = 6

function requireLoop(): void {
  const problems: string[] = []
  if (process.getuid?.() !== 0) problems.push('losetup and mount need root')
  if (!existsSync('/dev/loop-control')) problems.push('/dev/loop-control does not exist (modprobe loop, or run the container with the loop devices)')
  for (const tool of ['losetup', 'mkfs.ext4', 'e2fsck']) {
    if (!['/usr/sbin', '/sbin', '/usr/bin', '/bin'].some((d) => existsSync(path.join(d, tool)))) problems.push(`${tool} is missing (apt-get install mount e2fsprogs)`)
  }
  if (problems.length) throw new Error(`the crash-consistency test cannot run:\n  - ${problems.join('\n  - ')}`)
}

/** Writes `count` files `<prefix>-NNNN` of seeded random sizes; after the file's and the directory's fsync returned, prints "name size sha256". */
const WORKLOAD = `
import os, sys, hashlib, random
root, prefix, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
d = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
for i in range(count):
    name = "%s-%04d" % (prefix, i)
    data = rnd.randbytes(rnd.choice([1, 4096, 5000, 65536, 150000]))
    fd = os.open(os.path.join(root, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.fsync(d)
    sys.stdout.write("%s %d %s\\n" % (name, len(data), hashlib.sha256(data).hexdigest()))
    sys.stdout.flush()
`

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** The files a workload reported as fsynced: name → "size sha256". */
type Durable = Map<string, string>

class Workload {
  readonly done: Durable = new Map()
  private out = ''
  private readonly proc: ChildProcess
  readonly exited: Promise<void>
  /** Resolves when the first fsync returned (the workload is under way); rejects if it ends before. */
  readonly started: Promise<void>

  constructor(interpreter: string, script: string, dir: string, prefix: string, seed: number) {
    this.proc = spawn(interpreter, [script, dir, prefix, String(seed), '100000'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let err = ''
    let started!: () => void
    this.started = new Promise((resolve, reject) => {
      started = resolve
      this.proc.on('close', (code) => reject(new Error(`the workload ended (${code}) before its first fsync returned: ${err}`)))
    })
    this.started.catch(() => undefined)
    this.proc.stdout!.on('data', (d: Buffer) => {
      this.out += d.toString()
      let nl: number
      while ((nl = this.out.indexOf('\n')) >= 0) {
        const [name, size, hash] = this.out.slice(0, nl).split(' ')
        this.done.set(name, `${size} ${hash}`)
        this.out = this.out.slice(nl + 1)
        started()
      }
    })
    this.proc.stderr!.on('data', (d: Buffer) => (err += d.toString()))
    this.exited = new Promise((resolve) => this.proc.on('close', () => resolve()))
  }

  /** Stops it (it may be inside a failing fsync) and waits for it; a line cut in half was no fsync that returned. */
  async stop(): Promise<void> {
    this.proc.kill('SIGKILL')
    await this.exited
  }
}

/** An ext4 on a loop device over rwbuf, torn down in the right order whatever state it is in. */
class Ext4 {
  dev: string | null = null
  dir: string | null = null

  constructor(
    private readonly rwbuf: string,
    readonly where: string,
  ) {}

  async attach(): Promise<void> {
    this.dev = (await runOk('losetup', ['--find', '--show', '--direct-io=off', this.rwbuf])).stdout.trim()
    expect(this.dev).toMatch(/^\/dev\/loop\d+$/)
  }

  /** Mounts (the kernel recovers the journal); the result, not a throw, when it fails. */
  async mount(opts: string): Promise<{ code: number; stderr: string }> {
    await mkdir(this.where, { recursive: true })
    const r = await run('mount', ['-t', 'ext4', '-o', opts, this.dev!, this.where], { timeoutMs: 30_000 })
    if (r.code === 0) this.dir = this.where
    return r
  }

  async umount(): Promise<void> {
    if (!this.dir) return
    const dir = this.dir
    this.dir = null
    await runOk('umount', [dir], { timeoutMs: 30_000 })
  }

  async detach(): Promise<void> {
    if (!this.dev) return
    const dev = this.dev
    this.dev = null
    await runOk('losetup', ['-d', dev], { timeoutMs: 10_000 })
  }

  /** For finally: every step tried, lazily when a normal one fails; never throws. */
  async cleanup(): Promise<void> {
    if (this.dir) {
      const dir = this.dir
      this.dir = null
      if ((await run('umount', [dir], { timeoutMs: 30_000 })).code !== 0 && (await isMounted(dir))) await run('umount', ['-l', dir], { timeoutMs: 10_000 })
    }
    if (this.dev) {
      const dev = this.dev
      this.dev = null
      await run('losetup', ['-d', dev], { timeoutMs: 10_000 })
    }
  }
}

/** Which durable files are missing or differ (name: why). */
async function lostFiles(dir: string, durable: Durable): Promise<string[]> {
  const lost: string[] = []
  for (const [name, want] of durable) {
    const data = await readFile(path.join(dir, name)).catch((e: NodeJS.ErrnoException) => e)
    if (data instanceof Error) lost.push(`${name}: ${data.code}`)
    else if (`${data.length} ${sha256(data)}` !== want) lost.push(`${name}: ${data.length} bytes, not ${want.split(' ')[0]} as fsynced`)
  }
  return lost
}

describe('ext4 over a LUN with a volatile write cache, through power losses', { timeout: 120_000 }, () => {
  let fab: Fcfs
  let rwbuf: string
  let logPath: string
  let script: string
  /** The interpreter itself, not a version manager's shim that takes a second to start it. */
  let interpreter: string
  const rnd = mulberry32(22)
  const between = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo))

  beforeAll(async () => {
    requireFuse()
    requireLoop()
    fab = await startFcfs({
      config: { targets: [{ wwpn: WWPN, luns: [{ size: SIZE, writeLog: 'lun0.wlog' }] }] },
      args: ['--write-cache', 'volatile', '--readahead', '0'],
    })
    rwbuf = fab.rwbuf(0)
    logPath = path.join(fab.tmp, 'lun0.wlog')
    script = path.join(fab.tmp, 'workload.py')
    await writeFile(script, WORKLOAD)
    interpreter = (await runOk('python3', ['-c', 'import sys; print(sys.executable)'])).stdout.trim()
  })
  afterAll(async () => {
    await fab?.stop()
  })

  const control = (line: string) => writeFile(path.join(fab.mnt, 'faults', 'control'), `${line}\n`)
  const mkfs = () => runOk('mkfs.ext4', ['-F', '-q', '-E', 'lazy_itable_init=0,lazy_journal_init=0', rwbuf], { timeoutMs: 60_000 })
  const rwbufHash = async () => sha256(await readFile(rwbuf))

  /**
   * One cycle: mount, workload, the cut at a random moment, teardown with the power off, power on,
   * journal recovery by a mount, e2fsck -fn, mount again. Returns what it saw; leaves ext4 mounted
   * when the last mount worked.
   */
  async function cycle(fs: Ext4, opts: string, prefix: string, keep: string, durable: Durable) {
    await fs.attach()
    const m = await fs.mount(opts)
    expect(m.stderr).toBe('')
    const w = new Workload(interpreter, script, fs.where, prefix, between(0, 2 ** 31))
    const seed = between(0, 2 ** 31)
    try {
      // A random moment once files are being written (the first fsync can take a while on a busy machine).
      await w.started
      await sleep(between(100, 1000))
      await control(`power-loss id=cut wwpn=${WWPN} lun=0 keep=${keep} seed=${seed} for=60s`)
    } finally {
      await w.stop()
    }
    for (const [k, v] of w.done) durable.set(k, v)
    // Power is off: every I/O fails at once, ext4 aborts its journal and lets go, the loop device detaches.
    await fs.umount()
    await fs.detach()
    await control('clear cut')
    const afterCut = await rwbufHash()
    await fs.attach()
    const recovered = await fs.mount(opts)
    if (recovered.code === 0) await fs.umount()
    const fsck = await run('e2fsck', ['-fn', fs.dev!], { timeoutMs: 60_000 })
    const again = await fs.mount(opts)
    const lost = again.code === 0 ? await lostFiles(fs.where, durable) : ['(the filesystem does not mount)']
    return { fsynced: w.done.size, recovered, fsck, lost, afterCut, seed }
  }

  it('keeps every file whose fsync returned, with e2fsck clean, through 6 power losses with barriers on; the write log replays to the live image', async () => {
    const fs = new Ext4(rwbuf, path.join(fab.tmp, 'ext4'))
    const durable: Durable = new Map()
    const cuts: { afterCut: string }[] = []
    const keeps = ['random', 'none', 'random', 'prefix', 'random', 'none']
    try {
      await mkfs()
      for (let i = 0; i < CYCLES; i++) {
        const c = await cycle(fs, 'barrier', `c${i}`, keeps[i], durable)
        console.log(`barrier cycle ${i}: keep=${keeps[i]} seed=${c.seed}, ${c.fsynced} files fsynced (${durable.size} in all), lost ${c.lost.length}, e2fsck exit ${c.fsck.code}`)
        expect(c.recovered.stderr).toBe('')
        expect(c.fsck.stdout + c.fsck.stderr, `e2fsck -fn after cycle ${i}`).not.toMatch(/(FIXED|UNEXPECTED|Fix\?|\*\*\*\*\*)/)
        expect(c.fsck.code, `e2fsck -fn after cycle ${i}:\n${c.fsck.stdout}${c.fsck.stderr}`).toBe(0)
        expect(c.lost, `cycle ${i}`).toEqual([])
        expect(c.fsynced, `cycle ${i} fsynced nothing: the cut came too early to test anything`).toBeGreaterThan(0)
        cuts.push(c)
        await fs.umount()
        await fs.detach()
      }
      expect(durable.size).toBeGreaterThan(CYCLES * 5)
    } finally {
      await fs.cleanup()
    }

    // The write log, across the six power cycles. SYNCHRONIZE CACHE of the whole unit: every
    // cached block goes to the medium, and that flush is the last mark.
    await runOk('python3', ['-c', `import os\nfd = os.open(${JSON.stringify(rwbuf)}, os.O_RDWR)\nos.fsync(fd)\nos.close(fd)\n`])
    const live = await readFile(rwbuf)
    const list = await runOk(process.execPath, [CLI, 'replay', '--list', logPath])
    const marks = [...list.stdout.matchAll(/^mark (\d+) seq (\d+) cycle (\d+)$/gm)]
    const powerOns = [...list.stdout.matchAll(/^power-on seq (\d+) cycle (\d+)$/gm)]
    expect(powerOns.map((m) => Number(m[2]))).toEqual([1, 2, 3, 4, 5, 6])
    const last = marks[marks.length - 1]
    expect(Number(last[3])).toBe(CYCLES)
    const img = path.join(fab.tmp, 'replayed.img')
    const r = await runOk(process.execPath, [CLI, 'replay', logPath, img, '--to-mark', last[1]])
    expect(r.stdout).toMatch(new RegExp(`^${img.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: host records up to seq ${last[2]} \\(power cycle ${CYCLES}\\): `))
    expect((await readFile(img)).equals(live), `replay --to-mark ${last[1]} differs from the live image`).toBe(true)
    await runOk(process.execPath, [CLI, 'replay', logPath, img, '--medium'])
    expect((await readFile(img)).equals(live), 'replay --medium differs from the live image').toBe(true)
    // Each power-on: the disk exactly as the cut left it (in-process, one index for all: the CLI is the same code).
    const ix = await readLogIndex(logPath)
    for (const [k, m] of powerOns.entries()) {
      await replay(ix, img, { toSeq: Number(m[1]) })
      expect(sha256(await readFile(img)), `host replay to power-on ${k + 1}`).toBe(cuts[k].afterCut)
      if (k !== 0 && k !== CYCLES - 1) continue
      await replay(ix, img, { toSeq: Number(m[1]), medium: true })
      expect(sha256(await readFile(img)), `medium replay to power-on ${k + 1}`).toBe(cuts[k].afterCut)
    }
  })

  it('loses or corrupts fsynced files in at least one of 6 power losses when ext4 sends no flushes (nobarrier)', async () => {
    const fs = new Ext4(rwbuf, path.join(fab.tmp, 'ext4-nobarrier'))
    let showedLoss = 0
    try {
      for (let i = 0; i < CYCLES; i++) {
        await mkfs()
        const durable: Durable = new Map()
        const c = await cycle(fs, 'nobarrier', `n${i}`, i % 2 === 0 ? 'none' : 'random', durable)
        const corrupt = c.recovered.code !== 0 || c.fsck.code !== 0
        console.log(`nobarrier cycle ${i}: keep=${i % 2 === 0 ? 'none' : 'random'}, ${c.fsynced} files fsynced, lost ${c.lost.length}, mount after the cut ${c.recovered.code === 0 ? 'ok' : `failed: ${c.recovered.stderr.trim().split('\n')[0]}`}, e2fsck exit ${c.fsck.code}`)
        if (corrupt || c.lost.length > 0) showedLoss++
        await fs.cleanup()
      }
    } finally {
      await fs.cleanup()
    }
    console.log(`nobarrier: ${showedLoss} of ${CYCLES} cycles lost or corrupted fsynced data`)
    expect(showedLoss).toBeGreaterThanOrEqual(1)
  })
})
