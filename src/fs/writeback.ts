/**
 * Write-back of one LUN's buffered writes: the data is copied and the writer
 * answered at once while the WRITE goes on in the background, up to `window`
 * bytes per LUN (then writers wait for room, in order). A failure after the
 * answer is counted and reported by the next fsync/flush of every handle
 * (errorSeq, errno). drain() waits for what was answered before it.
 *
 * The tail: a write that ends inside a block keeps that partial block back
 * while the next write continues exactly where it ended. A writer whose
 * buffers are not page-aligned (Python, fio by default) has its requests
 * split by the kernel at offsets that are not block multiples, and without
 * the tail every one of them would be a read-modify-write. The tail is sent as
 * soon as anything else touches the device (another write, a read of its
 * block, fsync, close, a drain) or after TAIL_MS.
 *
 *   answered ──▶ [waiting for window room] ──▶ copy ─┬─▶ WRITE in flight (inflight, bytes) ──▶ done
 *                                                    └─▶ tail (≤ 1 block) ──▶ flushTail ──┘
 *
 * WRITEs go out through `onward`, the device's write-through path (bounds,
 * range lock, read-modify-write), like a filter in front of it.
 */
import { Errno } from './errno.js'
import type { IoCallback, ReadCache } from './io.js'
import { ioBuffers } from '../util/bufpool.js'
import { copyBytes } from '../util/bytes.js'

/** How long a kept-back partial block may wait for the write that continues it. */
const TAIL_MS = 20

/** Where answered data is written: the device's write-through path. */
export interface WriteThrough {
  write(buf: Buffer, len: number, pos: number, cb: IoCallback): void
}

interface WaitingWrite {
  buf: Buffer
  len: number
  pos: number
  cb: IoCallback
}

interface WriteBackStats {
  writebackWrites: number
  writebackBytes: number
  writebackErrors: number
  writebackWindowWaits: number
}

export class WriteBack {
  /** Bytes of answered-but-unwritten writes allowed (callers ensure > 0). */
  readonly window: number
  /** Bumped on every failure after an answer; handles remember the value they have seen. */
  errorSeq = 0
  /** The errno of the latest such failure. */
  errno = 0

  private readonly onward: WriteThrough
  private readonly caches: ReadonlySet<ReadCache>
  private readonly capacity: number
  private readonly blockSize: number
  private readonly stats: WriteBackStats

  // Answered writes still on their way, by sequence number (Map order = sequence order).
  private seq = 0
  private readonly inflight = new Map<number, number>()
  private bytes = 0
  private readonly waiting: WaitingWrite[] = []
  private readonly drainWaiters: { target: number; cb: () => void }[] = []

  /** The partial last block of a buffered write run, answered but kept back (see start). */
  private tail: { pos: number; buf: Buffer; len: number } | null = null
  private tailTimer: NodeJS.Timeout | null = null

  constructor(onward: WriteThrough, caches: ReadonlySet<ReadCache>, capacity: number, blockSize: number, window: number, stats: WriteBackStats) {
    this.onward = onward
    this.caches = caches
    this.capacity = capacity
    this.blockSize = blockSize
    this.window = window
    this.stats = stats
  }

  /** Answered writes not yet completed (a kept-back partial block counts as one). */
  get pending(): number {
    return this.inflight.size + (this.tail !== null ? 1 : 0)
  }

  get pendingBytes(): number {
    return this.bytes
  }

  /** WRITEs of answered data at the HBA (a read of their blocks must wait for them). */
  get writesInFlight(): number {
    return this.inflight.size
  }

  /**
   * A buffered write of `len` > 0 bytes inside the device: answered once it
   * fits the window (at once when nobody waits and it fits now).
   */
  write(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
    if (this.waiting.length > 0 || (this.bytes > 0 && this.bytes + len > this.window)) {
      this.stats.writebackWindowWaits++
      this.waiting.push({ buf, len, pos, cb })
      return
    }
    this.start(buf, len, pos, cb)
  }

  /** Copies and answers a write, joining it to the tail or keeping its partial last block back as the new tail. */
  private start(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
    const bs = this.blockSize
    const t = this.tail
    const joins = t !== null && t.pos + t.len === pos
    if (t !== null && !joins) this.flushTail()
    const start = joins ? t!.pos : pos
    const total = joins ? t!.len + len : len
    const end = start + total
    const copy = ioBuffers.get(total)
    if (joins) {
      t!.buf.copy(copy, 0, 0, t!.len)
      ioBuffers.put(t!.buf)
      this.tail = null
    }
    copyBytes(buf, copy, total - len, 0, len)
    // Answered now: prefetched copies are stale now.
    if (this.caches.size > 0) for (const c of this.caches) c.invalidate(pos, pos + len)
    // Keep back a partial last block: all of a run that starts on a block
    // boundary and stays inside one block, else what follows the last boundary
    // (so a run that started unaligned is aligned again from here on).
    const lastBoundary = end - (end % bs)
    const keep = end % bs !== 0 && end < this.capacity && (start % bs === 0 || lastBoundary > start) ? end - Math.max(start, lastBoundary) : 0
    if (keep > 0) {
      const tb = ioBuffers.get(bs)
      copy.copy(tb, 0, total - keep, total)
      this.tail = { pos: end - keep, buf: tb, len: keep }
      this.tailTimer ??= setTimeout(this.tailTimeout, TAIL_MS)
    }
    if (total - keep > 0) this.issue(copy, total - keep, start)
    else ioBuffers.put(copy)
    cb(len)
  }

  private readonly tailTimeout = (): void => {
    this.tailTimer = null
    this.flushTail()
  }

  /** Sends the kept-back partial block (a read-modify-write of that block). */
  flushTail(): void {
    const t = this.tail
    if (t === null) return
    this.tail = null
    if (this.tailTimer) clearTimeout(this.tailTimer)
    this.tailTimer = null
    this.issue(t.buf, t.len, t.pos)
  }

  /** Sends the tail first when bytes [start, end) touch its block. */
  flushTailIfOverlapping(start: number, end: number): void {
    const t = this.tail
    if (t !== null && start < t.pos + this.blockSize && end > t.pos) this.flushTail()
  }

  /** Whether a partial block is kept back (callers skip the overlap arithmetic when not). */
  get hasTail(): boolean {
    return this.tail !== null
  }

  /** A WRITE of answered data (`data` is ours, from the pool): counted in the window until it completes. */
  private issue(data: Buffer, len: number, pos: number): void {
    const seq = ++this.seq
    this.inflight.set(seq, len)
    this.bytes += len
    this.stats.writebackWrites++
    this.stats.writebackBytes += len
    this.onward.write(data, len, pos, (r) => {
      ioBuffers.put(data)
      this.done(seq, len, r)
    })
  }

  private done(seq: number, len: number, r: number): void {
    this.inflight.delete(seq)
    this.bytes -= len
    if (r < len) this.failed(r < 0 ? r : Errno.EIO)
    while (this.waiting.length > 0) {
      const w = this.waiting[0]
      if (this.bytes > 0 && this.bytes + w.len > this.window) break
      this.waiting.shift()
      this.start(w.buf, w.len, w.pos, w.cb)
    }
    if (this.drainWaiters.length > 0) this.checkDrains()
  }

  /** Answered data did not reach the LUN: the next fsync/flush of every handle reports `errno`. */
  private failed(errno: number): void {
    this.errno = errno
    this.errorSeq++
    this.stats.writebackErrors++
  }

  /**
   * The LUN is gone: the kept-back partial block was answered but cannot be
   * written anywhere, so it is dropped and counted as a failure (ENXIO, which
   * the next fsync or close of each handle reports); writes still waiting for
   * window room were never answered and get ENXIO. WRITEs already sent end as
   * the target answers them.
   */
  unplug(): void {
    const t = this.tail
    if (t !== null) {
      this.tail = null
      if (this.tailTimer) clearTimeout(this.tailTimer)
      this.tailTimer = null
      ioBuffers.put(t.buf)
      this.failed(Errno.ENXIO)
    }
    for (const w of this.waiting.splice(0)) w.cb(Errno.ENXIO)
  }

  /** Calls cb once every write answered before now has completed (the tail is sent first). */
  drain(cb: () => void): void {
    this.flushTail()
    const target = this.seq
    if (this.oldest() > target) return process.nextTick(cb)
    this.drainWaiters.push({ target, cb })
  }

  private oldest(): number {
    for (const seq of this.inflight.keys()) return seq // insertion order = sequence order
    return Infinity
  }

  private checkDrains(): void {
    const oldest = this.oldest()
    for (let i = 0; i < this.drainWaiters.length; ) {
      const w = this.drainWaiters[i]
      if (w.target < oldest) {
        this.drainWaiters.splice(i, 1)
        w.cb()
      } else i++
    }
  }
}
