// The end of a LUN behaves like the end of a block device: reads stop there (short or
// empty, never an error), writes that cannot fit fail with ENOSPC after writing what fits.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { MiB, makeTmp, q, requireFuse, run, sh, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff, pread, pwrite, pyio } from '../helpers/pyio.js'

const SIZE = MiB
const LUNS = [
  { wwpn: '2100000000000e01', blockSize: 512 },
  { wwpn: '2100000000000e02', blockSize: 4096 },
] as const

describe('the end of a LUN', () => {
  let fab: Fcfs
  let scratch: string
  beforeAll(async () => {
    requireFuse()
    scratch = await makeTmp('fcfs-eod-')
    fab = await startFcfs({
      config: { targets: LUNS.map((l) => ({ wwpn: l.wwpn, luns: [{ size: '1MiB', blockSize: l.blockSize }] })) },
    })
  })
  afterAll(async () => {
    await fab?.stop()
    if (scratch) await rm(scratch, { recursive: true, force: true })
  })
  const dev = (wwpn: string) => path.join(fab.mnt, 'wwn', wwpn, 'rwbuf')

  describe.each(LUNS)('with $blockSize-byte blocks', ({ wwpn, blockSize }) => {
    it('returns 0 bytes for a pread at the size and beyond', async () => {
      const res = await pyio(dev(wwpn), [
        { op: 'pread', off: SIZE, len: 100 },
        { op: 'pread', off: SIZE, len: blockSize },
        { op: 'pread', off: SIZE + 1, len: 1 },
        { op: 'pread', off: SIZE + 4096 * 10, len: 4096 },
        { op: 'pread', off: 2 ** 40, len: 512 },
      ], { flags: ['O_RDONLY'] })
      for (const r of res) expect(r).toEqual({ ok: true, data: Buffer.alloc(0) })
    })

    it('returns only the bytes before the end for a pread that crosses it', async () => {
      const T = 3 * 4096 + 1000
      const tail = randomBytes(T)
      await pwrite(dev(wwpn), SIZE - T, tail)
      const res = await pyio(dev(wwpn), [
        { op: 'pread', off: SIZE - 300, len: 1000 },
        { op: 'pread', off: SIZE - 1, len: 2 },
        { op: 'pread', off: SIZE - blockSize, len: 3 * blockSize },
        { op: 'pread', off: SIZE - T, len: 1 * MiB },
      ], { flags: ['O_RDONLY'] })
      expect(res[0].ok && firstDiff(res[0].data!, tail.subarray(T - 300))).toBeNull()
      expect(res[1].ok && firstDiff(res[1].data!, tail.subarray(T - 1))).toBeNull()
      expect(res[2].ok && firstDiff(res[2].data!, tail.subarray(T - blockSize))).toBeNull()
      expect(res[3].ok && firstDiff(res[3].data!, tail)).toBeNull()
    })

    it('fails a pwrite at the size or beyond with ENOSPC', async () => {
      const res = await pyio(dev(wwpn), [
        { op: 'pwrite', off: SIZE, data: Buffer.from('x') },
        { op: 'pwrite', off: SIZE, data: Buffer.alloc(blockSize, 1) },
        { op: 'pwrite', off: SIZE + 12345, data: Buffer.alloc(10, 1) },
      ])
      for (const r of res) expect(r).toMatchObject({ ok: false, errno: 'ENOSPC' })
    })

    it('writes what fits of a pwrite crossing the end, returns the short count, then ENOSPC for the rest', async () => {
      const before = await pread(dev(wwpn), SIZE - 1000, 1000)
      const data = randomBytes(100)
      const res = await pyio(dev(wwpn), [
        { op: 'pwrite', off: SIZE - 40, data },
        { op: 'pwrite', off: SIZE, data: data.subarray(40) },
        { op: 'pread', off: SIZE - 1000, len: 2000 },
      ])
      expect(res[0]).toEqual({ ok: true, n: 40 })
      expect(res[1]).toMatchObject({ ok: false, errno: 'ENOSPC' })
      const expected = Buffer.concat([before.subarray(0, 960), data.subarray(0, 40)])
      expect(res[2].ok && firstDiff(res[2].data!, expected)).toBeNull()
    })

    it('writes an aligned block that crosses the end short, keeping the block before it', async () => {
      const data = randomBytes(2 * blockSize)
      const res = await pyio(dev(wwpn), [
        { op: 'pwrite', off: SIZE - blockSize, data },
        { op: 'pread', off: SIZE - blockSize, len: 2 * blockSize },
      ])
      expect(res[0]).toEqual({ ok: true, n: blockSize })
      expect(res[1].ok && firstDiff(res[1].data!, data.subarray(0, blockSize))).toBeNull()
    })

    it('makes dd report "No space left on device" when it writes past the end, after filling the LUN', async () => {
      const src = path.join(scratch, `fill-${blockSize}.bin`)
      const data = randomBytes(SIZE + 64 * 1024)
      await writeFile(src, data)
      const r = await run('dd', [`if=${src}`, `of=${dev(wwpn)}`, 'bs=64k'])
      expect(r.code).not.toBe(0)
      expect(r.stderr).toContain('No space left on device')
      expect(r.stderr).toMatch(new RegExp(`^${SIZE} bytes`, 'm'))
      // everything up to the end landed
      const back = await run('cmp', ['-n', String(SIZE), src, dev(wwpn)])
      expect(back.stdout + back.stderr + `exit ${back.code}`).toBe('exit 0')
    })

    it('makes dd with seek past the end fail with "No space left on device"', async () => {
      const r = await run('dd', ['if=/dev/zero', `of=${dev(wwpn)}`, 'bs=4k', 'count=1', 'conv=notrunc', `seek=${SIZE / 4096}`])
      expect(r.code).not.toBe(0)
      expect(r.stderr).toContain('No space left on device')
    })

    it('gives cat exactly the capacity, no more', async () => {
      const r = await sh(`cat ${q(dev(wwpn))} | wc -c`)
      expect(r.code).toBe(0)
      expect(r.stdout.trim()).toBe(String(SIZE))
    })
  })
})
