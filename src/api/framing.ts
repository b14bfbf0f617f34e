/**
 * Reading messages off one connection's byte stream. A message that lies
 * whole in a chunk is handed on in place (a slice of the chunk, no copy); one
 * split across chunks is gathered first. Framing stops, keeping the rest of
 * the chunk, whenever the connection has as much in flight as it may, so one
 * 64 KiB chunk of 48-byte READs cannot put 1,365 transfers in flight at once.
 *
 * A header that cannot frame a message (bad magic, bad version, a length
 * under 16 or over the largest message) ends framing for good: nothing after
 * it means anything. The connection is told once and closes itself.
 */
import { readU16LE, readU32LE } from '../util/le.js'
import { HEADER, HEADER_SIZE, MAGIC, Status, VERSION } from './protocol.js'

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

const LENGTH = HEADER.fields.length.offset

/** Where framed messages go. */
export interface FrameSink {
  /** False while the connection has as much in flight as it may: framing stops and holds the rest. */
  canTake(): boolean
  /** One whole message, b[at, at + length); `b` may be kept (an inline write's data is a slice of it). */
  message(b: Buffer, at: number, length: number): void
  /** The header at b[at..] cannot frame a message (`status` says why); framing has stopped for good. */
  unframeable(b: Buffer, at: number, status: number): void
}

/** Status.OK, or why the header at b[at..] cannot frame a message of at most `maxMessage` bytes. */
export function headerStatus(b: Buffer, at: number, maxMessage: number): number {
  if (readU16LE(b, at + HEADER.fields.magic.offset) !== MAGIC) return Status.BAD_MAGIC
  if (b[at + HEADER.fields.version.offset] !== VERSION) return Status.BAD_VERSION
  const mlen = readU32LE(b, at + LENGTH)
  if (mlen < HEADER_SIZE || mlen > maxMessage) return Status.BAD_LENGTH
  return Status.OK
}

/** Bytes to hold for a message of `need` bytes of which `have` arrived (see ACC_MIN). */
function accCapacity(need: number, have: number): number {
  const c = Math.max(ACC_MIN, have * ACC_GROW)
  return c * ACC_WHOLE >= need ? need : c
}

export class Framer {
  private readonly sink: FrameSink
  private readonly maxMessage: number
  // a message (or a header) split across chunks is gathered here
  private acc: Buffer | null = null
  private accLen = 0
  private accNeed = 0
  /** `acc` holds a header whose message length is not checked yet */
  private accHeader = false
  /** the rest of a chunk not framed yet because the sink could take no more */
  private held: Buffer | null = null
  private heldAt = 0
  private stopped = false

  constructor(sink: FrameSink, maxMessage: number) {
    this.sink = sink
    this.maxMessage = maxMessage
  }

  /**
   * Frames chunk[pos..] and hands each message to the sink. False when it
   * stopped because the sink could take no more (the rest is held until
   * resume(): the caller stops reading); true otherwise. After stop(), drops the chunk.
   */
  push(chunk: Buffer, pos = 0): boolean {
    if (this.stopped) return true
    const len = chunk.length
    const sink = this.sink
    if (this.acc !== null) {
      pos = this.fill(chunk, pos)
      if (this.acc !== null || this.stopped) return true
    }
    while (pos < len && !this.stopped) {
      if (!sink.canTake()) {
        this.held = chunk
        this.heldAt = pos
        return false
      }
      const avail = len - pos
      if (avail < HEADER_SIZE) {
        this.gather(chunk, pos, HEADER_SIZE, true)
        return true
      }
      const mlen = this.frame(chunk, pos)
      if (mlen < 0) return true
      if (avail < mlen) {
        this.gather(chunk, pos, mlen, false)
        return true
      }
      sink.message(chunk, pos, mlen)
      pos += mlen
    }
    return sink.canTake()
  }

  /** Frames the rest held back by push(); same answer as push (true when nothing was held). */
  resume(): boolean {
    const held = this.held
    if (held === null) return true
    this.held = null
    return this.push(held, this.heldAt)
  }

  /** The input is over (it broke framing, or the connection closed): drops what is gathered or held and every later chunk. */
  stop(): void {
    this.stopped = true
    this.acc = null
    this.held = null
  }

  /** The message length of the header at b[at..], or -1 after stopping and telling the sink why it cannot frame one. */
  private frame(b: Buffer, at: number): number {
    const status = headerStatus(b, at, this.maxMessage)
    if (status === Status.OK) return readU32LE(b, at + LENGTH)
    this.stop()
    this.sink.unframeable(b, at, status)
    return -1
  }

  /** Starts gathering a message (or a header) of `need` bytes from chunk[pos..]. */
  private gather(chunk: Buffer, pos: number, need: number, header: boolean): void {
    this.acc = Buffer.allocUnsafe(accCapacity(need, chunk.length - pos))
    this.accNeed = need
    this.accLen = 0
    this.accHeader = header
    this.fill(chunk, pos)
  }

  /** Copies from chunk[pos..] into the accumulator; hands the message on when complete. Returns the new pos. */
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
      const mlen = this.frame(acc, 0)
      if (mlen < 0) return chunk.length
      if (mlen > HEADER_SIZE) {
        this.accNeed = mlen
        return this.fill(chunk, pos)
      }
    }
    this.acc = null
    this.sink.message(acc, 0, this.accNeed)
    return pos
  }
}
