/**
 * Ring entries of the emulated ISP2300 HBA. Every entry is 64 bytes,
 * little-endian, and starts with the same 4-byte header. Each layout below is
 * a table of named offsets (the one place it is declared) next to its codec.
 * The layouts, entry types and status values come from the Linux qla2xxx
 * header qla_def.h as it drives an ISP23xx (cmd_a64_entry_t, cont_a64_entry_t,
 * sts_entry_t, sts_cont_entry_t, mrk_entry_t; qla_fw.h is the ISP24xx's and is
 * not used); state flags from FreeBSD isp(4) ispmbox.h. The code is our own.
 *
 *   0        1          2            3
 *   +--------+----------+------------+--------------+
 *   | type   | count    | sys_define | entry_status |   header (all entries)
 *   +--------+----------+------------+--------------+
 */
import { DecodeError } from '../errors.js'
import { checkRoom } from '../util/codec.js'
import { f, type Layout } from '../util/layout.js'
import { readU64LE, writeU64LE } from '../util/le.js'

export const ENTRY_SIZE = 64

/** Entry types (byte 0). */
export const EntryType = {
  COMMAND_T3: 0x19, // Command Type 3: 64-bit data segment addresses
  CONTINUATION_T1: 0x0a, // Continuation Type 1: five more 64-bit segments
  STATUS_T0: 0x03, // Status Type 0: completion of one command
  STATUS_CONT: 0x10, // Status Continuation: sense bytes past the first 32
  MARKER: 0x04, // Marker: sent by the driver after a reset / LIP
} as const

/**
 * entry_status bits (byte 3, qla_def.h RF_*) set by the firmware on a request
 * entry it rejects: it returns that entry itself, with these bits, on the
 * response ring (qla2x00_error_entry finds the command by the handle @4).
 */
export const EntryStatus = {
  BUSY: 0x02, // RF_BUSY
  BAD_TYPE: 0x04, // RF_INV_E_TYPE
  BAD_PARAMETER: 0x08, // RF_INV_E_PARAM
  BAD_COUNT: 0x10, // RF_INV_E_COUNT
  BAD_ORDER: 0x20, // RF_INV_E_ORDER: a continuation missing or out of place
} as const

/** Command Type 3 control_flags. */
export const ControlFlags = {
  SIMPLE_TAG: 0x0008,
  HEAD_OF_QUEUE: 0x0002,
  ORDERED: 0x0004,
  DATA_IN: 0x0020, // read: target → host memory
  DATA_OUT: 0x0040, // write: host memory → target
} as const

/** comp_status values in Status Type 0 (qla_def.h CS_*). */
export const CompStatus = {
  COMPLETE: 0x00,
  DMA_ERROR: 0x02, // a data segment address did not resolve
  RESET: 0x04, // a LIP or reset ended it, or came before the marker that resynchronises the firmware
  ABORTED: 0x05, // aborted by an abort command or a reset
  TIMEOUT: 0x06, // the firmware timed the command out
  DATA_OVERRUN: 0x07, // the target had more data than byte_count
  DATA_UNDERRUN: 0x15, // fewer bytes moved than byte_count (see residual)
  QUEUE_FULL: 0x1c, // the target answered TASK SET FULL
  PORT_UNAVAILABLE: 0x28, // the target port is not logged in / link down
  PORT_LOGGED_OUT: 0x29, // the target port logged out
} as const

/**
 * state_flags in Status Type 0: how far the exchange got (FreeBSD ispmbox.h
 * RQSF_*, the 2X00 set; qla2xxx reads none of them, its status_flags below).
 */
export const StateFlags = {
  HEAD_TAG: 0x0002,
  ORDERED_TAG: 0x0004,
  SIMPLE_TAG: 0x0008,
  DATA_IN: 0x0020,
  DATA_OUT: 0x0040,
  SENT_CDB: 0x0400,
  XFRD_DATA: 0x0800, // data moved
  GOT_STATUS: 0x1000,
  GOT_SENSE: 0x2000,
  XFER_COMPLETE: 0x4000, // every byte of byte_count moved
} as const

/** status_flags in Status Type 0 (qla_def.h SF_*). */
export const StatusFlags = {
  ABTS_TERMINATED: 0x0400, // the exchange was ended by ABTS (an abort or a reset)
  LOGOUT_SENT: 0x2000, // the firmware logged the port out after a timeout (qla2xxx then marks it lost)
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
  SYNC_LIP: 3, // everything, after a LIP
} as const

/** The 4-byte header every entry starts with. */
const HEADER = { entryType: f(0), entryCount: f(1), sysDefine: f(2), entryStatus: f(3) } as const

/** A 64-bit data segment descriptor: { address u64, length u32 } = 12 bytes. */
export const DSEG_SIZE = 12
export const DSEGS_IN_COMMAND = 2
export const DSEGS_IN_CONTINUATION = 5

/** cmd_a64_entry_t. */
export const COMMAND_T3 = {
  name: 'Command Type 3',
  size: ENTRY_SIZE,
  fields: {
    ...HEADER,
    handle: f(4, 4),
    target: f(8, 2), // loop id / target handle
    lun: f(10, 2),
    controlFlags: f(12, 2),
    reserved1: f(14, 2),
    timeout: f(16, 2), // seconds; 0 = no firmware timeout
    dsegCount: f(18, 2),
    cdb: f(20, 16),
    byteCount: f(36, 4),
    dseg0: f(40, DSEG_SIZE),
    dseg1: f(52, DSEG_SIZE),
  },
} as const satisfies Layout

/** cont_a64_entry_t. */
export const CONTINUATION_T1 = {
  name: 'Continuation Type 1',
  size: ENTRY_SIZE,
  fields: {
    ...HEADER,
    dseg0: f(4, DSEG_SIZE),
    dseg1: f(16, DSEG_SIZE),
    dseg2: f(28, DSEG_SIZE),
    dseg3: f(40, DSEG_SIZE),
    dseg4: f(52, DSEG_SIZE),
  },
} as const satisfies Layout

/** sts_entry_t. */
export const STATUS_T0 = {
  name: 'Status Type 0',
  size: ENTRY_SIZE,
  fields: {
    ...HEADER,
    handle: f(4, 4),
    scsiStatus: f(8, 2),
    compStatus: f(10, 2),
    stateFlags: f(12, 2),
    statusFlags: f(14, 2),
    rspInfoLen: f(16, 2),
    senseLen: f(18, 2),
    residual: f(20, 4),
    rspInfo: f(24, 8),
    sense: f(32, 32),
  },
} as const satisfies Layout

/** sts_cont_entry_t. */
export const STATUS_CONT = {
  name: 'Status Continuation',
  size: ENTRY_SIZE,
  fields: {
    ...HEADER,
    sense: f(4, 60),
  },
} as const satisfies Layout

/** mrk_entry_t. */
export const MARKER = {
  name: 'Marker',
  size: ENTRY_SIZE,
  fields: {
    ...HEADER,
    handle: f(4, 4),
    target: f(8, 2),
    modifier: f(10),
    flags: f(11),
    sequence: f(12, 2),
    lun: f(14, 2),
    reserved2: f(16, 48),
  },
} as const satisfies Layout

/** A 64-bit data segment descriptor inside an entry (qla2xxx dsd64). */
export const DSEG = {
  name: 'data segment descriptor',
  size: DSEG_SIZE,
  fields: {
    address: f(0, 8),
    length: f(8, 4),
  },
} as const satisfies Layout

// The accessors below read offsets through these (module constants: no lookup cost per I/O).
const C3 = COMMAND_T3.fields
const CT1 = CONTINUATION_T1.fields
const S0 = STATUS_T0.fields
const SC = STATUS_CONT.fields
const MK = MARKER.fields
const D = DSEG.fields

export const LAYOUTS = { COMMAND_T3, CONTINUATION_T1, STATUS_T0, STATUS_CONT, MARKER } as const

/**
 * Written by the driver over a processed response entry (qla2xxx's
 * RESPONSE_PROCESSED), into the entry's last u32 (qla2xxx `response_t.signature`,
 * which lies over the tail of each response layout's own fields).
 */
export const RESPONSE_PROCESSED = 0xdeaddead
export const SIGNATURE_OFFSET = ENTRY_SIZE - 4

/** Entries needed for a command with `segments` data segments. */
export function entriesFor(segments: number): number {
  if (segments <= DSEGS_IN_COMMAND) return 1
  return 1 + Math.ceil((segments - DSEGS_IN_COMMAND) / DSEGS_IN_CONTINUATION)
}

export interface Segment {
  address: number
  length: number
}


// ---- Accessors: the code that runs. ----
// The driver and the firmware touch ring entries only through these (no
// allocation: they write at an offset, or read into an object the caller
// reuses); the encode/decode codecs below are built on them, so the golden
// tests cover the running code.

/** Byte 0 of any entry. */
export function readEntryType(view: Buffer, offset: number): number {
  return view[offset + HEADER.entryType.offset]
}

/** Byte 1 of any entry: how many ring entries this one spans (itself included). */
export function readEntryCount(view: Buffer, offset: number): number {
  return view[offset + HEADER.entryCount.offset]
}

/** The u32 handle @4 of a command entry (also where a status or marker keeps its handle). */
export function readCommandHandleLE(view: Buffer, offset: number): number {
  return view.readUInt32LE(offset + C3.handle.offset)
}

/** Byte 3 of any entry: non-zero on a request entry the firmware returned rejected. */
export function readEntryStatus(view: Buffer, offset: number): number {
  return view[offset + HEADER.entryStatus.offset]
}

/**
 * Writes a rejected request entry onto the response ring at `offset`: the
 * entry as the host wrote it (from `from` at `fromOffset`) with entry_status
 * `bits`, as the ISP returns it (qla2x00_error_entry).
 */
export function writeErrorEntry(view: Buffer, offset: number, from: Buffer, fromOffset: number, bits: number): void {
  checkRoom(view, offset, ENTRY_SIZE, 'error entry')
  checkRoom(from, fromOffset, ENTRY_SIZE, 'error entry')
  from.copy(view, offset, fromOffset, fromOffset + ENTRY_SIZE)
  view[offset + HEADER.entryStatus.offset] = bits
}

/**
 * Starts an entry at `offset`: checks it fits, zeroes it and writes the common header
 * (type, count, entry_status) every entry shares.
 */
function startEntry(view: Buffer, offset: number, what: string, type: number, count: number, status = 0): void {
  checkRoom(view, offset, ENTRY_SIZE, what)
  view.fill(0, offset, offset + ENTRY_SIZE)
  view[offset + HEADER.entryType.offset] = type
  view[offset + HEADER.entryCount.offset] = count
  view[offset + HEADER.entryStatus.offset] = status
}

/** Marks a consumed response entry, as qla2xxx does before giving it back. */
export function stampProcessed(view: Buffer, offset: number): void {
  view.writeUInt32LE(RESPONSE_PROCESSED, offset + SIGNATURE_OFFSET)
}

/** Byte offset of data segment `i` (0..1) of the command entry at `offset`. */
export function commandDsegOffset(offset: number, i: number): number {
  return offset + C3.dseg0.offset + i * DSEG_SIZE
}

/** Byte offset of data segment `i` (0..4) of the continuation entry at `offset`. */
export function continuationDsegOffset(offset: number, i: number): number {
  return offset + CT1.dseg0.offset + i * DSEG_SIZE
}

/** Writes a data segment descriptor at byte `at` (see commandDsegOffset / continuationDsegOffset). */
export function writeDsegLE(view: Buffer, at: number, address: number, length: number): void {
  writeU64LE(view, at + D.address.offset, address)
  view.writeUInt32LE(length >>> 0, at + D.length.offset)
}

export function readDsegAddressLE(view: Buffer, at: number): number {
  return readU64LE(view, at + D.address.offset)
}

export function readDsegLengthLE(view: Buffer, at: number): number {
  return view.readUInt32LE(at + D.length.offset)
}

/** The fixed fields of a Command Type 3 entry (the CDB and the segments travel separately). */
export interface CommandT3Fields {
  entryCount: number
  entryStatus: number
  handle: number
  target: number
  lun: number
  controlFlags: number
  timeout: number
  dsegCount: number
  byteCount: number
}

export function newCommandT3Fields(): CommandT3Fields {
  return { entryCount: 0, entryStatus: 0, handle: 0, target: 0, lun: 0, controlFlags: 0, timeout: 0, dsegCount: 0, byteCount: 0 }
}

/**
 * Writes a whole Command Type 3 entry at `offset`: zeroes, the fields of `f`,
 * the first 16 bytes of `cdb` (shorter CDBs are zero-padded). The segments
 * follow with writeDsegLE at commandDsegOffset.
 */
export function writeCommandT3(view: Buffer, offset: number, f: CommandT3Fields, cdb: Uint8Array): void {
  startEntry(view, offset, 'Command Type 3', EntryType.COMMAND_T3, f.entryCount, f.entryStatus)
  view.writeUInt32LE(f.handle >>> 0, offset + C3.handle.offset)
  view.writeUInt16LE(f.target, offset + C3.target.offset)
  view.writeUInt16LE(f.lun, offset + C3.lun.offset)
  view.writeUInt16LE(f.controlFlags, offset + C3.controlFlags.offset)
  view.writeUInt16LE(f.timeout, offset + C3.timeout.offset)
  view.writeUInt16LE(f.dsegCount, offset + C3.dsegCount.offset)
  view.set(cdb.length > C3.cdb.length ? cdb.subarray(0, C3.cdb.length) : cdb, offset + C3.cdb.offset)
  view.writeUInt32LE(f.byteCount >>> 0, offset + C3.byteCount.offset)
}

/** Reads the fixed fields of the Command Type 3 entry at `offset` into `into` (the entry type is the caller's to check). */
export function readCommandT3(view: Buffer, offset: number, into: CommandT3Fields): CommandT3Fields {
  checkRoom(view, offset, ENTRY_SIZE, 'Command Type 3')
  into.entryCount = view[offset + C3.entryCount.offset]
  into.entryStatus = view[offset + C3.entryStatus.offset]
  into.handle = view.readUInt32LE(offset + C3.handle.offset)
  into.target = view.readUInt16LE(offset + C3.target.offset)
  into.lun = view.readUInt16LE(offset + C3.lun.offset)
  into.controlFlags = view.readUInt16LE(offset + C3.controlFlags.offset)
  into.timeout = view.readUInt16LE(offset + C3.timeout.offset)
  into.dsegCount = view.readUInt16LE(offset + C3.dsegCount.offset)
  into.byteCount = view.readUInt32LE(offset + C3.byteCount.offset)
  return into
}

/** Copies the 16 CDB bytes of the command entry at `offset` into `into` at `at`. */
export function readCommandCdb(view: Buffer, offset: number, into: Buffer, at = 0): void {
  const from = offset + C3.cdb.offset
  view.copy(into, at, from, from + C3.cdb.length)
}

/** Writes the header of a Continuation Type 1 entry at `offset` (zeroed; segments follow with writeDsegLE). */
export function writeContinuationT1(view: Buffer, offset: number): void {
  startEntry(view, offset, 'Continuation Type 1', EntryType.CONTINUATION_T1, 1)
}

/** The fixed fields of a Status Type 0 entry (sense bytes travel separately). */
export interface StatusT0Fields {
  entryCount: number
  entryStatus: number
  handle: number
  scsiStatus: number // full 16-bit word: status byte + flags
  compStatus: number
  stateFlags: number
  statusFlags: number
  residual: number
  /** sense_len: every sense byte, those in Status Continuation entries included. */
  senseLength: number
}

export function newStatusT0Fields(): StatusT0Fields {
  return { entryCount: 0, entryStatus: 0, handle: 0, scsiStatus: 0, compStatus: 0, stateFlags: 0, statusFlags: 0, residual: 0, senseLength: 0 }
}

/**
 * Writes a Status Type 0 entry at `offset`: zeroes, the fields of `f`, and
 * the first ≤ 32 bytes of `sense` (the rest go into writeStatusCont entries).
 */
export function writeStatusT0(view: Buffer, offset: number, f: StatusT0Fields, sense: Buffer | null): void {
  startEntry(view, offset, 'Status Type 0', EntryType.STATUS_T0, f.entryCount, f.entryStatus)
  view.writeUInt32LE(f.handle >>> 0, offset + S0.handle.offset)
  view.writeUInt16LE(f.scsiStatus, offset + S0.scsiStatus.offset)
  view.writeUInt16LE(f.compStatus, offset + S0.compStatus.offset)
  view.writeUInt16LE(f.stateFlags, offset + S0.stateFlags.offset)
  view.writeUInt16LE(f.statusFlags, offset + S0.statusFlags.offset)
  view.writeUInt16LE(f.senseLength, offset + S0.senseLen.offset)
  view.writeUInt32LE(f.residual >>> 0, offset + S0.residual.offset)
  if (sense) {
    sense.copy(view, offset + S0.sense.offset, 0, Math.min(sense.length, f.senseLength, SENSE_IN_STATUS))
  }
}

/** Reads the fixed fields of the Status Type 0 entry at `offset` into `into` (the entry type is the caller's to check). */
export function readStatusT0(view: Buffer, offset: number, into: StatusT0Fields): StatusT0Fields {
  checkRoom(view, offset, ENTRY_SIZE, 'Status Type 0')
  into.entryCount = view[offset + S0.entryCount.offset]
  into.entryStatus = view[offset + S0.entryStatus.offset]
  into.handle = view.readUInt32LE(offset + S0.handle.offset)
  into.scsiStatus = view.readUInt16LE(offset + S0.scsiStatus.offset)
  into.compStatus = view.readUInt16LE(offset + S0.compStatus.offset)
  into.stateFlags = view.readUInt16LE(offset + S0.stateFlags.offset)
  into.statusFlags = view.readUInt16LE(offset + S0.statusFlags.offset)
  into.senseLength = view.readUInt16LE(offset + S0.senseLen.offset)
  into.residual = view.readUInt32LE(offset + S0.residual.offset)
  return into
}

/** Copies the sense bytes a Status Type 0 entry holds into `into` from 0: min(into.length, 32). Returns bytes copied. */
export function readStatusT0Sense(view: Buffer, offset: number, into: Buffer): number {
  const from = offset + S0.sense.offset
  return view.copy(into, 0, from, from + Math.min(into.length, SENSE_IN_STATUS))
}

/** Writes a Status Continuation entry at `offset` with up to 60 bytes of `sense` starting at `from`. */
export function writeStatusCont(view: Buffer, offset: number, sense: Buffer, from: number): void {
  startEntry(view, offset, 'Status Continuation', EntryType.STATUS_CONT, 1)
  sense.copy(view, offset + SC.sense.offset, from, Math.min(sense.length, from + SENSE_IN_CONT))
}

/** Copies the sense bytes of a Status Continuation entry into `into` at `at`: min(into.length - at, 60). Returns bytes copied. */
export function readStatusContSense(view: Buffer, offset: number, into: Buffer, at: number): number {
  const from = offset + SC.sense.offset
  return view.copy(into, at, from, from + Math.min(into.length - at, SENSE_IN_CONT))
}

// ---- Command Type 3 ----

export interface CommandT3 extends CommandT3Fields {
  cdb: Uint8Array // 16 bytes
  /** The (up to two) segments held in the command entry itself. */
  segments: Segment[]
}

export function encodeCommandT3(v: CommandT3, view: Buffer, offset: number): number {
  writeCommandT3(view, offset, v, v.cdb)
  for (let i = 0; i < Math.min(DSEGS_IN_COMMAND, v.segments.length); i++) {
    writeSegment(view, commandDsegOffset(offset, i), v.segments[i])
  }
  return ENTRY_SIZE
}

export function decodeCommandT3(view: Buffer, offset: number): CommandT3 {
  checkRoom(view, offset, ENTRY_SIZE, 'Command Type 3')
  const type = readEntryType(view, offset)
  if (type !== EntryType.COMMAND_T3) {
    throw new DecodeError('Command Type 3', `entry type 0x${type.toString(16)} is not 0x19`)
  }
  const f = readCommandT3(view, offset, newCommandT3Fields())
  const segments: Segment[] = []
  for (let i = 0; i < Math.min(DSEGS_IN_COMMAND, f.dsegCount); i++) {
    segments.push(readSegment(view, commandDsegOffset(offset, i)))
  }
  const cdb = Buffer.alloc(C3.cdb.length)
  readCommandCdb(view, offset, cdb)
  return { ...f, cdb, segments }
}

// ---- Continuation Type 1 ----

export function encodeContinuationT1(segments: Segment[], view: Buffer, offset: number): number {
  checkRoom(view, offset, ENTRY_SIZE, 'Continuation Type 1')
  if (segments.length > DSEGS_IN_CONTINUATION) {
    throw new DecodeError('Continuation Type 1', `holds ${DSEGS_IN_CONTINUATION} segments, got ${segments.length}`)
  }
  writeContinuationT1(view, offset)
  for (let i = 0; i < segments.length; i++) writeSegment(view, continuationDsegOffset(offset, i), segments[i])
  return ENTRY_SIZE
}

/** Reads `count` (≤ 5) segments of a continuation entry. */
export function decodeContinuationT1(view: Buffer, offset: number, count: number): Segment[] {
  checkRoom(view, offset, ENTRY_SIZE, 'Continuation Type 1')
  const type = readEntryType(view, offset)
  if (type !== EntryType.CONTINUATION_T1) {
    throw new DecodeError('Continuation Type 1', `entry type 0x${type.toString(16)} is not 0x0a`)
  }
  const n = Math.min(count, DSEGS_IN_CONTINUATION)
  const out: Segment[] = []
  for (let i = 0; i < n; i++) out.push(readSegment(view, continuationDsegOffset(offset, i)))
  return out
}

export function writeSegment(view: Buffer, at: number, s: Segment): void {
  writeDsegLE(view, at, s.address, s.length)
}

export function readSegment(view: Buffer, at: number): Segment {
  return { address: readDsegAddressLE(view, at), length: readDsegLengthLE(view, at) }
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
export const SENSE_IN_STATUS = S0.sense.length
export const SENSE_IN_CONT = SC.sense.length

export function statusEntriesFor(senseLength: number): number {
  if (senseLength <= SENSE_IN_STATUS) return 1
  return 1 + Math.ceil((senseLength - SENSE_IN_STATUS) / SENSE_IN_CONT)
}

/**
 * Encodes the status entry only (the first 32 sense bytes). Continuation
 * entries for longer sense are written with encodeStatusCont.
 */
export function encodeStatusT0(v: StatusT0, view: Buffer, offset: number): number {
  writeStatusT0(view, offset, { ...v, senseLength: v.sense ? v.sense.length : 0 }, v.sense)
  return ENTRY_SIZE
}

export function encodeStatusCont(sense: Buffer, from: number, view: Buffer, offset: number): number {
  writeStatusCont(view, offset, sense, from)
  return ENTRY_SIZE
}

/** Decodes a Status Type 0 entry; `sense` holds only what this entry carries (≤ 32 bytes). */
export function decodeStatusT0(view: Buffer, offset: number): StatusT0 & { senseLength: number } {
  checkRoom(view, offset, ENTRY_SIZE, 'Status Type 0')
  const type = readEntryType(view, offset)
  if (type !== EntryType.STATUS_T0) {
    throw new DecodeError('Status Type 0', `entry type 0x${type.toString(16)} is not 0x03`)
  }
  const f = readStatusT0(view, offset, newStatusT0Fields())
  const here = Math.min(f.senseLength, SENSE_IN_STATUS)
  let sense: Buffer | null = null
  if (here > 0) readStatusT0Sense(view, offset, (sense = Buffer.alloc(here)))
  return { ...f, sense }
}

// ---- Marker ----

export interface Marker {
  target: number
  lun: number
  modifier: number
}

export function encodeMarker(v: Marker, view: Buffer, offset: number): number {
  startEntry(view, offset, 'Marker', EntryType.MARKER, 1)
  view.writeUInt16LE(v.target, offset + MK.target.offset)
  view[offset + MK.modifier.offset] = v.modifier
  view.writeUInt16LE(v.lun, offset + MK.lun.offset)
  return ENTRY_SIZE
}

export function decodeMarker(view: Buffer, offset: number): Marker {
  checkRoom(view, offset, ENTRY_SIZE, 'Marker')
  const type = readEntryType(view, offset)
  if (type !== EntryType.MARKER) {
    throw new DecodeError('Marker', `entry type 0x${type.toString(16)} is not 0x04`)
  }
  return {
    target: view.readUInt16LE(offset + MK.target.offset),
    modifier: view[offset + MK.modifier.offset],
    lun: view.readUInt16LE(offset + MK.lun.offset),
  }
}

export function compStatusName(cs: number): string {
  for (const [name, v] of Object.entries(CompStatus)) if (v === cs) return name
  return `0x${cs.toString(16).padStart(2, '0')}`
}
