// pread/pwrite at any offset and length: the server does read-modify-write of the
// edge blocks, and must never disturb a byte outside the range written.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { KiB, MiB, requireFuse, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff, pread, pwrite, pyio } from '../helpers/pyio.js'

const LUNS = [
  { wwpn: '2100000000000a01', blockSize: 512 },
  { wwpn: '2100000000000a02', blockSize: 4096 },
] as const

const OFFSETS = [1, 511, 513, 4095, 4097] as const
const LENGTHS = [1, 3, 1000, 70_000] as const
const REGION = 256 * KiB
const CASES = OFFSETS.flatMap((off) => LENGTHS.map((len) => ({ off, len })))

describe('unaligned pread and pwrite', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({
      config: { targets: LUNS.map((l) => ({ wwpn: l.wwpn, luns: [{ size: '64MiB', blockSize: l.blockSize }] })) },
    })
  })
  afterAll(async () => {
    await fab?.stop()
  })
  const dev = (wwpn: string) => path.join(fab.mnt, 'wwn', wwpn, 'rwbuf')

  describe.each(LUNS)('on a LUN with $blockSize-byte blocks', ({ wwpn, blockSize }) => {
    it('reports its block size in st_blksize', async () => {
      const [st] = await pyio(dev(wwpn), [{ op: 'fstat' }], { flags: ['O_RDONLY'] })
      expect(st).toMatchObject({ ok: true, blksize: blockSize, size: 64 * MiB, mode: 'regular' })
    })

    it.each(CASES.map((c, i) => ({ ...c, i })))(
      'writes $len bytes at offset $off of a block-aligned region and leaves every other byte unchanged',
      async ({ off, len, i }) => {
        const base = MiB + i * REGION
        const background = randomBytes(REGION)
        const data = randomBytes(len)
        const [w0, w1, r] = await pyio(dev(wwpn), [
          { op: 'pwrite', off: base, data: background },
          { op: 'pwrite', off: base + off, data },
          { op: 'pread', off: base, len: REGION },
        ])
        expect(w0).toEqual({ ok: true, n: REGION })
        expect(w1).toEqual({ ok: true, n: len })
        expect(r.ok).toBe(true)
        const expected = Buffer.from(background)
        data.copy(expected, off)
        expect(firstDiff(r.ok ? r.data! : Buffer.alloc(0), expected)).toBeNull()
      },
    )

    it.each(CASES.map((c, i) => ({ ...c, i })))(
      'reads $len bytes at offset $off exactly',
      async ({ off, len, i }) => {
        const base = 32 * MiB + i * REGION
        const background = randomBytes(REGION)
        await pwrite(dev(wwpn), base, background)
        const got = await pread(dev(wwpn), base + off, len)
        expect(firstDiff(got, background.subarray(off, off + len))).toBeNull()
      },
    )

    it('writes one byte into never-written space and reads back its block as zeros plus that byte', async () => {
      const block = 20 * MiB
      const at = block + 777 % blockSize
      await pwrite(dev(wwpn), at, Buffer.from([0xa5]))
      const got = await pread(dev(wwpn), block, blockSize)
      const expected = Buffer.alloc(blockSize)
      expected[777 % blockSize] = 0xa5
      expect(firstDiff(got, expected)).toBeNull()
      // and the neighbouring blocks stay zero
      expect(firstDiff(await pread(dev(wwpn), block - blockSize, blockSize), Buffer.alloc(blockSize))).toBeNull()
      expect(firstDiff(await pread(dev(wwpn), block + blockSize, blockSize), Buffer.alloc(blockSize))).toBeNull()
    })

    it('assembles a region from many consecutive 37-byte writes that straddle block boundaries', async () => {
      const base = 24 * MiB + 5
      const pieces = Array.from({ length: 300 }, () => randomBytes(37))
      let pos = base
      const ops = pieces.map((p) => {
        const op = { op: 'pwrite' as const, off: pos, data: p }
        pos += p.length
        return op
      })
      const res = await pyio(dev(wwpn), [...ops, { op: 'pread', off: base - 5, len: 300 * 37 + 10 }])
      for (const r of res.slice(0, -1)) expect(r).toEqual({ ok: true, n: 37 })
      const last = res[res.length - 1]
      const expected = Buffer.concat([Buffer.alloc(5), ...pieces, Buffer.alloc(5)])
      expect(last.ok && firstDiff(last.data!, expected)).toBeNull()
    })

    it('writes a whole aligned block and reads it back in odd-sized pieces', async () => {
      const base = 28 * MiB
      const data = randomBytes(blockSize * 3)
      await pwrite(dev(wwpn), base, data)
      const sizes = [1, 7, 100, blockSize - 1, blockSize + 1, 13]
      let pos = 0
      const ops: { op: 'pread'; off: number; len: number }[] = []
      for (const s of sizes) {
        ops.push({ op: 'pread', off: base + pos, len: s })
        pos += s
      }
      const res = await pyio(dev(wwpn), ops, { flags: ['O_RDONLY'] })
      const got = Buffer.concat(res.map((r) => (r.ok ? r.data! : Buffer.alloc(0))))
      expect(firstDiff(got, data.subarray(0, pos))).toBeNull()
    })
  })
})
