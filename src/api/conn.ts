/**
 * One API connection: its socket, flow control, replies and teardown, plus
 * the handles and regions it opened. Messages come from ./framing.ts and go
 * to ./handlers.ts.
 *
 * Replies are packed into a staging buffer and written once per event-loop
 * turn (several buffers go out corked, as one writev). A connection with
 * `maxInFlight` requests or `maxInFlightBytes` of data outstanding, or whose
 * socket is full, is not read from until that changes (back-pressure, never
 * unbounded memory).
 */
import type { Socket } from 'node:net'
import type { Completion } from '../hba/driver.js'
import { classify } from '../hba/errno.js'
import { senseCode, senseCodeAsc, senseCodeAscq, senseCodeKey } from '../scsi/sense.js'
import { readU32LE, writeU16LE, writeU32LE } from '../util/le.js'
import { Framer, type FrameSink } from './framing.js'
import { dispatch } from './handlers.js'
import { IO_REPLY, IO_REPLY_SIZE, HEADER, MsgType, ReplyFlags, STATUS_REPLY_SIZE, Status, writeHeader, writeStatusReply } from './protocol.js'
import type { ApiServer } from './server.js'
import { Staging } from './staging.js'
import { closeRegion, type Handle, type Region } from './types.js'

/** Inline READ replies up to this size (header included) are copied into the staging buffer, bigger ones go out as they are. */
export const SMALL_REPLY = 16 * 1024 + 64

const KEY = HEADER.fields.key.offset
const TYPE = HEADER.fields.type.offset
const R = IO_REPLY.fields

export class Conn implements FrameSink {
  readonly id: number
  readonly sock: Socket
  readonly server: ApiServer
  readonly handles: (Handle | undefined)[] = [undefined]
  handleGen = 0
  readonly regions = new Map<number, Region>()
  nextRegion = 1
  /** REGISTER_SHM requests between their check and their answer */
  registering = 0
  inflight = 0
  inflightBytes = 0
  closed = false
  private paused = false
  private blocked = false
  /** the stream could not be framed: the ERROR is going out, input is no longer read */
  private ending = false
  private graceTimer: NodeJS.Timeout | null = null
  private readonly destroyFn = () => this.sock.destroy()
  private readonly input: Framer

  // output
  readonly out = new Staging()
  private flushScheduled = false
  private readonly flushFn = () => this.flush()

  constructor(server: ApiServer, id: number, sock: Socket) {
    this.server = server
    this.id = id
    this.sock = sock
    this.input = new Framer(this, server.maxMessage)
    sock.on('data', (chunk: Buffer) => {
      if (!this.input.push(chunk)) this.pause()
    })
    sock.on('drain', () => {
      this.blocked = false
      this.maybeResume()
    })
    sock.on('error', () => undefined)
    sock.on('close', () => this.onClose())
  }

  // ---- input (FrameSink) ----

  canTake(): boolean {
    const s = this.server
    return this.inflight < s.maxInFlight && this.inflightBytes < s.maxInFlightBytes
  }

  message(b: Buffer, at: number, mlen: number): void {
    dispatch(this, b, at, mlen)
  }

  /** Answers ERROR and closes: the stream cannot be framed any more. */
  unframeable(b: Buffer, at: number, status: number): void {
    this.server.counters.malformed++
    this.statusReply(MsgType.ERROR, readU32LE(b, at + KEY), readU32LE(b, at + KEY + 4), status, b[at + TYPE])
    this.server.log.warn({ event: 'api_malformed', conn: this.id, status }, 'API: malformed message; closing the connection')
    this.end()
  }

  handle(value: number): Handle | undefined {
    const h = this.handles[value & 0xffff]
    return h !== undefined && h.value === value ? h : undefined
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
    writeStatusReply(this.out.buf, at, type, kLo, kHi, status, detail)
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
    writeHeader(buf, at, MsgType.IO_REPLY, len, kLo, kHi)
    writeU32LE(buf, at + R.status.offset, status)
    if (c === null) {
      for (let i = at + R.compStatus.offset; i < at + IO_REPLY_SIZE; i++) buf[i] = 0
    } else {
      writeU16LE(buf, at + R.compStatus.offset, c.compStatus)
      buf[at + R.scsiStatus.offset] = c.scsiStatus
      buf[at + R.entryStatus.offset] = c.entryStatus
      writeU32LE(buf, at + R.transferred.offset, c.transferred)
      writeU32LE(buf, at + R.residual.offset, c.residual)
      if (c.sense === null && c.scsiStatus === 0 && c.compStatus === 0 && c.entryStatus === 0) {
        buf[at + R.senseKey.offset] = 0
        buf[at + R.asc.offset] = 0
        buf[at + R.ascq.offset] = 0
        buf[at + R.rflags.offset] = 0
        writeU32LE(buf, at + R.errno.offset, 0)
      } else {
        const code = senseCode(c.sense)
        const sense = code >= 0
        buf[at + R.senseKey.offset] = sense ? senseCodeKey(code) : 0
        buf[at + R.asc.offset] = sense ? senseCodeAsc(code) : 0
        buf[at + R.ascq.offset] = sense ? senseCodeAscq(code) : 0
        buf[at + R.rflags.offset] = sense ? ReplyFlags.SENSE_VALID : 0
        const v = classify(c)
        writeU32LE(buf, at + R.errno.offset, v.kind === 'ok' ? 0 : -v.errno)
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
    if (this.paused && !this.blocked && this.canTake() && !this.closed && !this.ending) {
      this.paused = false
      if (!this.input.resume()) this.pause()
      if (this.paused || this.ending) return // the held rest filled the window again (or broke framing)
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
  private end(): void {
    if (this.ending) return
    this.ending = true
    this.input.stop()
    this.sock.pause()
    this.graceTimer = setTimeout(this.destroyFn, this.server.closeGraceMs)
    this.graceTimer.unref()
    this.schedule()
  }

  private onClose(): void {
    if (this.closed) return
    this.closed = true
    if (this.graceTimer !== null) clearTimeout(this.graceTimer)
    this.input.stop()
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
