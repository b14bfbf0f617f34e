// Regressions from libiscsi's iscsi-test-cu (SCSI family, --dataloss) run
// against fcfs's iSCSI export: each test is named after the suite test that
// failed and checks the logical unit directly.
import { describe, expect, it } from 'vitest'
import { decodeStandardInquiry } from '../../src/scsi/data.js'
import { GET_LBA_STATUS, LBA_STATUS_DATA } from '../../src/scsi/capacity.js'
import { checkLayout } from '../../src/util/layout.js'
import { DEFECT_LAYOUTS } from '../../src/scsi/defects.js'
import { hex, makeLun, readyLu, run, sense } from './scsi-helpers.js'

const h16 = (n: number) => n.toString(16).padStart(16, '0')
const h2 = (n: number) => n.toString(16).padStart(2, '0')
const h8 = (n: number) => n.toString(16).padStart(8, '0')
const twelve = (op: number, b1: number, lba: number, n: number) => `${h2(op)}${h2(b1)}${h8(lba)}${h8(n)}0000`
const caw = (lba: number, n: number) => `8900${h16(lba)}000000${h2(n & 0xff)}0000`

describe('iscsi-test-cu regressions', () => {
  it('Inquiry.BlockLimits: the standard INQUIRY claims SBC-3 (version descriptor 04C0), as the 0x3C-long page 0xB0 implies', () => {
    const r = run(readyLu(), '120000006000', { dataIn: 96 })
    expect(r.status).toBe(0)
    expect(r.transferred).toBe(74)
    expect(r.data[4]).toBe(74 - 5) // ADDITIONAL LENGTH
    const descriptors = [...Array(8).keys()].map((i) => r.data.readUInt16BE(58 + 2 * i))
    expect(descriptors).toContain(0x04c0)
    expect(descriptors.slice(0, 4)).toEqual([0x00a0, 0x0460, 0x04c0, 0x0a40]) // SAM-5, SPC-4, SBC-3, FCP-4
    expect(decodeStandardInquiry(r.data)).toMatchObject({ vendor: 'FCFS', version: 6, additionalLength: 69 })
    // A 36-byte allocation still gets the first 36 bytes, and page 0xB0 keeps the SBC-3 length.
    expect(run(readyLu(), '120000002400', { dataIn: 36 }).transferred).toBe(36)
    expect(hex(run(readyLu(), '1201b000ff00', { dataIn: 255 }).data.subarray(0, 4))).toBe('00b0003c')
  })

  it.each([512, 4096] as const)('Inquiry.BlockLimits: MAXIMUM UNMAP LBA COUNT is at most 2^20 blocks (%d-byte blocks)', (bs) => {
    const d = run(readyLu(makeLun({ blockSize: bs })), '1201b000ff00', { dataIn: 255 }).data
    const maxUnmap = d.readUInt32BE(20)
    expect(maxUnmap).toBeGreaterThan(0)
    expect(maxUnmap).toBeLessThanOrEqual(1024 * 1024)
    expect(d.readUInt32BE(24)).toBeLessThanOrEqual(1024 * 1024) // descriptors
  })

  it('CompareAndWrite.Simple/Miscompare: 256 blocks (NUMBER OF LOGICAL BLOCKS wraps to 0) with 512 blocks of Data-Out is INVALID FIELD IN CDB', () => {
    const lu = readyLu()
    const s = sense(run(lu, caw(0, 256), { dataOut: Buffer.alloc(2 * 256 * 512, 0x41) }))
    expect(s).toMatchObject({ key: 5, asc: 0x24, ascq: 0 })
    expect(s.sks).toEqual({ cd: true, field: 13 })
    // Nothing was written.
    expect(run(lu, '28000000000000000100', { dataIn: 512 }).data.equals(Buffer.alloc(512))).toBe(true)
    // The same at the end of the LUN, and any Data-Out longer than 2 × NUMBER OF LOGICAL BLOCKS.
    expect(sense(run(lu, caw(2048 - 256, 256), { dataOut: Buffer.alloc(2 * 256 * 512) }))).toMatchObject({ key: 5, asc: 0x24 })
    expect(sense(run(lu, caw(0, 2), { dataOut: Buffer.alloc(3 * 2 * 512) }))).toMatchObject({ key: 5, asc: 0x24 })
    // 0 blocks with no Data-Out stays GOOD (SBC-4: not an error), 255 blocks (the advertised maximum) work.
    expect(run(lu, caw(0, 0)).status).toBe(0)
    expect(run(lu, caw(0, 255), { dataOut: Buffer.concat([Buffer.alloc(255 * 512), Buffer.alloc(255 * 512, 0x42)]) }).status).toBe(0)
  })

  it('Verify12.* / WriteVerify12.*: VERIFY(12) and WRITE AND VERIFY(12) exist and behave as their (10)/(16) forms', () => {
    const lu = readyLu()
    const data = Buffer.alloc(3 * 512, 0x5a)
    // WRITE AND VERIFY(12), BYTCHK 1: written, read back, compared.
    expect(run(lu, twelve(0xae, 0x02, 100, 3), { dataOut: data })).toMatchObject({ status: 0, transferred: data.length })
    expect(run(lu, '28000000006400000300', { dataIn: data.length }).data.equals(data)).toBe(true)
    // VERIFY(12): medium check, compare, and MISCOMPARE with the offset.
    expect(run(lu, twelve(0xaf, 0x00, 100, 3)).status).toBe(0)
    expect(run(lu, twelve(0xaf, 0x02, 100, 3), { dataOut: data }).status).toBe(0)
    const other = Buffer.from(data)
    other[600] = 0
    expect(sense(run(lu, twelve(0xaf, 0x02, 100, 3), { dataOut: other }))).toMatchObject({ key: 0xe, asc: 0x1d, info: 600 })
    // Past the end, and a reserved BYTCHK.
    expect(sense(run(lu, twelve(0xaf, 0x00, 2047, 2)))).toMatchObject({ key: 5, asc: 0x21 })
    expect(sense(run(lu, twelve(0xaf, 0x04, 0, 1), { dataOut: Buffer.alloc(512) }))).toMatchObject({ key: 5, asc: 0x24 })
  })

  it('OrWrite.*: ORWRITE(16) ORs the data-out into the blocks; 0 blocks, past the end, ORPROTECT and write protection', () => {
    const orw = (b1: number, lba: number, n: number) => `8b${h2(b1)}${h16(lba)}${h8(n)}0000`
    const lu = readyLu()
    const base = Buffer.alloc(1024, 0x0f)
    expect(run(lu, '2a000000000a00000200', { dataOut: base }).status).toBe(0)
    expect(run(lu, orw(0x08, 10, 2), { dataOut: Buffer.alloc(1024, 0xa0) })).toMatchObject({ status: 0, transferred: 1024 })
    expect(run(lu, '28000000000a00000200', { dataIn: 1024 }).data.equals(Buffer.alloc(1024, 0xaf))).toBe(true)
    expect(run(lu, orw(0, 0, 0)).status).toBe(0)
    expect(sense(run(lu, orw(0, 2047, 2), { dataOut: Buffer.alloc(1024) }))).toMatchObject({ key: 5, asc: 0x21 })
    expect(sense(run(lu, orw(0x20, 0, 1), { dataOut: Buffer.alloc(512) }))).toMatchObject({ key: 5, asc: 0x24, sks: { cd: true, field: 1 } })
    expect(sense(run(readyLu(makeLun({ writeProtect: true })), orw(0, 0, 1), { dataOut: Buffer.alloc(512) }))).toMatchObject({ key: 7, asc: 0x27 })
  })

  it('GetLBAStatus.*: one descriptor from the asked LBA (a never-written RAM unit: deallocated to the end); LBA OUT OF RANGE past the end', () => {
    expect(() => checkLayout(GET_LBA_STATUS)).not.toThrow()
    expect(() => checkLayout(LBA_STATUS_DATA)).not.toThrow()
    const gls = (lba: number, alloc: number) => `9e12${h16(lba)}${h8(alloc)}0000`
    const lu = readyLu()
    const r = run(lu, gls(7, 24), { dataIn: 24 })
    expect(r.status).toBe(0)
    expect(hex(r.data)).toBe('00000014' + '00000000' + h16(7) + h8(2048 - 7) + '01000000')
    expect(run(lu, gls(2047, 8), { dataIn: 8 }).transferred).toBe(8)
    expect(sense(run(lu, gls(2048, 24), { dataIn: 24 }))).toMatchObject({ key: 5, asc: 0x21 })
  })

  it('ReadDefectData10/12.Simple: empty defect lists in the format asked, valid when asked for', () => {
    for (const l of DEFECT_LAYOUTS) expect(() => checkLayout(l)).not.toThrow()
    const lu = readyLu()
    expect(run(lu, '37000000000000002000', { dataIn: 32 })).toMatchObject({ status: 0, transferred: 4 })
    expect(hex(run(lu, '37001d00000000002000', { dataIn: 32 }).data)).toBe('001d0000') // REQ_PLIST, format 101b
    expect(hex(run(lu, 'b70c0000000000000020' + '0000', { dataIn: 32 }).data)).toBe('000c000000000000')
    expect(sense(run(lu, '37010000000000002000', { dataIn: 32 }))).toMatchObject({ key: 5, asc: 0x24 })
  })
})

