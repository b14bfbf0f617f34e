import { describe, expect, it } from 'vitest'
import {
  COMMAND_T3,
  CONTINUATION_T1,
  DSEG,
  DSEG_SIZE,
  ENTRY_SIZE,
  LAYOUTS,
  RESPONSE_PROCESSED,
  SIGNATURE_OFFSET,
  commandDsegOffset,
  continuationDsegOffset,
  newCommandT3Fields,
  newStatusT0Fields,
  readCommandCdb,
  readCommandHandleLE,
  readCommandT3,
  readDsegAddressLE,
  readDsegLengthLE,
  readEntryCount,
  readEntryType,
  readStatusContSense,
  readStatusT0,
  readStatusT0Sense,
  stampProcessed,
  writeCommandT3,
  writeContinuationT1,
  writeDsegLE,
  writeStatusCont,
  writeStatusT0,
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
} from '../../src/hba/iocb.js'
import { ICB, ICB_SIZE, ID_ENTRY, ID_ENTRY_SIZE, PORT_DB, PORT_DB_SIZE, decodeIcb, encodeIcb } from '../../src/hba/mailbox.js'
import { DecodeError } from '../../src/errors.js'
import { checkLayout, type Layout } from '../../src/util/layout.js'

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
    for (const layout of Object.values(LAYOUTS)) {
      expect(layout.size, layout.name).toBe(ENTRY_SIZE)
      expect(() => checkLayout(layout), layout.name).not.toThrow()
    }
    expect([ICB.size, ID_ENTRY.size, PORT_DB.size]).toEqual([ICB_SIZE, ID_ENTRY_SIZE, PORT_DB_SIZE])
    for (const layout of [ICB, ID_ENTRY, PORT_DB]) expect(() => checkLayout(layout), layout.name).not.toThrow()
  })

  it('places the Command Type 3 fields at the qla2xxx offsets', () => {
    expect(COMMAND_T3.fields.handle.offset).toBe(4)
    expect(COMMAND_T3.fields.target.offset).toBe(8)
    expect(COMMAND_T3.fields.lun.offset).toBe(10)
    expect(COMMAND_T3.fields.controlFlags.offset).toBe(12)
    expect(COMMAND_T3.fields.timeout.offset).toBe(16)
    expect(COMMAND_T3.fields.dsegCount.offset).toBe(18)
    expect(COMMAND_T3.fields.cdb.offset).toBe(20)
    expect(COMMAND_T3.fields.byteCount.offset).toBe(36)
    expect(COMMAND_T3.fields.dseg0.offset).toBe(40)
    expect(CONTINUATION_T1.fields.dseg0.offset).toBe(4)
    expect(STATUS_T0.fields.residual.offset).toBe(20)
    expect(STATUS_T0.fields.sense.offset).toBe(32)
    expect(STATUS_CONT.fields.sense.length).toBe(60)
    expect(MARKER.fields.modifier.offset).toBe(10)
  })
})

describe('layouts tile their entries', () => {
  it('every layout in LAYOUTS covers each of its 64 bytes exactly once, and a data segment its 12', () => {
    expect(Object.keys(LAYOUTS).sort()).toEqual(['COMMAND_T3', 'CONTINUATION_T1', 'MARKER', 'STATUS_CONT', 'STATUS_T0'])
    // checkLayout also finds a byte no field covers: none of these layouts is sparse.
    for (const layout of [...Object.values(LAYOUTS), DSEG] as Layout[]) expect(layout.sparse, layout.name).toBeUndefined()
    expect(() => checkLayout(DSEG)).not.toThrow()
    expect(DSEG.size).toBe(DSEG_SIZE)
    expect(COMMAND_T3.fields.dseg1.offset - COMMAND_T3.fields.dseg0.offset).toBe(DSEG_SIZE)
    expect(CONTINUATION_T1.fields.dseg4.offset + DSEG_SIZE).toBe(ENTRY_SIZE)
  })
})

/** The golden Command Type 3 of `sample` (qla2xxx cmd_type_3 offsets), as hex. */
const SAMPLE_HEX =
  '19010000' + // type 0x19, count 1, sys_define 0, entry_status 0
  '03020100' + // handle @4 LE
  '8100' + '0200' + // target @8 0x81, lun @10 2
  '2800' + '0000' + // control flags @12: read | simple tag; reserved @14
  '1e00' + '0100' + // timeout @16 30 s, dseg_count @18 one segment
  '28000000001000000800000000000000' + // cdb @20: READ(10) lba 0x10, 8 blocks
  '00100000' + // byte count @36 4096
  '0002000001000000' + '00100000' + // dseg0 @40: address 0x1_0000_0200, 4096 bytes
  '000000000000000000000000' // dseg1 @52 unused

describe('allocation-free accessors (what the driver and the firmware run)', () => {
  it('writeCommandT3 and writeDsegLE at a non-zero offset give the golden bytes and touch nothing outside the entry', () => {
    const buf = Buffer.alloc(3 * 64, 0xee)
    const f = newCommandT3Fields()
    Object.assign(f, { entryCount: 1, entryStatus: 0, handle: 0x00010203, target: 0x81, lun: 2, controlFlags: 0x28, timeout: 30, dsegCount: 1, byteCount: 4096 })
    writeCommandT3(buf, 64, f, sample.cdb)
    writeDsegLE(buf, commandDsegOffset(64, 0), 0x1_0000_0200, 4096)
    expect(buf.subarray(64, 128).toString('hex')).toBe(SAMPLE_HEX)
    expect(buf.subarray(0, 64).every((b) => b === 0xee)).toBe(true)
    expect(buf.subarray(128).every((b) => b === 0xee)).toBe(true)
  })

  it('writeCommandT3 keeps only the first 16 bytes of a longer CDB', () => {
    const buf = Buffer.alloc(64)
    writeCommandT3(buf, 0, newCommandT3Fields(), Uint8Array.from({ length: 20 }, (_, i) => i + 1))
    expect(buf.subarray(20, 36)).toEqual(Buffer.from(Array.from({ length: 16 }, (_, i) => i + 1)))
    expect(buf.readUInt32LE(36)).toBe(0) // byte_count not overwritten by CDB bytes 17..20
  })

  it('readCommandT3 fills one reused object from golden bytes at a non-zero offset, CDB and segments alongside', () => {
    const buf = Buffer.concat([Buffer.alloc(128, 0xee), Buffer.from(SAMPLE_HEX, 'hex')])
    const into = newCommandT3Fields()
    expect(readCommandT3(buf, 128, into)).toBe(into)
    expect(into).toEqual({ entryCount: 1, entryStatus: 0, handle: 0x00010203, target: 0x81, lun: 2, controlFlags: 0x28, timeout: 30, dsegCount: 1, byteCount: 4096 })
    expect([readEntryType(buf, 128), readEntryCount(buf, 128), readCommandHandleLE(buf, 128)]).toEqual([0x19, 1, 0x00010203])
    const cdb = Buffer.alloc(18, 0xaa)
    readCommandCdb(buf, 128, cdb, 1)
    expect(cdb.toString('hex')).toBe('aa' + '28000000001000000800000000000000' + 'aa')
    const at = commandDsegOffset(128, 0)
    expect([readDsegAddressLE(buf, at), readDsegLengthLE(buf, at)]).toEqual([0x1_0000_0200, 4096])
    // The same object serves the next entry: every field is overwritten.
    const other = Buffer.alloc(64)
    writeCommandT3(other, 0, { entryCount: 3, entryStatus: 8, handle: 0xfffffffe, target: 7, lun: 0x4001, controlFlags: 0x48, timeout: 0, dsegCount: 12, byteCount: 0x12345 }, Buffer.alloc(6))
    expect(readCommandT3(other, 0, into)).toEqual({ entryCount: 3, entryStatus: 8, handle: 0xfffffffe, target: 7, lun: 0x4001, controlFlags: 0x48, timeout: 0, dsegCount: 12, byteCount: 0x12345 })
  })

  it('writeContinuationT1 and five segments at continuationDsegOffset give the Continuation Type 1 bytes', () => {
    const buf = Buffer.alloc(128, 0xee)
    writeContinuationT1(buf, 64)
    for (let i = 0; i < 5; i++) writeDsegLE(buf, continuationDsegOffset(64, i), (i + 1) * 0x1_0000_0000 + 0x10 * (i + 1), 0x200 * (i + 1))
    expect(buf.subarray(64, 128).toString('hex')).toBe(
      '0a010000' + // type 0x0a, count 1
        '1000000001000000' + '00020000' + // dseg0 @4
        '2000000002000000' + '00040000' + // dseg1 @16
        '3000000003000000' + '00060000' + // dseg2 @28
        '4000000004000000' + '00080000' + // dseg3 @40
        '5000000005000000' + '000a0000', // dseg4 @52
    )
    expect(buf[63]).toBe(0xee)
  })

  it('writeStatusT0 at a non-zero offset gives the golden Status Type 0 bytes; readStatusT0 reads them back into a reused object', () => {
    const sense = Buffer.from('700003000000000a00000000110000000000', 'hex')
    const buf = Buffer.alloc(3 * 64, 0xee)
    const f = newStatusT0Fields()
    Object.assign(f, { entryCount: 1, entryStatus: 0, handle: 0x10007, scsiStatus: 0x0a02, compStatus: 0x15, residual: 512, senseLength: 18 })
    writeStatusT0(buf, 64, f, sense)
    expect(buf.subarray(64, 128).toString('hex')).toBe(
      '03010000' + // type 0x03, count 1
        '07000100' + // handle @4
        '020a' + '1500' + // scsi_status @8 (CHECK CONDITION | sense valid | resid under), comp_status @10 data underrun
        '0000' + '0000' + '0000' + // state flags @12, status flags @14, rsp_info_len @16
        '1200' + // sense_len @18 = 18
        '00020000' + // residual @20 = 512
        '0000000000000000' + // rsp_info @24
        sense.toString('hex') + '00'.repeat(14), // sense @32
    )
    expect(buf[63]).toBe(0xee)
    expect(buf[128]).toBe(0xee)
    const into = newStatusT0Fields()
    into.stateFlags = 99 // stale values from an earlier entry are overwritten
    expect(readStatusT0(buf, 64, into)).toBe(into)
    expect(into).toEqual({ entryCount: 1, entryStatus: 0, handle: 0x10007, scsiStatus: 0x0a02, compStatus: 0x15, stateFlags: 0, statusFlags: 0, residual: 512, senseLength: 18 })
    const got = Buffer.alloc(18)
    expect(readStatusT0Sense(buf, 64, got)).toBe(18)
    expect(got).toEqual(sense)
  })

  it('sense longer than 32 bytes continues in Status Continuation entries and reads back whole', () => {
    const sense = Buffer.from(Array.from({ length: 100 }, (_, i) => i + 1))
    const buf = Buffer.alloc(4 * 64, 0xee)
    const f = newStatusT0Fields()
    Object.assign(f, { entryCount: 3, handle: 5, scsiStatus: 0x0202, senseLength: 100 })
    writeStatusT0(buf, 64, f, sense)
    writeStatusCont(buf, 128, sense, 32)
    writeStatusCont(buf, 192, sense, 92)
    expect(buf.subarray(64 + 32, 128)).toEqual(sense.subarray(0, 32))
    expect(buf.subarray(128, 132).toString('hex')).toBe('10010000') // type 0x10, count 1
    expect(buf.subarray(132, 192)).toEqual(sense.subarray(32, 92))
    expect(buf.subarray(196, 204)).toEqual(sense.subarray(92, 100))
    expect(buf.subarray(204, 256).every((b) => b === 0)).toBe(true)
    const back = Buffer.alloc(100)
    let got = readStatusT0Sense(buf, 64, back)
    got += readStatusContSense(buf, 128, back, got)
    got += readStatusContSense(buf, 192, back, got)
    expect(got).toBe(100)
    expect(back).toEqual(sense)
  })

  it('stampProcessed writes 0xdeaddead into the last u32 of the entry', () => {
    const buf = Buffer.alloc(128)
    stampProcessed(buf, 64)
    expect(SIGNATURE_OFFSET).toBe(60)
    expect(buf.subarray(124, 128).toString('hex')).toBe('addeadde')
    expect(buf.readUInt32LE(124)).toBe(RESPONSE_PROCESSED)
    expect(buf.subarray(0, 124).every((b) => b === 0)).toBe(true)
  })

  it('the entry accessors reject an offset without 64 bytes behind it, naming the entry', () => {
    expect(() => writeCommandT3(Buffer.alloc(100), 64, newCommandT3Fields(), new Uint8Array(6))).toThrow(/Command Type 3.*needs 64 bytes at offset 64/)
    expect(() => readStatusT0(Buffer.alloc(64), 1, newStatusT0Fields())).toThrow(DecodeError)
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
      firmwareOptions: 0x4104,
      retryCount: 8,
      loginTimeout: 4,
      maxFrameSize: 2048,
      executionThrottle: 4096,
      portName: '2100001b32000001',
      nodeName: '2000001b32000001',
      requestQLength: 2048,
      responseQLength: 512,
      requestQAddress: 0x1_0000_0000,
      responseQAddress: 0x1f_ffff_0000_0000,
    }
    const buf = Buffer.alloc(ICB_SIZE)
    encodeIcb(icb, buf, 0)
    expect(buf.subarray(12, 20).toString('hex')).toBe('2100001b32000001') // init_cb_t.port_name @12
    expect(decodeIcb(buf, 0)).toEqual(icb)
  })
})
