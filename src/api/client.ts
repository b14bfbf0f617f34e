/**
 * TypeScript client of the request/reply API (protocol: ./protocol.ts).
 *
 *   import { FcfsClient } from 'fcfs/dist/src/api/client.js'
 *   const c = await FcfsClient.connect('/mnt/fc')          // a mountpoint (reads <mnt>/api) or a socket path
 *   const t = await c.open('21000024ff000001', 0)          // { handle, blockSize, blocks }
 *   await c.write(t, 0, Buffer.alloc(4096, 0xab))           // promise calls: resolve when the command completed GOOD
 *   const data = await c.read(t, 0, 8)
 *   // batch interface: no promise per request, as many in flight as you like
 *   for (let i = 0; i < 1000; i++) c.submit({ target: t, read: true, lba: i, blocks: 1 }, (r, data) => { … })
 *   await c.close()
 *
 * Requests issued in the same tick go out in one socket write. read/write/
 * command reject with an ApiRequestError naming the status, the SCSI outcome
 * and the errno rwbuf would have given; submit() callbacks get the raw reply.
 */
import { Staging } from './staging.js'
import { connect as netConnect, type Socket } from 'node:net'
import { readFile, stat } from 'node:fs/promises'
import { closeSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync, constants as fsc } from 'node:fs'
import { join } from 'node:path'
import { constants as osc } from 'node:os'
import { FcfsError } from '../errors.js'
import {
  CDB,
  CDB_SIZE,
  HEADER_SIZE,
  IO,
  IO_REPLY,
  IO_REPLY_SIZE,
  IO_SIZE,
  IoFlags,
  MAGIC,
  MsgType,
  NOP_SIZE,
  REGISTER_SHM_SIZE,
  STATUS_REPLY,
  Status,
  VERSION,
  decodeHello,
  decodeOpenReply,
  encodeClose,
  encodeOpen,
  encodeRegisterShm,
  msgTypeName,
  statusName,
  type Hello,
  writeHeader,
} from './protocol.js'
import { readU32LE, writeU16LE, writeU32LE, writeU64LE } from '../util/le.js'

export interface Target {
  readonly wwpn: string
  readonly lun: number
  readonly handle: number
  readonly blockSize: number
  readonly blocks: number
}

/** An IO_REPLY, decoded. `ok`: the command completed GOOD (possibly short: see transferred). */
export interface IoResult {
  key: number
  status: number
  compStatus: number
  scsiStatus: number
  senseKey: number
  asc: number
  ascq: number
  entryStatus: number
  senseValid: boolean
  transferred: number
  residual: number
  /** errno rwbuf would give (positive), 0 on success */
  errno: number
  ok: boolean
}

export type IoCallback = (r: IoResult, data: Buffer | null) => void

export interface IoRequest {
  target: Target | number
  /** exactly one of read / write */
  read?: boolean
  write?: boolean
  lba: number
  blocks: number
  /** write data (inline); omit with `region` */
  data?: Buffer
  /** registered region id: data moves through it at `offset` instead of inline */
  region?: number
  offset?: number
  /** ACK at once, reply later (the seed's async flag) */
  async?: boolean
  fua?: boolean
  cdb10?: boolean
  cdb16?: boolean
}

export class ApiRequestError extends FcfsError {
  readonly result: IoResult | null
  readonly status: number
  readonly errno: string | null
  constructor(op: string, status: number, result: IoResult | null, detail = '') {
    const scsi = result && status === Status.OK ? describe(result) : statusName(status)
    super('FCFS_API_REQUEST', `${op} failed: ${scsi}${detail ? ` (${detail})` : ''}`)
    this.status = status
    this.result = result
    this.errno = result && result.errno ? errnoName(result.errno) : null
  }
}

function errnoName(n: number): string {
  for (const [k, v] of Object.entries(osc.errno)) if (v === n) return k
  return `errno ${n}`
}

function describe(r: IoResult): string {
  const parts = [`comp_status 0x${r.compStatus.toString(16)}`, `scsi_status 0x${r.scsiStatus.toString(16)}`]
  if (r.senseValid) parts.push(`sense ${r.senseKey.toString(16)}/${r.asc.toString(16).padStart(2, '0')}/${r.ascq.toString(16).padStart(2, '0')}`)
  if (r.entryStatus) parts.push(`entry_status 0x${r.entryStatus.toString(16)}`)
  if (r.errno) parts.push(errnoName(r.errno))
  return parts.join(', ')
}

const enum Wait {
  Open = 2,
  Status = 3,
}

interface Pending {
  kind: Wait
  cb: (type: number, buf: Buffer, at: number, len: number) => void
}

const READ_BUFFER = 1024 * 1024
const COPY_LIMIT = 16 * 1024

export class FcfsClient {
  readonly socketPath: string
  readonly hello: Hello
  private readonly sock: Socket
  /** IO/CDB/NOP requests waiting for their reply: the caller's callback itself (no wrapper per request). */
  private readonly ioPending = new Map<number, IoCallback>()
  /** Everything else (OPEN, CLOSE, REGISTER…). */
  private readonly pending = new Map<number, Pending>()
  private nextKey = 1
  private readonly out = new Staging()
  private flushScheduled = false
  private acc: Buffer | null = null
  private accLen = 0
  private accNeed = 0
  private closed = false
  private failure: Error | null = null
  private closedWaiters: (() => void)[] = []

  private constructor(socketPath: string, sock: Socket, hello: Hello) {
    this.socketPath = socketPath
    this.sock = sock
    this.hello = hello
    sock.on('error', (err) => (this.failure ??= err))
    sock.on('close', () => this.onClose())
  }

  /** The socket path of a mount (from `<mnt>/api`), or `p` itself when it is a socket. */
  static async resolveSocket(p: string): Promise<string> {
    const st = await stat(p)
    if (st.isSocket()) return p
    if (st.isDirectory()) {
      const text = await readFile(join(p, 'api'), 'utf8')
      const m = /^socket: (.+)$/m.exec(text)
      if (!m || m[1] === 'off') throw new FcfsError('FCFS_API', `${p} has no API socket (mounted with --api-socket off?)`)
      return m[1]
    }
    throw new FcfsError('FCFS_API', `${p} is neither an fcfs mountpoint nor a socket`)
  }

  /** Connects to a mount (its directory) or a socket path and reads the server's HELLO. */
  static async connect(p: string): Promise<FcfsClient> {
    const path = await FcfsClient.resolveSocket(p)
    // Replies are read straight into one reusable buffer (no 64 KiB allocation per socket read).
    const rbuf = Buffer.allocUnsafeSlow(READ_BUFFER)
    let sink: ((chunk: Buffer) => void) | null = null
    let early = Buffer.alloc(0)
    let wake: (() => void) | null = null
    const sock = netConnect({
      path,
      onread: {
        buffer: rbuf,
        callback: (n: number) => {
          const chunk = rbuf.subarray(0, n)
          if (sink !== null) sink(chunk)
          else {
            early = Buffer.concat([early, chunk])
            wake?.()
          }
          return true
        },
      },
    })
    await new Promise<void>((resolve, reject) => {
      const onErr = (err: Error) => {
        cleanup()
        reject(new FcfsError('FCFS_API', `cannot connect to ${path}: ${err.message}`))
      }
      const onClose = () => {
        cleanup()
        reject(new FcfsError('FCFS_API', `${path} closed before HELLO`))
      }
      const cleanup = () => {
        wake = null
        sock.off('error', onErr)
        sock.off('close', onClose)
      }
      wake = () => {
        if (early.length >= 32) {
          cleanup()
          resolve()
        }
      }
      sock.on('error', onErr)
      sock.on('close', onClose)
    })
    const got = early
    if (got.readUInt16LE(0) !== MAGIC || got[3] !== MsgType.HELLO) {
      sock.destroy()
      throw new FcfsError('FCFS_API', `${path} did not say HELLO (not an fcfs API socket?)`)
    }
    const hello = decodeHello(got, 0)
    if (hello.protocol !== VERSION) {
      sock.destroy()
      throw new FcfsError('FCFS_API', `server speaks protocol ${hello.protocol}, this client ${VERSION}`)
    }
    const client = new FcfsClient(path, sock, hello)
    sink = (chunk) => client.onData(chunk, true)
    if (got.length > 32) client.onData(got.subarray(32), false)
    return client
  }

  /** Requests sent and not answered yet. */
  get inFlight(): number {
    return this.ioPending.size + this.pending.size
  }

  // ---- sending ----

  private key(): number {
    const k = this.nextKey
    this.nextKey = k >= 0xffffffff ? 1 : k + 1
    return k
  }

  private reserve(n: number): { buf: Buffer; at: number } {
    const at = this.reserveAt(n)
    return { buf: this.out.buf, at }
  }

  /** Room for `n` bytes in `this.out.buf` (no object per request). */
  private reserveAt(n: number): number {
    if (this.closed) throw this.failure ?? new FcfsError('FCFS_API', 'connection closed')
    const at = this.out.reserveAt(n)
    if (!this.flushScheduled) this.schedule()
    return at
  }

  private schedule(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true
      process.nextTick(() => this.flush())
    }
  }

  /** Writes everything queued now (it happens by itself at the end of the tick). */
  flush(): void {
    this.flushScheduled = false
    if (this.closed) return
    this.out.writeTo(this.sock)
  }

  private expect(key: number, kind: Wait, cb: Pending['cb']): void {
    this.pending.set(key, { kind, cb })
  }

  /**
   * The batch interface: queues one READ/WRITE and calls `cb` once with the
   * reply (and, for inline reads, the data: a slice of what the socket
   * delivered, yours to keep). Returns the key (the reply's `key`).
   */
  submit(r: IoRequest, cb: IoCallback): number {
    const handle = typeof r.target === 'number' ? r.target : r.target.handle
    let flags = (r.read ? IoFlags.READ : 0) | (r.write ? IoFlags.WRITE : 0)
    if (r.async) flags |= IoFlags.ASYNC
    if (r.fua) flags |= IoFlags.FUA
    if (r.cdb10) flags |= IoFlags.CDB10
    if (r.cdb16) flags |= IoFlags.CDB16
    flags |= r.region !== undefined ? IoFlags.SHM : IoFlags.INLINE
    const inline = r.region === undefined && r.write && r.data ? r.data.length : 0
    const key = this.key()
    const copy = inline > 0 && inline <= COPY_LIMIT
    const at = this.reserveAt(IO_SIZE + (copy ? inline : 0))
    const buf = this.out.buf
    writeHeader(buf, at, MsgType.IO, IO_SIZE + inline, key, 0)
    writeU32LE(buf, at + IO.fields.handle.offset, handle >>> 0)
    writeU32LE(buf, at + IO.fields.flags.offset, flags)
    writeU64LE(buf, at + IO.fields.lba.offset, r.lba)
    writeU32LE(buf, at + IO.fields.blocks.offset, r.blocks >>> 0)
    writeU32LE(buf, at + IO.fields.region.offset, (r.region ?? 0) >>> 0)
    const off = r.offset ?? 0
    writeU64LE(buf, at + IO.fields.offset.offset, off)
    if (copy) r.data!.copy(buf, at + IO_SIZE)
    else if (inline > 0) {
      this.out.push(r.data!)
    }
    this.ioPending.set(key, cb)
    return key
  }

  /** The seed's faked completion: answered by the server at once, nothing reaches the HBA. */
  nop(cb: IoCallback): number {
    const key = this.key()
    const at = this.reserveAt(NOP_SIZE)
    const buf = this.out.buf
    writeHeader(buf, at, MsgType.NOP, NOP_SIZE, key, 0)
    this.ioPending.set(key, cb)
    return key
  }

  /** Any CDB: direction 'in' (read dataLength bytes), 'out' (write `data`), or none. */
  submitCdb(
    target: Target | number,
    cdb: Uint8Array,
    opts: { direction?: 'in' | 'out' | 'none'; data?: Buffer; dataLength?: number; region?: number; offset?: number; timeout?: number; async?: boolean },
    cb: IoCallback,
  ): number {
    const handle = typeof target === 'number' ? target : target.handle
    const dir = opts.direction ?? 'none'
    const dataLength = dir === 'out' && opts.data && opts.region === undefined ? opts.data.length : (opts.dataLength ?? opts.data?.length ?? 0)
    let flags = dir === 'in' ? IoFlags.READ : dir === 'out' ? IoFlags.WRITE : 0
    if (opts.async) flags |= IoFlags.ASYNC
    if (dataLength > 0) flags |= opts.region !== undefined ? IoFlags.SHM : IoFlags.INLINE
    const inline = dir === 'out' && opts.region === undefined && opts.data ? opts.data.length : 0
    const key = this.key()
    if (cdb.length > 16) throw new RangeError(`a CDB is at most 16 bytes, got ${cdb.length}`)
    const at = this.reserveAt(CDB_SIZE)
    const buf = this.out.buf
    // The CDB layout written field by field (encodeCdb's, without a bigint per request).
    writeHeader(buf, at, MsgType.CDB, CDB_SIZE + inline, key, 0)
    writeU32LE(buf, at + CDB.fields.handle.offset, handle >>> 0)
    writeU32LE(buf, at + CDB.fields.flags.offset, flags)
    buf.fill(0, at + CDB.fields.cdb.offset, at + CDB.fields.cdb.offset + 16)
    buf.set(cdb, at + CDB.fields.cdb.offset)
    buf[at + CDB.fields.cdbLength.offset] = cdb.length
    buf[at + CDB.fields.reserved.offset] = 0
    writeU16LE(buf, at + CDB.fields.timeout.offset, opts.timeout ?? 0)
    writeU32LE(buf, at + CDB.fields.dataLength.offset, dataLength >>> 0)
    writeU32LE(buf, at + CDB.fields.region.offset, (opts.region ?? 0) >>> 0)
    writeU32LE(buf, at + CDB.fields.reserved2.offset, 0)
    const off = opts.offset ?? 0
    writeU64LE(buf, at + CDB.fields.offset.offset, off)
    if (inline > 0) {
      this.out.push(opts.data!)
    }
    this.ioPending.set(key, cb)
    return key
  }

  // ---- promise calls ----

  /** `hba`: the HBA (the mount's hba/<n>) whose view the LUN is in and whose commands carry its I/O; default 0. */
  async open(wwpn: string, lun = 0, hba = 0): Promise<Target> {
    const key = this.key()
    const { buf, at } = this.reserve(32)
    encodeOpen({ key: BigInt(key), wwpn, lun, hba }, buf, at)
    return new Promise((resolve, reject) => {
      this.expect(key, Wait.Open, (type, b, o) => {
        if (type !== MsgType.OPEN_REPLY) return reject(errorFrom('OPEN', type, b, o))
        const r = decodeOpenReply(b, o)
        if (r.status !== Status.OK) return reject(new ApiRequestError(`OPEN ${wwpn}/${lun}${hba ? ` on HBA ${hba}` : ''}`, r.status, null))
        resolve({ wwpn: wwpn.replace(/:/g, '').toLowerCase(), lun, handle: r.handle, blockSize: r.blockSize, blocks: r.blocks })
      })
    })
  }

  closeTarget(target: Target | number): Promise<void> {
    return this.statusCall(MsgType.CLOSE, 'CLOSE', typeof target === 'number' ? target : target.handle).then(() => undefined)
  }

  /** Registers a file on tmpfs (e.g. ShmRegion.path) of at least `size` bytes; resolves with the region id. */
  registerShm(path: string, size: number): Promise<number> {
    const key = this.key()
    const { buf, at } = this.reserve(REGISTER_SHM_SIZE)
    encodeRegisterShm({ key: BigInt(key), path, size }, buf, at)
    return new Promise((resolve, reject) => {
      this.expect(key, Wait.Status, (type, b, o) => {
        const status = b.readUInt32LE(o + STATUS_REPLY.fields.status.offset)
        if (type !== MsgType.REGISTER_REPLY || status !== Status.OK) return reject(errorFrom('REGISTER_SHM', type, b, o))
        resolve(b.readUInt32LE(o + STATUS_REPLY.fields.detail.offset))
      })
    })
  }

  unregisterShm(region: number): Promise<void> {
    return this.statusCall(MsgType.UNREGISTER_SHM, 'UNREGISTER_SHM', region).then(() => undefined)
  }

  private statusCall(type: number, what: string, value: number): Promise<number> {
    const key = this.key()
    const { buf, at } = this.reserve(24)
    encodeClose({ key: BigInt(key), handle: value }, buf, at, type)
    return new Promise((resolve, reject) => {
      this.expect(key, Wait.Status, (t, b, o) => {
        const status = b.readUInt32LE(o + STATUS_REPLY.fields.status.offset)
        if (t !== (type | 0x80) || status !== Status.OK) return reject(errorFrom(what, t, b, o))
        resolve(b.readUInt32LE(o + STATUS_REPLY.fields.detail.offset))
      })
    })
  }

  /** Resolves with the reply however it went (never rejects for a SCSI outcome). */
  io(r: IoRequest): Promise<{ result: IoResult; data: Buffer | null }> {
    return new Promise((resolve) => this.submit(r, (result, data) => resolve({ result, data })))
  }

  /** READ of `blocks` blocks at `lba`, inline; resolves with the data (short if the target moved less). */
  async read(target: Target, lba: number, blocks: number, opts: { cdb10?: boolean; cdb16?: boolean } = {}): Promise<Buffer> {
    const { result, data } = await this.io({ target, read: true, lba, blocks, ...opts })
    if (!result.ok) throw new ApiRequestError(`READ lba ${lba} blocks ${blocks}`, result.status, result)
    return data ?? Buffer.alloc(0)
  }

  /** WRITE of `data` (whole blocks) at `lba`, inline. */
  async write(target: Target, lba: number, data: Buffer, opts: { fua?: boolean; cdb10?: boolean; cdb16?: boolean } = {}): Promise<void> {
    if (data.length === 0 || data.length % target.blockSize !== 0) {
      throw new RangeError(`write: ${data.length} bytes is not a whole number of ${target.blockSize}-byte blocks`)
    }
    const { result } = await this.io({ target, write: true, lba, blocks: data.length / target.blockSize, data, ...opts })
    if (!result.ok) throw new ApiRequestError(`WRITE lba ${lba}`, result.status, result)
  }

  /** READ/WRITE through a registered region: data lands in / comes from the region at `offset`. */
  async readShm(target: Target, lba: number, blocks: number, region: number, offset: number): Promise<IoResult> {
    const { result } = await this.io({ target, read: true, lba, blocks, region, offset })
    if (!result.ok) throw new ApiRequestError(`READ lba ${lba} blocks ${blocks}`, result.status, result)
    return result
  }

  async writeShm(target: Target, lba: number, blocks: number, region: number, offset: number, opts: { fua?: boolean } = {}): Promise<IoResult> {
    const { result } = await this.io({ target, write: true, lba, blocks, region, offset, ...opts })
    if (!result.ok) throw new ApiRequestError(`WRITE lba ${lba} blocks ${blocks}`, result.status, result)
    return result
  }

  /** Any CDB; resolves with the reply and the data-in (never rejects for a SCSI outcome). */
  command(
    target: Target,
    cdb: Uint8Array,
    opts: { direction?: 'in' | 'out' | 'none'; data?: Buffer; dataLength?: number; timeout?: number } = {},
  ): Promise<{ result: IoResult; data: Buffer | null }> {
    return new Promise((resolve) => this.submitCdb(target, cdb, opts, (result, data) => resolve({ result, data })))
  }

  /** Closes the connection; requests still in flight get status SHUTTING_DOWN. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve()
    this.flush()
    return new Promise((resolve) => {
      this.closedWaiters.push(resolve)
      this.sock.end()
      setTimeout(() => this.sock.destroy(), 1000).unref()
    })
  }

  // ---- receiving ----

  /** `shared`: the chunk's memory is reused after this call (data handed to callers is copied). */
  private onData(chunk: Buffer, shared: boolean): void {
    let pos = 0
    if (this.acc !== null) {
      pos = this.fill(chunk, 0)
      if (this.acc !== null) return
    }
    const len = chunk.length
    while (pos < len) {
      const avail = len - pos
      if (avail < HEADER_SIZE) {
        this.startAcc(HEADER_SIZE)
        this.fill(chunk, pos)
        return
      }
      const mlen = readU32LE(chunk, pos + 4)
      if (chunk.readUInt16LE(pos) !== MAGIC || mlen < HEADER_SIZE) return this.protocolError(`bad reply header ${chunk.subarray(pos, pos + 8).toString('hex')}`)
      if (avail < mlen) {
        this.startAcc(mlen)
        this.fill(chunk, pos)
        return
      }
      this.dispatch(chunk, pos, mlen, shared)
      pos += mlen
    }
  }

  private startAcc(n: number): void {
    this.acc = Buffer.allocUnsafe(n)
    this.accNeed = n
    this.accLen = 0
  }

  private fill(chunk: Buffer, pos: number): number {
    const acc = this.acc!
    const n = Math.min(this.accNeed - this.accLen, chunk.length - pos)
    chunk.copy(acc, this.accLen, pos, pos + n)
    this.accLen += n
    pos += n
    if (this.accLen < this.accNeed) return pos
    if (this.accNeed === HEADER_SIZE) {
      const mlen = acc.readUInt32LE(4)
      if (acc.readUInt16LE(0) !== MAGIC || mlen < HEADER_SIZE) {
        this.protocolError('bad reply header')
        return chunk.length
      }
      if (mlen > HEADER_SIZE) {
        const full = Buffer.allocUnsafe(mlen)
        acc.copy(full)
        this.acc = full
        this.accNeed = mlen
        this.accLen = HEADER_SIZE
        return this.fill(chunk, pos)
      }
    }
    this.acc = null
    this.dispatch(acc, 0, this.accNeed, false)
    return pos
  }

  private dispatch(b: Buffer, at: number, mlen: number, shared: boolean): void {
    const type = b[at + 3]
    const key = readU32LE(b, at + 8)
    const io = this.ioPending.get(key)
    if (io !== undefined) {
      if (type === MsgType.IO_REPLY) {
        this.ioPending.delete(key)
        const data = mlen > IO_REPLY_SIZE ? b.subarray(at + IO_REPLY_SIZE, at + mlen) : null
        io(decodeResult(b, at), data !== null && shared ? Buffer.from(data) : data)
      } else if (type !== MsgType.IO_ACK || readU32LE(b, at + STATUS_REPLY.fields.status.offset) !== Status.OK) {
        // a refused async request (its only answer), or ERROR
        this.ioPending.delete(key)
        io(refused(key, readU32LE(b, at + STATUS_REPLY.fields.status.offset)), null)
      }
      return
    }
    const p = this.pending.get(key)
    if (p === undefined) return
    this.pending.delete(key)
    p.cb(type, b, at, mlen)
  }

  private protocolError(why: string): void {
    this.failure ??= new FcfsError('FCFS_API', `protocol error: ${why}`)
    this.sock.destroy()
  }

  private onClose(): void {
    this.closed = true
    const all = [...this.pending.entries()]
    const ios = [...this.ioPending.entries()]
    this.pending.clear()
    this.ioPending.clear()
    for (const [key, cb] of ios) cb(refused(key, Status.SHUTTING_DOWN), null)
    const fake = Buffer.alloc(IO_REPLY_SIZE)
    fake.writeUInt32LE(Status.SHUTTING_DOWN, IO_REPLY.fields.status.offset)
    for (const [key, p] of all) {
      fake.writeUInt32LE(key, 8)
      fake[3] = MsgType.ERROR
      fake.writeUInt32LE(IO_REPLY_SIZE, 4)
      p.cb(fake[3], fake, 0, IO_REPLY_SIZE)
    }
    for (const w of this.closedWaiters) w()
    this.closedWaiters = []
  }
}

function decodeResult(b: Buffer, at: number): IoResult {
  const status = readU32LE(b, at + IO_REPLY.fields.status.offset)
  const compStatus = b.readUInt16LE(at + IO_REPLY.fields.compStatus.offset)
  const scsiStatus = b[at + IO_REPLY.fields.scsiStatus.offset]
  const entryStatus = b[at + IO_REPLY.fields.entryStatus.offset]
  return {
    key: readU32LE(b, at + 8),
    status,
    compStatus,
    scsiStatus,
    senseKey: b[at + IO_REPLY.fields.senseKey.offset],
    asc: b[at + IO_REPLY.fields.asc.offset],
    ascq: b[at + IO_REPLY.fields.ascq.offset],
    entryStatus,
    senseValid: (b[at + IO_REPLY.fields.rflags.offset] & 1) !== 0,
    transferred: readU32LE(b, at + IO_REPLY.fields.transferred.offset),
    residual: readU32LE(b, at + IO_REPLY.fields.residual.offset),
    errno: readU32LE(b, at + IO_REPLY.fields.errno.offset),
    ok: status === Status.OK && entryStatus === 0 && (compStatus === 0 || compStatus === 0x15) && scsiStatus === 0,
  }
}

function refused(key: number, status: number): IoResult {
  return { key, status, compStatus: 0, scsiStatus: 0, senseKey: 0, asc: 0, ascq: 0, entryStatus: 0, senseValid: false, transferred: 0, residual: 0, errno: 0, ok: false }
}

function errorFrom(what: string, type: number, b: Buffer, at: number): Error {
  const status = b.readUInt32LE(at + STATUS_REPLY.fields.status.offset)
  return new ApiRequestError(what, status, null, type === MsgType.ERROR ? `server answered ERROR to the ${msgTypeName(b.readUInt32LE(at + STATUS_REPLY.fields.detail.offset))} message` : '')
}

/**
 * A shared-memory region for the client side: a file in /dev/shm the size of
 * `size`. C and Python clients mmap it; Node cannot mmap without a native
 * addon, so here read()/write() copy through the file (use inline data from
 * Node when you only care about speed; this exists so Node can drive and test
 * the region path).
 */
export class ShmRegion {
  readonly path: string
  readonly size: number
  private fd: number

  private constructor(path: string, size: number, fd: number) {
    this.path = path
    this.size = size
    this.fd = fd
  }

  static create(size: number, dir = '/dev/shm'): ShmRegion {
    const path = join(dir, `fcfs-${process.pid}-${Math.random().toString(36).slice(2, 10)}`)
    const fd = openSync(path, fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL, 0o600)
    ftruncateSync(fd, size)
    return new ShmRegion(path, size, fd)
  }

  write(offset: number, data: Buffer): void {
    writeSync(this.fd, data, 0, data.length, offset)
  }

  read(offset: number, length: number): Buffer {
    const b = Buffer.alloc(length)
    readSync(this.fd, b, 0, length, offset)
    return b
  }

  /** Closes and removes the file. */
  destroy(): void {
    if (this.fd >= 0) closeSync(this.fd)
    this.fd = -1
    try {
      unlinkSync(this.path)
    } catch {
      /* gone */
    }
  }
}
