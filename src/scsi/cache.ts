/**
 * The cache family: SYNCHRONIZE CACHE(10/16) (SBC-3 5.22, 5.23), PRE-FETCH
 * (10/16) (SBC-3 5.9, 5.10) and TEST UNIT READY (SPC-4 6.47).
 *
 * SYNCHRONIZE CACHE hands its range to backend.flush (NUMBER OF LOGICAL
 * BLOCKS 0: through the last block), after checking it like a READ would: a
 * write cache makes the cached blocks in the range durable and keeps the
 * others volatile; a plain backend flushes everything.
 * With IMMED=1 the command is GOOD once validated and the flush goes on
 * behind it, as SBC allows; a failure of that flush is not reported (nor is
 * it by a real disk), so initiators that care leave IMMED clear.
 *
 * PRE-FETCH has nothing to load: every backend answers reads as fast as it
 * can already, so the range counts as cached and the answer is CONDITION MET
 * (what SBC-3 gives when the blocks fit in the cache, and what scsi_debug
 * answers). A PRE-FETCH LENGTH of 0 means "through the last block".
 */
import { isPromise } from '../targets/backend.js'
import { readU16BE, readU32BE, readU64BE } from './bytes.js'
import { decodeSyncCache, Op } from './cdb.js'
import { f, type Layout } from '../util/layout.js'
import { backendFailure } from './respond.js'
import { Asc, fail, good, SenseKey, Status } from './sense.js'
import type { Handler } from './unit.js'

export const PRE_FETCH_10 = {
  name: 'PRE-FETCH(10)',
  size: 10,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 4), group: f(6), length: f(7, 2), control: f(9) },
} as const satisfies Layout

export const PRE_FETCH_16 = {
  name: 'PRE-FETCH(16)',
  size: 16,
  fields: { opcode: f(0), flags: f(1), lba: f(2, 8), length: f(10, 4), group: f(14), control: f(15) },
} as const satisfies Layout

export const CACHE_LAYOUTS: readonly Layout[] = [PRE_FETCH_10, PRE_FETCH_16]

/** PRE-FETCH byte 1. */
export const PRE_FETCH_IMMED = 0x02

export const synchronizeCache: Handler = (u, cmd) => {
  const d = decodeSyncCache(cmd.cdb)
  const lun = u.lun
  if (d.lba >= lun.blocks || d.lba + d.blocks > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  const bs = lun.blockSize
  const r = lun.backend.flush(d.lba * bs, (d.blocks === 0 ? lun.blocks - d.lba : d.blocks) * bs)
  if (d.immed) {
    // Nobody waits on it; keep an async failure from being an unhandled rejection.
    if (isPromise(r)) r.catch(() => undefined)
    return good(0, 0)
  }
  if (isPromise(r)) return r.then((e) => (e !== null ? backendFailure(e, 'flush', lun.blockSize) : good(0, 0)))
  return r !== null ? backendFailure(r, 'flush', lun.blockSize) : good(0, 0)
}

export const preFetch: Handler = (u, cmd) => {
  const cdb = cmd.cdb
  const ten = cdb[0] === Op.PRE_FETCH_10
  const lba = ten ? readU32BE(cdb, PRE_FETCH_10.fields.lba.offset) : readU64BE(cdb, PRE_FETCH_16.fields.lba.offset)
  const blocks = ten ? readU16BE(cdb, PRE_FETCH_10.fields.length.offset) : readU32BE(cdb, PRE_FETCH_16.fields.length.offset)
  if (lba >= u.lun.blocks || lba + blocks > u.lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  return { status: Status.CONDITION_MET, sense: null, transferred: 0, wanted: 0 }
}

/** The unit is ready unless stopped; a pending unit attention or a stopped unit is reported before this runs (lu.ts). */
export const testUnitReady: Handler = () => good(0, 0)
