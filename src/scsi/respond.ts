/**
 * Building outcomes that several command families share: returning parameter
 * data through the initiator's data-in buffer, and turning a backend failure
 * into sense.
 */
import type { BackendError } from '../targets/backend.js'
import { Asc, fail, good, SenseKey } from './sense.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'

/**
 * GOOD with `data[0..length)` copied into the data-in buffer, cut to the
 * allocation length and to the buffer. `wanted` is the allocation length: it
 * is what the CDB called for, so a buffer smaller than it is an overrun and a
 * shorter answer an underrun (SPC-4 4.2.5.6).
 */
export function dataInResponse(cmd: ScsiCommand, data: Uint8Array, length: number, allocLen: number): ScsiOutcome {
  const buf = cmd.dataIn
  const n = Math.min(length, allocLen, buf ? buf.length : 0)
  if (n > 0) buf!.set(data.subarray(0, n), 0)
  return good(n, allocLen)
}

/**
 * A failed backend call as sense:
 *  - 'medium' → MEDIUM ERROR, UNRECOVERED READ ERROR (read) or WRITE ERROR
 *    (write, flush), INFORMATION = the failing LBA (the backend's offset when
 *    it gave one, else the first LBA of the command, if any);
 *  - 'nospace' on a write → DATA PROTECT, SPACE ALLOCATION FAILED WRITE
 *    PROTECT (27/07), INFORMATION as above: what a thin-provisioned array
 *    answers when its pool ran out (SBC-3 4.7.3.6), and what Linux turns into
 *    ENOSPC ("thin provisioning hard threshold reached", scsi_error.c);
 *  - anything else → HARDWARE ERROR, INTERNAL TARGET FAILURE.
 */
export function backendFailure(err: BackendError, op: 'read' | 'write' | 'flush', blockSize: number, firstLba?: number): ScsiOutcome {
  const info = err.offset !== undefined ? Math.floor(err.offset / blockSize) : firstLba
  if (err.kind === 'nospace' && op !== 'read') return fail(SenseKey.DATA_PROTECT, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT, { info })
  if (err.kind === 'medium' || err.kind === 'nospace') {
    return fail(SenseKey.MEDIUM_ERROR, op === 'read' ? Asc.UNRECOVERED_READ_ERROR : Asc.WRITE_ERROR, { info })
  }
  return fail(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE)
}
