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
 * FUA: the write is followed by backend.flush() before GOOD.
 * Backend failures become sense in respond.ts (backendFailure).
 */
import { isPromise, type IoResult, type MaybeAsync } from '../targets/backend.js'
import type { Lun } from '../targets/types.js'
import { decodeReadWrite, type ReadWriteCdb } from './cdb.js'
import { backendFailure } from './respond.js'
import { Asc, fail, good, invalidFieldInCdb, SenseKey } from './sense.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'
import { MAX_TRANSFER_BYTES, type Handler } from './unit.js'

export const readWrite: Handler = (u, cmd) => {
  const d = decodeReadWrite(cmd.cdb)
  const lun = u.lun
  if (d.lba + d.blocks > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  if (d.write && lun.writeProtect) return fail(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED)
  if (d.blocks === 0) return good(0, 0)
  const bytes = d.blocks * lun.blockSize
  if (bytes > MAX_TRANSFER_BYTES) return invalidFieldInCdb(d.lengthOffset)
  return d.write ? write(lun, cmd, d, bytes) : read(lun, cmd, d, bytes)
}

function write(lun: Lun, cmd: ScsiCommand, d: ReadWriteCdb, bytes: number): MaybeAsync<ScsiOutcome> {
  const src = cmd.dataOut
  if (src === null || src.length < bytes) {
    return fail(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, { sks: { cd: true, field: d.lengthOffset }, wanted: bytes })
  }
  const r = lun.backend.write(d.lba * lun.blockSize, src.length === bytes ? src : src.subarray(0, bytes))
  if (isPromise(r)) return r.then((e) => afterWrite(lun, d, bytes, e))
  return afterWrite(lun, d, bytes, r)
}

function afterWrite(lun: Lun, d: ReadWriteCdb, bytes: number, e: IoResult): MaybeAsync<ScsiOutcome> {
  if (e !== null) return backendFailure(e, 'write', lun.blockSize, d.lba)
  if (!d.fua) return good(bytes, bytes)
  const f = lun.backend.flush()
  if (isPromise(f)) return f.then((fe) => (fe !== null ? backendFailure(fe, 'write', lun.blockSize, d.lba) : good(bytes, bytes)))
  return f !== null ? backendFailure(f, 'write', lun.blockSize, d.lba) : good(bytes, bytes)
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
