/**
 * REPORT LUNS (SPC-4 6.33). The target port answers it for any LUN number
 * with the port's whole LUN list (target.ts); a logical unit used on its own
 * lists itself. Entries use peripheral device addressing below 256 and
 * single-level flat space addressing up to 16383 (data.ts encodeLun).
 */
import { readU32BE } from './bytes.js'
import { REPORT_LUNS } from './cdb.js'
import { encodeReportLunsData, LUN_ENTRY_SIZE, REPORT_LUNS_HEADER } from './data.js'
import { dataInResponse } from './respond.js'
import { invalidFieldInCdb } from './sense.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'
import type { Handler } from './unit.js'

export const SelectReport = {
  ALL: 0x00, // every logical unit except well-known ones
  WELL_KNOWN: 0x01, // only well-known logical units (fcfs has none)
  ALL_AND_WELL_KNOWN: 0x02, // both
} as const

/** Answers REPORT LUNS with `luns` (any order; reported ascending). */
export function reportLuns(luns: readonly number[], cmd: ScsiCommand): ScsiOutcome {
  const F = REPORT_LUNS.fields
  const select = cmd.cdb[F.selectReport.offset]
  if (select !== SelectReport.ALL && select !== SelectReport.WELL_KNOWN && select !== SelectReport.ALL_AND_WELL_KNOWN) {
    return invalidFieldInCdb(F.selectReport.offset)
  }
  const list = select === SelectReport.WELL_KNOWN ? [] : [...luns].sort((a, b) => a - b)
  const data = Buffer.alloc(REPORT_LUNS_HEADER.size + list.length * LUN_ENTRY_SIZE)
  encodeReportLunsData(list, data)
  return dataInResponse(cmd, data, data.length, readU32BE(cmd.cdb, F.allocLen.offset))
}

export const reportLunsOfUnit: Handler = (u, cmd) => reportLuns([u.lun.lun], cmd)
