/**
 * Persistent reservation parameter data (SPC-4 6.16, 6.17) and TransportIDs
 * (SPC-4 7.6.4): what PERSISTENT RESERVE IN returns and PERSISTENT RESERVE
 * OUT carries, for both sides of the wire. The target (pr.ts) encodes the
 * PR IN data and decodes the PR OUT lists; an initiator does the reverse.
 *
 * Codecs follow data.ts's contract: `encodeX(value, buf, offset)` returns the
 * bytes written (`xSize(value)` says how many first, for variable lengths);
 * `decodeX(buf, offset)` returns the value and throws DecodeError naming the
 * reason when the bytes are too short or malformed.
 *
 * Reservation keys are 64-bit and opaque, so they are bigints here (a number
 * loses bits above 2^53).
 *
 *   READ KEYS            0..3 PRGENERATION  4..7 ADDITIONAL LENGTH (8 × keys)  8.. keys (u64 each)
 *   READ RESERVATION     0..3 PRGENERATION  4..7 ADDITIONAL LENGTH (0 or 16)
 *                        then, when reserved: 8..15 RESERVATION KEY, 16..19 obsolete,
 *                        20 reserved, 21 SCOPE (7..4) | TYPE (3..0), 22..23 obsolete
 *   REPORT CAPABILITIES  0..1 LENGTH (8), 2 RLR_C CRH SIP_C ATP_C PTPL_C, 3 TMV ALLOW COMMANDS PTPL_A,
 *                        4..5 PERSISTENT RESERVATION TYPE MASK, 6..7 reserved
 *   READ FULL STATUS     0..3 PRGENERATION  4..7 ADDITIONAL LENGTH, then per registration:
 *                        0..7 RESERVATION KEY, 8..11 reserved, 12 ALL_TG_PT (1) R_HOLDER (0),
 *                        13 SCOPE | TYPE, 14..17 reserved, 18..19 RELATIVE TARGET PORT IDENTIFIER,
 *                        20..23 ADDITIONAL DESCRIPTOR LENGTH (n - 24), 24.. TransportID
 *   PR OUT parameters    0..7 RESERVATION KEY, 8..15 SERVICE ACTION RESERVATION KEY, 16..19 obsolete,
 *                        20 SPEC_I_PT (3) ALL_TG_PT (2) APTPL (0), 21 reserved, 22..23 obsolete
 *   REGISTER AND MOVE    0..7 RESERVATION KEY, 8..15 SERVICE ACTION RESERVATION KEY, 16 reserved,
 *                        17 UNREG (1) APTPL (0), 18..19 RELATIVE TARGET PORT IDENTIFIER,
 *                        20..23 TRANSPORTID PARAMETER DATA LENGTH, 24.. TransportID
 */
import { DecodeError, InternalError } from '../errors.js'
import { readU16BE, readU32BE, writeU16BE, writeU32BE } from './bytes.js'
import { f, type Layout } from '../util/layout.js'

/** PERSISTENT RESERVE IN service actions. */
export const PrIn = { READ_KEYS: 0x00, READ_RESERVATION: 0x01, REPORT_CAPABILITIES: 0x02, READ_FULL_STATUS: 0x03 } as const

/** PERSISTENT RESERVE OUT service actions. */
export const PrOut = {
  REGISTER: 0x00,
  RESERVE: 0x01,
  RELEASE: 0x02,
  CLEAR: 0x03,
  PREEMPT: 0x04,
  PREEMPT_AND_ABORT: 0x05,
  REGISTER_AND_IGNORE_EXISTING_KEY: 0x06,
  REGISTER_AND_MOVE: 0x07,
} as const

/** Persistent reservation TYPE codes (SPC-4 table 169). */
export const PrType = {
  WRITE_EXCLUSIVE: 0x1,
  EXCLUSIVE_ACCESS: 0x3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x8,
} as const

const TYPE_NAMES: Record<number, string> = {
  [PrType.WRITE_EXCLUSIVE]: 'Write Exclusive',
  [PrType.EXCLUSIVE_ACCESS]: 'Exclusive Access',
  [PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY]: 'Write Exclusive, Registrants Only',
  [PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY]: 'Exclusive Access, Registrants Only',
  [PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS]: 'Write Exclusive, All Registrants',
  [PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS]: 'Exclusive Access, All Registrants',
}

/** True for the six TYPE codes SPC-4 defines. */
export function isPrType(t: number): boolean {
  return TYPE_NAMES[t] !== undefined
}

/** "Write Exclusive, Registrants Only"; an unknown code as "type 0x.". */
export function prTypeName(t: number): string {
  return TYPE_NAMES[t] ?? `type 0x${t.toString(16)}`
}

/** The only SCOPE there is (SPC-4 6.17.2): the whole logical unit. */
export const LU_SCOPE = 0x0

/** PERSISTENT RESERVATION TYPE MASK bits (REPORT CAPABILITIES bytes 4..5, as a u16). */
export const PrTypeMask = {
  WR_EX_AR: 0x8000,
  EX_AC_RO: 0x4000,
  WR_EX_RO: 0x2000,
  EX_AC: 0x0800,
  WR_EX: 0x0200,
  EX_AC_AR: 0x0001,
} as const

// ---- layouts -------------------------------------------------------------

export const PR_IN_HEADER = {
  name: 'PERSISTENT RESERVE IN header',
  size: 8,
  fields: { generation: f(0, 4), additionalLength: f(4, 4) },
} as const satisfies Layout

export const READ_RESERVATION_DESCRIPTOR = {
  name: 'READ RESERVATION descriptor',
  size: 16,
  fields: { key: f(0, 8), obsolete8: f(8, 4), reserved12: f(12), scopeType: f(13), obsolete14: f(14, 2) },
} as const satisfies Layout

export const REPORT_CAPABILITIES = {
  name: 'REPORT CAPABILITIES data',
  size: 8,
  fields: { length: f(0, 2), flags2: f(2), flags3: f(3), typeMask: f(4, 2), reserved6: f(6, 2) },
} as const satisfies Layout

export const FULL_STATUS_DESCRIPTOR = {
  name: 'READ FULL STATUS descriptor header',
  size: 24,
  fields: {
    key: f(0, 8),
    reserved8: f(8, 4),
    flags: f(12), // ALL_TG_PT (1) | R_HOLDER (0)
    scopeType: f(13),
    reserved14: f(14, 4),
    relativePortId: f(18, 2),
    additionalLength: f(20, 4),
  },
} as const satisfies Layout

export const PR_OUT_PARAMETERS = {
  name: 'PERSISTENT RESERVE OUT parameter list',
  size: 24,
  fields: { key: f(0, 8), saKey: f(8, 8), obsolete16: f(16, 4), flags: f(20), reserved21: f(21), obsolete22: f(22, 2) },
} as const satisfies Layout

export const REGISTER_AND_MOVE_PARAMETERS = {
  name: 'REGISTER AND MOVE parameter list header',
  size: 24,
  fields: { key: f(0, 8), saKey: f(8, 8), reserved16: f(16), flags: f(17), relativePortId: f(18, 2), transportIdLength: f(20, 4) },
} as const satisfies Layout

export const FC_TRANSPORT_ID = {
  name: 'Fibre Channel TransportID',
  size: 24,
  fields: { protocol: f(0), reserved1: f(1, 7), nPortName: f(8, 8), reserved16: f(16, 8) },
} as const satisfies Layout

export const ISCSI_TRANSPORT_ID_HEADER = {
  name: 'iSCSI TransportID header',
  size: 4,
  fields: { protocol: f(0), reserved1: f(1), additionalLength: f(2, 2) },
} as const satisfies Layout

export const PR_DATA_LAYOUTS: readonly Layout[] = [
  PR_IN_HEADER,
  READ_RESERVATION_DESCRIPTOR,
  REPORT_CAPABILITIES,
  FULL_STATUS_DESCRIPTOR,
  PR_OUT_PARAMETERS,
  REGISTER_AND_MOVE_PARAMETERS,
  FC_TRANSPORT_ID,
  ISCSI_TRANSPORT_ID_HEADER,
]

/** PR OUT parameter list byte 20. */
export const PrOutFlags = { SPEC_I_PT: 0x08, ALL_TG_PT: 0x04, APTPL: 0x01 } as const
/** REGISTER AND MOVE parameter list byte 17. */
export const MoveFlags = { UNREG: 0x02, APTPL: 0x01 } as const
/** REPORT CAPABILITIES byte 2. */
export const CapFlags = { RLR_C: 0x80, CRH: 0x10, SIP_C: 0x08, ATP_C: 0x04, PTPL_C: 0x01 } as const
/** REPORT CAPABILITIES byte 3: TMV (7), ALLOW COMMANDS (6..4), PTPL_A (0). */
export const CapFlags3 = { TMV: 0x80, PTPL_A: 0x01 } as const
/** READ FULL STATUS descriptor byte 12. */
export const FullStatusFlags = { ALL_TG_PT: 0x02, R_HOLDER: 0x01 } as const

// ---- 64-bit keys ---------------------------------------------------------

const U64_MAX = 0xffff_ffff_ffff_ffffn

export function readKey(b: Uint8Array, off: number): bigint {
  return (BigInt(readU32BE(b, off)) << 32n) | BigInt(readU32BE(b, off + 4))
}

export function writeKey(b: Uint8Array, off: number, k: bigint): void {
  if (k < 0n || k > U64_MAX) throw new InternalError(`reservation key ${k} does not fit 64 bits`)
  writeU32BE(b, off, Number(k >> 32n))
  writeU32BE(b, off + 4, Number(k & 0xffff_ffffn))
}

/** A key as 16 lowercase hex digits ("0x" not included). */
export function keyHex(k: bigint): string {
  return k.toString(16).padStart(16, '0')
}

function need(b: Uint8Array, off: number, n: number, what: string): void {
  if (off < 0 || b.length - off < n) throw new DecodeError(what, `needs ${n} bytes at offset ${off}, has ${Math.max(0, b.length - off)}`)
}

// ---- TransportIDs --------------------------------------------------------

/** PROTOCOL IDENTIFIER values fcfs speaks (SPC-4 table 362). */
export const ProtocolId = { FC: 0x0, ISCSI: 0x5 } as const

/**
 * An initiator port as a TransportID names it:
 *  - FC: the N_Port name, 16 lowercase hex digits;
 *  - iSCSI: the iSCSI name, and the ISID (12 hex digits) when the
 *    TransportID names an initiator port rather than a device (format 01b).
 */
export type TransportId = { readonly protocol: 'fc'; readonly wwpn: string } | { readonly protocol: 'iscsi'; readonly name: string; readonly isid?: string }

const ISID_SEPARATOR = ',i,0x'

function iscsiField(t: { name: string; isid?: string }): string {
  return t.isid === undefined ? t.name : `${t.name}${ISID_SEPARATOR}${t.isid}`
}

/** Bytes `t` takes: 24 for FC; for iSCSI, 4 + the name (and separator and ISID), NUL-terminated, padded to 4, at least 24. */
export function transportIdSize(t: TransportId): number {
  if (t.protocol === 'fc') return FC_TRANSPORT_ID.size
  const text = Buffer.byteLength(iscsiField(t), 'utf8') + 1
  return ISCSI_TRANSPORT_ID_HEADER.size + Math.max(20, Math.ceil(text / 4) * 4)
}

/** Writes `t` at `off`; returns its size. */
export function encodeTransportId(t: TransportId, b: Uint8Array, off = 0): number {
  const n = transportIdSize(t)
  if (b.length - off < n) throw new InternalError(`TransportID needs ${n} bytes at ${off}, buffer has ${b.length - off}`)
  b.fill(0, off, off + n)
  if (t.protocol === 'fc') {
    if (!/^[0-9a-f]{16}$/.test(t.wwpn)) throw new InternalError(`FC TransportID: ${JSON.stringify(t.wwpn)} is not 16 lowercase hex digits`)
    b[off + FC_TRANSPORT_ID.fields.protocol.offset] = ProtocolId.FC
    Buffer.from(t.wwpn, 'hex').copy(b, off + FC_TRANSPORT_ID.fields.nPortName.offset)
    return n
  }
  const H = ISCSI_TRANSPORT_ID_HEADER.fields
  b[off + H.protocol.offset] = (t.isid === undefined ? 0x00 : 0x40) | ProtocolId.ISCSI
  writeU16BE(b, off + H.additionalLength.offset, n - ISCSI_TRANSPORT_ID_HEADER.size)
  b.set(Buffer.from(iscsiField(t), 'utf8'), off + ISCSI_TRANSPORT_ID_HEADER.size)
  return n
}

/** Decodes the TransportID at `off`; throws DecodeError for another protocol, a bad format or short bytes. */
export function decodeTransportId(b: Uint8Array, off = 0): { id: TransportId; size: number } {
  need(b, off, 1, 'TransportID')
  const protocol = b[off] & 0x0f
  const format = b[off] >> 6
  if (protocol === ProtocolId.FC) {
    need(b, off, FC_TRANSPORT_ID.size, 'FC TransportID')
    if (format !== 0) throw new DecodeError('FC TransportID', `format code ${format} is not 00b`)
    const at = off + FC_TRANSPORT_ID.fields.nPortName.offset
    return { id: { protocol: 'fc', wwpn: Buffer.from(b.subarray(at, at + 8)).toString('hex') }, size: FC_TRANSPORT_ID.size }
  }
  if (protocol === ProtocolId.ISCSI) {
    need(b, off, ISCSI_TRANSPORT_ID_HEADER.size, 'iSCSI TransportID')
    const len = readU16BE(b, off + ISCSI_TRANSPORT_ID_HEADER.fields.additionalLength.offset)
    const size = ISCSI_TRANSPORT_ID_HEADER.size + len
    need(b, off, size, 'iSCSI TransportID')
    if (format > 1) throw new DecodeError('iSCSI TransportID', `format code ${format} is not 00b or 01b`)
    const field = b.subarray(off + ISCSI_TRANSPORT_ID_HEADER.size, off + size)
    const nul = field.indexOf(0)
    if (nul < 0) throw new DecodeError('iSCSI TransportID', 'the iSCSI name is not NUL-terminated')
    const text = Buffer.from(field.subarray(0, nul)).toString('utf8')
    if (text.length === 0) throw new DecodeError('iSCSI TransportID', 'the iSCSI name is empty')
    if (format === 0) return { id: { protocol: 'iscsi', name: text }, size }
    const at = text.toLowerCase().lastIndexOf(ISID_SEPARATOR)
    if (at <= 0) throw new DecodeError('iSCSI TransportID', `format 01b has no "${ISID_SEPARATOR}" separator`)
    const isid = text.slice(at + ISID_SEPARATOR.length).toLowerCase()
    if (!/^[0-9a-f]{12}$/.test(isid)) throw new DecodeError('iSCSI TransportID', `ISID ${JSON.stringify(isid)} is not 12 hex digits`)
    return { id: { protocol: 'iscsi', name: text.slice(0, at), isid }, size }
  }
  throw new DecodeError('TransportID', `protocol identifier 0x${protocol.toString(16)} is not FC (0) or iSCSI (5)`)
}

// ---- PERSISTENT RESERVE IN data ------------------------------------------

export interface ReadKeysData {
  readonly generation: number
  readonly keys: readonly bigint[]
}

export function readKeysSize(d: ReadKeysData): number {
  return PR_IN_HEADER.size + 8 * d.keys.length
}

export function encodeReadKeys(d: ReadKeysData, b: Uint8Array, off = 0): number {
  const n = readKeysSize(d)
  writeU32BE(b, off + PR_IN_HEADER.fields.generation.offset, d.generation)
  writeU32BE(b, off + PR_IN_HEADER.fields.additionalLength.offset, n - PR_IN_HEADER.size)
  d.keys.forEach((k, i) => writeKey(b, off + PR_IN_HEADER.size + 8 * i, k))
  return n
}

/**
 * Decodes READ KEYS data. `additionalLength` is what the device said; `keys`
 * are the whole keys that arrived (fewer when the allocation length cut the list).
 */
export function decodeReadKeys(b: Uint8Array, off = 0): ReadKeysData & { additionalLength: number } {
  need(b, off, PR_IN_HEADER.size, 'READ KEYS data')
  const additionalLength = readU32BE(b, off + 4)
  const count = Math.floor(Math.min(additionalLength, b.length - off - PR_IN_HEADER.size) / 8)
  const keys = Array.from({ length: count }, (_, i) => readKey(b, off + PR_IN_HEADER.size + 8 * i))
  return { generation: readU32BE(b, off), additionalLength, keys }
}

export interface ReadReservationData {
  readonly generation: number
  /** Null when there is no persistent reservation. */
  readonly reservation: { readonly key: bigint; readonly scope: number; readonly type: number } | null
}

export function readReservationSize(d: ReadReservationData): number {
  return PR_IN_HEADER.size + (d.reservation ? READ_RESERVATION_DESCRIPTOR.size : 0)
}

export function encodeReadReservation(d: ReadReservationData, b: Uint8Array, off = 0): number {
  const n = readReservationSize(d)
  b.fill(0, off, off + n)
  writeU32BE(b, off, d.generation)
  writeU32BE(b, off + 4, n - PR_IN_HEADER.size)
  if (d.reservation) {
    const at = off + PR_IN_HEADER.size
    const F = READ_RESERVATION_DESCRIPTOR.fields
    writeKey(b, at + F.key.offset, d.reservation.key)
    b[at + F.scopeType.offset] = ((d.reservation.scope & 0xf) << 4) | (d.reservation.type & 0xf)
  }
  return n
}

export function decodeReadReservation(b: Uint8Array, off = 0): ReadReservationData {
  need(b, off, PR_IN_HEADER.size, 'READ RESERVATION data')
  const generation = readU32BE(b, off)
  const len = readU32BE(b, off + 4)
  if (len === 0) return { generation, reservation: null }
  if (len < READ_RESERVATION_DESCRIPTOR.size) throw new DecodeError('READ RESERVATION data', `ADDITIONAL LENGTH ${len} is neither 0 nor 16`)
  need(b, off, PR_IN_HEADER.size + READ_RESERVATION_DESCRIPTOR.size, 'READ RESERVATION data')
  const at = off + PR_IN_HEADER.size
  const F = READ_RESERVATION_DESCRIPTOR.fields
  const st = b[at + F.scopeType.offset]
  return { generation, reservation: { key: readKey(b, at + F.key.offset), scope: st >> 4, type: st & 0xf } }
}

export interface ReportCapabilitiesData {
  /** CRH: RESERVE/RELEASE(6) follow SPC-4 5.7.3's exceptions while a persistent reservation exists. */
  readonly crh: boolean
  /** SIP_C: REGISTER accepts SPEC_I_PT. */
  readonly sipC: boolean
  /** ATP_C: REGISTER accepts ALL_TG_PT. */
  readonly atpC: boolean
  /** PTPL_C: APTPL is supported. */
  readonly ptplC: boolean
  /** ALLOW COMMANDS (3 bits). */
  readonly allowCommands: number
  /** PTPL_A: persistence across power loss is active. */
  readonly ptplA: boolean
  /** PERSISTENT RESERVATION TYPE MASK (PrTypeMask bits); TMV is set with it. */
  readonly typeMask: number
}

export function encodeReportCapabilities(d: ReportCapabilitiesData, b: Uint8Array, off = 0): number {
  const F = REPORT_CAPABILITIES.fields
  b.fill(0, off, off + REPORT_CAPABILITIES.size)
  writeU16BE(b, off + F.length.offset, REPORT_CAPABILITIES.size)
  b[off + F.flags2.offset] = (d.crh ? CapFlags.CRH : 0) | (d.sipC ? CapFlags.SIP_C : 0) | (d.atpC ? CapFlags.ATP_C : 0) | (d.ptplC ? CapFlags.PTPL_C : 0)
  b[off + F.flags3.offset] = CapFlags3.TMV | ((d.allowCommands & 0x7) << 4) | (d.ptplA ? CapFlags3.PTPL_A : 0)
  writeU16BE(b, off + F.typeMask.offset, d.typeMask)
  return REPORT_CAPABILITIES.size
}

export function decodeReportCapabilities(b: Uint8Array, off = 0): ReportCapabilitiesData {
  need(b, off, REPORT_CAPABILITIES.size, 'REPORT CAPABILITIES data')
  const F = REPORT_CAPABILITIES.fields
  const f2 = b[off + F.flags2.offset]
  const f3 = b[off + F.flags3.offset]
  return {
    crh: (f2 & CapFlags.CRH) !== 0,
    sipC: (f2 & CapFlags.SIP_C) !== 0,
    atpC: (f2 & CapFlags.ATP_C) !== 0,
    ptplC: (f2 & CapFlags.PTPL_C) !== 0,
    allowCommands: (f3 >> 4) & 0x7,
    ptplA: (f3 & CapFlags3.PTPL_A) !== 0,
    typeMask: (f3 & CapFlags3.TMV) !== 0 ? readU16BE(b, off + F.typeMask.offset) : 0,
  }
}

export interface FullStatusDescriptor {
  readonly key: bigint
  /** Registered through every target port (RELATIVE TARGET PORT IDENTIFIER then means nothing). */
  readonly allTgPt: boolean
  /** R_HOLDER: this I_T nexus holds the reservation; scope and type are then valid. */
  readonly holder: boolean
  readonly scope: number
  readonly type: number
  readonly relativePortId: number
  readonly transportId: TransportId
}

export interface ReadFullStatusData {
  readonly generation: number
  readonly descriptors: readonly FullStatusDescriptor[]
}

export function readFullStatusSize(d: ReadFullStatusData): number {
  return d.descriptors.reduce<number>((n, x) => n + FULL_STATUS_DESCRIPTOR.size + transportIdSize(x.transportId), PR_IN_HEADER.size)
}

export function encodeReadFullStatus(d: ReadFullStatusData, b: Uint8Array, off = 0): number {
  const n = readFullStatusSize(d)
  b.fill(0, off, off + n)
  writeU32BE(b, off, d.generation)
  writeU32BE(b, off + 4, n - PR_IN_HEADER.size)
  const F = FULL_STATUS_DESCRIPTOR.fields
  let at = off + PR_IN_HEADER.size
  for (const x of d.descriptors) {
    writeKey(b, at + F.key.offset, x.key)
    b[at + F.flags.offset] = (x.allTgPt ? FullStatusFlags.ALL_TG_PT : 0) | (x.holder ? FullStatusFlags.R_HOLDER : 0)
    if (x.holder) b[at + F.scopeType.offset] = ((x.scope & 0xf) << 4) | (x.type & 0xf)
    if (!x.allTgPt) writeU16BE(b, at + F.relativePortId.offset, x.relativePortId)
    const tl = encodeTransportId(x.transportId, b, at + FULL_STATUS_DESCRIPTOR.size)
    writeU32BE(b, at + F.additionalLength.offset, tl)
    at += FULL_STATUS_DESCRIPTOR.size + tl
  }
  return n
}

/** Decodes READ FULL STATUS data; a descriptor cut off by the allocation length ends the list. */
export function decodeReadFullStatus(b: Uint8Array, off = 0): ReadFullStatusData & { additionalLength: number } {
  need(b, off, PR_IN_HEADER.size, 'READ FULL STATUS data')
  const additionalLength = readU32BE(b, off + 4)
  const end = Math.min(b.length, off + PR_IN_HEADER.size + additionalLength)
  const F = FULL_STATUS_DESCRIPTOR.fields
  const descriptors: FullStatusDescriptor[] = []
  let at = off + PR_IN_HEADER.size
  while (at + FULL_STATUS_DESCRIPTOR.size <= end) {
    const tl = readU32BE(b, at + F.additionalLength.offset)
    if (at + FULL_STATUS_DESCRIPTOR.size + tl > end) break
    const flags = b[at + F.flags.offset]
    const st = b[at + F.scopeType.offset]
    const { id } = decodeTransportId(b.subarray(0, at + FULL_STATUS_DESCRIPTOR.size + tl), at + FULL_STATUS_DESCRIPTOR.size)
    descriptors.push({
      key: readKey(b, at + F.key.offset),
      allTgPt: (flags & FullStatusFlags.ALL_TG_PT) !== 0,
      holder: (flags & FullStatusFlags.R_HOLDER) !== 0,
      scope: st >> 4,
      type: st & 0xf,
      relativePortId: readU16BE(b, at + F.relativePortId.offset),
      transportId: id,
    })
    at += FULL_STATUS_DESCRIPTOR.size + tl
  }
  return { generation: readU32BE(b, off), additionalLength, descriptors }
}

// ---- PERSISTENT RESERVE OUT parameter lists -------------------------------

export interface PrOutParameters {
  readonly key: bigint
  readonly saKey: bigint
  readonly specIPt?: boolean
  readonly allTgPt?: boolean
  readonly aptpl?: boolean
}

export function encodePrOutParameters(p: PrOutParameters, b: Uint8Array, off = 0): number {
  const F = PR_OUT_PARAMETERS.fields
  b.fill(0, off, off + PR_OUT_PARAMETERS.size)
  writeKey(b, off + F.key.offset, p.key)
  writeKey(b, off + F.saKey.offset, p.saKey)
  b[off + F.flags.offset] = (p.specIPt ? PrOutFlags.SPEC_I_PT : 0) | (p.allTgPt ? PrOutFlags.ALL_TG_PT : 0) | (p.aptpl ? PrOutFlags.APTPL : 0)
  return PR_OUT_PARAMETERS.size
}

export function decodePrOutParameters(b: Uint8Array, off = 0): Required<PrOutParameters> {
  need(b, off, PR_OUT_PARAMETERS.size, 'PERSISTENT RESERVE OUT parameter list')
  const F = PR_OUT_PARAMETERS.fields
  const flags = b[off + F.flags.offset]
  return {
    key: readKey(b, off + F.key.offset),
    saKey: readKey(b, off + F.saKey.offset),
    specIPt: (flags & PrOutFlags.SPEC_I_PT) !== 0,
    allTgPt: (flags & PrOutFlags.ALL_TG_PT) !== 0,
    aptpl: (flags & PrOutFlags.APTPL) !== 0,
  }
}

export interface RegisterAndMoveParameters {
  readonly key: bigint
  readonly saKey: bigint
  readonly unreg?: boolean
  readonly aptpl?: boolean
  readonly relativePortId: number
  readonly transportId: TransportId
}

export function registerAndMoveSize(p: RegisterAndMoveParameters): number {
  return REGISTER_AND_MOVE_PARAMETERS.size + transportIdSize(p.transportId)
}

export function encodeRegisterAndMoveParameters(p: RegisterAndMoveParameters, b: Uint8Array, off = 0): number {
  const F = REGISTER_AND_MOVE_PARAMETERS.fields
  b.fill(0, off, off + REGISTER_AND_MOVE_PARAMETERS.size)
  writeKey(b, off + F.key.offset, p.key)
  writeKey(b, off + F.saKey.offset, p.saKey)
  b[off + F.flags.offset] = (p.unreg ? MoveFlags.UNREG : 0) | (p.aptpl ? MoveFlags.APTPL : 0)
  writeU16BE(b, off + F.relativePortId.offset, p.relativePortId)
  const tl = encodeTransportId(p.transportId, b, off + REGISTER_AND_MOVE_PARAMETERS.size)
  writeU32BE(b, off + F.transportIdLength.offset, tl)
  return REGISTER_AND_MOVE_PARAMETERS.size + tl
}

/** The fixed part of a REGISTER AND MOVE list (the TransportID is decoded separately, so a bad one can be pointed at). */
export function decodeRegisterAndMoveHeader(b: Uint8Array, off = 0): Omit<Required<RegisterAndMoveParameters>, 'transportId'> & { transportIdLength: number } {
  need(b, off, REGISTER_AND_MOVE_PARAMETERS.size, 'REGISTER AND MOVE parameter list')
  const F = REGISTER_AND_MOVE_PARAMETERS.fields
  const flags = b[off + F.flags.offset]
  return {
    key: readKey(b, off + F.key.offset),
    saKey: readKey(b, off + F.saKey.offset),
    unreg: (flags & MoveFlags.UNREG) !== 0,
    aptpl: (flags & MoveFlags.APTPL) !== 0,
    relativePortId: readU16BE(b, off + F.relativePortId.offset),
    transportIdLength: readU32BE(b, off + F.transportIdLength.offset),
  }
}
