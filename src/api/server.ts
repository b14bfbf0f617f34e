/**
 * The request/reply API server: a Unix-domain stream socket, owner-only
 * (0600), speaking the protocol of ./protocol.ts. Every IO/CDB request
 * becomes one command through HbaDriver.submit (the callback form: no promise
 * per command), so stats, the trace and fault injection see it exactly as
 * they see file I/O.
 *
 * Hot path, per connection: the socket's chunks are parsed in place (an
 * inline write's data is handed to the driver as a slice of the chunk it
 * arrived in, no copy); requests take a pooled operation object (its CDB
 * buffer, ScsiRequest and completion callback are allocated once); replies
 * are packed into a staging buffer and written once per event-loop turn
 * (several buffers go out corked, as one writev). A connection with
 * `maxInFlight` requests or `maxInFlightBytes` of data outstanding, or whose
 * socket is full, is not read from until that changes (back-pressure, never
 * unbounded memory): the check is per message, so one 64 KiB chunk of
 * 48-byte READs cannot put 1,365 transfers in flight at once; the rest of
 * the chunk waits.
 *
 * Data in a registered region (a file on tmpfs, e.g. /dev/shm, that the
 * client maps): Node cannot mmap without a native addon, so the server
 * moves the bytes with pread/pwrite on the file (synchronously: tmpfs is
 * memory, the call is a memcpy in the kernel and never waits on a device or
 * on FUSE — REGISTER_SHM refuses anything that is not a regular file on
 * tmpfs, which also rules out the fcfs mount itself). Copies per 640 KiB
 * write: client stores into its mapping (its own data, 0 extra), kernel
 * copies region → server buffer (1), target copies buffer → backend (the
 * emulated DMA, same as every path). Inline, the same write costs client
 * → socket (1), socket → server chunk (2), plus a reassembly copy when the
 * message spans chunks (3). Reads mirror that.
 */
import { Staging } from './staging.js'
import { createServer, connect, type Server as NetServer, type Socket } from 'node:net'
import { constants as fsc, promises as fsp, read as fsRead, readSync, write as fsWrite, writeSync, unlinkSync, lstatSync, mkdirSync, chmodSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import type { Logger } from '../log.js'
import type { Completion, HbaDriver, ScsiRequest } from '../hba/driver.js'
import { DataDirection } from '../scsi/types.js'
import { Op as ScsiOp, RwFlags } from '../scsi/cdb.js'
import { classify, senseTriple } from '../fs/errno.js'
import { FcfsError } from '../errors.js'
import {
  CDB,
  CDB_SIZE,
  CLOSE,
  CLOSE_SIZE,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_TRANSFER,
  HEADER,
  HEADER_SIZE,
  HELLO_SIZE,
  IO,
  IO_FLAGS_KNOWN,
  IO_REPLY,
  IO_REPLY_SIZE,
  IO_SIZE,
  IoFlags,
  MAGIC,
  MsgType,
  NOP_SIZE,
  OPEN,
  OPEN_SIZE,
  REGISTER_SHM_SIZE,
  ReplyFlags,
  STATUS_REPLY,
  STATUS_REPLY_SIZE,
  Status,
  VERSION,
  decodeRegisterShm,
  encodeHello,
  encodeOpenReply,
} from './protocol.js'

/** What the API needs of a LUN (BlockDevice fits). */
export interface ApiLun {
  readonly info: { readonly wwpn: string; readonly lun: number; readonly loopId: number }
  readonly blockSize: number
  readonly capacity: number
  /** False once the LUN was hot-removed: requests on its handles get NO_TARGET. */
  readonly present?: boolean
  /** Readahead caches of the file interface: told about every write so rwbuf readers never see stale data. */
  readonly caches?: ReadonlySet<{ invalidate(start: number, end: number): void }>
}

export interface ApiServerOptions {
  /** Socket path. */
  path: string
  driver: HbaDriver
  luns: readonly ApiLun[]
  log: Logger
  /** Largest data of one request, bytes (default 16 MiB). */
  maxTransfer?: number
  /** Requests in flight per connection before the server stops reading it (default 4096). */
  maxInFlight?: number
  /** Data bytes (inline or region) of the requests in flight per connection before the server stops reading it (default 256 MiB). */
  maxInFlightBytes?: number
  /** After a message that breaks framing: how long the ERROR reply may wait for a peer that does not read before the connection is destroyed anyway, ms (default 1000). */
  closeGraceMs?: number
}

const MAX_HANDLES = 1024
const MAX_REGIONS = 256
const TMPFS_MAGIC = 0x01021994
/** Region copies of at least this many bytes run on libuv's thread pool (a second core), smaller ones inline. */
const ASYNC_COPY = 64 * 1024
/** Inline READ replies up to this size (header included) are copied into the staging buffer, bigger ones go out as they are. */
const SMALL_REPLY = 16 * 1024 + 64
const U32 = 0x1_0000_0000
/**
 * Region buffers that pooled ops keep for reuse, server-wide: enough for 48
 * transfers of 640 KiB in flight (the seed's workload) with room to spare,
 * but a burst of big region transfers does not stay allocated after it.
 */
const POOLED_SHM_BYTES = 64 * 1024 * 1024
/** Ops kept in the pool. */
const POOL_OPS = 8192
/** See ApiServerOptions.maxInFlightBytes: 16 transfers of 16 MiB, or 400 of 640 KiB. */
const DEFAULT_MAX_IN_FLIGHT_BYTES = 256 * 1024 * 1024
/** See ApiServerOptions.closeGraceMs. */
const CLOSE_GRACE_MS = 1000
/**
 * A message split across chunks is gathered in a buffer sized by what has
 * arrived, not by what the header claims: ACC_GROW times the bytes in hand
 * (at least ACC_MIN), or the whole message once that is within ACC_WHOLE
 * times it. So a 16-byte header cannot make the server hold max_transfer
 * bytes (it holds at most ACC_GROW × ACC_WHOLE × what arrived), and growing
 * copies less than 1/ACC_WHOLE of a message again: a 640 KiB inline write
 * arriving in 64 KiB chunks is allocated whole at its first chunk unless
 * fewer than 5 KiB of it were in that chunk, and then only those are copied.
 */
const ACC_MIN = 4096
const ACC_GROW = 16
const ACC_WHOLE = 8

export class ApiError extends FcfsError {
  constructor(message: string) {
    super('FCFS_API', message)
  }
}

interface Handle {
  value: number
  lun: ApiLun
}

interface Region {
  id: number
  fh: fsp.FileHandle
  fd: number
  size: number
  path: string
  refs: number
  closed: boolean
}

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
  start = 0
  region: Region | null = null
  offset = 0
  reply: Buffer | null = null
  shmBuf: Buffer | null = null
  /** Reused reply buffer for small inline reads (the reply is copied into the staging buffer). */
  smallReply: Buffer | null = null
  readonly cdb = Buffer.alloc(16)
  readonly views: Record<number, Buffer>
  readonly req: ScsiRequest
  readonly done: (c: Completion) => void

  constructor(server: ApiServer) {
    this.views = { 6: this.cdb.subarray(0, 6), 10: this.cdb.subarray(0, 10), 12: this.cdb.subarray(0, 12), 16: this.cdb }
    this.req = { target: 0, lun: 0, cdb: this.cdb, data: null, direction: DataDirection.None, timeout: undefined }
    this.done = (c: Completion) => server.complete(this, c)
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

export interface ApiCounters {
  connections: number
  connectionsTotal: number
  requests: number
  commands: number
  nops: number
  rejected: number
  malformed: number
  inlineBytesIn: number
  inlineBytesOut: number
  shmBytesIn: number
  shmBytesOut: number
  peakInFlight: number
  /** socket writes (one per event-loop turn with replies, at most) */
  socketWrites: number
}

class Conn {
  readonly id: number
  readonly sock: Socket
  private readonly server: ApiServer
  readonly handles: (Handle | undefined)[] = [undefined]
  private handleGen = 0
  readonly regions = new Map<number, Region>()
  private nextRegion = 1
  /** REGISTER_SHM requests between their check and their answer */
  private registering = 0
  inflight = 0
  inflightBytes = 0
  closed = false
  private paused = false
  private blocked = false
  /** the stream could not be framed: the ERROR is going out, input is no longer read */
  private ending = false
  private graceTimer: NodeJS.Timeout | null = null
  private readonly destroyFn = () => this.sock.destroy()

  // input: a message (or a header) split across chunks is gathered here
  private acc: Buffer | null = null
  private accLen = 0
  private accNeed = 0
  /** `acc` holds a header whose message length is not checked yet */
  private accHeader = false
  /** the rest of a chunk not parsed yet because the connection had as much in flight as it may */
  private held: Buffer | null = null
  private heldAt = 0

  // output
  readonly out = new Staging()
  private flushScheduled = false
  private readonly flushFn = () => this.flush()

  constructor(server: ApiServer, id: number, sock: Socket) {
    this.server = server
    this.id = id
    this.sock = sock
    sock.on('data', (chunk: Buffer) => this.onData(chunk))
    sock.on('drain', () => {
      this.blocked = false
      this.maybeResume()
    })
    sock.on('error', () => undefined)
    sock.on('close', () => this.onClose())
  }

  // ---- input ----

  private onData(chunk: Buffer): void {
    if (this.ending) return // dropped: nothing after an unframeable message means anything
    this.parse(chunk, 0)
  }

  /** Frames and dispatches chunk[pos..]; keeps the rest and stops reading when the connection has all it may in flight. */
  private parse(chunk: Buffer, pos: number): void {
    const len = chunk.length
    const s = this.server
    if (this.acc !== null) {
      pos = this.fill(chunk, pos)
      if (this.acc !== null || this.closed || this.ending) return
    }
    while (pos < len && !this.ending) {
      if (this.inflight >= s.maxInFlight || this.inflightBytes >= s.maxInFlightBytes) {
        this.held = chunk
        this.heldAt = pos
        this.pause()
        return
      }
      const avail = len - pos
      if (avail < HEADER_SIZE) return this.gather(chunk, pos, HEADER_SIZE, true)
      const mlen = this.checkHeader(chunk, pos)
      if (mlen < 0) return
      if (avail < mlen) return this.gather(chunk, pos, mlen, false)
      this.dispatch(chunk, pos, mlen)
      pos += mlen
    }
    if (this.inflight >= s.maxInFlight || this.inflightBytes >= s.maxInFlightBytes) this.pause()
  }

  /** Starts gathering a message (or a header) of `need` bytes from chunk[pos..]. */
  private gather(chunk: Buffer, pos: number, need: number, header: boolean): void {
    this.acc = Buffer.allocUnsafe(accCapacity(need, chunk.length - pos))
    this.accNeed = need
    this.accLen = 0
    this.accHeader = header
    this.fill(chunk, pos)
  }

  /** Copies from chunk[pos..] into the accumulator; dispatches it when complete. Returns the new pos. */
  private fill(chunk: Buffer, pos: number): number {
    let acc = this.acc!
    const n = Math.min(this.accNeed - this.accLen, chunk.length - pos)
    if (this.accLen + n > acc.length) {
      const bigger = Buffer.allocUnsafe(accCapacity(this.accNeed, this.accLen + n))
      acc.copy(bigger, 0, 0, this.accLen)
      this.acc = acc = bigger
    }
    chunk.copy(acc, this.accLen, pos, pos + n)
    this.accLen += n
    pos += n
    if (this.accLen < this.accNeed) return pos
    if (this.accHeader) {
      this.accHeader = false
      const mlen = this.checkHeader(acc, 0)
      if (mlen < 0) {
        this.acc = null
        return chunk.length
      }
      if (mlen > HEADER_SIZE) {
        this.accNeed = mlen
        return this.fill(chunk, pos)
      }
    }
    this.acc = null
    this.dispatch(acc, 0, this.accNeed)
    return pos
  }

  /** The message length, or -1 after answering ERROR and closing (the stream cannot be framed any more). */
  private checkHeader(b: Buffer, at: number): number {
    const magic = b[at] | (b[at + 1] << 8)
    let status: number = Status.OK
    const mlen = r32(b, at + HEADER.fields.length.offset)
    if (magic !== MAGIC) status = Status.BAD_MAGIC
    else if (b[at + HEADER.fields.version.offset] !== VERSION) status = Status.BAD_VERSION
    else if (mlen < HEADER_SIZE || mlen > this.server.maxMessage) status = Status.BAD_LENGTH
    if (status === Status.OK) return mlen
    this.server.counters.malformed++
    this.statusReply(MsgType.ERROR, r32(b, at + 8), r32(b, at + 12), status, b[at + HEADER.fields.type.offset])
    this.server.log.warn({ event: 'api_malformed', conn: this.id, status }, 'API: malformed message; closing the connection')
    this.end()
    return -1
  }

  private dispatch(b: Buffer, at: number, mlen: number): void {
    const type = b[at + HEADER.fields.type.offset]
    const kLo = r32(b, at + 8)
    const kHi = r32(b, at + 12)
    const s = this.server
    s.counters.requests++
    switch (type) {
      case MsgType.IO:
        if (mlen < IO_SIZE) return this.malformed(type, kLo, kHi)
        return s.io(this, b, at, mlen, kLo, kHi)
      case MsgType.NOP:
        if (mlen !== NOP_SIZE) return this.malformed(type, kLo, kHi)
        s.counters.nops++
        return this.ioReply(kLo, kHi, Status.OK, null, 0)
      case MsgType.CDB:
        if (mlen < CDB_SIZE) return this.malformed(type, kLo, kHi)
        return s.cdb(this, b, at, mlen, kLo, kHi)
      case MsgType.OPEN:
        if (mlen !== OPEN_SIZE) return this.malformed(type, kLo, kHi)
        return this.open(b, at, kLo, kHi)
      case MsgType.CLOSE:
        if (mlen !== CLOSE_SIZE) return this.malformed(type, kLo, kHi)
        return this.close(b, at, kLo, kHi)
      case MsgType.REGISTER_SHM:
        if (mlen !== REGISTER_SHM_SIZE) return this.malformed(type, kLo, kHi)
        void this.register(b.subarray(at, at + mlen), kLo, kHi)
        return
      case MsgType.UNREGISTER_SHM:
        if (mlen !== CLOSE_SIZE) return this.malformed(type, kLo, kHi)
        return this.unregister(b, at, kLo, kHi)
      default:
        s.counters.malformed++
        this.statusReply(MsgType.ERROR, kLo, kHi, Status.BAD_TYPE, type)
    }
  }

  private malformed(type: number, kLo: number, kHi: number): void {
    this.server.counters.malformed++
    this.statusReply(MsgType.ERROR, kLo, kHi, Status.BAD_LENGTH, type)
  }

  // ---- handles and regions ----

  handle(value: number): Handle | undefined {
    const h = this.handles[value & 0xffff]
    return h !== undefined && h.value === value ? h : undefined
  }

  private open(b: Buffer, at: number, kLo: number, kHi: number): void {
    const reply = (status: number, handle = 0, lun?: ApiLun) => {
      const out = this.reserve(40)
      encodeOpenReply(
        { key: 0n, status, handle, blockSize: lun?.blockSize ?? 0, blocks: lun ? Math.floor(lun.capacity / lun.blockSize) : 0 },
        out.buf,
        out.at,
      )
      out.buf.writeUInt32LE(kLo, out.at + 8)
      out.buf.writeUInt32LE(kHi, out.at + 12)
    }
    if (b.readUInt32LE(at + OPEN.fields.flags.offset) !== 0) return reply(Status.BAD_MESSAGE)
    const wwpn = hex8(b.readUInt32LE(at + OPEN.fields.wwpn.offset + 4)) + hex8(b.readUInt32LE(at + OPEN.fields.wwpn.offset))
    const lunNo = b.readUInt32LE(at + OPEN.fields.lun.offset)
    const lun = this.server.luns.find((l) => l.info.wwpn === wwpn && l.info.lun === lunNo && l.present !== false)
    if (!lun) return reply(Status.NO_TARGET)
    let idx = this.handles.indexOf(undefined, 1)
    if (idx < 0) {
      if (this.handles.length >= MAX_HANDLES) return reply(Status.LIMIT)
      idx = this.handles.length
      this.handles.push(undefined)
    }
    this.handleGen = (this.handleGen % 0xffff) + 1
    const value = ((this.handleGen << 16) | idx) >>> 0
    this.handles[idx] = { value, lun }
    reply(Status.OK, value, lun)
  }

  private close(b: Buffer, at: number, kLo: number, kHi: number): void {
    const value = b.readUInt32LE(at + CLOSE.fields.handle.offset)
    const h = this.handle(value)
    if (h) this.handles[value & 0xffff] = undefined
    this.statusReply(MsgType.CLOSE_REPLY, kLo, kHi, h ? Status.OK : Status.BAD_HANDLE, value)
  }

  private async register(msg: Buffer, kLo: number, kHi: number): Promise<void> {
    const m = decodeRegisterShm(msg)
    const answer = (status: number, id = 0, why?: string) => {
      if (why) this.server.log.info({ event: 'api_shm_refused', conn: this.id, path: m.path, reason: why }, 'API: region refused')
      this.statusReply(MsgType.REGISTER_REPLY, kLo, kHi, status, id)
    }
    if (m.flags !== 0 || m.path === null) return answer(Status.BAD_MESSAGE)
    if (!m.path.startsWith('/')) return answer(Status.SHM_FAILED, 0, 'path is not absolute')
    // Registrations still opening count too: a burst of REGISTER_SHM must not open more than MAX_REGIONS files.
    if (this.regions.size + this.registering >= MAX_REGIONS) return answer(Status.LIMIT)
    this.registering++
    let fh: fsp.FileHandle | undefined
    try {
      fh = await fsp.open(m.path, fsc.O_RDWR | fsc.O_NOFOLLOW)
      const st = await fh.stat()
      if (!st.isFile()) throw new Error('not a regular file')
      const sfs = await fsp.statfs(m.path)
      if (sfs.type !== TMPFS_MAGIC) throw new Error(`not on tmpfs (filesystem type 0x${sfs.type.toString(16)}); use /dev/shm`)
      if (m.size <= 0 || st.size < m.size) throw new Error(`file has ${st.size} bytes, region asks for ${m.size}`)
    } catch (err) {
      await fh?.close().catch(() => undefined)
      return answer(Status.SHM_FAILED, 0, (err as Error).message)
    } finally {
      this.registering--
    }
    if (this.closed) {
      await fh.close().catch(() => undefined)
      return
    }
    const id = this.nextRegion++
    this.regions.set(id, { id, fh, fd: fh.fd, size: m.size, path: m.path, refs: 0, closed: false })
    answer(Status.OK, id)
  }

  private unregister(b: Buffer, at: number, kLo: number, kHi: number): void {
    const id = b.readUInt32LE(at + CLOSE.fields.handle.offset)
    const r = this.regions.get(id)
    if (r) {
      this.regions.delete(id)
      r.closed = true
      if (r.refs === 0) closeRegion(r)
    }
    this.statusReply(MsgType.UNREGISTER_REPLY, kLo, kHi, r ? Status.OK : Status.BAD_REGION, id)
  }

  // ---- output ----

  /** Room for `n` bytes of reply in the staging buffer. */
  reserve(n: number): { buf: Buffer; at: number } {
    const at = this.reserveAt(n)
    return { buf: this.out.buf, at }
  }

  /** The hot-path form of reserve: the offset in `this.out.buf` (no object per reply). */
  reserveAt(n: number): number {
    const at = this.out.reserveAt(n)
    if (!this.flushScheduled) this.schedule()
    return at
  }

  /** Queues a whole buffer (a reply with inline data) after what is staged. */
  push(buf: Buffer): void {
    this.out.push(buf)
    this.schedule()
  }

  private schedule(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(this.flushFn)
    }
  }

  flush(): void {
    this.flushScheduled = false
    this.out.seal()
    if (this.closed || this.sock.writableEnded) {
      this.out.queue.length = 0
      return
    }
    if (this.out.queue.length > 0) {
      this.server.counters.socketWrites++
      if (!this.out.writeTo(this.sock)) {
        this.blocked = true
        this.pause()
      }
    }
    // Ending: once the ERROR (and what was queued before it) is in the kernel, the peer can read it
    // after we are gone; destroy then (or when the grace timer fires, if the peer never takes it).
    if (this.ending) this.sock.end(this.destroyFn)
  }

  statusReply(type: number, kLo: number, kHi: number, status: number, detail: number): void {
    const at = this.reserveAt(STATUS_REPLY_SIZE)
    const buf = this.out.buf
    w16(buf, at, MAGIC)
    buf[at + 2] = VERSION
    buf[at + 3] = type
    w32(buf, at + 4, STATUS_REPLY_SIZE)
    w32(buf, at + 8, kLo)
    w32(buf, at + 12, kHi)
    w32(buf, at + STATUS_REPLY.fields.status.offset, status)
    w32(buf, at + STATUS_REPLY.fields.detail.offset, detail)
    if (status !== Status.OK && type !== MsgType.ERROR) this.server.counters.rejected++
  }

  /** An IO_REPLY; with `data` (a reply buffer whose first 40 bytes are free) the reply carries `inline` bytes of it. */
  ioReply(kLo: number, kHi: number, status: number, c: Completion | null, inline: number, data: Buffer | null = null): void {
    let buf: Buffer
    let at: number
    const len = IO_REPLY_SIZE + inline
    if (data) {
      buf = data
      at = 0
    } else {
      at = this.reserveAt(IO_REPLY_SIZE)
      buf = this.out.buf
    }
    // Byte stores rather than Buffer#writeUInt*: no argument checks, this runs once per command.
    w16(buf, at, MAGIC)
    buf[at + 2] = VERSION
    buf[at + 3] = MsgType.IO_REPLY
    w32(buf, at + 4, len)
    w32(buf, at + 8, kLo)
    w32(buf, at + 12, kHi)
    w32(buf, at + IO_REPLY.fields.status.offset, status)
    if (c === null) {
      for (let i = at + IO_REPLY.fields.compStatus.offset; i < at + IO_REPLY_SIZE; i++) buf[i] = 0
    } else {
      w16(buf, at + IO_REPLY.fields.compStatus.offset, c.compStatus)
      buf[at + IO_REPLY.fields.scsiStatus.offset] = c.scsiStatus
      buf[at + IO_REPLY.fields.entryStatus.offset] = c.entryStatus
      w32(buf, at + IO_REPLY.fields.transferred.offset, c.transferred)
      w32(buf, at + IO_REPLY.fields.residual.offset, c.residual)
      if (c.sense === null && c.scsiStatus === 0 && c.compStatus === 0 && c.entryStatus === 0) {
        buf[at + IO_REPLY.fields.senseKey.offset] = 0
        buf[at + IO_REPLY.fields.asc.offset] = 0
        buf[at + IO_REPLY.fields.ascq.offset] = 0
        buf[at + IO_REPLY.fields.rflags.offset] = 0
        w32(buf, at + IO_REPLY.fields.errno.offset, 0)
      } else {
        const t = c.sense ? senseTriple(c.sense) : null
        buf[at + IO_REPLY.fields.senseKey.offset] = t ? t.key : 0
        buf[at + IO_REPLY.fields.asc.offset] = t ? t.asc : 0
        buf[at + IO_REPLY.fields.ascq.offset] = t ? t.ascq : 0
        buf[at + IO_REPLY.fields.rflags.offset] = t ? ReplyFlags.SENSE_VALID : 0
        const v = classify(c)
        w32(buf, at + IO_REPLY.fields.errno.offset, v.kind === 'ok' ? 0 : -v.errno)
      }
    }
    if (status !== Status.OK) this.server.counters.rejected++
    if (data) {
      if (len <= SMALL_REPLY) {
        const to = this.reserveAt(len)
        if (len > 64) data.copy(this.out.buf, to, 0, len)
        else for (let i = 0; i < len; i++) this.out.buf[to + i] = data[i]
      } else this.push(data.subarray(0, len))
    }
  }

  // ---- flow control and teardown ----

  pause(): void {
    if (!this.paused && !this.closed) {
      this.paused = true
      this.sock.pause()
    }
  }

  maybeResume(): void {
    const s = this.server
    if (this.paused && !this.blocked && this.inflight < s.maxInFlight && this.inflightBytes < s.maxInFlightBytes && !this.closed && !this.ending) {
      this.paused = false
      const held = this.held
      if (held !== null) {
        this.held = null
        this.parse(held, this.heldAt)
        if (this.paused || this.ending) return // the held rest filled the window again (or broke framing)
      }
      this.sock.resume()
    }
  }

  /**
   * The stream cannot be framed any more: stop reading (what the peer sends
   * from here on is never looked at, and stays in the kernel's bounded
   * buffer), flush what is queued (the ERROR), then destroy the socket — as
   * soon as the flush completes, or after the grace period when the peer
   * does not read. Only half-closing would wait for the peer's FIN forever,
   * and a paused socket never sees it.
   */
  end(): void {
    if (this.ending) return
    this.ending = true
    this.acc = null
    this.sock.pause()
    this.graceTimer = setTimeout(this.destroyFn, this.server.closeGraceMs)
    this.graceTimer.unref()
    this.schedule()
  }

  private onClose(): void {
    if (this.closed) return
    this.closed = true
    if (this.graceTimer !== null) clearTimeout(this.graceTimer)
    this.acc = null
    this.held = null
    this.out.queue.length = 0
    this.handles.length = 1
    for (const r of this.regions.values()) {
      r.closed = true
      if (r.refs === 0) closeRegion(r)
    }
    this.regions.clear()
    this.server.dropped(this)
  }
}

/** Bytes to hold for a message of `need` bytes of which `have` arrived (see ACC_MIN). */
function accCapacity(need: number, have: number): number {
  const c = Math.max(ACC_MIN, have * ACC_GROW)
  return c * ACC_WHOLE >= need ? need : c
}

function closeRegion(r: Region): void {
  r.fd = -1
  r.fh.close().catch(() => undefined)
}

/** Little-endian stores into a Buffer (Uint8Array stores truncate to a byte). */
function w32(b: Buffer, at: number, v: number): void {
  b[at] = v
  b[at + 1] = v >>> 8
  b[at + 2] = v >>> 16
  b[at + 3] = v >>> 24
}

function w32be(b: Buffer, at: number, v: number): void {
  b[at] = v >>> 24
  b[at + 1] = v >>> 16
  b[at + 2] = v >>> 8
  b[at + 3] = v
}

/** Little-endian u32 read without Buffer#readUInt32LE's checks (callers stay within the message). */
function r32(b: Buffer, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16)) + b[at + 3] * 0x1000000
}

function w16(b: Buffer, at: number, v: number): void {
  b[at] = v
  b[at + 1] = v >>> 8
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0')
}

export class ApiServer {
  readonly path: string
  readonly log: Logger
  readonly luns: readonly ApiLun[]
  readonly maxTransfer: number
  readonly maxInFlight: number
  readonly maxInFlightBytes: number
  readonly maxMessage: number
  readonly closeGraceMs: number
  readonly counters: ApiCounters = {
    connections: 0,
    connectionsTotal: 0,
    requests: 0,
    commands: 0,
    nops: 0,
    rejected: 0,
    malformed: 0,
    inlineBytesIn: 0,
    inlineBytesOut: 0,
    shmBytesIn: 0,
    shmBytesOut: 0,
    peakInFlight: 0,
    socketWrites: 0,
  }
  private readonly driver: HbaDriver
  private readonly net: NetServer
  private readonly conns = new Set<Conn>()
  private readonly pool: OpState[] = []
  /** bytes of the region buffers held by ops in the pool (at most POOLED_SHM_BYTES) */
  private pooledShm = 0
  private inflight = 0
  private nextConn = 1
  private closing: Promise<void> | null = null

  constructor(opts: ApiServerOptions, net: NetServer) {
    this.path = opts.path
    this.driver = opts.driver
    this.luns = opts.luns
    this.log = opts.log
    this.maxTransfer = opts.maxTransfer ?? DEFAULT_MAX_TRANSFER
    this.maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT
    this.maxInFlightBytes = opts.maxInFlightBytes ?? DEFAULT_MAX_IN_FLIGHT_BYTES
    this.maxMessage = CDB_SIZE + this.maxTransfer
    this.closeGraceMs = opts.closeGraceMs ?? CLOSE_GRACE_MS
    this.net = net
    net.on('connection', (sock) => this.accept(sock))
  }

  private accept(sock: Socket): void {
    if (this.closing) {
      sock.destroy()
      return
    }
    const conn = new Conn(this, this.nextConn++, sock)
    this.conns.add(conn)
    this.counters.connections++
    this.counters.connectionsTotal++
    const { buf, at } = conn.reserve(HELLO_SIZE)
    encodeHello({ protocol: VERSION, maxTransfer: this.maxTransfer, maxInFlight: this.maxInFlight, serverPid: process.pid }, buf, at)
    this.log.debug({ event: 'api_connect', conn: conn.id }, 'API client connected')
  }

  dropped(conn: Conn): void {
    if (this.conns.delete(conn)) this.counters.connections--
    this.log.debug({ event: 'api_disconnect', conn: conn.id, inflight: conn.inflight }, 'API client disconnected')
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
    const flags = r32(b, at + IO.fields.flags.offset)
    if (this.closing) return this.refuse(conn, flags, kLo, kHi, Status.SHUTTING_DOWN)
    const h = conn.handle(r32(b, at + IO.fields.handle.offset))
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
    const blocks = r32(b, at + IO.fields.blocks.offset)
    const bytes = blocks * bs
    if (blocks === 0 || bytes > this.maxTransfer) return this.refuse(conn, flags, kLo, kHi, Status.BAD_BLOCKS)
    const lbaHi = r32(b, at + IO.fields.lba.offset + 4)
    const lba = r32(b, at + IO.fields.lba.offset) + lbaHi * U32
    if (lbaHi >= 0x200000 || (lba + blocks) * bs > lun.capacity) return this.refuse(conn, flags, kLo, kHi, Status.BAD_LBA)
    let size = 16
    if (flags & IoFlags.CDB10) {
      if (lba + blocks > U32) return this.refuse(conn, flags, kLo, kHi, Status.BAD_LBA)
      if (blocks > 0xffff) return this.refuse(conn, flags, kLo, kHi, Status.BAD_BLOCKS)
      size = 10
    } else if (!(flags & IoFlags.CDB16) && lba + blocks <= U32 && blocks <= 0xffff) size = 10

    let kind: Kind
    let region: Region | null = null
    let offset = 0
    if (where === IoFlags.INLINE) {
      if (mlen !== IO_SIZE + (write ? bytes : 0)) return this.refuse(conn, flags, kLo, kHi, Status.BAD_LENGTH)
      kind = write ? Kind.InlineWrite : Kind.InlineRead
    } else {
      if (mlen !== IO_SIZE) return this.refuse(conn, flags, kLo, kHi, Status.BAD_LENGTH)
      region = conn.regions.get(r32(b, at + IO.fields.region.offset)) ?? null
      if (region === null) return this.refuse(conn, flags, kLo, kHi, Status.BAD_REGION)
      const oHi = r32(b, at + IO.fields.offset.offset + 4)
      offset = r32(b, at + IO.fields.offset.offset) + oHi * U32
      if (oHi >= 0x200000 || offset + bytes > region.size) return this.refuse(conn, flags, kLo, kHi, Status.BAD_RANGE)
      kind = write ? Kind.ShmWrite : Kind.ShmRead
    }

    const op = this.take(conn, kLo, kHi, bytes)
    op.kind = kind
    op.write = write
    op.lun = lun
    op.start = lba * bs
    const cdb = op.cdb
    if (size === 10) {
      cdb[0] = write ? ScsiOp.WRITE_10 : ScsiOp.READ_10
      cdb[1] = flags & IoFlags.FUA ? RwFlags.FUA : 0
      w32be(cdb, 2, lba)
      cdb[6] = 0
      cdb[7] = blocks >>> 8
      cdb[8] = blocks
      cdb[9] = 0
    } else {
      cdb[0] = write ? ScsiOp.WRITE_16 : ScsiOp.READ_16
      cdb[1] = flags & IoFlags.FUA ? RwFlags.FUA : 0
      w32be(cdb, 2, lbaHi)
      w32be(cdb, 6, lba >>> 0)
      w32be(cdb, 10, blocks)
      cdb[14] = 0
      cdb[15] = 0
    }
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
    else this.driver.submit(req, op.done)
  }

  /** Reads the data of a region WRITE into the op's buffer, then submits it. */
  private fetch(op: OpState, n: number): void {
    const r = op.region!
    const data = op.req.data!
    this.counters.shmBytesIn += n
    if (n < ASYNC_COPY) {
      const got = readSync(r.fd, data, 0, n, op.offset)
      if (got < n) data.fill(0, got)
      this.driver.submit(op.req, op.done)
      return
    }
    fsRead(r.fd, data, 0, n, op.offset, (err, got) => {
      if (err) return this.finish(op, Status.SHM_FAILED, null)
      if (got < n) data.fill(0, got)
      this.driver.submit(op.req, op.done)
    })
  }

  /** A raw CDB request. */
  cdb(conn: Conn, b: Buffer, at: number, mlen: number, kLo: number, kHi: number): void {
    const flags = r32(b, at + CDB.fields.flags.offset)
    if (this.closing) return this.refuse(conn, flags, kLo, kHi, Status.SHUTTING_DOWN)
    const h = conn.handle(r32(b, at + CDB.fields.handle.offset))
    if (h === undefined) return this.refuse(conn, flags, kLo, kHi, Status.BAD_HANDLE)
    if (h.lun.present === false) return this.refuse(conn, flags, kLo, kHi, Status.NO_TARGET)
    const allowed = IoFlags.READ | IoFlags.WRITE | IoFlags.ASYNC | IoFlags.INLINE | IoFlags.SHM
    const dir = flags & (IoFlags.READ | IoFlags.WRITE)
    const where = flags & (IoFlags.INLINE | IoFlags.SHM)
    const dataLength = r32(b, at + CDB.fields.dataLength.offset)
    if ((flags & ~allowed) !== 0 || dir === (IoFlags.READ | IoFlags.WRITE) || where === (IoFlags.INLINE | IoFlags.SHM)) {
      return this.refuse(conn, flags, kLo, kHi, Status.BAD_FLAGS)
    }
    const n = b[at + CDB.fields.cdbLength.offset]
    if ((n !== 6 && n !== 10 && n !== 12 && n !== 16) || (dataLength > 0 && dir === 0)) return this.refuse(conn, flags, kLo, kHi, Status.BAD_CDB)
    if (b[at + CDB.fields.reserved.offset] !== 0 || r32(b, at + CDB.fields.reserved2.offset) !== 0) return this.refuse(conn, flags, kLo, kHi, Status.BAD_MESSAGE)
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
      region = conn.regions.get(r32(b, at + CDB.fields.region.offset)) ?? null
      if (region === null) return this.refuse(conn, flags, kLo, kHi, Status.BAD_REGION)
      const oHi = r32(b, at + CDB.fields.offset.offset + 4)
      offset = r32(b, at + CDB.fields.offset.offset) + oHi * U32
      if (oHi >= 0x200000 || offset + dataLength > region.size) return this.refuse(conn, flags, kLo, kHi, Status.BAD_RANGE)
      kind = write ? Kind.ShmWrite : Kind.ShmRead
    }
    const op = this.take(conn, kLo, kHi, dataLength)
    op.kind = kind
    op.write = write && hasData
    op.lun = h.lun
    op.start = -1
    const cdbBytes = op.cdb
    for (let i = 0, from = at + CDB.fields.cdb.offset; i < n; i++) cdbBytes[i] = b[from + i]
    const req = op.req
    req.target = h.lun.info.loopId
    req.lun = h.lun.info.lun
    req.cdb = op.views[n]
    req.direction = !hasData ? DataDirection.None : write ? DataDirection.Out : DataDirection.In
    const t = b.readUInt16LE(at + CDB.fields.timeout.offset)
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
    else this.driver.submit(req, op.done)
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

  /** Text for the `<mnt>/api` info file. */
  info(): string {
    const c = this.counters
    return (
      [
        ['socket', this.path],
        ['protocol', VERSION],
        ['max_transfer', this.maxTransfer],
        ['max_in_flight', this.maxInFlight],
        ['connections', c.connections],
        ['connections_total', c.connectionsTotal],
        ['requests', c.requests],
        ['commands', c.commands],
        ['in_flight', this.inflight],
        ['peak_in_flight', c.peakInFlight],
        ['nops', c.nops],
        ['rejected', c.rejected],
        ['malformed', c.malformed],
        ['inline_bytes_in', c.inlineBytesIn],
        ['inline_bytes_out', c.inlineBytesOut],
        ['shm_bytes_in', c.shmBytesIn],
        ['shm_bytes_out', c.shmBytesOut],
        ['socket_writes', c.socketWrites],
      ]
        .map(([k, v]) => `${k}: ${v}`)
        .join('\n') + '\n'
    )
  }

  /** Stops accepting, closes every connection and removes the socket. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      for (const c of this.conns) c.sock.destroy()
      this.net.close(() => resolve())
      try {
        if (lstatSync(this.path).isSocket()) unlinkSync(this.path)
      } catch {
        /* gone already */
      }
    })
    return this.closing
  }
}

function invalidate(lun: ApiLun, start: number, end: number): void {
  const caches = lun.caches
  if (caches !== undefined && caches.size > 0) for (const c of caches) c.invalidate(start, end)
}

/** False only when nobody listens at `path` (ECONNREFUSED/ENOENT); a full backlog (EAGAIN) counts as alive. */
function alive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'))
  })
}

/**
 * Listens on `opts.path` with mode 0600. Refuses when something else lives
 * there (a live socket: another fcfs; anything that is not a socket: not
 * ours to remove); removes a stale socket left by a crash.
 */
export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const path = opts.path
  if (Buffer.byteLength(path) > 107) throw new ApiError(`API socket path ${path} is ${Buffer.byteLength(path)} bytes; Unix sockets allow 107`)
  const dir = dirname(path)
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new ApiError(`cannot create ${dir} for the API socket: ${(err as Error).message}`)
  }
  const ds = statSync(dir)
  if (!ds.isDirectory()) throw new ApiError(`${dir} is not a directory`)
  let st: ReturnType<typeof lstatSync> | undefined
  try {
    st = lstatSync(path)
  } catch {
    st = undefined
  }
  if (st) {
    if (!st.isSocket()) throw new ApiError(`${path} exists and is not a socket; refusing to replace it`)
    if (await alive(path)) throw new ApiError(`${path} is a live socket (another fcfs serves it); give another --api-socket`)
    unlinkSync(path)
    opts.log.info({ event: 'api_stale_socket', path }, 'removed a stale API socket')
  }
  const net = createServer({ allowHalfOpen: false, pauseOnConnect: false })
  const server = new ApiServer(opts, net)
  await new Promise<void>((resolve, reject) => {
    net.once('error', reject)
    // umask 0177 while bind() creates the socket: it is born 0600, no window where others could connect.
    const old = process.umask(0o177)
    try {
      net.listen(path, () => {
        net.off('error', reject)
        resolve()
      })
    } finally {
      process.umask(old)
    }
  }).catch((err: Error) => {
    throw new ApiError(`cannot listen on ${path}: ${err.message}`)
  })
  chmodSync(path, 0o600)
  net.on('error', (err) => opts.log.error({ event: 'api_error', err: err.message }, 'API socket error'))
  opts.log.info({ event: 'api_listening', path }, 'request/reply API listening')
  if (DEFAULT_NAME.test(basename(path))) void sweepStale(dir, path, opts.log)
  return server
}

const DEFAULT_NAME = /^fcfs-[0-9a-f]{16}\.sock$/

/**
 * Removes default-named sockets in the runtime directory that nobody serves
 * any more (left by a server that was killed). Only sockets older than a
 * minute: a younger one may belong to a server between bind() and listen().
 */
async function sweepStale(dir: string, own: string, log: Logger): Promise<void> {
  try {
    for (const name of await fsp.readdir(dir)) {
      const p = join(dir, name)
      if (!DEFAULT_NAME.test(name) || p === own) continue
      const st = await fsp.lstat(p).catch(() => null)
      if (!st || !st.isSocket() || Date.now() - st.mtimeMs < 60_000) continue
      if (await alive(p)) continue
      await fsp.unlink(p).catch(() => undefined)
      log.debug({ event: 'api_stale_socket', path: p }, 'removed a stale API socket')
    }
  } catch {
    /* best effort */
  }
}
