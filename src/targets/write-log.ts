/**
 * The write log of one logical unit (dm-log-writes style; the file format is
 * in write-log-format.ts, the replay in src/replay.ts). Two taps, each a
 * Backend wrapping a Backend, append to one file with one sequence:
 *
 *   Lun.backend ─▶ HostLogTap ─▶ LoggedWriteCache ─▶ MediumLogTap ─▶ the store
 *                  HOST records                      MEDIUM records
 *                  (what the unit was asked,         (what reached the medium:
 *                   in completion order)              destaging, flushes, the cut)
 *
 * Without a write cache there is only the host tap, over the store itself.
 *
 *   WRITE / DISCARD   appended when the call answers (FAILED when it failed), data copied
 *   FLUSH             host: `covers` is the newest seq when the flush was issued (what it
 *                     makes durable); a whole-unit flush that succeeds is flush mark 1, 2, …
 *                     and answers only once the log file holds every record up to it, so a
 *                     SYNCHRONIZE CACHE that returned GOOD is in the log even if fcfs is killed
 *   POWER_LOSS / POWER_ON   from the cache (the power-loss fault); the cycle counts them
 *
 * Records are written by one writer in append order, batched (writev). The
 * log holds at most `maxQueuedBytes` not yet written: past that, writes wait
 * for the file (the log slows the unit rather than grow without bound). If
 * the log file cannot be written (disk full), every later command of the unit
 * fails with an io error naming the log: a log with a hole replays wrong.
 */
import { open, type FileHandle } from 'node:fs/promises'
import type { Logger } from '../log.js'
import { andThen, isPromise, type Backend, type BackendError, type IoResult, type MaybeAsync } from './backend.js'
import { BackendFilter } from './filter.js'
import { lockFile, type FileLock } from './lock.js'
import { WriteCache, type KeepPolicy, type PowerLossReport, type WriteCacheOptions } from './write-cache.js'
import { encodeHeader, encodeRecord, HEADER_SIZE, KEEP_CODES, LogFlag, RECORD_HEADER_SIZE, RecordFlag, RecordType, Stream, type RecordTypeCode } from './write-log-format.js'

export const DEFAULT_LOG_QUEUE_BYTES = 64 * 1024 * 1024
/** Records per writev: Linux takes at most 1024 buffers (IOV_MAX). */
const MAX_BATCH = 1024

export interface WriteLogOptions {
  readonly path: string
  readonly blockSize: number
  /** The unit's size in bytes. */
  readonly capacity: number
  /** The unit's NAA name, 16 hex digits. */
  readonly naa: string
  /** The unit has a volatile write cache: medium records will follow. */
  readonly cache: boolean
  /** The store held no data when the log began. */
  readonly fresh: boolean
  readonly log?: Logger
  /** Bytes appended but not yet written that make writes wait (default 64 MiB). */
  readonly maxQueuedBytes?: number
}

interface Extra {
  readonly covers?: number
  readonly mark?: number
  readonly keep?: number
  readonly seed?: number
}

/** The log file and its writer. */
export class WriteLog {
  readonly path: string
  readonly blockSize: number
  readonly capacity: number
  /** The seq of the newest record appended. */
  seq = 0
  /** Flush marks so far. */
  marks = 0
  /** The power cycle host records belong to: one more from each power loss on. */
  hostCycle = 0
  /** The power cycle medium records belong to: one more once a cut is on the medium. */
  mediumCycle = 0
  private readonly fh: FileHandle
  private readonly lock: FileLock
  private readonly log?: Logger
  private readonly maxQueued: number
  private queue: Buffer[] = []
  private queuedBytes = 0
  /** File offset of the end of what was appended, and of what is written. */
  private appended = HEADER_SIZE
  private written = HEADER_SIZE
  private writing = false
  private failure: BackendError | null = null
  private waiters: { readonly upTo: number; readonly resolve: (r: IoResult) => void }[] = []
  private roomWaiters: ((r: IoResult) => void)[] = []
  private closed: Promise<void> | null = null

  private constructor(o: WriteLogOptions, fh: FileHandle, lock: FileLock) {
    this.path = o.path
    this.blockSize = o.blockSize
    this.capacity = o.capacity
    this.fh = fh
    this.lock = lock
    this.log = o.log
    this.maxQueued = o.maxQueuedBytes ?? DEFAULT_LOG_QUEUE_BYTES
  }

  /** Locks (`<path>.lock`, as backing files are), creates or truncates the file and writes its header. */
  static async open(o: WriteLogOptions): Promise<WriteLog> {
    const lock = await lockFile(o.path, o.log)
    let fh: FileHandle | undefined
    try {
      fh = await open(o.path, 'w', 0o644)
      const head = Buffer.alloc(HEADER_SIZE)
      encodeHeader({ flags: (o.cache ? LogFlag.CACHE : 0) | (o.fresh ? LogFlag.FRESH : 0), blockSize: o.blockSize, capacity: o.capacity, naa: o.naa, startedMs: Date.now() }, head, 0)
      await fh.write(head, 0, HEADER_SIZE, 0)
      return new WriteLog(o, fh, lock)
    } catch (e) {
      await fh?.close().catch(() => undefined)
      await lock.release()
      throw e
    }
  }

  /** Set once the file could not be written: every later command of the unit fails with it. */
  get failed(): BackendError | null {
    return this.failure
  }

  /** Appends one record (data copied); returns the file offset of its end. */
  append(type: RecordTypeCode, stream: 0 | 1, failed: boolean, offset: number, length: number, data?: Buffer, extra: Extra = {}): number {
    const n = data?.length ?? 0
    const buf = Buffer.allocUnsafe(RECORD_HEADER_SIZE + n)
    const bs = this.blockSize
    encodeRecord(
      {
        type,
        stream,
        flags: failed ? RecordFlag.FAILED : 0,
        keep: extra.keep ?? 0,
        seq: ++this.seq,
        lba: Math.floor(offset / bs),
        blocks: Math.ceil(length / bs),
        covers: extra.covers ?? 0,
        mark: extra.mark ?? 0,
        cycle: stream === Stream.HOST ? this.hostCycle : this.mediumCycle,
        seed: extra.seed ?? 0,
        dataLength: n,
      },
      buf,
      0,
    )
    if (data) data.copy(buf, RECORD_HEADER_SIZE)
    this.queue.push(buf)
    this.queuedBytes += buf.length
    this.appended += buf.length
    this.kick()
    return this.appended
  }

  /** Null once the file holds everything up to offset `upTo` (append's answer); the failure if it never will. */
  until(upTo: number): MaybeAsync<IoResult> {
    if (this.failure) return this.failure
    if (this.written >= upTo) return null
    return new Promise((resolve) => this.waiters.push({ upTo, resolve }))
  }

  /** Null while the queue is under its bound; else once it is. */
  room(): MaybeAsync<IoResult> {
    if (this.failure) return this.failure
    if (this.queuedBytes <= this.maxQueued) return null
    return new Promise((resolve) => this.roomWaiters.push(resolve))
  }

  /** The power fails (LoggedWriteCache): host records from here on belong to the next cycle. */
  powerLoss(keep: KeepPolicy, seed: number): void {
    this.append(RecordType.POWER_LOSS, Stream.MEDIUM, false, 0, 0, undefined, { keep: KEEP_CODES.indexOf(keep), seed })
    this.hostCycle++
  }

  /** The cut is on the medium: medium records from here on belong to the next cycle. */
  cutDone(): void {
    this.mediumCycle++
  }

  powerOn(): void {
    this.append(RecordType.POWER_ON, Stream.HOST, false, 0, 0)
  }

  /** Writes out what is queued, then closes the file and drops the lock. Never rejects. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      const r = this.until(this.appended)
      if (isPromise(r)) await r
      await this.fh.close().catch(() => undefined)
      await this.lock.release()
    })()
    return this.closed
  }

  private kick(): void {
    if (this.writing || this.queue.length === 0 || this.failure) return
    this.writing = true
    const batch = this.queue.length <= MAX_BATCH ? this.queue : this.queue.slice(0, MAX_BATCH)
    this.queue = this.queue.length <= MAX_BATCH ? [] : this.queue.slice(MAX_BATCH)
    let bytes = 0
    for (const b of batch) bytes += b.length
    writeAll(this.fh, batch, this.written).then(
      () => {
        this.written += bytes
        this.queuedBytes -= bytes
        this.writing = false
        this.wake()
        this.kick()
      },
      (err: Error) => {
        this.failure = { kind: 'io', message: `the write log ${this.path} could not be written: ${(err as NodeJS.ErrnoException).code ?? err.message}` }
        this.log?.error({ event: 'write_log_failed', path: this.path, error: err.message }, 'the write log could not be written; the unit fails every command from now on')
        this.writing = false
        this.wake()
      },
    )
  }

  private wake(): void {
    if (this.waiters.length > 0) {
      const still: typeof this.waiters = []
      for (const w of this.waiters) {
        if (this.failure) w.resolve(this.failure)
        else if (this.written >= w.upTo) w.resolve(null)
        else still.push(w)
      }
      this.waiters = still
    }
    if (this.roomWaiters.length > 0 && (this.failure || this.queuedBytes <= this.maxQueued)) {
      for (const r of this.roomWaiters.splice(0)) r(this.failure)
    }
  }
}

/** Every byte of `bufs` at `position`, however many writes it takes. */
async function writeAll(fh: FileHandle, bufs: Buffer[], position: number): Promise<void> {
  let rest = bufs
  let pos = position
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, pos)
    pos += bytesWritten
    let skip = bytesWritten
    let i = 0
    while (i < rest.length && skip >= rest[i].length) skip -= rest[i++].length
    rest = rest.slice(i)
    if (rest.length > 0 && skip > 0) rest[0] = rest[0].subarray(skip)
  }
}

/** Writes and discards, logged the same way on both streams; reads pass through. */
abstract class LogTap extends BackendFilter {
  constructor(
    inner: Backend,
    protected readonly wl: WriteLog,
    private readonly stream: 0 | 1,
  ) {
    super(inner)
  }

  override write(offset: number, src: Buffer): MaybeAsync<IoResult> {
    if (this.wl.failed) return this.wl.failed
    return andThen(this.inner.write(offset, src), (e) => {
      this.wl.append(RecordType.WRITE, this.stream, e !== null, offset, src.length, src)
      return e ?? this.wl.room()
    })
  }

  override unmap(offset: number, length: number): MaybeAsync<IoResult> {
    if (this.wl.failed) return this.wl.failed
    return andThen(this.inner.unmap(offset, length), (e) => {
      this.wl.append(RecordType.DISCARD, this.stream, e !== null, offset, length)
      return e
    })
  }

  /** The FLUSH record: `covers` and the mark for a host flush. */
  protected logFlush(offset: number | undefined, length: number | undefined, e: IoResult, host: { covers: number } | null): number {
    const from = offset ?? 0
    const len = length ?? this.size - from
    const mark = host && e === null && from === 0 && len >= this.size ? ++this.wl.marks : 0
    return this.wl.append(RecordType.FLUSH, this.stream, e !== null, from, len, undefined, host ? { covers: host.covers, mark } : {})
  }
}

/** Above the write cache (or the store, without one): the unit's commands as they completed. */
export class HostLogTap extends LogTap {
  constructor(inner: Backend, wl: WriteLog) {
    super(inner, wl, Stream.HOST)
  }

  override flush(offset?: number, length?: number): MaybeAsync<IoResult> {
    if (this.wl.failed) return this.wl.failed
    const covers = this.wl.seq
    return andThen(this.inner.flush(offset, length), (e) => {
      const end = this.logFlush(offset, length, e, { covers })
      return e ?? this.wl.until(end)
    })
  }

  override info(): Record<string, string | number> {
    return { ...super.info(), write_log: this.wl.path, write_log_seq: this.wl.seq, write_log_marks: this.wl.marks }
  }

  /** The cache (if any) writes back through the medium tap first; then the log is written out and closed. */
  override async close(): Promise<void> {
    await this.inner.close()
    await this.wl.close()
  }
}

/** Between the write cache and the store: what reached the medium, in that order. */
export class MediumLogTap extends LogTap {
  constructor(inner: Backend, wl: WriteLog) {
    super(inner, wl, Stream.MEDIUM)
  }

  override flush(offset?: number, length?: number): MaybeAsync<IoResult> {
    if (this.wl.failed) return this.wl.failed
    return andThen(this.inner.flush(offset, length), (e) => {
      this.logFlush(offset, length, e, null)
      return e
    })
  }
}

/** A WriteCache whose power events go to the log too: POWER_LOSS before the cut, the cycle after it, POWER_ON. */
export class LoggedWriteCache extends WriteCache {
  private readonly wl: WriteLog

  constructor(inner: Backend, opts: WriteCacheOptions, wl: WriteLog) {
    super(inner, opts)
    this.wl = wl
  }

  override powerLoss(keep: KeepPolicy, seed: number): MaybeAsync<PowerLossReport> {
    this.wl.powerLoss(keep, seed)
    const r = super.powerLoss(keep, seed)
    if (!isPromise(r)) {
      this.wl.cutDone()
      return r
    }
    return r.then((rep) => {
      this.wl.cutDone()
      return rep
    })
  }

  override powerOn(): void {
    super.powerOn()
    this.wl.powerOn()
  }
}
