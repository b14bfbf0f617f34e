/**
 * One logical unit as the file interface drives it: geometry learned by SCSI
 * at mount, READ/WRITE commands through the HBA driver, read-modify-write for
 * unaligned requests, bounded retries, and the last failure kept for the
 * `sense` info file. Callbacks get a byte count (≥ 0) or a negative errno.
 */
import type { HbaDriver, Completion } from '../hba/driver.js'
import { CompStatus } from '../hba/iocb.js'
import { DataDirection } from '../scsi/types.js'
import { encodeReadWrite, encodeSyncCache10 } from '../scsi/cdb.js'
import { performance } from 'node:perf_hooks'
import { classify, Errno, RETRY_LIMIT } from './errno.js'
import { RangeLock } from './rangelock.js'
import { ioBuffers } from '../util/bufpool.js'
import { copyBytes } from '../util/bytes.js'

export interface DeviceInfo {
  wwpn: string
  wwnn: string
  loopId: number
  portId: number
  lun: number
  blockSize: number
  blocks: number
  vendor: string
  product: string
  revision: string
}

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

export type IoCallback = (result: number) => void

export interface BlockDeviceOptions {
  /** Largest single READ/WRITE; bigger transfers are split. */
  maxTransferBytes: number
  /** Commands this host keeps outstanding per LUN (the target's queue depth). */
  queueDepth: number
  /** Bytes of answered-but-unwritten buffered writes per LUN; 0 = write-through only. */
  writebackWindow: number
  /** IOCB timeout of every command, in seconds (the firmware answers TIMEOUT past it). */
  commandTimeout: number
}

/** How long a kept-back partial block may wait for the write that continues it. */
const TAIL_MS = 20

/** What commands are called in errors and traces; prefetch READs have their own name (and are not timed). */
const OP_LABEL: Record<Op, string> = { read: 'READ', write: 'WRITE' }
export const PREFETCH_READ = 'READ (readahead)'

/** A READ measured to take this long (µs per 128 KiB) comes from a slow backend: prefetching pays whatever the link. */
const SLOW_READ_US = 1000
/** READ latencies kept for the median that readsAreSlow judges by. */
const READ_SAMPLES = 5

/** What a command for a removed LUN completes with, without being sent: PORT UNAVAILABLE (ENXIO). */
const GONE: Completion = { compStatus: CompStatus.PORT_UNAVAILABLE, scsiStatus: 0, sense: null, residual: 0, transferred: 0, entryStatus: 0 }

export const DEFAULT_BLOCKDEV_OPTIONS: BlockDeviceOptions = {
  maxTransferBytes: 1024 * 1024,
  queueDepth: 64,
  writebackWindow: 16 * 1024 * 1024,
  commandTimeout: 30,
}

/** Something that caches data read from the device and must forget it when those bytes are written. */
export interface ReadCache {
  invalidate(start: number, end: number): void
}

interface WaitingWrite {
  buf: Buffer
  len: number
  pos: number
  cb: IoCallback
}

type Op = 'read' | 'write'

export class BlockDevice {
  readonly info: DeviceInfo
  readonly capacity: number
  readonly blockSize: number
  private readonly driver: HbaDriver
  private readonly maxBlocks: number
  readonly locks = new RangeLock()
  lastError: LastError | null = null
  /** False once the LUN is gone (hot-unplug, see remove()): every I/O then fails with ENXIO. */
  present = true

  readonly stats = {
    reads: 0,
    writes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    readModifyWrites: 0,
    syncs: 0,
    errors: 0,
    retries: 0,
    /** Commands that waited because queueDepth were already outstanding. */
    throttled: 0,
    writebackWrites: 0,
    writebackBytes: 0,
    writebackErrors: 0,
    writebackWindowWaits: 0,
    readaheadHits: 0,
    readaheadChunks: 0,
    readaheadDropped: 0,
  }

  // Host-side queue: at most queueDepth commands of this LUN at the HBA.
  readonly queueDepth: number
  private inflight = 0
  private readonly throttled: (() => void)[] = []
  private throttledHead = 0

  /** IOCB timeout in seconds. */
  readonly commandTimeout: number

  /** The partial last block of a buffered write run, answered but kept back (see startWriteBack). */
  private tail: { pos: number; buf: Buffer; len: number } | null = null
  private tailTimer: NodeJS.Timeout | null = null

  // Write-back: answered writes still on their way, by sequence number.
  readonly writebackWindow: number
  private wbSeq = 0
  private readonly wbInflight = new Map<number, number>()
  private wbBytes = 0
  private readonly wbWaiting: WaitingWrite[] = []
  private readonly drainWaiters: { target: number; cb: () => void }[] = []
  /** Bumped on every write-back failure; handles remember the value they have seen. */
  wbErrorSeq = 0
  wbErrno = 0

  /**
   * Set when the server stops: writes from then on are write-through, so a
   * write arriving after the last drain fails to its writer instead of being
   * answered and then lost with the HBA.
   */
  stopping = false

  /**
   * READ command latency in µs per 128 KiB: the median of the last READ_SAMPLES
   * measured (-1 until there are 3). A median, so that one slow READ (a cold
   * start, a busy machine) does not make a fast LUN look slow.
   */
  readLatencyUs = -1
  private readonly readSamples = new Float64Array(READ_SAMPLES)
  private readonly sorted = new Float64Array(READ_SAMPLES)
  private readCount = 0

  private sampleRead(us: number): void {
    this.readSamples[this.readCount++ % READ_SAMPLES] = us
    const n = Math.min(this.readCount, READ_SAMPLES)
    if (n < 3) return
    // Full (every READ after the fifth): sort in place, no view allocated per READ.
    const v = n === READ_SAMPLES ? this.sorted : this.sorted.subarray(0, n)
    v.set(n === READ_SAMPLES ? this.readSamples : this.readSamples.subarray(0, n))
    v.sort()
    this.readLatencyUs = v[n >> 1]
  }

  /**
   * Whether a 128 KiB READ takes at least `minUs` here: by the HBA's link model
   * (its rate, latency and command rate, as GET LINK STATISTICS reports them),
   * or, measured on READs nobody prefetched, by a clearly slow backend (a file
   * on a slow disk, a remote LUN: SLOW_READ_US or 4 × minUs, whichever is more).
   * Prefetch READs are not measured: they queue behind each other on purpose,
   * and counting that wait once made readahead switch itself on and off.
   */
  readsAreSlow(minUs: number): boolean {
    if (minUs <= 0) return true
    const l = this.driver.link
    if (l) {
      const modelled = (l.rate ? (131072 * 1e6) / l.rate : 0) + l.latencyNs / 1000 + (l.commandRate ? 1e6 / l.commandRate : 0)
      if (modelled >= minUs) return true
    }
    return this.readLatencyUs >= Math.max(SLOW_READ_US, 4 * minUs)
  }

  /** Readahead caches of open handles, told about every write. */
  readonly caches = new Set<ReadCache>()

  constructor(driver: HbaDriver, info: DeviceInfo, opts: Partial<BlockDeviceOptions> = {}) {
    const o = { ...DEFAULT_BLOCKDEV_OPTIONS, ...opts }
    this.driver = driver
    this.info = info
    this.blockSize = info.blockSize
    this.capacity = info.blocks * info.blockSize
    this.maxBlocks = Math.max(1, Math.floor(o.maxTransferBytes / info.blockSize))
    this.queueDepth = Math.max(1, o.queueDepth)
    this.writebackWindow = Math.max(0, o.writebackWindow)
    this.commandTimeout = o.commandTimeout
  }

  /** Answered writes not yet completed (a kept-back partial block counts as one). */
  get writebackPending(): number {
    return this.wbInflight.size + (this.tail !== null ? 1 : 0)
  }

  get writebackPendingBytes(): number {
    return this.wbBytes
  }

  /**
   * Hands a command to the driver, or queues it while queueDepth are outstanding.
   * Nothing goes out for a removed LUN, not even a command queued or retried from
   * before: by then its number may name another unit (a LUN added back).
   */
  private submit(req: Parameters<HbaDriver['submit']>[0], cb: (c: Completion) => void): void {
    if (!this.present) {
      process.nextTick(cb, GONE)
      return
    }
    if (this.inflight < this.queueDepth) {
      this.inflight++
      this.driver.submit(req, (c) => {
        this.inflight--
        if (this.throttledHead < this.throttled.length) this.release()
        cb(c)
      })
      return
    }
    this.stats.throttled++
    this.throttled.push(() => this.submit(req, cb))
  }

  private release(): void {
    const next = this.throttled[this.throttledHead]
    this.throttled[this.throttledHead++] = undefined as unknown as () => void
    if (this.throttledHead === this.throttled.length) {
      this.throttled.length = 0
      this.throttledHead = 0
    }
    next()
  }

  /** Sends one command, retrying what is worth retrying; cb(0 | -errno, completion). */
  command(
    op: string,
    cdb: Uint8Array,
    data: Buffer | null,
    direction: DataDirection,
    lba: number,
    blocks: number,
    cb: (errno: number, c: Completion) => void,
  ): void {
    if (!this.present) {
      process.nextTick(cb, Errno.ENXIO, GONE)
      return
    }
    let attempt = 0
    const req = { target: this.info.loopId, lun: this.info.lun, cdb, data, direction, timeout: this.commandTimeout }
    // Only data READs tell how slow reading is: not the scan's INQUIRY and friends, not prefetch READs (they queue on purpose).
    const t0 = op === 'READ' ? performance.now() : 0
    const onDone = (c: Completion): void => {
      const v = classify(c)
      if (v.kind === 'ok') {
        // How long a READ takes here: readahead pays off only when that is long.
        if (t0 !== 0) {
          // Per 128 KiB, so 512 KiB readahead READs and 128 KiB ones compare.
          const us = ((performance.now() - t0) * 1000 * 131072) / Math.max(131072, data ? data.length : 0)
          this.sampleRead(us)
        }
        return cb(0, c)
      }
      if (v.kind === 'retry' && attempt < RETRY_LIMIT) {
        attempt++
        this.stats.retries++
        // Unit attentions clear at once; BUSY and TASK SET FULL get a short backoff.
        if (v.reason === 'UNIT ATTENTION') this.submit(req, onDone)
        else setTimeout(() => this.submit(req, onDone), 1 << attempt)
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
    this.submit(req, onDone)
  }

  /**
   * Moves whole blocks [lba, lba + blocks) to or from `buf`, split into
   * commands of at most maxBlocks. Reports the bytes of the contiguous
   * successful prefix, or the first error when nothing moved.
   */
  transfer(op: Op, lba: number, blocks: number, buf: Buffer, cb: IoCallback, label: string = OP_LABEL[op]): void {
    const bs = this.blockSize
    const direction = op === 'read' ? DataDirection.In : DataDirection.Out
    if (blocks <= this.maxBlocks) {
      const cdb = Buffer.allocUnsafe(16)
      const n = encodeReadWrite(op, lba, blocks, cdb)
      this.command(label, cdb.subarray(0, n), buf, direction, lba, blocks, (errno, c) => {
        if (errno < 0) return cb(errno)
        this.account(op, c.transferred)
        cb(c.transferred)
      })
      return
    }
    const pieces = Math.ceil(blocks / this.maxBlocks)
    const results = new Array<number>(pieces)
    let left = pieces
    for (let i = 0; i < pieces; i++) {
      const start = i * this.maxBlocks
      const count = Math.min(this.maxBlocks, blocks - start)
      this.transfer(op, lba + start, count, buf.subarray(start * bs, (start + count) * bs), (r) => {
        results[i] = r
        if (--left > 0) return
        let total = 0
        for (let k = 0; k < pieces; k++) {
          const r = results[k]
          if (r < 0) return cb(total > 0 ? total : r)
          total += r
          if (r < this.maxBlocks * bs && k < pieces - 1) break // short piece: stop at the hole
        }
        cb(total)
      }, label)
    }
  }

  private account(op: Op, bytes: number): void {
    if (op === 'read') {
      this.stats.reads++
      this.stats.bytesRead += bytes
    } else {
      this.stats.writes++
      this.stats.bytesWritten += bytes
    }
  }

  /** pread semantics of a block device: 0 at or past the end, short across it. */
  read(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
    if (!this.present) return cb(Errno.ENXIO)
    const cap = this.capacity
    if (pos >= cap || len <= 0) return cb(0)
    if (len > cap - pos) len = cap - pos
    if (this.tail !== null) this.flushTailIfOverlapping(pos, pos + len)
    const bs = this.blockSize
    const head = pos % bs
    const first = (pos - head) / bs
    const last = Math.floor((pos + len - 1) / bs)
    const n = last - first + 1
    if (head === 0 && len % bs === 0) {
      this.readBlocks(first, n, buf.length === len ? buf : buf.subarray(0, len), this.wbInflight.size > 0, cb)
      return
    }
    const tmp = ioBuffers.get(n * bs)
    this.readBlocks(first, n, tmp, this.wbInflight.size > 0, (r) => {
      const got = r < 0 ? r : Math.min(len, r - head)
      if (got > 0) copyBytes(tmp, buf, 0, head, head + got)
      ioBuffers.put(tmp)
      cb(got < 0 ? got : got === 0 ? Errno.EIO : got)
    })
  }

  /**
   * Reads whole blocks. With `lock`, the read waits for writes in flight to
   * the same blocks (answered write-back writes, prefetches racing a write).
   */
  readBlocks(lba: number, blocks: number, buf: Buffer, lock: boolean, cb: IoCallback, label = OP_LABEL.read): void {
    if (this.tail !== null) this.flushTailIfOverlapping(lba * this.blockSize, (lba + blocks) * this.blockSize)
    // Only answered writes still in flight can race a read: without any, no lock is needed.
    if (!lock || this.wbInflight.size === 0) return this.transfer('read', lba, blocks, buf, cb, label)
    this.locks.acquire(lba, lba + blocks - 1, false, (release) => {
      this.transfer(
        'read',
        lba,
        blocks,
        buf,
        (r) => {
          release()
          cb(r)
        },
        label,
      )
    })
  }

  /** Tells every readahead cache that [start, end) bytes are being rewritten. */
  private invalidate(start: number, end: number): void {
    for (const c of this.caches) c.invalidate(start, end)
  }

  /**
   * A buffered write: the data is copied and the caller answered at once
   * while the WRITE goes on in the background, up to writebackWindow bytes
   * per LUN (then callers wait for room). A failure after the answer is
   * counted and reported by the next fsync/flush (wbErrorSeq).
   */
  writeBack(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
    // A unit that is gone takes no data: answering it would promise a write that cannot happen.
    if (!this.present) return cb(Errno.ENXIO)
    if (this.writebackWindow === 0 || this.stopping) return this.write(buf, len, pos, cb)
    if (len <= 0) return cb(0)
    const cap = this.capacity
    if (pos >= cap) return cb(Errno.ENOSPC)
    if (len > cap - pos) len = cap - pos
    if (this.wbWaiting.length > 0 || (this.wbBytes > 0 && this.wbBytes + len > this.writebackWindow)) {
      this.stats.writebackWindowWaits++
      this.wbWaiting.push({ buf, len, pos, cb })
      return
    }
    this.startWriteBack(buf, len, pos, cb)
  }

  /**
   * Answers a buffered write and sends it on. A write that ends inside a
   * block keeps that partial block back as the device's tail while the next
   * write continues exactly where it ended: a writer whose buffers are not
   * page-aligned (Python, fio by default) has its requests split by the
   * kernel at offsets that are not block multiples, and without the tail every
   * one of them would be a read-modify-write. The tail is sent as soon as
   * anything else touches the device (another write, a read of its block,
   * fsync, close, a drain) or after TAIL_MS.
   */
  private startWriteBack(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
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
    if (this.caches.size > 0) this.invalidate(pos, pos + len) // answered now: prefetched copies are stale now
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
    if (total - keep > 0) this.issueWriteBack(copy, total - keep, start)
    else ioBuffers.put(copy)
    cb(len)
  }

  private readonly tailTimeout = (): void => {
    this.tailTimer = null
    this.flushTail()
  }

  /** Sends the kept-back partial block (a read-modify-write of that block). */
  private flushTail(): void {
    const t = this.tail
    if (t === null) return
    this.tail = null
    if (this.tailTimer) clearTimeout(this.tailTimer)
    this.tailTimer = null
    this.issueWriteBack(t.buf, t.len, t.pos)
  }

  /** Sends the tail first when [start, end) touches its block. */
  private flushTailIfOverlapping(start: number, end: number): void {
    const t = this.tail
    if (t !== null && start < t.pos + this.blockSize && end > t.pos) this.flushTail()
  }

  /** A WRITE of answered data (`data` is ours, from the pool): counted in the window until it completes. */
  private issueWriteBack(data: Buffer, len: number, pos: number): void {
    const seq = ++this.wbSeq
    this.wbInflight.set(seq, len)
    this.wbBytes += len
    this.stats.writebackWrites++
    this.stats.writebackBytes += len
    this.write(data, len, pos, (r) => {
      ioBuffers.put(data)
      this.writeBackDone(seq, len, pos, r)
    })
  }

  private writeBackDone(seq: number, len: number, pos: number, r: number): void {
    this.wbInflight.delete(seq)
    this.wbBytes -= len
    if (r < len) this.writeBackFailed(r < 0 ? r : Errno.EIO)
    while (this.wbWaiting.length > 0) {
      const w = this.wbWaiting[0]
      if (this.wbBytes > 0 && this.wbBytes + w.len > this.writebackWindow) break
      this.wbWaiting.shift()
      this.startWriteBack(w.buf, w.len, w.pos, w.cb)
    }
    if (this.drainWaiters.length > 0) this.checkDrains()
  }

  /** Answered data did not reach the LUN: the next fsync/flush of every handle reports `errno`. */
  private writeBackFailed(errno: number): void {
    this.wbErrno = errno
    this.wbErrorSeq++
    this.stats.writebackErrors++
  }

  /**
   * The LUN is gone (hot-unplug): from now on every read, write and sync fails
   * with ENXIO and no command is sent for it (see submit). The host's write-back
   * state is released at once, as a removed disk's is:
   *   - the kept-back partial block was answered but cannot be written anywhere:
   *     it is dropped and counted as a write-back error (ENXIO), which the next
   *     fsync or close of each handle reports;
   *   - writes still waiting for window room were never answered: they get ENXIO,
   *     and so do commands queued behind the queue depth;
   *   - readahead chunks of open handles are dropped.
   * WRITEs already at the HBA end as the target answers them (a failure is
   * reported like the tail's), and free their buffers then.
   */
  remove(): void {
    if (!this.present) return
    this.present = false
    const t = this.tail
    if (t !== null) {
      this.tail = null
      if (this.tailTimer) clearTimeout(this.tailTimer)
      this.tailTimer = null
      ioBuffers.put(t.buf)
      this.writeBackFailed(Errno.ENXIO)
    }
    for (const w of this.wbWaiting.splice(0)) w.cb(Errno.ENXIO)
    // Commands queued behind the queue depth fail now rather than wait for completions that may never come.
    while (this.throttledHead < this.throttled.length) this.release()
    for (const c of this.caches) c.invalidate(0, this.capacity)
  }

  /** Calls cb once every write-back write answered before now has completed. */
  drain(cb: () => void): void {
    this.flushTail()
    const target = this.wbSeq
    if (this.oldestWriteBack() > target) return process.nextTick(cb)
    this.drainWaiters.push({ target, cb })
  }

  private oldestWriteBack(): number {
    for (const seq of this.wbInflight.keys()) return seq // insertion order = sequence order
    return Infinity
  }

  private checkDrains(): void {
    const oldest = this.oldestWriteBack()
    for (let i = 0; i < this.drainWaiters.length; ) {
      const w = this.drainWaiters[i]
      if (w.target < oldest) {
        this.drainWaiters.splice(i, 1)
        w.cb()
      } else i++
    }
  }

  /**
   * pwrite semantics of a block device: ENOSPC at or past the end, a short
   * count across it. Unaligned edges are read, merged and written back while
   * the blocks are held exclusively, so concurrent writers never lose bytes.
   */
  write(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
    if (!this.present) return cb(Errno.ENXIO)
    if (len <= 0) return cb(0)
    const cap = this.capacity
    if (pos >= cap) return cb(Errno.ENOSPC)
    if (len > cap - pos) len = cap - pos
    const bs = this.blockSize
    const head = pos % bs
    const tailEnd = (pos + len) % bs
    const first = (pos - head) / bs
    const last = Math.floor((pos + len - 1) / bs)
    const n = last - first + 1
    const data = buf.length === len ? buf : buf.subarray(0, len)
    if (this.tail !== null) this.flushTailIfOverlapping(pos, pos + len) // the older, answered bytes go first
    if (this.caches.size > 0) this.invalidate(pos, pos + len)

    // Writes hold their blocks exclusively: reads that must see them wait.
    if (head === 0 && tailEnd === 0) {
      this.locks.acquire(first, last, true, (release) => {
        this.transfer('write', first, n, data, (r) => {
          release()
          cb(r)
        })
      })
      return
    }

    this.locks.acquire(first, last, true, (release) => {
      this.stats.readModifyWrites++
      const tmp = ioBuffers.get(n * bs)
      const fail = (errno: number): void => {
        ioBuffers.put(tmp)
        release()
        cb(errno)
      }
      const merge = (): void => {
        copyBytes(data, tmp, head)
        this.transfer('write', first, n, tmp, (r) => {
          ioBuffers.put(tmp)
          release()
          if (r < 0) return cb(r)
          const wrote = Math.min(len, r - head)
          cb(wrote > 0 ? wrote : Errno.EIO)
        })
      }
      // Read what the new bytes do not cover: the whole range when it is at
      // most two blocks, else just the partial head and tail blocks.
      if (n <= 2) {
        this.transfer('read', first, n, tmp, (r) => (r < 0 ? fail(r) : r < n * bs ? fail(Errno.EIO) : merge()))
        return
      }
      let pending = (head !== 0 ? 1 : 0) + (tailEnd !== 0 ? 1 : 0)
      let failed = 0
      const edgeDone = (r: number): void => {
        if (r < 0) failed = failed || r
        else if (r < bs) failed = failed || Errno.EIO
        if (--pending > 0) return
        if (failed) fail(failed)
        else merge()
      }
      if (head !== 0) this.transfer('read', first, 1, tmp.subarray(0, bs), edgeDone)
      if (tailEnd !== 0) this.transfer('read', last, 1, tmp.subarray((n - 1) * bs), edgeDone)
    })
  }

  /** fsync: SYNCHRONIZE CACHE(10) over the whole LUN. */
  sync(cb: IoCallback): void {
    const cdb = Buffer.allocUnsafe(16)
    const n = encodeSyncCache10(0, 0, cdb)
    this.stats.syncs++
    this.command('SYNCHRONIZE CACHE', cdb.subarray(0, n), null, DataDirection.None, 0, 0, (errno) => cb(errno))
  }
}
