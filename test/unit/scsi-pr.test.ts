// Persistent reservations and RESERVE(6)/RELEASE(6) in the device model: the
// bytes of every PR IN service action, what each PR OUT does (and refuses),
// the unit attentions it leaves, PRgeneration, and the conflict check walked
// over the whole opcode table against an oracle written from SPC-4's and
// SBC-3's "commands allowed in the presence of various reservations" tables.
import { describe, expect, it } from 'vitest'
import { encodePersistentReserveIn, encodePersistentReserveOut, encodeRelease6, encodeReserve6, Op } from '../../src/scsi/cdb.js'
import { LogicalUnit, type AbortedNexus, type LogicalUnitOptions } from '../../src/scsi/lu.js'
import { OPCODES, type OpcodeRow } from '../../src/scsi/opcodes.js'
import { SanitizeFlag } from '../../src/scsi/sanitize.js'
import {
  decodeReadFullStatus,
  decodeReadKeys,
  decodeReadReservation,
  encodePrOutParameters,
  encodeRegisterAndMoveParameters,
  PrIn,
  PrOut,
  PrType,
  registerAndMoveSize,
  type PrOutParameters,
  type RegisterAndMoveParameters,
} from '../../src/scsi/pr-data.js'
import { ScsiTarget } from '../../src/scsi/target.js'
import type { TargetPort } from '../../src/targets/types.js'
import { hex, makeLun, makePort, run, sense, type Run } from './scsi-helpers.js'

/** Three initiator ports, spelled the three ways pr.ts accepts. */
const H = '21000024ff00aa01' // the HBA firmware's bare WWPN
const R = 'iscsi:iqn.2026-11.io.fcfs.test:r,i,0x23d000000001'
const N = 'fc:21000024ff00aa03'
const TUR = '000000000000'
const CONFLICT = 0x18
const { WRITE_EXCLUSIVE: WE, EXCLUSIVE_ACCESS: EA } = PrType
const WE_RO = PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
const EA_RO = PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
const WE_AR = PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS
const EA_AR = PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS
const TYPES = [WE, EA, WE_RO, EA_RO, WE_AR, EA_AR]

interface Unit {
  lu: LogicalUnit
  a: TargetPort
  b: TargetPort
}

/** One logical unit exported through ports A (rtpi 1) and B (rtpi 2); H, R and N are past their power-on unit attention through both (six I_T nexuses). */
function unit(opts?: LogicalUnitOptions): Unit {
  const lun = makeLun()
  const a = makePort([lun])
  const b = makePort([lun], { wwpn: '21000024ff000002', relativePortId: 2 })
  const lu = new LogicalUnit(lun, opts)
  lu.attachPort(a)
  lu.attachPort(b)
  for (const i of [H, R, N]) for (const port of [a, b]) run(lu, TUR, { initiator: i, port })
  return { lu, a, b }
}

function prout(u: Unit, who: string, sa: number, type: number, p: PrOutParameters, via?: TargetPort, len = 24): Run {
  const data = Buffer.alloc(Math.max(len, 24))
  encodePrOutParameters(p, data)
  return run(u.lu, (c) => encodePersistentReserveOut(sa, type, len, c), { initiator: who, port: via ?? u.a, dataOut: data.subarray(0, len) })
}

function prin(u: Unit, sa: number, who = H, alloc = 4096): Run {
  return run(u.lu, (c) => encodePersistentReserveIn(sa, alloc, c), { initiator: who, port: u.a, dataIn: alloc })
}

const register = (u: Unit, who: string, key: bigint, via?: TargetPort, extra: Partial<PrOutParameters> = {}) =>
  prout(u, who, PrOut.REGISTER_AND_IGNORE_EXISTING_KEY, 0, { key: 0n, saKey: key, ...extra }, via)
const reserve = (u: Unit, who: string, key: bigint, type: number, via?: TargetPort) => prout(u, who, PrOut.RESERVE, type, { key, saKey: 0n }, via)
/** READ KEYS / READ RESERVATION, asked by `who` (one with no unit attention pending). */
const keys = (u: Unit, who = H) => decodeReadKeys(prin(u, PrIn.READ_KEYS, who).data)
const reservation = (u: Unit, who = H) => decodeReadReservation(prin(u, PrIn.READ_RESERVATION, who).data).reservation
const tur = (u: Unit, who: string, via?: TargetPort) => run(u.lu, TUR, { initiator: who, port: via ?? u.a })
/** The unit attention the nexus (who, via; port A by default) has pending as "2A/04", or GOOD. */
function attention(u: Unit, who: string, via?: TargetPort): string {
  const o = tur(u, who, via)
  if (o.status === 0) return 'GOOD'
  const s = sense(o)
  expect(s.key).toBe(6)
  return `${s.asc.toString(16).toUpperCase().padStart(2, '0')}/${s.ascq.toString(16).toUpperCase().padStart(2, '0')}`
}

describe('PERSISTENT RESERVE IN', () => {
  it('READ KEYS lists each registered key after PRGENERATION and ADDITIONAL LENGTH', () => {
    const u = unit()
    expect(hex(prin(u, PrIn.READ_KEYS).data)).toBe('0000000000000000')
    expect(register(u, H, 0x1122334455667788n).status).toBe(0)
    expect(register(u, R, 0xabn).status).toBe(0)
    expect(hex(prin(u, PrIn.READ_KEYS).data)).toBe('00000002' + '00000010' + '1122334455667788' + '00000000000000ab')
  })

  it('READ KEYS cut to 8 bytes keeps the full ADDITIONAL LENGTH (libiscsi PrinReadKeys.Truncate)', () => {
    const u = unit()
    register(u, H, 1n)
    const r = prin(u, PrIn.READ_KEYS, H, 8)
    expect(r).toMatchObject({ status: 0, transferred: 8, wanted: 8 })
    expect(hex(r.data)).toBe('0000000100000008')
  })

  it('READ RESERVATION shows the holder key, scope and type, and key 0 for an all-registrants type', () => {
    const u = unit()
    register(u, H, 0xabn)
    expect(hex(prin(u, PrIn.READ_RESERVATION).data)).toBe('0000000100000000')
    expect(reserve(u, H, 0xabn, WE_RO).status).toBe(0)
    expect(hex(prin(u, PrIn.READ_RESERVATION).data)).toBe('00000001' + '00000010' + '00000000000000ab' + '00000000' + '00' + '05' + '0000')
    prout(u, H, PrOut.RELEASE, WE_RO, { key: 0xabn, saKey: 0n })
    reserve(u, H, 0xabn, EA_AR)
    expect(reservation(u)).toEqual({ key: 0n, scope: 0, type: EA_AR })
  })

  it('REPORT CAPABILITIES: CRH, ATP_C, no SIP_C, PTPL_C only with a store, ALLOW COMMANDS 011b, all six types', () => {
    expect(hex(prin(unit(), PrIn.REPORT_CAPABILITIES).data)).toBe('0008' + '14' + 'b0' + 'ea01' + '0000')
    const store = { load: () => null, save: () => undefined }
    expect(hex(prin(unit({ prStore: store }), PrIn.REPORT_CAPABILITIES).data)).toBe('0008' + '15' + 'b0' + 'ea01' + '0000')
  })

  it('READ FULL STATUS describes every registered I_T nexus with its TransportID, R_HOLDER and RELATIVE TARGET PORT IDENTIFIER', () => {
    const u = unit()
    register(u, H, 0xabn)
    register(u, R, 0xcdn, u.b, { allTgPt: true })
    reserve(u, H, 0xabn, WE)
    const fc = '00' + '00'.repeat(7) + '21000024ff00aa01' + '00'.repeat(8)
    const name = 'iqn.2026-11.io.fcfs.test:r,i,0x23d000000001\0' // 44 bytes: a multiple of 4, no padding
    const iscsi = '4500002c' + Buffer.from(name).toString('hex')
    expect(hex(prin(u, PrIn.READ_FULL_STATUS).data)).toBe(
      '00000002' +
        '00000078' +
        ('00000000000000ab' + '00000000' + '01' + '01' + '00000000' + '0001' + '00000018' + fc) +
        ('00000000000000cd' + '00000000' + '02' + '00' + '00000000' + '0000' + '00000030' + iscsi),
    )
    expect(decodeReadFullStatus(prin(u, PrIn.READ_FULL_STATUS).data).descriptors[1].transportId).toEqual({
      protocol: 'iscsi',
      name: 'iqn.2026-11.io.fcfs.test:r',
      isid: '23d000000001',
    })
  })

  it('refuses service actions 4..31 with INVALID FIELD IN CDB at the service action (libiscsi PrinServiceactionRange)', () => {
    const u = unit()
    for (let sa = 4; sa < 0x20; sa++) {
      expect(sense(prin(u, sa)), `service action ${sa}`).toMatchObject({ key: 5, asc: 0x24, sks: { cd: true, field: 1, bit: 4 } })
    }
  })
})

describe('PERSISTENT RESERVE OUT REGISTER and REGISTER AND IGNORE EXISTING KEY', () => {
  it('registers, changes the key only with the right one, and unregisters with service action key 0', () => {
    const u = unit()
    expect(prout(u, H, PrOut.REGISTER, 0, { key: 5n, saKey: 7n }).status).toBe(CONFLICT) // unregistered with a non-zero key
    expect(prout(u, H, PrOut.REGISTER, 0, { key: 0n, saKey: 7n }).status).toBe(0)
    // libiscsi ProutRegister.Simple: re-registering with RESERVATION KEY 0 conflicts.
    expect(prout(u, H, PrOut.REGISTER, 0, { key: 0n, saKey: 8n }).status).toBe(CONFLICT)
    expect(prout(u, H, PrOut.REGISTER, 0, { key: 7n, saKey: 8n }).status).toBe(0)
    expect(keys(u).keys).toEqual([8n])
    expect(prout(u, H, PrOut.REGISTER_AND_IGNORE_EXISTING_KEY, 0, { key: 99n, saKey: 9n }).status).toBe(0)
    expect(keys(u).keys).toEqual([9n])
    expect(prout(u, H, PrOut.REGISTER, 0, { key: 9n, saKey: 0n }).status).toBe(0)
    expect(keys(u).keys).toEqual([])
  })

  it('keeps one registration per I_T nexus: the same initiator through another port is another nexus', () => {
    const u = unit()
    register(u, H, 1n, u.a)
    register(u, H, 2n, u.b)
    expect(keys(u).keys).toEqual([1n, 2n])
    // Through B, H's registration is the one with key 2.
    expect(reserve(u, H, 1n, WE, u.b).status).toBe(CONFLICT)
    expect(reserve(u, H, 2n, WE, u.b).status).toBe(0)
  })

  it('ALL_TG_PT registers the initiator port through every target port, and READ FULL STATUS says so', () => {
    const u = unit()
    register(u, H, 1n, u.a, { allTgPt: true })
    expect(reserve(u, H, 1n, WE_RO, u.b).status).toBe(0)
    const d = decodeReadFullStatus(prin(u, PrIn.READ_FULL_STATUS).data).descriptors
    expect(d).toHaveLength(1)
    expect(d[0]).toMatchObject({ allTgPt: true, holder: true, type: WE_RO })
  })

  it('treats the bare WWPN the HBA passes and its fc: spelling as one initiator port', () => {
    const u = unit()
    register(u, H, 1n)
    tur(u, `fc:${H}`) // a new spelling is a new unit attention queue: it takes POWER ON first
    expect(reserve(u, `fc:${H}`, 1n, WE).status).toBe(0)
    expect(reservation(u)).toEqual({ key: 1n, scope: 0, type: WE })
  })

  it('answers a 257th registration with INSUFFICIENT REGISTRATION RESOURCES and changes nothing', () => {
    const u = unit()
    for (let i = 0; i <= 256; i++) tur(u, `host-${i}`)
    for (let i = 0; i < 256; i++) expect(register(u, `host-${i}`, BigInt(i + 1)).status).toBe(0)
    expect(sense(register(u, 'host-256', 999n))).toMatchObject({ key: 5, asc: 0x55, ascq: 0x04 })
    expect(keys(u).keys).toHaveLength(256)
  })
})

describe('PERSISTENT RESERVE OUT RESERVE and RELEASE', () => {
  it('reserves each of the six types, re-reserves the same type as GOOD and conflicts on another (libiscsi ProutReserve.Simple)', () => {
    for (const t of TYPES) {
      const u = unit()
      register(u, H, 1n)
      expect(reserve(u, H, 1n, t).status, `type ${t}`).toBe(0)
      expect(reserve(u, H, 1n, t).status).toBe(0)
      expect(reserve(u, H, 1n, t === WE ? EA : WE).status).toBe(CONFLICT)
      expect(reservation(u)).toEqual({ key: t === WE_AR || t === EA_AR ? 0n : 1n, scope: 0, type: t })
      expect(prout(u, H, PrOut.RELEASE, t, { key: 1n, saKey: 0n }).status).toBe(0)
      expect(reservation(u)).toBeNull()
    }
  })

  it('conflicts on RESERVE from another registrant, and with a wrong key', () => {
    const u = unit()
    register(u, H, 1n)
    register(u, R, 2n)
    expect(reserve(u, H, 2n, WE).status).toBe(CONFLICT)
    expect(reserve(u, H, 1n, WE).status).toBe(0)
    expect(reserve(u, R, 2n, WE).status).toBe(CONFLICT)
  })

  it('answers RELEASE from a registrant that does not hold it with GOOD, changing nothing', () => {
    const u = unit()
    register(u, H, 1n)
    register(u, R, 2n)
    reserve(u, H, 1n, EA)
    expect(prout(u, R, PrOut.RELEASE, EA, { key: 2n, saKey: 0n }).status).toBe(0)
    expect(reservation(u)).toEqual({ key: 1n, scope: 0, type: EA })
  })

  it('refuses RELEASE by the holder with another type: INVALID RELEASE OF PERSISTENT RESERVATION', () => {
    const u = unit()
    register(u, H, 1n)
    reserve(u, H, 1n, WE_RO)
    expect(sense(prout(u, H, PrOut.RELEASE, WE, { key: 1n, saKey: 0n }))).toMatchObject({ key: 5, asc: 0x26, ascq: 0x04 })
    expect(reservation(u)).toEqual({ key: 1n, scope: 0, type: WE_RO })
  })

  it('RELEASE of a registrants-only reservation tells the other registrants RESERVATIONS RELEASED; of Write Exclusive, nobody', () => {
    const u = unit()
    register(u, H, 1n)
    register(u, R, 2n)
    reserve(u, H, 1n, WE_RO)
    prout(u, H, PrOut.RELEASE, WE_RO, { key: 1n, saKey: 0n })
    expect(attention(u, R)).toBe('2A/04')
    expect(attention(u, H)).toBe('GOOD')
    expect(attention(u, N)).toBe('GOOD')
    reserve(u, H, 1n, WE)
    prout(u, H, PrOut.RELEASE, WE, { key: 1n, saKey: 0n })
    expect(attention(u, R)).toBe('GOOD')
  })

  it('the holder unregistering releases a registrants-only reservation (2A/04 to the others); an all-registrants one stays (libiscsi ProutReserve.Ownership)', () => {
    const ro = unit()
    register(ro, H, 1n)
    register(ro, R, 2n)
    reserve(ro, H, 1n, EA_RO)
    expect(prout(ro, H, PrOut.REGISTER, 0, { key: 1n, saKey: 0n }).status).toBe(0)
    expect(reservation(ro)).toBeNull()
    expect(attention(ro, R)).toBe('2A/04')

    const ar = unit()
    register(ar, H, 1n)
    register(ar, R, 2n)
    reserve(ar, H, 1n, WE_AR)
    prout(ar, H, PrOut.REGISTER, 0, { key: 1n, saKey: 0n })
    expect(reservation(ar)).toEqual({ key: 0n, scope: 0, type: WE_AR })
    expect(prout(ar, R, PrOut.RELEASE, WE_AR, { key: 2n, saKey: 0n }).status).toBe(0)
    expect(reservation(ar)).toBeNull()
    // The last registrant of an all-registrants reservation leaving releases it.
    register(ar, R, 2n)
    reserve(ar, R, 2n, EA_AR)
    prout(ar, R, PrOut.REGISTER, 0, { key: 2n, saKey: 0n })
    expect(reservation(ar)).toBeNull()
  })
})

describe('PERSISTENT RESERVE OUT CLEAR, PREEMPT and PREEMPT AND ABORT', () => {
  it('CLEAR releases the reservation, removes every registration and tells the others RESERVATIONS PREEMPTED (libiscsi ProutClear.Simple)', () => {
    const u = unit()
    register(u, H, 1n)
    register(u, R, 2n)
    reserve(u, H, 1n, EA)
    const before = keys(u).generation
    expect(prout(u, N, PrOut.CLEAR, 0, { key: 3n, saKey: 0n }).status).toBe(CONFLICT) // not registered
    expect(prout(u, H, PrOut.CLEAR, 0, { key: 1n, saKey: 0n }).status).toBe(0)
    expect(reservation(u)).toBeNull()
    expect(keys(u)).toEqual({ generation: before + 1, additionalLength: 0, keys: [] })
    expect(attention(u, R)).toBe('2A/03')
    expect(attention(u, H)).toBe('GOOD')
  })

  it('PREEMPT of a registrant removes its registration only: REGISTRATIONS PREEMPTED for it (libiscsi ProutPreempt.RemoveRegistration)', () => {
    const u = unit()
    register(u, H, 1n)
    register(u, R, 2n)
    const g = keys(u).generation
    expect(prout(u, R, PrOut.PREEMPT, EA, { key: 2n, saKey: 1n }).status).toBe(0)
    expect(keys(u, R)).toEqual({ generation: g + 1, additionalLength: 8, keys: [2n] })
    expect(reservation(u, R)).toBeNull()
    expect(attention(u, H)).toBe('2A/05')
    expect(attention(u, R)).toBe('GOOD')
  })

  it('PREEMPT of the holder takes the reservation with the new type; the remaining registrants hear RESERVATIONS RELEASED', () => {
    const u = unit()
    register(u, H, 1n)
    register(u, R, 2n)
    register(u, N, 3n)
    reserve(u, H, 1n, WE)
    expect(prout(u, R, PrOut.PREEMPT, EA_RO, { key: 2n, saKey: 1n }).status).toBe(0)
    expect(reservation(u, R)).toEqual({ key: 2n, scope: 0, type: EA_RO })
    expect(keys(u, R).keys).toEqual([2n, 3n])
    expect(attention(u, H)).toBe('2A/05')
    expect(attention(u, N)).toBe('2A/04')
    expect(attention(u, R)).toBe('GOOD')
  })

  it('PREEMPT with key 0 under an all-registrants reservation removes every other registrant and reserves for the caller', () => {
    const u = unit()
    register(u, H, 1n)
    register(u, R, 2n)
    register(u, N, 3n)
    reserve(u, H, 1n, WE_AR)
    expect(prout(u, R, PrOut.PREEMPT, WE, { key: 2n, saKey: 0n }).status).toBe(0)
    expect(keys(u, R).keys).toEqual([2n])
    expect(reservation(u, R)).toEqual({ key: 2n, scope: 0, type: WE })
    expect(attention(u, H)).toBe('2A/05')
    expect(attention(u, N)).toBe('2A/05')
  })

  it('PREEMPT with key 0 without an all-registrants reservation is INVALID FIELD IN PARAMETER LIST at byte 8; a key nobody has conflicts', () => {
    const u = unit()
    register(u, H, 1n)
    register(u, R, 2n)
    expect(sense(prout(u, R, PrOut.PREEMPT, WE, { key: 2n, saKey: 0n }))).toMatchObject({ key: 5, asc: 0x26, sks: { cd: false, field: 8 } })
    expect(prout(u, R, PrOut.PREEMPT, WE, { key: 2n, saKey: 77n }).status).toBe(CONFLICT)
    expect(keys(u).keys).toEqual([1n, 2n])
  })

  it('PREEMPT AND ABORT asks the task owners to abort every preempted I_T nexus, and only those', () => {
    const u = unit()
    const aborted: AbortedNexus[] = []
    const off = u.lu.onAbortNexus((n) => aborted.push(n))
    register(u, H, 1n, u.a)
    register(u, N, 1n, u.b, { allTgPt: true })
    register(u, R, 2n)
    reserve(u, H, 1n, EA)
    expect(prout(u, R, PrOut.PREEMPT_AND_ABORT, EA, { key: 2n, saKey: 1n }).status).toBe(0)
    expect(aborted).toEqual([
      { initiator: H, targetPort: u.a.wwpn },
      { initiator: N, targetPort: null },
    ])
    off()
    register(u, H, 5n)
    prout(u, R, PrOut.PREEMPT_AND_ABORT, EA, { key: 2n, saKey: 5n })
    expect(aborted).toHaveLength(2)
  })
})

describe('reservation unit attentions per I_T nexus (SPC-4 5.12.11)', () => {
  /** Every nexus of H, R and N through A and B, as "H/a 2A/05 …", taking each pending condition. */
  function everyNexus(u: Unit): string {
    const out: string[] = []
    for (const [name, who] of [['H', H], ['R', R], ['N', N]] as const) {
      for (const [p, via] of [['a', u.a], ['b', u.b]] as const) out.push(`${name}/${p} ${attention(u, who, via)}`)
    }
    return out.join(' ')
  }

  it('PREEMPT through (H, B) of H through A: REGISTRATIONS PREEMPTED reaches the caller\'s other path; a type change tells the other registrants RESERVATIONS RELEASED', () => {
    const u = unit()
    register(u, H, 1n, u.a)
    register(u, H, 2n, u.b)
    register(u, R, 3n, u.a)
    reserve(u, H, 1n, WE, u.a)
    expect(prout(u, H, PrOut.PREEMPT, EA, { key: 2n, saKey: 1n }, u.b).status).toBe(0)
    expect(everyNexus(u)).toBe('H/a 2A/05 H/b GOOD R/a 2A/04 R/b GOOD N/a GOOD N/b GOOD')
  })

  it('PREEMPT of an ALL_TG_PT registration gives REGISTRATIONS PREEMPTED to that initiator through every port', () => {
    const u = unit()
    register(u, H, 1n, u.a)
    register(u, N, 4n, u.a, { allTgPt: true })
    expect(prout(u, H, PrOut.PREEMPT, WE, { key: 1n, saKey: 4n }, u.a).status).toBe(0)
    expect(everyNexus(u)).toBe('H/a GOOD H/b GOOD R/a GOOD R/b GOOD N/a 2A/05 N/b 2A/05')
  })

  it('RELEASE of a registrants-only reservation through (H, A) tells (H, B) and every other registered nexus RESERVATIONS RELEASED, not (H, A)', () => {
    const u = unit()
    register(u, H, 1n, u.a)
    register(u, H, 2n, u.b)
    register(u, R, 3n, u.b)
    reserve(u, H, 1n, WE_RO, u.a)
    expect(prout(u, H, PrOut.RELEASE, WE_RO, { key: 1n, saKey: 0n }, u.a).status).toBe(0)
    expect(everyNexus(u)).toBe('H/a GOOD H/b 2A/04 R/a GOOD R/b 2A/04 N/a GOOD N/b GOOD')
  })

  it('CLEAR through (H, A) tells (H, B) and the other registered nexuses RESERVATIONS PREEMPTED, not (H, A)', () => {
    const u = unit()
    register(u, H, 1n, u.a)
    register(u, H, 2n, u.b)
    register(u, R, 3n, u.a, { allTgPt: true })
    expect(prout(u, H, PrOut.CLEAR, 0, { key: 1n, saKey: 0n }, u.a).status).toBe(0)
    expect(everyNexus(u)).toBe('H/a GOOD H/b 2A/03 R/a 2A/03 R/b 2A/03 N/a GOOD N/b GOOD')
  })
})

describe('PERSISTENT RESERVE OUT REGISTER AND MOVE', () => {
  function moveList(p: Partial<RegisterAndMoveParameters> = {}): Buffer {
    const full: RegisterAndMoveParameters = {
      key: 1n,
      saKey: 9n,
      relativePortId: 2,
      transportId: { protocol: 'iscsi', name: 'iqn.2026-11.io.fcfs.test:r', isid: '23d000000001' },
      ...p,
    }
    const b = Buffer.alloc(registerAndMoveSize(full))
    encodeRegisterAndMoveParameters(full, b)
    return b
  }
  const move = (u: Unit, who: string, list: Buffer, len = list.length) =>
    run(u.lu, (c) => encodePersistentReserveOut(PrOut.REGISTER_AND_MOVE, 0, len, c), { initiator: who, port: u.a, dataOut: list })

  it('registers the TransportID on the target port given, moves the reservation there and with UNREG drops the caller', () => {
    const u = unit()
    register(u, H, 1n)
    reserve(u, H, 1n, WE_RO)
    const g = keys(u).generation
    expect(move(u, H, moveList({ unreg: true })).status).toBe(0)
    expect(reservation(u)).toEqual({ key: 9n, scope: 0, type: WE_RO })
    expect(keys(u)).toMatchObject({ generation: g + 1, keys: [9n] })
    const d = decodeReadFullStatus(prin(u, PrIn.READ_FULL_STATUS).data).descriptors
    expect(d).toEqual([{ key: 9n, allTgPt: false, holder: true, scope: 0, type: WE_RO, relativePortId: 2, transportId: { protocol: 'iscsi', name: 'iqn.2026-11.io.fcfs.test:r', isid: '23d000000001' } }])
    // R now holds it through port B, not through A.
    expect(prout(u, R, PrOut.RELEASE, WE_RO, { key: 9n, saKey: 0n }, u.a).status).toBe(CONFLICT)
    expect(prout(u, R, PrOut.RELEASE, WE_RO, { key: 9n, saKey: 0n }, u.b).status).toBe(0)
  })

  it.each([
    ['service action key 0', { saKey: 0n }, 8],
    ['an unknown RELATIVE TARGET PORT IDENTIFIER', { relativePortId: 7 }, 18],
    ["the caller's own initiator port", { transportId: { protocol: 'fc' as const, wwpn: H } }, 24],
  ])('refuses %s with INVALID FIELD IN PARAMETER LIST pointing at byte %i, changing nothing', (_n, p, field) => {
    const u = unit()
    register(u, H, 1n)
    reserve(u, H, 1n, EA)
    const before = hex(prin(u, PrIn.READ_FULL_STATUS).data)
    expect(sense(move(u, H, moveList(p)))).toMatchObject({ key: 5, asc: 0x26, sks: { cd: false, field } })
    expect(hex(prin(u, PrIn.READ_FULL_STATUS).data)).toBe(before)
  })

  it('refuses a TransportID of another protocol at byte 24, and a list shorter than its TransportID with PARAMETER LIST LENGTH ERROR', () => {
    const u = unit()
    register(u, H, 1n)
    reserve(u, H, 1n, EA)
    const sas = moveList()
    sas[24] = 0x06 // SAS
    expect(sense(move(u, H, sas))).toMatchObject({ key: 5, asc: 0x26, sks: { cd: false, field: 24 } })
    const list = moveList()
    expect(sense(move(u, H, list.subarray(0, 40), 40))).toMatchObject({ key: 5, asc: 0x1a, ascq: 0 })
  })

  it('conflicts from a registrant that does not hold the reservation, with no reservation, and under an all-registrants type', () => {
    const u = unit()
    register(u, H, 1n)
    register(u, N, 3n)
    expect(move(u, H, moveList()).status).toBe(CONFLICT) // nothing reserved
    reserve(u, H, 1n, WE)
    expect(move(u, N, moveList({ key: 3n })).status).toBe(CONFLICT)
    prout(u, H, PrOut.RELEASE, WE, { key: 1n, saKey: 0n })
    reserve(u, H, 1n, WE_AR)
    expect(move(u, H, moveList()).status).toBe(CONFLICT)
  })
})

describe('parameter list checks', () => {
  // Each bad list is sent by the holder of a Write Exclusive reservation; afterwards nothing may have changed.
  it.each([
    ['a list of 23 bytes', PrOut.REGISTER, 0, {}, 23, { asc: 0x1a }],
    ['a list of 28 bytes without SPEC_I_PT', PrOut.REGISTER, 0, {}, 28, { asc: 0x1a }],
    ['SPEC_I_PT (SIP_C is 0)', PrOut.REGISTER, 0, { specIPt: true }, 24, { asc: 0x26, sks: { cd: false, field: 20, bit: 3 } }],
    ['APTPL without a store (PTPL_C is 0)', PrOut.REGISTER, 0, { aptpl: true }, 24, { asc: 0x26, sks: { cd: false, field: 20, bit: 0 } }],
    ['a reserved bit in byte 20', PrOut.REGISTER, 0, { flags: 0x02 }, 24, { asc: 0x26, sks: { cd: false, field: 20, bit: 1 } }],
    ['a scope other than LU_SCOPE', PrOut.RESERVE, 0x10 | WE, {}, 24, { asc: 0x24, sks: { cd: true, field: 2, bit: 7 } }],
    ['an undefined type', PrOut.RESERVE, 0x2, {}, 24, { asc: 0x24, sks: { cd: true, field: 2, bit: 3 } }],
    ['an undefined PREEMPT type', PrOut.PREEMPT, 0x9, {}, 24, { asc: 0x24, sks: { cd: true, field: 2, bit: 3 } }],
  ] as const)('refuses %s and changes nothing', (_n, sa, scopeType, p, len, expected) => {
    const u = unit()
    register(u, H, 1n)
    reserve(u, H, 1n, WE)
    const before = hex(prin(u, PrIn.READ_FULL_STATUS).data)
    const data = Buffer.alloc(Math.max(len, 24))
    encodePrOutParameters({ key: 1n, saKey: 2n, ...p }, data)
    if ('flags' in p) data[20] |= p.flags
    const o = run(u.lu, (c) => encodePersistentReserveOut(sa, 0, len, c) && (c[2] = scopeType), { initiator: H, port: u.a, dataOut: data.subarray(0, len) })
    expect(sense(o)).toMatchObject({ key: 5, ascq: 0, ...expected })
    expect(o.wanted).toBe(len)
    expect(hex(prin(u, PrIn.READ_FULL_STATUS).data)).toBe(before)
  })

  it('refuses a data-out shorter than the PARAMETER LIST LENGTH with PARAMETER LIST LENGTH ERROR', () => {
    const u = unit()
    const o = run(u.lu, (c) => encodePersistentReserveOut(PrOut.REGISTER, 0, 24, c), { initiator: H, port: u.a, dataOut: Buffer.alloc(16) })
    expect(sense(o)).toMatchObject({ key: 5, asc: 0x1a })
    expect(keys(u).keys).toEqual([])
  })
})

describe('PRgeneration', () => {
  it('counts REGISTER, REGISTER AND IGNORE, CLEAR, PREEMPT and REGISTER AND MOVE, not RESERVE, RELEASE, failures or a no-op unregister', () => {
    const u = unit()
    const gen = () => keys(u, R).generation
    register(u, H, 0n) // unregistered nexus unregistering: nothing happens
    expect(gen()).toBe(0)
    prout(u, H, PrOut.REGISTER, 0, { key: 0n, saKey: 1n })
    expect(gen()).toBe(1)
    register(u, R, 2n)
    expect(gen()).toBe(2)
    reserve(u, H, 1n, WE)
    prout(u, H, PrOut.RELEASE, WE, { key: 1n, saKey: 0n })
    expect(gen()).toBe(2)
    prout(u, H, PrOut.REGISTER, 0, { key: 5n, saKey: 3n }) // conflict
    prout(u, H, PrOut.REGISTER, 0, { key: 1n, saKey: 3n }, u.a, 23) // bad list
    expect(gen()).toBe(2)
    prout(u, R, PrOut.PREEMPT, WE, { key: 2n, saKey: 1n })
    expect(gen()).toBe(3)
    prout(u, R, PrOut.CLEAR, 0, { key: 2n, saKey: 0n })
    expect(gen()).toBe(4)
  })
})

describe('RESERVE(6) and RELEASE(6)', () => {
  const reserve6 = (u: Unit, who: string, via?: TargetPort) => run(u.lu, (c) => encodeReserve6(c), { initiator: who, port: via ?? u.a })
  const release6 = (u: Unit, who: string, via?: TargetPort) => run(u.lu, (c) => encodeRelease6(c), { initiator: who, port: via ?? u.a })
  const modeSense6 = (u: Unit, who: string) => run(u.lu, '1a003f00ff00', { initiator: who, port: u.a, dataIn: 255 })

  it('reserve the unit for one I_T nexus; others conflict until it releases (libiscsi Reserve6.2Initiators)', () => {
    const u = unit()
    expect(reserve6(u, H).status).toBe(0)
    expect(reserve6(u, H).status).toBe(0)
    expect(reserve6(u, R).status).toBe(CONFLICT)
    expect(release6(u, R).status).toBe(0) // not the holder: GOOD, nothing released
    expect(modeSense6(u, H).status).toBe(0)
    expect(modeSense6(u, R).status).toBe(CONFLICT)
    expect(reserve6(u, R).status).toBe(CONFLICT)
    // The same initiator port through another target port is another nexus.
    expect(reserve6(u, H, u.b).status).toBe(CONFLICT)
    expect(release6(u, H).status).toBe(0)
    expect(reserve6(u, R).status).toBe(0)
    expect(release6(u, R).status).toBe(0)
  })

  it('lets INQUIRY, REQUEST SENSE, REPORT LUNS and RELEASE(6) through, conflicts TEST UNIT READY and every PERSISTENT RESERVE command even from the holder', () => {
    const u = unit()
    reserve6(u, H)
    expect(run(u.lu, '120000002400', { initiator: R, port: u.a, dataIn: 36 }).status).toBe(0)
    expect(run(u.lu, '030000001200', { initiator: R, port: u.a, dataIn: 18 }).status).toBe(0)
    expect(run(u.lu, 'a00000000000000001000000', { initiator: R, port: u.a, dataIn: 256 }).status).toBe(0)
    expect(tur(u, R).status).toBe(CONFLICT)
    expect(prin(u, PrIn.READ_KEYS, H).status).toBe(CONFLICT)
    expect(register(u, H, 1n).status).toBe(CONFLICT)
  })

  it('is released by a logical unit reset and by the loss of its I_T nexus, not by another nexus ending (libiscsi Reserve6.LunReset, ITNexusLoss)', () => {
    const u = unit()
    reserve6(u, H)
    u.lu.reset()
    for (const i of [H, R, N]) tur(u, i) // 29/00
    expect(reserve6(u, R).status).toBe(0)
    u.lu.itNexusLost(R, u.b)
    expect(reserve6(u, H).status).toBe(CONFLICT)
    u.lu.itNexusLost(R, u.a)
    expect(reserve6(u, H).status).toBe(0)
  })

  it('conflicts while persistent registrations exist, except for a holder or a registrant of a registrants-only type, which get GOOD and change nothing', () => {
    const u = unit()
    register(u, H, 1n)
    expect(reserve6(u, H).status).toBe(CONFLICT) // registered, nothing reserved: SPC-2 5.5.1
    expect(reserve6(u, N).status).toBe(CONFLICT)
    reserve(u, H, 1n, WE)
    expect(reserve6(u, H).status).toBe(0)
    expect(release6(u, H).status).toBe(0)
    expect(reservation(u)).toEqual({ key: 1n, scope: 0, type: WE })
    register(u, R, 2n)
    expect(reserve6(u, R).status).toBe(CONFLICT) // registrant of a Write Exclusive reservation
    prout(u, H, PrOut.RELEASE, WE, { key: 1n, saKey: 0n })
    reserve(u, H, 1n, EA_RO)
    expect(reserve6(u, R).status).toBe(0)
    expect(tur(u, N).status).toBe(0) // no SPC-2 reservation was made
  })
})

describe('one reservation state per logical unit', () => {
  it('is shared by every target port that exports the unit', () => {
    const lun = makeLun()
    const pa = makePort([lun])
    const pb = makePort([lun], { wwpn: '21000024ff000002', relativePortId: 2 })
    const ta = new ScsiTarget(pa)
    const tb = new ScsiTarget(pb)
    const viaA = { execute: ta.execute.bind(ta, 0) }
    const viaB = { execute: tb.execute.bind(tb, 0) }
    for (const v of [viaA, viaB]) for (const i of [H, R]) run(v, TUR, { initiator: i })
    const data = Buffer.alloc(24)
    encodePrOutParameters({ key: 0n, saKey: 1n }, data)
    expect(run(viaA, (c) => encodePersistentReserveOut(PrOut.REGISTER, 0, 24, c), { initiator: H, dataOut: data }).status).toBe(0)
    encodePrOutParameters({ key: 1n, saKey: 0n }, data)
    expect(run(viaA, (c) => encodePersistentReserveOut(PrOut.RESERVE, EA, 24, c), { initiator: H, dataOut: data }).status).toBe(0)
    expect(run(viaB, TUR, { initiator: R }).status).toBe(0)
    expect(run(viaB, '28000000000000000100', { initiator: R, dataIn: 512 }).status).toBe(CONFLICT)
    const rk = run(viaB, (c) => encodePersistentReserveIn(PrIn.READ_RESERVATION, 64, c), { initiator: R, dataIn: 64 })
    expect(hex(rk.data)).toBe('00000001' + '00000010' + '0000000000000001' + '00000000' + '00' + '03' + '0000')
  })
})

describe('renderReservations', () => {
  it('shows generation, APTPL, the reservation and each registrant with key and nexus', () => {
    const u = unit()
    register(u, H, 0xabn)
    register(u, R, 0xcdn, u.b, { allTgPt: true })
    reserve(u, H, 0xabn, WE_RO)
    expect(u.lu.renderReservations()).toBe(
      [
        'generation 2',
        'aptpl no',
        'reservation Write Exclusive, Registrants Only (type 5) held by fc:21000024ff00aa01 via 21000024ff000001 (rtpi 1)',
        'spc2 none',
        'registrants 2',
        '  0x00000000000000ab fc:21000024ff00aa01 via 21000024ff000001 (rtpi 1) holder',
        '  0x00000000000000cd iscsi:iqn.2026-11.io.fcfs.test:r,i,0x23d000000001 via all target ports',
        '',
      ].join('\n'),
    )
  })
})

// ---- the conflict table, walked over every row of the opcode table --------------------

/**
 * The oracle, written from the standards' tables rather than from the code:
 * per command, six letters for a nexus that does not hold the reservation —
 * Write Exclusive / Exclusive Access (any nexus), registrants-only or
 * all-registrants types from a registered nexus (WE, EA), and from an
 * unregistered one (WE, EA). A = allowed, C = RESERVATION CONFLICT.
 */
const ALL = 'AAAAAA'
const READ = 'ACAAAC'
const WRITE = 'CCAACC'
const ORACLE: Record<string, string> = {
  'TEST UNIT READY': ALL,
  'REQUEST SENSE': ALL,
  INQUIRY: ALL,
  'REPORT LUNS': ALL,
  'REPORT TARGET PORT GROUPS': ALL,
  'READ CAPACITY(10)': ALL,
  'READ CAPACITY(16)': ALL,
  'PREVENT ALLOW MEDIUM REMOVAL': ALL, // PREVENT = 0 in the all-zero CDB
  'PERSISTENT RESERVE IN READ KEYS': ALL,
  'PERSISTENT RESERVE IN READ RESERVATION': ALL,
  'PERSISTENT RESERVE IN REPORT CAPABILITIES': ALL,
  'PERSISTENT RESERVE IN READ FULL STATUS': ALL,
  'MODE SENSE(6)': READ,
  'MODE SENSE(10)': READ,
  'REPORT SUPPORTED OPERATION CODES': READ,
  'READ(6)': READ,
  'READ(10)': READ,
  'READ(12)': READ,
  'READ(16)': READ,
  'VERIFY(10)': READ,
  'VERIFY(12)': READ,
  'VERIFY(16)': READ,
  'PRE-FETCH(10)': READ,
  'PRE-FETCH(16)': READ,
  'GET LBA STATUS': READ,
  'READ DEFECT DATA(10)': READ,
  'READ DEFECT DATA(12)': READ,
  'MODE SELECT(6)': WRITE,
  'MODE SELECT(10)': WRITE,
  'WRITE(6)': WRITE,
  'WRITE(10)': WRITE,
  'WRITE(12)': WRITE,
  'WRITE(16)': WRITE,
  'WRITE AND VERIFY(10)': WRITE,
  'WRITE AND VERIFY(12)': WRITE,
  'WRITE AND VERIFY(16)': WRITE,
  'WRITE SAME(10)': WRITE,
  'WRITE SAME(16)': WRITE,
  // WRITE ATOMIC(16) writes the medium: a write in SBC-4's table, like WRITE(16).
  'WRITE ATOMIC(16)': WRITE,
  ORWRITE: WRITE,
  'ORWRITE(16)': WRITE,
  'COMPARE AND WRITE': WRITE,
  UNMAP: WRITE,
  'SYNCHRONIZE CACHE(10)': WRITE,
  'SYNCHRONIZE CACHE(16)': WRITE,
  'START STOP UNIT': WRITE, // START = 0 in the all-zero CDB
  // EXTENDED COPY is a write (SPC-4's table); RECEIVE COPY RESULTS moves data in only, a read as LIO classes it.
  'EXTENDED COPY(LID1)': WRITE,
  'RECEIVE COPY STATUS(LID1)': READ,
  'RECEIVE COPY DATA(LID1)': READ,
  'RECEIVE COPY OPERATING PARAMETERS': READ,
  'RECEIVE COPY FAILURE DETAILS(LID1)': READ,
  // SANITIZE alters the medium: a write in SBC-3's table.
  'SANITIZE OVERWRITE': WRITE,
  'SANITIZE BLOCK ERASE': WRITE,
  'SANITIZE CRYPTOGRAPHIC ERASE': WRITE,
  'SANITIZE EXIT FAILURE MODE': WRITE,
}

/** PERSISTENT RESERVE OUT (SPC-4 table "PERSISTENT RESERVE OUT service actions allowed"): [registered, unregistered] non-holder. */
const PROUT_ORACLE: Record<string, string> = {
  REGISTER: 'AA',
  'REGISTER AND IGNORE EXISTING KEY': 'AA',
  RESERVE: 'CC',
  RELEASE: 'AC',
  CLEAR: 'AC',
  PREEMPT: 'AC',
  'PREEMPT AND ABORT': 'AC',
  'REGISTER AND MOVE': 'CC',
}

type Role = 'holder' | 'registrant' | 'stranger'

function expected(row: OpcodeRow, type: number, role: Role): 'A' | 'C' {
  const ar = type === WE_AR || type === EA_AR
  const ro = type === WE_RO || type === EA_RO
  if (role === 'holder' || (role === 'registrant' && ar)) return 'A'
  if (row.name.startsWith('PERSISTENT RESERVE OUT ')) {
    const o = PROUT_ORACLE[row.name.slice('PERSISTENT RESERVE OUT '.length)]
    return o[role === 'registrant' ? 0 : 1] as 'A' | 'C'
  }
  // SPC-4 5.12.3: RESERVE(6)/RELEASE(6) from a registrant of a registrants-only type are GOOD; otherwise they conflict.
  if (row.name === 'RESERVE(6)' || row.name === 'RELEASE(6)') return role === 'registrant' && ro ? 'A' : 'C'
  const letters = ORACLE[row.name]
  if (letters === undefined) throw new Error(`no oracle entry for ${row.name}: add it from SPC-4 / SBC-3`)
  const we = type === WE || type === WE_RO || type === WE_AR
  const col = type === WE || type === EA ? (we ? 0 : 1) : role === 'registrant' ? (we ? 2 : 3) : we ? 4 : 5
  return letters[col] as 'A' | 'C'
}

function cdbOf(row: OpcodeRow): string {
  const c = Buffer.alloc(row.cdbLength)
  c[0] = row.opcode
  if (row.serviceAction !== undefined) c[1] = row.serviceAction
  // SANITIZE with IMMED = 0 answers when the erase is done: asynchronously even over RAM.
  if (row.opcode === Op.SANITIZE) c[1] |= SanitizeFlag.IMMED
  return hex(c)
}

describe('the reservation check, walked over the opcode table', () => {
  const NAMES: Record<number, string> = { [WE]: 'WE', [EA]: 'EA', [WE_RO]: 'WE-RO', [EA_RO]: 'EA-RO', [WE_AR]: 'WE-AR', [EA_AR]: 'EA-AR' }
  const cases = OPCODES.flatMap((row) => TYPES.map((t) => [row.name, NAMES[t], row, t] as const))

  it.each(cases)('%s under %s: holder, registrant and unregistered initiator get what the standards table says', (_n, _t, row, type) => {
    for (const role of ['holder', 'registrant', 'stranger'] as const) {
      const u = unit()
      register(u, H, 1n)
      register(u, R, 2n)
      expect(reserve(u, H, 1n, type).status).toBe(0)
      const who = role === 'holder' ? H : role === 'registrant' ? R : N
      const o = run(u.lu, cdbOf(row), { initiator: who, port: u.a, dataIn: 512, dataOut: Buffer.alloc(0) })
      const want = expected(row, type, role)
      expect(o.status === CONFLICT ? 'C' : 'A', `${role}: status 0x${o.status.toString(16)}`).toBe(want)
    }
  })

  it('has an oracle entry for every row, so a new command must be classified', () => {
    for (const row of OPCODES) expect(() => expected(row, WE, 'stranger'), row.name).not.toThrow()
  })

  it('START STOP UNIT with START = 1 and PREVENT ALLOW MEDIUM REMOVAL with PREVENT = 1 follow their fields', () => {
    const u = unit()
    register(u, H, 1n)
    reserve(u, H, 1n, EA)
    expect(run(u.lu, '1b0000000100', { initiator: N, port: u.a }).status).toBe(0)
    expect(run(u.lu, '1e0000000100', { initiator: N, port: u.a }).status).toBe(CONFLICT)
  })

  it('under RESERVE(6): the holder runs everything but PERSISTENT RESERVE IN/OUT; others only INQUIRY, REQUEST SENSE, REPORT LUNS, RELEASE(6)', () => {
    const passes = new Set(['INQUIRY', 'REQUEST SENSE', 'REPORT LUNS', 'RELEASE(6)'])
    for (const row of OPCODES) {
      for (const who of [H, R]) {
        const u = unit()
        run(u.lu, (c) => encodeReserve6(c), { initiator: H, port: u.a })
        const o = run(u.lu, cdbOf(row), { initiator: who, port: u.a, dataIn: 512, dataOut: Buffer.alloc(0) })
        const pr = row.name.startsWith('PERSISTENT RESERVE')
        const want = who === H ? (pr ? 'C' : 'A') : passes.has(row.name) ? 'A' : 'C'
        expect(o.status === CONFLICT ? 'C' : 'A', `${row.name} from ${who === H ? 'holder' : 'other'}`).toBe(want)
      }
    }
  })
})
