// Write-back for buffered handles: a plain buffered writer is answered at once while
// its WRITEs go on in the background (many commands in flight for one writer), the
// bytes still land exactly, O_DIRECT/O_SYNC stay write-through, and an error that
// happens after the early answer comes back at fsync and at close — once per handle,
// as Linux's errseq does for block devices.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { MiB, makeTmp, python, requireFuse, run, runOk, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff } from '../helpers/pyio.js'

const RW = '2100000000000d01'
const WP = '2100000000000d02'
const ML = '2100000000000d03'
const B4K = '2100000000000d04'
const FABRIC = {
  targets: [
    { wwpn: RW, luns: [{ lun: 0, size: '256MiB' }] },
    { wwpn: WP, luns: [{ lun: 0, size: '64MiB', writeProtect: true }] },
    { wwpn: ML, luns: [{ lun: 0, size: '64MiB', backend: { type: 'ram', memoryLimit: '1MiB' } }] },
    { wwpn: B4K, luns: [{ lun: 0, size: '256MiB', blockSize: 4096 }] },
  ],
}

/** `cat` an info file (cat reads to EOF, whatever size getattr said). */
async function cat(p: string): Promise<string> {
  return (await runOk('cat', [p])).stdout
}

async function json(p: string): Promise<any> {
  return JSON.parse(await cat(p))
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex')
}

// Opens the device once per scenario and reports every call's outcome as an errno name.
const ERRSEQ = String.raw`
import os, sys, json, errno
path, scenario = sys.argv[1], sys.argv[2]
def name(e): return errno.errorcode.get(e.errno, str(e.errno))
out = {}
data = os.urandom(64 * 1024)
if scenario == 'fsync':
    fd = os.open(path, os.O_WRONLY)
    out['write'] = os.write(fd, data)
    res = []
    for i in range(2):
        try:
            os.fsync(fd); res.append('ok')
        except OSError as e:
            res.append(name(e))
    out['fsync'] = res
    try:
        os.close(fd); out['close'] = 'ok'
    except OSError as e:
        out['close'] = name(e)
elif scenario == 'close':
    fd = os.open(path, os.O_WRONLY)
    out['write'] = os.write(fd, data)
    try:
        os.close(fd); out['close'] = 'ok'
    except OSError as e:
        out['close'] = name(e)
elif scenario == 'write-only':
    fd = os.open(path, os.O_WRONLY)
    try:
        out['write'] = os.write(fd, data)
    except OSError as e:
        out['write'] = name(e)
    try:
        os.fsync(fd); out['fsync'] = 'ok'
    except OSError as e:
        out['fsync'] = name(e)
    try:
        os.close(fd); out['close'] = 'ok'
    except OSError as e:
        out['close'] = name(e)
elif scenario == 'idle':
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fsync(fd); out['fsync'] = 'ok'
    except OSError as e:
        out['fsync'] = name(e)
    try:
        os.close(fd); out['close'] = 'ok'
    except OSError as e:
        out['close'] = name(e)
print(json.dumps(out))
`

async function errseq(dev: string, scenario: string): Promise<Record<string, unknown>> {
  const r = await python(ERRSEQ, [dev, scenario])
  if (r.code !== 0) throw new Error(`python failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

// Opens hba/0/trace (tracing is on while it is open), skips what is there, runs the
// python snippet given as argv[2] with `dev` bound, then returns the new trace lines.
const TRACED = String.raw`
import os, sys, time, errno, mmap
trace, code, dev = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(trace, os.O_RDONLY)
while os.read(fd, 1 << 16):
    pass
result = []
exec(code)
time.sleep(0.2)
got = b''
while True:
    b = os.read(fd, 1 << 16)
    if not b:
        break
    got += b
os.close(fd)
print(repr(result))
sys.stdout.write(got.decode())
`

async function traced(mnt: string, dev: string, code: string): Promise<{ result: string; lines: string[] }> {
  const r = await python(TRACED, [path.join(mnt, 'hba', '0', 'trace'), code, dev])
  if (r.code !== 0) throw new Error(`python failed (${r.code}): ${r.stderr}`)
  const [result, ...lines] = r.stdout.split('\n').filter((l) => l !== '')
  return { result, lines }
}

describe('write-back for buffered writers', () => {
  let fab: Fcfs
  const dev = (w: string) => path.join(fab.mnt, 'wwn', w, 'rwbuf')
  const lunJson = (w: string) => json(path.join(fab.mnt, 'wwn', w, 'lun', '0', 'stats.json'))
  const control = (text: string) => writeFile(path.join(fab.mnt, 'hba', '0', 'control'), text)

  beforeAll(async () => {
    requireFuse()
    // A modelled link, so that a command takes wire time and write-back has something to
    // overlap (with nothing modelled a lone command completes before the next is sent).
    fab = await startFcfs({ config: FABRIC, args: ['--link', '4G'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('a buffered dd bs=1M count=64 reads back byte for byte with dd iflag=direct', async () => {
    const src = path.join(fab.tmp, 'src.bin')
    const back = path.join(fab.tmp, 'back.bin')
    const data = randomBytes(64 * MiB)
    await writeFile(src, data)
    await control('reset\n')
    await runOk('dd', [`if=${src}`, `of=${dev(RW)}`, 'bs=1M', 'count=64'], { timeoutMs: 45_000 })
    await runOk('dd', [`if=${dev(RW)}`, `of=${back}`, 'bs=1M', 'count=64', 'iflag=direct'], { timeoutMs: 45_000 })
    await runOk('cmp', [src, back])
    const got = await readFile(back)
    expect(got.length).toBe(64 * MiB)
    expect(sha256(got)).toBe(sha256(data))
  })

  it('counts the buffered writes as write-back writes, with more than one command in flight for the single writer', async () => {
    // The counters of the dd above (reset just before it).
    const lun = await lunJson(RW)
    expect(lun.fs.writebackWrites).toBeGreaterThan(0)
    expect(lun.fs.writebackBytes).toBe(64 * MiB)
    expect(lun.fs.writebackErrors).toBe(0)
    expect(lun.fs.writebackPending).toBe(0)
    const hba = await json(path.join(fab.mnt, 'hba', '0', 'stats.json'))
    expect(hba.peakOutstanding, 'HBA peak outstanding for one buffered dd').toBeGreaterThan(1)
    expect(lun.hba.peakOutstanding, 'LUN peak outstanding for one buffered dd').toBeGreaterThan(1)
  })

  it('does not send O_DIRECT writes through write-back', async () => {
    const before = (await lunJson(RW)).fs
    const src = path.join(fab.tmp, 'direct.bin')
    const data = randomBytes(8 * MiB)
    await writeFile(src, data)
    await runOk('dd', [`if=${src}`, `of=${dev(RW)}`, 'bs=1M', 'count=8', 'seek=100', 'oflag=direct'])
    const after = (await lunJson(RW)).fs
    expect(after.writebackWrites).toBe(before.writebackWrites)
    expect(after.writebackBytes).toBe(before.writebackBytes)
    expect(after.bytesWritten - before.bytesWritten).toBe(8 * MiB)
    const back = await runOk('dd', [`if=${dev(RW)}`, 'bs=1M', 'count=8', 'skip=100', 'iflag=direct'])
    expect(firstDiff(back.stdoutBuf, data)).toBeNull()
  })

  it.each([
    ['O_SYNC', 'sync', 120],
    ['O_DSYNC', 'dsync', 124],
  ])('does not send %s writes through write-back', async (_name, oflag, seekMiB) => {
    const before = (await lunJson(RW)).fs
    const data = randomBytes(2 * MiB)
    await runOk('dd', [`of=${dev(RW)}`, 'bs=1M', 'count=2', `seek=${seekMiB}`, `oflag=${oflag}`, 'iflag=fullblock'], { input: data })
    const after = (await lunJson(RW)).fs
    expect(after.writebackWrites).toBe(before.writebackWrites)
    expect(after.bytesWritten - before.bytesWritten).toBe(2 * MiB)
    const back = await runOk('dd', [`if=${dev(RW)}`, 'bs=1M', 'count=2', `skip=${seekMiB}`, 'iflag=direct'])
    expect(firstDiff(back.stdoutBuf, data)).toBeNull()
  })

  it('reads its own buffered write back at once through another handle', async () => {
    const data = randomBytes(3 * MiB + 4096)
    const src = path.join(fab.tmp, 'own.bin')
    await writeFile(src, data)
    const r = await python(
      String.raw`
import os, sys
path, src = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
w = os.open(path, os.O_WRONLY)
assert os.pwrite(w, data, 150 << 20) == len(data)
r = os.open(path, os.O_RDONLY)
got = os.pread(r, len(data), 150 << 20)
while len(got) < len(data):
    more = os.pread(r, len(data) - len(got), (150 << 20) + len(got))
    if not more: break
    got += more
print('same' if got == data else 'DIFFERENT')
os.close(r); os.close(w)
`,
      [dev(RW), src],
    )
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('same')
  })

  it.each([
    ['512', RW],
    ['4096', B4K],
  ])('lands the last of many overlapping buffered writes, aligned and unaligned, in order (%s-byte blocks)', async (_bs, wwpn) => {
    const r = await python(String.raw`
import os, sys, mmap
path = sys.argv[1]
base = 180 << 20
w = os.open(path, os.O_WRONLY)
expect = bytearray(256 * 1024)
for i in range(60):
    # alternate whole-region writes and unaligned patches that straddle blocks
    if i % 3 == 0:
        off, data = 0, bytes([i + 1]) * len(expect)
    else:
        off = (i * 7919) % (len(expect) - 3000)
        data = bytes([(i * 13) % 251 + 1]) * (1000 + (i * 37) % 2000)
    assert os.pwrite(w, data, base + off) == len(data)
    expect[off:off + len(data)] = data
# no fsync: an O_DIRECT reader must still see the final state
r = os.open(path, os.O_RDONLY | os.O_DIRECT)
m = mmap.mmap(-1, len(expect))
n = os.preadv(r, [m], base)
got = m[:n]
os.close(r)
os.close(w)
if got == bytes(expect):
    print('same')
else:
    i = next(i for i in range(len(expect)) if i >= len(got) or got[i] != expect[i])
    print('differ at', i, got[i] if i < len(got) else None, expect[i])
`, [dev(wwpn)])
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('same')
  })

  it('orders buffered and O_DIRECT writes to the same blocks from two handles: the last answered wins', async () => {
    const r = await python(String.raw`
import os, sys, mmap
path = sys.argv[1]
base = 190 << 20
size = 512 * 1024
b = os.open(path, os.O_WRONLY)
d = os.open(path, os.O_WRONLY | os.O_DIRECT)
m = mmap.mmap(-1, size)
for i in range(40):
    v = bytes([i + 1]) * size
    if i % 2 == 0:
        assert os.pwrite(b, v, base) == size
    else:
        m.seek(0); m.write(v)
        assert os.pwrite(d, m, base) == size
last = bytes([40]) * size
r = os.open(path, os.O_RDONLY | os.O_DIRECT)
got = mmap.mmap(-1, size)
os.preadv(r, [got], base)
print('same' if got[:] == last else 'got %d' % got[0])
os.close(r); os.close(b); os.close(d)
`, [dev(RW)])
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('same')
  })

  it('answers a buffered write across the end of the LUN with the bytes that fit, then ENOSPC, and fsync stays clean', async () => {
    const r = await python(String.raw`
import os, sys, errno, json
path = sys.argv[1]
fd = os.open(path, os.O_WRONLY)
size = os.fstat(fd).st_size
out = {'size': size}
out['across'] = os.pwrite(fd, b'\x5a' * 8192, size - 4096)
try:
    out['past'] = os.pwrite(fd, b'\x5a' * 512, size)
except OSError as e:
    out['past'] = errno.errorcode[e.errno]
try:
    os.fsync(fd); out['fsync'] = 'ok'
except OSError as e:
    out['fsync'] = errno.errorcode[e.errno]
os.close(fd)
r = os.open(path, os.O_RDONLY)
out['tail'] = os.pread(r, 8192, size - 4096).hex()
os.close(r)
print(json.dumps(out))
`, [dev(RW)])
    expect(r.stderr).toBe('')
    const out = JSON.parse(r.stdout)
    expect(out).toEqual({ size: 256 * MiB, across: 4096, past: 'ENOSPC', fsync: 'ok', tail: '5a'.repeat(4096) })
  })

  it('sends SYNCHRONIZE CACHE on fsync only after every answered WRITE has completed', async () => {
    const { result, lines } = await traced(fab.mnt, dev(RW), String.raw`
w = os.open(dev, os.O_WRONLY)
for i in range(8):
    m = mmap.mmap(-1, 128 * 1024); m.write(os.urandom(128 * 1024))  # page-aligned: one FUSE request each
    result.append(os.pwrite(w, m, (200 << 20) + i * 128 * 1024))
os.fsync(w)
result.append('synced')
os.close(w)
`)
    expect(result).toBe(`[${Array(8).fill(131072).join(', ')}, 'synced']`)
    const ops = lines.map((l) => / lun0 (WRITE\(10\)|SYNCHRONIZE CACHE\(10\)|[A-Z ()0-9]+?) (?:lba=|bytes=)/.exec(l)?.[1] ?? l)
    expect(ops).toEqual([...Array(8).fill('WRITE(10)'), 'SYNCHRONIZE CACHE(10)'])
    for (const l of lines) expect(l).toMatch(/ GOOD \d+\.\d{3}ms$/)
    const lbas = lines.slice(0, 8).map((l) => Number(/lba=(\d+)/.exec(l)![1])).sort((a, b) => a - b)
    expect(lbas).toEqual(Array.from({ length: 8 }, (_, i) => (200 * 2048) + i * 256))
  })

  it('traces the failed WRITE of a write-protected LUN with CHECK CONDITION and DATA PROTECT', async () => {
    const { result, lines } = await traced(fab.mnt, dev(WP), String.raw`
w = os.open(dev, os.O_WRONLY)
m = mmap.mmap(-1, 4096); m.write(b'\xab' * 4096)
os.write(w, m)
try:
    os.fsync(w); result.append('ok')
except OSError as e:
    result.append(errno.errorcode[e.errno])
os.close(w)
`)
    expect(result).toBe("['EROFS']")
    const writes = lines.filter((l) => / WRITE\(10\) /.test(l))
    expect(writes).toHaveLength(1)
    expect(writes[0]).toMatch(/ t\d+ lun0 WRITE\(10\) lba=0 blocks=8 bytes=4096 CHECK CONDITION \[DATA PROTECT[^\]]*\] \d+\.\d{3}ms$/)
  })

  it('answers os.write on a write-protected LUN with the full count, then fails the first fsync with EROFS and not the second', async () => {
    const before = (await lunJson(WP)).fs
    const out = await errseq(dev(WP), 'fsync')
    expect(out).toEqual({ write: 64 * 1024, fsync: ['EROFS', 'ok'], close: 'ok' })
    const after = (await lunJson(WP)).fs
    expect(after.writebackWrites).toBeGreaterThan(before.writebackWrites)
    expect(after.writebackErrors).toBeGreaterThan(before.writebackErrors)
  })

  it('reports the write-back error of another handle at os.close with EROFS', async () => {
    const out = await errseq(dev(WP), 'close')
    expect(out).toEqual({ write: 64 * 1024, close: 'EROFS' })
  })

  it('does not report an earlier handle\'s write-back error to a handle opened after it', async () => {
    const out = await errseq(dev(WP), 'idle')
    expect(out).toEqual({ fsync: 'ok', close: 'ok' })
  })

  it('reports one write-back failure to every handle that was open when it happened, once each', async () => {
    const r = await python(String.raw`
import os, sys, errno, json
path = sys.argv[1]
def fsync(fd):
    try:
        os.fsync(fd); return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
a = os.open(path, os.O_WRONLY)
b = os.open(path, os.O_WRONLY)
c = os.open(path, os.O_RDONLY)
os.write(a, os.urandom(8192))
out = {'b': fsync(b), 'a': fsync(a), 'a2': fsync(a), 'b2': fsync(b), 'c': fsync(c)}
os.close(a); os.close(b); os.close(c)
print(json.dumps(out))
`, [dev(WP)])
    expect(r.stderr).toBe('')
    // As Linux's errseq: each file open at the time sees the error at its next fsync, once.
    expect(JSON.parse(r.stdout)).toEqual({ b: 'EROFS', a: 'EROFS', a2: 'ok', b2: 'ok', c: 'EROFS' })
  })

  it('tells a buffered dd that overflows a memory-limited LUN at close (ENOSPC, exit 1), and keeps the bytes that fit', async () => {
    const data = randomBytes(4 * MiB)
    const src = path.join(fab.tmp, 'overflow.bin')
    await writeFile(src, data)
    const r = await run('dd', [`if=${src}`, `of=${dev(ML)}`, 'bs=1M', 'count=4'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/closing output file .*: No space left on device/)
    const lun = (await lunJson(ML)).fs
    expect(lun.writebackErrors).toBeGreaterThan(0)
    const sense = await cat(path.join(fab.mnt, 'wwn', ML, 'lun', '0', 'sense'))
    expect(sense).toMatch(/^sense: DATA PROTECT: SPACE ALLOCATION FAILED WRITE PROTECT$/m)
    const back = await runOk('dd', [`if=${dev(ML)}`, 'bs=1M', 'count=1', 'iflag=direct'])
    expect(firstDiff(back.stdoutBuf, data.subarray(0, MiB))).toBeNull()
  })

  it('tells dd conv=fsync about the same overflow at its fsync', async () => {
    const r = await run('dd', ['if=/dev/urandom', `of=${dev(ML)}`, 'bs=1M', 'count=4', 'conv=fsync', 'iflag=fullblock'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/fsync failed for .*: No space left on device/)
  })

  it('names DATA PROTECT in the write-protected LUN\'s sense file', async () => {
    const sense = await cat(path.join(fab.mnt, 'wwn', WP, 'lun', '0', 'sense'))
    expect(sense).toMatch(/^reason: DATA PROTECT$/m)
    expect(sense).toMatch(/^sense: DATA PROTECT/m)
    expect(sense).toMatch(/^errno: EROFS$/m)
    expect(sense).toMatch(/^command: WRITE$/m)
  })

  it('fails an O_DIRECT write to the write-protected LUN at write() itself with EROFS', async () => {
    const r = await python(String.raw`
import os, sys, mmap, errno
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
m = mmap.mmap(-1, 65536)
try:
    print(os.pwrite(fd, m, 0))
except OSError as e:
    print(errno.errorcode[e.errno])
os.close(fd)
`, [dev(WP)])
    expect(r.stdout.trim()).toBe('EROFS')
  })

  it('leaves the write-protected LUN reading zeros after all of that', async () => {
    const r = await runOk('dd', [`if=${dev(WP)}`, 'bs=64k', 'count=2', 'iflag=direct'])
    expect(firstDiff(r.stdoutBuf, Buffer.alloc(128 * 1024))).toBeNull()
  })
})

describe('--writeback 0', () => {
  let fab: Fcfs
  const dev = (w: string) => path.join(fab.mnt, 'wwn', w, 'rwbuf')

  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ config: FABRIC, args: ['--writeback', '0'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('makes a buffered write to the write-protected LUN fail at write() itself with EROFS', async () => {
    const out = await errseq(dev(WP), 'write-only')
    expect(out).toEqual({ write: 'EROFS', fsync: 'ok', close: 'ok' })
  })

  it('still writes buffered data exactly on a writable LUN, without write-back', async () => {
    const data = randomBytes(4 * MiB)
    await runOk('dd', [`of=${dev(RW)}`, 'bs=1M', 'count=4', 'iflag=fullblock'], { input: data })
    const back = await runOk('dd', [`if=${dev(RW)}`, 'bs=1M', 'count=4', 'iflag=direct'])
    expect(firstDiff(back.stdoutBuf, data)).toBeNull()
    const lun = JSON.parse((await run('cat', [path.join(fab.mnt, 'wwn', RW, 'lun', '0', 'stats.json')])).stdout)
    expect(lun.fs.writebackWrites).toBe(0)
    expect(lun.fs.bytesWritten).toBe(4 * MiB)
  })
})

describe('a small write-back window (--writeback 1MiB on a 1G link, 50 ms per command)', () => {
  let fab: Fcfs
  const dev = (w: string) => path.join(fab.mnt, 'wwn', w, 'rwbuf')

  beforeAll(async () => {
    requireFuse()
    // 50 ms per command caps the window at 8 × 128 KiB / 50 ms ≈ 21 MB/s, below what dd feeds even
    // on a loaded machine, so the window fills whatever the CPU does (the 1G link alone did not
    // when the whole suite slowed dd below 100 MB/s).
    fab = await startFcfs({ config: FABRIC, args: ['--writeback', '1MiB', '--link', '1G', '--latency', '50ms'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('makes a buffered writer wait for room, keeps at most 1 MiB of WRITEs in flight, and still lands every byte', async () => {
    const data = randomBytes(16 * MiB)
    await writeFile(path.join(fab.mnt, 'hba', '0', 'control'), 'reset\n')
    // 128 KiB writes: 128 KiB requests on either FUSE engine (the raw one would pass a 1 MiB write whole).
    await runOk('dd', [`of=${dev(RW)}`, 'bs=128k', 'count=128', 'iflag=fullblock'], { input: data, timeoutMs: 45_000 })
    const lun = await json(path.join(fab.mnt, 'wwn', RW, 'lun', '0', 'stats.json'))
    expect(lun.fs.writebackBytes).toBe(16 * MiB)
    expect(lun.fs.writebackWindowWaits).toBeGreaterThan(0)
    expect(lun.fs.writebackPendingBytes).toBe(0)
    // 128 KiB requests, 1 MiB window: never more than 8 WRITEs at the LUN.
    expect(lun.hba.peakOutstanding).toBeGreaterThan(1)
    expect(lun.hba.peakOutstanding).toBeLessThanOrEqual(8)
    const back = await runOk('dd', [`if=${dev(RW)}`, 'bs=1M', 'count=16', 'iflag=direct'], { timeoutMs: 45_000 })
    expect(firstDiff(back.stdoutBuf, data)).toBeNull()
  })
})

describe('stopping with answered buffered writes still in flight (file-backed LUN, --link 1G)', () => {
  let fab: Fcfs | undefined
  let dir: string
  beforeAll(async () => {
    requireFuse()
    dir = await makeTmp('fcfs-wb-stop-')
    fab = await startFcfs({ args: ['--targets', '1', '--size', '64MiB', '--backing-dir', dir, '--link', '1G'] })
  })
  afterAll(async () => {
    await fab?.stop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('lands every answered write in the backing file before the server exits on SIGTERM', async () => {
    const data = randomBytes(32 * MiB)
    const src = path.join(dir, 'src.bin')
    await writeFile(src, data)
    // The writer signals the server itself right after its last write() was answered,
    // while it still holds the fd: the write-back window (16 MiB) is still on the 1G link.
    const r = await python(String.raw`
import os, sys, signal
dev, src, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, 'rb').read()
fd = os.open(dev, os.O_WRONLY)
n = 0
while n < len(data):
    n += os.write(fd, data[n:n + (1 << 20)])
os.kill(pid, signal.SIGTERM)
print(n)
`, [fab!.rwbuf(0), src, fab!.proc.pid!])
    expect(r.stdout.trim()).toBe(String(32 * MiB))
    expect(await fab!.exited).toBe(0)
    expect(fab!.stdout()).toContain('"event":"writeback_drain"')
    await fab!.stop()
    fab = undefined
    const img = await readFile(path.join(dir, '21000024ff000001-lun0.img'))
    expect(firstDiff(img.subarray(0, 32 * MiB), data)).toBeNull()
  })
})
