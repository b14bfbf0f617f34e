/**
 * SCSI status, sense keys, additional sense codes and the two sense data
 * formats (SPC-4 4.5). Handlers build failures with `checkCondition` and the
 * named constants here; initiators read sense with `senseCode` and map an
 * outcome to errno with scsi/errno.ts. Part of the SCSI wire leaf (bytes,
 * layout, data, cdb, sense, errno): it imports nothing above scsi/.
 *
 * Fixed format (response code 0x70 current / 0x71 deferred), 18 bytes:
 *
 *   byte  0     VALID(7) | RESPONSE CODE(6..0)
 *         2     FILEMARK(7) EOM(6) ILI(5) | SENSE KEY(3..0)
 *         3..6  INFORMATION (u32 BE; meaningful when VALID)
 *         7     ADDITIONAL SENSE LENGTH (n - 8 = 10)
 *         8..11 COMMAND-SPECIFIC INFORMATION
 *        12     ASC        13  ASCQ        14  FRU CODE
 *        15..17 SENSE-KEY SPECIFIC: SKSV(7) C/D(6) BPV(3) BIT POINTER(2..0), FIELD POINTER (u16 BE)
 *
 * Descriptor format (0x72 current / 0x73 deferred): an 8-byte header
 * (response code, key, ASC, ASCQ, additional length @7) followed by
 * descriptors {type, additional length, …}: 0x00 information, 0x02 sense-key specific.
 */
import { DecodeError } from '../errors.js'
import { readU16BE, readU32BE, readU64BE, writeU16BE, writeU32BE, writeU64BE } from './bytes.js'
import type { ScsiOutcome } from './types.js'

/** SCSI status byte values (SAM-5 5.3). */
export const Status = {
  GOOD: 0x00, // the command completed
  CHECK_CONDITION: 0x02, // it failed; sense data says why
  CONDITION_MET: 0x04, // PRE-FETCH found the range cached
  BUSY: 0x08, // the logical unit cannot take the command now; retry later
  RESERVATION_CONFLICT: 0x18, // another initiator holds a reservation
  TASK_SET_FULL: 0x28, // the queue for this logical unit is full (QUEUE FULL)
  ACA_ACTIVE: 0x30, // an auto contingent allegiance is in effect
  TASK_ABORTED: 0x40, // aborted by another initiator's task management
} as const

const STATUS_NAMES: Record<number, string> = {
  [Status.GOOD]: 'GOOD',
  [Status.CHECK_CONDITION]: 'CHECK CONDITION',
  [Status.CONDITION_MET]: 'CONDITION MET',
  [Status.BUSY]: 'BUSY',
  [Status.RESERVATION_CONFLICT]: 'RESERVATION CONFLICT',
  [Status.TASK_SET_FULL]: 'TASK SET FULL',
  [Status.ACA_ACTIVE]: 'ACA ACTIVE',
  [Status.TASK_ABORTED]: 'TASK ABORTED',
}

/** "GOOD", "CHECK CONDITION", …; unknown values as "status 0x..". */
export function statusName(status: number): string {
  return STATUS_NAMES[status] ?? `status 0x${hex2(status)}`
}

/** Sense keys (SPC-4 table 45). */
export const SenseKey = {
  NO_SENSE: 0x0, // nothing to report (REQUEST SENSE with nothing pending)
  RECOVERED_ERROR: 0x1, // the command succeeded after recovery
  NOT_READY: 0x2, // the logical unit cannot be accessed now
  MEDIUM_ERROR: 0x3, // the medium failed: unrecoverable read or write
  HARDWARE_ERROR: 0x4, // the device failed in a way that is not the medium
  ILLEGAL_REQUEST: 0x5, // the CDB or parameter data was wrong
  UNIT_ATTENTION: 0x6, // something changed (reset, capacity, LUN inventory); retry
  DATA_PROTECT: 0x7, // write to a write-protected logical unit
  BLANK_CHECK: 0x8, // read of never-written medium (tape, WORM)
  VENDOR_SPECIFIC: 0x9, // vendor specific
  COPY_ABORTED: 0xa, // EXTENDED COPY failed
  ABORTED_COMMAND: 0xb, // the target aborted the command; the initiator may retry
  VOLUME_OVERFLOW: 0xd, // a buffered device reached end of partition
  MISCOMPARE: 0xe, // COMPARE AND WRITE / VERIFY found different data
} as const

const KEY_NAMES = [
  'NO SENSE',
  'RECOVERED ERROR',
  'NOT READY',
  'MEDIUM ERROR',
  'HARDWARE ERROR',
  'ILLEGAL REQUEST',
  'UNIT ATTENTION',
  'DATA PROTECT',
  'BLANK CHECK',
  'VENDOR SPECIFIC',
  'COPY ABORTED',
  'ABORTED COMMAND',
  'RESERVED (0xC)',
  'VOLUME OVERFLOW',
  'MISCOMPARE',
  'COMPLETED',
]

/** An additional sense code and its qualifier. */
export interface AscAscq {
  readonly asc: number
  readonly ascq: number
}

function code(asc: number, ascq: number): AscAscq {
  return { asc, ascq }
}

/** Additional sense codes fcfs reports (SPC-4 annex D). */
export const Asc = {
  NO_ADDITIONAL_SENSE: code(0x00, 0x00), // 00/00 nothing more to say
  OPERATION_IN_PROGRESS: code(0x00, 0x16), // 00/16 an EXTENDED COPY with this list identifier is still running
  LUN_NOT_READY_CAUSE_NOT_REPORTABLE: code(0x04, 0x00), // 04/00 not ready, no reason given
  LUN_NOT_READY_BECOMING_READY: code(0x04, 0x01), // 04/01 spinning up / coming online
  LUN_NOT_READY_INIT_REQUIRED: code(0x04, 0x02), // 04/02 needs START STOP UNIT
  LUN_NOT_READY_MANUAL_INTERVENTION: code(0x04, 0x03), // 04/03 an operator must act
  LUN_NOT_READY_FORMAT_IN_PROGRESS: code(0x04, 0x04), // 04/04 FORMAT UNIT running
  LUN_NOT_ACCESSIBLE_TRANSITIONING: code(0x04, 0x0a), // 04/0A ALUA: the port group is changing state
  LUN_NOT_ACCESSIBLE_STANDBY: code(0x04, 0x0b), // 04/0B ALUA: this port's group is in standby
  LUN_NOT_ACCESSIBLE_UNAVAILABLE: code(0x04, 0x0c), // 04/0C ALUA: this port's group is unavailable
  LUN_NOT_READY_OFFLINE: code(0x04, 0x12), // 04/12 the logical unit is offline
  LUN_NOT_READY_SANITIZE_IN_PROGRESS: code(0x04, 0x1b), // 04/1B a SANITIZE is running; SKS holds its progress
  UNREACHABLE_COPY_TARGET: code(0x08, 0x04), // 08/04 a segment names a CSCD descriptor the list does not have
  COPY_TARGET_DEVICE_NOT_REACHABLE: code(0x0d, 0x02), // 0D/02 the copy manager cannot reach or use a copy target (LIO's answer)
  INCORRECT_COPY_TARGET_DEVICE_TYPE: code(0x0d, 0x03), // 0D/03 a CSCD's peripheral device type is not the copy target's
  WRITE_ERROR: code(0x0c, 0x00), // 0C/00 a write failed (also: the store could not grow)
  UNRECOVERED_READ_ERROR: code(0x11, 0x00), // 11/00 a read failed at INFORMATION
  PARAMETER_LIST_LENGTH_ERROR: code(0x1a, 0x00), // 1A/00 data-out shorter than the parameter list
  INVALID_COMMAND_OPERATION_CODE: code(0x20, 0x00), // 20/00 opcode (or service action) not implemented
  LBA_OUT_OF_RANGE: code(0x21, 0x00), // 21/00 LBA + transfer length past the last block
  INVALID_FIELD_IN_CDB: code(0x24, 0x00), // 24/00 a CDB field is reserved, unsupported or wrong; SKS points at it
  LOGICAL_UNIT_NOT_SUPPORTED: code(0x25, 0x00), // 25/00 no logical unit at this LUN
  INVALID_FIELD_IN_PARAMETER_LIST: code(0x26, 0x00), // 26/00 a parameter data field is wrong; SKS points at it
  INVALID_RELEASE_OF_PERSISTENT_RESERVATION: code(0x26, 0x04), // 26/04 PR OUT RELEASE by the holder with another TYPE or SCOPE
  TOO_MANY_TARGET_DESCRIPTORS: code(0x26, 0x06), // 26/06 more CSCD descriptors than the copy manager takes
  UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: code(0x26, 0x07), // 26/07 a CSCD descriptor type the copy manager does not know
  TOO_MANY_SEGMENT_DESCRIPTORS: code(0x26, 0x08), // 26/08 more segment descriptors than the copy manager takes
  UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: code(0x26, 0x09), // 26/09 a segment descriptor type the copy manager does not know
  UNEXPECTED_INEXACT_SEGMENT: code(0x26, 0x0a), // 26/0A a segment's bytes are not whole blocks of its source and destination
  INLINE_DATA_LENGTH_EXCEEDED: code(0x26, 0x0b), // 26/0B inline data in an EXTENDED COPY (fcfs takes none)
  WRITE_PROTECTED: code(0x27, 0x00), // 27/00 the logical unit is write protected
  SPACE_ALLOCATION_FAILED_WRITE_PROTECT: code(0x27, 0x07), // 27/07 thin provisioning ran out (a 'nospace' backend write: respond.ts)
  NOT_READY_TO_READY_CHANGE: code(0x28, 0x00), // 28/00 medium may have changed
  POWER_ON_RESET_OR_BUS_DEVICE_RESET: code(0x29, 0x00), // 29/00 power on, reset or bus device reset occurred
  POWER_ON_OCCURRED: code(0x29, 0x01), // 29/01 power on occurred
  SCSI_BUS_RESET_OCCURRED: code(0x29, 0x02), // 29/02 bus reset occurred
  BUS_DEVICE_RESET_FUNCTION_OCCURRED: code(0x29, 0x03), // 29/03 target reset occurred
  I_T_NEXUS_LOSS_OCCURRED: code(0x29, 0x07), // 29/07 the initiator logged out and back in
  PARAMETERS_CHANGED: code(0x2a, 0x00), // 2A/00 mode or log parameters changed
  ASYMMETRIC_ACCESS_STATE_CHANGED: code(0x2a, 0x06), // 2A/06 an ALUA port group changed state; re-run RTPG
  MODE_PARAMETERS_CHANGED: code(0x2a, 0x01), // 2A/01 another initiator changed a mode page
  RESERVATIONS_PREEMPTED: code(0x2a, 0x03), // 2A/03 a PR OUT CLEAR removed this nexus's registration and any reservation
  RESERVATIONS_RELEASED: code(0x2a, 0x04), // 2A/04 a registrants-only / all-registrants reservation was released (or changed type)
  REGISTRATIONS_PREEMPTED: code(0x2a, 0x05), // 2A/05 a PREEMPT (AND ABORT) removed this nexus's registration
  CAPACITY_DATA_HAS_CHANGED: code(0x2a, 0x09), // 2A/09 re-read the capacity
  COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: code(0x2f, 0x00), // 2F/00 another initiator cleared the task set
  SAVING_PARAMETERS_NOT_SUPPORTED: code(0x39, 0x00), // 39/00 the SP bit is not supported
  SANITIZE_COMMAND_FAILED: code(0x31, 0x03), // 31/03 the last SANITIZE failed: medium access refused until EXIT FAILURE MODE or a SANITIZE that succeeds
  MEDIUM_NOT_PRESENT: code(0x3a, 0x00), // 3A/00 no medium (a removable unit's was ejected)
  INQUIRY_DATA_HAS_CHANGED: code(0x3f, 0x03), // 3F/03 re-read INQUIRY data
  REPORTED_LUNS_DATA_HAS_CHANGED: code(0x3f, 0x0e), // 3F/0E re-run REPORT LUNS
  INTERNAL_TARGET_FAILURE: code(0x44, 0x00), // 44/00 the target failed internally
  MEDIUM_REMOVAL_PREVENTED: code(0x53, 0x02), // 53/02 eject or load refused: an I_T nexus prevents medium removal
  INSUFFICIENT_RESOURCES: code(0x55, 0x03), // 55/03 no room for another copy's results
  INSUFFICIENT_REGISTRATION_RESOURCES: code(0x55, 0x04), // 55/04 no room for another persistent reservation registration
  MISCOMPARE_DURING_VERIFY: code(0x1d, 0x00), // 1D/00 VERIFY / COMPARE AND WRITE data differed
} as const

const ASC_NAMES = new Map<number, string>([
  [0x0000, 'NO ADDITIONAL SENSE INFORMATION'],
  [0x0016, 'OPERATION IN PROGRESS'],
  [0x0400, 'LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE'],
  [0x0401, 'LOGICAL UNIT IS IN PROCESS OF BECOMING READY'],
  [0x0402, 'LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED'],
  [0x0403, 'LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED'],
  [0x0404, 'LOGICAL UNIT NOT READY, FORMAT IN PROGRESS'],
  [0x040a, 'LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION'],
  [0x040b, 'LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE'],
  [0x040c, 'LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE'],
  [0x0412, 'LOGICAL UNIT NOT READY, OFFLINE'],
  [0x041b, 'LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS'],
  [0x0804, 'UNREACHABLE COPY TARGET'],
  [0x0c00, 'WRITE ERROR'],
  [0x0d02, 'COPY TARGET DEVICE NOT REACHABLE'],
  [0x0d03, 'INCORRECT COPY TARGET DEVICE TYPE'],
  [0x1100, 'UNRECOVERED READ ERROR'],
  [0x1a00, 'PARAMETER LIST LENGTH ERROR'],
  [0x1d00, 'MISCOMPARE DURING VERIFY OPERATION'],
  [0x2000, 'INVALID COMMAND OPERATION CODE'],
  [0x2100, 'LOGICAL BLOCK ADDRESS OUT OF RANGE'],
  [0x2400, 'INVALID FIELD IN CDB'],
  [0x2500, 'LOGICAL UNIT NOT SUPPORTED'],
  [0x2600, 'INVALID FIELD IN PARAMETER LIST'],
  [0x2604, 'INVALID RELEASE OF PERSISTENT RESERVATION'],
  [0x2606, 'TOO MANY TARGET DESCRIPTORS'],
  [0x2607, 'UNSUPPORTED TARGET DESCRIPTOR TYPE CODE'],
  [0x2608, 'TOO MANY SEGMENT DESCRIPTORS'],
  [0x2609, 'UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE'],
  [0x260a, 'UNEXPECTED INEXACT SEGMENT'],
  [0x260b, 'INLINE DATA LENGTH EXCEEDED'],
  [0x2700, 'WRITE PROTECTED'],
  [0x2707, 'SPACE ALLOCATION FAILED WRITE PROTECT'],
  [0x2800, 'NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED'],
  [0x2900, 'POWER ON, RESET, OR BUS DEVICE RESET OCCURRED'],
  [0x2901, 'POWER ON OCCURRED'],
  [0x2902, 'SCSI BUS RESET OCCURRED'],
  [0x2903, 'BUS DEVICE RESET FUNCTION OCCURRED'],
  [0x2907, 'I_T NEXUS LOSS OCCURRED'],
  [0x2a00, 'PARAMETERS CHANGED'],
  [0x2a01, 'MODE PARAMETERS CHANGED'],
  [0x2a03, 'RESERVATIONS PREEMPTED'],
  [0x2a04, 'RESERVATIONS RELEASED'],
  [0x2a05, 'REGISTRATIONS PREEMPTED'],
  [0x2a06, 'ASYMMETRIC ACCESS STATE CHANGED'],
  [0x2a09, 'CAPACITY DATA HAS CHANGED'],
  [0x2f00, 'COMMANDS CLEARED BY ANOTHER INITIATOR'],
  [0x3900, 'SAVING PARAMETERS NOT SUPPORTED'],
  [0x3103, 'SANITIZE COMMAND FAILED'],
  [0x3a00, 'MEDIUM NOT PRESENT'],
  [0x3f03, 'INQUIRY DATA HAS CHANGED'],
  [0x3f0e, 'REPORTED LUNS DATA HAS CHANGED'],
  [0x4400, 'INTERNAL TARGET FAILURE'],
  [0x5302, 'MEDIUM REMOVAL PREVENTED'],
  [0x5503, 'INSUFFICIENT RESOURCES'],
  [0x5504, 'INSUFFICIENT REGISTRATION RESOURCES'],
])

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0')
}

/** "ILLEGAL REQUEST: INVALID FIELD IN CDB"; an unknown code as "ASC 0x.. ASCQ 0x..". */
export function describeSense(key: number, asc: number, ascq: number): string {
  const k = KEY_NAMES[key & 0xf]
  let a = ASC_NAMES.get((asc << 8) | ascq)
  if (a === undefined && asc === 0x04) a = `LOGICAL UNIT NOT READY (ASCQ 0x${hex2(ascq)})`
  return `${k}: ${a ?? `ASC 0x${hex2(asc)} ASCQ 0x${hex2(ascq)}`}`
}

/**
 * Sense-key-specific bytes for ILLEGAL REQUEST: where in the CDB (C/D=1) or
 * parameter list the bad field is; for COPY ABORTED the segment pointer form
 * (SPC-4 4.5.2.4.6), where SD=1 makes the field relative to the segment
 * descriptor the COMMAND-SPECIFIC INFORMATION names.
 */
export interface FieldPointer {
  /** true: the field is in the CDB; false: in the parameter list (data-out). */
  readonly cd: boolean
  /** COPY ABORTED only: the field pointer counts from the segment descriptor, not the parameter list. */
  readonly sd?: boolean
  /** Byte index of the field. */
  readonly field: number
  /** Bit (0..7) within that byte, when it matters (sets BPV). */
  readonly bit?: number
}

export interface SenseInfo {
  readonly key: number
  readonly asc: number
  readonly ascq: number
  /** The INFORMATION field: failing LBA for medium errors. */
  readonly info?: number
  /** COMMAND-SPECIFIC INFORMATION: for EXTENDED COPY, the segment descriptor being processed. */
  readonly commandSpecific?: number
  readonly sks?: FieldPointer
}

export interface DecodedSense {
  readonly format: 'fixed' | 'descriptor'
  /** true for current errors (0x70/0x72), false for deferred (0x71/0x73). */
  readonly current: boolean
  readonly key: number
  readonly asc: number
  readonly ascq: number
  readonly info?: number
  readonly commandSpecific?: number
  readonly sks?: FieldPointer
}

/** Fixed-format layout: byte offsets (see the drawing at the top). */
export const FIXED_SENSE = {
  size: 18,
  responseCode: 0, // VALID bit 7
  key: 2,
  info: 3, // 4 bytes
  additionalLength: 7,
  commandSpecific: 8, // 4 bytes
  asc: 12,
  ascq: 13,
  fru: 14,
  sks: 15, // 3 bytes
} as const

/** Descriptor-format layout: header offsets and the descriptors fcfs writes. */
export const DESCRIPTOR_SENSE = {
  headerSize: 8,
  responseCode: 0,
  key: 1,
  asc: 2,
  ascq: 3,
  additionalLength: 7,
  /** Information descriptor: type 0x00, additional length 0x0A, VALID @2, INFORMATION u64 @4. */
  information: { type: 0x00, size: 12, valid: 2, info: 4 },
  /** Command-specific information descriptor: type 0x01, additional length 0x0A, the u64 @4. */
  commandSpecific: { type: 0x01, size: 12, value: 4 },
  /** Sense-key specific descriptor: type 0x02, additional length 0x06, SKS bytes @4..6. */
  senseKeySpecific: { type: 0x02, size: 8, sks: 4 },
} as const

const VALID = 0x80
const SKSV = 0x80
const SKS_CD = 0x40
const SKS_SD = 0x20
const SKS_BPV = 0x08

function writeSks(buf: Buffer, off: number, p: FieldPointer): void {
  let b0 = SKSV | (p.cd ? SKS_CD : 0) | (p.sd ? SKS_SD : 0)
  if (p.bit !== undefined) b0 |= SKS_BPV | (p.bit & 0x07)
  buf[off] = b0
  writeU16BE(buf, off + 1, p.field)
}

function readSks(buf: Uint8Array, off: number): FieldPointer | undefined {
  const b0 = buf[off]
  if ((b0 & SKSV) === 0) return undefined
  const field = readU16BE(buf, off + 1)
  const cd = (b0 & SKS_CD) !== 0
  const sd = (b0 & SKS_SD) !== 0 ? { sd: true } : {}
  return (b0 & SKS_BPV) !== 0 ? { cd, ...sd, field, bit: b0 & 0x07 } : { cd, ...sd, field }
}

/** 18-byte fixed-format sense (0x70): VALID when `info` is given and fits 32 bits, SKSV when `sks` is given. */
export function encodeFixedSense(s: SenseInfo): Buffer {
  const F = FIXED_SENSE
  const buf = Buffer.alloc(F.size)
  // INFORMATION is 4 bytes here: a larger value cannot be reported, so VALID stays 0 (SPC-4 4.5.3).
  const infoFits = s.info !== undefined && s.info >= 0 && s.info <= 0xffffffff
  buf[F.responseCode] = 0x70 | (infoFits ? VALID : 0)
  buf[F.key] = s.key & 0x0f
  if (infoFits) writeU32BE(buf, F.info, s.info!)
  if (s.commandSpecific !== undefined) writeU32BE(buf, F.commandSpecific, s.commandSpecific)
  buf[F.additionalLength] = F.size - 8
  buf[F.asc] = s.asc
  buf[F.ascq] = s.ascq
  if (s.sks) writeSks(buf, F.sks, s.sks)
  return buf
}

/** Descriptor-format sense (0x72) with an information descriptor when `info` is given and a sense-key-specific one when `sks` is. */
export function encodeDescriptorSense(s: SenseInfo): Buffer {
  const D = DESCRIPTOR_SENSE
  const len =
    D.headerSize + (s.info !== undefined ? D.information.size : 0) + (s.commandSpecific !== undefined ? D.commandSpecific.size : 0) + (s.sks ? D.senseKeySpecific.size : 0)
  const buf = Buffer.alloc(len)
  buf[D.responseCode] = 0x72
  buf[D.key] = s.key & 0x0f
  buf[D.asc] = s.asc
  buf[D.ascq] = s.ascq
  buf[D.additionalLength] = len - D.headerSize
  let at = D.headerSize
  if (s.info !== undefined) {
    buf[at] = D.information.type
    buf[at + 1] = D.information.size - 2
    buf[at + D.information.valid] = VALID
    writeU64BE(buf, at + D.information.info, s.info)
    at += D.information.size
  }
  if (s.commandSpecific !== undefined) {
    buf[at] = D.commandSpecific.type
    buf[at + 1] = D.commandSpecific.size - 2
    writeU64BE(buf, at + D.commandSpecific.value, s.commandSpecific)
    at += D.commandSpecific.size
  }
  if (s.sks) {
    buf[at] = D.senseKeySpecific.type
    buf[at + 1] = D.senseKeySpecific.size - 2
    writeSks(buf, at + D.senseKeySpecific.sks, s.sks)
  }
  return buf
}

/** Decodes fixed (0x70/0x71) or descriptor (0x72/0x73) sense data; throws DecodeError naming what is wrong. */
export function decodeSense(buf: Uint8Array, offset = 0): DecodedSense {
  if (buf.length - offset < 1) throw new DecodeError('sense', 'empty sense data')
  const rc = buf[offset] & 0x7f
  const n = buf.length - offset
  if (rc === 0x70 || rc === 0x71) {
    const F = FIXED_SENSE
    if (n < F.ascq + 1) throw new DecodeError('sense', `fixed-format sense is ${n} bytes, needs at least ${F.ascq + 1} to hold ASC/ASCQ`)
    const end = Math.min(n, 8 + buf[offset + F.additionalLength])
    if (end < F.ascq + 1) {
      throw new DecodeError('sense', `fixed-format ADDITIONAL SENSE LENGTH ${buf[offset + F.additionalLength]} does not cover ASC/ASCQ`)
    }
    const valid = (buf[offset] & VALID) !== 0
    const sks = end >= F.sks + 3 ? readSks(buf, offset + F.sks) : undefined
    const commandSpecific = end >= F.commandSpecific + 4 ? readU32BE(buf, offset + F.commandSpecific) : 0
    return {
      format: 'fixed',
      current: rc === 0x70,
      key: buf[offset + F.key] & 0x0f,
      asc: buf[offset + F.asc],
      ascq: buf[offset + F.ascq],
      ...(valid ? { info: readU32BE(buf, offset + F.info) } : {}),
      ...(commandSpecific !== 0 ? { commandSpecific } : {}),
      ...(sks ? { sks } : {}),
    }
  }
  if (rc === 0x72 || rc === 0x73) {
    const D = DESCRIPTOR_SENSE
    if (n < D.headerSize) throw new DecodeError('sense', `descriptor-format sense is ${n} bytes, needs at least ${D.headerSize}`)
    const end = Math.min(n, D.headerSize + buf[offset + D.additionalLength])
    let info: number | undefined
    let commandSpecific: number | undefined
    let sks: FieldPointer | undefined
    let at = D.headerSize
    while (at < end) {
      if (at + 2 > end) throw new DecodeError('sense', `descriptor at byte ${at} is cut off before its length`)
      const type = buf[offset + at]
      const size = buf[offset + at + 1] + 2
      if (at + size > end) throw new DecodeError('sense', `descriptor 0x${hex2(type)} at byte ${at} runs past the sense data (${size} bytes, ${end - at} left)`)
      if (type === D.information.type && size >= D.information.size) {
        if ((buf[offset + at + D.information.valid] & VALID) !== 0) info = readU64BE(buf, offset + at + D.information.info)
      } else if (type === D.commandSpecific.type && size >= D.commandSpecific.size) {
        commandSpecific = readU64BE(buf, offset + at + D.commandSpecific.value)
      } else if (type === D.senseKeySpecific.type && size >= D.senseKeySpecific.size) {
        sks = readSks(buf, offset + at + D.senseKeySpecific.sks)
      }
      at += size
    }
    return {
      format: 'descriptor',
      current: rc === 0x72,
      key: buf[offset + D.key] & 0x0f,
      asc: buf[offset + D.asc],
      ascq: buf[offset + D.ascq],
      ...(info !== undefined ? { info } : {}),
      ...(commandSpecific !== undefined ? { commandSpecific } : {}),
      ...(sks ? { sks } : {}),
    }
  }
  throw new DecodeError('sense', `response code 0x${hex2(rc)} is not a sense data format (0x70..0x73)`)
}

// ---- the initiator's reading ---------------------------------------------

/** RESPONSE CODE values (byte 0 bits 6..0): the format, and whether the error is this command's. */
export const SenseResponse = {
  FIXED_CURRENT: 0x70,
  FIXED_DEFERRED: 0x71, // an earlier command's error (a write-back cache that failed later)
  DESCRIPTOR_CURRENT: 0x72,
  DESCRIPTOR_DEFERRED: 0x73,
} as const

/** The RESPONSE CODE of sense data (VALID bit dropped); -1 for none. */
export function senseResponseCode(sense: Uint8Array | null, offset = 0): number {
  return sense === null || sense.length <= offset ? -1 : sense[offset] & 0x7f
}

/** What `senseCode` returns when there is no sense data to read. */
export const NO_SENSE_CODE = -1

/**
 * Sense key, ASC and ASCQ packed as KEY<<16 | ASC<<8 | ASCQ, read from fixed
 * (0x70/0x71) or descriptor (0x72/0x73) sense without allocating: every
 * initiator (fs, the API, the remote backend, faults, the trace) reads sense
 * through this. NO_SENSE_CODE when `sense` is null, shorter than 3 bytes or
 * not sense data.
 *
 * Lenient where `decodeSense` is strict, as initiators must be: it ignores the
 * ADDITIONAL SENSE LENGTH, fixed sense cut before ASC/ASCQ (under 14 bytes)
 * reads as ASC/ASCQ 0, a descriptor header cut before ASCQ as ASCQ 0.
 */
export function senseCode(sense: Uint8Array | null, offset = 0): number {
  if (sense === null) return NO_SENSE_CODE
  const n = sense.length - offset
  if (n < 3) return NO_SENSE_CODE
  const rc = sense[offset] & 0x7f
  if (rc === SenseResponse.FIXED_CURRENT || rc === SenseResponse.FIXED_DEFERRED) {
    const F = FIXED_SENSE
    const key = sense[offset + F.key] & 0x0f
    if (n <= F.ascq) return key << 16
    return (key << 16) | (sense[offset + F.asc] << 8) | sense[offset + F.ascq]
  }
  if (rc === SenseResponse.DESCRIPTOR_CURRENT || rc === SenseResponse.DESCRIPTOR_DEFERRED) {
    const D = DESCRIPTOR_SENSE
    return ((sense[offset + D.key] & 0x0f) << 16) | (sense[offset + D.asc] << 8) | (n > D.ascq ? sense[offset + D.ascq] : 0)
  }
  return NO_SENSE_CODE
}

/** The sense key of a `senseCode` (-1 for NO_SENSE_CODE). */
export function senseCodeKey(code: number): number {
  return code < 0 ? -1 : code >>> 16
}

/** The ASC of a `senseCode` (-1 for NO_SENSE_CODE). */
export function senseCodeAsc(code: number): number {
  return code < 0 ? -1 : (code >>> 8) & 0xff
}

/** The ASCQ of a `senseCode` (-1 for NO_SENSE_CODE). */
export function senseCodeAscq(code: number): number {
  return code < 0 ? -1 : code & 0xff
}

/** True when a `senseCode` carries the additional sense code `c` (ASC and ASCQ). */
export function senseCodeIs(code: number, c: AscAscq): boolean {
  return code >= 0 && (code & 0xffff) === ((c.asc << 8) | c.ascq)
}

/** `senseCode` as an object, for info files and messages (allocates: not for the per-command path). */
export function senseTriple(sense: Uint8Array | null): { key: number; asc: number; ascq: number } | null {
  const code = senseCode(sense)
  return code < 0 ? null : { key: senseCodeKey(code), asc: senseCodeAsc(code), ascq: senseCodeAscq(code) }
}

/** "MEDIUM ERROR: UNRECOVERED READ ERROR" for a `senseCode`; "" for NO_SENSE_CODE. */
export function describeSenseCode(code: number): string {
  return code < 0 ? '' : describeSense(senseCodeKey(code), senseCodeAsc(code), senseCodeAscq(code))
}

/** Re-encodes fixed-format sense as descriptor format (for a logical unit that reports descriptor sense). */
export function toDescriptorSense(fixed: Buffer): Buffer {
  const d = decodeSense(fixed)
  return encodeDescriptorSense(d)
}

export interface CheckConditionExtra {
  readonly info?: number
  readonly commandSpecific?: number
  readonly sks?: FieldPointer
  /** Bytes moved before the failure (default 0). */
  readonly transferred?: number
  /** Bytes the CDB called for (default 0: nothing more is owed). */
  readonly wanted?: number
}

/** A CHECK CONDITION outcome with fixed-format sense. */
export function checkCondition(key: number, asc: number, ascq: number, extra?: CheckConditionExtra): ScsiOutcome {
  return {
    status: Status.CHECK_CONDITION,
    sense: encodeFixedSense({ key, asc, ascq, info: extra?.info, commandSpecific: extra?.commandSpecific, sks: extra?.sks }),
    transferred: extra?.transferred ?? 0,
    wanted: extra?.wanted ?? 0,
  }
}

/** `checkCondition` with a named code: `fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)`. */
export function fail(key: number, c: AscAscq, extra?: CheckConditionExtra): ScsiOutcome {
  return checkCondition(key, c.asc, c.ascq, extra)
}

/** ILLEGAL REQUEST, INVALID FIELD IN CDB, pointing at CDB byte `field` (and `bit`, when given). */
export function invalidFieldInCdb(field: number, bit?: number): ScsiOutcome {
  return fail(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, { sks: bit === undefined ? { cd: true, field } : { cd: true, field, bit } })
}

/** ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST, pointing at byte `field` of the data-out (and `bit`, when given). */
export function invalidFieldInParameterList(field: number, bit?: number): ScsiOutcome {
  return fail(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST, { sks: bit === undefined ? { cd: false, field } : { cd: false, field, bit } })
}

/** ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR: the data-out is shorter than its own contents say. */
export function parameterListLengthError(): ScsiOutcome {
  return fail(SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR)
}

/** GOOD with `transferred` bytes moved of `wanted`. */
export function good(transferred: number, wanted: number): ScsiOutcome {
  return { status: Status.GOOD, sense: null, transferred, wanted }
}
