/**
 * READ DEFECT DATA(10) and (12) (SBC-3 5.17, 5.18). Emulated media have no
 * defects: both lists (PLIST, GLIST) are valid when asked for and empty, in
 * whatever DEFECT LIST FORMAT the initiator asked.
 */
import { readU16BE, readU32BE } from './bytes.js'
import { Op } from './cdb.js'
import { f, type Layout } from '../util/layout.js'
import { dataInResponse } from './respond.js'
import type { Handler } from './unit.js'

export const READ_DEFECT_DATA_10 = {
  name: 'READ DEFECT DATA(10)',
  size: 10,
  fields: { opcode: f(0), reserved1: f(1), flags: f(2), reserved3: f(3, 4), allocLen: f(7, 2), control: f(9) },
} as const satisfies Layout

export const READ_DEFECT_DATA_12 = {
  name: 'READ DEFECT DATA(12)',
  size: 12,
  fields: { opcode: f(0), flags: f(1), addressDescriptorIndex: f(2, 4), allocLen: f(6, 4), reserved10: f(10), control: f(11) },
} as const satisfies Layout

/** Parameter data headers: no descriptors follow. */
export const DEFECT_DATA_10 = { name: 'READ DEFECT DATA(10) header', size: 4, fields: { reserved0: f(0), flags: f(1), listLength: f(2, 2) } } as const satisfies Layout
export const DEFECT_DATA_12 = {
  name: 'READ DEFECT DATA(12) header',
  size: 8,
  fields: { reserved0: f(0), flags: f(1), generation: f(2, 2), listLength: f(4, 4) },
} as const satisfies Layout

export const DEFECT_LAYOUTS: readonly Layout[] = [READ_DEFECT_DATA_10, READ_DEFECT_DATA_12, DEFECT_DATA_10, DEFECT_DATA_12]

/** REQ_PLIST (4), REQ_GLIST (3), DEFECT LIST FORMAT (2..0): echoed as PLISTV, GLISTV and the format. */
const FLAGS = 0x1f

export const readDefectData: Handler = (u, cmd) => {
  const ten = cmd.cdb[0] === Op.READ_DEFECT_DATA_10
  if (ten) {
    const L = READ_DEFECT_DATA_10.fields
    const data = Buffer.alloc(DEFECT_DATA_10.size)
    data[DEFECT_DATA_10.fields.flags.offset] = cmd.cdb[L.flags.offset] & FLAGS
    return dataInResponse(cmd, data, data.length, readU16BE(cmd.cdb, L.allocLen.offset))
  }
  const L = READ_DEFECT_DATA_12.fields
  const data = Buffer.alloc(DEFECT_DATA_12.size)
  data[DEFECT_DATA_12.fields.flags.offset] = cmd.cdb[L.flags.offset] & FLAGS
  return dataInResponse(cmd, data, data.length, readU32BE(cmd.cdb, L.allocLen.offset))
}
