/**
 * Ring entries of the emulated ISP2300-style HBA. Every entry is 64 bytes,
 * little-endian, and starts with the same 4-byte header. Each layout below is
 * a table of named offsets (the one place it is declared) next to its codec.
 * Facts from the Linux qla2xxx headers (qla_fw.h / qla_def.h); code our own.
 *
 *   0        1          2            3
 *   +--------+----------+------------+--------------+
 *   | type   | count    | sys_define | entry_status |   header (all entries)
 *   +--------+----------+------------+--------------+
 */
import { DecodeError } from '../errors.js'

export const ENTRY_SIZE = 64

export interface Field {
  readonly offset: number
  readonly size: number
}

/** Entry types (byte 0). */
export const EntryType = {
  COMMAND_T3: 0x19, // Command Type 3: 64-bit data segment addresses
  CONTINUATION_T1: 0x0a, // Continuation Type 1: five more 64-bit segments
  STATUS_T0: 0x03, // Status Type 0: completion of one command
  STATUS_CONT: 0x10, // Status Continuation: sense bytes past the first 32
  MARKER: 0x04, // Marker: sent by the driver after a reset / LIP
} as const

/** entry_status bits (byte 3) set by the firmware on entries it rejects. */
export const EntryStatus = {
  BUSY: 0x02,
  BAD_TYPE: 0x04,
  BAD_PARAMETER: 0x08,
  BAD_COUNT: 0x10,
} as const

/** Command Type 3 control_flags. */
export const ControlFlags = {
  SIMPLE_TAG: 0x0008,
  HEAD_OF_QUEUE: 0x0002,
  ORDERED: 0x0004,
  DATA_IN: 0x0020, // read: target → host memory
  DATA_OUT: 0x0040, // write: host memory → target
} as const

/** comp_status values in Status Type 0. */
export const CompStatus = {
  COMPLETE: 0x00,
  DMA_ERROR: 0x02, // a data segment address did not resolve
  RESET: 0x04, // bus/target reset
  ABORTED: 0x05, // aborted by an abort command or a reset
  TIMEOUT: 0x06, // the firmware timed the command out
  DATA_OVERRUN: 0x07, // the target had more data than byte_count
  DATA_UNDERRUN: 0x15, // fewer bytes moved than byte_count (see residual)
  QUEUE_FULL: 0x1c, // the target answered TASK SET FULL
  PORT_UNAVAILABLE: 0x28, // the target port is not logged in / link down
  PORT_LOGGED_OUT: 0x29, // the target port logged out
} as const

/** scsi_status word flags in Status Type 0 (low byte = SCSI status byte). */
export const ScsiStatusFlags = {
  RESID_OVER: 0x0400,
  RESID_UNDER: 0x0800,
  SENSE_VALID: 0x0200,
  RSP_INFO_VALID: 0x0100,
} as const

/** Marker modifiers. */
export const MarkerModifier = {
  SYNC_ID_LUN: 0, // one LUN of one target
  SYNC_ID: 1, // all LUNs of one target
  SYNC_ALL: 2, // everything
} as const

const HEADER = {
  entryType: { offset: 0, size: 1 },
  entryCount: { offset: 1, size: 1 },
  sysDefine: { offset: 2, size: 1 },
  entryStatus: { offset: 3, size: 1 },
} as const

/** A 64-bit data segment descriptor: { address u64, length u32 } = 12 bytes. */
export const DSEG_SIZE = 12
export const DSEGS_IN_COMMAND = 2
export const DSEGS_IN_CONTINUATION = 5

export const COMMAND_T3 = {
  ...HEADER,
  handle: { offset: 4, size: 4 },
  target: { offset: 8, size: 2 }, // loop id / target handle
  lun: { offset: 10, size: 2 },
  controlFlags: { offset: 12, size: 2 },
  reserved1: { offset: 14, size: 2 },
  timeout: { offset: 16, size: 2 }, // seconds; 0 = no firmware timeout
  dsegCount: { offset: 18, size: 2 },
  cdb: { offset: 20, size: 16 },
  byteCount: { offset: 36, size: 4 },
  dseg0: { offset: 40, size: DSEG_SIZE },
  dseg1: { offset: 52, size: DSEG_SIZE },
} as const satisfies Record<string, Field>

export const CONTINUATION_T1 = {
  ...HEADER,
  dseg0: { offset: 4, size: DSEG_SIZE },
  dseg1: { offset: 16, size: DSEG_SIZE },
  dseg2: { offset: 28, size: DSEG_SIZE },
  dseg3: { offset: 40, size: DSEG_SIZE },
  dseg4: { offset: 52, size: DSEG_SIZE },
} as const satisfies Record<string, Field>

export const STATUS_T0 = {
  ...HEADER,
  handle: { offset: 4, size: 4 },
  scsiStatus: { offset: 8, size: 2 },
  compStatus: { offset: 10, size: 2 },
  stateFlags: { offset: 12, size: 2 },
  statusFlags: { offset: 14, size: 2 },
  rspInfoLen: { offset: 16, size: 2 },
  senseLen: { offset: 18, size: 2 },
  residual: { offset: 20, size: 4 },
  rspInfo: { offset: 24, size: 8 },
  sense: { offset: 32, size: 32 },
} as const satisfies Record<string, Field>

export const STATUS_CONT = {
  ...HEADER,
  sense: { offset: 4, size: 60 },
} as const satisfies Record<string, Field>

export const MARKER = {
  ...HEADER,
  handle: { offset: 4, size: 4 },
  target: { offset: 8, size: 2 },
  modifier: { offset: 10, size: 1 },
  flags: { offset: 11, size: 1 },
  sequence: { offset: 12, size: 2 },
  lun: { offset: 14, size: 2 },
} as const satisfies Record<string, Field>

export const LAYOUTS = { COMMAND_T3, CONTINUATION_T1, STATUS_T0, STATUS_CONT, MARKER } as const

/** Written by the driver over a processed response entry (qla2xxx's RESPONSE_PROCESSED). */
export const RESPONSE_PROCESSED = 0xdeaddead

/** Entries needed for a command with `segments` data segments. */
export function entriesFor(segments: number): number {
  if (segments <= DSEGS_IN_COMMAND) return 1
  return 1 + Math.ceil((segments - DSEGS_IN_COMMAND) / DSEGS_IN_CONTINUATION)
}

// ---- 64-bit little-endian helpers. Bus addresses stay below 2^53. ----

export function writeU64LE(view: Buffer, offset: number, value: number): void {
  view.writeUInt32LE(value % 0x1_0000_0000, offset)
  view.writeUInt32LE(Math.floor(value / 0x1_0000_0000), offset + 4)
}

export function readU64LE(view: Buffer, offset: number): number {
  return view.readUInt32LE(offset) + view.readUInt32LE(offset + 4) * 0x1_0000_0000
}

export interface Segment {
  address: number
  length: number
}

function checkRoom(view: Buffer, offset: number, what: string): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + ENTRY_SIZE > view.length) {
    throw new DecodeError(what, `needs ${ENTRY_SIZE} bytes at offset ${offset}, buffer has ${view.length}`)
  }
}

// ---- Command Type 3 ----

export interface CommandT3 {
  entryCount: number
  entryStatus: number
  handle: number
  target: number
  lun: number
  controlFlags: number
  timeout: number
  dsegCount: number
  cdb: Uint8Array // 16 bytes
  byteCount: number
  /** The (up to two) segments held in the command entry itself. */
  segments: Segment[]
}

export function encodeCommandT3(v: CommandT3, view: Buffer, offset: number): number {
  checkRoom(view, offset, 'Command Type 3')
  view.fill(0, offset, offset + ENTRY_SIZE)
  view[offset + COMMAND_T3.entryType.offset] = EntryType.COMMAND_T3
  view[offset + COMMAND_T3.entryCount.offset] = v.entryCount
  view[offset + COMMAND_T3.entryStatus.offset] = v.entryStatus
  view.writeUInt32LE(v.handle >>> 0, offset + COMMAND_T3.handle.offset)
  view.writeUInt16LE(v.target, offset + COMMAND_T3.target.offset)
  view.writeUInt16LE(v.lun, offset + COMMAND_T3.lun.offset)
  view.writeUInt16LE(v.controlFlags, offset + COMMAND_T3.controlFlags.offset)
  view.writeUInt16LE(v.timeout, offset + COMMAND_T3.timeout.offset)
  view.writeUInt16LE(v.dsegCount, offset + COMMAND_T3.dsegCount.offset)
  view.set(v.cdb.subarray(0, 16), offset + COMMAND_T3.cdb.offset)
  view.writeUInt32LE(v.byteCount >>> 0, offset + COMMAND_T3.byteCount.offset)
  for (let i = 0; i < Math.min(DSEGS_IN_COMMAND, v.segments.length); i++) {
    writeSegment(view, offset + COMMAND_T3.dseg0.offset + i * DSEG_SIZE, v.segments[i])
  }
  return ENTRY_SIZE
}

export function decodeCommandT3(view: Buffer, offset: number): CommandT3 {
  checkRoom(view, offset, 'Command Type 3')
  const type = view[offset]
  if (type !== EntryType.COMMAND_T3) {
    throw new DecodeError('Command Type 3', `entry type 0x${type.toString(16)} is not 0x19`)
  }
  const dsegCount = view.readUInt16LE(offset + COMMAND_T3.dsegCount.offset)
  const segments: Segment[] = []
  for (let i = 0; i < Math.min(DSEGS_IN_COMMAND, dsegCount); i++) {
    segments.push(readSegment(view, offset + COMMAND_T3.dseg0.offset + i * DSEG_SIZE))
  }
  return {
    entryCount: view[offset + COMMAND_T3.entryCount.offset],
    entryStatus: view[offset + COMMAND_T3.entryStatus.offset],
    handle: view.readUInt32LE(offset + COMMAND_T3.handle.offset),
    target: view.readUInt16LE(offset + COMMAND_T3.target.offset),
    lun: view.readUInt16LE(offset + COMMAND_T3.lun.offset),
    controlFlags: view.readUInt16LE(offset + COMMAND_T3.controlFlags.offset),
    timeout: view.readUInt16LE(offset + COMMAND_T3.timeout.offset),
    dsegCount,
    cdb: Uint8Array.prototype.slice.call(view, offset + COMMAND_T3.cdb.offset, offset + COMMAND_T3.cdb.offset + 16),
    byteCount: view.readUInt32LE(offset + COMMAND_T3.byteCount.offset),
    segments,
  }
}

// ---- Continuation Type 1 ----

export function encodeContinuationT1(segments: Segment[], view: Buffer, offset: number): number {
  checkRoom(view, offset, 'Continuation Type 1')
  if (segments.length > DSEGS_IN_CONTINUATION) {
    throw new DecodeError('Continuation Type 1', `holds ${DSEGS_IN_CONTINUATION} segments, got ${segments.length}`)
  }
  view.fill(0, offset, offset + ENTRY_SIZE)
  view[offset] = EntryType.CONTINUATION_T1
  view[offset + 1] = 1
  for (let i = 0; i < segments.length; i++) {
    writeSegment(view, offset + CONTINUATION_T1.dseg0.offset + i * DSEG_SIZE, segments[i])
  }
  return ENTRY_SIZE
}

/** Reads `count` (≤ 5) segments of a continuation entry. */
export function decodeContinuationT1(view: Buffer, offset: number, count: number): Segment[] {
  checkRoom(view, offset, 'Continuation Type 1')
  if (view[offset] !== EntryType.CONTINUATION_T1) {
    throw new DecodeError('Continuation Type 1', `entry type 0x${view[offset].toString(16)} is not 0x0a`)
  }
  const n = Math.min(count, DSEGS_IN_CONTINUATION)
  const out: Segment[] = []
  for (let i = 0; i < n; i++) out.push(readSegment(view, offset + CONTINUATION_T1.dseg0.offset + i * DSEG_SIZE))
  return out
}

export function writeSegment(view: Buffer, at: number, s: Segment): void {
  writeU64LE(view, at, s.address)
  view.writeUInt32LE(s.length >>> 0, at + 8)
}

export function readSegment(view: Buffer, at: number): Segment {
  return { address: readU64LE(view, at), length: view.readUInt32LE(at + 8) }
}

// ---- Status Type 0 (+ Status Continuation) ----

export interface StatusT0 {
  entryCount: number
  entryStatus: number
  handle: number
  scsiStatus: number // full 16-bit word: status byte + flags
  compStatus: number
  stateFlags: number
  statusFlags: number
  residual: number
  /** Sense bytes (all of them; more than 32 continue in STATUS_CONT entries). */
  sense: Buffer | null
}

/** Sense bytes the Status Type 0 entry holds; the rest go into continuations. */
export const SENSE_IN_STATUS = STATUS_T0.sense.size
export const SENSE_IN_CONT = STATUS_CONT.sense.size

export function statusEntriesFor(senseLength: number): number {
  if (senseLength <= SENSE_IN_STATUS) return 1
  return 1 + Math.ceil((senseLength - SENSE_IN_STATUS) / SENSE_IN_CONT)
}

/**
 * Encodes the status entry only (the first 32 sense bytes). Continuation
 * entries for longer sense are written with encodeStatusCont.
 */
export function encodeStatusT0(v: StatusT0, view: Buffer, offset: number): number {
  checkRoom(view, offset, 'Status Type 0')
  view.fill(0, offset, offset + ENTRY_SIZE)
  view[offset] = EntryType.STATUS_T0
  view[offset + 1] = v.entryCount
  view[offset + 3] = v.entryStatus
  view.writeUInt32LE(v.handle >>> 0, offset + STATUS_T0.handle.offset)
  view.writeUInt16LE(v.scsiStatus, offset + STATUS_T0.scsiStatus.offset)
  view.writeUInt16LE(v.compStatus, offset + STATUS_T0.compStatus.offset)
  view.writeUInt16LE(v.stateFlags, offset + STATUS_T0.stateFlags.offset)
  view.writeUInt16LE(v.statusFlags, offset + STATUS_T0.statusFlags.offset)
  const senseLen = v.sense ? v.sense.length : 0
  view.writeUInt16LE(senseLen, offset + STATUS_T0.senseLen.offset)
  view.writeUInt32LE(v.residual >>> 0, offset + STATUS_T0.residual.offset)
  if (v.sense) {
    v.sense.copy(view, offset + STATUS_T0.sense.offset, 0, Math.min(senseLen, SENSE_IN_STATUS))
  }
  return ENTRY_SIZE
}

export function encodeStatusCont(sense: Buffer, from: number, view: Buffer, offset: number): number {
  checkRoom(view, offset, 'Status Continuation')
  view.fill(0, offset, offset + ENTRY_SIZE)
  view[offset] = EntryType.STATUS_CONT
  view[offset + 1] = 1
  sense.copy(view, offset + STATUS_CONT.sense.offset, from, Math.min(sense.length, from + SENSE_IN_CONT))
  return ENTRY_SIZE
}

/** Decodes a Status Type 0 entry; `sense` holds only what this entry carries (≤ 32 bytes). */
export function decodeStatusT0(view: Buffer, offset: number): StatusT0 & { senseLength: number } {
  checkRoom(view, offset, 'Status Type 0')
  if (view[offset] !== EntryType.STATUS_T0) {
    throw new DecodeError('Status Type 0', `entry type 0x${view[offset].toString(16)} is not 0x03`)
  }
  const senseLength = view.readUInt16LE(offset + STATUS_T0.senseLen.offset)
  const here = Math.min(senseLength, SENSE_IN_STATUS)
  return {
    entryCount: view[offset + 1],
    entryStatus: view[offset + 3],
    handle: view.readUInt32LE(offset + STATUS_T0.handle.offset),
    scsiStatus: view.readUInt16LE(offset + STATUS_T0.scsiStatus.offset),
    compStatus: view.readUInt16LE(offset + STATUS_T0.compStatus.offset),
    stateFlags: view.readUInt16LE(offset + STATUS_T0.stateFlags.offset),
    statusFlags: view.readUInt16LE(offset + STATUS_T0.statusFlags.offset),
    residual: view.readUInt32LE(offset + STATUS_T0.residual.offset),
    senseLength,
    sense: here > 0 ? Buffer.from(view.subarray(offset + STATUS_T0.sense.offset, offset + STATUS_T0.sense.offset + here)) : null,
  }
}

// ---- Marker ----

export interface Marker {
  target: number
  lun: number
  modifier: number
}

export function encodeMarker(v: Marker, view: Buffer, offset: number): number {
  checkRoom(view, offset, 'Marker')
  view.fill(0, offset, offset + ENTRY_SIZE)
  view[offset] = EntryType.MARKER
  view[offset + 1] = 1
  view.writeUInt16LE(v.target, offset + MARKER.target.offset)
  view[offset + MARKER.modifier.offset] = v.modifier
  view.writeUInt16LE(v.lun, offset + MARKER.lun.offset)
  return ENTRY_SIZE
}

export function decodeMarker(view: Buffer, offset: number): Marker {
  checkRoom(view, offset, 'Marker')
  if (view[offset] !== EntryType.MARKER) {
    throw new DecodeError('Marker', `entry type 0x${view[offset].toString(16)} is not 0x04`)
  }
  return {
    target: view.readUInt16LE(offset + MARKER.target.offset),
    modifier: view[offset + MARKER.modifier.offset],
    lun: view.readUInt16LE(offset + MARKER.lun.offset),
  }
}

export function compStatusName(cs: number): string {
  for (const [name, v] of Object.entries(CompStatus)) if (v === cs) return name
  return `0x${cs.toString(16).padStart(2, '0')}`
}
