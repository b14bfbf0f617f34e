/**
 * iSCSI PDUs (RFC 7143 §11): the 48-byte Basic Header Segment of every PDU
 * type as a table of named offsets, one table per type, and one table-driven
 * codec for all of them. Everything on the wire is big-endian.
 *
 *   byte  0        1        2        3
 *       +--------+--------+--------+--------+
 *     0 |.I| op  |F| flags (opcode-specific)|
 *     4 | AHSlen |  DataSegmentLength (24)  |
 *     8 |   LUN or opcode-specific (8)      |
 *    16 |   Initiator Task Tag              |
 *    20 |   opcode-specific … up to byte 47 |
 *       +--------+--------+--------+--------+
 *   then AHS (AHSlen × 4 bytes), HeaderDigest?, data (padded to 4), DataDigest?
 *
 * Codec contract (as everywhere in fcfs): encode(value, buf, offset) returns
 * the bytes written; decode(buf, offset) returns the value; short or malformed
 * input throws a DecodeError naming the reason.
 */
import { DecodeError } from '../errors.js'
import { bits, f, type FieldDef, type Layout } from '../util/layout.js'

export const BHS_SIZE = 48
/** Largest DataSegmentLength the 24-bit field can carry. */
export const MAX_DSL = 0xffffff
/** The reserved tag value: "no task" / "no transfer". */
export const RESERVED_TAG = 0xffffffff

/** Opcodes (byte 0, low six bits). */
export const Op = {
  NOP_OUT: 0x00,
  SCSI_COMMAND: 0x01,
  TASK_MGMT_REQ: 0x02,
  LOGIN_REQ: 0x03,
  TEXT_REQ: 0x04,
  DATA_OUT: 0x05,
  LOGOUT_REQ: 0x06,
  SNACK_REQ: 0x10,
  NOP_IN: 0x20,
  SCSI_RESPONSE: 0x21,
  TASK_MGMT_RSP: 0x22,
  LOGIN_RSP: 0x23,
  TEXT_RSP: 0x24,
  DATA_IN: 0x25,
  LOGOUT_RSP: 0x26,
  R2T: 0x31,
  ASYNC_MESSAGE: 0x32,
  REJECT: 0x3f,
} as const

export function opName(op: number): string {
  for (const [k, v] of Object.entries(Op)) if (v === op) return k
  return `opcode 0x${op.toString(16).padStart(2, '0')}`
}

// ---- field kinds -----------------------------------------------------------

export type FieldKind = 'u8' | 'u16' | 'u24' | 'u32' | 'flag' | 'bits' | 'lun' | 'bytes'

/** A BHS field: where it is (a util/layout FieldDef, masked for flags and bit fields) and how the codec reads it. */
export interface FieldSpec extends FieldDef {
  readonly kind: FieldKind
}

const u8 = (offset: number) => ({ kind: 'u8' as const, ...f(offset) })
const u16 = (offset: number) => ({ kind: 'u16' as const, ...f(offset, 2) })
const u24 = (offset: number) => ({ kind: 'u24' as const, ...f(offset, 3) })
const u32 = (offset: number) => ({ kind: 'u32' as const, ...f(offset, 4) })
const flag = (offset: number, mask: number) => ({ kind: 'flag' as const, ...bits(offset, mask) })
const bitField = (offset: number, mask: number) => ({ kind: 'bits' as const, ...bits(offset, mask) })
/** An 8-byte SAM LUN, decoded to a LUN number (see decodeLun). */
const lun = (offset: number) => ({ kind: 'lun' as const, ...f(offset, 8) })
const bytes = (offset: number, length: number) => ({ kind: 'bytes' as const, ...f(offset, length) })

/** Fields every BHS has. */
const COMMON = {
  immediate: flag(0, 0x40),
  totalAhsLength: u8(4),
  dataSegmentLength: u24(5),
  itt: u32(16),
} as const

/**
 * One PDU type's BHS: a Layout of 48 bytes that names only the fields the type
 * uses (`sparse`: the rest are reserved, zero on encode); the opcode's six bits
 * of byte 0 are the codec's own.
 */
export interface PduLayout<F extends Record<string, FieldSpec> = Record<string, FieldSpec>> extends Layout {
  readonly opcode: number
  readonly fields: F
  readonly sparse: true
}

function layout<F extends Record<string, FieldSpec>>(name: string, opcode: number, fields: F): PduLayout<typeof COMMON & F> {
  return { name, size: BHS_SIZE, sparse: true, opcode, fields: { ...COMMON, ...fields } }
}

type ValueOf<S> = S extends { kind: 'flag' } ? boolean : S extends { kind: 'bytes' } ? Buffer : number
export type BhsOf<L extends PduLayout> = { -readonly [K in keyof L['fields']]: ValueOf<L['fields'][K]> }

// ---- one table per PDU type (RFC 7143 §11) ---------------------------------

/** §11.19 NOP-Out (initiator → target). */
export const NOP_OUT = layout('NOP-Out', Op.NOP_OUT, {
  final: flag(1, 0x80),
  lun: lun(8),
  ttt: u32(20),
  cmdSN: u32(24),
  expStatSN: u32(28),
})

/** §11.20 NOP-In (target → initiator). */
export const NOP_IN = layout('NOP-In', Op.NOP_IN, {
  final: flag(1, 0x80),
  lun: lun(8),
  ttt: u32(20),
  statSN: u32(24),
  expCmdSN: u32(28),
  maxCmdSN: u32(32),
})

/** §11.3 SCSI Command. */
export const SCSI_COMMAND = layout('SCSI Command', Op.SCSI_COMMAND, {
  final: flag(1, 0x80),
  read: flag(1, 0x40),
  write: flag(1, 0x20),
  attr: bitField(1, 0x07),
  lun: lun(8),
  expectedDataTransferLength: u32(20),
  cmdSN: u32(24),
  expStatSN: u32(28),
  cdb: bytes(32, 16),
})

/** §11.4 SCSI Response. */
export const SCSI_RESPONSE = layout('SCSI Response', Op.SCSI_RESPONSE, {
  final: flag(1, 0x80),
  bidiOverflow: flag(1, 0x10),
  bidiUnderflow: flag(1, 0x08),
  overflow: flag(1, 0x04),
  underflow: flag(1, 0x02),
  response: u8(2),
  status: u8(3),
  snackTag: u32(20),
  statSN: u32(24),
  expCmdSN: u32(28),
  maxCmdSN: u32(32),
  expDataSN: u32(36),
  bidiResidualCount: u32(40),
  residualCount: u32(44),
})

/** §11.5 Task Management Function Request. */
export const TASK_MGMT_REQ = layout('Task Management Function Request', Op.TASK_MGMT_REQ, {
  final: flag(1, 0x80),
  function: bitField(1, 0x7f),
  lun: lun(8),
  referencedTaskTag: u32(20),
  cmdSN: u32(24),
  expStatSN: u32(28),
  refCmdSN: u32(32),
  expDataSN: u32(36),
})

/** §11.6 Task Management Function Response. */
export const TASK_MGMT_RSP = layout('Task Management Function Response', Op.TASK_MGMT_RSP, {
  final: flag(1, 0x80),
  response: u8(2),
  statSN: u32(24),
  expCmdSN: u32(28),
  maxCmdSN: u32(32),
})

/** §11.7 SCSI Data-Out. */
export const DATA_OUT = layout('SCSI Data-Out', Op.DATA_OUT, {
  final: flag(1, 0x80),
  lun: lun(8),
  ttt: u32(20),
  expStatSN: u32(28),
  dataSN: u32(36),
  bufferOffset: u32(40),
})

/** §11.7 SCSI Data-In. */
export const DATA_IN = layout('SCSI Data-In', Op.DATA_IN, {
  final: flag(1, 0x80),
  acknowledge: flag(1, 0x40),
  overflow: flag(1, 0x04),
  underflow: flag(1, 0x02),
  statusPresent: flag(1, 0x01),
  status: u8(3),
  lun: lun(8),
  ttt: u32(20),
  statSN: u32(24),
  expCmdSN: u32(28),
  maxCmdSN: u32(32),
  dataSN: u32(36),
  bufferOffset: u32(40),
  residualCount: u32(44),
})

/** §11.8 Ready To Transfer. */
export const R2T = layout('Ready To Transfer', Op.R2T, {
  final: flag(1, 0x80),
  lun: lun(8),
  ttt: u32(20),
  statSN: u32(24),
  expCmdSN: u32(28),
  maxCmdSN: u32(32),
  r2tSN: u32(36),
  bufferOffset: u32(40),
  desiredDataTransferLength: u32(44),
})

/** §11.9 Asynchronous Message. */
export const ASYNC_MESSAGE = layout('Asynchronous Message', Op.ASYNC_MESSAGE, {
  final: flag(1, 0x80),
  lun: lun(8),
  statSN: u32(24),
  expCmdSN: u32(28),
  maxCmdSN: u32(32),
  asyncEvent: u8(36),
  asyncVCode: u8(37),
  parameter1: u16(38),
  parameter2: u16(40),
  parameter3: u16(42),
})

/** §11.10 Text Request. */
export const TEXT_REQ = layout('Text Request', Op.TEXT_REQ, {
  final: flag(1, 0x80),
  continue: flag(1, 0x40),
  lun: lun(8),
  ttt: u32(20),
  cmdSN: u32(24),
  expStatSN: u32(28),
})

/** §11.11 Text Response. */
export const TEXT_RSP = layout('Text Response', Op.TEXT_RSP, {
  final: flag(1, 0x80),
  continue: flag(1, 0x40),
  lun: lun(8),
  ttt: u32(20),
  statSN: u32(24),
  expCmdSN: u32(28),
  maxCmdSN: u32(32),
})

/** §11.12 Login Request (always immediate). */
export const LOGIN_REQ = layout('Login Request', Op.LOGIN_REQ, {
  transit: flag(1, 0x80),
  continue: flag(1, 0x40),
  csg: bitField(1, 0x0c),
  nsg: bitField(1, 0x03),
  versionMax: u8(2),
  versionMin: u8(3),
  isid: bytes(8, 6),
  tsih: u16(14),
  cid: u16(20),
  cmdSN: u32(24),
  expStatSN: u32(28),
})

/** §11.13 Login Response. */
export const LOGIN_RSP = layout('Login Response', Op.LOGIN_RSP, {
  transit: flag(1, 0x80),
  continue: flag(1, 0x40),
  csg: bitField(1, 0x0c),
  nsg: bitField(1, 0x03),
  versionMax: u8(2),
  versionActive: u8(3),
  isid: bytes(8, 6),
  tsih: u16(14),
  statSN: u32(24),
  expCmdSN: u32(28),
  maxCmdSN: u32(32),
  statusClass: u8(36),
  statusDetail: u8(37),
})

/** §11.14 Logout Request. */
export const LOGOUT_REQ = layout('Logout Request', Op.LOGOUT_REQ, {
  final: flag(1, 0x80),
  reasonCode: bitField(1, 0x7f),
  cid: u16(20),
  cmdSN: u32(24),
  expStatSN: u32(28),
})

/** §11.15 Logout Response. */
export const LOGOUT_RSP = layout('Logout Response', Op.LOGOUT_RSP, {
  final: flag(1, 0x80),
  response: u8(2),
  statSN: u32(24),
  expCmdSN: u32(28),
  maxCmdSN: u32(32),
  time2Wait: u16(40),
  time2Retain: u16(42),
})

/** §11.16 SNACK Request. */
export const SNACK_REQ = layout('SNACK Request', Op.SNACK_REQ, {
  final: flag(1, 0x80),
  type: bitField(1, 0x0f),
  lun: lun(8),
  ttt: u32(20),
  expStatSN: u32(28),
  begRun: u32(40),
  runLength: u32(44),
})

/** §11.17 Reject: the data segment carries the rejected PDU's BHS. */
export const REJECT = layout('Reject', Op.REJECT, {
  final: flag(1, 0x80),
  reason: u8(2),
  statSN: u32(24),
  expCmdSN: u32(28),
  maxCmdSN: u32(32),
  dataSN: u32(36),
})

export const LAYOUTS = [
  NOP_OUT,
  NOP_IN,
  SCSI_COMMAND,
  SCSI_RESPONSE,
  TASK_MGMT_REQ,
  TASK_MGMT_RSP,
  DATA_OUT,
  DATA_IN,
  R2T,
  ASYNC_MESSAGE,
  TEXT_REQ,
  TEXT_RSP,
  LOGIN_REQ,
  LOGIN_RSP,
  LOGOUT_REQ,
  LOGOUT_RSP,
  SNACK_REQ,
  REJECT,
] as const

export type NopOut = BhsOf<typeof NOP_OUT>
export type NopIn = BhsOf<typeof NOP_IN>
export type ScsiCommandPdu = BhsOf<typeof SCSI_COMMAND>
export type ScsiResponsePdu = BhsOf<typeof SCSI_RESPONSE>
export type TaskMgmtReq = BhsOf<typeof TASK_MGMT_REQ>
export type TaskMgmtRsp = BhsOf<typeof TASK_MGMT_RSP>
export type DataOut = BhsOf<typeof DATA_OUT>
export type DataIn = BhsOf<typeof DATA_IN>
export type R2tPdu = BhsOf<typeof R2T>
export type TextReq = BhsOf<typeof TEXT_REQ>
export type TextRsp = BhsOf<typeof TEXT_RSP>
export type LoginReq = BhsOf<typeof LOGIN_REQ>
export type LoginRsp = BhsOf<typeof LOGIN_RSP>
export type LogoutReq = BhsOf<typeof LOGOUT_REQ>
export type LogoutRsp = BhsOf<typeof LOGOUT_RSP>
export type RejectPdu = BhsOf<typeof REJECT>

// ---- named values ------------------------------------------------------------

/** Login stages (CSG/NSG). */
export const Stage = {
  SECURITY: 0,
  OPERATIONAL: 1,
  FULL_FEATURE: 3,
} as const

/** Login Response Status-Class << 8 | Status-Detail (§11.13.5). */
export const LoginStatus = {
  SUCCESS: 0x0000,
  TARGET_MOVED_TEMPORARILY: 0x0101,
  INITIATOR_ERROR: 0x0200, // miscellaneous initiator error
  AUTHENTICATION_FAILURE: 0x0201,
  AUTHORIZATION_FAILURE: 0x0202,
  NOT_FOUND: 0x0203, // target not found
  TARGET_REMOVED: 0x0204,
  UNSUPPORTED_VERSION: 0x0205,
  TOO_MANY_CONNECTIONS: 0x0206,
  MISSING_PARAMETER: 0x0207,
  CANT_INCLUDE_IN_SESSION: 0x0208,
  SESSION_TYPE_NOT_SUPPORTED: 0x0209,
  SESSION_DOES_NOT_EXIST: 0x020a,
  INVALID_DURING_LOGIN: 0x020b, // invalid request type during login
  TARGET_ERROR: 0x0300,
  SERVICE_UNAVAILABLE: 0x0301,
  OUT_OF_RESOURCES: 0x0302,
} as const

/** Reject reasons (§11.17.1). */
export const RejectReason = {
  DATA_DIGEST_ERROR: 0x02,
  SNACK_REJECT: 0x03,
  PROTOCOL_ERROR: 0x04,
  COMMAND_NOT_SUPPORTED: 0x05,
  IMMEDIATE_COMMAND_REJECT: 0x06,
  TASK_IN_PROGRESS: 0x07,
  INVALID_DATA_ACK: 0x08,
  INVALID_PDU_FIELD: 0x09,
  LONG_OPERATION_REJECT: 0x0a,
  WAITING_FOR_LOGOUT: 0x0c,
} as const

/** SCSI Response "Response" byte (§11.4.3). */
export const ScsiResponseCode = {
  COMPLETED: 0x00, // command completed at target (see the status byte)
  TARGET_FAILURE: 0x01,
} as const

/** Task management functions (§11.5.1). */
export const TmfFunction = {
  ABORT_TASK: 1,
  ABORT_TASK_SET: 2,
  CLEAR_ACA: 3,
  CLEAR_TASK_SET: 4,
  LOGICAL_UNIT_RESET: 5,
  TARGET_WARM_RESET: 6,
  TARGET_COLD_RESET: 7,
  TASK_REASSIGN: 8,
} as const

/** Task management responses (§11.6.1). */
export const TmfResponse = {
  FUNCTION_COMPLETE: 0,
  TASK_DOES_NOT_EXIST: 1,
  LUN_DOES_NOT_EXIST: 2,
  TASK_STILL_ALLEGIANT: 3,
  REASSIGNMENT_NOT_SUPPORTED: 4,
  FUNCTION_NOT_SUPPORTED: 5,
  AUTHORIZATION_FAILED: 6,
  FUNCTION_REJECTED: 255,
} as const

/** Logout reason codes (§11.14.1) and responses (§11.15.1). */
export const LogoutReason = { CLOSE_SESSION: 0, CLOSE_CONNECTION: 1, REMOVE_FOR_RECOVERY: 2 } as const
export const LogoutResponse = { SUCCESS: 0, CID_NOT_FOUND: 1, RECOVERY_NOT_SUPPORTED: 2, CLEANUP_FAILED: 3 } as const

// ---- LUN field (SAM-5 §4.7) ----------------------------------------------------

/**
 * A LUN number from the 8-byte LUN field: peripheral (00b) or flat (01b)
 * addressing of the first level. Anything else (further levels, other
 * methods) decodes to -1: no such LUN here.
 */
export function decodeLun(buf: Uint8Array, offset: number): number {
  const method = buf[offset] >> 6
  for (let i = 2; i < 8; i++) if (buf[offset + i] !== 0) return -1
  if (method === 0) return buf[offset] === 0 ? buf[offset + 1] : -1
  if (method === 1) return ((buf[offset] & 0x3f) << 8) | buf[offset + 1]
  return -1
}

/** Peripheral addressing below 256, flat space addressing up to 16383. */
export function encodeLun(n: number, buf: Uint8Array, offset: number): void {
  buf.fill(0, offset, offset + 8)
  if (n < 0) {
    buf[offset] = 0xff
    buf[offset + 1] = 0xff
    return
  }
  if (n < 256) buf[offset + 1] = n
  else {
    buf[offset] = 0x40 | ((n >> 8) & 0x3f)
    buf[offset + 1] = n & 0xff
  }
}

// ---- the codec -------------------------------------------------------------------

function shiftOf(mask: number): number {
  let s = 0
  while (((mask >> s) & 1) === 0) s++
  return s
}

/** Writes the 48-byte BHS of `l` at `offset` (reserved bytes zero); returns 48. */
export function encodeBhs<L extends PduLayout>(l: L, v: Partial<BhsOf<L>>, buf: Buffer, offset = 0): number {
  if (buf.length - offset < BHS_SIZE) throw new RangeError(`${l.name}: needs ${BHS_SIZE} bytes at offset ${offset}, buffer has ${buf.length - offset}`)
  buf.fill(0, offset, offset + BHS_SIZE)
  buf[offset] = l.opcode
  const values = v as Record<string, unknown>
  for (const [name, s] of Object.entries(l.fields)) {
    const x = values[name]
    if (x === undefined) continue
    const at = offset + s.offset
    switch (s.kind) {
      case 'u8':
        buf[at] = (x as number) & 0xff
        break
      case 'u16':
        buf.writeUInt16BE((x as number) & 0xffff, at)
        break
      case 'u24':
        buf.writeUIntBE((x as number) & 0xffffff, at, 3)
        break
      case 'u32':
        buf.writeUInt32BE((x as number) >>> 0, at)
        break
      case 'flag':
        if (x) buf[at] |= s.mask!
        break
      case 'bits':
        buf[at] |= ((x as number) << shiftOf(s.mask!)) & s.mask!
        break
      case 'lun':
        encodeLun(x as number, buf, at)
        break
      case 'bytes': {
        const b = x as Buffer
        b.copy(buf, at, 0, Math.min(b.length, s.length))
        break
      }
    }
  }
  return BHS_SIZE
}

/** Reads the BHS at `offset` as layout `l` (the opcode must match). */
export function decodeBhs<L extends PduLayout>(l: L, buf: Buffer, offset = 0): BhsOf<L> {
  if (buf.length - offset < BHS_SIZE) throw new DecodeError(l.name, `needs ${BHS_SIZE} bytes, got ${Math.max(0, buf.length - offset)}`)
  const op = buf[offset] & 0x3f
  if (op !== l.opcode) throw new DecodeError(l.name, `opcode is 0x${op.toString(16)}, expected 0x${l.opcode.toString(16)}`)
  const out: Record<string, unknown> = {}
  for (const [name, s] of Object.entries(l.fields)) {
    const at = offset + s.offset
    switch (s.kind) {
      case 'u8':
        out[name] = buf[at]
        break
      case 'u16':
        out[name] = buf.readUInt16BE(at)
        break
      case 'u24':
        out[name] = buf.readUIntBE(at, 3)
        break
      case 'u32':
        out[name] = buf.readUInt32BE(at)
        break
      case 'flag':
        out[name] = (buf[at] & s.mask!) !== 0
        break
      case 'bits':
        out[name] = (buf[at] & s.mask!) >> shiftOf(s.mask!)
        break
      case 'lun':
        out[name] = decodeLun(buf, at)
        break
      case 'bytes':
        out[name] = Buffer.from(buf.subarray(at, at + s.length))
        break
    }
  }
  return out as BhsOf<L>
}

/** The opcode of a raw BHS. */
export function opcodeOf(bhs: Uint8Array): number {
  return bhs[0] & 0x3f
}

/** The layout for an opcode, or undefined for an unknown opcode. */
export function layoutFor(op: number): PduLayout | undefined {
  return (LAYOUTS as readonly PduLayout[]).find((l) => l.opcode === op)
}

export function pad4(n: number): number {
  return (n + 3) & ~3
}
