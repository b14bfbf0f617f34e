/**
 * The one map from a SCSI outcome (status byte and sense data) to an errno,
 * shared by every initiator: the filesystem, the request/reply API, the direct
 * module, the remote iSCSI backend and fault injection (QEMU's scsi/utils.c
 * does the same for its device model and its iSCSI driver). What an HBA adds
 * on top (completion status, entry status) is mapped by fs/errno.ts, which
 * ends here; docs/errors.md's errno table mirrors both.
 *
 * Errno values are negative, as FUSE expects.
 */
import { constants } from 'node:os'
import { Asc, SenseKey, senseCode, senseCodeAsc, senseCodeIs, senseCodeKey, Status } from './sense.js'

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

/** "EIO" for Errno.EIO; "errno N" for one not in the table. */
export function errnoName(negErrno: number): string {
  for (const [k, v] of Object.entries(Errno)) if (v === negErrno) return k
  return `errno ${-negErrno}`
}

export type Verdict =
  /** The command did what was asked (possibly a short transfer). */
  | { kind: 'ok' }
  /** Worth sending again: unit attention, BUSY, TASK SET FULL, aborted command. */
  | { kind: 'retry'; errno: number; reason: string }
  | { kind: 'error'; errno: number; reason: string }

/** The one 'ok' verdict: classifying a good command allocates nothing. */
export const OK: Verdict = { kind: 'ok' }

/** What a SCSI status byte and its sense data (if any) mean to an initiator. */
export function classifyScsi(status: number, sense: Uint8Array | null): Verdict {
  switch (status) {
    case Status.GOOD:
    case Status.CONDITION_MET: // PRE-FETCH: the range is (would be) cached
      return OK
    case Status.BUSY:
      return { kind: 'retry', errno: Errno.EBUSY, reason: 'BUSY' }
    case Status.TASK_SET_FULL:
      return { kind: 'retry', errno: Errno.EBUSY, reason: 'TASK SET FULL' }
    case Status.RESERVATION_CONFLICT:
      return { kind: 'error', errno: Errno.EBADE, reason: 'RESERVATION CONFLICT' }
    case Status.CHECK_CONDITION:
      return classifySense(senseCode(sense))
    default:
      return { kind: 'error', errno: Errno.EIO, reason: `SCSI status 0x${status.toString(16)}` }
  }
}

/** CHECK CONDITION: the sense key decides, an ASC refines a few (a `senseCode`, or NO_SENSE_CODE). */
export function classifySense(code: number): Verdict {
  if (code < 0) return { kind: 'error', errno: Errno.EIO, reason: 'CHECK CONDITION without sense' }
  const key = senseCodeKey(code)
  switch (key) {
    case SenseKey.UNIT_ATTENTION:
      return { kind: 'retry', errno: Errno.EIO, reason: 'UNIT ATTENTION' }
    case SenseKey.ABORTED_COMMAND:
      return { kind: 'retry', errno: Errno.EIO, reason: 'ABORTED COMMAND' }
    case SenseKey.NOT_READY:
      if (senseCodeAsc(code) === Asc.MEDIUM_NOT_PRESENT.asc) return { kind: 'error', errno: Errno.ENOMEDIUM, reason: 'MEDIUM NOT PRESENT' }
      return { kind: 'error', errno: Errno.EIO, reason: 'NOT READY' }
    case SenseKey.MEDIUM_ERROR:
      return { kind: 'error', errno: Errno.EIO, reason: 'MEDIUM ERROR' }
    case SenseKey.HARDWARE_ERROR:
      return { kind: 'error', errno: Errno.EIO, reason: 'HARDWARE ERROR' }
    case SenseKey.DATA_PROTECT:
      // 27/07: a thin-provisioned store is out of space (Linux maps it to ENOSPC too).
      if (senseCodeIs(code, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT)) return { kind: 'error', errno: Errno.ENOSPC, reason: 'SPACE ALLOCATION FAILED WRITE PROTECT' }
      return { kind: 'error', errno: Errno.EROFS, reason: 'DATA PROTECT' }
    case SenseKey.MISCOMPARE:
      return { kind: 'error', errno: Errno.EILSEQ, reason: 'MISCOMPARE' }
    case SenseKey.ILLEGAL_REQUEST:
      if (senseCodeAsc(code) === Asc.LOGICAL_UNIT_NOT_SUPPORTED.asc) return { kind: 'error', errno: Errno.ENXIO, reason: 'LOGICAL UNIT NOT SUPPORTED' }
      if (senseCodeAsc(code) === Asc.LBA_OUT_OF_RANGE.asc) return { kind: 'error', errno: Errno.ENOSPC, reason: 'LBA OUT OF RANGE' }
      return { kind: 'error', errno: Errno.EINVAL, reason: 'ILLEGAL REQUEST' }
    default:
      return { kind: 'error', errno: Errno.EIO, reason: `sense key 0x${key.toString(16)}` }
  }
}
