/**
 * REPORT SUPPORTED OPERATION CODES (SPC-4 6.35; MAINTENANCE IN, service
 * action 0x0C), answered from the opcode table (opcodes.ts passes its rows):
 * what a host sees here is exactly what dispatch accepts, and the CDB usage
 * data of a command is the mask its reserved bits are checked against.
 *
 * REPORTING OPTIONS:
 *   000b  all commands: 4-byte COMMAND DATA LENGTH, then one 8-byte command
 *         descriptor per row (+ a 12-byte timeouts descriptor with RCTD)
 *   001b  one opcode without service actions   } 4-byte header (SUPPORT,
 *   010b  one opcode + service action          }  CDB SIZE), CDB USAGE DATA,
 *   011b  one opcode, + service action if it has them (SPC-5)
 *                                              }  timeouts descriptor with RCTD
 * 001b for an opcode that has service actions, or 010b for one that has
 * none, is INVALID FIELD IN CDB (SPC-4 6.35.1).
 */
import { readU16BE, readU32BE, writeU16BE, writeU32BE } from './bytes.js'
import { f, type Layout } from '../util/layout.js'
import { dataInResponse } from './respond.js'
import { invalidFieldInCdb } from './sense.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'

export const REPORT_SUPPORTED_OPERATION_CODES = {
  name: 'REPORT SUPPORTED OPERATION CODES',
  size: 12,
  fields: {
    opcode: f(0),
    serviceAction: f(1),
    options: f(2), // RCTD (7) | REPORTING OPTIONS (2..0)
    requestedOpcode: f(3),
    requestedServiceAction: f(4, 2),
    allocLen: f(6, 4),
    reserved10: f(10),
    control: f(11),
  },
} as const satisfies Layout

export const COMMAND_DESCRIPTOR = {
  name: 'command descriptor',
  size: 8,
  fields: { opcode: f(0), reserved1: f(1), serviceAction: f(2, 2), reserved4: f(4), flags: f(5), cdbLength: f(6, 2) },
} as const satisfies Layout

export const ONE_COMMAND_HEADER = {
  name: 'one_command parameter data header',
  size: 4,
  fields: { reserved0: f(0), support: f(1), cdbSize: f(2, 2) },
} as const satisfies Layout

export const TIMEOUTS_DESCRIPTOR = {
  name: 'command timeouts descriptor',
  size: 12,
  fields: { descriptorLength: f(0, 2), reserved2: f(2), commandSpecific: f(3), nominalTimeout: f(4, 4), recommendedTimeout: f(8, 4) },
} as const satisfies Layout

export const RSOC_LAYOUTS: readonly Layout[] = [REPORT_SUPPORTED_OPERATION_CODES, COMMAND_DESCRIPTOR, ONE_COMMAND_HEADER, TIMEOUTS_DESCRIPTOR]

export const RSOC_RCTD = 0x80
export const ReportingOptions = { ALL: 0b000, OPCODE: 0b001, OPCODE_AND_SA: 0b010, OPCODE_AND_SA_IF_ANY: 0b011 } as const
/** Command descriptor byte 5. */
export const CTDP = 0x02 // a timeouts descriptor follows
export const SERVACTV = 0x01 // the service action field is valid
/** One-command header byte 1: CTDP (7) | SUPPORT (2..0). */
export const ONE_COMMAND_CTDP = 0x80
export const Support = { NOT_AVAILABLE: 0b000, NOT_SUPPORTED: 0b001, SUPPORTED: 0b011 } as const

/** The seconds a command should be given when its row names none. */
export const DEFAULT_TIMEOUT_SECONDS = 30

/** What RSOC needs of a table row. */
export interface ReportedCommand {
  readonly opcode: number
  readonly serviceAction?: number
  readonly cdbLength: number
  readonly mask: readonly number[]
  /** Recommended command timeout in seconds. */
  readonly timeout?: number
}

function writeTimeouts(buf: Buffer, at: number, row: ReportedCommand): number {
  const T = TIMEOUTS_DESCRIPTOR.fields
  writeU16BE(buf, at + T.descriptorLength.offset, TIMEOUTS_DESCRIPTOR.size - 2)
  // Nominal processing time 0: not specified (it depends on the backend and the link model).
  writeU32BE(buf, at + T.recommendedTimeout.offset, row.timeout ?? DEFAULT_TIMEOUT_SECONDS)
  return TIMEOUTS_DESCRIPTOR.size
}

/** The all-commands parameter data, rows sorted by opcode then service action. */
export function encodeAllCommands(rows: readonly ReportedCommand[], rctd: boolean): Buffer {
  const sorted = [...rows].sort((a, b) => a.opcode - b.opcode || (a.serviceAction ?? 0) - (b.serviceAction ?? 0))
  const each = COMMAND_DESCRIPTOR.size + (rctd ? TIMEOUTS_DESCRIPTOR.size : 0)
  const buf = Buffer.alloc(4 + sorted.length * each)
  writeU32BE(buf, 0, buf.length - 4)
  const C = COMMAND_DESCRIPTOR.fields
  let at = 4
  for (const r of sorted) {
    buf[at + C.opcode.offset] = r.opcode
    if (r.serviceAction !== undefined) writeU16BE(buf, at + C.serviceAction.offset, r.serviceAction)
    buf[at + C.flags.offset] = (rctd ? CTDP : 0) | (r.serviceAction !== undefined ? SERVACTV : 0)
    writeU16BE(buf, at + C.cdbLength.offset, r.cdbLength)
    at += COMMAND_DESCRIPTOR.size
    if (rctd) at += writeTimeouts(buf, at, r)
  }
  return buf
}

/** The one-command parameter data for `row` (undefined: not supported). */
export function encodeOneCommand(row: ReportedCommand | undefined, rctd: boolean): Buffer {
  const H = ONE_COMMAND_HEADER.fields
  if (row === undefined) {
    const buf = Buffer.alloc(ONE_COMMAND_HEADER.size)
    buf[H.support.offset] = Support.NOT_SUPPORTED
    return buf
  }
  const buf = Buffer.alloc(ONE_COMMAND_HEADER.size + row.cdbLength + (rctd ? TIMEOUTS_DESCRIPTOR.size : 0))
  buf[H.support.offset] = (rctd ? ONE_COMMAND_CTDP : 0) | Support.SUPPORTED
  writeU16BE(buf, H.cdbSize.offset, row.cdbLength)
  buf.set(row.mask, ONE_COMMAND_HEADER.size)
  if (rctd) writeTimeouts(buf, ONE_COMMAND_HEADER.size + row.cdbLength, row)
  return buf
}

/** Answers REPORT SUPPORTED OPERATION CODES from `rows`. */
export function reportSupportedOperationCodes(rows: readonly ReportedCommand[], cmd: ScsiCommand): ScsiOutcome {
  const cdb = cmd.cdb
  const F = REPORT_SUPPORTED_OPERATION_CODES.fields
  const rctd = (cdb[F.options.offset] & RSOC_RCTD) !== 0
  const option = cdb[F.options.offset] & 0x07
  const op = cdb[F.requestedOpcode.offset]
  const sa = readU16BE(cdb, F.requestedServiceAction.offset)
  const allocLen = readU32BE(cdb, F.allocLen.offset)
  let data: Buffer
  if (option === ReportingOptions.ALL) {
    data = encodeAllCommands(rows, rctd)
  } else {
    const withOp = rows.filter((r) => r.opcode === op)
    const hasSa = withOp.some((r) => r.serviceAction !== undefined)
    let row: ReportedCommand | undefined
    switch (option) {
      case ReportingOptions.OPCODE:
        if (hasSa) return invalidFieldInCdb(F.options.offset, 2)
        row = withOp[0]
        break
      case ReportingOptions.OPCODE_AND_SA:
        if (withOp.length > 0 && !hasSa) return invalidFieldInCdb(F.requestedServiceAction.offset)
        row = withOp.find((r) => r.serviceAction === sa)
        break
      case ReportingOptions.OPCODE_AND_SA_IF_ANY:
        row = hasSa ? withOp.find((r) => r.serviceAction === sa) : withOp[0]
        break
      default:
        return invalidFieldInCdb(F.options.offset, 2)
    }
    data = encodeOneCommand(row, rctd)
  }
  return dataInResponse(cmd, data, data.length, allocLen)
}
