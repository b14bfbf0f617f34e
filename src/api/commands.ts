/**
 * IO and CDB requests become commands: each one is one HbaDriver.submit (the
 * callback form: no promise per command), so stats, the trace and fault
 * injection see it exactly as they see file I/O. Requests take a pooled
 * operation object (its CDB buffer, ScsiRequest and completion callback are
 * allocated once), so this path allocates no object per command.
 *
 * Inline data: a write's data is handed to the driver as a slice of the
 * chunk it arrived in (no copy); a read lands after the reply header in a
 * reply buffer (reused for small replies, which are copied into the staging
 * buffer).
 *
 * Data in a registered region (a file on tmpfs, e.g. /dev/shm, that the
 * client maps): Node cannot mmap without a native addon, so the server
 * moves the bytes with pread/pwrite on the file (synchronously below
 * ASYNC_COPY: tmpfs is memory, the call is a memcpy in the kernel and never
 * waits on a device or on FUSE). Copies per 640 KiB write: client stores
 * into its mapping (its own data, 0 extra), kernel copies region → server
 * buffer (1), target copies buffer → backend (the emulated DMA, same as
 * every path). Inline, the same write costs client → socket (1), socket →
 * server chunk (2), plus a reassembly copy when the message spans chunks
 * (3). Reads mirror that.
 */
import { read as fsRead, readSync, write as fsWrite, writeSync } from 'node:fs'
import type { Completion, HbaDriver, ScsiRequest } from '../hba/driver.js'
import { encodeReadWrite, encodeReadWrite16, type ReadWriteOptions } from '../scsi/cdb.js'
import { DataDirection } from '../scsi/types.js'
import { readU16LE, readU32LE } from '../util/le.js'
import { SMALL_REPLY, type Conn } from './conn.js'
import { CDB, CDB_SIZE, IO, IO_FLAGS_KNOWN, IO_REPLY_SIZE, IO_SIZE, IoFlags, MsgType, Status } from './protocol.js'
import { closeRegion, type ApiCounters, type ApiLun, type Region } from './types.js'

/** Region copies of at least this many bytes run on libuv's thread pool (a second core), smaller ones inline. */
const ASYNC_COPY = 64 * 1024
const U32 = 0x1_0000_0000
/**
 * Region buffers that pooled ops keep for reuse, server-wide: enough for 48
 * transfers of 640 KiB in flight (the seed's workload) with room to spare,
 * but a burst of big region transfers does not stay allocated after it.
 */
const POOLED_SHM_BYTES = 64 * 1024 * 1024
/** Ops kept in the pool. */
const POOL_OPS = 8192
/** encodeReadWrite's options for a FUA write (one object for every command). */
const FUA: ReadWriteOptions = { fua: true }
const IOF = IO.fields
const CDBF = CDB.fields

const enum Kind {
  None = 0,
  InlineWrite = 1,
  InlineRead = 2,
  ShmWrite = 3,
  ShmRead = 4,
}

/** One request in flight; pooled, so the hot path allocates no objects per command. */
class OpState {
  conn: Conn | null = null
  keyLo = 0
  keyHi = 0
  /** data bytes of this request, counted in its connection's inflightBytes */
  bytes = 0
  kind: Kind = Kind.None
  write = false
  lun: ApiLun | null = null
  /** The HBA the handle was opened through (OPEN's hba). */
  driver: HbaDriver | null = null
  start = 0
  region: Region | null = null
  offset = 0
  reply: Buffer | null = null
  shmBuf: Buffer | null = null
  /** Reused reply buffer for small inline reads (the reply is copied into the staging buffer). */
  smallReply: Buffer | null = null
  /** A Uint8Array, not a Buffer: the encoders' fill of a Buffer goes through Buffer#fill's argument checks (~100 ns a command). */
  readonly cdb = new Uint8Array(16)
  readonly views: Record<number, Uint8Array>
  readonly req: ScsiRequest
  readonly done: (c: Completion) => void

  constructor(commands: Commands) {
    this.views = { 6: this.cdb.subarray(0, 6), 10: this.cdb.subarray(0, 10), 12: this.cdb.subarray(0, 12), 16: this.cdb }
    this.req = { target: 0, lun: 0, cdb: this.cdb, data: null, direction: DataDirection.None, timeout: undefined }
    this.done = (c: Completion) => commands.complete(this, c)
  }

  /** A buffer for an inline READ reply of `n` bytes: reused when small (copied out at completion), fresh when big (handed to the socket). */
  replyBuffer(n: number): Buffer {
    if (n > SMALL_REPLY) return Buffer.allocUnsafe(n)
    this.smallReply ??= Buffer.allocUnsafeSlow(SMALL_REPLY)
    return this.smallReply.subarray(0, n)
  }

  /** A reusable buffer of `n` bytes for region transfers (kept while the op is pooled, within POOLED_SHM_BYTES). */
  shm(n: number): Buffer {
    if (!this.shmBuf || this.shmBuf.length < n) this.shmBuf = Buffer.allocUnsafeSlow(Math.max(n, 4096))
    return this.shmBuf.length === n ? this.shmBuf : this.shmBuf.subarray(0, n)
  }
}

export class Commands {
  /** requests in flight, server-wide */
  inflight = 0
  /** The server is closing: new requests are refused with SHUTTING_DOWN. */
  shuttingDown = false
  private readonly counters: ApiCounters
  private readonly maxTransfer: number
  private readonly pool: OpState[] = []
  /** bytes of the region buffers held by ops in the pool (at most POOLED_SHM_BYTES) */
  private pooledShm = 0

  /** Commands go to the HBA each handle was opened through (Handle.driver). */
  constructor(counters: ApiCounters, maxTransfer: number) {
    this.counters = counters
    this.maxTransfer = maxTransfer
  }

  private take(conn: Conn, kLo: number, kHi: number, bytes: number): OpState {
    const op = this.pool.pop() ?? new OpState(this)
    if (op.shmBuf !== null) this.pooledShm -= op.shmBuf.length
    op.conn = conn
    op.keyLo = kLo
    op.keyHi = kHi
    op.bytes = bytes
    conn.inflightBytes += bytes
    conn.inflight++
    if (++this.inflight > this.counters.peakInFlight) this.counters.peakInFlight = this.inflight
    this.counters.commands++
    return op
  }

  /** Answers a refused request: IO_ACK when it asked for ASYNC, else IO_REPLY. */
  private refuse(conn: Conn, flags: number, kLo: number, kHi: number, status: number): void {
    if (flags & IoFlags.ASYNC) conn.statusReply(MsgType.IO_ACK, kLo, kHi, status, 0)
    else conn.ioReply(kLo, kHi, status, null, 0)
  }

  /** An IO request: READ/WRITE(10 or 16) of blocks at lba. */
  io(conn: Conn, b: Buffer, at: number, mlen: number, kLo: number, kHi: number): void {
    const flags = readU32LE(b, at + IOF.flags.offset)
    if (this.shuttingDown) return this.refuse(conn, flags, kLo, kHi, Status.SHUTTING_DOWN)
    const h = conn.handle(readU32LE(b, at + IOF.handle.offset))
    if (h === undefined) return this.refuse(conn, flags, kLo, kHi, Status.BAD_HANDLE)
    if (h.lun.present === false) return this.refuse(conn, flags, kLo, kHi, Status.NO_TARGET)
    const dir = flags & (IoFlags.READ | IoFlags.WRITE)
    const where = flags & (IoFlags.INLINE | IoFlags.SHM)
    if (
      (flags & ~IO_FLAGS_KNOWN) !== 0 ||
      (dir !== IoFlags.READ && dir !== IoFlags.WRITE) ||
      (where !== IoFlags.INLINE && where !== IoFlags.SHM) ||
      (flags & (IoFlags.CDB10 | IoFlags.CDB16)) === (IoFlags.CDB10 | IoFlags.CDB16) ||
      (flags & IoFlags.FUA && dir !== IoFlags.WRITE)
    ) {
      return this.refuse(conn, flags, kLo, kHi, Status.BAD_FLAGS)
    }
    const write = dir === IoFlags.WRITE
    const lun = h.lun
    const bs = lun.blockSize
    const blocks = readU32LE(b, at + IOF.blocks.offset)
    const bytes = blocks * bs
    if (blocks === 0 || bytes > this.maxTransfer) return this.refuse(conn, flags, kLo, kHi, Status.BAD_BLOCKS)
    const lbaHi = readU32LE(b, at + IOF.lba.offset + 4)
    const lba = readU32LE(b, at + IOF.lba.offset) + lbaHi * U32
    if (lbaHi >= 0x200000 || (lba + blocks) * bs > lun.capacity) return this.refuse(conn, flags, kLo, kHi, Status.BAD_LBA)
    // A forced (10) must fit it; otherwise encodeReadWrite picks (10) when it fits, else (16).
    if (flags & IoFlags.CDB10) {
      if (lba + blocks > U32) return this.refuse(conn, flags, kLo, kHi, Status.BAD_LBA)
      if (blocks > 0xffff) return this.refuse(conn, flags, kLo, kHi, Status.BAD_BLOCKS)
    }

    let kind: Kind
    let region: Region | null = null
    let offset = 0
    if (where === IoFlags.INLINE) {
      if (mlen !== IO_SIZE + (write ? bytes : 0)) return this.refuse(conn, flags, kLo, kHi, Status.BAD_LENGTH)
      kind = write ? Kind.InlineWrite : Kind.InlineRead
    } else {
      if (mlen !== IO_SIZE) return this.refuse(conn, flags, kLo, kHi, Status.BAD_LENGTH)
      region = conn.regions.get(readU32LE(b, at + IOF.region.offset)) ?? null
      if (region === null) return this.refuse(conn, flags, kLo, kHi, Status.BAD_REGION)
      const oHi = readU32LE(b, at + IOF.offset.offset + 4)
      offset = readU32LE(b, at + IOF.offset.offset) + oHi * U32
      if (oHi >= 0x200000 || offset + bytes > region.size) return this.refuse(conn, flags, kLo, kHi, Status.BAD_RANGE)
      kind = write ? Kind.ShmWrite : Kind.ShmRead
    }

    const op = this.take(conn, kLo, kHi, bytes)
    op.kind = kind
    op.write = write
    op.lun = lun
    op.driver = h.driver
    op.start = lba * bs
    const rw = write ? 'write' : 'read'
    const fua = flags & IoFlags.FUA ? FUA : undefined
    const size = flags & IoFlags.CDB16 ? encodeReadWrite16(rw, lba, blocks, op.cdb, fua) : encodeReadWrite(rw, lba, blocks, op.cdb, fua)
    const req = op.req
    req.target = lun.info.loopId
    req.lun = lun.info.lun
    req.cdb = op.views[size]
    req.direction = write ? DataDirection.Out : DataDirection.In
    req.timeout = undefined
    if (kind === Kind.InlineWrite) {
      req.data = b.subarray(at + IO_SIZE, at + mlen)
      this.counters.inlineBytesIn += bytes
    } else if (kind === Kind.InlineRead) {
      op.reply = op.replyBuffer(IO_REPLY_SIZE + bytes)
      req.data = op.reply.subarray(IO_REPLY_SIZE)
    } else {
      req.data = op.shm(bytes)
      region!.refs++
      op.region = region
      op.offset = offset
    }
    if (write) invalidate(lun, op.start, op.start + bytes)
    if (flags & IoFlags.ASYNC) conn.statusReply(MsgType.IO_ACK, kLo, kHi, Status.OK, 0)
    if (kind === Kind.ShmWrite) this.fetch(op, bytes)
    else this.send(op, req)
  }

  /** To the HBA the op's LUN was opened through (OPEN's hba). */
  private send(op: OpState, req: ScsiRequest): void {
    op.driver!.submit(req, op.done)
  }

  /** Reads the data of a region WRITE into the op's buffer, then submits it. */
  private fetch(op: OpState, n: number): void {
    const r = op.region!
    const data = op.req.data!
    this.counters.shmBytesIn += n
    if (n < ASYNC_COPY) {
      const got = readSync(r.fd, data, 0, n, op.offset)
      if (got < n) data.fill(0, got)
      this.send(op, op.req)
      return
    }
    fsRead(r.fd, data, 0, n, op.offset, (err, got) => {
      if (err) return this.finish(op, Status.SHM_FAILED, null)
      if (got < n) data.fill(0, got)
      this.send(op, op.req)
    })
  }

  /** A raw CDB request. */
  cdb(conn: Conn, b: Buffer, at: number, mlen: number, kLo: number, kHi: number): void {
    const flags = readU32LE(b, at + CDBF.flags.offset)
    if (this.shuttingDown) return this.refuse(conn, flags, kLo, kHi, Status.SHUTTING_DOWN)
    const h = conn.handle(readU32LE(b, at + CDBF.handle.offset))
    if (h === undefined) return this.refuse(conn, flags, kLo, kHi, Status.BAD_HANDLE)
    if (h.lun.present === false) return this.refuse(conn, flags, kLo, kHi, Status.NO_TARGET)
    const allowed = IoFlags.READ | IoFlags.WRITE | IoFlags.ASYNC | IoFlags.INLINE | IoFlags.SHM
    const dir = flags & (IoFlags.READ | IoFlags.WRITE)
    const where = flags & (IoFlags.INLINE | IoFlags.SHM)
    const dataLength = readU32LE(b, at + CDBF.dataLength.offset)
    if ((flags & ~allowed) !== 0 || dir === (IoFlags.READ | IoFlags.WRITE) || where === (IoFlags.INLINE | IoFlags.SHM)) {
      return this.refuse(conn, flags, kLo, kHi, Status.BAD_FLAGS)
    }
    const n = b[at + CDBF.cdbLength.offset]
    if ((n !== 6 && n !== 10 && n !== 12 && n !== 16) || (dataLength > 0 && dir === 0)) return this.refuse(conn, flags, kLo, kHi, Status.BAD_CDB)
    if (b[at + CDBF.reserved.offset] !== 0 || readU32LE(b, at + CDBF.reserved2.offset) !== 0) return this.refuse(conn, flags, kLo, kHi, Status.BAD_MESSAGE)
    if (dataLength > this.maxTransfer) return this.refuse(conn, flags, kLo, kHi, Status.BAD_BLOCKS)
    const write = dir === IoFlags.WRITE
    const hasData = dataLength > 0
    if (hasData && where === 0) return this.refuse(conn, flags, kLo, kHi, Status.BAD_FLAGS)
    let kind = Kind.None
    let region: Region | null = null
    let offset = 0
    if (!hasData || where === IoFlags.INLINE) {
      if (mlen !== CDB_SIZE + (hasData && write ? dataLength : 0)) return this.refuse(conn, flags, kLo, kHi, Status.BAD_LENGTH)
      if (hasData) kind = write ? Kind.InlineWrite : Kind.InlineRead
    } else {
      if (mlen !== CDB_SIZE) return this.refuse(conn, flags, kLo, kHi, Status.BAD_LENGTH)
      region = conn.regions.get(readU32LE(b, at + CDBF.region.offset)) ?? null
      if (region === null) return this.refuse(conn, flags, kLo, kHi, Status.BAD_REGION)
      const oHi = readU32LE(b, at + CDBF.offset.offset + 4)
      offset = readU32LE(b, at + CDBF.offset.offset) + oHi * U32
      if (oHi >= 0x200000 || offset + dataLength > region.size) return this.refuse(conn, flags, kLo, kHi, Status.BAD_RANGE)
      kind = write ? Kind.ShmWrite : Kind.ShmRead
    }
    const op = this.take(conn, kLo, kHi, dataLength)
    op.kind = kind
    op.write = write && hasData
    op.lun = h.lun
    op.driver = h.driver
    op.start = -1
    const cdbBytes = op.cdb
    for (let i = 0, from = at + CDBF.cdb.offset; i < n; i++) cdbBytes[i] = b[from + i]
    const req = op.req
    req.target = h.lun.info.loopId
    req.lun = h.lun.info.lun
    req.cdb = op.views[n]
    req.direction = !hasData ? DataDirection.None : write ? DataDirection.Out : DataDirection.In
    const t = readU16LE(b, at + CDBF.timeout.offset)
    req.timeout = t === 0 ? undefined : t
    req.data = null
    if (kind === Kind.InlineWrite) {
      req.data = b.subarray(at + CDB_SIZE, at + mlen)
      this.counters.inlineBytesIn += dataLength
    } else if (kind === Kind.InlineRead) {
      op.reply = op.replyBuffer(IO_REPLY_SIZE + dataLength)
      req.data = op.reply.subarray(IO_REPLY_SIZE)
    } else if (kind === Kind.ShmWrite || kind === Kind.ShmRead) {
      req.data = op.shm(dataLength)
      region!.refs++
      op.region = region
      op.offset = offset
    }
    if (op.write && h.lun.caches && h.lun.caches.size > 0) invalidate(h.lun, 0, h.lun.capacity)
    if (flags & IoFlags.ASYNC) conn.statusReply(MsgType.IO_ACK, kLo, kHi, Status.OK, 0)
    if (kind === Kind.ShmWrite) this.fetch(op, dataLength)
    else this.send(op, req)
  }

  /** The driver's completion callback (via OpState.done): region reads are copied out first. */
  complete(op: OpState, c: Completion): void {
    const region = op.region
    if (op.kind === Kind.ShmRead && region !== null && !region.closed && c.transferred > 0 && !op.conn!.closed) {
      const data = op.req.data!
      const n = Math.min(c.transferred, data.length)
      this.counters.shmBytesOut += n
      if (n >= ASYNC_COPY) {
        fsWrite(region.fd, data, 0, n, op.offset, (err) => this.finish(op, err ? Status.SHM_FAILED : Status.OK, c))
        return
      }
      writeSync(region.fd, data, 0, n, op.offset)
    }
    this.finish(op, Status.OK, c)
  }

  /** Answers an op (status OK with its completion, or a failure) and returns it to the pool. */
  private finish(op: OpState, status: number, c: Completion | null): void {
    const conn = op.conn!
    const region = op.region
    this.inflight--
    conn.inflight--
    conn.inflightBytes -= op.bytes
    if (op.write && op.start >= 0) invalidate(op.lun!, op.start, op.start + (op.req.data ? op.req.data.length : 0))
    if (!conn.closed) {
      if (op.kind === Kind.InlineRead && c !== null) {
        const inline = Math.min(c.transferred, op.reply!.length - IO_REPLY_SIZE)
        this.counters.inlineBytesOut += inline
        conn.ioReply(op.keyLo, op.keyHi, status, c, inline, op.reply)
      } else {
        conn.ioReply(op.keyLo, op.keyHi, status, c, 0)
      }
      conn.maybeResume()
    }
    if (region !== null && --region.refs === 0 && region.closed && region.fd >= 0) closeRegion(region)
    op.conn = null
    op.region = null
    op.reply = null
    op.lun = null
    op.driver = null
    op.req.data = null
    if (this.pool.length < POOL_OPS) {
      const shm = op.shmBuf
      if (shm !== null) {
        if (this.pooledShm + shm.length > POOLED_SHM_BYTES) op.shmBuf = null
        else this.pooledShm += shm.length
      }
      this.pool.push(op)
    }
  }
}

/** Tells the file interface's readahead caches about a write, so rwbuf readers never see stale data. */
function invalidate(lun: ApiLun, start: number, end: number): void {
  const caches = lun.caches
  if (caches !== undefined && caches.size > 0) for (const c of caches) c.invalidate(start, end)
}
