/**
 * The one opcode table (scsi_debug's opcode_info_arr, QEMU's scsi_disk_reqops):
 * each row names a command, its CDB length, data direction, the bits the CDB
 * may have set (the len_mask) and its handler. It drives dispatch, names in
 * logs and traces, reserved-bit checks, the unit attention / stopped unit /
 * ALUA gates in lu.ts, and REPORT SUPPORTED OPERATION CODES (rsoc.ts), whose
 * CDB USAGE DATA is the mask itself.
 *
 * mask[i] holds the bits allowed in CDB byte i; mask[0] is the opcode itself.
 * A set bit outside the mask is ILLEGAL REQUEST, INVALID FIELD IN CDB with a
 * field pointer to the byte and a bit pointer to the highest offending bit.
 * The control byte (last) allows only the vendor-specific bits 7..6: fcfs
 * supports neither NACA (ACA) nor linked commands, so NACA=1 is rejected as
 * SAM-5 requires. RDPROTECT/WRPROTECT/VRPROTECT (byte 1 bits 7..5) are never
 * allowed: there is no protection information (SBC-3 4.18). GROUP NUMBER
 * (bits 5..0) is accepted and ignored.
 *
 * The `pr` column is how a command fares under reservations (pr.ts draws the
 * table): 'any' and 'allowed' run under every persistent reservation, 'read'
 * conflicts only under the exclusive-access types, 'write' under every type,
 * for initiators that neither hold the reservation nor are registered under a
 * registrants-only / all-registrants one. They come from SPC-4's "SPC commands
 * that are allowed in the presence of various reservations" and SBC-3's table
 * for block commands (READ CAPACITY allowed; PRE-FETCH, VERIFY, GET LBA
 * STATUS, READ DEFECT DATA as reads; SYNCHRONIZE CACHE, UNMAP, MODE SELECT as
 * writes; PREVENT ALLOW MEDIUM REMOVAL and START STOP UNIT depend on a field).
 */
import { reportTargetPortGroups, type AluaAccess } from './alua.js'
import { preFetch, synchronizeCache, testUnitReady } from './cache.js'
import { getLbaStatus, readCapacity10, readCapacity16 } from './capacity.js'
import { MaintenanceIn, Op, ServiceActionIn16 } from './cdb.js'
import { readDefectData } from './defects.js'
import { inquiry } from './inquiry.js'
import { reportLunsOfUnit } from './luns.js'
import { modeSelect, modeSense } from './mode.js'
import { persistentReserveIn, persistentReserveOut, preventAccess, release6, reserve6, startStopAccess, type PrAccessOf } from './pr.js'
import { PrIn, PrOut } from './pr-data.js'
import { reportSupportedOperationCodes } from './rsoc.js'
import { readWrite, writeAtomic16 } from './rw.js'
import { Asc, fail, invalidFieldInCdb, SenseKey } from './sense.js'
import { SanitizeAction, sanitize } from './sanitize.js'
import { requestSense } from './sense_cmds.js'
import { preventAllowMediumRemoval, startStopUnit } from './startstop.js'
import { DataDirection, type ScsiOutcome } from './types.js'
import type { Handler } from './unit.js'
import { unmap, writeSame } from './unmap.js'
import { compareAndWrite, orWrite, verify, writeAndVerify } from './verify.js'
import { extendedCopy, receiveCopyData, receiveCopyFailureDetails, receiveCopyOperatingParameters, receiveCopyStatus } from './xcopy.js'
import { ReceiveCopy } from './xcopy-data.js'

export interface OpcodeRow {
  readonly opcode: number
  /** Service action (CDB byte 1 bits 4..0) for opcodes that multiplex several commands. */
  readonly serviceAction?: number
  readonly name: string
  readonly cdbLength: number
  readonly direction: DataDirection
  /** Allowed bits per CDB byte, cdbLength entries. */
  readonly mask: readonly number[]
  readonly handler: Handler
  /**
   * INQUIRY, REPORT LUNS and REQUEST SENSE run despite a pending unit
   * attention (SAM-5 5.14): the initiator needs them to find out what changed.
   */
  readonly runsDespiteUnitAttention?: boolean
  /** Touches the medium: a stopped unit (START STOP UNIT) answers NOT READY, INITIALIZING COMMAND REQUIRED. */
  readonly mediumAccess?: boolean
  /** Runs on a stopped unit but needs a medium: with none loaded, NOT READY, MEDIUM NOT PRESENT (READ CAPACITY). */
  readonly needsMedium?: boolean
  /** Runs through a port whose ALUA group is standby ('standby') or in any state ('any'); absent: active states only. */
  readonly alua?: AluaAccess
  /** Recommended timeout in seconds (REPORT SUPPORTED OPERATION CODES with RCTD); default 30. */
  readonly timeout?: number
  /** How the command fares under reservations (pr.ts); lu.ts checks it before the handler runs. */
  readonly pr: PrAccessOf
}

const CTRL = 0xc0
const FF = 0xff
const GRP = 0x3f
const L4 = [FF, FF, FF, FF]
const L8 = [...L4, ...L4]
const IN = DataDirection.In
const OUT = DataDirection.Out
const NONE = DataDirection.None
/** Long-running commands: a host should wait longer for them. */
const LONG = 60

const rsoc: Handler = (_u, cmd) => reportSupportedOperationCodes(OPCODES, cmd)

/** PERSISTENT RESERVE IN: SERVICE ACTION and ALLOCATION LENGTH. */
const PRIN_MASK = [0x5e, 0x1f, 0, 0, 0, 0, 0, FF, FF, CTRL]
/** PERSISTENT RESERVE OUT: SERVICE ACTION, SCOPE | TYPE, PARAMETER LIST LENGTH. */
const PROUT_MASK = [0x5f, 0x1f, FF, 0, 0, ...L4, CTRL]
const prIn = (serviceAction: number, name: string): OpcodeRow => ({
  opcode: Op.PERSISTENT_RESERVE_IN,
  serviceAction,
  name: `PERSISTENT RESERVE IN ${name}`,
  cdbLength: 10,
  direction: IN,
  mask: PRIN_MASK,
  handler: persistentReserveIn,
  pr: 'prin',
  alua: 'standby',
})
const prOut = (serviceAction: number, name: string, pr: PrAccessOf): OpcodeRow => ({
  opcode: Op.PERSISTENT_RESERVE_OUT,
  serviceAction,
  name: `PERSISTENT RESERVE OUT ${name}`,
  cdbLength: 10,
  direction: OUT,
  mask: PROUT_MASK,
  handler: persistentReserveOut,
  pr,
  alua: 'standby',
})

/** RECEIVE COPY RESULTS: SERVICE ACTION, LIST IDENTIFIER, ALLOCATION LENGTH. */
const RCR_MASK = [0x84, 0x1f, FF, 0, 0, 0, 0, 0, 0, 0, ...L4, 0, CTRL]
const receiveCopy = (serviceAction: number, name: string, handler: Handler): OpcodeRow => ({
  opcode: Op.RECEIVE_COPY_RESULTS,
  serviceAction,
  name,
  cdbLength: 16,
  direction: IN,
  mask: RCR_MASK,
  handler,
  pr: 'read',
})

/**
 * SANITIZE (sanitize.ts): byte 1 IMMED | AUSE | SERVICE ACTION (ZNR is for zoned units), then the
 * PARAMETER LIST LENGTH only OVERWRITE may set. A write under reservations (SBC-3's table).
 */
const sanitizeRow = (serviceAction: number, name: string, paramLen: readonly number[]): OpcodeRow => ({
  opcode: Op.SANITIZE,
  serviceAction,
  name: `SANITIZE ${name}`,
  cdbLength: 10,
  direction: paramLen[0] === 0 ? NONE : OUT,
  mask: [0x48, serviceAction === SanitizeAction.EXIT_FAILURE_MODE ? 0x9f : 0xbf, 0, 0, 0, 0, 0, ...paramLen, CTRL],
  handler: sanitize,
  pr: 'write',
  mediumAccess: true,
  timeout: LONG,
})

export const OPCODES: readonly OpcodeRow[] = [
  { opcode: Op.TEST_UNIT_READY, name: 'TEST UNIT READY', cdbLength: 6, direction: NONE, mask: [0x00, 0, 0, 0, 0, CTRL], handler: testUnitReady, pr: 'allowed', mediumAccess: true },
  {
    opcode: Op.REQUEST_SENSE,
    name: 'REQUEST SENSE',
    cdbLength: 6,
    direction: IN,
    mask: [0x03, 0x01, 0, 0, FF, CTRL],
    handler: requestSense, pr: 'any',
    runsDespiteUnitAttention: true,
    alua: 'any',
  },
  { opcode: Op.READ_6, name: 'READ(6)', cdbLength: 6, direction: IN, mask: [0x08, 0x1f, FF, FF, FF, CTRL], handler: readWrite, pr: 'read', mediumAccess: true },
  { opcode: Op.WRITE_6, name: 'WRITE(6)', cdbLength: 6, direction: OUT, mask: [0x0a, 0x1f, FF, FF, FF, CTRL], handler: readWrite, pr: 'write', mediumAccess: true },
  {
    opcode: Op.INQUIRY,
    name: 'INQUIRY',
    cdbLength: 6,
    direction: IN,
    mask: [0x12, 0x01, FF, FF, FF, CTRL],
    handler: inquiry, pr: 'any',
    runsDespiteUnitAttention: true,
    alua: 'any',
  },
  // RESERVE(6)/RELEASE(6): third-party and extent reservations are obsolete, so bytes 1..4 are 0.
  { opcode: Op.RESERVE_6, name: 'RESERVE(6)', cdbLength: 6, direction: NONE, mask: [0x16, 0, 0, 0, 0, CTRL], handler: reserve6, pr: 'reserve' },
  { opcode: Op.RELEASE_6, name: 'RELEASE(6)', cdbLength: 6, direction: NONE, mask: [0x17, 0, 0, 0, 0, CTRL], handler: release6, pr: 'release' },
  // MODE SELECT byte 1: PF (4), SP (0; refused by the handler with a pointer: saving is not supported).
  { opcode: Op.MODE_SELECT_6, name: 'MODE SELECT(6)', cdbLength: 6, direction: OUT, mask: [0x15, 0x11, 0, 0, FF, CTRL], handler: modeSelect, pr: 'write', alua: 'standby' },
  // MODE SENSE(6) byte 1: DBD (3).
  { opcode: Op.MODE_SENSE_6, name: 'MODE SENSE(6)', cdbLength: 6, direction: IN, mask: [0x1a, 0x08, FF, FF, FF, CTRL], handler: modeSense, pr: 'read', alua: 'standby' },
  // START STOP UNIT: IMMED; POWER CONDITION MODIFIER must be 0; POWER CONDITION (accepted, startstop.ts), NO_FLUSH, LOEJ, START.
  { opcode: Op.START_STOP_UNIT, name: 'START STOP UNIT', cdbLength: 6, direction: NONE, mask: [0x1b, 0x01, 0, 0, 0xf7, CTRL], handler: startStopUnit, pr: startStopAccess, timeout: LONG },
  { opcode: Op.PREVENT_ALLOW_MEDIUM_REMOVAL, name: 'PREVENT ALLOW MEDIUM REMOVAL', cdbLength: 6, direction: NONE, mask: [0x1e, 0, 0, 0, 0x03, CTRL], handler: preventAllowMediumRemoval, pr: preventAccess },
  {
    opcode: Op.READ_CAPACITY_10,
    name: 'READ CAPACITY(10)',
    cdbLength: 10,
    direction: IN,
    mask: [0x25, 0, FF, FF, FF, FF, 0, 0, 0x01, CTRL],
    handler: readCapacity10, pr: 'allowed',
    needsMedium: true,
  },
  // READ/WRITE(10/12/16) byte 1: DPO and FUA only.
  { opcode: Op.READ_10, name: 'READ(10)', cdbLength: 10, direction: IN, mask: [0x28, 0x18, ...L4, GRP, FF, FF, CTRL], handler: readWrite, pr: 'read', mediumAccess: true },
  { opcode: Op.WRITE_10, name: 'WRITE(10)', cdbLength: 10, direction: OUT, mask: [0x2a, 0x18, ...L4, GRP, FF, FF, CTRL], handler: readWrite, pr: 'write', mediumAccess: true },
  // WRITE AND VERIFY byte 1: DPO, BYTCHK (bit 1; 1xb is reserved).
  { opcode: Op.WRITE_AND_VERIFY_10, name: 'WRITE AND VERIFY(10)', cdbLength: 10, direction: OUT, mask: [0x2e, 0x12, ...L4, GRP, FF, FF, CTRL], handler: writeAndVerify, pr: 'write', mediumAccess: true },
  // VERIFY byte 1: DPO, BYTCHK (2..1).
  { opcode: Op.VERIFY_10, name: 'VERIFY(10)', cdbLength: 10, direction: OUT, mask: [0x2f, 0x16, ...L4, GRP, FF, FF, CTRL], handler: verify, pr: 'read', mediumAccess: true, timeout: LONG },
  { opcode: Op.PRE_FETCH_10, name: 'PRE-FETCH(10)', cdbLength: 10, direction: NONE, mask: [0x34, 0x02, ...L4, GRP, FF, FF, CTRL], handler: preFetch, pr: 'read', mediumAccess: true },
  {
    opcode: Op.SYNCHRONIZE_CACHE_10,
    name: 'SYNCHRONIZE CACHE(10)',
    cdbLength: 10,
    direction: NONE,
    // Byte 1: SYNC_NV (obsolete, ignored: there is one cache), IMMED.
    mask: [0x35, 0x06, ...L4, GRP, FF, FF, CTRL],
    handler: synchronizeCache, pr: 'write',
    mediumAccess: true,
    timeout: LONG,
  },
  // READ DEFECT DATA(10) byte 2: REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT.
  { opcode: Op.READ_DEFECT_DATA_10, name: 'READ DEFECT DATA(10)', cdbLength: 10, direction: IN, mask: [0x37, 0, 0x1f, 0, 0, 0, 0, FF, FF, CTRL], handler: readDefectData, pr: 'read' },
  // WRITE SAME(10) byte 1: UNMAP only (ANCHOR is not supported, PBDATA/LBDATA are obsolete).
  { opcode: Op.WRITE_SAME_10, name: 'WRITE SAME(10)', cdbLength: 10, direction: OUT, mask: [0x41, 0x08, ...L4, GRP, FF, FF, CTRL], handler: writeSame, pr: 'write', mediumAccess: true, timeout: LONG },
  // UNMAP byte 1: ANCHOR is not supported.
  { opcode: Op.UNMAP, name: 'UNMAP', cdbLength: 10, direction: OUT, mask: [0x42, 0, 0, 0, 0, 0, GRP, FF, FF, CTRL], handler: unmap, pr: 'write', mediumAccess: true, timeout: LONG },
  sanitizeRow(SanitizeAction.OVERWRITE, 'OVERWRITE', [FF, FF]),
  sanitizeRow(SanitizeAction.BLOCK_ERASE, 'BLOCK ERASE', [0, 0]),
  sanitizeRow(SanitizeAction.CRYPTOGRAPHIC_ERASE, 'CRYPTOGRAPHIC ERASE', [0, 0]),
  sanitizeRow(SanitizeAction.EXIT_FAILURE_MODE, 'EXIT FAILURE MODE', [0, 0]),
  { opcode: Op.MODE_SELECT_10, name: 'MODE SELECT(10)', cdbLength: 10, direction: OUT, mask: [0x55, 0x11, 0, 0, 0, 0, 0, FF, FF, CTRL], handler: modeSelect, pr: 'write', alua: 'standby' },
  // MODE SENSE(10) byte 1: LLBAA (4), DBD (3).
  { opcode: Op.MODE_SENSE_10, name: 'MODE SENSE(10)', cdbLength: 10, direction: IN, mask: [0x5a, 0x18, FF, FF, 0, 0, 0, FF, FF, CTRL], handler: modeSense, pr: 'read', alua: 'standby' },
  prIn(PrIn.READ_KEYS, 'READ KEYS'),
  prIn(PrIn.READ_RESERVATION, 'READ RESERVATION'),
  prIn(PrIn.REPORT_CAPABILITIES, 'REPORT CAPABILITIES'),
  prIn(PrIn.READ_FULL_STATUS, 'READ FULL STATUS'),
  prOut(PrOut.REGISTER, 'REGISTER', 'prout'),
  prOut(PrOut.RESERVE, 'RESERVE', 'prout-holder'),
  prOut(PrOut.RELEASE, 'RELEASE', 'prout-registered'),
  prOut(PrOut.CLEAR, 'CLEAR', 'prout-registered'),
  prOut(PrOut.PREEMPT, 'PREEMPT', 'prout-registered'),
  prOut(PrOut.PREEMPT_AND_ABORT, 'PREEMPT AND ABORT', 'prout-registered'),
  prOut(PrOut.REGISTER_AND_IGNORE_EXISTING_KEY, 'REGISTER AND IGNORE EXISTING KEY', 'prout'),
  prOut(PrOut.REGISTER_AND_MOVE, 'REGISTER AND MOVE', 'prout-holder'),
  // EXTENDED COPY(LID1) (xcopy.ts): service action 00h, PARAMETER LIST LENGTH. A write under reservations:
  // it may write this unit; the copy targets check their own reservations for each read and write.
  {
    opcode: Op.EXTENDED_COPY,
    serviceAction: 0x00,
    name: 'EXTENDED COPY(LID1)',
    cdbLength: 16,
    direction: OUT,
    mask: [0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, ...L4, 0, CTRL],
    handler: extendedCopy,
    pr: 'write',
    mediumAccess: true,
    timeout: LONG,
  },
  receiveCopy(ReceiveCopy.STATUS, 'RECEIVE COPY STATUS(LID1)', receiveCopyStatus),
  receiveCopy(ReceiveCopy.DATA, 'RECEIVE COPY DATA(LID1)', receiveCopyData),
  receiveCopy(ReceiveCopy.OPERATING_PARAMETERS, 'RECEIVE COPY OPERATING PARAMETERS', receiveCopyOperatingParameters),
  receiveCopy(ReceiveCopy.FAILURE_DETAILS, 'RECEIVE COPY FAILURE DETAILS(LID1)', receiveCopyFailureDetails),
  { opcode: Op.READ_16, name: 'READ(16)', cdbLength: 16, direction: IN, mask: [0x88, 0x18, ...L8, ...L4, GRP, CTRL], handler: readWrite, pr: 'read', mediumAccess: true },
  // COMPARE AND WRITE byte 1: DPO, FUA.
  { opcode: Op.COMPARE_AND_WRITE, name: 'COMPARE AND WRITE', cdbLength: 16, direction: OUT, mask: [0x89, 0x18, ...L8, 0, 0, 0, FF, GRP, CTRL], handler: compareAndWrite, pr: 'write', mediumAccess: true },
  { opcode: Op.WRITE_16, name: 'WRITE(16)', cdbLength: 16, direction: OUT, mask: [0x8a, 0x18, ...L8, ...L4, GRP, CTRL], handler: readWrite, pr: 'write', mediumAccess: true },
  // ORWRITE(16) byte 1: DPO, FUA (ORPROTECT must be 0: no protection information).
  { opcode: Op.ORWRITE_16, name: 'ORWRITE(16)', cdbLength: 16, direction: OUT, mask: [0x8b, 0x18, ...L8, ...L4, GRP, CTRL], handler: orWrite, pr: 'write', mediumAccess: true },
  { opcode: Op.WRITE_AND_VERIFY_16, name: 'WRITE AND VERIFY(16)', cdbLength: 16, direction: OUT, mask: [0x8e, 0x12, ...L8, ...L4, GRP, CTRL], handler: writeAndVerify, pr: 'write', mediumAccess: true },
  { opcode: Op.VERIFY_16, name: 'VERIFY(16)', cdbLength: 16, direction: OUT, mask: [0x8f, 0x16, ...L8, ...L4, GRP, CTRL], handler: verify, pr: 'read', mediumAccess: true, timeout: LONG },
  { opcode: Op.PRE_FETCH_16, name: 'PRE-FETCH(16)', cdbLength: 16, direction: NONE, mask: [0x90, 0x02, ...L8, ...L4, GRP, CTRL], handler: preFetch, pr: 'read', mediumAccess: true },
  {
    opcode: Op.SYNCHRONIZE_CACHE_16,
    name: 'SYNCHRONIZE CACHE(16)',
    cdbLength: 16,
    direction: NONE,
    mask: [0x91, 0x06, ...L8, ...L4, GRP, CTRL],
    handler: synchronizeCache, pr: 'write',
    mediumAccess: true,
    timeout: LONG,
  },
  // WRITE SAME(16) byte 1: UNMAP, NDOB.
  { opcode: Op.WRITE_SAME_16, name: 'WRITE SAME(16)', cdbLength: 16, direction: OUT, mask: [0x93, 0x09, ...L8, ...L4, GRP, CTRL], handler: writeSame, pr: 'write', mediumAccess: true, timeout: LONG },
  // WRITE ATOMIC(16) byte 1: DPO, FUA (WRPROTECT must be 0); ATOMIC BOUNDARY and TRANSFER LENGTH.
  { opcode: Op.WRITE_ATOMIC_16, name: 'WRITE ATOMIC(16)', cdbLength: 16, direction: OUT, mask: [0x9c, 0x18, ...L8, ...L4, GRP, CTRL], handler: writeAtomic16, pr: 'write', mediumAccess: true },
  {
    opcode: Op.SERVICE_ACTION_IN_16,
    serviceAction: ServiceActionIn16.READ_CAPACITY_16,
    name: 'READ CAPACITY(16)',
    cdbLength: 16,
    direction: IN,
    mask: [0x9e, 0x1f, ...L8, ...L4, 0x01, CTRL],
    handler: readCapacity16, pr: 'allowed',
    needsMedium: true,
  },
  {
    opcode: Op.SERVICE_ACTION_IN_16,
    serviceAction: ServiceActionIn16.GET_LBA_STATUS,
    name: 'GET LBA STATUS',
    cdbLength: 16,
    direction: IN,
    mask: [0x9e, 0x1f, ...L8, ...L4, 0, CTRL],
    handler: getLbaStatus, pr: 'read',
    mediumAccess: true,
  },
  {
    opcode: Op.REPORT_LUNS,
    name: 'REPORT LUNS',
    cdbLength: 12,
    direction: IN,
    mask: [0xa0, 0, FF, 0, 0, 0, ...L4, 0, CTRL],
    handler: reportLunsOfUnit, pr: 'any',
    runsDespiteUnitAttention: true,
    alua: 'any',
  },
  // REPORT TARGET PORT GROUPS byte 1: PARAMETER DATA FORMAT 000b or 001b (bit 5) | service action.
  {
    opcode: Op.MAINTENANCE_IN,
    serviceAction: MaintenanceIn.REPORT_TARGET_PORT_GROUPS,
    name: 'REPORT TARGET PORT GROUPS',
    cdbLength: 12,
    direction: IN,
    mask: [0xa3, 0x3f, 0, 0, 0, 0, ...L4, 0, CTRL],
    handler: reportTargetPortGroups, pr: 'allowed',
    alua: 'any',
  },
  // REPORT SUPPORTED OPERATION CODES byte 2: RCTD (7) | REPORTING OPTIONS (2..0).
  {
    opcode: Op.MAINTENANCE_IN,
    serviceAction: MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES,
    name: 'REPORT SUPPORTED OPERATION CODES',
    cdbLength: 12,
    direction: IN,
    mask: [0xa3, 0x1f, 0x87, FF, FF, FF, ...L4, 0, CTRL],
    handler: rsoc, pr: 'read',
    alua: 'any',
  },
  { opcode: Op.READ_12, name: 'READ(12)', cdbLength: 12, direction: IN, mask: [0xa8, 0x18, ...L4, ...L4, GRP, CTRL], handler: readWrite, pr: 'read', mediumAccess: true },
  { opcode: Op.WRITE_12, name: 'WRITE(12)', cdbLength: 12, direction: OUT, mask: [0xaa, 0x18, ...L4, ...L4, GRP, CTRL], handler: readWrite, pr: 'write', mediumAccess: true },
  { opcode: Op.WRITE_AND_VERIFY_12, name: 'WRITE AND VERIFY(12)', cdbLength: 12, direction: OUT, mask: [0xae, 0x12, ...L4, ...L4, GRP, CTRL], handler: writeAndVerify, pr: 'write', mediumAccess: true },
  { opcode: Op.VERIFY_12, name: 'VERIFY(12)', cdbLength: 12, direction: OUT, mask: [0xaf, 0x16, ...L4, ...L4, GRP, CTRL], handler: verify, pr: 'read', mediumAccess: true, timeout: LONG },
  { opcode: Op.READ_DEFECT_DATA_12, name: 'READ DEFECT DATA(12)', cdbLength: 12, direction: IN, mask: [0xb7, 0x1f, ...L4, ...L4, 0, CTRL], handler: readDefectData, pr: 'read' },
]

const SERVICE_ACTION_MASK = 0x1f

/** One slot per opcode: a row, a service-action subtable, or nothing. */
type Slot = OpcodeRow | ReadonlyMap<number, OpcodeRow> | undefined

const SLOTS: readonly Slot[] = (() => {
  const slots: Slot[] = new Array(256).fill(undefined)
  for (const row of OPCODES) {
    if (row.mask.length !== row.cdbLength) throw new Error(`${row.name}: mask has ${row.mask.length} bytes, CDB has ${row.cdbLength}`)
    if (row.mask[0] !== row.opcode) throw new Error(`${row.name}: mask[0] must be the opcode`)
    if (row.serviceAction === undefined) {
      if (slots[row.opcode] !== undefined) throw new Error(`opcode 0x${row.opcode.toString(16)} appears twice`)
      slots[row.opcode] = row
    } else {
      const existing = slots[row.opcode]
      if (existing !== undefined && !(existing instanceof Map)) throw new Error(`opcode 0x${row.opcode.toString(16)} is both plain and service-action`)
      const sub = (existing as Map<number, OpcodeRow> | undefined) ?? new Map<number, OpcodeRow>()
      if (sub.has(row.serviceAction)) throw new Error(`${row.name}: service action appears twice`)
      sub.set(row.serviceAction, row)
      slots[row.opcode] = sub
    }
  }
  return slots
})()

function isSubtable(s: Slot): s is ReadonlyMap<number, OpcodeRow> {
  return s instanceof Map
}

/** The table row for this CDB, or undefined when the opcode (or its service action) is not implemented. */
export function findCommand(cdb: Uint8Array): OpcodeRow | undefined {
  const slot = SLOTS[cdb[0]]
  if (slot === undefined || !isSubtable(slot)) return slot
  return slot.get(cdb[1] & SERVICE_ACTION_MASK)
}

/** "READ(10)", "READ CAPACITY(16)", or "opcode 0xNN" / "opcode 0x9e/0x1f" for what fcfs does not implement. */
export function opcodeName(cdb: Uint8Array): string {
  if (cdb.length === 0) return 'empty CDB'
  const row = findCommand(cdb)
  if (row) return row.name
  const op = `opcode 0x${cdb[0].toString(16).padStart(2, '0')}`
  return isSubtable(SLOTS[cdb[0]]) ? `${op}/0x${(cdb[1] & SERVICE_ACTION_MASK).toString(16).padStart(2, '0')}` : op
}

/**
 * Finds the row for `cdb` and checks its reserved bits. Returns the row, or
 * the CHECK CONDITION to answer with:
 *  - an unknown opcode → ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE;
 *  - an unknown service action of a known opcode → INVALID FIELD IN CDB at
 *    byte 1, bit 4 (the service action field's top bit), as scsi_debug does;
 *  - a CDB shorter than its opcode's → INVALID FIELD IN CDB at byte 0;
 *  - a bit outside the mask → INVALID FIELD IN CDB at that byte and bit.
 */
export function resolveCommand(cdb: Uint8Array): OpcodeRow | ScsiOutcome {
  const slot = SLOTS[cdb[0]]
  let row: OpcodeRow | undefined
  if (slot === undefined) return fail(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE)
  if (isSubtable(slot)) {
    row = slot.get(cdb[1] & SERVICE_ACTION_MASK)
    if (row === undefined) return invalidFieldInCdb(1, 4)
  } else {
    row = slot
  }
  if (cdb.length < row.cdbLength) return invalidFieldInCdb(0)
  const mask = row.mask
  for (let i = 1; i < row.cdbLength; i++) {
    const bad = cdb[i] & ~mask[i]
    if (bad !== 0) return invalidFieldInCdb(i, 31 - Math.clz32(bad))
  }
  return row
}

/** True when resolveCommand answered with an outcome rather than a row. */
export function isOutcome(r: OpcodeRow | ScsiOutcome): r is ScsiOutcome {
  return (r as ScsiOutcome).status !== undefined
}

