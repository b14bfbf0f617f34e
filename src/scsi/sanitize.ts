/**
 * SANITIZE (SBC-3 5.19): OVERWRITE, BLOCK ERASE, CRYPTOGRAPHIC ERASE and
 * EXIT FAILURE MODE, one opcode-table row per service action.
 *
 *   CDB   byte 1  IMMED (7) | ZNR (6, zoned only: refused) | AUSE (5) | SERVICE ACTION (4..0)
 *         7..8   PARAMETER LIST LENGTH: OVERWRITE 5..blockSize + 4, every other action 0 (the mask)
 *   OVERWRITE parameter list:
 *         byte 0  INVERT (7) | TEST (6..5, must be 00b) | OVERWRITE COUNT (4..0, not 0)
 *         2..3    INITIALIZATION PATTERN LENGTH (1..blockSize, = parameter list length − 4)
 *         4..     INITIALIZATION PATTERN, repeated from the start of every block
 *
 * What the medium holds afterwards:
 *   OVERWRITE            the pattern, inverted when INVERT = 1 and the count is even (the
 *                        last of the passes; the passes before it cannot be seen, so only
 *                        the last is written)
 *   BLOCK ERASE          zeros: the whole unit is unmapped (VPD 0xB1 WABEREQ = 01b: reads
 *   CRYPTOGRAPHIC ERASE  succeed; 0xB2 LBPRZ: they read zeros; WACEREQ = 01b likewise)
 * A result of zeros (an all-zero pattern too) goes through backend.unmap, so a sparse
 * RAM unit allocates nothing; a pattern is written in pieces of at most WORK_CHUNK_BYTES
 * from one reused buffer. The write cache, if any, is flushed at the end.
 *
 * The operation runs in the background, in steps, and the unit answers meanwhile: every
 * command but INQUIRY, REPORT LUNS and REQUEST SENSE gets NOT READY, LOGICAL UNIT NOT
 * READY, SANITIZE IN PROGRESS (04/1B) with the PROGRESS INDICATION in the sense-key
 * specific bytes (lu.ts checks it before unit attentions), and REQUEST SENSE reports the
 * same. IMMED = 1 answers GOOD once the CDB and the parameter list are checked; IMMED = 0
 * answers when the operation ends. Neither a LUN reset nor the loss of the nexus stops it,
 * and an ABORT TASK (or a reset) of an IMMED = 0 SANITIZE ends that command at once: the
 * handler releases its data-out buffer (ScsiCommand.releaseData) before the operation starts.
 * A unit's "sanitizeTime" (Lun.sanitizeMs) is the least time the operation takes: the
 * steps are spread over it, which is how a host sees one in progress on a RAM unit.
 *
 * Failure: a backend error ends the operation and puts the unit in sanitize failure
 * mode: medium access commands other than SANITIZE get MEDIUM ERROR, SANITIZE COMMAND
 * FAILED (31/03) (IMMED = 0: so does the SANITIZE) until a SANITIZE succeeds or, when the
 * failed one had AUSE = 1, an EXIT FAILURE MODE. EXIT FAILURE MODE after a failure with
 * AUSE = 0 is refused (INVALID FIELD IN CDB at the service action); with no failure it
 * does nothing and answers GOOD.
 *
 * Scsi/ has no timers but this one: the steps yield to the event loop (setImmediate, or
 * setTimeout while ahead of the unit's sanitizeTime) through a Clock a test may replace.
 */
import { isPromise, type BackendError } from '../targets/backend.js'
import type { Lun } from '../targets/types.js'
import { readU16BE } from './bytes.js'
import { PARAMETER_LIST_CDB_10_FIELDS } from './cdb.js'
import { f, type Layout } from '../util/layout.js'
import { writeProtected } from './rw.js'
import {
  Asc,
  fail,
  good,
  invalidFieldInCdb,
  invalidFieldInParameterList,
  parameterListLengthError,
  SenseKey,
  type FieldPointer,
  type SenseInfo,
} from './sense.js'
import type { ScsiOutcome } from './types.js'
import { MAX_UNMAP_BYTES, WORK_CHUNK_BYTES, type Handler } from './unit.js'

export const SANITIZE = {
  name: 'SANITIZE',
  size: 10,
  fields: PARAMETER_LIST_CDB_10_FIELDS,
} as const satisfies Layout

export const SANITIZE_OVERWRITE_HEADER = {
  name: 'SANITIZE OVERWRITE parameter list header',
  size: 4,
  fields: { flags: f(0), reserved1: f(1), patternLength: f(2, 2) },
} as const satisfies Layout

export const SANITIZE_LAYOUTS: readonly Layout[] = [SANITIZE, SANITIZE_OVERWRITE_HEADER]

/** SERVICE ACTION (CDB byte 1 bits 4..0). */
export const SanitizeAction = { OVERWRITE: 0x01, BLOCK_ERASE: 0x02, CRYPTOGRAPHIC_ERASE: 0x03, EXIT_FAILURE_MODE: 0x1f } as const

/** CDB byte 1. */
export const SanitizeFlag = { IMMED: 0x80, AUSE: 0x20 } as const

/** OVERWRITE parameter list byte 0. */
export const Overwrite = { INVERT: 0x80, TEST_MASK: 0x60, COUNT_MASK: 0x1f } as const

/** PROGRESS INDICATION's scale: 65536 is done (SPC-4 4.5.2.4.4). */
export const PROGRESS_SCALE = 65536

/**
 * The sense-key specific PROGRESS INDICATION: SKSV, then the progress as a u16 (SPC-4
 * 4.5.2.4.4). It has the field pointer's shape with C/D = 0 and no bit pointer, so the
 * sense encoders write it as one.
 */
export function progressIndication(progress: number): FieldPointer {
  return { cd: false, field: Math.min(progress, PROGRESS_SCALE - 1) }
}

/** How the operation waits between steps: tests may drive it by hand. */
export interface Clock {
  now(): number
  /** Resolves after `ms` (0: at the next turn of the event loop, after pending I/O). */
  sleep(ms: number): Promise<void>
}

export const REAL_CLOCK: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => (ms > 0 ? setTimeout(r, ms) : setImmediate(r))),
}

/** The most steps an operation is cut into (the granularity of its progress and of its pacing). */
const STEPS = 256

/**
 * A logical unit's sanitize state: the operation in progress (at most one) and failure
 * mode. One per logical unit, shared by every I_T nexus.
 */
export class Sanitizer {
  private job: { done: number; readonly total: number } | null = null
  private failure: { readonly ause: boolean } | null = null

  constructor(
    private readonly unit: Lun,
    private readonly clock: Clock = REAL_CLOCK,
  ) {}

  /** An operation is in progress. */
  get running(): boolean {
    return this.job !== null
  }

  /** The last operation failed and the unit is in sanitize failure mode. */
  get failed(): boolean {
    return this.failure !== null
  }

  /** Progress of the running operation, 0..65535 (PROGRESS_SCALE is done); 0 when none runs. */
  get progress(): number {
    const j = this.job
    return j === null || j.total === 0 ? 0 : Math.min(PROGRESS_SCALE - 1, Math.floor((j.done / j.total) * PROGRESS_SCALE))
  }

  /** The condition REQUEST SENSE reports: in progress (04/1B with progress), failure mode (31/03), or null. */
  status(): SenseInfo | null {
    if (this.job !== null) return { key: SenseKey.NOT_READY, ...Asc.LUN_NOT_READY_SANITIZE_IN_PROGRESS, sks: progressIndication(this.progress) }
    if (this.failure !== null) return { key: SenseKey.MEDIUM_ERROR, ...Asc.SANITIZE_COMMAND_FAILED }
    return null
  }

  /** What a command other than INQUIRY, REPORT LUNS and REQUEST SENSE gets while an operation runs. */
  inProgress(): ScsiOutcome {
    return fail(SenseKey.NOT_READY, Asc.LUN_NOT_READY_SANITIZE_IN_PROGRESS, { sks: progressIndication(this.progress) })
  }

  /** What a medium access command gets in failure mode. */
  failedOutcome(): ScsiOutcome {
    return fail(SenseKey.MEDIUM_ERROR, Asc.SANITIZE_COMMAND_FAILED)
  }

  /**
   * Starts an operation that leaves every block holding `block` (null: zeros, through
   * unmap). The state changes at once; the promise is the outcome for IMMED = 0 and
   * never rejects.
   */
  start(block: Buffer | null, ause: boolean): Promise<ScsiOutcome> {
    const total = this.unit.blocks * this.unit.blockSize
    const job = { done: 0, total }
    this.job = job
    return this.run(job, block).then(
      (err) => this.end(err, ause),
      (e: unknown) => this.end({ kind: 'io', message: String(e) }, ause),
    )
  }

  /** EXIT FAILURE MODE: leaves failure mode when the failed operation allowed it (AUSE = 1). */
  exitFailureMode(): ScsiOutcome {
    if (this.failure !== null && !this.failure.ause) return invalidFieldInCdb(SANITIZE.fields.flags.offset, 4)
    this.failure = null
    return good(0, 0)
  }

  private end(err: BackendError | null, ause: boolean): ScsiOutcome {
    this.job = null
    if (err !== null) {
      this.failure = { ause }
      return this.failedOutcome()
    }
    this.failure = null
    return good(0, 0)
  }

  private async run(job: { done: number; readonly total: number }, block: Buffer | null): Promise<BackendError | null> {
    const u = this.unit
    const bs = u.blockSize
    const limit = block === null ? MAX_UNMAP_BYTES : WORK_CHUNK_BYTES
    const step = Math.max(bs, Math.min(limit, Math.ceil(job.total / STEPS / bs) * bs))
    const fill = block === null ? null : repeated(block, Math.min(step, job.total))
    const spread = u.sanitizeMs ?? 0
    const t0 = this.clock.now()
    while (job.done < job.total) {
      // Yield (so the unit answers meanwhile), and wait while ahead of the unit's sanitizeTime.
      await this.clock.sleep(Math.max(0, t0 + (spread * job.done) / job.total - this.clock.now()))
      const n = Math.min(step, job.total - job.done)
      const r = fill === null ? u.backend.unmap(job.done, n) : u.backend.write(job.done, n === fill.length ? fill : fill.subarray(0, n))
      const err = isPromise(r) ? await r : r
      if (err !== null) return err
      job.done += n
    }
    const r = u.backend.flush()
    return isPromise(r) ? await r : r
  }
}

/** `block` repeated to `bytes` (a multiple of its length). */
function repeated(block: Buffer, bytes: number): Buffer {
  const out = Buffer.allocUnsafe(bytes)
  for (let at = 0; at < bytes; at += block.length) block.copy(out, at)
  return out
}

/**
 * One block of what OVERWRITE leaves: the pattern repeated from the start of the block,
 * inverted when the last pass is an inverted one; null when that is all zeros.
 */
export function overwriteBlock(pattern: Uint8Array, blockSize: number, invertLast: boolean): Buffer | null {
  const b = Buffer.alloc(blockSize)
  for (let at = 0; at < blockSize; at += pattern.length) b.set(pattern.subarray(0, Math.min(pattern.length, blockSize - at)), at)
  if (invertLast) for (let i = 0; i < blockSize; i++) b[i] ^= 0xff
  return b.every((x) => x === 0) ? null : b
}

export const sanitize: Handler = (u, cmd) => {
  const F = SANITIZE.fields
  const cdb = cmd.cdb
  const action = cdb[F.flags.offset] & 0x1f
  const immed = (cdb[F.flags.offset] & SanitizeFlag.IMMED) !== 0
  const ause = (cdb[F.flags.offset] & SanitizeFlag.AUSE) !== 0
  const paramLen = readU16BE(cdb, F.paramLen.offset)
  // Only OVERWRITE takes a parameter list (the other rows' masks keep the length 0).
  if (action === SanitizeAction.EXIT_FAILURE_MODE) return u.sanitizer.exitFailureMode()
  const bs = u.lun.blockSize
  if (action === SanitizeAction.OVERWRITE && (paramLen < SANITIZE_OVERWRITE_HEADER.size + 1 || paramLen > bs + SANITIZE_OVERWRITE_HEADER.size)) {
    return invalidFieldInCdb(F.paramLen.offset)
  }
  if (u.writeProtected()) return writeProtected()
  let block: Buffer | null = null
  if (action === SanitizeAction.OVERWRITE) {
    const H = SANITIZE_OVERWRITE_HEADER.fields
    const d = cmd.dataOut
    if (d === null || d.length < paramLen) return parameterListLengthError()
    const flags = d[H.flags.offset]
    if ((flags & Overwrite.TEST_MASK) !== 0) return invalidFieldInParameterList(H.flags.offset, 6)
    const count = flags & Overwrite.COUNT_MASK
    if (count === 0) return invalidFieldInParameterList(H.flags.offset, 4)
    const patternLength = readU16BE(d, H.patternLength.offset)
    if (patternLength === 0 || patternLength !== paramLen - SANITIZE_OVERWRITE_HEADER.size) return invalidFieldInParameterList(H.patternLength.offset)
    const pattern = d.subarray(SANITIZE_OVERWRITE_HEADER.size, paramLen)
    block = overwriteBlock(pattern, bs, (flags & Overwrite.INVERT) !== 0 && count % 2 === 0)
  }
  // The pattern is copied: the parameter list is not needed again, so an ABORT TASK or a reset
  // can end this command at once while the operation runs on (SBC-4: they do not stop it).
  cmd.releaseData?.()
  const done = u.sanitizer.start(block, ause)
  return immed ? good(0, 0) : done
}
