/**
 * The one opcode table (scsi_debug's opcode_info_arr, QEMU's scsi_disk_reqops):
 * each row names a command, its CDB length, data direction, the bits the CDB
 * may have set (the len_mask) and its handler. It drives dispatch, names in
 * logs and traces, reserved-bit checks, and a future REPORT SUPPORTED
 * OPERATION CODES.
 *
 * mask[i] holds the bits allowed in CDB byte i; mask[0] is the opcode itself.
 * A set bit outside the mask is ILLEGAL REQUEST, INVALID FIELD IN CDB with a
 * field pointer to the byte and a bit pointer to the highest offending bit.
 * The control byte (last) allows only the vendor-specific bits 7..6: fcfs
 * supports neither NACA (ACA) nor linked commands, so NACA=1 is rejected as
 * SAM-5 requires.
 */
import { synchronizeCache, testUnitReady } from './cache.js'
import { readCapacity10, readCapacity16 } from './capacity.js'
import { Op, ServiceActionIn16 } from './cdb.js'
import { inquiry } from './inquiry.js'
import { reportLunsOfUnit } from './luns.js'
import { readWrite } from './rw.js'
import { Asc, fail, invalidFieldInCdb, SenseKey } from './sense.js'
import { requestSense } from './sense_cmds.js'
import { DataDirection, type ScsiOutcome } from './types.js'
import type { Handler } from './unit.js'

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
}

const CTRL = 0xc0
const FF = 0xff

export const OPCODES: readonly OpcodeRow[] = [
  { opcode: Op.TEST_UNIT_READY, name: 'TEST UNIT READY', cdbLength: 6, direction: DataDirection.None, mask: [0x00, 0, 0, 0, 0, CTRL], handler: testUnitReady },
  {
    opcode: Op.REQUEST_SENSE,
    name: 'REQUEST SENSE',
    cdbLength: 6,
    direction: DataDirection.In,
    mask: [0x03, 0x01, 0, 0, FF, CTRL],
    handler: requestSense,
    runsDespiteUnitAttention: true,
  },
  { opcode: Op.READ_6, name: 'READ(6)', cdbLength: 6, direction: DataDirection.In, mask: [0x08, 0x1f, FF, FF, FF, CTRL], handler: readWrite },
  { opcode: Op.WRITE_6, name: 'WRITE(6)', cdbLength: 6, direction: DataDirection.Out, mask: [0x0a, 0x1f, FF, FF, FF, CTRL], handler: readWrite },
  {
    opcode: Op.INQUIRY,
    name: 'INQUIRY',
    cdbLength: 6,
    direction: DataDirection.In,
    mask: [0x12, 0x01, FF, FF, FF, CTRL],
    handler: inquiry,
    runsDespiteUnitAttention: true,
  },
  {
    opcode: Op.READ_CAPACITY_10,
    name: 'READ CAPACITY(10)',
    cdbLength: 10,
    direction: DataDirection.In,
    mask: [0x25, 0, FF, FF, FF, FF, 0, 0, 0x01, CTRL],
    handler: readCapacity10,
  },
  // READ/WRITE(10/12/16) byte 1: DPO and FUA only. RDPROTECT/WRPROTECT (7..5)
  // must be 0 on a unit without protection information (SBC-3 4.18).
  { opcode: Op.READ_10, name: 'READ(10)', cdbLength: 10, direction: DataDirection.In, mask: [0x28, 0x18, FF, FF, FF, FF, 0x3f, FF, FF, CTRL], handler: readWrite },
  { opcode: Op.WRITE_10, name: 'WRITE(10)', cdbLength: 10, direction: DataDirection.Out, mask: [0x2a, 0x18, FF, FF, FF, FF, 0x3f, FF, FF, CTRL], handler: readWrite },
  {
    opcode: Op.SYNCHRONIZE_CACHE_10,
    name: 'SYNCHRONIZE CACHE(10)',
    cdbLength: 10,
    direction: DataDirection.None,
    mask: [0x35, 0x02, FF, FF, FF, FF, 0x3f, FF, FF, CTRL],
    handler: synchronizeCache,
  },
  {
    opcode: Op.READ_16,
    name: 'READ(16)',
    cdbLength: 16,
    direction: DataDirection.In,
    mask: [0x88, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x3f, CTRL],
    handler: readWrite,
  },
  {
    opcode: Op.WRITE_16,
    name: 'WRITE(16)',
    cdbLength: 16,
    direction: DataDirection.Out,
    mask: [0x8a, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x3f, CTRL],
    handler: readWrite,
  },
  {
    opcode: Op.SYNCHRONIZE_CACHE_16,
    name: 'SYNCHRONIZE CACHE(16)',
    cdbLength: 16,
    direction: DataDirection.None,
    mask: [0x91, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x3f, CTRL],
    handler: synchronizeCache,
  },
  {
    opcode: Op.SERVICE_ACTION_IN_16,
    serviceAction: ServiceActionIn16.READ_CAPACITY_16,
    name: 'READ CAPACITY(16)',
    cdbLength: 16,
    direction: DataDirection.In,
    mask: [0x9e, 0x1f, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x01, CTRL],
    handler: readCapacity16,
  },
  {
    opcode: Op.REPORT_LUNS,
    name: 'REPORT LUNS',
    cdbLength: 12,
    direction: DataDirection.In,
    mask: [0xa0, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, CTRL],
    handler: reportLunsOfUnit,
    runsDespiteUnitAttention: true,
  },
  { opcode: Op.READ_12, name: 'READ(12)', cdbLength: 12, direction: DataDirection.In, mask: [0xa8, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0x3f, CTRL], handler: readWrite },
  { opcode: Op.WRITE_12, name: 'WRITE(12)', cdbLength: 12, direction: DataDirection.Out, mask: [0xaa, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0x3f, CTRL], handler: readWrite },
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

