import { describe, expect, it } from 'vitest'
import {
  COMMAND_T3,
  CONTINUATION_T1,
  ENTRY_SIZE,
  LAYOUTS,
  MARKER,
  STATUS_CONT,
  STATUS_T0,
  decodeCommandT3,
  decodeContinuationT1,
  decodeMarker,
  decodeStatusT0,
  encodeCommandT3,
  encodeContinuationT1,
  encodeMarker,
  encodeStatusT0,
  entriesFor,
  statusEntriesFor,
  type CommandT3,
  type Field,
} from '../../src/hba/iocb.js'
import { ICB, ICB_SIZE, ID_ENTRY, ID_ENTRY_SIZE, PORT_DB, PORT_DB_SIZE, decodeIcb, encodeIcb } from '../../src/hba/mailbox.js'
import { DecodeError } from '../../src/errors.js'

function checkLayout(name: string, layout: Record<string, Field>, size: number): void {
  const taken = new Array<string | undefined>(size)
  for (const [field, f] of Object.entries(layout)) {
    expect(f.offset + f.size, `${name}.${field} ends inside the ${size}-byte entry`).toBeLessThanOrEqual(size)
    for (let b = f.offset; b < f.offset + f.size; b++) {
      expect(taken[b], `${name}.${field} overlaps ${taken[b]} at byte ${b}`).toBeUndefined()
      taken[b] = field
    }
  }
}

const sample: CommandT3 = {
  entryCount: 1,
  entryStatus: 0,
  handle: 0x00010203,
  target: 0x0081,
  lun: 2,
  controlFlags: 0x0028,
  timeout: 30,
  dsegCount: 1,
  cdb: Uint8Array.from([0x28, 0, 0, 0, 0, 0x10, 0, 0, 0x08, 0]),
  byteCount: 4096,
  segments: [{ address: 0x1_0000_0200, length: 4096 }],
}

describe('ring entry layouts', () => {
  it('every field of every ring entry fits in 64 bytes and no two fields overlap', () => {
    for (const [name, layout] of Object.entries(LAYOUTS)) checkLayout(name, layout, ENTRY_SIZE)
    checkLayout('ICB', ICB, ICB_SIZE)
    checkLayout('ID_ENTRY', ID_ENTRY, ID_ENTRY_SIZE)
    checkLayout('PORT_DB', PORT_DB, PORT_DB_SIZE)
  })

  it('places the Command Type 3 fields at the qla2xxx offsets', () => {
    expect(COMMAND_T3.handle.offset).toBe(4)
    expect(COMMAND_T3.target.offset).toBe(8)
    expect(COMMAND_T3.lun.offset).toBe(10)
    expect(COMMAND_T3.controlFlags.offset).toBe(12)
    expect(COMMAND_T3.timeout.offset).toBe(16)
    expect(COMMAND_T3.dsegCount.offset).toBe(18)
    expect(COMMAND_T3.cdb.offset).toBe(20)
    expect(COMMAND_T3.byteCount.offset).toBe(36)
    expect(COMMAND_T3.dseg0.offset).toBe(40)
    expect(CONTINUATION_T1.dseg0.offset).toBe(4)
    expect(STATUS_T0.residual.offset).toBe(20)
    expect(STATUS_T0.sense.offset).toBe(32)
    expect(STATUS_CONT.sense.size).toBe(60)
    expect(MARKER.modifier.offset).toBe(10)
  })
})

describe('Command Type 3', () => {
  it('encodes to the golden bytes', () => {
    const buf = Buffer.alloc(64)
    expect(encodeCommandT3(sample, buf, 0)).toBe(64)
    expect(buf.toString('hex')).toBe(
      '19010000' + // type 0x19, count 1, sys_define 0, entry_status 0
        '03020100' + // handle LE
        '8100' + '0200' + // target 0x81, lun 2
        '2800' + '0000' + // control flags: read | simple tag
        '1e00' + '0100' + // timeout 30 s, one segment
        '28000000001000000800000000000000' + // READ(10) lba 0x10, 8 blocks
        '00100000' + // byte count 4096
        '0002000001000000' + '00100000' + // segment 0: address 0x1_0000_0200, 4096 bytes
        '000000000000000000000000', // segment 1 unused
    )
  })

  it('round-trips through decode and encode again, also at a non-zero offset', () => {
    const buf = Buffer.alloc(192, 0xee)
    encodeCommandT3(sample, buf, 64)
    const d = decodeCommandT3(buf, 64)
    expect(d.handle).toBe(sample.handle)
    expect(d.target).toBe(0x81)
    expect(d.segments).toEqual(sample.segments)
    expect(Buffer.from(d.cdb).subarray(0, 10)).toEqual(Buffer.from(sample.cdb))
    const again = Buffer.alloc(64)
    encodeCommandT3(d, again, 0)
    expect(again).toEqual(buf.subarray(64, 128))
    expect(buf[0]).toBe(0xee) // bytes outside the entry untouched
    expect(buf[128]).toBe(0xee)
  })

  it('rejects a short buffer and a wrong entry type with a DecodeError that says why', () => {
    expect(() => decodeCommandT3(Buffer.alloc(63), 0)).toThrow(/needs 64 bytes at offset 0/)
    const buf = Buffer.alloc(64)
    buf[0] = 0x03
    expect(() => decodeCommandT3(buf, 0)).toThrow(DecodeError)
    expect(() => decodeCommandT3(buf, 0)).toThrow(/entry type 0x3 is not 0x19/)
  })
})

describe('continuations, status and markers', () => {
  it('a continuation carries five segments and round-trips', () => {
    const segs = [1, 2, 3, 4, 5].map((i) => ({ address: i * 0x1_0000_0000 + i, length: i * 512 }))
    const buf = Buffer.alloc(128)
    encodeContinuationT1(segs, buf, 64)
    expect(buf[64]).toBe(0x0a)
    expect(buf.readUInt32LE(64 + 4)).toBe(1) // low half of address 1
    expect(buf.readUInt32LE(64 + 8)).toBe(1) // high half
    expect(buf.readUInt32LE(64 + 12)).toBe(512)
    expect(decodeContinuationT1(buf, 64, 5)).toEqual(segs)
  })

  it('counts entries: two segments fit the command, then five per continuation', () => {
    expect([0, 1, 2, 3, 7, 8, 12, 13].map(entriesFor)).toEqual([1, 1, 1, 2, 2, 3, 3, 4])
    expect([0, 18, 32, 33, 92, 93].map(statusEntriesFor)).toEqual([1, 1, 1, 2, 2, 3])
  })

  it('a Status Type 0 with fixed sense encodes to the golden bytes and decodes back', () => {
    const sense = Buffer.from('700003000000000a00000000110000000000', 'hex')
    const buf = Buffer.alloc(64)
    encodeStatusT0(
      { entryCount: 1, entryStatus: 0, handle: 0x10007, scsiStatus: 0x0a02, compStatus: 0x15, stateFlags: 0, statusFlags: 0, residual: 512, sense },
      buf,
      0,
    )
    expect(buf.subarray(0, 24).toString('hex')).toBe('03010000' + '07000100' + '020a' + '1500' + '0000' + '0000' + '0000' + '1200' + '00020000')
    expect(buf.subarray(32, 32 + 18)).toEqual(sense)
    const d = decodeStatusT0(buf, 0)
    expect(d).toMatchObject({ handle: 0x10007, scsiStatus: 0x0a02, compStatus: 0x15, residual: 512, senseLength: 18 })
    expect(d.sense).toEqual(sense)
  })

  it('a marker round-trips', () => {
    const buf = Buffer.alloc(64)
    encodeMarker({ target: 5, lun: 3, modifier: 2 }, buf, 0)
    expect(buf[0]).toBe(0x04)
    expect(decodeMarker(buf, 0)).toEqual({ target: 5, lun: 3, modifier: 2 })
  })

  it('the init control block round-trips with 64-bit ring addresses', () => {
    const icb = {
      maxFrameSize: 2048,
      executionThrottle: 4096,
      portName: '2100001b32000001',
      nodeName: '2000001b32000001',
      requestQLength: 2048,
      responseQLength: 512,
      requestQAddress: 0x1_0000_0000,
      responseQAddress: 0x1f_ffff_0000_0000,
    }
    const buf = Buffer.alloc(64)
    encodeIcb(icb, buf, 0)
    expect(buf.subarray(8, 16).toString('hex')).toBe('2100001b32000001')
    expect(decodeIcb(buf, 0)).toEqual(icb)
  })
})
