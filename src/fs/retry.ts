/**
 * One command of a LUN from submission to its final outcome. A completion
 * worth another try (see classify: unit attention, BUSY, TASK SET FULL, …)
 * is sent again, at most RETRY_LIMIT times; a failure for good is counted and
 * kept as the LUN's last error, which the `sense` info file shows.
 * Data READs are timed for ReadLatency on the way.
 */
import type { Completion } from '../hba/driver.js'
import type { DataDirection } from '../scsi/types.js'
import { classify, Errno, RETRY_LIMIT } from './errno.js'
import type { ReadLatency } from './latency.js'
import { GONE, type Throttle } from './throttle.js'

export interface LastError {
  time: string
  op: string
  lba: number
  blocks: number
  compStatus: number
  scsiStatus: number
  entryStatus: number
  sense: Buffer | null
  reason: string
  errno: number
}

/** Where the LUN's commands go (read at every send). */
export interface CommandAddress {
  readonly loopId: number
  readonly lun: number
}

export class Retrier {
  /** The last command that failed for good, null until one does. */
  lastError: LastError | null = null
  private readonly throttle: Throttle
  private readonly latency: ReadLatency
  private readonly address: CommandAddress
  /** IOCB timeout of every command, in seconds. */
  private readonly timeout: number
  private readonly stats: { retries: number; errors: number }

  constructor(throttle: Throttle, latency: ReadLatency, address: CommandAddress, timeout: number, stats: { retries: number; errors: number }) {
    this.throttle = throttle
    this.latency = latency
    this.address = address
    this.timeout = timeout
    this.stats = stats
  }

  /** Sends one command, retrying what is worth retrying; cb(0 | -errno, completion). */
  send(
    op: string,
    cdb: Uint8Array,
    data: Buffer | null,
    direction: DataDirection,
    lba: number,
    blocks: number,
    cb: (errno: number, c: Completion) => void,
  ): void {
    if (!this.throttle.open) {
      process.nextTick(cb, Errno.ENXIO, GONE)
      return
    }
    let attempt = 0
    const req = { target: this.address.loopId, lun: this.address.lun, cdb, data, direction, timeout: this.timeout }
    // Only data READs tell how slow reading is: not the scan's INQUIRY and friends, not prefetch READs (they queue on purpose).
    const t0 = op === 'READ' ? this.latency.start() : 0
    const onDone = (c: Completion): void => {
      const v = classify(c)
      if (v.kind === 'ok') {
        if (t0 !== 0) this.latency.done(t0, data ? data.length : 0)
        return cb(0, c)
      }
      if (v.kind === 'retry' && attempt < RETRY_LIMIT) {
        attempt++
        this.stats.retries++
        // Unit attentions clear at once; BUSY and TASK SET FULL get a short backoff.
        if (v.reason === 'UNIT ATTENTION') this.throttle.submit(req, onDone)
        else setTimeout(() => this.throttle.submit(req, onDone), 1 << attempt)
        return
      }
      this.stats.errors++
      this.lastError = {
        time: new Date().toISOString(),
        op,
        lba,
        blocks,
        compStatus: c.compStatus,
        scsiStatus: c.scsiStatus,
        entryStatus: c.entryStatus,
        sense: c.sense,
        reason: v.reason,
        errno: v.errno,
      }
      cb(v.errno, c)
    }
    this.throttle.submit(req, onDone)
  }
}
