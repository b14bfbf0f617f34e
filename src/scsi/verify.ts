/**
 * Commands that compare (SBC-3 5.29-5.31, 5.40-5.42, 5.2):
 *
 *   VERIFY(10/12/16)         BYTCHK 00b: read the range back (medium check only)
 *                            BYTCHK 01b: compare it with the data-out
 *                            BYTCHK 11b: compare every block with one data-out block
 *   WRITE AND VERIFY(10/12/16) write to the medium (as FUA), read back; BYTCHK 01b also compares
 *   COMPARE AND WRITE        compare n blocks with the first half of the data-out;
 *                            when equal, write the second half
 *   ORWRITE(16)              read n blocks, OR the data-out into them, write them
 *                            (SBC-3 5.10, no protection information, no bitmaps)
 *
 * A difference answers MISCOMPARE, MISCOMPARE DURING VERIFY OPERATION with
 * INFORMATION = the offset of the first differing byte from the start of the
 * compared data (for BYTCHK 11b, as if the one block were repeated).
 * Ranges are read in pieces of WORK_CHUNK_BYTES, never all at once.
 *
 * COMPARE AND WRITE and ORWRITE are atomic against other commands only when the backend
 * answers synchronously (RAM): with a promise-answering backend another
 * WRITE to the same blocks may land between the compare and the write.
 */
import type { IoResult, MaybeAsync } from '../targets/backend.js'
import type { Lun } from '../targets/types.js'
import { readU16BE, readU32BE, readU64BE } from './bytes.js'
import { andThen, firstDifference, walk } from './chain.js'
import { Op } from './cdb.js'
import { f, type Layout } from '../util/layout.js'
import { backendFailure } from './respond.js'
import { mustFlush, writeAndFlush, writeProtected } from './rw.js'
import { Asc, fail, good, invalidFieldInCdb, SenseKey } from './sense.js'
import type { ScsiOutcome } from './types.js'
import { MAX_COMPARE_AND_WRITE_BLOCKS, MAX_TRANSFER_BYTES, WORK_CHUNK_BYTES, type Handler } from './unit.js'

export const VERIFY_10 = {
  name: 'VERIFY(10) / WRITE AND VERIFY(10)',
  size: 10,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 4), group: f(6), length: f(7, 2), control: f(9) },
} as const satisfies Layout

export const VERIFY_12 = {
  name: 'VERIFY(12) / WRITE AND VERIFY(12)',
  size: 12,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 4), length: f(6, 4), group: f(10), control: f(11) },
} as const satisfies Layout

export const VERIFY_16 = {
  name: 'VERIFY(16) / WRITE AND VERIFY(16)',
  size: 16,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 8), length: f(10, 4), group: f(14), control: f(15) },
} as const satisfies Layout

export const COMPARE_AND_WRITE = {
  name: 'COMPARE AND WRITE',
  size: 16,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 8), reserved10: f(10, 3), blocks: f(13), group: f(14), control: f(15) },
} as const satisfies Layout

export const ORWRITE_16 = {
  name: 'ORWRITE(16)',
  size: 16,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 8), length: f(10, 4), group: f(14), control: f(15) },
} as const satisfies Layout

export const VERIFY_LAYOUTS: readonly Layout[] = [VERIFY_10, VERIFY_12, VERIFY_16, COMPARE_AND_WRITE, ORWRITE_16]

/** BYTCHK, byte 1 bits 2..1 of VERIFY and WRITE AND VERIFY. */
export const ByteCheck = { NONE: 0b00, COMPARE: 0b01, RESERVED: 0b10, COMPARE_ONE_BLOCK: 0b11 } as const
const BYTCHK_SHIFT = 1
/** COMPARE AND WRITE and ORWRITE byte 1. */
const CAW_FUA = 0x08

interface VerifyCdb {
  readonly lba: number
  readonly blocks: number
  readonly bytchk: number
  readonly lengthOffset: number
}

function decodeVerify(cdb: Uint8Array): VerifyCdb {
  const ten = cdb[0] === Op.VERIFY_10 || cdb[0] === Op.WRITE_AND_VERIFY_10
  const bytchk = (cdb[1] >> BYTCHK_SHIFT) & 0x3
  if (ten) {
    const L = VERIFY_10.fields
    return { lba: readU32BE(cdb, L.lba.offset), blocks: readU16BE(cdb, L.length.offset), bytchk, lengthOffset: L.length.offset }
  }
  if (cdb[0] === Op.VERIFY_12 || cdb[0] === Op.WRITE_AND_VERIFY_12) {
    const L = VERIFY_12.fields
    return { lba: readU32BE(cdb, L.lba.offset), blocks: readU32BE(cdb, L.length.offset), bytchk, lengthOffset: L.length.offset }
  }
  const L = VERIFY_16.fields
  return { lba: readU64BE(cdb, L.lba.offset), blocks: readU32BE(cdb, L.length.offset), bytchk, lengthOffset: L.length.offset }
}

export function miscompare(offset: number, transferred: number): ScsiOutcome {
  return fail(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY, { info: offset, transferred, wanted: transferred })
}

/**
 * Reads `bytes` from `lba` piece by piece; `expect(done, len)` gives the bytes
 * each piece must equal, or null to only read it. Answers null when all is
 * well, else the outcome (MEDIUM ERROR…, MISCOMPARE).
 */
function readAndCompare(lun: Lun, lba: number, bytes: number, transferred: number, expect: ((done: number, len: number) => Uint8Array) | null): MaybeAsync<ScsiOutcome | null> {
  const bs = lun.blockSize
  const tmp = Buffer.allocUnsafe(Math.min(bytes, WORK_CHUNK_BYTES))
  return walk<ScsiOutcome>(bytes, WORK_CHUNK_BYTES, (done, len) => {
    const piece = len === tmp.length ? tmp : tmp.subarray(0, len)
    return andThen(lun.backend.read(lba * bs + done, piece), (e: IoResult) => {
      if (e !== null) return backendFailure(e, 'read', bs, lba + done / bs)
      if (expect === null) return null
      const at = firstDifference(piece, expect(done, len))
      return at < 0 ? null : miscompare(done + at, transferred)
    })
  })
}

/** Data-out shorter than the CDB says: nothing is done, INVALID FIELD IN CDB at the length field (as rw.ts does for WRITE). */
function shortDataOut(field: number, wanted: number): ScsiOutcome {
  return fail(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, { sks: { cd: true, field }, wanted })
}

export const verify: Handler = (u, cmd) => {
  const d = decodeVerify(cmd.cdb)
  const lun = u.lun
  const bs = lun.blockSize
  if (d.bytchk === ByteCheck.RESERVED) return invalidFieldInCdb(1, 2)
  if (d.lba + d.blocks > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  if (d.blocks === 0) return good(0, 0)
  const bytes = d.blocks * bs
  if (bytes > MAX_TRANSFER_BYTES) return invalidFieldInCdb(d.lengthOffset)
  let expect: ((done: number, len: number) => Uint8Array) | null = null
  let moved = 0
  if (d.bytchk === ByteCheck.COMPARE) {
    const src = cmd.dataOut
    if (src === null || src.length < bytes) return shortDataOut(d.lengthOffset, bytes)
    expect = (done, len) => src.subarray(done, done + len)
    moved = bytes
  } else if (d.bytchk === ByteCheck.COMPARE_ONE_BLOCK) {
    const src = cmd.dataOut
    if (src === null || src.length < bs) return shortDataOut(d.lengthOffset, bs)
    // Pieces are whole blocks (WORK_CHUNK_BYTES is a multiple of both block sizes): repeat the block to piece size once.
    const rep = Buffer.allocUnsafe(Math.min(bytes, WORK_CHUNK_BYTES))
    for (let at = 0; at < rep.length; at += bs) src.copy(rep, at, 0, bs)
    expect = (_done, len) => rep.subarray(0, len)
    moved = bs
  }
  return andThen(readAndCompare(lun, d.lba, bytes, moved, expect), (o) => o ?? good(moved, moved))
}

export const writeAndVerify: Handler = (u, cmd) => {
  const d = decodeVerify(cmd.cdb)
  const lun = u.lun
  const bs = lun.blockSize
  if (d.lba + d.blocks > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  if (u.writeProtected()) return writeProtected()
  if (d.blocks === 0) return good(0, 0)
  const bytes = d.blocks * bs
  if (bytes > MAX_TRANSFER_BYTES) return invalidFieldInCdb(d.lengthOffset)
  const src = cmd.dataOut
  if (src === null || src.length < bytes) return shortDataOut(d.lengthOffset, bytes)
  const data = src.length === bytes ? src : src.subarray(0, bytes)
  // "Write to the medium, then verify": the write is forced through the cache.
  return andThen(writeAndFlush(lun, d.lba * bs, data, true), (e) => {
    if (e !== null) return backendFailure(e, 'write', bs, d.lba)
    const expect = d.bytchk === ByteCheck.COMPARE ? (done: number, len: number) => data.subarray(done, done + len) : null
    return andThen(readAndCompare(lun, d.lba, bytes, bytes, expect), (o) => o ?? good(bytes, bytes))
  })
}

export const compareAndWrite: Handler = (u, cmd) => {
  const cdb = cmd.cdb
  const L = COMPARE_AND_WRITE.fields
  const lun = u.lun
  const bs = lun.blockSize
  const lba = readU64BE(cdb, L.lba.offset)
  const n = cdb[L.blocks.offset]
  if (lba + n > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  if (u.writeProtected()) return writeProtected()
  const bytes = n * bs
  const src = cmd.dataOut
  // More Data-Out than the CDB asks for: the one-byte NUMBER OF LOGICAL
  // BLOCKS cannot be what the initiator meant (256 blocks wrap to 0, a length
  // above MAXIMUM COMPARE AND WRITE LENGTH). Refused as a bad CDB, the way
  // Linux LIO refuses any write-type CDB whose length disagrees with the
  // transfer, rather than done in part.
  if (src !== null && src.length > 2 * bytes) return invalidFieldInCdb(L.blocks.offset)
  if (n === 0) return good(0, 0)
  if (n > MAX_COMPARE_AND_WRITE_BLOCKS) return invalidFieldInCdb(L.blocks.offset)
  if (src === null || src.length < 2 * bytes) return shortDataOut(L.blocks.offset, 2 * bytes)
  const verifyData = src.subarray(0, bytes)
  const writeData = src.subarray(bytes, 2 * bytes)
  const current = Buffer.allocUnsafe(bytes)
  return andThen(lun.backend.read(lba * bs, current), (e) => {
    if (e !== null) return backendFailure(e, 'read', bs, lba)
    const at = firstDifference(current, verifyData)
    if (at >= 0) return miscompare(at, 2 * bytes)
    const fua = (cdb[L.flags.offset] & CAW_FUA) !== 0
    return andThen(writeAndFlush(lun, lba * bs, writeData, mustFlush(u, fua)), (we) =>
      we !== null ? backendFailure(we, 'write', bs, lba) : good(2 * bytes, 2 * bytes),
    )
  })
}

export const orWrite: Handler = (u, cmd) => {
  const cdb = cmd.cdb
  const L = ORWRITE_16.fields
  const lun = u.lun
  const bs = lun.blockSize
  const lba = readU64BE(cdb, L.lba.offset)
  const n = readU32BE(cdb, L.length.offset)
  if (lba + n > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  if (u.writeProtected()) return writeProtected()
  if (n === 0) return good(0, 0)
  const bytes = n * bs
  if (bytes > MAX_TRANSFER_BYTES) return invalidFieldInCdb(L.length.offset)
  const src = cmd.dataOut
  if (src === null || src.length < bytes) return shortDataOut(L.length.offset, bytes)
  const merged = Buffer.allocUnsafe(bytes)
  return andThen(lun.backend.read(lba * bs, merged), (e) => {
    if (e !== null) return backendFailure(e, 'read', bs, lba)
    for (let i = 0; i < bytes; i++) merged[i] |= src[i]
    const fua = (cdb[L.flags.offset] & CAW_FUA) !== 0
    return andThen(writeAndFlush(lun, lba * bs, merged, mustFlush(u, fua)), (we) => (we !== null ? backendFailure(we, 'write', bs, lba) : good(bytes, bytes)))
  })
}
