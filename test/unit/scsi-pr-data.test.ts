import { describe, expect, it } from 'vitest'
import { DecodeError } from '../../src/errors.js'
import {
  encodePersistentReserveIn,
  encodePersistentReserveOut,
  encodeRelease6,
  encodeReserve6,
  PERSISTENT_RESERVE_IN,
  PERSISTENT_RESERVE_OUT,
  RESERVE_RELEASE_6,
} from '../../src/scsi/cdb.js'
import { checkLayout } from '../../src/util/layout.js'
import { canonicalInitiator, transportIdOf } from '../../src/scsi/pr.js'
import {
  decodePrOutParameters,
  decodeReadFullStatus,
  decodeReadKeys,
  decodeReadReservation,
  decodeRegisterAndMoveHeader,
  decodeReportCapabilities,
  decodeTransportId,
  encodePrOutParameters,
  encodeReadFullStatus,
  encodeReadKeys,
  encodeReadReservation,
  encodeRegisterAndMoveParameters,
  encodeReportCapabilities,
  encodeTransportId,
  PR_DATA_LAYOUTS,
  PrIn,
  PrOut,
  PrType,
  PrTypeMask,
  readFullStatusSize,
  readKeysSize,
  registerAndMoveSize,
  transportIdSize,
  type ReadFullStatusData,
  type TransportId,
} from '../../src/scsi/pr-data.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const h = (s: string) => s.replace(/\s+/g, '')

const FC: TransportId = { protocol: 'fc', wwpn: '21000024ff00aa01' }
const FC_BYTES = h('00 00000000000000 21000024ff00aa01 0000000000000000')
const ISCSI: TransportId = { protocol: 'iscsi', name: 'iqn.a' }
// "iqn.a" + NUL is 6 bytes, padded to the minimum ADDITIONAL LENGTH of 20.
const ISCSI_BYTES = h('05 00 0014 69716e2e61' + '00'.repeat(15))
const ISCSI_PORT: TransportId = { protocol: 'iscsi', name: 'iqn.2026-11.io.x:h', isid: '23d000000001' }
// 18 + ",i,0x" (5) + 12 + NUL = 36 bytes: a multiple of 4 already. Format 01b.
const ISCSI_PORT_BYTES = h('45 00 0024') + Buffer.from('iqn.2026-11.io.x:h,i,0x23d000000001\0').toString('hex')

describe('persistent reservation layouts', () => {
  it.each([...PR_DATA_LAYOUTS, PERSISTENT_RESERVE_IN, PERSISTENT_RESERVE_OUT, RESERVE_RELEASE_6].map((l) => [l.name, l] as const))(
    '%s: fields fit, do not overlap and cover every byte',
    (_n, l) => {
      expect(() => checkLayout(l)).not.toThrow()
    },
  )
})

describe('CDB encoders', () => {
  it('writes PERSISTENT RESERVE IN with its service action and allocation length', () => {
    const c = Buffer.alloc(16, 0xee)
    expect(encodePersistentReserveIn(PrIn.READ_FULL_STATUS, 0x1234, c)).toBe(10)
    expect(hex(c.subarray(0, 10))).toBe('5e030000000000123400')
  })

  it('writes PERSISTENT RESERVE OUT with service action, LU scope, type and parameter list length', () => {
    const c = Buffer.alloc(16, 0xee)
    expect(encodePersistentReserveOut(PrOut.RESERVE, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 24, c)).toBe(10)
    expect(hex(c.subarray(0, 10))).toBe('5f010500000000001800')
    encodePersistentReserveOut(PrOut.REGISTER_AND_MOVE, 0, 0x1_0000, c)
    expect(hex(c.subarray(0, 10))).toBe('5f070000000001000000')
  })

  it('writes RESERVE(6) and RELEASE(6) with every obsolete field zero', () => {
    const c = Buffer.alloc(16, 0xee)
    expect(encodeReserve6(c)).toBe(6)
    expect(hex(c.subarray(0, 6))).toBe('160000000000')
    expect(encodeRelease6(c)).toBe(6)
    expect(hex(c.subarray(0, 6))).toBe('170000000000')
  })

  it('refuses a service action or type no CDB can carry', () => {
    expect(() => encodePersistentReserveOut(0x20, 0, 24, Buffer.alloc(16))).toThrow(/service action/)
    expect(() => encodePersistentReserveOut(0, 16, 24, Buffer.alloc(16))).toThrow(/type/)
  })
})

describe('TransportIDs', () => {
  it.each([
    ['an FC N_Port name (24 bytes, protocol 0)', FC, FC_BYTES],
    ['an iSCSI name, format 00b, padded to ADDITIONAL LENGTH 20', ISCSI, ISCSI_BYTES],
    ['an iSCSI initiator port, format 01b: name, ",i,0x", ISID, NUL, padding', ISCSI_PORT, ISCSI_PORT_BYTES],
  ] as const)('encodes %s', (_n, t, bytes) => {
    const b = Buffer.alloc(transportIdSize(t))
    expect(encodeTransportId(t, b)).toBe(bytes.length / 2)
    expect(hex(b)).toBe(bytes)
  })

  it.each([FC, ISCSI, ISCSI_PORT])('round-trips %j at a non-zero offset', (t) => {
    const b = Buffer.alloc(transportIdSize(t) + 5, 0xff)
    encodeTransportId(t, b, 5)
    const { id, size } = decodeTransportId(b, 5)
    expect(id).toEqual(t)
    expect(size).toBe(transportIdSize(t))
    const again = Buffer.alloc(size)
    encodeTransportId(id, again)
    expect(again.equals(b.subarray(5))).toBe(true)
  })

  it('names the reason it cannot decode', () => {
    expect(() => decodeTransportId(Buffer.from('01' + '00'.repeat(23), 'hex'))).toThrow(/protocol identifier 0x1 is not FC/)
    expect(() => decodeTransportId(Buffer.from(FC_BYTES.slice(0, 40), 'hex'))).toThrow(DecodeError)
    expect(() => decodeTransportId(Buffer.from('0500001469716e2e61' + '61'.repeat(15), 'hex'))).toThrow(/not NUL-terminated/)
    expect(() => decodeTransportId(Buffer.from('45000008' + Buffer.from('iqn.a\0\0\0').toString('hex'), 'hex'))).toThrow(/separator/)
  })
})

describe('initiator ids', () => {
  it.each([
    ['21000024ff00aa01', 'fc:21000024ff00aa01', FC],
    ['21:00:00:24:FF:00:AA:01', 'fc:21000024ff00aa01', FC],
    ['fc:21000024FF00AA01', 'fc:21000024ff00aa01', FC],
    ['iscsi:iqn.2026-11.io.x:h,i,0x23D000000001', 'iscsi:iqn.2026-11.io.x:h,i,0x23d000000001', ISCSI_PORT],
    ['iscsi:iqn.a', 'iscsi:iqn.a', ISCSI],
    ['host-a', 'iscsi:host-a', { protocol: 'iscsi', name: 'host-a' }],
  ] as const)('%s is %s', (id, canonical, tid) => {
    expect(canonicalInitiator(id)).toBe(canonical)
    expect(transportIdOf(id)).toEqual(tid)
  })
})

describe('PERSISTENT RESERVE IN parameter data', () => {
  it('READ KEYS: PRGENERATION, ADDITIONAL LENGTH, then each 64-bit key', () => {
    const d = { generation: 2, keys: [0x1122334455667788n, 0xabn] }
    const b = Buffer.alloc(readKeysSize(d))
    expect(encodeReadKeys(d, b)).toBe(24)
    expect(hex(b)).toBe(h('00000002 00000010 1122334455667788 00000000000000ab'))
    expect(decodeReadKeys(b)).toEqual({ ...d, additionalLength: 16 })
  })

  it('READ KEYS cut by the allocation length keeps ADDITIONAL LENGTH and only whole keys', () => {
    const b = Buffer.from(h('00000002 00000010 1122334455667788 0000'), 'hex')
    expect(decodeReadKeys(b)).toEqual({ generation: 2, additionalLength: 16, keys: [0x1122334455667788n] })
  })

  it('READ RESERVATION: a 16-byte descriptor with SCOPE | TYPE at byte 21 when reserved, none otherwise', () => {
    const d = { generation: 3, reservation: { key: 0xabn, scope: 0, type: PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY } }
    const b = Buffer.alloc(24)
    expect(encodeReadReservation(d, b)).toBe(24)
    expect(hex(b)).toBe(h('00000003 00000010 00000000000000ab 00000000 00 05 0000'))
    expect(decodeReadReservation(b)).toEqual(d)
    const none = Buffer.alloc(8)
    expect(encodeReadReservation({ generation: 3, reservation: null }, none)).toBe(8)
    expect(hex(none)).toBe('0000000300000000')
    expect(decodeReadReservation(none)).toEqual({ generation: 3, reservation: null })
  })

  it('REPORT CAPABILITIES: LENGTH 8, CRH ATP_C PTPL_C, TMV with ALLOW COMMANDS and PTPL_A, the type mask', () => {
    const d = {
      crh: true,
      sipC: false,
      atpC: true,
      ptplC: true,
      allowCommands: 3,
      ptplA: true,
      typeMask: PrTypeMask.WR_EX | PrTypeMask.EX_AC | PrTypeMask.WR_EX_RO | PrTypeMask.EX_AC_RO | PrTypeMask.WR_EX_AR | PrTypeMask.EX_AC_AR,
    }
    const b = Buffer.alloc(8, 0xff)
    expect(encodeReportCapabilities(d, b)).toBe(8)
    expect(hex(b)).toBe(h('0008 15 b1 ea01 0000'))
    expect(decodeReportCapabilities(b)).toEqual(d)
  })

  const FULL: ReadFullStatusData = {
    generation: 4,
    descriptors: [
      { key: 0xabn, allTgPt: false, holder: true, scope: 0, type: PrType.WRITE_EXCLUSIVE, relativePortId: 1, transportId: FC },
      { key: 0xcdn, allTgPt: true, holder: false, scope: 0, type: 0, relativePortId: 0, transportId: ISCSI },
    ],
  }
  const FULL_BYTES = h(
    '00000004 00000060' +
      '00000000000000ab 00000000 01 01 00000000 0001 00000018' +
      FC_BYTES +
      '00000000000000cd 00000000 02 00 00000000 0000 00000018' +
      ISCSI_BYTES,
  )

  it('READ FULL STATUS: per registration key, ALL_TG_PT / R_HOLDER, SCOPE | TYPE, RELATIVE TARGET PORT IDENTIFIER and the TransportID', () => {
    const b = Buffer.alloc(readFullStatusSize(FULL))
    expect(encodeReadFullStatus(FULL, b)).toBe(104)
    expect(hex(b)).toBe(FULL_BYTES)
    expect(decodeReadFullStatus(b)).toEqual({ ...FULL, additionalLength: 96 })
  })

  it('READ FULL STATUS round-trips at a non-zero offset and stops at a descriptor the allocation length cut', () => {
    const b = Buffer.alloc(readFullStatusSize(FULL) + 7)
    encodeReadFullStatus(FULL, b, 7)
    expect(decodeReadFullStatus(b, 7)).toEqual({ ...FULL, additionalLength: 96 })
    const cut = Buffer.from(FULL_BYTES, 'hex').subarray(0, 60)
    expect(decodeReadFullStatus(cut).descriptors).toHaveLength(1)
  })

  it('refuses data shorter than its header', () => {
    expect(() => decodeReadKeys(Buffer.alloc(7))).toThrow(/READ KEYS data: needs 8 bytes/)
    expect(() => decodeReadReservation(Buffer.from('0000000000000010', 'hex'))).toThrow(DecodeError)
    expect(() => decodeReportCapabilities(Buffer.alloc(6))).toThrow(DecodeError)
  })
})

describe('PERSISTENT RESERVE OUT parameter lists', () => {
  it('the basic list: RESERVATION KEY, SERVICE ACTION RESERVATION KEY, SPEC_I_PT / ALL_TG_PT / APTPL at byte 20', () => {
    const p = { key: 0n, saKey: 0x1122334455667788n, specIPt: false, allTgPt: true, aptpl: true }
    const b = Buffer.alloc(24, 0xff)
    expect(encodePrOutParameters(p, b)).toBe(24)
    expect(hex(b)).toBe(h('0000000000000000 1122334455667788 00000000 05 00 0000'))
    expect(decodePrOutParameters(b)).toEqual(p)
    const at3 = Buffer.alloc(27)
    encodePrOutParameters(p, at3, 3)
    expect(decodePrOutParameters(at3, 3)).toEqual(p)
  })

  it('REGISTER AND MOVE: UNREG / APTPL at byte 17, RELATIVE TARGET PORT IDENTIFIER, TransportID length and TransportID', () => {
    const p = { key: 1n, saKey: 2n, unreg: true, aptpl: false, relativePortId: 2, transportId: FC }
    const b = Buffer.alloc(registerAndMoveSize(p))
    expect(encodeRegisterAndMoveParameters(p, b)).toBe(48)
    expect(hex(b)).toBe(h('0000000000000001 0000000000000002 00 02 0002 00000018') + FC_BYTES)
    expect(decodeRegisterAndMoveHeader(b)).toEqual({ key: 1n, saKey: 2n, unreg: true, aptpl: false, relativePortId: 2, transportIdLength: 24 })
    expect(decodeTransportId(b, 24).id).toEqual(FC)
  })

  it('refuses a list shorter than 24 bytes', () => {
    expect(() => decodePrOutParameters(Buffer.alloc(23))).toThrow(/needs 24 bytes/)
    expect(() => decodeRegisterAndMoveHeader(Buffer.alloc(20))).toThrow(DecodeError)
  })
})
