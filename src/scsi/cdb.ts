/**
 * CDB layouts (SPC-4 / SBC-3), each declared once as a table of named
 * big-endian fields, with the initiator-side encoders the filesystem layer
 * uses and the decoders the logical unit uses. Response data decoders
 * (INQUIRY, READ CAPACITY, REPORT LUNS) live in data.ts and are re-exported here
 * so an initiator imports one module.
 *
 * Encoders write a CDB at offset 0 of `cdb` (at least 16 bytes, or the CDB's
 * length), zero the bytes they own and return the CDB length. They throw for
 * arguments no CDB can carry: that is a bug in the caller.
 */
import { DecodeError, InternalError } from '../errors.js'
import { readU16BE, readU24BE, readU32BE, readU64BE, writeU16BE, writeU32BE, writeU64BE } from './bytes.js'
import { f, type Layout } from '../util/layout.js'

export {
  decodeReadCapacity10Data,
  decodeReadCapacity16Data,
  decodeReportLunsData,
  decodeStandardInquiry,
  type ReadCapacity10Data,
  type ReadCapacity16Data,
  type StandardInquiry,
} from './data.js'
export { decodeReadFullStatus, decodeReadKeys, decodeReadReservation, decodeReportCapabilities, PrIn, PrOut, PrType } from './pr-data.js'

/** Operation codes fcfs implements or sends. */
export const Op = {
  TEST_UNIT_READY: 0x00,
  REQUEST_SENSE: 0x03,
  READ_6: 0x08,
  WRITE_6: 0x0a,
  INQUIRY: 0x12,
  MODE_SELECT_6: 0x15,
  RESERVE_6: 0x16,
  RELEASE_6: 0x17,
  MODE_SENSE_6: 0x1a,
  START_STOP_UNIT: 0x1b,
  PREVENT_ALLOW_MEDIUM_REMOVAL: 0x1e,
  READ_CAPACITY_10: 0x25,
  READ_10: 0x28,
  WRITE_10: 0x2a,
  WRITE_AND_VERIFY_10: 0x2e,
  VERIFY_10: 0x2f,
  PRE_FETCH_10: 0x34,
  SYNCHRONIZE_CACHE_10: 0x35,
  READ_DEFECT_DATA_10: 0x37,
  WRITE_SAME_10: 0x41,
  UNMAP: 0x42,
  SANITIZE: 0x48,
  MODE_SELECT_10: 0x55,
  MODE_SENSE_10: 0x5a,
  PERSISTENT_RESERVE_IN: 0x5e,
  PERSISTENT_RESERVE_OUT: 0x5f,
  EXTENDED_COPY: 0x83,
  RECEIVE_COPY_RESULTS: 0x84,
  READ_16: 0x88,
  COMPARE_AND_WRITE: 0x89,
  WRITE_16: 0x8a,
  ORWRITE_16: 0x8b,
  WRITE_AND_VERIFY_16: 0x8e,
  VERIFY_16: 0x8f,
  PRE_FETCH_16: 0x90,
  SYNCHRONIZE_CACHE_16: 0x91,
  WRITE_SAME_16: 0x93,
  WRITE_ATOMIC_16: 0x9c,
  SERVICE_ACTION_IN_16: 0x9e,
  REPORT_LUNS: 0xa0,
  MAINTENANCE_IN: 0xa3,
  READ_12: 0xa8,
  WRITE_12: 0xaa,
  WRITE_AND_VERIFY_12: 0xae,
  VERIFY_12: 0xaf,
  READ_DEFECT_DATA_12: 0xb7,
} as const

/** Service actions of MAINTENANCE IN (0xA3). */
export const MaintenanceIn = {
  REPORT_TARGET_PORT_GROUPS: 0x0a,
  REPORT_SUPPORTED_OPERATION_CODES: 0x0c,
} as const

/** Service actions of SERVICE ACTION IN(16) (0x9E). */
export const ServiceActionIn16 = {
  READ_CAPACITY_16: 0x10,
  GET_LBA_STATUS: 0x12,
} as const

/** Bits in byte 1 of READ/WRITE(10/12/16). */
export const RwFlags = {
  DPO: 0x10, // disable page out: do not keep this data in cache
  FUA: 0x08, // force unit access: the write is durable before GOOD
} as const

/** Bit in byte 1 of INQUIRY. */
export const INQUIRY_EVPD = 0x01
/** Bit in byte 1 of REQUEST SENSE. */
export const REQUEST_SENSE_DESC = 0x01
/** Bit in byte 1 of SYNCHRONIZE CACHE(10/16). */
export const SYNC_CACHE_IMMED = 0x02
/** Bit in the PMI byte of READ CAPACITY(10/16). */
export const READ_CAPACITY_PMI = 0x01

// ---- layouts -------------------------------------------------------------

export const READ_WRITE_6 = {
  name: 'READ/WRITE(6)',
  size: 6,
  // lba is 21 bits: byte 1 bits 4..0 and bytes 2..3; bits 7..5 of byte 1 are reserved.
  fields: { opcode: f(0), lba: f(1, 3), length: f(4), control: f(5) },
} as const satisfies Layout

export const READ_WRITE_10 = {
  name: 'READ/WRITE(10)',
  size: 10,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 4), group: f(6), length: f(7, 2), control: f(9) },
} as const satisfies Layout

export const READ_WRITE_12 = {
  name: 'READ/WRITE(12)',
  size: 12,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 4), length: f(6, 4), group: f(10), control: f(11) },
} as const satisfies Layout

export const READ_WRITE_16 = {
  name: 'READ/WRITE(16)',
  size: 16,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 8), length: f(10, 4), group: f(14), control: f(15) },
} as const satisfies Layout

/** SBC-4 5.48: byte 1 is WRPROTECT (7..5) | DPO | FUA, as in WRITE(16); the 32-bit length becomes ATOMIC BOUNDARY + TRANSFER LENGTH. */
export const WRITE_ATOMIC_16 = {
  name: 'WRITE ATOMIC(16)',
  size: 16,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 8), boundary: f(10, 2), length: f(12, 2), group: f(14), control: f(15) },
} as const satisfies Layout

export const TEST_UNIT_READY = {
  name: 'TEST UNIT READY',
  size: 6,
  fields: { opcode: f(0), reserved: f(1, 4), control: f(5) },
} as const satisfies Layout

export const REQUEST_SENSE = {
  name: 'REQUEST SENSE',
  size: 6,
  fields: { opcode: f(0), flags: f(1), reserved: f(2, 2), allocLen: f(4), control: f(5) },
} as const satisfies Layout

export const INQUIRY = {
  name: 'INQUIRY',
  size: 6,
  fields: { opcode: f(0), flags: f(1), page: f(2), allocLen: f(3, 2), control: f(5) },
} as const satisfies Layout

export const READ_CAPACITY_10 = {
  name: 'READ CAPACITY(10)',
  size: 10,
  fields: { opcode: f(0), reserved1: f(1), lba: f(2, 4), reserved6: f(6, 2), pmi: f(8), control: f(9) },
} as const satisfies Layout

export const READ_CAPACITY_16 = {
  name: 'READ CAPACITY(16)',
  size: 16,
  fields: { opcode: f(0), serviceAction: f(1), lba: f(2, 8), allocLen: f(10, 4), pmi: f(14), control: f(15) },
} as const satisfies Layout

export const REPORT_LUNS = {
  name: 'REPORT LUNS',
  size: 12,
  fields: { opcode: f(0), reserved1: f(1), selectReport: f(2), reserved3: f(3, 3), allocLen: f(6, 4), reserved10: f(10), control: f(11) },
} as const satisfies Layout

export const SYNCHRONIZE_CACHE_10 = {
  name: 'SYNCHRONIZE CACHE(10)',
  size: 10,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 4), group: f(6), blocks: f(7, 2), control: f(9) },
} as const satisfies Layout

export const SYNCHRONIZE_CACHE_16 = {
  name: 'SYNCHRONIZE CACHE(16)',
  size: 16,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 8), blocks: f(10, 4), group: f(14), control: f(15) },
} as const satisfies Layout

export const PERSISTENT_RESERVE_IN = {
  name: 'PERSISTENT RESERVE IN',
  size: 10,
  fields: { opcode: f(0), serviceAction: f(1), reserved2: f(2, 5), allocLen: f(7, 2), control: f(9) },
} as const satisfies Layout

export const PERSISTENT_RESERVE_OUT = {
  name: 'PERSISTENT RESERVE OUT',
  size: 10,
  // scopeType: SCOPE (7..4) | TYPE (3..0)
  fields: { opcode: f(0), serviceAction: f(1), scopeType: f(2), reserved3: f(3, 2), paramLen: f(5, 4), control: f(9) },
} as const satisfies Layout

/**
 * The fields of a 10-byte CDB that carries a parameter list: opcode, flags, five reserved bytes,
 * PARAMETER LIST LENGTH at 7..8, CONTROL (MODE SELECT(10), SANITIZE, …: one shape, several commands).
 */
export const PARAMETER_LIST_CDB_10_FIELDS = { opcode: f(0), flags: f(1), reserved2: f(2, 5), paramLen: f(7, 2), control: f(9) } as const

/** RESERVE(6) and RELEASE(6) (SPC-2 7.21, 7.17): byte 1's 3RDPTY and EXTENT and bytes 2..4 are obsolete and must be 0. */
export const RESERVE_RELEASE_6 = {
  name: 'RESERVE(6)/RELEASE(6)',
  size: 6,
  fields: { opcode: f(0), obsolete1: f(1, 4), control: f(5) },
} as const satisfies Layout

/** EXTENDED COPY(LID1) (SPC-4 6.4): service action 00h in byte 1, then the parameter list length. */
export const EXTENDED_COPY = {
  name: 'EXTENDED COPY(LID1)',
  size: 16,
  fields: { opcode: f(0), serviceAction: f(1), reserved2: f(2, 8), paramLen: f(10, 4), reserved14: f(14), control: f(15) },
} as const satisfies Layout

/** RECEIVE COPY RESULTS (SPC-4 6.18, LID1 service actions: ReceiveCopy in xcopy-data.ts). */
export const RECEIVE_COPY_RESULTS = {
  name: 'RECEIVE COPY RESULTS',
  size: 16,
  fields: { opcode: f(0), serviceAction: f(1), listId: f(2), reserved3: f(3, 7), allocLen: f(10, 4), reserved14: f(14), control: f(15) },
} as const satisfies Layout

/** Every CDB layout, for the layout test. */
export const CDB_LAYOUTS: readonly Layout[] = [
  READ_WRITE_6,
  READ_WRITE_10,
  READ_WRITE_12,
  READ_WRITE_16,
  WRITE_ATOMIC_16,
  TEST_UNIT_READY,
  REQUEST_SENSE,
  INQUIRY,
  READ_CAPACITY_10,
  READ_CAPACITY_16,
  REPORT_LUNS,
  SYNCHRONIZE_CACHE_10,
  SYNCHRONIZE_CACHE_16,
  PERSISTENT_RESERVE_IN,
  PERSISTENT_RESERVE_OUT,
  RESERVE_RELEASE_6,
  EXTENDED_COPY,
  RECEIVE_COPY_RESULTS,
]

// ---- encoders ------------------------------------------------------------

const U32_LIMIT = 0x1_0000_0000

function need(cdb: Uint8Array, size: number, what: string): void {
  if (cdb.length < size) throw new InternalError(`${what}: CDB buffer is ${cdb.length} bytes, needs ${size}`)
  // A loop, not fill(): for 6..16 bytes Buffer#fill's argument checks cost more than the stores (per I/O).
  for (let i = 0; i < size; i++) cdb[i] = 0
}

function checkUint(v: number, max: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0 || v > max) throw new InternalError(`${what} ${v} is not an integer in 0..${max}`)
}

export interface ReadWriteOptions {
  /** Force unit access: GOOD only once the data is durable. */
  readonly fua?: boolean
  /** Disable page out. */
  readonly dpo?: boolean
}

/**
 * READ or WRITE of `blocks` blocks at `lba`: (10) when the range ends within
 * 32-bit LBAs and blocks ≤ 0xFFFF, else (16). Returns the CDB length.
 */
export function encodeReadWrite(op: 'read' | 'write', lba: number, blocks: number, cdb: Uint8Array, opts?: ReadWriteOptions): number {
  checkUint(lba, Number.MAX_SAFE_INTEGER, 'LBA')
  checkUint(blocks, 0xffffffff, 'block count')
  const flags = (opts?.fua ? RwFlags.FUA : 0) | (opts?.dpo ? RwFlags.DPO : 0)
  if (lba + blocks <= U32_LIMIT && blocks <= 0xffff) {
    const L = READ_WRITE_10
    need(cdb, L.size, 'READ/WRITE(10)')
    cdb[L.fields.opcode.offset] = op === 'read' ? Op.READ_10 : Op.WRITE_10
    cdb[L.fields.flags.offset] = flags
    writeU32BE(cdb, L.fields.lba.offset, lba)
    writeU16BE(cdb, L.fields.length.offset, blocks)
    return L.size
  }
  return encodeReadWrite16(op, lba, blocks, cdb, opts)
}

/** READ(16) or WRITE(16) whatever the range (a remote target gets one CDB shape). Returns 16. */
export function encodeReadWrite16(op: 'read' | 'write', lba: number, blocks: number, cdb: Uint8Array, opts?: ReadWriteOptions): number {
  checkUint(lba, Number.MAX_SAFE_INTEGER, 'LBA')
  checkUint(blocks, 0xffffffff, 'block count')
  const L = READ_WRITE_16
  need(cdb, L.size, 'READ/WRITE(16)')
  cdb[L.fields.opcode.offset] = op === 'read' ? Op.READ_16 : Op.WRITE_16
  cdb[L.fields.flags.offset] = (opts?.fua ? RwFlags.FUA : 0) | (opts?.dpo ? RwFlags.DPO : 0)
  writeU64BE(cdb, L.fields.lba.offset, lba)
  writeU32BE(cdb, L.fields.length.offset, blocks)
  return L.size
}

/** WRITE ATOMIC(16) of `blocks` (≤ 0xFFFF) at `lba`, ATOMIC BOUNDARY `boundary` (0: the whole write is one atomic write). Returns 16. */
export function encodeWriteAtomic16(lba: number, blocks: number, cdb: Uint8Array, opts?: ReadWriteOptions & { readonly boundary?: number }): number {
  checkUint(lba, Number.MAX_SAFE_INTEGER, 'LBA')
  checkUint(blocks, 0xffff, 'block count')
  checkUint(opts?.boundary ?? 0, 0xffff, 'atomic boundary')
  const L = WRITE_ATOMIC_16.fields
  need(cdb, WRITE_ATOMIC_16.size, 'WRITE ATOMIC(16)')
  cdb[L.opcode.offset] = Op.WRITE_ATOMIC_16
  cdb[L.flags.offset] = (opts?.fua ? RwFlags.FUA : 0) | (opts?.dpo ? RwFlags.DPO : 0)
  writeU64BE(cdb, L.lba.offset, lba)
  writeU16BE(cdb, L.boundary.offset, opts?.boundary ?? 0)
  writeU16BE(cdb, L.length.offset, blocks)
  return WRITE_ATOMIC_16.size
}

export function encodeTestUnitReady(cdb: Uint8Array): number {
  need(cdb, TEST_UNIT_READY.size, 'TEST UNIT READY')
  cdb[0] = Op.TEST_UNIT_READY
  return TEST_UNIT_READY.size
}

/** REQUEST SENSE; `desc` asks for descriptor-format sense data. */
export function encodeRequestSense(allocLen: number, cdb: Uint8Array, desc = false): number {
  const L = REQUEST_SENSE
  checkUint(allocLen, 0xff, 'REQUEST SENSE allocation length')
  need(cdb, L.size, L.name)
  cdb[0] = Op.REQUEST_SENSE
  cdb[L.fields.flags.offset] = desc ? REQUEST_SENSE_DESC : 0
  cdb[L.fields.allocLen.offset] = allocLen
  return L.size
}

/** INQUIRY: standard data (evpd false, page 0) or the VPD page `page`. */
export function encodeInquiry(evpd: boolean, page: number, allocLen: number, cdb: Uint8Array): number {
  const L = INQUIRY
  checkUint(page, 0xff, 'INQUIRY page code')
  checkUint(allocLen, 0xffff, 'INQUIRY allocation length')
  need(cdb, L.size, L.name)
  cdb[0] = Op.INQUIRY
  cdb[L.fields.flags.offset] = evpd ? INQUIRY_EVPD : 0
  cdb[L.fields.page.offset] = page
  writeU16BE(cdb, L.fields.allocLen.offset, allocLen)
  return L.size
}

export function encodeReadCapacity10(cdb: Uint8Array): number {
  need(cdb, READ_CAPACITY_10.size, READ_CAPACITY_10.name)
  cdb[0] = Op.READ_CAPACITY_10
  return READ_CAPACITY_10.size
}

export function encodeReadCapacity16(allocLen: number, cdb: Uint8Array): number {
  const L = READ_CAPACITY_16
  checkUint(allocLen, 0xffffffff, 'READ CAPACITY(16) allocation length')
  need(cdb, L.size, L.name)
  cdb[0] = Op.SERVICE_ACTION_IN_16
  cdb[L.fields.serviceAction.offset] = ServiceActionIn16.READ_CAPACITY_16
  writeU32BE(cdb, L.fields.allocLen.offset, allocLen)
  return L.size
}

/** REPORT LUNS; selectReport 0 = all logical units. */
export function encodeReportLuns(allocLen: number, cdb: Uint8Array, selectReport = 0): number {
  const L = REPORT_LUNS
  checkUint(allocLen, 0xffffffff, 'REPORT LUNS allocation length')
  checkUint(selectReport, 0xff, 'REPORT LUNS select report')
  need(cdb, L.size, L.name)
  cdb[0] = Op.REPORT_LUNS
  cdb[L.fields.selectReport.offset] = selectReport
  writeU32BE(cdb, L.fields.allocLen.offset, allocLen)
  return L.size
}

/** SYNCHRONIZE CACHE(10) of `blocks` blocks from `lba`; 0 blocks means through the last block. */
export function encodeSyncCache10(lba: number, blocks: number, cdb: Uint8Array, immed = false): number {
  const L = SYNCHRONIZE_CACHE_10
  checkUint(lba, 0xffffffff, 'SYNCHRONIZE CACHE(10) LBA')
  checkUint(blocks, 0xffff, 'SYNCHRONIZE CACHE(10) block count')
  need(cdb, L.size, L.name)
  cdb[0] = Op.SYNCHRONIZE_CACHE_10
  cdb[L.fields.flags.offset] = immed ? SYNC_CACHE_IMMED : 0
  writeU32BE(cdb, L.fields.lba.offset, lba)
  writeU16BE(cdb, L.fields.blocks.offset, blocks)
  return L.size
}

/** SYNCHRONIZE CACHE(16); 0 blocks means through the last block. */
export function encodeSyncCache16(lba: number, blocks: number, cdb: Uint8Array, immed = false): number {
  const L = SYNCHRONIZE_CACHE_16
  checkUint(lba, Number.MAX_SAFE_INTEGER, 'SYNCHRONIZE CACHE(16) LBA')
  checkUint(blocks, 0xffffffff, 'SYNCHRONIZE CACHE(16) block count')
  need(cdb, L.size, L.name)
  cdb[0] = Op.SYNCHRONIZE_CACHE_16
  cdb[L.fields.flags.offset] = immed ? SYNC_CACHE_IMMED : 0
  writeU64BE(cdb, L.fields.lba.offset, lba)
  writeU32BE(cdb, L.fields.blocks.offset, blocks)
  return L.size
}

/** PERSISTENT RESERVE IN with service action `sa` (PrIn in pr-data.ts). Returns 10. */
export function encodePersistentReserveIn(sa: number, allocLen: number, cdb: Uint8Array): number {
  const L = PERSISTENT_RESERVE_IN
  checkUint(sa, 0x1f, 'PERSISTENT RESERVE IN service action')
  checkUint(allocLen, 0xffff, 'PERSISTENT RESERVE IN allocation length')
  need(cdb, L.size, L.name)
  cdb[0] = Op.PERSISTENT_RESERVE_IN
  cdb[L.fields.serviceAction.offset] = sa
  writeU16BE(cdb, L.fields.allocLen.offset, allocLen)
  return L.size
}

/**
 * PERSISTENT RESERVE OUT with service action `sa` (PrOut in pr-data.ts),
 * TYPE `type` (PrType; 0 where the service action ignores it), LU scope, and
 * `paramLen` bytes of parameter list (24, or more for REGISTER AND MOVE). Returns 10.
 */
export function encodePersistentReserveOut(sa: number, type: number, paramLen: number, cdb: Uint8Array): number {
  const L = PERSISTENT_RESERVE_OUT
  checkUint(sa, 0x1f, 'PERSISTENT RESERVE OUT service action')
  checkUint(type, 0xf, 'PERSISTENT RESERVE OUT type')
  checkUint(paramLen, 0xffffffff, 'PERSISTENT RESERVE OUT parameter list length')
  need(cdb, L.size, L.name)
  cdb[0] = Op.PERSISTENT_RESERVE_OUT
  cdb[L.fields.serviceAction.offset] = sa
  cdb[L.fields.scopeType.offset] = type
  writeU32BE(cdb, L.fields.paramLen.offset, paramLen)
  return L.size
}

/** RESERVE(6) of the whole logical unit (SPC-2). Returns 6. */
export function encodeReserve6(cdb: Uint8Array): number {
  need(cdb, RESERVE_RELEASE_6.size, 'RESERVE(6)')
  cdb[0] = Op.RESERVE_6
  return RESERVE_RELEASE_6.size
}

/** RELEASE(6) (SPC-2). Returns 6. */
export function encodeRelease6(cdb: Uint8Array): number {
  need(cdb, RESERVE_RELEASE_6.size, 'RELEASE(6)')
  cdb[0] = Op.RELEASE_6
  return RESERVE_RELEASE_6.size
}

/** EXTENDED COPY(LID1) with a parameter list of `paramLen` bytes. Returns 16. */
export function encodeExtendedCopy(paramLen: number, cdb: Uint8Array): number {
  const L = EXTENDED_COPY
  checkUint(paramLen, 0xffffffff, 'EXTENDED COPY parameter list length')
  need(cdb, L.size, L.name)
  cdb[0] = Op.EXTENDED_COPY
  writeU32BE(cdb, L.fields.paramLen.offset, paramLen)
  return L.size
}

/** RECEIVE COPY RESULTS with service action `sa` for LIST IDENTIFIER `listId`. Returns 16. */
export function encodeReceiveCopyResults(sa: number, listId: number, allocLen: number, cdb: Uint8Array): number {
  const L = RECEIVE_COPY_RESULTS
  checkUint(sa, 0x1f, 'RECEIVE COPY RESULTS service action')
  checkUint(listId, 0xff, 'RECEIVE COPY RESULTS list identifier')
  checkUint(allocLen, 0xffffffff, 'RECEIVE COPY RESULTS allocation length')
  need(cdb, L.size, L.name)
  cdb[0] = Op.RECEIVE_COPY_RESULTS
  cdb[L.fields.serviceAction.offset] = sa
  cdb[L.fields.listId.offset] = listId
  writeU32BE(cdb, L.fields.allocLen.offset, allocLen)
  return L.size
}

// ---- decoders ------------------------------------------------------------

export interface ReadWriteCdb {
  readonly write: boolean
  /** 6, 10, 12 or 16. */
  readonly cdbLength: number
  readonly lba: number
  readonly blocks: number
  readonly fua: boolean
  readonly dpo: boolean
  /** Byte offset of the TRANSFER LENGTH field, for sense-key-specific pointers. */
  readonly lengthOffset: number
}

/**
 * Decodes READ/WRITE(6/10/12/16). A (6) transfer length of 0 means 256 blocks
 * (SBC-3 5.15); in the others 0 means no blocks. Throws DecodeError for any
 * other opcode or a CDB too short for its opcode.
 */
export function decodeReadWrite(cdb: Uint8Array): ReadWriteCdb {
  if (cdb.length === 0) throw new DecodeError('CDB', 'empty CDB')
  const op = cdb[0]
  switch (op) {
    case Op.READ_6:
    case Op.WRITE_6: {
      const L = READ_WRITE_6.fields
      if (cdb.length < READ_WRITE_6.size) throw short(cdb, READ_WRITE_6)
      const n = cdb[L.length.offset]
      return {
        write: op === Op.WRITE_6,
        cdbLength: READ_WRITE_6.size,
        lba: readU24BE(cdb, L.lba.offset) & 0x1fffff,
        blocks: n === 0 ? 256 : n,
        fua: false,
        dpo: false,
        lengthOffset: L.length.offset,
      }
    }
    case Op.READ_10:
    case Op.WRITE_10:
      if (cdb.length < READ_WRITE_10.size) throw short(cdb, READ_WRITE_10)
      return decodeFlagged(cdb, READ_WRITE_10, op === Op.WRITE_10, readU32BE(cdb, READ_WRITE_10.fields.lba.offset), readU16BE(cdb, READ_WRITE_10.fields.length.offset))
    case Op.READ_12:
    case Op.WRITE_12:
      if (cdb.length < READ_WRITE_12.size) throw short(cdb, READ_WRITE_12)
      return decodeFlagged(cdb, READ_WRITE_12, op === Op.WRITE_12, readU32BE(cdb, READ_WRITE_12.fields.lba.offset), readU32BE(cdb, READ_WRITE_12.fields.length.offset))
    case Op.READ_16:
    case Op.WRITE_16:
      if (cdb.length < READ_WRITE_16.size) throw short(cdb, READ_WRITE_16)
      return decodeFlagged(cdb, READ_WRITE_16, op === Op.WRITE_16, readU64BE(cdb, READ_WRITE_16.fields.lba.offset), readU32BE(cdb, READ_WRITE_16.fields.length.offset))
    default:
      throw new DecodeError('CDB', `opcode 0x${op.toString(16).padStart(2, '0')} is not a READ or WRITE`)
  }
}

/** READ/WRITE(10/12/16), whose length the caller checked: one flags byte; LBA and length read at their widths. */
function decodeFlagged(cdb: Uint8Array, l: typeof READ_WRITE_10 | typeof READ_WRITE_12 | typeof READ_WRITE_16, write: boolean, lba: number, blocks: number): ReadWriteCdb {
  const flags = cdb[l.fields.flags.offset]
  return {
    write,
    cdbLength: l.size,
    lba,
    blocks,
    fua: (flags & RwFlags.FUA) !== 0,
    dpo: (flags & RwFlags.DPO) !== 0,
    lengthOffset: l.fields.length.offset,
  }
}

function short(cdb: Uint8Array, l: Layout): DecodeError {
  return new DecodeError('CDB', `${l.name} needs ${l.size} bytes, got ${cdb.length}`)
}

export interface WriteAtomicCdb {
  readonly lba: number
  readonly blocks: number
  /** ATOMIC BOUNDARY in blocks; 0: one atomic write of the whole range. */
  readonly boundary: number
  readonly fua: boolean
  readonly dpo: boolean
}

/** Decodes WRITE ATOMIC(16); throws DecodeError for another opcode or a short CDB. */
export function decodeWriteAtomic16(cdb: Uint8Array): WriteAtomicCdb {
  if (cdb.length < WRITE_ATOMIC_16.size) throw short(cdb, WRITE_ATOMIC_16)
  if (cdb[0] !== Op.WRITE_ATOMIC_16) throw new DecodeError('CDB', `opcode 0x${cdb[0].toString(16).padStart(2, '0')} is not WRITE ATOMIC(16)`)
  const L = WRITE_ATOMIC_16.fields
  const flags = cdb[L.flags.offset]
  return {
    lba: readU64BE(cdb, L.lba.offset),
    blocks: readU16BE(cdb, L.length.offset),
    boundary: readU16BE(cdb, L.boundary.offset),
    fua: (flags & RwFlags.FUA) !== 0,
    dpo: (flags & RwFlags.DPO) !== 0,
  }
}

export interface SyncCacheCdb {
  readonly lba: number
  /** 0 means through the last block. */
  readonly blocks: number
  readonly immed: boolean
}

/** Decodes SYNCHRONIZE CACHE(10) or (16). */
export function decodeSyncCache(cdb: Uint8Array): SyncCacheCdb {
  if (cdb.length === 0) throw new DecodeError('CDB', 'empty CDB')
  if (cdb[0] === Op.SYNCHRONIZE_CACHE_10) {
    const L = SYNCHRONIZE_CACHE_10
    if (cdb.length < L.size) throw short(cdb, L)
    return {
      lba: readU32BE(cdb, L.fields.lba.offset),
      blocks: readU16BE(cdb, L.fields.blocks.offset),
      immed: (cdb[L.fields.flags.offset] & SYNC_CACHE_IMMED) !== 0,
    }
  }
  if (cdb[0] === Op.SYNCHRONIZE_CACHE_16) {
    const L = SYNCHRONIZE_CACHE_16
    if (cdb.length < L.size) throw short(cdb, L)
    return {
      lba: readU64BE(cdb, L.fields.lba.offset),
      blocks: readU32BE(cdb, L.fields.blocks.offset),
      immed: (cdb[L.fields.flags.offset] & SYNC_CACHE_IMMED) !== 0,
    }
  }
  throw new DecodeError('CDB', `opcode 0x${cdb[0].toString(16).padStart(2, '0')} is not SYNCHRONIZE CACHE`)
}
