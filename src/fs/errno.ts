/**
 * Where a command's completion becomes an errno for the file interface. The
 * HBA's part (entry status, completion status) is mapped here; the SCSI part
 * (status byte, sense) is the SCSI wire leaf's one map, scsi/errno.ts, which
 * every other initiator shares. docs/errors.md's errno table mirrors both.
 *
 * Errno values are returned negative, as FUSE expects.
 */
import type { Completion } from '../hba/driver.js'
import { CompStatus } from '../hba/iocb.js'
import { classifyScsi, Errno, type Verdict } from '../scsi/errno.js'

export { Errno, errnoName, type Verdict } from '../scsi/errno.js'
/** Re-exported for src/api/server.ts until it imports the leaf (scsi/sense.ts) itself. */
export { senseTriple } from '../scsi/sense.js'

/** A completion's verdict: the HBA's statuses first, then the SCSI outcome (scsi/errno.ts). */
export function classify(c: Completion): Verdict {
  if (c.entryStatus !== 0) return { kind: 'error', errno: Errno.EIO, reason: 'entry rejected by the HBA firmware' }
  switch (c.compStatus) {
    case CompStatus.COMPLETE:
    case CompStatus.DATA_UNDERRUN:
      break
    case CompStatus.TIMEOUT:
      return { kind: 'error', errno: Errno.ETIMEDOUT, reason: 'command timed out' }
    case CompStatus.PORT_UNAVAILABLE:
    case CompStatus.PORT_LOGGED_OUT:
      return { kind: 'error', errno: Errno.ENXIO, reason: 'target port unavailable' }
    case CompStatus.QUEUE_FULL:
      return { kind: 'retry', errno: Errno.EBUSY, reason: 'queue full' }
    case CompStatus.ABORTED:
    case CompStatus.RESET:
      return { kind: 'error', errno: Errno.EIO, reason: 'command aborted' }
    default:
      return { kind: 'error', errno: Errno.EIO, reason: `HBA completion status 0x${c.compStatus.toString(16)}` }
  }
  return classifyScsi(c.scsiStatus, c.sense)
}

/** Retries allowed per verdict reason before the errno is returned. */
export const RETRY_LIMIT = 5
