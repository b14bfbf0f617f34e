// The link model, functionally: a modelled link is never faster than its rate, the
// stats show the rate, a small queue depth is honoured by host-side throttling (no
// QUEUE FULL reaches the counters, every byte still right), 48 concurrent readers on a
// 2G link keep 48 commands in flight, and bad tuning flags are refused before anything
// is mounted. Timing is asserted only as lower bounds or gross-breakage floors: this
// runs on a small, shared machine.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import path from 'node:path'
import { CLI, KiB, MiB, isMounted, makeTmp, python, requireFuse, run, runOk, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff } from '../helpers/pyio.js'

async function cat(p: string): Promise<string> {
  return (await runOk('cat', [p])).stdout
}

function kv(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const i = line.indexOf(': ')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 2)
  }
  return out
}

/** Seconds dd says it took ("… copied, 0.335 s, 100 MB/s"). */
function ddSeconds(stderr: string): number {
  const m = /copied, ([\d.]+(?:e[-+]?\d+)?) s,/.exec(stderr)
  if (!m) throw new Error(`no timing in dd's output: ${stderr}`)
  return Number(m[1])
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('--link 1G', () => {
  let fab: Fcfs
  const SIZE = 32 * MiB
  // The model must never be faster than the link: 32 MiB at 100 MB/s, less 10% slack.
  const FLOOR_S = (SIZE / 100e6) * 0.9

  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '1', '--size', '256MiB', '--link', '1G'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('takes at least 32 MiB / 100 MB/s (less 10%) for a 32 MiB O_DIRECT read', async () => {
    const t0 = performance.now()
    const r = await runOk('dd', [`if=${fab.rwbuf(0)}`, 'of=/dev/null', 'bs=1M', 'count=32', 'iflag=direct'], { timeoutMs: 45_000 })
    const wall = (performance.now() - t0) / 1000
    const s = ddSeconds(r.stderr)
    console.log(`--link 1G: 32 MiB O_DIRECT read in ${s.toFixed(3)} s (dd), ${(SIZE / s / 1e6).toFixed(1)} MB/s; floor ${FLOOR_S.toFixed(3)} s`)
    expect(s).toBeGreaterThanOrEqual(FLOOR_S)
    expect(wall).toBeGreaterThanOrEqual(FLOOR_S)
  })

  it('takes at least 32 MiB / 100 MB/s (less 10%) for a 32 MiB O_DIRECT write', async () => {
    const r = await runOk('dd', ['if=/dev/zero', `of=${fab.rwbuf(0)}`, 'bs=1M', 'count=32', 'oflag=direct'], { timeoutMs: 45_000 })
    expect(ddSeconds(r.stderr)).toBeGreaterThanOrEqual(FLOOR_S)
  })

  it('takes at least 32 MiB / 100 MB/s (less 10%) for a buffered 32 MiB write up to its close, even with write-back', async () => {
    const t0 = performance.now()
    await runOk('dd', ['if=/dev/zero', `of=${fab.rwbuf(0)}`, 'bs=1M', 'count=32', 'seek=64'], { timeoutMs: 45_000 })
    expect((performance.now() - t0) / 1000).toBeGreaterThanOrEqual(FLOOR_S)
  })

  it('shows link_rate_MBps 100.0 in hba/0/stats and rate 100000000 in stats.json', async () => {
    const s = kv(await cat(path.join(fab.mnt, 'hba', '0', 'stats')))
    expect(s.link_rate_MBps).toBe('100.0')
    const j = JSON.parse(await cat(path.join(fab.mnt, 'hba', '0', 'stats.json')))
    expect(j.link.rate).toBe(100e6)
  })

  it('counts the bytes that crossed the link in each direction (GET LINK STATISTICS, refreshed each second)', async () => {
    let link: any
    const deadline = Date.now() + 5000
    do {
      await sleep(300)
      link = JSON.parse(await cat(path.join(fab.mnt, 'hba', '0', 'stats.json'))).link
    } while ((link.bytesIn < SIZE || link.bytesOut < 2 * SIZE) && Date.now() < deadline)
    expect(link.bytesIn).toBeGreaterThanOrEqual(SIZE)
    expect(link.bytesOut).toBeGreaterThanOrEqual(2 * SIZE)
    // Busy time of each wire is at least bytes / rate.
    expect(link.busyInUs).toBeGreaterThanOrEqual(Math.floor((SIZE / 100e6) * 1e6 * 0.99))
    expect(link.busyOutUs).toBeGreaterThanOrEqual(Math.floor(((2 * SIZE) / 100e6) * 1e6 * 0.99))
  })
})

describe('--queue-depth 4', () => {
  let fab: Fcfs
  const READERS = 16
  const EACH = 4 * MiB
  let data: Buffer

  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '1', '--size', '256MiB', '--queue-depth', '4', '--link', '1G'] })
    data = randomBytes(READERS * EACH)
    const src = path.join(fab.tmp, 'src.bin')
    await writeFile(src, data)
    await runOk('dd', [`if=${src}`, `of=${fab.rwbuf(0)}`, 'bs=1M', `count=${(READERS * EACH) / MiB}`, 'oflag=direct'], { timeoutMs: 45_000 })
    await writeFile(path.join(fab.mnt, 'hba', '0', 'control'), 'reset\n')
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('gives 16 parallel O_DIRECT readers of one LUN their exact bytes', async () => {
    const outs = Array.from({ length: READERS }, (_, i) => path.join(fab.tmp, `out${i}.bin`))
    const results = await Promise.all(
      outs.map((out, i) =>
        run('dd', [`if=${fab.rwbuf(0)}`, `of=${out}`, 'bs=128k', `count=${EACH / (128 * KiB)}`, `skip=${(i * EACH) / (128 * KiB)}`, 'iflag=direct'], {
          timeoutMs: 45_000,
        }),
      ),
    )
    for (const [i, r] of results.entries()) expect(r.code, `reader ${i}: ${r.stderr}`).toBe(0)
    for (const [i, out] of outs.entries()) {
      expect(firstDiff(await readFile(out), data.subarray(i * EACH, (i + 1) * EACH)), `reader ${i}`).toBeNull()
    }
  })

  it('kept at most 4 commands outstanding on that LUN, throttling on the host instead of provoking QUEUE FULL', async () => {
    const j = JSON.parse(await cat(path.join(fab.mnt, 'hba', '0', 'stats.json')))
    const key = `${fab.wwpns[0]}/0`
    const lun = j.luns[key]
    const fsStats = JSON.parse(await cat(path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '0', 'stats.json'))).fs
    console.log(`--queue-depth 4: LUN peak outstanding ${lun.peakOutstanding}, host-throttled commands ${fsStats.throttled}, HBA byCompStatus ${JSON.stringify(j.byCompStatus)}`)
    expect(lun.peakOutstanding).toBeGreaterThanOrEqual(1)
    expect(lun.peakOutstanding).toBeLessThanOrEqual(4)
    expect(lun.errors).toBe(0)
    expect(Object.keys(j.byCompStatus).filter((k) => /QUEUE|TASK SET FULL/i.test(k))).toEqual([])
    expect(fsStats.retries).toBe(0)
    expect(fsStats.errors).toBe(0)
    // The 16 readers did want more than 4 at once (so the limit was exercised).
    expect(fsStats.throttled, 'commands that waited on the host for the queue depth').toBeGreaterThan(0)
    const s = kv(await cat(path.join(fab.mnt, 'hba', '0', 'stats')))
    expect(s.firmware_queue_full).toBe('0')
    expect(Object.keys(s).filter((k) => /^errors_.*QUEUE/i.test(k))).toEqual([])
  })
})

// One fd per role, all at once on one LUN: an O_DIRECT pattern, then a buffered
// unaligned writer (write-back, read-modify-write), a buffered sequential reader
// (readahead) and six O_DIRECT random readers, as threads of one python process.
const MIXED = String.raw`
import os, sys, threading, random, mmap, time
dev = sys.argv[1]
N = 8 << 20
base = bytes(random.Random(1).getrandbits(8) for _ in range(4096)) * (N // 4096)
fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
m = mmap.mmap(-1, N); m.write(base)
assert os.pwrite(fd, m, 0) == N
os.close(fd)
errs = []
# writer: unaligned buffered patches in [N, 2N)
patches = {}
def writer():
    w = os.open(dev, os.O_WRONLY)
    rnd = random.Random(2)
    for i in range(200):
        off = N + rnd.randrange(0, N - 5000)
        d = bytes([rnd.randrange(1, 255)]) * rnd.randrange(1, 5000)
        os.pwrite(w, d, off)
        patches[i] = (off, d)
    os.fsync(w); os.close(w)
def seqreader():
    r = os.open(dev, os.O_RDONLY)
    got = b''
    while len(got) < N:
        b = os.read(r, 131072)
        if not b: break
        got += b
    os.close(r)
    if got != base: errs.append('seq mismatch')
def dreader(k):
    r = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    mm = mmap.mmap(-1, 65536)
    rnd = random.Random(10 + k)
    for i in range(50):
        off = rnd.randrange(0, N // 65536) * 65536
        os.preadv(r, [mm], off)
        if mm[:] != base[off:off + 65536]: errs.append('direct mismatch at %d' % off)
    os.close(r)
ts = [threading.Thread(target=writer), threading.Thread(target=seqreader)] + [threading.Thread(target=dreader, args=(k,)) for k in range(6)]
t0 = time.time()
for t in ts: t.start()
for t in ts: t.join(60)
alive = [t for t in ts if t.is_alive()]
# verify patches region
exp = bytearray(N)
for i in range(200):
    off, d = patches[i]; exp[off - N: off - N + len(d)] = d
r = os.open(dev, os.O_RDONLY)
got = os.pread(r, N, N)
while len(got) < N:
    got += os.pread(r, N - len(got), N + len(got))
os.close(r)
print('alive', len(alive), 'errs', errs[:3], 'patches ok', got == bytes(exp), round(time.time() - t0, 2))
`

describe('--queue-depth 1 with everything at once', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '1', '--size', '64MiB', '--queue-depth', '1', '--link', '4G'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('finishes a write-back writer, a readahead reader and six O_DIRECT readers with every byte right and one command at a time', async () => {
    const r = await python(MIXED, [fab.rwbuf(0)], { timeoutMs: 55_000 })
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(/^alive 0 errs \[\] patches ok True /)
    const j = JSON.parse(await cat(path.join(fab.mnt, 'hba', '0', 'stats.json')))
    expect(j.luns[`${fab.wwpns[0]}/0`].peakOutstanding).toBe(1)
    expect(j.link.queueFull).toBe(0)
    const fsStats = JSON.parse(await cat(path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '0', 'stats.json'))).fs
    expect(fsStats.throttled).toBeGreaterThan(0)
    expect(fsStats.errors).toBe(0)
  })
})

describe('--link 2G over 4 targets', () => {
  let fab: Fcfs
  const READERS = 48
  const BLOCK = 640 * KiB
  const COUNT = 32

  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '4', '--size', '256MiB', '--link', '2G'] })
    // Touch each LUN once so its power-on unit attention is out of the way.
    for (let t = 0; t < 4; t++) await runOk('dd', [`if=${fab.rwbuf(t)}`, 'of=/dev/null', 'bs=4k', 'count=1', 'iflag=direct'])
    await writeFile(path.join(fab.mnt, 'hba', '0', 'control'), 'reset\n')
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('keeps the HBA peak outstanding at 48 or more with 48 concurrent 640 KiB O_DIRECT readers, and moves at least half the link rate', async () => {
    // Sample the link while the readers run: utilisation is over the last refresh interval.
    let maxUtil = 0
    let maxMBps = 0
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        await sleep(400)
        const r = await run('cat', [path.join(fab.mnt, 'hba', '0', 'stats.json')])
        try {
          const link = JSON.parse(r.stdout).link
          maxUtil = Math.max(maxUtil, link.inUtilisation)
          maxMBps = Math.max(maxMBps, link.inBytesPerSec / 1e6)
        } catch { /* a read that raced the end: try again */ }
      }
    })()
    const t0 = performance.now()
    const results = await Promise.all(
      Array.from({ length: READERS }, (_, i) =>
        run('dd', [`if=${fab.rwbuf(i % 4)}`, 'of=/dev/null', 'bs=640k', `count=${COUNT}`, `skip=${Math.floor(i / 4) * COUNT}`, 'iflag=direct'], {
          timeoutMs: 50_000,
        }),
      ),
    )
    const secs = (performance.now() - t0) / 1000
    sampling = false
    await sampler
    for (const [i, r] of results.entries()) expect(r.code, `reader ${i}: ${r.stderr}`).toBe(0)
    const bytes = READERS * COUNT * BLOCK
    const mbps = bytes / secs / 1e6
    const j = JSON.parse(await cat(path.join(fab.mnt, 'hba', '0', 'stats.json')))
    console.log(
      `--link 2G, 48 readers × ${COUNT} × 640 KiB over 4 targets: ${(bytes / MiB).toFixed(0)} MiB in ${secs.toFixed(2)} s = ${mbps.toFixed(1)} MB/s ` +
        `(${((mbps / 200) * 100).toFixed(1)}% of 200 MB/s, wall clock incl. spawning 48 dd); HBA peak outstanding ${j.peakOutstanding}; ` +
        `link in: best interval ${maxMBps.toFixed(1)} MB/s, utilisation ${(maxUtil * 100).toFixed(1)}%; ` +
        `${j.completions} completions in ${j.responseInterrupts} response interrupts (${j.completionsPerInterrupt.toFixed(2)} each)`,
    )
    expect(j.bytesRead).toBeGreaterThanOrEqual(bytes)
    expect(j.errors).toBe(0)
    expect(j.peakOutstanding).toBeGreaterThanOrEqual(48)
    expect(j.responseInterrupts).toBeGreaterThan(0)
    expect(j.completionsPerInterrupt).toBeGreaterThanOrEqual(1)
    expect(j.completions).toBe(j.commands - j.outstanding)
    for (const w of fab.wwpns) expect(j.targets[w].bytesRead, w).toBe((READERS / 4) * COUNT * BLOCK)
    expect(mbps).toBeGreaterThanOrEqual(100)
    // and never faster than the link: the wall clock includes the wire time.
    expect(secs).toBeGreaterThanOrEqual((bytes / 200e6) * 0.97)
    // The stats saw the link busy (gross breakage only: the interval is a second).
    expect(maxUtil).toBeGreaterThan(0.3)
    expect(maxUtil).toBeLessThanOrEqual(1)
  })
  it('moves a single buffered dd write and a single buffered dd read at a good part of the link rate, with many commands in flight', async () => {
    const SIZE = 64 * MiB
    const mbOf = (stderr: string) => SIZE / ddSeconds(stderr) / 1e6
    const control = () => writeFile(path.join(fab.mnt, 'hba', '0', 'control'), 'reset\n')
    const lunPeak = async () => JSON.parse(await cat(path.join(fab.mnt, 'wwn', fab.wwpns[1], 'lun', '0', 'stats.json'))).hba.peakOutstanding

    await control()
    const t0 = performance.now()
    await runOk('dd', ['if=/dev/zero', `of=${fab.rwbuf(1)}`, 'bs=1M', 'count=64'], { timeoutMs: 45_000 })
    const wMBps = SIZE / ((performance.now() - t0) / 1000) / 1e6 // up to close: write-back drained
    const wPeak = await lunPeak()

    await control()
    const r = await runOk('dd', [`if=${fab.rwbuf(1)}`, 'of=/dev/null', 'bs=1M', 'count=64'], { timeoutMs: 45_000 })
    const rMBps = mbOf(r.stderr)
    const rPeak = await lunPeak()
    console.log(
      `--link 2G single buffered dd: write ${wMBps.toFixed(1)} MB/s (${((wMBps / 200) * 100).toFixed(1)}%, peak outstanding ${wPeak}), ` +
        `read ${rMBps.toFixed(1)} MB/s (${((rMBps / 200) * 100).toFixed(1)}%, peak outstanding ${rPeak})`,
    )
    expect(wPeak).toBeGreaterThan(1)
    expect(rPeak).toBeGreaterThan(1)
    // A single client is bound by the FUSE round trip per 128 KiB request, i.e. by CPU:
    // ~200 MB/s on a quiet machine, a third of that on this loaded one. Gross breakage only.
    expect(wMBps).toBeGreaterThanOrEqual(50)
    expect(rMBps).toBeGreaterThanOrEqual(50)
    // and never faster than the link
    expect(wMBps).toBeLessThanOrEqual(200 * 1.05)
    expect(rMBps).toBeLessThanOrEqual(200 * 1.05)
  })

  it('moves 4 buffered dd writers, one per target, at a good part of the link rate', async () => {
    const EACH = 32 * MiB
    await writeFile(path.join(fab.mnt, 'hba', '0', 'control'), 'reset\n')
    const t0 = performance.now()
    const results = await Promise.all(
      fab.wwpns.map((_, t) => run('dd', ['if=/dev/zero', `of=${fab.rwbuf(t)}`, 'bs=1M', `count=${EACH / MiB}`, 'seek=100'], { timeoutMs: 45_000 })),
    )
    const secs = (performance.now() - t0) / 1000
    for (const r of results) expect(r.code, r.stderr).toBe(0)
    const mbps = (4 * EACH) / secs / 1e6
    const j = JSON.parse(await cat(path.join(fab.mnt, 'hba', '0', 'stats.json')))
    console.log(`--link 2G, 4 buffered writers over 4 targets: ${mbps.toFixed(1)} MB/s (${((mbps / 200) * 100).toFixed(1)}%), HBA peak outstanding ${j.peakOutstanding}`)
    expect(j.bytesWritten).toBe(4 * EACH)
    expect(j.errors).toBe(0)
    expect(j.peakOutstanding).toBeGreaterThan(4)
    // CPU-bound on a loaded machine like the single writer: gross breakage only.
    expect(mbps).toBeGreaterThanOrEqual(50)
    expect(mbps).toBeLessThanOrEqual(200 * 1.05)
  })
})

describe('--profile isp2300 --link 4G --latency 20ms', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '1', '--size', '64MiB', '--profile', 'isp2300', '--link', '4G', '--latency', '20ms'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('shows the profile\'s command rate with the overridden link rate and latency in hba/0/stats', async () => {
    const s = kv(await cat(path.join(fab.mnt, 'hba', '0', 'stats')))
    expect(s.link_rate_MBps).toBe('400.0')
    expect(s.link_latency_us).toBe('20000.0')
    expect(s.link_command_rate).toBe('40000')
  })

  it('takes at least the modelled 20 ms for each of 10 sequential 4 KiB O_DIRECT reads, and says so in the trace', async () => {
    // Warm-up command first (unit attention), then trace the 10 timed reads.
    await runOk('dd', [`if=${fab.rwbuf(0)}`, 'of=/dev/null', 'bs=4k', 'count=1', 'iflag=direct'])
    const r = await python(String.raw`
import os, sys, subprocess, time
trace, dev = sys.argv[1], sys.argv[2]
fd = os.open(trace, os.O_RDONLY)
while os.read(fd, 1 << 16):
    pass
t0 = time.monotonic()
subprocess.run(['dd', 'if=' + dev, 'of=/dev/null', 'bs=4k', 'count=10', 'skip=50', 'iflag=direct'], check=True, stderr=subprocess.DEVNULL)
print('%.4f' % (time.monotonic() - t0))
time.sleep(0.2)
got = b''
while True:
    b = os.read(fd, 1 << 16)
    if not b: break
    got += b
os.close(fd)
sys.stdout.write(got.decode())
`, [path.join(fab.mnt, 'hba', '0', 'trace'), fab.rwbuf(0)])
    expect(r.stderr).toBe('')
    const [secs, ...lines] = r.stdout.trim().split('\n')
    expect(Number(secs)).toBeGreaterThanOrEqual(10 * 0.020 * 0.9)
    const ms = lines.filter((l) => / READ\(10\) /.test(l)).map((l) => Number(/ (\d+\.\d{3})ms$/.exec(l)![1]))
    expect(ms).toHaveLength(10)
    for (const x of ms) expect(x).toBeGreaterThanOrEqual(20 * 0.9)
  })
})

describe('--cmd-rate 100', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '2', '--size', '64MiB', '--cmd-rate', '100'] })
    for (let t = 0; t < 2; t++) await runOk('dd', [`if=${fab.rwbuf(t)}`, 'of=/dev/null', 'bs=4k', 'count=1', 'iflag=direct'])
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('starts no more than about 100 commands a second, even from 8 parallel readers on two targets', async () => {
    const t0 = performance.now()
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        run('dd', [`if=${fab.rwbuf(i % 2)}`, 'of=/dev/null', 'bs=4k', 'count=5', `skip=${i * 10}`, 'iflag=direct'], { timeoutMs: 30_000 }),
      ),
    )
    const secs = (performance.now() - t0) / 1000
    for (const r of results) expect(r.code, r.stderr).toBe(0)
    console.log(`--cmd-rate 100: 40 commands in ${secs.toFixed(3)} s`)
    // 40 commands at 100/s: the first may start at once, the others at 10 ms spacing.
    expect(secs).toBeGreaterThanOrEqual(39 * 0.01 * 0.9)
    expect(kv(await cat(path.join(fab.mnt, 'hba', '0', 'stats'))).link_command_rate).toBe('100')
  })
})

describe('bad tuning flags', () => {
  let tmp: string
  beforeAll(async () => {
    requireFuse()
    tmp = await makeTmp('fcfs-badlink-')
  })
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true })
  })

  it.each([
    ['--link', '3G'],
    ['--queue-depth', '0'],
    ['--writeback', 'lots'],
    ['--latency', 'fast'],
    ['--readahead', 'lots'],
    ['--cmd-rate', 'fast'],
    ['--profile', 'isp9999'],
    ['--writeback', '2GiB'],
    ['--readahead', '1TiB'],
    ['--queue-depth', '5000'],
    ['--latency', '-1ms', '--latency=-1ms'],
  ] as [string, string, string?][])('refuses %s %s with exit 2, a message naming the flag, and nothing mounted', async (flag, value, spelled) => {
    const mnt = path.join(tmp, `mnt${flag}`)
    await mkdir(mnt, { recursive: true })
    const r = await run(process.execPath, [CLI, 'mount', mnt, ...(spelled ? [spelled] : [flag, value])], { timeoutMs: 20_000 })
    const mounted = await isMounted(mnt)
    if (mounted) await run('fusermount', ['-uz', mnt])
    expect(mounted, `${mnt} must not be mounted`).toBe(false)
    expect(r.code, `exit code; stderr: ${r.stderr}`).toBe(2)
    expect(r.stderr).toContain(flag)
    expect(r.stderr).toContain(value)
    expect(r.stdout).not.toContain('fcfs mounted at')
  })
})
