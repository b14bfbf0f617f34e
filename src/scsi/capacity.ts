/**
 * READ CAPACITY(10) (SBC-3 5.15) and SERVICE ACTION IN(16) / READ CAPACITY(16)
 * (SBC-3 5.16). READ CAPACITY(10) answers 0xFFFFFFFF as the last LBA when it
 * does not fit in 32 bits, telling the initiator to ask with (16).
 *
 * The PMI bit and the LOGICAL BLOCK ADDRESS field are obsolete in SBC-4; as in
 * SBC-3, an LBA with PMI=0 is rejected, and with PMI=1 the answer is the same
 * last LBA (there is no "substantial delay" boundary in RAM).
 *
 * READ CAPACITY(16) reports LBPME (logical block provisioning management:
 * UNMAP works) and LBPRZ (unmapped blocks read as zeros), which every
 * backend provides (targets/backend.ts `unmap`).
 */
import { readU32BE, readU64BE } from './bytes.js'
import { READ_CAPACITY_10, READ_CAPACITY_16, READ_CAPACITY_PMI } from './cdb.js'
import { encodeReadCapacity10Data, encodeReadCapacity16Data, READ_CAPACITY_10_DATA, READ_CAPACITY_16_DATA } from './data.js'
import { dataInResponse } from './respond.js'
import { invalidFieldInCdb } from './sense.js'
import type { Handler } from './unit.js'

export const readCapacity10: Handler = (u, cmd) => {
  const F = READ_CAPACITY_10.fields
  if ((cmd.cdb[F.pmi.offset] & READ_CAPACITY_PMI) === 0 && readU32BE(cmd.cdb, F.lba.offset) !== 0) return invalidFieldInCdb(F.lba.offset)
  const data = Buffer.alloc(READ_CAPACITY_10_DATA.size)
  encodeReadCapacity10Data(u.lun.blocks - 1, u.lun.blockSize, data)
  return dataInResponse(cmd, data, data.length, data.length)
}

export const readCapacity16: Handler = (u, cmd) => {
  const F = READ_CAPACITY_16.fields
  if ((cmd.cdb[F.pmi.offset] & READ_CAPACITY_PMI) === 0 && readU64BE(cmd.cdb, F.lba.offset) !== 0) return invalidFieldInCdb(F.lba.offset)
  const allocLen = readU32BE(cmd.cdb, F.allocLen.offset)
  const data = Buffer.alloc(READ_CAPACITY_16_DATA.size)
  // Thin provisioned: UNMAP and WRITE SAME with UNMAP release blocks, which then read as zeros.
  encodeReadCapacity16Data({ lastLba: u.lun.blocks - 1, blockSize: u.lun.blockSize, lbpme: true, lbprz: true }, data)
  return dataInResponse(cmd, data, data.length, allocLen)
}
