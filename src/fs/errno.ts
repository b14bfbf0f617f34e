/**
 * The only place where a command's outcome becomes an errno. Everything the
 * file interface reports for a SCSI status, a sense key or an HBA completion
 * status comes from `classify` below; the README's errno table mirrors it.
 *
 * Errno values are returned negative, as FUSE expects.
 */
import { constants } from 'node:os'
import type { Completion } from '../hba/driver.js'
import { CompStatus } from '../hba/iocb.js'

const E = constants.errno
export const Errno = {
  EPERM: -E.EPERM,
  ENOENT: -E.ENOENT,
  EIO: -E.EIO,
  ENXIO: -E.ENXIO,
  EBADF: -E.EBADF,
  EAGAIN: -E.EAGAIN,
  EACCES: -E.EACCES,
  EBUSY: -E.EBUSY,
  EEXIST: -E.EEXIST,
  ENOTDIR: -E.ENOTDIR,
  EISDIR: -E.EISDIR,
  EINVAL: -E.EINVAL,
  EFBIG: -E.EFBIG,
  ENOSPC: -E.ENOSPC,
  EROFS: -E.EROFS,
  ENOSYS: -E.ENOSYS,
  ENOTSUP: -E.ENOTSUP,
  ETIMEDOUT: -E.ETIMEDOUT,
  EILSEQ: -E.EILSEQ,
  ENOMEDIUM: -(E as Record<string, number>).ENOMEDIUM || -123,
  EBADE: -(E as Record<string, number>).EBADE || -52,
  ECANCELED: -E.ECANCELED,
} as const

export function errnoName(negErrno: number): string {
  for (const [k, v] of Object.entries(Errno)) if (v === negErrno) return k
  return `errno ${-negErrno}`
}

// SCSI status bytes.
const GOOD = 0x00
const CHECK_CONDITION = 0x02
const CONDITION_MET = 0x04
const BUSY = 0x08
const RESERVATION_CONFLICT = 0x18
const TASK_SET_FULL = 0x28

// Sense keys (decoded from fixed or descriptor sense below).
const NOT_READY = 0x2
const MEDIUM_ERROR = 0x3
const HARDWARE_ERROR = 0x4
const ILLEGAL_REQUEST = 0x5
const UNIT_ATTENTION = 0x6
const DATA_PROTECT = 0x7
const ABORTED_COMMAND = 0xb
const MISCOMPARE = 0xe

export type Verdict =
  /** The command did what was asked (possibly a short transfer: see Completion.transferred). */
  | { kind: 'ok' }
  /** Worth sending again: unit attention, BUSY, TASK SET FULL, aborted command. */
  | { kind: 'retry'; errno: number; reason: string }
  | { kind: 'error'; errno: number; reason: string }

const OK: Verdict = { kind: 'ok' }

/** Sense key, ASC and ASCQ of fixed (0x70/0x71) or descriptor (0x72/0x73) sense. */
export function senseTriple(sense: Buffer | null): { key: number; asc: number; ascq: number } | null {
  if (!sense || sense.length < 3) return null
  const code = sense[0] & 0x7f
  if (code === 0x70 || code === 0x71) {
    if (sense.length < 14) return { key: sense[2] & 0x0f, asc: 0, ascq: 0 }
    return { key: sense[2] & 0x0f, asc: sense[12], ascq: sense[13] }
  }
  if (code === 0x72 || code === 0x73) {
    return { key: sense[1] & 0x0f, asc: sense[2], ascq: sense.length > 3 ? sense[3] : 0 }
  }
  return null
}

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
  switch (c.scsiStatus) {
    case GOOD:
    case CONDITION_MET: // PRE-FETCH: the range is (would be) cached
      return OK
    case BUSY:
      return { kind: 'retry', errno: Errno.EBUSY, reason: 'BUSY' }
    case TASK_SET_FULL:
      return { kind: 'retry', errno: Errno.EBUSY, reason: 'TASK SET FULL' }
    case RESERVATION_CONFLICT:
      return { kind: 'error', errno: Errno.EBADE, reason: 'RESERVATION CONFLICT' }
    case CHECK_CONDITION:
      return fromSense(c.sense)
    default:
      return { kind: 'error', errno: Errno.EIO, reason: `SCSI status 0x${c.scsiStatus.toString(16)}` }
  }
}

function fromSense(sense: Buffer | null): Verdict {
  const s = senseTriple(sense)
  if (!s) return { kind: 'error', errno: Errno.EIO, reason: 'CHECK CONDITION without sense' }
  switch (s.key) {
    case UNIT_ATTENTION:
      return { kind: 'retry', errno: Errno.EIO, reason: 'UNIT ATTENTION' }
    case ABORTED_COMMAND:
      return { kind: 'retry', errno: Errno.EIO, reason: 'ABORTED COMMAND' }
    case NOT_READY:
      if (s.asc === 0x3a) return { kind: 'error', errno: Errno.ENOMEDIUM, reason: 'MEDIUM NOT PRESENT' }
      return { kind: 'error', errno: Errno.EIO, reason: 'NOT READY' }
    case MEDIUM_ERROR:
      return { kind: 'error', errno: Errno.EIO, reason: 'MEDIUM ERROR' }
    case HARDWARE_ERROR:
      return { kind: 'error', errno: Errno.EIO, reason: 'HARDWARE ERROR' }
    case DATA_PROTECT:
      // 27/07: a thin-provisioned store is out of space (Linux maps it to ENOSPC too).
      if (s.asc === 0x27 && s.ascq === 0x07) return { kind: 'error', errno: Errno.ENOSPC, reason: 'SPACE ALLOCATION FAILED WRITE PROTECT' }
      return { kind: 'error', errno: Errno.EROFS, reason: 'DATA PROTECT' }
    case MISCOMPARE:
      return { kind: 'error', errno: Errno.EILSEQ, reason: 'MISCOMPARE' }
    case ILLEGAL_REQUEST:
      if (s.asc === 0x25) return { kind: 'error', errno: Errno.ENXIO, reason: 'LOGICAL UNIT NOT SUPPORTED' }
      if (s.asc === 0x21) return { kind: 'error', errno: Errno.ENOSPC, reason: 'LBA OUT OF RANGE' }
      return { kind: 'error', errno: Errno.EINVAL, reason: 'ILLEGAL REQUEST' }
    default:
      return { kind: 'error', errno: Errno.EIO, reason: `sense key 0x${s.key.toString(16)}` }
  }
}

/** Retries allowed per verdict reason before the errno is returned. */
export const RETRY_LIMIT = 5
