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
 * backend provides (targets/backend.ts `unmap`), and the physical block as
 * LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (512e: 3, eight 512-byte blocks
 * per 4096-byte physical block) with LOWEST ALIGNED LBA 0: LBA 0 starts a
 * physical block.
 *
 * GET LBA STATUS (SBC-3 5.7, SERVICE ACTION IN(16) 0x12) answers one
 * descriptor from the asked LBA: the run the backend reports as held
 * (PROVISIONING STATUS 0, mapped) or not held (1, deallocated: it reads as
 * zeros, LBPRZ), for a backend that can tell (Backend.provisioning: the RAM
 * backend, by its 64 KiB chunks); otherwise 0 ("mapped or unknown", SBC-4)
 * to the end (at most 2^32-1 blocks). Its LBA is the asked one even inside a physical
 * block of a 512e unit: SBC-4 (LBA status descriptor relationships) says
 * the first descriptor shall hold the STARTING LOGICAL BLOCK ADDRESS of the
 * CDB (REPORT TYPE 0), whatever the physical block or the unmap granularity.
 * libiscsi's GetLBAStatus.UnmapSingle (test_get_lba_status_unmap_single.c)
 * asks at LBA i+1 (line 120) and wants i+LBPPB there (line 134, "does not
 * match request"), which only a unit with one logical block per physical
 * block can answer: its first loop asks at i+LBPPB and checks i+LBPPB
 * (lines 70, 84), and libiscsi 9e75b10 copied that check into the second
 * loop, which asks at i+1. It fails on the 512e unit; fcfs keeps the
 * standard's answer (scsi_debug answers the asked LBA too).
 */
import type { Lun } from '../targets/types.js'
import { readU32BE, readU64BE, writeU32BE, writeU64BE } from './bytes.js'
import { READ_CAPACITY_10, READ_CAPACITY_16, READ_CAPACITY_PMI } from './cdb.js'
import { encodeReadCapacity10Data, encodeReadCapacity16Data, READ_CAPACITY_10_DATA, READ_CAPACITY_16_DATA } from './data.js'
import { dataInResponse } from './respond.js'
import { Asc, fail, invalidFieldInCdb, SenseKey } from './sense.js'
import { f, type Layout } from '../util/layout.js'
import type { Handler } from './unit.js'

/** Logical blocks per physical block (1, or 8 for 512e); the config makes it a power of two. */
export function logicalPerPhysical(lun: Lun): number {
  const p = lun.physicalBlockSize
  return p === undefined || p <= lun.blockSize ? 1 : p / lun.blockSize
}

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
  const lun = u.lun
  const logicalPerPhysicalExponent = 31 - Math.clz32(logicalPerPhysical(lun))
  encodeReadCapacity16Data({ lastLba: lun.blocks - 1, blockSize: lun.blockSize, lbpme: true, lbprz: true, logicalPerPhysicalExponent }, data)
  return dataInResponse(cmd, data, data.length, allocLen)
}

export const GET_LBA_STATUS = {
  name: 'GET LBA STATUS',
  size: 16,
  fields: { opcode: f(0), serviceAction: f(1), lba: f(2, 8), allocLen: f(10, 4), reportType: f(14), control: f(15) },
} as const satisfies Layout

/** GET LBA STATUS parameter data: an 8-byte header, then 16-byte LBA status descriptors. */
export const LBA_STATUS_DATA = {
  name: 'GET LBA STATUS data (one descriptor)',
  size: 24,
  fields: { parameterDataLength: f(0, 4), reserved4: f(4, 4), lba: f(8, 8), blocks: f(16, 4), provisioningStatus: f(20), reserved21: f(21, 3) },
} as const satisfies Layout

const MAPPED_OR_UNKNOWN = 0
const DEALLOCATED = 1

export const getLbaStatus: Handler = (u, cmd) => {
  const F = GET_LBA_STATUS.fields
  const lba = readU64BE(cmd.cdb, F.lba.offset)
  if (lba >= u.lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  const allocLen = readU32BE(cmd.cdb, F.allocLen.offset)
  const D = LBA_STATUS_DATA.fields
  const data = Buffer.alloc(LBA_STATUS_DATA.size)
  writeU32BE(data, D.parameterDataLength.offset, LBA_STATUS_DATA.size - 4)
  writeU64BE(data, D.lba.offset, lba)
  const bs = u.lun.blockSize
  const most = Math.min(u.lun.blocks - lba, 0xffffffff)
  const run = u.lun.backend.provisioning?.(lba * bs, most * bs)
  // A block partly held counts as mapped: a mapped run rounds up, a deallocated one down.
  const blocks = run === undefined ? most : run.mapped ? Math.ceil(run.length / bs) : Math.floor(run.length / bs)
  writeU32BE(data, D.blocks.offset, Math.max(1, Math.min(most, blocks)))
  data[D.provisioningStatus.offset] = run === undefined || run.mapped ? MAPPED_OR_UNKNOWN : DEALLOCATED
  return dataInResponse(cmd, data, data.length, allocLen)
}
