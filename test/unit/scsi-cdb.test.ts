import { describe, expect, it } from 'vitest'
import { DecodeError } from '../../src/errors.js'
import {
  CDB_LAYOUTS,
  decodeReadCapacity16Data,
  decodeReadWrite,
  decodeReportLunsData,
  decodeStandardInquiry,
  decodeSyncCache,
  encodeInquiry,
  encodeReadCapacity10,
  encodeReadCapacity16,
  encodeReadWrite,
  encodeReadWrite16,
  encodeReportLuns,
  encodeRequestSense,
  encodeSyncCache10,
  encodeSyncCache16,
  encodeTestUnitReady,
} from '../../src/scsi/cdb.js'
import {
  DATA_LAYOUTS,
  decodeReadCapacity10Data,
  encodeReadCapacity10Data,
  encodeReadCapacity16Data,
  encodeReportLunsData,
  encodeStandardInquiry,
} from '../../src/scsi/data.js'
import { INQUIRY_LAYOUTS } from '../../src/scsi/inquiry.js'
import { checkLayout } from '../../src/util/layout.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const cdb16 = () => Buffer.alloc(16, 0xee)

describe('CDB and parameter data layouts', () => {
  it.each([...CDB_LAYOUTS, ...DATA_LAYOUTS, ...INQUIRY_LAYOUTS].map((l) => [l.name, l] as const))(
    '%s: fields fit, do not overlap and cover every byte',
    (_name, l) => {
      expect(() => checkLayout(l)).not.toThrow()
    },
  )

  it('the layout check catches an overlap, an overrun and a gap', () => {
    expect(() => checkLayout({ name: 'x', size: 4, fields: { a: { offset: 0, length: 2 }, b: { offset: 1, length: 3 } } })).toThrow(/overlaps a at byte 1/)
    expect(() => checkLayout({ name: 'x', size: 4, fields: { a: { offset: 0, length: 5 } } })).toThrow(/does not fit/)
    expect(() => checkLayout({ name: 'x', size: 4, fields: { a: { offset: 0, length: 3 } } })).toThrow(/byte 3 belongs to no field/)
  })
})

describe('CDB encoders', () => {
  it('encodes a READ(10) when the range fits 32-bit LBAs and 16-bit lengths', () => {
    const c = cdb16()
    expect(encodeReadWrite('read', 0x12345678, 0x100, c)).toBe(10)
    expect(hex(c.subarray(0, 10))).toBe('28001234567800010000')
  })

  it('encodes a WRITE(10) with FUA in byte 1 bit 3', () => {
    const c = cdb16()
    expect(encodeReadWrite('write', 8, 2, c, { fua: true })).toBe(10)
    expect(hex(c.subarray(0, 10))).toBe('2a080000000800000200')
  })

  it('uses (10) for a range ending exactly at 2^32 and (16) one block later', () => {
    const c = cdb16()
    expect(encodeReadWrite('read', 0xffffffff, 1, c)).toBe(10)
    expect(hex(c.subarray(0, 10))).toBe('2800ffffffff00000100')
    expect(encodeReadWrite('read', 0xffffffff, 2, c)).toBe(16)
    expect(hex(c)).toBe('880000000000ffffffff000000020000')
  })

  it('uses WRITE(16) for more than 0xFFFF blocks', () => {
    const c = cdb16()
    expect(encodeReadWrite('write', 0, 0x10000, c)).toBe(16)
    expect(hex(c)).toBe('8a000000000000000000000100000000')
  })

  it('encodes READ(16) and WRITE(16) even where (10) would do, when asked for (16) (the remote iSCSI backend)', () => {
    const c = cdb16()
    expect(encodeReadWrite16('read', 8, 2, c)).toBe(16)
    expect(hex(c)).toBe('88000000000000000008000000020000')
    expect(encodeReadWrite16('write', 0x123456789abc, 0x100, c, { fua: true })).toBe(16)
    expect(hex(c)).toBe('8a080000123456789abc000001000000')
  })

  it('encodes a 48-bit LBA in READ(16)', () => {
    const c = cdb16()
    encodeReadWrite('read', 0x123456789abc, 7, c)
    expect(hex(c)).toBe('88000000123456789abc000000070000')
  })

  it('refuses arguments no CDB can carry', () => {
    expect(() => encodeReadWrite('read', -1, 1, cdb16())).toThrow()
    expect(() => encodeReadWrite('read', 0, 2 ** 32, cdb16())).toThrow()
    expect(() => encodeReadWrite('read', 0, 1, Buffer.alloc(8))).toThrow(/needs 10/)
  })

  it('encodes TEST UNIT READY as six zero bytes', () => {
    const c = cdb16()
    expect(encodeTestUnitReady(c)).toBe(6)
    expect(hex(c.subarray(0, 6))).toBe('000000000000')
  })

  it('encodes REQUEST SENSE with the allocation length in byte 4 and DESC in byte 1', () => {
    const c = cdb16()
    expect(encodeRequestSense(252, c)).toBe(6)
    expect(hex(c.subarray(0, 6))).toBe('03000000fc00')
    encodeRequestSense(18, c, true)
    expect(hex(c.subarray(0, 6))).toBe('030100001200')
  })

  it('encodes INQUIRY with EVPD, page code and a 16-bit allocation length', () => {
    const c = cdb16()
    expect(encodeInquiry(true, 0x83, 0x1000, c)).toBe(6)
    expect(hex(c.subarray(0, 6))).toBe('120183100000')
    encodeInquiry(false, 0, 96, c)
    expect(hex(c.subarray(0, 6))).toBe('120000006000')
  })

  it('encodes READ CAPACITY(10) and (16)', () => {
    const c = cdb16()
    expect(encodeReadCapacity10(c)).toBe(10)
    expect(hex(c.subarray(0, 10))).toBe('25000000000000000000')
    expect(encodeReadCapacity16(32, c)).toBe(16)
    expect(hex(c)).toBe('9e100000000000000000000000200000')
  })

  it('encodes REPORT LUNS with the allocation length at bytes 6..9', () => {
    const c = cdb16()
    expect(encodeReportLuns(4096, c)).toBe(12)
    expect(hex(c.subarray(0, 12))).toBe('a00000000000000010000000')
  })

  it('encodes SYNCHRONIZE CACHE(10) and (16)', () => {
    const c = cdb16()
    expect(encodeSyncCache10(0, 0, c)).toBe(10)
    expect(hex(c.subarray(0, 10))).toBe('35000000000000000000')
    encodeSyncCache10(0x100, 8, c, true)
    expect(hex(c.subarray(0, 10))).toBe('35020000010000000800')
    expect(encodeSyncCache16(0x100000000, 1, c)).toBe(16)
    expect(hex(c)).toBe('91000000000100000000000000010000')
  })
})

describe('CDB decoders', () => {
  it.each([
    ['read', 0, 1, false],
    ['write', 0x12345678, 0xffff, true],
    ['read', 0xffffffff, 2, false],
    ['write', 2 ** 40 + 5, 0x10000, true],
  ] as const)('round-trips %s lba=%d blocks=%d fua=%s', (op, lba, blocks, fua) => {
    const c = cdb16()
    const n = encodeReadWrite(op, lba, blocks, c, { fua })
    const d = decodeReadWrite(c.subarray(0, n))
    expect(d).toMatchObject({ write: op === 'write', cdbLength: n, lba, blocks, fua })
    expect(d.lengthOffset).toBe(n === 10 ? 7 : 10)
  })

  it('reads a READ(6) transfer length of 0 as 256 blocks and a 21-bit LBA', () => {
    expect(decodeReadWrite(Buffer.from('081fffff0000', 'hex'))).toMatchObject({ write: false, lba: 0x1fffff, blocks: 256, lengthOffset: 4 })
    expect(decodeReadWrite(Buffer.from('0a0000100800', 'hex'))).toMatchObject({ write: true, lba: 0x10, blocks: 8 })
  })

  it('decodes READ(12) and WRITE(12)', () => {
    expect(decodeReadWrite(Buffer.from('a80800000010000001000000', 'hex'))).toMatchObject({ lba: 16, blocks: 0x100, fua: true, cdbLength: 12, lengthOffset: 6 })
    expect(decodeReadWrite(Buffer.from('aa0000000010000000020000', 'hex'))).toMatchObject({ write: true, blocks: 2 })
  })

  it('rejects a CDB that is not a READ or WRITE, or is too short, with DecodeError', () => {
    expect(() => decodeReadWrite(Buffer.from('1200000000', 'hex'))).toThrow(DecodeError)
    expect(() => decodeReadWrite(Buffer.from('2800000000', 'hex'))).toThrow(/needs 10 bytes, got 5/)
  })

  it('round-trips SYNCHRONIZE CACHE', () => {
    const c = cdb16()
    encodeSyncCache16(2 ** 35, 77, c, true)
    expect(decodeSyncCache(c)).toEqual({ lba: 2 ** 35, blocks: 77, immed: true })
  })
})

describe('parameter data codecs', () => {
  it('encodes standard INQUIRY data with SPC-4, format 2, CmdQue and padded identity', () => {
    const b = Buffer.alloc(36)
    expect(encodeStandardInquiry({ peripheralQualifier: 0, deviceType: 0, vendor: 'FCFS', product: 'RAMDISK', revision: '0001' }, b)).toBe(36)
    expect(hex(b.subarray(0, 8))).toBe('000006121f000002')
    expect(b.subarray(8, 36).toString('latin1')).toBe('FCFS    RAMDISK         0001')
  })

  it('round-trips standard INQUIRY data at a non-zero offset', () => {
    const b = Buffer.alloc(40, 0xaa)
    encodeStandardInquiry({ peripheralQualifier: 3, deviceType: 0x1f, vendor: 'V', product: 'PRODUCT NAME 16C', revision: 'r1', tpgs: 1 }, b, 4)
    expect(hex(b.subarray(4, 12))).toBe('7f0006121f100002')
    expect(decodeStandardInquiry(b, 4)).toEqual({
      peripheralQualifier: 3,
      deviceType: 0x1f,
      removable: false,
      version: 6,
      responseDataFormat: 2,
      additionalLength: 31,
      cmdQue: true,
      tpgs: 1,
      vendor: 'V',
      product: 'PRODUCT NAME 16C',
      revision: 'r1',
    })
  })

  it('refuses INQUIRY data shorter than 36 bytes', () => {
    expect(() => decodeStandardInquiry(Buffer.alloc(35))).toThrow(/35 bytes, needs at least 36/)
  })

  it('encodes READ CAPACITY(10) data, capping the last LBA at 0xFFFFFFFF', () => {
    const b = Buffer.alloc(8)
    encodeReadCapacity10Data(2047, 512, b)
    expect(hex(b)).toBe('000007ff00000200')
    encodeReadCapacity10Data(2 ** 33 - 1, 4096, b)
    expect(hex(b)).toBe('ffffffff00001000')
    expect(decodeReadCapacity10Data(b)).toEqual({ lastLba: 0xffffffff, blockSize: 4096 })
  })

  it('round-trips READ CAPACITY(16) data at a non-zero offset', () => {
    const b = Buffer.alloc(40, 0xaa)
    encodeReadCapacity16Data({ lastLba: 2 ** 40 - 1, blockSize: 4096, lbprz: true }, b, 8)
    expect(hex(b.subarray(8, 24))).toBe('000000ffffffffff0000100000004000')
    expect(decodeReadCapacity16Data(b, 8)).toMatchObject({ lastLba: 2 ** 40 - 1, blockSize: 4096, lbpme: false, lbprz: true, lowestAlignedLba: 0 })
    expect(() => decodeReadCapacity16Data(Buffer.alloc(12))).toThrow(DecodeError)
  })

  it('encodes REPORT LUNS data with peripheral addressing below 256 and flat addressing above', () => {
    const b = Buffer.alloc(32)
    expect(encodeReportLunsData([0, 5, 300], b)).toBe(32)
    expect(hex(b)).toBe('0000001800000000' + '0000000000000000' + '0005000000000000' + '412c000000000000')
    expect(decodeReportLunsData(b)).toEqual([0, 5, 300])
  })

  it('round-trips REPORT LUNS data at an offset, up to LUN 16383', () => {
    const b = Buffer.alloc(4 + 8 + 3 * 8)
    encodeReportLunsData([255, 256, 16383], b, 4)
    expect(decodeReportLunsData(b, 4)).toEqual([255, 256, 16383])
  })

  it('decodes only the whole entries an allocation length let through', () => {
    const b = Buffer.alloc(8 + 3 * 8)
    encodeReportLunsData([1, 2, 3], b)
    expect(decodeReportLunsData(b.subarray(0, 8 + 8 + 5))).toEqual([1])
  })

  it('refuses REPORT LUNS data it cannot read, naming the reason', () => {
    expect(() => decodeReportLunsData(Buffer.alloc(4))).toThrow(/needs at least the 8-byte header/)
    expect(() => decodeReportLunsData(Buffer.from('00000007000000000000000000000000', 'hex'))).toThrow(/not a multiple of 8/)
    expect(() => decodeReportLunsData(Buffer.from('00000008000000008001000000000000', 'hex'))).toThrow(/address method 10b/)
    expect(() => decodeReportLunsData(Buffer.from('00000008000000000001000100000000', 'hex'))).toThrow(/multi-level/)
  })
})
