/**
 * Thin provisioning (SBC-3 4.7, 5.28, 5.43, 5.44): UNMAP and WRITE SAME(10/16).
 * Both release blocks through backend.unmap, after which they read as zeros
 * (LBPRZ) and a RAM backend frees the memory.
 *
 * UNMAP parameter list:
 *
 *   0..1  UNMAP DATA LENGTH (n - 2)     2..3  UNMAP BLOCK DESCRIPTOR DATA LENGTH   4..7 reserved
 *   8..   block descriptors, 16 bytes each: LBA (u64) | NUMBER OF LOGICAL BLOCKS (u32) | reserved (4)
 *
 * Every descriptor is checked before any block is released, so a bad list
 * changes nothing:
 *   parameter list length 1..7, or data-out shorter   → PARAMETER LIST LENGTH ERROR
 *   lengths in the header larger than the list         → INVALID FIELD IN PARAMETER LIST (at the length)
 *   more descriptors than VPD 0xB0 allows              → INVALID FIELD IN PARAMETER LIST (byte 2)
 *   a descriptor past the last block                   → LBA OUT OF RANGE
 *   more blocks in all than VPD 0xB0 allows            → INVALID FIELD IN PARAMETER LIST (that descriptor's count)
 * A trailing partial descriptor is ignored, as SBC-3 says.
 *
 * WRITE SAME writes its one data-out block (zeros with NDOB) to every block
 * of the range. With UNMAP set (ANCHOR 0) it releases the range instead,
 * whatever the block holds: SBC-4's WRITE SAME table (UNMAP 1, ANCHOR 0:
 * "unmap") says a thin provisioned unit should deallocate each LBA, and
 * only may write the block where it cannot; after that the range reads as
 * zeros (LBPRZ), not as the block. LIO (sbc_execute_write_same_unmap) and
 * scsi_debug (resp_write_same) do the same, and libiscsi's
 * WriteSame10.UnmapUntilEnd sends 0xFF blocks with UNMAP and reads back
 * zeros. The release is the exact range, not whole unmap granules: the
 * backends zero a partly released chunk, so every released block reads as
 * zeros on a 512e unit too. NUMBER OF LOGICAL BLOCKS 0 is refused (INVALID
 * FIELD IN CDB, WSNZ = 1) unless the unit has writeSameToEnd, when it means
 * "from the LBA to the last block" (WSNZ = 0; the LBA must then be a block of
 * the unit) and the range is checked against MAXIMUM WRITE SAME LENGTH like
 * any other. The data-out buffer must be exactly one block.
 */
import type { IoResult, MaybeAsync } from '../targets/backend.js'
import { readU16BE, readU32BE, readU64BE } from './bytes.js'
import { andThen, sequence, walk } from './chain.js'
import { Op } from './cdb.js'
import { f, type Layout } from '../util/layout.js'
import { backendFailure } from './respond.js'
import { mustFlush, writeProtected } from './rw.js'
import {
  Asc,
  fail,
  good,
  invalidFieldInCdb,
  invalidFieldInParameterList,
  parameterListLengthError,
  SenseKey,
} from './sense.js'
import type { ScsiOutcome } from './types.js'
import { MAX_UNMAP_BYTES, MAX_UNMAP_DESCRIPTORS, MAX_WRITE_SAME_BYTES, WORK_CHUNK_BYTES, type Handler, type UnitContext } from './unit.js'

export const UNMAP = {
  name: 'UNMAP',
  size: 10,
  fields: { opcode: f(0), flags: f(1), reserved2: f(2, 4), group: f(6), paramLen: f(7, 2), control: f(9) },
} as const satisfies Layout

export const UNMAP_HEADER = {
  name: 'UNMAP parameter list header',
  size: 8,
  fields: { dataLength: f(0, 2), descriptorDataLength: f(2, 2), reserved: f(4, 4) },
} as const satisfies Layout

export const UNMAP_DESCRIPTOR = {
  name: 'UNMAP block descriptor',
  size: 16,
  fields: { lba: f(0, 8), blocks: f(8, 4), reserved: f(12, 4) },
} as const satisfies Layout

export const WRITE_SAME_10 = {
  name: 'WRITE SAME(10)',
  size: 10,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 4), group: f(6), blocks: f(7, 2), control: f(9) },
} as const satisfies Layout

export const WRITE_SAME_16 = {
  name: 'WRITE SAME(16)',
  size: 16,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 8), blocks: f(10, 4), group: f(14), control: f(15) },
} as const satisfies Layout

export const UNMAP_LAYOUTS: readonly Layout[] = [UNMAP, UNMAP_HEADER, UNMAP_DESCRIPTOR, WRITE_SAME_10, WRITE_SAME_16]

/** WRITE SAME byte 1. */
export const WRITE_SAME_UNMAP = 0x08
export const WRITE_SAME_NDOB = 0x01 // (16) only: no data-out buffer, the block is zeros

// ---- UNMAP ---------------------------------------------------------------

export const unmap: Handler = (u, cmd) => {
  const lun = u.lun
  const bs = lun.blockSize
  if (u.writeProtected()) return writeProtected()
  const len = readU16BE(cmd.cdb, UNMAP.fields.paramLen.offset)
  if (len === 0) return good(0, 0)
  const p = cmd.dataOut
  if (len < UNMAP_HEADER.size || p === null || p.length < len) return { ...parameterListLengthError(), wanted: len }
  const H = UNMAP_HEADER.fields
  if (readU16BE(p, H.dataLength.offset) + 2 > len) return invalidFieldInParameterList(H.dataLength.offset)
  const bdLen = readU16BE(p, H.descriptorDataLength.offset)
  if (UNMAP_HEADER.size + bdLen > len) return invalidFieldInParameterList(H.descriptorDataLength.offset)
  const count = Math.floor(bdLen / UNMAP_DESCRIPTOR.size)
  if (count > MAX_UNMAP_DESCRIPTORS) return invalidFieldInParameterList(H.descriptorDataLength.offset)
  const D = UNMAP_DESCRIPTOR.fields
  const ranges: Array<[number, number]> = []
  let total = 0
  for (let i = 0; i < count; i++) {
    const at = UNMAP_HEADER.size + i * UNMAP_DESCRIPTOR.size
    const lba = readU64BE(p, at + D.lba.offset)
    const n = readU32BE(p, at + D.blocks.offset)
    if (lba + n > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE, { wanted: len, transferred: len })
    total += n
    if (total * bs > MAX_UNMAP_BYTES) return invalidFieldInParameterList(at + D.blocks.offset)
    if (n > 0) ranges.push([lba, n])
  }
  const r = sequence(ranges.length, (i) => {
    const [lba, n] = ranges[i]
    return andThen(lun.backend.unmap(lba * bs, n * bs), (e) => (e !== null ? backendFailure(e, 'write', bs, lba) : null))
  })
  return andThen(r, (o) => o ?? good(len, len))
}

// ---- WRITE SAME ----------------------------------------------------------

export const writeSame: Handler = (u, cmd) => {
  const cdb = cmd.cdb
  const lun = u.lun
  const bs = lun.blockSize
  const sixteen = cdb[0] === Op.WRITE_SAME_16
  const L = sixteen ? WRITE_SAME_16.fields : WRITE_SAME_10.fields
  const lba = sixteen ? readU64BE(cdb, L.lba.offset) : readU32BE(cdb, L.lba.offset)
  const given = sixteen ? readU32BE(cdb, L.blocks.offset) : readU16BE(cdb, L.blocks.offset)
  const flags = cdb[L.flags.offset]
  const ndob = sixteen && (flags & WRITE_SAME_NDOB) !== 0
  const toEnd = given === 0 && lun.writeSameToEnd === true
  if (toEnd ? lba >= lun.blocks : lba + given > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  const blocks = toEnd ? lun.blocks - lba : given
  if (u.writeProtected()) return writeProtected()
  if (blocks === 0 || blocks * bs > MAX_WRITE_SAME_BYTES) return invalidFieldInCdb(L.blocks.offset)
  let block: Buffer | null = null
  if (!ndob) {
    const src = cmd.dataOut
    if (src === null || src.length !== bs) return fail(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, { sks: { cd: true, field: L.blocks.offset }, wanted: bs })
    block = src.subarray(0, bs)
  }
  const moved = ndob ? 0 : bs
  const bytes = blocks * bs
  const offset = lba * bs
  const flush = mustFlush(u, false)
  const finish = (e: IoResult): MaybeAsync<ScsiOutcome> => {
    if (e !== null) return backendFailure(e, 'write', bs, lba)
    if (!flush) return good(moved, moved)
    return andThen(lun.backend.flush(), (fe) => (fe !== null ? backendFailure(fe, 'write', bs, lba) : good(moved, moved)))
  }
  if ((flags & WRITE_SAME_UNMAP) !== 0) return andThen(lun.backend.unmap(offset, bytes), finish)
  return andThen(writeRepeated(u, offset, bytes, block), finish)
}

/** Writes `block` (zeros when null) over `bytes` from `offset`, a piece at a time. */
function writeRepeated(u: UnitContext, offset: number, bytes: number, block: Buffer | null): MaybeAsync<IoResult> {
  const bs = u.lun.blockSize
  const piece = Buffer.alloc(Math.min(bytes, WORK_CHUNK_BYTES))
  if (block !== null) for (let at = 0; at < piece.length; at += bs) block.copy(piece, at, 0, bs)
  return walk(bytes, WORK_CHUNK_BYTES, (done, len) => u.lun.backend.write(offset + done, len === piece.length ? piece : piece.subarray(0, len)))
}
