import { describe, expect, it } from 'vitest'
import { DecodeError } from '../../src/errors.js'
import {
  Asc,
  checkCondition,
  decodeSense,
  describeSense,
  encodeDescriptorSense,
  encodeFixedSense,
  SenseKey,
  Status,
  statusName,
} from '../../src/scsi/sense.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

describe('fixed-format sense', () => {
  it('encodes INVALID FIELD IN CDB with SKSV, C/D, BPV and a bit pointer in bytes 15..17', () => {
    const s = encodeFixedSense({ key: SenseKey.ILLEGAL_REQUEST, ...Asc.INVALID_FIELD_IN_CDB, sks: { cd: true, field: 1, bit: 7 } })
    expect(s.length).toBe(18)
    expect(hex(s)).toBe('700005000000000a000000002400' + '00' + 'cf0001')
  })

  it('sets VALID and INFORMATION when info is given', () => {
    const s = encodeFixedSense({ key: SenseKey.MEDIUM_ERROR, ...Asc.UNRECOVERED_READ_ERROR, info: 0x1234 })
    expect(s[0]).toBe(0xf0)
    expect(hex(s.subarray(3, 7))).toBe('00001234')
    expect(s[2]).toBe(0x03)
    expect(s[7]).toBe(10)
    expect([s[12], s[13]]).toEqual([0x11, 0x00])
    expect(hex(s.subarray(15, 18))).toBe('000000')
  })

  it('leaves VALID clear when the information does not fit 32 bits', () => {
    const s = encodeFixedSense({ key: SenseKey.MEDIUM_ERROR, ...Asc.WRITE_ERROR, info: 2 ** 33 })
    expect(s[0]).toBe(0x70)
    expect(decodeSense(s).info).toBeUndefined()
  })

  it('round-trips through decodeSense, also at a non-zero offset', () => {
    const s = encodeFixedSense({ key: SenseKey.ILLEGAL_REQUEST, ...Asc.INVALID_FIELD_IN_CDB, info: 7, sks: { cd: false, field: 300 } })
    const at = Buffer.concat([Buffer.alloc(5, 0xaa), s])
    for (const [buf, off] of [[s, 0], [at, 5]] as const) {
      expect(decodeSense(buf, off)).toEqual({ format: 'fixed', current: true, key: 5, asc: 0x24, ascq: 0, info: 7, sks: { cd: false, field: 300 } })
    }
  })
})

describe('descriptor-format sense', () => {
  it('encodes the header, an information descriptor and a sense-key-specific descriptor', () => {
    const s = encodeDescriptorSense({ key: SenseKey.ILLEGAL_REQUEST, ...Asc.INVALID_FIELD_IN_CDB, info: 0x1234, sks: { cd: true, field: 1, bit: 7 } })
    expect(hex(s)).toBe('7205240000000014' + '000a800000000000' + '00001234' + '02060000cf000100')
  })

  it('is 8 bytes when there is nothing but key and code', () => {
    expect(hex(encodeDescriptorSense({ key: SenseKey.UNIT_ATTENTION, ...Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET }))).toBe('7206290000000000')
  })

  it('round-trips a 64-bit information field', () => {
    const s = encodeDescriptorSense({ key: SenseKey.MEDIUM_ERROR, ...Asc.UNRECOVERED_READ_ERROR, info: 2 ** 40 + 3 })
    expect(decodeSense(s)).toEqual({ format: 'descriptor', current: true, key: 3, asc: 0x11, ascq: 0, info: 2 ** 40 + 3 })
  })
})

describe('decodeSense on bytes it cannot read', () => {
  it.each([
    ['empty', '', /empty/],
    ['an unknown response code', '7f00050000000000000000002400', /response code 0x7f/],
    ['a truncated fixed sense', '70000500000000', /needs at least 14/],
    ['a truncated descriptor header', '720524', /needs at least 8/],
    ['a descriptor running past the end', '720524000000000400' + '0a8000', /runs past/],
  ])('throws DecodeError for %s', (_what, h, re) => {
    let err: unknown
    try {
      decodeSense(Buffer.from(h, 'hex'))
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(DecodeError)
    expect((err as Error).message).toMatch(re)
  })

  it('reads deferred errors (0x71, 0x73) as not current', () => {
    const f = encodeFixedSense({ key: 3, asc: 0x0c, ascq: 0 })
    f[0] = 0x71
    expect(decodeSense(f).current).toBe(false)
    const d = encodeDescriptorSense({ key: 3, asc: 0x0c, ascq: 0 })
    d[0] = 0x73
    expect(decodeSense(d)).toMatchObject({ format: 'descriptor', current: false })
  })
})

describe('names', () => {
  it.each([
    [5, 0x24, 0, 'ILLEGAL REQUEST: INVALID FIELD IN CDB'],
    [6, 0x29, 0, 'UNIT ATTENTION: POWER ON, RESET, OR BUS DEVICE RESET OCCURRED'],
    [3, 0x11, 0, 'MEDIUM ERROR: UNRECOVERED READ ERROR'],
    [7, 0x27, 0, 'DATA PROTECT: WRITE PROTECTED'],
    [6, 0x2a, 9, 'UNIT ATTENTION: CAPACITY DATA HAS CHANGED'],
    [6, 0x3f, 0x0e, 'UNIT ATTENTION: REPORTED LUNS DATA HAS CHANGED'],
    [2, 0x04, 0x1c, 'NOT READY: LOGICAL UNIT NOT READY (ASCQ 0x1c)'],
    [2, 0x04, 0x1b, 'NOT READY: LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS'],
    [4, 0x99, 0x42, 'HARDWARE ERROR: ASC 0x99 ASCQ 0x42'],
  ])('describes key %d, ASC %d, ASCQ %d as %j', (k, a, q, s) => {
    expect(describeSense(k, a, q)).toBe(s)
  })

  it('names every status byte fcfs can answer with', () => {
    expect([0x00, 0x02, 0x08, 0x18, 0x28].map(statusName)).toEqual(['GOOD', 'CHECK CONDITION', 'BUSY', 'RESERVATION CONFLICT', 'TASK SET FULL'])
    expect(statusName(0x77)).toBe('status 0x77')
  })

  it('checkCondition builds a CHECK CONDITION outcome with fixed sense', () => {
    const o = checkCondition(SenseKey.ILLEGAL_REQUEST, 0x21, 0x00, { wanted: 512 })
    expect(o.status).toBe(Status.CHECK_CONDITION)
    expect(o.transferred).toBe(0)
    expect(o.wanted).toBe(512)
    expect(decodeSense(o.sense!)).toMatchObject({ key: 5, asc: 0x21, ascq: 0 })
  })
})
