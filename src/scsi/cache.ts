/**
 * SYNCHRONIZE CACHE(10/16) (SBC-3 5.22, 5.23) and TEST UNIT READY (SPC-4 6.47).
 *
 * SYNCHRONIZE CACHE flushes the whole backend whatever the range (backends
 * flush everything or nothing), after checking the range like a READ would.
 * With IMMED=1 the command is GOOD once validated and the flush goes on
 * behind it, as SBC allows; a failure of that flush is not reported (nor is
 * it by a real disk), so initiators that care leave IMMED clear.
 */
import { isPromise } from '../targets/backend.js'
import { decodeSyncCache } from './cdb.js'
import { backendFailure } from './respond.js'
import { Asc, fail, good, SenseKey } from './sense.js'
import type { Handler } from './unit.js'

export const synchronizeCache: Handler = (u, cmd) => {
  const d = decodeSyncCache(cmd.cdb)
  const lun = u.lun
  if (d.lba >= lun.blocks || d.lba + d.blocks > lun.blocks) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
  const r = lun.backend.flush()
  if (d.immed) {
    // Nobody waits on it; keep an async failure from being an unhandled rejection.
    if (isPromise(r)) r.catch(() => undefined)
    return good(0, 0)
  }
  if (isPromise(r)) return r.then((e) => (e !== null ? backendFailure(e, 'flush', lun.blockSize) : good(0, 0)))
  return r !== null ? backendFailure(r, 'flush', lun.blockSize) : good(0, 0)
}

/** The unit is always ready; a pending unit attention is reported before this runs (lu.ts). */
export const testUnitReady: Handler = () => good(0, 0)
