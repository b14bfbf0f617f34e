/**
 * A command's completion as an errno: the HBA's part (entry status, completion
 * status) here, then the SCSI part (status byte, sense) through the SCSI wire
 * leaf's one map, scsi/errno.ts. Every front end that submits through the HBA
 * (the file interface, the request/reply API, the direct API) uses this one;
 * docs/errors.md's errno table mirrors both.
 */
import type { Completion } from './driver.js'
import { CompStatus } from './iocb.js'
import { classifyScsi, Errno, type Verdict } from '../scsi/errno.js'

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

