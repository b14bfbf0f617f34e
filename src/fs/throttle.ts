/**
 * The host side of one LUN's queue depth: at most `depth` of its commands at
 * the HBA; the rest wait here in FIFO order and go out as earlier ones
 * complete (the target would answer TASK SET FULL past its depth).
 *
 * This is the one door commands leave the device by, so it is also where a
 * removed LUN stops: once closed, nothing is sent, not even a command queued
 * or retried from before, because by then the LUN's number may name another
 * unit (a LUN added back). Such a command completes with GONE instead.
 */
import type { Completion, CompletionCallback, HbaDriver, ScsiRequest } from '../hba/driver.js'
import { CompStatus } from '../hba/iocb.js'

/** What a command for a removed LUN completes with, without being sent: PORT UNAVAILABLE (ENXIO). */
export const GONE: Completion = { compStatus: CompStatus.PORT_UNAVAILABLE, scsiStatus: 0, sense: null, residual: 0, transferred: 0, entryStatus: 0 }

export class Throttle {
  readonly depth: number
  /** False once the LUN is gone (close()). */
  open = true
  private readonly driver: Pick<HbaDriver, 'submit'>
  private readonly stats: { throttled: number }
  private inflight = 0
  // A FIFO read from `head`; emptied in one go when the head catches up, so no shift() per command.
  private readonly queued: (() => void)[] = []
  private head = 0

  constructor(driver: Pick<HbaDriver, 'submit'>, depth: number, stats: { throttled: number }) {
    this.driver = driver
    this.depth = depth
    this.stats = stats
  }

  /** Hands a command to the driver, or queues it while `depth` are outstanding. */
  submit(req: ScsiRequest, cb: CompletionCallback): void {
    if (!this.open) {
      process.nextTick(cb, GONE)
      return
    }
    if (this.inflight < this.depth) {
      this.inflight++
      this.driver.submit(req, (c) => {
        this.inflight--
        if (this.head < this.queued.length) this.release()
        cb(c)
      })
      return
    }
    this.stats.throttled++
    this.queued.push(() => this.submit(req, cb))
  }

  private release(): void {
    const next = this.queued[this.head]
    this.queued[this.head++] = undefined as unknown as () => void
    if (this.head === this.queued.length) {
      this.queued.length = 0
      this.head = 0
    }
    next()
  }

  /** The LUN is gone: nothing more is sent (see failQueued for what already waits). */
  close(): void {
    this.open = false
  }

  /** After close: completes every queued command with GONE now rather than after completions that may never come. */
  failQueued(): void {
    while (this.head < this.queued.length) this.release()
  }
}
