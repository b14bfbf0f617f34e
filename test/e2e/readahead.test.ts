// Readahead for buffered sequential readers: fcfs issues the next READs before they
// are asked for, serves the reader from them, drops them when the reader jumps
// elsewhere, and never serves bytes older than a write to the same blocks — whether
// that write came through O_DIRECT or through a buffered (write-back) handle.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { MiB, python, requireFuse, runOk, startFcfs, type Fcfs } from '../helpers/mount.js'

const WWPN = '2100000000000e01'
const W4K = '2100000000000e02'
const FABRIC = {
  targets: [
    { wwpn: WWPN, luns: [{ lun: 0, size: '256MiB' }] },
    { wwpn: W4K, luns: [{ lun: 0, size: '64MiB', blockSize: 4096 }] },
  ],
}
const DATA_MIB = 16

async function json(p: string): Promise<any> {
  return JSON.parse((await runOk('cat', [p])).stdout)
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex')
}

// A sequential buffered reader: lseek once, then os.read(128 KiB) until `length`.
const SEQ_READER = String.raw`
import os, sys, hashlib
path, off, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
os.lseek(fd, off, os.SEEK_SET)
h = hashlib.sha256()
n = 0
while n < length:
    b = os.read(fd, min(128 * 1024, length - n))
    if not b:
        break
    h.update(b)
    n += len(b)
os.close(fd)
print(n, h.hexdigest())
`

// The reader reads 2 chunks of 128 KiB sequentially (so the prefetch now covers the
// next MiBs), waits for the prefetch to land (or not: pause 0 races the READs), then another fd writes new bytes into
// the region ahead (at the very next read position and 1 MiB further), and the reader
// carries on sequentially. It must see the new bytes.
const INVALIDATE = String.raw`
import os, sys, mmap, time, json
path, mode, base, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
CH = 128 * 1024
TOTAL = 4 * 1024 * 1024
old = os.urandom(TOTAL)
w = os.open(path, os.O_WRONLY | os.O_DIRECT)
m = mmap.mmap(-1, TOTAL); m.write(old)
assert os.pwrite(w, m, base) == TOTAL
os.close(w)

r = os.open(path, os.O_RDONLY)
os.lseek(r, base, os.SEEK_SET)
got = bytearray()
for i in range(2):
    got += os.read(r, CH)
time.sleep(pause)  # with a pause the prefetched chunks have landed: they hold the old bytes

patches = [(2 * CH, os.urandom(CH)), (1024 * 1024, os.urandom(512 * 1024))]
if mode == 'direct':
    w = os.open(path, os.O_WRONLY | os.O_DIRECT)
    for at, data in patches:
        mm = mmap.mmap(-1, len(data)); mm.write(data)
        assert os.pwrite(w, mm, base + at) == len(data)
else:
    w = os.open(path, os.O_WRONLY)
    for at, data in patches:
        assert os.pwrite(w, data, base + at) == len(data)
# no fsync, no close before reading on: the buffered writes may still be in flight

while len(got) < TOTAL:
    b = os.read(r, CH)
    if not b:
        break
    got += b
os.close(r)
os.close(w)
exp = bytearray(old)
for at, data in patches:
    exp[at:at + len(data)] = data
res = {'n': len(got), 'same': bytes(got) == bytes(exp)}
if not res['same']:
    i = next(i for i in range(min(len(got), len(exp))) if got[i] != exp[i])
    stale = got[i] == old[i]
    res['first_diff'] = i
    res['stale'] = bool(stale)
print(json.dumps(res))
`

// Random preads (after a short sequential run) checked against the source file.
const RANDOM = String.raw`
import os, sys, random, json
path, src = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
fd = os.open(path, os.O_RDONLY)
bad = []
# a sequential start, so readahead is running when the jumps begin
for i in range(4):
    b = os.pread(fd, 128 * 1024, i * 128 * 1024)
    if b != data[i * 128 * 1024:(i + 1) * 128 * 1024]:
        bad.append(['seq', i])
rnd = random.Random(7)
for k in range(60):
    off = rnd.randrange(0, len(data) - 1)
    ln = min(rnd.choice([1, 511, 4096, 65536, 131072, 100000]), len(data) - off)
    b = os.pread(fd, ln, off)
    if b != data[off:off + ln]:
        bad.append([off, ln, len(b)])
    # and sometimes a short sequential run from there
    if k % 5 == 0:
        pos = off + ln
        for j in range(3):
            ln2 = min(131072, len(data) - pos)
            if ln2 <= 0: break
            b = os.pread(fd, ln2, pos)
            if b != data[pos:pos + ln2]:
                bad.append([pos, ln2, len(b), 'run'])
            pos += ln2
os.close(fd)
print(json.dumps(bad))
`

async function seqRead(dev: string, off: number, length: number): Promise<{ n: number; sha: string }> {
  const r = await python(SEQ_READER, [dev, off, length], { timeoutMs: 45_000 })
  if (r.code !== 0) throw new Error(`reader failed: ${r.stderr}`)
  const [n, sha] = r.stdout.trim().split(' ')
  return { n: Number(n), sha }
}

describe('readahead for buffered sequential readers', () => {
  let fab: Fcfs
  let src: string
  let data: Buffer
  const dev = () => path.join(fab.mnt, 'wwn', WWPN, 'rwbuf')
  const lunJson = () => json(path.join(fab.mnt, 'wwn', WWPN, 'lun', '0', 'stats.json'))

  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ config: FABRIC, args: ['--readahead-min-latency', '0'] }) // prefetch even on the fast unmodelled link
    src = path.join(fab.tmp, 'src.bin')
    data = randomBytes(DATA_MIB * MiB)
    await writeFile(src, data)
    await runOk('dd', [`if=${src}`, `of=${dev()}`, 'bs=1M', `count=${DATA_MIB}`, 'oflag=direct'], { timeoutMs: 45_000 })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('gives a python reader reading 128 KiB at a time exactly the bytes written', async () => {
    await writeFile(path.join(fab.mnt, 'hba', '0', 'control'), 'reset\n')
    const got = await seqRead(dev(), 0, DATA_MIB * MiB)
    expect(got.n).toBe(DATA_MIB * MiB)
    expect(got.sha).toBe(sha256(data))
  })

  it('serves that reader from readahead (readaheadHits > 0, chunks issued ahead)', async () => {
    const lun = await lunJson()
    expect(lun.fs.readaheadHits).toBeGreaterThan(0)
    expect(lun.fs.readaheadChunks).toBeGreaterThan(0)
  })

  it('gives a buffered cat the same bytes as the O_DIRECT writer wrote', async () => {
    const r = await runOk('bash', ['-c', `head -c ${DATA_MIB * MiB} ${dev()} | sha256sum`], { timeoutMs: 45_000 })
    expect(r.stdout.split(' ')[0]).toBe(sha256(data))
  })

  it.each([
    ['an O_DIRECT writer', 'it had already prefetched', 'direct', 0.5, 64 * MiB],
    ['a buffered (write-back) writer', 'it had already prefetched', 'buffered', 0.5, 80 * MiB],
    ['an O_DIRECT writer', 'it was still prefetching', 'direct', 0, 96 * MiB],
    ['a buffered (write-back) writer', 'it was still prefetching', 'buffered', 0, 112 * MiB],
  ] as const)(
    'shows a sequential reader the new bytes %s put into the region %s',
    async (_who, _when, mode, pause, base) => {
      const before = (await lunJson()).fs
      const r = await python(INVALIDATE, [dev(), mode, base, pause], { timeoutMs: 45_000 })
      expect(r.stderr).toBe('')
      expect(JSON.parse(r.stdout)).toEqual({ n: 4 * MiB, same: true })
      const after = (await lunJson()).fs
      // The reader did run with readahead, and the write dropped what it had prefetched.
      expect(after.readaheadChunks).toBeGreaterThan(before.readaheadChunks)
      expect(after.readaheadHits).toBeGreaterThan(before.readaheadHits)
      expect(after.readaheadDropped).toBeGreaterThan(before.readaheadDropped)
      expect(after.errors).toBe(before.errors)
    },
  )

  it('shows a reader the bytes it wrote itself ahead of its read position through the same O_RDWR buffered fd', async () => {
    const r = await python(String.raw`
import os, sys, time
path = sys.argv[1]
base = 128 << 20
CH = 128 * 1024
old = os.urandom(3 << 20)
fd = os.open(path, os.O_RDWR)
assert os.pwrite(fd, old, base) == len(old)
os.fsync(fd)
got = bytearray()
for i in range(3):
    got += os.pread(fd, CH, base + i * CH)
time.sleep(0.3)
new = os.urandom(700000)
at = 3 * CH + 12345
assert os.pwrite(fd, new, base + at) == len(new)
pos = 3 * CH
while pos < len(old):
    b = os.pread(fd, CH, base + pos)
    got += b
    pos += len(b)
os.close(fd)
exp = bytearray(old); exp[at:at + len(new)] = new
print('same' if bytes(got) == bytes(exp) else 'DIFFERENT')
`, [dev()], { timeoutMs: 45_000 })
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('same')
  })

  it('gives a sequential reader with odd read sizes from an odd offset exactly the right bytes', async () => {
    const r = await python(String.raw`
import os, sys
path, src = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
fd = os.open(path, os.O_RDONLY)
pos = 333
os.lseek(fd, pos, os.SEEK_SET)
bad = 0
sizes = [100000, 1, 4095, 131072, 77777, 512, 65536]
k = 0
while pos < 12 * 1024 * 1024:
    n = sizes[k % len(sizes)]; k += 1
    b = os.read(fd, n)
    if b != data[pos:pos + n]:
        bad += 1
    pos += len(b)
os.close(fd)
print(k, bad)
`, [dev(), src], { timeoutMs: 45_000 })
    expect(r.stderr).toBe('')
    const [reads, bad] = r.stdout.trim().split(' ').map(Number)
    expect(reads).toBeGreaterThan(100)
    expect(bad).toBe(0)
  })

  it('returns the right bytes to random preads that jump away from a sequential run', async () => {
    const r = await python(RANDOM, [dev(), src], { timeoutMs: 45_000 })
    expect(r.stderr).toBe('')
    expect(JSON.parse(r.stdout)).toEqual([])
  })

  it('issues no readahead for purely random preads', async () => {
    const before = (await lunJson()).fs
    const r = await python(String.raw`
import os, sys, random
path, src = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
fd = os.open(path, os.O_RDONLY)
rnd = random.Random(11)
bad = 0
last_end = -1
for k in range(50):
    while True:
        off = rnd.randrange(0, len(data) - 65536) & ~511
        if off != last_end:
            break
    b = os.pread(fd, 65536, off)
    bad += b != data[off:off + 65536]
    last_end = off + 65536
os.close(fd)
print(bad)
`, [dev(), src])
    expect(r.stdout.trim()).toBe('0')
    const after = (await lunJson()).fs
    expect(after.readaheadChunks - before.readaheadChunks).toBe(0)
    expect(after.reads - before.reads).toBe(50)
  })

  it('prefetches at most the 4 MiB window ahead of a reader that stops after two reads', async () => {
    const before = (await lunJson()).fs
    const r = await python(String.raw`
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
os.lseek(fd, 200 << 20, os.SEEK_SET)
n = len(os.read(fd, 131072)) + len(os.read(fd, 131072))
time.sleep(0.5)
os.close(fd)
print(n)
`, [dev()])
    expect(r.stdout.trim()).toBe(String(256 * 1024))
    const after = (await lunJson()).fs
    const chunks = after.readaheadChunks - before.readaheadChunks
    const bytes = after.bytesRead - before.bytesRead
    // 2 reads of 128 KiB, then the 4 MiB window in 512 KiB chunks: ≤ 9 chunks, ≤ 128 KiB + 4.5 MiB.
    expect(chunks).toBeGreaterThan(0)
    expect(chunks).toBeLessThanOrEqual(9)
    expect(bytes).toBeLessThanOrEqual(128 * 1024 + 9 * 512 * 1024)
  })

  it('gives a sequential reader of a 4096-byte-block LUN the right bytes, and the new bytes written ahead of it', async () => {
    const dev4k = path.join(fab.mnt, 'wwn', W4K, 'rwbuf')
    const src4k = path.join(fab.tmp, 'src4k.bin')
    const d = randomBytes(8 * MiB)
    await writeFile(src4k, d)
    await runOk('dd', [`if=${src4k}`, `of=${dev4k}`, 'bs=1M', 'count=8', 'oflag=direct'])
    const got = await seqRead(dev4k, 0, 8 * MiB)
    expect(got).toEqual({ n: 8 * MiB, sha: sha256(d) })
    for (const mode of ['direct', 'buffered']) {
      const r = await python(INVALIDATE, [dev4k, mode, mode === 'direct' ? 16 * MiB : 24 * MiB, 0.3], { timeoutMs: 45_000 })
      expect(r.stderr).toBe('')
      expect(JSON.parse(r.stdout), mode).toEqual({ n: 4 * MiB, same: true })
    }
    const lun = await json(path.join(fab.mnt, 'wwn', W4K, 'lun', '0', 'stats.json'))
    expect(lun.fs.readaheadHits).toBeGreaterThan(0)
  })

  it('returns 0 bytes at the end of the device and a short read across it, with readahead running', async () => {
    const r = await python(String.raw`
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
os.lseek(fd, size - 3 * 131072 - 1000, os.SEEK_SET)
lens = []
while True:
    b = os.read(fd, 131072)
    lens.append(len(b))
    if not b: break
os.close(fd)
print(size, lens)
`, [dev()])
    expect(r.stdout.trim()).toBe(`${256 * MiB} [131072, 131072, 131072, 1000, 0]`)
  })
})

describe('--readahead 0', () => {
  let fab: Fcfs
  const dev = () => path.join(fab.mnt, 'wwn', WWPN, 'rwbuf')

  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ config: FABRIC, args: ['--readahead', '0'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('still gives a sequential buffered reader the right bytes, and issues no readahead chunks', async () => {
    const src = path.join(fab.tmp, 'src.bin')
    const data = randomBytes(8 * MiB)
    await writeFile(src, data)
    await runOk('dd', [`if=${src}`, `of=${dev()}`, 'bs=1M', 'count=8', 'oflag=direct'])
    const got = await seqRead(dev(), 0, 8 * MiB)
    expect(got).toEqual({ n: 8 * MiB, sha: sha256(data) })
    const r = await python(RANDOM, [dev(), src], { timeoutMs: 45_000 })
    expect(JSON.parse(r.stdout)).toEqual([])
    const lun = await json(path.join(fab.mnt, 'wwn', WWPN, 'lun', '0', 'stats.json'))
    expect(lun.fs.readaheadChunks).toBe(0)
    expect(lun.fs.readaheadHits).toBe(0)
  })

  it('still shows a sequential reader the bytes another fd wrote ahead of it', async () => {
    const r = await python(INVALIDATE, [dev(), 'buffered', 32 * MiB, 0.2], { timeoutMs: 45_000 })
    expect(JSON.parse(r.stdout)).toEqual({ n: 4 * MiB, same: true })
  })
})
