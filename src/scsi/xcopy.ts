/**
 * The copy manager (SPC-4 6.4, 6.18): EXTENDED COPY(LID1) block → block
 * between logical units of the fabric, as LIO does for VMware's XCOPY, and
 * RECEIVE COPY RESULTS (status, data, operating parameters, failure details).
 * The parameter list and the answers are in xcopy-data.ts; how a CSCD's NAA
 * becomes a unit, and what that unit checks, in copy-targets.ts.
 *
 * An EXTENDED COPY is checked in two stages (SPC-4 6.4.4, 6.4.5). The whole
 * parameter list first, before any data moves, each refusal ILLEGAL REQUEST
 * with a pointer into the list:
 *   list shorter than 16 bytes or than its header says      → PARAMETER LIST LENGTH ERROR
 *   LIST ID USAGE 01b, or 11b with a LIST IDENTIFIER        → INVALID FIELD IN PARAMETER LIST (byte 1 / 0)
 *   CSCD + segment lists longer than the maximum            → PARAMETER LIST LENGTH ERROR
 *   inline data                                             → INLINE DATA LENGTH EXCEEDED (byte 12)
 *   more CSCD / segment descriptors than the maximum        → TOO MANY TARGET / SEGMENT DESCRIPTORS
 *   a CSCD other than E4h, a segment other than 02h         → UNSUPPORTED TARGET / SEGMENT DESCRIPTOR TYPE CODE (at it)
 *   an E4h not naming a logical unit by a binary NAA        → INVALID FIELD IN PARAMETER LIST (code set, association,
 *                                                              designator type or length)
 *   a 02h of another DESCRIPTOR LENGTH, reserved bits set   → INVALID FIELD IN PARAMETER LIST (at it)
 *   the same LIST IDENTIFIER still running on this nexus    → OPERATION IN PROGRESS
 * Then the segments in order; an error stops the copy with COPY ABORTED,
 * COMMAND-SPECIFIC INFORMATION = the segment's index, and a segment pointer
 * (SD=1: into the segment descriptor; SD=0: into the parameter list):
 *   a CSCD DESCRIPTOR ID past the CSCD list                 → UNREACHABLE COPY TARGET (SD=1, at the ID)
 *   an NAA no unit the initiator can see has                → COPY TARGET DEVICE NOT REACHABLE (SD=0, at the designator)
 *   a PERIPHERAL DEVICE TYPE other than 00h (block)         → INCORRECT COPY TARGET DEVICE TYPE (SD=0, at it)
 *   a DISK BLOCK LENGTH other than the unit's               → INVALID FIELD IN PARAMETER LIST (SD=0, at it)
 *   bytes that are not whole blocks of both units           → UNEXPECTED INEXACT SEGMENT (SD=1, NUMBER OF BLOCKS)
 *   more than MAXIMUM SEGMENT LENGTH bytes                  → INVALID FIELD IN PARAMETER LIST (SD=1, NUMBER OF BLOCKS)
 *   a range past the last block of either unit              → COPY TARGET DEVICE NOT REACHABLE (SD=1, at the LBA)
 *   a unit refusing the read or write (stopped, reserved,   → COPY TARGET DEVICE NOT REACHABLE (SD=1, at the CSCD ID)
 *   write protected) or its backend failing
 * A copy target's refusal is reported as LIO reports it (0D/02, which makes
 * VMware fall back to host copies); the segments before it stay copied.
 *
 * The data moves in chunks of WORK_CHUNK_BYTES through the copy targets'
 * backends (read from the source, write to the destination), backwards
 * when the destination overlaps the source further on in the same unit, so
 * an overlapping copy reads every block before overwriting it.
 *
 * Results (RECEIVE COPY RESULTS) are kept per I_T nexus and LIST IDENTIFIER:
 * with LIST ID USAGE 00b until reported (the status once a finished copy's
 * status was returned whole, the failure details likewise) or until the
 * same identifier is used again, a LOGICAL UNIT RESET or the nexus's loss;
 * with 10b only while the copy runs (so the identifier stays unique); with
 * 11b not at all. At most MAX_CONCURRENT_COPIES per nexus: past it the oldest
 * finished one goes, and when every one is still running the new copy gets
 * INSUFFICIENT RESOURCES.
 */
import type { MaybeAsync } from '../targets/backend.js'
import type { TargetPort } from '../targets/types.js'
import { readU16BE, readU24BE, readU32BE, readU64BE } from './bytes.js'
import { sequence, walk } from './chain.js'
import { EXTENDED_COPY, Op, RECEIVE_COPY_RESULTS } from './cdb.js'
import { NO_COPY_TARGETS, copyTargetOf, type CopyableUnit, type CopyTarget, type CopyTargetResolver } from './copy-targets.js'
import type { ItNexus } from './nexus.js'
import { canonicalInitiator } from './pr.js'
import { dataInResponse } from './respond.js'
import { Asc, fail, good, invalidFieldInCdb, invalidFieldInParameterList, parameterListLengthError, SenseKey, Status, type AscAscq, type FieldPointer } from './sense.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'
import { MAX_TRANSFER_BYTES, WORK_CHUNK_BYTES, type Handler } from './unit.js'
import {
  BLOCK_SEGMENT,
  BLOCK_SEGMENT_LENGTH,
  COPY_STATUS,
  CopyManagerStatus,
  encodeCopyStatus,
  encodeFailureDetails,
  encodeOperatingParameters,
  failureDetailsSize,
  IDENTIFICATION_CSCD,
  ListIdUsage,
  operatingParameters,
  operatingParametersSize,
  ReceiveCopy,
  transferCount,
  XCOPY_HEADER,
  XcopyDescriptor,
  decodeXcopyHeader,
  type CopyLimits,
  type FailureDetails,
} from './xcopy-data.js'

/** Copies one nexus may have running or held at once (and per copy manager in all: TOTAL CONCURRENT COPIES). */
export const MAX_CONCURRENT_COPIES = 16
/** Nexuses whose results a copy manager remembers; past it the oldest goes. */
const MAX_COPY_NEXUSES = 256

/** What this copy manager supports, for a unit of `blockSize`-byte blocks. */
export function copyLimits(blockSize: number): CopyLimits {
  return {
    maxCscdDescriptors: 8,
    maxSegmentDescriptors: 8,
    maxDescriptorListLength: 512, // 8 × 32 + 8 × 28 = 480 and some slack
    maxSegmentLength: MAX_TRANSFER_BYTES, // one segment moves at most what one WRITE may
    totalConcurrentCopies: MAX_CONCURRENT_COPIES,
    maxConcurrentCopies: MAX_CONCURRENT_COPIES,
    granularityLog2: Math.log2(blockSize),
    descriptorTypes: [XcopyDescriptor.BLOCK_TO_BLOCK, XcopyDescriptor.IDENTIFICATION],
    commands: [
      [Op.EXTENDED_COPY, [0x00]],
      [Op.RECEIVE_COPY_RESULTS, [ReceiveCopy.STATUS, ReceiveCopy.DATA, ReceiveCopy.OPERATING_PARAMETERS, ReceiveCopy.FAILURE_DETAILS]],
    ],
  }
}

// ---- results kept per nexus ---------------------------------------------------

interface CopyRecord {
  readonly listId: number
  readonly hold: boolean
  state: number // CopyManagerStatus
  segments: number
  bytes: number
  /** The status part was returned whole (or discarded with allocation length 0). */
  statusTaken: boolean
  failure: FailureDetails | null
}

/** The EXTENDED COPY state of one logical unit: its resolver, and results per I_T nexus. */
export class CopyManager {
  /** nexus key → LIST IDENTIFIER → record, oldest first in both. */
  private readonly byNexus = new Map<string, Map<number, CopyRecord>>()

  /** The other units it can reach: none until the unit's creator injects a resolver (target.ts → copy-targets.ts). */
  private resolver: CopyTargetResolver = NO_COPY_TARGETS

  constructor(readonly unit: CopyableUnit) {}

  /** Resolves NAAs other than the unit's own through `r` from now on. */
  useResolver(r: CopyTargetResolver): void {
    this.resolver = r
  }

  /** The copy target an E4h descriptor's NAA names, for the copy's nexus: this unit itself, else the resolver's. */
  target(naa: string, via: { readonly initiator: string; readonly port?: TargetPort }): CopyTarget | null {
    if (naa === this.unit.lun.naa.toLowerCase()) return copyTargetOf(this.unit, via)
    return this.resolver.resolve(naa, via)
  }

  private key(n: ItNexus): string {
    return `${canonicalInitiator(n.initiator)} ${n.port?.wwpn ?? ''}`
  }

  /** The results of LIST IDENTIFIER `listId` on nexus `n`, when held or running. */
  find(n: ItNexus, listId: number): CopyRecord | undefined {
    return this.byNexus.get(this.key(n))?.get(listId)
  }

  /** Starts a copy's record; null for LIST ID USAGE 11b (nothing kept); an outcome when it cannot start. */
  begin(n: ItNexus, listId: number, usage: number): CopyRecord | null | ScsiOutcome {
    if (usage === ListIdUsage.NONE) return null
    const key = this.key(n)
    let recs = this.byNexus.get(key)
    const old = recs?.get(listId)
    if (old !== undefined && old.state === CopyManagerStatus.IN_PROGRESS) return fail(SenseKey.ILLEGAL_REQUEST, Asc.OPERATION_IN_PROGRESS)
    if (recs === undefined) {
      if (this.byNexus.size >= MAX_COPY_NEXUSES) this.byNexus.delete(this.byNexus.keys().next().value!)
      this.byNexus.set(key, (recs = new Map()))
    }
    recs.delete(listId) // a reused identifier discards what was held (and is the newest again)
    if (recs.size >= MAX_CONCURRENT_COPIES) {
      const done = [...recs.values()].find((r) => r.state !== CopyManagerStatus.IN_PROGRESS)
      if (done === undefined) return fail(SenseKey.ILLEGAL_REQUEST, Asc.INSUFFICIENT_RESOURCES)
      recs.delete(done.listId)
    }
    const rec: CopyRecord = { listId, hold: usage === ListIdUsage.HOLD, state: CopyManagerStatus.IN_PROGRESS, segments: 0, bytes: 0, statusTaken: false, failure: null }
    recs.set(listId, rec)
    return rec
  }

  /** The copy ended with `o`: its results are held (00b) or dropped (10b). */
  end(n: ItNexus, rec: CopyRecord, o: ScsiOutcome): void {
    rec.state = o.status === Status.GOOD ? CopyManagerStatus.COMPLETED : CopyManagerStatus.FAILED
    if (o.status === Status.CHECK_CONDITION && o.sense !== null) rec.failure = { status: o.status, sense: o.sense }
    if (!rec.hold) this.drop(n, rec)
  }

  /** Forgets `rec` once nothing of it is left to report. */
  settle(n: ItNexus, rec: CopyRecord): void {
    if (rec.state !== CopyManagerStatus.IN_PROGRESS && rec.statusTaken && rec.failure === null) this.drop(n, rec)
  }

  private drop(n: ItNexus, rec: CopyRecord): void {
    const key = this.key(n)
    const recs = this.byNexus.get(key)
    if (recs?.get(rec.listId) !== rec) return
    recs.delete(rec.listId)
    if (recs.size === 0) this.byNexus.delete(key)
  }

  /** LOGICAL UNIT RESET: every held result goes (running copies finish; their results are not kept). */
  reset(): void {
    this.byNexus.clear()
  }

  /** Nexus (initiator, port) ended: its results go. */
  nexusLost(initiator: string, port?: { readonly wwpn: string }): void {
    this.byNexus.delete(this.key({ initiator, port }))
  }
}

// ---- EXTENDED COPY(LID1) --------------------------------------------------------

const CDB_PARAM_LEN = EXTENDED_COPY.fields.paramLen.offset
const CDB_LIST_ID = RECEIVE_COPY_RESULTS.fields.listId.offset
const CDB_ALLOC_LEN = RECEIVE_COPY_RESULTS.fields.allocLen.offset

interface Cscd {
  /** Offset of the descriptor in the parameter list. */
  readonly at: number
  readonly naa: string
  readonly deviceType: number
  readonly blockLength: number
}

interface Segment {
  readonly at: number
  readonly dc: boolean
  readonly source: number
  readonly destination: number
  readonly blocks: number
  readonly sourceLba: number
  readonly destinationLba: number
}

interface CopyList {
  readonly listId: number
  readonly usage: number
  readonly cscds: readonly Cscd[]
  readonly segments: readonly Segment[]
}

const DESIGNATOR_NAA = 0x3
const CODE_SET_BINARY = 0x1
const DEVICE_TYPE_BLOCK = 0x00

function refuse(c: AscAscq, field: number, bit?: number): ScsiOutcome {
  return fail(SenseKey.ILLEGAL_REQUEST, c, { sks: bit === undefined ? { cd: false, field } : { cd: false, field, bit } })
}

/** The parameter list checked whole (the first stage at the top of this file). */
function parseList(p: Buffer, limits: CopyLimits): CopyList | ScsiOutcome {
  const H = XCOPY_HEADER.fields
  const h = decodeXcopyHeader(p)
  if (h.listIdUsage === ListIdUsage.RESERVED) return invalidFieldInParameterList(H.flags.offset, 4)
  if (h.listIdUsage === ListIdUsage.NONE && h.listId !== 0) return invalidFieldInParameterList(H.listId.offset)
  if (h.cscdListLength + h.segmentListLength > limits.maxDescriptorListLength) return parameterListLengthError()
  if (h.inlineDataLength !== 0) return refuse(Asc.INLINE_DATA_LENGTH_EXCEEDED, H.inlineDataLength.offset)
  if (XCOPY_HEADER.size + h.cscdListLength + h.segmentListLength > p.length) return parameterListLengthError()

  const C = IDENTIFICATION_CSCD.fields
  const cscds: Cscd[] = []
  let at = XCOPY_HEADER.size
  for (const end = at + h.cscdListLength; at < end; at += IDENTIFICATION_CSCD.size) {
    if (cscds.length >= limits.maxCscdDescriptors) return refuse(Asc.TOO_MANY_TARGET_DESCRIPTORS, at)
    if (p[at] !== XcopyDescriptor.IDENTIFICATION) return refuse(Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, at)
    if (at + IDENTIFICATION_CSCD.size > end) return invalidFieldInParameterList(H.cscdListLength.offset)
    if ((p[at + C.codeSet.offset] & 0x0f) !== CODE_SET_BINARY) return invalidFieldInParameterList(at + C.codeSet.offset, 3)
    const t = p[at + C.designatorType.offset]
    if ((t & 0x30) !== 0) return invalidFieldInParameterList(at + C.designatorType.offset, 5) // association: the logical unit
    if ((t & 0x0f) !== DESIGNATOR_NAA) return invalidFieldInParameterList(at + C.designatorType.offset, 3)
    const len = p[at + C.designatorLength.offset]
    if (len !== 8 && len !== 16) return invalidFieldInParameterList(at + C.designatorLength.offset)
    const d = at + C.designator.offset
    cscds.push({
      at,
      naa: p.subarray(d, d + len).toString('hex'),
      deviceType: p[at + C.flags.offset] & 0x1f,
      blockLength: readU24BE(p, at + C.diskBlockLength.offset),
    })
  }

  const S = BLOCK_SEGMENT.fields
  const segments: Segment[] = []
  for (const end = at + h.segmentListLength; at < end; at += BLOCK_SEGMENT.size) {
    if (segments.length >= limits.maxSegmentDescriptors) return refuse(Asc.TOO_MANY_SEGMENT_DESCRIPTORS, at)
    if (at + 4 > end) return invalidFieldInParameterList(H.segmentListLength.offset)
    if (p[at] !== XcopyDescriptor.BLOCK_TO_BLOCK) return refuse(Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, at)
    if (readU16BE(p, at + S.descriptorLength.offset) !== BLOCK_SEGMENT_LENGTH) return invalidFieldInParameterList(at + S.descriptorLength.offset)
    if (at + BLOCK_SEGMENT.size > end) return invalidFieldInParameterList(H.segmentListLength.offset)
    const bad = p[at + S.flags.offset] & ~0x03
    if (bad !== 0) return invalidFieldInParameterList(at + S.flags.offset, 31 - Math.clz32(bad))
    segments.push({
      at,
      dc: (p[at + S.flags.offset] & 0x02) !== 0,
      source: readU16BE(p, at + S.source.offset),
      destination: readU16BE(p, at + S.destination.offset),
      blocks: readU16BE(p, at + S.blocks.offset),
      sourceLba: readU64BE(p, at + S.sourceLba.offset),
      destinationLba: readU64BE(p, at + S.destinationLba.offset),
    })
  }
  return { listId: h.listId, usage: h.listIdUsage, cscds, segments }
}

function aborted(c: AscAscq, segment: number, sks: FieldPointer, len: number): ScsiOutcome {
  return fail(SenseKey.COPY_ABORTED, c, { commandSpecific: segment, sks, transferred: len, wanted: len })
}

export const extendedCopy: Handler = (u, cmd) => {
  const len = readU32BE(cmd.cdb, CDB_PARAM_LEN)
  if (len === 0) return good(0, 0) // SPC-4: no parameter list is not an error
  const p = cmd.dataOut
  if (len < XCOPY_HEADER.size || p === null || p.length < len) return { ...parameterListLengthError(), wanted: len }
  const cm = u.copies
  const limits = copyLimits(u.lun.blockSize)
  const list = parseList(p.subarray(0, len), limits)
  if ('status' in list) return { ...list, wanted: len }
  const rec = cm.begin(cmd, list.listId, list.usage)
  if (rec !== null && 'status' in rec) return { ...rec, wanted: len }
  const targets = new Map<number, CopyTarget | null>()
  const onSegment = (i: number) => (rec !== null ? (rec.segments = i) : 0)
  const onBytes = (n: number) => (rec !== null ? (rec.bytes += n) : 0)
  const finish = (o: ScsiOutcome | null): ScsiOutcome => {
    const out = o ?? good(len, len)
    if (rec !== null) {
      if (o === null) rec.segments = list.segments.length
      cm.end(cmd, rec, out)
    }
    return out
  }
  let r: MaybeAsync<ScsiOutcome | null>
  try {
    r = sequence(list.segments.length, (i) => {
      onSegment(i)
      return copySegment(cm, cmd, list, i, targets, limits, len, onBytes)
    })
  } catch (e) {
    finish(fail(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE))
    throw e
  }
  if (r instanceof Promise) {
    return r.then(finish, (e: unknown) => {
      finish(fail(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE))
      throw e
    })
  }
  return finish(r)
}

/** Segment `i`: resolve its copy targets, check it against them, move its bytes. */
function copySegment(
  cm: CopyManager,
  cmd: ScsiCommand,
  list: CopyList,
  i: number,
  targets: Map<number, CopyTarget | null>,
  limits: CopyLimits,
  len: number,
  onBytes: (n: number) => void,
): MaybeAsync<ScsiOutcome | null> {
  const S = BLOCK_SEGMENT.fields
  const C = IDENTIFICATION_CSCD.fields
  const s = list.segments[i]
  const end = (c: AscAscq, sks: FieldPointer) => aborted(c, i, sks, len)
  const pick = (id: number, field: number): CopyTarget | ScsiOutcome => {
    const c = list.cscds[id]
    if (c === undefined) return end(Asc.UNREACHABLE_COPY_TARGET, { cd: false, sd: true, field })
    if (c.deviceType !== DEVICE_TYPE_BLOCK) return end(Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE, { cd: false, field: c.at + C.flags.offset, bit: 4 })
    let t = targets.get(id)
    if (t === undefined) targets.set(id, (t = cm.target(c.naa, cmd)))
    if (t === null) return end(Asc.COPY_TARGET_DEVICE_NOT_REACHABLE, { cd: false, field: c.at + C.designator.offset })
    if (c.blockLength !== t.lun.blockSize) return end(Asc.INVALID_FIELD_IN_PARAMETER_LIST, { cd: false, field: c.at + C.diskBlockLength.offset })
    return t
  }
  const src = pick(s.source, S.source.offset)
  if ('status' in src) return src
  const dst = pick(s.destination, S.destination.offset)
  if ('status' in dst) return dst
  const sbs = src.lun.blockSize
  const dbs = dst.lun.blockSize
  const bytes = s.blocks * (s.dc ? dbs : sbs)
  const atBlocks = { cd: false, sd: true, field: S.blocks.offset }
  if (bytes % sbs !== 0 || bytes % dbs !== 0) return end(Asc.UNEXPECTED_INEXACT_SEGMENT, atBlocks)
  if (bytes > limits.maxSegmentLength) return end(Asc.INVALID_FIELD_IN_PARAMETER_LIST, atBlocks)
  if (s.sourceLba + bytes / sbs > src.lun.blocks) return end(Asc.COPY_TARGET_DEVICE_NOT_REACHABLE, { cd: false, sd: true, field: S.sourceLba.offset })
  if (s.destinationLba + bytes / dbs > dst.lun.blocks) return end(Asc.COPY_TARGET_DEVICE_NOT_REACHABLE, { cd: false, sd: true, field: S.destinationLba.offset })
  if (bytes === 0) return null
  const from = s.sourceLba * sbs
  const to = s.destinationLba * dbs
  // Same unit, destination further on and overlapping: copy the last chunk first.
  const backwards = src.lun === dst.lun && to > from && to < from + bytes
  const chunk = Math.min(WORK_CHUNK_BYTES, bytes)
  const buf = Buffer.allocUnsafe(chunk)
  const n = Math.ceil(bytes / chunk)
  return walk(bytes, chunk, (done, size) => {
    const off = backwards ? (n - 1 - done / chunk) * chunk : done
    const piece = backwards ? Math.min(chunk, bytes - off) : size
    const b = piece === chunk ? buf : buf.subarray(0, piece)
    const refused = (field: number) => (o: ScsiOutcome | null) => (o === null ? null : end(Asc.COPY_TARGET_DEVICE_NOT_REACHABLE, { cd: false, sd: true, field }))
    const read = src.read(from + off, b)
    const write = (o: ScsiOutcome | null): MaybeAsync<ScsiOutcome | null> => {
      if (o !== null) return refused(S.source.offset)(o)
      const w = dst.write(to + off, b)
      const wrote = (e: ScsiOutcome | null) => {
        if (e === null) onBytes(piece)
        return refused(S.destination.offset)(e)
      }
      return w instanceof Promise ? w.then(wrote) : wrote(w)
    }
    return read instanceof Promise ? read.then(write) : write(read)
  })
}

// ---- RECEIVE COPY RESULTS ---------------------------------------------------------

const allocLength = (cmd: ScsiCommand) => readU32BE(cmd.cdb, CDB_ALLOC_LEN)

/** RECEIVE COPY STATUS(LID1): the state of a running or held copy; a finished copy's status goes once returned whole. */
export const receiveCopyStatus: Handler = (u, cmd) => {
  const rec = u.copies.find(cmd, cmd.cdb[CDB_LIST_ID])
  if (rec === undefined) return invalidFieldInCdb(CDB_LIST_ID)
  const alloc = allocLength(cmd)
  const data = Buffer.alloc(COPY_STATUS.size)
  const [units, count] = transferCount(rec.bytes)
  encodeCopyStatus({ heldDataDiscarded: false, status: rec.state, segmentsProcessed: rec.segments, transferCountUnits: units, transferCount: count }, data)
  const o = dataInResponse(cmd, data, data.length, alloc)
  if (rec.state !== CopyManagerStatus.IN_PROGRESS && (alloc === 0 || o.transferred === data.length)) {
    rec.statusTaken = true
    u.copies.settle(cmd, rec)
  }
  return o
}

/** RECEIVE COPY DATA(LID1): block → block segments hold no data, so a known copy has none to return. */
export const receiveCopyData: Handler = (u, cmd) => {
  if (u.copies.find(cmd, cmd.cdb[CDB_LIST_ID]) === undefined) return invalidFieldInCdb(CDB_LIST_ID)
  return dataInResponse(cmd, Buffer.alloc(4), 4, allocLength(cmd))
}

/** RECEIVE COPY OPERATING PARAMETERS: the limits (copyLimits); the LIST IDENTIFIER is not used. */
export const receiveCopyOperatingParameters: Handler = (u, cmd) => {
  const p = operatingParameters(copyLimits(u.lun.blockSize))
  const data = Buffer.alloc(operatingParametersSize(p))
  encodeOperatingParameters(p, data)
  return dataInResponse(cmd, data, data.length, allocLength(cmd))
}

/** RECEIVE COPY FAILURE DETAILS(LID1): the sense a held copy failed with (none: AVAILABLE DATA 0); it goes once returned whole. */
export const receiveCopyFailureDetails: Handler = (u, cmd) => {
  const rec = u.copies.find(cmd, cmd.cdb[CDB_LIST_ID])
  if (rec === undefined) return invalidFieldInCdb(CDB_LIST_ID)
  const alloc = allocLength(cmd)
  const data = Buffer.alloc(failureDetailsSize(rec.failure))
  encodeFailureDetails(rec.failure, data)
  const o = dataInResponse(cmd, data, data.length, alloc)
  if (rec.failure !== null && (alloc === 0 || o.transferred === data.length)) {
    rec.failure = null
    u.copies.settle(cmd, rec)
  }
  return o
}
