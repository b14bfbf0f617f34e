/**
 * One logical unit as the file interface drives it: pread/pwrite semantics of
 * a block device on top of SCSI commands through the HBA driver. This class
 * holds the LUN's geometry, counters and caches and decides which path a
 * request takes; the parts each own one concern:
 *
 *   read / readBlocks ─────────────────────────────┐
 *   writeBack ─▶ WriteBack (writeback.ts) ─┐       │
 *   write ─────────────────────────────────┴─▶ ReadModifyWrite (rmw.ts)
 *                                                  │     (range lock, unaligned edges)
 *   sync ───────────────────────────────────▶ BlockCommands (commands.ts)
 *                                                  │     (READ/WRITE split, SYNC CACHE)
 *                                             Retrier (retry.ts) ── ReadLatency (latency.ts)
 *                                                  │     (retries, last error)
 *                                             Throttle (throttle.ts) ─▶ HBA driver
 *                                                        (queue depth; closed when the LUN is removed)
 *
 * Callbacks get a byte count (≥ 0) or a negative errno.
 */
import type { HbaDriver, Completion } from '../hba/driver.js'
import type { DataDirection } from '../scsi/types.js'
import { Errno } from './errno.js'
import { RangeLock } from './rangelock.js'
import { ioBuffers } from '../util/bufpool.js'
import { copyBytes } from '../util/bytes.js'
import type { IoCallback, ReadCache } from './io.js'
import { Throttle } from './throttle.js'
import { ReadLatency } from './latency.js'
import { Retrier, type LastError } from './retry.js'
import { BlockCommands, OP_LABEL, type Op } from './commands.js'
import { ReadModifyWrite } from './rmw.js'
import { WriteBack } from './writeback.js'

export type { IoCallback, ReadCache } from './io.js'
export type { LastError } from './retry.js'
export { PREFETCH_READ } from './commands.js'

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

export const DEFAULT_BLOCKDEV_OPTIONS: BlockDeviceOptions = {
  maxTransferBytes: 1024 * 1024,
  queueDepth: 64,
  writebackWindow: 16 * 1024 * 1024,
  commandTimeout: 30,
}

export class BlockDevice {
  readonly info: DeviceInfo
  readonly capacity: number
  readonly blockSize: number
  /** The HBA this LUN is reached through (each HBA has its own devices). */
  readonly driver: HbaDriver
  readonly locks = new RangeLock()

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

  /** Commands this host keeps outstanding for the LUN. */
  readonly queueDepth: number
  /** IOCB timeout in seconds. */
  readonly commandTimeout: number
  /** Bytes of answered-but-unwritten buffered writes; 0 = write-through only. */
  readonly writebackWindow: number

  /**
   * Set when the server stops: writes from then on are write-through, so a
   * write arriving after the last drain fails to its writer instead of being
   * answered and then lost with the HBA.
   */
  stopping = false

  /** Readahead caches of open handles, told about every write. */
  readonly caches = new Set<ReadCache>()

  private readonly throttle: Throttle
  private readonly latency = new ReadLatency()
  private readonly retrier: Retrier
  private readonly commands: BlockCommands
  private readonly rmw: ReadModifyWrite
  private readonly writeback: WriteBack

  constructor(driver: HbaDriver, info: DeviceInfo, opts: Partial<BlockDeviceOptions> = {}) {
    const o = { ...DEFAULT_BLOCKDEV_OPTIONS, ...opts }
    this.driver = driver
    this.info = info
    this.blockSize = info.blockSize
    this.capacity = info.blocks * info.blockSize
    this.queueDepth = Math.max(1, o.queueDepth)
    this.writebackWindow = Math.max(0, o.writebackWindow)
    this.commandTimeout = o.commandTimeout
    this.throttle = new Throttle(driver, this.queueDepth, this.stats)
    this.retrier = new Retrier(this.throttle, this.latency, info, this.commandTimeout, this.stats)
    this.commands = new BlockCommands(this.retrier, this.blockSize, Math.max(1, Math.floor(o.maxTransferBytes / info.blockSize)), this.stats)
    this.rmw = new ReadModifyWrite(this.commands, this.locks, this.stats)
    this.writeback = new WriteBack(this, this.caches, this.capacity, this.blockSize, this.writebackWindow, this.stats)
  }

  /** False once the LUN is gone (hot-unplug, see remove()): every I/O then fails with ENXIO. */
  get present(): boolean {
    return this.throttle.open
  }

  /** The last command that failed for good (the `sense` info file). */
  get lastError(): LastError | null {
    return this.retrier.lastError
  }

  /** READ latency in µs per 128 KiB, the median of the last few measured (-1 until there are 3): see ReadLatency. */
  get readLatencyUs(): number {
    return this.latency.us
  }

  /** Bumped on every write-back failure; handles remember the value they have seen. */
  get wbErrorSeq(): number {
    return this.writeback.errorSeq
  }

  get wbErrno(): number {
    return this.writeback.errno
  }

  /** Answered writes not yet completed (a kept-back partial block counts as one). */
  get writebackPending(): number {
    return this.writeback.pending
  }

  get writebackPendingBytes(): number {
    return this.writeback.pendingBytes
  }

  /**
   * Whether a 128 KiB READ takes at least `minUs` here: by the HBA's link model
   * (as GET LINK STATISTICS reports it) or by the READs measured (ReadLatency).
   */
  readsAreSlow(minUs: number): boolean {
    return this.latency.slowerThan(minUs, this.driver.link)
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
    this.retrier.send(op, cdb, data, direction, lba, blocks, cb)
  }

  /** Moves whole blocks [lba, lba + blocks) to or from `buf` (see BlockCommands.transfer). */
  transfer(op: Op, lba: number, blocks: number, buf: Buffer, cb: IoCallback, label: string = OP_LABEL[op]): void {
    this.commands.transfer(op, lba, blocks, buf, cb, label)
  }

  /** pread semantics of a block device: 0 at or past the end, short across it. */
  read(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
    if (!this.present) return cb(Errno.ENXIO)
    const cap = this.capacity
    if (pos >= cap || len <= 0) return cb(0)
    if (len > cap - pos) len = cap - pos
    if (this.writeback.hasTail) this.writeback.flushTailIfOverlapping(pos, pos + len)
    const bs = this.blockSize
    const head = pos % bs
    const first = (pos - head) / bs
    const last = Math.floor((pos + len - 1) / bs)
    const n = last - first + 1
    if (head === 0 && len % bs === 0) {
      this.readBlocks(first, n, buf.length === len ? buf : buf.subarray(0, len), this.writeback.writesInFlight > 0, cb)
      return
    }
    // Unaligned: read the whole blocks into a pooled buffer and copy out the bytes asked for.
    const tmp = ioBuffers.get(n * bs)
    this.readBlocks(first, n, tmp, this.writeback.writesInFlight > 0, (r) => {
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
    if (this.writeback.hasTail) this.writeback.flushTailIfOverlapping(lba * this.blockSize, (lba + blocks) * this.blockSize)
    // Only answered writes still in flight can race a read: without any, no lock is needed.
    if (!lock || this.writeback.writesInFlight === 0) return this.commands.transfer('read', lba, blocks, buf, cb, label)
    this.locks.acquire(lba, lba + blocks - 1, false, (release) => {
      this.commands.transfer(
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
   * A buffered write: copied and answered at once while the WRITE goes on in
   * the background, within writebackWindow (see WriteBack). Write-through when
   * there is no window or the server is stopping.
   */
  writeBack(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
    // A unit that is gone takes no data: answering it would promise a write that cannot happen.
    if (!this.present) return cb(Errno.ENXIO)
    if (this.writebackWindow === 0 || this.stopping) return this.write(buf, len, pos, cb)
    if (len <= 0) return cb(0)
    const cap = this.capacity
    if (pos >= cap) return cb(Errno.ENOSPC)
    if (len > cap - pos) len = cap - pos
    this.writeback.write(buf, len, pos, cb)
  }

  /**
   * pwrite semantics of a block device: ENOSPC at or past the end, a short
   * count across it. The blocks are written under the range lock, unaligned
   * edges by read-modify-write (see ReadModifyWrite).
   */
  write(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
    if (!this.present) return cb(Errno.ENXIO)
    if (len <= 0) return cb(0)
    const cap = this.capacity
    if (pos >= cap) return cb(Errno.ENOSPC)
    if (len > cap - pos) len = cap - pos
    const data = buf.length === len ? buf : buf.subarray(0, len)
    if (this.writeback.hasTail) this.writeback.flushTailIfOverlapping(pos, pos + len) // the older, answered bytes go first
    if (this.caches.size > 0) this.invalidate(pos, pos + len)
    this.rmw.write(data, len, pos, cb)
  }

  /** fsync: SYNCHRONIZE CACHE(10) over the whole LUN. */
  sync(cb: IoCallback): void {
    this.commands.sync(cb)
  }

  /** Calls cb once every write-back write answered before now has completed. */
  drain(cb: () => void): void {
    this.writeback.drain(cb)
  }

  /**
   * The LUN is gone (hot-unplug): from now on every read, write and sync fails
   * with ENXIO and no command is sent for it (see Throttle). The host's state
   * for it is released at once, as a removed disk's is:
   *   - the kept-back partial block is dropped and reported as a write-back
   *     error (ENXIO) by the next fsync or close of each handle; writes still
   *     waiting for window room get ENXIO (WriteBack.unplug);
   *   - commands queued behind the queue depth complete with ENXIO;
   *   - readahead chunks of open handles are dropped.
   * WRITEs already at the HBA end as the target answers them (a failure is
   * reported like the tail's), and free their buffers then.
   */
  remove(): void {
    if (!this.present) return
    this.throttle.close()
    this.writeback.unplug()
    this.throttle.failQueued()
    for (const c of this.caches) c.invalidate(0, this.capacity)
  }
}
