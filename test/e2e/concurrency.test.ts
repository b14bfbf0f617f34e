// Several clients at once. The server serialises read-modify-write per block, so
// writers touching different bytes of the same block never lose each other's update,
// and concurrent readers of different regions each get their own bytes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { access, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { MiB, makeTmp, python, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff, pread, pwrite } from '../helpers/pyio.js'

const LUNS = [
  { wwpn: '2100000000000c01', blockSize: 512 },
  { wwpn: '2100000000000c02', blockSize: 4096 },
] as const

// One writer: owns [off, off+len); every round writes a new value there and reads it
// back at once. Another writer's stale read-modify-write would revert it.
const WRITER = String.raw`
import os, sys, json
path, wid, off, ln, rounds, flags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
fl = os.O_RDWR | (os.O_SYNC if flags == 'sync' else 0)
fd = os.open(path, fl)
bad = 0
first = None
for r in range(rounds):
    v = ((r * 8 + wid) % 250) + 1
    buf = bytes([v]) * ln
    n = os.pwrite(fd, buf, off)
    if n != ln:
        bad += 1; first = first or ('short write %d/%d in round %d' % (n, ln, r))
    got = os.pread(fd, ln, off)
    if got != buf:
        bad += 1
        if first is None:
            i = next(i for i in range(ln) if i >= len(got) or got[i] != v)
            first = 'round %d: byte %d is %s, wrote %d' % (r, i, got[i] if i < len(got) else 'missing', v)
final = bytes([0x10 + wid]) * ln
os.pwrite(fd, final, off)
os.fsync(fd)
os.close(fd)
print(json.dumps({'wid': wid, 'bad': bad, 'first': first}))
`

describe('concurrent clients', () => {
  let fab: Fcfs
  let scratch: string
  beforeAll(async () => {
    requireFuse()
    scratch = await makeTmp('fcfs-conc-')
    fab = await startFcfs({
      config: { targets: LUNS.map((l) => ({ wwpn: l.wwpn, luns: [{ size: '256MiB', blockSize: l.blockSize }] })) },
    })
  })
  afterAll(async () => {
    await fab?.stop()
    if (scratch) await rm(scratch, { recursive: true, force: true })
  })
  const dev = (wwpn: string) => path.join(fab.mnt, 'wwn', wwpn, 'rwbuf')

  /** The other path to the same LUN (a separate inode, so the kernel does not serialise across the two). */
  async function devPaths(wwpn: string): Promise<string[]> {
    const alt = path.join(fab.mnt, 'wwn', wwpn, 'lun', '0', 'rwbuf')
    try {
      await access(alt)
      return [dev(wwpn), alt]
    } catch {
      return [dev(wwpn)]
    }
  }

  describe.each(LUNS)('on a LUN with $blockSize-byte blocks', ({ wwpn, blockSize }) => {
    it('loses no update when 8 processes rewrite distinct bytes of the same two blocks 150 times', async () => {
      const base = 8 * MiB
      const span = 2 * blockSize
      const WRITERS = 8
      const stride = Math.floor((span - 20) / WRITERS)
      const len = stride - 25
      const ranges = Array.from({ length: WRITERS }, (_, i) => ({ wid: i, off: 10 + i * stride, len }))
      // at least one range straddles the block boundary
      expect(ranges.some((r) => r.off < blockSize && r.off + r.len > blockSize)).toBe(true)

      await pwrite(dev(wwpn), base, Buffer.alloc(span, 0xee))
      const paths = await devPaths(wwpn)
      const results = await Promise.all(ranges.map((r) =>
        python(WRITER, [paths[r.wid % paths.length], r.wid, base + r.off, r.len, 150, r.wid % 4 === 3 ? 'sync' : 'buffered'], { timeoutMs: 120_000 })))
      for (const r of results) expect(r.stderr + `exit ${r.code}`).toBe('exit 0')
      const reports = results.map((r) => JSON.parse(r.stdout) as { wid: number; bad: number; first: string | null })
      // every writer read back its own bytes after each of its writes
      expect(reports.filter((x) => x.bad > 0)).toEqual([])

      const expected = Buffer.alloc(span, 0xee)
      for (const r of ranges) expected.fill(0x10 + r.wid, r.off, r.off + r.len)
      expect(firstDiff(await pread(dev(wwpn), base, span), expected)).toBeNull()
    })

    it('loses no update when 8 processes each set single interleaved bytes of one block', async () => {
      // writer w owns every byte i with i % 8 == w: the finest possible interleaving.
      const base = 9 * MiB
      await pwrite(dev(wwpn), base, Buffer.alloc(blockSize, 0))
      const script = String.raw`
import os, sys
path, wid, base, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_RDWR)
for rnd in range(3):
    for i in range(wid, min(bs, 512), 8):
        os.pwrite(fd, bytes([0x40 + wid + rnd]), base + i)
os.close(fd)
`
      const paths = await devPaths(wwpn)
      const rs = await Promise.all(Array.from({ length: 8 }, (_, w) =>
        python(script, [paths[w % paths.length], w, base, blockSize], { timeoutMs: 120_000 })))
      for (const r of rs) expect(r.stderr + `exit ${r.code}`).toBe('exit 0')
      const expected = Buffer.alloc(blockSize, 0)
      for (let i = 0; i < Math.min(blockSize, 512); i++) expected[i] = 0x40 + (i % 8) + 2
      expect(firstDiff(await pread(dev(wwpn), base, blockSize), expected)).toBeNull()
    })
  })

  it('serves 4 concurrent dd readers of different regions their own bytes', async () => {
    const regions = await Promise.all([0, 1, 2, 3].map(async (i) => {
      const data = randomBytes(4 * MiB)
      const src = path.join(scratch, `region-${i}.bin`)
      await writeFile(src, data)
      return { i, data, src, off: 32 * MiB + i * 16 * MiB }
    }))
    for (const r of regions) {
      const w = await run('dd', [`if=${r.src}`, `of=${dev(LUNS[0].wwpn)}`, 'bs=1M', 'conv=notrunc', 'oflag=seek_bytes', `seek=${r.off}`, 'status=none'])
      expect(w.stderr + `exit ${w.code}`).toBe('exit 0')
    }
    const reads = await Promise.all(regions.map((r) =>
      run('dd', [`if=${dev(LUNS[0].wwpn)}`, `of=${path.join(scratch, `back-${r.i}.bin`)}`, 'bs=256k',
        'iflag=skip_bytes,count_bytes', `skip=${r.off}`, `count=${4 * MiB}`, 'status=none'], { timeoutMs: 60_000 })))
    for (const w of reads) expect(w.stderr + `exit ${w.code}`).toBe('exit 0')
    for (const r of regions) {
      expect(firstDiff(await readFile(path.join(scratch, `back-${r.i}.bin`)), r.data), `region ${r.i}`).toBeNull()
    }
  })

  it('keeps the data of 4 concurrent dd writers to different regions', async () => {
    const regions = await Promise.all([0, 1, 2, 3].map(async (i) => {
      const data = randomBytes(4 * MiB)
      const src = path.join(scratch, `w-region-${i}.bin`)
      await writeFile(src, data)
      return { i, data, src, off: 128 * MiB + i * 8 * MiB }
    }))
    const writes = await Promise.all(regions.map((r) =>
      run('dd', [`if=${r.src}`, `of=${dev(LUNS[1].wwpn)}`, 'bs=128k', 'conv=notrunc', 'oflag=seek_bytes', `seek=${r.off}`, 'status=none'], { timeoutMs: 60_000 })))
    for (const w of writes) expect(w.stderr + `exit ${w.code}`).toBe('exit 0')
    for (const r of regions) {
      expect(firstDiff(await pread(dev(LUNS[1].wwpn), r.off, 4 * MiB), r.data), `region ${r.i}`).toBeNull()
    }
  })
})
