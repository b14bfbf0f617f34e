// WRITE ATOMIC(16) (SBC-4 5.48): the limits VPD 0xB0 reports, the refusals with their field
// pointers, and that the data lands whole or not at all (a backend failing half way, a write
// cache losing power).
import { describe, expect, it } from 'vitest'
import { decodeWriteAtomic16, encodeWriteAtomic16, WRITE_ATOMIC_16 } from '../../src/scsi/cdb.js'
import { checkLayout } from '../../src/util/layout.js'
import type { Backend, IoResult, MaybeAsync } from '../../src/targets/backend.js'
import { RamBackend } from '../../src/targets/ram.js'
import { WriteCache } from '../../src/targets/write-cache.js'
import { CountingBackend, hex, makeLun, readyLu, run, runAsync, sense } from './scsi-helpers.js'

const h4 = (n: number) => n.toString(16).padStart(4, '0')
const h8 = (n: number) => n.toString(16).padStart(8, '0')
const h16 = (n: number) => n.toString(16).padStart(16, '0')

/** WRITE ATOMIC(16): byte 1 flags, LBA, ATOMIC BOUNDARY, TRANSFER LENGTH. */
const wa16 = (lba: number, n: number, boundary = 0, b1 = 0) => `9c${b1.toString(16).padStart(2, '0')}${h16(lba)}${h4(boundary)}${h4(n)}0000`
const read16 = (lba: number, n: number) => `8800${h16(lba)}${h8(n)}0000`
const blockLimits = '1201b0004000'

/** A 512e unit: 512-byte logical blocks, 4096-byte physical blocks. */
const lun512e = (over = {}) => makeLun({ physicalBlockSize: 4096, ...over })

describe('WRITE ATOMIC(16) CDB', () => {
  it('lays out LBA, ATOMIC BOUNDARY and TRANSFER LENGTH as SBC-4 does, and decodes what it encodes', () => {
    expect(() => checkLayout(WRITE_ATOMIC_16)).not.toThrow()
    const cdb = Buffer.alloc(16, 0xee)
    expect(encodeWriteAtomic16(0x0102030405, 0x0800, cdb, { fua: true, dpo: true, boundary: 0x10 })).toBe(16)
    expect(hex(cdb)).toBe('9c18' + '0000000102030405' + '0010' + '0800' + '0000')
    expect(decodeWriteAtomic16(cdb)).toEqual({ lba: 0x0102030405, blocks: 0x800, boundary: 0x10, fua: true, dpo: true })
    expect(() => encodeWriteAtomic16(0, 0x10000, cdb)).toThrow(/block count/)
  })
})

describe('VPD 0xB0 atomic fields', () => {
  it('reports 2048 blocks (1 MiB) and no alignment or granularity for 512-byte blocks, physical = logical', () => {
    const page = run(readyLu(), blockLimits, { dataIn: 64 }).data
    expect(hex(page.subarray(44, 64))).toBe('00000800' + '00000000' + '00000000' + '00000800' + '00000800')
  })

  it('reports 256 blocks of 4096 bytes', () => {
    const page = run(readyLu(makeLun({ blockSize: 4096, blocks: 512 })), blockLimits, { dataIn: 64 }).data
    expect(hex(page.subarray(44, 64))).toBe('00000100' + '00000000' + '00000000' + '00000100' + '00000100')
  })

  it('makes a 512e unit align atomic writes to its 8-block physical block', () => {
    const page = run(readyLu(lun512e()), blockLimits, { dataIn: 64 }).data
    expect(hex(page.subarray(44, 64))).toBe('00000800' + '00000008' + '00000008' + '00000800' + '00000800')
  })
})

describe('WRITE ATOMIC(16)', () => {
  it('writes the whole range in one backend call and reads back what it wrote', () => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be }))
    const data = Buffer.alloc(16 * 512)
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff
    expect(run(lu, wa16(100, 16), { dataOut: data })).toMatchObject({ status: 0, transferred: 8192, wanted: 8192 })
    expect(be.writes).toBe(1)
    expect(run(lu, read16(100, 16), { dataIn: 8192 }).data.equals(data)).toBe(true)
  })

  it('answers GOOD with nothing written for a transfer length of 0', () => {
    const be = new CountingBackend(2048 * 512)
    expect(run(readyLu(makeLun({ backend: be })), wa16(0, 0))).toMatchObject({ status: 0, transferred: 0 })
    expect(be.writes).toBe(0)
  })

  it('writes through a promise backend', async () => {
    const lu = readyLu(makeLun({ backend: new CountingBackend(2048 * 512, true) }))
    expect(await runAsync(lu, wa16(8, 8), { dataOut: Buffer.alloc(4096, 0x5a) })).toMatchObject({ status: 0, transferred: 4096 })
    expect((await runAsync(lu, read16(8, 8), { dataIn: 4096 })).data.equals(Buffer.alloc(4096, 0x5a))).toBe(true)
  })

  it('flushes the range with FUA', () => {
    const be = new CountingBackend(2048 * 512)
    run(readyLu(makeLun({ backend: be })), wa16(0, 1, 0, 0x08), { dataOut: Buffer.alloc(512) })
    expect(be.flushes).toBe(1)
  })

  describe('refusals', () => {
    it('LBA OUT OF RANGE past the last block, also for 0 blocks, before any other check', () => {
      const lu = readyLu(lun512e())
      expect(sense(run(lu, wa16(2048 - 8, 16), { dataOut: Buffer.alloc(16 * 512) }))).toMatchObject({ key: 5, asc: 0x21, ascq: 0 })
      expect(sense(run(lu, wa16(2048 + 8, 0)))).toMatchObject({ key: 5, asc: 0x21 })
      expect(sense(run(lu, wa16(2 ** 63, 8), { dataOut: Buffer.alloc(4096) }))).toMatchObject({ key: 5, asc: 0x21 })
    })

    it('DATA PROTECT, WRITE PROTECTED on a write-protected unit', () => {
      expect(sense(run(readyLu(makeLun({ writeProtect: true })), wa16(0, 1), { dataOut: Buffer.alloc(512) }))).toMatchObject({ key: 7, asc: 0x27 })
    })

    it('INVALID FIELD IN CDB at the LBA (byte 2) when the LBA is not a multiple of the atomic alignment', () => {
      const be = new CountingBackend(2048 * 512)
      const s = sense(run(readyLu(lun512e({ backend: be })), wa16(1, 8), { dataOut: Buffer.alloc(4096) }))
      expect(s).toMatchObject({ key: 5, asc: 0x24, ascq: 0, sks: { cd: true, field: 2 } })
      expect(be.writes).toBe(0)
    })

    it('INVALID FIELD IN CDB at the TRANSFER LENGTH (byte 12) when it is not a multiple of the granularity', () => {
      expect(sense(run(readyLu(lun512e()), wa16(0, 1), { dataOut: Buffer.alloc(512) }))).toMatchObject({ key: 5, asc: 0x24, sks: { cd: true, field: 12 } })
    })

    it('INVALID FIELD IN CDB at the TRANSFER LENGTH past MAXIMUM ATOMIC TRANSFER LENGTH, with or without a boundary', () => {
      const lu = readyLu(makeLun({ blocks: 4096 }))
      expect(sense(run(lu, wa16(0, 2049), { dataOut: Buffer.alloc(2049 * 512) }))).toMatchObject({ asc: 0x24, sks: { cd: true, field: 12 } })
      expect(sense(run(lu, wa16(0, 2049, 8), { dataOut: Buffer.alloc(2049 * 512) }))).toMatchObject({ asc: 0x24, sks: { cd: true, field: 12 } })
      expect(run(lu, wa16(0, 2048), { dataOut: Buffer.alloc(2048 * 512) }).status).toBe(0)
    })

    it('INVALID FIELD IN CDB at the ATOMIC BOUNDARY (byte 10) past MAXIMUM ATOMIC BOUNDARY SIZE', () => {
      const lu = readyLu()
      expect(sense(run(lu, wa16(0, 8, 2049), { dataOut: Buffer.alloc(4096) }))).toMatchObject({ asc: 0x24, sks: { cd: true, field: 10 } })
      expect(run(lu, wa16(0, 8, 4), { dataOut: Buffer.alloc(4096) }).status).toBe(0)
    })

    it('INVALID FIELD IN CDB at byte 1 bit 7 for WRPROTECT (no protection information)', () => {
      expect(sense(run(readyLu(), wa16(0, 1, 0, 0x20), { dataOut: Buffer.alloc(512) })).sks).toEqual({ cd: true, field: 1, bit: 5 })
      expect(sense(run(readyLu(), wa16(0, 1, 0, 0xe0), { dataOut: Buffer.alloc(512) })).sks).toEqual({ cd: true, field: 1, bit: 7 })
    })

    it('INVALID FIELD IN CDB at the TRANSFER LENGTH when the data-out is shorter, with nothing written', () => {
      const be = new CountingBackend(2048 * 512)
      const o = run(readyLu(makeLun({ backend: be })), wa16(0, 8), { dataOut: Buffer.alloc(4095) })
      expect(sense(o)).toMatchObject({ asc: 0x24, sks: { cd: true, field: 12 } })
      expect(be.writes).toBe(0)
    })
  })

  describe('lands whole or not at all', () => {
    /** A RAM backend whose next write stores its first half and then fails, as a file that runs out of disk does. */
    class HalfWriteBackend extends RamBackend {
      failNext = false
      override write(offset: number, src: Buffer): IoResult {
        if (!this.failNext) return super.write(offset, src)
        this.failNext = false
        super.write(offset, src.subarray(0, src.length / 2))
        return { kind: 'nospace', offset: offset + src.length / 2, message: 'disk full half way' }
      }
    }

    it('puts the old blocks back when the backend fails half way', () => {
      const be = new HalfWriteBackend(2048 * 512)
      const lu = readyLu(makeLun({ backend: be }))
      run(lu, wa16(64, 16), { dataOut: Buffer.alloc(16 * 512, 0x11) })
      be.failNext = true
      const o = run(lu, wa16(64, 16), { dataOut: Buffer.alloc(16 * 512, 0x22) })
      expect(o.status).toBe(2)
      expect(run(lu, read16(64, 16), { dataIn: 16 * 512 }).data.equals(Buffer.alloc(16 * 512, 0x11))).toBe(true)
    })

    it('fails with nothing written when the old blocks cannot be read first', () => {
      const inner = new CountingBackend(2048 * 512)
      const be: Backend = Object.assign(Object.create(inner) as CountingBackend, {
        read: (): MaybeAsync<IoResult> => ({ kind: 'medium', offset: 64 * 512, message: 'unreadable' }),
      })
      const o = run(readyLu(makeLun({ backend: be })), wa16(64, 16), { dataOut: Buffer.alloc(16 * 512, 0x22) })
      expect(sense(o)).toMatchObject({ key: 3, asc: 0x11 })
      expect(inner.writes).toBe(0)
    })

    it('is on the medium before GOOD with a volatile write cache, so a power loss that keeps blocks at random cannot tear it', () => {
      for (const seed of [1, 2, 3, 4, 5]) {
        const medium = new RamBackend(2048 * 512)
        const cache = new WriteCache(medium, { blockSize: 512, seed, destageIntervalMs: 0 })
        const lu = readyLu(makeLun({ backend: cache, writeCache: cache }))
        expect(run(lu, wa16(0, 64), { dataOut: Buffer.alloc(64 * 512, 0x33) }).status).toBe(0)
        expect(cache.stats().dirtyBytes).toBe(0)
        cache.powerLoss('random', seed)
        const back = Buffer.alloc(64 * 512)
        medium.read(0, back)
        expect(back.equals(Buffer.alloc(64 * 512, 0x33)), `seed ${seed}`).toBe(true)
      }
    })
  })
})
