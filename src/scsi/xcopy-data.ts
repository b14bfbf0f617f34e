/**
 * Third-party copy parameter data (SPC-4 6.4, 6.18, 7.8.17): the EXTENDED
 * COPY(LID1) parameter list and what RECEIVE COPY RESULTS and VPD page 0x8F
 * answer. Both sides use these: the copy manager (xcopy.ts) decodes the list
 * and encodes the answers, an initiator (and the tests) does the reverse.
 *
 * EXTENDED COPY(LID1) parameter list:
 *
 *   0       LIST IDENTIFIER
 *   1       STR (5) | LIST ID USAGE (4..3) | PRIORITY (2..0)
 *   2..3    CSCD DESCRIPTOR LIST LENGTH        4..7  reserved
 *   8..11   SEGMENT DESCRIPTOR LIST LENGTH     12..15 INLINE DATA LENGTH
 *   16..    CSCD descriptors, then segment descriptors, then inline data
 *
 * fcfs reads two descriptor kinds, the pair VMware's XCOPY sends:
 *  - identification descriptor CSCD (E4h, 32 bytes): a VPD 0x83 designation
 *    descriptor naming the logical unit (its NAA), then the disk block length;
 *  - block → block segment (02h, 28 bytes): NUMBER OF BLOCKS from a source
 *    LBA on one CSCD to a destination LBA on another (or the same).
 *
 * Codecs follow the data.ts contract: `encodeX(value, buf, offset)` returns
 * bytes written, `decodeX(buf, offset)` returns the value and throws
 * DecodeError naming what is short or malformed.
 */
import { DecodeError, InternalError } from '../errors.js'
import { readU16BE, readU24BE, readU32BE, readU64BE, writeU16BE, writeU24BE, writeU32BE, writeU64BE } from './bytes.js'
import { f, type Layout } from '../util/layout.js'

/** Descriptor type codes (SPC-4 table 114 and 119). */
export const XcopyDescriptor = {
  BLOCK_TO_BLOCK: 0x02, // segment: block device → block device
  IDENTIFICATION: 0xe4, // CSCD: identification descriptor (a VPD 0x83 designator)
} as const

/** RECEIVE COPY RESULTS service actions (LID1, SPC-4 6.18). */
export const ReceiveCopy = {
  STATUS: 0x00, // RECEIVE COPY STATUS(LID1)
  DATA: 0x01, // RECEIVE COPY DATA(LID1)
  OPERATING_PARAMETERS: 0x03, // RECEIVE COPY OPERATING PARAMETERS
  FAILURE_DETAILS: 0x04, // RECEIVE COPY FAILURE DETAILS(LID1)
} as const

/** LIST ID USAGE (parameter list byte 1 bits 4..3). */
export const ListIdUsage = {
  HOLD: 0b00, // keep the results for RECEIVE COPY RESULTS; the list identifier is unique
  RESERVED: 0b01,
  DISCARD: 0b10, // keep nothing once done; the list identifier is unique while the copy runs
  NONE: 0b11, // no list identifier (it must be 0); keep nothing
} as const

/** COPY MANAGER STATUS of RECEIVE COPY STATUS(LID1). */
export const CopyManagerStatus = {
  IN_PROGRESS: 0x00,
  COMPLETED: 0x01, // completed without errors
  FAILED: 0x02, // completed with errors
} as const

export const XCOPY_HEADER = {
  name: 'EXTENDED COPY(LID1) parameter list header',
  size: 16,
  fields: {
    listId: f(0),
    flags: f(1), // STR (5) | LIST ID USAGE (4..3) | PRIORITY (2..0)
    cscdListLength: f(2, 2),
    reserved4: f(4, 4),
    segmentListLength: f(8, 4),
    inlineDataLength: f(12, 4),
  },
} as const satisfies Layout

export const IDENTIFICATION_CSCD = {
  name: 'identification descriptor CSCD descriptor (E4h)',
  size: 32,
  fields: {
    type: f(0),
    flags: f(1), // LU ID TYPE (7..6, ignored) | NUL (5, obsolete) | PERIPHERAL DEVICE TYPE (4..0)
    relativeInitiatorPort: f(2, 2),
    codeSet: f(4), // PROTOCOL IDENTIFIER (7..4) | CODE SET (3..0), as in VPD 0x83
    designatorType: f(5), // PIV (7) | ASSOCIATION (5..4) | DESIGNATOR TYPE (3..0)
    reserved6: f(6),
    designatorLength: f(7),
    designator: f(8, 20),
    pad: f(28), // PAD (2)
    diskBlockLength: f(29, 3),
  },
} as const satisfies Layout

export const BLOCK_SEGMENT = {
  name: 'block to block segment descriptor (02h)',
  size: 28,
  fields: {
    type: f(0),
    flags: f(1), // DC (1) | CAT (0)
    descriptorLength: f(2, 2), // 0018h: the bytes after this field
    source: f(4, 2), // SOURCE CSCD DESCRIPTOR ID: index into the CSCD list
    destination: f(6, 2),
    reserved8: f(8, 2),
    blocks: f(10, 2),
    sourceLba: f(12, 8),
    destinationLba: f(20, 8),
  },
} as const satisfies Layout

/** Segment descriptor byte 1. */
export const SEGMENT_DC = 0x02 // NUMBER OF BLOCKS counts destination blocks (else source blocks)
export const SEGMENT_CAT = 0x01
/** The DESCRIPTOR LENGTH a block → block segment descriptor carries. */
export const BLOCK_SEGMENT_LENGTH = BLOCK_SEGMENT.size - 4

export const COPY_STATUS = {
  name: 'RECEIVE COPY STATUS(LID1) parameter data',
  size: 12,
  fields: {
    availableData: f(0, 4), // n - 3
    status: f(4), // HDD (7) | COPY MANAGER STATUS (6..0)
    segmentsProcessed: f(5, 2),
    transferCountUnits: f(7), // 00h bytes, 01h KiB, 02h MiB, …
    transferCount: f(8, 4),
  },
} as const satisfies Layout

export const OPERATING_PARAMETERS = {
  name: 'RECEIVE COPY OPERATING PARAMETERS parameter data',
  size: 44, // then IMPLEMENTED DESCRIPTOR LIST LENGTH type codes
  fields: {
    availableData: f(0, 4), // n - 3
    snlid: f(4), // SNLID (0): LIST ID USAGE 11b is supported
    reserved5: f(5, 3),
    maxCscdDescriptors: f(8, 2),
    maxSegmentDescriptors: f(10, 2),
    maxDescriptorListLength: f(12, 4),
    maxSegmentLength: f(16, 4),
    maxInlineDataLength: f(20, 4),
    heldDataLimit: f(24, 4),
    maxStreamTransferSize: f(28, 4),
    reserved32: f(32, 2),
    totalConcurrentCopies: f(34, 2),
    maxConcurrentCopies: f(36),
    dataSegmentGranularity: f(37), // log2 bytes
    inlineDataGranularity: f(38),
    heldDataGranularity: f(39),
    reserved40: f(40, 3),
    implementedDescriptorListLength: f(43),
  },
} as const satisfies Layout

export const FAILURE_DETAILS = {
  name: 'RECEIVE COPY FAILURE DETAILS(LID1) parameter data',
  size: 60, // then SENSE DATA LENGTH bytes of sense
  fields: {
    availableData: f(0, 4), // n - 3; 0 when there are no details (and nothing follows)
    reserved4: f(4, 52),
    copyCommandStatus: f(56),
    reserved57: f(57),
    senseDataLength: f(58, 2),
  },
} as const satisfies Layout

/** A third-party copy descriptor of VPD page 0x8F: a 4-byte header, then DESCRIPTOR LENGTH bytes (a multiple of 4). */
export const TPC_DESCRIPTOR_HEADER = {
  name: 'third-party copy descriptor header',
  size: 4,
  fields: { type: f(0, 2), length: f(2, 2) },
} as const satisfies Layout

/** Third-party copy descriptor types (SPC-4 table 605). */
export const TpcDescriptor = {
  SUPPORTED_COMMANDS: 0x0001,
  PARAMETER_DATA: 0x0004,
  SUPPORTED_DESCRIPTORS: 0x0008,
  SUPPORTED_CSCD_IDS: 0x000c,
  GENERAL_COPY_OPERATIONS: 0x8001,
} as const

export const TPC_PARAMETER_DATA = {
  name: 'Parameter Data third-party copy descriptor (0004h)',
  size: 32,
  fields: {
    header: f(0, 4),
    reserved4: f(4, 4),
    maxCscdDescriptors: f(8, 2),
    maxSegmentDescriptors: f(10, 2),
    maxDescriptorListLength: f(12, 4),
    maxInlineDataLength: f(16, 4),
    reserved20: f(20, 12),
  },
} as const satisfies Layout

export const TPC_GENERAL_COPY_OPERATIONS = {
  name: 'General Copy Operations third-party copy descriptor (8001h)',
  size: 36,
  fields: {
    header: f(0, 4),
    totalConcurrentCopies: f(4, 4),
    maxIdentifiedConcurrentCopies: f(8, 4),
    maxSegmentLength: f(12, 4),
    dataSegmentGranularity: f(16),
    inlineDataGranularity: f(17),
    reserved18: f(18, 18),
  },
} as const satisfies Layout

export const XCOPY_LAYOUTS: readonly Layout[] = [
  XCOPY_HEADER,
  IDENTIFICATION_CSCD,
  BLOCK_SEGMENT,
  COPY_STATUS,
  OPERATING_PARAMETERS,
  FAILURE_DETAILS,
  TPC_DESCRIPTOR_HEADER,
  TPC_PARAMETER_DATA,
  TPC_GENERAL_COPY_OPERATIONS,
]

/** The limits a copy manager reports (RECEIVE COPY OPERATING PARAMETERS, VPD 0x8F). */
export interface CopyLimits {
  readonly maxCscdDescriptors: number
  readonly maxSegmentDescriptors: number
  /** CSCD + segment descriptor list lengths together, in bytes. */
  readonly maxDescriptorListLength: number
  /** Bytes one segment may copy. */
  readonly maxSegmentLength: number
  readonly totalConcurrentCopies: number
  readonly maxConcurrentCopies: number
  /** log2 of the bytes segments are counted in (the logical block size). */
  readonly granularityLog2: number
  /** Descriptor type codes, ascending. */
  readonly descriptorTypes: readonly number[]
  /** [opcode, service actions] of the third-party copy commands. */
  readonly commands: readonly (readonly [number, readonly number[]])[]
}

function room(buf: Uint8Array, offset: number, n: number, what: string): void {
  if (offset < 0 || offset + n > buf.length) throw new InternalError(`${what}: needs ${n} bytes at ${offset}, buffer is ${buf.length}`)
}

function need(buf: Uint8Array, offset: number, n: number, what: string): void {
  if (buf.length - offset < n) throw new DecodeError(what, `is ${buf.length - offset} bytes, needs ${n}`)
}

// ---- the EXTENDED COPY(LID1) parameter list ---------------------------------

export interface XcopyHeader {
  readonly listId: number
  readonly str: boolean
  readonly listIdUsage: number
  readonly priority: number
  readonly cscdListLength: number
  readonly segmentListLength: number
  readonly inlineDataLength: number
}

export function encodeXcopyHeader(h: XcopyHeader, buf: Uint8Array, offset = 0): number {
  const L = XCOPY_HEADER.fields
  room(buf, offset, XCOPY_HEADER.size, XCOPY_HEADER.name)
  buf.fill(0, offset, offset + XCOPY_HEADER.size)
  buf[offset + L.listId.offset] = h.listId
  buf[offset + L.flags.offset] = (h.str ? 0x20 : 0) | ((h.listIdUsage & 3) << 3) | (h.priority & 7)
  writeU16BE(buf, offset + L.cscdListLength.offset, h.cscdListLength)
  writeU32BE(buf, offset + L.segmentListLength.offset, h.segmentListLength)
  writeU32BE(buf, offset + L.inlineDataLength.offset, h.inlineDataLength)
  return XCOPY_HEADER.size
}

export function decodeXcopyHeader(buf: Uint8Array, offset = 0): XcopyHeader {
  const L = XCOPY_HEADER.fields
  need(buf, offset, XCOPY_HEADER.size, XCOPY_HEADER.name)
  const flags = buf[offset + L.flags.offset]
  return {
    listId: buf[offset + L.listId.offset],
    str: (flags & 0x20) !== 0,
    listIdUsage: (flags >> 3) & 3,
    priority: flags & 7,
    cscdListLength: readU16BE(buf, offset + L.cscdListLength.offset),
    segmentListLength: readU32BE(buf, offset + L.segmentListLength.offset),
    inlineDataLength: readU32BE(buf, offset + L.inlineDataLength.offset),
  }
}

/** An identification descriptor CSCD descriptor. */
export interface IdentificationCscd {
  readonly luIdType: number
  readonly nul: boolean
  readonly deviceType: number
  readonly relativeInitiatorPort: number
  /** PROTOCOL IDENTIFIER | CODE SET byte. */
  readonly codeSet: number
  /** PIV | ASSOCIATION | DESIGNATOR TYPE byte. */
  readonly designatorType: number
  readonly designator: Buffer
  readonly pad: boolean
  readonly diskBlockLength: number
}

export function encodeIdentificationCscd(c: IdentificationCscd, buf: Uint8Array, offset = 0): number {
  const L = IDENTIFICATION_CSCD.fields
  room(buf, offset, IDENTIFICATION_CSCD.size, IDENTIFICATION_CSCD.name)
  if (c.designator.length > L.designator.length) throw new InternalError(`designator is ${c.designator.length} bytes, at most ${L.designator.length} fit`)
  buf.fill(0, offset, offset + IDENTIFICATION_CSCD.size)
  buf[offset + L.type.offset] = XcopyDescriptor.IDENTIFICATION
  buf[offset + L.flags.offset] = ((c.luIdType & 3) << 6) | (c.nul ? 0x20 : 0) | (c.deviceType & 0x1f)
  writeU16BE(buf, offset + L.relativeInitiatorPort.offset, c.relativeInitiatorPort)
  buf[offset + L.codeSet.offset] = c.codeSet
  buf[offset + L.designatorType.offset] = c.designatorType
  buf[offset + L.designatorLength.offset] = c.designator.length
  buf.set(c.designator, offset + L.designator.offset)
  buf[offset + L.pad.offset] = c.pad ? 0x04 : 0
  writeU24BE(buf, offset + L.diskBlockLength.offset, c.diskBlockLength)
  return IDENTIFICATION_CSCD.size
}

/** Decodes an E4h descriptor; a DESIGNATOR LENGTH past the 20-byte field is cut to it (the copy manager refuses it by its pointer). */
export function decodeIdentificationCscd(buf: Uint8Array, offset = 0): IdentificationCscd {
  const L = IDENTIFICATION_CSCD.fields
  need(buf, offset, IDENTIFICATION_CSCD.size, IDENTIFICATION_CSCD.name)
  if (buf[offset] !== XcopyDescriptor.IDENTIFICATION) throw new DecodeError(IDENTIFICATION_CSCD.name, `type code is 0x${buf[offset].toString(16)}, not 0xe4`)
  const flags = buf[offset + L.flags.offset]
  const n = Math.min(buf[offset + L.designatorLength.offset], L.designator.length)
  const at = offset + L.designator.offset
  return {
    luIdType: flags >> 6,
    nul: (flags & 0x20) !== 0,
    deviceType: flags & 0x1f,
    relativeInitiatorPort: readU16BE(buf, offset + L.relativeInitiatorPort.offset),
    codeSet: buf[offset + L.codeSet.offset],
    designatorType: buf[offset + L.designatorType.offset],
    designator: Buffer.from(buf.subarray(at, at + n)),
    pad: (buf[offset + L.pad.offset] & 0x04) !== 0,
    diskBlockLength: readU24BE(buf, offset + L.diskBlockLength.offset),
  }
}

/** A block → block segment descriptor. */
export interface BlockSegment {
  /** NUMBER OF BLOCKS counts destination blocks. */
  readonly dc: boolean
  readonly cat: boolean
  /** SOURCE / DESTINATION CSCD DESCRIPTOR ID: indexes into the CSCD list. */
  readonly source: number
  readonly destination: number
  readonly blocks: number
  readonly sourceLba: number
  readonly destinationLba: number
}

export function encodeBlockSegment(s: BlockSegment, buf: Uint8Array, offset = 0): number {
  const L = BLOCK_SEGMENT.fields
  room(buf, offset, BLOCK_SEGMENT.size, BLOCK_SEGMENT.name)
  buf.fill(0, offset, offset + BLOCK_SEGMENT.size)
  buf[offset + L.type.offset] = XcopyDescriptor.BLOCK_TO_BLOCK
  buf[offset + L.flags.offset] = (s.dc ? SEGMENT_DC : 0) | (s.cat ? SEGMENT_CAT : 0)
  writeU16BE(buf, offset + L.descriptorLength.offset, BLOCK_SEGMENT_LENGTH)
  writeU16BE(buf, offset + L.source.offset, s.source)
  writeU16BE(buf, offset + L.destination.offset, s.destination)
  writeU16BE(buf, offset + L.blocks.offset, s.blocks)
  writeU64BE(buf, offset + L.sourceLba.offset, s.sourceLba)
  writeU64BE(buf, offset + L.destinationLba.offset, s.destinationLba)
  return BLOCK_SEGMENT.size
}

export function decodeBlockSegment(buf: Uint8Array, offset = 0): BlockSegment {
  const L = BLOCK_SEGMENT.fields
  need(buf, offset, BLOCK_SEGMENT.size, BLOCK_SEGMENT.name)
  if (buf[offset] !== XcopyDescriptor.BLOCK_TO_BLOCK) throw new DecodeError(BLOCK_SEGMENT.name, `type code is 0x${buf[offset].toString(16)}, not 0x02`)
  const flags = buf[offset + L.flags.offset]
  return {
    dc: (flags & SEGMENT_DC) !== 0,
    cat: (flags & SEGMENT_CAT) !== 0,
    source: readU16BE(buf, offset + L.source.offset),
    destination: readU16BE(buf, offset + L.destination.offset),
    blocks: readU16BE(buf, offset + L.blocks.offset),
    sourceLba: readU64BE(buf, offset + L.sourceLba.offset),
    destinationLba: readU64BE(buf, offset + L.destinationLba.offset),
  }
}

/** A whole parameter list of E4h CSCDs and 02h segments, no inline data. */
export interface XcopyList {
  readonly listId: number
  readonly listIdUsage: number
  readonly priority?: number
  readonly cscds: readonly IdentificationCscd[]
  readonly segments: readonly BlockSegment[]
}

/** The bytes `encodeXcopyList` writes for `l`. */
export function xcopyListSize(l: XcopyList): number {
  return XCOPY_HEADER.size + l.cscds.length * IDENTIFICATION_CSCD.size + l.segments.length * BLOCK_SEGMENT.size
}

export function encodeXcopyList(l: XcopyList, buf: Uint8Array, offset = 0): number {
  room(buf, offset, xcopyListSize(l), 'EXTENDED COPY(LID1) parameter list')
  let at = offset
  at += encodeXcopyHeader(
    {
      listId: l.listId,
      str: false,
      listIdUsage: l.listIdUsage,
      priority: l.priority ?? 0,
      cscdListLength: l.cscds.length * IDENTIFICATION_CSCD.size,
      segmentListLength: l.segments.length * BLOCK_SEGMENT.size,
      inlineDataLength: 0,
    },
    buf,
    at,
  )
  for (const c of l.cscds) at += encodeIdentificationCscd(c, buf, at)
  for (const s of l.segments) at += encodeBlockSegment(s, buf, at)
  return at - offset
}

/** Decodes a list of E4h CSCDs and 02h segments; other descriptor types, inline data or a list longer than `buf` throw. */
export function decodeXcopyList(buf: Uint8Array, offset = 0): XcopyList {
  const h = decodeXcopyHeader(buf, offset)
  const what = 'EXTENDED COPY(LID1) parameter list'
  if (h.inlineDataLength !== 0) throw new DecodeError(what, `has ${h.inlineDataLength} bytes of inline data`)
  if (h.cscdListLength % IDENTIFICATION_CSCD.size !== 0) throw new DecodeError(what, `CSCD descriptor list length ${h.cscdListLength} is not a multiple of 32`)
  if (h.segmentListLength % BLOCK_SEGMENT.size !== 0) throw new DecodeError(what, `segment descriptor list length ${h.segmentListLength} is not a multiple of 28`)
  need(buf, offset, XCOPY_HEADER.size + h.cscdListLength + h.segmentListLength, what)
  const cscds: IdentificationCscd[] = []
  let at = offset + XCOPY_HEADER.size
  for (const end = at + h.cscdListLength; at < end; at += IDENTIFICATION_CSCD.size) cscds.push(decodeIdentificationCscd(buf, at))
  const segments: BlockSegment[] = []
  for (const end = at + h.segmentListLength; at < end; at += BLOCK_SEGMENT.size) segments.push(decodeBlockSegment(buf, at))
  return { listId: h.listId, listIdUsage: h.listIdUsage, priority: h.priority, cscds, segments }
}

// ---- RECEIVE COPY RESULTS answers ------------------------------------------

export interface CopyStatus {
  /** HDD: held data was discarded. */
  readonly heldDataDiscarded: boolean
  readonly status: number
  readonly segmentsProcessed: number
  readonly transferCountUnits: number
  readonly transferCount: number
}

export function encodeCopyStatus(s: CopyStatus, buf: Uint8Array, offset = 0): number {
  const L = COPY_STATUS.fields
  room(buf, offset, COPY_STATUS.size, COPY_STATUS.name)
  writeU32BE(buf, offset + L.availableData.offset, COPY_STATUS.size - 4)
  buf[offset + L.status.offset] = (s.heldDataDiscarded ? 0x80 : 0) | (s.status & 0x7f)
  writeU16BE(buf, offset + L.segmentsProcessed.offset, s.segmentsProcessed)
  buf[offset + L.transferCountUnits.offset] = s.transferCountUnits
  writeU32BE(buf, offset + L.transferCount.offset, s.transferCount)
  return COPY_STATUS.size
}

export function decodeCopyStatus(buf: Uint8Array, offset = 0): CopyStatus {
  const L = COPY_STATUS.fields
  need(buf, offset, COPY_STATUS.size, COPY_STATUS.name)
  const st = buf[offset + L.status.offset]
  return {
    heldDataDiscarded: (st & 0x80) !== 0,
    status: st & 0x7f,
    segmentsProcessed: readU16BE(buf, offset + L.segmentsProcessed.offset),
    transferCountUnits: buf[offset + L.transferCountUnits.offset],
    transferCount: readU32BE(buf, offset + L.transferCount.offset),
  }
}

/** TRANSFER COUNT in the smallest unit (bytes, KiB, MiB, …) that fits 32 bits: [units code, count]. */
export function transferCount(bytes: number): [number, number] {
  let units = 0
  let n = bytes
  while (n > 0xffffffff) {
    n = Math.floor(n / 1024)
    units++
  }
  return [units, n]
}

export interface OperatingParameters {
  readonly snlid: boolean
  readonly maxCscdDescriptors: number
  readonly maxSegmentDescriptors: number
  readonly maxDescriptorListLength: number
  readonly maxSegmentLength: number
  readonly maxInlineDataLength: number
  readonly heldDataLimit: number
  readonly maxStreamTransferSize: number
  readonly totalConcurrentCopies: number
  readonly maxConcurrentCopies: number
  readonly dataSegmentGranularity: number
  readonly inlineDataGranularity: number
  readonly heldDataGranularity: number
  readonly descriptorTypes: readonly number[]
}

/** What a copy manager with `l` answers: no inline data, no held data, no stream devices. */
export function operatingParameters(l: CopyLimits): OperatingParameters {
  return {
    snlid: true,
    maxCscdDescriptors: l.maxCscdDescriptors,
    maxSegmentDescriptors: l.maxSegmentDescriptors,
    maxDescriptorListLength: l.maxDescriptorListLength,
    maxSegmentLength: l.maxSegmentLength,
    maxInlineDataLength: 0,
    heldDataLimit: 0,
    maxStreamTransferSize: 0,
    totalConcurrentCopies: l.totalConcurrentCopies,
    maxConcurrentCopies: l.maxConcurrentCopies,
    dataSegmentGranularity: l.granularityLog2,
    inlineDataGranularity: l.granularityLog2,
    heldDataGranularity: l.granularityLog2,
    descriptorTypes: l.descriptorTypes,
  }
}

export function operatingParametersSize(p: OperatingParameters): number {
  return OPERATING_PARAMETERS.size + p.descriptorTypes.length
}

export function encodeOperatingParameters(p: OperatingParameters, buf: Uint8Array, offset = 0): number {
  const L = OPERATING_PARAMETERS.fields
  const size = operatingParametersSize(p)
  room(buf, offset, size, OPERATING_PARAMETERS.name)
  buf.fill(0, offset, offset + size)
  const at = (fd: { offset: number }) => offset + fd.offset
  writeU32BE(buf, at(L.availableData), size - 4)
  buf[at(L.snlid)] = p.snlid ? 1 : 0
  writeU16BE(buf, at(L.maxCscdDescriptors), p.maxCscdDescriptors)
  writeU16BE(buf, at(L.maxSegmentDescriptors), p.maxSegmentDescriptors)
  writeU32BE(buf, at(L.maxDescriptorListLength), p.maxDescriptorListLength)
  writeU32BE(buf, at(L.maxSegmentLength), p.maxSegmentLength)
  writeU32BE(buf, at(L.maxInlineDataLength), p.maxInlineDataLength)
  writeU32BE(buf, at(L.heldDataLimit), p.heldDataLimit)
  writeU32BE(buf, at(L.maxStreamTransferSize), p.maxStreamTransferSize)
  writeU16BE(buf, at(L.totalConcurrentCopies), p.totalConcurrentCopies)
  buf[at(L.maxConcurrentCopies)] = p.maxConcurrentCopies
  buf[at(L.dataSegmentGranularity)] = p.dataSegmentGranularity
  buf[at(L.inlineDataGranularity)] = p.inlineDataGranularity
  buf[at(L.heldDataGranularity)] = p.heldDataGranularity
  buf[at(L.implementedDescriptorListLength)] = p.descriptorTypes.length
  buf.set(p.descriptorTypes, offset + OPERATING_PARAMETERS.size)
  return size
}

export function decodeOperatingParameters(buf: Uint8Array, offset = 0): OperatingParameters {
  const L = OPERATING_PARAMETERS.fields
  need(buf, offset, OPERATING_PARAMETERS.size, OPERATING_PARAMETERS.name)
  const at = (fd: { offset: number }) => offset + fd.offset
  const n = buf[at(L.implementedDescriptorListLength)]
  need(buf, offset, OPERATING_PARAMETERS.size + n, OPERATING_PARAMETERS.name)
  return {
    snlid: (buf[at(L.snlid)] & 1) !== 0,
    maxCscdDescriptors: readU16BE(buf, at(L.maxCscdDescriptors)),
    maxSegmentDescriptors: readU16BE(buf, at(L.maxSegmentDescriptors)),
    maxDescriptorListLength: readU32BE(buf, at(L.maxDescriptorListLength)),
    maxSegmentLength: readU32BE(buf, at(L.maxSegmentLength)),
    maxInlineDataLength: readU32BE(buf, at(L.maxInlineDataLength)),
    heldDataLimit: readU32BE(buf, at(L.heldDataLimit)),
    maxStreamTransferSize: readU32BE(buf, at(L.maxStreamTransferSize)),
    totalConcurrentCopies: readU16BE(buf, at(L.totalConcurrentCopies)),
    maxConcurrentCopies: buf[at(L.maxConcurrentCopies)],
    dataSegmentGranularity: buf[at(L.dataSegmentGranularity)],
    inlineDataGranularity: buf[at(L.inlineDataGranularity)],
    heldDataGranularity: buf[at(L.heldDataGranularity)],
    descriptorTypes: [...buf.subarray(offset + OPERATING_PARAMETERS.size, offset + OPERATING_PARAMETERS.size + n)],
  }
}

export interface FailureDetails {
  /** The status the EXTENDED COPY ended with (CHECK CONDITION). */
  readonly status: number
  /** The sense data it ended with. */
  readonly sense: Buffer
}

/** The RECEIVE COPY FAILURE DETAILS(LID1) answer; `null` (no details held) is the 4-byte header with AVAILABLE DATA 0. */
export function failureDetailsSize(d: FailureDetails | null): number {
  return d === null ? 4 : FAILURE_DETAILS.size + d.sense.length
}

export function encodeFailureDetails(d: FailureDetails | null, buf: Uint8Array, offset = 0): number {
  const L = FAILURE_DETAILS.fields
  const size = failureDetailsSize(d)
  room(buf, offset, size, FAILURE_DETAILS.name)
  buf.fill(0, offset, offset + size)
  if (d === null) return size
  writeU32BE(buf, offset + L.availableData.offset, size - 4)
  buf[offset + L.copyCommandStatus.offset] = d.status
  writeU16BE(buf, offset + L.senseDataLength.offset, d.sense.length)
  buf.set(d.sense, offset + FAILURE_DETAILS.size)
  return size
}

export function decodeFailureDetails(buf: Uint8Array, offset = 0): FailureDetails | null {
  const L = FAILURE_DETAILS.fields
  need(buf, offset, 4, FAILURE_DETAILS.name)
  if (readU32BE(buf, offset + L.availableData.offset) === 0) return null
  need(buf, offset, FAILURE_DETAILS.size, FAILURE_DETAILS.name)
  const n = readU16BE(buf, offset + L.senseDataLength.offset)
  need(buf, offset, FAILURE_DETAILS.size + n, FAILURE_DETAILS.name)
  return {
    status: buf[offset + L.copyCommandStatus.offset],
    sense: Buffer.from(buf.subarray(offset + FAILURE_DETAILS.size, offset + FAILURE_DETAILS.size + n)),
  }
}

// ---- VPD page 0x8F: third-party copy descriptors ----------------------------

/** Rounds a descriptor's length up to the multiple of 4 SPC-4 7.8.17.1 requires. */
function padded(n: number): number {
  return (n + 3) & ~3
}

function descriptor(type: number, body: number, buf: Uint8Array | null, offset: number, fill: (b: Uint8Array, at: number) => void): number {
  const size = padded(TPC_DESCRIPTOR_HEADER.size + body)
  if (buf === null) return size
  room(buf, offset, size, 'third-party copy descriptor')
  buf.fill(0, offset, offset + size)
  writeU16BE(buf, offset + TPC_DESCRIPTOR_HEADER.fields.type.offset, type)
  writeU16BE(buf, offset + TPC_DESCRIPTOR_HEADER.fields.length.offset, size - TPC_DESCRIPTOR_HEADER.size)
  fill(buf, offset + TPC_DESCRIPTOR_HEADER.size)
  return size
}

/**
 * The five descriptors a copy manager that supports EXTENDED COPY(LID1) lists
 * (SPC-4 7.8.17.1): Supported Commands, Parameter Data, Supported Descriptors,
 * Supported CSCD Descriptor IDs (none beyond the indexes 0000h..07FFh) and
 * General Copy Operations. `buf` null: only the size. Returns bytes written.
 */
export function encodeThirdPartyCopyDescriptors(l: CopyLimits, buf: Uint8Array | null, offset = 0): number {
  let at = offset
  const cmdBytes = l.commands.reduce((n, [, sas]) => n + 2 + sas.length, 0)
  at += descriptor(TpcDescriptor.SUPPORTED_COMMANDS, 1 + cmdBytes, buf, at, (b, p) => {
    b[p++] = cmdBytes
    for (const [op, sas] of l.commands) {
      b[p++] = op
      b[p++] = sas.length
      for (const sa of sas) b[p++] = sa
    }
  })
  const P = TPC_PARAMETER_DATA.fields
  at += descriptor(TpcDescriptor.PARAMETER_DATA, TPC_PARAMETER_DATA.size - 4, buf, at, (b, p) => {
    const base = p - 4
    writeU16BE(b, base + P.maxCscdDescriptors.offset, l.maxCscdDescriptors)
    writeU16BE(b, base + P.maxSegmentDescriptors.offset, l.maxSegmentDescriptors)
    writeU32BE(b, base + P.maxDescriptorListLength.offset, l.maxDescriptorListLength)
  })
  at += descriptor(TpcDescriptor.SUPPORTED_DESCRIPTORS, 1 + l.descriptorTypes.length, buf, at, (b, p) => {
    b[p] = l.descriptorTypes.length
    b.set(l.descriptorTypes, p + 1)
  })
  at += descriptor(TpcDescriptor.SUPPORTED_CSCD_IDS, 2, buf, at, () => {})
  const G = TPC_GENERAL_COPY_OPERATIONS.fields
  at += descriptor(TpcDescriptor.GENERAL_COPY_OPERATIONS, TPC_GENERAL_COPY_OPERATIONS.size - 4, buf, at, (b, p) => {
    const base = p - 4
    writeU32BE(b, base + G.totalConcurrentCopies.offset, l.totalConcurrentCopies)
    writeU32BE(b, base + G.maxIdentifiedConcurrentCopies.offset, l.maxConcurrentCopies)
    writeU32BE(b, base + G.maxSegmentLength.offset, l.maxSegmentLength)
    b[base + G.dataSegmentGranularity.offset] = l.granularityLog2
  })
  return at - offset
}

/** One third-party copy descriptor of VPD 0x8F: its type and its bytes after the 4-byte header. */
export interface TpcDescriptorData {
  readonly type: number
  readonly body: Buffer
}

/** The descriptors of a VPD 0x8F page's body (`buf` from `offset` to `end`). */
export function decodeThirdPartyCopyDescriptors(buf: Uint8Array, offset: number, end: number): TpcDescriptorData[] {
  const out: TpcDescriptorData[] = []
  let at = offset
  while (at < end) {
    if (end - at < TPC_DESCRIPTOR_HEADER.size) throw new DecodeError('third-party copy VPD page', `descriptor at byte ${at} is cut off before its length`)
    const type = readU16BE(buf, at)
    const len = readU16BE(buf, at + 2)
    if (at + 4 + len > end) throw new DecodeError('third-party copy VPD page', `descriptor 0x${type.toString(16)} at byte ${at} runs past the page`)
    out.push({ type, body: Buffer.from(buf.subarray(at + 4, at + 4 + len)) })
    at += 4 + len
  }
  return out
}

/** The commands of a Supported Commands descriptor's body: [opcode, service actions]. */
export function decodeSupportedCommands(body: Uint8Array): [number, number[]][] {
  const out: [number, number[]][] = []
  const end = Math.min(body.length, 1 + body[0])
  for (let p = 1; p + 2 <= end; ) {
    const n = body[p + 1]
    out.push([body[p], [...body.subarray(p + 2, p + 2 + n)]])
    p += 2 + n
  }
  return out
}
