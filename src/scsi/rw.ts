/**
 * READ and WRITE (6/10/12/16): SBC-3 5.11-5.14, 5.36-5.39.
 *
 * Checks, in the order scsi_debug makes them, each failing with no data moved:
 *   LBA + TRANSFER LENGTH past the last block → ILLEGAL REQUEST, LBA OUT OF RANGE
 *   WRITE to a write-protected unit           → DATA PROTECT, WRITE PROTECTED
 *   more than MAX_TRANSFER_BYTES              → ILLEGAL REQUEST, INVALID FIELD IN CDB (transfer length)
 * A transfer length of 0 (in the 10/12/16 forms) is GOOD with nothing moved.
 *
 * Buffers shorter than the CDB asks for:
 *  - READ: move what fits (whole blocks straight into the initiator's buffer,
 *    a trailing partial block through one temporary block) and report
 *    `wanted` so the transport reports the overrun, as FCP does.
 *  - WRITE: write nothing and fail with INVALID FIELD IN CDB pointing at the
 *    transfer length. The initiator said (FCP_DL) it would send fewer bytes
 *    than the CDB writes; storing a prefix would change part of the range and
 *    leave the rest stale while the command fails anyway, which no initiator
 *    can recover from sensibly. Rejecting keeps a failed WRITE a no-op.
 *
 * FUA, or the caching mode page's WCE = 0: the write is followed by
 * backend.flush() of its range before GOOD (a write cache then makes just
 * that range durable). Write protection is the Lun's flag or the
 * control mode page's SWP.
 * Backend failures become sense in respond.ts (backendFailure).
 *
 * WRITE ATOMIC(16) (SBC-4 5.48, 4.29): the whole range is written or none of
 * it. Its limits are the unit's (atomicLimits, reported in VPD 0xB0):
 *   MAXIMUM ATOMIC TRANSFER LENGTH         1 MiB of blocks, with or without an ATOMIC BOUNDARY
 *   ATOMIC ALIGNMENT / LENGTH GRANULARITY  one physical block (0, no requirement, when it is one logical block)
 *   MAXIMUM ATOMIC BOUNDARY SIZE           the same 1 MiB: every boundary fcfs accepts it honours, since
 *                                          it writes the whole range as one atomic write anyway
 * Refusals, checked after LBA OUT OF RANGE and WRITE PROTECTED, each with
 * ILLEGAL REQUEST, INVALID FIELD IN CDB and a field pointer:
 *   LBA not a multiple of the alignment                  → byte 2 (LOGICAL BLOCK ADDRESS)
 *   ATOMIC BOUNDARY above the maximum boundary size      → byte 10 (ATOMIC BOUNDARY)
 *   TRANSFER LENGTH not a multiple of the granularity,
 *   or above the maximum (with or without boundary)      → byte 12 (TRANSFER LENGTH)
 *
 * Why nothing tears it:
 *  - The data goes to the backend in ONE write call, never split into pieces.
 *    The RAM backend stores it in one synchronous call (no other command runs
 *    in between) and counts the memory it needs before touching a byte; a
 *    medium-error fault rule fails the call before anything is written.
 *  - Backends that can fail half way (a file that runs out of disk, a remote
 *    LUN that splits the transfer) are covered by an undo copy: the old
 *    blocks are read first, and when the write fails they are written back
 *    before the command fails. A failing pre-read fails the command with
 *    nothing written.
 *  - With a volatile write cache the write is flushed (destaged) before GOOD,
 *    as with FUA: the cache holds it as one record and destages it as one
 *    medium write. When the medium is synchronous (RAM) the copy into the
 *    cache and the destage run in one turn of the event loop, so a
 *    power-loss fault cannot fall between them. (With an asynchronous medium a
 *    power loss that strikes while the destage waits behind other medium work
 *    may keep part of the cached record: the cache tears at block granularity.)
 */
import { isPromise, type IoResult, type MaybeAsync } from '../targets/backend.js'
import type { Lun } from '../targets/types.js'
import { andThen } from './chain.js'
import { decodeReadWrite, decodeWriteAtomic16, WRITE_ATOMIC_16, type ReadWriteCdb } from './cdb.js'
import { logicalPerPhysical } from './capacity.js'
import { backendFailure } from './respond.js'
import { Asc, fail, good, invalidFieldInCdb, SenseKey } from './sense.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'
import { MAX_TRANSFER_BYTES, type Handler, type UnitContext } from './unit.js'

export const readWrite: Handler = (u, cmd) => {
  const d = decodeReadWrite(cmd.cdb)
  const lun = u.lun
  if (d.lba + d.blocks > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  if (d.write && u.writeProtected()) return writeProtected()
  if (d.blocks === 0) return good(0, 0)
  const bytes = d.blocks * lun.blockSize
  if (bytes > MAX_TRANSFER_BYTES) return invalidFieldInCdb(d.lengthOffset)
  return d.write ? write(u, cmd, d, bytes) : read(lun, cmd, d, bytes)
}

/** DATA PROTECT, WRITE PROTECTED: what every write-type command answers on a protected unit. */
export function writeProtected(): ScsiOutcome {
  return fail(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED)
}

/** Whether a write must reach the medium before GOOD: FUA asked for it, or the write cache is off. */
export function mustFlush(u: UnitContext, fua: boolean): boolean {
  return fua || !u.writeCacheEnabled()
}

/** backend.write, then backend.flush of the written range when `flush`; the first failure. */
export function writeAndFlush(lun: Lun, offset: number, src: Buffer, flush: boolean): MaybeAsync<IoResult> {
  return andThen(lun.backend.write(offset, src), (e) => (e !== null || !flush ? e : lun.backend.flush(offset, src.length)))
}

function write(u: UnitContext, cmd: ScsiCommand, d: ReadWriteCdb, bytes: number): MaybeAsync<ScsiOutcome> {
  const lun = u.lun
  const src = cmd.dataOut
  if (src === null || src.length < bytes) {
    return fail(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, { sks: { cd: true, field: d.lengthOffset }, wanted: bytes })
  }
  const r = writeAndFlush(lun, d.lba * lun.blockSize, src.length === bytes ? src : src.subarray(0, bytes), mustFlush(u, d.fua))
  const finish = (e: IoResult) => (e !== null ? backendFailure(e, 'write', lun.blockSize, d.lba) : good(bytes, bytes))
  return isPromise(r) ? r.then(finish) : finish(r)
}

function read(lun: Lun, cmd: ScsiCommand, d: ReadWriteCdb, bytes: number): MaybeAsync<ScsiOutcome> {
  const dst = cmd.dataIn
  const fit = dst === null ? 0 : Math.min(dst.length, bytes)
  if (fit === 0) return good(0, bytes)
  const bs = lun.blockSize
  const whole = fit - (fit % bs)
  const offset = d.lba * bs
  if (whole === fit) {
    const r = lun.backend.read(offset, fit === dst!.length ? dst! : dst!.subarray(0, fit))
    if (isPromise(r)) return r.then((e) => (e !== null ? backendFailure(e, 'read', bs, d.lba) : good(fit, bytes)))
    return r !== null ? backendFailure(r, 'read', bs, d.lba) : good(fit, bytes)
  }
  // The buffer ends inside a block: read the whole blocks in place, then the
  // one partial block through a temporary and copy the part that fits.
  const tail = () => readTail(lun, dst!, offset, whole, fit, bytes, d.lba)
  if (whole === 0) return tail()
  const r = lun.backend.read(offset, dst!.subarray(0, whole))
  if (isPromise(r)) return r.then((e) => (e !== null ? backendFailure(e, 'read', bs, d.lba) : tail()))
  return r !== null ? backendFailure(r, 'read', bs, d.lba) : tail()
}

function readTail(lun: Lun, dst: Buffer, offset: number, whole: number, fit: number, bytes: number, lba: number): MaybeAsync<ScsiOutcome> {
  const bs = lun.blockSize
  const tmp = Buffer.allocUnsafe(bs)
  const finish = (e: IoResult): ScsiOutcome => {
    if (e !== null) return { ...backendFailure(e, 'read', bs, lba + whole / bs), transferred: whole }
    tmp.copy(dst, whole, 0, fit - whole)
    return good(fit, bytes)
  }
  const r = lun.backend.read(offset + whole, tmp)
  return isPromise(r) ? r.then(finish) : finish(r)
}

// ---- WRITE ATOMIC(16) ------------------------------------------------------

/** The largest atomic write, in bytes (VPD 0xB0 reports it in blocks): 2048 blocks of 512, 256 of 4096. */
export const MAX_ATOMIC_TRANSFER_BYTES = 1024 * 1024

/** What VPD 0xB0 reports and WRITE ATOMIC(16) enforces, in logical blocks. */
export interface AtomicLimits {
  readonly maxTransferLength: number
  /** 0: no alignment requirement. */
  readonly alignment: number
  /** 0: no granularity requirement. */
  readonly granularity: number
  readonly maxTransferLengthWithBoundary: number
  readonly maxBoundarySize: number
}

export function atomicLimits(lun: Lun): AtomicLimits {
  const perPhysical = logicalPerPhysical(lun)
  const max = MAX_ATOMIC_TRANSFER_BYTES / lun.blockSize
  const unit = perPhysical > 1 ? perPhysical : 0
  return { maxTransferLength: max, alignment: unit, granularity: unit, maxTransferLengthWithBoundary: max, maxBoundarySize: max }
}

export const writeAtomic16: Handler = (u, cmd) => {
  const d = decodeWriteAtomic16(cmd.cdb)
  const lun = u.lun
  const F = WRITE_ATOMIC_16.fields
  if (d.lba + d.blocks > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  if (u.writeProtected()) return writeProtected()
  const lim = atomicLimits(lun)
  if (lim.alignment > 1 && d.lba % lim.alignment !== 0) return invalidFieldInCdb(F.lba.offset)
  if (d.boundary > lim.maxBoundarySize) return invalidFieldInCdb(F.boundary.offset)
  if (lim.granularity > 1 && d.blocks % lim.granularity !== 0) return invalidFieldInCdb(F.length.offset)
  if (d.blocks > (d.boundary > 0 ? lim.maxTransferLengthWithBoundary : lim.maxTransferLength)) return invalidFieldInCdb(F.length.offset)
  if (d.blocks === 0) return good(0, 0)
  const bytes = d.blocks * lun.blockSize
  const src = cmd.dataOut
  if (src === null || src.length < bytes) {
    return fail(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, { sks: { cd: true, field: F.length.offset }, wanted: bytes })
  }
  const bs = lun.blockSize
  const offset = d.lba * bs
  const data = src.length === bytes ? src : src.subarray(0, bytes)
  const old = Buffer.allocUnsafe(bytes)
  const flush = mustFlush(u, d.fua) || lun.writeCache !== undefined
  return andThen(lun.backend.read(offset, old), (re) => {
    if (re !== null) return backendFailure(re, 'read', bs, d.lba)
    return andThen(writeAndFlush(lun, offset, data, flush), (we) => {
      if (we === null) return good(bytes, bytes)
      // Put the old blocks back: a backend that failed half way leaves no part of the write behind.
      return andThen(lun.backend.write(offset, old), () => backendFailure(we, 'write', bs, d.lba))
    })
  })
}
